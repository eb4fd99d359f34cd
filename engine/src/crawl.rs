//! The crawl loop: take a lease, take a request, send it; on each answer, store the items and
//! schedule the new links; stop when nothing is queued or in flight.

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::frontier::{Dispatched, Frontier};
use crate::pool::{Lease, Pool};
use crate::scope::Scope;
use crate::sink::ItemSink;
use crate::summary::{Summary, WorkerShare};
use common::{FetchError, ParseResult, Request, canonicalize, fingerprint, transport};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tarpc::client::RpcError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

/// A finished RPC: the request, the lease it used, and what came back.
struct Completion {
    dispatched: Dispatched,
    lease: Lease,
    outcome: Result<Result<ParseResult, FetchError>, RpcError>,
}

// A short-lived stack value, moved once per loop turn: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Event {
    Shutdown,
    Done(Completion),
    Lease(Option<Lease>),
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
    /// Requests sent for the first time; `--max_pages` counts these.
    dispatched: u64,
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

impl Crawl {
    /// Prepares a crawl of `config.seeds` over `pool`, delivering items to `sink`.
    pub fn new(config: EngineConfig, pool: Pool, sink: ItemSink, items_at: String) -> Crawl {
        let scope = Scope::new(&config.allow_domains, &config.seeds);
        let mut frontier = Frontier::new(config.per_host);
        for seed in &config.seeds {
            let request = Request {
                url: seed.to_string(),
                parser: config.parser.clone(),
                depth: 0,
                task: config.task.clone(),
                meta: Default::default(),
            };
            frontier.push(request, host_key(seed), fingerprint(seed.as_str()));
        }
        let summary = Summary {
            items_at,
            ..Summary::default()
        };
        Crawl {
            config,
            scope,
            frontier,
            pool,
            sink,
            summary,
            dispatched: 0,
            items_sent: 0,
        }
    }

    /// Runs the crawl to the end, or until `shutdown`, and returns its summary.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<Summary, EngineError> {
        let started = Instant::now();
        info!(seeds = self.config.seeds.len(), domains = ?self.scope.domains(), workers = self.pool.workers().len(), "crawl started");
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Completion>> =
            FuturesUnordered::new();
        let mut interrupted = false;
        let mut progress = tokio::time::interval(self.config.progress_interval);
        progress.tick().await;
        loop {
            let at_max_pages = self.config.max_pages.is_some_and(|m| self.dispatched >= m);
            let can_dispatch = !interrupted
                && !at_max_pages
                && in_flight.len() < self.config.concurrency
                && self.frontier.has_ready();
            if in_flight.is_empty() && !can_dispatch {
                break;
            }
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !interrupted => Event::Shutdown,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Event::Done(done),
                lease = self.pool.acquire(), if can_dispatch => Event::Lease(lease),
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
                Event::Progress => self.log_progress(in_flight.len()),
            }
        }
        let stopped = if interrupted {
            "interrupted"
        } else if self.frontier.queued() > 0 {
            "max_pages"
        } else {
            "done"
        };
        self.finish(started, stopped).await
    }

    fn dispatch(&mut self, lease: Lease) -> Option<BoxFuture<'static, Completion>> {
        let Some(dispatched) = self.frontier.pop() else {
            self.pool.release(lease);
            return None;
        };
        if dispatched.worker_failures == 0 {
            self.dispatched += 1;
        }
        let client = lease.worker().client.clone();
        let ctx = transport::deadline(self.config.rpc_timeout);
        let request = dispatched.request.clone();
        debug!(url = %request.url, worker = %lease.worker().addr, "dispatch");
        Some(Box::pin(async move {
            let outcome = client.crawl(ctx, request).await;
            Completion {
                dispatched,
                lease,
                outcome,
            }
        }))
    }

    async fn complete(&mut self, done: Completion) -> Result<(), EngineError> {
        let Completion {
            dispatched,
            lease,
            outcome,
        } = done;
        self.frontier.done(&dispatched.host);
        match outcome {
            Ok(Ok(result)) => {
                self.pool.release(lease);
                self.summary.pages_ok += 1;
                self.follow(&dispatched.request, &result);
                self.items_sent += result.items.len() as u64;
                self.sink.send(result.items).await?;
            }
            Ok(Err(error)) => {
                self.pool.release(lease);
                debug!(url = %dispatched.request.url, %error, "page failed");
                *self.summary.pages_failed.entry(error.reason()).or_default() += 1;
            }
            Err(error) => {
                let worker = lease.worker().addr.clone();
                match error {
                    // The worker is alive but slow or refused the call: keep it.
                    RpcError::DeadlineExceeded | RpcError::Server(_) => self.pool.release(lease),
                    // The connection is gone.
                    _ => self.pool.retire(lease),
                }
                self.worker_failed(dispatched, &worker, &error);
            }
        }
        Ok(())
    }

    /// Moves a request a worker failed to the front of the queue, up to a bound.
    fn worker_failed(&mut self, mut dispatched: Dispatched, worker: &str, error: &RpcError) {
        dispatched.worker_failures += 1;
        if dispatched.worker_failures > self.config.max_worker_failures {
            warn!(url = %dispatched.request.url, %worker, %error, "request failed on too many workers; giving up");
            *self
                .summary
                .pages_failed
                .entry("worker_lost".into())
                .or_default() += 1;
        } else {
            debug!(url = %dispatched.request.url, %worker, %error, "worker failed the request; requeued");
            self.summary.worker_retries += 1;
            self.frontier.requeue_front(dispatched);
        }
    }

    /// Schedules the links of a parsed page that are new, in scope and within the limits.
    fn follow(&mut self, parent: &Request, result: &ParseResult) {
        // The page reached through a redirect is done too.
        if let Ok(final_url) = canonicalize(&result.fetch.final_url, None) {
            self.frontier.mark_seen(fingerprint(final_url.as_str()));
        }
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
            };
            self.frontier
                .push(request, host_key(&url), fingerprint(url.as_str()));
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

    async fn finish(mut self, started: Instant, stopped: &str) -> Result<Summary, EngineError> {
        self.summary.items_saved = self.sink.finish().await?;
        let elapsed = started.elapsed().as_secs_f64();
        self.summary.elapsed_secs = elapsed;
        let pages = self.summary.pages_ok + self.summary.failed_total();
        self.summary.pages_per_sec = if elapsed > 0.0 {
            pages as f64 / elapsed
        } else {
            0.0
        };
        self.summary.urls_seen = self.frontier.seen() as u64;
        self.summary.left_in_queue = self.frontier.queued() as u64;
        self.summary.stopped = stopped.into();
        self.summary.workers = self
            .pool
            .workers()
            .iter()
            .map(|w| WorkerShare {
                addr: w.addr.clone(),
                requests: w.requests.load(Ordering::Relaxed),
                down: w.is_down(),
            })
            .collect();
        Ok(self.summary)
    }
}
