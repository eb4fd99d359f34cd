//! The crawl loop's side of a shared frontier: requests claimed from Redis wait here for a
//! worker, and what became of each goes back to Redis as one `complete` per lease, sent only
//! once the page's items are acknowledged by the itemsaver.
//!
//! The crawl loop records a request's outcome as it always does (finished, deferred,
//! requeued, robots.txt known, links found); each loop turn's records are gathered into one
//! completion per lease at the turn's end, so a page's links, its retry or its end, and its
//! host's back-off reach Redis together, atomically.

mod events;

use super::entry;
use super::frontier::{
    Again, Claim, ClusterError, Counts, Finished, NewUrl, Pace, RedisFrontier, RobotsRequest,
    SettleReport,
};
use crate::frontier::{Dispatched, Kind, Popped};
use crate::robots::{self, Rules, Verdict};
use crate::tasks::Hold;
use common::{Request, RobotsFile};
pub use events::{BudgetVerdict, Closing, FrontierEvent, Handled};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Longest wait between claims when no host is ready: other engines' completions may make
/// one ready sooner than Redis could say, and are found at most this late.
const MAX_CLAIM_WAIT: Duration = Duration::from_secs(1);

/// Fingerprints an engine remembers offering at most (about 16 MiB); past it, it forgets.
const OFFERED_CAP: usize = 1 << 20;

/// How long a claimed request of a paused task waits before it is looked at again.
const PAUSED_RETRY: Duration = Duration::from_secs(1);

/// How long an operator's task change is tried while Redis fails, before it is refused.
const RECORD_TASKS_FOR: Duration = Duration::from_secs(5);

/// Shortest wait after a claim that found nothing.
const MIN_CLAIM_WAIT: Duration = Duration::from_millis(10);

/// How often the crawl's end and figures are read and failed calls retried while this
/// engine has work in hand.
pub const TICK: Duration = Duration::from_millis(100);

/// How often they are read while it has none (an idle engine of a waiting crawl): a task
/// change reaches it within this.
pub const IDLE_TICK: Duration = Duration::from_secs(1);

/// A request's outcome, waiting to reach Redis.
#[derive(Debug)]
struct Completion {
    lease: u64,
    host: String,
    pace: Pace,
    again: Pending,
    links: Vec<NewUrl>,
    robots: Option<Vec<u8>>,
    crawl_delay: Duration,
    robots_request: RobotsRequest,
    /// A page sent and done for good: one more of its host's pages.
    counted: bool,
    /// The key of its scheduled run (empty for none).
    run: String,
}

/// Whether a completed request is sent again, owned.
#[derive(Debug)]
enum Pending {
    Never,
    Now(Vec<u8>),
    After(Vec<u8>, Duration),
}

/// One change of the outbox.
#[derive(Debug)]
enum Settle {
    /// A page was answered: its host slot goes back and its links are queued, while its
    /// items are being stored.
    Release(u64, Vec<NewUrl>),
    /// A request's outcome: its lease ends.
    Complete(Completion),
}

/// A batch of the outbox on its way, handed back with the result.
type Settling = BoxFuture<'static, (Result<SettleReport, ClusterError>, Vec<Settle>)>;

/// Changes sent in one settle call at most.
const SETTLE_BATCH: usize = 256;

/// What one loop turn recorded.
#[derive(Debug, Default)]
struct Turn {
    tasks: Vec<super::tasks::TaskChange>,
    ends: Vec<Completion>,
    links: Vec<NewUrl>,
    paces: HashMap<String, Pace>,
    spooled: Option<u64>,
}

/// A claim on its way, with the pool leases it was made for.
type Claiming = BoxFuture<'static, Result<(Claim, Vec<(String, Option<Rules>)>), ClusterError>>;

/// What Redis answered: a claim or a batch.
pub enum RedisAnswer {
    /// A claim's requests.
    Claimed(Claimed),
    /// A batch's result.
    Settled(Settled),
}

/// The result of a batch sent to Redis, for the crawl loop to hand back.
pub struct Settled((Result<SettleReport, ClusterError>, Vec<Settle>));

/// The result of a claim, for the crawl loop to hand back.
pub struct Claimed(
    #[allow(clippy::type_complexity)] Result<(Claim, Vec<(String, Option<Rules>)>), ClusterError>,
);

/// One engine's view of the crawl's shared frontier.
pub struct SharedFrontier {
    redis: RedisFrontier,
    engine: String,
    obey_robots: bool,
    agent: String,
    /// Claimed, not yet sent.
    local: VecDeque<Dispatched>,
    /// Hosts' robots.txt rules, read from Redis once per host.
    rules: KnownRules,
    /// Hosts this engine offered a robots.txt request for.
    offered: HashSet<String>,
    /// Fingerprints this engine offered, never sent again: Redis has them in its seen set,
    /// or refused them for a full host queue (such a link waits for another engine or page
    /// to offer it, where the embedded frontier would take it once there is room).
    offered_urls: HashSet<u64>,
    turn: Turn,
    /// Completions waiting for their page's items to be acknowledged, by spool sequence.
    awaiting: BTreeMap<u64, Completion>,
    /// What is ready to go to Redis, in order: host slots to give back with their pages'
    /// links, and completions.
    outbox: VecDeque<Settle>,
    /// The batch of the outbox on its way to Redis.
    settling: Option<Settling>,
    /// Leases this engine holds (claimed and not completed), by id; a task of its own keeps
    /// them extended, whatever the crawl loop is waiting for.
    held: Held,
    _extending: tokio_util::sync::DropGuard,
    claiming: Option<Claiming>,
    /// Requests the claim on its way asked for.
    asked: usize,
    claim_at: Instant,
    /// When the next tick is due.
    tick_at: Instant,
    /// Acknowledgements of spooled items (see [`SharedFrontier::take_acks`]).
    acks: Option<tokio::sync::mpsc::Receiver<Vec<u64>>>,
    counts: Counts,
    done: bool,
    /// The engine is stopping: it claims nothing and gives back what it claimed.
    stopping: bool,
    /// The version of the crawl's tasks this engine took up, and how many it added.
    tasks_version: u64,
    tasks_known: usize,
    /// Completions that found their lease gone (reaped during an outage longer than the
    /// lease, or completed before): the summary's `late_completions`.
    late_completions: u64,
    /// Claimed records that did not read as requests: the summary's `unreadable_requests`.
    unreadable: u64,
    /// Leases of claimed pages whose host had its `--max_pages_per_host`: skipped, not sent.
    over_cap: HashSet<u64>,
    /// When the crawl was done as this engine joined it: how many tasks Redis recorded then.
    joined_done: Option<u64>,
    /// Each task's requests queued in Redis, as the last tick read them.
    task_queued: HashMap<String, u64>,
    /// Whether the next task news are read whatever the last tick read of their version.
    news_forced: bool,
    /// Since when Redis has failed, while it does.
    failing_since: Option<Instant>,
    /// What Redis last failed with.
    last_error: Option<String>,
    redis_timeout: Duration,
    state: std::sync::Arc<super::engines::EngineState>,
    role: tokio::sync::watch::Receiver<super::leader::Role>,
}

impl std::fmt::Debug for SharedFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFrontier")
            .field("engine", &self.engine)
            .field("local", &self.local.len())
            .field("held", &self.held.ids().len())
            .finish()
    }
}

/// How a shared frontier is set up.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    /// This engine's id, recorded on its leases.
    pub engine: String,
    /// Whether robots.txt is fetched and obeyed.
    pub robots: bool,
    /// The User-Agent token robots.txt groups are matched against.
    pub agent: String,
    /// How long a claim holds a request unless extended.
    pub lease: Duration,
    /// How long Redis may fail before the engine gives up.
    pub redis_timeout: Duration,
    /// This engine's mode (an operator may pause or drain it) and figures.
    pub state: std::sync::Arc<super::engines::EngineState>,
    /// This engine's role, from the leader job: the leader checks for the end on every tick.
    pub role: tokio::sync::watch::Receiver<super::leader::Role>,
    /// When the crawl was done as the engine joined it (a serving engine restarted on a
    /// finished crawl): the number of tasks recorded in Redis then. The runs of those
    /// tasks this engine starts add nothing.
    pub joined_done: Option<u64>,
}

/// Redis stayed away longer than `--redis_timeout`.
#[derive(Debug, thiserror::Error)]
#[error(
    "redis has been unreachable for {waited:?} (last error: {cause}); the crawl's state is kept in redis: start the engines again to carry on"
)]
pub struct RedisGone {
    /// How long it failed.
    pub waited: Duration,
    /// The last error.
    pub cause: String,
}

impl SharedFrontier {
    /// A shared frontier over `redis` for this engine.
    pub fn new(redis: RedisFrontier, config: SharedConfig) -> Self {
        let now = Instant::now();
        let held = Held::default();
        let stop = tokio_util::sync::CancellationToken::new();
        extend_leases(redis.clone(), held.clone(), config.lease, stop.clone());
        let extending = stop.drop_guard();
        SharedFrontier {
            redis,
            engine: config.engine,
            obey_robots: config.robots,
            agent: config.agent,
            local: VecDeque::new(),
            rules: KnownRules::default(),
            offered: HashSet::new(),
            offered_urls: HashSet::new(),
            turn: Turn::default(),
            awaiting: BTreeMap::new(),
            outbox: VecDeque::new(),
            settling: None,
            held,
            _extending: extending,
            claiming: None,
            asked: 0,
            claim_at: now,
            tick_at: now,
            acks: None,
            counts: Counts::default(),
            done: false,
            stopping: false,
            tasks_version: 0,
            tasks_known: 0,
            late_completions: 0,
            unreadable: 0,
            over_cap: HashSet::new(),
            joined_done: config.joined_done,
            task_queued: HashMap::new(),
            news_forced: false,
            failing_since: None,
            last_error: None,
            redis_timeout: config.redis_timeout,
            state: config.state,
            role: config.role,
        }
    }

    /// The URL record to offer for `request` at `place`: with the host's robots.txt request
    /// the first time this engine offers the host.
    pub fn new_url(
        &mut self,
        request: &Request,
        place: entry::Place,
        robots_url: impl FnOnce() -> String,
    ) -> NewUrl {
        let first = self.obey_robots && self.offered.insert(place.host.clone());
        entry::new_url(request, place, first.then(robots_url))
    }

    /// Records a URL found this turn; it is offered with the turn's completion, unless this
    /// engine offered it before (then Redis has it in its seen set already).
    pub fn push(&mut self, url: NewUrl) {
        if !self.offered_urls.insert(url.fingerprint) {
            return;
        }
        if self.offered_urls.len() > OFFERED_CAP {
            // Only a shortcut: forgetting it costs Redis lookups, never a wrong answer.
            self.offered_urls.clear();
            self.offered_urls.insert(url.fingerprint);
        }
        self.turn.links.push(url);
    }

    /// The next claimed request, or why it is not sent. `hold` says, by task and run, what
    /// becomes of a page.
    pub fn pop(&mut self, mut hold: impl FnMut(&str, u64) -> Hold) -> Option<Popped> {
        let d = self.local.pop_front()?;
        let over_cap = self.over_cap.remove(&d.id);
        if !self.held.contains(d.id) {
            // Its lease ended before it was sent (the engine stalled): the request went back
            // to the queue, for any engine. It is not this engine's to send any more.
            return None;
        }
        if over_cap && d.kind == Kind::Page {
            return Some(Popped::Skip(d, "host_page_cap"));
        }
        if d.kind == Kind::Page {
            match hold(&d.request.task, d.run) {
                // The crawl-wide budget decides, in Redis, as the page is about to go (see
                // `reserve`): a page it refuses goes back to its lane, held there.
                Hold::Go | Hold::Cap => {}
                Hold::Wait => {
                    // A task or run this engine has not read of yet: it will have, shortly.
                    self.defer(d, 2 * TICK);
                    return None;
                }
                Hold::Drop(reason) => return Some(Popped::Skip(d, reason)),
                Hold::Park => {
                    // A paused task's requests wait in Redis, looked at again now and then.
                    self.defer(d, PAUSED_RETRY);
                    return None;
                }
            }
        }
        if d.kind == Kind::Page && self.obey_robots {
            match self.rules.get(&d.host) {
                Some(rules) if !rules.allows(&d.request.url) => {
                    return Some(Popped::Skip(d, "robots_disallowed"));
                }
                Some(_) => {}
                // Claimed before its rules were stored (not expected: the host sends
                // nothing before them): it waits a moment and comes back.
                None => {
                    self.defer(d, Duration::from_secs(1));
                    return None;
                }
            }
        }
        Some(Popped::Send(d))
    }

    /// Whether a claimed request waits to be sent.
    pub fn has_ready(&self) -> bool {
        !self.local.is_empty()
    }

    /// Whether a claim may be made now for a free worker slot.
    pub fn may_claim(&self, now: Instant) -> bool {
        !self.done
            && self.running()
            && self.claiming.is_none()
            && self.failing_since.is_none()
            && self.local.is_empty()
            && now >= self.claim_at
    }

    /// When the next claim may be made, while it is not yet time.
    pub fn next_claim(&self) -> Option<Instant> {
        (!self.done
            && self.running()
            && self.claiming.is_none()
            && self.failing_since.is_none()
            && self.local.is_empty())
        .then_some(self.claim_at)
    }

    /// Whether this engine takes new work (not paused, draining or stopping).
    fn running(&self) -> bool {
        !self.stopping && self.state.mode() == super::engines::EngineMode::Running
    }

    /// The engine is stopping: it claims nothing more, and the requests it claimed but did
    /// not send go back to the front of their queues with this turn.
    pub fn stop(&mut self) {
        self.stopping = true;
        while let Some(d) = self.local.pop_front() {
            self.requeue_front(d);
        }
    }

    /// How long until the next tick: short while this engine holds work, long while idle.
    pub fn tick_every(&self) -> Duration {
        if self.holds_work() || !self.held.is_empty() || self.failing_since.is_some() {
            TICK
        } else {
            IDLE_TICK
        }
    }

    /// Whether this engine was drained and holds nothing more: it leaves the crawl.
    pub fn drained(&self) -> bool {
        self.state.mode() == super::engines::EngineMode::Draining && !self.holds_work()
    }

    fn holds_work(&self) -> bool {
        !self.local.is_empty()
            || !self.outbox.is_empty()
            || !self.awaiting.is_empty()
            || self.settling.is_some()
            || self.claiming.is_some()
    }

    /// Whether a claim is on its way.
    pub fn claiming(&self) -> bool {
        self.claiming.is_some()
    }

    /// Claims up to `max` requests (one per worker slot the crawl loop holds for them until
    /// the claim is answered).
    pub fn claim(&mut self, max: usize) {
        let max = max.max(1);
        self.asked = max;
        let mut redis = self.redis.clone();
        let engine = self.engine.clone();
        let known = self.rules.clone();
        let obey = self.obey_robots;
        let agent = self.agent.clone();
        let held = self.held.clone();
        self.claiming = Some(Box::pin(async move {
            let claim = redis.claim_next(&engine, max).await?;
            // Renewed from now on, whatever the crawl loop is busy with.
            for c in &claim.claimed {
                held.insert(c.lease);
            }
            let mut hosts: Vec<&str> = Vec::new();
            if obey {
                for c in &claim.claimed {
                    if !known.contains(&c.host) && !hosts.contains(&c.host.as_str()) {
                        hosts.push(&c.host);
                    }
                }
            }
            // The claim is made and its leases held: a failed read must not lose them. Their
            // hosts' rules stay unknown, so their pages wait a moment and come back (see
            // `pop`), read again then.
            let records = match redis.robots(&hosts).await {
                Ok(records) => records,
                Err(e) => {
                    warn!(cause = %e, hosts = hosts.len(), "could not read robots.txt records; their pages wait a moment");
                    vec![None; hosts.len()]
                }
            };
            let hosts: Vec<String> = hosts.into_iter().map(str::to_owned).collect();
            // Reading a hostile robots.txt is CPU work: off the crawl loop.
            let rules = tokio::task::spawn_blocking(move || {
                hosts
                    .into_iter()
                    .zip(records)
                    .map(|(host, record)| {
                        let rules = record.map(|bytes| read_record(&bytes, &agent).0);
                        (host, rules)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            Ok((claim, rules))
        }));
    }

    /// Waits for the claim on its way (never ready when there is none).
    pub async fn claimed(&mut self) -> Claimed {
        match self.claiming.as_mut() {
            Some(claim) => Claimed(claim.await),
            None => std::future::pending().await,
        }
    }

    /// Takes a claim's answer: its requests wait here for worker slots (the crawl loop gives
    /// back the slots it held for the claim).
    pub fn take_claim(&mut self, claimed: Claimed, now: Instant) {
        self.claiming = None;
        let asked = std::mem::take(&mut self.asked);
        match claimed.0 {
            Ok((claim, rules)) => {
                self.recovered_redis();
                for (host, rules) in rules {
                    if let Some(rules) = rules {
                        self.rules.insert(host, rules);
                    }
                }
                self.claim_at = if claim.claimed.is_empty() {
                    // Until the next host is due, or a while when none is queued: another
                    // engine's completion or offer may make one ready sooner, which this
                    // engine then finds at most that late. Never a spin.
                    now + claim_wait(claim.next)
                } else if claim.claimed.len() < asked {
                    // The ready hosts gave what they had: again when the next is due.
                    now + ready_in(claim.next)
                } else {
                    now
                };
                self.state.dispatched(claim.claimed.len() as u64);
                let stopping = self.stopping;
                for c in claim.claimed {
                    self.held.insert(c.lease);
                    if c.over_cap {
                        self.over_cap.insert(c.lease);
                    }
                    match entry::decode(&c.entry, c.lease, c.host.clone()) {
                        Ok(d) if stopping => {
                            self.over_cap.remove(&c.lease);
                            self.requeue_front(d)
                        }
                        Ok(d) => self.local.push_back(d),
                        Err(unreadable) => {
                            self.over_cap.remove(&c.lease);
                            self.unreadable(c.lease, c.host, unreadable)
                        }
                    }
                }
            }
            Err(e) => self.redis_failed(&e, now),
        }
    }

    /// A claimed record that does not read as a request (another version's, or damaged) is
    /// dropped: counted out of its run, so the run can end, and, when it was its host's
    /// robots.txt request, the host's robots.txt recorded as unavailable for every engine
    /// (its pages are skipped as `robots_unavailable`), so its pages do not wait for ever.
    fn unreadable(&mut self, lease: u64, host: String, unreadable: entry::Unreadable) {
        self.unreadable += 1;
        if self.unreadable == 1 {
            warn!(%host, ?unreadable, "a request in redis does not read (written by another version?); dropped, and any more like it, counted in the summary");
        } else {
            debug!(%host, ?unreadable, "an unreadable request in redis dropped");
        }
        // The record of a robots.txt that could not be had (see `read_record`).
        let unavailable = bincode::serialize(&None::<RobotsFile>).unwrap_or_default();
        let (robots_request, run) = match unreadable {
            entry::Unreadable::Known { robots: true, run } => {
                self.rules.insert(host.clone(), Rules::DisallowAll);
                (RobotsRequest::Yes, run)
            }
            entry::Unreadable::Known { robots: false, run } => (RobotsRequest::No, run),
            entry::Unreadable::Unknown => (RobotsRequest::Unknown, String::new()),
        };
        self.turn.ends.push(Completion {
            robots: (robots_request != RobotsRequest::No).then_some(unavailable),
            robots_request,
            run,
            ..Completion::never(lease, host)
        });
    }

    /// A request is done for good without being sent (skipped).
    pub fn finished(&mut self, d: &Dispatched) {
        self.end(d, Pending::Never);
    }

    /// A request is done for good after it was sent: a page counts toward its host's
    /// `--max_pages_per_host`.
    pub fn fetched(&mut self, d: &Dispatched) {
        self.end(d, Pending::Never);
        if d.kind == Kind::Page
            && let Some(c) = self.turn.ends.last_mut()
        {
            c.counted = true;
        }
    }

    /// A request goes back to the front of its host's queue, uncharged.
    pub fn requeue_front(&mut self, d: Dispatched) {
        let again = entry::encode_again(&d);
        self.end(&d, Pending::Now(again));
    }

    /// A request is tried again after `wait`.
    pub fn defer(&mut self, d: Dispatched, wait: Duration) {
        let again = entry::encode_again(&d);
        self.end(&d, Pending::After(again, wait));
    }

    fn end(&mut self, d: &Dispatched, again: Pending) {
        let run = match d.kind {
            Kind::Page => super::tasks::run_key(&d.request.task, d.run),
            Kind::Robots => String::new(),
        };
        self.turn.ends.push(Completion {
            again,
            robots_request: if d.kind == Kind::Robots {
                RobotsRequest::Yes
            } else {
                RobotsRequest::No
            },
            run,
            ..Completion::never(d.id, d.host.clone())
        });
    }

    /// A host's robots.txt is known: its rules are kept here and stored for every engine,
    /// with the request that fetched it done. `file` is `None` when it could not be had.
    pub fn robots_known(
        &mut self,
        d: &Dispatched,
        rules: Rules,
        crawl_delay: Option<Duration>,
        file: Option<RobotsFile>,
    ) {
        self.rules.insert(d.host.clone(), rules);
        let record = bincode::serialize(&file).unwrap_or_default();
        self.turn.ends.push(Completion {
            robots: Some(record),
            crawl_delay: crawl_delay.unwrap_or_default(),
            ..Completion::never(d.id, d.host.clone())
        });
    }

    /// Records a task change for every engine (this engine leads: operators' changes come
    /// here).
    pub fn task_changed(&mut self, change: super::tasks::TaskChange) {
        self.turn.tasks.push(change);
    }

    /// A host answered 429 or 503: Redis doubles its back-off, kept for every engine, and
    /// holds it that long (or for its `retry_after`), with this turn's completion.
    pub fn throttle(&mut self, host: &str, retry_after: Option<Duration>) {
        self.turn
            .paces
            .insert(host.to_owned(), Pace::Throttled(retry_after));
    }

    /// A host answered well: Redis halves its back-off, for every engine.
    pub fn recovered(&mut self, host: &str) {
        self.turn
            .paces
            .entry(host.to_owned())
            .or_insert(Pace::Recovered);
    }

    /// The page whose outcome was recorded this turn has its items under spool `seq`: its
    /// lease completes once they are acknowledged.
    pub fn spooled(&mut self, seq: u64) {
        self.turn.spooled = Some(seq);
    }

    /// Items under these spool sequences are acknowledged: their pages' leases may complete.
    pub fn acked(&mut self, seqs: &[u64]) {
        for seq in seqs {
            if let Some(c) = self.awaiting.remove(seq) {
                self.outbox.push_back(Settle::Complete(c));
            }
        }
    }

    /// Ends the loop turn: its records join the outbox (a page's completion once its items
    /// are acknowledged), which goes to Redis in batches (see [`SharedFrontier::settle`]).
    /// The leader's own task changes (a run's deadline) are recorded at once, fenced by its
    /// epoch; one that could not be is logged, and every engine ends the run by its own
    /// deadline. (Operators' changes are recorded before they apply: `record_change`.)
    pub async fn end_turn(&mut self) {
        let mut turn = std::mem::take(&mut self.turn);
        if !turn.tasks.is_empty() {
            let recorded = self.record(&turn.tasks, &[], &Default::default()).await;
            if !matches!(recorded, Ok(super::frontier::Recorded::Now)) {
                warn!(
                    ?recorded,
                    "a task change was not recorded for the other engines"
                );
            }
        }
        for (host, pace) in &turn.paces {
            if matches!(pace, Pace::Throttled(_)) && !turn.ends.iter().any(|c| &c.host == host) {
                // The host's request was reaped meanwhile: its 429 still counts.
                self.outbox.push_front(Settle::Complete(Completion {
                    pace: *pace,
                    ..Completion::never(0, host.clone())
                }));
            }
        }
        if turn.ends.len() == 1 {
            let mut c = turn.ends.remove(0);
            c.links = std::mem::take(&mut turn.links);
            c.pace = turn.paces.get(&c.host).copied().unwrap_or_default();
            match turn.spooled {
                Some(seq) => {
                    let links = std::mem::take(&mut c.links);
                    self.outbox.push_back(Settle::Release(c.lease, links));
                    self.awaiting.insert(seq, c);
                }
                None => self.push_completion(c),
            }
        } else {
            for mut c in turn.ends {
                // A host's pace moves once a turn, with its first completion: a 429 among
                // several answers doubles its back-off once.
                c.pace = turn.paces.remove(&c.host).unwrap_or_default();
                self.push_completion(c);
            }
            if !turn.links.is_empty() {
                // Links no single outcome owns: offered on their own (a release of no lease).
                self.outbox
                    .push_back(Settle::Release(0, std::mem::take(&mut turn.links)));
            }
        }
        if self.failing_since.is_none() {
            self.settle();
        }
    }

    /// Queues a completion for Redis: one that holds its host (a 429/503) goes ahead of the
    /// rest, so that no engine claims the host meanwhile for want of hearing of it.
    fn push_completion(&mut self, c: Completion) {
        if matches!(c.pace, Pace::Throttled(_)) {
            self.outbox.push_front(Settle::Complete(c));
        } else {
            self.outbox.push_back(Settle::Complete(c));
        }
    }

    /// Records an operator's change (and a new task's seeds) for every engine, fenced by the
    /// leader's epoch and by `fence` (see [`SharedFrontier::record`]).
    pub async fn record_change(
        &mut self,
        change: &super::tasks::TaskChange,
        seeds: &[NewUrl],
        fence: &super::frontier::TaskFence<'_>,
    ) -> Result<super::frontier::Recorded, ClusterError> {
        let recorded = self
            .record(std::slice::from_ref(change), seeds, fence)
            .await?;
        if recorded == super::frontier::Recorded::Now {
            self.offered_seeds(seeds);
        }
        Ok(recorded)
    }

    /// Records task changes in one script fenced by the leader's epoch and by `fence`,
    /// trying again for a few seconds while Redis fails (an idempotency key in `fence` makes
    /// a retry of a change that landed harmless). `Err` when Redis gave no answer: the
    /// changes may yet have been recorded.
    async fn record(
        &mut self,
        changes: &[super::tasks::TaskChange],
        seeds: &[NewUrl],
        fence: &super::frontier::TaskFence<'_>,
    ) -> Result<super::frontier::Recorded, ClusterError> {
        let until = Instant::now() + RECORD_TASKS_FOR;
        loop {
            let role = *self.role.borrow();
            let super::leader::Role::Leader(epoch) = role else {
                return Ok(super::frontier::Recorded::Stale);
            };
            match self.redis.record_change(epoch, changes, seeds, fence).await {
                Ok(recorded) => return Ok(recorded),
                Err(e) if Instant::now() >= until => return Err(e),
                Err(e) => debug!(cause = %e, "recording a task change failed; trying again"),
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Makes the next [`SharedFrontier::task_news`] read Redis whatever the last tick said
    /// (a change recorded since, by this engine or another).
    pub fn news_due(&mut self) {
        self.news_forced = true;
    }

    /// The number of task records this engine has read from Redis.
    pub fn tasks_read(&self) -> u64 {
        self.tasks_known as u64
    }

    /// Sends the front of the outbox to Redis in one call, unless a batch is on its way: a
    /// busy engine's pages share round trips, and the crawl loop never waits for Redis.
    pub fn settle(&mut self) {
        if self.settling.is_some() || self.outbox.is_empty() {
            return;
        }
        let n = self.outbox.len().min(SETTLE_BATCH);
        let batch: Vec<Settle> = self.outbox.drain(..n).collect();
        let mut redis = self.redis.clone();
        self.settling = Some(Box::pin(async move {
            let ops: Vec<super::frontier::SettleOp<'_>> = batch
                .iter()
                .map(|op| match op {
                    Settle::Release(lease, links) => super::frontier::SettleOp::Release {
                        lease: *lease,
                        links,
                    },
                    Settle::Complete(c) => super::frontier::SettleOp::Complete {
                        lease: c.lease,
                        host: &c.host,
                        finished: Finished {
                            pace: c.pace,
                            again: match &c.again {
                                Pending::Never => Again::Never,
                                Pending::Now(entry) => Again::Now(entry),
                                Pending::After(entry, wait) => Again::After(entry, *wait),
                            },
                            links: &c.links,
                            robots: c.robots.as_deref(),
                            crawl_delay: c.crawl_delay,
                            robots_request: c.robots_request,
                            counted: c.counted,
                            run: &c.run,
                        },
                    },
                })
                .collect();
            let result = redis.settle(&ops).await;
            drop(ops);
            (result, batch)
        }));
    }

    /// Waits for the claim or the batch on its way, whichever answers first.
    pub async fn answer(&mut self) -> RedisAnswer {
        let claiming = &mut self.claiming;
        let settling = &mut self.settling;
        tokio::select! {
            claimed = async {
                match claiming.as_mut() {
                    Some(claim) => claim.await,
                    None => std::future::pending().await,
                }
            } => RedisAnswer::Claimed(Claimed(claimed)),
            settled = async {
                match settling.as_mut() {
                    Some(batch) => batch.await,
                    None => std::future::pending().await,
                }
            } => RedisAnswer::Settled(Settled(settled)),
        }
    }

    /// Whether a batch is on its way to Redis.
    pub fn settling(&self) -> bool {
        self.settling.is_some()
    }

    /// Waits for the batch on its way (never ready when there is none).
    pub async fn settled(&mut self) -> Settled {
        match self.settling.as_mut() {
            Some(settling) => Settled(settling.await),
            None => std::future::pending().await,
        }
    }

    /// Takes a batch's result: its leases are done with, or, when Redis failed, the batch
    /// goes back to the front of the outbox to be sent again.
    pub fn take_settled(&mut self, settled: Settled) {
        self.settling = None;
        let (result, batch) = settled.0;
        match result {
            Ok(report) => {
                self.recovered_redis();
                if report.late > 0 {
                    debug!(
                        late = report.late,
                        "completions found their lease gone; their links were queued all the same"
                    );
                    self.late_completions += report.late as u64;
                }
                for op in &batch {
                    if let Settle::Complete(c) = op {
                        self.held.remove(c.lease);
                    }
                }
                // Host slots are free: claim again once a host is ready (Redis says when;
                // at once when one is), without waiting out the poll.
                self.claim_at = self.claim_at.min(Instant::now() + ready_in(report.next));
                self.settle();
            }
            Err(e) => {
                self.redis_failed(&e, Instant::now());
                for op in batch.into_iter().rev() {
                    self.outbox.push_front(op);
                }
            }
        }
    }

    /// Reads what changed in the crawl's tasks since the last look; `None` when nothing did
    /// (as the last tick's read of the version says: no call to Redis then).
    pub async fn task_news(&mut self) -> Option<super::tasks::TaskNews> {
        if self.counts.tasks_version == self.tasks_version && !self.news_forced {
            return None;
        }
        self.news_forced = false;
        let read = match self
            .redis
            .tasks_since(self.tasks_version, self.tasks_known)
            .await
        {
            Ok(Some(news)) => news,
            Ok(None) => return None,
            Err(e) => {
                debug!(cause = %e, "could not read the crawl's tasks");
                return None;
            }
        };
        self.tasks_version = read.version;
        let mut news = super::tasks::TaskNews::default();
        for record in read.records {
            self.tasks_known += 1;
            match serde_json::from_str::<super::tasks::TaskSpec>(&record)
                .map_err(crate::tasks::RecordError::from)
                .and_then(|s| s.to_def())
            {
                Ok(def) => news.added.push(def),
                Err(why) => warn!(%why, "a task recorded in redis is unusable; skipped"),
            }
        }
        let parse = |list: Vec<(String, String)>| {
            list.into_iter()
                .filter_map(|(name, value)| {
                    super::tasks::parse_state_value(&value).map(|(s, run)| (name, s, run))
                })
                .collect::<Vec<_>>()
        };
        news.states = parse(read.states);
        news.run_ends = parse(read.run_ends);
        Some(news)
    }

    /// The leader's epoch, while this engine leads the crawl.
    pub fn leading(&self) -> Option<u64> {
        match *self.role.borrow() {
            super::leader::Role::Leader(epoch) => Some(epoch),
            _ => None,
        }
    }

    /// The Redis side of the shared frontier, for the leader's scheduled ticks.
    pub fn redis(&mut self) -> &mut RedisFrontier {
        &mut self.redis
    }

    /// Redis commands this engine sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.redis.commands_sent()
    }

    /// Remembers seeds offered outside the crawl loop's turns (a scheduled run's, with its
    /// tick): they are not offered again by this engine.
    pub fn offered_seeds(&mut self, seeds: &[NewUrl]) {
        for seed in seeds {
            self.offered_urls.insert(seed.fingerprint);
            if !seed.robots.is_empty() {
                self.offered.insert(seed.host.clone());
            }
        }
    }

    /// Whether robots.txt is obeyed (a run's seeds carry their hosts' robots.txt requests).
    pub fn obeys_robots(&self) -> bool {
        self.obey_robots
    }

    /// Keeps the crawl's view of Redis current: retries what failed, reads the crawl's
    /// figures and whether it is done, and (leading) checks for the end.
    pub async fn tick(&mut self, now: Instant) -> Result<(), RedisGone> {
        if let Some(e) = self.failing_since.and(self.last_error.clone()) {
            self.check_gone_text(&e)?;
        }
        self.settle();
        match self.redis.status().await {
            Ok((counts, per_task)) => {
                self.counts = counts;
                self.task_queued = per_task.into_iter().collect();
            }
            Err(e) => {
                self.redis_failed(&e, now);
                return self.check_gone(&e);
            }
        }
        self.recovered_redis();
        let mut done = self.counts.done;
        let role = *self.role.borrow();
        if let super::leader::Role::Leader(epoch) = role
            && !done
            && self.queued() == 0
        {
            // Nothing left anywhere: decide the end now, not on the leader job's next round.
            match self.redis.finish(epoch).await {
                Ok(finished) => done = finished == Some(true),
                Err(e) => debug!(cause = %e, "could not check for the end"),
            }
        }
        if done && !self.done {
            info!("the crawl is done: nothing is queued, leased or deferred");
        }
        self.done = done;
        Ok(())
    }

    fn redis_failed(&mut self, e: &ClusterError, now: Instant) {
        self.last_error = Some(e.to_string());
        if self.failing_since.is_none() {
            warn!(cause = %e, "redis failed; dispatching stops until it is back");
            self.failing_since = Some(now);
        }
    }

    fn recovered_redis(&mut self) {
        if self.failing_since.take().is_some() {
            info!("redis is back; the crawl goes on");
        }
    }

    fn check_gone(&self, e: &ClusterError) -> Result<(), RedisGone> {
        self.check_gone_text(&e.to_string())
    }

    fn check_gone_text(&self, cause: &str) -> Result<(), RedisGone> {
        match self.failing_since {
            Some(since) if since.elapsed() >= self.redis_timeout => Err(RedisGone {
                waited: since.elapsed(),
                cause: cause.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the crawl still has work for this engine: it is not done, or this engine
    /// still holds requests or completions.
    pub fn keeps_going(&self) -> bool {
        if self.stopping || self.state.mode() == super::engines::EngineMode::Draining {
            return self.holds_work();
        }
        !self.done || self.holds_work()
    }

    /// Gives back the claimed requests not sent and sends what is left of the outbox (the
    /// engine is stopping).
    pub async fn give_back(&mut self) -> Result<(), RedisGone> {
        while let Some(d) = self.local.pop_front() {
            self.requeue_front(d);
        }
        self.over_cap.clear();
        self.stopping = true;
        loop {
            // This turn's ends, and what a claim answered meanwhile (see `take_claim`).
            let ends = std::mem::take(&mut self.turn.ends);
            self.outbox.extend(ends.into_iter().map(Settle::Complete));
            if self.claiming.is_some() {
                // Its requests go back with the rest (see `take_claim`); a batch that
                // answers first is taken as well, never dropped while it is still polled.
                match self.answer().await {
                    RedisAnswer::Claimed(claimed) => self.take_claim(claimed, Instant::now()),
                    RedisAnswer::Settled(settled) => self.take_settled(settled),
                }
                continue;
            }
            if self.settling.is_none() {
                if self.outbox.is_empty() {
                    return Ok(());
                }
                self.settle();
            }
            let settled = self.settled().await;
            self.take_settled(settled);
            if let Some(e) = self.failing_since.and(self.last_error.clone()) {
                self.check_gone_text(&e)?;
                tokio::time::sleep(TICK).await;
            }
        }
    }

    /// Requests queued in the whole crawl (as last read), leased and deferred included.
    pub fn queued(&self) -> usize {
        (self.counts.queued + self.counts.leased + self.counts.deferred) as usize
    }

    /// Whether the crawl was marked done.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Distinct URLs the whole crawl has seen (as last read).
    pub fn seen(&self) -> u64 {
        self.counts.seen
    }

    /// Task `task`'s requests queued in Redis (not leased or deferred), as the last tick
    /// read them.
    pub fn task_queued(&self, task: &str) -> u64 {
        self.task_queued.get(task).copied().unwrap_or(0)
    }

    /// Whether task `id` was done already when this engine joined the crawl: the crawl was
    /// done then, and the task was recorded (the crawl's own task is 1, those recorded in
    /// Redis follow it in order).
    pub fn done_before_joining(&self, id: u64) -> bool {
        self.joined_done.is_some_and(|recorded| id <= recorded + 1)
    }

    /// Completions that found their lease gone; their links were queued all the same.
    pub fn late_completions(&self) -> u64 {
        self.late_completions
    }

    /// Claimed records that did not read as requests, dropped.
    pub fn unreadable_requests(&self) -> u64 {
        self.unreadable
    }
}

/// How long until a host is ready to be claimed from, as Redis said (`None`: nothing is
/// queued; another engine may offer some, looked for a while later).
fn ready_in(next: Option<Duration>) -> Duration {
    next.unwrap_or(MAX_CLAIM_WAIT).min(MAX_CLAIM_WAIT)
}

/// How long an empty claim waits before the next: until a host is ready, and never a spin.
fn claim_wait(next: Option<Duration>) -> Duration {
    ready_in(next).max(MIN_CLAIM_WAIT)
}

impl Completion {
    fn never(lease: u64, host: String) -> Self {
        Completion {
            lease,
            host,
            pace: Pace::Same,
            again: Pending::Never,
            links: Vec::new(),
            robots: None,
            crawl_delay: Duration::ZERO,
            robots_request: RobotsRequest::No,
            counted: false,
            run: String::new(),
        }
    }
}

/// Reads a stored robots.txt record: the file, or `None` when it could not be had.
pub fn read_record(bytes: &[u8], agent: &str) -> (Rules, Option<Duration>) {
    match bincode::deserialize::<Option<RobotsFile>>(bytes) {
        Ok(Some(file)) => match robots::read(&file, agent).0 {
            Verdict::Known(rules, delay) => (rules, delay),
            Verdict::TryLater => (Rules::DisallowAll, None),
        },
        Ok(None) => (Rules::DisallowAll, None),
        Err(_) => (Rules::AllowAll, None),
    }
}

/// The leases an engine holds, shared with the task that extends them.
#[derive(Clone, Debug, Default)]
struct Held(std::sync::Arc<std::sync::Mutex<HashSet<u64>>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, lease: u64) {
        self.lock().insert(lease);
    }

    fn remove(&self, lease: u64) {
        self.lock().remove(&lease);
    }

    fn contains(&self, lease: u64) -> bool {
        self.lock().contains(&lease)
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn ids(&self) -> Vec<u64> {
        self.lock().iter().copied().collect()
    }
}

/// Extends the leases in `held` every third of `lease` until `stop`, on a task of its own so
/// that a crawl loop waiting (for a slow itemsaver, say) never lets a lease lapse under a
/// live engine. A lease found gone is dropped from `held`: its request is another's now.
fn extend_leases(
    mut redis: RedisFrontier,
    held: Held,
    lease: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if held.is_empty() {
                continue;
            }
            match redis.extend_or_miss(&held.ids()).await {
                Ok(missing) => {
                    for lease in missing {
                        held.remove(lease);
                    }
                }
                Err(e) => debug!(cause = %e, "could not extend the leases; trying again"),
            }
        }
    });
}

/// Hosts' robots.txt rules as this engine knows them, shared with its claims on their way
/// (which read the records of the hosts not in it).
#[derive(Clone, Debug, Default)]
struct KnownRules(std::sync::Arc<std::sync::RwLock<HashMap<String, Rules>>>);

impl KnownRules {
    fn get(&self, host: &str) -> Option<Rules> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    fn contains(&self, host: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(host)
    }

    fn insert(&self, host: String, rules: Rules) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host, rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RedisFrontierConfig;
    use spinneret_tests::redis::RedisServer;

    async fn shared(redis: &RedisServer) -> SharedFrontier {
        let conn = RedisFrontier::connect(&redis.url(), &Default::default())
            .await
            .expect("connect");
        let config = RedisFrontierConfig {
            per_host: 1,
            delay: Duration::ZERO,
            lease: Duration::from_secs(30),
            max_queue_per_host: 100,
            max_backoff: Duration::from_secs(1),
        };
        let (_, role) = tokio::sync::watch::channel(super::super::leader::Role::Follower);
        SharedFrontier::new(
            RedisFrontier::new(conn, "t", config),
            SharedConfig {
                engine: "e".into(),
                robots: false,
                agent: "spinneret".into(),
                lease: Duration::from_secs(30),
                redis_timeout: Duration::from_secs(5),
                state: Default::default(),
                role,
                joined_done: None,
            },
        )
    }

    #[tokio::test]
    async fn a_batch_settled_while_a_claim_is_on_its_way_at_shutdown_is_taken_not_polled_again() {
        let redis = RedisServer::start().await;
        let mut s = shared(&redis).await;
        // A batch on its way (one link offered), and a claim that answers only after it: the
        // order a stalled Redis gives when the claim's second read waits.
        let link = NewUrl {
            host: "a.test:80".into(),
            fingerprint: 7,
            entry: b"http://a.test/".to_vec(),
            robots: Vec::new(),
            run: String::new(),
            bounded: true,
            task: "t".into(),
        };
        s.outbox.push_back(Settle::Release(0, vec![link]));
        s.settle();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        s.claiming = Some(Box::pin(async move {
            let _ = answered.await;
            Ok((Claim::default(), Vec::new()))
        }));
        let settled = s.redis.clone();
        let giving_back = async {
            s.give_back().await.expect("given back");
        };
        let answering = async move {
            // The batch reached Redis before the claim answers.
            let mut redis = settled;
            while redis.queued().await.expect("queued") == 0 {
                tokio::task::yield_now().await;
            }
            let _ = answer.send(());
        };
        tokio::join!(giving_back, answering);
        assert!(!s.holds_work(), "{s:?}");
        assert_eq!(s.redis.queued().await.expect("queued"), 1);
    }

    #[tokio::test]
    async fn an_unreadable_request_is_counted_out_of_its_run_and_an_unreadable_robots_txt_request_frees_its_host()
     {
        let redis = RedisServer::start().await;
        let mut s = shared(&redis).await;
        let request = |url: &str| Request {
            url: url.into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        };
        // Records another version wrote: a page of run 3 of task t and its host's robots.txt
        // request, whose requests do not read here; and a host whose robots.txt request does
        // not read at all.
        let unreadable = |kind, run| {
            let mut record = entry::encode_new(&request("http://a.test/"), kind, 0, run);
            record.truncate(record.len() - 20);
            record
        };
        let offers = [
            NewUrl {
                host: "a.test:80".into(),
                fingerprint: 1,
                entry: unreadable(Kind::Page, 3),
                robots: unreadable(Kind::Robots, 0),
                run: "3:t".into(),
                bounded: true,
                task: "t".into(),
            },
            NewUrl {
                host: "b.test:80".into(),
                fingerprint: 2,
                entry: entry::encode_new(&request("http://b.test/"), Kind::Page, 0, 0),
                robots: b"\xff\xff".to_vec(),
                run: String::new(),
                bounded: true,
                task: "t".into(),
            },
        ];
        s.redis.offer(&offers, true).await.expect("offer");
        let unavailable = bincode::serialize(&None::<RobotsFile>).expect("encode");
        for _ in 0..20 {
            let mut redis = s.redis.clone();
            let claim = redis.claim_next("e", 4).await.expect("claim");
            s.take_claim(Claimed(Ok((claim, Vec::new()))), Instant::now());
            s.end_turn().await;
            while s.settling() {
                let settled = s.settled().await;
                s.take_settled(settled);
            }
            if !s.local.is_empty() {
                break;
            }
        }
        assert!(
            s.redis.runs_open().await.expect("runs").is_empty(),
            "the run has nothing left open"
        );
        assert_eq!(
            s.redis
                .robots(&["a.test:80", "b.test:80"])
                .await
                .expect("robots"),
            vec![Some(unavailable.clone()), Some(unavailable)],
            "both hosts' robots.txt recorded as unavailable"
        );
        assert_eq!(s.local.len(), 1, "b.test's page is claimed, not held back");
        assert_eq!(s.unreadable_requests(), 3);
    }

    #[tokio::test]
    async fn a_429_among_several_answers_of_one_host_in_a_turn_doubles_its_back_off_once() {
        let redis = RedisServer::start().await;
        let mut s = shared(&redis).await;
        let page = |id: u64| Dispatched {
            id,
            request: Request {
                url: format!("http://a.test/{id}"),
                parser: "links".into(),
                depth: 0,
                task: "t".into(),
                meta: Default::default(),
                spider: None,
            },
            host: "a.test:80".into(),
            kind: Kind::Page,
            attempts: 0,
            requeues: 0,
            deaths: Vec::new(),
            last_worker: None,
            redirects: 0,
            run: 0,
        };
        // One turn: a 429 and two other answers of the same host.
        s.throttle("a.test:80", None);
        s.finished(&page(1));
        s.finished(&page(2));
        s.finished(&page(3));
        s.end_turn().await;
        while s.settling() {
            let settled = s.settled().await;
            s.take_settled(settled);
        }
        assert_eq!(
            redis
                .command("HGET {spinneret:t}:host:a.test:80 backoff")
                .await,
            "$3\r\n250\r\n",
            "one 429, one doubling"
        );
    }
}
