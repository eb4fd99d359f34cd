//! The Spinneret itemsaver: a tarpc server that stores items durably (SQLite by default; see
//! [`store`]).
//!
//! Run it with [`run`] on a bound listener, or in-process with [`in_process`] for the
//! engine's single-machine mode.

pub mod export;
pub mod metrics;
pub mod server;
pub mod store;

pub use server::{DEFAULT_MAX_BATCH, DEFAULT_MAX_ITEM_BYTES, ItemSaverServer};
pub use store::{ItemStore, SqliteStore, StoreError, StoreSpec, StoreSpecParser};

use common::ItemSaverService;
use common::ItemSaverServiceClient;
use common::listen::{Accepted, Guard, ServerLimits, accept_loop, close_after_drain};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Concurrent calls one connection may have open; the engine keeps one or two.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 64;

/// Serves `server` on `listener` (to peers that pass `guard`'s set-up) until `shutdown` is
/// cancelled.
pub async fn run(
    listener: TcpListener,
    server: ItemSaverServer,
    limits: ServerLimits,
    guard: Guard,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // On shutdown, refuse new batches (the engine keeps them and re-sends), let the commits
    // in progress finish, then close.
    let drainer = server.clone();
    let close = close_after_drain(shutdown, async move {
        if !drainer.drain(std::time::Duration::from_secs(10)).await {
            tracing::warn!("commits still running at the drain timeout");
        }
    });
    accept_loop(listener, limits, guard, close, move |conn: Accepted| {
        let server = server.clone();
        // Calls past this are refused rather than queued without bound; a well-behaved
        // engine never sends that many.
        let limit = MAX_REQUESTS_PER_CONNECTION;
        common::serve_transport!(conn.transport(), server.serve(), limit)
    })
    .await
}

/// Starts `server` inside this process and returns a client wired to it without a socket.
pub fn in_process(server: ItemSaverServer) -> ItemSaverServiceClient {
    common::serve_in_process!(server.serve(), ItemSaverServiceClient)
}
