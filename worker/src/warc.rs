//! WARC 1.1 archives of what a worker fetched (`--warc DIR`): for every HTTP response it
//! receives, a `request` record and a `response` record, each gzipped on its own, appended
//! to files rotated at `--warc_max_bytes`. Records are written before the worker answers the
//! engine, so a page the engine has is in the archive.
//!
//! reqwest hands over no raw header block (and HTTP/2 has none), so the HTTP messages are
//! reconstructed: an HTTP/1.1 status line and the headers received, without
//! `Content-Encoding` and `Transfer-Encoding`, with a `Content-Length` and a payload digest of
//! the body as stored (decompressed). A body cut at the limit carries `WARC-Truncated: length`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The default size a WARC file is rotated at: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Where and how a worker archives what it fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarcConfig {
    /// The directory files are written in (created if missing).
    pub dir: PathBuf,
    /// A file is closed and the next one started once it holds this many bytes.
    pub max_bytes: u64,
    /// Whether a rendered page's subrequests (scripts, XHR, styles, frames) are archived
    /// too, not only the page's own response (`--warc_subresources`).
    pub subresources: bool,
}

/// One HTTP exchange to archive.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The URL fetched.
    pub url: &'a url::Url,
    /// The request's method (`GET` for every fetch of the worker's own; a browser's
    /// subrequests may `POST`).
    pub method: &'a str,
    /// The request's headers as sent, but `Host` (written from the URL).
    pub request_headers: &'a [(String, String)],
    /// The request's body (a browser's `POST`), empty for the worker's own fetches.
    pub request_body: &'a [u8],
    /// The response's status.
    pub status: reqwest::StatusCode,
    /// The response's headers, as received.
    pub headers: &'a reqwest::header::HeaderMap,
    /// The body as stored: decompressed, perhaps cut short.
    pub body: &'a [u8],
    /// Why the body is not whole, if it is not: `length` (the size limit), `disconnect`
    /// (the read failed), `unspecified` (not read: a type the crawl does not take).
    pub truncated: Option<&'static str>,
}

/// Appends records to the current file of a directory, rotating files by size; shared by
/// every fetch of a worker.
#[derive(Debug)]
pub struct WarcWriter {
    config: WarcConfig,
    /// Names this process's files apart from every other writer's.
    prefix: String,
    current: Mutex<Current>,
}

#[derive(Debug, Default)]
struct Current {
    file: Option<File>,
    written: u64,
    serial: u32,
}

/// Why a WARC file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("WARC archive {path}: {source}")]
pub struct WarcError {
    /// The file or directory.
    pub path: PathBuf,
    /// What the system said.
    pub source: std::io::Error,
}

impl WarcWriter {
    /// A writer into `config.dir`, created if missing.
    pub fn new(config: WarcConfig) -> Result<WarcWriter, WarcError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| WarcError {
            path: config.dir.clone(),
            source,
        })?;
        let mut nonce = [0u8; 4];
        // Only a tie-breaker beside the host, pid and time: a failure leaves zeros.
        let _ = getrandom::fill(&mut nonce);
        let started = chrono::Utc::now().format("%Y%m%d%H%M%S");
        let node = common::registry::node_id("worker").replace(['/', '\\', ' '], "_");
        let prefix = format!(
            "spinneret-{started}-{node}-{}",
            data_encoding::HEXLOWER.encode(&nonce)
        );
        Ok(WarcWriter {
            config,
            prefix,
            current: Mutex::new(Current::default()),
        })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Archives `exchange`: its request and response records, gzipped one by one, appended
    /// to the current file (a new one when it is full). Blocks: run it off the async threads.
    pub fn write(&self, exchange: &Exchange<'_>) -> Result<(), WarcError> {
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let response_id = record_id();
        let request_id = record_id();
        let response = response_record(exchange, &date, &response_id);
        let request = request_record(exchange, &date, &request_id, &response_id);
        let records = [gzip(&response), gzip(&request)];
        let size: u64 = records.iter().map(|r| r.len() as u64).sum();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let full = current.written > 0 && current.written + size > self.config.max_bytes;
        if current.file.is_none() || full {
            self.rotate(&mut current)?;
        }
        let path = self.path(current.serial);
        let written = current.written;
        let Some(file) = current.file.as_mut() else {
            return Ok(());
        };
        for record in &records {
            if let Err(source) = file.write_all(record) {
                // A record cut short would end the file for sequential readers: it goes,
                // and the next record starts a new file.
                let _ = file.set_len(written);
                current.file = None;
                return Err(WarcError { path, source });
            }
        }
        current.written += size;
        Ok(())
    }

    fn path(&self, serial: u32) -> PathBuf {
        self.config
            .dir
            .join(format!("{}-{serial:05}.warc.gz", self.prefix))
    }

    /// Starts the next file, with its `warcinfo` record.
    fn rotate(&self, current: &mut Current) -> Result<(), WarcError> {
        current.serial += 1;
        let path = self.path(current.serial);
        let err = |source| WarcError {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = gzip(&warcinfo_record(&name));
        file.write_all(&info).map_err(err)?;
        current.written = info.len() as u64;
        current.file = Some(file);
        Ok(())
    }
}

/// A new `<urn:uuid:...>` (version 4).
fn record_id() -> String {
    let mut b = [0u8; 16];
    // Uniqueness, not secrecy: should the system's source fail, the time makes it unique.
    if getrandom::fill(&mut b).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = now.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&b);
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `sha1:` and the base32 SHA-1 of `bytes`, as WARC digests are written.
fn digest(bytes: &[u8]) -> String {
    let sha = sha1_smol::Sha1::from(bytes).digest().bytes();
    format!("sha1:{}", data_encoding::BASE32.encode(&sha))
}

/// A WARC record: its header lines, then `block`.
fn record(fields: &[(&str, &str)], block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 512);
    out.extend_from_slice(b"WARC/1.1\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", block.len()).as_bytes());
    out.extend_from_slice(block);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn warcinfo_record(filename: &str) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = record_id();
    let block = format!(
        "software: Spinneret/{}\r\nformat: WARC File Format 1.1\r\n",
        common::VERSION
    );
    record(
        &[
            ("WARC-Type", "warcinfo"),
            ("WARC-Record-ID", &id),
            ("WARC-Date", &date),
            ("WARC-Filename", filename),
            ("Content-Type", "application/warc-fields"),
        ],
        block.as_bytes(),
    )
}

/// The HTTP response as reconstructed (see the module's note).
fn response_block(exchange: &Exchange<'_>) -> Vec<u8> {
    use reqwest::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
    let mut out = Vec::with_capacity(exchange.body.len() + 1024);
    let reason = exchange.status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", exchange.status.as_u16()).as_bytes());
    for (name, value) in exchange.headers {
        if name == CONTENT_ENCODING || name == TRANSFER_ENCODING || name == CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", exchange.body.len()).as_bytes());
    out.extend_from_slice(exchange.body);
    out
}

fn response_record(exchange: &Exchange<'_>, date: &str, id: &str) -> Vec<u8> {
    let block = response_block(exchange);
    // The payload digest only: a block digest would hash the body a second time, and
    // readers check the payload's.
    let payload_digest = digest(exchange.body);
    let mut fields = vec![
        ("WARC-Type", "response"),
        ("WARC-Record-ID", id),
        ("WARC-Date", date),
        ("WARC-Target-URI", exchange.url.as_str()),
        ("WARC-Payload-Digest", payload_digest.as_str()),
        ("Content-Type", "application/http;msgtype=response"),
    ];
    if let Some(why) = exchange.truncated {
        fields.push(("WARC-Truncated", why));
    }
    record(&fields, &block)
}

fn request_record(exchange: &Exchange<'_>, date: &str, id: &str, response_id: &str) -> Vec<u8> {
    let url = exchange.url;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut block =
        format!("{} {target} HTTP/1.1\r\nHost: {host}\r\n", exchange.method).into_bytes();
    for (name, value) in exchange.request_headers {
        // Host comes from the URL, and the length from the body as stored.
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        block.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !exchange.request_body.is_empty() {
        block.extend_from_slice(
            format!("Content-Length: {}\r\n", exchange.request_body.len()).as_bytes(),
        );
    }
    block.extend_from_slice(b"\r\n");
    block.extend_from_slice(exchange.request_body);
    let block_digest = digest(&block);
    record(
        &[
            ("WARC-Type", "request"),
            ("WARC-Record-ID", id),
            ("WARC-Date", date),
            ("WARC-Target-URI", url.as_str()),
            ("WARC-Concurrent-To", response_id),
            ("WARC-Block-Digest", &block_digest),
            ("Content-Type", "application/http;msgtype=request"),
        ],
        &block,
    )
}

/// `bytes` as one gzip member.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::fast(),
    );
    // Writing to memory cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn exchange<'a>(
        url: &'a url::Url,
        headers: &'a reqwest::header::HeaderMap,
        body: &'a [u8],
    ) -> Exchange<'a> {
        Exchange {
            url,
            method: "GET",
            request_headers: &[],
            request_body: &[],
            status: reqwest::StatusCode::OK,
            headers,
            body,
            truncated: None,
        }
    }

    /// Every gzip member of `path`, decompressed, in order.
    fn members(path: &Path) -> Vec<String> {
        let bytes = std::fs::read(path).expect("read");
        let mut out = Vec::new();
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(rest);
            let mut text = String::new();
            decoder.read_to_string(&mut text).expect("a gzip member");
            rest = decoder.into_inner();
            out.push(text);
        }
        out
    }

    #[test]
    fn a_response_is_archived_with_its_request_and_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = WarcWriter::new(WarcConfig {
            dir: dir.path().join("warc"),
            max_bytes: DEFAULT_MAX_BYTES,
            subresources: false,
        })
        .expect("writer");
        let url = url::Url::parse("http://a.test:8080/p?q=1").expect("url");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("content-type", "text/html".parse().expect("value"));
        headers.insert("content-encoding", "gzip".parse().expect("value"));
        headers.insert("content-length", "3".parse().expect("value"));
        writer
            .write(&exchange(&url, &headers, b"<p>hello</p>"))
            .expect("write");
        let files: Vec<_> = std::fs::read_dir(writer.dir())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1);
        let records = members(&files[0]);
        assert_eq!(records.len(), 3, "warcinfo, response, request");
        assert!(records[0].contains("WARC-Type: warcinfo"));
        let response = &records[1];
        assert!(
            response.starts_with("WARC/1.1\r\nWARC-Type: response\r\n"),
            "{response}"
        );
        assert!(response.contains("WARC-Target-URI: http://a.test:8080/p?q=1\r\n"));
        assert!(response.contains(&format!(
            "WARC-Payload-Digest: {}\r\n",
            digest(b"<p>hello</p>")
        )));
        assert!(response.contains("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nContent-Length: 12\r\n\r\n<p>hello</p>\r\n\r\n"), "{response}");
        assert!(!response.contains("content-encoding"), "{response}");
        assert!(records[2].contains("GET /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\n"));
        assert!(records[2].contains("WARC-Concurrent-To: <urn:uuid:"));
    }

    #[test]
    fn files_rotate_at_their_size_and_never_share_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WarcConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 600,
            subresources: false,
        };
        let a = WarcWriter::new(config.clone()).expect("writer");
        let b = WarcWriter::new(config).expect("writer");
        let url = url::Url::parse("http://a.test/").expect("url");
        let headers = reqwest::header::HeaderMap::new();
        let body = vec![b'x'; 100];
        for _ in 0..3 {
            a.write(&exchange(&url, &headers, &body)).expect("write");
            b.write(&exchange(&url, &headers, &body)).expect("write");
        }
        let count = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(count, 6, "each writer, three files of one exchange each");
    }

    #[test]
    fn record_ids_are_version_4_uuids() {
        let id = record_id();
        assert_eq!(id.len(), "<urn:uuid:>".len() + 36, "{id}");
        assert_eq!(&id[24..25], "4", "{id}");
        assert_ne!(record_id(), id);
    }
}
