//! The `links` parser: a page item and every link, from a streaming scan with no DOM.
//!
//! Link extraction is the hot path of every crawl. A full DOM costs several times more than
//! it needs to, so this parser reads only start tags and the first `<title>` (see `scan`),
//! and is tested to give what the DOM-based `links-dom` gives.

use super::page::{LinkSet, page_item};
use super::scan::scan;
use super::{Extracted, Page, ParseError, Parser};
use common::ParserInfo;

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
        let mut base_href: Option<&str> = None;
        let mut hrefs: Vec<&str> = Vec::new();
        let mut href_count: u64 = 0;
        let mut title = "";
        let mut description: Option<&str> = None;
        scan(
            page.html,
            |tag| match tag.name() {
                b"a" => {
                    if let Some(h) = tag.attr(b"href") {
                        href_count += 1;
                        if hrefs.len() < MAX_RAW_HREFS {
                            hrefs.push(h);
                        }
                    }
                }
                b"base" if base_href.is_none() => base_href = tag.attr(b"href"),
                b"meta"
                    if description.is_none()
                        && tag
                            .attr(b"name")
                            .is_some_and(|n| n.trim().eq_ignore_ascii_case("description")) =>
                {
                    description = tag.attr(b"content");
                }
                _ => {}
            },
            |text| title = text,
        );
        let mut links = LinkSet::for_page(page, base_href);
        for h in &hrefs {
            page.budget.check_time()?;
            links.add(h);
        }
        let item = page_item(page, title, description, href_count);
        Ok(Extracted {
            items: vec![item],
            links: links.finish(page.budget),
            ..Extracted::default()
        })
    }
}
