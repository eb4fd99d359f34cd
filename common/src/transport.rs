//! The one place RPC connections are made: framing, frame limit, deadlines. The server's end,
//! the accept loop and its limits, is in [`crate::listen`].
//!
//! Both ends use [`MAX_FRAME_BYTES`]. A frame over it, or bytes that do not decode, end that
//! one connection; the server goes on serving the others.

use crate::codec::{Side, WireCodec};
use crate::handshake::{Credentials, HandshakeError};
use crate::service::{CrawlServiceClient, ItemSaverServiceClient};
use crate::tls::MaybeTls;
use crate::traffic::{Counted, Traffic};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::serde_transport::Transport;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The largest frame either end sends or accepts, in bytes.
///
/// Sized above the largest `ParseResult` a worker may produce (its body limit bounds what a
/// page can yield) and the largest item batch the engine sends.
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// A bincode-over-TCP (or TLS) transport carrying `In` from the peer and `Out` to it.
pub type TcpTransport<In, Out> = Transport<MaybeTls<TcpStream>, In, Out, WireCodec<In, Out>>;

/// A client transport whose traffic is counted (on the wire, under any TLS).
pub type CountedTransport<In, Out> =
    Transport<MaybeTls<Counted<TcpStream>>, In, Out, WireCodec<In, Out>>;

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
    /// The peer was refused, or refused us, at the connection's set-up.
    #[error("{addr}: {source}")]
    Handshake {
        /// The address tried.
        addr: String,
        /// What went wrong.
        #[source]
        source: crate::handshake::HandshakeError,
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

/// Opens a framed connection to `addr` (`host:port`), giving up after `timeout`, and sets it
/// up (versions, and the token when `credentials` has one) before any request; its bytes are
/// counted into `traffic`.
pub async fn connect<In, Out>(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
    credentials: &Credentials,
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
            let stream = Counted::new(stream, traffic.clone());
            let refused = |source| ConnectError::Handshake {
                addr: addr.to_owned(),
                source,
            };
            let mut stream = match &credentials.tls {
                None => MaybeTls::Left(stream),
                Some(config) => {
                    match tokio::time::timeout(timeout, crate::tls::connect(stream, config, addr))
                        .await
                    {
                        Err(_) => return Err(refused(HandshakeError::Timeout(timeout))),
                        Ok(Err(e)) => return Err(refused(HandshakeError::Tls(e))),
                        Ok(Ok(tls)) => tls,
                    }
                }
            };
            crate::handshake::client(&mut stream, credentials.token.as_ref(), timeout)
                .await
                .map_err(|e| refused(e.from_tls()))?;
            Ok(frame(stream, Side::Client))
        }
    }
}

/// Connects a `CrawlService` client to the worker at `addr`.
pub async fn connect_worker(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
    credentials: &Credentials,
) -> Result<CrawlServiceClient, ConnectError> {
    let transport = connect(addr, timeout, traffic, credentials).await?;
    Ok(CrawlServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Connects an `ItemSaverService` client to the itemsaver at `addr`.
pub async fn connect_itemsaver(
    addr: &str,
    timeout: Duration,
    traffic: &Arc<Traffic>,
    credentials: &Credentials,
) -> Result<ItemSaverServiceClient, ConnectError> {
    let transport = connect(addr, timeout, traffic, credentials).await?;
    Ok(ItemSaverServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Returns a call context whose deadline is `timeout` from now (at most
/// [`MAX_DEADLINE`](crate::codec::MAX_DEADLINE)); every RPC gets one.
pub fn deadline(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout.min(crate::codec::MAX_DEADLINE);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connect_to_closed_port_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = connect::<String, String>(
            &addr,
            Duration::from_secs(5),
            &Arc::default(),
            &Credentials::default(),
        )
        .await
        .err()
        .expect("connecting to a closed port must fail");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
