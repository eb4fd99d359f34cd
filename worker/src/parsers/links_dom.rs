//! The `links-dom` parser: the same output as `links`, from a full scraper DOM.
//!
//! Slower, but it follows the HTML5 tree-building rules exactly; kept as the reference that
//! the streaming parser is tested against, and for pages where the two could differ.

use super::page::{LinkSet, page_item};
use super::{Extracted, Page, ParseError, Parser};
use common::ParserInfo;
use scraper::{Html, Selector};

/// Emits what `links` emits, computed from a DOM.
#[derive(Debug, Clone, Copy)]
pub struct LinksDomParser;

impl Parser for LinksDomParser {
    fn info(&self) -> ParserInfo {
        ParserInfo {
            name: "links-dom".into(),
            description: "same output as links, from a full scraper DOM (slower; the reference)"
                .into(),
        }
    }

    fn parse(&self, page: &Page<'_>) -> Result<Extracted, ParseError> {
        let doc = Html::parse_document(page.html);
        let select = |css: &str| {
            Selector::parse(css).map_err(|e| ParseError::Failed {
                parser: "links-dom".into(),
                message: e.to_string(),
            })
        };
        // Attribute values in scraper's DOM are already entity-decoded; re-encode `&` so the
        // shared LinkSet, which decodes the raw values the streaming scanner sees, gets the same text.
        let raw = |s: &str| s.replace('&', "&amp;");
        let base_href = doc
            .select(&select("base[href]")?)
            .next()
            .and_then(|b| b.value().attr("href"))
            .map(raw);
        let title: String = doc
            .select(&select("title")?)
            .next()
            .map(|t| raw(&t.text().collect::<String>()))
            .unwrap_or_default();
        let description = doc
            .select(&select("meta[name][content]")?)
            .find(|m| {
                m.value()
                    .attr("name")
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case("description"))
            })
            .and_then(|m| m.value().attr("content"))
            .map(raw);
        let mut links = LinkSet::for_page(page, base_href.as_deref());
        for a in doc.select(&select("a[href]")?) {
            page.budget.check_time()?;
            if let Some(h) = a.value().attr("href") {
                links.add(&raw(h));
            }
        }
        let outlinks = links.outlinks;
        let item = page_item(page, &title, description.as_deref(), outlinks);
        Ok(Extracted {
            items: vec![item],
            links: links.finish(page.budget),
            ..Extracted::default()
        })
    }
}
