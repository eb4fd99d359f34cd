//! The crawl's side of the durable state: recording changes in order, and starting from what
//! an earlier run left.

use super::{Crawl, host_key};
use crate::error::EngineError;
use crate::frontier::{Dispatched, Kind};
use crate::robots;
use crate::sink::Spooled;
use crate::state::{Change, Restored, SpooledPage};
use crate::summary::Summary;
use crate::tasks::TaskDef;
use tokio::time::Instant;
use tracing::warn;
use url::Url;

/// A state change waiting to be sent to the writer; the changes of one loop turn (a page's
/// links, items and removal from the queue) go as one group, committed together or not at all.
pub(super) type Pending = Change;

impl Crawl {
    /// Records that a page request is done for good without being sent (skipped): it leaves
    /// the durable queue, and its task's count of open requests.
    pub(super) fn finished(&mut self, d: &Dispatched) {
        self.frontier.finished(d);
        self.left_queue(d);
    }

    /// Records that a page request is done for good after it was sent (fetched, redirected
    /// or failed), as [`Crawl::finished`] does.
    pub(super) fn fetched(&mut self, d: &Dispatched) {
        self.frontier.fetched(d);
        self.left_queue(d);
    }

    fn left_queue(&mut self, d: &Dispatched) {
        if d.kind != Kind::Page {
            return;
        }
        let index = self.tasks.index(&d.request.task);
        if self.is_durable(index) && d.id != 0 {
            self.pending.push(Pending::Finish(d.id));
        }
        if let Some(t) = self.tasks.named_mut(&d.request.task) {
            t.open = t.open.saturating_sub(1);
            t.settle();
        }
    }

    /// Gives a page's items their spool sequence number and records them in the spool.
    pub(super) fn spool(&mut self, page: SpooledPage) -> Spooled {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(shared) = self.frontier.shared() {
            shared.spooled(seq);
        }
        if self.durable {
            self.pending.push(Pending::Spool(seq, page.clone()));
        }
        (seq, page)
    }

    /// Sends the recorded changes to the state writer as one group.
    pub(super) async fn flush_pending(&mut self) -> Result<(), EngineError> {
        let changes = std::mem::take(&mut self.pending);
        self.state.record(changes).await?;
        if let Some(shared) = self.frontier.shared() {
            shared.end_turn().await;
            self.record_proposals().await;
        }
        Ok(())
    }

    /// The running figures, for the state.
    pub(super) fn counters_json(&self) -> String {
        let mut counters = self.summary.clone();
        counters.items_saved = self.items_saved_before + self.sink.saved();
        counters.items_rejected += self.sink.rejected();
        serde_json::to_string(&counters).unwrap_or_default()
    }

    /// Loads what an earlier run left (seen URLs, queue, undelivered items, figures), then
    /// queues the seeds (those already seen are skipped).
    pub(super) async fn start(&mut self, restored: Restored) -> Result<(), EngineError> {
        let now = Instant::now();
        let Some(frontier) = self.frontier.embedded() else {
            // Shared: the crawl's state is in Redis, and the leader seeds it.
            let def = TaskDef::from_config(&self.config);
            self.add_task_seeded(def, false)?;
            return self.flush_pending().await;
        };
        for fp in restored.seen {
            frontier.mark_seen(fp);
        }
        let mut restored_open = 0;
        for (id, entry) in restored.queue {
            self.next_id = self.next_id.max(id + 1);
            let Ok(url) = Url::parse(&entry.request.url) else {
                warn!(url = %entry.request.url, "unreadable queued URL in the state; dropped");
                continue;
            };
            // The durable queue holds the engine's own task only.
            let mut request = entry.request;
            request.task = self.config.task.clone();
            restored_open += 1;
            frontier.restore(
                request,
                host_key(&url),
                entry.redirects,
                id,
                || robots::robots_url(&url),
                now,
            );
        }
        if let Some(json) = restored.counters
            && let Ok(before) = serde_json::from_str::<Summary>(&json)
        {
            self.summary.restore_counters(&before);
            self.items_saved_before = before.items_saved;
        }
        self.next_seq = restored.spool.last().map_or(1, |(seq, _)| seq + 1);
        // Items fetched but not acknowledged before: sent first, in order.
        self.sink.send(restored.spool).await?;
        // The engine's own task: always, unless it only serves tasks added through the API.
        if !self.config.serve || !self.config.seeds.is_empty() || restored.resumed {
            let def = TaskDef::from_config(&self.config);
            self.add_task(def)?;
            if let Ok(t) = self.tasks.by_id_mut(1) {
                t.open += restored_open;
                t.settle();
            }
        }
        self.restore_schedules().await;
        self.flush_pending().await
    }
}
