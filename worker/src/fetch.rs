//! Fetching pages over HTTP with one shared client and hard limits on time and size.
//!
//! Page fetches do not follow redirects: the redirect is reported to the engine, which sends
//! each hop through its dedup, scope and redirect limit like any link. robots.txt fetches follow
//! up to five redirects, as RFC 9309 asks.

use crate::config::FetchConfig;
use common::{FetchError, RobotsFile};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use std::time::Instant;
use url::Url;

/// Most robots.txt bytes read; RFC 9309 asks crawlers to parse at least 500 KiB.
pub const MAX_ROBOTS_BYTES: usize = 512 * 1024;
/// The environment variables reqwest takes a proxy from.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];
/// Redirects followed for robots.txt.
const ROBOTS_REDIRECTS: usize = 5;

/// A fetched response with the facts needed to decode and parse it.
#[derive(Debug)]
pub struct Fetched {
    /// The URL fetched.
    pub final_url: Url,
    /// The HTTP status.
    pub status: u16,
    /// The Content-Type header, when sent.
    pub content_type: Option<String>,
    /// The redirect target, resolved, when the response was a redirect (the body is then empty).
    pub redirect: Option<Url>,
    /// The body, decompressed, at most `max_body_bytes` long.
    pub body: Vec<u8>,
    /// Milliseconds from sending the request to the end of the body.
    pub elapsed_ms: u64,
}

/// What a page fetch asks for.
const ACCEPT_PAGES: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1";

/// Fetches pages; cheap to share, since it holds the connection-pooling clients.
#[derive(Clone, Debug)]
pub struct Fetcher {
    pages: reqwest::Client,
    robots: reqwest::Client,
    config: FetchConfig,
    warc: Option<std::sync::Arc<crate::warc::WarcWriter>>,
}

/// Why the fetcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The HTTP client.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The WARC directory.
    #[error(transparent)]
    Warc(#[from] crate::warc::WarcError),
}

/// A response to archive, owned so that it can be written on a blocking thread.
struct Received {
    url: Url,
    accept: &'static str,
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    truncated: Option<&'static str>,
}

impl Fetcher {
    /// Builds the shared clients from `config`.
    pub fn new(config: FetchConfig) -> Result<Self, ClientBuildError> {
        let resolver = config.addresses.resolver();
        if resolver.is_some()
            && let Some(var) = PROXY_VARIABLES
                .iter()
                .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        {
            tracing::warn!(
                variable = var,
                "proxy variables are ignored while the SSRF guard is on (a proxy resolves names out of its sight); pass --allow_private to fetch through the proxy"
            );
        }
        let builder = || {
            let builder = reqwest::Client::builder()
                .user_agent(config.user_agent.clone())
                .connect_timeout(config.connect_timeout)
                .timeout(config.timeout)
                .gzip(true)
                .brotli(true)
                .pool_idle_timeout(std::time::Duration::from_secs(30));
            match &resolver {
                // A proxy would resolve names itself, out of the guard's sight: proxy
                // variables are ignored while the guard is on.
                Some(resolver) => builder.dns_resolver(resolver.clone()).no_proxy(),
                None => builder,
            }
        };
        let warc = match &config.warc {
            Some(warc) => Some(std::sync::Arc::new(crate::warc::WarcWriter::new(
                warc.clone(),
            )?)),
            None => None,
        };
        Ok(Fetcher {
            pages: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            // robots.txt redirects are followed in `fetch_robots`, one hop at a time, so that
            // each hop is checked and archived.
            robots: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            config,
            warc,
        })
    }

    /// Writes `received` to the WARC archive, when there is one, before the answer goes
    /// back; the body is handed back. A record that cannot be written fails the fetch, so
    /// the engine tries the page again rather than have it missing from the archive.
    async fn archive(&self, received: Received) -> Result<Vec<u8>, FetchError> {
        let Some(warc) = self.warc.clone() else {
            return Ok(received.body);
        };
        let sent = [
            ("User-Agent", self.config.user_agent.as_str()),
            ("Accept", received.accept),
            ("Accept-Encoding", "gzip, br"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let (written, body) = tokio::task::spawn_blocking(move || {
            let written = warc.write(&crate::warc::Exchange {
                url: &received.url,
                method: "GET",
                request_headers: &sent,
                request_body: &[],
                status: received.status,
                headers: &received.headers,
                body: &received.body,
                truncated: received.truncated,
            });
            (written, received.body)
        })
        .await
        .map_err(|e| FetchError::Archive(format!("the archiving task failed: {e}")))?;
        written.map_err(|e| {
            tracing::error!(cause = %e, "a WARC record could not be written; the page will be tried again");
            FetchError::Archive(e.to_string())
        })?;
        Ok(body)
    }

    /// The headers to archive of `response` (none are kept when there is no archive).
    fn kept_headers(&self, response: &reqwest::Response) -> reqwest::header::HeaderMap {
        if self.warc.is_some() {
            response.headers().clone()
        } else {
            reqwest::header::HeaderMap::new()
        }
    }

    /// Reads what the archive keeps of a body the crawl does not need (a redirect's, an
    /// error's): up to `limit` bytes, and why it is not whole, if it is not. Nothing without
    /// an archive.
    async fn body_for_archive(
        &self,
        response: &mut reqwest::Response,
        limit: usize,
    ) -> (Vec<u8>, Option<&'static str>) {
        let mut body = Vec::new();
        if self.warc.is_none() {
            return (body, None);
        }
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        return (body, Some("length"));
                    }
                }
                Ok(None) => return (body, None),
                Err(_) => return (body, Some("disconnect")),
            }
        }
    }

    /// The settings the fetcher runs with.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// The WARC archive this fetcher writes to (`--warc`), shared with the browser of a
    /// rendering worker.
    pub fn warc_writer(&self) -> Option<std::sync::Arc<crate::warc::WarcWriter>> {
        self.warc.clone()
    }

    /// Fetches `url`. A body whose Content-Type `accept` refuses is not downloaded; a body over
    /// the limit stops downloading at the limit.
    pub async fn fetch(
        &self,
        url: &Url,
        accept: impl Fn(&str) -> bool,
    ) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let elapsed = || started.elapsed().as_millis() as u64;
        self.config.addresses.check_url(url).map_err(blocked)?;
        let mut response = self
            .pages
            .get(url.clone())
            .header(ACCEPT, ACCEPT_PAGES)
            .send()
            .await
            .map_err(|e| classify(e, elapsed()))?;

        let status = response.status();
        let headers = self.kept_headers(&response);
        let limit = self.config.max_body_bytes;
        let received = |body: Vec<u8>, truncated: Option<&'static str>| Received {
            url: url.clone(),
            accept: ACCEPT_PAGES,
            status,
            headers: headers.clone(),
            body,
            truncated,
        };
        let archive_limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if status.is_redirection()
            && let Some(target) =
                header(&response, LOCATION).and_then(|loc| url.join(loc.trim()).ok())
        {
            let (body, truncated) = self.body_for_archive(&mut response, archive_limit).await;
            self.archive(received(body, truncated)).await?;
            return Ok(Fetched {
                final_url: url.clone(),
                status: status.as_u16(),
                content_type: None,
                redirect: Some(target),
                body: Vec::new(),
                elapsed_ms: elapsed(),
            });
        }
        if !status.is_success() {
            let retry_after_secs =
                header(&response, RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok());
            let (body, truncated) = self.body_for_archive(&mut response, archive_limit).await;
            self.archive(received(body, truncated)).await?;
            return Err(FetchError::Http {
                status: status.as_u16(),
                retry_after_secs,
            });
        }
        let content_type = header(&response, CONTENT_TYPE).map(str::to_owned);
        if let Some(ct) = &content_type
            && !accept(ct)
        {
            // Its headers only: dropping the response closes the stream without reading the
            // body.
            self.archive(received(Vec::new(), Some("unspecified")))
                .await?;
            return Err(FetchError::NotHtml {
                content_type: ct.clone(),
            });
        }
        if response.content_length().is_some_and(|len| len > limit) {
            self.archive(received(Vec::new(), Some("length"))).await?;
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = Vec::new();
        // Chunks arrive decompressed, so a compression bomb stops at the same limit.
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    self.archive(received(body, Some("disconnect"))).await?;
                    return Err(classify(e, elapsed()));
                }
            };
            if body.len() as u64 + chunk.len() as u64 > limit {
                let room = archive_limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                self.archive(received(body, Some("length"))).await?;
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        let body = self.archive(received(body, None)).await?;
        Ok(Fetched {
            final_url: url.clone(),
            status: status.as_u16(),
            content_type,
            redirect: None,
            body,
            elapsed_ms: elapsed(),
        })
    }

    /// Fetches a robots.txt, following up to five redirects (each hop checked against the
    /// address policy, and archived); any status comes back as data, since the engine
    /// decides what 4xx and 5xx mean. The body stops at [`MAX_ROBOTS_BYTES`].
    pub async fn fetch_robots(&self, url: &Url) -> Result<RobotsFile, FetchError> {
        let started = Instant::now();
        let elapsed = || started.elapsed().as_millis() as u64;
        self.config.addresses.check_url(url).map_err(blocked)?;
        // A hop refused is not the host itself refused: its robots.txt cannot be had.
        let refused_hop = |b: &crate::addresses::Blocked| {
            FetchError::Other(format!("robots.txt redirects to a refused address: {b}"))
        };
        let mut current = url.clone();
        let mut hops = 0;
        let mut response = loop {
            let response = self.robots.get(current.clone()).send().await.map_err(|e| {
                match crate::addresses::blocked_in(&e) {
                    Some(b) if Some(b.host.as_str()) != url.host_str() => refused_hop(b),
                    _ => classify(e, elapsed()),
                }
            })?;
            let next = response
                .status()
                .is_redirection()
                .then(|| header(&response, LOCATION).and_then(|l| current.join(l.trim()).ok()))
                .flatten();
            let Some(next) = next else {
                break response;
            };
            let mut response = response;
            let headers = self.kept_headers(&response);
            let status = response.status();
            let (body, truncated) = self.body_for_archive(&mut response, MAX_ROBOTS_BYTES).await;
            self.archive(Received {
                url: current.clone(),
                accept: "*/*",
                status,
                headers,
                body,
                truncated,
            })
            .await?;
            hops += 1;
            if hops > ROBOTS_REDIRECTS {
                return Err(FetchError::Other(format!(
                    "robots.txt: {}",
                    TooManyRedirects
                )));
            }
            if started.elapsed() >= self.config.timeout {
                return Err(FetchError::Timeout {
                    elapsed_ms: elapsed(),
                });
            }
            if let Err(b) = self.config.addresses.check_url(&next) {
                return Err(refused_hop(&b));
            }
            current = next;
        };
        let status = response.status().as_u16();
        let headers = self.kept_headers(&response);
        let final_url = response.url().clone();
        let served = response.status().is_success();
        let (body, truncated) = if served {
            let mut body = Vec::new();
            let mut truncated = None;
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, elapsed()))? {
                let room = MAX_ROBOTS_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room || body.len() >= MAX_ROBOTS_BYTES {
                    truncated = (chunk.len() > room).then_some("length");
                    break;
                }
            }
            (body, truncated)
        } else {
            self.body_for_archive(&mut response, MAX_ROBOTS_BYTES).await
        };
        let body = self
            .archive(Received {
                url: final_url,
                accept: "*/*",
                status: response.status(),
                headers,
                body,
                truncated,
            })
            .await?;
        // The engine reads only the status of a robots.txt that was not served.
        let body = if served { body } else { Vec::new() };
        Ok(RobotsFile { status, body })
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A robots.txt redirect chain longer than the limit.
#[derive(Debug, thiserror::Error)]
#[error("more than {ROBOTS_REDIRECTS} redirects")]
struct TooManyRedirects;

fn blocked(b: crate::addresses::Blocked) -> FetchError {
    FetchError::BlockedAddress(b.to_string())
}

fn classify(e: reqwest::Error, elapsed_ms: u64) -> FetchError {
    if let Some(b) = crate::addresses::blocked_in(&e) {
        blocked(b.clone())
    } else if e.is_timeout() {
        FetchError::Timeout { elapsed_ms }
    } else if e.is_connect() {
        FetchError::Connect(error_chain(&e))
    } else if e.is_builder() {
        FetchError::InvalidUrl(error_chain(&e))
    } else {
        FetchError::Other(error_chain(&e))
    }
}

/// Whether a Content-Type names a document the HTML parsers can read.
pub fn is_html(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(mime.as_str(), "text/html" | "application/xhtml+xml" | "")
}

/// Joins an error with its sources, since reqwest's top-level message is often vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_content_types_are_recognised() {
        assert!(is_html("text/html"));
        assert!(is_html("Text/HTML; charset=GBK"));
        assert!(is_html("application/xhtml+xml"));
        assert!(!is_html("image/png"));
        assert!(!is_html("application/pdf"));
    }
}
