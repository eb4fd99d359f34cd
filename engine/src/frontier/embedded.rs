//! The embedded frontier behind the crawl's frontier boundary: everything happens in this
//! process, at once. It brings no event about, brings nothing in from elsewhere, and shares
//! no task: the engine's tasks are its own, kept in its state and run history.

use super::boundary::{
    BudgetVerdict, Closing, Frontier, FrontierGone, Handled, Place, Recorded, TaskFence, Tick,
};
use super::{Admission, Dispatched, EmbeddedFrontier, Popped};
use crate::robots::{self, Rules};
use crate::schedule::Overlap;
use crate::tasks::record::{TaskChange, TaskNews};
use crate::tasks::{Hold, TaskDef};
use common::{Request, RobotsFile};
use futures::future::BoxFuture;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

impl Frontier for EmbeddedFrontier {
    type Event = Infallible;
    type Error = Infallible;

    fn admit(&self, host: &str, scope: u64, fingerprint: u64, bounded: bool) -> Admission {
        EmbeddedFrontier::admit(self, host, scope, fingerprint, bounded)
    }

    fn push(&mut self, url: &Url, request: Request, place: Place, id: u64, now: Instant) -> bool {
        EmbeddedFrontier::push(
            self,
            request,
            place.host,
            (place.scope, place.fingerprint),
            place.redirects,
            id,
            || robots::robots_url(url),
            now,
        )
    }

    fn pop(
        &mut self,
        now: Instant,
        mut hold: impl FnMut(&str, u64) -> Hold,
        suspect_wait: Option<Duration>,
    ) -> Option<Popped> {
        // Its pages are all of run 0: a run's leftovers are dropped before the next starts.
        EmbeddedFrontier::pop(self, now, |task| hold(task, 0), suspect_wait)
    }

    fn has_ready(&self, now: Instant) -> bool {
        EmbeddedFrontier::has_ready(self, now)
    }

    fn next_wake(&self) -> Option<Instant> {
        EmbeddedFrontier::next_wake(self)
    }

    fn done(&mut self, host: &str, now: Instant) {
        EmbeddedFrontier::done(self, host, now);
    }

    fn finished(&mut self, _: &Dispatched) {}

    fn fetched(&mut self, _: &Dispatched) {
        // Counted toward `--max_pages_per_host` when it went.
    }

    fn recovered(&mut self, host: &str) {
        EmbeddedFrontier::recovered(self, host);
    }

    fn throttle(&mut self, host: &str, retry_after: Option<Duration>, now: Instant) {
        EmbeddedFrontier::throttle(self, host, retry_after, now);
    }

    fn defer(&mut self, d: Dispatched, at: Instant, _: Instant) {
        EmbeddedFrontier::defer(self, d, at);
    }

    fn requeue_front(&mut self, d: Dispatched, now: Instant) {
        EmbeddedFrontier::requeue_front(self, d, now);
    }

    fn robots_known(
        &mut self,
        d: &Dispatched,
        rules: Rules,
        crawl_delay: Option<Duration>,
        _: Option<RobotsFile>,
        now: Instant,
    ) {
        EmbeddedFrontier::robots_known(self, &d.host, rules, crawl_delay, now);
    }

    fn unpark(&mut self, task: &str, now: Instant) {
        EmbeddedFrontier::unpark(self, task, now);
    }

    fn drop_parked(&mut self, task: &str) -> Vec<Dispatched> {
        EmbeddedFrontier::drop_parked(self, task)
    }

    fn queued(&self) -> usize {
        EmbeddedFrontier::queued(self)
    }

    fn parked(&self) -> usize {
        EmbeddedFrontier::parked(self)
    }

    fn seen(&self) -> usize {
        EmbeddedFrontier::seen(self)
    }

    fn task_queued(&self, _: &str) -> Option<u64> {
        None
    }

    fn restore_seen(&mut self, scope: u64, fingerprint: u64) {
        self.mark_seen(scope, fingerprint);
    }

    fn restore_request(
        &mut self,
        request: Request,
        host: String,
        redirects: u32,
        id: u64,
        robots_url: impl FnOnce() -> String,
        now: Instant,
    ) {
        EmbeddedFrontier::restore(self, request, host, redirects, id, robots_url, now);
    }

    fn forget(&mut self, scope: u64) -> usize {
        EmbeddedFrontier::forget(self, scope)
    }

    fn spooled(&mut self, _: u64) {}

    fn end_turn(&mut self) -> impl Future<Output = ()> + Send + '_ {
        std::future::ready(())
    }

    fn keeps_going(&self) -> bool {
        // The crawl loop's own test decides.
        false
    }

    fn stop(&mut self) {}

    fn drained(&self) -> bool {
        false
    }

    fn may_refill(&self, _: Instant) -> bool {
        false
    }

    fn refill(&mut self, _: usize) {}

    fn refilling(&self) -> bool {
        false
    }

    fn event(&mut self) -> impl Future<Output = Infallible> + Send + '_ {
        std::future::pending()
    }

    async fn on_event(&mut self, event: Infallible, _: bool) -> Result<Handled, FrontierGone> {
        match event {}
    }

    fn is_done(&self) -> bool {
        // The crawl loop decides.
        false
    }

    fn keeps_robots_files(&self) -> bool {
        false
    }

    fn store_commands(&self) -> Option<u64> {
        None
    }

    fn budget_check(
        &self,
        _: u64,
        _: &str,
        _: u64,
        _: u64,
    ) -> Option<BoxFuture<'static, BudgetVerdict>> {
        // The task's budget is kept by the crawl loop.
        None
    }

    fn close(&mut self) -> impl Future<Output = Result<Option<Closing>, FrontierGone>> + Send + '_ {
        std::future::ready(Ok(None))
    }

    fn shares_tasks(&self) -> bool {
        false
    }

    fn leads(&self) -> bool {
        true
    }

    fn record_change<'a>(
        &'a mut self,
        _: &'a TaskChange,
        _: Option<(&'a TaskDef, u64)>,
        _: &'a TaskFence<'a>,
    ) -> impl Future<Output = Result<Recorded, Infallible>> + Send + 'a {
        // Nobody else to tell: the change applies here at once.
        std::future::ready(Ok(Recorded::Now))
    }

    fn task_changed(&mut self, _: TaskChange) {}

    fn task_news(&mut self) -> impl Future<Output = Option<TaskNews>> + Send + '_ {
        std::future::ready(None)
    }

    fn news_due(&mut self) {}

    fn tasks_read(&self) -> u64 {
        0
    }

    fn done_before_joining(&self, _: u64) -> bool {
        false
    }

    fn idempotency_key(&self, own: &str) -> String {
        own.to_owned()
    }

    fn fire_tick<'a>(
        &'a mut self,
        _: &'a TaskDef,
        _: i64,
        _: Overlap,
    ) -> impl Future<Output = Result<(Tick, Option<i64>, u64), Infallible>> + Send + 'a {
        // The engine fires its own ticks (see `crawl::schedules`): nothing is shared.
        std::future::ready(Ok((Tick::NotLeader, None, 0)))
    }

    fn last_tick<'a>(
        &'a mut self,
        _: &'a str,
    ) -> impl Future<Output = Result<Option<i64>, Infallible>> + Send + 'a {
        std::future::ready(Ok(None))
    }

    fn end_runs<'a>(
        &'a mut self,
        _: &'a [String],
    ) -> impl Future<Output = Result<Option<u64>, Infallible>> + Send + 'a {
        std::future::ready(Ok(None))
    }
}
