//! A small HTTP endpoint serving a Prometheus registry at `GET /metrics`, for the processes
//! that have nothing else to serve over HTTP (workers, with `--metrics ADDR`).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `registry` as a Prometheus text response.
pub fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A router with `GET /metrics` rendering `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(r): State<Arc<Registry>>| async move { render(&r) }),
        )
        .with_state(registry)
}

/// Binds `addr` and serves `router` until `shutdown`, under the limits of
/// [`crate::http_serve`]; returns the bound address once it listens, and the serving task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let limits = crate::listen::ServerLimits::default();
    let task = tokio::spawn(async move {
        if let Err(e) = crate::http_serve::serve(listener, router, None, limits, shutdown).await {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok((local, task))
}

/// Reads an HTTP listen address: `PORT`, `:PORT` (both on 127.0.0.1) or `IP:PORT`. Loopback
/// unless an address says otherwise, since these endpoints are not meant for the open network.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not a listen address (expected PORT, :PORT or IP:PORT)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_default_to_loopback() {
        assert_eq!(
            parse_listen_addr("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr(":8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:9").unwrap(),
            "0.0.0.0:9".parse().unwrap()
        );
        assert!(parse_listen_addr("localhost:x").is_err());
    }
}
