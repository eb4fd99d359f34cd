//! Running one spider rule on a page: its items and the links it follows.

use super::compile::{CompiledExtract, CompiledField, CompiledRule, CompiledSpider};
use super::spec::{FieldType, Take};
use crate::parsers::{Extracted, LinkSet, Page};
use common::{Item, Payload, Scalar, Value};
use scraper::{ElementRef, Html, Selector};
use url::Url;

/// Items one page may yield at most.
const MAX_ITEMS_PER_PAGE: usize = 10_000;
/// Longest field value kept, in characters.
const MAX_FIELD_CHARS: usize = 64 * 1024;
/// Values one list field keeps at most.
const MAX_LIST_VALUES: usize = 1_000;

/// Applies rule `rule` of `spider` to `page`.
pub fn run(spider: &CompiledSpider, rule: &CompiledRule, page: &Page<'_>) -> Extracted {
    let doc = Html::parse_document(page.html);
    let mut out = Extracted::default();
    for x in &rule.extract {
        extract_kind(x, &doc, page, &mut out);
    }
    let base_href = Selector::parse("base[href]").ok().and_then(|s| {
        doc.select(&s)
            .next()
            .and_then(|b| b.value().attr("href"))
            .map(|h| h.replace('&', "&amp;"))
    });
    let mut links = LinkSet::new(
        LinkSet::base_for(page.url, base_href.as_deref()),
        page.max_links,
    );
    for f in &rule.follow {
        for el in doc.select(&f.selector) {
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
    out.links = links.into_links();
    out
}

fn extract_kind(x: &CompiledExtract, doc: &Html, page: &Page<'_>, out: &mut Extracted) {
    let scopes: Vec<ElementRef> = match &x.scope {
        Some(sel) => doc.select(sel).collect(),
        None => vec![doc.root_element()],
    };
    for (position, scope) in scopes.into_iter().enumerate() {
        if out.items.len() >= MAX_ITEMS_PER_PAGE {
            return;
        }
        let mut payload = Payload::new();
        let mut complete = true;
        for field in &x.fields {
            match field_value(field, scope, page.url) {
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
        let id =
            x.id.as_ref()
                .and_then(|f| payload.get(f))
                .and_then(id_text)
                .unwrap_or_else(|| format!("{}#{}-{position}", page.url, x.kind));
        out.items.push(Item {
            id,
            url: page.url.to_string(),
            kind: x.kind.clone(),
            task: page.request.task.clone(),
            payload,
        });
    }
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

/// A field's value in `scope`, or `None` when nothing usable was found.
fn field_value(field: &CompiledField, scope: ElementRef<'_>, page_url: &Url) -> Option<Value> {
    let elements: Vec<ElementRef> = match &field.selector {
        Some(sel) => scope.select(sel).collect(),
        None => vec![scope],
    };
    let mut values = Vec::new();
    for el in elements {
        let raw = match &field.attr {
            Some(attr) => match el.value().attr(attr) {
                Some(v) => v.to_owned(),
                None => continue,
            },
            None => match field.take {
                Take::Text => el.text().collect::<String>(),
                Take::Html => el.inner_html(),
            },
        };
        let Some(text) = refine(field, raw) else {
            continue;
        };
        let Some(scalar) = convert(field.kind, &text, page_url) else {
            continue;
        };
        values.push(scalar);
        if !field.all || values.len() >= MAX_LIST_VALUES {
            break;
        }
    }
    if field.all {
        (!values.is_empty()).then_some(Value::List(values))
    } else {
        values.into_iter().next().map(Value::from)
    }
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
