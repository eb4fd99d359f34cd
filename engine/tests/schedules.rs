//! Scheduled tasks driven by a clock the test moves: each tick starts a new run, an
//! overlapping tick is skipped and counted, and ticks missed while the engine was down are
//! counted, not caught up. Fetches keep real time, against a real test site, through the
//! engine's in-process worker.

use chrono::{DateTime, Utc};
use engine::config::EngineConfig;
use engine::schedule::{ManualClock, Overlap, Schedule, ScheduleSpec};
use spinneret_tests::TestSite;
use spinneret_tests::hostile::{HostileOptions, HostileServer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MINUTE: Duration = Duration::from_secs(60);
/// Longest a condition may take to come true.
const WAIT: Duration = Duration::from_secs(60);

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z")
        .expect("time")
        .with_timezone(&Utc)
}

/// An engine whose own task `name` crawls `seeds` on `cron`, its schedule read on `clock`.
fn config(
    dir: &Path,
    name: &str,
    seeds: &[String],
    cron: &str,
    clock: &Arc<ManualClock>,
) -> EngineConfig {
    let mut config = EngineConfig {
        seeds: seeds
            .iter()
            .map(|s| engine::parse_seed(s).expect("seed"))
            .collect(),
        task: name.into(),
        store: dir.join("items.db").into(),
        jobs: Some(dir.join("jobs.db")),
        schedule: Some(
            Schedule::new(ScheduleSpec {
                cron: cron.into(),
                timezone: "UTC".into(),
                overlap: Overlap::Skip,
            })
            .expect("schedule"),
        ),
        scheduler_clock: Some(clock.clone()),
        ..EngineConfig::default()
    };
    // The test sites are on 127.0.0.1.
    config.local_worker.fetch.addresses.allow_private = true;
    config
}

/// An engine's admin API, for the test to watch it by.
struct Admin {
    base: String,
}

/// Runs an engine with `config` while `test` runs against its admin API, then stops it.
async fn with_engine<F, Fut>(config: EngineConfig, test: F)
where
    F: FnOnce(Admin) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let operate = engine::Operate {
        admin: Some(listener),
        ..engine::Operate::default()
    };
    let shutdown = CancellationToken::new();
    // The engine's future stays on this task (it is not Send); the test runs beside it.
    let stop = shutdown.clone();
    let (result, ()) = tokio::join!(engine::run_with(config, operate, shutdown), async move {
        test(Admin { base }).await;
        stop.cancel();
    });
    result.expect("the engine ran");
}

impl Admin {
    /// Polls the task's runs until `ready` holds for them; returns them.
    async fn runs_when(
        &self,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let runs: Vec<serde_json::Value> =
                match reqwest::get(format!("{}/api/tasks/1/runs", self.base)).await {
                    Ok(answer) => serde_json::from_str(&answer.text().await.unwrap_or_default())
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
            if ready(&runs) {
                return runs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?}; runs: {runs:#?}"
            );
            // An HTTP API has no event to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn status(&self) -> serde_json::Value {
        let text = reqwest::get(format!("{}/api/status", self.base))
            .await
            .expect("status")
            .text()
            .await
            .expect("text");
        serde_json::from_str(&text).expect("status json")
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

fn statuses(runs: &[serde_json::Value]) -> Vec<String> {
    runs.iter()
        .map(|r| r["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_every_minute_runs_three_times_in_three_minutes() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(5).await.expect("site");
    let clock = ManualClock::new(start_time());
    let config = config(
        dir.path(),
        "minutely",
        &[site.url("/")],
        "* * * * *",
        &clock,
    );
    with_engine(config, |engine| async move {
        // Nothing runs before the first tick: once the task is known, it has no runs.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = reqwest::get(format!("{}/api/tasks/1/runs", engine.base))
                .await
                .expect("the admin API answers");
            let known = answer.status().is_success();
            let text = answer.text().await.expect("text");
            if known {
                assert_eq!(text, "[]");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{text}");
            // The crawl publishes its tasks a few times a second.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pages = site.site.ok_paths().len() as u64;
        let mut seen = Vec::new();
        for n in 1..=3 {
            clock.advance(MINUTE);
            let runs = engine
                .runs_when(|runs| runs.len() == n && runs[0]["status"] == "done")
                .await;
            assert_eq!(
                runs[0]["pages_ok"], pages,
                "run {n} fetched the whole site again"
            );
            seen.push(engine.status().await["urls_seen"].clone());
        }
        // Each run's seen URLs are forgotten when the next starts: the set stays one run's.
        assert_eq!(seen[0], seen[2], "{seen:?}");
        assert!(seen[0].as_u64().is_some_and(|n| n >= pages), "{seen:?}");
        let runs = engine.runs_when(|_| true).await;
        assert_eq!(statuses(&runs), ["done", "done", "done"]);
        assert_eq!(site.hits()["/"], 3, "each run fetched the seed once");
        let metrics = engine.metrics().await;
        assert!(
            metrics.contains(r#"spinneret_task_runs_total{task="minutely",status="done"} 3"#),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_while_the_run_goes_on_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("dir");
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let clock = ManualClock::new(start_time());
    let seeds = [server.url("/wait/1500/a")];
    let config = config(dir.path(), "slow", &seeds, "* * * * *", &clock);
    with_engine(config, |engine| async move {
        clock.advance(MINUTE);
        server.wait_for_hits_under("/wait/", 1).await;
        clock.advance(MINUTE);
        let runs = engine
            .runs_when(|runs| runs.len() == 2 && runs[1]["status"] == "done")
            .await;
        assert_eq!(statuses(&runs), ["skipped", "done"], "{runs:#?}");
        assert_eq!(runs[0]["reason"], "the previous run was still going");
        let metrics = engine.metrics().await;
        assert!(
            metrics.contains(r#"spinneret_task_runs_total{task="slow",status="skipped"} 1"#),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_the_engine_was_down_are_counted_not_caught_up() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(3).await.expect("site");
    let clock = ManualClock::new(start_time());
    let seeds = [site.url("/")];
    let first = config(dir.path(), "nightly", &seeds, "* * * * *", &clock);
    let moved = clock.clone();
    with_engine(first, |engine| async move {
        moved.advance(MINUTE);
        engine
            .runs_when(|runs| runs.len() == 1 && runs[0]["status"] == "done")
            .await;
    })
    .await;
    // Ten minutes later, a new engine on the same run history.
    clock.advance(10 * MINUTE);
    let second = config(dir.path(), "nightly", &seeds, "* * * * *", &clock);
    with_engine(second, |engine| async move {
        let runs = engine.runs_when(|runs| runs.len() == 2).await;
        assert_eq!(statuses(&runs), ["skipped", "done"], "{runs:#?}");
        assert_eq!(
            runs[0]["reason"],
            "10 tick(s) missed while the engine was down"
        );
    })
    .await;
    assert_eq!(site.hits()["/"], 1, "nothing was caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_with_overlap_replace_stops_the_old_run_and_starts_anew() {
    let dir = tempfile::tempdir().expect("dir");
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let clock = ManualClock::new(start_time());
    let seeds = [server.url("/wait/1500/a")];
    let mut config = config(dir.path(), "replaced", &seeds, "* * * * *", &clock);
    if let Some(schedule) = &mut config.schedule {
        let mut spec = schedule.spec.clone();
        spec.overlap = Overlap::Replace;
        *schedule = Schedule::new(spec).expect("schedule");
    }
    with_engine(config, |engine| async move {
        clock.advance(MINUTE);
        server.wait_for_hits_under("/wait/", 1).await;
        clock.advance(MINUTE);
        let runs = engine
            .runs_when(|runs| runs.len() == 2 && runs[0]["status"] == "done")
            .await;
        // The old run was stopped gracefully (its page finished and counted), then the
        // new one fetched it again with a fresh dedup.
        assert_eq!(statuses(&runs), ["done", "stopped"], "{runs:#?}");
        assert_eq!(runs[1]["pages_ok"], 1, "{runs:#?}");
        assert_eq!(server.hits_under("/wait/"), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_run_leaves_nothing_behind_for_the_next_one() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(10).await.expect("site");
    let clock = ManualClock::new(start_time());
    let mut config = config(dir.path(), "capped", &[site.url("/")], "* * * * *", &clock);
    config.max_pages = Some(3);
    with_engine(config, |engine| async move {
        for n in 1..=3 {
            clock.advance(MINUTE);
            let runs = engine
                .runs_when(|runs| runs.len() == n && runs[0]["status"] == "done")
                .await;
            assert_eq!(runs[0]["pages_ok"], 3, "run {n}: {runs:#?}");
        }
        // Between runs, nothing of the capped runs was fetched.
        let hits: u64 = site.hits().values().sum();
        let robots = site.hits().get("/robots.txt").copied().unwrap_or(0);
        assert_eq!(hits - robots, 9, "{:?}", site.hits());
    })
    .await;
}
