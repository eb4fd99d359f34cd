//! A page built to make a spider's output explode: nested scopes that each see every inner
//! element. The worker must bound the result and say how much it cut.

use axum::http::header;
use std::time::Duration;
use tokio::net::TcpListener;
use worker::{CrawlServer, WorkerConfig};

/// 10,000 `div.quote` nested in one another, with 1,000 `a.tag` and an author in the middle:
/// every scope selects all of them.
fn nested_quotes() -> String {
    let depth = 10_000;
    let mut html = String::from("<html><body>");
    for _ in 0..depth {
        html.push_str("<div class=\"quote\">");
    }
    html.push_str("<span class=\"text\">“Deep.”</span><small class=\"author\">Anon</small>");
    for i in 0..1_000 {
        html.push_str(&format!("<a class=\"tag\">tag-number-{i}</a>"));
    }
    for _ in 0..depth {
        html.push_str("</div>");
    }
    html.push_str("</body></html>");
    html
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_scopes_yield_a_bounded_result_and_count_what_was_cut() {
    let page = nested_quotes();
    let app = axum::Router::new().route(
        "/quotes/page/1/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { ([(header::CONTENT_TYPE, "text/html")], page) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = CrawlServer::new(&loopback_config()).expect("server");
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spiders/quotes.toml"
    ))
    .expect("quotes.toml");
    let hash = server.load_spider_source(&source).expect("spider");
    let request = common::Request {
        url: format!("http://{addr}/quotes/page/1/"),
        parser: "listing".into(),
        depth: 0,
        task: "quotes".into(),
        meta: Default::default(),
        spider: Some(hash),
    };
    let result = tokio::time::timeout(Duration::from_secs(60), server.crawl_one(request))
        .await
        .expect("the page is parsed in bounded time")
        .expect("the page yields a (cut) result");
    let bytes = common::codec::encoded_len(&result);
    let limit = WorkerConfig::default().max_result_bytes as u64;
    assert!(
        bytes <= limit,
        "result of {bytes} bytes over the {limit}-byte bound"
    );
    assert!(!result.items.is_empty(), "what fits is kept");
    assert!(
        result.items_truncated > 0,
        "the items cut are counted ({} kept)",
        result.items.len()
    );
    assert_eq!(
        result.items.len() + result.items_truncated as usize,
        10_000,
        "every scope is either kept or counted as cut"
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
