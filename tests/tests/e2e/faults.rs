//! Fault injection: a crawl loses nothing, and stores each item once, whatever process is
//! killed or hung, and whenever.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::{EngineProc, Server, assert_items_match_site, export, signal};
use std::path::Path;
use std::time::Duration;

/// Pages in the site; with the latency below a crawl lasts about a second.
const PAGES: usize = 120;
/// Server latency per page, so there is a "mid-crawl" to act in.
const LATENCY: Duration = Duration::from_millis(15);
/// Hits after which the fault is injected: early, middle and late.
const KILL_MOMENTS: [u64; 3] = [10, 60, LATE];
/// The late moment, near the end: the crawl may finish before a slow consequence shows.
const LATE: u64 = 110;

struct Cluster {
    dir: tempfile::TempDir,
    site: TestSite,
    saver: Server,
    workers: Vec<Server>,
}

impl Cluster {
    async fn start(workers: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = TestSite::start_slowly(PAGES, LATENCY).await.expect("site");
        let saver = start_itemsaver(dir.path(), 0).await;
        let mut list = Vec::new();
        for _ in 0..workers {
            list.push(Server::start("worker", &[], dir.path()).await);
        }
        Cluster {
            dir,
            site,
            saver,
            workers: list,
        }
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("items.db")
    }

    fn engine_args(&self) -> Vec<String> {
        let workers: Vec<&str> = self.workers.iter().map(|w| w.addr.as_str()).collect();
        vec![
            format!("--itemsaver_host={}", self.saver.addr),
            format!("--worker_hosts={}", workers.join(",")),
            format!("--seed={}", self.site.url("/")),
            format!("--state={}", self.dir.path().join("crawl.state").display()),
            "--per_host=4".into(),
            "--heartbeat_ms=200".into(),
            "--heartbeat_misses=3".into(),
            "--state_sync_ms=50".into(),
        ]
    }

    fn engine(&self) -> EngineProc {
        EngineProc::spawn(self.dir.path(), &self.engine_args())
    }

    /// The store holds exactly the site's items, and no page was fetched more than twice.
    async fn assert_nothing_lost(&self, at: u64) {
        assert_items_match_site(&export(&self.store()).await, &self.site);
        let hits = self.site.hits();
        let over: Vec<_> = hits.iter().filter(|(_, n)| **n > 2).collect();
        assert!(
            over.is_empty(),
            "fault at {at} hits: fetched more than twice: {over:?}"
        );
        for path in self.site.site.polite_crawl_paths() {
            assert!(
                hits.contains_key(&path),
                "fault at {at} hits: {path} never fetched"
            );
        }
    }
}

async fn start_itemsaver(dir: &Path, port: u16) -> Server {
    let store = dir.join("items.db").display().to_string();
    if port == 0 {
        Server::start("itemsaver", &["--store", &store], dir).await
    } else {
        let port = port.to_string();
        Server::start_on("itemsaver", &["--store", &store, "--port", &port], dir).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_crawl_loses_nothing() {
    for at in KILL_MOMENTS {
        let mut c = Cluster::start(2).await;
        let engine = c.engine();
        c.site.wait_for_hits(at).await;
        let victim = c.workers.remove(0);
        signal(victim.pid(), "KILL");
        let run = engine.wait().await;
        assert!(run.status.success(), "fault at {at}: {}", run.stderr);
        // Near the end the crawl may finish before the next heartbeat notices.
        if at < LATE {
            assert!(
                run.stderr.contains("marked down"),
                "fault at {at}: the dead worker is noticed"
            );
        }
        c.assert_nothing_lost(at).await;
        assert_eq!(run.summary()["stopped"], "done");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_itemsaver_and_a_restart_lose_nothing() {
    for at in KILL_MOMENTS {
        let mut c = Cluster::start(2).await;
        let engine = c.engine();
        c.site.wait_for_hits(at).await;
        let port = c.saver.port();
        signal(c.saver.pid(), "KILL");
        // The crawl goes on (and slows) while the itemsaver is away.
        c.site.wait_for_hits((at + 5).min(PAGES as u64)).await;
        c.saver = start_itemsaver(c.dir.path(), port).await;
        let run = engine.wait().await;
        assert!(
            run.stderr.contains("not taking items") || run.stderr.contains("reconnected"),
            "fault at {at}: the crawl waited for the itemsaver, or reconnected to it"
        );
        assert!(run.status.success(), "fault at {at}: {}", run.stderr);
        c.assert_nothing_lost(at).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_engine_and_a_resume_lose_nothing() {
    for at in KILL_MOMENTS {
        let c = Cluster::start(2).await;
        let engine = c.engine();
        c.site.wait_for_hits(at).await;
        engine.kill9().await;
        assert!(
            c.dir.path().join("crawl.state").exists(),
            "the state survives a crash"
        );
        // The same command again carries on.
        let run = c.engine().wait().await;
        assert!(run.status.success(), "fault at {at}: {}", run.stderr);
        assert!(
            run.stderr.contains("resuming the unfinished crawl"),
            "fault at {at}: {}",
            run.stderr
        );
        c.assert_nothing_lost(at).await;
        assert!(
            !c.dir.path().join("crawl.state").exists(),
            "a finished crawl leaves no state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_routed_around() {
    for at in KILL_MOMENTS {
        let c = Cluster::start(2).await;
        let engine = c.engine();
        c.site.wait_for_hits(at).await;
        signal(c.workers[0].pid(), "STOP");
        // The crawl goes on without it (heartbeats mark it down), then it comes back.
        c.site.wait_for_hits((at + 8).min(PAGES as u64)).await;
        signal(c.workers[0].pid(), "CONT");
        let run = engine.wait().await;
        assert!(run.status.success(), "fault at {at}: {}", run.stderr);
        // Near the end the crawl may finish before three heartbeats are missed. (Rejoining
        // after a return is asserted where the crawl cannot finish without it, below.)
        if at < LATE {
            assert!(
                run.stderr.contains("missed 3 heartbeats"),
                "fault at {at}: the hung worker is noticed: {}",
                run.stderr
            );
        }
        c.assert_nothing_lost(at).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_the_state_resumes_without_refetching() {
    for at in KILL_MOMENTS {
        let c = Cluster::start(2).await;
        let engine = c.engine();
        c.site.wait_for_hits(at).await;
        signal(engine.pid(), "TERM");
        let stopped = engine.wait().await;
        assert!(
            stopped.status.success(),
            "a graceful stop exits 0: {}",
            stopped.stderr
        );
        let summary = stopped.summary();
        if at >= LATE && summary["stopped"] == "done" {
            // The signal came after the last page: nothing to resume.
            continue;
        }
        assert_eq!(summary["stopped"], "interrupted", "{summary}");
        assert!(summary["resumable_state"].is_string(), "{summary}");
        let run = c.engine().wait().await;
        assert!(run.status.success(), "fault at {at}: {}", run.stderr);
        assert_items_match_site(&export(&c.store()).await, &c.site);
        // Requests in flight were finished before stopping: no page is fetched twice.
        let twice: Vec<_> = c
            .site
            .hits()
            .into_iter()
            .filter(|(p, n)| *n > 1 && p != "/robots.txt")
            .collect();
        assert!(
            twice.is_empty(),
            "fault at {at}: fetched twice after a graceful stop: {twice:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_worker_down_the_crawl_waits_for_one_to_return() {
    let mut c = Cluster::start(1).await;
    let engine = c.engine();
    c.site.wait_for_hits(30).await;
    let only = c.workers.remove(0);
    let port = only.port();
    signal(only.pid(), "KILL");
    c.workers
        .push(Server::start_on("worker", &["--port", &port.to_string()], c.dir.path()).await);
    let run = engine.wait().await;
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("rejoining"),
        "the restarted worker rejoins: {}",
        run.stderr
    );
    c.assert_nothing_lost(30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_worker_returns_the_crawl_fails_and_keeps_its_state() {
    let mut c = Cluster::start(1).await;
    let mut args = c.engine_args();
    // A progress tick more often than the timeout must not keep restarting it.
    args.push("--no_workers_timeout=2".into());
    args.push("--progress_secs=1".into());
    let engine = EngineProc::spawn(c.dir.path(), &args);
    c.site.wait_for_hits(30).await;
    signal(c.workers.remove(0).pid(), "KILL");
    let run = engine.wait().await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("every worker went down"),
        "{}",
        errors[0]
    );
    assert!(
        c.dir.path().join("crawl.state").exists(),
        "the state is kept for a resume"
    );
    // With a worker back, the same command finishes the crawl.
    c.workers
        .push(Server::start("worker", &[], c.dir.path()).await);
    let run = c.engine().wait().await;
    assert!(run.status.success(), "{}", run.stderr);
    c.assert_nothing_lost(30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_drains_and_the_crawl_goes_on() {
    let mut c = Cluster::start(2).await;
    let engine = c.engine();
    c.site.wait_for_hits(40).await;
    let leaving = c.workers.remove(0);
    signal(leaving.pid(), "TERM");
    let status = leaving.wait_exit().await;
    assert!(status.success(), "a draining worker exits 0: {status:?}");
    let run = engine.wait().await;
    assert!(run.status.success(), "{}", run.stderr);
    c.assert_nothing_lost(40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_state_is_never_carried_on_by_another_crawl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestSite::start_slowly(60, Duration::from_millis(20))
        .await
        .expect("site a");
    let b = TestSite::start(10).await.expect("site b");
    let args = |site: &TestSite, store: &str| -> Vec<String> {
        [
            "--seed",
            &site.url("/"),
            "--store",
            store,
            "--state_sync_ms",
            "20",
        ]
        .map(String::from)
        .to_vec()
    };
    // A crawl of site A killed mid-crawl leaves its state in the working directory.
    let first = EngineProc::spawn(dir.path(), &args(&a, "a.db"));
    a.wait_for_hits(20).await;
    first.kill9().await;
    assert!(dir.path().join("default.state").exists());

    // A crawl of site B in the same directory is refused, in one line naming the state, the
    // crawl it holds and the choices; B is not fetched and nothing goes to b.db.
    let refused = spinneret_tests::binaries::run_engine(dir.path(), &args(&b, "b.db")).await;
    assert!(!refused.status.success(), "{}", refused.stderr);
    let line = refused
        .stderr
        .lines()
        .find(|l| l.contains("holds an unfinished crawl"))
        .unwrap_or_else(|| panic!("no refusal: {}", refused.stderr));
    for part in [
        "default.state",
        &a.url("/"),
        "a.db",
        "--resume",
        "--fresh",
        "--state DIR",
    ] {
        assert!(line.contains(part), "{part:?} not in: {line}");
    }
    assert!(b.hits().is_empty(), "site B was fetched");
    assert!(!dir.path().join("b.db").exists(), "b.db was written");

    // --resume carries crawl A on as it was, into a.db, whatever the other flags say, and
    // says first what it resumes and how much is left.
    let mut resume = args(&b, "b.db");
    resume.push("--resume".into());
    let resumed = EngineProc::spawn(dir.path(), &resume).wait().await;
    assert!(resumed.status.success(), "{}", resumed.stderr);
    let first_line = resumed.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.contains("resuming the unfinished crawl of task \"default\"")
            && first_line.contains(&a.url("/"))
            && first_line.contains("requests left"),
        "{}",
        resumed.stderr
    );
    assert!(b.hits().is_empty(), "site B was fetched");
    assert!(!dir.path().join("b.db").exists(), "b.db was written");
    assert_items_match_site(&export(&dir.path().join("a.db")).await, &a);

    // With the state gone, B crawls alone into b.db.
    let fresh = spinneret_tests::binaries::run_engine(dir.path(), &args(&b, "b.db")).await;
    assert!(fresh.status.success(), "{}", fresh.stderr);
    assert_items_match_site(&export(&dir.path().join("b.db")).await, &b);
}
