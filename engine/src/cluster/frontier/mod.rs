//! The frontier of a crawl shared by several engines, in Redis: per-host queues, one seen set,
//! per-host politeness and leases, every change an atomic server-side script.
//!
//! Requests are leased, not popped: a request an engine claims comes back to the front of its
//! host's queue if the engine neither completes nor extends the lease before it ends (the
//! reaper does that), so a killed engine loses nothing. `claim` checks and moves each host's
//! in-flight count and next allowed time in the same step, so `--per_host` and `--delay` hold
//! for the whole cluster. The seen set holds 64-bit fingerprints as integers in many small
//! sets, which Redis keeps in its compact integer-set encoding (about 8 bytes a URL) while
//! each stays under `set-max-intset-entries`.
//!
//! The scripts are grouped by job, each with its Rust side: [`queues`] (offer, claim,
//! complete, release, defer, leases, budgets, robots.txt records), [`leader`] (the lease,
//! reaping, promoting, the end), [`runs`] (task changes and scheduled runs) and [`status`]
//! (counts, the end, deleting a crawl). Every key is named from [`super::keys`].

mod leader;
mod limits;
mod queues;
mod runs;
mod status;

pub use crate::frontier::{Recorded, TaskFence, Tick};
use common::redis_conn::RedisConn;
use redis::{RedisError, Script};
use std::time::Duration;

/// The version of the crawl's key layout this engine reads and writes (the key `schema`):
/// 2 keeps every politeness limit once in `limits`, where layout 1 passed them to each
/// script call. An engine that meets layout 1 moves it on (it writes the limits); one that
/// meets a later layout refuses to join (see [`RedisFrontier::keep_limits`]).
pub const LAYOUT: u64 = 2;

/// Sets the seen set is split into (`SEEN_SHARDS` in `scripts/lib/offer.lua` too); at the default `set-max-intset-entries` (512) each stays
/// compact up to about two million URLs a crawl.
pub const SEEN_SHARDS: u64 = 4_096;

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be reached, or refused the command.
    #[error("redis: {what}: {source}")]
    Redis {
        /// What was being done.
        what: &'static str,
        /// What the client said.
        #[source]
        source: RedisError,
    },
    /// A script answered something this engine does not understand (a different version?).
    #[error("redis: {0}: unexpected answer")]
    Answer(&'static str),
    /// The first connection failed (a wrong address or password, or TLS that does not match).
    #[error("cannot connect to {0}")]
    Connect(#[from] common::redis_conn::RedisConnectError),
}

fn redis_err(what: &'static str) -> impl FnOnce(RedisError) -> ClusterError {
    move |source| ClusterError::Redis { what, source }
}

/// How the shared frontier paces hosts and leases requests.
#[derive(Clone, Debug)]
pub struct RedisFrontierConfig {
    /// The crawl's politeness, the same section the embedded frontier honours, here across
    /// every engine: kept once in the crawl's `limits`, where the scripts read it (see
    /// [`RedisFrontier::keep_limits`]).
    pub politeness: crate::config::Politeness,
    /// How long a claim holds a request before it returns to its queue, unless extended.
    pub lease: Duration,
}

/// How a host answered, for its 429/503 back-off, which Redis keeps for every engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pace {
    /// Nothing to say (a failure that is not 429/503, a request not sent).
    #[default]
    Same,
    /// It answered well: its back-off halves, for every engine.
    Recovered,
    /// It answered 429 or 503: its back-off doubles and holds it, or its Retry-After does.
    Throttled(Option<Duration>),
}

impl Pace {
    /// The script argument (see `pace_host` in `scripts/lib/leases.lua`).
    fn arg(self) -> String {
        match self {
            Pace::Same => String::new(),
            Pace::Recovered => "R".to_owned(),
            Pace::Throttled(None) => "T".to_owned(),
            Pace::Throttled(Some(after)) => format!("T{}", after.as_millis()),
        }
    }
}

/// A URL to queue: its host key, the fingerprint it is deduplicated by, and the engine's
/// encoding of the request (opaque to Redis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUrl {
    /// The host key (`host:port`) its politeness is kept under.
    pub host: String,
    /// Its fingerprint (canonical URL, salted by task).
    pub fingerprint: u64,
    /// The request as the engine encodes it.
    pub entry: Vec<u8>,
    /// The host's robots.txt request, queued first when the host is new to the crawl; empty
    /// when robots.txt is not obeyed (or the engine offered this host before).
    pub robots: Vec<u8>,
    /// The key of the scheduled run the request belongs to (see
    /// [`crate::tasks::record::run_key`]), under which Redis counts the run's open pages; empty for
    /// a task without a schedule.
    pub run: String,
    /// Whether a full host queue may refuse it: a link may be offered again by another
    /// page; a seed or a redirect's target is offered once, so it is never refused.
    pub bounded: bool,
    /// Its task: it waits in its host's lane of the task, unclaimed while the task is
    /// paused, and counts among the task's requests queued.
    pub task: String,
}

/// What became of a URL offered to the frontier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// Seen before: not queued again.
    Seen,
    /// Its host's queue is full.
    Refused,
    /// Its host has as many pages fetched, in flight and queued as `--max_pages_per_host`.
    OverPageCap,
}

/// A request leased to this engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The lease, to complete or extend.
    pub lease: u64,
    /// The host key.
    pub host: String,
    /// The request as the engine encoded it.
    pub entry: Vec<u8>,
    /// Its host has had its `--max_pages_per_host` pages: the page is not sent (it took no
    /// host slot), and its completion only ends the lease.
    pub over_cap: bool,
}

/// When a completed request is to be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again<'a> {
    /// Never: it is done (fetched, or given up).
    Never,
    /// At once, from the front of its host's queue (its worker failed it), as this entry.
    Now(&'a [u8]),
    /// After a back-off (a retry), as this entry.
    After(&'a [u8], Duration),
}

/// What became of a leased request.
#[derive(Clone, Copy, Debug)]
pub struct Finished<'a> {
    /// How its host answered, for the host's back-off.
    pub pace: Pace,
    /// Whether and when it is sent again.
    pub again: Again<'a>,
    /// The new links its page yielded, queued in the same step.
    pub links: &'a [NewUrl],
    /// The host's robots.txt as the engine encodes it, when this request fetched it: every
    /// engine reads the rules from there.
    pub robots: Option<&'a [u8]>,
    /// The host's Crawl-delay, recorded with its robots.txt.
    pub crawl_delay: Duration,
    /// Whether the request was the host's robots.txt request.
    pub robots_request: RobotsRequest,
    /// Whether it is a page that was sent and is done for good: it counts toward its host's
    /// `--max_pages_per_host`.
    pub counted: bool,
    /// The key of the scheduled run of its request (empty for none): the run has one page
    /// fewer open when the request is done for good.
    pub run: &'a str,
}

/// Whether a completed request was its host's robots.txt request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RobotsRequest {
    /// A page.
    #[default]
    No,
    /// The host's robots.txt request: one that waits out a back-off holds the host.
    Yes,
    /// Not known: its record did not read. It is taken for the robots.txt request when its
    /// host's robots.txt is still pending (such a host sends nothing else), and the
    /// completion's robots record is then stored; otherwise that record is dropped.
    Unknown,
}

impl RobotsRequest {
    /// Its argument to the scripts.
    fn arg(self) -> &'static str {
        match self {
            RobotsRequest::No => "0",
            RobotsRequest::Yes => "1",
            RobotsRequest::Unknown => "?",
        }
    }
}

/// What a claim handed out, and when to ask again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The requests leased to this engine.
    pub claimed: Vec<Claimed>,
    /// How long until a host is ready again; `None` when nothing is queued at all.
    pub next: Option<Duration>,
}

/// What became of a page's claim on its task's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Taken: the page may be sent.
    Taken,
    /// The task's `max_pages` are fetched or in flight across the crawl.
    Spent,
    /// The lease is gone (reaped): its request is another engine's now.
    LeaseGone,
}

/// The name of the page budget of run `run` of task `task` in Redis.
pub fn budget_key(task: &str, run: u64) -> String {
    format!("{task}#{run}")
}

/// What a [`RedisFrontier::settle`] batch found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Leases still held when released or completed.
    pub held: usize,
    /// Completions whose lease was gone (reaped after it lapsed, or completed before): their
    /// links were queued all the same, and their request was leased again or is done.
    pub late: usize,
    /// How long until a host is ready to be claimed from; `None` when nothing is queued.
    pub next: Option<Duration>,
}

/// One change of a [`RedisFrontier::settle`] batch.
#[derive(Clone, Copy, Debug)]
pub enum SettleOp<'a> {
    /// A lease's host slot goes back and its page's links are queued (see `release`).
    Release {
        /// The lease.
        lease: u64,
        /// The page's new links.
        links: &'a [NewUrl],
    },
    /// A lease ends (see `complete`).
    Complete {
        /// The lease.
        lease: u64,
        /// Its host key.
        host: &'a str,
        /// What became of its request.
        finished: Finished<'a>,
    },
}

/// The crawl's tasks as read from Redis (see [`RedisFrontier::tasks_since`]).
#[derive(Debug, Default)]
pub struct TasksRead {
    /// The tasks' version now.
    pub version: u64,
    /// Task records added after those the engine knew.
    pub records: Vec<String>,
    /// Every task's state (and run), as stored.
    pub states: Vec<(String, String)>,
    /// Runs that were replaced by a newer one, by task: their end, as stored.
    pub run_ends: Vec<(String, String)>,
}

/// How much of a crawl is left, as Redis has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests queued.
    pub queued: u64,
    /// Requests leased to engines.
    pub leased: u64,
    /// Requests waiting out a retry's back-off.
    pub deferred: u64,
    /// Whether the leader marked the crawl done.
    pub done: bool,
    /// Distinct URLs the crawl's seen sets took in, every run's.
    pub seen: u64,
    /// The version of the crawl's tasks (it moves with every change of them).
    pub tasks_version: u64,
}

/// What an engine's round found (see [`RedisFrontier::round`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The leader's epoch when this engine leads; `None` when another does.
    pub epoch: Option<u64>,
    /// The mode an operator asked of this engine, if any (`running`, `paused`, `draining`).
    pub wanted: Option<String>,
    /// Expired leases whose requests went back to their queues (when it leads).
    pub reaped: usize,
    /// Whether the crawl is done (as the leader decided it).
    pub done: bool,
}

/// The scripts, loaded once and called by their hash.
struct Scripts {
    offer: Script,
    seed: Script,
    claim: Script,
    complete: Script,
    extend: Script,
    release: Script,
    settle: Script,
    tasks: Script,
    reap: Script,
    elect: Script,
    promote: Script,
    finish: Script,
    tick: Script,
    runs: Script,
    reserve: Script,
    status: Script,
    round: Script,
}

/// The scripts' library, by job, in the order it is put before every script: each part
/// may call the parts before it.
const LIBRARY: &[(&str, &str)] = &[
    ("lib/base.lua", include_str!("scripts/lib/base.lua")),
    ("lib/lanes.lua", include_str!("scripts/lib/lanes.lua")),
    ("lib/offer.lua", include_str!("scripts/lib/offer.lua")),
    ("lib/leases.lua", include_str!("scripts/lib/leases.lua")),
    ("lib/leader.lua", include_str!("scripts/lib/leader.lua")),
];

/// The scripts' sources by file name, by job: the queue (offers, claims, leases and their
/// ends, page budgets), the leader's duties (its lease, reaping, retries, the end, status),
/// and tasks and schedules (operators' changes, ticks, runs' ends).
const SOURCES: &[(&str, &str)] = &[
    ("offer.lua", include_str!("scripts/queue/offer.lua")),
    ("seed.lua", include_str!("scripts/queue/seed.lua")),
    ("claim.lua", include_str!("scripts/queue/claim.lua")),
    ("complete.lua", include_str!("scripts/queue/complete.lua")),
    ("extend.lua", include_str!("scripts/queue/extend.lua")),
    ("release.lua", include_str!("scripts/queue/release.lua")),
    ("settle.lua", include_str!("scripts/queue/settle.lua")),
    ("tasks.lua", include_str!("scripts/tasks/tasks.lua")),
    ("reap.lua", include_str!("scripts/leader/reap.lua")),
    ("elect.lua", include_str!("scripts/leader/elect.lua")),
    ("promote.lua", include_str!("scripts/leader/promote.lua")),
    ("finish.lua", include_str!("scripts/leader/finish.lua")),
    ("tick.lua", include_str!("scripts/tasks/tick.lua")),
    ("runs.lua", include_str!("scripts/tasks/runs.lua")),
    ("reserve.lua", include_str!("scripts/queue/reserve.lua")),
    ("status.lua", include_str!("scripts/leader/status.lua")),
    ("round.lua", include_str!("scripts/leader/round.lua")),
];

/// Every script's and library part's source, by file name (for tests that read them).
#[cfg(test)]
pub(super) fn script_sources() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    LIBRARY.iter().chain(SOURCES)
}

/// The script of `file`: the crawl's prefix `K` (`KEYS[1]`), the table `KEY` of its keys
/// (see [`super::keys`]), the library, then the file.
fn script(file: &str) -> Script {
    let source = SOURCES
        .iter()
        .find(|(n, _)| *n == file)
        .map_or_else(|| unreachable!("{file} is a script"), |(_, s)| *s);
    let library: String = LIBRARY.iter().map(|(_, s)| format!("{s}\n")).collect();
    Script::new(&format!(
        "local K = KEYS[1]\n{}{library}{source}",
        crate::cluster::keys::lua_table(),
    ))
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            offer: script("offer.lua"),
            seed: script("seed.lua"),
            claim: script("claim.lua"),
            complete: script("complete.lua"),
            extend: script("extend.lua"),
            release: script("release.lua"),
            settle: script("settle.lua"),
            tasks: script("tasks.lua"),
            reap: script("reap.lua"),
            elect: script("elect.lua"),
            promote: script("promote.lua"),
            finish: script("finish.lua"),
            tick: script("tick.lua"),
            runs: script("runs.lua"),
            reserve: script("reserve.lua"),
            status: script("status.lua"),
            round: script("round.lua"),
        }
    }
}

/// One engine's handle on a crawl's shared frontier; clones share the connection.
#[derive(Clone)]
pub struct RedisFrontier {
    conn: RedisConn,
    prefix: String,
    config: RedisFrontierConfig,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for RedisFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFrontier")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .finish()
    }
}

/// The key prefix of crawl `name`, with the hash tag that keeps a crawl on one cluster slot.
pub fn crawl_prefix(name: &str) -> String {
    crate::cluster::keys::Keys::of_crawl(name)
        .prefix()
        .to_owned()
}

impl RedisFrontier {
    /// The crawl's keys.
    fn keys(&self) -> crate::cluster::keys::Keys {
        crate::cluster::keys::Keys::with_prefix(&self.prefix)
    }

    /// The frontier of crawl `crawl` on the Redis at `conn`.
    pub fn new(conn: RedisConn, crawl: &str, config: RedisFrontierConfig) -> Self {
        RedisFrontier {
            conn,
            prefix: crawl_prefix(crawl),
            config,
            scripts: std::sync::Arc::new(Scripts::new()),
        }
    }

    /// Connects to the Redis server or cluster `--redis` names.
    pub async fn connect(
        spec: &str,
        tls: &common::redis_conn::RedisTls,
    ) -> Result<RedisConn, ClusterError> {
        Ok(RedisConn::connect(spec, tls).await?)
    }

    /// Commands this engine sent to Redis so far, through every clone of its connection (a
    /// script call is one).
    pub fn commands_sent(&self) -> u64 {
        self.conn.commands_sent()
    }

    /// The key prefix of this crawl (its hash tag).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection to the crawl's Redis, for the other cluster jobs.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }
}
