//! The worker against a real local HTTP server: each failure comes back as its typed error.

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use common::{FetchError, Request, Value};
use spinneret_tests::warc::{records as warc_records, response_of};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use worker::addresses::AddressPolicy;
use worker::fetch::{Fetcher, is_html};
use worker::{CrawlServer, FetchConfig, WorkerConfig};

/// Chunks of the big binary file the server has produced so far.
type Produced = Arc<AtomicUsize>;

const BINARY_CHUNKS: usize = 400;

fn gzip(data: &[u8], times: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..times {
        let _ = gz.write_all(data);
    }
    gz.finish().unwrap_or_default()
}

async fn serve() -> (String, Produced) {
    let produced = Produced::default();
    let counter = produced.clone();
    let app = Router::new()
        .route(
            "/ok",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<title>ok</title><a href=\"/next\">n</a>",
                )
            }),
        )
        .route(
            "/png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 64]) }),
        )
        .route(
            "/big",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "x".repeat(300_000)) }),
        )
        .route(
            "/stream-huge",
            get(|| async {
                let chunks = futures::stream::iter(
                    (0..1_000).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 10_000])),
                );
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    Body::from_stream(chunks),
                )
            }),
        )
        .route(
            "/bomb",
            get(|| async {
                let body = gzip(&vec![0u8; 1 << 20], 20);
                (
                    [
                        (header::CONTENT_TYPE, "text/html"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
                    .into_response()
            }),
        )
        .route(
            "/file.bin",
            get(move || {
                let counter = counter.clone();
                async move {
                    let chunks = futures::stream::iter((0..BINARY_CHUNKS).map(move |_| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(vec![0u8; 64 * 1024])
                    }));
                    (
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        Body::from_stream(chunks),
                    )
                }
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "gone") }),
        )
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "7")],
                    "slow down",
                )
            }),
        )
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route("/moved", get(|| async { Redirect::permanent("/ok") }))
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /private/\n" }),
        )
        .route(
            "/hang",
            get(|| async {
                // Never answers: the worker's timeout must cut it off.
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route(
            "/gzip",
            get(|| async {
                let body = gzip(b"<title>zipped</title>", 1);
                (
                    [
                        (header::CONTENT_TYPE, "text/html"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), produced)
}

fn server() -> CrawlServer {
    server_with_limit(100_000)
}

fn server_with_limit(max_body_bytes: u64) -> CrawlServer {
    let config = WorkerConfig {
        fetch: FetchConfig {
            timeout: Duration::from_secs(1),
            max_body_bytes,
            // The test server is on 127.0.0.1.
            addresses: AddressPolicy::allow_all(),
            ..FetchConfig::default()
        },
        ..WorkerConfig::default()
    };
    CrawlServer::new(&config).expect("server")
}

fn request(url: String) -> Request {
    Request {
        url,
        parser: "links".into(),
        depth: 0,
        task: "t".into(),
        meta: Default::default(),
        spider: None,
    }
}

#[tokio::test]
async fn html_page_yields_item_and_links() {
    let (base, _) = serve().await;
    let result = server()
        .crawl_one(request(format!("{base}/ok")))
        .await
        .expect("ok");
    assert_eq!(result.fetch.status, 200);
    assert_eq!(result.items[0].payload["title"], Value::Text("ok".into()));
    assert_eq!(result.requests[0].url, format!("{base}/next"));
    assert_eq!(result.redirect, None);
}

#[tokio::test]
async fn redirect_is_reported_not_followed() {
    let (base, _) = serve().await;
    let result = server()
        .crawl_one(request(format!("{base}/moved")))
        .await
        .expect("ok");
    assert_eq!(
        result.redirect.as_deref(),
        Some(format!("{base}/ok").as_str())
    );
    assert_eq!(result.fetch.status, 308);
    assert!(result.items.is_empty() && result.requests.is_empty());
    let looped = server()
        .crawl_one(request(format!("{base}/loop")))
        .await
        .expect("ok");
    assert_eq!(
        looped.redirect.as_deref(),
        Some(format!("{base}/loop").as_str())
    );
}

#[tokio::test]
async fn gzip_body_is_decompressed() {
    let (base, _) = serve().await;
    let result = server()
        .crawl_one(request(format!("{base}/gzip")))
        .await
        .expect("ok");
    assert_eq!(
        result.items[0].payload["title"],
        Value::Text("zipped".into())
    );
}

#[tokio::test]
async fn streamed_body_and_compression_bomb_stop_at_the_limit() {
    let (base, _) = serve().await;
    let w = server();
    // No Content-Length: the limit must hold while streaming.
    let got = w.crawl_one(request(format!("{base}/stream-huge"))).await;
    assert_eq!(got, Err(FetchError::TooLarge { limit: 100_000 }));
    // 20 MiB of zeros gzipped to about 20 KiB: the limit applies after decompression.
    let got = w.crawl_one(request(format!("{base}/bomb"))).await;
    assert_eq!(got, Err(FetchError::TooLarge { limit: 100_000 }));
}

#[tokio::test]
async fn non_html_body_is_not_downloaded() {
    let (base, produced) = serve().await;
    // A limit well above the file's 25 MiB, so only the type check can stop the download.
    let got = server_with_limit(64 << 20)
        .crawl_one(request(format!("{base}/file.bin")))
        .await;
    assert_eq!(
        got,
        Err(FetchError::NotHtml {
            content_type: "application/octet-stream".into()
        })
    );
    // The server produces chunks only as fast as the socket drains. The worker stops reading
    // after the headers, so no more than what fits in the socket buffers is ever produced.
    let made = produced.load(Ordering::SeqCst);
    assert!(
        made < BINARY_CHUNKS / 4,
        "{made} of {BINARY_CHUNKS} chunks were produced"
    );
}

#[tokio::test]
async fn each_failure_has_its_typed_error() {
    let (base, _) = serve().await;
    let w = server();
    let cases = [
        (
            "/missing",
            FetchError::Http {
                status: 404,
                retry_after_secs: None,
            },
        ),
        (
            "/busy",
            FetchError::Http {
                status: 429,
                retry_after_secs: Some(7),
            },
        ),
        (
            "/png",
            FetchError::NotHtml {
                content_type: "image/png".into(),
            },
        ),
        ("/big", FetchError::TooLarge { limit: 100_000 }),
    ];
    for (path, expected) in cases {
        let got = w.crawl_one(request(format!("{base}{path}"))).await;
        assert_eq!(got, Err(expected), "{path}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (base, _) = serve().await;
    let got = server().crawl_one(request(format!("{base}/hang"))).await;
    assert!(matches!(got, Err(FetchError::Timeout { .. })), "{got:?}");
}

#[tokio::test]
async fn robots_is_fetched_with_its_status() {
    let (base, _) = serve().await;
    let ok = server()
        .robots_one(format!("{base}/robots.txt"))
        .await
        .expect("robots");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"User-agent: *\nDisallow: /private/\n");
    let missing = server()
        .robots_one(format!("{base}/missing"))
        .await
        .expect("robots");
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn bad_requests_fail_before_fetching() {
    let w = server();
    let mut unknown = request("http://127.0.0.1:1/".into());
    unknown.parser = "nope".into();
    assert_eq!(
        w.crawl_one(unknown).await,
        Err(FetchError::UnknownParser("nope".into()))
    );
    assert!(matches!(
        w.crawl_one(request("not a url".into())).await,
        Err(FetchError::InvalidUrl(_))
    ));
    let closed = w.crawl_one(request("http://127.0.0.1:1/".into())).await;
    assert!(matches!(closed, Err(FetchError::Connect(_))), "{closed:?}");
}

#[tokio::test]
async fn the_ssrf_guard_checks_every_redirect_hop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let elsewhere = move |path: &str| format!("http://127.0.0.2:{port}{path}");
    let (robots_to, page_to) = (elsewhere("/robots.txt"), elsewhere("/page"));
    let app = Router::new()
        .route(
            "/robots.txt",
            get(move || async move { Redirect::temporary(&robots_to) }),
        )
        .route(
            "/hop",
            get(move || async move { Redirect::temporary(&page_to) }),
        )
        .route(
            "/ok",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<title>ok</title>") }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    // 127.0.0.1 is allowed by name; 127.0.0.2 is loopback like it, and refused.
    let fetcher = Fetcher::new(FetchConfig {
        addresses: AddressPolicy {
            allow_private: false,
            allowed: vec!["127.0.0.1/32".parse().expect("net")],
            ..AddressPolicy::default()
        },
        ..FetchConfig::default()
    })
    .expect("fetcher");
    let url = |path: &str| url::Url::parse(&format!("http://127.0.0.1:{port}{path}")).expect("url");
    let blocked = |e: FetchError| match e {
        FetchError::BlockedAddress(why) => why,
        other => panic!("expected blocked_address, got {other:?}"),
    };

    let ok = fetcher.fetch(&url("/ok"), is_html).await.expect("allowed");
    assert_eq!(ok.status, 200);
    // robots.txt redirects are followed inside the worker, and stopped at the hop: the
    // file cannot be had (the host itself is not the one refused).
    match fetcher.fetch_robots(&url("/robots.txt")).await {
        Err(FetchError::Other(why)) => {
            assert!(
                why.contains("127.0.0.2") && why.contains("loopback"),
                "{why}"
            )
        }
        other => panic!("expected a refused hop, got {other:?}"),
    }
    // A page's redirect comes back as a new URL, refused when it is fetched.
    let hop = fetcher
        .fetch(&url("/hop"), is_html)
        .await
        .expect("redirect")
        .redirect
        .expect("target");
    let why = blocked(fetcher.fetch(&hop, is_html).await.expect_err("hop"));
    assert!(why.contains("127.0.0.2"), "{why}");
}

#[tokio::test]
async fn every_response_received_is_archived_before_the_answer() {
    let (base, _) = serve().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WorkerConfig {
        fetch: FetchConfig {
            timeout: Duration::from_secs(1),
            max_body_bytes: 100_000,
            addresses: AddressPolicy::allow_all(),
            warc: Some(worker::warc::WarcConfig {
                dir: dir.path().to_path_buf(),
                max_bytes: worker::warc::DEFAULT_MAX_BYTES,
                subresources: false,
            }),
            ..FetchConfig::default()
        },
        ..WorkerConfig::default()
    };
    let w = CrawlServer::new(&config).expect("server");
    for path in ["/gzip", "/moved", "/missing", "/png", "/stream-huge"] {
        let _ = w.crawl_one(request(format!("{base}{path}"))).await;
        // Written before the answer: the record is there as soon as the call returns.
        let records = warc_records(dir.path());
        response_of(&records, &base, path);
    }
    w.robots_one(format!("{base}/robots.txt"))
        .await
        .expect("robots");
    // A robots.txt reached through a redirect: the hop is archived, and where it led.
    w.robots_one(format!("{base}/moved")).await.expect("robots");
    let records = warc_records(dir.path());
    let requests = records
        .iter()
        .filter(|r| r.contains("WARC-Type: request\r\n"))
        .count();
    assert_eq!(requests, 8, "a request record with each response");
    let moved = format!("WARC-Target-URI: {base}/moved\r\n");
    let hops = records
        .iter()
        .filter(|r| r.contains("WARC-Type: response\r\n") && r.contains(&moved))
        .count();
    assert_eq!(hops, 2, "the page's redirect and the robots.txt hop");
    response_of(&records, &base, "/ok");
    // Stored decompressed, its Content-Encoding gone and its length the stored one's.
    let zipped = response_of(&records, &base, "/gzip");
    assert!(zipped.contains("HTTP/1.1 200 OK\r\n"), "{zipped}");
    assert!(zipped.contains("<title>zipped</title>"), "{zipped}");
    assert!(
        !zipped.to_ascii_lowercase().contains("content-encoding"),
        "{zipped}"
    );
    let moved = response_of(&records, &base, "/moved");
    assert!(
        moved.contains("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{moved}"
    );
    assert!(moved.contains("location: /ok\r\n"), "{moved}");
    assert!(response_of(&records, &base, "/missing").contains("HTTP/1.1 404 Not Found\r\n"));
    // Refused as not HTML: its headers only.
    let png = response_of(&records, &base, "/png");
    assert!(png.contains("content-type: image/png\r\n"), "{png}");
    assert!(png.contains("Content-Length: 0\r\n\r\n\r\n\r\n"), "{png}");
    assert!(png.contains("WARC-Truncated: unspecified\r\n"), "{png}");
    // Cut at the body limit, and said so.
    let huge = response_of(&records, &base, "/stream-huge");
    assert!(huge.contains("WARC-Truncated: length\r\n"), "{huge}");
    assert!(huge.contains("Content-Length: 100000\r\n"), "{huge}");
    assert!(response_of(&records, &base, "/robots.txt").contains("HTTP/1.1 200 OK\r\n"));
}
