//! The generated test site and the server that serves it.
//!
//! `N` pages under `/p/{i}.html` link to each other in cycles, with duplicate links, relative
//! links, links with fragments, other spellings of the same URL, links to another host
//! (`localhost` instead of `127.0.0.1`), a few broken links and one GBK-encoded page.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Title of the GBK page, which only decodes right if the charset is honoured.
pub const GBK_TITLE: &str = "中文测试页面";

/// Listing pages of the quotes site under `/quotes/` (not linked from the index).
pub const QUOTE_PAGES: usize = 5;

/// The site's robots.txt: everything under `/private/` is off limits.
pub const ROBOTS_TXT: &str = "User-agent: *\nDisallow: /private/\n";

/// The shape of the site: how many pages, and the port it is served on (for absolute links).
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Pages under `/p/`.
    pub pages: usize,
    /// The port the server listens on.
    pub port: u16,
}

/// A response body and its content type.
pub struct Doc {
    /// Content-Type header.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Site {
    /// Every path that serves a page (status 200): the index, the pages and the GBK page.
    pub fn ok_paths(&self) -> BTreeSet<String> {
        let mut paths: BTreeSet<String> = (0..self.pages).map(|i| format!("/p/{i}.html")).collect();
        paths.insert("/".into());
        paths.insert("/gbk.html".into());
        paths
    }

    /// Every path a polite crawl fetches: the pages, the broken links and `/robots.txt`.
    pub fn polite_crawl_paths(&self) -> BTreeSet<String> {
        let mut paths: BTreeSet<String> = self
            .ok_paths()
            .union(&self.broken_paths())
            .cloned()
            .collect();
        paths.insert("/robots.txt".into());
        paths
    }

    /// Every broken link on the site (served as 404).
    pub fn broken_paths(&self) -> BTreeSet<String> {
        (0..self.pages)
            .filter(|i| i % 10 == 0)
            .map(|i| format!("/missing/{i}.html"))
            .collect()
    }

    /// The page title of a path that serves a page.
    pub fn title(&self, path: &str) -> Option<String> {
        match path {
            "/" => Some("Spinneret test site".into()),
            "/gbk.html" => Some(GBK_TITLE.into()),
            _ => page_number(path)
                .filter(|i| *i < self.pages)
                .map(|i| format!("Page {i}")),
        }
    }

    /// The document at `path`, if any.
    pub fn doc(&self, path: &str) -> Option<Doc> {
        let html = |body: String| Doc {
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        };
        let quotes = crate::quotes::QuotesSite { pages: QUOTE_PAGES };
        if let Some(page) = quotes.page(path) {
            return Some(html(page));
        }
        match path {
            "/" => Some(html(self.index())),
            "/gbk.html" => Some(self.gbk()),
            "/robots.txt" => Some(Doc {
                content_type: "text/plain",
                body: ROBOTS_TXT.as_bytes().to_vec(),
            }),
            "/private/secret.html" => Some(html("<title>Secret</title>".into())),
            _ => page_number(path)
                .filter(|i| *i < self.pages)
                .map(|i| html(self.page(i))),
        }
    }

    fn index(&self) -> String {
        let port = self.port;
        format!(
            "<!doctype html><html><head><title>Spinneret test site</title>\
             <meta name=\"description\" content=\"The index\"></head><body>\
             <a href=\"/p/0.html\">first</a> <a href=\"p/1.html\">second (relative)</a>\
             <a href=\"/p/0.html#top\">first again, with a fragment</a>\
             <a href=\"/gbk.html\">a GBK page</a>\
             <a href=\"/private/secret.html\">disallowed by robots.txt</a>\
             <a href=\"http://localhost:{port}/offsite/index.html\">elsewhere</a>\
             </body></html>"
        )
    }

    fn page(&self, i: usize) -> String {
        let n = self.pages;
        let port = self.port;
        let next = (i + 1) % n;
        let mut links = vec![
            format!("/p/{next}.html"),
            format!("{}.html", (i * 7 + 3) % n),
            format!("../p/{}.html", (i * 2) % n),
            format!("/p/{next}.html#section-{i}"),
            format!("/p/{next}.html"),
            format!("HTTP://127.0.0.1:{port}/p/{}.html", (i + 5) % n),
            "/".to_string(),
            format!("http://localhost:{port}/offsite/{i}.html"),
            "mailto:someone@example.invalid".to_string(),
            "javascript:void(0)".to_string(),
        ];
        if i.is_multiple_of(10) {
            links.push(format!("/missing/{i}.html"));
        }
        let anchors: String = links
            .iter()
            .map(|l| format!("<li><a href=\"{l}\">{l}</a></li>"))
            .collect();
        format!(
            "<!doctype html><html><head><title>Page {i}</title>\
             <meta name=\"description\" content=\"Test page {i}\"></head>\
             <body><div class=\"content\"><h1>Page {i}</h1><p>Some text for page {i}.</p>\
             <ul>{anchors}</ul></div></body></html>"
        )
    }

    fn gbk(&self) -> Doc {
        let html = format!(
            "<!doctype html><html><head><meta charset=\"gbk\"><title>{GBK_TITLE}</title></head>\
             <body><p>这是一个用GBK编码的页面。</p><a href=\"/p/0.html\">返回</a></body></html>"
        );
        // No charset in the header: the worker must find it in <meta>.
        Doc {
            content_type: "text/html",
            body: encoding_rs::GBK.encode(&html).0.into_owned(),
        }
    }
}

fn page_number(path: &str) -> Option<usize> {
    path.strip_prefix("/p/")?
        .strip_suffix(".html")?
        .parse()
        .ok()
}

/// Hits per path, shared between the server and whoever inspects it.
pub type Hits = Arc<Mutex<BTreeMap<String, u64>>>;

#[derive(Clone)]
struct AppState {
    site: Site,
    hits: Hits,
    total: Arc<tokio::sync::watch::Sender<u64>>,
    latency: std::time::Duration,
}

/// A running test site.
pub struct TestSite {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The site it serves.
    pub site: Site,
    hits: Hits,
    total: Arc<tokio::sync::watch::Sender<u64>>,
    shutdown: CancellationToken,
}

impl TestSite {
    /// Serves a site of `pages` pages on `listener` until dropped.
    pub async fn serve(listener: TcpListener, pages: usize) -> std::io::Result<TestSite> {
        TestSite::serve_slowly(listener, pages, std::time::Duration::ZERO).await
    }

    /// Serves a site whose every answer takes `latency`, so a crawl lasts long enough to be
    /// interrupted.
    pub async fn serve_slowly(
        listener: TcpListener,
        pages: usize,
        latency: std::time::Duration,
    ) -> std::io::Result<TestSite> {
        let addr = listener.local_addr()?;
        let site = Site {
            pages: pages.max(1),
            port: addr.port(),
        };
        let hits: Hits = Arc::default();
        let total = Arc::new(tokio::sync::watch::Sender::new(0));
        let state = AppState {
            site,
            hits: hits.clone(),
            total: total.clone(),
            latency,
        };
        let app = Router::new().fallback(handle).with_state(state);
        let shutdown = crate::serve_router(listener, app);
        Ok(TestSite {
            addr,
            site,
            hits,
            total,
            shutdown,
        })
    }

    /// Binds `127.0.0.1:0` and serves a site of `pages` pages.
    pub async fn start(pages: usize) -> std::io::Result<TestSite> {
        TestSite::serve(TcpListener::bind("127.0.0.1:0").await?, pages).await
    }

    /// The absolute URL of `path` on this site.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Binds `127.0.0.1:0` and serves a site of `pages` pages, each answer taking `latency`.
    pub async fn start_slowly(
        pages: usize,
        latency: std::time::Duration,
    ) -> std::io::Result<TestSite> {
        TestSite::serve_slowly(TcpListener::bind("127.0.0.1:0").await?, pages, latency).await
    }

    /// Waits until the site has been hit at least `n` times in all.
    pub async fn wait_for_hits(&self, n: u64) {
        let mut watch = self.total.subscribe();
        let _ = watch.wait_for(|total| *total >= n).await;
    }

    /// Hits per path so far.
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn handle(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    if path == "/__hits" {
        let hits = state.hits.lock().map(|h| h.clone()).unwrap_or_default();
        let body = serde_json::to_string_pretty(&hits).unwrap_or_default();
        return respond(StatusCode::OK, "application/json", body.into_bytes());
    }
    if let Ok(mut hits) = state.hits.lock() {
        *hits.entry(path.clone()).or_default() += 1;
    }
    state.total.send_modify(|total| *total += 1);
    if !state.latency.is_zero() {
        // Server latency, so a crawl lasts long enough to be interrupted mid-way.
        tokio::time::sleep(state.latency).await;
    }
    match state.site.doc(&path) {
        Some(doc) => respond(StatusCode::OK, doc.content_type, doc.body),
        None => respond(
            StatusCode::NOT_FOUND,
            "text/html",
            b"<html><title>Not found</title></html>".to_vec(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
