//! The shared frontier's tick and its health: the crawl's figures and end read from Redis,
//! Redis failing and coming back (the engine stops with the crawl resumable once Redis has
//! been gone past `--redis_timeout`), and stopping: giving back what was claimed and not
//! sent, and sending what is owed.

use super::*;

impl SharedFrontier {
    /// Whether this engine takes new work (not paused, draining or stopping).
    pub(super) fn running(&self) -> bool {
        !self.stopping && self.state.mode() == crate::cluster::engines::EngineMode::Running
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
        self.state.mode() == crate::cluster::engines::EngineMode::Draining && !self.holds_work()
    }

    pub(super) fn holds_work(&self) -> bool {
        !self.local.is_empty()
            || !self.outbox.is_empty()
            || !self.awaiting.is_empty()
            || self.settling.is_some()
            || self.claiming.is_some()
    }

    /// Keeps the crawl's view of Redis current: retries what failed, reads the crawl's
    /// figures and whether it is done, and (leading) checks for the end.
    pub async fn tick(&mut self, now: Instant) -> Result<(), FrontierGone> {
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
        if let crate::cluster::leader::Role::Leader(epoch) = role
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

    pub(super) fn redis_failed(&mut self, e: &ClusterError, now: Instant) {
        self.last_error = Some(e.to_string());
        if self.failing_since.is_none() {
            warn!(cause = %e, "redis failed; dispatching stops until it is back");
            self.failing_since = Some(now);
        }
    }

    pub(super) fn recovered_redis(&mut self) {
        if self.failing_since.take().is_some() {
            info!("redis is back; the crawl goes on");
        }
    }

    pub(super) fn check_gone(&self, e: &ClusterError) -> Result<(), FrontierGone> {
        self.check_gone_text(&e.to_string())
    }

    pub(super) fn check_gone_text(&self, cause: &str) -> Result<(), FrontierGone> {
        match self.failing_since {
            Some(since) if since.elapsed() >= self.redis_timeout => Err(FrontierGone {
                waited: since.elapsed(),
                cause: cause.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the crawl still has work for this engine: it is not done, or this engine
    /// still holds requests or completions.
    pub fn keeps_going(&self) -> bool {
        if self.stopping || self.state.mode() == crate::cluster::engines::EngineMode::Draining {
            return self.holds_work();
        }
        !self.done || self.holds_work()
    }

    /// Gives back the claimed requests not sent and sends what is left of the outbox (the
    /// engine is stopping).
    pub async fn give_back(&mut self) -> Result<(), FrontierGone> {
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
}
