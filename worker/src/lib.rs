//! The Spinneret worker: a tarpc server that fetches pages and parses them for the engine.
//!
//! Run it with [`run`] on a bound listener, or in-process with [`in_process`] for the
//! engine's single-machine mode.

pub mod addresses;
pub mod charset;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod in_flight;
pub mod metrics;
pub mod parsers;
pub mod render;
pub mod server;
pub mod spider;
pub mod warc;

pub use config::{FetchConfig, WorkerConfig};
pub use server::CrawlServer;

use common::CrawlService;
use common::CrawlServiceClient;
use common::listen::{Accepted, Guard, ServerLimits, accept_loop, close_after_drain};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a stopping worker waits for its requests in flight.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `server` on `listener` (to peers that pass `guard`'s set-up) until `shutdown` is
/// cancelled, then drains: new requests
/// are refused (the engine sends them elsewhere) while those in flight finish.
pub async fn run(
    listener: TcpListener,
    server: CrawlServer,
    limits: ServerLimits,
    guard: Guard,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let drainer = server.clone();
    let close = close_after_drain(shutdown, async move {
        tracing::info!("draining: refusing new requests, finishing those in flight");
        if !drainer.drain(DRAIN_TIMEOUT).await {
            tracing::warn!("requests still in flight at the drain timeout");
        }
    });
    let metrics = server.metrics().clone();
    let guard = Guard {
        on_refused: Some(std::sync::Arc::new(move |reason| metrics.refused(reason))),
        ..guard
    };
    accept_loop(listener, limits, guard, close, move |conn: Accepted| {
        let server = server.clone();
        // Calls past this are refused rather than queued without bound; a well-behaved
        // engine never sends that many.
        let limit = server.worker_info().concurrency as usize * 2 + 16;
        common::serve_transport!(conn.transport(), server.serve(), limit)
    })
    .await
}

/// Starts `server` inside this process and returns a client wired to it without a socket.
pub fn in_process(server: CrawlServer) -> CrawlServiceClient {
    common::serve_in_process!(server.serve(), CrawlServiceClient)
}
