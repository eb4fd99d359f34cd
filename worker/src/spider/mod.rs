//! Declarative spiders: a TOML file that says which links to follow and which items to
//! extract, run by any worker without a rebuild. `docs/spider-files.md` documents the format.

mod compile;
mod extract;
pub mod spec;

pub use compile::{CompiledRule, CompiledSpider, SpiderError, compile, spider_hash};
pub use extract::run;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsers::{Budget, Extracted, Overtime, Page};
    use common::{Request, Scalar, Value};
    use url::Url;

    const PAGE_URL: &str = "http://quotes.test/page/1/";

    const LISTING: &str = r#"<html><head><title>Quotes</title></head><body>
      <div class="quote" data-id="q1">
        <span class="text">  “The world as we have created it is a process of our thinking.”  </span>
        <small class="author">Albert Einstein</small> <a href="/author/Albert-Einstein">(about)</a>
        <div class="tags"><a class="tag">change</a> <a class="tag">deep-thoughts</a></div>
        <span class="likes">1,234 likes</span> <span class="score">4.5</span>
      </div>
      <div class="quote" data-id="q2">
        <span class="text">“It is our choices that show what we truly are.”</span>
        <small class="author">J.K. Rowling</small> <a href="../../author/J-K-Rowling">(about)</a>
        <div class="tags"><a class="tag">abilities</a></div>
        <span class="likes">no likes</span>
      </div>
      <div class="quote" data-id="q3">
        <span class="text">“An authorless quote.”</span>
        <div class="tags"></div>
      </div>
      <li class="next"><a href="/page/2/">Next →</a></li>
      </body></html>"#;

    const SPIDER: &str = r#"
name = "quotes"
start_urls = ["http://quotes.test/page/1/"]

[[rule]]
name = "listing"
match = "/page/\\d+/"

[[rule.follow]]
selector = "li.next a"
rule = "listing"

[[rule.follow]]
selector = ".quote a[href*=author]"

[[rule.extract]]
kind = "quote"
scope = "div.quote"
id = "qid"
fields.qid = { attr = "data-id" }
fields.text = { selector = "span.text", regex = "“(.*)”" }
fields.author = { selector = ".author", required = true }
fields.author_url = { selector = "a[href*=author]", attr = "href", type = "url" }
fields.tags = { selector = "a.tag", all = true }
fields.likes = { selector = ".likes", regex = "([\\d,]+) likes", type = "integer", default = 0 }
fields.score = { selector = ".score", type = "float" }
fields.html = { selector = ".tags", take = "html", trim = false }

[[rule]]
name = "author"
match = "/author/"

[[rule.extract]]
kind = "author"
fields.name = { selector = "h3" }
"#;

    fn run_on(spider: &CompiledSpider, rule: &str, html: &str) -> Extracted {
        run_within(spider, rule, html, &Budget::unlimited()).expect("no deadline")
    }

    fn run_within(
        spider: &CompiledSpider,
        rule: &str,
        html: &str,
        budget: &Budget,
    ) -> Result<Extracted, Overtime> {
        let request = Request {
            url: PAGE_URL.into(),
            parser: rule.into(),
            depth: 0,
            task: "quotes".into(),
            meta: Default::default(),
            spider: Some(spider.hash),
        };
        let url = Url::parse(PAGE_URL).expect("url");
        let page = Page {
            request: &request,
            url: &url,
            html,
            max_links: 100,
            budget,
        };
        run(spider, spider.rule(rule).expect("rule"), &page)
    }

    fn text(v: &str) -> Value {
        Value::Text(v.into())
    }

    #[test]
    fn extracts_text_attributes_lists_regex_types_and_defaults() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let e = run_on(&spider, "listing", LISTING);
        assert_eq!(
            e.items.len(),
            2,
            "the authorless quote is dropped: {:?}",
            e.items
        );
        assert_eq!(e.dropped, 1);
        let q1 = &e.items[0];
        assert_eq!(q1.id, "q1");
        assert_eq!(q1.kind, "quote");
        assert_eq!(q1.task, "quotes");
        assert_eq!(
            q1.payload["text"],
            text("The world as we have created it is a process of our thinking.")
        );
        assert_eq!(q1.payload["author"], text("Albert Einstein"));
        assert_eq!(
            q1.payload["author_url"],
            text("http://quotes.test/author/Albert-Einstein")
        );
        assert_eq!(
            q1.payload["tags"],
            Value::List(vec![
                Scalar::Text("change".into()),
                Scalar::Text("deep-thoughts".into())
            ])
        );
        assert_eq!(q1.payload["likes"], Value::Int(1234));
        assert_eq!(q1.payload["score"], Value::Float(4.5));
        assert!(
            q1.payload["html"]
                .as_text()
                .is_some_and(|h| h.contains("<a class=\"tag\">change</a>"))
        );
        let q2 = &e.items[1];
        assert_eq!(
            q2.payload["likes"],
            Value::Int(0),
            "regex did not match: the default applies"
        );
        assert_eq!(
            q2.payload["score"],
            Value::Null,
            "missing optional field without a default"
        );
        assert_eq!(
            q2.payload["author_url"],
            text("http://quotes.test/author/J-K-Rowling"),
            "relative link resolved"
        );
    }

    #[test]
    fn fields_look_only_inside_their_scope() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let e = run_on(&spider, "listing", LISTING);
        assert_eq!(
            e.items[1].payload["tags"],
            Value::List(vec![Scalar::Text("abilities".into())])
        );
    }

    #[test]
    fn follows_links_with_their_rules() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let e = run_on(&spider, "listing", LISTING);
        let links: Vec<(&str, Option<&str>)> = e
            .links
            .iter()
            .map(|l| (l.url.as_str(), l.parser.as_deref()))
            .collect();
        assert_eq!(
            links,
            vec![
                ("http://quotes.test/page/2/", Some("listing")),
                ("http://quotes.test/author/Albert-Einstein", Some("author")),
                ("http://quotes.test/author/J-K-Rowling", Some("author")),
            ]
        );
    }

    #[test]
    fn default_id_is_page_kind_and_position() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let e = run_on(&spider, "author", "<h3>Albert Einstein</h3>");
        assert_eq!(e.items[0].id, "http://quotes.test/page/1/#author-0");
        assert_eq!(e.items[0].payload["name"], text("Albert Einstein"));
    }

    /// A listing of `n` quotes with ten tags each.
    fn many_quotes(n: usize) -> String {
        let quote = "<div class=\"quote\" data-id=\"q\"><span class=\"text\">“Q”</span>\
            <small class=\"author\">A</small><div class=\"tags\">"
            .to_owned()
            + &"<a class=\"tag\">t</a>".repeat(10)
            + "</div></div>";
        format!("<html><body>{}</body></html>", quote.repeat(n))
    }

    #[test]
    fn items_past_the_byte_budget_are_cut_and_counted() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let html = many_quotes(1_000);
        let full = run_on(&spider, "listing", &html);
        assert_eq!(full.items.len(), 1_000);
        let budget = Budget::new(20_000, None);
        let cut = run_within(&spider, "listing", &html, &budget).expect("in time");
        assert!(!cut.items.is_empty() && cut.items.len() < 1_000);
        assert_eq!(cut.items.len() + cut.truncated as usize, 1_000);
        assert_eq!(
            cut.items[..],
            full.items[..cut.items.len()],
            "the first ones are kept whole"
        );
        assert_eq!(full.yields.len(), 1, "a whole page reports what it yields");
        assert!(
            cut.yields.is_empty(),
            "a page cut short must not have its stored items deleted"
        );
    }

    #[test]
    fn a_parse_past_its_deadline_is_abandoned() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        let html = many_quotes(2_000);
        let late = Budget::new(usize::MAX, Some(std::time::Instant::now()));
        assert_eq!(
            run_within(&spider, "listing", &html, &late).map(|e| e.items.len()),
            Err(Overtime)
        );
    }

    fn error(source: &str) -> SpiderError {
        compile("bad.toml", source).expect_err("must be refused")
    }

    #[test]
    fn unknown_key_names_file_rule_and_key() {
        let e = error("name = \"x\"\n[[rule]]\nname = \"list\"\ncolour = \"red\"\n");
        let msg = e.to_string();
        assert!(
            msg.contains("bad.toml") && msg.contains("\"list\"") && msg.contains("colour"),
            "{msg}"
        );
        assert!(msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn bad_selector_names_rule_and_field() {
        let e = error(
            "name = \"x\"\n[[rule]]\nname = \"list\"\n[[rule.extract]]\nkind = \"k\"\nfields.title = { selector = \"h1[\" }\n",
        );
        assert_eq!(
            (e.rule.as_deref(), e.field.as_deref()),
            (Some("list"), Some("field \"title\""))
        );
        assert!(e.to_string().contains("bad CSS selector"), "{e}");
    }

    #[test]
    fn bad_regex_names_rule_and_field() {
        let e = error(
            "name = \"x\"\n[[rule]]\nname = \"list\"\n[[rule.extract]]\nkind = \"k\"\nfields.n = { regex = \"(unclosed\" }\n",
        );
        assert_eq!(
            (e.rule.as_deref(), e.field.as_deref()),
            (Some("list"), Some("field \"n\""))
        );
        assert!(e.to_string().contains("bad regex"), "{e}");
    }

    #[test]
    fn unknown_rule_name_is_refused() {
        let e = error(
            "name = \"x\"\n[[rule]]\nname = \"list\"\n[[rule.follow]]\nselector = \"a\"\nrule = \"detail\"\n",
        );
        assert_eq!(e.rule.as_deref(), Some("list"));
        assert!(
            e.to_string().contains("rule \"detail\" does not exist"),
            "{e}"
        );
    }

    #[test]
    fn other_mistakes_are_refused() {
        assert!(
            error("name = \"x\"\n")
                .to_string()
                .contains("at least one rule")
        );
        let two_starts = "name = \"x\"\n[[rule]]\nname = \"a\"\nstart = true\n[[rule]]\nname = \"b\"\nstart = true\n";
        assert!(error(two_starts).to_string().contains("only one rule"));
        let bad_id =
            "name = \"x\"\n[[rule]]\nname = \"a\"\n[[rule.extract]]\nkind = \"k\"\nid = \"nope\"\n";
        assert!(
            error(bad_id)
                .to_string()
                .contains("no field named \"nope\"")
        );
        let bad_url = "name = \"x\"\nstart_urls = [\"ftp://a\"]\n[[rule]]\nname = \"a\"\n";
        assert!(error(bad_url).to_string().contains("start_urls"));
    }

    #[test]
    fn start_rule_defaults_to_the_first() {
        let spider = compile("quotes.toml", SPIDER).expect("compile");
        assert_eq!(spider.start_rule, "listing");
        assert_eq!(spider.hash, spider_hash(SPIDER));
    }
}
