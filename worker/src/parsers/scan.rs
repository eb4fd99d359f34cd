//! A minimal streaming HTML scanner for the few things the `links` parser needs: start tags
//! with their attributes, and the text of the first `<title>`. It follows the HTML
//! tokenizer's rules where they matter for links: comments, doctypes and processing
//! instructions are skipped, raw-text elements (`script`, `style`, ...) are not looked into,
//! attribute values may be quoted either way or unquoted, and the first of two attributes of
//! the same name wins. It never builds a tree, never allocates per tag, and never fails.

/// Elements whose content is text up to their end tag, not markup.
/// `noscript` counts: browsers (and html5ever) parse with scripting on.
const RAW_TEXT: [&[u8]; 8] = [
    b"script",
    b"style",
    b"textarea",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"noscript",
];

/// A start tag: its lower-cased name and its raw attribute text.
pub struct Tag<'a> {
    name: [u8; 16],
    name_len: usize,
    attrs: &'a [u8],
}

impl<'a> Tag<'a> {
    /// The tag name, lower case.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// The raw value of attribute `name` (ASCII, lower case), entities not decoded.
    pub fn attr(&self, name: &[u8]) -> Option<&'a str> {
        let a = self.attrs;
        let mut i = 0;
        while i < a.len() {
            while i < a.len() && (a[i].is_ascii_whitespace() || a[i] == b'/') {
                i += 1;
            }
            let start = i;
            while i < a.len() && !a[i].is_ascii_whitespace() && !matches!(a[i], b'=' | b'/' | b'>')
            {
                i += 1;
            }
            if i == start {
                i += 1;
                continue;
            }
            let key = &a[start..i];
            while i < a.len() && a[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value: &[u8] = b"";
            if i < a.len() && a[i] == b'=' {
                i += 1;
                while i < a.len() && a[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < a.len() && (a[i] == b'"' || a[i] == b'\'') {
                    let quote = a[i];
                    let v0 = i + 1;
                    let end = a[v0..]
                        .iter()
                        .position(|&c| c == quote)
                        .map_or(a.len(), |p| v0 + p);
                    value = &a[v0..end];
                    i = end + 1;
                } else {
                    let v0 = i;
                    while i < a.len() && !a[i].is_ascii_whitespace() && a[i] != b'>' {
                        i += 1;
                    }
                    value = &a[v0..i];
                }
            }
            if key.eq_ignore_ascii_case(name) {
                return std::str::from_utf8(value).ok();
            }
        }
        None
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Finds `</name` (any case) from `from`; returns where it starts.
fn find_end_tag(bytes: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut i = from;
    while let Some(p) = bytes[i..].iter().position(|&c| c == b'<') {
        let at = i + p;
        let rest = &bytes[at + 1..];
        if rest.first() == Some(&b'/')
            && rest.len() > name.len()
            && rest[1..=name.len()].eq_ignore_ascii_case(name)
            && rest
                .get(name.len() + 1)
                .is_none_or(|c| c.is_ascii_whitespace() || matches!(c, b'>' | b'/'))
        {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Calls `on_tag` for every start tag, and `on_title` once with the raw text of the first
/// `<title>`.
pub fn scan<'a>(
    html: &'a str,
    mut on_tag: impl FnMut(&Tag<'a>),
    mut on_title: impl FnMut(&'a str),
) {
    let bytes = html.as_bytes();
    let mut name_buf = [0u8; 16];
    let mut title_seen = false;
    let mut i = 0;
    while let Some(p) = bytes[i..].iter().position(|&c| c == b'<') {
        i += p;
        let rest = &bytes[i + 1..];
        if rest.starts_with(b"!--") {
            // `<!-->` and `<!--->` are complete (empty) comments.
            let body = &bytes[i + 4..];
            i = if body.starts_with(b">") {
                i + 5
            } else if body.starts_with(b"->") {
                i + 6
            } else {
                find(body, b"-->").map_or(bytes.len(), |e| i + 4 + e + 3)
            };
            continue;
        }
        if rest
            .first()
            .is_some_and(|c| matches!(c, b'!' | b'?' | b'/'))
        {
            // Doctype, processing instruction or end tag: nothing to read.
            i = bytes[i + 1..]
                .iter()
                .position(|&c| c == b'>')
                .map_or(bytes.len(), |e| i + 1 + e + 1);
            continue;
        }
        if !rest.first().is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 1;
            continue;
        }
        let name_len = rest
            .iter()
            .position(|c| c.is_ascii_whitespace() || matches!(c, b'/' | b'>'))
            .unwrap_or(rest.len());
        let tag_end = tag_close(bytes, i + 1 + name_len);
        let attrs = &bytes[i + 1 + name_len..tag_end.min(bytes.len())];
        let after = (tag_end + 1).min(bytes.len());
        if name_len > name_buf.len() {
            // No tag we look at has a name this long.
            i = after;
            continue;
        }
        for (k, c) in rest[..name_len].iter().enumerate() {
            name_buf[k] = c.to_ascii_lowercase();
        }
        let tag = Tag {
            name: name_buf,
            name_len,
            attrs,
        };
        on_tag(&tag);
        let name = tag.name();
        if name == b"title" {
            let end = find_end_tag(bytes, after, b"title").unwrap_or(bytes.len());
            if !title_seen {
                title_seen = true;
                on_title(html.get(after..end).unwrap_or(""));
            }
            i = end;
        } else if RAW_TEXT.contains(&name) {
            i = find_end_tag(bytes, after, name).unwrap_or(bytes.len());
        } else if name == b"plaintext" {
            return;
        } else {
            i = after;
        }
    }
}

/// Where the start tag whose attributes begin at `from` ends (its `>`), honouring quotes.
fn tag_close(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    let mut after_equals = false;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return i,
            b'=' => after_equals = true,
            b'"' | b'\'' if after_equals => {
                let quote = bytes[i];
                i = bytes[i + 1..]
                    .iter()
                    .position(|&c| c == quote)
                    .map_or(bytes.len(), |p| i + 1 + p);
                after_equals = false;
            }
            c if !c.is_ascii_whitespace() => after_equals = false,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}
