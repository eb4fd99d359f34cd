//! Start-up plumbing the three binaries share: logging and shutdown signals.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`, with tarpc's own
/// per-connection chatter held to errors; ours says what matters).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tarpc=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Cancels `token` on the first SIGINT or SIGTERM; exits the process at once on the second.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down (signal again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
