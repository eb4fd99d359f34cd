//! Tasks in a shared crawl: the changes this engine records for every engine (with its
//! turn, or an operator's change fenced by the leader's epoch), and the news of the changes
//! the others recorded.

use super::*;

impl SharedFrontier {
    /// Records a task change for every engine (this engine leads: operators' changes come
    /// here).
    pub fn task_changed(&mut self, change: crate::tasks::record::TaskChange) {
        self.turn.tasks.push(change);
    }

    /// Records an operator's change (and a new task's seeds) for every engine, fenced by the
    /// leader's epoch and by `fence` (see [`SharedFrontier::record`]).
    pub async fn record_change(
        &mut self,
        change: &crate::tasks::record::TaskChange,
        seeds: &[NewUrl],
        fence: &crate::cluster::frontier::TaskFence<'_>,
    ) -> Result<crate::cluster::frontier::Recorded, ClusterError> {
        let recorded = self
            .record(std::slice::from_ref(change), seeds, fence)
            .await?;
        if recorded == crate::cluster::frontier::Recorded::Now {
            self.offered_seeds(seeds);
        }
        Ok(recorded)
    }

    /// Records task changes in one script fenced by the leader's epoch and by `fence`,
    /// trying again for a few seconds while Redis fails (an idempotency key in `fence` makes
    /// a retry of a change that landed harmless). `Err` when Redis gave no answer: the
    /// changes may yet have been recorded.
    pub(super) async fn record(
        &mut self,
        changes: &[crate::tasks::record::TaskChange],
        seeds: &[NewUrl],
        fence: &crate::cluster::frontier::TaskFence<'_>,
    ) -> Result<crate::cluster::frontier::Recorded, ClusterError> {
        let until = Instant::now() + RECORD_TASKS_FOR;
        loop {
            let role = *self.role.borrow();
            let crate::cluster::leader::Role::Leader(epoch) = role else {
                return Ok(crate::cluster::frontier::Recorded::Stale);
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

    /// Reads what changed in the crawl's tasks since the last look; `None` when nothing did
    /// (as the last tick's read of the version says: no call to Redis then).
    pub async fn task_news(&mut self) -> Option<crate::tasks::record::TaskNews> {
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
        let mut news = crate::tasks::record::TaskNews::default();
        for record in read.records {
            self.tasks_known += 1;
            match serde_json::from_str::<crate::tasks::record::TaskSpec>(&record)
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
                    crate::tasks::record::parse_state_value(&value).map(|(s, run)| (name, s, run))
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
            crate::cluster::leader::Role::Leader(epoch) => Some(epoch),
            _ => None,
        }
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
}
