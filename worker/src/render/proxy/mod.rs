//! The rendering browser's only way out: an HTTP proxy inside the worker, on loopback, that
//! applies the worker's address guard to every request the browser makes (the page, its
//! scripts, XHR, iframes, redirects), resolving names itself so that the browser's own DNS
//! never decides where a connection goes.
//!
//! Plain HTTP requests come in absolute form (`GET http://host/path HTTP/1.1`): each is sent
//! on a connection of its own with `Connection: close`, so that a connection the browser
//! reuses can never carry a second request to another host past the guard. HTTPS comes as
//! `CONNECT host:port`: the tunnel's bytes are counted and bounded, not read (a proxy sees no
//! HTTPS body). A refused request gets `403` and is counted.

mod head;

use crate::addresses::{AddressPolicy, Blocked};
use head::{MAX_HEAD_BYTES, find_head_end, read_head, split_host_port};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long connecting to a site may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may go with no byte either way.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may last at all.
const LIFETIME: Duration = Duration::from_secs(600);
/// How long a tunnel stays open for the site's answer once the browser is done sending.
const AFTER_UPLOAD: Duration = Duration::from_secs(10);

/// The proxy's bounds.
#[derive(Clone, Copy, Debug)]
pub struct ProxyLimits {
    /// Connections open at once; more wait.
    pub connections: usize,
    /// Bytes one connection may carry, both ways together.
    pub bytes_per_connection: u64,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            connections: 256,
            bytes_per_connection: 64 * 1024 * 1024,
        }
    }
}

/// What the proxy saw, for the worker's figures.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Bytes carried, both ways.
    pub bytes: AtomicU64,
    /// Requests refused by the address guard.
    pub refused: AtomicU64,
    /// Requests let through.
    pub passed: AtomicU64,
}

/// A running guard proxy; stops when dropped.
#[derive(Debug)]
pub struct GuardProxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    shutdown: CancellationToken,
}

impl GuardProxy {
    /// Starts a proxy on 127.0.0.1 applying `policy` within `limits`.
    pub async fn start(policy: AddressPolicy, limits: ProxyLimits) -> std::io::Result<GuardProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let shutdown = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(limits.connections.max(1)));
        let policy = Arc::new(policy);
        tokio::spawn(accept(
            listener,
            addr,
            policy,
            limits,
            slots,
            stats.clone(),
            shutdown.clone(),
        ));
        Ok(GuardProxy {
            addr,
            stats,
            shutdown,
        })
    }

    /// Where the browser is to send its requests.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for GuardProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    own: SocketAddr,
    policy: Arc<AddressPolicy>,
    limits: ProxyLimits,
    slots: Arc<Semaphore>,
    stats: Arc<ProxyStats>,
    shutdown: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let client = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::debug!(cause = %e, "the render proxy could not accept");
                    continue;
                }
            },
        };
        let (policy, stats, shutdown) = (policy.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = async {
                    let _ = tokio::time::timeout(LIFETIME, serve(client, own, &policy, limits, &stats)).await;
                } => {}
            }
            drop(permit);
        });
    }
}

async fn serve(
    mut client: TcpStream,
    own: SocketAddr,
    policy: &AddressPolicy,
    limits: ProxyLimits,
    stats: &ProxyStats,
) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let Some((_, port)) = split_host_port(&head.target, 443) else {
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            return;
        };
        let host = match tunnel_origin(policy, &head.target) {
            Ok(host) => host,
            Err(why) => return refuse(client, &why, stats).await,
        };
        let site = match connect(policy, own, &host, port).await {
            Ok(site) => site,
            Err(why) => return refuse(client, &why, stats).await,
        };
        stats.passed.fetch_add(1, Ordering::Relaxed);
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        tunnel(client, site, head.rest, limits.bytes_per_connection, stats).await;
        return;
    }
    let Ok(url) = url::Url::parse(&head.target) else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    if url.scheme() != "http" {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    }
    if let Err(why) = policy.check_url(&url) {
        return refuse(client, &Refusal::Blocked(why), stats).await;
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut site = match connect(policy, own, &host, port).await {
        Ok(site) => site,
        Err(why) => return refuse(client, &why, stats).await,
    };
    stats.passed.fetch_add(1, Ordering::Relaxed);
    // One request per connection, in origin form, without the proxy's own headers.
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut out = format!("{} {path} {}\r\n", head.method, head.version);
    let lines = head.headers.iter().map(String::as_str);
    push_headers_but(&mut out, lines, &["proxy-authorization"]);
    out.push_str("Connection: close\r\n\r\n");
    if site.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    // The request's body, as long as it says, and no more: what the browser sends after it
    // on this connection is never read, and the answer tells it to close.
    let body = head
        .headers
        .iter()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0)
        .min(limits.bytes_per_connection);
    one_exchange(
        client,
        site,
        head.rest,
        body,
        limits.bytes_per_connection,
        stats,
    )
    .await;
}

/// Sends the request body (`first`, then up to `body` bytes in all) to the site, and the
/// site's answer back with its head saying `Connection: close`, so that the browser never
/// reuses this connection for another request.
async fn one_exchange(
    mut client: TcpStream,
    mut site: TcpStream,
    first: Vec<u8>,
    body: u64,
    limit: u64,
    stats: &ProxyStats,
) {
    let mut sent = first.len().min(body as usize);
    if sent > 0 && site.write_all(&first[..sent]).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while (sent as u64) < body {
        let want = buf.len().min((body - sent as u64) as usize);
        let n = match tokio::time::timeout(IDLE_TIMEOUT, client.read(&mut buf[..want])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        if site.write_all(&buf[..n]).await.is_err() {
            return;
        }
        sent += n;
    }
    // The answer's head, with the connection's headers replaced.
    let mut head = Vec::new();
    let end = loop {
        if let Some(end) = find_head_end(&head) {
            break end;
        }
        if head.len() > MAX_HEAD_BYTES {
            return;
        }
        let n = match tokio::time::timeout(IDLE_TIMEOUT, site.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let mut out = String::new();
    push_headers_but(&mut out, text.split("\r\n"), &[]);
    out.push_str("Connection: close\r\nProxy-Connection: close\r\n\r\n");
    let carried = AtomicU64::new((sent + out.len() + head.len() - end - 4) as u64);
    if client.write_all(out.as_bytes()).await.is_ok()
        && client.write_all(&head[end + 4..]).await.is_ok()
    {
        copy_counted(&mut site, &mut client, &carried, limit).await;
    }
    stats
        .bytes
        .fetch_add(carried.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Connects to `host:port` at an address the guard allows, resolving `host` here; never to
/// the proxy itself (`own`).
async fn connect(
    policy: &AddressPolicy,
    own: SocketAddr,
    host: &str,
    port: u16,
) -> Result<TcpStream, Refusal> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| Refusal::Unreachable)?
            .collect(),
    };
    let mut blocked = None;
    for addr in addrs {
        if addr == own {
            continue;
        }
        if let Err(why) = policy.check(host, addr.ip()) {
            blocked.get_or_insert(why);
            continue;
        }
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            return Ok(stream);
        }
    }
    Err(blocked.map_or(Refusal::Unreachable, Refusal::Blocked))
}

/// Appends `lines` (head lines, without their ends) to `out`, each with its line end, but
/// the hop-by-hop ones this proxy replaces (`Connection`, `Proxy-Connection`, `Keep-Alive`)
/// and those named in `also`.
fn push_headers_but<'a>(out: &mut String, lines: impl Iterator<Item = &'a str>, also: &[&str]) {
    const REPLACED: [&str; 3] = ["connection", "proxy-connection", "keep-alive"];
    for line in lines {
        let name = line.split(':').next().unwrap_or("").trim();
        if REPLACED
            .iter()
            .chain(also)
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
}

/// Why the proxy did not connect.
#[derive(Debug)]
enum Refusal {
    /// The guard refused every address.
    Blocked(Blocked),
    /// No address answered.
    Unreachable,
}

async fn refuse(mut client: TcpStream, why: &Refusal, stats: &ProxyStats) {
    let answer = match why {
        Refusal::Blocked(blocked) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%blocked, "the render proxy refused a browser request");
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        Refusal::Unreachable => {
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
    };
    let _ = client.write_all(answer.as_bytes()).await;
}

/// Copies `from` to `to` until `from` closes, either fails, or `carried` passes `limit`;
/// then closes `to` for writing.
async fn copy_counted(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    carried: &AtomicU64,
    limit: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, from.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        if carried.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > limit {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The host of a `CONNECT` target, once its origin passed the guard as a URL (so that an
/// origin allowed by its seed is allowed for its own scheme and port only), written as a
/// URL writes it (an IPv6 literal in brackets), as the seed's origin was.
fn tunnel_origin(policy: &AddressPolicy, target: &str) -> Result<String, Refusal> {
    let url = url::Url::parse(&format!("https://{target}/")).map_err(|_| Refusal::Unreachable)?;
    policy.check_url(&url).map_err(Refusal::Blocked)?;
    Ok(url.host_str().unwrap_or_default().to_owned())
}

/// Copies both ways until either side closes or `limit` bytes went through; `first` is what
/// the browser sent past its head, for the site.
async fn tunnel(
    client: TcpStream,
    mut site: TcpStream,
    first: Vec<u8>,
    limit: u64,
    stats: &ProxyStats,
) {
    if !first.is_empty() && site.write_all(&first).await.is_err() {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut site_read, mut site_write) = site.into_split();
    let carried = AtomicU64::new(first.len() as u64);
    let upload = copy_counted(&mut client_read, &mut site_write, &carried, limit);
    let download = copy_counted(&mut site_read, &mut client_write, &carried, limit);
    // The connection is over when the site's side is: the browser being done sending says
    // nothing of the answer still coming.
    tokio::select! {
        () = download => {}
        () = async {
            upload.await;
            // The site has a moment more to answer.
            tokio::time::sleep(AFTER_UPLOAD).await;
        } => {}
    }
    stats
        .bytes
        .fetch_add(carried.load(Ordering::Relaxed), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_to_an_ipv6_seed_origin_is_checked_under_the_seeds_own_host() {
        let ip: IpAddr = "::1".parse().expect("ip");
        let policy = AddressPolicy {
            origins: vec![crate::addresses::AllowedOrigin {
                scheme: "https".into(),
                host: "[::1]".into(),
                port: 8443,
                addrs: vec![ip],
            }],
            ..AddressPolicy::default()
        };
        let host = tunnel_origin(&policy, "[::1]:8443").expect("the seed's origin");
        assert!(policy.check(&host, ip).is_ok(), "{host}");
        assert!(
            tunnel_origin(&policy, "[::1]:9443").is_err(),
            "another port"
        );
    }

    async fn site() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            got.truncate(n);
            got
        });
        (addr, task)
    }

    async fn ask(proxy: &GuardProxy, request: &str) -> String {
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        c.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn a_plain_request_goes_through_in_origin_form_and_one_to_a_guarded_address_is_refused() {
        let (addr, site) = site().await;
        let allowed = AddressPolicy {
            allowed: vec!["127.0.0.1/32".parse().expect("net")],
            ..AddressPolicy::default()
        };
        let proxy = GuardProxy::start(allowed, ProxyLimits::default())
            .await
            .expect("proxy");
        let answer = ask(
            &proxy,
            &format!("GET http://{addr}/a?b=1 HTTP/1.1\r\nHost: {addr}\r\nProxy-Connection: keep-alive\r\n\r\n"),
        )
        .await;
        assert!(answer.ends_with("ok"), "{answer}");
        let sent = String::from_utf8(site.await.expect("site")).expect("utf-8");
        assert!(sent.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Connection: close"), "{sent}");
        assert!(
            !sent.to_ascii_lowercase().contains("proxy-connection"),
            "{sent}"
        );

        // The guard on, nothing allowed: loopback is refused, and no connection is made.
        let guarded = GuardProxy::start(AddressPolicy::default(), ProxyLimits::default())
            .await
            .expect("proxy");
        let answer = ask(
            &guarded,
            &format!("GET http://{addr}/secret HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let answer = ask(&guarded, &format!("CONNECT {addr} HTTP/1.1\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(guarded.stats().refused.load(Ordering::Relaxed), 2);
    }
}
