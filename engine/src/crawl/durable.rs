//! The crawl's side of the durable state: recording changes in order, and starting from what
//! an earlier run left.

use super::{Crawl, host_key};
use crate::error::EngineError;
use crate::frontier::Frontier;
use crate::frontier::{Dispatched, Kind};
use crate::robots;
use crate::sink::Spooled;
use crate::state::{Change, Restored, SpooledPage};
use crate::summary::Summary;
use crate::tasks::{TaskDef, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tokio::time::Instant;
use tracing::{info, warn};
use url::Url;

/// A task as the durable state keeps it: what it does, where it is in its life, the dedup
/// scope of its run and its run's figures (saved with the crawl's, every `--state_sync_ms`),
/// so that a restarted engine carries on every task, its page budget included.
#[derive(Serialize, Deserialize)]
struct TaskRecord {
    spec: crate::tasks::record::TaskSpec,
    state: TaskState,
    salt: u64,
    runs_started: u64,
    #[serde(default)]
    pages_ok: u64,
    #[serde(default)]
    pages_failed: u64,
    #[serde(default)]
    pages_redirected: u64,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    items: u64,
}

/// A state change waiting to be sent to the writer; the changes of one loop turn (a page's
/// links, items and removal from the queue) go as one group, committed together or not at all.
pub(super) type Pending = Change;

impl<F: Frontier> Crawl<F> {
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
        if d.id != 0 {
            self.journal.record(Pending::Finish(d.id));
        }
        if let Some(t) = self.tasks.named_mut(&d.request.task) {
            t.open = t.open.saturating_sub(1);
            t.settle();
        }
    }

    /// Records task `id` as it is now in the durable state (added, its state or run changed).
    pub(super) fn record_task(&mut self, id: u64) {
        if !self.journal.durable() {
            return;
        }
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        let record = TaskRecord {
            spec: crate::tasks::record::TaskSpec::from_def(&task.def),
            state: task.state,
            salt: task.salt,
            runs_started: task.runs_started,
            pages_ok: task.pages_ok,
            pages_failed: task.pages_failed,
            pages_redirected: task.pages_redirected,
            skipped: task.skipped,
            items: task.items,
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.journal.record(Pending::Task(id, json));
    }

    /// Takes up the tasks the state recorded, in id order, with their runs' dedup scopes and
    /// states and `open` requests restored; the engine's own task (id 1, when the flags name
    /// it) takes its settings from the flags, as a fresh start would.
    async fn restore_tasks(&mut self, records: Vec<(u64, String)>, open: &HashMap<String, u64>) {
        for (id, json) in records {
            let record = match serde_json::from_str::<TaskRecord>(&json) {
                Ok(record) => record,
                Err(e) => {
                    warn!(id, cause = %e, "an unreadable task in the state; its requests are dropped as they come");
                    continue;
                }
            };
            let own = id == 1 && record.spec.name() == self.config.task && self.has_own_task();
            let def = if own {
                Ok(TaskDef::from_config(&self.config))
            } else {
                record.spec.to_def()
            };
            let def = match def {
                Ok(def) => def,
                Err(why) => {
                    warn!(id, %why, "a task in the state cannot be taken up; its requests are dropped as they come");
                    continue;
                }
            };
            if !own && let Some(spider) = &def.spider {
                let requirement = crate::pool::Requirement::Spider(spider.source.clone());
                if let Err(why) = self.pool.control().require(requirement).await {
                    warn!(task = %def.name, %why, "no worker can run a resumed task's spider yet");
                }
            }
            let (name, scheduled) = (def.name.clone(), def.schedule.is_some());
            let added = match self.tasks.add(def) {
                Ok(added) => added,
                Err(e) => {
                    warn!(id, cause = %e, "a task in the state cannot be taken up");
                    continue;
                }
            };
            if added != id {
                warn!(id, now = added, task = %name, "a resumed task has another id");
            }
            let left = open.get(&name).copied().unwrap_or(0);
            if scheduled {
                self.schedule_task(added);
            }
            let Ok(task) = self.tasks.by_id_mut(added) else {
                continue;
            };
            task.salt = record.salt;
            task.open = left;
            task.pages_ok = record.pages_ok;
            task.pages_failed = record.pages_failed;
            task.pages_redirected = record.pages_redirected;
            task.skipped = record.skipped;
            task.items = record.items;
            match record.state {
                // A scheduled task between runs waits for its next tick.
                TaskState::Waiting => {}
                _ if scheduled && left == 0 => {}
                TaskState::Paused => task.state = TaskState::Paused,
                state if state.ended() => task.state = state,
                _ => task.state = TaskState::Running,
            }
            task.settle();
            // A run goes on only where requests are left to send: a task that had finished,
            // or reached its page budget, gets no new run in the history.
            let going = left > 0
                && matches!(task.state, TaskState::Running | TaskState::Paused)
                && !task.capped();
            info!(id = added, task = %name, state = ?task.state, queued = left, "task resumed from the state");
            if going {
                self.record_run_start(added);
            }
            if let Ok(task) = self.tasks.by_id_mut(added) {
                task.runs_started = record.runs_started;
            }
            self.record_task(added);
        }
    }

    /// Whether the engine's flags describe a task of its own (a serving engine may have
    /// none: only tasks added through the API).
    fn has_own_task(&self) -> bool {
        !self.config.serve || !self.config.seeds.is_empty()
    }

    /// Gives a page's items their spool sequence number and records them in the spool.
    pub(super) fn spool(&mut self, page: SpooledPage) -> Spooled {
        let seq = self.journal.take_seq();
        self.frontier.spooled(seq);
        if self.journal.durable() {
            self.journal.record(Pending::Spool(seq, page.clone()));
        }
        (seq, page)
    }

    /// Sends the recorded changes to the state writer as one group.
    pub(super) async fn flush_pending(&mut self) -> Result<(), EngineError> {
        self.journal.commit_turn().await?;
        self.frontier.end_turn().await;
        self.record_proposals().await;
        Ok(())
    }

    /// The running figures, for the state.
    pub(super) fn counters_json(&self) -> String {
        self.figures
            .counters_json(self.sink.saved(), self.sink.rejected())
    }

    /// Loads what an earlier run left (seen URLs, queue, undelivered items, figures), then
    /// queues the seeds (those already seen are skipped).
    pub(super) async fn start(&mut self, restored: Restored) -> Result<(), EngineError> {
        let now = Instant::now();
        if self.frontier.shares_tasks() {
            // The crawl's state is with its frontier, and the leader seeds it.
            let def = TaskDef::from_config(&self.config);
            self.add_task_seeded(def, false)?;
            return self.flush_pending().await;
        }
        for (scope, fp) in restored.seen {
            self.frontier.restore_seen(scope, fp);
        }
        // A state from before every task was kept holds the engine's own task only.
        let own_only = restored.tasks.is_empty();
        let mut open: HashMap<String, u64> = HashMap::new();
        for (id, entry) in restored.queue {
            self.journal.id_restored(id);
            let Ok(url) = Url::parse(&entry.request.url) else {
                warn!(url = %entry.request.url, "unreadable queued URL in the state; dropped");
                continue;
            };
            let mut request = entry.request;
            if own_only {
                request.task = self.config.task.clone();
            }
            *open.entry(request.task.clone()).or_default() += 1;
            self.frontier.restore_request(
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
            self.figures.restore(&before);
        }
        self.journal
            .seq_restored(restored.spool.last().map(|(seq, _)| *seq));
        // Items fetched but not acknowledged before: sent first, in order.
        self.sink.send(restored.spool).await?;
        if !own_only {
            self.restore_tasks(restored.tasks, &open).await;
        } else if self.has_own_task() || restored.resumed {
            // The engine's own task: always, unless it only serves tasks added through the
            // API.
            let def = TaskDef::from_config(&self.config);
            self.add_task(def)?;
            if let Ok(t) = self.tasks.by_id_mut(1) {
                t.open += open.get(&self.config.task).copied().unwrap_or(0);
                t.settle();
            }
        }
        self.restore_schedules().await;
        self.flush_pending().await
    }
}
