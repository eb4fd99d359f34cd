//! The admin API on a running engine: every endpoint, bad input and auth, steering workers
//! and tasks while they crawl.

use spinneret_tests::TestSite;
use spinneret_tests::admin::{AdminEngine, n, task, worker};
use spinneret_tests::binaries::{Server, assert_each_page_fetched_once, export};
use std::time::Duration;

fn s(x: impl ToString) -> String {
    x.to_string()
}

fn hits(site: &TestSite) -> u64 {
    site.hits().values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_every_endpoint_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(40).await.expect("site");
    let store = dir.path().join("items.db");
    let args = vec![
        s("--serve"),
        s("--no_state"),
        s("--store"),
        s(store.display()),
    ];
    let engine = AdminEngine::start(dir.path(), &args, Some("s3cret-s3cret-s3cret")).await;

    let page = engine.call("GET", "/", None, false).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<title>Spinneret crawl</title>"));
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(
            !page.text.contains(external),
            "the dashboard loads {external}"
        );
    }
    let status = engine
        .wait_for("an idle engine", |s| s["state"] == "idle")
        .await;
    let metrics = engine.call("GET", "/metrics", None, false).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("# TYPE spinneret_queue_depth gauge"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("spinneret_workers_up 1"),
        "{}",
        metrics.text
    );
    assert_eq!(status["tasks"].as_array().map(Vec::len), Some(0));
    assert_eq!(status["auth_required"], true);
    assert_eq!(worker(&status, 0)["state"], "up");

    // Changes need the token; reads do not.
    let body = format!(r#"{{"seeds": ["{}"], "name": "site"}}"#, site.url("/"));
    for token in [
        None,
        Some("wrong"),
        Some("s3cret-s3cret-s3cre"),
        Some("s3cret-s3cret-s3cret2"),
    ] {
        let a = engine
            .call_as("POST", "/api/tasks", Some(&body), token)
            .await;
        assert_eq!(a.status, 401, "token {token:?}: {}", a.text);
        assert!(
            a.json["error"]
                .as_str()
                .expect("error")
                .contains("--admin_token")
        );
    }
    let a = engine
        .call("POST", "/api/workers/0/pause", None, false)
        .await;
    assert_eq!(a.status, 401);
    let a = engine
        .call_with_origin("POST", "/api/workers/0/pause", "https://evil.example")
        .await;
    assert_eq!(a.status, 403, "a change from another origin: {}", a.text);

    // Bad input: a 4xx naming the problem.
    let bad_tasks = [
        ("{bad", "JSON"),
        (r#"{"seeds": ["http://a.test/"], "speed": 1}"#, "speed"),
        (r#"{"seeds": ["ftp://a.test/"]}"#, "ftp://a.test/"),
        (r#"{"seeds": []}"#, "seed"),
        (r#"{"seeds": ["http://a.test/"], "parser": "nope"}"#, "nope"),
        (
            r#"{"seeds": ["http://a.test/"], "spider": "name = 1"}"#,
            "spider",
        ),
        (
            r#"{"seeds": ["http://a.test/"], "parser": "links", "spider": "x"}"#,
            "not both",
        ),
    ];
    for (body, needle) in bad_tasks {
        let a = engine.call("POST", "/api/tasks", Some(body), true).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        let error = a.json["error"].as_str().expect("error message");
        assert!(error.contains(needle), "{body}: {error}");
    }
    let refusals = [
        ("POST", "/api/tasks/99/pause", None, 404),
        ("POST", "/api/tasks/x/resume", None, 400),
        ("DELETE", "/api/tasks/99", None, 404),
        ("POST", "/api/workers/9/pause", None, 404),
        ("DELETE", "/api/workers/nine", None, 400),
        (
            "POST",
            "/api/workers",
            Some(r#"{"addr": "not an address"}"#),
            400,
        ),
        ("POST", "/api/workers", Some(r#"{"host": "x"}"#), 400),
        ("GET", "/api/nothing", None, 404),
    ];
    for (method, path, body, expect) in refusals {
        let a = engine.call(method, path, body, true).await;
        assert_eq!(a.status, expect, "{method} {path}: {}", a.text);
        assert!(a.json["error"].is_string(), "{method} {path}: {}", a.text);
    }
    let closed = spinneret_tests::binaries::closed_port();
    let a = engine
        .call(
            "POST",
            "/api/workers",
            Some(&format!(r#"{{"addr": "127.0.0.1:{closed}"}}"#)),
            true,
        )
        .await;
    assert_eq!(a.status, 502, "{}", a.text);
    assert!(
        a.json["error"]
            .as_str()
            .expect("error")
            .contains(&closed.to_string())
    );

    // A task runs to the end in the serving engine.
    let created = engine.change("POST", "/api/tasks", Some(&body), 201).await;
    assert_eq!(
        (created["id"].as_u64(), created["name"].as_str()),
        (Some(1), Some("site"))
    );
    let again = engine.call("POST", "/api/tasks", Some(&body), true).await;
    assert_eq!(again.status, 409, "{}", again.text);
    let status = engine
        .wait_for("the task to finish", |s| task(s, "site")["state"] == "done")
        .await;
    assert_each_page_fetched_once(&site);
    let t = task(&status, "site");
    assert_eq!(n(t, "pages_ok") as usize, site.site.ok_paths().len());
    assert_eq!(status["state"], "idle", "it waits for more tasks");
    let listed = engine.get("/api/tasks").await;
    assert_eq!(listed[0]["name"], "site");
    assert_eq!(engine.get("/api/tasks/1").await["state"], "done");
    assert_eq!(engine.get("/api/workers/0").await["addr"], "in-process");
    let metrics = engine.call("GET", "/metrics", None, false).await.text;
    let ok_line = format!(
        r#"spinneret_pages_total{{class="2xx",reason="ok"}} {}"#,
        site.site.ok_paths().len()
    );
    assert!(metrics.contains(&ok_line), "{metrics}");
    assert!(metrics.contains(r#"spinneret_pages_total{class="4xx",reason="http_404"}"#));
    assert!(metrics.contains(r#"spinneret_worker_request_seconds_count{worker="in-process"}"#));

    // A finished task can be closed, and then not paused.
    let t = engine.change("DELETE", "/api/tasks/1", None, 200).await;
    assert_eq!(t["state"], "closed");
    engine.change("POST", "/api/tasks/1/pause", None, 409).await;

    let run = engine.stop().await;
    assert!(run.status.success(), "{}", run.stderr);
    let items = export(&store).await;
    assert_eq!(items.len(), site.site.ok_paths().len());
    assert!(items.iter().all(|i| i["task"] == "site"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_added_paused_resumed_and_removed_while_crawling() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start_slowly(400, Duration::from_millis(40))
        .await
        .expect("site");
    let w0 = Server::start("worker", &["--concurrency", "4"], dir.path()).await;
    let w1 = Server::start("worker", &["--concurrency", "4"], dir.path()).await;
    let w2 = Server::start("worker", &["--concurrency", "4"], dir.path()).await;
    let store = dir.path().join("items.db");
    let args = vec![
        s("--seed"),
        site.url("/"),
        s("--worker_hosts"),
        format!("{},{}", w0.addr, w1.addr),
        s("--per_host"),
        s(2),
        s("--no_state"),
        s("--store"),
        s(store.display()),
    ];
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    engine
        .wait_for("both workers to take requests", |s| {
            n(worker(s, 0), "requests") > 0 && n(worker(s, 1), "requests") > 0
        })
        .await;

    // Paused: its calls in flight finish, and it is sent nothing more.
    let paused = engine
        .change("POST", "/api/workers/0/pause", None, 200)
        .await;
    assert_eq!(paused["state"], "paused");
    let status = engine
        .wait_for("worker 0's calls to finish", |s| {
            n(worker(s, 0), "in_flight") == 0
        })
        .await;
    let frozen = n(worker(&status, 0), "requests");
    let other = n(worker(&status, 1), "requests");
    let status = engine
        .wait_for("worker 1 to take 20 more requests", |s| {
            n(worker(s, 1), "requests") >= other + 20
        })
        .await;
    assert_eq!(
        n(worker(&status, 0), "requests"),
        frozen,
        "a paused worker got requests"
    );
    assert_eq!(worker(&status, 0)["state"], "paused");

    // Resumed: it takes its share again.
    let resumed = engine
        .change("POST", "/api/workers/0/resume", None, 200)
        .await;
    assert_eq!(resumed["state"], "up");
    engine
        .wait_for("worker 0 to take requests again", |s| {
            n(worker(s, 0), "requests") > frozen
        })
        .await;

    // Added at runtime: it joins the rotation; the same address twice is refused.
    let body = format!(r#"{{"addr": "{}"}}"#, w2.addr);
    let added = engine
        .change("POST", "/api/workers", Some(&body), 201)
        .await;
    assert_eq!(added["id"], 2);
    engine
        .change("POST", "/api/workers", Some(&body), 409)
        .await;
    engine
        .wait_for("the new worker to take requests", |s| {
            n(worker(s, 2), "requests") > 0
        })
        .await;

    // Removed: it drains and leaves the list; its id is gone.
    let removed = engine.change("DELETE", "/api/workers/1", None, 202).await;
    assert!(["draining", "removed"].contains(&removed["state"].as_str().unwrap_or("")));
    engine
        .wait_for("worker 1 to leave", |s| {
            s["workers"]
                .as_array()
                .is_some_and(|ws| ws.iter().all(|w| w["id"] != 1))
        })
        .await;
    engine
        .change("POST", "/api/workers/1/resume", None, 404)
        .await;

    let run = engine.wait().await;
    assert!(run.status.success(), "{}", run.stderr);
    assert_each_page_fetched_once(&site);
    let summary = run.summary();
    assert_eq!(summary["stopped"], "done");
    let shares = summary["workers"].as_array().expect("workers");
    assert_eq!(shares.len(), 3, "{shares:?}");
    assert!(
        shares.iter().all(|w| w["requests"].as_u64() > Some(0)),
        "{shares:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_and_closing_a_task_stops_its_requests_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("dir");
    let latency = Duration::from_millis(25);
    let site_a = TestSite::start_slowly(400, latency).await.expect("site a");
    let site_b = TestSite::start_slowly(120, latency).await.expect("site b");
    let store = dir.path().join("items.db");
    let args = vec![
        s("--serve"),
        s("--per_host"),
        s(2),
        s("--no_state"),
        s("--store"),
        s(store.display()),
    ];
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    for (name, site) in [("a", &site_a), ("b", &site_b)] {
        let body = format!(r#"{{"name": "{name}", "seeds": ["{}"]}}"#, site.url("/"));
        engine.change("POST", "/api/tasks", Some(&body), 201).await;
    }
    engine
        .wait_for("task a to fetch pages", |s| {
            n(task(s, "a"), "pages_ok") >= 5
        })
        .await;

    // Paused: nothing more of it is fetched while the other task goes on.
    engine.change("POST", "/api/tasks/1/pause", None, 200).await;
    let status = engine
        .wait_for("task a's requests in flight to finish", |s| {
            task(s, "a")["state"] == "paused" && n(task(s, "a"), "in_flight") == 0
        })
        .await;
    let a_hits = hits(&site_a);
    let b_pages = n(task(&status, "b"), "pages_ok");
    engine
        .wait_for("task b to go on", |s| {
            n(task(s, "b"), "pages_ok") >= b_pages + 15
        })
        .await;
    assert_eq!(hits(&site_a), a_hits, "a paused task was fetched");

    // Resumed: it goes on.
    let resumed = engine
        .change("POST", "/api/tasks/1/resume", None, 200)
        .await;
    assert_eq!(resumed["state"], "running");
    let a_pages = n(&resumed, "pages_ok");
    engine
        .wait_for("task a to go on", |s| {
            n(task(s, "a"), "pages_ok") > a_pages + 3
        })
        .await;

    // Closed: its queue is dropped, its results in flight are kept, b finishes.
    let closed = engine.change("DELETE", "/api/tasks/1", None, 200).await;
    assert_eq!(closed["state"], "closed");
    engine
        .wait_for("task a's last requests to finish", |s| {
            n(task(s, "a"), "in_flight") == 0
        })
        .await;
    let a_hits = hits(&site_a);
    let status = engine
        .wait_for("task b to finish and a's queue to empty", |s| {
            task(s, "b")["state"] == "done" && n(task(s, "a"), "queued") == 0
        })
        .await;
    assert_eq!(hits(&site_a), a_hits, "a closed task was fetched");
    assert_each_page_fetched_once(&site_b);
    assert!(n(&status["skipped"], "task_closed") > 0, "{status:#}");
    let a = task(&status, "a");
    assert_eq!(a["state"], "closed");
    assert!((n(a, "pages_ok") as usize) < site_a.site.ok_paths().len());

    let run = engine.stop().await;
    assert!(run.status.success(), "{}", run.stderr);
    let items = export(&store).await;
    let count = |name: &str| items.iter().filter(|i| i["task"] == name).count() as u64;
    assert_eq!(count("b") as usize, site_b.site.ok_paths().len());
    assert_eq!(
        count("a"),
        n(a, "pages_ok"),
        "every page a fetched has its item"
    );
}

#[tokio::test]
async fn only_names_of_this_machine_are_served_token_or_not() {
    // With a token, changes are safe from a rebound page, but reads are not: `/api/tasks`
    // shows seeds, which may carry credentials.
    for token in [None, Some("s3cret-s3cret-s3cret")] {
        only_names_of_this_machine_are_served(token).await;
    }
}

async fn only_names_of_this_machine_are_served(token: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = AdminEngine::start(
        dir.path(),
        &[
            "--serve".into(),
            "--admin_host".into(),
            "crawler.internal".into(),
        ],
        token,
    )
    .await;
    let port = engine.base.rsplit(':').next().unwrap_or("0").to_owned();
    for (host, served) in [
        // A DNS-rebinding page reaches the server under its own name.
        ("evil.example".to_owned(), false),
        (format!("evil.example:{port}"), false),
        ("10.9.9.9".to_owned(), false),
        (format!("127.0.0.1:{port}"), true),
        ("localhost".to_owned(), true),
        (format!("[::1]:{port}"), true),
        ("crawler.internal:8080".to_owned(), true),
    ] {
        for (method, path) in [
            ("GET", "/api/status"),
            ("GET", "/api/tasks"),
            ("GET", "/metrics"),
            ("POST", "/api/tasks"),
        ] {
            let a = engine.call_with_host(method, path, &host).await;
            if served {
                assert_ne!(a.status, 403, "{method} {path} as {host}: {}", a.text);
            } else {
                assert_eq!(
                    a.status, 403,
                    "{method} {path} as {host} (token {token:?}): {}",
                    a.text
                );
                assert!(a.text.contains("--admin_host"), "{}", a.text);
            }
        }
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_silent_connections_to_the_admin_port_leave_the_crawl_and_the_api_running() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start_slowly(30, Duration::from_millis(50))
        .await
        .expect("site");
    let engine = AdminEngine::start(
        dir.path(),
        &[
            s("--seed"),
            site.url("/"),
            s("--no_state"),
            s("--serve"),
            s("--per_host=1"),
        ],
        None,
    )
    .await;
    site.wait_for_hits(1).await;
    // 600 connections that never send a byte, from 75 other addresses (as many machines
    // would); the operator asks from 127.0.0.1.
    let addr: std::net::SocketAddr = engine
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("admin address");
    let mut silent = Vec::new();
    for last in 2..77 {
        for _ in 0..8 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(format!("127.0.0.{last}:0").parse().expect("addr"))
                .expect("bind");
            silent.push(socket.connect(addr).await.expect("connect"));
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(5), engine.get("/api/status"))
        .await
        .expect("/api/status answered within five seconds");
    assert!(status["state"].is_string(), "{status}");
    // The crawl goes on to its end with them still open.
    engine
        .wait_for("the crawl to finish", |s| {
            s["state"] == "idle" && s["queued"] == 0 && s["in_flight"] == 0
        })
        .await;
    assert_each_page_fetched_once(&site);
    drop(silent);
    engine.stop().await.succeeded("the engine");
}

#[tokio::test]
async fn an_engine_outside_cluster_mode_takes_no_forwarded_change() {
    // A change signed for a crawl and captured must not be played to an engine of no crawl.
    let dir = tempfile::tempdir().expect("dir");
    let token = "s3cret-s3cret-s3cret";
    let engine = AdminEngine::start(dir.path(), &[s("--serve")], Some(token)).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/api/tasks", engine.base))
        .bearer_auth(token)
        .header("x-spinneret-forwarded", "1")
        .header(
            "x-spinneret-signature",
            format!("t=1,mac={}", "0".repeat(64)),
        )
        .header("content-type", "application/json")
        .body(r#"{"name": "replayed", "seeds": ["http://127.0.0.1:9/"]}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.expect("body");
    assert!(text.contains("not in cluster mode"), "{text}");
    let tasks = engine.get("/api/tasks").await;
    assert!(!tasks.to_string().contains("replayed"), "{tasks}");
    engine.stop().await;
}
