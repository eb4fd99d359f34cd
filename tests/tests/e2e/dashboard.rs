//! The dashboard in a real browser: headless Chromium, driven over WebDriver by Debian's
//! chromedriver, loads the page during a crawl, sees the figures move without a reload,
//! pauses and resumes a task with the page's buttons, and leaves a screenshot in `target/`.

use base64::Engine as _;
use spinneret_tests::admin::{AdminEngine, WAIT, task};
use spinneret_tests::{TestSite, eventually, eventually_every, require_program};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where cargo builds: the screenshot goes there.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .expect("target directory")
}

/// A chromedriver process and one browser session on it.
struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
    _driver: Child,
}

impl Browser {
    async fn start(profile: &std::path::Path) -> Browser {
        let chromium = require_program("CHROMIUM", "/usr/bin/chromium");
        let driver_bin = require_program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = spinneret_tests::binaries::closed_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(30), "chromedriver to start", || async {
            let Ok(r) = http.get(format!("{base}/status")).send().await else {
                return false;
            };
            r.json_text()
                .await
                .is_ok_and(|v| v["value"]["ready"] == true)
        })
        .await;
        let caps = serde_json::json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1300,1000",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }}
        });
        let mut browser = Browser {
            base,
            session: String::new(),
            http,
            _driver: driver,
        };
        let v = browser.call("POST", "/session", Some(caps)).await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v:#}"))
            .to_owned();
        browser
    }

    /// A WebDriver command; its `value`, or the error as `Err`.
    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let v = response.json_text().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"]["message"].as_str().unwrap_or("error").to_owned())
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(serde_json::json!({ "url": url })))
            .await;
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let found = self
            .try_call(
                "POST",
                "/element",
                Some(serde_json::json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        let id = found[ELEMENT].as_str()?.to_owned();
        let text = self
            .try_call("GET", &format!("/element/{id}/text"), None)
            .await
            .ok()?;
        text.as_str().map(str::to_owned)
    }

    /// Waits until the text of `css` satisfies `ready`, and returns it.
    async fn wait_text(&self, css: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        eventually_every(
            WAIT,
            Duration::from_millis(100),
            &format!("the dashboard to show {what}"),
            || async {
                match self.text(css).await {
                    Some(text) if ready(&text) => Ok(text),
                    seen => Err(format!("at {css}: {seen:?}")),
                }
            },
        )
        .await
    }

    /// Clicks the element matching `css`; the page redraws its tables every second, so a
    /// click that lands on a replaced element is tried again.
    async fn click(&self, css: &str) {
        for _ in 0..10 {
            let Ok(found) = self
                .try_call(
                    "POST",
                    "/element",
                    Some(serde_json::json!({"using": "css selector", "value": css})),
                )
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let id = found[ELEMENT].as_str().expect("element id").to_owned();
            if self
                .try_call(
                    "POST",
                    &format!("/element/{id}/click"),
                    Some(serde_json::json!({})),
                )
                .await
                .is_ok()
            {
                return;
            }
        }
        panic!("could not click {css}");
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot")
    }

    async fn close(self) {
        let _ = self.try_call("DELETE", "", None).await;
    }
}

/// Reads a response body as JSON (reqwest here is built without its json feature).
trait JsonText {
    async fn json_text(self) -> Result<serde_json::Value, String>;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> Result<serde_json::Value, String> {
        let text = self.text().await.map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }
}

fn number(text: &str) -> Option<u64> {
    text.replace(',', "").trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_crawl_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("dir");
    // Slow enough to outlast the checks; the test stops the engine when done.
    let site = TestSite::start_slowly(3_000, Duration::from_millis(40))
        .await
        .expect("site");
    let store = dir.path().join("items.db");
    let args: Vec<String> = [
        "--seed",
        &site.url("/"),
        "--per_host",
        "2",
        "--no_state",
        "--store",
        &store.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let engine = AdminEngine::start(dir.path(), &args, None).await;
    let browser = Browser::start(&dir.path().join("profile")).await;
    browser.goto(&format!("{}/", engine.base)).await;

    // The figures arrive, then move, on the same page: no reload.
    let first = browser
        .wait_text("#pages-done", "pages done", |t| {
            number(t).is_some_and(|n| n > 0)
        })
        .await;
    let first = number(&first).unwrap_or(0);
    browser
        .wait_text("#pages-done", "the page count rising", |t| {
            number(t).is_some_and(|n| n > first + 10)
        })
        .await;
    browser
        .wait_text("#workers tbody", "the worker, up", |t| {
            t.contains("in-process") && t.contains("UP")
        })
        .await;
    browser
        .wait_text("#tasks tbody", "the task, running", |t| {
            t.contains("default") && t.contains("RUNNING")
        })
        .await;
    browser
        .wait_text("#state", "the crawl's state", |t| t == "RUNNING")
        .await;
    browser
        .wait_text("#pages-per-sec", "a throughput", |t| {
            t.parse::<f64>().is_ok_and(|r| r > 0.0)
        })
        .await;
    // The chart needs two seconds of history before it draws its line.
    browser
        .wait_text("#chart", "the throughput chart", |t| {
            !t.contains("collecting")
        })
        .await;
    let chart = browser
        .call(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({
                "script": "return document.querySelectorAll('#chart polyline').length;",
                "args": []
            })),
        )
        .await;
    assert_eq!(chart, 1, "the chart draws one line");

    // The page's buttons steer the crawl.
    browser
        .click(r#"#tasks button[data-path="/api/tasks/1/pause"]"#)
        .await;
    engine
        .wait_for("the task paused from the page", |s| {
            task(s, "default")["state"] == "paused"
        })
        .await;
    browser
        .wait_text("#tasks tbody", "the task, paused", |t| t.contains("PAUSED"))
        .await;
    let png = browser.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let shot = target_dir().join("dashboard.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    browser
        .click(r#"#tasks button[data-path="/api/tasks/1/resume"]"#)
        .await;
    engine
        .wait_for("the task resumed from the page", |s| {
            task(s, "default")["state"] == "running"
        })
        .await;

    browser.close().await;
    let run = engine.stop().await;
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.summary()["stopped"], "interrupted");
}
