//! The part of the cluster tests' harness that uses the engine crate itself: engines run in
//! this process (their schedule driven by a manual clock) and the crawl's keys by the
//! engine's own naming. The rest is `spinneret_tests::cluster`; the library cannot hold
//! these, as the engine's own tests depend on it.

use spinneret_tests::admin::AdminEngine;
use spinneret_tests::cluster::{Cluster, bulk_strings};
use spinneret_tests::redis::RedisServer;
use spinneret_tests::{eventually, eventually_every};
use std::path::Path;
use std::time::Duration;

/// A task's state as an operator set it: `closed`, or `-` for any other (a task's end is
/// each engine's own, not recorded in Redis).
fn closed_or_not(state: &str) -> String {
    if state == "closed" { "closed" } else { "-" }.to_owned()
}

/// The names of the tasks the crawl's Redis holds (added through the API) and whether each
/// is closed, and the same of the tasks engine `e` lists, without its own first task:
/// `(redis, engine)`.
async fn tasks_here_and_in_redis(
    redis: &RedisServer,
    crawl: &str,
    e: &AdminEngine,
) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let prefix = engine::cluster::crawl_prefix(crawl);
    let records = bulk_strings(&redis.command(&format!("LRANGE {prefix}:tasks 0 -1")).await);
    let states: std::collections::HashMap<String, String> = bulk_strings(
        &redis
            .command(&format!("HGETALL {prefix}:task_states"))
            .await,
    )
    .chunks(2)
    .filter_map(|kv| match kv {
        [k, v] => Some((k.clone(), v.clone())),
        _ => None,
    })
    .collect();
    let mut in_redis: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let spec: serde_json::Value = serde_json::from_str(r).expect("task record");
            let name = spec["name"].as_str().expect("name").to_owned();
            let state = states
                .get(&name)
                .map_or("", |s| s.split('#').next().unwrap_or(""));
            (name, closed_or_not(state))
        })
        .collect();
    let listed = e.get("/api/tasks").await;
    let mut here: Vec<(String, String)> = listed
        .as_array()
        .expect("tasks")
        .iter()
        .skip(1)
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                closed_or_not(t["state"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    in_redis.sort();
    here.sort();
    (in_redis, here)
}

/// Waits (bounded) until engine `e` lists the tasks the crawl's Redis holds, as
/// [`tasks_here_and_in_redis`] reads them; returns them.
pub async fn agree(redis: &RedisServer, e: &AdminEngine, what: &str) -> Vec<(String, String)> {
    // The news reaches every engine within a tick: what an engine lists must be what Redis
    // holds, and nothing more.
    eventually_every(
        Duration::from_secs(5),
        Duration::from_millis(100),
        &format!("{what}: the engine to list what redis holds"),
        || async {
            let (in_redis, here) = tasks_here_and_in_redis(redis, "fenced", e).await;
            if in_redis == here {
                Ok(in_redis)
            } else {
                Err(format!(
                    "the engine lists {here:?}, redis holds {in_redis:?}"
                ))
            }
        },
    )
    .await
}

/// One engine of crawl "scheduled" over `cluster`, run in this process so that its schedule
/// goes by `clock`, with its own run history in `dir`; `seeds` and `cron` start the crawl (an
/// engine without them joins it and adopts its schedule).
pub fn scheduled_engine(
    cluster: &Cluster,
    dir: &Path,
    name: &str,
    clock: &std::sync::Arc<engine::schedule::ManualClock>,
    seeds: &[String],
    cron: Option<&str>,
) -> engine::config::EngineConfig {
    engine::config::EngineConfig {
        cluster: Some(engine::config::ClusterConfig {
            redis: cluster.url.clone(),
            crawl: "scheduled".into(),
            lease: Duration::from_secs(15),
            redis_timeout: Duration::from_secs(60),
            advertise: None,
            redis_tls: Default::default(),
        }),
        seeds: seeds
            .iter()
            .map(|s| engine::parse_seed(s).expect("seed"))
            .collect(),
        task: "nightly".into(),
        schedule: cron.map(|cron| schedule(cron, engine::schedule::Overlap::Skip)),
        jobs: Some(dir.join(format!("jobs-{name}.db"))),
        scheduler_clock: Some(clock.clone()),
        state_dir: None,
        ..engine::config::EngineConfig::default()
    }
}

/// A UTC schedule on `cron`.
pub fn schedule(cron: &str, overlap: engine::schedule::Overlap) -> engine::schedule::Schedule {
    engine::schedule::Schedule::new(engine::schedule::ScheduleSpec {
        cron: cron.into(),
        timezone: "UTC".into(),
        overlap,
    })
    .expect("schedule")
}

/// The admin APIs of two engines of a scheduled crawl, and how to stop each.
#[derive(Clone)]
pub struct Pair {
    /// Engine `a`'s admin API, `http://127.0.0.1:PORT`.
    pub a: String,
    /// Engine `b`'s admin API.
    pub b: String,
    /// Stops engine `a`, the leader (for a failover).
    pub stop_a: tokio_util::sync::CancellationToken,
    /// A client for both APIs, with a timeout.
    pub http: reqwest::Client,
    /// How many of the two engines have exited.
    exited: tokio::sync::watch::Receiver<u8>,
}

impl Pair {
    /// Waits (bounded) until both engines have exited by themselves.
    pub async fn wait_for_both_to_leave(&self) {
        let mut exited = self.exited.clone();
        let both = tokio::time::timeout(Duration::from_secs(30), exited.wait_for(|n| *n == 2));
        assert!(
            matches!(both.await, Ok(Ok(_))),
            "the engines are still running"
        );
    }

    /// Waits (bounded) until the engine at `base` lists `n` runs of task 1, the newest
    /// done; fails at once if it lists more.
    pub async fn wait_for_runs(&self, base: &str, n: usize) -> serde_json::Value {
        self.wait_for(base, "/api/tasks/1/runs", |runs| {
            let runs = runs.as_array().map_or(&[][..], Vec::as_slice);
            assert!(runs.len() <= n, "more runs than ticks at {base}: {runs:#?}");
            runs.len() == n && runs[0]["status"] == "done"
        })
        .await
    }

    /// Polls `GET path` on the engine at `base` (bounded) until `ready` holds of the answer.
    pub async fn wait_for(
        &self,
        base: &str,
        path: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        // The admin API has no event to wait on.
        eventually(
            Duration::from_secs(60),
            &format!("{base}{path} to be ready"),
            || async {
                let answer = match self.http.get(format!("{base}{path}")).send().await {
                    Ok(answer) => json_of(answer).await,
                    Err(_) => serde_json::Value::Null,
                };
                if ready(&answer) {
                    Ok(answer)
                } else {
                    Err(format!("{answer:#}"))
                }
            },
        )
        .await
    }
}

/// Runs engines `a` and `b` of a scheduled crawl in this process while `test` runs: `a`
/// leads (it is alone until it does, so stopping it is a failover), and `b` has taken up
/// the scheduled task before `test` starts. `b` (and `a`, if still running) stop after.
pub async fn with_scheduled_pair<F, Fut>(
    config_a: engine::config::EngineConfig,
    config_b: engine::config::EngineConfig,
    test: F,
) where
    F: FnOnce(Pair) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let operate = |listener| engine::Operate {
        admin: Some(listener),
        ..engine::Operate::default()
    };
    let (exited, exits) = tokio::sync::watch::channel(0u8);
    let pair = Pair {
        exited: exits,
        a: format!("http://{}", listener_a.local_addr().expect("addr")),
        b: format!("http://{}", listener_b.local_addr().expect("addr")),
        stop_a: tokio_util::sync::CancellationToken::new(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client"),
    };
    let stop_b = tokio_util::sync::CancellationToken::new();
    let a_leads = tokio::sync::Notify::new();
    let engine_a = async {
        let result = engine::run_with(config_a, operate(listener_a), pair.stop_a.clone()).await;
        exited.send_modify(|n| *n += 1);
        result
    };
    let engine_b = async {
        a_leads.notified().await;
        let result = engine::run_with(config_b, operate(listener_b), stop_b.clone()).await;
        exited.send_modify(|n| *n += 1);
        result
    };
    let run_test = async {
        pair.wait_for(&pair.a, "/api/engines", |engines| {
            engines
                .as_array()
                .is_some_and(|list| list.iter().any(|e| e["role"] == "leader"))
        })
        .await;
        a_leads.notify_one();
        pair.wait_for(&pair.b, "/api/tasks/1", |task| task["state"] == "waiting")
            .await;
        test(pair.clone()).await;
        stop_b.cancel();
        pair.stop_a.cancel();
    };
    let (a, b, ()) = tokio::join!(engine_a, engine_b, run_test);
    a.expect("engine a");
    b.expect("engine b");
}

/// A moment of the scheduler clock, a little after a minute starts.
pub fn half_past_midnight() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z")
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// A JSON answer's body, or the default when it is not JSON.
async fn json_of<T: serde::de::DeserializeOwned + Default>(answer: reqwest::Response) -> T {
    let text = answer.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}
