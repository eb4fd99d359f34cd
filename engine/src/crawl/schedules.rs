//! Scheduled tasks in the crawl: each tick of a task's schedule starts a new run (the same
//! seeds and limits, a fresh dedup), unless the previous run is still going: then the tick is
//! skipped and counted (`overlap = "skip"`), or the old run is stopped gracefully and the new
//! one starts when it has ended (`"replace"`; in a shared crawl the new run starts at once,
//! and each engine joins it once its requests of the old one are answered, see
//! `shared_runs`). Between runs the task is `waiting`.

use super::Crawl;
use crate::frontier::Frontier;
use crate::schedule::Overlap;
use crate::tasks::{TaskError, TaskState};
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Ticks missed while the engine was down counted at most (they are skipped, not caught up).
pub(super) const MISSED_TICKS_COUNTED: u64 = 100_000;

impl<F: Frontier> Crawl<F> {
    /// The earliest tick of any scheduled task.
    pub(super) fn next_tick(&self) -> Option<DateTime<Utc>> {
        self.tasks.iter().filter_map(|t| t.next_tick).min()
    }

    /// The scheduled tasks whose next tick is due at `now`.
    pub(super) fn due_tasks(&self, now: DateTime<Utc>) -> Vec<u64> {
        self.tasks
            .iter()
            .filter(|t| t.next_tick.is_some_and(|at| at <= now))
            .map(|t| t.id)
            .collect()
    }

    /// Readies a scheduled task just added: it waits for its first tick, and the ticks it
    /// missed since its last run (an engine that was down) are counted as skipped.
    pub(super) fn schedule_task(&mut self, id: u64) {
        let now = self.clock.now();
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        let Some(schedule) = task.def.schedule.clone() else {
            return;
        };
        task.state = TaskState::Waiting;
        task.next_tick = schedule.next_after(now);
        let name = task.def.name.clone();
        info!(task = %name, cron = %schedule.spec.cron, timezone = %schedule.spec.timezone, next = ?task.next_tick, "task scheduled");
        if self.frontier.shares_tasks() {
            // The leader counts a shared crawl's missed ticks, from the last one fired.
            return;
        }
        let last = self
            .handle
            .history
            .as_ref()
            .and_then(|history| history.last(&name).ok().flatten());
        if let Some(last) = last {
            // A run the engine died in has no true end: count from its start.
            let from = match last.status {
                crate::history::RunStatus::Failed => last.started,
                _ => last.ended.unwrap_or(last.started),
            };
            let since = DateTime::<Utc>::from_timestamp(from as i64, 0);
            if let Some(since) = since {
                let missed = schedule.ticks_between(since, now, MISSED_TICKS_COUNTED);
                if missed > 0 {
                    let reason = format!("{missed} tick(s) missed while the engine was down");
                    self.record_skipped(id, missed, &reason);
                }
            }
        }
    }

    /// Fires every tick that is due (in a shared crawl, see `fire_shared_ticks`).
    pub(super) async fn fire_ticks(&mut self) {
        if self.frontier.shares_tasks() {
            return self.fire_shared_ticks().await;
        }
        let now = self.clock.now();
        for id in self.due_tasks(now) {
            let Ok(task) = self.tasks.by_id_mut(id) else {
                continue;
            };
            let Some(schedule) = task.def.schedule.clone() else {
                task.next_tick = None;
                continue;
            };
            // Ticks that passed while the loop was busy or the clock jumped are counted.
            let late = task.next_tick.map_or(0, |due| {
                schedule.ticks_between(due, now, MISSED_TICKS_COUNTED)
            });
            task.next_tick = schedule.next_after(now);
            if late > 0 {
                self.record_skipped(id, late, "tick(s) passed while the engine was busy");
            }
            let Ok(task) = self.tasks.by_id_mut(id) else {
                continue;
            };
            if !task.run_open {
                // What the last run left queued is dropped first; the run starts then.
                task.restart_pending = true;
                self.start_pending_runs();
                continue;
            }
            match schedule.spec.overlap {
                Overlap::Skip => self.record_skipped(id, 1, "the previous run was still going"),
                Overlap::Replace => {
                    if let Ok(task) = self.tasks.by_id_mut(id) {
                        task.restart_pending = true;
                    }
                    if let Err(e) = self.end_task(id, TaskState::Stopped) {
                        debug!(id, cause = %e, "the old run was already ending");
                    }
                }
            }
        }
    }

    /// After a run ended: a scheduled task waits for its next tick, or starts again at once
    /// when a tick asked to replace the run.
    pub(super) fn run_ended(&mut self, id: u64) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        if task.def.schedule.is_none() || task.state == TaskState::Closed {
            return;
        }
        task.state = TaskState::Waiting;
        // Requests the run left parked go now; queued ones as their turn comes.
        let name = task.def.name.clone();
        for d in self.frontier.drop_parked(&name) {
            let reason = "run_ended";
            self.tally(&name, super::tally::Outcome::Skipped { reason });
            self.finished(&d);
        }
        self.start_pending_runs();
    }

    /// Starts the runs a tick asked for whose task has nothing of its last run left.
    pub(super) fn start_pending_runs(&mut self) {
        let ready: Vec<u64> = self
            .tasks
            .iter()
            .filter(|t| t.restart_pending && !t.run_open && t.open == 0)
            .map(|t| t.id)
            .collect();
        for id in ready {
            if let Ok(task) = self.tasks.by_id_mut(id) {
                task.restart_pending = false;
            }
            self.start_run(id);
        }
    }

    /// Starts a new run of a task: its counters from zero, a fresh dedup, its seeds queued.
    pub(super) fn start_run(&mut self, id: u64) {
        self.begin_run(id, None);
    }

    /// Starts a run of a task: its counters from zero and a fresh dedup. `shared` is the run
    /// of a shared crawl this engine takes part in, numbered by the crawl, whose seeds the
    /// leader queued with its tick; `None` starts a run of this engine's own and queues its
    /// seeds.
    pub(super) fn begin_run(&mut self, id: u64, shared: Option<u64>) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        let run = task.runs_started + 1;
        let ended_scope = task.salt;
        task.salt = match shared {
            // Every engine of the crawl derives the same dedup from the run's number.
            Some(number) => {
                task.run_seq = number;
                crate::tasks::record::run_salt(&task.def.name, number)
            }
            // A salt no earlier run of the task used, in this process or before it: the
            // run's dedup starts empty.
            None => {
                let nonce = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                common::fingerprint(&format!("task:{}:run:{run}:{nonce}", task.def.name))
            }
        };
        task.state = TaskState::Running;
        task.budget_spent = false;
        task.pages_ok = 0;
        task.pages_failed = 0;
        task.pages_redirected = 0;
        task.skipped = 0;
        task.items = 0;
        task.kill = tokio_util::sync::CancellationToken::new();
        task.started = Instant::now();
        let def = task.def.clone();
        info!(id, task = %def.name, run = shared.unwrap_or(run), "scheduled run started");
        self.record_run_start(id);
        // The run before has ended: nothing is offered in its scope any more.
        let forgotten = self.frontier.forget(ended_scope);
        debug!(task = %def.name, forgotten, "the last run's seen URLs forgotten");
        self.journal.record(super::Pending::Forget(ended_scope));
        self.record_task(id);
        if shared.is_none() {
            self.push_seeds(&def, Instant::now());
        }
        if let Ok(task) = self.tasks.by_id_mut(id) {
            task.settle();
        }
    }

    /// Closes a scheduled task for good: it runs no more, and is forgotten by the history store.
    pub(super) fn unschedule(&mut self, id: u64) -> Result<(), TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        task.next_tick = None;
        task.restart_pending = false;
        if task.def.schedule.take().is_some() {
            let name = task.def.name.clone();
            if let Some(history) = &self.handle.history
                && let Err(e) = history.drop_schedule(&name)
            {
                warn!(task = %name, cause = %e, "could not forget the task's schedule");
            }
        }
        Ok(())
    }

    /// Takes up the scheduled tasks an earlier engine kept (added through the API), when
    /// this engine serves (`--serve`) as that one did.
    pub(super) async fn restore_schedules(&mut self) {
        let Some(history) = self.handle.history.clone() else {
            return;
        };
        // A shared crawl keeps its tasks in Redis.
        if !self.config.serve || self.frontier.shares_tasks() {
            return;
        }
        let kept = match history.schedules() {
            Ok(kept) => kept,
            Err(e) => {
                warn!(cause = %e, "could not read the kept schedules");
                return;
            }
        };
        for (name, json) in kept {
            if self.tasks.index(&name).is_some() {
                continue;
            }
            let def = serde_json::from_str::<crate::tasks::record::TaskSpec>(&json)
                .map_err(crate::tasks::RecordError::from)
                .and_then(|spec| spec.to_def());
            match def {
                Ok(def) => {
                    let requirement = match &def.spider {
                        Some(run) => crate::pool::Requirement::Spider(run.source.clone()),
                        None => crate::pool::Requirement::Parser(def.parser.clone()),
                    };
                    if let Err(why) = self.pool.control().require(requirement).await {
                        warn!(task = %name, %why, "no worker can run a kept schedule yet");
                    }
                    if let Err(e) = self.add_task(def) {
                        warn!(task = %name, cause = %e, "could not take up a kept schedule");
                    }
                }
                Err(why) => warn!(task = %name, %why, "a kept schedule is unreadable"),
            }
        }
    }
}
