//! The frontier: what is queued, per host, when each host may be sent its next request, and
//! the set of every URL ever seen.
//!
//! Hosts take turns. A host at its in-flight limit, waiting out its delay, or waiting for its
//! robots.txt is skipped rather than blocking the others, so one slow site never stalls the
//! crawl. Politeness lives here, in the one dispatcher, so it holds across every worker.

mod boundary;
mod embedded;
mod entry;
mod host;
mod retry;

pub use boundary::{
    BudgetVerdict, Closing, Frontier, FrontierGone, Handled, Place, Recorded, TaskFence, Tick,
};

use crate::robots::Rules;
use crate::tasks::Hold;
use common::Request;
use common::time::later;
use entry::{Origins, Queued};
use host::{Host, RobotsState};
use retry::Retries;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// What a dispatched request fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A page, parsed by the request's parser.
    Page,
    /// The host's robots.txt.
    Robots,
}

/// A request taken from the frontier, with what the engine tracks about it.
#[derive(Clone, Debug)]
pub struct Dispatched {
    /// Its id in the durable queue (0 for robots.txt requests, which are not kept).
    pub id: u64,
    /// The request sent to a worker.
    pub request: Request,
    /// Its host key (`host:port`), for the per-host accounting.
    pub host: String,
    /// Page or robots.txt.
    pub kind: Kind,
    /// Retries spent on failures of the site (timeouts, 5xx, 429, connection errors) and on
    /// calls that overran the RPC deadline.
    pub attempts: u32,
    /// Times it went back to the queue uncharged, its worker gone before answering.
    pub requeues: u32,
    /// The distinct worker processes (hashes of their node ids) that died holding it.
    pub deaths: Vec<u64>,
    /// The worker that last failed it, to try another one next.
    pub last_worker: Option<usize>,
    /// Redirect hops that led to this request.
    pub redirects: u32,
    /// The scheduled run it belongs to in a shared crawl (0: its task has no schedule, or
    /// the frontier is embedded, where a run's leftovers are dropped before the next starts).
    pub run: u64,
}

/// What [`Frontier::pop`] hands out.
#[derive(Debug)]
pub enum Popped {
    /// Send this request.
    Send(Dispatched),
    /// Do not send this request; count it under the reason.
    Skip(Dispatched, &'static str),
}

use crate::config::Politeness;

/// Whether a URL may be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes: it is new and its host has room.
    Open,
    /// It was seen before.
    Seen,
    /// Its host's queue holds as many pages as the host has left of `max_pages_per_host`.
    /// The URL is not marked seen.
    PageCap,
    /// Its host's queue is at `max_queue_per_host`. The URL is not marked seen: it may be
    /// queued later, when there is room.
    QueueFull,
}

impl Admission {
    /// The reason a refused URL is counted under.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Admission::Open | Admission::Seen => None,
            Admission::PageCap => Some("host_page_cap"),
            Admission::QueueFull => Some("host_queue_full"),
        }
    }
}

/// Per-host queues, a round-robin of hosts that may be sent to now, hosts waiting for their
/// time, requests waiting to be retried, and the seen set.
///
/// The seen set holds 64-bit fingerprints of canonical URLs (see [`common::fingerprint`]):
/// about 16 bytes a URL instead of the URL itself. It is kept by dedup scope (a task's run:
/// the salt of its fingerprints), so that a run's fingerprints are forgotten when the next
/// run of its task starts.
#[derive(Debug)]
pub struct EmbeddedFrontier {
    config: Politeness,
    seen: HashMap<u64, HashSet<u64>>,
    hosts: HashMap<String, Host>,
    ready: VecDeque<String>,
    sleeping: BinaryHeap<Reverse<(Instant, String)>>,
    deferred: Retries,
    queued: usize,
    origins: Origins,
    /// Requests of paused or capped tasks, taken out of their host queues until resumed.
    parked: Vec<(String, Queued)>,
}

impl EmbeddedFrontier {
    /// An empty frontier with these politeness settings.
    pub fn new(config: Politeness) -> Self {
        EmbeddedFrontier {
            config: Politeness {
                per_host: config.per_host.max(1),
                ..config
            },
            seen: HashMap::new(),
            hosts: HashMap::new(),
            ready: VecDeque::new(),
            sleeping: BinaryHeap::new(),
            deferred: Retries::default(),
            queued: 0,
            origins: Origins::default(),
            parked: Vec::new(),
        }
    }

    /// Whether a URL of `host` with `fingerprint` in dedup scope `scope` may be queued now;
    /// `bounded` says whether the host's queue bound applies (the page cap always does).
    pub fn admit(&self, host: &str, scope: u64, fingerprint: u64, bounded: bool) -> Admission {
        if self
            .seen
            .get(&scope)
            .is_some_and(|s| s.contains(&fingerprint))
        {
            return Admission::Seen;
        }
        let Some(h) = self.hosts.get(host) else {
            return Admission::Open;
        };
        let pages_queued = h.pending.len()
            - usize::from(h.pending.front().is_some_and(|q| q.kind == Kind::Robots));
        let budget_left = self
            .config
            .max_pages_per_host
            .map_or(u64::MAX, |max| max.saturating_sub(h.pages));
        if pages_queued as u64 >= budget_left {
            Admission::PageCap
        } else if bounded && pages_queued >= self.config.max_queue_per_host {
            Admission::QueueFull
        } else {
            Admission::Open
        }
    }

    /// Records `fingerprint` as seen in dedup scope `scope`; returns whether it was new.
    pub fn mark_seen(&mut self, scope: u64, fingerprint: u64) -> bool {
        self.seen.entry(scope).or_default().insert(fingerprint)
    }

    /// Forgets the fingerprints of dedup scope `scope` (a run that ended: its task's next
    /// run has a scope of its own); returns how many.
    pub fn forget(&mut self, scope: u64) -> usize {
        self.seen.remove(&scope).map_or(0, |s| s.len())
    }

    /// Queues `request` for `host` under durable id `id`, unless its fingerprint was seen
    /// before in dedup scope `scope`; returns whether it was queued. `robots_url` is the
    /// host's robots.txt, fetched first for a new host.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        request: Request,
        host: String,
        (scope, fingerprint): (u64, u64),
        redirects: u32,
        id: u64,
        robots_url: impl FnOnce() -> String,
        now: Instant,
    ) -> bool {
        if !self.mark_seen(scope, fingerprint) {
            return false;
        }
        self.restore(request, host, redirects, id, robots_url, now);
        true
    }

    /// Queues a request read back from the durable state (its URL is already in the seen set).
    pub fn restore(
        &mut self,
        request: Request,
        host: String,
        redirects: u32,
        id: u64,
        robots_url: impl FnOnce() -> String,
        now: Instant,
    ) {
        if !self.hosts.contains_key(&host) {
            let mut new_host = Host::new(now, self.config.delay, self.config.robots);
            if self.config.robots {
                let robots = Request {
                    url: robots_url(),
                    ..request.clone()
                };
                new_host
                    .pending
                    .push_back(self.origins.entry(robots, 0, 0, Kind::Robots));
                self.queued += 1;
            }
            self.hosts.insert(host.clone(), new_host);
        }
        let entry = self.origins.entry(request, id, redirects, Kind::Page);
        if let Some(h) = self.hosts.get_mut(&host) {
            h.pending.push_back(entry);
            self.queued += 1;
        }
        self.schedule(&host, now);
    }

    /// Puts a request back at the front of its host's queue (its worker failed it).
    pub fn requeue_front(&mut self, dispatched: Dispatched, now: Instant) {
        let host = dispatched.host.clone();
        if !self.hosts.contains_key(&host) {
            return;
        }
        let entry = self.origins.compact(dispatched);
        if let Some(h) = self.hosts.get_mut(&host) {
            if entry.kind == Kind::Robots {
                h.robots = RobotsState::Unknown;
            }
            h.pending.push_front(entry);
            self.queued += 1;
        }
        self.schedule(&host, now);
    }

    /// Holds a request back until `at`, then puts it at the front of its host's queue.
    pub fn defer(&mut self, dispatched: Dispatched, at: Instant) {
        self.queued += 1;
        self.deferred.push(dispatched, at);
    }

    fn schedule(&mut self, host: &str, now: Instant) {
        let per_host = self.config.per_host;
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        if h.scheduled || !h.can_send(per_host) {
            return;
        }
        h.scheduled = true;
        if h.next_allowed <= now {
            self.ready.push_back(host.to_owned());
        } else {
            self.sleeping
                .push(Reverse((h.next_allowed, host.to_owned())));
        }
    }

    /// Moves hosts whose wait is over to the ready round, and due retries to their queues.
    fn wake(&mut self, now: Instant) {
        while self
            .sleeping
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            if let Some(Reverse((_, host))) = self.sleeping.pop() {
                if let Some(h) = self.hosts.get_mut(&host) {
                    h.scheduled = false;
                }
                self.schedule(&host, now);
            }
        }
        while let Some(d) = self.deferred.pop_due(now) {
            self.queued -= 1;
            self.requeue_front(d, now);
        }
    }

    /// Takes the next request that may be sent now, from the next host whose turn it is.
    /// `hold` says, by task name, whether a page may go, waits parked, or is dropped. With
    /// `suspect_wait`, a request some worker died holding is not sent but held back that long,
    /// without spending its host's turn.
    pub fn pop(
        &mut self,
        now: Instant,
        mut hold: impl FnMut(&str) -> Hold,
        suspect_wait: Option<Duration>,
    ) -> Option<Popped> {
        self.wake(now);
        let config = self.config;
        while let Some(name) = self.ready.pop_front() {
            let Some(h) = self.hosts.get_mut(&name) else {
                continue;
            };
            h.scheduled = false;
            if !h.can_send(config.per_host) {
                continue;
            }
            if h.next_allowed > now {
                self.schedule(&name, now);
                continue;
            }
            let Some(d) = h.pending.pop_front() else {
                continue;
            };
            if let Some(wait) = suspect_wait
                && d.is_suspect()
            {
                // Still counted as queued: it moves to the retry heap.
                let d = self.origins.expand(d, &name);
                self.deferred.push(d, later(now, wait));
                self.schedule(&name, now);
                continue;
            }
            self.queued -= 1;
            if d.kind == Kind::Page {
                match hold(self.origins.task(&d)) {
                    Hold::Go => {}
                    Hold::Park | Hold::Cap | Hold::Wait => {
                        self.parked.push((name.clone(), d));
                        self.schedule(&name, now);
                        continue;
                    }
                    Hold::Drop(reason) => {
                        self.schedule(&name, now);
                        let d = self.origins.expand(d, &name);
                        return Some(Popped::Skip(d, reason));
                    }
                }
                if let Some(reason) = h.refusal(&d, config.max_pages_per_host) {
                    self.schedule(&name, now);
                    let d = self.origins.expand(d, &name);
                    return Some(Popped::Skip(d, reason));
                }
                if d.attempts == 0 && d.requeues == 0 {
                    h.pages += 1;
                }
            } else {
                h.robots = RobotsState::Fetching;
            }
            h.in_flight += 1;
            let gap = h
                .delay
                .saturating_add(h.backoff)
                .min(config.max_backoff.max(h.delay));
            h.next_allowed = later(now, gap);
            self.schedule(&name, now);
            let d = self.origins.expand(d, &name);
            return Some(Popped::Send(d));
        }
        None
    }

    /// Puts the parked requests of task `task` back in their host queues, in order.
    pub fn unpark(&mut self, task: &str, now: Instant) {
        let (back, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(_, q)| self.origins.task(q) == task);
        self.parked = keep;
        for (host, q) in back {
            if let Some(h) = self.hosts.get_mut(&host) {
                h.pending.push_back(q);
                self.queued += 1;
            }
            self.schedule(&host, now);
        }
    }

    /// Takes the parked requests of task `task` out for good.
    pub fn drop_parked(&mut self, task: &str) -> Vec<Dispatched> {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(_, q)| self.origins.task(q) == task);
        self.parked = keep;
        gone.into_iter()
            .map(|(host, q)| self.origins.expand(q, &host))
            .collect()
    }

    /// Requests parked for paused or capped tasks.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Records that a request to `host` finished, freeing a slot for that host.
    pub fn done(&mut self, host: &str, now: Instant) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.in_flight = h.in_flight.saturating_sub(1);
        }
        self.schedule(host, now);
    }

    /// Sets a host's robots.txt rules, raising its delay to the Crawl-delay they ask for.
    pub fn robots_known(
        &mut self,
        host: &str,
        rules: Rules,
        crawl_delay: Option<Duration>,
        now: Instant,
    ) {
        let max = self.config.max_backoff;
        if let Some(h) = self.hosts.get_mut(host) {
            h.robots = RobotsState::Known(rules);
            if let Some(asked) = crawl_delay {
                h.delay = h.delay.max(asked.min(max));
            }
        }
        self.schedule(host, now);
    }

    /// Slows a host down after a 429 or 503: to its Retry-After, or by doubling its back-off.
    pub fn throttle(&mut self, host: &str, retry_after: Option<Duration>, now: Instant) {
        let max = self.config.max_backoff;
        if let Some(h) = self.hosts.get_mut(host) {
            let wait = match retry_after {
                Some(asked) => asked.min(max),
                None => {
                    h.backoff = h.backoff.saturating_mul(2).clamp(
                        Duration::from_millis(250),
                        max.max(Duration::from_millis(250)),
                    );
                    h.backoff
                }
            };
            h.next_allowed = h.next_allowed.max(later(now, wait));
        }
    }

    /// Speeds a host back up after a success: its back-off halves, down to nothing.
    pub fn recovered(&mut self, host: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.backoff /= 2;
            if h.backoff < Duration::from_millis(50) {
                h.backoff = Duration::ZERO;
            }
        }
    }

    /// The current extra delay of a host, for progress and tests.
    pub fn backoff(&self, host: &str) -> Duration {
        self.hosts.get(host).map_or(Duration::ZERO, |h| h.backoff)
    }

    /// Whether a request may be taken now.
    pub fn has_ready(&self, now: Instant) -> bool {
        !self.ready.is_empty()
            || self
                .sleeping
                .peek()
                .is_some_and(|Reverse((at, _))| *at <= now)
            || self.deferred.next_at().is_some_and(|at| at <= now)
    }

    /// When the next host's wait or the next retry's back-off ends.
    pub fn next_wake(&self) -> Option<Instant> {
        let host = self.sleeping.peek().map(|Reverse((at, _))| *at);
        let retry = self.deferred.next_at();
        match (host, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Requests waiting (queued or deferred).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// URLs seen, in the scopes kept.
    pub fn seen(&self) -> usize {
        self.seen.values().map(HashSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Politeness {
        Politeness {
            per_host: 8,
            delay: Duration::ZERO,
            max_backoff: Duration::from_secs(60),
            max_pages_per_host: None,
            max_queue_per_host: 1_000,
            robots: false,
        }
    }

    fn req(url: &str) -> Request {
        Request {
            url: url.into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        }
    }

    fn push(f: &mut EmbeddedFrontier, host: &str, path: &str, now: Instant) -> bool {
        let url = format!("http://{host}{path}");
        f.push(
            req(&url),
            host.into(),
            (0, common::fingerprint(&url)),
            0,
            1,
            || format!("http://{host}/robots.txt"),
            now,
        )
    }

    fn send(f: &mut EmbeddedFrontier, now: Instant) -> Option<Dispatched> {
        match f.pop(now, |_| Hold::Go, None)? {
            Popped::Send(d) => Some(d),
            Popped::Skip(d, why) => panic!("unexpected skip of {} ({why})", d.request.url),
        }
    }

    #[test]
    fn push_says_whether_the_url_was_new() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(config());
        assert!(push(&mut f, "a.test", "/1", now));
        assert!(!push(&mut f, "a.test", "/1", now));
        assert_eq!(f.queued(), 1);
        assert_eq!(f.seen(), 1);
    }

    #[test]
    fn hosts_take_turns() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(config());
        for i in 0..3 {
            push(&mut f, "a.test", &format!("/{i}"), now);
        }
        push(&mut f, "b.test", "/0", now);
        let order: Vec<String> = std::iter::from_fn(|| send(&mut f, now))
            .map(|d| d.host)
            .collect();
        assert_eq!(order, vec!["a.test", "b.test", "a.test", "a.test"]);
    }

    #[test]
    fn a_host_at_its_limit_does_not_block_others() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            per_host: 1,
            ..config()
        });
        push(&mut f, "slow.test", "/1", now);
        push(&mut f, "slow.test", "/2", now);
        push(&mut f, "fast.test", "/1", now);
        push(&mut f, "fast.test", "/2", now);
        assert_eq!(send(&mut f, now).expect("first").host, "slow.test");
        assert_eq!(send(&mut f, now).expect("second").host, "fast.test");
        assert!(
            f.pop(now, |_| Hold::Go, None).is_none(),
            "both hosts are at their limit of 1"
        );
        f.done("fast.test", now);
        assert_eq!(
            send(&mut f, now).expect("fast again").request.url,
            "http://fast.test/2"
        );
        f.done("slow.test", now);
        assert_eq!(
            send(&mut f, now).expect("slow again").request.url,
            "http://slow.test/2"
        );
    }

    #[test]
    fn delay_spaces_requests_to_one_host_only() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            delay: Duration::from_millis(100),
            ..config()
        });
        push(&mut f, "a.test", "/1", t0);
        push(&mut f, "a.test", "/2", t0);
        push(&mut f, "b.test", "/1", t0);
        assert_eq!(send(&mut f, t0).expect("a1").host, "a.test");
        assert_eq!(send(&mut f, t0).expect("b1").host, "b.test");
        assert!(
            f.pop(t0 + Duration::from_millis(99), |_| Hold::Go, None)
                .is_none(),
            "a.test must wait 100 ms"
        );
        assert_eq!(f.next_wake(), Some(t0 + Duration::from_millis(100)));
        assert!(f.has_ready(t0 + Duration::from_millis(100)));
        assert_eq!(
            send(&mut f, t0 + Duration::from_millis(100))
                .expect("a2")
                .request
                .url,
            "http://a.test/2"
        );
    }

    #[test]
    fn robots_is_fetched_first_and_gates_the_host() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            robots: true,
            ..config()
        });
        push(&mut f, "a.test", "/ok", now);
        push(&mut f, "a.test", "/private/x", now);
        let robots = send(&mut f, now).expect("robots first");
        assert_eq!(robots.kind, Kind::Robots);
        assert_eq!(robots.request.url, "http://a.test/robots.txt");
        assert!(
            f.pop(now, |_| Hold::Go, None).is_none(),
            "nothing else goes while robots.txt is in flight"
        );
        let body = b"User-agent: *\nDisallow: /private/\n";
        let robot = texting_robots::Robot::new("Spinneret", body).expect("robot");
        f.done("a.test", now);
        f.robots_known(
            "a.test",
            Rules::Parsed(std::sync::Arc::new(robot)),
            None,
            now,
        );
        assert_eq!(
            send(&mut f, now).expect("allowed").request.url,
            "http://a.test/ok"
        );
        match f.pop(now, |_| Hold::Go, None) {
            Some(Popped::Skip(d, "robots_disallowed")) => {
                assert_eq!(d.request.url, "http://a.test/private/x")
            }
            other => panic!("expected a robots skip, got {other:?}"),
        }
        assert_eq!(f.queued(), 0);
    }

    #[test]
    fn crawl_delay_raises_the_hosts_delay() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            robots: true,
            ..config()
        });
        push(&mut f, "a.test", "/1", t0);
        push(&mut f, "a.test", "/2", t0);
        send(&mut f, t0).expect("robots");
        f.done("a.test", t0);
        f.robots_known("a.test", Rules::AllowAll, Some(Duration::from_secs(2)), t0);
        send(&mut f, t0).expect("page 1");
        assert!(
            f.pop(t0 + Duration::from_millis(1_999), |_| Hold::Go, None)
                .is_none()
        );
        assert!(send(&mut f, t0 + Duration::from_secs(2)).is_some());
    }

    #[test]
    fn a_host_queues_no_more_than_its_cap_or_its_page_budget() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            max_queue_per_host: 3,
            ..config()
        });
        let admit = |f: &EmbeddedFrontier, host: &str, path: &str| {
            f.admit(
                host,
                0,
                common::fingerprint(&format!("http://{host}{path}")),
                true,
            )
        };
        for i in 0..3 {
            assert_eq!(admit(&f, "a.test", &format!("/{i}")), Admission::Open);
            push(&mut f, "a.test", &format!("/{i}"), t0);
        }
        assert_eq!(admit(&f, "a.test", "/1"), Admission::Seen);
        assert_eq!(admit(&f, "a.test", "/new"), Admission::QueueFull);
        assert_eq!(
            f.admit(
                "a.test",
                0,
                common::fingerprint("http://a.test/seed"),
                false
            ),
            Admission::Open,
            "a seed or a redirect's target is not held to the queue bound"
        );
        assert_eq!(admit(&f, "b.test", "/new"), Admission::Open, "per host");
        send(&mut f, t0).expect("one leaves the queue");
        assert_eq!(admit(&f, "a.test", "/new"), Admission::Open, "room again");

        let mut f = EmbeddedFrontier::new(Politeness {
            max_pages_per_host: Some(2),
            ..config()
        });
        push(&mut f, "a.test", "/0", t0);
        send(&mut f, t0).expect("page 1 of 2");
        push(&mut f, "a.test", "/1", t0);
        assert_eq!(
            admit(&f, "a.test", "/2"),
            Admission::PageCap,
            "one page fetched and one queued: the budget of two is spoken for"
        );
    }

    #[test]
    fn a_suspect_is_held_back_without_spending_its_hosts_turn() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            delay: Duration::from_secs(10),
            ..config()
        });
        push(&mut f, "a.test", "/suspect", t0);
        push(&mut f, "a.test", "/fresh", t0);
        let mut suspect = send(&mut f, t0).expect("first");
        f.done("a.test", t0);
        suspect.deaths.push(7);
        f.requeue_front(suspect, t0);
        let later = t0 + Duration::from_secs(10);
        let wait = Some(Duration::from_millis(250));
        match f.pop(later, |_| Hold::Go, wait) {
            Some(Popped::Send(d)) => assert!(d.request.url.ends_with("/fresh"), "{d:?}"),
            other => panic!("the fresh page goes in the host's turn: {other:?}"),
        }
        assert_eq!(f.queued(), 1, "the suspect waits, still counted");
        f.done("a.test", later);
        let turn = later + Duration::from_secs(10);
        match f.pop(turn, |_| Hold::Go, None) {
            Some(Popped::Send(d)) => assert!(d.request.url.ends_with("/suspect")),
            other => panic!("alone, the suspect goes: {other:?}"),
        }
    }

    #[test]
    fn huge_delays_and_retry_afters_never_overflow() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            delay: Duration::MAX,
            max_backoff: Duration::MAX,
            ..config()
        });
        for i in 0..3 {
            push(&mut f, "a.test", &format!("/{i}"), t0);
        }
        send(&mut f, t0).expect("the first request goes at once");
        f.done("a.test", t0);
        f.throttle("a.test", Some(Duration::MAX), t0);
        f.throttle("a.test", None, t0);
        assert!(
            f.pop(t0 + Duration::from_secs(86_400), |_| Hold::Go, None)
                .is_none()
        );
        assert!(f.next_wake().is_some_and(|at| at > t0));
    }

    #[test]
    fn throttle_backs_off_and_recovers() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(config());
        for i in 0..3 {
            push(&mut f, "a.test", &format!("/{i}"), t0);
        }
        send(&mut f, t0).expect("1");
        f.done("a.test", t0);
        f.throttle("a.test", None, t0);
        f.throttle("a.test", None, t0);
        assert_eq!(f.backoff("a.test"), Duration::from_millis(500));
        assert!(
            f.pop(t0 + Duration::from_millis(499), |_| Hold::Go, None)
                .is_none(),
            "backed off"
        );
        f.recovered("a.test");
        assert_eq!(f.backoff("a.test"), Duration::from_millis(250));
        f.recovered("a.test");
        f.recovered("a.test");
        f.recovered("a.test");
        assert_eq!(f.backoff("a.test"), Duration::ZERO);
        f.throttle("a.test", Some(Duration::from_secs(3)), t0);
        assert!(
            f.pop(t0 + Duration::from_millis(2_999), |_| Hold::Go, None)
                .is_none(),
            "Retry-After holds"
        );
        assert!(send(&mut f, t0 + Duration::from_secs(3)).is_some());
    }

    #[test]
    fn deferred_retries_come_back_first_when_due() {
        let t0 = Instant::now();
        let mut f = EmbeddedFrontier::new(config());
        push(&mut f, "a.test", "/1", t0);
        push(&mut f, "a.test", "/2", t0);
        let mut first = send(&mut f, t0).expect("1");
        f.done("a.test", t0);
        first.attempts = 1;
        f.defer(first, t0 + Duration::from_secs(1));
        assert_eq!(f.queued(), 2);
        assert_eq!(send(&mut f, t0).expect("2").request.url, "http://a.test/2");
        f.done("a.test", t0);
        assert!(f.pop(t0, |_| Hold::Go, None).is_none());
        assert_eq!(f.next_wake(), Some(t0 + Duration::from_secs(1)));
        let again = send(&mut f, t0 + Duration::from_secs(1)).expect("retry");
        assert_eq!(
            (again.request.url.as_str(), again.attempts),
            ("http://a.test/1", 1)
        );
    }

    #[test]
    fn per_host_page_cap_skips_the_rest() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(Politeness {
            max_pages_per_host: Some(2),
            ..config()
        });
        for i in 0..4 {
            push(&mut f, "a.test", &format!("/{i}"), now);
        }
        send(&mut f, now).expect("1");
        send(&mut f, now).expect("2");
        assert!(matches!(
            f.pop(now, |_| Hold::Go, None),
            Some(Popped::Skip(_, "host_page_cap"))
        ));
        assert!(matches!(
            f.pop(now, |_| Hold::Go, None),
            Some(Popped::Skip(_, "host_page_cap"))
        ));
        assert!(f.pop(now, |_| Hold::Go, None).is_none());
    }

    #[test]
    fn held_tasks_are_parked_then_unparked_or_dropped() {
        let now = Instant::now();
        let mut f = EmbeddedFrontier::new(config());
        for path in ["/1", "/2"] {
            push(&mut f, "a.test", path, now);
        }
        let hold = |task: &str| if task == "t" { Hold::Park } else { Hold::Go };
        assert!(
            f.pop(now, hold, None).is_none(),
            "a paused task's pages wait"
        );
        assert_eq!(f.parked(), 2);
        assert_eq!(f.queued(), 0);
        f.unpark("t", now);
        assert_eq!((f.parked(), f.queued()), (0, 2));
        assert!(f.pop(now, hold, None).is_none());
        let dropped = f.drop_parked("t");
        assert_eq!(dropped.len(), 2);
        assert_eq!(dropped[0].request.url, "http://a.test/1", "order kept");
        assert_eq!(f.parked(), 0);
    }
}
