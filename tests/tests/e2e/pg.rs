//! The PostgreSQL item store against a real server: a crawl stores exactly the site's items,
//! a re-crawl updates them and never duplicates, a server stopped and restarted mid-crawl
//! loses nothing, and exports read it like any store.

use crate::exports::{assert_exports, export_with, json_lines, odd_items};
use itemsaver::ItemStore;
use spinneret_tests::TestSite;
use spinneret_tests::binaries::{Server, assert_items_match_site, run_engine};
use spinneret_tests::postgres::PostgresServer;
use std::time::Duration;

fn s(v: &str) -> String {
    v.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_read_a_postgres_store_like_any_other() {
    let pg = PostgresServer::start();
    let store = itemsaver::store::PostgresStore::open(&pg.url())
        .await
        .expect("open");
    tokio::task::spawn_blocking(move || store.save(&odd_items(), &[]).expect("save"))
        .await
        .expect("save");
    assert_exports(&pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_into_postgres_stores_each_page_once_and_a_recrawl_updates_it() {
    let pg = PostgresServer::start();
    let site = TestSite::start(40).await.expect("site");
    let dir = tempfile::tempdir().expect("tempdir");
    let crawl = |dir: std::path::PathBuf| {
        let url = pg.url();
        let seed = site.url("/");
        async move {
            run_engine(
                &dir,
                &[
                    format!("--seed={seed}"),
                    format!("--store={url}"),
                    s("--no_state"),
                ],
            )
            .await
            .succeeded("a crawl into PostgreSQL")
        }
    };
    let first = crawl(dir.path().to_path_buf()).await;
    let pages = site.site.ok_paths().len() as u64;
    assert_eq!(first.summary()["items_saved"], pages);
    let items = json_lines(&export_with(&pg.url(), &[]).await);
    assert_items_match_site(&items, &site);
    // The same crawl again: every item updated in place, none added.
    crawl(dir.path().to_path_buf()).await;
    let again = json_lines(&export_with(&pg.url(), &[]).await);
    assert_items_match_site(&again, &site);
    for (before, after) in items.iter().zip(&again) {
        assert_eq!(before["id"], after["id"]);
        assert_eq!(
            before["stored_at"], after["stored_at"],
            "first stored stays"
        );
        assert!(
            after["updated_at"].as_str() > before["updated_at"].as_str(),
            "{before} {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_crawl_loses_nothing() {
    let pg = PostgresServer::start();
    // About 120 pages of 100 ms, 8 at a time: the crawl outlasts a stop on a loaded machine.
    let site = TestSite::start_slowly(120, Duration::from_millis(100))
        .await
        .expect("site");
    let dir = tempfile::tempdir().expect("tempdir");
    let saver = Server::start("itemsaver", &["--store", &pg.url()], dir.path()).await;
    let worker = Server::start("worker", &[], dir.path()).await;
    let engine = {
        let dir = dir.path().to_path_buf();
        let args = vec![
            format!("--seed={}", site.url("/")),
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={}", worker.addr),
            s("--batch_size=5"),
            s("--no_state"),
        ];
        tokio::spawn(async move { run_engine(&dir, &args).await })
    };
    site.wait_for_hits(10).await;
    let pg_ref = &pg;
    tokio::task::block_in_place(|| pg_ref.stop());
    // The crawl goes on while the store is away: its batches wait in the engine's spool.
    site.wait_for_hits(30).await;
    tokio::task::block_in_place(|| pg_ref.restart());
    let run = engine
        .await
        .expect("engine")
        .succeeded("a crawl across a PostgreSQL restart");
    let pages = site.site.ok_paths().len() as u64;
    assert_eq!(run.summary()["items_saved"], pages, "{}", run.stderr);
    assert!(
        run.stderr.contains("not taking items"),
        "the store was away while the crawl went on: {}",
        run.stderr
    );
    let items = json_lines(&export_with(&pg.url(), &[]).await);
    assert_items_match_site(&items, &site);
}
