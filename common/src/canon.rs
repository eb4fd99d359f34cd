//! URL canonicalisation, so that one page reached by many spellings is fetched once.

use url::Url;

/// Why a string is not a crawlable URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// The string does not parse as a URL.
    #[error("not a valid URL: {0}")]
    Parse(String),
    /// The scheme is not http or https.
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    /// The URL has no host.
    #[error("URL has no host")]
    NoHost,
}

/// Returns the canonical form of `input`, resolved against `base` when it is relative.
///
/// Scheme and host are lowercased, the default port and the fragment dropped, `.` and `..`
/// segments resolved, an empty query dropped, and percent-encoding normalised (escapes of
/// unreserved characters decoded, the rest in upper-case hex).
pub fn canonicalize(input: &str, base: Option<&Url>) -> Result<Url, CanonError> {
    let input = input.trim();
    let parsed = match base {
        Some(base) => base.join(input),
        None => Url::parse(input),
    }
    .map_err(|e| CanonError::Parse(format!("{input:?}: {e}")))?;
    canonicalize_url(parsed)
}

/// Canonicalises an already-parsed URL; see [`canonicalize`].
pub fn canonicalize_url(mut url: Url) -> Result<Url, CanonError> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CanonError::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(CanonError::NoHost);
    }
    url.set_fragment(None);
    let path = normalize_percent(url.path());
    if path != url.path() {
        url.set_path(&path);
    }
    match url.query() {
        Some("") => url.set_query(None),
        Some(q) => {
            let q = normalize_percent(q);
            url.set_query(Some(&q));
        }
        None => {}
    }
    Ok(url)
}

/// A stable 64-bit fingerprint of a canonical URL, for compact seen-sets.
///
/// xxh3 is stable across releases and platforms, so fingerprints can be persisted.
pub fn fingerprint(canonical: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(canonical.as_bytes())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes escapes of unreserved characters and upper-cases the hex digits of the others.
fn normalize_percent(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            let decoded = h * 16 + l;
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        // `s` comes from a parsed URL, which is ASCII, so a byte is a char.
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonicalize(s, None).expect(s).to_string()
    }

    #[test]
    fn lowercases_scheme_and_host_and_drops_default_port() {
        assert_eq!(canon("HTTP://Example.COM:80/A"), "http://example.com/A");
        assert_eq!(canon("https://example.com:443/"), "https://example.com/");
        assert_eq!(
            canon("http://example.com:8080/"),
            "http://example.com:8080/"
        );
    }

    #[test]
    fn drops_fragment_and_empty_query() {
        assert_eq!(canon("http://a.test/p#section"), "http://a.test/p");
        assert_eq!(canon("http://a.test/p?#x"), "http://a.test/p");
        assert_eq!(canon("http://a.test/p?b=1#x"), "http://a.test/p?b=1");
    }

    #[test]
    fn resolves_dot_segments_and_relative_links() {
        assert_eq!(canon("http://a.test/x/./y/../z"), "http://a.test/x/z");
        let base = Url::parse("http://a.test/dir/page.html").expect("base");
        let got = canonicalize("../other.html#frag", Some(&base)).expect("join");
        assert_eq!(got.as_str(), "http://a.test/other.html");
        assert_eq!(canon("http://a.test"), "http://a.test/");
    }

    #[test]
    fn normalizes_percent_encoding() {
        assert_eq!(
            canon("http://a.test/%7euser/%41b"),
            "http://a.test/~user/Ab"
        );
        assert_eq!(
            canon("http://a.test/a%2fb?q=%3d%2b"),
            "http://a.test/a%2Fb?q=%3D%2B"
        );
        assert_eq!(canon("http://a.test/a%2"), "http://a.test/a%2");
        assert_eq!(
            canon("http://a.test/caf%C3%A9"),
            canon("http://a.test/café")
        );
    }

    #[test]
    fn spellings_of_one_page_share_a_fingerprint() {
        let a = canon("HTTP://A.test:80/x/../p%7e?#f");
        let b = canon("http://a.test/p~");
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn rejects_non_http_urls() {
        assert!(matches!(
            canonicalize("mailto:x@y.z", None),
            Err(CanonError::Scheme(_))
        ));
        assert!(matches!(
            canonicalize("ftp://a.test/", None),
            Err(CanonError::Scheme(_))
        ));
        assert!(matches!(
            canonicalize("not a url", None),
            Err(CanonError::Parse(_))
        ));
        assert!(matches!(
            canonicalize("javascript:void(0)", None),
            Err(CanonError::Scheme(_))
        ));
    }
}
