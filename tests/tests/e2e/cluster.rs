//! Cluster mode: several engines on one crawl over a real `redis-server`, with workers and an
//! itemsaver that register themselves.

use crate::cluster_harness::{
    agree, half_past_midnight, schedule, scheduled_engine, with_scheduled_pair,
};
use spinneret_tests::admin::{AdminEngine, WAIT};
use spinneret_tests::binaries::{
    EngineProc, EngineRun, Server, assert_each_page_fetched_once, assert_items_match_site,
    closed_port, export, signal,
};
use spinneret_tests::cluster::{
    Backend, Cluster, PAGES, TOKEN, assert_crawled_despite_a_fault,
    assert_each_slow_page_fetched_once_or_twice, assert_fetched_times, bulk_strings,
    capture_server, commands_per_sec, engines, every_key_but, leader_and_follower, leader_pid,
    pages_ok, slow_pages, statuses, two_engines_crawl_slow_pages, two_engines_on_a_slow_site,
    until_answered, view_of, wait_for_engines, wait_for_leader, wait_for_workers,
};
use spinneret_tests::hostile::{HostileServer, SLOW_PAGE_LATENCY};
use spinneret_tests::redis::RedisServer;
use spinneret_tests::{TestSite, eventually_every};
use std::path::Path;
use std::time::Duration;

/// Redis commands a second an idle engine of a finished serving crawl may send (the
/// issue's goal). Measured 2.5: a status read a second, one round (heartbeat, leader lease
/// and the leader's chores in one script), and a worker registry read every two seconds.
const IDLE_COMMANDS_PER_SEC: f64 = 5.0;

/// Redis commands per page two engines of a `--delay 1000` crawl of one host may send (the
/// issue's goal).
const SLOW_COMMANDS_PER_PAGE: f64 = 15.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_one_crawl_and_fetch_each_page_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    two_engines_share_a_crawl(&cluster, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_one_crawl_on_a_redis_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::on_redis_cluster(dir.path()).await;
    two_engines_share_a_crawl(&cluster, dir.path()).await;
    // One hash tag per crawl: its keys all sit on one master.
    let Backend::Cluster(redis) = &cluster.backend else {
        unreachable!("started on a cluster")
    };
    let mut holding = 0;
    for node in &redis.nodes {
        let reply = node.command("DBSIZE").await;
        let keys: u64 = reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .expect("DBSIZE");
        let crawl = node.command("EXISTS {spinneret:shared}:done").await;
        if crawl.trim() == ":1" {
            holding += 1;
            assert!(
                keys > 10,
                "the crawl's keys are on the node that has its end: {keys}"
            );
        }
    }
    assert_eq!(holding, 1, "one master holds the crawl");
}

/// Two engines, two registered workers and an itemsaver crawl the test site: every page
/// fetched once, every item stored once, both engines take a share and exit 0.
async fn two_engines_share_a_crawl(cluster: &Cluster, dir: &Path) {
    // Slow pages, three at a time: the crawl lasts a couple of seconds, long enough for both
    // engines to take a share.
    let site = TestSite::start_slowly(PAGES, Duration::from_millis(100))
        .await
        .expect("site");
    // The joining engine starts first: it waits for the crawl to be started and seeded.
    let b = cluster.engine(dir, "shared", &[]);
    let a = cluster.engine(
        dir,
        "shared",
        &["--seed".into(), site.url("/"), "--per_host=3".into()],
    );
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");

    assert_each_page_fetched_once(&site);
    assert_items_match_site(&export(&cluster.store).await, &site);
    let pages = site.site.ok_paths().len() as u64;
    assert!(
        pages_ok(&a) > 0 && pages_ok(&b) > 0,
        "both engines take a share: {} and {}\nengine b:\n{}",
        pages_ok(&a),
        pages_ok(&b),
        b.stderr
    );
    assert_eq!(
        pages_ok(&a) + pages_ok(&b),
        pages,
        "every page once, in all"
    );
    // The engine that led at the end adds up the whole crawl.
    let totals: Vec<&serde_json::Value> = [&a, &b]
        .iter()
        .filter_map(|r| r.summary().get("cluster"))
        .collect();
    assert_eq!(
        totals.len(),
        1,
        "one leader's summary has the cluster's totals"
    );
    assert_eq!(
        totals[0]["engines"], 2,
        "engine a:\n{}\nengine b:\n{}",
        a.stderr, b.stderr
    );
    assert_eq!(totals[0]["pages_ok"], pages);
    assert_eq!(totals[0]["items_saved"], pages);
    assert!(a.stdout.contains("the whole cluster") || b.stdout.contains("the whole cluster"));
    // Every URL the crawl met: those fetched (robots.txt files are not the crawl's own) and
    // those robots.txt kept it from.
    let disallowed: u64 = [&a, &b]
        .iter()
        .filter_map(|r| r.summary()["skipped"]["robots_disallowed"].as_u64())
        .sum();
    let urls = site.site.polite_crawl_paths().len() as u64 - 1 + disallowed;
    for run in [&a, &b] {
        assert_eq!(run.summary()["stopped"], "done");
        let workers = run.summary()["workers"].as_array().expect("workers").len();
        assert_eq!(workers, 2, "both registered workers were found");
        assert_eq!(run.summary()["urls_seen"], urls, "the crawl's URLs seen");
    }
    assert_eq!(cluster.workers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_cluster_engine_waits_for_its_requests_instead_of_turning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::with_workers(dir.path(), 1).await;
    let site = TestSite::start_slowly(40, Duration::from_millis(50))
        .await
        .expect("site");
    // Every slot taken most of the time: the loop must wait for a request to end, not for
    // a claim time already past.
    let args = [
        "--seed".to_owned(),
        site.url("/"),
        "--concurrency=2".to_owned(),
        "--per_host=4".to_owned(),
    ];
    let run = cluster
        .engine(dir.path(), "busy", &args)
        .wait()
        .await
        .succeeded("the engine");
    let summary = run.summary();
    let pages = summary["pages_ok"].as_f64().unwrap_or(0.0) + 1.0;
    let secs = summary["elapsed_secs"].as_f64().unwrap_or(0.0);
    let turns = summary["loop_turns"].as_f64().unwrap_or(0.0);
    // Each page is a few events (its lease, its answer, its settle, its items' ack), and
    // ticks come ten times a second and publishing a few times.
    let bound = 12.0 * pages + 40.0 * secs;
    eprintln!("{turns} loop turns for {pages} pages in {secs:.1} s (bound {bound:.0})");
    assert!(
        turns <= bound,
        "{turns} loop turns for {pages} pages in {secs:.1} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_back_off_a_throttling_host_as_one_engine_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let server = HostileServer::start(Default::default())
        .await
        .expect("server");
    let polite = [
        "--per_host=1".to_owned(),
        "--max_backoff=1".to_owned(),
        "--retries=1".to_owned(),
    ];
    let mut first: Vec<String> = (0..4)
        .flat_map(|i| ["--seed".to_owned(), server.url(&format!("/always-429/{i}"))])
        .collect();
    first.extend_from_slice(&polite);
    let b = cluster.engine(dir.path(), "throttled", &polite);
    let a = cluster.engine(dir.path(), "throttled", &first);
    a.wait().await.succeeded("engine a");
    b.wait().await.succeeded("engine b");
    let mut starts: Vec<_> = server
        .log()
        .into_iter()
        .filter(|h| h.path.starts_with("/always-429/"))
        .map(|h| h.start)
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 8, "four pages, each tried twice");
    // Each 429 doubles the host's one back-off, whichever engine got it: 250 ms, 500 ms,
    // then the 1 s bound (with engines of their own back-offs it grew half as fast).
    for (i, pair) in starts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let backoff = Duration::from_millis(250 << i.min(2));
        assert!(
            gap >= backoff.mul_f64(0.9),
            "request {} came {gap:?} after the one before, within the back-off of {backoff:?}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_fetch_at_most_max_pages_between_them() {
    two_engines_keep_to_a_page_budget("--max_pages=20").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_fetch_at_most_max_pages_per_host_between_them() {
    two_engines_keep_to_a_page_budget("--max_pages_per_host=20").await;
}

/// Two engines crawl a one-host site of 60 pages with a budget of 20 pages (`budget`):
/// exactly 20 are fetched between them, robots.txt aside, each counted by one engine.
async fn two_engines_keep_to_a_page_budget(budget: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    // Slow enough that both engines hold pages of the task at once.
    let site = TestSite::start_slowly(60, Duration::from_millis(50))
        .await
        .expect("site");
    let flags = [budget.to_owned(), "--per_host=4".to_owned()];
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&flags);
    let b = cluster.engine(dir.path(), "budget", &flags);
    let a = cluster.engine(dir.path(), "budget", &first);
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");
    let pages: u64 = site
        .hits()
        .iter()
        .filter(|(path, _)| path.as_str() != "/robots.txt")
        .map(|(_, n)| n)
        .sum();
    assert!(
        pages <= 20,
        "{pages} pages fetched for {budget}: {:?}",
        site.hits()
    );
    let ended = |run: &EngineRun| {
        pages_ok(run)
            + run.summary()["pages_failed"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
    };
    assert_eq!(ended(&a) + ended(&b), pages);
    assert_eq!(pages, 20, "the budget was spent, once");
    if budget.starts_with("--max_pages=") {
        // As one engine ends a capped crawl: what is left stays queued, counted, unsent.
        for run in [&a, &b] {
            let summary = run.summary();
            assert_eq!(summary["stopped"], "max_pages", "{summary}");
            assert!(
                summary["left_in_queue"].as_u64().unwrap_or(0) > 0,
                "{summary}"
            );
            assert!(
                summary["skipped"].get("task_max_pages").is_none(),
                "{summary}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_send_few_redis_commands_when_little_happens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    // Idle: two serving engines after a three-page crawl, for ten seconds.
    let site = TestSite::start(3).await.expect("site");
    let serve = ["--serve".to_owned()];
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&serve);
    let a = AdminEngine::start(dir.path(), &cluster.flags("idle", &first), None).await;
    let b = AdminEngine::start(dir.path(), &cluster.flags("idle", &serve), None).await;
    let crawled = tokio::time::timeout(
        Duration::from_secs(30),
        site.wait_for_hits(site.site.polite_crawl_paths().len() as u64),
    )
    .await;
    assert!(crawled.is_ok(), "not crawled: {:?}", site.hits());
    // Idle from when both engines see the crawl done: the commands each sends in ten
    // seconds, by its own count. (The measurement is the wait: there is no event to wait
    // for.)
    let sent = |status: &serde_json::Value| status["redis_commands"].as_u64().unwrap_or(0);
    let done = |s: &serde_json::Value| s["tasks"][0]["state"] == "done";
    let before = [
        a.wait_for("done", done).await,
        b.wait_for("done", done).await,
    ];
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = [a.get("/api/status").await, b.get("/api/status").await];
    let secs = started.elapsed().as_secs_f64();
    let idle = (0..2)
        .map(|i| (sent(&after[i]) - sent(&before[i])) as f64 / secs)
        .fold(0.0, f64::max);
    // The follower first: the leader then finds its figures for the totals at once.
    let b = b.stop().await.succeeded("engine b");
    let a = a.stop().await.succeeded("engine a");
    let life = commands_per_sec(&[&a, &b]);
    // Slow: two engines on one host that may be sent one request a second.
    let slow = TestSite::start(8).await.expect("site");
    let delay = ["--delay=1000".to_owned()];
    let mut first = vec!["--seed".to_owned(), slow.url("/")];
    first.extend_from_slice(&delay);
    let b = cluster.engine(dir.path(), "slow", &delay);
    let a = cluster.engine(dir.path(), "slow", &first);
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");
    let fetched: u64 = slow.hits().values().sum();
    let commands = a.summary()["redis_commands"].as_f64().unwrap_or(0.0)
        + b.summary()["redis_commands"].as_f64().unwrap_or(0.0);
    let per_page = commands / fetched as f64;
    eprintln!(
        "redis commands: {idle:.1} a second per idle engine at most ({life:.1} over their lives, start and crawl included); {per_page:.1} per page fetched with --delay 1000 ({fetched} requests)"
    );
    assert!(
        idle <= IDLE_COMMANDS_PER_SEC,
        "{idle:.1} commands a second per idle engine"
    );
    assert!(
        per_page <= SLOW_COMMANDS_PER_PAGE,
        "{per_page:.1} commands per page with --delay 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn politeness_holds_across_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let polite = ["--per_host=2".to_owned(), "--delay=100".to_owned()];
    let (server, _) =
        two_engines_crawl_slow_pages(&cluster, dir.path(), "polite", 12, &polite).await;
    // Every slow page is answered (in SLOW_PAGE_LATENCY): the overlap is exact.
    let overlap = server.max_concurrency(SLOW_PAGE_LATENCY);
    assert!(
        overlap <= 2,
        "--per_host 2 across engines, yet {overlap} overlapped"
    );
    let starts: Vec<_> = server
        .log()
        .iter()
        .filter(|h| h.path.starts_with("/slow/"))
        .map(|h| h.start)
        .collect();
    assert_eq!(starts.len(), 12, "each page once");
    // Arrival times jitter on two shared cores: the spacing shows in the span.
    let span = *starts.iter().max().expect("last") - *starts.iter().min().expect("first");
    let least = Duration::from_millis(100 * 11 * 9 / 10);
    assert!(
        span >= least,
        "12 requests 100 ms apart take at least {least:?}; they took {span:?}"
    );

    // Without a delay, the in-flight limit is what binds: reached, and never passed, by two
    // engines at once (forty pages two at a time last two seconds: both take a share).
    let per_host = ["--per_host=2".to_owned()];
    let (server, joined) =
        two_engines_crawl_slow_pages(&cluster, dir.path(), "busy", 40, &per_host).await;
    assert!(joined > 0, "the joining engine took a share");
    assert_eq!(
        server.max_concurrency(SLOW_PAGE_LATENCY),
        2,
        "--per_host 2 across two engines"
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Leader,
    Follower,
}

async fn an_engine_killed_mid_crawl(victim: Victim) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let (site, a, b) = two_engines_on_a_slow_site(&cluster, dir.path(), "failover").await;
    site.wait_for_hits(15).await;
    let leader = leader_pid(cluster.server(), "failover")
        .await
        .expect("a leader");
    let a_leads = a.pid() == leader;
    let (doomed, survivor) = if a_leads == (victim == Victim::Leader) {
        (a, b)
    } else {
        (b, a)
    };
    doomed.kill9().await;
    if victim == Victim::Leader {
        let took = wait_for_leader(cluster.server(), "failover", |p| {
            p.is_some_and(|p| p != leader)
        })
        .await;
        assert!(
            took < Duration::from_secs(10),
            "a follower led after {took:?}"
        );
    }
    let survivor = survivor.wait().await.succeeded("the surviving engine");
    assert_eq!(survivor.summary()["stopped"], "done");
    assert_crawled_despite_a_fault(&site, &cluster.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_survives_its_leader_killed() {
    an_engine_killed_mid_crawl(Victim::Leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_survives_a_follower_killed() {
    an_engine_killed_mid_crawl(Victim::Follower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_steps_down_and_leader_effects_happen_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let (site, a, b) = two_engines_on_a_slow_site(&cluster, dir.path(), "paused").await;
    site.wait_for_hits(10).await;
    let leader = leader_pid(cluster.server(), "paused")
        .await
        .expect("a leader");
    signal(leader, "STOP");
    // Past its leader lease (6 s): another engine takes over.
    let took = wait_for_leader(cluster.server(), "paused", |p| {
        p.is_some_and(|p| p != leader)
    })
    .await;
    signal(leader, "CONT");
    assert!(
        took < Duration::from_secs(10),
        "a follower led after {took:?}"
    );
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");
    let logs = format!("{}{}", a.stderr, b.stderr);
    assert_eq!(
        logs.matches("crawl seeded").count(),
        1,
        "seeded once:\n{logs}"
    );
    assert_eq!(
        logs.matches("another engine leads the crawl now").count(),
        1,
        "the paused leader stepped down:\n{logs}"
    );
    for run in [&a, &b] {
        assert_eq!(run.summary()["stopped"], "done");
    }
    assert_crawled_despite_a_fault(&site, &cluster.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_survives_redis_killed_and_restarted_from_its_aof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path()).await;
    let (site, a, b) = two_engines_on_a_slow_site(&cluster, dir.path(), "outage").await;
    site.wait_for_hits(20).await;
    cluster.redis().kill9().await;
    // Down for a moment while pages are in flight; then back from its append-only file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.redis().restart().await;
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");
    for run in [&a, &b] {
        assert_eq!(run.summary()["stopped"], "done");
    }
    assert!(
        format!("{}{}", a.stderr, b.stderr).contains("redis is back"),
        "the outage was noticed"
    );
    assert_crawled_despite_a_fault(&site, &cluster.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_robots_read_fails_keeps_its_requests_and_the_host_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let redis = cluster.server();
    let site = TestSite::start_slowly(20, Duration::from_millis(100))
        .await
        .expect("site");
    let flags = ["--per_host=1".to_owned(), "--lease_secs=2".to_owned()];
    // An engine fetches the host's robots.txt and some pages, then dies.
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&flags);
    let a = cluster.engine(dir.path(), "robotsread", &first);
    site.wait_for_hits(5).await;
    a.kill9().await;
    // The next engine's user may read every key but the crawl's robots.txt records (a
    // pattern must grant both to a script's keys, which are read and written): its claims
    // succeed, then the read of the host's rules fails.
    let robots_key = "{spinneret:robotsread}:robots";
    let reads: Vec<String> = every_key_but(robots_key)
        .into_iter()
        .map(|p| format!("%RW~{p}"))
        .collect();
    let set = redis
        .command(&format!(
            "ACL SETUSER cut on >pw +@all &* %W~{robots_key} {}",
            reads.join(" ")
        ))
        .await;
    assert!(set.starts_with("+OK"), "{set}");
    redis.command("ACL LOG RESET").await;
    let mut args = vec![
        "--redis".to_owned(),
        format!("redis://cut:pw@127.0.0.1:{}/0", redis.port),
        "--crawl".to_owned(),
        "robotsread".to_owned(),
    ];
    args.extend_from_slice(&flags);
    let b = EngineProc::spawn(dir.path(), &args);
    // The ACL log has no event to wait on.
    eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the engine to read the robots.txt records",
        || async {
            let log = redis.command("ACL LOG").await;
            if log.contains(robots_key) {
                Ok(())
            } else {
                Err(log.replace("\r\n", " "))
            }
        },
    )
    .await;
    let healed = tokio::time::Instant::now();
    let set = redis.command("ACL SETUSER cut resetkeys ~*").await;
    assert!(set.starts_with("+OK"), "{set}");
    let b = b.wait().await.succeeded("the engine whose read failed");
    assert_eq!(b.summary()["stopped"], "done");
    assert!(
        healed.elapsed() < Duration::from_secs(20),
        "the host was held for {:?} after the read came back",
        healed.elapsed()
    );
    assert!(
        b.stderr.contains("could not read robots.txt records"),
        "{}",
        b.stderr
    );
    assert_crawled_despite_a_fault(&site, &cluster.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_workers_join_and_leave_every_engines_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::with_workers(dir.path(), 1).await;
    let site = TestSite::start_slowly(PAGES, Duration::from_millis(100))
        .await
        .expect("site");
    // Serving engines stay up after the crawl, so their pools can be watched to the end.
    let flags = ["--per_host=2".to_owned(), "--serve".to_owned()];
    let b = AdminEngine::start(dir.path(), &cluster.flags("pool", &flags), None).await;
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&flags);
    let a = AdminEngine::start(dir.path(), &cluster.flags("pool", &first), None).await;
    site.wait_for_hits(5).await;

    let url = cluster.url.clone();
    let late = Server::start("worker", &["--redis", &url], dir.path()).await;
    let late_addr = late.addr.clone();
    let took = tokio::time::Instant::now();
    for e in [&a, &b] {
        wait_for_workers(e, "the late worker to join", |list| {
            list.iter().any(|w| w["addr"] == late_addr.as_str())
        })
        .await;
    }
    wait_for_workers(&a, "the late worker to get requests", |list| {
        list.iter()
            .any(|w| w["addr"] == late_addr.as_str() && w["requests"].as_u64() > Some(0))
    })
    .await;
    assert!(
        took.elapsed() < Duration::from_secs(10),
        "joined after {:?}",
        took.elapsed()
    );

    // Killed (SIGKILL on drop): it leaves both pools once its registration expires.
    let first_worker = cluster.workers.remove(0);
    let gone = first_worker.addr.clone();
    drop(first_worker);
    for e in [&a, &b] {
        wait_for_workers(e, "the killed worker to leave", |list| {
            list.iter().all(|w| w["addr"] != gone.as_str())
        })
        .await;
    }
    a.wait_for("the crawl to finish", |s| {
        s["state"] == "idle" && s["queued"] == 0
    })
    .await;
    let a = a.stop().await.succeeded("engine a");
    let b = b.stop().await.succeeded("engine b");
    assert_eq!(
        pages_ok(&a) + pages_ok(&b),
        site.site.ok_paths().len() as u64
    );
    assert_crawled_despite_a_fault(&site, &cluster.store).await;
    drop(late);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_through_a_follower_apply_once_on_every_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start_slowly(PAGES, Duration::from_millis(200))
        .await
        .expect("site");
    let other = TestSite::start_slowly(30, Duration::from_millis(100))
        .await
        .expect("second site");
    let flags = ["--per_host=2".to_owned(), "--serve".to_owned()];
    // With a token: forwarded changes are signed with it, and the leader checks them.
    let one = AdminEngine::start(dir.path(), &cluster.flags("admin", &flags), Some(TOKEN)).await;
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&flags);
    let two = AdminEngine::start(dir.path(), &cluster.flags("admin", &first), Some(TOKEN)).await;
    let list = wait_for_engines(&one, "two engines, one leading", |l| {
        l.len() == 2 && l.iter().filter(|e| e["role"] == "leader").count() == 1
    })
    .await;
    let (leader, follower) = if view_of(&list, &one)["role"] == "leader" {
        (one, two)
    } else {
        (two, one)
    };
    site.wait_for_hits(5).await;

    // A task added through the follower runs once, on both engines; a repeat of the change
    // (same idempotency key) gets the first answer and changes nothing.
    let body = format!(r#"{{"name": "second", "seeds": ["{}"]}}"#, other.url("/"));
    let added = follower
        .call_with_key("POST", "/api/tasks", &body, "add-second")
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let again = follower
        .call_with_key("POST", "/api/tasks", &body, "add-second")
        .await;
    assert_eq!(
        (again.status, &again.json),
        (201, &added.json),
        "answered as before"
    );
    for e in [&leader, &follower] {
        e.wait_for("the new task on every engine", |s| {
            s["tasks"]
                .as_array()
                .is_some_and(|t| t.iter().filter(|t| t["name"] == "second").count() == 1)
        })
        .await;
    }

    // Pausing the follower freezes its share while the leader goes on.
    let id = view_of(&engines(&leader).await, &follower)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let paused = follower
        .call("POST", &format!("/api/engines/{id}/pause"), None, true)
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let list = wait_for_engines(&leader, "the follower paused", |l| {
        view_of(l, &follower)["state"] == "paused"
    })
    .await;
    // Its requests in flight finish; then it sends nothing more.
    let frozen = view_of(&list, &follower)["dispatched"]
        .as_u64()
        .expect("dispatched");
    let leader_before = view_of(&list, &leader)["dispatched"]
        .as_u64()
        .expect("dispatched");
    wait_for_engines(&leader, "the leader to go on", |l| {
        view_of(l, &leader)["dispatched"].as_u64() >= Some(leader_before + 10)
    })
    .await;
    let list = engines(&leader).await;
    assert_eq!(
        view_of(&list, &follower)["dispatched"].as_u64(),
        Some(frozen),
        "a paused engine claims nothing"
    );

    // Draining it (through itself, so the change is forwarded) makes it exit 0.
    let drained = follower
        .call("DELETE", &format!("/api/engines/{id}"), None, true)
        .await;
    assert_eq!(drained.status, 202, "{}", drained.text);
    let drained = follower.wait().await.succeeded("the drained engine");
    assert_eq!(drained.summary()["stopped"], "drained");

    // The leader finishes both tasks alone: every page of both sites once, their items kept.
    leader
        .wait_for("the crawl to finish", |s| {
            s["state"] == "idle" && s["queued"] == 0
        })
        .await;
    let leader_run = leader.stop().await.succeeded("the leader");
    for s in [&site, &other] {
        assert_each_page_fetched_once(s);
    }
    let items = export(&cluster.store).await;
    let (own, second): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i["task"] != "second");
    assert_items_match_site(&own, &site);
    assert_items_match_site(&second, &other);
    let pages = |run: &EngineRun| pages_ok(run);
    assert_eq!(
        pages(&drained) + pages(&leader_run),
        (site.site.ok_paths().len() + other.site.ok_paths().len()) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_forwarded_to_a_false_leader_address_carries_no_token_and_is_applied_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start(10).await.expect("site");
    let (leader, follower) =
        leader_and_follower(&cluster, dir.path(), "capture", &site, [TOKEN; 2]).await;
    // Whoever can write to Redis (every worker and itemsaver can) points the leader's admin
    // address at a server of their own. The leader is held still so that its heartbeat does
    // not write its address back before the change is sent.
    let (capture, seen) = capture_server().await;
    let lease = cluster
        .server()
        .command("GET {spinneret:capture}:leader")
        .await;
    let engine = lease
        .lines()
        .nth(1)
        .and_then(|l| l.rsplit_once(':'))
        .map(|(engine, _)| engine.to_owned())
        .expect("a leader lease");
    signal(leader.pid(), "STOP");
    cluster
        .server()
        .command(&format!(
            "HSET {{spinneret:capture}}:node:{engine} addr {capture}"
        ))
        .await;
    let body = format!(
        r#"{{"name": "stolen", "seeds": ["{}"]}}"#,
        site.url("/more")
    );
    let answer = follower
        .call_with_key("POST", "/api/tasks", &body, "add-stolen")
        .await;
    signal(leader.pid(), "CONT");
    // The false leader's answer is not taken: it lacks the crawl's signature.
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert!(answer.text.contains("signature"), "{}", answer.text);
    let seen = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(
        seen.starts_with("POST /api/tasks"),
        "the change went to the false address: {seen:?} ({answer:?})"
    );
    assert!(
        !seen.contains(TOKEN) && !seen.to_ascii_lowercase().contains("authorization"),
        "the admin token stays with the engine it was given to: {seen}"
    );
    assert!(
        seen.contains("x-spinneret-signature: t="),
        "it is signed instead: {seen}"
    );
    // The leader, back, writes its own address again in its next round; the change was
    // applied on neither engine.
    let own = leader.base.trim_start_matches("http://").to_owned();
    let node = format!("HGET {{spinneret:capture}}:node:{engine} addr");
    // Its round comes once a second: there is no event to wait on.
    eventually_every(
        WAIT,
        Duration::from_millis(100),
        "the leader's heartbeat to come back",
        || async { cluster.server().command(&node).await.contains(&own) },
    )
    .await;
    for e in [&leader, &follower] {
        let tasks = e.get("/api/tasks").await;
        assert!(
            !tasks.to_string().contains("stolen"),
            "applied nowhere: {tasks}"
        );
    }
    leader.stop().await;
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_forwarded_by_an_engine_with_another_admin_token_is_refused_saying_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start(10).await.expect("site");
    let tokens = [TOKEN, "another-token-another-token"];
    let (leader, follower) =
        leader_and_follower(&cluster, dir.path(), "mixed", &site, tokens).await;
    let body = format!(
        r#"{{"name": "second", "seeds": ["{}"]}}"#,
        site.url("/more")
    );
    let answer = follower
        .call_with_key("POST", "/api/tasks", &body, "add-second")
        .await;
    // The leader refuses it, and its refusal, unsigned by the follower's token, is shown as
    // what it said.
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert!(
        answer.json["error"].as_str().is_some_and(
            |e| e.contains("answered 401") && e.contains("signed with another --admin_token")
        ),
        "{}",
        answer.text
    );
    // The leader says so too (its log is read as it comes: bounded polling).
    eventually_every(
        WAIT,
        Duration::from_millis(20),
        "the leader to log the refusal",
        || async {
            let logs = leader.logs();
            if logs.contains("refused a forwarded change") {
                Ok(())
            } else {
                Err(format!("its log:\n{logs}"))
            }
        },
    )
    .await;
    // Straight to the leader with its own token, the change is applied.
    let direct = leader
        .call_with_key("POST", "/api/tasks", &body, "add-second-direct")
        .await;
    assert_eq!(direct.status, 201, "{}", direct.text);
    leader.stop().await;
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_tasks_requests_stay_queued_unclaimed_and_are_counted_per_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start_slowly(20, Duration::from_millis(300))
        .await
        .expect("site");
    let flags = [
        "--serve".to_owned(),
        "--seed".to_owned(),
        site.url("/"),
        "--per_host=1".to_owned(),
    ];
    let engine = AdminEngine::start(dir.path(), &cluster.flags("paused", &flags), None).await;
    site.wait_for_hits(3).await;
    engine.change("POST", "/api/tasks/1/pause", None, 200).await;
    // Its links stay queued in Redis, counted for the task, and nothing of it is claimed
    // and put back.
    engine
        .wait_for("the paused task's queue, counted", |s| {
            s["tasks"][0]["state"] == "paused"
                && s["tasks"][0]["in_flight"] == 0
                && s["tasks"][0]["queued"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let hits = site.hits();
    let redis = cluster.server();
    for _ in 0..10 {
        assert_eq!(
            redis.command("ZCARD {spinneret:paused}:deferred").await,
            ":0\r\n",
            "a paused task's request was claimed and put back"
        );
        assert_eq!(
            redis.command("ZCARD {spinneret:paused}:leases").await,
            ":0\r\n",
            "a paused task's request was claimed"
        );
        // Sampled over two seconds: there is no event for "not claimed".
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(site.hits(), hits, "nothing fetched while paused");
    // What the API shows is what Redis counts for the task (the links of the pages in
    // flight at the pause arrive with their completions, so the count is read after).
    let in_redis = redis
        .command("HGET {spinneret:paused}:task_queued default")
        .await;
    let queued: u64 = bulk_strings(&in_redis)
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(queued > 0, "{in_redis:?}");
    engine
        .wait_for("the task's queued figure, as Redis has it", |s| {
            s["tasks"][0]["queued"] == queued
        })
        .await;
    // Resumed, it runs to the end.
    engine
        .change("POST", "/api/tasks/1/resume", None, 200)
        .await;
    engine
        .wait_for("the crawl to finish", |s| {
            s["tasks"][0]["state"] == "done" && s["tasks"][0]["queued"] == 0
        })
        .await;
    engine.stop().await.succeeded("the engine");
    assert_each_page_fetched_once(&site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tasks_pages_are_all_fetched_whichever_engine_claims_them_first() {
    const TASKS: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let first_site = TestSite::start(5).await.expect("site");
    let flags = ["--per_host=2".to_owned(), "--serve".to_owned()];
    let mut seeded = vec!["--seed".to_owned(), first_site.url("/")];
    seeded.extend_from_slice(&flags);
    let crawlers = [
        AdminEngine::start(dir.path(), &cluster.flags("newtasks", &seeded), None).await,
        AdminEngine::start(dir.path(), &cluster.flags("newtasks", &flags), None).await,
        AdminEngine::start(dir.path(), &cluster.flags("newtasks", &flags), None).await,
    ];
    let list = wait_for_engines(&crawlers[0], "three engines, one leading", |l| {
        l.len() == 3 && l.iter().filter(|e| e["role"] == "leader").count() == 1
    })
    .await;
    let follower = crawlers
        .iter()
        .find(|e| view_of(&list, e)["role"] != "leader")
        .expect("a follower");
    let follower_base = follower.base.clone();
    // Each task's seeds may be claimed by an engine that has not read of the task yet: its
    // pages wait for the news instead of going out with nowhere to put their links.
    for i in 0..TASKS {
        let site = TestSite::start(8).await.expect("site");
        let body = format!(r#"{{"name": "t{i}", "seeds": ["{}"]}}"#, site.url("/"));
        let added = follower
            .call_with_key("POST", "/api/tasks", &body, &format!("add-t{i}"))
            .await;
        assert_eq!(added.status, 201, "{}", added.text);
        let every = site.site.polite_crawl_paths();
        let all = tokio::time::timeout(
            Duration::from_secs(20),
            site.wait_for_hits(every.len() as u64),
        )
        .await;
        let got: std::collections::BTreeSet<String> = site.hits().keys().cloned().collect();
        assert!(
            all.is_ok() && got == every,
            "task t{i}: fetched {got:?} of {every:?}"
        );
    }
    // An engine drained out of a crawl that is done says it was drained.
    let list = engines(&crawlers[0]).await;
    let id = view_of(&list, follower)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let drained = follower
        .call("DELETE", &format!("/api/engines/{id}"), None, false)
        .await;
    assert_eq!(drained.status, 202, "{}", drained.text);
    let [a, b, c] = crawlers;
    for e in [a, b, c] {
        if e.base == follower_base {
            let run = e.wait().await.succeeded("the drained engine");
            assert_eq!(run.summary()["stopped"], "drained");
        } else {
            e.stop().await.succeeded("an engine");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_redis_refused_or_did_not_answer_is_applied_nowhere_and_a_retry_lands_once()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start_with_debug().await;
    let url = redis.url();
    let cluster = Cluster::on(Backend::Server(Box::new(redis)), url, dir.path(), 1).await;
    let site = TestSite::start(5).await.expect("site");
    let other = TestSite::start(5).await.expect("site");
    let flags = ["--serve".to_owned()];
    let mut seeded = vec!["--seed".to_owned(), site.url("/")];
    seeded.extend_from_slice(&flags);
    let one = AdminEngine::start(dir.path(), &cluster.flags("fenced", &seeded), None).await;
    let two = AdminEngine::start(dir.path(), &cluster.flags("fenced", &flags), None).await;
    let list = wait_for_engines(&one, "two engines, one leading", |l| {
        l.len() == 2 && l.iter().filter(|e| e["role"] == "leader").count() == 1
    })
    .await;
    let leader = if view_of(&list, &one)["role"] == "leader" {
        &one
    } else {
        &two
    };
    let body = |name: &str, site: &TestSite| {
        format!(r#"{{"name": "{name}", "seeds": ["{}"]}}"#, site.url("/"))
    };
    let added = leader
        .call_with_key("POST", "/api/tasks", &body("first", &other), "add-first")
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let first_id = added.json["id"].as_u64().expect("id");
    let redis = cluster.server();
    agree(redis, leader, "after an add").await;

    // Refused: another engine's epoch holds the leader lease when the change is written.
    let taken = redis
        .command("SET {spinneret:fenced}:leader someone-else:999999 PX 3000")
        .await;
    assert!(taken.starts_with("+OK"), "{taken}");
    let refused = leader
        .call_with_key("POST", "/api/tasks", &body("second", &other), "add-second")
        .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    let held = agree(redis, leader, "after a refused add").await;
    assert!(!held.iter().any(|(n, _)| n == "second"), "{held:?}");
    until_answered(
        leader,
        "POST",
        "/api/tasks",
        &body("second", &other),
        "add-second",
        201,
    )
    .await;

    // Unanswered: Redis freezes past the leader's patience during an add and a close.
    let frozen = redis.send("DEBUG SLEEP 12").await;
    let close = format!("/api/tasks/{first_id}");
    let third = body("third", &other);
    let fourth = body("fourth", &other);
    let (post, delete, unkeyed) = tokio::join!(
        leader.call_with_key("POST", "/api/tasks", &third, "add-third"),
        leader.call_with_key("DELETE", &close, "", "close-first"),
        // Without a key the change goes straight to the crawl loop, whose write Redis
        // does not answer in time.
        leader.call("POST", "/api/tasks", Some(&fourth), false),
    );
    drop(frozen);
    assert_eq!(post.status, 503, "{}", post.text);
    assert_eq!(delete.status, 503, "{}", delete.text);
    assert_eq!(unkeyed.status, 503, "{}", unkeyed.text);
    assert!(
        unkeyed.text.contains("may not have been recorded"),
        "{}",
        unkeyed.text
    );
    let held = agree(redis, leader, "after changes redis did not answer").await;
    // Retries with the same keys land each change once, whichever engine leads now.
    let leads = |list: &[serde_json::Value], e: &AdminEngine| view_of(list, e)["role"] == "leader";
    let list = wait_for_engines(&one, "a leader again", |l| {
        l.iter().filter(|e| e["role"] == "leader").count() == 1
    })
    .await;
    let now_leading = if leads(&list, &one) { &one } else { &two };
    until_answered(
        now_leading,
        "POST",
        "/api/tasks",
        &body("third", &other),
        "add-third",
        201,
    )
    .await;
    until_answered(now_leading, "DELETE", &close, "", "close-first", 200).await;
    let again = now_leading
        .call_with_key("POST", "/api/tasks", &body("third", &other), "add-third")
        .await;
    assert_eq!(
        again.status, 201,
        "a repeat is answered as before: {}",
        again.text
    );
    let in_redis = agree(redis, now_leading, "after the retries").await;
    let names: Vec<&str> = in_redis.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["first", "second", "third"],
        "each added once; before: {held:?}"
    );
    assert_eq!(in_redis[0].1, "closed");
    for e in [one, two] {
        e.stop().await.succeeded("an engine");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_fails_over_to_another_registered_itemsaver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start_slowly(PAGES, Duration::from_millis(100))
        .await
        .expect("site");
    // The engine starts with one itemsaver registered, so that is the one it uses.
    let flags = [
        "--seed".to_owned(),
        site.url("/"),
        "--per_host=3".to_owned(),
        "--batch_size=5".to_owned(),
    ];
    let engine = cluster.engine(dir.path(), "failover-store", &flags);
    site.wait_for_hits(10).await;
    let spare_store = dir.path().join("spare.db");
    let spare_arg = spare_store.display().to_string();
    let url = cluster.url.clone();
    let _spare = Server::start(
        "itemsaver",
        &["--store", &spare_arg, "--redis", &url],
        dir.path(),
    )
    .await;
    site.wait_for_hits(20).await;
    // Killed (SIGKILL on drop): the engine sends the rest to the spare.
    drop(cluster.itemsaver.take());
    let run = engine.wait().await.succeeded("the engine");
    assert!(
        run.stderr
            .contains("sending items to another registered one"),
        "{}",
        run.stderr
    );
    // A batch in flight at the kill may be in both stores; together they hold each item.
    let mut items = export(&cluster.store).await;
    items.extend(export(&spare_store).await);
    let mut seen = std::collections::BTreeSet::new();
    items.retain(|i| seen.insert(i["id"].as_str().unwrap_or("").to_owned()));
    assert_items_match_site(&items, &site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_of_an_engine_that_never_ran_give_way_to_the_next_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let wrong = TestSite::start(5).await.expect("site");
    let right = TestSite::start(10).await.expect("site");
    // A first try whose itemsaver cannot be reached stops before it runs.
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let failed = cluster
        .engine(
            dir.path(),
            "restart",
            &[
                "--seed".to_owned(),
                wrong.url("/"),
                "--itemsaver_host".to_owned(),
                unreachable,
            ],
        )
        .wait()
        .await;
    assert!(!failed.status.success(), "{}", failed.stderr);
    // The corrected command runs with its own flags, not the failed one's.
    let run = cluster
        .engine(
            dir.path(),
            "restart",
            &["--seed".to_owned(), right.url("/")],
        )
        .wait()
        .await
        .succeeded("the corrected engine");
    assert!(
        !run.stderr.contains("differs from the crawl's"),
        "{}",
        run.stderr
    );
    assert!(
        wrong.hits().is_empty(),
        "the failed engine's seed was crawled"
    );
    assert_each_page_fetched_once(&right);
    // Once an engine ran the crawl, its settings stand: a later engine's seed is not used.
    let later = cluster
        .engine(
            dir.path(),
            "restart",
            &["--seed".to_owned(), wrong.url("/")],
        )
        .wait()
        .await
        .succeeded("a later engine");
    assert!(later.stderr.contains("already done"), "{}", later.stderr);
    assert!(
        wrong.hits().is_empty(),
        "a finished crawl took another seed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_crawl_stays_done_until_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start(20).await.expect("site");
    let seed = ["--seed".to_owned(), site.url("/")];
    cluster
        .engine(dir.path(), "again", &seed)
        .wait()
        .await
        .succeeded("the first run");
    let once = site.hits();
    // A late engine finds the crawl done, says so, and fetches nothing.
    let late = cluster
        .engine(dir.path(), "again", &[])
        .wait()
        .await
        .succeeded("a late engine");
    assert!(late.stderr.contains("already done"), "{}", late.stderr);
    assert_eq!(site.hits(), once, "nothing fetched again");
    // A name that is a pattern, or the registrations' name, is refused before anything is
    // deleted.
    let redis = cluster.server();
    let keys = redis.command("DBSIZE").await;
    for name in ["ag*", "registry", "a{b}"] {
        let refused = cluster
            .engine(dir.path(), name, &["--fresh".to_owned()])
            .wait()
            .await;
        assert_eq!(refused.status.code(), Some(2), "{name}: {}", refused.stderr);
        let line = refused
            .stderr
            .lines()
            .find(|l| l.contains("--crawl"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("{name:?}")) || line.contains("registry"),
            "{name}: {}",
            refused.stderr
        );
    }
    assert_eq!(redis.command("DBSIZE").await, keys, "nothing deleted");
    // --fresh deletes the crawl's keys, and only those: the same name crawls the site again.
    let neighbour = redis.command("SET {spinneret:again.b}:done 1").await;
    assert!(neighbour.starts_with("+OK"), "{neighbour}");
    let mut fresh = seed.to_vec();
    fresh.push("--fresh".to_owned());
    let again = cluster
        .engine(dir.path(), "again", &fresh)
        .wait()
        .await
        .succeeded("a fresh run");
    assert_eq!(
        again.summary()["pages_ok"],
        site.site.ok_paths().len() as u64
    );
    assert!(site.hits().values().all(|n| *n == 2), "{:?}", site.hits());
    assert_eq!(
        redis.command("EXISTS {spinneret:again.b}:done").await,
        ":1\r\n",
        "another crawl's keys are kept"
    );
}

#[tokio::test]
async fn a_serving_engine_restarted_on_a_finished_crawl_records_no_empty_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path()).await;
    let site = TestSite::start(10).await.expect("site");
    let jobs = ["--jobs".to_owned(), "jobs.db".to_owned()];
    let seed = [&jobs[..], &["--seed".to_owned(), site.url("/")]].concat();
    cluster
        .engine(dir.path(), "rerun", &seed)
        .wait()
        .await
        .succeeded("the crawl");
    // The same engine again, serving, with the same run history (./jobs.db): it finds the
    // crawl done, and its history keeps the one run that crawled.
    let serving = AdminEngine::start(
        dir.path(),
        &cluster.flags("rerun", &[&jobs[..], &["--serve".to_owned()]].concat()),
        None,
    )
    .await;
    serving
        .wait_for("the crawl's task, done", |status| {
            status["tasks"][0]["state"] == "done"
        })
        .await;
    let runs = serving
        .wait_for_json("/api/tasks/1/runs", |runs| {
            runs.as_array()
                .is_some_and(|r| r.iter().all(|run| run["status"] != "running"))
        })
        .await;
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        runs[0]["pages_ok"],
        site.site.ok_paths().len() as u64,
        "{runs:#?}"
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_crawl_runs_once_per_tick_across_engines_and_a_new_leader_fires_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::with_workers(dir.path(), 1).await;
    let site = TestSite::start(8).await.expect("site");
    let clock = engine::schedule::ManualClock::new(half_past_midnight());
    let seeds = [site.url("/")];
    let a = scheduled_engine(&cluster, dir.path(), "a", &clock, &seeds, Some("* * * * *"));
    let b = scheduled_engine(&cluster, dir.path(), "b", &clock, &[], None);
    with_scheduled_pair(a, b, |pair| async move {
        for n in 1..=2 {
            clock.advance(Duration::from_secs(60));
            pair.wait_for_runs(&pair.a, n).await;
            pair.wait_for_runs(&pair.b, n).await;
            assert_fetched_times(&site, n as u64);
        }
        // The leader goes; the next tick is fired once, by the engine that takes over.
        pair.stop_a.cancel();
        clock.advance(Duration::from_secs(60));
        let runs = pair.wait_for_runs(&pair.b, 3).await;
        assert_fetched_times(&site, 3);
        assert_eq!(statuses(&runs), ["done", "done", "done"], "{runs:#}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_while_a_shared_run_goes_on_is_skipped_and_a_stop_ends_the_run_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::with_workers(dir.path(), 1).await;
    let server = HostileServer::start(Default::default())
        .await
        .expect("server");
    let clock = engine::schedule::ManualClock::new(half_past_midnight());
    let seeds = slow_pages(&server);
    let mut a = scheduled_engine(&cluster, dir.path(), "a", &clock, &seeds, Some("* * * * *"));
    a.politeness.per_host = 2;
    let b = scheduled_engine(&cluster, dir.path(), "b", &clock, &[], None);
    with_scheduled_pair(a, b, |pair| async move {
        clock.advance(Duration::from_secs(60));
        server.wait_for_hits_under("/wait/", 2).await;
        // The next tick comes while the run goes on: the leader skips it and records it.
        clock.advance(Duration::from_secs(60));
        pair.wait_for(&pair.a, "/api/tasks/1/runs", |runs| {
            runs[0]["status"] == "skipped"
        })
        .await;
        // Stopped through the follower (which forwards it to the leader): the run ends on
        // both engines once the requests in flight are answered.
        let stopped = pair
            .http
            .post(format!("{}/api/tasks/1/stop", pair.b))
            .send()
            .await
            .expect("stop");
        assert_eq!(stopped.status().as_u16(), 200);
        let ended = |runs: &serde_json::Value| {
            runs.as_array().is_some_and(|runs| {
                runs.iter().any(|r| r["status"] == "stopped")
                    && runs.iter().all(|r| r["status"] != "running")
            })
        };
        pair.wait_for(&pair.a, "/api/tasks/1/runs", ended).await;
        pair.wait_for(&pair.b, "/api/tasks/1/runs", ended).await;
        let first_run = server.log();
        let asked = first_run
            .iter()
            .filter(|h| h.path.starts_with("/wait/"))
            .count();
        assert!(asked < 6, "the stop dropped the rest: {first_run:?}");
        assert!(first_run.iter().all(|h| h.end.is_some()), "{first_run:?}");
        // The stop ended the run, not the schedule: the next tick starts a whole run.
        clock.advance(Duration::from_secs(60));
        let runs = pair
            .wait_for(&pair.a, "/api/tasks/1/runs", |runs| {
                runs[0]["status"] == "done"
            })
            .await;
        assert_eq!(statuses(&runs), ["done", "skipped", "stopped"], "{runs:#}");
        pair.wait_for_runs(&pair.b, 2).await;
        assert_each_slow_page_fetched_once_or_twice(&server);
        assert_eq!(server.hits_under("/wait/"), asked as u64 + 6);
        // Closing the crawl's only scheduled task ends it: both engines leave.
        let closed = pair
            .http
            .delete(format!("{}/api/tasks/1", pair.b))
            .send()
            .await
            .expect("close");
        assert_eq!(closed.status().as_u16(), 200);
        pair.wait_for_both_to_leave().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_tick_stops_the_shared_run_and_starts_the_next_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::with_workers(dir.path(), 1).await;
    let server = HostileServer::start(Default::default())
        .await
        .expect("server");
    let clock = engine::schedule::ManualClock::new(half_past_midnight());
    let seeds = slow_pages(&server);
    let mut a = scheduled_engine(&cluster, dir.path(), "a", &clock, &seeds, None);
    a.schedule = Some(schedule("* * * * *", engine::schedule::Overlap::Replace));
    a.politeness.per_host = 2;
    let b = scheduled_engine(&cluster, dir.path(), "b", &clock, &[], None);
    with_scheduled_pair(a, b, |pair| async move {
        clock.advance(Duration::from_secs(60));
        server.wait_for_hits_under("/wait/", 2).await;
        // The next tick comes while two pages are in flight: the run is stopped, and the
        // next starts at once on both engines.
        clock.advance(Duration::from_secs(60));
        for base in [&pair.a, &pair.b] {
            let runs = pair.wait_for_runs(base, 2).await;
            assert_eq!(statuses(&runs), ["done", "stopped"], "{base}: {runs:#}");
        }
        // The pages in flight at the replace were answered in full; every page was fetched
        // again by the new run.
        let log = server.log();
        assert!(log.iter().all(|h| h.end.is_some()), "{log:?}");
        assert_each_slow_page_fetched_once_or_twice(&server);
        assert!(server.hits_under("/wait/") < 12, "{:?}", server.hits());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_crawl_closed_before_its_first_tick_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::with_workers(dir.path(), 1).await;
    let site = TestSite::start(2).await.expect("site");
    let clock = engine::schedule::ManualClock::new(half_past_midnight());
    let seeds = [site.url("/")];
    let a = scheduled_engine(&cluster, dir.path(), "a", &clock, &seeds, Some("0 3 * * *"));
    let b = scheduled_engine(&cluster, dir.path(), "b", &clock, &[], None);
    with_scheduled_pair(a, b, |pair| async move {
        let closed = pair
            .http
            .delete(format!("{}/api/tasks/1", pair.a))
            .send()
            .await
            .expect("close");
        assert_eq!(closed.status().as_u16(), 200);
        pair.wait_for_both_to_leave().await;
        assert!(site.hits().is_empty(), "{:?}", site.hits());
    })
    .await;
}
