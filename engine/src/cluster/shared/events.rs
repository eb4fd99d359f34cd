//! What a shared frontier brings about by itself, for the crawl loop to take in its turn:
//! Redis answering a claim or a batch, the itemsaver acknowledging items (their pages'
//! leases may then complete), and the frontier's own tick (status, the end, the leader's
//! share). The loop waits on [`SharedFrontier::event`] beside its other sources and hands
//! what came to [`SharedFrontier::on_event`]; it never looks at the events themselves.

use super::{BudgetVerdict, Closing, FrontierGone, Handled, RedisAnswer, SharedFrontier, TICK};
use tokio::time::Instant;

/// Something the shared frontier brought about.
pub enum FrontierEvent {
    /// A claim or a batch was answered.
    Answer(RedisAnswer),
    /// Items under these spool sequences are durable (`None`: the sink is gone).
    Acked(Option<Vec<u64>>),
    /// Time for the frontier's tick.
    Tick,
}

impl SharedFrontier {
    /// Takes the acknowledgements of spooled items: a page's lease completes only once its
    /// items are durable.
    pub fn take_acks(&mut self, acks: tokio::sync::mpsc::Receiver<Vec<u64>>) {
        self.acks = Some(acks);
    }

    /// Waits for the next event.
    pub async fn event(&mut self) -> FrontierEvent {
        let tick_at = self.tick_at;
        let acks = &mut self.acks;
        tokio::select! {
            answer = super::outbox::answer_of(&mut self.claiming, &mut self.settling) => {
                FrontierEvent::Answer(answer)
            }
            acked = async {
                match acks.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => FrontierEvent::Acked(acked),
            () = tokio::time::sleep_until(tick_at) => FrontierEvent::Tick,
        }
    }

    /// Takes an event; `idle` says whether the engine has no request in flight (it then
    /// ticks seldom, unless it holds work).
    pub async fn on_event(
        &mut self,
        event: FrontierEvent,
        idle: bool,
    ) -> Result<Handled, FrontierGone> {
        match event {
            FrontierEvent::Answer(RedisAnswer::Claimed(claimed)) => {
                self.take_claim(claimed, Instant::now());
                Ok(Handled::Refilled)
            }
            FrontierEvent::Answer(RedisAnswer::Settled(settled)) => {
                self.take_settled(settled);
                Ok(Handled::Nothing)
            }
            FrontierEvent::Acked(Some(seqs)) => {
                self.acked(&seqs);
                self.settle();
                Ok(Handled::Nothing)
            }
            FrontierEvent::Acked(None) => {
                self.acks = None;
                Ok(Handled::Nothing)
            }
            FrontierEvent::Tick => {
                // Often while this engine has work in hand (or requests in flight), seldom
                // while it waits.
                let every = if idle { self.tick_every() } else { TICK };
                self.tick_at = Instant::now() + every;
                self.tick(Instant::now()).await?;
                Ok(Handled::Ticked)
            }
        }
    }
}

impl SharedFrontier {
    /// The check that a page of `task`'s `run` (request `id`) may take its place in the
    /// task's budget of `max` pages, made in Redis before it goes. A Redis that fails lets it
    /// go: it loses the completion too, and the page is fetched again.
    pub fn budget_check(
        &self,
        id: u64,
        task: &str,
        run: u64,
        max: u64,
    ) -> futures::future::BoxFuture<'static, BudgetVerdict> {
        let key = super::super::budget_key(task, run);
        let mut redis = self.redis.clone();
        Box::pin(async move {
            match redis.reserve(id, &key, max).await {
                Ok(super::super::Reserved::Taken) => BudgetVerdict::Taken,
                Ok(super::super::Reserved::Spent) => BudgetVerdict::Spent,
                Ok(super::super::Reserved::LeaseGone) => BudgetVerdict::LeaseGone,
                Err(e) => {
                    tracing::debug!(cause = %e, "could not take a page of its task's budget");
                    BudgetVerdict::Taken
                }
            }
        })
    }

    /// Leaves the crawl: gives back what was claimed and not sent, sends what is left to
    /// Redis, and says how things stand.
    pub async fn close(&mut self) -> Result<Closing, FrontierGone> {
        self.give_back().await?;
        Ok(Closing {
            late_completions: self.late_completions(),
            unreadable_requests: self.unreadable_requests(),
            drained: self.drained(),
            done: self.is_done(),
            queued: self.queued(),
        })
    }
}
