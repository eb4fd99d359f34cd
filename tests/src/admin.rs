//! An engine started with `--admin`, and an HTTP client for its API.

use crate::binaries::{EngineRun, signal};
use crate::eventually::eventually;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

/// Longest a condition on the admin API may take to come true.
pub const WAIT: Duration = Duration::from_secs(60);

/// An engine running in the background with its admin server.
pub struct AdminEngine {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token to send, if the engine was given one.
    pub token: Option<String>,
    child: Child,
    stderr: Arc<Mutex<String>>,
    summary_path: PathBuf,
    http: reqwest::Client,
}

/// An answer of the admin API: its status and its body as JSON (`null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON, `null` when it is not.
    pub json: serde_json::Value,
    /// The body as text.
    pub text: String,
}

impl AdminEngine {
    /// Starts the engine in `dir` with `args` and `--admin 127.0.0.1:0`, and waits for it to
    /// say where the admin server listens.
    pub async fn start(dir: &Path, args: &[String], token: Option<&str>) -> AdminEngine {
        AdminEngine::start_with_client(dir, args, token, reqwest::Client::new()).await
    }

    /// [`AdminEngine::start`], calling its API through `http` (one that trusts a test CA,
    /// say).
    pub async fn start_with_client(
        dir: &Path,
        args: &[String],
        token: Option<&str>,
        http: reqwest::Client,
    ) -> AdminEngine {
        let summary_path = dir.join(format!(
            "summary-admin-{}.json",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut command = crate::binaries::command("engine");
        command
            .current_dir(dir)
            .args(args)
            .args(["--admin", "127.0.0.1:0", "--summary_json"])
            .arg(&summary_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.args(["--admin_token", token]);
        }
        let mut child = command.spawn().expect("start engine");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let base = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the engine did not report its admin address")
                .expect("read stderr")
                .unwrap_or_else(|| panic!("the engine exited early:\n{seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if let Some(url) = line.strip_prefix("admin on ") {
                break url.trim_end_matches('/').to_owned();
            }
        };
        let stderr = Arc::new(Mutex::new(seen));
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        AdminEngine {
            base,
            token: token.map(str::to_owned),
            child,
            stderr,
            summary_path,
            http,
        }
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the engine is running")
    }

    /// The engine's log so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends a request; `body` is sent as JSON text, the token as a bearer when `auth`.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>, auth: bool) -> Answer {
        let token = if auth { self.token.clone() } else { None };
        self.call_as(method, path, body, token.as_deref()).await
    }

    /// Sends a request with `token` as the bearer, if given.
    pub async fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        self.send(method, path, body, token, None).await
    }

    /// Sends a change (with the token, if the engine has one) naming it with an idempotency
    /// key, so that a repeat is answered, not applied again.
    pub async fn call_with_key(&self, method: &str, path: &str, body: &str, key: &str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("admin server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer { status, json, text }
    }

    /// Sends a request (no body, no token) that names the server as `host`, as a page on a
    /// domain that rebinds to this machine would.
    pub async fn call_with_host(&self, method: &str, path: &str, host: &str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("host", host)
            .send()
            .await
            .expect("admin server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer { status, json, text }
    }

    /// Sends a change with the token, as a browser on a page of `origin` would.
    pub async fn call_with_origin(&self, method: &str, path: &str, origin: &str) -> Answer {
        self.send(method, path, None, self.token.as_deref(), Some(origin))
            .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("admin server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer { status, json, text }
    }

    /// `GET path` as JSON, which must succeed.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let a = self.call("GET", path, None, false).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        a.json
    }

    /// The text of a GET (`/metrics`, say).
    pub async fn text(&self, path: &str) -> String {
        let a = self.call("GET", path, None, false).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        a.text
    }

    /// Polls `path` until `ready` holds for its JSON, and returns it.
    pub async fn wait_for_json(
        &self,
        path: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        // An HTTP API has no event to wait on.
        eventually(WAIT, &format!("{path} to be ready"), || async {
            let json = self.get(path).await;
            if ready(&json) {
                Ok(json)
            } else {
                Err(LastSeen {
                    label: "last",
                    json,
                    engine: self,
                })
            }
        })
        .await
    }

    /// A change with the token, which must answer `expect`.
    pub async fn change(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        expect: u16,
    ) -> serde_json::Value {
        let a = self.call(method, path, body, true).await;
        assert_eq!(a.status, expect, "{method} {path}: {}", a.text);
        a.json
    }

    /// Polls `/api/status` until `ready` holds for it, and returns that status.
    pub async fn wait_for(
        &self,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        // The status is republished four times a second.
        eventually(WAIT, what, || async {
            let status = self.get("/api/status").await;
            if ready(&status) {
                Ok(status)
            } else {
                Err(LastSeen {
                    label: "last status",
                    json: status,
                    engine: self,
                })
            }
        })
        .await
    }

    /// Kills it at once (SIGKILL), as a crash would, and waits for it to exit.
    pub async fn kill9(self) -> EngineRun {
        signal(self.child.id().unwrap_or(0), "KILL");
        self.wait().await
    }

    /// Asks it to stop (SIGTERM) and waits for it to exit.
    pub async fn stop(self) -> EngineRun {
        signal(self.child.id().unwrap_or(0), "TERM");
        self.wait().await
    }

    /// Waits for it to exit on its own.
    pub async fn wait(mut self) -> EngineRun {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the engine did not exit; logs:\n{}", self.logs()))
            .expect("wait");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout).await;
        }
        let summary = std::fs::read_to_string(&self.summary_path)
            .ok()
            .map(|s| serde_json::from_str(&s).expect("summary json"));
        EngineRun {
            status,
            stdout,
            stderr: self.logs(),
            summary,
        }
    }
}

/// What a wait on an engine's API saw last: shown, with the engine's logs (read only then),
/// if the wait fails.
struct LastSeen<'a> {
    label: &'static str,
    json: serde_json::Value,
    engine: &'a AdminEngine,
}

impl fmt::Display for LastSeen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:#}\nlogs:\n{}",
            self.label,
            self.json,
            self.engine.logs()
        )
    }
}

/// The task named `name` in a status.
pub fn task<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {status:#}"))
}

/// The worker with id `id` in a status.
pub fn worker(status: &serde_json::Value, id: u64) -> &serde_json::Value {
    status["workers"]
        .as_array()
        .and_then(|workers| workers.iter().find(|w| w["id"] == id))
        .unwrap_or_else(|| panic!("no worker {id} in {status:#}"))
}

/// A number field.
pub fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a number in {v:#}"))
}
