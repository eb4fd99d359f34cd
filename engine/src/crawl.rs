//! The crawl loop: take a lease, take a request, send it; on each answer, store the items,
//! schedule the new links and adjust the host's pace; stop when nothing is queued or in flight.

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::frontier::{Dispatched, Frontier, Kind, PolitenessConfig, Popped};
use crate::pool::{Lease, Pool};
use crate::robots::{self, Rules, Verdict};
use crate::scope::Scope;
use crate::sink::ItemSink;
use crate::summary::{Summary, WorkerShare};
use common::{FetchError, ParseResult, Request, RobotsFile, canonicalize, fingerprint, transport};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tarpc::client::RpcError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

/// What a worker answered.
enum Answer {
    Page(Result<ParseResult, FetchError>),
    Robots(Result<RobotsFile, FetchError>),
}

/// A finished RPC: the request, the lease it used, and what came back.
struct Completion {
    dispatched: Dispatched,
    lease: Lease,
    outcome: Result<Answer, RpcError>,
}

// A short-lived stack value, moved once per loop turn: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Event {
    Shutdown,
    Done(Completion),
    Lease(Option<Lease>),
    Wake,
    Progress,
}

/// One crawl's state: the frontier, the pool, the item sink and the running figures.
pub struct Crawl {
    config: EngineConfig,
    scope: Scope,
    frontier: Frontier,
    pool: Pool,
    sink: ItemSink,
    summary: Summary,
    /// The User-Agent token robots.txt groups are matched against.
    agent: String,
    /// Page fetches that ended (ok, failed, redirected); `--max_pages` counts these.
    outcomes: u64,
    pages_in_flight: u64,
    items_sent: u64,
}

/// The frontier's host key for a URL: host and port.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// How long a request waits before retry `attempt` (1-based): exponential, capped, with a
/// jitter derived from the URL so retries of many pages spread out, yet runs are repeatable.
fn retry_delay(url: &str, attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let base = base.min(Duration::from_secs(30));
    let jitter_ms = fingerprint(&format!("{url}#{attempt}")) % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter_ms)
}

impl Crawl {
    /// Prepares a crawl of `config.seeds` over `pool`, delivering items to `sink`.
    pub fn new(config: EngineConfig, pool: Pool, sink: ItemSink, items_at: String) -> Crawl {
        let scope = Scope::new(&config.allow_domains, &config.seeds);
        let frontier = Frontier::new(PolitenessConfig {
            per_host: config.per_host,
            delay: config.delay,
            max_backoff: config.max_backoff,
            max_pages_per_host: config.max_pages_per_host,
            robots: config.robots,
        });
        let agent = pool
            .workers()
            .first()
            .map_or(common::USER_AGENT_TOKEN.to_owned(), |w| {
                common::user_agent_token(&w.info().user_agent).to_owned()
            });
        let summary = Summary {
            items_at,
            ..Summary::default()
        };
        let mut crawl = Crawl {
            config,
            scope,
            frontier,
            pool,
            sink,
            summary,
            agent,
            outcomes: 0,
            pages_in_flight: 0,
            items_sent: 0,
        };
        let now = Instant::now();
        let (parser, spider) = match &crawl.config.spider {
            Some(s) => (s.start_rule.clone(), Some(s.hash)),
            None => (crawl.config.parser.clone(), None),
        };
        for seed in crawl.config.seeds.clone() {
            let request = Request {
                url: seed.to_string(),
                parser: parser.clone(),
                depth: 0,
                task: crawl.config.task.clone(),
                meta: Default::default(),
                spider,
            };
            crawl.push(&seed, request, 0, now);
        }
        crawl
    }

    fn push(&mut self, url: &Url, request: Request, redirects: u32, now: Instant) -> bool {
        self.frontier.push(
            request,
            host_key(url),
            fingerprint(url.as_str()),
            redirects,
            || robots::robots_url(url),
            now,
        )
    }

    /// Runs the crawl to the end, or until `shutdown`, and returns its summary. Items already
    /// fetched are delivered even when the crawl fails.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<Summary, EngineError> {
        let started = Instant::now();
        info!(
            seeds = self.config.seeds.len(),
            domains = ?self.scope.domains(),
            workers = self.pool.workers().len(),
            robots = self.config.robots,
            "crawl started"
        );
        match self.crawl_loop(&shutdown).await {
            Ok(stopped) => self.finish(started, stopped).await,
            Err(error) => {
                // Deliver what was fetched; report the first failure, or the sink's own.
                match self.sink.finish().await {
                    Ok(saved) => info!(saved, "items delivered before stopping"),
                    Err(sink_error) => warn!(%sink_error, "items could not all be delivered"),
                }
                Err(error)
            }
        }
    }

    async fn crawl_loop(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<&'static str, EngineError> {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Completion>> =
            FuturesUnordered::new();
        let mut interrupted = false;
        let mut progress = tokio::time::interval(self.config.progress_interval);
        progress.tick().await;
        loop {
            let now = Instant::now();
            let at_max_pages = self
                .config
                .max_pages
                .is_some_and(|m| self.outcomes + self.pages_in_flight >= m);
            let can_dispatch = !interrupted
                && !at_max_pages
                && in_flight.len() < self.config.concurrency
                && self.frontier.has_ready(now);
            let wake = (!interrupted && !at_max_pages)
                .then(|| self.frontier.next_wake())
                .flatten();
            if in_flight.is_empty() && !can_dispatch && wake.is_none() {
                break;
            }
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !interrupted => Event::Shutdown,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Event::Done(done),
                lease = self.pool.acquire(), if can_dispatch => Event::Lease(lease),
                _ = sleep_until(wake), if !can_dispatch && wake.is_some() => Event::Wake,
                _ = progress.tick() => Event::Progress,
            };
            match event {
                Event::Shutdown => {
                    info!(
                        in_flight = in_flight.len(),
                        "interrupted: finishing requests in flight"
                    );
                    interrupted = true;
                }
                Event::Done(done) => self.complete(done).await?,
                Event::Lease(Some(lease)) => {
                    if let Some(call) = self.dispatch(lease) {
                        in_flight.push(call);
                    }
                }
                Event::Lease(None) => {
                    return Err(EngineError::AllWorkersDown {
                        queued: self.frontier.queued() as u64,
                    });
                }
                Event::Wake => {}
                Event::Progress => self.log_progress(in_flight.len()),
            }
        }
        Ok(if interrupted {
            "interrupted"
        } else if self.frontier.queued() > 0 {
            "max_pages"
        } else {
            "done"
        })
    }

    fn dispatch(&mut self, lease: Lease) -> Option<BoxFuture<'static, Completion>> {
        let now = Instant::now();
        let dispatched = loop {
            match self.frontier.pop(now) {
                None => {
                    self.pool.release(lease);
                    return None;
                }
                Some(Popped::Skip(d, reason)) => {
                    debug!(url = %d.request.url, reason, "not fetched");
                    *self.summary.skipped.entry(reason.into()).or_default() += 1;
                }
                Some(Popped::Send(d)) => break d,
            }
        };
        let lease = match dispatched.last_worker {
            Some(avoid) => self.pool.prefer_other(lease, avoid),
            None => lease,
        };
        lease.worker().requests.fetch_add(1, Ordering::Relaxed);
        let client = lease.client().clone();
        // A worker marked down (missed heartbeats, broken connection) ends its calls at once,
        // so their requests can go elsewhere instead of waiting out the deadline.
        let down = lease.down_signal();
        let ctx = transport::deadline(self.config.rpc_timeout);
        let request = dispatched.request.clone();
        debug!(url = %request.url, kind = ?dispatched.kind, worker = %lease.worker().addr, "dispatch");
        Some(match dispatched.kind {
            Kind::Page => {
                self.pages_in_flight += 1;
                Box::pin(async move {
                    let outcome = tokio::select! {
                        r = client.crawl(ctx, request) => r.map(Answer::Page),
                        _ = down.cancelled() => Err(RpcError::Shutdown),
                    };
                    Completion {
                        dispatched,
                        lease,
                        outcome,
                    }
                })
            }
            Kind::Robots => Box::pin(async move {
                let outcome = tokio::select! {
                    r = client.robots(ctx, request.url) => r.map(Answer::Robots),
                    _ = down.cancelled() => Err(RpcError::Shutdown),
                };
                Completion {
                    dispatched,
                    lease,
                    outcome,
                }
            }),
        })
    }

    async fn complete(&mut self, done: Completion) -> Result<(), EngineError> {
        let now = Instant::now();
        let Completion {
            dispatched,
            lease,
            outcome,
        } = done;
        let worker = lease.worker().index;
        self.frontier.done(&dispatched.host, now);
        if dispatched.kind == Kind::Page {
            self.pages_in_flight -= 1;
        }
        let answer = match outcome {
            Ok(answer) => {
                self.pool.release(lease);
                answer
            }
            Err(error) => {
                let addr = lease.worker().addr.clone();
                match error {
                    // The worker is alive but slow or refused the call: keep it.
                    RpcError::DeadlineExceeded | RpcError::Server(_) => self.pool.release(lease),
                    // The connection is gone.
                    _ => self.pool.retire(lease, &error.to_string()),
                }
                self.worker_failed(dispatched, worker, &addr, &error, now);
                return Ok(());
            }
        };
        match answer {
            Answer::Robots(result) => self.robots_answer(dispatched, result, now),
            Answer::Page(Ok(result)) => {
                self.outcomes += 1;
                self.frontier.recovered(&dispatched.host);
                match &result.redirect {
                    Some(target) => {
                        self.summary.pages_redirected += 1;
                        self.follow_redirect(&dispatched, target, now);
                    }
                    None => {
                        self.summary.pages_ok += 1;
                        self.summary.items_dropped += u64::from(result.items_dropped);
                        self.follow(&dispatched.request, &result, now);
                        self.items_sent += result.items.len() as u64;
                        self.sink.send(result.items).await?;
                    }
                }
            }
            Answer::Page(Err(FetchError::UnknownSpider(_))) => {
                // The worker restarted or forgot the spider: send it again, then retry there
                // or elsewhere, as for any worker failure.
                self.reload_spider(worker).await;
                let addr = self.pool.workers()[worker].addr.clone();
                self.worker_failed(
                    dispatched,
                    worker,
                    &addr,
                    &"the worker did not have the spider",
                    now,
                );
            }
            Answer::Page(Err(error)) => self.page_failed(dispatched, worker, error, now),
        }
        Ok(())
    }

    async fn reload_spider(&self, worker: usize) {
        let (Some(spider), Some(conn)) = (&self.config.spider, self.pool.workers().get(worker))
        else {
            return;
        };
        let ctx = transport::deadline(self.config.connect_timeout);
        let client = conn.client();
        match client.load_spider(ctx, spider.source.clone()).await {
            Ok(Ok(_)) => info!(worker = %conn.addr, "spider sent again"),
            Ok(Err(why)) => warn!(worker = %conn.addr, %why, "worker refused the spider"),
            Err(e) => warn!(worker = %conn.addr, cause = %e, "could not send the spider"),
        }
    }

    /// A page fetch the site failed: slow the host on 429/503, retry what may pass next time.
    fn page_failed(&mut self, mut d: Dispatched, worker: usize, error: FetchError, now: Instant) {
        if let FetchError::Http {
            status: 429 | 503,
            retry_after_secs,
        } = &error
        {
            self.frontier
                .throttle(&d.host, retry_after_secs.map(Duration::from_secs), now);
        }
        if error.is_retryable() && d.attempts < self.config.retries {
            d.attempts += 1;
            d.last_worker = Some(worker);
            self.summary.retries += 1;
            let at = now + retry_delay(&d.request.url, d.attempts);
            debug!(url = %d.request.url, %error, attempt = d.attempts, "retrying later");
            self.frontier.defer(d, at);
        } else {
            self.outcomes += 1;
            debug!(url = %d.request.url, %error, "page failed");
            *self.summary.pages_failed.entry(error.reason()).or_default() += 1;
        }
    }

    /// Applies a host's robots.txt, or schedules another try when the server failed.
    fn robots_answer(
        &mut self,
        mut d: Dispatched,
        result: Result<RobotsFile, FetchError>,
        now: Instant,
    ) {
        let verdict = match &result {
            Ok(file) => robots::interpret(file, &self.agent),
            Err(_) => Verdict::TryLater,
        };
        match verdict {
            Verdict::Known(rules, crawl_delay) => {
                debug!(host = %d.host, ?rules, ?crawl_delay, "robots.txt");
                self.summary.robots_fetched += 1;
                self.frontier.robots_known(&d.host, rules, crawl_delay, now);
            }
            Verdict::TryLater if d.attempts < self.config.retries => {
                d.attempts += 1;
                let at = now + retry_delay(&d.request.url, d.attempts);
                info!(host = %d.host, attempt = d.attempts, "robots.txt unavailable; trying the host again later");
                self.frontier.defer(d, at);
            }
            Verdict::TryLater => {
                warn!(host = %d.host, "robots.txt stayed unavailable; not crawling the host");
                self.frontier
                    .robots_known(&d.host, Rules::DisallowAll, None, now);
            }
        }
    }

    /// Sends a request a worker failed to another worker, up to a bound.
    fn worker_failed(
        &mut self,
        mut d: Dispatched,
        worker: usize,
        addr: &str,
        error: &dyn std::fmt::Display,
        now: Instant,
    ) {
        d.worker_failures += 1;
        d.last_worker = Some(worker);
        if d.worker_failures <= self.config.max_worker_failures {
            debug!(url = %d.request.url, %addr, %error, "worker failed the request; requeued");
            self.summary.worker_retries += 1;
            self.frontier.requeue_front(d, now);
            return;
        }
        warn!(url = %d.request.url, %addr, %error, "request failed on too many workers; giving up");
        match d.kind {
            Kind::Page => {
                self.outcomes += 1;
                *self
                    .summary
                    .pages_failed
                    .entry("worker_lost".into())
                    .or_default() += 1;
            }
            Kind::Robots => self
                .frontier
                .robots_known(&d.host, Rules::DisallowAll, None, now),
        }
    }

    /// Schedules a redirect's target like a link, at the same depth, within the hop limit.
    fn follow_redirect(&mut self, from: &Dispatched, target: &str, now: Instant) {
        let Ok(url) = canonicalize(target, None) else {
            *self
                .summary
                .pages_failed
                .entry("bad_redirect".into())
                .or_default() += 1;
            return;
        };
        if from.redirects >= self.config.max_redirects {
            *self
                .summary
                .pages_failed
                .entry("too_many_redirects".into())
                .or_default() += 1;
            return;
        }
        if !self.scope.allows(&url) {
            *self
                .summary
                .skipped
                .entry("redirect_offsite".into())
                .or_default() += 1;
            return;
        }
        if url.as_str().len() > self.config.max_url_len {
            self.summary.links_over_limit += 1;
            return;
        }
        let request = Request {
            url: url.to_string(),
            ..from.request.clone()
        };
        self.push(&url, request, from.redirects + 1, now);
    }

    /// Schedules the links of a parsed page that are new, in scope and within the limits.
    fn follow(&mut self, parent: &Request, result: &ParseResult, now: Instant) {
        let depth = parent.depth + 1;
        if self.config.max_depth.is_some_and(|max| depth > max) {
            self.summary.links_over_limit += result.requests.len() as u64;
            return;
        }
        for link in &result.requests {
            // Links come from a peer: check them as untrusted input.
            let Ok(url) = canonicalize(&link.url, None) else {
                continue;
            };
            if url.as_str().len() > self.config.max_url_len {
                self.summary.links_over_limit += 1;
                continue;
            }
            if !self.scope.allows(&url) {
                self.summary.links_offsite += 1;
                continue;
            }
            let request = Request {
                url: url.to_string(),
                parser: link.parser.clone().unwrap_or_else(|| parent.parser.clone()),
                depth,
                task: parent.task.clone(),
                meta: parent.meta.clone(),
                spider: parent.spider,
            };
            self.push(&url, request, 0, now);
        }
    }

    fn log_progress(&self, in_flight: usize) {
        info!(
            pages_ok = self.summary.pages_ok,
            failed = self.summary.failed_total(),
            queued = self.frontier.queued(),
            in_flight,
            items = self.items_sent,
            workers_up = self.pool.workers_up(),
            "progress"
        );
    }

    async fn finish(self, started: Instant, stopped: &str) -> Result<Summary, EngineError> {
        let Crawl {
            sink,
            mut summary,
            frontier,
            pool,
            ..
        } = self;
        summary.items_saved = sink.finish().await?;
        let elapsed = started.elapsed().as_secs_f64();
        summary.elapsed_secs = elapsed;
        let pages = summary.pages_ok + summary.failed_total() + summary.pages_redirected;
        summary.pages_per_sec = if elapsed > 0.0 {
            pages as f64 / elapsed
        } else {
            0.0
        };
        summary.urls_seen = frontier.seen() as u64;
        summary.left_in_queue = frontier.queued() as u64;
        summary.stopped = stopped.into();
        summary.peak_rss_mb = crate::summary::peak_rss_mb();
        summary.workers = pool
            .workers()
            .iter()
            .map(|w| WorkerShare {
                addr: w.addr.clone(),
                requests: w.requests.load(Ordering::Relaxed),
                down: w.is_down(),
            })
            .collect();
        Ok(summary)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_stays_bounded() {
        let d1 = retry_delay("http://a.test/", 1);
        let d2 = retry_delay("http://a.test/", 2);
        let d9 = retry_delay("http://a.test/", 9);
        assert!(
            d1 >= Duration::from_millis(500) && d1 < Duration::from_millis(751),
            "{d1:?}"
        );
        assert!(
            d2 >= Duration::from_secs(1) && d2 < Duration::from_millis(1_501),
            "{d2:?}"
        );
        assert!(d9 <= Duration::from_secs(45), "{d9:?}");
        assert_eq!(d1, retry_delay("http://a.test/", 1), "repeatable");
    }
}
