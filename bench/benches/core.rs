//! Criterion benches of the hot paths: URL canonicalisation, link extraction (streaming and
//! DOM), the declarative extractor, and a bincode round trip of a realistic `ParseResult`.

use bench::pages::Site;
use common::{FetchFacts, FollowUp, Item, ParseResult, Payload, Request, Value};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use url::Url;
use worker::parsers::{LinksDomParser, LinksParser, Page, Parser};

fn request(parser: &str, spider: Option<u64>) -> Request {
    Request {
        url: String::new(),
        parser: parser.into(),
        depth: 0,
        task: "bench".into(),
        meta: Default::default(),
        spider,
    }
}

fn canonicalize(c: &mut Criterion) {
    let base = Url::parse("http://Example.com:80/dir/page.html").expect("url");
    c.bench_function("canonicalize_relative_link", |b| {
        b.iter(|| {
            common::canonicalize(black_box("../a/./b/%7euser/x.html?q=%3d#frag"), Some(&base))
        })
    });
}

fn link_extraction(c: &mut Criterion) {
    let site = Site::new(100);
    let html = String::from_utf8(site.page(7)).expect("utf8");
    let url = Url::parse("http://bench.test/p/7.html").expect("url");
    let req = request("links", None);
    let page = Page {
        request: &req,
        url: &url,
        html: &html,
        max_links: 5_000,
        budget: &worker::parsers::Budget::unlimited(),
    };
    let mut group = c.benchmark_group("link_extraction_50kb_page");
    group.bench_function("links_streaming", |b| {
        b.iter(|| LinksParser.parse(black_box(&page)))
    });
    group.bench_function("links_dom", |b| {
        b.iter(|| LinksDomParser.parse(black_box(&page)))
    });
    group.finish();
}

fn declarative_extractor(c: &mut Criterion) {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spiders/quotes.toml"
    ))
    .expect("spider");
    let spider = worker::spider::compile("quotes.toml", &source).expect("compile");
    let html = spinneret_listing();
    let url = Url::parse("http://127.0.0.1:8000/quotes/page/1/").expect("url");
    let req = request("listing", Some(spider.hash));
    let page = Page {
        request: &req,
        url: &url,
        html: &html,
        max_links: 5_000,
        budget: &worker::parsers::Budget::unlimited(),
    };
    let rule = spider.rule("listing").expect("rule");
    c.bench_function("spider_listing_page_10_items", |b| {
        b.iter(|| worker::spider::run(&spider, rule, black_box(&page)))
    });
}

/// A quotes listing page like the test site's.
fn spinneret_listing() -> String {
    let mut html = String::from("<html><body>");
    for i in 0..10 {
        html.push_str(&format!(
            "<div class=\"quote\"><span class=\"text\">“Quote {i}: simplicity matters.”</span>\
             <span>by <small class=\"author\">Author {i}</small> <a href=\"/quotes/author/a{i}/\">(about)</a></span>\
             <div class=\"tags\">Tags: <a class=\"tag\" href=\"/t/x/\">x</a> <a class=\"tag\" href=\"/t/y/\">y</a></div></div>"
        ));
    }
    html.push_str("<li class=\"next\"><a href=\"/quotes/page/2/\">Next</a></li></body></html>");
    html
}

fn bincode_round_trip(c: &mut Criterion) {
    let mut payload = Payload::new();
    payload.insert("title".into(), Value::Text("Benchmark page 7".into()));
    payload.insert(
        "description".into(),
        Value::Text("Page 7 of the benchmark site".into()),
    );
    payload.insert("outlinks".into(), Value::Int(50));
    let result = ParseResult {
        items: vec![Item {
            id: "http://bench.test/p/7.html".into(),
            url: "http://bench.test/p/7.html".into(),
            kind: "page".into(),
            task: "bench".into(),
            payload,
        }],
        requests: (0..50)
            .map(|i| FollowUp {
                url: format!("http://bench.test/p/{i}.html"),
                parser: None,
            })
            .collect(),
        fetch: FetchFacts {
            final_url: "http://bench.test/p/7.html".into(),
            status: 200,
            bytes: 53_000,
            elapsed_ms: 3,
            rendered: false,
        },
        redirect: None,
        items_dropped: 0,
        items_truncated: 0,
        yields: Vec::new(),
    };
    c.bench_function("bincode_round_trip_parse_result_50_links", |b| {
        b.iter(|| {
            let bytes = bincode::serialize(black_box(&result)).expect("serialize");
            bincode::deserialize::<ParseResult>(&bytes).expect("deserialize")
        })
    });
}

criterion_group!(
    benches,
    canonicalize,
    link_extraction,
    declarative_extractor,
    bincode_round_trip
);
criterion_main!(benches);
