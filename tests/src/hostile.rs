//! A hostile web server: one endpoint per pathology a crawler meets on the real web.
//!
//! It logs every request with its start and end time, so tests can measure from the server's
//! side what the crawler did: what it fetched, how many requests overlapped, how far apart
//! they started.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Title of the undeclared GBK page, right only if detection works.
pub const GBK_TITLE: &str = "中文测试页面";
/// Title of the UTF-8 page with no charset anywhere.
pub const NO_CHARSET_TITLE: &str = "Café déjà vu — naïve façade";
/// Pages under `/slow/`, each answering after [`SLOW_PAGE_LATENCY`].
pub const SLOW_PAGES: usize = 12;
/// How long each `/slow/` page takes, so overlapping requests are visible in the log.
pub const SLOW_PAGE_LATENCY: Duration = Duration::from_millis(100);
/// Hits on `/flaky` answered 503 before it recovers.
pub const FLAKY_FAILURES: u64 = 2;

/// How the server behaves where tests need to vary it.
#[derive(Clone, Debug, Default)]
pub struct HostileOptions {
    /// `Crawl-delay` in robots.txt, in seconds.
    pub crawl_delay: Option<f32>,
    /// Hits on robots.txt answered 503 before it is served.
    pub robots_failures: u64,
    /// Serve a robots.txt of 512 KiB of wildcard rules instead of the usual one.
    pub robots_bomb: bool,
}

/// Size of the hostile robots.txt.
pub const ROBOTS_BOMB_BYTES: usize = 512 * 1024;

/// A robots.txt of [`ROBOTS_BOMB_BYTES`] of distinct wildcard rules, each of which becomes a
/// regular expression to compile and to match every URL against.
fn robots_bomb() -> String {
    let mut robots = String::from("User-agent: *\n");
    let mut i = 0u64;
    while robots.len() < ROBOTS_BOMB_BYTES - 64 {
        robots.push_str(&format!("Disallow: /*{i:x}*z*$\n"));
        i += 1;
    }
    robots
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The path (no query).
    pub path: String,
    /// When the handler started.
    pub start: Instant,
    /// When the handler returned its response; `None` while it has not (a request that hangs).
    pub end: Option<Instant>,
    /// Whether the client went away before the response was ready (the handler was dropped).
    pub dropped: bool,
}

/// Marks its hit dropped if the handler is dropped before it answered.
struct DropWatch {
    log: Arc<Mutex<Vec<Hit>>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    index: Option<usize>,
    answered: bool,
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if let (false, Some(i), Ok(mut log)) = (self.answered, self.index, self.log.lock()) {
            log[i].dropped = true;
        }
        self.changes.send_modify(|n| *n += 1);
    }
}

#[derive(Clone)]
struct AppState {
    port: u16,
    options: HostileOptions,
    log: Arc<Mutex<Vec<Hit>>>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Moves whenever the log changes (a request arrives, is answered or dropped), for
    /// tests that wait for one of those.
    arrivals: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A running hostile server.
pub struct HostileServer {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Hit>>>,
    arrivals: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
}

impl HostileServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start(options: HostileOptions) -> std::io::Result<HostileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let (arrived, arrivals) = tokio::sync::watch::channel(0);
        let state = AppState {
            port: addr.port(),
            options,
            log: log.clone(),
            counts: Arc::default(),
            arrivals: Arc::new(arrived),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let shutdown = crate::serve_router(listener, app);
        Ok(HostileServer {
            addr,
            log,
            arrivals,
            shutdown,
        })
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in order of arrival.
    pub fn log(&self) -> Vec<Hit> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Hits per path.
    pub fn hits(&self) -> BTreeMap<String, u64> {
        let mut hits = BTreeMap::new();
        for hit in self.log() {
            *hits.entry(hit.path).or_default() += 1;
        }
        hits
    }

    /// Waits until `path` has been requested `n` times (counting requests as they arrive).
    pub async fn wait_for_hits(&self, path: &str, n: u64) {
        let mut arrivals = self.arrivals.clone();
        loop {
            if self.hits().get(path).copied().unwrap_or(0) >= n {
                return;
            }
            if arrivals.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until `ready` holds for the log (checked each time it changes).
    pub async fn wait_for_log(&self, ready: impl Fn(&[Hit]) -> bool) {
        let mut changes = self.arrivals.clone();
        loop {
            if ready(&self.log()) {
                return;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until `n` requests for paths starting with `prefix` have arrived.
    pub async fn wait_for_hits_under(&self, prefix: &str, n: u64) {
        let mut arrivals = self.arrivals.clone();
        loop {
            if self.hits_under(prefix) >= n {
                return;
            }
            if arrivals.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Hits on paths starting with `prefix`.
    pub fn hits_under(&self, prefix: &str) -> u64 {
        self.log()
            .iter()
            .filter(|h| h.path.starts_with(prefix))
            .count() as u64
    }

    /// The most requests that were being handled at the same moment. A request the server
    /// never answered (`/hang`) counts as open for `unanswered`: the client's timeout, after
    /// which the crawler gave it up (the server does not notice a client leaving).
    pub fn max_concurrency(&self, unanswered: Duration) -> usize {
        let log = self.log();
        let end = |h: &Hit| h.end.unwrap_or(h.start + unanswered);
        log.iter()
            .map(|h| {
                log.iter()
                    .filter(|o| o.start <= h.start && h.start < end(o))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The times between the starts of consecutive requests.
    pub fn start_gaps(&self) -> Vec<Duration> {
        let mut starts: Vec<Instant> = self.log().iter().map(|h| h.start).collect();
        starts.sort();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let start = Instant::now();
    let hit_number = {
        let mut counts = state.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let index = match state.log.lock() {
        Ok(mut log) => {
            log.push(Hit {
                path: path.clone(),
                start,
                end: None,
                dropped: false,
            });
            Some(log.len() - 1)
        }
        Err(_) => None,
    };
    let mut watch = DropWatch {
        log: state.log.clone(),
        changes: state.arrivals.clone(),
        index,
        answered: false,
    };
    state.arrivals.send_modify(|n| *n += 1);
    let response = respond(&state, &path, hit_number).await;
    watch.answered = true;
    if let (Some(i), Ok(mut log)) = (index, state.log.lock()) {
        log[i].end = Some(Instant::now());
    }
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn html(body: String) -> Response {
    reply(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn redirect(to: String) -> Response {
    let mut r = reply(StatusCode::FOUND, "text/html", "");
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn gzip_zeros(mib: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        let _ = gz.write_all(&zeros);
    }
    gz.finish().unwrap_or_default()
}

/// Paths the index links to, one per pathology.
pub const PATHOLOGIES: &[&str] = &[
    "/drip",
    "/hang",
    "/huge",
    "/bomb",
    "/redirect-loop",
    "/chain/0",
    "/offsite-redirect",
    "/throttled",
    "/flaky",
    "/malformed",
    "/wrong-charset",
    "/no-charset",
    "/gbk",
    "/file.html",
    "/calendar/0",
    "/trap/",
    "/private/secret.html",
];

async fn respond(state: &AppState, path: &str, hit: u64) -> Response {
    let port = state.port;
    match path {
        "/robots.txt" => {
            if hit <= state.options.robots_failures {
                return reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "try later");
            }
            if state.options.robots_bomb {
                // Late, so that the crawl of other hosts is under way when it arrives.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return reply(StatusCode::OK, "text/plain", robots_bomb());
            }
            let mut robots = "User-agent: *\nDisallow: /private/\n".to_owned();
            if let Some(delay) = state.options.crawl_delay {
                robots.push_str(&format!("Crawl-delay: {delay}\n"));
            }
            reply(StatusCode::OK, "text/plain", robots)
        }
        "/" => {
            let mut links: Vec<String> = PATHOLOGIES.iter().map(|p| p.to_string()).collect();
            links.extend((0..SLOW_PAGES).map(|i| format!("/slow/{i}")));
            let anchors: String = links.iter().map(|l| format!("<a href=\"{l}\">{l}</a>\n")).collect();
            html(format!("<html><head><title>Hostile</title></head><body>{anchors}</body></html>"))
        }
        "/drip" => {
            // One byte every 200 ms, for far longer than any fetch timeout.
            let stream = futures::stream::unfold(0u32, |n| async move {
                (n < 10_000).then_some(())?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((Ok::<_, std::io::Error>(vec![b'x']), n + 1))
            });
            reply(StatusCode::OK, "text/html", Body::from_stream(stream))
        }
        "/hang" => std::future::pending::<Response>().await,
        "/huge" => {
            let chunks = futures::stream::iter((0..800).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024])));
            reply(StatusCode::OK, "text/html", Body::from_stream(chunks))
        }
        "/bomb" => {
            // Compressing is CPU work: off the runtime, so other requests' timing stays true.
            let body = tokio::task::spawn_blocking(|| gzip_zeros(20)).await.unwrap_or_default();
            let mut r = reply(StatusCode::OK, "text/html", body);
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        "/redirect-loop" => redirect("/redirect-loop".into()),
        "/offsite-redirect" => redirect(format!("http://localhost:{port}/elsewhere")),
        "/throttled" if hit == 1 => {
            let mut r = reply(StatusCode::TOO_MANY_REQUESTS, "text/plain", "slow down");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        "/throttled" => html("<title>Throttled, then fine</title>".into()),
        "/flaky" if hit <= FLAKY_FAILURES => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "overloaded"),
        "/flaky" => html("<title>Recovered</title>".into()),
        "/malformed" => html(
            "<html><head><title>Broken <b>markup</title><body><table><tr><td><a href=\"/after-malformed\">next\
             <div <p>< a href=x><select><xmp></select></td></a></xmp><!-- unterminated comment"
                .into(),
        ),
        "/after-malformed" => html("<title>Reached through malformed HTML</title>".into()),
        "/wrong-charset" => {
            // Declared UTF-8, actually windows-1252: decoding must not fail.
            let body = encoding_rs::WINDOWS_1252.encode("<title>Gar\u{e7}on caf\u{e9}</title>").0.into_owned();
            reply(StatusCode::OK, "text/html; charset=utf-8", body)
        }
        "/no-charset" => reply(
            StatusCode::OK,
            "text/html",
            format!("<html><head><title>{NO_CHARSET_TITLE}</title></head><body><p>{}</p></body></html>", NO_CHARSET_TITLE.repeat(20)),
        ),
        "/gbk" => {
            let page = format!(
                "<html><head><title>{GBK_TITLE}</title></head><body><p>{}</p></body></html>",
                "这是一个没有声明编码的中文页面，检测器必须猜对。".repeat(10)
            );
            reply(StatusCode::OK, "text/html", encoding_rs::GBK.encode(&page).0.into_owned())
        }
        "/file.html" => {
            let chunks = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024])));
            reply(StatusCode::OK, "application/octet-stream", Body::from_stream(chunks))
        }
        "/private/secret.html" => html("<title>Secret</title>".into()),
        "/quotes/nested/" => html(nested_quotes()),
        "/long-title" => {
            // One item far larger than the others, and ordinary pages beside it.
            let links: String = (0..4).map(|i| format!("<a href=\"/slow/{i}\">{i}</a>")).collect();
            html(format!("<title>{}</title>{links}", "long ".repeat(200)))
        }
        "/shrinking" => {
            // Each fetch lists fewer rows than the one before: 5, then 2, then none.
            let rows = [5, 2].get(hit as usize - 1).copied().unwrap_or(0);
            let rows: String = (0..rows).map(|i| format!("<div class=\"row\">row {i}</div>")).collect();
            html(format!("<title>Shrinking</title>{rows}"))
        }
        throttled if throttled.starts_with("/always-429/") => {
            // Too many requests, every time, with no Retry-After: only a back-off helps.
            reply(StatusCode::TOO_MANY_REQUESTS, "text/plain", "slow down")
        }
        wait if wait.starts_with("/wait/") => {
            // `/wait/MS/NAME`: answers after MS milliseconds; a request dropped before then
            // stays in the log with no end.
            let ms = wait[6..].split('/').next().and_then(|m| m.parse().ok()).unwrap_or(1_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            html(format!("<title>Waited {wait}</title>"))
        }
        slow if slow.starts_with("/slow/") => {
            // Server latency, so that overlapping requests show in the log.
            tokio::time::sleep(SLOW_PAGE_LATENCY).await;
            html(format!("<title>Slow {}</title>", &slow[6..]))
        }
        _ => dynamic(path),
    }
}

/// Depth of the nested quotes page.
pub const NESTED_QUOTES: usize = 10_000;

/// [`NESTED_QUOTES`] `div.quote` nested in one another, with 1,000 `a.tag` and an author in the
/// middle: every scope of a quotes spider selects all of them, so its output explodes unless
/// the worker bounds it.
fn nested_quotes() -> String {
    let mut page = String::from("<html><body>");
    page.push_str(&"<div class=\"quote\">".repeat(NESTED_QUOTES));
    page.push_str("<span class=\"text\">“Deep.”</span><small class=\"author\">Anon</small>");
    for i in 0..1_000 {
        page.push_str(&format!("<a class=\"tag\">tag-number-{i}</a>"));
    }
    page.push_str(&"</div>".repeat(NESTED_QUOTES));
    page.push_str("</body></html>");
    page
}

/// Links on each page of the fan trap.
pub const FAN_OUT: u128 = 5_000;

/// The fan trap: page `n` links to [`FAN_OUT`] pages never linked before (numbered as the
/// nodes of a tree), so every page fetched brings thousands of new URLs.
fn fan(n: u128) -> Response {
    let mut page = format!("<html><head><title>Fan {n}</title></head><body>");
    for i in 1..=FAN_OUT {
        page.push_str(&format!("<a href=\"/fan/{}\">.</a>", n * FAN_OUT + i));
    }
    page.push_str("</body></html>");
    html(page)
}

/// A page that answers after `ms` milliseconds (`/sleep/{ms}`).
fn sleepy(ms: u64) -> Response {
    let body = futures::stream::once(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::io::Error>(format!("<title>Slept {ms} ms</title>"))
    });
    reply(StatusCode::OK, "text/html", Body::from_stream(body))
}

/// Endpoints with a number or a growing path in them.
fn dynamic(path: &str) -> Response {
    if let Some(n) = path
        .strip_prefix("/chain/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return redirect(format!("/chain/{}", n + 1));
    }
    if let Some(n) = path
        .strip_prefix("/calendar/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return html(format!(
            "<title>Month {n}</title><a href=\"/calendar/{}\">next month</a>",
            n + 1
        ));
    }
    if let Some(n) = path
        .strip_prefix("/fan/")
        .and_then(|n| n.parse::<u128>().ok())
    {
        return fan(n);
    }
    if let Some(ms) = path
        .strip_prefix("/sleep/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        return sleepy(ms);
    }
    if let Some(n) = path
        .strip_prefix("/list/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let links: String = (0..n)
            .map(|i| format!("<a href=\"/sleep/30/{i}\">{i}</a>"))
            .collect();
        return html(format!("<title>List of {n}</title>{links}"));
    }
    if path.starts_with("/trap/") {
        return html(format!(
            "<title>Trap {}</title><a href=\"x/\">deeper</a>",
            path.len()
        ));
    }
    reply(
        StatusCode::NOT_FOUND,
        "text/html",
        "<title>Not found</title>",
    )
}
