//! Crawl names: what `--crawl` may be, so that a crawl's keys carry one hash tag of its own
//! and a pattern over them (`--fresh`) can match no other crawl's.

/// Longest crawl name.
pub const MAX_LEN: usize = 100;

/// The name that would share the tag of the workers' and itemsavers' registrations.
const RESERVED: &str = "registry";

/// Why a crawl name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrawlNameError {
    /// No name at all.
    #[error("a crawl name may not be empty")]
    Empty,
    /// Longer than [`MAX_LEN`].
    #[error("{0:?} is longer than {MAX_LEN} characters")]
    TooLong(String),
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("{name:?} holds {bad:?}: a crawl name is letters, digits, '-', '_' and '.'")]
    Character {
        /// The name given.
        name: String,
        /// The first character refused.
        bad: char,
    },
    /// The registrations' own name.
    #[error("\"registry\" is where workers and itemsavers register; choose another crawl name")]
    Reserved,
}

/// Checks a crawl name: ASCII letters, digits, `-`, `_` and `.`, not `registry`, at most
/// [`MAX_LEN`] characters.
pub fn check(name: &str) -> Result<String, CrawlNameError> {
    if name.is_empty() {
        return Err(CrawlNameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(CrawlNameError::TooLong(name.to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(CrawlNameError::Character {
            name: name.to_owned(),
            bad,
        });
    }
    if name == RESERVED {
        return Err(CrawlNameError::Reserved);
    }
    Ok(name.to_owned())
}

/// `text` with Redis glob characters escaped, to match itself only in `SCAN MATCH`.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_match_or_share_another_crawls_keys_are_refused() {
        assert_eq!(check("news-2026.v1_a"), Ok("news-2026.v1_a".to_owned()));
        for bad in ["n*", "a?", "[ab]", "x{y}", "a}b", "a b", "a:b", "é"] {
            assert!(
                matches!(check(bad), Err(CrawlNameError::Character { .. })),
                "{bad}"
            );
        }
        assert_eq!(check("registry"), Err(CrawlNameError::Reserved));
        assert_eq!(check(""), Err(CrawlNameError::Empty));
        assert!(matches!(
            check(&"a".repeat(MAX_LEN + 1)),
            Err(CrawlNameError::TooLong(_))
        ));
    }

    #[test]
    fn a_glob_escaped_text_has_no_wildcards_left() {
        assert_eq!(glob_escape("{spinneret:n*}"), "{spinneret:n\\*}");
        assert_eq!(glob_escape("a?[b]\\^"), "a\\?\\[b\\]\\\\\\^");
    }
}
