//! A task's run ended three ways: stopped (its requests in flight finish and are saved),
//! killed (they are cancelled at once, nothing of them saved) and timed out.

use spinneret_tests::admin::AdminEngine;
use spinneret_tests::binaries::{Server, assert_items_match_site, export};
use spinneret_tests::hostile::{HostileOptions, HostileServer};
use spinneret_tests::{TestSite, eventually};
use std::path::Path;
use std::time::Duration;

fn s(v: &str) -> String {
    v.to_owned()
}

/// Flags of an engine whose own task (1) fetches `/wait/MS/i` pages of `server` through
/// `worker`, two at a time, with `more`.
fn waiting_task(
    server: &HostileServer,
    worker: &Server,
    ms: u64,
    pages: usize,
    store: &Path,
) -> Vec<String> {
    let mut args = vec![
        format!("--worker_hosts={}", worker.addr),
        s("--store"),
        store.display().to_string(),
        s("--no_state"),
        s("--per_host=2"),
        s("--serve"),
    ];
    for i in 0..pages {
        args.extend([s("--seed"), server.url(&format!("/wait/{ms}/{i}"))]);
    }
    args
}

/// A hostile server (its `/wait/MS/NAME` pages), a worker, and where the items go.
async fn slow_site(dir: &Path) -> (HostileServer, Server, std::path::PathBuf) {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let worker = Server::start("worker", &[], dir).await;
    (server, worker, dir.join("items.db"))
}

/// Stored items whose URL has `part`.
async fn items_with(store: &Path, part: &str) -> usize {
    export(store)
        .await
        .iter()
        .filter(|i| i["url"].as_str().is_some_and(|u| u.contains(part)))
        .count()
}

fn task_state(status: &serde_json::Value, id: u64) -> String {
    status["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id))
        .and_then(|t| t["state"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_the_requests_in_flight_finish_and_saves_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, worker, store) = slow_site(dir.path()).await;
    let engine = AdminEngine::start(
        dir.path(),
        &waiting_task(&server, &worker, 1_500, 6, &store),
        Some("t0ken-t0ken-t0ken"),
    )
    .await;
    server.wait_for_hits_under("/wait/", 2).await;
    engine.change("POST", "/api/tasks/1/stop", None, 200).await;
    let status = engine
        .wait_for("the stopped task's requests to finish", |s| {
            task_state(s, 1) == "stopped" && s["in_flight"] == 0
        })
        .await;
    assert_eq!(status["skipped"]["task_stopped"], 4, "{status:#}");
    // The two in flight were answered in full, and their items are stored.
    let waits: Vec<_> = server
        .log()
        .into_iter()
        .filter(|h| h.path.starts_with("/wait/"))
        .collect();
    assert_eq!(waits.len(), 2, "nothing more was sent: {waits:?}");
    assert!(waits.iter().all(|h| h.end.is_some()), "{waits:?}");
    // The itemsaver commits in batches; the store has no event to wait on.
    // The outer timeout also bounds a read of the store that never returns.
    let stored = tokio::time::timeout(
        Duration::from_secs(10),
        eventually(
            Duration::from_secs(10),
            "the stopped task's items to be stored",
            || async {
                let n = items_with(&store, "/wait/").await;
                (n >= 2).then_some(n)
            },
        ),
    )
    .await
    .expect("the store answered within 10 s");
    assert_eq!(stored, 2);
    // Stopped is final: it cannot be stopped or killed again.
    engine.change("POST", "/api/tasks/1/kill", None, 409).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_cancels_the_requests_in_flight_and_the_crawl_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, worker, store) = slow_site(dir.path()).await;
    let site = TestSite::start(10).await.expect("site");
    let engine = AdminEngine::start(
        dir.path(),
        &waiting_task(&server, &worker, 30_000, 4, &store),
        Some("t0ken-t0ken-t0ken"),
    )
    .await;
    server.wait_for_hits_under("/wait/", 2).await;
    let body = format!(r#"{{"name": "other", "seeds": ["{}"]}}"#, site.url("/"));
    engine.change("POST", "/api/tasks", Some(&body), 201).await;
    engine.change("POST", "/api/tasks/1/kill", None, 200).await;
    let status = engine
        .wait_for("the other task to finish after the kill", |s| {
            task_state(s, 1) == "killed" && task_state(s, 2) == "done" && s["in_flight"] == 0
        })
        .await;
    assert_eq!(status["skipped"]["task_killed"], 4, "{status:#}");
    // The site saw the two requests in flight dropped, long before their 30 s.
    let waits = |log: &[spinneret_tests::hostile::Hit]| {
        log.iter()
            .filter(|h| h.path.starts_with("/wait/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let dropped = server.wait_for_log(|log| waits(log).iter().all(|h| h.dropped));
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the killed requests' connections were not dropped: {:?}",
                waits(&server.log())
            )
        });
    let waits = waits(&server.log());
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(
        waits.iter().all(|h| h.end.is_none()),
        "none answered: {waits:?}"
    );
    let run = engine.stop().await;
    assert_eq!(
        items_with(&store, "/wait/").await,
        0,
        "nothing of the killed requests"
    );
    let other: Vec<serde_json::Value> = export(&store)
        .await
        .into_iter()
        .filter(|i| i["task"] == "other")
        .collect();
    assert!(run.status.success(), "{}", run.stderr);
    assert_items_match_site(&other, &site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_timeout_ends_timeout_with_its_items_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, worker, store) = slow_site(dir.path()).await;
    let mut args = waiting_task(&server, &worker, 500, 40, &store);
    args.push(s("--task_timeout=2"));
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    let status = engine
        .wait_for("the task's deadline", |s| {
            task_state(s, 1) == "timeout" && s["in_flight"] == 0
        })
        .await;
    let ok = status["pages_ok"].as_u64().expect("pages_ok");
    assert!((2..40).contains(&ok), "some pages, not all: {status:#}");
    assert_eq!(
        status["skipped"]["task_timeout"].as_u64().unwrap_or(0) + ok,
        40,
        "{status:#}"
    );
    let run = engine.stop().await;
    assert_eq!(
        items_with(&store, "/wait/").await as u64,
        ok,
        "every page fetched has its item: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_is_in_the_history_which_survives_restarts_and_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(5).await.expect("site");
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let crawl = |more: &[&str]| {
        let mut args = vec![
            s("--seed"),
            site.url("/"),
            s("--task=docs"),
            s("--no_state"),
        ];
        args.extend(more.iter().map(|m| s(m)));
        args
    };
    // Two runs to the end, each by its own engine (the history is in ./jobs.db).
    for _ in 0..2 {
        spinneret_tests::binaries::run_engine(dir.path(), &crawl(&[]))
            .await
            .succeeded("a run");
    }
    // A run cut short by a crash: the next engine records it as failed.
    let mut slow = vec![s("--task=docs"), s("--no_state"), s("--serve")];
    slow.extend([s("--seed"), server.url("/wait/30000/0")]);
    let engine = AdminEngine::start(dir.path(), &slow, None).await;
    server.wait_for_hits_under("/wait/", 1).await;
    engine.kill9().await;
    let engine = AdminEngine::start(dir.path(), &crawl(&["--serve"]), None).await;
    engine
        .wait_for("the fourth run to end", |s| task_state(s, 1) == "done")
        .await;
    let runs = engine
        .wait_for_json("/api/tasks/1/runs", |runs| {
            runs.as_array()
                .is_some_and(|r| r.len() == 4 && r[0]["status"] == "done")
        })
        .await;
    let statuses: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["done", "failed", "done", "done"], "{runs:#}");
    assert_eq!(runs[1]["reason"], "engine restarted", "{runs:#}");
    let pages = site.site.ok_paths().len() as u64;
    for i in [0, 2, 3] {
        assert_eq!(runs[i]["pages_ok"], pages, "{runs:#}");
        assert_eq!(runs[i]["items"], pages, "{runs:#}");
        assert!(
            runs[i]["ended"].as_f64() >= runs[i]["started"].as_f64(),
            "{runs:#}"
        );
    }
    // The dashboard's view and the metrics count them too.
    let status = engine.get("/api/status").await;
    assert_eq!(
        status["tasks"][0]["recent_runs"][0]["status"], "done",
        "{status:#}"
    );
    let metrics = engine.text("/metrics").await;
    assert!(
        metrics.contains(r#"spinneret_task_runs_total{task="docs",status="done"} 1"#),
        "{metrics}"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_engine_keeps_its_scheduled_tasks_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(3).await.expect("site");
    let serve = [s("--serve"), s("--no_state")];
    let task = |status: &serde_json::Value| -> serde_json::Value {
        status["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "nightly").cloned())
            .unwrap_or(serde_json::Value::Null)
    };
    let engine = AdminEngine::start(dir.path(), &serve, Some("t0ken-t0ken-t0ken")).await;
    let body = format!(
        r#"{{"name": "nightly", "seeds": ["{}"], "schedule": {{"cron": "0 3 * * *", "timezone": "Europe/Paris"}}}}"#,
        site.url("/")
    );
    let added = engine.change("POST", "/api/tasks", Some(&body), 201).await;
    assert_eq!(added["state"], "waiting", "{added:#}");
    assert!(
        added["next_tick"]
            .as_str()
            .is_some_and(|t| t.contains("T02:00:00") || t.contains("T01:00:00")),
        "{added:#}"
    );
    // A bad schedule is refused with the pattern named.
    let bad = r#"{"seeds": ["http://127.0.0.1:1/"], "schedule": {"cron": "61 * * * *"}}"#;
    let refused = engine.call("POST", "/api/tasks", Some(bad), true).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("61 * * * *"), "{}", refused.text);
    // Between runs there is nothing to stop.
    engine.change("POST", "/api/tasks/1/stop", None, 409).await;
    engine.stop().await;

    let engine = AdminEngine::start(dir.path(), &serve, Some("t0ken-t0ken-t0ken")).await;
    let status = engine
        .wait_for("the kept schedule", |s| task(s)["state"] == "waiting")
        .await;
    assert_eq!(task(&status)["schedule"]["cron"], "0 3 * * *", "{status:#}");
    assert!(site.hits().is_empty(), "no run before its tick");
    // Closed, it is forgotten.
    let id = task(&status)["id"].as_u64().expect("id");
    engine
        .change("DELETE", &format!("/api/tasks/{id}"), None, 200)
        .await;
    engine.stop().await;
    let engine = AdminEngine::start(dir.path(), &serve, Some("t0ken-t0ken-t0ken")).await;
    let status = engine.get("/api/status").await;
    assert!(task(&status).is_null(), "{status:#}");
    engine.stop().await;
}

#[tokio::test]
async fn a_spider_files_schedule_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spider = |schedule: &str| {
        let path = dir.path().join("spider.toml");
        std::fs::write(
            &path,
            format!("name = \"q\"\nstart_urls = [\"http://127.0.0.1:1/\"]\n{schedule}\n[[rule]]\nname = \"r\"\n"),
        )
        .expect("write");
        path.display().to_string()
    };
    let good = spider(
        "[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"\noverlap = \"replace\"",
    );
    let (status, _, stderr) =
        spinneret_tests::binaries::run_bin("engine", &[s("--check-spider"), good], &[]).await;
    assert!(status.success(), "{stderr}");
    for (bad, named) in [
        ("[schedule]\ncron = \"61 * * * *\"", "61 * * * *"),
        (
            "[schedule]\ncron = \"* * * * *\"\ntimezone = \"Mars/Olympus\"",
            "Mars/Olympus",
        ),
        (
            "[schedule]\ncron = \"* * * * *\"\noverlap = \"both\"",
            "both",
        ),
        ("[schedule]\ncron = \"* * * * *\"\nevery = 5", "every"),
    ] {
        let (status, _, stderr) =
            spinneret_tests::binaries::run_bin("engine", &[s("--check-spider"), spider(bad)], &[])
                .await;
        assert_eq!(status.code(), Some(1), "{bad}: {stderr}");
        assert!(stderr.contains(named), "{bad}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reports_what_it_is_working_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, worker, store) = slow_site(dir.path()).await;
    let mut args = waiting_task(&server, &worker, 3_000, 1, &store);
    args.push(s("--heartbeat_ms=100"));
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    server.wait_for_hits_under("/wait/", 1).await;
    // Heartbeats carry the report; there is no event to wait on.
    eventually(
        Duration::from_secs(10),
        "the worker to report its oldest request in flight",
        || async {
            let workers = engine.get("/api/workers").await;
            let w = &workers[0];
            if w["in_flight_by_task"]["default"] == 1
                && w["oldest_in_flight_secs"]
                    .as_f64()
                    .is_some_and(|s| s >= 0.3)
            {
                Ok(())
            } else {
                Err(format!("{workers:#}"))
            }
        },
    )
    .await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_added_through_the_api_is_resumed_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start_slowly(30, Duration::from_millis(100))
        .await
        .expect("site");
    let other = TestSite::start(10).await.expect("second site");
    let store = dir.path().join("items.db");
    // A serving engine with no task of its own, its state in ./default.state.
    let args = vec![s("--serve"), s("--store"), store.display().to_string()];
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    let add = |name: &str, url: String| format!(r#"{{"name": "{name}", "seeds": ["{url}"]}}"#);
    engine
        .change("POST", "/api/tasks", Some(&add("slow", site.url("/"))), 201)
        .await;
    engine
        .change(
            "POST",
            "/api/tasks",
            Some(&add("held", other.url("/"))),
            201,
        )
        .await;
    engine.change("POST", "/api/tasks/2/pause", None, 200).await;
    // A task that finished, and one that reached its page budget with links left.
    let quick = TestSite::start(3).await.expect("third site");
    let capped = TestSite::start(10).await.expect("fourth site");
    engine
        .change(
            "POST",
            "/api/tasks",
            Some(&add("quick", quick.url("/"))),
            201,
        )
        .await;
    let body = format!(
        r#"{{"name": "capped", "seeds": ["{}"], "max_pages": 3}}"#,
        capped.url("/")
    );
    engine.change("POST", "/api/tasks", Some(&body), 201).await;
    engine
        .wait_for("the quick task done and the capped one capped", |s| {
            task_state(s, 3) == "done" && task_state(s, 4) == "capped"
        })
        .await;
    site.wait_for_hits(5).await;
    let stopped = engine.stop().await.succeeded("the first engine");
    assert!(
        stopped.summary()["resumable_state"].is_string(),
        "{}",
        stopped.summary()
    );
    let before = site.hits();
    assert!(before.len() < site.site.ok_paths().len(), "{before:?}");

    // The same command again: both tasks come back, the paused one paused.
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    let status = engine
        .wait_for("the slow task to finish", |s| {
            task_state(s, 1) == "done" && task_state(s, 2) == "paused"
        })
        .await;
    assert_eq!(status["tasks"][0]["name"], "slow");
    assert_eq!(status["tasks"][1]["name"], "held");
    let hits = site.hits();
    for path in site.site.ok_paths() {
        assert_eq!(hits.get(&path).copied(), Some(1), "{path}: {hits:?}");
    }
    // The finished task gained no run in the history, and the capped one kept its budget.
    let runs = engine.get("/api/tasks/3/runs").await;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");
    assert_eq!(task_state(&status, 4), "capped");
    // Resumed, the held task runs to the end.
    engine
        .change("POST", "/api/tasks/2/resume", None, 200)
        .await;
    engine
        .wait_for("the held task to finish", |s| task_state(s, 2) == "done")
        .await;
    engine.stop().await.succeeded("the second engine");
    let capped_pages: u64 = capped
        .hits()
        .iter()
        .filter(|(path, _)| path.as_str() != "/robots.txt")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(capped_pages, 3, "{:?}", capped.hits());
    assert_eq!(
        items_with(&store, "127.0.0.1").await,
        site.site.ok_paths().len() + other.site.ok_paths().len() + quick.site.ok_paths().len() + 3
    );
}
