//! Claiming: how an engine takes requests from the crawl's queues in Redis. A claim asks
//! for as many requests as the crawl loop holds worker slots for; its answer leaves them here,
//! in the claim buffer, with their hosts' robots.txt rules read once per host, until the loop
//! sends them. An empty answer waits until the next host is due, never spinning.

use super::*;

impl SharedFrontier {
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
    pub(super) fn unreadable(&mut self, lease: u64, host: String, unreadable: entry::Unreadable) {
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
}

/// How long until a host is ready to be claimed from, as Redis said (`None`: nothing is
/// queued; another engine may offer some, looked for a while later).
pub(super) fn ready_in(next: Option<Duration>) -> Duration {
    next.unwrap_or(MAX_CLAIM_WAIT).min(MAX_CLAIM_WAIT)
}

/// How long an empty claim waits before the next: until a host is ready, and never a spin.
pub(super) fn claim_wait(next: Option<Duration>) -> Duration {
    ready_in(next).max(MIN_CLAIM_WAIT)
}
