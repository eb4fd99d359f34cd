//! Workers that restart, drain, die or overrun while holding pages: a page is never blamed for
//! its worker, unless it is in flight on several different workers that each die holding it.

use spinneret_tests::binaries::{EngineProc, EngineRun, Server, export, signal};
use spinneret_tests::hostile::{HostileOptions, HostileServer};
use std::path::Path;

/// A page the worker needs two seconds for: long enough to act while it is in flight.
const SLOW: &str = "/sleep/2000";

/// What is done to the worker each time the slow page is in flight.
#[derive(Clone, Copy)]
enum Fault {
    /// SIGTERM, as systemd's restart sends: the worker drains, exits, and is started again.
    Restart,
    /// SIGKILL, as a crash: the worker dies holding the page, and is started again.
    Crash,
}

/// Crawls the slow page (and the index linking it) with one worker on a fixed port, doing
/// `fault` to the worker each time the page is fetched, up to `rounds` times, restarting the
/// worker after each. Returns the run and the store.
async fn crawl_with_faults(
    dir: &Path,
    server: &HostileServer,
    fault: Fault,
    rounds: u64,
    extra: &[&str],
) -> (EngineRun, std::path::PathBuf) {
    let store = dir.join("items.db");
    let saver = Server::start("itemsaver", &["--store", &store.display().to_string()], dir).await;
    let mut worker = Server::start("worker", &[], dir).await;
    let port = worker.port().to_string();
    let mut args = vec![
        format!("--itemsaver_host={}", saver.addr),
        format!("--worker_hosts={}", worker.addr),
        format!("--seed={}", server.url(SLOW)),
        "--ignore_robots".into(),
        "--heartbeat_ms=200".into(),
        "--no_state".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut engine = EngineProc::spawn(dir, &args);
    for round in 1..=rounds {
        tokio::select! {
            _ = engine.exited() => break,
            _ = server.wait_for_hits(SLOW, round) => {}
        }
        match fault {
            Fault::Restart => {
                signal(worker.pid(), "TERM");
                let status = worker.wait_exit().await;
                assert!(status.success(), "the worker drains and exits cleanly");
            }
            Fault::Crash => {
                signal(worker.pid(), "KILL");
                worker.wait_exit().await;
            }
        }
        worker = Server::start_on("worker", &["--port", &port], dir).await;
    }
    let run = engine.wait().await;
    let run = run.succeeded("engine failed");
    drop(worker);
    (run, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_again_and_again_loses_no_page() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (run, store) = crawl_with_faults(dir.path(), &server, Fault::Restart, 7, &[]).await;
    let s = run.summary();
    assert_eq!(s["pages_ok"], 1, "{s}");
    assert_eq!(s["pages_failed"], serde_json::json!({}), "{s}");
    assert_eq!(
        server.hits()[SLOW],
        1,
        "a draining worker finishes the page it holds: fetched once"
    );
    assert_eq!(export(&store).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_kills_its_workers_is_given_up_as_poison() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (run, store) = crawl_with_faults(
        dir.path(),
        &server,
        Fault::Crash,
        10,
        &["--max_worker_deaths=3"],
    )
    .await;
    let s = run.summary();
    assert_eq!(s["pages_failed"]["poison_page"], 1, "{s}");
    assert_eq!(
        server.hits()[SLOW],
        3,
        "in flight on three different workers that each died"
    );
    assert!(export(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_than_the_rpc_deadline_spends_its_retries_not_forever() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (run, _) = crawl_with_faults(
        dir.path(),
        &server,
        Fault::Crash,
        0,
        &["--rpc_timeout=1", "--retries=1"],
    )
    .await;
    let s = run.summary();
    assert_eq!(s["pages_failed"]["timeout"], 1, "{s}");
    assert_eq!(server.hits()[SLOW], 2, "the first try and one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_kills_its_workers_takes_no_other_page_with_it() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (server.url("/sleep/1500/a"), server.url("/sleep/1500/b"));
    let (run, store) = crawl_with_faults(
        dir.path(),
        &server,
        Fault::Crash,
        10,
        &[
            "--max_worker_deaths=3",
            &format!("--seed={a}"),
            &format!("--seed={b}"),
        ],
    )
    .await;
    let s = run.summary();
    assert_eq!(s["pages_failed"]["poison_page"], 1, "{s}");
    assert_eq!(
        s["pages_ok"], 2,
        "the pages in flight beside it when the first worker died are fetched: {s}"
    );
    assert_eq!(export(&store).await.len(), 2);
}
