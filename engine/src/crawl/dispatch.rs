//! Dispatch: the next request out of the frontier onto a worker slot, as an RPC call whose
//! completion the crawl loop takes in turn (a page of a task whose budget is kept elsewhere
//! takes its place in it first).

use super::*;
use crate::frontier::Frontier;

/// What dispatch keeps between turns: requests in flight, suspects among them, and the
/// worker slots held for a refill on its way.
#[derive(Default)]
pub(super) struct Slots {
    /// Requests in flight, as of the last loop turn.
    in_flight: usize,
    /// Requests in flight that a worker already died holding (see [`SUSPECT_WAIT`]).
    suspects: usize,
    /// Worker slots held for the requests a refill on its way brings (cluster mode): given
    /// back to the pool when it is answered, so that the refill asks no more than the
    /// workers can take.
    armed: Vec<Lease>,
    /// When a page to render first found no worker that renders connected (none since).
    pub(super) no_renderer_since: Option<Instant>,
}

impl Slots {
    /// Requests in flight, as of the last loop turn.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The loop turn starts with `n` requests in flight.
    pub(super) fn set_in_flight(&mut self, n: usize) {
        self.in_flight = n;
    }

    /// A suspect's call ended.
    pub(super) fn suspect_answered(&mut self) {
        self.suspects = self.suspects.saturating_sub(1);
    }

    /// The worker slots held for a refill, to give back to the pool.
    pub(super) fn disarm(&mut self) -> std::vec::Drain<'_, Lease> {
        self.armed.drain(..)
    }
}

impl<F: Frontier> Crawl<F> {
    pub(super) fn dispatch(&mut self, lease: Lease) -> Option<BoxFuture<'static, Completion>> {
        let now = Instant::now();
        let dispatched = loop {
            let tasks = &mut self.tasks;
            let suspect_wait = (self.slots.suspects > 0).then_some(SUSPECT_WAIT);
            match self
                .frontier
                .pop(now, |task, run| tasks.hold(task, run, now), suspect_wait)
            {
                None => {
                    let room = self.config.concurrency.saturating_sub(self.slots.in_flight);
                    if self.frontier.may_refill(now) {
                        // Slots held for what the refill brings: this one and as many more
                        // as are free now, up to the room for requests.
                        self.slots.armed.push(lease);
                        while self.slots.armed.len() < room {
                            match self.pool.try_acquire() {
                                Some(more) => self.slots.armed.push(more),
                                None => break,
                            }
                        }
                        self.frontier.refill(self.slots.armed.len());
                    } else {
                        self.pool.release(lease);
                    }
                    return None;
                }
                Some(Popped::Skip(d, reason)) => {
                    debug!(url = %d.request.url, reason, "not fetched");
                    self.tally_of(&d, Outcome::Skipped { reason });
                    self.finished(&d);
                }
                Some(Popped::Send(d)) => break d,
            }
        };
        if !dispatched.deaths.is_empty() {
            self.slots.suspects += 1;
        }
        // Rendered as its task (--render) or its spider rule says; asked once per page.
        let render = match dispatched.kind {
            Kind::Page => self
                .tasks
                .named(&dispatched.request.task)
                .and_then(|t| t.def.render_of(&dispatched.request.parser)),
            Kind::Robots => None,
        };
        let renders = render.is_some();
        let lease = match (renders, dispatched.last_worker) {
            // A page to render goes only to a worker that renders, with a tab free there.
            (true, _) => match self.pool.renderer_lease(lease) {
                Ok(lease) => lease,
                Err(lease) => {
                    // None free (or none at all): it comes back, unsent (see `no_renderer`).
                    lease.worker().in_flight.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = self.tasks.named_mut(&dispatched.request.task) {
                        t.in_flight += 1;
                    }
                    return Some(Box::pin(std::future::ready(Completion {
                        dispatched,
                        lease,
                        outcome: Err(Unanswered::NoRenderer),
                        sent: Instant::now(),
                    })));
                }
            },
            (false, Some(avoid)) => self.pool.prefer_other(lease, avoid),
            (false, None) => lease,
        };
        let worker = lease.worker().clone();
        // Held for the call: the worker's tab comes back when it ends.
        let tab = renders.then(|| worker.take_tab());
        worker.requests.fetch_add(1, Ordering::Relaxed);
        worker.in_flight.fetch_add(1, Ordering::Relaxed);
        self.figures.meter(worker.index, &worker.addr).0.inc();
        self.pool.traffic().call();
        let client = lease.client().clone();
        // A worker marked down (missed heartbeats, broken connection) ends its calls at once,
        // so their requests can go elsewhere instead of waiting out the deadline.
        let down = lease.down_signal();
        let leaving = lease.leaving_flag();
        let left = move || leaving.load(Ordering::SeqCst);
        let ctx = transport::deadline(self.config.rpc_timeout);
        let request = dispatched.request.clone();
        debug!(url = %request.url, kind = ?dispatched.kind, worker = %worker.addr, "dispatch");
        let sent = Instant::now();
        Some(match dispatched.kind {
            Kind::Page => {
                let (kill, max_pages) = match self.tasks.named_mut(&request.task) {
                    Some(t) => {
                        t.in_flight += 1;
                        (t.kill.clone(), t.def.max_pages)
                    }
                    None => (CancellationToken::new(), None),
                };
                // A shared crawl's page budget is the crawl's: the page takes its place in
                // it before it goes.
                let budget = max_pages.and_then(|max| {
                    self.frontier
                        .budget_check(dispatched.id, &request.task, dispatched.run, max)
                });
                Box::pin(async move {
                    if let Some(check) = budget {
                        let refused = match check.await {
                            BudgetVerdict::Taken => None,
                            BudgetVerdict::Spent => Some(Unanswered::OverBudget),
                            // Reaped meanwhile: the request is another engine's now.
                            BudgetVerdict::LeaseGone => Some(Unanswered::LeaseGone),
                        };
                        if let Some(miss) = refused {
                            return Completion {
                                dispatched,
                                lease,
                                outcome: Err(miss),
                                sent,
                            };
                        }
                    }
                    // Dropping the call when the task is killed cancels it on the worker too
                    // (tarpc sends the cancellation), which drops the fetch.
                    let outcome = tokio::select! {
                        r = client.crawl(ctx, request, render) => {
                            r.map(Answer::Page).map_err(|e| Unanswered::from_rpc(e, left()))
                        }
                        _ = down.cancelled() => Err(Unanswered::from_rpc(RpcError::Shutdown, left())),
                        _ = kill.cancelled() => Err(Unanswered::Killed),
                    };
                    drop(tab);
                    Completion {
                        dispatched,
                        lease,
                        outcome,
                        sent,
                    }
                })
            }
            Kind::Robots => Box::pin(async move {
                let outcome = tokio::select! {
                    r = client.robots(ctx, request.url) => r.map(Answer::Robots),
                    _ = down.cancelled() => Err(RpcError::Shutdown),
                }
                .map_err(|e| Unanswered::from_rpc(e, left()));
                Completion {
                    dispatched,
                    lease,
                    outcome,
                    sent,
                }
            }),
        })
    }
}
