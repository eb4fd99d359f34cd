//! A listing-plus-detail site for spider tests: pages of quotes, ten to a page, each with a
//! text, an author and tags, a "next" link, and a detail page per author.

use std::collections::BTreeSet;

/// Quotes per listing page.
pub const PER_PAGE: usize = 10;
/// The quote with no author on the site (a spider requiring the author drops it).
pub const AUTHORLESS: usize = 13;

/// The site's authors: slug, name, birth date, biography.
pub const AUTHORS: [(&str, &str, &str, &str); 7] = [
    (
        "ada-lovelace",
        "Ada Lovelace",
        "December 10, 1815",
        "Wrote the first published program.",
    ),
    (
        "alan-turing",
        "Alan Turing",
        "June 23, 1912",
        "Founded theoretical computer science.",
    ),
    (
        "grace-hopper",
        "Grace Hopper",
        "December 9, 1906",
        "Built the first compiler.",
    ),
    (
        "edsger-dijkstra",
        "Edsger W. Dijkstra",
        "May 11, 1930",
        "Argued for structured programming.",
    ),
    (
        "barbara-liskov",
        "Barbara Liskov",
        "November 7, 1939",
        "Gave us the substitution principle.",
    ),
    (
        "donald-knuth",
        "Donald Knuth",
        "January 10, 1938",
        "Wrote The Art of Computer Programming.",
    ),
    (
        "margaret-hamilton",
        "Margaret Hamilton",
        "August 17, 1936",
        "Led Apollo's flight software.",
    ),
];

const TAGS: [&str; 5] = ["life", "truth", "humor", "code", "science"];

/// One quote as the site shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quote {
    /// The text, without its quotation marks.
    pub text: String,
    /// The author's index in [`AUTHORS`], or `None` for the authorless quote.
    pub author: Option<usize>,
    /// Its tags, in page order.
    pub tags: Vec<String>,
}

/// The quotes site: `pages` listing pages under `/quotes/page/N/`.
#[derive(Clone, Copy, Debug)]
pub struct QuotesSite {
    /// Listing pages.
    pub pages: usize,
}

impl QuotesSite {
    /// Quote number `i` (0-based over the whole site).
    pub fn quote(&self, i: usize) -> Quote {
        let tags: BTreeSet<&str> = [TAGS[i % TAGS.len()], TAGS[(i / 2) % TAGS.len()]]
            .into_iter()
            .collect();
        Quote {
            text: format!(
                "Quote {i}: simplicity & clarity <matter> number {}.",
                i * 7 % 11
            ),
            author: (i != AUTHORLESS).then_some(i % AUTHORS.len()),
            tags: tags.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The HTML at `path`, if the site has it.
    pub fn page(&self, path: &str) -> Option<String> {
        if let Some(n) = path
            .strip_prefix("/quotes/page/")
            .and_then(|p| p.trim_end_matches('/').parse::<usize>().ok())
        {
            return (1..=self.pages).contains(&n).then(|| self.listing(n));
        }
        let slug = path.strip_prefix("/quotes/author/")?.trim_end_matches('/');
        AUTHORS
            .iter()
            .find(|a| a.0 == slug)
            .map(|a| author_page(a.1, a.2, a.3))
    }

    fn listing(&self, n: usize) -> String {
        let mut html = String::from(
            "<!doctype html><html><head><title>Quotes</title></head><body><div class=\"col-md-8\">",
        );
        for i in (n - 1) * PER_PAGE..n * PER_PAGE {
            let q = self.quote(i);
            html.push_str(&format!(
                "<div class=\"quote\" itemscope>\n  <span class=\"text\">“{}”</span>\n",
                escape(&q.text)
            ));
            if let Some(a) = q.author {
                let (slug, name, ..) = AUTHORS[a];
                // Alternate absolute and relative author links.
                let href = if i % 2 == 0 {
                    format!("/quotes/author/{slug}/")
                } else {
                    format!("../../author/{slug}/")
                };
                html.push_str(&format!(
                    "  <span>by <small class=\"author\">{name}</small> <a href=\"{href}\">(about)</a></span>\n"
                ));
            }
            html.push_str("  <div class=\"tags\">Tags:");
            for t in &q.tags {
                html.push_str(&format!(
                    " <a class=\"tag\" href=\"/quotes/tag/{t}/\">{t}</a>"
                ));
            }
            html.push_str("</div>\n</div>\n");
        }
        html.push_str("</div><nav><ul class=\"pager\">");
        if n > 1 {
            html.push_str(&format!(
                "<li class=\"previous\"><a href=\"/quotes/page/{}/\">← Previous</a></li>",
                n - 1
            ));
        }
        if n < self.pages {
            html.push_str(&format!(
                "<li class=\"next\"><a href=\"/quotes/page/{}/\">Next →</a></li>",
                n + 1
            ));
        }
        html.push_str("</ul></nav></body></html>");
        html
    }
}

fn author_page(name: &str, born: &str, bio: &str) -> String {
    format!(
        "<!doctype html><html><head><title>{name}</title></head><body><div class=\"author-details\">\
         <h3 class=\"author-title\">{name}\n</h3><p><strong>Born:</strong> \
         <span class=\"author-born-date\">{born}</span></p>\
         <div class=\"author-description\">\n  {bio}\n</div></div></body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
