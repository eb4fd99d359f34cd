//! The worker against a real local HTTP server: each failure comes back as its typed error.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use common::{FetchError, Request, Value};
use std::time::Duration;
use worker::{CrawlServer, FetchConfig, WorkerConfig};

async fn serve() -> String {
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
                use std::io::Write;
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = gz.write_all(b"<title>zipped</title>");
                let body = gz.finish().unwrap_or_default();
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
    format!("http://{addr}")
}

fn server() -> CrawlServer {
    let config = WorkerConfig {
        fetch: FetchConfig {
            timeout: Duration::from_secs(1),
            max_body_bytes: 100_000,
            max_redirects: 3,
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
    }
}

#[tokio::test]
async fn html_page_yields_item_and_links() {
    let base = serve().await;
    let result = server()
        .crawl_one(request(format!("{base}/ok")))
        .await
        .expect("ok");
    assert_eq!(result.fetch.status, 200);
    assert_eq!(result.items[0].payload["title"], Value::Text("ok".into()));
    assert_eq!(result.requests[0].url, format!("{base}/next"));
}

#[tokio::test]
async fn redirect_is_followed_and_reported() {
    let base = serve().await;
    let result = server()
        .crawl_one(request(format!("{base}/moved")))
        .await
        .expect("ok");
    assert_eq!(result.fetch.final_url, format!("{base}/ok"));
    assert_eq!(result.items[0].url, format!("{base}/ok"));
}

#[tokio::test]
async fn gzip_body_is_decompressed() {
    let base = serve().await;
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
async fn each_failure_has_its_typed_error() {
    let base = serve().await;
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
        ("/loop", FetchError::TooManyRedirects { limit: 3 }),
    ];
    for (path, expected) in cases {
        let got = w.crawl_one(request(format!("{base}{path}"))).await;
        assert_eq!(got, Err(expected), "{path}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let base = serve().await;
    let got = server().crawl_one(request(format!("{base}/hang"))).await;
    assert!(matches!(got, Err(FetchError::Timeout { .. })), "{got:?}");
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
