//! What a fetched robots.txt means for a host (RFC 9309).

use common::RobotsFile;
use std::sync::Arc;
use std::time::Duration;
use texting_robots::Robot;
use url::Url;

/// The rules of one host, once its robots.txt is known.
#[derive(Clone)]
pub enum Rules {
    /// Everything may be fetched (no robots.txt, a 4xx, or rules that do not parse).
    AllowAll,
    /// Fetch only what the parsed file allows.
    Parsed(Arc<Robot>),
    /// The file could not be had (5xx or unreachable, retries spent): fetch nothing.
    DisallowAll,
}

impl Rules {
    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &str) -> bool {
        match self {
            Rules::AllowAll => true,
            Rules::Parsed(robot) => robot.allowed(url),
            Rules::DisallowAll => false,
        }
    }
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rules::AllowAll => "AllowAll",
            Rules::Parsed(_) => "Parsed",
            Rules::DisallowAll => "DisallowAll",
        })
    }
}

/// How a robots.txt fetch turned out.
#[derive(Debug)]
pub enum Verdict {
    /// The rules are known, with the Crawl-delay the file asks of us.
    Known(Rules, Option<Duration>),
    /// A server error: try again later, and fetch nothing from the host meanwhile.
    TryLater,
}

/// Allow and Disallow lines kept from the groups of one robots.txt that apply to us. Each such
/// rule may be a regular expression every URL of the host is matched against, so a hostile
/// file of many thousands would make each page cost milliseconds.
pub const MAX_RULES: usize = 2_000;

/// What a robots.txt line is, read as texting_robots reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind<'a> {
    UserAgent(&'a [u8]),
    Rule,
    /// A line that ends a run of User-agent lines without being a rule (Crawl-delay).
    Other,
    /// A line the parser drops before grouping (blank, comment, Sitemap, unknown).
    Ignored,
}

/// The value of `line` when it starts (after blanks, ignoring case) with one of `keys`
/// followed by a colon or a blank, up to a `#` comment and trimmed: texting_robots' syntax.
fn value_of<'a>(line: &'a [u8], keys: &[&str]) -> Option<&'a [u8]> {
    let line = line.trim_ascii_start();
    let key = keys
        .iter()
        .find(|k| line.len() >= k.len() && line[..k.len()].eq_ignore_ascii_case(k.as_bytes()))?;
    let rest = &line[key.len()..];
    let after = rest.trim_ascii_start();
    let value = if let Some(v) = after.strip_prefix(b":") {
        v
    } else if after.len() < rest.len() {
        after
    } else {
        return None;
    };
    let value = value.split(|b| *b == b'#').next().unwrap_or(b"");
    Some(value.trim_ascii())
}

fn line_kind(line: &[u8]) -> LineKind<'_> {
    const AGENT: &[&str] = &["user-agent", "user agent", "useragent"];
    const RULE: &[&str] = &[
        "allow",
        "disallow",
        "dissallow",
        "dissalow",
        "disalow",
        "diasllow",
        "disallaw",
    ];
    const DELAY: &[&str] = &["crawl-delay", "crawl delay", "crawldelay"];
    if let Some(agent) = value_of(line, AGENT) {
        LineKind::UserAgent(agent)
    } else if value_of(line, RULE).is_some() {
        LineKind::Rule
    } else if value_of(line, DELAY).is_some() {
        LineKind::Other
    } else {
        LineKind::Ignored
    }
}

/// The lines of a robots.txt as its parser splits them: at CR, LF and NUL, after a BOM.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    body.split(|b| matches!(b, b'\n' | b'\r' | 0))
}

/// Which lines of `body` are rules of the groups that apply to `agent` (its own groups when
/// the file names it, else the `*` groups; every rule when there is no User-agent line), in
/// line order, as texting_robots groups them.
fn applicable(body: &[u8], agent: &str) -> Vec<bool> {
    let kinds: Vec<LineKind> = lines(body).map(line_kind).collect();
    let names = |ua: &[u8]| ua.eq_ignore_ascii_case(agent.as_bytes());
    let any_agent = kinds.iter().any(|k| matches!(k, LineKind::UserAgent(_)));
    let ours_named = kinds
        .iter()
        .any(|k| matches!(k, LineKind::UserAgent(ua) if names(ua)));
    let applies = |ua: &[u8]| if ours_named { names(ua) } else { ua == b"*" };
    let mut capturing = !any_agent;
    let mut in_agents = false;
    kinds
        .iter()
        .map(|kind| match kind {
            LineKind::UserAgent(ua) => {
                if !in_agents {
                    capturing = false;
                }
                in_agents = true;
                capturing |= applies(ua);
                false
            }
            LineKind::Rule => {
                in_agents = false;
                capturing
            }
            LineKind::Other => {
                in_agents = false;
                false
            }
            LineKind::Ignored => false,
        })
        .collect()
}

/// `body` as it is, unless more than `max` of its rules apply to `agent`: then without the
/// applicable rules past the first `max`; and how many were dropped. Rules of other groups
/// are never touched (the parser does not compile them for us).
pub fn keep_rules<'a>(
    body: &'a [u8],
    agent: &str,
    max: usize,
) -> (std::borrow::Cow<'a, [u8]>, usize) {
    let ours = applicable(body, agent);
    let count = ours.iter().filter(|o| **o).count();
    if count <= max {
        return (std::borrow::Cow::Borrowed(body), 0);
    }
    let mut kept = Vec::with_capacity(body.len());
    let mut seen = 0;
    for (line, ours) in lines(body).zip(ours) {
        if ours {
            seen += 1;
            if seen > max {
                continue;
            }
        }
        kept.extend_from_slice(line);
        kept.push(b'\n');
    }
    (std::borrow::Cow::Owned(kept), count - max)
}

/// Interprets a fetched robots.txt for the User-Agent token `agent`, keeping at most
/// [`MAX_RULES`] of the rules that apply; also says how many were dropped. CPU work on a
/// hostile file: call it off the crawl loop.
pub fn read(file: &RobotsFile, agent: &str) -> (Verdict, usize) {
    match file.status {
        200..=299 => {
            let (body, dropped) = keep_rules(&file.body, agent, MAX_RULES);
            let verdict = match Robot::new(agent, &body) {
                Ok(robot) => {
                    let delay = robot
                        .delay
                        .filter(|d| d.is_finite() && *d > 0.0)
                        .map(|d| Duration::from_secs_f32(d.min(86_400.0)));
                    Verdict::Known(Rules::Parsed(Arc::new(robot)), delay)
                }
                Err(_) => Verdict::Known(Rules::AllowAll, None),
            };
            (verdict, dropped)
        }
        // Redirects left after the worker followed five, and client errors: no rules.
        300..=499 => (Verdict::Known(Rules::AllowAll, None), 0),
        _ => (Verdict::TryLater, 0),
    }
}

/// [`read`], without the count of rules dropped.
pub fn interpret(file: &RobotsFile, agent: &str) -> Verdict {
    read(file, agent).0
}

/// The robots.txt URL of the host of `url`.
pub fn robots_url(url: &Url) -> String {
    let mut robots = url.clone();
    robots.set_path("/robots.txt");
    robots.set_query(None);
    robots.set_fragment(None);
    robots.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(status: u16, body: &str) -> RobotsFile {
        RobotsFile {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn disallow_and_crawl_delay_are_honoured() {
        let body = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.5\n";
        let Verdict::Known(rules, delay) = interpret(&file(200, body), "Spinneret") else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/private/x.html"));
        assert!(rules.allows("http://a.test/public.html"));
        assert_eq!(delay, Some(Duration::from_millis(500)));
    }

    #[test]
    fn agent_specific_group_wins() {
        let body = "User-agent: Spinneret\nDisallow: /\n\nUser-agent: *\nAllow: /\n";
        let Verdict::Known(rules, _) = interpret(&file(200, body), "Spinneret") else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/page"));
        let Verdict::Known(other, _) = interpret(&file(200, body), "OtherBot") else {
            panic!("known")
        };
        assert!(other.allows("http://a.test/page"));
    }

    #[test]
    fn status_decides_when_there_are_no_rules() {
        assert!(matches!(
            interpret(&file(404, ""), "S"),
            Verdict::Known(Rules::AllowAll, None)
        ));
        assert!(matches!(
            interpret(&file(403, ""), "S"),
            Verdict::Known(Rules::AllowAll, None)
        ));
        assert!(matches!(interpret(&file(503, ""), "S"), Verdict::TryLater));
        assert!(matches!(interpret(&file(500, ""), "S"), Verdict::TryLater));
    }

    #[test]
    fn only_the_first_rules_that_apply_to_us_are_kept() {
        let mut body = String::from("User-agent: *\nDisallow: /first\n");
        for i in 0..5_000 {
            body.push_str(&format!("Disallow: /*{i}*z$\n  allow: /x{i}\n"));
        }
        let (verdict, dropped) = read(&file(200, &body), "S");
        assert_eq!(dropped, 10_001 - MAX_RULES);
        let Verdict::Known(rules, _) = verdict else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/first"));
    }

    #[test]
    fn other_agents_rules_do_not_crowd_out_ours() {
        let mut body = String::from("User-agent: OtherBot\nUser-agent: ThirdBot\n");
        for i in 0..5_000 {
            body.push_str(&format!("Disallow: /other{i}\n"));
        }
        body.push_str("\nUser-agent: Spinneret\nDisallow: /ours\n");
        body.push_str("\nUser-agent: *\nDisallow: /everyone\n");
        let (verdict, dropped) = read(&file(200, &body), "Spinneret");
        assert_eq!(dropped, 0);
        let Verdict::Known(rules, _) = verdict else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/ours"));
        assert!(rules.allows("http://a.test/other1"));
        assert!(
            rules.allows("http://a.test/everyone"),
            "our own group wins over *"
        );
        let Verdict::Known(rules, _) = interpret(&file(200, &body), "Unnamed") else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/everyone"));
        assert!(rules.allows("http://a.test/ours"));
        let (same, none) = keep_rules(b"Disallow: /a\n", "S", MAX_RULES);
        assert_eq!((same.as_ref(), none), (b"Disallow: /a\n".as_slice(), 0));
    }

    #[test]
    fn groups_are_read_as_the_parser_reads_them() {
        // A comment after the agent, a blank line and a Sitemap inside a run of agents,
        // other spellings, a BOM, CR line ends and a rule written with a space.
        let body = "\u{feff}User-agent: * # every bot\r\nDisallow: /private\r\n\r\n\
                    User-agent: BadBot\nDisallow: /\n\n\
                    Useragent: Other\n\nSitemap: http://a.test/s.xml\nUser agent: Spinneret\n\
                    Disallow /mine\n";
        let mut big = String::from(body);
        for i in 0..MAX_RULES {
            big.push_str(&format!("Disalow: /many{i:05}\n"));
        }
        for (text, agent, blocked, open) in [
            (body, "Unnamed", "/private", "/mine"),
            (big.as_str(), "Unnamed", "/private", "/many00005"),
            (body, "Spinneret", "/mine", "/private"),
            // Ours are /mine and the many, one past the cap: the last is dropped.
            (big.as_str(), "Spinneret", "/many01998", "/many01999"),
        ] {
            let Verdict::Known(rules, _) = interpret(&file(200, text), agent) else {
                panic!("known")
            };
            assert!(
                !rules.allows(&format!("http://a.test{blocked}")),
                "{agent} {blocked}"
            );
            assert!(
                rules.allows(&format!("http://a.test{open}")),
                "{agent} {open}"
            );
        }
        let (_, dropped) = keep_rules(big.as_bytes(), "Spinneret", MAX_RULES);
        assert_eq!(dropped, 1, "our group: /mine and the {MAX_RULES} others");
        let (kept, none) = keep_rules(big.as_bytes(), "Unnamed", MAX_RULES);
        assert_eq!(none, 0, "the * group has one rule");
        assert_eq!(kept.as_ref(), big.as_bytes(), "untouched");
    }

    #[test]
    fn robots_url_is_at_the_root() {
        let url = Url::parse("https://a.test:8443/x/y?q=1#f").expect("url");
        assert_eq!(robots_url(&url), "https://a.test:8443/robots.txt");
    }
}
