//! Running one spider rule on a page: its items and the links it follows.

use super::compile::{CompiledExtract, CompiledField, CompiledRule, CompiledSpider};
use super::spec::{FieldType, Take};
use crate::parsers::{Extracted, LinkSet, Overtime, Page};
use common::{Item, PageYield, Payload, Scalar, Value};
use scraper::{ElementRef, Html, Selector};
use url::Url;

/// Items one page may yield at most.
const MAX_ITEMS_PER_PAGE: usize = 10_000;
/// Longest field value kept, in characters.
const MAX_FIELD_CHARS: usize = 64 * 1024;
/// Values one list field keeps at most.
const MAX_LIST_VALUES: usize = 1_000;

/// Applies rule `rule` of `spider` to `page`: the links it follows first (they keep the crawl
/// going, and take at most half of the page's budget), then the items that fit in the rest.
pub fn run(
    spider: &CompiledSpider,
    rule: &CompiledRule,
    page: &Page<'_>,
) -> Result<Extracted, Overtime> {
    let doc = Html::parse_document(page.html);
    let mut out = Extracted::default();
    let base_href = Selector::parse("base[href]").ok().and_then(|s| {
        doc.select(&s)
            .next()
            .and_then(|b| b.value().attr("href"))
            .map(|h| h.replace('&', "&amp;"))
    });
    let mut links = LinkSet::for_page(page, base_href.as_deref());
    for f in &rule.follow {
        for el in doc.select(&f.selector) {
            page.budget.check_time()?;
            // DOM attribute values are decoded already; LinkSet expects raw ones.
            let Some(raw) = el.value().attr(&f.attr).map(|v| v.replace('&', "&amp;")) else {
                continue;
            };
            let Some(url) = links.resolve(&raw) else {
                continue;
            };
            let target = match &f.rule {
                Some(r) => Some(r.clone()),
                None => spider.rule_for_url(&url).map(|r| r.name.clone()),
            };
            // A link no rule applies to is not followed.
            if let Some(target) = target {
                links.insert(url, Some(target));
            }
        }
    }
    out.links = links.finish(page.budget);
    for x in &rule.extract {
        extract_kind(x, &doc, page, &mut out)?;
    }
    Ok(out)
}

fn extract_kind(
    x: &CompiledExtract,
    doc: &Html,
    page: &Page<'_>,
    out: &mut Extracted,
) -> Result<(), Overtime> {
    let mut scopes: Box<dyn Iterator<Item = ElementRef>> = match &x.scope {
        Some(sel) => Box::new(doc.select(sel)),
        None => Box::new(std::iter::once(doc.root_element())),
    };
    // Position-keyed ids number the items kept that have no id of their own, so a page that
    // yields fewer next time leaves exactly the higher positions stale.
    let mut position = 0u32;
    let report = |out: &mut Extracted, count: u32| {
        out.yields.push(PageYield {
            task: page.request.task.clone(),
            url: page.url.to_string(),
            kind: x.kind.clone(),
            count,
        });
    };
    while let Some(scope) = scopes.next() {
        page.budget.check_time()?;
        if out.items.len() >= MAX_ITEMS_PER_PAGE || out.truncated > 0 {
            // Out of room: count the rest instead of extracting it.
            let mut rest = 1u32;
            for _ in scopes.by_ref() {
                page.budget.check_time()?;
                rest = rest.saturating_add(1);
            }
            out.truncated = out.truncated.saturating_add(rest);
            break;
        }
        let mut payload = Payload::new();
        let mut complete = true;
        for field in &x.fields {
            match field_value(field, scope, page)? {
                Some(v) => {
                    payload.insert(field.name.clone(), v);
                }
                None if field.required => {
                    complete = false;
                    break;
                }
                None => {
                    let empty = if field.all {
                        Value::List(Vec::new())
                    } else {
                        Value::Null
                    };
                    payload.insert(field.name.clone(), field.default.clone().unwrap_or(empty));
                }
            }
        }
        if !complete {
            out.dropped += 1;
            continue;
        }
        let own_id = x.id.as_ref().and_then(|f| payload.get(f)).and_then(id_text);
        let keyed_by_position = own_id.is_none();
        let id = own_id.unwrap_or_else(|| format!("{}#{}-{position}", page.url, x.kind));
        let item = Item {
            id,
            url: page.url.to_string(),
            kind: x.kind.clone(),
            task: page.request.task.clone(),
            payload,
        };
        if !page.budget.take(item.approx_bytes()) {
            out.truncated = out.truncated.saturating_add(1);
            continue;
        }
        if keyed_by_position {
            position += 1;
        }
        out.items.push(item);
    }
    // A kind cut short says nothing of the items it did not reach: nothing may be deleted.
    if out.truncated == 0 {
        report(out, position);
    }
    Ok(())
}

/// The text of a value used as an id.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Text(s) => Some(s.clone()),
        Value::List(items) => Some(items.iter().map(scalar_text).collect::<Vec<_>>().join(",")),
        other => Some(other.to_json().to_string()),
    }
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Text(t) => t.clone(),
        other => other.to_json().to_string(),
    }
}

/// A field's value in `scope`, or `None` when nothing usable was found. Matches are taken
/// one at a time and no more than the field keeps, however many the scope holds.
fn field_value(
    field: &CompiledField,
    scope: ElementRef<'_>,
    page: &Page<'_>,
) -> Result<Option<Value>, Overtime> {
    let elements: Box<dyn Iterator<Item = ElementRef>> = match &field.selector {
        Some(sel) => Box::new(scope.select(sel)),
        None => Box::new(std::iter::once(scope)),
    };
    let mut values = Vec::new();
    for el in elements {
        page.budget.check_time()?;
        let raw = match &field.attr {
            Some(attr) => match el.value().attr(attr) {
                Some(v) => v.to_owned(),
                None => continue,
            },
            None => match field.take {
                Take::Text => bounded_text(el),
                Take::Html => bounded_inner_html(el),
            },
        };
        let Some(text) = refine(field, raw) else {
            continue;
        };
        let Some(scalar) = convert(field.kind, &text, page.url) else {
            continue;
        };
        values.push(scalar);
        if !field.all || values.len() >= MAX_LIST_VALUES {
            break;
        }
    }
    Ok(if field.all {
        (!values.is_empty()).then_some(Value::List(values))
    } else {
        values.into_iter().next().map(Value::from)
    })
}

/// Raw text read from one element at most, before trimming: enough for
/// [`MAX_FIELD_CHARS`] characters after white space is collapsed, in all but absurd cases.
const MAX_RAW_FIELD_BYTES: usize = 4 * 4 * MAX_FIELD_CHARS;

/// The element's text, read no further than [`MAX_RAW_FIELD_BYTES`].
fn bounded_text(el: ElementRef<'_>) -> String {
    let mut text = String::new();
    for piece in el.text() {
        let room = MAX_RAW_FIELD_BYTES - text.len();
        if piece.len() >= room {
            text.push_str(&piece[..floor_char_boundary(piece, room)]);
            break;
        }
        text.push_str(piece);
    }
    text
}

/// The element's inner HTML, serialised no further than [`MAX_RAW_FIELD_BYTES`].
fn bounded_inner_html(el: ElementRef<'_>) -> String {
    let mut out = Capped(Vec::new());
    let opts = html5ever::serialize::SerializeOpts {
        scripting_enabled: false,
        traversal_scope: html5ever::serialize::TraversalScope::ChildrenOnly(None),
        create_missing_parent: false,
    };
    // Stopping early is the point: the error only says the cap was reached.
    let _ = html5ever::serialize::serialize(&mut out, &el, opts);
    let bytes = out.0;
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

/// A writer that takes [`MAX_RAW_FIELD_BYTES`] and then refuses more.
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_RAW_FIELD_BYTES - self.0.len();
        if room == 0 {
            return Err(std::io::Error::other("field is long enough"));
        }
        let n = buf.len().min(room);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The largest index at most `i` that is on a character boundary of `s`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(0)
}

/// Trims and applies the field's regex; an empty or unmatched value counts as missing.
fn refine(field: &CompiledField, raw: String) -> Option<String> {
    let mut text = if field.trim {
        raw.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        raw
    };
    if let Some(re) = &field.regex {
        let caps = re.captures(&text)?;
        text = caps.get(1).or_else(|| caps.get(0))?.as_str().to_owned();
        if field.trim {
            text = text.trim().to_owned();
        }
    }
    if text.chars().count() > MAX_FIELD_CHARS {
        text = text.chars().take(MAX_FIELD_CHARS).collect();
    }
    (!text.is_empty()).then_some(text)
}

/// Converts text to the field's type; text that does not convert counts as missing.
fn convert(kind: FieldType, text: &str, page_url: &Url) -> Option<Scalar> {
    let digits = || {
        text.chars()
            .filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}'))
            .collect::<String>()
    };
    match kind {
        FieldType::String => Some(Scalar::Text(text.to_owned())),
        FieldType::Integer => digits().parse().ok().map(Scalar::Int),
        FieldType::Float => digits()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Scalar::Float),
        FieldType::Url => common::canonicalize(text, Some(page_url))
            .ok()
            .map(|u| Scalar::Text(u.to_string())),
    }
}
