//! Spinneret's test material: a deterministic generated site served over real HTTP, which
//! counts the hits on every path so tests can check what a crawl fetched.

pub mod hostile;
pub mod quotes;
pub mod site;

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
