//! The crawl loop: take a lease, take a request, send it; on each answer, store the items,
//! schedule the new links and adjust the host's pace; stop when nothing is queued or in flight.

mod answers;
mod commands;
mod dispatch;
mod durable;
mod end;
mod enqueue;
mod figures;
mod journal;
mod proposals;
mod runs;
mod schedules;
mod shared_runs;
mod tally;

use crate::config::EngineConfig;
use crate::control::{self, Command, CrawlEnd, CrawlHandle};
use crate::error::EngineError;
use crate::frontier::{Admission, BudgetVerdict, Dispatched, Frontier, Handled, Kind, Popped};
use crate::metrics::EngineMetrics;
use crate::pool::{Lease, Pool};
use crate::progress::Progress;
use crate::robots;
use crate::sink::ItemSink;
use crate::state::{Restored, StateHandle};
use crate::summary::{Summary, WorkerShare};
use crate::tasks::{TaskDef, Tasks};
use common::{FetchError, ParseResult, Request, RobotsFile, fingerprint, transport};
use durable::Pending;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tally::Outcome;
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

/// Why a call ended without its worker's answer.
#[derive(Debug)]
enum Unanswered {
    /// The worker died holding it: its connection broke, or it missed its heartbeats.
    Died,
    /// The worker left on purpose (it drained and shut down) before answering.
    Left,
    /// The call ran past `--rpc_timeout`.
    Overran,
    /// The worker's RPC layer refused the call.
    Refused(String),
    /// Its task was killed: the call was cancelled (the worker is told, and drops it).
    Killed,
    /// Not sent: its task's page budget is spent across the shared crawl.
    OverBudget,
    /// Not sent: its lease was reaped before it went (the request is another engine's).
    LeaseGone,
    /// Not sent: it is to be rendered and no worker that renders had a slot free.
    NoRenderer,
}

impl Unanswered {
    /// Classifies a failed call; `left` says whether its worker was leaving on purpose.
    fn from_rpc(error: RpcError, left: bool) -> Unanswered {
        match error {
            RpcError::DeadlineExceeded => Unanswered::Overran,
            RpcError::Server(e) => Unanswered::Refused(e.to_string()),
            _ if left => Unanswered::Left,
            _ => Unanswered::Died,
        }
    }
}

/// A finished RPC: the request, the lease it used, what came back, and when it was sent.
struct Completion {
    dispatched: Dispatched,
    lease: Lease,
    outcome: Result<Answer, Unanswered>,
    sent: Instant,
}

// A short-lived stack value, moved once per loop turn: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Event<E> {
    Shutdown,
    Done(Completion),
    Robots(Dispatched, robots::Verdict, Option<RobotsFile>),
    Lease(Option<Lease>),
    Frontier(E),
    Wake,
    Tick,
    DrainOver,
    Progress,
    Publish,
    Command(Option<Command>),
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
    /// An operator drained this engine out of a shared crawl, which goes on without it.
    Drained,
}

impl Stopped {
    fn as_str(self) -> &'static str {
        match self {
            Stopped::Done => "done",
            Stopped::MaxPages => "max_pages",
            Stopped::Interrupted => "interrupted",
            Stopped::Drained => "drained",
        }
    }
}

/// One crawl's state: the frontier, the pool, the item sink, the tasks and the running
/// figures.
pub struct Crawl<F> {
    config: EngineConfig,
    frontier: F,
    pool: Pool,
    sink: ItemSink,
    /// The running figures and their one owner.
    figures: figures::Figures,
    /// The User-Agent token robots.txt groups are matched against.
    agent: String,
    /// The changes recorded for the durable state, and the ids they give.
    journal: journal::Journal,
    tasks: Tasks,
    handle: CrawlHandle,
    end: CrawlEnd,
    progress: Progress,
    /// Requests in flight and the worker slots held for a refill.
    slots: dispatch::Slots,
    /// Whether a signal asked the crawl to stop.
    stopping: bool,
    /// robots.txt files being read on blocking threads, with the request that fetched each.
    parsing: FuturesUnordered<BoxFuture<'static, RobotsRead>>,
    /// Whether the first page refused by a worker's SSRF guard has been logged.
    warned_blocked: bool,
    /// The clock schedules go by.
    clock: Arc<dyn crate::schedule::SchedulerClock>,
    /// Whether this engine, leading a shared crawl, read the ticks fired before it led
    /// (see `shared_runs`).
    ticks_synced: bool,
    /// Operators' changes of a shared crawl's tasks, waiting to be recorded with the turn,
    /// and the answers held until they are.
    proposals: proposals::Proposals,
}

/// A robots.txt read off the crawl loop: the request that fetched it, what it means, and the
/// file (kept for the other engines of a shared crawl).
type RobotsRead = (Dispatched, robots::Verdict, Option<RobotsFile>);

/// How long a request some worker died holding waits while another such request is in
/// flight. Suspects go out one at a time, so when a worker dies holding one, the others are
/// not charged with its death: only a page that keeps killing workers reaches
/// `--max_worker_deaths`.
const SUSPECT_WAIT: Duration = Duration::from_millis(250);

/// Where a URL to queue was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// A task's start URL.
    Seed,
    /// A link on a fetched page.
    Link,
    /// The target of a redirect, after this many hops.
    Redirect(u32),
}

/// The User-Agent token robots.txt groups are matched against: the first worker's.
pub fn agent_of(pool: &Pool) -> String {
    pool.workers()
        .first()
        .map_or(common::USER_AGENT_TOKEN.to_owned(), |w| {
            common::user_agent_token(&w.info().user_agent).to_owned()
        })
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

impl<F: Frontier> Crawl<F> {
    /// Prepares a crawl drawing from `frontier` over `pool`, delivering items to `sink` and
    /// recording its progress in `state` (which may be disabled), and reporting it through
    /// `progress`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: EngineConfig,
        frontier: F,
        pool: Pool,
        sink: ItemSink,
        items_at: String,
        state: StateHandle,
        durable: bool,
        progress: Progress,
    ) -> Crawl<F> {
        let clock = config
            .scheduler_clock
            .clone()
            .unwrap_or_else(|| Arc::new(crate::schedule::SystemClock));
        let agent = agent_of(&pool);
        let mut tasks = Tasks::default();
        tasks.shared = frontier.shares_tasks();
        let metrics = EngineMetrics::shared();
        let (handle, end) = control::channel(pool.control(), metrics.clone());
        Crawl {
            config,
            frontier,
            pool,
            sink,
            figures: figures::Figures::new(items_at, metrics),
            agent,
            journal: journal::Journal::new(state, durable),
            tasks,
            handle,
            end,
            progress,
            slots: dispatch::Slots::default(),
            stopping: false,
            parsing: FuturesUnordered::new(),
            warned_blocked: false,
            clock,
            ticks_synced: false,
            proposals: proposals::Proposals::default(),
        }
    }

    /// The handle the admin API watches and steers the crawl by, for start-up to complete
    /// before the crawl runs (in cluster mode, with the shared crawl's).
    pub fn handle_mut(&mut self) -> &mut CrawlHandle {
        &mut self.handle
    }

    /// Records the tasks' runs in `history` (see [`crate::history`]).
    pub fn with_history(mut self, history: crate::history::RunHistory) -> Crawl<F> {
        self.handle.history = Some(history);
        self
    }

    /// A handle for watching and steering the crawl while it runs.
    pub fn handle(&self) -> CrawlHandle {
        self.handle.clone()
    }

    /// Runs the crawl to the end, or until `shutdown`, and returns how it stopped with its
    /// summary. Items already fetched are delivered (or kept in the state) even when it fails.
    pub async fn run(
        mut self,
        restored: Restored,
        shutdown: CancellationToken,
    ) -> Result<(Stopped, Summary), EngineError> {
        let started = self.figures.start();
        self.start(restored).await?;
        info!(
            seeds = self.config.seeds.len(),
            tasks = self.tasks.iter().count(),
            workers = self.pool.workers().len(),
            robots = self.config.politeness.robots,
            serve = self.config.serve,
            "crawl started"
        );
        let result = self.crawl_loop(&shutdown).await;
        // Runs the crawl leaves unfinished: its failure, or a stop with work left (a resume
        // starts a new run).
        let unfinished = match &result {
            Ok(_) => "the engine stopped before the run ended".to_owned(),
            Err(e) => e.to_string(),
        };
        self.fail_open_runs(&unfinished);
        self.publish("finished");
        self.progress.finish();
        match result {
            Ok(stopped) => self.finish(started, stopped).await.map(|s| (stopped, s)),
            Err(error) => {
                // Keep what was fetched: deliver it, or leave it in the state for a resume.
                // The crawl has failed already; what fails here is said, not returned.
                if let Err(e) = self.flush_pending().await {
                    warn!(cause = %e, "the last changes could not be recorded in the state");
                }
                if let Err(e) = self.journal.state().counters(self.counters_json()).await {
                    warn!(cause = %e, "the figures could not be recorded in the state");
                }
                match self.sink.finish().await {
                    Ok(delivered) => info!(
                        saved = delivered.saved,
                        rejected = delivered.rejected,
                        "items delivered before stopping"
                    ),
                    Err(sink_error) => warn!(%sink_error, "items could not all be delivered"),
                }
                if let Err(e) = self.journal.state().flush().await {
                    warn!(cause = %e, "the state could not be committed before stopping");
                }
                Err(error)
            }
        }
    }

    async fn crawl_loop(&mut self, shutdown: &CancellationToken) -> Result<Stopped, EngineError> {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Completion>> =
            FuturesUnordered::new();
        let mut drain_deadline: Option<Instant> = None;
        let mut progress = tokio::time::interval(self.config.progress_interval);
        progress.tick().await;
        let mut publish = tokio::time::interval(figures::PUBLISH_EVERY);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counters_saved = Instant::now();
        self.publish("");
        loop {
            self.figures.loop_turn();
            let now = Instant::now();
            self.slots.set_in_flight(in_flight.len());
            let stopping = self.stopping;
            let room = !stopping && in_flight.len() < self.config.concurrency;
            let can_dispatch = room && self.frontier.has_ready(now);
            // A wake is for a request whose time has not come; with every slot taken the
            // loop waits for a request to end instead (a wake already past would spin it).
            let wake = room.then(|| self.frontier.next_wake()).flatten();
            // An operator may still add tasks (`--serve`) or resume a paused one.
            // A scheduled task keeps the engine running between its runs.
            let waiting_for_operator = !stopping
                && (self.config.serve
                    || self.tasks.any_paused_with_work()
                    || self.tasks.any_scheduled());
            let tick = (!stopping)
                .then(|| self.next_tick())
                .flatten()
                .map(|at| self.clock.sleep_until(at));
            if in_flight.is_empty()
                && self.parsing.is_empty()
                && !can_dispatch
                && wake.is_none()
                && !waiting_for_operator
                && !self.frontier.keeps_going()
            {
                break;
            }
            // Drained out of a shared crawl: it leaves once its requests are done, even when
            // serving.
            if self.frontier.drained() && in_flight.is_empty() && self.parsing.is_empty() {
                info!("drained: leaving the shared crawl, which goes on without this engine");
                break;
            }
            let refilling = self.frontier.refilling();
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !stopping => Event::Shutdown,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Event::Done(done),
                Some((d, verdict, file)) = self.parsing.next(), if !self.parsing.is_empty() => Event::Robots(d, verdict, file),
                command = self.end.commands.recv() => Event::Command(command),
                event = self.frontier.event() => Event::Frontier(event),
                lease = self.pool.acquire(), if can_dispatch && !refilling => Event::Lease(lease),
                _ = sleep_until(wake), if !can_dispatch && wake.is_some() => Event::Wake,
                _ = async { if let Some(tick) = tick { tick.await } }, if tick.is_some() => Event::Tick,
                _ = sleep_until(drain_deadline), if drain_deadline.is_some() => Event::DrainOver,
                _ = progress.tick() => Event::Progress,
                _ = publish.tick() => Event::Publish,
            };
            match event {
                Event::Shutdown => {
                    info!(in_flight = in_flight.len(), timeout = ?self.config.drain_timeout, "stopping: finishing the requests in flight");
                    self.stopping = true;
                    self.frontier.stop();
                    drain_deadline = Some(common::time::later(
                        Instant::now(),
                        self.config.drain_timeout,
                    ));
                }
                Event::Done(done) => self.complete(done).await?,
                Event::Robots(d, verdict, file) => {
                    self.apply_robots(d, verdict, file, Instant::now())
                }
                Event::Frontier(event) => {
                    match self.frontier.on_event(event, in_flight.is_empty()).await? {
                        Handled::Nothing => {}
                        Handled::Refilled => {
                            for lease in self.slots.disarm() {
                                self.pool.release(lease);
                            }
                        }
                        Handled::Ticked => {
                            if self.frontier.is_done() {
                                self.tasks.all_done();
                            }
                            for task in self.tasks.iter_mut() {
                                if let Some(queued) = self.frontier.task_queued(&task.def.name) {
                                    task.shared_queued = queued;
                                }
                            }
                            self.take_task_news().await;
                            self.look_after_shared_runs().await;
                        }
                    }
                }
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
                Event::Tick => self.fire_ticks().await,
                Event::DrainOver => {
                    // They stay in the durable queue (or leased in Redis, until their leases
                    // end) and are fetched again on resume.
                    warn!(
                        abandoned = in_flight.len(),
                        "requests still in flight at the drain timeout"
                    );
                    break;
                }
                Event::Progress => {
                    if self.progress.logs() {
                        self.log_progress(in_flight.len());
                    }
                }
                Event::Publish => {
                    // Runs are looked after a few times a second, not on every page.
                    self.enforce_deadlines(Instant::now());
                    self.record_run_ends();
                    self.start_pending_runs();
                    self.publish(if self.stopping { "stopping" } else { "" })
                }
                Event::Command(Some(command)) => {
                    self.command(command);
                    self.record_run_ends();
                    self.publish("");
                }
                Event::Command(None) => {}
            }
            self.flush_pending().await?;
            self.proposals.answer_all();
            if counters_saved.elapsed() >= self.config.state_sync && self.journal.durable() {
                self.journal.state().counters(self.counters_json()).await?;
                // The figures of each task with work left, with the crawl's (its page budget
                // is counted by them).
                let ids: Vec<u64> = self
                    .tasks
                    .iter()
                    .filter(|t| t.open > 0)
                    .map(|t| t.id)
                    .collect();
                for id in ids {
                    self.record_task(id);
                }
                counters_saved = Instant::now();
            }
        }
        let closing = self.frontier.close().await;
        for lease in self.slots.disarm() {
            self.pool.release(lease);
        }
        let closing = closing?;
        if let Some(closing) = closing {
            self.figures
                .closing(closing.late_completions, closing.unreadable_requests);
            // An engine drained out of the crawl says so, done or not; between the runs of a
            // scheduled task the crawl is done only for now.
            let done = closing.done && !self.tasks.any_scheduled();
            return Ok(if closing.drained {
                Stopped::Drained
            } else if done && closing.queued > 0 {
                // Done with requests left queued: those of tasks whose page budget is spent.
                Stopped::MaxPages
            } else if done {
                Stopped::Done
            } else {
                Stopped::Interrupted
            });
        }
        // A serving engine ends on a signal; when every task is finished (or it has none)
        // there is nothing to resume.
        let all_done = self.tasks.iter().all(|t| t.open == 0);
        Ok(if self.stopping && !(self.config.serve && all_done) {
            Stopped::Interrupted
        } else if self.frontier.queued() + self.frontier.parked() > 0 {
            Stopped::MaxPages
        } else {
            Stopped::Done
        })
    }

    fn log_progress(&self, in_flight: usize) {
        info!(
            pages_ok = self.figures.summary().pages_ok,
            failed = self.figures.summary().failed_total(),
            queued = self.frontier.queued() + self.frontier.parked(),
            in_flight,
            items = self.figures.items_extracted(),
            workers_up = self.pool.workers_up(),
            "progress"
        );
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
