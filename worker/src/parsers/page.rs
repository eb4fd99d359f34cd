//! What the link parsers share: resolving and bounding links, and the `page` item.

use super::{Budget, Page};
use common::{FollowUp, Item, Payload, Value, canonicalize};
use std::collections::HashSet;
use url::Url;

/// Longest title kept, in characters; a hostile page cannot grow an item without bound.
const MAX_TITLE_CHARS: usize = 1_000;
/// Longest description kept, in characters.
const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Longest link (or `<base href>`) kept, in bytes; the engine applies its own, lower limit.
pub const MAX_LINK_BYTES: usize = 8 * 1024;
/// Most bytes of links returned for one page, so a hostile page cannot blow up the answer;
/// links also take at most half of the page's result budget, leaving the rest for items.
pub const MAX_LINKS_TOTAL_BYTES: usize = 4 * 1024 * 1024;

/// The distinct crawlable links of a page, resolved and canonical, in document order.
#[derive(Debug)]
pub struct LinkSet {
    base: Url,
    seen: HashSet<String>,
    links: Vec<FollowUp>,
    max: usize,
    max_bytes: usize,
    bytes: usize,
    /// Every `<a href>` seen, kept or not.
    pub outlinks: u64,
}

impl LinkSet {
    /// An empty set resolving against `base` and keeping at most `max` links.
    pub fn new(base: Url, max: usize) -> Self {
        LinkSet {
            base,
            seen: HashSet::new(),
            links: Vec::new(),
            max,
            max_bytes: MAX_LINKS_TOTAL_BYTES,
            bytes: 0,
            outlinks: 0,
        }
    }

    /// An empty set for `page`, resolving against its `<base href>` (when it has a usable
    /// one) or its URL, within the page's link count and half its result budget.
    pub fn for_page(page: &Page<'_>, base_href: Option<&str>) -> Self {
        LinkSet {
            max_bytes: MAX_LINKS_TOTAL_BYTES.min(page.budget.max_bytes() / 2),
            ..LinkSet::new(LinkSet::base_for(page.url, base_href), page.max_links)
        }
    }

    /// The base for a page: its `<base href>` when that resolves, otherwise its final URL.
    pub fn base_for(page_url: &Url, base_href: Option<&str>) -> Url {
        base_href
            .filter(|h| h.len() <= MAX_LINK_BYTES)
            .map(|h| html_escape::decode_html_entities(h.trim()))
            .and_then(|h| page_url.join(&h).ok())
            .unwrap_or_else(|| page_url.clone())
    }

    /// Counts an `<a href>` and keeps it when it resolves to a new http(s) URL.
    pub fn add(&mut self, raw_href: &str) {
        self.outlinks += 1;
        if let Some(url) = self.resolve(raw_href) {
            self.insert(url, None);
        }
    }

    /// Resolves a raw attribute value (entities not yet decoded) to a canonical http(s) URL
    /// within the length limit, or `None`.
    pub fn resolve(&self, raw_href: &str) -> Option<String> {
        if self.is_full() || raw_href.len() > MAX_LINK_BYTES {
            return None;
        }
        let href = html_escape::decode_html_entities(raw_href.trim());
        if href.is_empty() || href.starts_with('#') {
            return None;
        }
        let url = String::from(canonicalize(&href, Some(&self.base)).ok()?);
        (url.len() <= MAX_LINK_BYTES).then_some(url)
    }

    /// Keeps a resolved link, with the parser (or spider rule) for its page, unless it is
    /// already kept or the set is full.
    pub fn insert(&mut self, url: String, parser: Option<String>) {
        if !self.is_full() && self.seen.insert(url.clone()) {
            self.bytes += link_bytes(&url);
            self.links.push(FollowUp { url, parser });
        }
    }

    fn is_full(&self) -> bool {
        self.links.len() >= self.max || self.bytes >= self.max_bytes
    }

    /// The kept links, their bytes spent from `budget` (they always fit: links take at most
    /// half of it).
    pub fn finish(self, budget: &Budget) -> Vec<FollowUp> {
        let fits = budget.take(self.bytes);
        debug_assert!(fits, "links are bounded by half the budget");
        self.links
    }
}

/// What one link weighs in a page's result.
fn link_bytes(url: &str) -> usize {
    url.len() + 16
}

/// Collapses runs of white space to one space and trims, keeping at most `max` characters.
pub fn clean_text(raw: &str, max: usize) -> String {
    let decoded = html_escape::decode_html_entities(raw);
    decoded
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// The `page` item the link parsers emit: url, title, meta description and outlink count.
pub fn page_item(page: &Page<'_>, title: &str, description: Option<&str>, outlinks: u64) -> Item {
    let mut payload = Payload::new();
    payload.insert(
        "title".into(),
        Value::Text(clean_text(title, MAX_TITLE_CHARS)),
    );
    payload.insert(
        "description".into(),
        description.map_or(Value::Null, |d| {
            Value::Text(clean_text(d, MAX_DESCRIPTION_CHARS))
        }),
    );
    payload.insert(
        "outlinks".into(),
        Value::Int(outlinks.min(i64::MAX as u64) as i64),
    );
    Item {
        id: page.url.to_string(),
        url: page.url.to_string(),
        kind: "page".into(),
        task: page.request.task.clone(),
        payload,
    }
}
