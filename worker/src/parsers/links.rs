//! The `links` parser: a page item and every link, from a streaming scan with no DOM.
//!
//! Link extraction is the hot path of every crawl; lol_html finds the few elements it needs
//! without building a tree, several times faster than a full parse.

use super::page::{LinkSet, page_item};
use super::{Extracted, Page, ParseError, Parser};
use common::ParserInfo;
use lol_html::{HtmlRewriter, Settings, element, text};

/// Emits one `page` item per page and a follow-up for every `<a href>`.
#[derive(Debug, Clone, Copy)]
pub struct LinksParser;

/// Raw hrefs buffered per page at most before resolution; the rest are only counted.
const MAX_RAW_HREFS: usize = 50_000;

impl Parser for LinksParser {
    fn info(&self) -> ParserInfo {
        ParserInfo {
            name: "links".into(),
            description: "page item (url, title, description, outlinks) and every <a href>; streaming, no DOM".into(),
        }
    }

    fn parse(&self, page: &Page<'_>) -> Result<Extracted, ParseError> {
        let mut base_href: Option<String> = None;
        let mut hrefs: Vec<String> = Vec::new();
        let mut href_count: u64 = 0;
        let mut title = String::new();
        let mut title_done = false;
        let mut description: Option<String> = None;
        {
            let settings = Settings {
                element_content_handlers: vec![
                    element!("base[href]", |el| {
                        if base_href.is_none() {
                            base_href = el.get_attribute("href");
                        }
                        Ok(())
                    }),
                    element!("a[href]", |el| {
                        href_count += 1;
                        if hrefs.len() < MAX_RAW_HREFS
                            && let Some(h) = el.get_attribute("href")
                        {
                            hrefs.push(h);
                        }
                        Ok(())
                    }),
                    element!("meta[name][content]", |el| {
                        if description.is_none()
                            && el
                                .get_attribute("name")
                                .is_some_and(|n| n.trim().eq_ignore_ascii_case("description"))
                        {
                            description = el.get_attribute("content");
                        }
                        Ok(())
                    }),
                    text!("title", |t| {
                        if !title_done && title.len() < 64 * 1024 {
                            title.push_str(t.as_str());
                        }
                        if t.last_in_text_node() {
                            title_done = true;
                        }
                        Ok(())
                    }),
                ],
                // Malformed markup must not abort the scan.
                strict: false,
                ..Settings::new()
            };
            let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
            rewriter
                .write(page.html.as_bytes())
                .map_err(|e| self.error(e))?;
            rewriter.end().map_err(|e| self.error(e))?;
        }
        let mut links = LinkSet::new(
            LinkSet::base_for(page.url, base_href.as_deref()),
            page.max_links,
        );
        for h in &hrefs {
            links.add(h);
        }
        let item = page_item(page, &title, description.as_deref(), href_count);
        Ok(Extracted {
            items: vec![item],
            links: links.into_links(),
            dropped: 0,
        })
    }
}

impl LinksParser {
    fn error(&self, e: impl std::fmt::Display) -> ParseError {
        ParseError {
            parser: "links".into(),
            message: e.to_string(),
        }
    }
}
