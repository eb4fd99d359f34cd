//! The crawl loop: take a lease, take a request, send it; on each answer, store the items,
//! schedule the new links and adjust the host's pace; stop when nothing is queued or in flight.

mod answers;
mod durable;

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::frontier::{Dispatched, Frontier, Kind, PolitenessConfig, Popped};
use crate::pool::{Lease, Pool};
use crate::robots;
use crate::scope::Scope;
use crate::sink::ItemSink;
use crate::state::{Restored, StateHandle};
use crate::summary::{Summary, WorkerShare};
use common::{FetchError, ParseResult, Request, RobotsFile, fingerprint, transport};
use durable::Pending;
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
    DrainOver,
    Progress,
}

/// How a crawl ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was left to fetch.
    Done,
    /// `--max_pages` was reached.
    MaxPages,
    /// A signal asked it to stop; the state can be resumed.
    Interrupted,
}

impl Stopped {
    fn as_str(self) -> &'static str {
        match self {
            Stopped::Done => "done",
            Stopped::MaxPages => "max_pages",
            Stopped::Interrupted => "interrupted",
        }
    }
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
    state: StateHandle,
    durable: bool,
    pending: Vec<Pending>,
    next_id: u64,
    next_seq: u64,
    /// Items acknowledged in earlier runs of a resumed crawl.
    items_saved_before: u64,
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
    /// Prepares a crawl over `pool`, delivering items to `sink` and recording its progress in
    /// `state` (which may be disabled).
    pub fn new(
        config: EngineConfig,
        pool: Pool,
        sink: ItemSink,
        items_at: String,
        state: StateHandle,
        durable: bool,
    ) -> Crawl {
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
        Crawl {
            config,
            scope,
            frontier,
            pool,
            sink,
            summary: Summary {
                items_at,
                ..Summary::default()
            },
            agent,
            outcomes: 0,
            pages_in_flight: 0,
            items_sent: 0,
            state,
            durable,
            pending: Vec::new(),
            next_id: 1,
            next_seq: 1,
            items_saved_before: 0,
        }
    }

    /// Runs the crawl to the end, or until `shutdown`, and returns how it stopped with its
    /// summary. Items already fetched are delivered (or kept in the state) even when it fails.
    pub async fn run(
        mut self,
        restored: Restored,
        shutdown: CancellationToken,
    ) -> Result<(Stopped, Summary), EngineError> {
        let started = Instant::now();
        self.start(restored).await?;
        info!(
            seeds = self.config.seeds.len(),
            domains = ?self.scope.domains(),
            workers = self.pool.workers().len(),
            robots = self.config.robots,
            "crawl started"
        );
        match self.crawl_loop(&shutdown).await {
            Ok(stopped) => self.finish(started, stopped).await.map(|s| (stopped, s)),
            Err(error) => {
                // Keep what was fetched: deliver it, or leave it in the state for a resume.
                let _ = self.flush_pending().await;
                let _ = self.state.counters(self.counters_json()).await;
                match self.sink.finish().await {
                    Ok(saved) => info!(saved, "items delivered before stopping"),
                    Err(sink_error) => warn!(%sink_error, "items could not all be delivered"),
                }
                let _ = self.state.flush().await;
                Err(error)
            }
        }
    }

    async fn crawl_loop(&mut self, shutdown: &CancellationToken) -> Result<Stopped, EngineError> {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Completion>> =
            FuturesUnordered::new();
        let mut interrupted = false;
        let mut drain_deadline: Option<Instant> = None;
        let mut progress = tokio::time::interval(self.config.progress_interval);
        progress.tick().await;
        let mut counters_saved = Instant::now();
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
                _ = sleep_until(drain_deadline), if drain_deadline.is_some() => Event::DrainOver,
                _ = progress.tick() => Event::Progress,
            };
            match event {
                Event::Shutdown => {
                    info!(in_flight = in_flight.len(), timeout = ?self.config.drain_timeout, "stopping: finishing the requests in flight");
                    interrupted = true;
                    drain_deadline = Some(Instant::now() + self.config.drain_timeout);
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
                Event::DrainOver => {
                    // They stay in the durable queue and are fetched again on resume.
                    warn!(
                        abandoned = in_flight.len(),
                        "requests still in flight at the drain timeout"
                    );
                    break;
                }
                Event::Progress => self.log_progress(in_flight.len()),
            }
            self.flush_pending().await?;
            if counters_saved.elapsed() >= self.config.state_sync && self.durable {
                self.state.counters(self.counters_json()).await?;
                counters_saved = Instant::now();
            }
        }
        Ok(if interrupted {
            Stopped::Interrupted
        } else if self.frontier.queued() > 0 {
            Stopped::MaxPages
        } else {
            Stopped::Done
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
                    self.finished(d.id);
                }
                Some(Popped::Send(d)) => break d,
            }
        };
        let lease = match dispatched.last_worker {
            Some(avoid) => self.pool.prefer_other(lease, avoid),
            None => lease,
        };
        lease.worker().requests.fetch_add(1, Ordering::Relaxed);
        self.pool.traffic().call();
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

    /// Queues a URL (already canonical) unless it was seen; records it durably.
    fn push(&mut self, url: &Url, request: Request, redirects: u32, now: Instant) -> bool {
        let fp = fingerprint(url.as_str());
        let id = self.next_id;
        let entry = self.durable.then(|| request.clone());
        let queued = self.frontier.push(
            request,
            host_key(url),
            fp,
            redirects,
            id,
            || robots::robots_url(url),
            now,
        );
        if queued {
            self.next_id += 1;
            if let Some(request) = entry {
                self.pending.push(Pending::Seen(fp));
                self.pending.push(Pending::Enqueue(
                    id,
                    crate::state::QueueEntry { request, redirects },
                ));
            }
        }
        queued
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

    async fn finish(mut self, started: Instant, stopped: Stopped) -> Result<Summary, EngineError> {
        self.flush_pending().await?;
        let saved = self.sink.finish().await;
        let Crawl {
            mut summary,
            frontier,
            pool,
            state,
            items_saved_before,
            ..
        } = self;
        let saved = match saved {
            Ok(n) => n,
            Err(e) => {
                // Keep what the state has (the undelivered items are in its spool) before
                // reporting the failure.
                let _ = state
                    .counters(serde_json::to_string(&summary).unwrap_or_default())
                    .await;
                let _ = state.flush().await;
                return Err(e.into());
            }
        };
        summary.items_saved = items_saved_before + saved;
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
        summary.stopped = stopped.as_str().into();
        summary.peak_rss_mb = crate::summary::peak_rss_mb();
        summary.cpu_secs = crate::summary::cpu_secs();
        summary.rpc_calls = pool.traffic().calls();
        summary.rpc_bytes = pool.traffic().bytes();
        summary.workers = pool
            .workers()
            .iter()
            .map(|w| WorkerShare {
                addr: w.addr.clone(),
                requests: w.requests.load(Ordering::Relaxed),
                down: w.is_down(),
            })
            .collect();
        state
            .counters(serde_json::to_string(&summary).unwrap_or_default())
            .await?;
        state.flush().await?;
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
