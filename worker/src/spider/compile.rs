//! Checking a spider file and compiling its selectors and regexes, once, before any page.

use super::spec::{FieldType, SpiderSpec, Take};
use common::{Scalar, Value};
use regex::Regex;
use scraper::Selector;
use std::collections::HashSet;
use std::fmt;

/// What is wrong with a spider file, and where: the file, the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpiderError {
    /// The file (or the name it was given as).
    pub file: String,
    /// The rule the problem is in, when it is in one.
    pub rule: Option<String>,
    /// The key or field the problem is in, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpiderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spider {}", self.file)?;
        if let Some(rule) = &self.rule {
            write!(f, ", rule {rule:?}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A link-following instruction, compiled.
#[derive(Debug)]
pub struct CompiledFollow {
    pub(crate) selector: Selector,
    pub(crate) attr: String,
    pub(crate) rule: Option<String>,
}

/// A field, compiled.
#[derive(Debug)]
pub struct CompiledField {
    pub(crate) name: String,
    pub(crate) selector: Option<Selector>,
    pub(crate) take: Take,
    pub(crate) attr: Option<String>,
    pub(crate) all: bool,
    pub(crate) trim: bool,
    pub(crate) regex: Option<Regex>,
    pub(crate) kind: FieldType,
    pub(crate) default: Option<Value>,
    pub(crate) required: bool,
}

/// An item kind to extract, compiled.
#[derive(Debug)]
pub struct CompiledExtract {
    pub(crate) kind: String,
    pub(crate) scope: Option<Selector>,
    pub(crate) id: Option<String>,
    pub(crate) fields: Vec<CompiledField>,
}

/// A rule, compiled.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's name.
    pub name: String,
    /// How its pages are rendered, when they are.
    pub render: Option<common::RenderRequest>,
    pub(crate) url_match: Option<Regex>,
    pub(crate) follow: Vec<CompiledFollow>,
    pub(crate) extract: Vec<CompiledExtract>,
}

/// A checked spider, ready to run on pages.
#[derive(Debug)]
pub struct CompiledSpider {
    /// The file as written.
    pub spec: SpiderSpec,
    /// The content hash of the source: how requests name the spider.
    pub hash: u64,
    /// The rule for the start URLs.
    pub start_rule: String,
    pub(crate) rules: Vec<CompiledRule>,
}

impl CompiledSpider {
    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The first rule whose `match` regex fits `url`.
    pub fn rule_for_url(&self, url: &str) -> Option<&CompiledRule> {
        self.rules
            .iter()
            .find(|r| r.url_match.as_ref().is_some_and(|re| re.is_match(url)))
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }
}

/// The content hash naming a spider source on the wire.
pub fn spider_hash(source: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(source.as_bytes())
}

/// Parses and checks `source`, read from `file`, and compiles it.
pub fn compile(file: &str, source: &str) -> Result<CompiledSpider, SpiderError> {
    let spec: SpiderSpec = toml::from_str(source).map_err(|e| syntax_error(file, source, &e))?;
    let err = |rule: Option<&str>, field: Option<String>, message: String| SpiderError {
        file: file.into(),
        rule: rule.map(str::to_owned),
        field,
        message,
    };
    if spec.rules.is_empty() {
        return Err(err(
            None,
            None,
            "no [[rule]]: a spider needs at least one rule".into(),
        ));
    }
    let mut names = HashSet::new();
    for r in &spec.rules {
        if !names.insert(r.name.as_str()) {
            return Err(err(
                Some(&r.name),
                Some("name".into()),
                "two rules have this name".into(),
            ));
        }
    }
    let starts: Vec<&str> = spec
        .rules
        .iter()
        .filter(|r| r.start)
        .map(|r| r.name.as_str())
        .collect();
    let start_rule = match starts.as_slice() {
        [] => spec.rules[0].name.clone(),
        [one] => (*one).to_owned(),
        many => {
            return Err(err(
                None,
                Some("start".into()),
                format!("only one rule can be the start rule, not {many:?}"),
            ));
        }
    };
    for url in &spec.start_urls {
        common::canonicalize(url, None)
            .map_err(|e| err(None, Some("start_urls".into()), format!("{url:?}: {e}")))?;
    }

    let mut rules = Vec::new();
    for r in &spec.rules {
        let rule = Some(r.name.as_str());
        let url_match = r
            .url_match
            .as_deref()
            .map(|re| {
                Regex::new(re)
                    .map_err(|e| err(rule, Some("match".into()), one_line(&e.to_string())))
            })
            .transpose()?;
        let mut follow = Vec::new();
        for (i, f) in r.follow.iter().enumerate() {
            let at = || Some(format!("follow #{}", i + 1));
            if let Some(target) = &f.rule
                && !names.contains(target.as_str())
            {
                return Err(err(rule, at(), format!("rule {target:?} does not exist")));
            }
            follow.push(CompiledFollow {
                selector: selector(&f.selector).map_err(|m| err(rule, at(), m.to_string()))?,
                attr: f.attr.clone(),
                rule: f.rule.clone(),
            });
        }
        let mut extract = Vec::new();
        for x in &r.extract {
            let scope = x.scope.as_deref().map(selector).transpose().map_err(|m| {
                err(
                    rule,
                    Some(format!("extract {:?} scope", x.kind)),
                    m.to_string(),
                )
            })?;
            if let Some(id) = &x.id
                && !x.fields.contains_key(id)
            {
                return Err(err(
                    rule,
                    Some(format!("extract {:?} id", x.kind)),
                    format!("no field named {id:?}"),
                ));
            }
            let mut fields = Vec::new();
            for (name, fs) in &x.fields {
                let at = || Some(format!("field {name:?}"));
                fields.push(CompiledField {
                    name: name.clone(),
                    selector: fs
                        .selector
                        .as_deref()
                        .map(selector)
                        .transpose()
                        .map_err(|m| err(rule, at(), m.to_string()))?,
                    take: fs.take,
                    attr: fs.attr.clone(),
                    all: fs.all,
                    trim: fs.trim,
                    regex: fs
                        .regex
                        .as_deref()
                        .map(|re| {
                            Regex::new(re).map_err(|e| {
                                err(
                                    rule,
                                    at(),
                                    format!("bad regex: {}", one_line(&e.to_string())),
                                )
                            })
                        })
                        .transpose()?,
                    kind: fs.kind,
                    default: fs.default.as_ref().map(toml_value),
                    required: fs.required,
                });
            }
            extract.push(CompiledExtract {
                kind: x.kind.clone(),
                scope,
                id: x.id.clone(),
                fields,
            });
        }
        let render =
            render_of(r).map_err(|(field, message)| err(rule, Some(field.into()), message))?;
        rules.push(CompiledRule {
            name: r.name.clone(),
            render,
            url_match,
            follow,
            extract,
        });
    }
    Ok(CompiledSpider {
        hash: spider_hash(source),
        start_rule,
        rules,
        spec,
    })
}

/// The most scrolls a rule may ask for.
const MAX_SCROLL: u32 = 20;
/// The longest `wait_ms` a rule may give: ten minutes.
const MAX_WAIT_MS: u64 = 600_000;

/// How a rule's pages are rendered, checked: `None` when it does not render; the field and
/// the message when its render keys are wrong.
fn render_of(
    r: &super::spec::RuleSpec,
) -> Result<Option<common::RenderRequest>, (&'static str, String)> {
    if !r.render {
        let stray = [
            ("wait_for", r.wait_for.is_some()),
            ("wait", r.wait.is_some()),
            ("wait_ms", r.wait_ms.is_some()),
            ("scroll", r.scroll.is_some()),
            ("resources", r.resources.is_some()),
        ];
        if let Some((field, _)) = stray.iter().find(|(_, set)| *set) {
            return Err((field, format!("{field} needs render = true")));
        }
        return Ok(None);
    }
    let wait = match (&r.wait_for, r.wait.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(("wait", "give wait_for or wait, not both".into()));
        }
        (Some(css), None) => {
            selector(css).map_err(|e| ("wait_for", e.to_string()))?;
            common::RenderWait::Selector(css.clone())
        }
        (None, None | Some("load")) => common::RenderWait::Load,
        (None, Some("networkidle")) => common::RenderWait::NetworkIdle,
        (None, Some(other)) => {
            return Err((
                "wait",
                format!("{other:?}: use \"load\" or \"networkidle\""),
            ));
        }
    };
    let scroll = r.scroll.unwrap_or(0);
    if scroll > MAX_SCROLL {
        return Err(("scroll", format!("{scroll}: at most {MAX_SCROLL}")));
    }
    let wait_ms = r.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(("wait_ms", format!("{wait_ms}: at most {MAX_WAIT_MS}")));
    }
    let all_resources = match r.resources.as_deref() {
        None | Some("essential") => false,
        Some("all") => true,
        Some(other) => {
            return Err((
                "resources",
                format!("{other:?}: use \"all\" or \"essential\""),
            ));
        }
    };
    Ok(Some(common::RenderRequest {
        wait,
        wait_ms,
        scroll,
        all_resources,
    }))
}

/// A CSS selector that does not parse, with why.
#[derive(Debug, thiserror::Error)]
#[error("bad CSS selector {css:?}: {why}")]
struct BadSelector {
    css: String,
    why: String,
}

fn selector(css: &str) -> Result<Selector, BadSelector> {
    Selector::parse(css).map_err(|e| BadSelector {
        css: css.to_owned(),
        why: e.to_string(),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns a TOML error into one line naming the line, the rule it is in, and the key.
fn syntax_error(file: &str, source: &str, e: &toml::de::Error) -> SpiderError {
    let line = e
        .span()
        .map(|span| source[..span.start.min(source.len())].matches('\n').count() + 1);
    let rule = line.and_then(|l| rule_at_line(source, l));
    let key = e
        .span()
        .map(|span| source[span.clone()].trim().to_owned())
        .filter(|k| !k.is_empty() && k.len() < 80);
    let mut message = one_line(e.message());
    if let Some(l) = line {
        message = format!("line {l}: {message}");
    }
    SpiderError {
        file: file.into(),
        rule,
        field: key.map(|k| format!("key {k:?}")),
        message,
    }
}

/// The name of the `[[rule]]` that line `line` (1-based) belongs to.
fn rule_at_line(source: &str, line: usize) -> Option<String> {
    let mut current = None;
    let mut in_rule_table = false;
    let mut in_rule = false;
    for text in source.lines().take(line) {
        let t = text.trim();
        if t.starts_with('[') {
            in_rule_table = t == "[[rule]]";
            in_rule = in_rule_table || t.starts_with("[[rule.") || t.starts_with("[rule.");
            if in_rule_table {
                current = None;
            }
        } else if in_rule_table
            && let Some(value) = t
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix('='))
        {
            current = Some(value.trim().trim_matches('"').to_owned());
        }
    }
    if in_rule { current } else { None }
}

/// A TOML default value as a field value.
fn toml_value(v: &toml::Value) -> Value {
    match v {
        toml::Value::Array(items) => Value::List(items.iter().map(toml_scalar).collect()),
        other => Value::from(toml_scalar(other)),
    }
}

fn toml_scalar(v: &toml::Value) -> Scalar {
    match v {
        toml::Value::String(s) => Scalar::Text(s.clone()),
        toml::Value::Integer(i) => Scalar::Int(*i),
        toml::Value::Float(f) => Scalar::Float(*f),
        toml::Value::Boolean(b) => Scalar::Bool(*b),
        other => Scalar::Text(other.to_string()),
    }
}
