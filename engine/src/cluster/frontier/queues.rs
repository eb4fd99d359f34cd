//! The crawl's queues in Redis: offering URLs (deduplicated), claiming requests under
//! leases, completing, releasing and deferring them, keeping the leases alive, page budgets
//! and robots.txt records.

use super::*;

impl RedisFrontier {
    pub(super) fn push_urls(invocation: &mut redis::ScriptInvocation<'_>, urls: &[NewUrl]) {
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
        call.key(&self.prefix).arg(u8::from(bounded));
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
        call.key(&self.prefix).arg(epoch);
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
        let mut call = self.scripts.complete.prepare_invoke();
        call.key(&self.prefix);
        Self::push_completion(&mut call, claimed.lease, &claimed.host, &finished);
        let held: u8 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("complete"))?;
        Ok(held == 1)
    }

    /// A completion's arguments, as `complete.lua` and a settle's `C` op both read them:
    /// lease, host, pace, requeue, defer_ms, robots, crawl_delay_ms, robots_request, run,
    /// counted, then the page's links.
    fn push_completion(
        call: &mut redis::ScriptInvocation<'_>,
        lease: u64,
        host: &str,
        finished: &Finished<'_>,
    ) {
        let (entry, defer) = Self::again(finished.again);
        call.arg(lease)
            .arg(host)
            .arg(finished.pace.arg())
            .arg(entry)
            .arg(defer.as_millis() as u64)
            .arg(finished.robots.unwrap_or(b""))
            .arg(finished.crawl_delay.as_millis() as u64)
            .arg(finished.robots_request.arg())
            .arg(finished.run)
            .arg(u8::from(finished.counted));
        Self::push_urls(call, finished.links);
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
        call.key(&self.prefix).arg(lease);
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
        call.key(&self.prefix);
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
                    call.arg("C");
                    Self::push_completion(&mut call, *lease, host, finished);
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
    pub(super) fn again(again: Again<'_>) -> (&[u8], Duration) {
        match again {
            Again::Never => (b"", Duration::ZERO),
            Again::Now(entry) => (entry, Duration::ZERO),
            // At least a millisecond, so that a deferred request is never taken for a
            // requeue.
            Again::After(entry, wait) => (entry, wait.max(Duration::from_millis(1))),
        }
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

    /// The key of the seen-set shard holding `fingerprint`, for tests of its encoding.
    pub fn seen_shard_key(&self, fingerprint: u64) -> String {
        self.keys().seen(None, fingerprint % SEEN_SHARDS)
    }

    /// The key of the seen-set shard `fingerprint` is kept in for the scheduled run keyed
    /// `run` ([`crate::tasks::record::run_key`]), deleted when the task's next run starts.
    pub fn run_seen_shard_key(&self, run: &str, fingerprint: u64) -> String {
        self.keys().seen(Some(run), fingerprint % SEEN_SHARDS)
    }
}
