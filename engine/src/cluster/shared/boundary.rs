//! The shared frontier behind the crawl's frontier boundary: requests are offered to and
//! claimed from Redis, the crawl's tasks are recorded there for every engine, and the leader
//! fires the scheduled ticks.

use super::SharedFrontier;
use super::events::FrontierEvent;
use crate::cluster::{ClusterError, run_seeds};
use crate::frontier::{
    Admission, BudgetVerdict, Closing, Dispatched, Frontier, FrontierGone, Handled, Place, Popped,
    Recorded, TaskFence, Tick,
};
use crate::robots::{self, Rules};
use crate::schedule::Overlap;
use crate::tasks::record::{TaskChange, TaskNews, run_salt};
use crate::tasks::{Hold, TaskDef};
use common::{Request, RobotsFile};
use futures::future::BoxFuture;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Times a tick is tried when the task's run moved between reading it and firing.
const TICK_TRIES: usize = 2;

impl Frontier for SharedFrontier {
    type Event = FrontierEvent;
    type Error = ClusterError;

    fn admit(&self, _: &str, _: u64, _: u64, _: bool) -> Admission {
        // Redis decides, with the offer.
        Admission::Open
    }

    fn push(&mut self, url: &Url, request: Request, place: Place, _: u64, _: Instant) -> bool {
        // Queued with the turn's completion, deduplicated in Redis.
        let new = self.new_url(&request, place, || robots::robots_url(url));
        SharedFrontier::push(self, new);
        false
    }

    fn pop(
        &mut self,
        _: Instant,
        hold: impl FnMut(&str, u64) -> Hold,
        _: Option<Duration>,
    ) -> Option<Popped> {
        SharedFrontier::pop(self, hold)
    }

    fn has_ready(&self, now: Instant) -> bool {
        SharedFrontier::has_ready(self) || self.may_claim(now)
    }

    fn next_wake(&self) -> Option<Instant> {
        self.next_claim()
    }

    fn done(&mut self, _: &str, _: Instant) {
        // Its host's slot is freed with its completion.
    }

    fn finished(&mut self, d: &Dispatched) {
        SharedFrontier::finished(self, d);
    }

    fn fetched(&mut self, d: &Dispatched) {
        SharedFrontier::fetched(self, d);
    }

    fn recovered(&mut self, host: &str) {
        SharedFrontier::recovered(self, host);
    }

    fn throttle(&mut self, host: &str, retry_after: Option<Duration>, _: Instant) {
        SharedFrontier::throttle(self, host, retry_after);
    }

    fn defer(&mut self, d: Dispatched, at: Instant, now: Instant) {
        SharedFrontier::defer(self, d, at.saturating_duration_since(now));
    }

    fn requeue_front(&mut self, d: Dispatched, _: Instant) {
        SharedFrontier::requeue_front(self, d);
    }

    fn robots_known(
        &mut self,
        d: &Dispatched,
        rules: Rules,
        crawl_delay: Option<Duration>,
        file: Option<RobotsFile>,
        _: Instant,
    ) {
        SharedFrontier::robots_known(self, d, rules, crawl_delay, file);
    }

    fn unpark(&mut self, _: &str, _: Instant) {
        // A paused task's requests wait in Redis, looked at again now and then.
    }

    fn drop_parked(&mut self, _: &str) -> Vec<Dispatched> {
        Vec::new()
    }

    fn queued(&self) -> usize {
        SharedFrontier::queued(self)
    }

    fn parked(&self) -> usize {
        0
    }

    fn seen(&self) -> usize {
        SharedFrontier::seen(self) as usize
    }

    fn task_queued(&self, task: &str) -> Option<u64> {
        Some(SharedFrontier::task_queued(self, task))
    }

    fn restore_seen(&mut self, _: u64, _: u64) {
        // The crawl's state is in Redis.
    }

    fn restore_request(
        &mut self,
        _: Request,
        _: String,
        _: u32,
        _: u64,
        _: impl FnOnce() -> String,
        _: Instant,
    ) {
        // The crawl's state is in Redis.
    }

    fn forget(&mut self, _: u64) -> usize {
        // Each run's URLs are deduplicated in Redis under the run's salt.
        0
    }

    fn spooled(&mut self, seq: u64) {
        SharedFrontier::spooled(self, seq);
    }

    fn end_turn(&mut self) -> impl Future<Output = ()> + Send + '_ {
        SharedFrontier::end_turn(self)
    }

    fn keeps_going(&self) -> bool {
        SharedFrontier::keeps_going(self)
    }

    fn stop(&mut self) {
        SharedFrontier::stop(self);
    }

    fn drained(&self) -> bool {
        SharedFrontier::drained(self)
    }

    fn may_refill(&self, now: Instant) -> bool {
        self.may_claim(now)
    }

    fn refill(&mut self, slots: usize) {
        self.claim(slots);
    }

    fn refilling(&self) -> bool {
        self.claiming()
    }

    fn event(&mut self) -> impl Future<Output = FrontierEvent> + Send + '_ {
        SharedFrontier::event(self)
    }

    fn on_event(
        &mut self,
        event: FrontierEvent,
        idle: bool,
    ) -> impl Future<Output = Result<Handled, FrontierGone>> + Send + '_ {
        SharedFrontier::on_event(self, event, idle)
    }

    fn is_done(&self) -> bool {
        SharedFrontier::is_done(self)
    }

    fn keeps_robots_files(&self) -> bool {
        true
    }

    fn store_commands(&self) -> Option<u64> {
        Some(self.commands_sent())
    }

    fn budget_check(
        &self,
        id: u64,
        task: &str,
        run: u64,
        max: u64,
    ) -> Option<BoxFuture<'static, BudgetVerdict>> {
        Some(SharedFrontier::budget_check(self, id, task, run, max))
    }

    async fn close(&mut self) -> Result<Option<Closing>, FrontierGone> {
        SharedFrontier::close(self).await.map(Some)
    }

    fn shares_tasks(&self) -> bool {
        true
    }

    fn leads(&self) -> bool {
        self.leading().is_some()
    }

    async fn record_change<'a>(
        &'a mut self,
        change: &'a TaskChange,
        seeds_of: Option<(&'a TaskDef, u64)>,
        fence: &'a TaskFence<'a>,
    ) -> Result<Recorded, ClusterError> {
        let seeds = seeds_of.map_or_else(Vec::new, |(def, salt)| {
            run_seeds(def, self.obeys_robots(), 0, salt)
        });
        SharedFrontier::record_change(self, change, &seeds, fence).await
    }

    fn task_changed(&mut self, change: TaskChange) {
        SharedFrontier::task_changed(self, change);
    }

    fn task_news(&mut self) -> impl Future<Output = Option<TaskNews>> + Send + '_ {
        SharedFrontier::task_news(self)
    }

    fn news_due(&mut self) {
        SharedFrontier::news_due(self);
    }

    fn tasks_read(&self) -> u64 {
        SharedFrontier::tasks_read(self)
    }

    fn done_before_joining(&self, id: u64) -> bool {
        SharedFrontier::done_before_joining(self, id)
    }

    fn idempotency_key(&self, own: &str) -> String {
        crate::cluster::keys::Keys::with_prefix(self.redis.prefix()).idem(own)
    }

    async fn fire_tick<'a>(
        &'a mut self,
        def: &'a TaskDef,
        at: i64,
        overlap: Overlap,
    ) -> Result<(Tick, Option<i64>, u64), ClusterError> {
        let Some(epoch) = self.leading() else {
            return Ok((Tick::NotLeader, None, 0));
        };
        let name = &def.name;
        let robots = self.obeys_robots();
        let mut tries = 0;
        loop {
            tries += 1;
            let (run, _) = self.redis().run_of(name).await?;
            let next = run + 1;
            let seeds = run_seeds(def, robots, next, run_salt(name, next));
            let (tick, last) = self
                .redis()
                .tick(epoch, name, at, overlap, next, &seeds)
                .await?;
            match tick {
                // Read again: the run moved meanwhile.
                Tick::RunMoved if tries < TICK_TRIES => continue,
                Tick::Started | Tick::Replaced => self.offered_seeds(&seeds),
                _ => {}
            }
            return Ok((tick, last, next));
        }
    }

    async fn last_tick<'a>(&'a mut self, name: &'a str) -> Result<Option<i64>, ClusterError> {
        Ok(self.redis().run_of(name).await?.1)
    }

    async fn end_runs<'a>(&'a mut self, tasks: &'a [String]) -> Result<Option<u64>, ClusterError> {
        let Some(epoch) = self.leading() else {
            return Ok(None);
        };
        self.redis().end_runs(epoch, tasks).await
    }
}
