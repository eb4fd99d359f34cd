//! Serving HTTP (the engine's admin API and dashboard, `--metrics` on every binary) to a
//! network that may be hostile, under the RPC servers' limits ([`ServerLimits`], let in by
//! the same [`crate::listen`] admission): bounded connections, in total and per address;
//! connections that have not sent a complete request yet have a budget of their own, the
//! oldest dropped past it, so that silent connections cannot keep out the requests that
//! arrive whole; and a request's headers must arrive within
//! [`ServerLimits::first_frame_timeout`], which also bounds how long a kept-alive connection
//! may sit idle between requests.

use crate::listen::{Admission, PendingSlot, ServerLimits, next_connection};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// How long open HTTP connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection holds of the server's budgets: its place among the connections that
/// have sent no request yet, then, from its first request on, a place among those served.
struct Places {
    pending: Option<PendingSlot>,
    served: Option<OwnedSemaphorePermit>,
}

/// Serves `router` on `listener` (over TLS with `tls`) under `limits` until `shutdown`
/// (`limits.first_frame_timeout` is the header-read timeout; past
/// `limits.max_connections` a new connection's requests are answered 503); then lets the
/// connections finish their requests, for a few seconds at most.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let admission = Admission::new(limits);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = TaskTracker::new();
    while let Some((tcp, peer)) = next_connection(&listener, &shutdown).await {
        let Some((slot, waiting)) = admission.admit(peer.ip()) else {
            debug!(%peer, "closing an HTTP connection over the per-address limits");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (router, permits, acceptor) = (router.clone(), permits.clone(), acceptor.clone());
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let dropped = waiting.dropped.clone();
            let places = Arc::new(Mutex::new(Places {
                pending: Some(waiting),
                served: None,
            }));
            let timeout = limits.first_frame_timeout;
            let served = async {
                match acceptor {
                    None => {
                        connection(tcp, peer, router, places, permits, timeout, &shutdown).await
                    }
                    Some(acceptor) => {
                        let handshake = acceptor.accept(tcp);
                        match tokio::time::timeout(timeout, handshake).await {
                            Ok(Ok(tls)) => {
                                connection(tls, peer, router, places, permits, timeout, &shutdown)
                                    .await
                            }
                            Ok(Err(e)) => debug!(%peer, cause = %e, "HTTPS handshake failed"),
                            Err(_) => debug!(%peer, "HTTPS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = served => {}
                _ = dropped.cancelled() => debug!(%peer, "dropped a connection that sent no request, for newer ones"),
            }
            drop(slot);
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        debug!("HTTP connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// Serves one connection, HTTP/1.1 or HTTP/2, with the header-read timeout (HTTP/1.1) and a
/// first request due within that time (either); its first request moves it from the waiting
/// connections to those served (or is answered 503 when they are full). Each request
/// carries the peer's address as axum's `ConnectInfo<SocketAddr>`.
async fn connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    router: Router,
    places: Arc<Mutex<Places>>,
    permits: Arc<Semaphore>,
    header_read_timeout: Duration,
    shutdown: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = TowerToHyperService::new(router);
    let first = places.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let admitted = {
            let mut places = places.lock().unwrap_or_else(|e| e.into_inner());
            if places.served.is_none() {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        places.served = Some(permit);
                        places.pending = None;
                        true
                    }
                    Err(_) => false,
                }
            } else {
                true
            }
        };
        let app = app.clone();
        async move {
            if !admitted {
                let mut busy = Response::new(Body::from("too many connections; try again\n"));
                *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return Ok::<_, std::convert::Infallible>(busy);
            }
            hyper::service::Service::call(&app, request)
                .await
                .map(|response| response.map(Body::new))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // A connection whose first request has not come in time (an HTTP/2 one has no
    // header-read timeout) is dropped.
    let first_due = tokio::time::sleep(header_read_timeout);
    tokio::pin!(first_due);
    let finished = loop {
        tokio::select! {
            finished = conn.as_mut() => break finished,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = first_due.as_mut(), if !first_due.is_elapsed() => {
                let served = first.lock().unwrap_or_else(|e| e.into_inner()).served.is_some();
                if !served {
                    debug!("dropped a connection whose first request did not come in time");
                    return;
                }
            }
        }
    };
    if let Err(e) = finished {
        debug!(cause = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn server(limits: ServerLimits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Answers with the peer's address, as handlers see it.
        let router = Router::new().route(
            "/",
            axum::routing::get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                    format!("ok from {}", peer.ip())
                },
            ),
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, router, None, limits, shutdown.clone()));
        (addr, shutdown)
    }

    async fn get(addr: SocketAddr, from: &str) -> String {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn handlers_see_the_peers_address() {
        let (addr, shutdown) = server(ServerLimits::default()).await;
        let answer = get(addr, "127.0.0.3").await;
        assert!(answer.ends_with("ok from 127.0.0.3"), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_at_the_header_read_timeout() {
        let limits = ServerLimits {
            first_frame_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (addr, shutdown) = server(limits).await;
        let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut rest))
            .await
            .expect("closed long before five seconds");
        assert!(closed.is_ok() || rest.is_empty());
        assert!(get(addr, "127.0.0.1").await.contains("200 OK"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn silent_connections_from_many_addresses_leave_room_for_a_request() {
        let (addr, shutdown) = server(ServerLimits::default()).await;
        let mut silent = Vec::new();
        for last in 2..77 {
            for _ in 0..8 {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind(format!("127.0.0.{last}:0").parse().expect("addr"))
                    .expect("bind");
                silent.push(socket.connect(addr).await.expect("connect"));
            }
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), get(addr, "127.0.0.1"))
            .await
            .expect("answered within five seconds");
        assert!(answer.contains("200 OK"), "{answer}");
        // The server holds few of them open: the others were closed (its sockets are
        // bounded, whatever the clients open).
        let closed = futures::future::join_all(silent.iter_mut().map(|s| async move {
            let mut byte = [0u8; 1];
            matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }))
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
        let limits = ServerLimits::default();
        assert!(closed >= 600 - limits.max_pending, "{closed} of 600 closed");
        shutdown.cancel();
    }
}
