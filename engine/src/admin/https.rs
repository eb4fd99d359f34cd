//! The admin server's listener over TLS (`--admin_tls_cert/--admin_tls_key`): TCP connections
//! are accepted and their TLS handshakes run on tasks of their own, so that a client that
//! never finishes one holds up no other, and one address may run only a few at once, so that
//! it cannot take every handshake slot.

use common::listen::PeerCounts;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshakes run at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// TLS handshakes one address (one /64 for IPv6) may run at once; more are closed at once.
const MAX_HANDSHAKES_PER_IP: usize = 8;

/// A listener that yields connections once their TLS handshake is done.
pub struct HttpsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    /// Stops the accepting task when the listener is dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl HttpsListener {
    /// Starts accepting on `listener`, with `config` for the handshakes.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<HttpsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let stop = CancellationToken::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let per_ip = Arc::new(PeerCounts::default());
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = stopped.cancelled() => return,
                    permit = handshakes.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                };
                let (tcp, peer) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            // Usually out of file descriptors: wait rather than spin.
                            debug!(cause = %e, "admin accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let Some(slot) = per_ip.take(peer.ip(), MAX_HANDSHAKES_PER_IP) else {
                    debug!(%peer, "closing an admin connection over the per-address handshake limit");
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, cause = %e, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                    drop((permit, slot));
                });
            }
        });
        Ok(HttpsListener {
            ready,
            local,
            _stop: stop.drop_guard(),
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it does not while this listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
