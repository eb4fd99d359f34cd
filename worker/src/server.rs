//! The `CrawlService` implementation: fetch, decode, parse, answer.

use crate::charset;
use crate::config::WorkerConfig;
use crate::fetch::{ClientBuildError, Fetcher};
use crate::parsers::{Budget, Extracted, Page, ParseError, Parser, Registry};
use crate::spider::{self, CompiledSpider};
use common::activity::{Activity, Working};
use common::{
    CrawlService, FetchError, FetchFacts, LoadSpiderError, ParseResult, ParserInfo, Request,
    RobotsFile, WorkerInfo, WorkerStatus,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tarpc::context::Context;
use tokio::sync::Semaphore;
use tracing::{debug, info};
use url::Url;

/// Spiders a worker keeps compiled at once; the oldest is forgotten past this, and an engine
/// that still uses it sends it again.
const MAX_SPIDERS: usize = 64;

/// The deadline of a call that names none (in-process callers and tests).
const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest encoded result a worker answers with: the frame limit, less room for tarpc's
/// envelope around it.
const MAX_RESULT_FRAME: u64 = (common::transport::MAX_FRAME_BYTES - 64 * 1024) as u64;

/// Serves crawl requests; clones share one HTTP client, registry, spider cache and
/// concurrency limit.
#[derive(Clone)]
pub struct CrawlServer {
    shared: Arc<Shared>,
}

struct Shared {
    fetcher: Fetcher,
    parsers: Registry,
    spiders: Mutex<SpiderCache>,
    permits: Semaphore,
    info: WorkerInfo,
    max_links: usize,
    max_result_bytes: usize,
    started: Instant,
    activity: Activity,
    done: AtomicU64,
    failed: AtomicU64,
    metrics: crate::metrics::WorkerMetrics,
    /// The requests in flight, by task and age, for the status report.
    requests: Arc<crate::in_flight::InFlight>,
    /// The browser pages are rendered in, when this worker renders (`--render`).
    renderer: std::sync::OnceLock<Arc<crate::render::Renderer>>,
}

#[derive(Default)]
struct SpiderCache {
    by_hash: HashMap<u64, Arc<CompiledSpider>>,
    order: VecDeque<u64>,
}

/// What turns a page into items: a built-in parser, or a rule of a loaded spider.
enum Job {
    Builtin(Arc<dyn Parser>),
    Spider(Arc<CompiledSpider>),
}

impl Job {
    fn accepts(&self, content_type: &str) -> bool {
        match self {
            Job::Builtin(p) => p.accepts(content_type),
            Job::Spider(_) => crate::fetch::is_html(content_type),
        }
    }

    fn run(&self, page: &Page<'_>) -> Result<Extracted, ParseError> {
        match self {
            Job::Builtin(p) => p.parse(page),
            Job::Spider(s) => {
                let rule = s
                    .rule(&page.request.parser)
                    .ok_or_else(|| ParseError::Failed {
                        parser: format!("spider:{}", s.spec.name),
                        message: format!("no rule {:?}", page.request.parser),
                    })?;
                Ok(spider::run(s, rule, page)?)
            }
        }
    }
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
            node_id: common::registry::node_id("worker"),
            version: common::VERSION.into(),
            concurrency: config.concurrency.max(1),
            user_agent: config.fetch.user_agent.clone(),
            parsers: parsers.list(),
            render_tabs: 0,
        };
        Ok(CrawlServer {
            shared: Arc::new(Shared {
                fetcher: Fetcher::new(config.fetch.clone())?,
                parsers,
                spiders: Mutex::default(),
                permits: Semaphore::new(config.concurrency.max(1) as usize),
                info,
                max_links: config.max_links_per_page,
                max_result_bytes: config.max_result_bytes,
                started: Instant::now(),
                activity: Activity::default(),
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                metrics: crate::metrics::WorkerMetrics::default(),
                requests: Arc::default(),
                renderer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Starts a browser (and its guard proxy) with this worker's address policy, limits,
    /// archive and User-Agent, and renders the pages that ask for it there.
    pub async fn start_renderer(
        self,
        settings: crate::render::RenderSettings,
    ) -> Result<Self, crate::render::RenderError> {
        let renderer = crate::render::Renderer::start(settings, &self.shared.fetcher).await?;
        Ok(self.with_renderer(Arc::new(renderer)))
    }

    /// This worker renders the pages that ask for it in `renderer`'s browser.
    pub fn with_renderer(self, renderer: Arc<crate::render::Renderer>) -> Self {
        // Set once, before the server is shared.
        let _ = self.shared.renderer.set(renderer);
        self
    }

    /// What this worker reports about itself: built-in parsers and loaded spiders.
    pub fn worker_info(&self) -> WorkerInfo {
        let mut info = self.shared.info.clone();
        info.render_tabs = self.shared.renderer.get().map_or(0, |r| r.tabs());
        if let Ok(cache) = self.shared.spiders.lock() {
            for hash in &cache.order {
                if let Some(s) = cache.by_hash.get(hash) {
                    let rules: Vec<&str> = s.rules().iter().map(|r| r.name.as_str()).collect();
                    info.parsers.push(ParserInfo {
                        name: format!("spider:{}", s.spec.name),
                        description: format!(
                            "declarative spider {hash:016x}, rules {}",
                            rules.join(", ")
                        ),
                    });
                }
            }
        }
        info
    }

    /// The worker's Prometheus metrics.
    pub fn metrics(&self) -> &crate::metrics::WorkerMetrics {
        &self.shared.metrics
    }

    /// Health and load; the body of the `status` RPC.
    pub fn worker_status(&self) -> WorkerStatus {
        let s = &self.shared;
        let (in_flight_by_task, oldest_in_flight_secs) = s.requests.report();
        WorkerStatus {
            node_id: s.info.node_id.clone(),
            version: s.info.version.clone(),
            uptime_secs: s.started.elapsed().as_secs(),
            in_flight: s.activity.in_flight(),
            done: s.done.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            paused: s.activity.is_draining(),
            in_flight_by_task,
            oldest_in_flight_secs,
            renders: s.renderer.get().is_some(),
        }
    }

    /// Stops taking work and waits (at most `timeout`) for the requests in flight; the engine
    /// sends refused requests to other workers.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.shared.activity.drain(timeout).await
    }

    /// Waits for one of the worker's `--concurrency` slots.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, FetchError> {
        self.shared
            .permits
            .acquire()
            .await
            .map_err(|_| FetchError::Other("worker is shutting down".into()))
    }

    fn begin(&self) -> Result<Working, FetchError> {
        self.shared
            .activity
            .start()
            .ok_or_else(|| FetchError::Unavailable("shutting down".into()))
    }

    /// Compiles `source` and keeps it; the body of the `load_spider` RPC.
    pub fn load_spider_source(&self, source: &str) -> Result<u64, LoadSpiderError> {
        let hash = spider::spider_hash(source);
        let mut cache =
            self.shared.spiders.lock().map_err(|_| {
                LoadSpiderError::Unavailable("its spider cache was poisoned".into())
            })?;
        if cache.by_hash.contains_key(&hash) {
            return Ok(hash);
        }
        let compiled = spider::compile("(sent by the engine)", source)
            .map_err(|e| LoadSpiderError::Invalid(e.to_string()))?;
        info!(spider = %compiled.spec.name, hash = format!("{hash:016x}"), "spider loaded");
        cache.by_hash.insert(hash, Arc::new(compiled));
        cache.order.push_back(hash);
        while cache.order.len() > MAX_SPIDERS {
            if let Some(old) = cache.order.pop_front() {
                cache.by_hash.remove(&old);
            }
        }
        Ok(hash)
    }

    fn job(&self, request: &Request) -> Result<Job, FetchError> {
        match request.spider {
            Some(hash) => {
                let cache = self
                    .shared
                    .spiders
                    .lock()
                    .map_err(|_| FetchError::Other("spider cache poisoned".into()))?;
                let spider = cache
                    .by_hash
                    .get(&hash)
                    .cloned()
                    .ok_or(FetchError::UnknownSpider(hash))?;
                if spider.rule(&request.parser).is_none() {
                    return Err(FetchError::UnknownParser(request.parser.clone()));
                }
                Ok(Job::Spider(spider))
            }
            None => self
                .shared
                .parsers
                .get(&request.parser)
                .map(Job::Builtin)
                .ok_or_else(|| FetchError::UnknownParser(request.parser.clone())),
        }
    }

    /// Fetches and parses one request, within the default RPC deadline.
    pub async fn crawl_one(&self, request: Request) -> Result<ParseResult, FetchError> {
        self.crawl_until(request, None, Instant::now() + DEFAULT_DEADLINE)
            .await
    }

    /// Fetches and parses one request, abandoning the parse at `deadline` (when the engine
    /// stops waiting for it); the body of the `crawl` RPC.
    pub async fn crawl_until(
        &self,
        request: Request,
        render: Option<common::RenderRequest>,
        deadline: Instant,
    ) -> Result<ParseResult, FetchError> {
        let _working = self.begin()?;
        let _tracked = self.shared.requests.track(&request.task);
        let job = self.job(&request)?;
        let url = Url::parse(&request.url)
            .map_err(|e| FetchError::InvalidUrl(format!("{}: {e}", request.url)))?;
        let _permit = self.permit().await?;
        let fetched = match &render {
            Some(how) => self.render(&url, how, deadline).await?,
            None => {
                self.shared
                    .fetcher
                    .fetch(&url, |ct| job.accepts(ct))
                    .await?
            }
        };
        let facts = FetchFacts {
            final_url: fetched.final_url.to_string(),
            status: fetched.status,
            bytes: fetched.body.len() as u64,
            elapsed_ms: fetched.elapsed_ms,
            rendered: render.is_some(),
        };
        if let Some(target) = fetched.redirect {
            return Ok(ParseResult {
                fetch: facts,
                redirect: Some(target.to_string()),
                ..ParseResult::default()
            });
        }
        let max_links = self.shared.max_links;
        let max_bytes = self.shared.max_result_bytes;
        let started = Instant::now();
        // Parsing is CPU work; keep it off the async threads. A panic in a parser becomes an
        // error for this page, never a dead worker. The thread cannot be cancelled, so the
        // parse checks the deadline itself and gives up there.
        let extracted = tokio::task::spawn_blocking(move || {
            let (html, _) = charset::decode(&fetched.body, fetched.content_type.as_deref());
            let budget = Budget::new(max_bytes, Some(deadline));
            let page = Page {
                request: &request,
                url: &fetched.final_url,
                html: &html,
                max_links,
                budget: &budget,
            };
            job.run(&page)
        })
        .await
        .map_err(|e| FetchError::Parse(format!("parser panicked: {e}")))?
        .map_err(|e| match e {
            ParseError::Overtime(_) => FetchError::Timeout {
                elapsed_ms: started.elapsed().as_millis() as u64,
            },
            failed @ ParseError::Failed { .. } => FetchError::Parse(failed.to_string()),
        })?;
        debug!(url = %facts.final_url, items = extracted.items.len(), links = extracted.links.len(), truncated = extracted.truncated, "parsed");
        let result = ParseResult {
            items: extracted.items,
            requests: extracted.links,
            fetch: facts,
            redirect: None,
            items_dropped: extracted.dropped,
            items_truncated: extracted.truncated,
            yields: extracted.yields,
        };
        // An answer over the frame limit would break the connection and every call on it;
        // a parser that ignored its budget gets a typed error instead.
        // So would one the engine must refuse to decode (too many elements).
        let bytes = common::codec::encoded_len(&result);
        let elements: usize = result.items.iter().map(common::Item::elements).sum();
        if bytes > MAX_RESULT_FRAME || elements > common::budget::MAX_ELEMENTS {
            return Err(FetchError::ResultTooLarge {
                bytes,
                elements: elements as u64,
                limit: MAX_RESULT_FRAME,
            });
        }
        Ok(result)
    }

    /// Renders `url` in the browser, by `deadline`, as a fetched page: its serialised DOM as
    /// the body, for the same parsers as a plain fetch.
    async fn render(
        &self,
        url: &Url,
        how: &common::RenderRequest,
        deadline: Instant,
    ) -> Result<crate::fetch::Fetched, FetchError> {
        let renderer = self.shared.renderer.get().ok_or(FetchError::NoRenderer)?;
        // The page itself passes the guard as a plain fetch would; its subrequests pass it
        // in the browser's proxy.
        self.shared
            .fetcher
            .config()
            .addresses
            .check_url(url)
            .map_err(|b| FetchError::BlockedAddress(b.to_string()))?;
        let rendered = renderer.render(url.as_str(), how, deadline).await?;
        if let Some(target) = &rendered.redirect {
            // Reported as a plain fetch's redirect: the engine decides whether to follow.
            let target = Url::parse(target)
                .map_err(|e| FetchError::Other(format!("the page redirects to {target}: {e}")))?;
            return Ok(crate::fetch::Fetched {
                final_url: url.clone(),
                status: rendered.status,
                content_type: None,
                redirect: Some(target),
                body: Vec::new(),
                elapsed_ms: rendered.render_ms,
            });
        }
        if !(200..300).contains(&rendered.status) {
            // A 404 or a 5xx rendered is a failed fetch, as for a plain one (5xx is tried
            // again).
            return Err(FetchError::Http {
                status: rendered.status,
                retry_after_secs: None,
            });
        }
        let final_url = Url::parse(&rendered.final_url).unwrap_or_else(|_| url.clone());
        let limit = self.shared.fetcher.config().max_body_bytes;
        if rendered.html.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(crate::fetch::Fetched {
            final_url,
            status: rendered.status,
            content_type: Some("text/html; charset=utf-8".into()),
            redirect: None,
            body: rendered.html.into_bytes(),
            elapsed_ms: rendered.render_ms,
        })
    }

    /// Fetches a robots.txt; the body of the `robots` RPC.
    pub async fn robots_one(&self, url: String) -> Result<RobotsFile, FetchError> {
        let _working = self.begin()?;
        let url = Url::parse(&url).map_err(|e| FetchError::InvalidUrl(format!("{url}: {e}")))?;
        let _permit = self.permit().await?;
        self.shared.fetcher.fetch_robots(&url).await
    }
}

impl CrawlService for CrawlServer {
    async fn crawl(
        self,
        ctx: Context,
        request: Request,
        render: Option<common::RenderRequest>,
    ) -> Result<ParseResult, FetchError> {
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        let in_flight = metrics.start();
        let result = self.crawl_until(request, render, ctx.deadline).await;
        drop(in_flight);
        let counter = match &result {
            Ok(page) => {
                metrics.finished(
                    "ok".into(),
                    started.elapsed(),
                    page.fetch.bytes,
                    page.items.len(),
                );
                &self.shared.done
            }
            Err(error) => {
                metrics.finished(error.reason(), started.elapsed(), 0, 0);
                &self.shared.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn robots(self, _: Context, url: String) -> Result<RobotsFile, FetchError> {
        self.robots_one(url).await
    }

    async fn load_spider(self, _: Context, source: String) -> Result<u64, LoadSpiderError> {
        // Compiling selectors is quick but CPU work all the same.
        tokio::task::spawn_blocking(move || self.load_spider_source(&source))
            .await
            .map_err(|e| LoadSpiderError::Unavailable(format!("the load failed: {e}")))?
    }

    async fn info(self, _: Context) -> WorkerInfo {
        self.worker_info()
    }

    async fn status(self, _: Context) -> WorkerStatus {
        self.worker_status()
    }
}
