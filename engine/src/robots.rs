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

/// Allow and Disallow lines kept from one robots.txt; the rest are dropped. Each rule may be
/// a regular expression every URL of the host is matched against, so a hostile file of many
/// thousands would make each page cost milliseconds.
pub const MAX_RULES: usize = 2_000;

/// Whether a robots.txt line is an Allow or Disallow rule.
fn is_rule(line: &[u8]) -> bool {
    let line = line.trim_ascii_start();
    let lower = |n: usize| line.get(..n).map(<[u8]>::to_ascii_lowercase);
    lower(6).as_deref() == Some(b"allow:".as_slice())
        || lower(9).as_deref() == Some(b"disallow:".as_slice())
}

/// How many Allow and Disallow lines `body` has.
pub fn count_rules(body: &[u8]) -> usize {
    body.split(|b| *b == b'\n').filter(|l| is_rule(l)).count()
}

/// `body` with no more than `max` Allow and Disallow lines (the first ones), and how many
/// were dropped.
pub fn keep_rules(body: &[u8], max: usize) -> (std::borrow::Cow<'_, [u8]>, usize) {
    let rules = count_rules(body);
    if rules <= max {
        return (std::borrow::Cow::Borrowed(body), 0);
    }
    let mut kept = Vec::with_capacity(body.len());
    let mut seen = 0;
    for line in body.split(|b| *b == b'\n') {
        if is_rule(line) {
            seen += 1;
            if seen > max {
                continue;
            }
        }
        kept.extend_from_slice(line);
        kept.push(b'\n');
    }
    (std::borrow::Cow::Owned(kept), rules - max)
}

/// Interprets a fetched robots.txt for the User-Agent token `agent`, keeping at most
/// [`MAX_RULES`] of its rules. CPU work on a hostile file: call it off the crawl loop.
pub fn interpret(file: &RobotsFile, agent: &str) -> Verdict {
    match file.status {
        200..=299 => match Robot::new(agent, &keep_rules(&file.body, MAX_RULES).0) {
            Ok(robot) => {
                let delay = robot
                    .delay
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .map(|d| Duration::from_secs_f32(d.min(86_400.0)));
                Verdict::Known(Rules::Parsed(Arc::new(robot)), delay)
            }
            Err(_) => Verdict::Known(Rules::AllowAll, None),
        },
        // Redirects left after the worker followed five, and client errors: no rules.
        300..=499 => Verdict::Known(Rules::AllowAll, None),
        _ => Verdict::TryLater,
    }
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
    fn only_the_first_rules_of_a_huge_file_are_kept() {
        let mut body = String::from("User-agent: *\nDisallow: /first\n");
        for i in 0..5_000 {
            body.push_str(&format!("Disallow: /*{i}*z$\n  allow: /x{i}\n"));
        }
        let (kept, dropped) = keep_rules(body.as_bytes(), MAX_RULES);
        assert_eq!(dropped, 10_001 - MAX_RULES);
        let kept = String::from_utf8_lossy(&kept);
        assert!(kept.starts_with("User-agent: *\nDisallow: /first\n"));
        let Verdict::Known(rules, _) = interpret(&file(200, &body), "S") else {
            panic!("known")
        };
        assert!(!rules.allows("http://a.test/first"));
        let (same, none) = keep_rules(b"Disallow: /a\n", MAX_RULES);
        assert_eq!((same.as_ref(), none), (b"Disallow: /a\n".as_slice(), 0));
    }

    #[test]
    fn robots_url_is_at_the_root() {
        let url = Url::parse("https://a.test:8443/x/y?q=1#f").expect("url");
        assert_eq!(robots_url(&url), "https://a.test:8443/robots.txt");
    }
}
