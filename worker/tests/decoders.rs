//! Decoders under attack: random and mutated input fed to charset decoding, the link scanner
//! and the spider-file parser never panics, each case ends quickly, and what comes out stays
//! within a bound of what went in.

use proptest::prelude::*;
use std::time::{Duration, Instant};
use worker::parsers::{Budget, LinksParser, Page, Parser as _};

/// Longest one case may take: a decoder that hangs fails here.
const CASE: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// HTML-ish text: tags, attributes, quotes, comments and entities are common in it.
fn htmlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("<a href=\"".to_owned()),
            Just("\">".to_owned()),
            Just("<!--".to_owned()),
            Just("-->".to_owned()),
            Just("<base href=".to_owned()),
            Just("<title>".to_owned()),
            Just("</".to_owned()),
            Just("<script>".to_owned()),
            Just("&amp;#x".to_owned()),
            Just("'".to_owned()),
            "[ -~]{0,12}",
            ".{0,6}",
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn charset_decoding_never_crashes_and_stays_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        content_type in proptest::option::of("[ -~]{0,64}"),
    ) {
        let started = Instant::now();
        let (text, _) = worker::charset::decode(&body, content_type.as_deref());
        prop_assert!(started.elapsed() < CASE);
        // A byte decodes to at most one character, at most four bytes of UTF-8 (a
        // replacement character is three).
        prop_assert!(text.len() <= body.len() * 4 + 4, "{} bytes from {}", text.len(), body.len());
    }

    #[test]
    fn the_link_scanner_never_crashes_and_keeps_its_link_limit(html in htmlish(), max_links in 0usize..50) {
        let request = common::Request {
            url: "http://a.test/".into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        };
        let url = url::Url::parse("http://a.test/dir/page.html").expect("url");
        let budget = Budget::unlimited();
        let page = Page { request: &request, url: &url, html: &html, max_links, budget: &budget };
        let started = Instant::now();
        if let Ok(extracted) = LinksParser.parse(&page) {
            prop_assert!(extracted.links.len() <= max_links);
        }
        prop_assert!(started.elapsed() < CASE);
    }

    #[test]
    fn random_spider_files_never_crash_the_parser(source in ".{0,2048}") {
        let started = Instant::now();
        let _ = worker::spider::compile("random.toml", &source);
        prop_assert!(started.elapsed() < CASE);
    }

    #[test]
    fn mutated_spider_files_never_crash_the_parser(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..12),
    ) {
        let mut chars: Vec<char> = include_str!("../../spiders/quotes.toml").chars().collect();
        for (at, c) in flips {
            let i = at.index(chars.len());
            chars[i] = c;
        }
        let source: String = chars.into_iter().collect();
        let started = Instant::now();
        let _ = worker::spider::compile("mutated.toml", &source);
        prop_assert!(started.elapsed() < CASE);
    }
}

#[test]
fn the_real_spider_file_compiles() {
    worker::spider::compile("quotes.toml", include_str!("../../spiders/quotes.toml"))
        .expect("spiders/quotes.toml is valid");
}
