//! The `CrawlService` implementation: fetch, decode, parse, answer.

use crate::charset;
use crate::config::WorkerConfig;
use crate::fetch::{ClientBuildError, Fetcher};
use crate::parsers::{Page, Registry};
use common::{CrawlService, FetchError, FetchFacts, ParseResult, Request, RobotsFile, WorkerInfo};
use std::sync::Arc;
use tarpc::context::Context;
use tokio::sync::Semaphore;
use tracing::debug;
use url::Url;

/// Serves crawl requests; clones share one HTTP client, registry and concurrency limit.
#[derive(Clone)]
pub struct CrawlServer {
    shared: Arc<Shared>,
}

struct Shared {
    fetcher: Fetcher,
    parsers: Registry,
    permits: Semaphore,
    info: WorkerInfo,
    max_links: usize,
}

impl CrawlServer {
    /// Builds a server from `config` with the built-in parsers.
    pub fn new(config: &WorkerConfig) -> Result<Self, ClientBuildError> {
        Self::with_registry(config, Registry::builtin())
    }

    /// Builds a server from `config` with the parsers in `parsers`.
    pub fn with_registry(
        config: &WorkerConfig,
        parsers: Registry,
    ) -> Result<Self, ClientBuildError> {
        let info = WorkerInfo {
            node_id: node_id(),
            version: common::VERSION.into(),
            concurrency: config.concurrency.max(1),
            user_agent: config.fetch.user_agent.clone(),
            parsers: parsers.list(),
        };
        Ok(CrawlServer {
            shared: Arc::new(Shared {
                fetcher: Fetcher::new(config.fetch.clone())?,
                parsers,
                permits: Semaphore::new(config.concurrency.max(1) as usize),
                info,
                max_links: config.max_links_per_page,
            }),
        })
    }

    /// What this worker reports about itself.
    pub fn worker_info(&self) -> &WorkerInfo {
        &self.shared.info
    }

    /// Fetches and parses one request; the body of the `crawl` RPC.
    pub async fn crawl_one(&self, request: Request) -> Result<ParseResult, FetchError> {
        let parser = self
            .shared
            .parsers
            .get(&request.parser)
            .ok_or_else(|| FetchError::UnknownParser(request.parser.clone()))?;
        let url = Url::parse(&request.url)
            .map_err(|e| FetchError::InvalidUrl(format!("{}: {e}", request.url)))?;
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .map_err(|_| FetchError::Other("worker is shutting down".into()))?;
        let fetched = self
            .shared
            .fetcher
            .fetch(&url, |ct| parser.accepts(ct))
            .await?;
        let facts = FetchFacts {
            final_url: fetched.final_url.to_string(),
            status: fetched.status,
            bytes: fetched.body.len() as u64,
            elapsed_ms: fetched.elapsed_ms,
        };
        if let Some(target) = fetched.redirect {
            return Ok(ParseResult {
                fetch: facts,
                redirect: Some(target.to_string()),
                ..ParseResult::default()
            });
        }
        let max_links = self.shared.max_links;
        // Parsing is CPU work; keep it off the async threads. A panic in a parser becomes an
        // error for this page, never a dead worker.
        let extracted = tokio::task::spawn_blocking(move || {
            let (html, _) = charset::decode(&fetched.body, fetched.content_type.as_deref());
            let page = Page {
                request: &request,
                url: &fetched.final_url,
                html: &html,
                max_links,
            };
            parser.parse(&page)
        })
        .await
        .map_err(|e| FetchError::Parse(format!("parser panicked: {e}")))?
        .map_err(|e| FetchError::Parse(e.to_string()))?;
        debug!(url = %facts.final_url, items = extracted.items.len(), links = extracted.links.len(), "parsed");
        Ok(ParseResult {
            items: extracted.items,
            requests: extracted.links,
            fetch: facts,
            redirect: None,
        })
    }

    /// Fetches a robots.txt; the body of the `robots` RPC.
    pub async fn robots_one(&self, url: String) -> Result<RobotsFile, FetchError> {
        let url = Url::parse(&url).map_err(|e| FetchError::InvalidUrl(format!("{url}: {e}")))?;
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .map_err(|_| FetchError::Other("worker is shutting down".into()))?;
        self.shared.fetcher.fetch_robots(&url).await
    }
}

impl CrawlService for CrawlServer {
    async fn crawl(self, _: Context, request: Request) -> Result<ParseResult, FetchError> {
        self.crawl_one(request).await
    }

    async fn robots(self, _: Context, url: String) -> Result<RobotsFile, FetchError> {
        self.robots_one(url).await
    }

    async fn info(self, _: Context) -> WorkerInfo {
        self.shared.info.clone()
    }
}

/// An id unique to this process: host name, pid and start time.
fn node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!("{host}-{}-{:x}", std::process::id(), started & 0xff_ffff)
}
