//! The settle outbox: what this engine owes Redis. Each turn of the crawl loop ends with the
//! turn's completions and links ([`SharedFrontier::end_turn`]); a page's completion waits
//! until its items are durable (acknowledged by the itemsaver); what is ready goes to Redis
//! in batches, one on its way at a time, and a batch Redis failed goes back to the front.

use super::*;

impl SharedFrontier {
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
            if !matches!(recorded, Ok(crate::cluster::frontier::Recorded::Now)) {
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
    pub(super) fn push_completion(&mut self, c: Completion) {
        if matches!(c.pace, Pace::Throttled(_)) {
            self.outbox.push_front(Settle::Complete(c));
        } else {
            self.outbox.push_back(Settle::Complete(c));
        }
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
            let ops: Vec<crate::cluster::frontier::SettleOp<'_>> = batch
                .iter()
                .map(|op| match op {
                    Settle::Release(lease, links) => crate::cluster::frontier::SettleOp::Release {
                        lease: *lease,
                        links,
                    },
                    Settle::Complete(c) => crate::cluster::frontier::SettleOp::Complete {
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
        answer_of(&mut self.claiming, &mut self.settling).await
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
}

/// The claim or the batch on its way, whichever answers first (never ready with neither);
/// apart from the frontier, so that its other fields stay free to wait on beside it.
pub(super) async fn answer_of(
    claiming: &mut Option<Claiming>,
    settling: &mut Option<Settling>,
) -> RedisAnswer {
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
