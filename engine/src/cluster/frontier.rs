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

use common::redis_conn::RedisConn;
use redis::{RedisError, Script};
use std::time::Duration;

/// Sets the seen set is split into (`SEEN_SHARDS` in `scripts/common.lua` too); at the default `set-max-intset-entries` (512) each stays
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
    /// Requests in flight to one host, across every engine.
    pub per_host: usize,
    /// Least time between two requests to one host, across every engine.
    pub delay: Duration,
    /// How long a claim holds a request before it returns to its queue, unless extended.
    pub lease: Duration,
    /// URLs queued for one host at most; more links are refused.
    pub max_queue_per_host: usize,
    /// Longest a host is held by its shared 429/503 back-off (and by a Retry-After).
    pub max_backoff: Duration,
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
    /// The script argument (see `pace_host` in `scripts/common.lua`).
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
    /// [`super::tasks::run_key`]), under which Redis counts the run's open pages; empty for
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

/// How an operator's task change is fenced when it is recorded.
#[derive(Clone, Debug, Default)]
pub struct TaskFence<'a> {
    /// The Redis key of its idempotency key's answer: a key that holds an answer already
    /// says the change was recorded before (nothing is recorded again).
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

/// What a scheduled tick did (see [`RedisFrontier::tick`]).
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

/// The scripts' sources by file name, `common.lua` first (put before every other).
const SOURCES: &[(&str, &str)] = &[
    ("common.lua", include_str!("scripts/common.lua")),
    ("offer.lua", include_str!("scripts/offer.lua")),
    ("seed.lua", include_str!("scripts/seed.lua")),
    ("claim.lua", include_str!("scripts/claim.lua")),
    ("complete.lua", include_str!("scripts/complete.lua")),
    ("extend.lua", include_str!("scripts/extend.lua")),
    ("release.lua", include_str!("scripts/release.lua")),
    ("settle.lua", include_str!("scripts/settle.lua")),
    ("tasks.lua", include_str!("scripts/tasks.lua")),
    ("reap.lua", include_str!("scripts/reap.lua")),
    ("elect.lua", include_str!("scripts/elect.lua")),
    ("promote.lua", include_str!("scripts/promote.lua")),
    ("finish.lua", include_str!("scripts/finish.lua")),
    ("tick.lua", include_str!("scripts/tick.lua")),
    ("runs.lua", include_str!("scripts/runs.lua")),
    ("reserve.lua", include_str!("scripts/reserve.lua")),
    ("status.lua", include_str!("scripts/status.lua")),
    ("round.lua", include_str!("scripts/round.lua")),
];

/// Every script's source, by file name (for tests that read them).
#[cfg(test)]
pub(super) fn script_sources() -> &'static [(&'static str, &'static str)] {
    SOURCES
}

/// The script of `file`: the crawl's prefix `K` (`KEYS[1]`), the table `KEY` of its keys
/// (see [`super::keys`]), `common.lua`, then the file.
fn script(file: &str) -> Script {
    let source = |name: &str| {
        SOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| unreachable!("{name} is a script"), |(_, s)| *s)
    };
    Script::new(&format!(
        "local K = KEYS[1]\n{}{}\n{}",
        super::keys::lua_table(),
        source("common.lua"),
        source(file)
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
    super::keys::Keys::of_crawl(name).prefix().to_owned()
}

impl RedisFrontier {
    /// The crawl's keys.
    fn keys(&self) -> super::keys::Keys {
        super::keys::Keys::with_prefix(&self.prefix)
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

    fn push_urls(invocation: &mut redis::ScriptInvocation<'_>, urls: &[NewUrl]) {
        invocation.arg(urls.len());
        for url in urls {
            // Integers keep the seen shards in Redis's compact integer-set encoding.
            invocation
                .arg(&url.host)
                .arg(url.fingerprint as i64)
                .arg(url.fingerprint % SEEN_SHARDS)
                .arg(&url.entry[..])
                .arg(&url.robots[..])
                .arg(&url.run)
                .arg(u8::from(url.bounded))
                .arg(&url.task);
        }
    }

    /// Queues `urls` with dedup; `bounded` applies the host queue bound to the URLs that are
    /// bounded themselves (links; seeds and redirect targets, offered once, are not).
    pub async fn offer(
        &mut self,
        urls: &[NewUrl],
        bounded: bool,
    ) -> Result<Vec<Offer>, ClusterError> {
        let mut call = self.scripts.offer.prepare_invoke();
        call.key(&self.prefix)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host)
            .arg(u8::from(bounded));
        Self::push_urls(&mut call, urls);
        let codes: Vec<u8> = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("offer"))?;
        codes
            .into_iter()
            .map(|c| match c {
                0 => Ok(Offer::Queued),
                1 => Ok(Offer::Seen),
                2 => Ok(Offer::Refused),
                3 => Ok(Offer::OverPageCap),
                _ => Err(ClusterError::Answer("offer")),
            })
            .collect()
    }

    /// Leases up to `max` requests of hosts that may be sent to now, for engine `engine`.
    pub async fn claim(&mut self, engine: &str, max: usize) -> Result<Vec<Claimed>, ClusterError> {
        Ok(self.claim_next(engine, max).await?.claimed)
    }

    /// Leader only, once per crawl: queues the crawl's seeds. `Some(true)` when it seeded now,
    /// `Some(false)` when the crawl was seeded before, `None` when `epoch` is stale.
    pub async fn seed(
        &mut self,
        epoch: u64,
        urls: &[NewUrl],
    ) -> Result<Option<bool>, ClusterError> {
        let mut call = self.scripts.seed.prepare_invoke();
        call.key(&self.prefix)
            .arg(epoch)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host);
        Self::push_urls(&mut call, urls);
        let answer: i64 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("seed"))?;
        Ok((answer >= 0).then_some(answer == 1))
    }

    /// [`RedisFrontier::claim`], also saying when a host is ready next.
    pub async fn claim_next(&mut self, engine: &str, max: usize) -> Result<Claim, ClusterError> {
        let mut answer: Vec<redis::Value> = self
            .scripts
            .claim
            .key(&self.prefix)
            .arg(engine)
            .arg(max)
            .arg(self.config.per_host)
            .arg(self.config.delay.as_millis() as u64)
            .arg(self.config.lease.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("claim"))?;
        if answer.is_empty() {
            return Err(ClusterError::Answer("claim"));
        }
        let wait: i64 =
            redis::from_redis_value(answer.remove(0)).map_err(|_| ClusterError::Answer("claim"))?;
        let next = u64::try_from(wait).ok().map(Duration::from_millis);
        let claimed = answer
            .chunks(4)
            .map(|c| match c {
                [id, host, entry, over_cap] => Ok(Claimed {
                    lease: redis::from_redis_value(id.clone())
                        .map_err(|_| ClusterError::Answer("claim"))?,
                    host: redis::from_redis_value(host.clone())
                        .map_err(|_| ClusterError::Answer("claim"))?,
                    entry: redis::from_redis_value(entry.clone())
                        .map_err(|_| ClusterError::Answer("claim"))?,
                    over_cap: redis::from_redis_value::<i64>(over_cap.clone())
                        .map_err(|_| ClusterError::Answer("claim"))?
                        == 1,
                }),
                _ => Err(ClusterError::Answer("claim")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Claim { claimed, next })
    }

    /// Ends the lease of `claimed` as `finished` says, at once: the host's slot is freed (and held longer
    /// after a 429/503), the request goes back when it is to be sent again, and the page's new
    /// links are queued. Returns whether the lease was still held: a lease completed twice,
    /// or reaped, changes nothing.
    pub async fn complete(
        &mut self,
        claimed: &Claimed,
        finished: Finished<'_>,
    ) -> Result<bool, ClusterError> {
        let (entry, defer) = Self::again(finished.again);
        let mut call = self.scripts.complete.prepare_invoke();
        call.key(&self.prefix)
            .arg(claimed.lease)
            .arg(&claimed.host)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host)
            .arg(finished.pace.arg())
            .arg(entry)
            .arg(defer.as_millis() as u64)
            .arg(finished.robots.unwrap_or(b""))
            .arg(finished.crawl_delay.as_millis() as u64)
            .arg(finished.robots_request.arg())
            .arg(finished.run)
            .arg(self.config.max_backoff.as_millis() as u64)
            .arg(u8::from(finished.counted));
        Self::push_urls(&mut call, finished.links);
        let held: u8 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("complete"))?;
        Ok(held == 1)
    }

    /// Takes a page of budget `budget` (a task's run, see [`budget_key`]) for lease `lease`,
    /// whose page is about to be sent, unless `max` pages of it are fetched or in flight
    /// across the crawl.
    pub async fn reserve(
        &mut self,
        lease: u64,
        budget: &str,
        max: u64,
    ) -> Result<Reserved, ClusterError> {
        let answer: i64 = self
            .scripts
            .reserve
            .key(&self.prefix)
            .arg(lease)
            .arg(budget)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("take a page of a task's budget"))?;
        match answer {
            1 => Ok(Reserved::Taken),
            0 => Ok(Reserved::Spent),
            -1 => Ok(Reserved::LeaseGone),
            _ => Err(ClusterError::Answer("reserve")),
        }
    }

    /// Extends the given leases a full lease length from now; returns how many still existed.
    pub async fn extend(&mut self, leases: &[u64]) -> Result<usize, ClusterError> {
        let missing = self.extend_or_miss(leases).await?;
        Ok(leases.len() - missing.len())
    }

    /// Extends the given leases a full lease length from now; returns those that no longer
    /// exist (their requests were given to another engine).
    pub async fn extend_or_miss(&mut self, leases: &[u64]) -> Result<Vec<u64>, ClusterError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.scripts.extend.prepare_invoke();
        call.key(&self.prefix)
            .arg(self.config.lease.as_millis() as u64);
        for lease in leases {
            call.arg(*lease);
        }
        call.invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("extend"))
    }

    /// Gives back the host slot of a lease whose request was answered, and queues its
    /// page's links, while its items are being stored (the lease completes after); returns
    /// whether the lease was still held.
    pub async fn release(&mut self, lease: u64, links: &[NewUrl]) -> Result<bool, ClusterError> {
        let mut call = self.scripts.release.prepare_invoke();
        call.key(&self.prefix)
            .arg(lease)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host);
        Self::push_urls(&mut call, links);
        let held: u8 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("release"))?;
        Ok(held == 1)
    }

    /// Releases and completes many leases in one call, in order; says how many leases were
    /// still held and how many completions came late.
    pub async fn settle(&mut self, ops: &[SettleOp<'_>]) -> Result<SettleReport, ClusterError> {
        if ops.is_empty() {
            return Ok(SettleReport::default());
        }
        let mut call = self.scripts.settle.prepare_invoke();
        call.key(&self.prefix)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host)
            .arg(self.config.max_backoff.as_millis() as u64);
        for op in ops {
            match op {
                SettleOp::Release { lease, links } => {
                    call.arg("R").arg(*lease);
                    Self::push_urls(&mut call, links);
                }
                SettleOp::Complete {
                    lease,
                    host,
                    finished,
                } => {
                    let (entry, defer) = Self::again(finished.again);
                    call.arg("C")
                        .arg(*lease)
                        .arg(*host)
                        .arg(finished.pace.arg())
                        .arg(entry)
                        .arg(defer.as_millis() as u64)
                        .arg(finished.robots.unwrap_or(b""))
                        .arg(finished.crawl_delay.as_millis() as u64)
                        .arg(finished.robots_request.arg())
                        .arg(finished.run)
                        .arg(u8::from(finished.counted));
                    Self::push_urls(&mut call, finished.links);
                }
            }
        }
        let (held, late, next): (usize, usize, i64) = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("settle"))?;
        Ok(SettleReport {
            held,
            late,
            next: u64::try_from(next).ok().map(Duration::from_millis),
        })
    }

    /// The entry and back-off a completion sends for `again`.
    fn again(again: Again<'_>) -> (&[u8], Duration) {
        match again {
            Again::Never => (b"", Duration::ZERO),
            Again::Now(entry) => (entry, Duration::ZERO),
            // At least a millisecond, so that a deferred request is never taken for a
            // requeue.
            Again::After(entry, wait) => (entry, wait.max(Duration::from_millis(1))),
        }
    }

    /// Returns up to `max` expired leases' requests to the front of their queues.
    pub async fn reap(&mut self, max: usize) -> Result<usize, ClusterError> {
        self.scripts
            .reap
            .key(&self.prefix)
            .arg(self.config.per_host)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("reap"))
    }

    /// One engine's round (see `round.lua`): the heartbeat and report of engine `engine`
    /// (admin address `addr`, mode `state`, requests `dispatched`) for `ttl`, the leader
    /// lease taken or renewed, and the leader's chores when it leads, in one call.
    pub async fn round(
        &mut self,
        engine: &str,
        addr: &str,
        ttl: Duration,
        (state, dispatched): (&str, u64),
        max: usize,
    ) -> Result<Round, ClusterError> {
        let (epoch, wanted, reaped, done): (u64, String, usize, u8) = self
            .scripts
            .round
            .key(&self.prefix)
            .arg(engine)
            .arg(addr)
            .arg(ttl.as_millis() as u64)
            .arg(state)
            .arg(dispatched)
            .arg(self.config.per_host)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("engine round"))?;
        Ok(Round {
            epoch: (epoch > 0).then_some(epoch),
            wanted: (!wanted.is_empty()).then_some(wanted),
            reaped,
            done: done == 1,
        })
    }

    /// Commands this engine sent to Redis so far, through every clone of its connection (a
    /// script call is one).
    pub fn commands_sent(&self) -> u64 {
        self.conn.commands_sent()
    }

    /// Takes or renews the crawl's leader lease for `engine`, for `ttl`: the leader's epoch
    /// when `engine` holds it now, `None` when another engine does.
    pub async fn elect(
        &mut self,
        engine: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        let epoch: u64 = self
            .scripts
            .elect
            .key(&self.prefix)
            .arg(engine)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("elect"))?;
        Ok((epoch > 0).then_some(epoch))
    }

    /// Gives up the leader lease when `engine` holds it (a clean exit), so that another engine
    /// takes over at once instead of after the lease's length.
    pub async fn resign(&mut self, engine: &str) -> Result<(), ClusterError> {
        Script::new(
            "local held = redis.call('GET', KEYS[1])
             if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
               redis.call('DEL', KEYS[1])
             end
             return 1",
        )
        .key(self.keys().leader())
        .arg(engine)
        .invoke_async::<i64>(&mut self.conn)
        .await
        .map(drop)
        .map_err(redis_err("resign"))
    }

    /// Leader only: moves up to `max` deferred requests whose back-off is over to the front
    /// of their queues; `None` when `epoch` is stale (another engine leads).
    pub async fn promote(&mut self, epoch: u64, max: usize) -> Result<Option<usize>, ClusterError> {
        let moved: i64 = self
            .scripts
            .promote
            .key(&self.prefix)
            .arg(epoch)
            .arg(self.config.per_host)
            .arg(max)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("promote"))?;
        Ok(usize::try_from(moved).ok())
    }

    /// Leader only: marks the crawl done when nothing is queued, leased or deferred. `Some`
    /// says whether it is done; `None` that `epoch` is stale.
    pub async fn finish(&mut self, epoch: u64) -> Result<Option<bool>, ClusterError> {
        let answer: i64 = self
            .scripts
            .finish
            .key(&self.prefix)
            .arg(epoch)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("finish"))?;
        Ok((answer >= 0).then_some(answer == 1))
    }

    /// Requests deferred (waiting out a back-off).
    pub async fn deferred(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("ZCARD")
            .arg(self.keys().deferred())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count deferred"))
    }

    /// Requests queued (not leased).
    pub async fn queued(&mut self) -> Result<u64, ClusterError> {
        let n: Option<u64> = redis::cmd("GET")
            .arg(self.keys().queued())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count queued"))?;
        Ok(n.unwrap_or(0))
    }

    /// Requests leased and not completed.
    pub async fn leased(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("ZCARD")
            .arg(self.keys().leases())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count leases"))
    }

    /// The robots.txt records of `hosts` stored by whichever engine fetched them, in order;
    /// `None` for a host whose rules are not known yet.
    pub async fn robots(&mut self, hosts: &[&str]) -> Result<Vec<Option<Vec<u8>>>, ClusterError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("HMGET")
            .arg(self.keys().robots())
            .arg(hosts)
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read robots.txt records"))
    }

    /// Whether a scheduled tick was ever fired in the crawl: it runs again at its next one.
    pub async fn has_schedules(&mut self) -> Result<bool, ClusterError> {
        redis::cmd("EXISTS")
            .arg(self.keys().ticks())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("look for schedules"))
    }

    /// How many tasks the crawl's leaders recorded (added through the admin API).
    pub async fn tasks_recorded(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("LLEN")
            .arg(self.keys().tasks())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count the tasks"))
    }

    /// Whether the leader marked the crawl done.
    pub async fn is_done(&mut self) -> Result<bool, ClusterError> {
        redis::cmd("EXISTS")
            .arg(self.keys().done())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("check the end"))
    }

    /// Requests queued, leased and deferred, whether the crawl is done, the URLs seen and
    /// the tasks' version, read together in one call.
    pub async fn counts(&mut self) -> Result<Counts, ClusterError> {
        Ok(self.status().await?.0)
    }

    /// The crawl's figures (see [`Counts`]) and each task's requests queued, in one call.
    pub async fn status(&mut self) -> Result<(Counts, Vec<(String, u64)>), ClusterError> {
        let answer: Vec<redis::Value> = self
            .scripts
            .status
            .key(&self.prefix)
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("count the frontier"))?;
        let bad = |_| ClusterError::Answer("status");
        let mut numbers = [0u64; 6];
        for (n, value) in numbers.iter_mut().zip(&answer) {
            *n = redis::from_redis_value(value.clone()).map_err(bad)?;
        }
        if answer.len() < 6 {
            return Err(ClusterError::Answer("status"));
        }
        let [queued, leased, deferred, done, seen, tasks_version] = numbers;
        let per_task = answer[6..]
            .chunks(2)
            .map(|pair| match pair {
                [task, n] => Ok((
                    redis::from_redis_value(task.clone()).map_err(bad)?,
                    redis::from_redis_value(n.clone()).map_err(bad)?,
                )),
                _ => Err(ClusterError::Answer("status")),
            })
            .collect::<Result<_, _>>()?;
        let counts = Counts {
            queued,
            leased,
            deferred,
            done: done == 1,
            seen,
            tasks_version,
        };
        Ok((counts, per_task))
    }

    /// Deletes every key of the crawl (`--fresh`), so that its name can be used again. The
    /// keys share one hash tag, so on a Redis Cluster they all sit on the node the script
    /// runs on; the pattern is the tag itself, escaped, so it matches no other crawl's.
    pub async fn delete_crawl(&mut self) -> Result<u64, ClusterError> {
        let script = Script::new(
            "local found = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)
             if #found[2] > 0 then redis.call('UNLINK', unpack(found[2])) end
             return {found[1], #found[2]}",
        );
        let pattern = format!("{}*", super::name::glob_escape(&self.prefix));
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let (next, n): (String, u64) = script
                .key(&self.prefix)
                .arg(&cursor)
                .arg(&pattern)
                .invoke_async(&mut self.conn)
                .await
                .map_err(redis_err("delete the crawl's keys"))?;
            deleted += n;
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Leader only: records task changes for every engine (added tasks in order, states by
    /// name) and queues the added tasks' seeds, at once, fenced by `epoch` and as `fence`
    /// says: the answer to its idempotency key is kept in the same step, and an add is
    /// refused when the tasks recorded are not those this leader knows.
    pub async fn record_change(
        &mut self,
        epoch: u64,
        changes: &[super::tasks::TaskChange],
        seeds: &[NewUrl],
        fence: &TaskFence<'_>,
    ) -> Result<Recorded, ClusterError> {
        let mut call = self.scripts.tasks.prepare_invoke();
        call.key(&self.prefix)
            .arg(epoch)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host)
            .arg(fence.key.unwrap_or(""))
            .arg(fence.answer)
            .arg(fence.keep.as_secs())
            .arg(fence.tasks.map_or(-1, |n| n as i64))
            .arg(changes.len());
        for change in changes {
            match change {
                super::tasks::TaskChange::Added(json) => {
                    call.arg("A").arg(json).arg("");
                }
                super::tasks::TaskChange::State(name, state, run) => {
                    call.arg("S")
                        .arg(name)
                        .arg(super::tasks::state_value(*state, *run));
                }
            }
        }
        Self::push_urls(&mut call, seeds);
        let answer: i64 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("record task changes"))?;
        match answer {
            1 => Ok(Recorded::Now),
            2 => Ok(Recorded::Before),
            -1 => Ok(Recorded::Stale),
            -2 => Ok(Recorded::Moved),
            _ => Err(ClusterError::Answer("record task changes")),
        }
    }

    /// The tasks added after the first `known`, every task state and the ends of runs that
    /// were replaced, when the tasks' version is not `version` any more.
    pub async fn tasks_since(
        &mut self,
        version: u64,
        known: usize,
    ) -> Result<Option<TasksRead>, ClusterError> {
        let now: Option<u64> = redis::cmd("GET")
            .arg(self.keys().tasks_version())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read the tasks' version"))?;
        let now = now.unwrap_or(0);
        if now == version {
            return Ok(None);
        }
        let (records, states, run_ends) = redis::pipe()
            .lrange(self.keys().tasks(), known as isize, -1)
            .hgetall(self.keys().task_states())
            .hgetall(self.keys().run_ends())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read the tasks"))?;
        Ok(Some(TasksRead {
            version: now,
            records,
            states,
            run_ends,
        }))
    }

    /// Leader only: fires tick `at` (Unix seconds) of scheduled task `task`, starting run
    /// `run` with `seeds` (encoded for that run) unless the tick was fired before, the
    /// previous run is still open and `overlap` skips, or the task's current run is not
    /// `run - 1` (see tick.lua). Tells what happened and the task's last tick fired before.
    pub async fn tick(
        &mut self,
        epoch: u64,
        task: &str,
        at: i64,
        overlap: crate::schedule::Overlap,
        run: u64,
        seeds: &[NewUrl],
    ) -> Result<(Tick, Option<i64>), ClusterError> {
        let mut call = self.scripts.tick.prepare_invoke();
        call.key(&self.prefix)
            .arg(epoch)
            .arg(task)
            .arg(at)
            .arg(match overlap {
                crate::schedule::Overlap::Skip => "skip",
                crate::schedule::Overlap::Replace => "replace",
            })
            .arg(run)
            .arg(self.config.per_host)
            .arg(self.config.max_queue_per_host);
        Self::push_urls(&mut call, seeds);
        let (code, last): (i64, i64) = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("fire a scheduled tick"))?;
        let tick = match code {
            -1 => Tick::NotLeader,
            0 => Tick::FiredBefore,
            1 => Tick::Skipped,
            2 => Tick::Started,
            3 => Tick::RunMoved,
            4 => Tick::Closed,
            5 => Tick::Replaced,
            _ => return Err(ClusterError::Answer("fire a scheduled tick")),
        };
        Ok((tick, (last >= 0).then_some(last)))
    }

    /// The current run of scheduled task `task` as recorded (0 before its first), and the
    /// last tick fired for it (Unix seconds).
    pub async fn run_of(&mut self, task: &str) -> Result<(u64, Option<i64>), ClusterError> {
        let (state, last): (Option<String>, Option<i64>) = redis::pipe()
            .hget(self.keys().task_states(), task)
            .hget(self.keys().ticks(), task)
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read a task's run"))?;
        let run = state
            .and_then(|s| super::tasks::parse_state_value(&s))
            .map_or(0, |(_, run)| run);
        Ok((run, last))
    }

    /// Leader only: marks done the current runs of `tasks` that have nothing open any more
    /// (see runs.lua); returns how many, `None` when `epoch` is stale.
    pub async fn end_runs(
        &mut self,
        epoch: u64,
        tasks: &[String],
    ) -> Result<Option<u64>, ClusterError> {
        let mut call = self.scripts.runs.prepare_invoke();
        call.key(&self.prefix).arg(epoch);
        for task in tasks {
            call.arg(task);
        }
        let ended: i64 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("end scheduled runs"))?;
        Ok(u64::try_from(ended).ok())
    }

    /// Pages of each scheduled run still open (queued, leased or deferred), by run key.
    pub async fn runs_open(&mut self) -> Result<Vec<(String, i64)>, ClusterError> {
        redis::cmd("HGETALL")
            .arg(self.keys().run_open())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count the runs' open pages"))
    }

    /// The key prefix of this crawl (its hash tag).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection to the crawl's Redis, for the other cluster jobs.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The key of the seen-set shard holding `fingerprint`, for tests of its encoding.
    pub fn seen_shard_key(&self, fingerprint: u64) -> String {
        self.keys().seen(None, fingerprint % SEEN_SHARDS)
    }

    /// The key of the seen-set shard `fingerprint` is kept in for the scheduled run keyed
    /// `run` ([`super::tasks::run_key`]), deleted when the task's next run starts.
    pub fn run_seen_shard_key(&self, run: &str, fingerprint: u64) -> String {
        self.keys().seen(Some(run), fingerprint % SEEN_SHARDS)
    }
}
