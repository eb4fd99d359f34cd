//! The parser registry: parsers are plugins looked up by the name a request carries.

mod budget;
mod links;
mod links_dom;
mod page;
mod scan;

pub use budget::{Budget, Overtime};
pub use links::LinksParser;
pub use links_dom::LinksDomParser;
pub use page::{LinkSet, page_item};

use common::{FollowUp, Item, PageYield, ParserInfo, Request};
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// A decoded page handed to a parser.
#[derive(Debug)]
pub struct Page<'a> {
    /// The request that fetched the page.
    pub request: &'a Request,
    /// The URL after redirects; relative links resolve against it (or `<base>`).
    pub url: &'a Url,
    /// The page as UTF-8.
    pub html: &'a str,
    /// The most follow-up links to return.
    pub max_links: usize,
    /// Bytes the result may take and the deadline of the parse.
    pub budget: &'a Budget,
}

/// What a parser got out of a page.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    /// Records to store.
    pub items: Vec<Item>,
    /// Links to schedule.
    pub links: Vec<FollowUp>,
    /// Items dropped because a required field was missing.
    pub dropped: u32,
    /// Items not extracted because the result reached its byte budget.
    pub truncated: u32,
    /// How many position-keyed items of each kind the page yielded (see [`PageYield`]).
    pub yields: Vec<PageYield>,
}

/// Why a parser failed on a page.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The parser could not make sense of the page, or of its own rules.
    #[error("{parser}: {message}")]
    Failed {
        /// The parser that failed.
        parser: String,
        /// What went wrong.
        message: String,
    },
    /// The parse ran past its deadline and was abandoned.
    #[error(transparent)]
    Overtime(#[from] Overtime),
}

/// Turns a page into items and links. Parsers run on a blocking thread, one page at a time;
/// they keep their result within `page.budget` and check its deadline in their loops.
pub trait Parser: Send + Sync {
    /// The registry name and a line on what it does.
    fn info(&self) -> ParserInfo;
    /// Whether to download and parse a body of this Content-Type; HTML only, unless a parser
    /// says otherwise. Refused bodies are not downloaded past the headers.
    fn accepts(&self, content_type: &str) -> bool {
        crate::fetch::is_html(content_type)
    }
    /// Parses one page.
    fn parse(&self, page: &Page<'_>) -> Result<Extracted, ParseError>;
}

/// Parsers by name.
#[derive(Clone, Default)]
pub struct Registry {
    parsers: BTreeMap<String, Arc<dyn Parser>>,
}

impl Registry {
    /// A registry holding the parsers built into the worker.
    pub fn builtin() -> Self {
        let mut registry = Registry::default();
        registry.register(Arc::new(LinksParser));
        registry.register(Arc::new(LinksDomParser));
        registry
    }

    /// Adds `parser`, replacing any parser of the same name.
    pub fn register(&mut self, parser: Arc<dyn Parser>) {
        self.parsers.insert(parser.info().name, parser);
    }

    /// The parser called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Parser>> {
        self.parsers.get(name).cloned()
    }

    /// Every parser, by name.
    pub fn list(&self) -> Vec<ParserInfo> {
        self.parsers.values().map(|p| p.info()).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.parsers.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::Value;

    fn request() -> Request {
        Request {
            url: "http://site.test/dir/page.html".into(),
            parser: "links".into(),
            depth: 0,
            task: "t1".into(),
            meta: Default::default(),
            spider: None,
        }
    }

    fn run(parser: &str, html: &str) -> Extracted {
        let req = request();
        let url = Url::parse(&req.url).expect("url");
        let page = Page {
            request: &req,
            url: &url,
            html,
            max_links: 100,
            budget: &Budget::unlimited(),
        };
        Registry::builtin()
            .get(parser)
            .expect("parser")
            .parse(&page)
            .expect("parse")
    }

    fn urls(e: &Extracted) -> Vec<&str> {
        e.links.iter().map(|l| l.url.as_str()).collect()
    }

    const FIXTURE: &str = r##"<!doctype html><html><head>
        <title>  Tom &amp; Jerry
          show </title>
        <meta name="Description" content="A &quot;classic&quot;">
        </head><body>
        <a href="other.html">rel</a>
        <a href="../up.html#frag">up</a>
        <a href="/abs?a=1&amp;b=2">abs</a>
        <a href="other.html">duplicate</a>
        <a href="#top">fragment only</a>
        <a href="mailto:x@y.z">mail</a>
        <a href="javascript:void(0)">js</a>
        <a href="HTTP://Other.Test:80/x">offsite</a>
        <a>no href</a>
        </body></html>"##;

    #[test]
    fn links_extracts_title_description_and_resolved_links() {
        for parser in ["links", "links-dom"] {
            let e = run(parser, FIXTURE);
            assert_eq!(
                urls(&e),
                vec![
                    "http://site.test/dir/other.html",
                    "http://site.test/up.html",
                    "http://site.test/abs?a=1&b=2",
                    "http://other.test/x",
                ],
                "{parser}"
            );
            let item = &e.items[0];
            assert_eq!(item.kind, "page");
            assert_eq!(item.task, "t1");
            assert_eq!(item.id, "http://site.test/dir/page.html");
            assert_eq!(
                item.payload["title"],
                Value::Text("Tom & Jerry show".into()),
                "{parser}"
            );
            assert_eq!(
                item.payload["description"],
                Value::Text("A \"classic\"".into()),
                "{parser}"
            );
            assert_eq!(item.payload["outlinks"], Value::Int(8), "{parser}");
        }
    }

    #[test]
    fn base_href_changes_resolution() {
        let html = r#"<html><head><base href="http://cdn.test/root/"></head>
            <body><a href="a.html">a</a><a href="/b.html">b</a></body></html>"#;
        for parser in ["links", "links-dom"] {
            assert_eq!(
                urls(&run(parser, html)),
                vec!["http://cdn.test/root/a.html", "http://cdn.test/b.html"]
            );
        }
    }

    #[test]
    fn malformed_html_never_fails() {
        let nasty = [
            "",
            "<",
            "<a href=",
            "<a href='x.html'",
            "<title>unterminated",
            "<html><body><table><a href=x.html><tr><td></a></select><xmp><script>\"use strict\";</script>",
            "\u{0}\u{fffd}<a href=\"\u{0}\">",
            "<svg><title>inner</title></svg><a href=\"\t y .html \">",
        ];
        for html in nasty {
            for parser in ["links", "links-dom"] {
                let req = request();
                let url = Url::parse(&req.url).expect("url");
                let page = Page {
                    request: &req,
                    url: &url,
                    html,
                    max_links: 100,
                    budget: &Budget::unlimited(),
                };
                let got = Registry::builtin().get(parser).expect("p").parse(&page);
                assert!(got.is_ok(), "{parser} failed on {html:?}: {got:?}");
            }
        }
    }

    #[test]
    fn link_count_is_bounded() {
        let html: String = (0..500)
            .map(|i| format!("<a href=\"/p{i}\">x</a>"))
            .collect();
        let req = request();
        let url = Url::parse(&req.url).expect("url");
        let page = Page {
            request: &req,
            url: &url,
            html: &html,
            max_links: 10,
            budget: &Budget::unlimited(),
        };
        let e = LinksParser.parse(&page).expect("parse");
        assert_eq!(e.links.len(), 10);
        assert_eq!(e.items[0].payload["outlinks"], Value::Int(500));
    }

    #[test]
    fn huge_base_and_links_are_dropped_not_multiplied() {
        let base = format!("http://site.test/{}", "b".repeat(1_000_000));
        let mut html = format!("<base href=\"{base}\">");
        for i in 0..2_000 {
            html.push_str(&format!("<a href=\"?{i}\">x</a>"));
        }
        html.push_str(&format!("<a href=\"/{}\">long</a>", "l".repeat(20_000)));
        let req = request();
        let url = Url::parse(&req.url).expect("url");
        let page = Page {
            request: &req,
            url: &url,
            html: &html,
            max_links: 5_000,
            budget: &Budget::unlimited(),
        };
        let e = LinksParser.parse(&page).expect("parse");
        let total: usize = e.links.iter().map(|l| l.url.len()).sum();
        assert_eq!(
            e.links.len(),
            2_000,
            "the oversized base is ignored, the long link dropped"
        );
        assert!(
            total < 100_000,
            "links resolve against the page URL: {total} bytes"
        );
    }

    #[test]
    fn streaming_and_dom_parsers_agree() {
        let mut pages: Vec<String> = vec![FIXTURE.to_owned()];
        pages.push(r#"<html><head><base href="http://cdn.test/x/"><title>A &amp; B</title></head>
            <body><!-- <a href="/commented-out">no</a> --><script>var s = '<a href="/in-script">';</script>
            <style>a[href="/in-style"] {}</style><textarea><a href="/in-textarea"></a></textarea>
            <A HREF='/upper'>u</A><a href=/unquoted>x</a><a data-x="y>z" href="/after-gt-in-quotes">g</a>
            <a href="/first" href="/second">dup</a><a>none</a><a href="">empty</a>
            <svg><a href="/in-svg">s</a></svg><noscript><a href="/in-noscript">n</a></noscript>
            <meta content="late" name="DESCRIPTION"><p>a < b and c<d</p><!--><a href="/after-empty-comment">e</a>
            <!---><a href="/after-dash-comment">d</a><a href="/last">l</a></body></html>"#.to_owned());
        // The realistic dense pages the benchmark crawls.
        let site = bench_like_page();
        pages.push(site);
        for html in &pages {
            let req = request();
            let url = Url::parse(&req.url).expect("url");
            let page = Page {
                request: &req,
                url: &url,
                html,
                max_links: 5_000,
                budget: &Budget::unlimited(),
            };
            let fast = LinksParser.parse(&page).expect("links");
            let dom = LinksDomParser.parse(&page).expect("links-dom");
            assert_eq!(fast, dom, "parsers disagree on:\n{html}");
        }
    }

    fn bench_like_page() -> String {
        let mut html = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Bench</title></head><body>",
        );
        for i in 0..200 {
            html.push_str(&format!(
                "<div class=\"row\" data-id=\"{i}\"><span class=\"k\">x</span><ul><li><em>y</em></li></ul>\
                 <a href=\"/p/{i}.html\" class=\"link\">Page {i}</a><img src=\"/i/{i}.png\" alt=\"\"></div>"
            ));
        }
        html.push_str("</body></html>");
        html
    }

    #[test]
    fn registry_lists_builtin_parsers() {
        let names: Vec<String> = Registry::builtin()
            .list()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["links", "links-dom"]);
    }
}
