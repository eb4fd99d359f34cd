//! Fetching pages over HTTP with one shared client and hard limits on time, size and redirects.

use crate::config::FetchConfig;
use common::FetchError;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use std::time::Instant;
use url::Url;

/// A fetched response body with the facts needed to decode and parse it.
#[derive(Debug)]
pub struct Fetched {
    /// The URL after redirects.
    pub final_url: Url,
    /// The HTTP status.
    pub status: u16,
    /// The Content-Type header, when sent.
    pub content_type: Option<String>,
    /// The body, decompressed, at most `max_body_bytes` long.
    pub body: Vec<u8>,
    /// Milliseconds from sending the request to the end of the body.
    pub elapsed_ms: u64,
}

/// Fetches pages; cheap to share, since it holds one connection-pooling client.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

impl Fetcher {
    /// Builds the shared client from `config`.
    pub fn new(config: FetchConfig) -> Result<Self, ClientBuildError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(
                config.max_redirects as usize,
            ))
            .gzip(true)
            .brotli(true)
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Fetcher { client, config })
    }

    /// Fetches `url`, refusing non-HTML bodies and stopping at the body limit.
    pub async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let elapsed = || started.elapsed().as_millis() as u64;
        let mut response = self
            .client
            .get(url.clone())
            .header(ACCEPT, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1")
            .send()
            .await
            .map_err(|e| self.classify(e, elapsed()))?;

        let status = response.status();
        if !status.is_success() {
            let retry_after_secs = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            return Err(FetchError::Http {
                status: status.as_u16(),
                retry_after_secs,
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(ct) = &content_type
            && !is_html(ct)
        {
            // Dropping the response closes the stream without reading the body.
            return Err(FetchError::NotHtml {
                content_type: ct.clone(),
            });
        }
        let limit = self.config.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let final_url = response.url().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(e, elapsed()))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            final_url,
            status: status.as_u16(),
            content_type,
            body,
            elapsed_ms: elapsed(),
        })
    }

    fn classify(&self, e: reqwest::Error, elapsed_ms: u64) -> FetchError {
        if e.is_timeout() {
            FetchError::Timeout { elapsed_ms }
        } else if e.is_redirect() {
            FetchError::TooManyRedirects {
                limit: self.config.max_redirects,
            }
        } else if e.is_connect() {
            FetchError::Connect(error_chain(&e))
        } else if e.is_builder() {
            FetchError::InvalidUrl(error_chain(&e))
        } else {
            FetchError::Other(error_chain(&e))
        }
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
