//! The crawl loop's side of a shared frontier: requests claimed from Redis wait here for a
//! worker, and what became of each goes back to Redis as one `complete` per lease, sent only
//! once the page's items are acknowledged by the itemsaver.
//!
//! The crawl loop records a request's outcome as it always does (finished, deferred,
//! requeued, robots.txt known, links found); each loop turn's records are gathered into one
//! completion per lease at the turn's end, so a page's links, its retry or its end, and its
//! host's back-off reach Redis together, atomically.

mod boundary;
mod claim;
mod events;
mod health;
mod leases;
mod outbox;
mod robots_rules;
mod task_news;

use claim::ready_in;
use leases::{Held, extend_leases};
use robots_rules::KnownRules;
pub use robots_rules::read_record;

use super::entry;
use super::frontier::{
    Again, Claim, ClusterError, Counts, Finished, NewUrl, Pace, RedisFrontier, RobotsRequest,
    SettleReport,
};
use crate::frontier::{BudgetVerdict, Closing, FrontierGone, Handled};
use crate::frontier::{Dispatched, Kind, Popped};
use crate::robots::{Rules, Verdict};
use crate::tasks::Hold;
use common::{Request, RobotsFile};
pub use events::FrontierEvent;
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
    tasks: Vec<crate::tasks::record::TaskChange>,
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
            Kind::Page => crate::tasks::record::run_key(&d.request.task, d.run),
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

    /// The Redis side of the shared frontier, for the leader's scheduled ticks.
    pub fn redis(&mut self) -> &mut RedisFrontier {
        &mut self.redis
    }

    /// Redis commands this engine sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.redis.commands_sent()
    }

    /// Whether robots.txt is obeyed (a run's seeds carry their hosts' robots.txt requests).
    pub fn obeys_robots(&self) -> bool {
        self.obey_robots
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
            politeness: crate::config::Politeness {
                per_host: 1,
                delay: Duration::ZERO,
                max_queue_per_host: 100,
                max_backoff: Duration::from_secs(1),
                ..Default::default()
            },
            lease: Duration::from_secs(30),
        };
        let (_, role) = tokio::sync::watch::channel(super::super::leader::Role::Follower);
        let mut redis = RedisFrontier::new(conn, "t", config);
        assert_eq!(redis.keep_limits().await.expect("limits"), None);
        SharedFrontier::new(
            redis,
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
