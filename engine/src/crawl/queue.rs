//! The crawl's frontier behind one boundary: embedded (in this process, kept durable by the
//! SQLite state) or shared with the other engines of a crawl in Redis (cluster mode). The
//! crawl loop, tasks, politeness and admin code are the same in both.

use crate::cluster::SharedFrontier;
pub use crate::cluster::entry::Place;
use crate::cluster::shared::{BudgetVerdict, Closing, FrontierEvent, Handled, RedisGone};
use crate::frontier::{Admission, Dispatched, Frontier, Popped};
use crate::robots::{self, Rules};
use crate::tasks::Hold;
use common::{Request, RobotsFile};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Where the crawl's requests wait.
// One per crawl, made once and never moved in the loop: boxing would only add a hop to every
// frontier call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Queue {
    /// In this process.
    Embedded(Frontier),
    /// In Redis, shared by every engine of the crawl.
    Shared(SharedFrontier),
}

impl Queue {
    /// A frontier in this process, with these politeness settings.
    pub fn in_memory(politeness: crate::config::Politeness) -> Queue {
        Queue::Embedded(Frontier::new(politeness))
    }

    /// A frontier shared with the other engines of a crawl in Redis; `acks` says which
    /// spooled pages' items the itemsaver acknowledged (their leases complete then).
    pub fn in_redis(
        mut frontier: SharedFrontier,
        acks: tokio::sync::mpsc::Receiver<Vec<u64>>,
    ) -> Queue {
        frontier.take_acks(acks);
        Queue::Shared(frontier)
    }

    /// Whether the crawl's tasks are shared with other engines.
    pub fn shared_between_engines(&self) -> bool {
        matches!(self, Queue::Shared(_))
    }

    /// Whether a URL may be queued. The shared frontier decides in Redis, with the offer.
    pub fn admit(&self, host: &str, scope: u64, fingerprint: u64, bounded: bool) -> Admission {
        match self {
            Queue::Embedded(f) => f.admit(host, scope, fingerprint, bounded),
            Queue::Shared(_) => Admission::Open,
        }
    }

    /// Queues a request at `place` (the shared frontier's run is ignored here: an embedded
    /// run's leftovers are dropped before the next run starts); says whether it was queued
    /// here and now (the shared frontier queues it with the turn's completion, deduplicated
    /// in Redis, and says `false`).
    pub fn push(
        &mut self,
        url: &Url,
        request: Request,
        place: Place,
        id: u64,
        now: Instant,
    ) -> bool {
        let robots_url = || robots::robots_url(url);
        match self {
            Queue::Embedded(f) => f.push(
                request,
                place.host,
                (place.scope, place.fingerprint),
                place.redirects,
                id,
                robots_url,
                now,
            ),
            Queue::Shared(s) => {
                let new = s.new_url(&request, place, robots_url);
                s.push(new);
                false
            }
        }
    }

    /// The next request to send, or why one is not sent; `hold` says, by task and run, what
    /// becomes of a page (the embedded frontier's pages are all of run 0).
    pub fn pop(
        &mut self,
        now: Instant,
        mut hold: impl FnMut(&str, u64) -> Hold,
        suspect_wait: Option<Duration>,
    ) -> Option<Popped> {
        match self {
            Queue::Embedded(f) => f.pop(now, |task| hold(task, 0), suspect_wait),
            Queue::Shared(s) => s.pop(hold),
        }
    }

    /// Whether a request may be taken now (or, shared, claimed).
    pub fn has_ready(&self, now: Instant) -> bool {
        match self {
            Queue::Embedded(f) => f.has_ready(now),
            Queue::Shared(s) => s.has_ready() || s.may_claim(now),
        }
    }

    /// When a request may next be taken.
    pub fn next_wake(&self) -> Option<Instant> {
        match self {
            Queue::Embedded(f) => f.next_wake(),
            Queue::Shared(s) => s.next_claim(),
        }
    }

    /// A request to `host` ended: its slot is free (shared: with its completion).
    pub fn done(&mut self, host: &str, now: Instant) {
        if let Queue::Embedded(f) = self {
            f.done(host, now);
        }
    }

    /// A request is done for good without being sent (shared: its lease completes).
    pub fn finished(&mut self, d: &Dispatched) {
        if let Queue::Shared(s) = self {
            s.finished(d);
        }
    }

    /// A request is done for good after it was sent (shared: its lease completes, and a
    /// page counts toward its host's `--max_pages_per_host`; the embedded frontier counted
    /// it when it went).
    pub fn fetched(&mut self, d: &Dispatched) {
        if let Queue::Shared(s) = self {
            s.fetched(d);
        }
    }

    /// A host answered well.
    pub fn recovered(&mut self, host: &str) {
        match self {
            Queue::Embedded(f) => f.recovered(host),
            Queue::Shared(s) => s.recovered(host),
        }
    }

    /// A host answered 429 or 503.
    pub fn throttle(&mut self, host: &str, retry_after: Option<Duration>, now: Instant) {
        match self {
            Queue::Embedded(f) => f.throttle(host, retry_after, now),
            Queue::Shared(s) => s.throttle(host, retry_after),
        }
    }

    /// A request is tried again at `at`.
    pub fn defer(&mut self, d: Dispatched, at: Instant, now: Instant) {
        match self {
            Queue::Embedded(f) => f.defer(d, at),
            Queue::Shared(s) => s.defer(d, at.saturating_duration_since(now)),
        }
    }

    /// A request goes back to the front of its host's queue.
    pub fn requeue_front(&mut self, d: Dispatched, now: Instant) {
        match self {
            Queue::Embedded(f) => f.requeue_front(d, now),
            Queue::Shared(s) => s.requeue_front(d),
        }
    }

    /// A host's robots.txt is known (`file` is what was fetched, `None` if nothing could be).
    pub fn robots_known(
        &mut self,
        d: &Dispatched,
        rules: Rules,
        crawl_delay: Option<Duration>,
        file: Option<RobotsFile>,
        now: Instant,
    ) {
        match self {
            Queue::Embedded(f) => f.robots_known(&d.host, rules, crawl_delay, now),
            Queue::Shared(s) => s.robots_known(d, rules, crawl_delay, file),
        }
    }

    /// Puts a resumed task's parked requests back in their queues.
    pub fn unpark(&mut self, task: &str, now: Instant) {
        if let Queue::Embedded(f) = self {
            f.unpark(task, now);
        }
    }

    /// Drops a closed task's parked requests.
    pub fn drop_parked(&mut self, task: &str) -> Vec<Dispatched> {
        match self {
            Queue::Embedded(f) => f.drop_parked(task),
            Queue::Shared(_) => Vec::new(),
        }
    }

    /// Requests waiting (in the whole crawl, when shared).
    pub fn queued(&self) -> usize {
        match self {
            Queue::Embedded(f) => f.queued(),
            Queue::Shared(s) => s.queued(),
        }
    }

    /// Requests parked for paused tasks.
    pub fn parked(&self) -> usize {
        match self {
            Queue::Embedded(f) => f.parked(),
            Queue::Shared(_) => 0,
        }
    }

    /// URLs seen (0 when shared: Redis counts them).
    pub fn seen(&self) -> usize {
        match self {
            Queue::Embedded(f) => f.seen(),
            Queue::Shared(s) => s.seen() as usize,
        }
    }

    /// Whether the shared crawl still has work for this engine (never, embedded: the crawl
    /// loop's own test decides).
    pub fn keeps_going(&self) -> bool {
        match self {
            Queue::Embedded(_) => false,
            Queue::Shared(s) => s.keeps_going(),
        }
    }

    /// The frontier is stopping the crawl: it takes nothing more (shared: what it claimed
    /// and did not send goes back).
    pub fn stop(&mut self) {
        if let Queue::Shared(s) = self {
            s.stop();
        }
    }

    /// Whether this engine was drained out of the crawl and holds nothing more.
    pub fn drained(&self) -> bool {
        matches!(self, Queue::Shared(s) if s.drained())
    }

    /// Whether the frontier would bring in more requests now (shared: claim them), with
    /// worker slots held for them by the crawl loop.
    pub fn may_refill(&self, now: Instant) -> bool {
        matches!(self, Queue::Shared(s) if s.may_claim(now))
    }

    /// Brings in up to `slots` more requests (answered with [`Handled::Refilled`]).
    pub fn refill(&mut self, slots: usize) {
        if let Queue::Shared(s) = self {
            s.claim(slots);
        }
    }

    /// Whether requests are being brought in (the crawl loop takes no worker slot meanwhile).
    pub fn refilling(&self) -> bool {
        matches!(self, Queue::Shared(s) if s.claiming())
    }

    /// Takes the acknowledgements of spooled items, when the frontier completes a page only
    /// once its items are durable (shared).
    pub fn take_acks(&mut self, acks: tokio::sync::mpsc::Receiver<Vec<u64>>) {
        if let Queue::Shared(s) = self {
            s.take_acks(acks);
        }
    }

    /// Waits for the frontier's next event (never, embedded).
    pub async fn event(&mut self) -> FrontierEvent {
        match self {
            Queue::Embedded(_) => std::future::pending().await,
            Queue::Shared(s) => s.event().await,
        }
    }

    /// Takes an event; `idle` says whether no request is in flight.
    pub async fn on_event(
        &mut self,
        event: FrontierEvent,
        idle: bool,
    ) -> Result<Handled, RedisGone> {
        match self {
            Queue::Embedded(_) => Ok(Handled::Nothing),
            Queue::Shared(s) => s.on_event(event, idle).await,
        }
    }

    /// Whether the whole crawl is done (shared: as Redis last said; embedded: the crawl loop
    /// decides).
    pub fn is_done(&self) -> bool {
        matches!(self, Queue::Shared(s) if s.is_done())
    }

    /// A task's requests queued in the whole crawl, where the frontier counts them apart
    /// (shared).
    pub fn task_queued(&self, task: &str) -> Option<u64> {
        match self {
            Queue::Embedded(_) => None,
            Queue::Shared(s) => Some(s.task_queued(task)),
        }
    }

    /// Whether the frontier keeps the robots.txt files fetched (shared: for the other
    /// engines).
    pub fn keeps_robots_files(&self) -> bool {
        matches!(self, Queue::Shared(_))
    }

    /// Redis commands sent so far (shared).
    pub fn redis_commands(&self) -> Option<u64> {
        match self {
            Queue::Embedded(_) => None,
            Queue::Shared(s) => Some(s.commands_sent()),
        }
    }

    /// The check a page of `task`'s `run` (request `id`) passes before it goes, where its
    /// task's budget of `max` pages is kept outside this engine (shared: in Redis).
    pub fn budget_check(
        &self,
        id: u64,
        task: &str,
        run: u64,
        max: u64,
    ) -> Option<futures::future::BoxFuture<'static, BudgetVerdict>> {
        match self {
            Queue::Embedded(_) => None,
            Queue::Shared(s) => Some(s.budget_check(id, task, run, max)),
        }
    }

    /// The engine leaves the crawl: what the frontier says of it then (shared).
    pub async fn close(&mut self) -> Result<Option<Closing>, RedisGone> {
        match self {
            Queue::Embedded(_) => Ok(None),
            Queue::Shared(s) => s.close().await.map(Some),
        }
    }

    /// The shared frontier, in cluster mode.
    pub fn shared(&mut self) -> Option<&mut SharedFrontier> {
        match self {
            Queue::Embedded(_) => None,
            Queue::Shared(s) => Some(s),
        }
    }

    /// The embedded frontier, outside cluster mode.
    pub fn embedded(&mut self) -> Option<&mut Frontier> {
        match self {
            Queue::Embedded(f) => Some(f),
            Queue::Shared(_) => None,
        }
    }
}
