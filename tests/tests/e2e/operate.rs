//! Operating the binaries: log formats, quiet runs, progress lines, worker metrics, and the
//! admin flags' errors.

use spinneret_tests::TestSite;
use spinneret_tests::admin::AdminEngine;
use spinneret_tests::binaries::{Server, closed_port, run_engine};
use std::process::Stdio;
use std::time::Duration;

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Runs the engine in `dir` with `args`, RUST_LOG unset so its own defaults apply.
async fn engine(
    dir: &std::path::Path,
    args: &[String],
) -> (std::process::ExitStatus, String, String) {
    let child = spinneret_tests::binaries::command("engine")
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start engine");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the engine finished")
        .expect("wait");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn crawl_args(site: &TestSite, dir: &std::path::Path, name: &str) -> Vec<String> {
    vec![
        s("--seed"),
        site.url("/"),
        s("--no_state"),
        s("--store"),
        s(dir.join(format!("{name}.db")).display()),
    ]
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(20).await.expect("site");
    let mut args = crawl_args(&site, dir.path(), "json");
    args.extend([s("--log-format"), s("json")]);
    let (status, stdout, stderr) = engine(dir.path(), &args).await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.trim().is_empty());
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_owned());
    }
    assert!(
        messages.iter().any(|m| m == "crawl started"),
        "{messages:?}"
    );
    assert!(
        stdout.contains("pages ok"),
        "the summary is still printed: {stdout}"
    );
}

#[tokio::test]
async fn quiet_prints_only_the_summary() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start_slowly(30, Duration::from_millis(20))
        .await
        .expect("site");
    let mut args = crawl_args(&site, dir.path(), "quiet");
    args.extend([
        s("--quiet"),
        s("--progress_secs"),
        s(1),
        s("--per_host"),
        s(1),
    ]);
    let (status, stdout, stderr) = engine(dir.path(), &args).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr, "", "nothing but warnings on stderr");
    assert!(stdout.contains("pages ok"), "{stdout}");
}

#[tokio::test]
async fn without_a_terminal_progress_is_logged() {
    let dir = tempfile::tempdir().expect("dir");
    // About two seconds of crawling: a progress line a second.
    let site = TestSite::start_slowly(60, Duration::from_millis(30))
        .await
        .expect("site");
    let mut args = crawl_args(&site, dir.path(), "progress");
    args.extend([s("--progress_secs"), s(1), s("--per_host"), s(1)]);
    let (status, _, stderr) = engine(dir.path(), &args).await;
    assert!(status.success(), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" progress "))
        .collect();
    assert!(!progress.is_empty(), "{stderr}");
    for field in [
        "pages_ok=",
        "queued=",
        "in_flight=",
        "items=",
        "workers_up=",
    ] {
        assert!(
            progress[0].contains(field),
            "{field} missing from {}",
            progress[0]
        );
    }
    assert!(!stderr.contains('\u{1b}'), "no colour codes in a log file");
}

#[tokio::test]
async fn a_worker_serves_its_own_metrics() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(20).await.expect("site");
    let port = closed_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let worker = Server::start("worker", &["--metrics", &metrics_addr], dir.path()).await;
    let mut args = crawl_args(&site, dir.path(), "wm");
    args.extend([s("--worker_hosts"), worker.addr.clone()]);
    let run = run_engine(dir.path(), &args).await;
    assert!(run.status.success(), "{}", run.stderr);
    let ok = run.summary()["pages_ok"].as_u64().expect("pages_ok");
    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(&format!(
            r#"spinneret_worker_requests_total{{outcome="ok"}} {ok}"#
        )),
        "{text}"
    );
    assert!(text.contains(r#"spinneret_worker_requests_total{outcome="http_404"}"#));
    assert!(text.contains("spinneret_worker_request_seconds_bucket"));
    assert!(text.contains("spinneret_worker_in_flight 0"));
}

/// Runs `promtool check metrics` on `text`, which must pass, naming `what` if not.
fn promtool_passes(what: &str, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(spinneret_tests::require_program(
        "PROMTOOL",
        "/usr/bin/promtool",
    ))
    .args(["check", "metrics"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what}:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `/metrics` answer's content type and body, asked for with `accept`.
async fn scrape(url: &str, accept: &str) -> (String, String) {
    let answer = reqwest::Client::new()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(answer.status(), 200, "{url}");
    let content_type = answer.headers()["content-type"]
        .to_str()
        .expect("text")
        .to_owned();
    (content_type, answer.text().await.expect("body"))
}

#[tokio::test]
async fn every_metrics_endpoint_passes_promtool_and_the_itemsaver_counts_what_it_saved() {
    let dir = tempfile::tempdir().expect("dir");
    let site = TestSite::start(20).await.expect("site");
    let saver_metrics = format!("127.0.0.1:{}", closed_port());
    let worker_metrics = format!("127.0.0.1:{}", closed_port());
    let store = dir.path().join("saved.db");
    let saver = Server::start(
        "itemsaver",
        &[
            "--store",
            &store.display().to_string(),
            "--metrics",
            &saver_metrics,
        ],
        dir.path(),
    )
    .await;
    let worker = Server::start("worker", &["--metrics", &worker_metrics], dir.path()).await;
    let args = [
        s("--seed"),
        site.url("/"),
        s("--no_state"),
        s("--serve"),
        s("--worker_hosts"),
        worker.addr.clone(),
        s("--itemsaver_host"),
        saver.addr.clone(),
    ];
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    engine
        .wait_for("the crawl to finish", |s| {
            s["state"] == "idle"
                && s["queued"] == 0
                && s["items_extracted"].as_u64() > Some(0)
                && s["items_saved"] == s["items_extracted"]
        })
        .await;
    let engine_metrics = format!("{}/metrics", engine.base);
    let endpoints = [
        ("the engine's admin server", engine_metrics),
        ("the worker", format!("http://{worker_metrics}/metrics")),
        ("the itemsaver", format!("http://{saver_metrics}/metrics")),
    ];
    for (what, url) in &endpoints {
        // curl and promtool ask for anything: the Prometheus text format, whose families
        // are named as their samples.
        let (content_type, text) = scrape(url, "*/*").await;
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{what}"
        );
        promtool_passes(what, &text);
        // A Prometheus server asks for OpenMetrics first.
        let (content_type, text) = scrape(
            url,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .await;
        assert_eq!(
            content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "{what}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{what}: {text}");
    }
    engine.stop().await;
    let items = spinneret_tests::binaries::export(&store).await.len();
    assert!(items > 0);
    let (_, text) = scrape(&endpoints[2].1, "*/*").await;
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in:\n{text}"))
    };
    assert_eq!(
        value(r#"spinneret_itemsaver_items_saved_total{store="sqlite"}"#),
        items as u64,
        "every item stored is counted once"
    );
    let batches = value(r#"spinneret_itemsaver_batches_saved_total{store="sqlite"}"#);
    assert!(batches >= 1);
    assert_eq!(
        value(r#"spinneret_itemsaver_save_seconds_count{store="sqlite"}"#),
        batches
    );
}

#[tokio::test]
async fn admin_flags_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let run = run_engine(dir.path(), &[s("--serve")]).await;
    assert!(!run.status.success());
    assert!(run.stderr.contains("--admin"), "{}", run.stderr);

    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            s("http://127.0.0.1:1/"),
            s("--admin"),
            s("here"),
        ],
    )
    .await;
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("not a listen address"),
        "{}",
        run.stderr
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            s("http://127.0.0.1:1/"),
            s("--no_state"),
            s("--admin"),
            s(addr),
        ],
    )
    .await;
    assert!(!run.status.success());
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("cannot listen on") && errors[0].contains("--admin"),
        "{}",
        errors[0]
    );
}
