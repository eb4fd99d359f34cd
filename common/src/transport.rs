//! The one place RPC connections are made: framing, frame limit, deadlines, accept loop.
//!
//! Both ends use [`MAX_FRAME_BYTES`]. A frame over it, or bytes that do not decode, end that
//! one connection; the server goes on serving the others.

use crate::codec::{Side, WireCodec};
use crate::service::{CrawlServiceClient, ItemSaverServiceClient};
use crate::traffic::{Counted, Traffic};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::serde_transport::Transport;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// The largest frame either end sends or accepts, in bytes.
///
/// Sized above the largest `ParseResult` a worker may produce (its body limit bounds what a
/// page can yield) and the largest item batch the engine sends.
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// A bincode-over-TCP transport carrying `In` from the peer and `Out` to it.
pub type TcpTransport<In, Out> = Transport<TcpStream, In, Out, WireCodec<In, Out>>;

/// A client transport whose traffic is counted.
pub type CountedTransport<In, Out> = Transport<Counted<TcpStream>, In, Out, WireCodec<In, Out>>;

/// Why a connection to a peer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered in time.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The address tried.
        addr: String,
        /// The limit that ran out.
        timeout: Duration,
    },
    /// The connection was refused or failed.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The address tried.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Wraps an accepted (`Side::Server`) or connected (`Side::Client`) stream in the project's
/// framing and codec.
pub fn frame<S, In, Out>(stream: S, side: Side) -> Transport<S, In, Out, WireCodec<In, Out>>
where
    S: AsyncRead + AsyncWrite,
    In: for<'de> Deserialize<'de>,
    Out: Serialize,
{
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_framed(stream);
    tarpc::serde_transport::new(framed, WireCodec::new(side))
}

/// Opens a framed connection to `addr` (`host:port`), giving up after `timeout`; its bytes are
/// counted into `traffic`.
pub async fn connect<In, Out>(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
) -> Result<CountedTransport<In, Out>, ConnectError>
where
    In: for<'de> Deserialize<'de>,
    Out: Serialize,
{
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout {
            addr: addr.to_owned(),
            timeout,
        }),
        Ok(Err(source)) => Err(ConnectError::Io {
            addr: addr.to_owned(),
            source,
        }),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(frame(Counted::new(stream, traffic.clone()), Side::Client))
        }
    }
}

/// Connects a `CrawlService` client to the worker at `addr`.
pub async fn connect_worker(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
) -> Result<CrawlServiceClient, ConnectError> {
    let transport = connect(addr, timeout, traffic).await?;
    Ok(CrawlServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Connects an `ItemSaverService` client to the itemsaver at `addr`.
pub async fn connect_itemsaver(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
) -> Result<ItemSaverServiceClient, ConnectError> {
    let transport = connect(addr, timeout, traffic).await?;
    Ok(ItemSaverServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Returns a call context whose deadline is `timeout` from now (at most
/// [`MAX_DEADLINE`](crate::codec::MAX_DEADLINE)); every RPC gets one.
pub fn deadline(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout.min(crate::codec::MAX_DEADLINE);
    ctx
}

/// Limits a server applies to its peers.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Connections served at once; the next `accept` waits for a free slot.
    pub max_connections: usize,
    /// How long to wait for open connections to finish after shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Returns a token that is cancelled once `shutdown` has fired and `drain` (the server
/// refusing new work and finishing what it has) has completed: the accept loop's stop signal
/// for a server that drains.
pub fn close_after_drain<F>(shutdown: CancellationToken, drain: F) -> CancellationToken
where
    F: Future<Output = ()> + Send + 'static,
{
    let close = CancellationToken::new();
    let closing = close.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        drain.await;
        closing.cancel();
    });
    close
}

/// Accepts connections until `shutdown`, running `serve_conn` for each on its own task.
///
/// A permit is taken before `accept`, so at most `limits.max_connections` run at once. After
/// shutdown, connections get `limits.drain_timeout` to finish, then are dropped.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: ServerLimits,
    shutdown: CancellationToken,
    mut serve_conn: F,
) -> io::Result<()>
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: wait a little rather than spin.
                    warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        debug!(%peer, "connection accepted");
        let _ = stream.set_nodelay(true);
        let conn = serve_conn(stream, peer);
        let conn_shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = conn => debug!(%peer, "connection closed"),
                _ = conn_shutdown.cancelled() => debug!(%peer, "connection closed at shutdown"),
            }
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(limits.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        info!("connections still open after the drain timeout; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};

    async fn echo_server() -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(accept_loop(
            listener,
            ServerLimits::default(),
            token,
            |stream, _| async move {
                let mut t: TcpTransport<String, String> = frame(stream, Side::Server);
                while let Some(Ok(msg)) = t.next().await {
                    if t.send(msg).await.is_err() {
                        break;
                    }
                }
            },
        ));
        (addr, shutdown)
    }

    #[tokio::test]
    async fn garbage_frame_closes_only_that_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, shutdown) = echo_server().await;

        // A length prefix far over the limit, then garbage.
        let mut raw = TcpStream::connect(addr).await.expect("connect raw");
        raw.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        raw.write_all(b"garbage garbage").await.expect("write");
        let mut buf = [0u8; 16];
        let n = raw.read(&mut buf).await.unwrap_or(0);
        assert_eq!(
            n, 0,
            "the server must close a connection that sent an oversized frame"
        );

        // The server still serves a well-behaved peer.
        let traffic = Arc::new(Traffic::default());
        let mut t: CountedTransport<String, String> =
            connect(&addr.to_string(), Duration::from_secs(5), &traffic)
                .await
                .expect("connect");
        t.send("hello".to_owned()).await.expect("send");
        assert_eq!(t.next().await.expect("reply").expect("frame"), "hello");
        assert!(traffic.bytes() > 0, "the connection's bytes are counted");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn connect_to_closed_port_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = connect::<String, String>(&addr, Duration::from_secs(5), &Arc::default())
            .await
            .err()
            .expect("connecting to a closed port must fail");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
