//! Spawning the workspace's binaries (built next to the test executable) and reading back
//! what they did.

use crate::TestSite;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest a whole engine run may take in a test before it counts as hung.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);

/// A command running the binary `name`. Workers and engines are told `--allow_private`
/// (through its variable): every test site is on 127.0.0.1, which their SSRF guard refuses
/// by default. A test of the guard sets it back to `false`.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(bin(name));
    command.env("SPINNERET_ALLOW_PRIVATE", "true");
    command
}

/// The path of a workspace binary, built next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// A server binary running on a free port.
pub struct Server {
    /// `127.0.0.1:PORT` as it reported.
    pub addr: String,
    /// Where its logs go.
    pub log: PathBuf,
    /// Held so the process lives as long as this value (killed on drop).
    _child: Child,
}

impl Server {
    /// Starts `name` with `args` and `--port 0`, and waits for it to say where it listens.
    pub async fn start(name: &str, args: &[&str], dir: &Path) -> Server {
        let mut all = args.to_vec();
        all.extend(["--port", "0"]);
        Server::start_on(name, &all, dir).await
    }

    /// Starts `name` with `args` (which give the port), and waits for it to say where it listens.
    pub async fn start_on(name: &str, args: &[&str], dir: &Path) -> Server {
        Server::start_with_env(name, args, &[], dir).await
    }

    /// [`Server::start_on`] with environment variables set.
    pub async fn start_with_env(
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        dir: &Path,
    ) -> Server {
        let log = dir.join(format!("{name}-{}.log", unique()));
        let mut child = command(name)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name} did not report its address"))
            .expect("read stdout")
            .unwrap_or_else(|| {
                panic!(
                    "{name} exited early: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {first:?}"))
            .to_owned();
        // Keep reading so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            addr,
            log,
            _child: child,
        }
    }

    /// The port, for the `:PORT` host syntax.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self._child.id().unwrap_or(0)
    }

    /// Waits for the process to exit on its own (bounded) and returns its status.
    pub async fn wait_exit(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self._child.wait())
            .await
            .expect("the server did not exit")
            .expect("wait")
    }

    /// The server's log so far, for failure messages.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What a finished engine run left.
pub struct EngineRun {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed on stdout (the summary).
    pub stdout: String,
    /// What it printed on stderr (logs and errors).
    pub stderr: String,
    /// The `--summary_json` it wrote, when it got that far.
    pub summary: Option<serde_json::Value>,
}

impl EngineRun {
    /// The run, after failing the test with the engine's output unless it exited 0.
    pub fn succeeded(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what}: engine exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The summary, failing the test with the engine's output when it is missing.
    pub fn summary(&self) -> &serde_json::Value {
        self.summary.as_ref().unwrap_or_else(|| {
            panic!(
                "no summary; stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs a program to completion (bounded by [`ENGINE_TIMEOUT`]) with `envs` set, in `cwd`
/// when given (so files it creates by default land in the test's directory).
pub async fn run_bin_in(
    cwd: Option<&Path>,
    name: &str,
    args: &[String],
    envs: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    let mut spawned = command(name);
    if let Some(dir) = cwd {
        spawned.current_dir(dir);
    }
    let child = spawned
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let out = tokio::time::timeout(ENGINE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} {args:?} did not finish within {ENGINE_TIMEOUT:?}"))
        .expect("wait");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs a program to completion in the current directory; see [`run_bin_in`].
pub async fn run_bin(
    name: &str,
    args: &[String],
    envs: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    run_bin_in(None, name, args, envs).await
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new(crate::require_program("KILL", "/bin/kill"))
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// An engine running in the background, to be interrupted.
pub struct EngineProc {
    child: Child,
    summary_path: PathBuf,
}

impl EngineProc {
    /// Starts the engine with `args` in `dir`.
    pub fn spawn(dir: &Path, args: &[String]) -> EngineProc {
        let summary_path = dir.join(format!("summary-{}.json", unique()));
        let child = command("engine")
            .current_dir(dir)
            .args(args)
            .args([
                "--summary_json".to_owned(),
                summary_path.display().to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start engine");
        EngineProc {
            child,
            summary_path,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Waits for it to exit, keeping it for [`EngineProc::wait`] to collect.
    pub async fn exited(&mut self) -> ExitStatus {
        self.child.wait().await.expect("wait")
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub async fn kill9(mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits for it to exit (bounded by [`ENGINE_TIMEOUT`]).
    pub async fn wait(self) -> EngineRun {
        let out = tokio::time::timeout(ENGINE_TIMEOUT, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("the engine did not finish within {ENGINE_TIMEOUT:?}"))
            .expect("wait");
        let summary = std::fs::read_to_string(&self.summary_path)
            .ok()
            .map(|s| serde_json::from_str(&s).expect("summary json"));
        EngineRun {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
            summary,
        }
    }
}

/// Runs the engine with `args` in `dir`, writing its summary there.
pub async fn run_engine(dir: &Path, args: &[String]) -> EngineRun {
    run_engine_with_env(dir, args, &[]).await
}

/// [`run_engine`] with environment variables set.
pub async fn run_engine_with_env(dir: &Path, args: &[String], envs: &[(&str, &str)]) -> EngineRun {
    let summary_path = dir.join(format!("summary-{}.json", unique()));
    let mut all = args.to_vec();
    all.extend(["--summary_json".into(), summary_path.display().to_string()]);
    let (status, stdout, stderr) = run_bin_in(Some(dir), "engine", &all, envs).await;
    let summary = std::fs::read_to_string(&summary_path)
        .ok()
        .map(|s| serde_json::from_str(&s).expect("summary json"));
    EngineRun {
        status,
        stdout,
        stderr,
        summary,
    }
}

/// Every item in the store at `path`, via `itemsaver export`.
pub async fn export(store: &Path) -> Vec<serde_json::Value> {
    let args = vec![
        "export".into(),
        "--store".into(),
        store.display().to_string(),
        "--format".into(),
        "jsonl".into(),
    ];
    let (status, stdout, stderr) = run_bin("itemsaver", &args, &[]).await;
    assert!(status.success(), "export failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

/// The peak resident memory of process `pid` in MiB (Linux `VmHWM`).
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<f64>().ok())
        .expect("kB")
        / 1024.0
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Checks that every page of `site` was fetched exactly once, every broken link and the
/// robots.txt once, and nothing else (no off-site link, no disallowed page, no second fetch).
pub fn assert_each_page_fetched_once(site: &TestSite) {
    let hits = site.hits();
    let expected = site.site.polite_crawl_paths();
    let got: BTreeSet<String> = hits.keys().cloned().collect();
    assert_eq!(got, expected, "paths fetched differ from the reachable set");
    let repeated: Vec<_> = hits.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "fetched more than once: {repeated:?}");
}

/// Checks that the stored items are exactly one `page` item per page, with the right titles.
pub fn assert_items_match_site(items: &[serde_json::Value], site: &TestSite) {
    let mut urls = BTreeSet::new();
    for item in items {
        let url = item["url"].as_str().expect("url");
        let path = url
            .strip_prefix(&format!("http://{}", site.addr))
            .expect("item from the site");
        assert_eq!(item["kind"], "page");
        assert_eq!(item["id"], item["url"]);
        assert_eq!(
            item["title"].as_str(),
            site.site.title(path).as_deref(),
            "title of {path}"
        );
        assert!(urls.insert(path.to_owned()), "duplicate item for {path}");
    }
    assert_eq!(
        urls,
        site.site.ok_paths(),
        "stored items differ from the site's pages"
    );
}
