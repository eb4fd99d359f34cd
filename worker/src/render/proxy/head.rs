//! Reading what the browser asks of its proxy: a request head, bounded in size and time, and
//! the host and port a `CONNECT` names.

use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest request head the proxy reads.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long the browser has to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head as the browser sent it.
pub(super) struct Head {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: String,
    /// The header lines, each without its line end.
    pub(super) headers: Vec<String>,
    /// Bytes read past the head (the start of a body).
    pub(super) rest: Vec<u8>,
}

/// Reads a request head, bounded in size and time.
pub(super) async fn read_head(client: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let end = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find_head_end(&buf) {
                return Some(end);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return None;
            }
            let n = client.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .ok()??;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers: lines.filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        rest: buf[end + 4..].to_vec(),
    })
}

/// Where the blank line ending a head starts, if it has come.
pub(super) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// `host:port` (or `[v6]:port`) split, with `default` when no port is given.
pub(super) fn split_host_port(target: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((host.to_owned(), port));
    }
    match target.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((target.to_owned(), default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(
            split_host_port("a.test:8443", 443),
            Some(("a.test".into(), 8443))
        );
        assert_eq!(split_host_port("a.test", 443), Some(("a.test".into(), 443)));
        assert_eq!(split_host_port("[::1]:80", 443), Some(("::1".into(), 80)));
        assert_eq!(split_host_port("a.test:x", 443), None);
    }
}
