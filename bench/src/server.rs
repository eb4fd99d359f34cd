//! A fast in-memory keep-alive server for the benchmark site, counting hits per page.

use crate::pages::Site;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Hits and the added latency, shared with the handler.
#[derive(Debug)]
pub struct Counts {
    hits: Vec<AtomicU32>,
    other: AtomicU64,
    latency_ms: AtomicU64,
}

/// A running benchmark server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    counts: Arc<Counts>,
}

#[derive(Clone)]
struct AppState {
    site: Arc<Site>,
    counts: Arc<Counts>,
}

/// What the server's counts say about a crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Page fetches in all.
    pub fetched: u64,
    /// Pages fetched at least once.
    pub unique: u64,
    /// Fetches beyond the first of a page.
    pub duplicates: u64,
    /// Pages never fetched.
    pub missing: u64,
}

impl Server {
    /// Serves `site` on `127.0.0.1:0` (runs until the runtime ends).
    pub async fn start(site: Arc<Site>) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts {
            hits: (0..site.pages).map(|_| AtomicU32::new(0)).collect(),
            other: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
        });
        let app = Router::new().fallback(handle).with_state(AppState {
            site,
            counts: counts.clone(),
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server { addr, counts })
    }

    /// The URL of page `i`.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}/p/{i}.html", self.addr)
    }

    /// Adds `latency` to every answer from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.counts
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Forgets the hits so far.
    pub fn reset(&self) {
        for h in &self.counts.hits {
            h.store(0, Ordering::Relaxed);
        }
        self.counts.other.store(0, Ordering::Relaxed);
    }

    /// What the hits say.
    pub fn tally(&self) -> Tally {
        let mut t = Tally {
            fetched: 0,
            unique: 0,
            duplicates: 0,
            missing: 0,
        };
        for h in &self.counts.hits {
            let n = u64::from(h.load(Ordering::Relaxed));
            t.fetched += n;
            if n > 0 {
                t.unique += 1;
                t.duplicates += n - 1;
            } else {
                t.missing += 1;
            }
        }
        t
    }
}

async fn handle(State(state): State<AppState>, uri: Uri) -> Response {
    let latency = state.counts.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let page = uri
        .path()
        .strip_prefix("/p/")
        .and_then(|p| p.strip_suffix(".html"))
        .and_then(|n| n.parse::<usize>().ok());
    match page.filter(|i| *i < state.site.pages) {
        Some(i) => {
            state.counts.hits[i].fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(Body::from(state.site.page(i)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        None => {
            state.counts.other.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(Body::from("not found"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
