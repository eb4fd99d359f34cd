//! The worker's RPC port against peers that send what a well-behaved engine never would.

use common::service::{CrawlServiceRequest, CrawlServiceResponse};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use worker::{CrawlServer, WorkerConfig};

async fn start_worker() -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = CrawlServer::new(&loopback_config()).expect("server");
    let shutdown = CancellationToken::new();
    tokio::spawn(worker::run(
        listener,
        server,
        Default::default(),
        Default::default(),
        shutdown.clone(),
    ));
    (addr, shutdown)
}

/// A site whose `/slow` page answers after 300 ms with `body`; the receiver counts the
/// requests that arrived.
async fn slow_site(body: String) -> (std::net::SocketAddr, tokio::sync::watch::Receiver<usize>) {
    let (arrived, arrivals) = tokio::sync::watch::channel(0usize);
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            arrived.send_modify(|n| *n += 1);
            let body = body.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([(axum::http::header::CONTENT_TYPE, "text/html")], body)
            }
        }),
    );
    let site = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = site.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(site, app).await });
    (addr, arrivals)
}

/// A client of the worker at `addr`.
async fn client_of(addr: std::net::SocketAddr) -> common::CrawlServiceClient {
    common::transport::connect_worker(
        &addr.to_string(),
        Duration::from_secs(5),
        &Default::default(),
        &Default::default(),
    )
    .await
    .expect("connect")
}

/// A request for `url` with `parser`.
fn request_for(url: String, parser: &str) -> common::Request {
    common::Request {
        url,
        parser: parser.into(),
        depth: 0,
        task: "t".into(),
        meta: Default::default(),
        spider: None,
    }
}

/// Encodes a `status` request the way tarpc does, then rewrites its deadline to `secs` seconds
/// from now: the varint right after the request's variant tag.
fn status_request_with_deadline(secs: u64) -> Vec<u8> {
    use bincode::Options;
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(10);
    let msg = tarpc::ClientMessage::Request(tarpc::Request {
        context: ctx,
        id: 7,
        message: CrawlServiceRequest::Status {},
    });
    let bytes = bincode::DefaultOptions::new()
        .serialize(&msg)
        .expect("serialize");
    assert_eq!(bytes[0], 0, "the Request variant");
    assert!(bytes[1] < 251, "a one-byte deadline varint");
    let mut patched = vec![0u8, 253];
    patched.extend_from_slice(&secs.to_le_bytes());
    patched.extend_from_slice(&bytes[2..]);
    patched
}

async fn send_frame(stream: &mut TcpStream, frame: &[u8]) {
    stream
        .write_all(&(frame.len() as u32).to_be_bytes())
        .await
        .expect("write length");
    stream.write_all(frame).await.expect("write frame");
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

#[tokio::test]
async fn a_deadline_years_ahead_is_answered_not_a_panic() {
    use bincode::Options;
    let (addr, shutdown) = start_worker().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    common::handshake::client(&mut stream, None, Duration::from_secs(5))
        .await
        .expect("set-up");
    send_frame(&mut stream, &status_request_with_deadline(u64::MAX)).await;
    let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
        .await
        .expect("an answer in time")
        .expect("the worker answers instead of dropping the connection");
    let response: tarpc::Response<CrawlServiceResponse> = bincode::DefaultOptions::new()
        .deserialize(&frame)
        .expect("a response");
    assert_eq!(response.request_id, 7);
    assert!(
        matches!(response.message, Ok(CrawlServiceResponse::Status(_))),
        "{:?}",
        response.message
    );
    shutdown.cancel();
}

/// A parser that ignores every bound: one 40 MB item per page.
struct Flood;

impl worker::parsers::Parser for Flood {
    fn info(&self) -> common::ParserInfo {
        common::ParserInfo {
            name: "flood".into(),
            description: "one huge item".into(),
        }
    }

    fn parse(
        &self,
        page: &worker::parsers::Page<'_>,
    ) -> Result<worker::parsers::Extracted, worker::parsers::ParseError> {
        let mut payload = common::Payload::new();
        payload.insert("blob".into(), common::Value::Text("x".repeat(40 << 20)));
        Ok(worker::parsers::Extracted {
            items: vec![common::Item {
                id: page.url.to_string(),
                url: page.url.to_string(),
                kind: "blob".into(),
                task: page.request.task.clone(),
                payload,
            }],
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn a_result_over_the_frame_limit_is_a_typed_error_and_the_connection_lives() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "text/html")],
                "<title>x</title>",
            )
        }),
    );
    let site = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let site_addr = site.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(site, app).await });

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut registry = worker::parsers::Registry::builtin();
    registry.register(std::sync::Arc::new(Flood));
    let server = CrawlServer::with_registry(&loopback_config(), registry).expect("server");
    let shutdown = CancellationToken::new();
    tokio::spawn(worker::run(
        listener,
        server,
        Default::default(),
        Default::default(),
        shutdown.clone(),
    ));
    let client = client_of(addr).await;
    let request = request_for(format!("http://{site_addr}/"), "flood");
    let answer = client
        .crawl(
            common::transport::deadline(Duration::from_secs(30)),
            request,
            None,
        )
        .await
        .expect("an answer, not a broken connection");
    match answer {
        Err(e) => assert_eq!(e.reason(), "result_too_large", "{e}"),
        Ok(_) => panic!("a 40 MB result cannot cross a 32 MiB frame"),
    }
    client
        .status(common::transport::deadline(Duration::from_secs(5)))
        .await
        .expect("the same connection still serves calls");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_writes_every_answer_it_computed() {
    const CALLS: usize = 24;
    // Answers of a megabyte each take a while to write.
    let links: String = (0..5_000)
        .map(|i| format!("<a href=\"/{i}/{}\">x</a>", "p".repeat(180)))
        .collect();
    let (site_addr, mut arrivals) = slow_site(format!("<title>slow</title>{links}")).await;
    let (addr, shutdown) = start_worker().await;
    let client = client_of(addr).await;
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let client = client.clone();
            let request = request_for(format!("http://{site_addr}/slow?{i}"), "links");
            tokio::spawn(async move {
                client
                    .crawl(
                        common::transport::deadline(Duration::from_secs(30)),
                        request,
                        None,
                    )
                    .await
            })
        })
        .collect();
    // Every call reaches the site through the worker, then the worker is told to stop while
    // they run.
    arrivals
        .wait_for(|n| *n == CALLS)
        .await
        .expect("every call is fetching");
    shutdown.cancel();
    for call in calls {
        let answer = call.await.expect("join");
        assert!(
            matches!(answer, Ok(Ok(_))),
            "a call in flight at the drain lost its answer: {answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sent_as_the_drain_ends_is_refused_not_lost() {
    let (site_addr, mut arrivals) = slow_site("<title>slow</title>".into()).await;
    let (addr, shutdown) = start_worker().await;
    let client = client_of(addr).await;
    let request = |path: &str| request_for(format!("http://{site_addr}{path}"), "links");
    let first = {
        let client = client.clone();
        let request = request("/slow");
        tokio::spawn(async move {
            client
                .crawl(
                    common::transport::deadline(Duration::from_secs(30)),
                    request,
                    None,
                )
                .await
        })
    };
    arrivals.wait_for(|n| *n == 1).await.expect("fetching");
    shutdown.cancel();
    let answer = first.await.expect("join");
    assert!(matches!(answer, Ok(Ok(_))), "{answer:?}");
    // The next call leaves the moment the last answer arrives, as an engine's would.
    let next = client
        .crawl(
            common::transport::deadline(Duration::from_secs(30)),
            request("/slow"),
            None,
        )
        .await;
    assert!(
        matches!(next, Ok(Err(common::FetchError::Unavailable(_)))),
        "refused as the worker drains, so the engine sends it elsewhere uncharged: {next:?}"
    );
}

/// The default settings, with the SSRF guard off: the test servers are on 127.0.0.1.
fn loopback_config() -> WorkerConfig {
    WorkerConfig {
        fetch: worker::FetchConfig {
            addresses: worker::addresses::AddressPolicy::allow_all(),
            ..worker::FetchConfig::default()
        },
        ..WorkerConfig::default()
    }
}
