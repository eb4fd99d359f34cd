//! Decoding a page's bytes to UTF-8: Content-Type charset, then BOM, then `<meta>`, then detection.

use encoding_rs::Encoding;

/// How many leading bytes are searched for a `<meta>` charset, as browsers do.
const META_PRESCAN_BYTES: usize = 1024;
/// How many leading bytes the detector looks at when nothing declares a charset.
const DETECT_BYTES: usize = 64 * 1024;

/// Decodes `body` to a string; bytes invalid in the chosen encoding become U+FFFD, never a panic.
pub fn decode(body: &[u8], content_type: Option<&str>) -> (String, &'static Encoding) {
    let encoding = choose(body, content_type);
    let (text, _had_errors) = encoding.decode_with_bom_removal(body);
    (text.into_owned(), encoding)
}

/// Chooses the encoding for `body` in the order header, BOM, `<meta>`, detection.
pub fn choose(body: &[u8], content_type: Option<&str>) -> &'static Encoding {
    if let Some(enc) = content_type
        .and_then(charset_param)
        .and_then(|l| Encoding::for_label(l.as_bytes()))
    {
        return enc;
    }
    if let Some((enc, _)) = Encoding::for_bom(body) {
        return enc;
    }
    if let Some(enc) = meta_charset(&body[..body.len().min(META_PRESCAN_BYTES)]) {
        return html_compatible(enc);
    }
    let mut detector = chardetng::EncodingDetector::new();
    let sample = &body[..body.len().min(DETECT_BYTES)];
    detector.feed(sample, sample.len() == body.len());
    detector.guess(None, true)
}

/// A UTF-16 declared in `<meta>` is read as UTF-8, as HTML requires: the prescan could not
/// have found it in real UTF-16.
fn html_compatible(enc: &'static Encoding) -> &'static Encoding {
    if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
        encoding_rs::UTF_8
    } else {
        enc
    }
}

/// Returns the `charset=` parameter of a Content-Type value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim().eq_ignore_ascii_case("charset").then(|| {
            value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned()
        })
    })
}

/// Finds a charset in `<meta charset=...>` or `<meta http-equiv content="...; charset=...">`.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = find(&lower[from..], b"<meta") {
        let tag_start = from + pos;
        let tag_end = find(&lower[tag_start..], b">").map_or(lower.len(), |e| tag_start + e);
        let tag = &lower[tag_start..tag_end];
        if let Some(cs) = find(tag, b"charset") {
            let mut rest = &tag[cs + b"charset".len()..];
            rest = trim_start(rest);
            if let Some(after_eq) = rest.strip_prefix(b"=") {
                let value = trim_start(after_eq);
                let value = value
                    .strip_prefix(b"\"")
                    .or_else(|| value.strip_prefix(b"'"))
                    .unwrap_or(value);
                let end = value
                    .iter()
                    .position(|&b| {
                        matches!(b, b'"' | b'\'' | b';' | b' ' | b'/' | b'>')
                            || b.is_ascii_whitespace()
                    })
                    .unwrap_or(value.len());
                if let Some(enc) = Encoding::for_label(&value[..end]) {
                    return Some(enc);
                }
            }
        }
        from = tag_end;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let skip = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHINESE: &str = "<html><head><title>中文页面</title></head><body><p>这是一个用GBK编码的测试页面，包含足够多的中文字符以便检测。</p></body></html>";

    fn gbk(s: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(s).0.into_owned()
    }

    #[test]
    fn header_charset_wins() {
        let (text, enc) = decode(&gbk(CHINESE), Some("text/html; charset=GBK"));
        assert_eq!(enc, encoding_rs::GBK);
        assert!(text.contains("中文页面"));
    }

    #[test]
    fn meta_charset_is_used_without_header() {
        let page = CHINESE.replace("<head>", "<head><meta charset=\"gb2312\">");
        let (text, _) = decode(&gbk(&page), Some("text/html"));
        assert!(text.contains("中文页面"));
        let page = CHINESE.replace(
            "<head>",
            "<head><META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=gbk'>",
        );
        let (text, _) = decode(&gbk(&page), None);
        assert!(text.contains("中文页面"));
    }

    #[test]
    fn bom_beats_meta() {
        let mut body = vec![0xEF, 0xBB, 0xBF];
        body.extend_from_slice("<meta charset=latin1><title>é</title>".as_bytes());
        let (text, enc) = decode(&body, None);
        assert_eq!(enc, encoding_rs::UTF_8);
        assert!(text.contains("<title>é</title>"));
    }

    #[test]
    fn undeclared_gbk_is_detected() {
        let (text, _) = decode(&gbk(CHINESE), None);
        assert!(text.contains("中文页面"), "{text}");
    }

    #[test]
    fn invalid_bytes_never_panic() {
        let (text, _) = decode(
            &[0xff, 0xfe, 0xfd, b'<', 0x80, 0xc3],
            Some("text/html; charset=utf-8"),
        );
        assert!(text.contains('\u{fffd}'));
        let _ = decode(b"<meta charset=", None);
        let _ = decode(b"<meta charset=\"", None);
    }
}
