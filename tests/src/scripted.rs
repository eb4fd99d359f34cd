//! A test site whose content and links are made by script, for the rendering tests: what a
//! plain fetch sees of it is empty, what a browser sees after the script ran is a shop.
//!
//! - `/` is a listing filled after a timer from an inline JSON blob (the first
//!   [`FIRST_BATCH`] products), a second batch appended when the page is scrolled to the
//!   bottom ("load more"), and a link to `/later` added after the load event.
//! - `/item/N` is a product page whose name and price are written by script too.
//! - `/later` is a page found only through the link added after load.
//! - `/never-loads` never fires its load event (an image that never answers).
//! - `/loop` runs an endless script loop; `/memory` allocates memory without end.
//! - `/probe?target=URL` requests `URL` from script (the address guard's test).
//! - `/moved` redirects to `/item/1`; `/away` sends its frame to `/item/2` from script.
//! - `/scripted` takes its product from a script file, `/app.js` (a subrequest to archive).
//! - `/reload` reloads itself once, then writes its product; `/challenge` answers 503 and
//!   a script that sets a cookie and reloads, then with the cookie 200 and its product.
//! - `/big` is [`BIG_BYTES`] long; `/post` posts `q=1` to `/item/1` from script;
//!   `/events` opens an event stream (`/stream`, which never ends) before loading `/app.js`.
//!
//! Every request is counted by path, for tests that assert what was fetched.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Products in the listing's first batch, written from the inline JSON after a timer.
pub const FIRST_BATCH: usize = 6;
/// Products appended when the listing is scrolled to the bottom.
pub const SECOND_BATCH: usize = 4;
/// Every product of the listing: each has its page, `/item/N`.
pub const PRODUCTS: usize = FIRST_BATCH + SECOND_BATCH;

/// The length of `/big`, bytes.
pub const BIG_BYTES: usize = 200_000;

/// The name of product `i`, as the script writes it on the listing and on its page.
pub fn product_name(i: usize) -> String {
    format!("Scripted product {i}")
}

/// The price of product `i`, as the script writes it.
pub fn product_price(i: usize) -> String {
    format!("{}.99", 10 + i)
}

/// The scripted site, serving on a loopback port until dropped.
#[derive(Debug)]
pub struct ScriptedSite {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<BTreeMap<String, u64>>>,
    agents: Arc<Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct AppState {
    hits: Arc<Mutex<BTreeMap<String, u64>>>,
    agents: Arc<Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>>,
}

impl ScriptedSite {
    /// Starts the site on `ip`, port 0.
    pub async fn start_on(ip: &str) -> std::io::Result<ScriptedSite> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let hits: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let agents: Arc<Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>> =
            Arc::default();
        let app = Router::new().fallback(handle).with_state(AppState {
            hits: hits.clone(),
            agents: agents.clone(),
        });
        let shutdown = crate::serve_router(listener, app);
        Ok(ScriptedSite {
            addr,
            hits,
            agents,
            shutdown,
        })
    }

    /// Starts the site on 127.0.0.1.
    pub async fn start() -> std::io::Result<ScriptedSite> {
        ScriptedSite::start_on("127.0.0.1").await
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests per path so far.
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The User-Agent headers each path was requested with: a browser's says
    /// `HeadlessChrome`, a plain fetch's `Spinneret`.
    pub fn agents(&self) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        self.agents.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for ScriptedSite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The products of `range` as the inline JSON blob holds them.
fn products_json(range: std::ops::Range<usize>) -> String {
    let items: Vec<String> = range
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"{}\",\"price\":\"{}\"}}",
                product_name(i),
                product_price(i)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The listing: empty as served; the script fills it.
fn listing() -> String {
    format!(
        r#"<!doctype html><html><head><title>Scripted shop</title>
<script id="first" type="application/json">{first}</script>
<script id="more" type="application/json">{more}</script>
</head><body style="margin:0">
<h1>Scripted shop</h1>
<div id="list"></div>
<div style="height:3000px"></div>
<div id="end"></div>
<script>
function add(products) {{
  var list = document.getElementById('list');
  products.forEach(function (p) {{
    var div = document.createElement('div');
    div.className = 'product';
    div.innerHTML = '<a href="/item/' + p.id + '">' + p.name + '</a> <span class="price">' + p.price + '</span>';
    list.appendChild(div);
  }});
}}
setTimeout(function () {{
  add(JSON.parse(document.getElementById('first').textContent));
}}, 200);
var more = false;
window.addEventListener('scroll', function () {{
  if (!more && window.innerHeight + window.scrollY >= document.body.scrollHeight - 10) {{
    more = true;
    add(JSON.parse(document.getElementById('more').textContent));
  }}
}});
window.addEventListener('load', function () {{
  var a = document.createElement('a');
  a.href = '/later';
  a.textContent = 'found after load';
  document.body.appendChild(a);
}});
</script></body></html>"#,
        first = products_json(0..FIRST_BATCH),
        more = products_json(FIRST_BATCH..PRODUCTS),
    )
}

/// Product `i`'s page: its name and price written by script.
fn item(i: usize) -> String {
    format!(
        r#"<!doctype html><html><head><title>Item {i}</title></head><body>
<h1 id="name"></h1><span id="price"></span>
<script>
document.getElementById('name').textContent = {name:?};
document.getElementById('price').textContent = {price:?};
document.getElementById('name').className = 'product';
</script></body></html>"#,
        name = product_name(i),
        price = product_price(i),
    )
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if let Ok(mut hits) = state.hits.lock() {
        *hits.entry(path.clone()).or_default() += 1;
    }
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut agents) = state.agents.lock() {
        agents.entry(path.clone()).or_default().insert(agent);
    }
    let html = |body: String| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match path.as_str() {
        "/" => html(listing()),
        "/robots.txt" => (StatusCode::OK, "User-agent: *\nAllow: /\n").into_response(),
        "/moved" => (StatusCode::FOUND, [(header::LOCATION, "/item/1")]).into_response(),
        "/away" => html(
            "<!doctype html><html><head><title>Away</title></head><body>\
             <script>location.href = '/item/2';</script></body></html>"
                .into(),
        ),
        "/scripted" => html(
            "<!doctype html><html><head><title>Scripted</title></head><body>\
             <div id=\"from-app\"></div><script src=\"/app.js\"></script></body></html>"
                .into(),
        ),
        "/app.js" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/javascript")],
            "document.getElementById('from-app').className = 'product';\
             document.getElementById('from-app').textContent = 'From app.js';",
        )
            .into_response(),
        "/reload" => html(
            "<!doctype html><html><head><title>Reload</title></head><body><div id=\"p\"></div>\
             <script>if (!sessionStorage.getItem('r')) { sessionStorage.setItem('r', '1'); \
             location.reload(); } else { document.getElementById('p').textContent = \
             'Reloaded'; }</script></body></html>"
                .into(),
        ),
        "/challenge" => {
            let passed = request
                .headers()
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.contains("passed=1"));
            match passed {
                true => html(
                    "<!doctype html><html><head><title>Passed</title></head><body>\
                     <div class=\"product\">Passed the challenge</div></body></html>"
                        .into(),
                ),
                false => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!doctype html><html><head><title>Checking</title></head><body>\
                     <script>document.cookie = 'passed=1; path=/'; location.reload();</script>\
                     </body></html>",
                )
                    .into_response(),
            }
        }
        "/big" => html(format!(
            "<!doctype html><html><head><title>Big</title></head><body><p>{}</p></body></html>",
            "x".repeat(BIG_BYTES)
        )),
        "/post" => html(
            "<!doctype html><html><head><title>Post</title></head><body><script>\
             var x = new XMLHttpRequest(); x.open('POST', '/item/1', false); x.send('q=1');\
             </script></body></html>"
                .into(),
        ),
        "/events" => html(
            "<!doctype html><html><head><title>Events</title></head><body>\
             <div id=\"from-app\"></div><script>new EventSource('/stream');</script>\
             <script src=\"/app.js\"></script></body></html>"
                .into(),
        ),
        "/stream" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            axum::body::Body::from_stream(futures::stream::pending::<
                Result<axum::body::Bytes, std::io::Error>,
            >()),
        )
            .into_response(),
        "/gone" => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html><head><title>Gone</title></head><body>\
             <div class=\"product\">not here</div></body></html>",
        )
            .into_response(),
        "/later" => html(
            "<!doctype html><html><head><title>Later</title></head><body>\
             <div id=\"later\"></div><script>document.getElementById('later').className = \
             'product'; document.getElementById('later').textContent = 'Found later';\
             </script></body></html>"
                .into(),
        ),
        "/never-loads" => html(
            "<!doctype html><html><head><title>Never loads</title></head><body>\
             <p>Waiting for an image forever.</p><img src=\"/hang.png\"></body></html>"
                .into(),
        ),
        "/hang.png" => std::future::pending::<Response>().await,
        "/loop" => html(
            "<!doctype html><html><head><title>Loop</title></head><body>\
             <script>while (true) {}</script></body></html>"
                .into(),
        ),
        "/memory" => html(
            "<!doctype html><html><head><title>Memory</title></head><body><script>\
             var hoard = []; while (true) { hoard.push(new Array(1 << 20).fill(hoard.length)); }\
             </script></body></html>"
                .into(),
        ),
        "/probe" => {
            let target = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("target="))
                .unwrap_or("")
                .to_owned();
            html(format!(
                "<!doctype html><html><head><title>Probe</title></head><body>\
                 <div class=\"product\">probe</div><script>\
                 fetch({target:?}).catch(function () {{}});\
                 var i = new Image(); i.src = {target:?};\
                 </script></body></html>"
            ))
        }
        other => match other
            .strip_prefix("/item/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) if i < PRODUCTS => html(item(i)),
            _ => (StatusCode::NOT_FOUND, "not found").into_response(),
        },
    }
}
