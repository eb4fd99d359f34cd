//! The server's end of RPC: the accept loop, the limits it holds peers to, and the transport
//! each accepted connection is served over.
//!
//! No peer can starve a port: connections still in their set-up (TLS, versions, token) have
//! a budget of their own, [`ServerLimits::max_pending`] in all and
//! [`ServerLimits::max_pending_per_ip`] per address (IPv6 by its /48), and past it the oldest
//! set-up is dropped, so silent peers never hold the slots of peers that complete theirs;
//! a connection slot ([`ServerLimits::max_connections`]) is taken once the set-up is done;
//! one address holds at most [`ServerLimits::max_connections_per_ip`] connections; and a
//! connection that completes no frame within [`ServerLimits::first_frame_timeout`] of
//! opening, or none for [`ServerLimits::idle_timeout`], stops being read. A stopping server stops reading from its
//! connections but writes every answer it computed before closing them.

use crate::codec::Side;
use crate::handshake::{Credentials, HandshakeError};
use crate::tls::MaybeTls;
use crate::transport::{TcpTransport, frame};
use futures::{Sink, Stream};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Limits a server applies to its peers.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Connections served at once, once set up; one set up past it waits for a free slot.
    pub max_connections: usize,
    /// Connections in their set-up at once; past it the oldest set-up is dropped.
    pub max_pending: usize,
    /// Connections in their set-up one address (one /48 network for IPv6) may hold at once
    /// (at most `max_connections_per_ip`); more are closed as soon as accepted.
    pub max_pending_per_ip: usize,
    /// Connections one peer address (one /64 network for IPv6) may hold at once; more are
    /// closed as soon as accepted.
    pub max_connections_per_ip: usize,
    /// How long a new connection has to send its first complete frame.
    pub first_frame_timeout: Duration,
    /// How long a connection may go without sending a complete frame.
    pub idle_timeout: Duration,
    /// How long to wait for open connections to finish after shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            max_pending: 64,
            max_pending_per_ip: 8,
            max_connections_per_ip: 32,
            first_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The connection-limit flags of `worker` and `itemsaver`.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Connections served at once.
    #[arg(
        long = "max_connections",
        alias = "max-connections",
        value_name = "N",
        env = "SPINNERET_MAX_CONNECTIONS",
        default_value_t = ServerLimits::default().max_connections,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub max_connections: usize,

    /// Connections in their set-up (TLS, versions, token) at once: past it the oldest set-up
    /// is dropped, so peers that never finish theirs cannot keep others out.
    #[arg(
        long = "max_pending",
        alias = "max-pending",
        value_name = "N",
        env = "SPINNERET_MAX_PENDING",
        default_value_t = ServerLimits::default().max_pending,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub max_pending: usize,

    /// Connections in their set-up one address (an IPv6 /48) may hold at once.
    #[arg(
        long = "max_pending_per_ip",
        alias = "max-pending-per-ip",
        value_name = "N",
        env = "SPINNERET_MAX_PENDING_PER_IP",
        default_value_t = ServerLimits::default().max_pending_per_ip,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub max_pending_per_ip: usize,

    /// Connections one peer address may hold at once.
    #[arg(
        long = "max_connections_per_ip",
        alias = "max-connections-per-ip",
        value_name = "N",
        env = "SPINNERET_MAX_CONNECTIONS_PER_IP",
        default_value_t = ServerLimits::default().max_connections_per_ip,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub max_connections_per_ip: usize,

    /// Seconds a new connection has to finish its set-up (TLS, versions, token) and send its
    /// first complete request.
    #[arg(
        long = "first_frame_timeout",
        alias = "first-frame-timeout",
        value_name = "SECS",
        env = "SPINNERET_FIRST_FRAME_TIMEOUT",
        default_value_t = ServerLimits::default().first_frame_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub first_frame_timeout: u64,

    /// Seconds a connection may go without sending a complete request before it is closed.
    #[arg(
        long = "idle_timeout",
        alias = "idle-timeout",
        value_name = "SECS",
        env = "SPINNERET_IDLE_TIMEOUT",
        default_value_t = ServerLimits::default().idle_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub idle_timeout: u64,
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            max_pending: self.max_pending,
            max_pending_per_ip: self.max_pending_per_ip,
            max_connections_per_ip: self.max_connections_per_ip,
            first_frame_timeout: Duration::from_secs(self.first_frame_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            ..ServerLimits::default()
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

/// An accepted connection, to be served over [`Accepted::transport`].
#[derive(Debug)]
pub struct Accepted {
    /// The connection, set up and (with TLS) encrypted.
    pub stream: MaybeTls<TcpStream>,
    /// Who connected.
    pub peer: SocketAddr,
    limits: ServerLimits,
    /// When the first request must have arrived (the set-up counts against it).
    first_frame_by: Instant,
    close: CancellationToken,
}

impl Accepted {
    /// The connection as a server transport: framed, decoded, and watched for silence and for
    /// the server's close.
    pub fn transport<In, Out>(self) -> ServerTransport<In, Out>
    where
        In: for<'de> Deserialize<'de>,
        Out: Serialize,
    {
        ServerTransport {
            inner: Box::pin(frame(self.stream, Side::Server)),
            close: Box::pin(self.close.cancelled_owned()),
            silence: Box::pin(tokio::time::sleep_until(self.first_frame_by)),
            idle_timeout: self.limits.idle_timeout,
            peer: self.peer,
            closing_until: None,
            ended: false,
        }
    }
}

/// A server connection that stops reading when the peer goes silent or the server closes.
///
/// Stopping reading is how tarpc is told to finish: it then writes the answers of every
/// request in flight and ends the connection, so no computed answer is lost.
pub struct ServerTransport<In, Out> {
    inner: Pin<Box<TcpTransport<In, Out>>>,
    close: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Fires when the peer has been silent too long (or, once closing, quiet long enough).
    silence: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    peer: SocketAddr,
    /// Once the server closes: reading goes on until the peer is quiet, at most until then.
    closing_until: Option<Instant>,
    ended: bool,
}

/// After the server closes, how long a connection keeps reading until its peer falls quiet:
/// a call the peer sent just as the last answers left is read and refused (the server is
/// draining), rather than lost with the connection.
const CLOSING_QUIET: Duration = Duration::from_millis(250);
/// The longest a closing connection keeps reading.
const CLOSING_AT_MOST: Duration = Duration::from_secs(2);

impl<In, Out> Stream for ServerTransport<In, Out>
where
    In: for<'de> Deserialize<'de>,
    Out: Serialize,
{
    type Item = io::Result<In>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.closing_until.is_none() && self.close.as_mut().poll(cx).is_ready() {
            let until = Instant::now() + CLOSING_AT_MOST;
            self.closing_until = Some(until);
            self.silence
                .as_mut()
                .reset((Instant::now() + CLOSING_QUIET).min(until));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let next = match self.closing_until {
                    Some(until) => (Instant::now() + CLOSING_QUIET).min(until),
                    None => Instant::now() + self.idle_timeout,
                };
                self.silence.as_mut().reset(next);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.silence.as_mut().poll(cx).is_ready() {
                    if self.closing_until.is_some() {
                        debug!(peer = %self.peer, "server closing: no more requests read");
                    } else {
                        info!(peer = %self.peer, "closing a connection that sent no complete request in time");
                    }
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    }
}

impl<In, Out: Serialize> Sink<Out> for ServerTransport<In, Out> {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Out) -> io::Result<()> {
        self.inner.as_mut().start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

/// What a server checks its peers with at each connection's set-up, and where it counts the
/// peers it refused (by reason, for its metrics).
#[derive(Clone, Default)]
pub struct Guard {
    /// The credentials peers must match.
    pub credentials: Credentials,
    /// TLS every connection must begin with (`--tls_cert/--tls_key`, and `--tls_ca` for
    /// client certificates).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Called with the reason of each refusal.
    pub on_refused: Option<Arc<dyn Fn(&'static str) + Send + Sync>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("credentials", &self.credentials)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Sets up an accepted connection within `timeout`: TLS when the guard has it, then the
/// versions and token.
async fn set_up(
    stream: TcpStream,
    guard: &Guard,
    timeout: Duration,
) -> Result<MaybeTls<TcpStream>, HandshakeError> {
    let started = Instant::now();
    let mut stream = match &guard.tls {
        None => MaybeTls::Left(stream),
        Some(config) => {
            match tokio::time::timeout(timeout, crate::tls::accept(stream, config)).await {
                Err(_) => return Err(HandshakeError::Timeout(timeout)),
                Ok(Err(e)) => return Err(HandshakeError::Tls(e)),
                Ok(Ok(tls)) => tls,
            }
        }
    };
    let left = timeout.saturating_sub(started.elapsed());
    crate::handshake::server(&mut stream, guard.credentials.token.as_ref(), left)
        .await
        .map_err(HandshakeError::from_tls)?;
    Ok(stream)
}

/// Refusals at the set-up logged per [`REFUSAL_REPORT_EVERY`]; the rest are counted and
/// summed up in one line, so that a peer reconnecting in a loop cannot flood the log.
const REFUSALS_LOGGED: u32 = 20;

/// The log of refusals at the set-up, with its rate limit.
#[derive(Debug, Default)]
struct RefusalLog {
    /// The current interval's start, refusals logged in it, and those left unlogged.
    window: Mutex<Option<(Instant, u32, u64)>>,
}

impl RefusalLog {
    fn report(&self, peer: SocketAddr, e: &HandshakeError) {
        let quiet = matches!(e, HandshakeError::Timeout(_) | HandshakeError::Io(_));
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (start, logged, unlogged) = window.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= REFUSAL_REPORT_EVERY {
            if *unlogged > 0 {
                warn!(
                    refused = *unlogged,
                    "more peers refused at the set-up than were logged"
                );
            }
            (*start, *logged, *unlogged) = (now, 0, 0);
        }
        if quiet {
            debug!(%peer, cause = %e, "connection set-up failed");
        } else if *logged < REFUSALS_LOGGED {
            *logged += 1;
            warn!(%peer, cause = %e, reason = e.reason(), "refused a peer at the connection's set-up");
        } else {
            *unlogged += 1;
            debug!(%peer, cause = %e, reason = e.reason(), "refused a peer at the connection's set-up");
        }
    }
}

/// Refusals of one address, reported at most once per interval.
const REFUSAL_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`, running `serve_conn` for each on its own task.
///
/// A new connection first has a place among the set-ups (`limits.max_pending`, the oldest
/// dropped past it; an address over `limits.max_pending_per_ip` or
/// `limits.max_connections_per_ip` has its new connections closed at once), then, set up, a
/// permit, so that at most `limits.max_connections` are served at once.
/// After shutdown the connections stop reading requests, write the answers they owe, and
/// close; those still open after `limits.drain_timeout` are dropped.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: ServerLimits,
    guard: Guard,
    shutdown: CancellationToken,
    serve_conn: F,
) -> io::Result<()>
where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve_conn = Arc::new(serve_conn);
    let guard = Arc::new(guard);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let admission = Admission::new(limits);
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();
    let mut refused = 0u64;
    let mut refusals_reported: Option<Instant> = None;
    let refusals = Arc::new(RefusalLog::default());
    loop {
        let Some((stream, peer)) = next_connection(&listener, &shutdown).await else {
            break;
        };
        let Some((slot, setting_up)) = admission.admit(peer.ip()) else {
            refused += 1;
            if refusals_reported.is_none_or(|at| at.elapsed() >= REFUSAL_REPORT_EVERY) {
                warn!(%peer, refused, limit = limits.max_connections_per_ip, "refusing connections over the per-address limit");
                refusals_reported = Some(Instant::now());
                refused = 0;
            }
            continue;
        };
        debug!(%peer, "connection accepted");
        let _ = stream.set_nodelay(true);
        let abort = abort.clone();
        let close = shutdown.clone();
        let serve_conn = serve_conn.clone();
        let guard = guard.clone();
        let refusals = refusals.clone();
        let permits = permits.clone();
        tracker.spawn(async move {
            // The set-up comes first (TLS, then versions and token): no request frame of a
            // peer that failed it is read. It and the first request share one time limit.
            let first_frame_by = Instant::now() + limits.first_frame_timeout;
            let set_up = set_up(stream, &guard, limits.first_frame_timeout);
            let set_up = tokio::select! {
                done = set_up => done,
                _ = abort.cancelled() => return,
                _ = setting_up.dropped.cancelled() => {
                    debug!(%peer, "set-up dropped: newer connections needed its place");
                    return;
                }
            };
            let stream = match set_up {
                Ok(stream) => stream,
                Err(e) => {
                    if let Some(count) = &guard.on_refused {
                        count(e.reason());
                    }
                    refusals.report(peer, &e);
                    drop((setting_up, slot));
                    return;
                }
            };
            // Set up: a permit among the connections served, waited for in its set-up place.
            let permit = tokio::select! {
                permit = permits.acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = abort.cancelled() => return,
                _ = close.cancelled() => return,
            };
            drop(setting_up);
            let conn = serve_conn(Accepted {
                stream,
                peer,
                limits,
                first_frame_by,
                close,
            });
            tokio::select! {
                _ = conn => debug!(%peer, "connection closed"),
                _ = abort.cancelled() => debug!(%peer, "connection dropped at the drain timeout"),
            }
            drop((permit, slot));
        });
    }
    tracker.close();
    if tokio::time::timeout(limits.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        info!("connections still open after the drain timeout; closing them");
        abort.cancel();
        tracker.wait().await;
    }
    Ok(())
}

mod admission;
pub(crate) use admission::{Admission, PendingSlot, next_connection};
pub use admission::{PeerCounts, PeerSlot, grouped};
#[cfg(test)]
use admission::{counted_as, pending_as};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Traffic;
    use crate::transport::{CountedTransport, connect};
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(limits: ServerLimits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            limits,
            Guard::default(),
            shutdown.clone(),
            |conn| async move {
                let mut t: ServerTransport<String, String> = conn.transport();
                while let Some(Ok(msg)) = t.next().await {
                    if t.send(msg).await.is_err() {
                        break;
                    }
                }
            },
        ));
        (addr, shutdown)
    }

    async fn echo_once(addr: SocketAddr) {
        let traffic = Arc::new(Traffic::default());
        let mut t: CountedTransport<String, String> = connect(
            &addr.to_string(),
            Duration::from_secs(5),
            &traffic,
            &Credentials::default(),
        )
        .await
        .expect("connect");
        t.send("hello".to_owned()).await.expect("send");
        assert_eq!(t.next().await.expect("reply").expect("frame"), "hello");
        assert!(traffic.bytes() > 0, "the connection's bytes are counted");
    }

    /// Reads until the server closes the connection; returns the bytes read.
    async fn read_to_close(stream: &mut TcpStream) -> usize {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap_or(0)
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(counted_as(a), counted_as(b));
        assert_ne!(counted_as(a), counted_as(c));
        let v4: IpAddr = "127.0.0.2".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert_eq!(counted_as(mapped), v4);
    }

    #[tokio::test]
    async fn peers_refused_at_the_set_up_are_counted_by_reason() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let counted = Arc::new(Mutex::new(Vec::new()));
        let sink = counted.clone();
        let guard = Guard {
            credentials: Credentials {
                token: Some(crate::handshake::Token::from_bytes(b"0123456789abcdef")),
                tls: None,
            },
            tls: None,
            on_refused: Some(Arc::new(move |reason| {
                if let Ok(mut v) = sink.lock() {
                    v.push(reason)
                }
            })),
        };
        tokio::spawn(accept_loop(
            listener,
            ServerLimits::default(),
            guard,
            shutdown.clone(),
            |_conn| async {},
        ));
        let traffic = Arc::new(Traffic::default());
        let wrong = Credentials {
            token: Some(crate::handshake::Token::from_bytes(b"fedcba9876543210")),
            tls: None,
        };
        for credentials in [wrong, Credentials::default()] {
            let refused = connect::<String, String>(
                &addr.to_string(),
                Duration::from_secs(5),
                &traffic,
                &credentials,
            )
            .await;
            assert!(refused.is_err(), "refused");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        // The server counts just after telling the peer: wait for it (bounded).
        while counted.lock().map(|v| v.len()).unwrap_or(0) < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut reasons = counted.lock().map(|v| v.clone()).unwrap_or_default();
        reasons.sort();
        assert_eq!(reasons, vec!["no_token", "wrong_token"]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn garbage_frame_closes_only_that_connection() {
        let (addr, shutdown) = echo_server(ServerLimits::default()).await;
        // A length prefix far over the limit, then garbage.
        let mut raw = TcpStream::connect(addr).await.expect("connect raw");
        crate::handshake::client(&mut raw, None, Duration::from_secs(5))
            .await
            .expect("set-up");
        raw.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        raw.write_all(b"garbage garbage").await.expect("write");
        assert_eq!(
            read_to_close(&mut raw).await,
            0,
            "the server must close a connection that sent an oversized frame"
        );
        echo_once(addr).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_silent_or_trickling_connection_is_closed_at_its_timeout() {
        let limits = ServerLimits {
            first_frame_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, shutdown) = echo_server(limits).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut trickle = TcpStream::connect(addr).await.expect("connect");
        crate::handshake::client(&mut trickle, None, Duration::from_secs(5))
            .await
            .expect("set-up");
        // Half a frame: a length prefix promising bytes that never come.
        trickle
            .write_all(&100u32.to_be_bytes())
            .await
            .expect("write");
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            (
                read_to_close(&mut silent).await,
                read_to_close(&mut trickle).await,
            )
        })
        .await
        .expect("both are closed long before ten seconds");
        assert_eq!(closed, (0, 0));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let limits = ServerLimits {
            max_connections: 8,
            max_connections_per_ip: 4,
            ..ServerLimits::default()
        };
        let (addr, shutdown) = echo_server(limits).await;
        let mut hogs = Vec::new();
        for _ in 0..20 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            hogs.push(socket.connect(addr).await.expect("connect"));
        }
        // The server closes every connection of 127.0.0.2 past its fourth.
        let mut closed = 0;
        for hog in &mut hogs[4..] {
            closed += usize::from(
                tokio::time::timeout(Duration::from_secs(5), read_to_close(hog))
                    .await
                    .is_ok(),
            );
        }
        assert_eq!(closed, 16);
        echo_once(addr).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn silent_set_ups_from_a_few_addresses_leave_room_for_a_real_peer() {
        let (addr, shutdown) = echo_server(ServerLimits::default()).await;
        // 32 connections from each of eight addresses that never send their set-up.
        let mut silent = Vec::new();
        for last in 2..=9 {
            for _ in 0..32 {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind(format!("127.0.0.{last}:0").parse().expect("addr"))
                    .expect("bind");
                silent.push(socket.connect(addr).await.expect("connect"));
            }
        }
        tokio::time::timeout(Duration::from_secs(5), echo_once(addr))
            .await
            .expect("a peer that completes its set-up gets in within five seconds");
        shutdown.cancel();
    }

    #[test]
    fn set_ups_are_counted_by_their_ipv6_48() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:ff00::1".parse().expect("ip");
        let c: IpAddr = "2001:db8:2::1".parse().expect("ip");
        assert_eq!(pending_as(a), pending_as(b), "one /48, another /64");
        assert_ne!(pending_as(a), pending_as(c));
        let v4: IpAddr = "127.0.0.2".parse().expect("ip");
        assert_eq!(pending_as(v4), v4);
    }
}
