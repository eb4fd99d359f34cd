//! Scheduled tasks in a shared crawl. Only the leader fires a tick, and each tick once: Redis
//! keeps each task's last tick fired and its current run (see `tick.lua`), so a leader that
//! takes over fires a tick its predecessor did not, and never one it did. Every engine takes
//! part in a run it reads of in the task news; each queued request carries its run, so a
//! request of a run that ended is dropped and one of a run not read of yet waits. A run ends
//! for every engine when the leader finds nothing of it queued, leased or deferred in Redis
//! (`runs.lua`).

use super::Crawl;
use super::schedules::MISSED_TICKS_COUNTED;
use crate::frontier::{Frontier, Tick};
use crate::tasks::TaskState;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How late a new leader still fires a tick that no engine fired (its predecessor died just
/// before it, and a new leader is elected within the leader lease's 10 s): older ticks were
/// missed while the whole crawl was down, and are skipped and counted, not caught up.
const LATE_TICK_GRACE: Duration = Duration::from_secs(60);

impl<F: Frontier> Crawl<F> {
    /// Fires the due ticks of a shared crawl's scheduled tasks when this engine leads; an
    /// engine that follows only moves its next ticks on (the leader fires them).
    pub(super) async fn fire_shared_ticks(&mut self) {
        let now = self.clock.now();
        let due = self.due_tasks(now);
        let leads = self.frontier.leads();
        for id in due {
            let Ok(task) = self.tasks.by_id_mut(id) else {
                continue;
            };
            let (Some(schedule), Some(due_at)) = (task.def.schedule.clone(), task.next_tick) else {
                task.next_tick = None;
                continue;
            };
            task.next_tick = schedule.next_after(now);
            if !leads {
                continue;
            }
            let grace = chrono::Duration::from_std(LATE_TICK_GRACE).unwrap_or_default();
            if now - due_at > grace {
                // Counted as missed when the next tick is fired.
                continue;
            }
            self.fire_shared_tick(id, due_at).await;
        }
    }

    /// Fires tick `due_at` of task `id` in Redis and takes part in the run it starts.
    async fn fire_shared_tick(&mut self, id: u64, due_at: DateTime<Utc>) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        let Some(schedule) = task.def.schedule.clone() else {
            return;
        };
        let (def, name) = (task.def.clone(), task.def.name.clone());
        let overlap = schedule.spec.overlap;
        let fired = self
            .frontier
            .fire_tick(&def, due_at.timestamp(), overlap)
            .await;
        let (tick, last, run) = match fired {
            Ok(fired) => fired,
            Err(e) => {
                // Not fired: counted as missed when the next tick is.
                warn!(task = %name, cause = %e, "could not fire a scheduled tick");
                return;
            }
        };
        // Ticks between the last one fired and this one went unfired (no engine led, or
        // the crawl was down).
        let missed = last
            .and_then(|at| DateTime::<Utc>::from_timestamp(at, 0))
            .map_or(0, |last| {
                schedule
                    .ticks_between(last, due_at, MISSED_TICKS_COUNTED)
                    .saturating_sub(1)
            });
        if missed > 0 {
            self.record_skipped(id, missed, "tick(s) passed with no engine to fire them");
        }
        match tick {
            Tick::Started => self.take_part(id, run, TaskState::Done),
            Tick::Replaced => self.take_part(id, run, TaskState::Stopped),
            Tick::Skipped => self.record_skipped(id, 1, "the previous run was still going"),
            Tick::Closed => {
                if let Ok(task) = self.tasks.by_id_mut(id) {
                    task.next_tick = None;
                }
            }
            Tick::FiredBefore | Tick::NotLeader | Tick::RunMoved => {
                debug!(task = %name, ?tick, "a scheduled tick was not fired here");
            }
        }
    }

    /// This engine takes part in run `run` of task `id`: its part of an older run still
    /// open here ends first (as `old_end` says, unless it ended otherwise already), then the
    /// new run starts with its counters from zero and the run's dedup (its seeds came with
    /// the tick).
    pub(super) fn take_part(&mut self, id: u64, run: u64, old_end: TaskState) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        if run <= task.run_seq || task.state == TaskState::Closed {
            return;
        }
        self.end_part(id, old_end);
        self.begin_run(id, Some(run));
    }

    /// Ends this engine's part of task `id`'s run going, recorded now with its figures so
    /// far. How it ended is `how`, unless it ended otherwise already; with pages of it still
    /// in flight it cannot have been done (Redis counted them open): it was stopped. Those
    /// pages end uncounted in the next run (see `Crawl::tally_of`).
    fn end_part(&mut self, id: u64, how: TaskState) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        if !task.run_open {
            return;
        }
        if !task.state.ended() {
            task.state = if task.in_flight > 0 {
                TaskState::Stopped
            } else {
                how
            };
        }
        let status = task
            .state
            .run_status()
            .unwrap_or(crate::history::RunStatus::Done);
        if task.state == TaskState::Killed {
            task.killed_run = Some(task.run_seq);
        }
        task.in_flight = 0;
        self.end_run(id, status, None);
    }

    /// Takes up a state the leader recorded for run `run` of task `id`, newer than the run
    /// this engine knows: a run going is joined; one that already ended is only noted.
    pub(super) fn newer_run(&mut self, id: u64, state: TaskState, run: u64) {
        match state {
            TaskState::Running | TaskState::Paused | TaskState::Capped => {
                self.take_part(id, run, TaskState::Done);
                if state == TaskState::Paused
                    && let Ok(task) = self.tasks.by_id_mut(id)
                    && task.run_seq == run
                {
                    task.state = TaskState::Paused;
                }
            }
            ended => {
                // This engine missed the run: its own part of the one before ends.
                self.end_part(id, TaskState::Done);
                let Ok(task) = self.tasks.by_id_mut(id) else {
                    return;
                };
                task.run_seq = run;
                if ended == TaskState::Closed {
                    if let Err(e) = self.end_task(id, TaskState::Closed) {
                        debug!(id, cause = %e, "a closed task's run did not close here");
                    }
                } else if task.state != TaskState::Closed {
                    task.state = TaskState::Waiting;
                }
            }
        }
    }

    /// The leader's care of the shared crawl's runs, on every cluster tick: once it starts
    /// leading, it reads the ticks fired before it; then it ends the runs that have nothing
    /// open any more, for every engine.
    pub(super) async fn look_after_shared_runs(&mut self) {
        if !self.frontier.leads() {
            self.ticks_synced = false;
            return;
        }
        if !self.ticks_synced {
            self.sync_ticks().await;
        }
        let runs: Vec<String> = self
            .tasks
            .iter()
            // Whatever this engine's part of the run (it may have ended early, at the
            // task's page cap): the script ends only a run Redis has running with nothing
            // open.
            .filter(|t| t.run_seq > 0 && t.state != TaskState::Closed)
            .map(|t| t.def.name.clone())
            .collect();
        if runs.is_empty() {
            return;
        }
        match self.frontier.end_runs(&runs).await {
            Ok(Some(ended)) if ended > 0 => {
                info!(ended, "scheduled runs ended: nothing of them is left")
            }
            Ok(_) => {}
            Err(e) => debug!(cause = %e, "could not check the scheduled runs for their end"),
        }
    }

    /// Reads, for each scheduled task, the last tick fired (by an earlier leader): the next
    /// tick is the one after it, so a tick its predecessor did not fire is fired now.
    async fn sync_ticks(&mut self) {
        let scheduled: Vec<(u64, String)> = self
            .tasks
            .iter()
            .filter(|t| t.next_tick.is_some())
            .map(|t| (t.id, t.def.name.clone()))
            .collect();
        for (id, name) in scheduled {
            let last = match self.frontier.last_tick(&name).await {
                Ok(last) => last,
                Err(e) => {
                    debug!(task = %name, cause = %e, "could not read the last tick fired");
                    return;
                }
            };
            let last = last.and_then(|at| DateTime::<Utc>::from_timestamp(at, 0));
            if let (Some(last), Ok(task)) = (last, self.tasks.by_id_mut(id))
                && let Some(schedule) = &task.def.schedule
            {
                task.next_tick = schedule.next_after(last);
            }
        }
        self.ticks_synced = true;
    }
}
