//! The frontier boundary: what the crawl loop asks of the frontier, whichever holds it. One
//! trait, [`Frontier`], with two implementations chosen once at start-up: the embedded
//! frontier ([`super::EmbeddedFrontier`], in this process, kept durable by the SQLite state)
//! and the shared one (`cluster::SharedFrontier`, in Redis, shared by every engine of a
//! crawl). The crawl loop never looks behind it.
//!
//! The trait has four parts: the queue (push, pop, politeness), the state kept in this
//! process (restore and forget), the frontier's own life (events it brings about, claims,
//! the end), and the crawl's tasks as the frontier shares them with other engines (an
//! embedded frontier shares nothing: its tasks are the engine's own).

use super::{Admission, Dispatched, Popped};
use crate::robots::Rules;
use crate::schedule::Overlap;
use crate::tasks::record::{TaskChange, TaskNews};
use crate::tasks::{Hold, TaskDef};
use common::{Request, RobotsFile};
use futures::future::BoxFuture;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// The frontier's store (Redis, in cluster mode) stayed away longer than its timeout
/// (`--redis_timeout`): the crawl cannot go on, and its state is kept there.
#[derive(Debug, thiserror::Error)]
#[error(
    "redis has been unreachable for {waited:?} (last error: {cause}); the crawl's state is kept in redis: start the engines again to carry on"
)]
pub struct FrontierGone {
    /// How long it failed.
    pub waited: Duration,
    /// The last error.
    pub cause: String,
}

/// Where a new URL goes: its host, its fingerprint, the redirect hops that led to it and
/// its task's run (0 for a task without a schedule).
#[derive(Debug)]
pub struct Place {
    /// The host key.
    pub host: String,
    /// Its fingerprint, salted by task (and run).
    pub fingerprint: u64,
    /// Its dedup scope: the salt of its task's run. The embedded frontier keeps each scope's
    /// fingerprints apart, so that a run's are forgotten when the next starts.
    pub scope: u64,
    /// Redirect hops that led to it.
    pub redirects: u32,
    /// Its task's run.
    pub run: u64,
}

/// What the crawl loop does after an event was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Nothing more.
    Nothing,
    /// A claim was answered: the worker slots held for it go back to the pool.
    Refilled,
    /// The frontier ticked: the tasks' figures, news and runs are looked after.
    Ticked,
}

/// Whether a page may go, as its task's page budget across the crawl says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetVerdict {
    /// It took its place: it goes.
    Taken,
    /// The budget is spent: it is not sent.
    Spent,
    /// Its lease was reaped before it went: the request is another engine's now.
    LeaseGone,
}

/// What a shared frontier says when the engine leaves the crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// Completions that found their lease gone.
    pub late_completions: u64,
    /// Claimed records that did not read as requests.
    pub unreadable_requests: u64,
    /// This engine was drained out of the crawl.
    pub drained: bool,
    /// The crawl is done.
    pub done: bool,
    /// Requests still queued in the crawl.
    pub queued: usize,
}

/// How an operator's task change is fenced when it is recorded.
#[derive(Clone, Debug, Default)]
pub struct TaskFence<'a> {
    /// Where the answer to its idempotency key is kept (a Redis key): a key that holds an
    /// answer already says the change was recorded before (nothing is recorded again).
    pub key: Option<&'a str>,
    /// The answer kept under `key` (two bytes of HTTP status, then the body).
    pub answer: &'a [u8],
    /// How long the answer is kept.
    pub keep: Duration,
    /// For an add: the number of tasks this leader knows recorded; another number means it
    /// has not read every change yet (a new leader), and nothing is recorded.
    pub tasks: Option<u64>,
}

/// What became of a task change sent to Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now.
    Now,
    /// Recorded before, under the same idempotency key (a retry of a change that landed).
    Before,
    /// Refused: the epoch is not the leader's.
    Stale,
    /// Refused: the tasks recorded are not those the leader knows; it reads them first.
    Moved,
}

/// What a scheduled tick did (see [`Frontier::fire_tick`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// The engine does not lead the crawl (any more).
    NotLeader,
    /// The tick was fired before (by this engine or an earlier leader).
    FiredBefore,
    /// The previous run is still open: the tick is skipped.
    Skipped,
    /// The new run started, its seeds queued.
    Started,
    /// The new run started and the open one was stopped (`overlap = "replace"`).
    Replaced,
    /// The task's current run is not the one the engine read: read it again.
    RunMoved,
    /// The task is closed: it runs no more.
    Closed,
}

/// Where the crawl's requests wait, and how it learns what other engines did.
pub trait Frontier: Send + 'static {
    /// Something the frontier brought about by itself (an answer from its store, an
    /// acknowledgement, its tick), for the crawl loop to hand back in its turn.
    type Event: Send + 'static;
    /// Why a change of the crawl's tasks could not be recorded.
    type Error: std::error::Error + Send + Sync + 'static;

    // The queue.

    /// Whether a URL may be queued (a frontier that decides with the offer says `Open`).
    fn admit(&self, host: &str, scope: u64, fingerprint: u64, bounded: bool) -> Admission;
    /// Queues a request at `place`; says whether it was queued here and now (a shared
    /// frontier queues it with the turn's end, deduplicated there, and says `false`).
    fn push(&mut self, url: &Url, request: Request, place: Place, id: u64, now: Instant) -> bool;
    /// The next request to send, or why one is not sent; `hold` says, by task and run, what
    /// becomes of a page.
    fn pop(
        &mut self,
        now: Instant,
        hold: impl FnMut(&str, u64) -> Hold,
        suspect_wait: Option<Duration>,
    ) -> Option<Popped>;
    /// Whether a request may be taken now (or brought in).
    fn has_ready(&self, now: Instant) -> bool;
    /// When a request may next be taken.
    fn next_wake(&self) -> Option<Instant>;
    /// A request to `host` ended: its slot is free.
    fn done(&mut self, host: &str, now: Instant);
    /// A request is done for good without being sent.
    fn finished(&mut self, d: &Dispatched);
    /// A request is done for good after it was sent.
    fn fetched(&mut self, d: &Dispatched);
    /// A host answered well.
    fn recovered(&mut self, host: &str);
    /// A host answered 429 or 503.
    fn throttle(&mut self, host: &str, retry_after: Option<Duration>, now: Instant);
    /// A request is tried again at `at`.
    fn defer(&mut self, d: Dispatched, at: Instant, now: Instant);
    /// A request goes back to the front of its host's queue.
    fn requeue_front(&mut self, d: Dispatched, now: Instant);
    /// A host's robots.txt is known (`file` is what was fetched, `None` if nothing could be).
    fn robots_known(
        &mut self,
        d: &Dispatched,
        rules: Rules,
        crawl_delay: Option<Duration>,
        file: Option<RobotsFile>,
        now: Instant,
    );
    /// Puts a resumed task's parked requests back in their queues.
    fn unpark(&mut self, task: &str, now: Instant);
    /// Drops a closed task's parked requests.
    fn drop_parked(&mut self, task: &str) -> Vec<Dispatched>;
    /// Requests waiting (in the whole crawl, when shared).
    fn queued(&self) -> usize;
    /// Requests parked for paused tasks.
    fn parked(&self) -> usize;
    /// URLs seen.
    fn seen(&self) -> usize;
    /// A task's requests queued in the whole crawl, where the frontier counts them apart.
    fn task_queued(&self, task: &str) -> Option<u64>;

    // The state kept in this process (a shared frontier keeps its own, and ignores these).

    /// A URL seen in an earlier run of the crawl.
    fn restore_seen(&mut self, scope: u64, fingerprint: u64);
    /// A request left queued by an earlier run of the crawl.
    fn restore_request(
        &mut self,
        request: Request,
        host: String,
        redirects: u32,
        id: u64,
        robots_url: impl FnOnce() -> String,
        now: Instant,
    );
    /// Forgets the URLs seen in dedup scope `scope` (a run that ended); says how many.
    fn forget(&mut self, scope: u64) -> usize;
    /// A page's items were spooled under sequence `seq` (a shared frontier completes the
    /// page only once they are acknowledged).
    fn spooled(&mut self, seq: u64);
    /// The loop's turn ends: what it recorded goes to the frontier's store.
    fn end_turn(&mut self) -> impl Future<Output = ()> + Send + '_;

    // The frontier's own life.

    /// Whether the crawl still has work for this engine beyond what the loop sees.
    fn keeps_going(&self) -> bool;
    /// The crawl is stopping: the frontier takes nothing more.
    fn stop(&mut self);
    /// Whether this engine was drained out of the crawl and holds nothing more.
    fn drained(&self) -> bool;
    /// Whether the frontier would bring in more requests now, with worker slots held for
    /// them by the crawl loop.
    fn may_refill(&self, now: Instant) -> bool;
    /// Brings in up to `slots` more requests (answered with [`Handled::Refilled`]).
    fn refill(&mut self, slots: usize);
    /// Whether requests are being brought in (the crawl loop takes no worker slot meanwhile).
    fn refilling(&self) -> bool;
    /// Waits for the frontier's next event (never, for a frontier that brings none about).
    fn event(&mut self) -> impl Future<Output = Self::Event> + Send + '_;
    /// Takes an event; `idle` says whether no request is in flight.
    fn on_event(
        &mut self,
        event: Self::Event,
        idle: bool,
    ) -> impl Future<Output = Result<Handled, FrontierGone>> + Send + '_;
    /// Whether the whole crawl is done, as the frontier's store last said.
    fn is_done(&self) -> bool;
    /// Whether the frontier keeps the robots.txt files fetched (for other engines).
    fn keeps_robots_files(&self) -> bool;
    /// Commands sent to the frontier's store so far, where it has one.
    fn store_commands(&self) -> Option<u64>;
    /// The check a page of `task`'s `run` (request `id`) passes before it goes, where its
    /// task's budget of `max` pages is kept outside this engine.
    fn budget_check(
        &self,
        id: u64,
        task: &str,
        run: u64,
        max: u64,
    ) -> Option<BoxFuture<'static, BudgetVerdict>>;
    /// The engine leaves the crawl: what the frontier says of it then.
    fn close(&mut self) -> impl Future<Output = Result<Option<Closing>, FrontierGone>> + Send + '_;

    // The crawl's tasks, as the frontier shares them with other engines.

    /// Whether the crawl's tasks, schedules and runs are shared with other engines through
    /// the frontier: a change is recorded there first and applied after, a leader fires the
    /// ticks, and the tasks are kept there (not in this engine's state and run history).
    fn shares_tasks(&self) -> bool;
    /// Whether this engine leads the crawl (an embedded frontier's engine always does).
    fn leads(&self) -> bool;
    /// Records an operator's change (and, for a new task, its seeds, from `seeds_of`: its
    /// definition and dedup salt) for every engine, fenced by `fence`.
    fn record_change<'a>(
        &'a mut self,
        change: &'a TaskChange,
        seeds_of: Option<(&'a TaskDef, u64)>,
        fence: &'a TaskFence<'a>,
    ) -> impl Future<Output = Result<Recorded, Self::Error>> + Send + 'a;
    /// Records the leader's own change of a task's state, with the turn.
    fn task_changed(&mut self, change: TaskChange);
    /// Reads what changed in the crawl's tasks since the last look, if anything did.
    fn task_news(&mut self) -> impl Future<Output = Option<TaskNews>> + Send + '_;
    /// The next [`Frontier::task_news`] reads, whatever the last tick said.
    fn news_due(&mut self);
    /// The number of task records this engine has read.
    fn tasks_read(&self) -> u64;
    /// Whether task `id` was recorded before this engine joined a crawl that was done.
    fn done_before_joining(&self, id: u64) -> bool;
    /// The key an operator's change sent without an idempotency key is kept under, made
    /// from `own`, unique to this engine and moment.
    fn idempotency_key(&self, own: &str) -> String;
    /// Fires tick `at` (a Unix time) of task `def`, which starts its next run unless
    /// `overlap` says otherwise; says what it did, when the last tick was fired, and the run.
    fn fire_tick<'a>(
        &'a mut self,
        def: &'a TaskDef,
        at: i64,
        overlap: Overlap,
    ) -> impl Future<Output = Result<(Tick, Option<i64>, u64), Self::Error>> + Send + 'a;
    /// When the last tick of task `name` was fired.
    fn last_tick<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send + 'a;
    /// Ends the runs of `tasks` that have nothing open any more, for every engine; says how
    /// many it ended.
    fn end_runs<'a>(
        &'a mut self,
        tasks: &'a [String],
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send + 'a;
}
