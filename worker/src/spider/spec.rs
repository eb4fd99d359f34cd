//! The spider file as written: a TOML document, read strictly (an unknown key is an error).
//! `docs/spider-files.md` documents every key.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole spider file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiderSpec {
    /// The spider's name; items are stored under it as the task unless `--task` is given.
    pub name: String,
    /// Where the crawl starts (the start rule applies to them); `--seed` replaces them.
    #[serde(default)]
    pub start_urls: Vec<String>,
    /// Domains to stay within (subdomains included); default: the start URLs' hosts.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Crawl limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Politeness settings for this site.
    #[serde(default)]
    pub politeness: PolitenessSpec,
    /// The rules, in order.
    #[serde(rename = "rule", default)]
    pub rules: Vec<RuleSpec>,
    /// When the task runs again (read by the engine).
    #[serde(default)]
    pub schedule: Option<ScheduleSection>,
}

/// `[schedule]`: a cron pattern (seconds optional), its time zone, and what a tick does while
/// the previous run is still going. The engine checks and applies it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// `minute hour day-of-month month day-of-week`, with an optional leading seconds field.
    pub cron: String,
    /// An IANA time zone (default UTC).
    pub timezone: Option<String>,
    /// `skip` (default) or `replace`.
    pub overlap: Option<String>,
}

/// `[limits]`: how far the crawl goes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Deepest link distance from a start URL.
    pub max_depth: Option<u32>,
    /// Pages fetched at most.
    pub max_pages: Option<u64>,
    /// Seconds a run of the task may take before it is stopped (status `timeout`).
    pub timeout_secs: Option<u64>,
}

/// `[politeness]`: per-host pace for this site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolitenessSpec {
    /// Requests in flight to one host at most.
    pub per_host: Option<usize>,
    /// Least milliseconds between two requests to one host.
    pub delay_ms: Option<u64>,
}

/// `[[rule]]`: what to do with the pages one rule applies to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The rule's name, used by `follow.rule`.
    pub name: String,
    /// A regex a page URL must match for the rule to apply to links followed without a rule.
    #[serde(rename = "match")]
    pub url_match: Option<String>,
    /// Whether this is the rule for the start URLs (default: the first rule).
    #[serde(default)]
    pub start: bool,
    /// Links to follow.
    #[serde(default)]
    pub follow: Vec<FollowSpec>,
    /// Items to extract.
    #[serde(default)]
    pub extract: Vec<ExtractSpec>,
    /// Whether this rule's pages are rendered in a browser first (a worker with `--render`).
    #[serde(default)]
    pub render: bool,
    /// A rendered page waits for an element matching this CSS selector.
    pub wait_for: Option<String>,
    /// A rendered page waits for `load` (the default) or `networkidle`.
    pub wait: Option<String>,
    /// The longest wait for `wait_for`, in ms (default: the request's deadline).
    pub wait_ms: Option<u64>,
    /// Times a rendered page is scrolled to the bottom, for lazy lists (at most 20).
    pub scroll: Option<u32>,
    /// `all` downloads images, fonts and media too; by default they are not.
    pub resources: Option<String>,
}

/// `[[rule.follow]]`: a set of links to follow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowSpec {
    /// CSS selector of the elements holding the links.
    pub selector: String,
    /// Attribute holding the URL (default `href`).
    #[serde(default = "default_href")]
    pub attr: String,
    /// Rule for the linked pages (default: the first rule whose `match` fits the URL).
    pub rule: Option<String>,
}

fn default_href() -> String {
    "href".into()
}

/// `[[rule.extract]]`: items of one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractSpec {
    /// The items' kind.
    pub kind: String,
    /// CSS selector scoping one item each; without it the page is one item.
    pub scope: Option<String>,
    /// The field whose value is the item's id (default: page URL, kind and position).
    pub id: Option<String>,
    /// The item's fields, by name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

/// What to take from an element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Take {
    /// Its text, descendants included.
    #[default]
    Text,
    /// Its inner HTML.
    Html,
}

/// The type a field's text is converted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Text as found.
    #[default]
    String,
    /// A whole number (`1,234` and `1 234` are accepted).
    Integer,
    /// A number with a fraction.
    Float,
    /// A URL, resolved against the page.
    Url,
}

/// One field of an item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// CSS selector inside the item's scope (default: the scope element itself).
    pub selector: Option<String>,
    /// Text or inner HTML (ignored when `attr` is set).
    #[serde(default)]
    pub take: Take,
    /// An attribute to take instead of the text.
    pub attr: Option<String>,
    /// Take every match as a list (default: the first match).
    #[serde(default)]
    pub all: bool,
    /// Collapse white space and trim (default true).
    #[serde(default = "default_true")]
    pub trim: bool,
    /// A regex applied to the value: its first capture group (or whole match) is kept, and a
    /// value that does not match counts as missing.
    pub regex: Option<String>,
    /// The value's type.
    #[serde(rename = "type", default)]
    pub kind: FieldType,
    /// The value when nothing is found.
    pub default: Option<toml::Value>,
    /// Drop the item (and count it) when the field is missing.
    #[serde(default)]
    pub required: bool,
}

fn default_true() -> bool {
    true
}
