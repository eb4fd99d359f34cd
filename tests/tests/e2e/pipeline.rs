//! Whole crawls: what was fetched, what was stored, who did the work.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::{
    Server, assert_each_page_fetched_once, assert_items_match_site, closed_port, export, run_engine,
};

const PAGES: usize = 60;

fn s(v: &str) -> String {
    v.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_crawl_fetches_each_page_once_and_stores_each_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(PAGES).await.expect("site");
    let store = dir.path().join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir.path()).await;
    let w0 = Server::start("worker", &[], dir.path()).await;
    let w1 = Server::start("worker", &[], dir.path()).await;

    // The `:PORT` syntax from the documented command lines.
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host=:{}", saver.port()),
            format!("--worker_hosts=:{},:{}", w0.port(), w1.port()),
            s("--seed"),
            site.url("/"),
        ],
    )
    .await;
    assert!(
        run.status.success(),
        "engine failed: {}\n{}\nworker logs:\n{}\n{}",
        run.stdout,
        run.stderr,
        w0.logs(),
        w1.logs()
    );

    assert_each_page_fetched_once(&site);
    let items = export(&store).await;
    assert_items_match_site(&items, &site);

    let summary = run.summary();
    let pages = site.site.ok_paths().len() as u64;
    let broken = site.site.broken_paths().len() as u64;
    assert_eq!(summary["pages_ok"], pages);
    assert_eq!(summary["pages_failed"]["http_404"], broken);
    assert_eq!(summary["items_saved"], pages);
    assert_eq!(summary["stopped"], "done");
    assert_eq!(
        summary["skipped"]["robots_disallowed"], 1,
        "/private/ is disallowed: {summary}"
    );
    assert_eq!(summary["robots_fetched"], 1);
    let workers = summary["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert!(
            w["requests"].as_u64().expect("requests") > 0,
            "a worker got no share: {summary}"
        );
    }
    let total: u64 = workers
        .iter()
        .map(|w| w["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total,
        pages + broken + 1,
        "every request (and the robots.txt) went to exactly one worker"
    );
    assert!(
        run.stdout.contains("pages ok"),
        "summary printed: {}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_completes_on_the_other_worker_when_one_host_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(PAGES).await.expect("site");
    let store = dir.path().join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir.path()).await;
    let up = Server::start("worker", &[], dir.path()).await;
    let down = format!("127.0.0.1:{}", closed_port());

    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={},{down}", up.addr),
            s("--seed"),
            site.url("/"),
        ],
    )
    .await;
    assert!(run.status.success(), "engine failed: {}", run.stderr);
    assert!(
        run.stderr.contains(&down),
        "the unreachable worker is logged: {}",
        run.stderr
    );
    assert_each_page_fetched_once(&site);
    assert_items_match_site(&export(&store).await, &site);
    let workers = run.summary()["workers"]
        .as_array()
        .expect("workers")
        .clone();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["addr"], up.addr.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_machine_mode_needs_no_worker_or_itemsaver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(PAGES).await.expect("site");
    let store = dir.path().join("alone.db");
    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            site.url("/"),
            s("--store"),
            store.display().to_string(),
        ],
    )
    .await;
    assert!(run.status.success(), "engine failed: {}", run.stderr);
    assert_each_page_fetched_once(&site);
    assert_items_match_site(&export(&store).await, &site);
    assert_eq!(run.summary()["workers"][0]["addr"], "in-process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recrawl_updates_items_instead_of_duplicating_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(20).await.expect("site");
    let store = dir.path().join("items.db");
    let args = [
        s("--seed"),
        site.url("/"),
        s("--store"),
        store.display().to_string(),
    ];
    for _ in 0..2 {
        let run = run_engine(dir.path(), &args).await;
        assert!(run.status.success(), "engine failed: {}", run.stderr);
    }
    assert_items_match_site(&export(&store).await, &site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_depth_stops_at_the_given_link_distance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(PAGES).await.expect("site");
    let store = dir.path().join("items.db").display().to_string();
    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            site.url("/"),
            s("--store"),
            store,
            s("--max_depth"),
            s("1"),
        ],
    )
    .await;
    assert!(run.status.success(), "engine failed: {}", run.stderr);
    // The index (depth 0) and exactly what it links to in scope (depth 1).
    let fetched: Vec<String> = site.hits().keys().cloned().collect();
    assert_eq!(
        fetched,
        vec!["/", "/gbk.html", "/p/0.html", "/p/1.html", "/robots.txt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_caps_the_pages_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(PAGES).await.expect("site");
    let store = dir.path().join("items.db");
    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            site.url("/"),
            s("--store"),
            store.display().to_string(),
            s("--max_pages"),
            s("7"),
        ],
    )
    .await;
    assert!(run.status.success(), "engine failed: {}", run.stderr);
    let fetched: u64 = site
        .hits()
        .iter()
        .filter(|(path, _)| *path != "/robots.txt")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(fetched, 7);
    let summary = run.summary();
    assert_eq!(summary["stopped"], "max_pages");
    assert!(summary["left_in_queue"].as_u64().expect("left") > 0);
    assert_eq!(
        export(&store).await.len() as u64,
        summary["items_saved"].as_u64().expect("items")
    );
}
