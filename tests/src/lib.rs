//! Spinneret's test material: a deterministic generated site served over real HTTP, which
//! counts the hits on every path so tests can check what a crawl fetched, and the harness of
//! the end-to-end tests (the binaries spawned, a cluster of them on Redis, bounded waits).

pub mod admin;
pub mod binaries;
pub mod certs;
pub mod cluster;
pub mod eventually;
pub mod hostile;
pub mod postgres;
pub mod quotes;
pub mod redis;
pub mod scripted;
pub mod site;
pub mod warc;

pub use eventually::{eventually, eventually_every};
pub use site::{Site, TestSite};

/// Serves `app` on `listener` in the background until the returned token is cancelled.
pub fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    shutdown
}

/// Returns the path of an external program a test needs (from `env` if set, else `default`),
/// and fails the test at once with `scripts/deps.sh`'s one-line instruction when it is missing.
///
/// `make test` installs these through `make deps` first, so this only fires when the tests are
/// run another way on a machine that lacks them.
pub fn require_program(env: &str, default: &str) -> std::path::PathBuf {
    let path = std::env::var_os(env).map_or_else(|| default.into(), std::path::PathBuf::from);
    if path.exists() {
        return path;
    }
    let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps.sh");
    let instruction = std::process::Command::new(&deps)
        .arg("--check")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_owned())
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| "run `make deps` to install the tests' system packages".to_owned());
    panic!(
        "{} is missing (or set {env}): {instruction}",
        path.display()
    );
}
