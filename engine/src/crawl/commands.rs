//! What the crawl does with an operator's commands: add, pause, resume and close tasks.

use super::Crawl;
use crate::control::{Command, TaskCommand};
use crate::frontier::Frontier;
use crate::pool::Requirement;
use crate::tasks::record::TaskChange;
use crate::tasks::{TaskAction, TaskDef, TaskError, TaskState, TaskView};
use tokio::time::Instant;
use tracing::{debug, info, warn};

impl<F: Frontier> Crawl<F> {
    /// Carries out a command and answers it. In a shared crawl the change is recorded in
    /// Redis first and applied after (see `proposals`).
    pub(super) fn command(&mut self, command: Command) {
        let Command { what, key, reply } = command;
        if self.frontier.shares_tasks() {
            return self.propose(what, key, reply);
        }
        let result = match what {
            TaskCommand::Add(def) => {
                let added = self.add_task(*def);
                if let Ok(view) = &added {
                    self.keep_schedule(view.id);
                }
                added
            }
            TaskCommand::Change(id, action) => self.apply_action(id, action),
        };
        // The asker may have gone away (a closed HTTP connection); the command stands.
        let _ = reply.send(result);
    }

    /// Pauses, resumes or ends task `id` here.
    pub(super) fn apply_action(
        &mut self,
        id: u64,
        action: TaskAction,
    ) -> Result<TaskView, TaskError> {
        match action {
            TaskAction::Pause => self.pause_task(id),
            TaskAction::Resume => self.resume_task(id),
            TaskAction::End(how) => self.end_task(id, how),
        }
    }

    /// Records the leader's own change of a task's state (a run's deadline) for the other
    /// engines of a shared crawl.
    fn share_task_state(&mut self, view: &TaskView) {
        let run = self.tasks.named(&view.name).map_or(0, |t| t.run_seq);
        let change = TaskChange::State(view.name.clone(), view.state, run);
        self.frontier.task_changed(change);
    }

    /// Takes up the task changes the leader recorded: new tasks (in order, so ids agree) and
    /// states set by an operator.
    pub(super) async fn take_task_news(&mut self) {
        let Some(news) = self.frontier.task_news().await else {
            return;
        };
        for def in news.added {
            if self.tasks.index(&def.name).is_some() {
                continue;
            }
            let requirement = match &def.spider {
                Some(run) => Requirement::Spider(run.source.clone()),
                None => Requirement::Parser(def.parser.clone()),
            };
            if let Err(why) = self.pool.control().require(requirement).await {
                warn!(task = %def.name, %why, "no worker can run the crawl's new task yet");
            }
            if let Err(e) = self.add_task_seeded(def, false) {
                warn!(cause = %e, "could not take up the crawl's new task");
            }
        }
        for (name, state, run) in news.run_ends {
            // A run replaced by a newer one: stopped, its requests in flight finish.
            let Some(task) = self.tasks.named(&name) else {
                continue;
            };
            if task.run_seq == run && task.run_open && !task.state.ended() {
                let id = task.id;
                if let Err(e) = self.end_task(id, state) {
                    debug!(task = %name, cause = %e, "a replaced run did not end here");
                }
            }
        }
        for (name, state, run) in news.states {
            let Some(task) = self.tasks.named(&name) else {
                continue;
            };
            let id = task.id;
            if run > task.run_seq {
                self.newer_run(id, state, run);
                continue;
            }
            if run < task.run_seq {
                continue;
            }
            if run > 0
                && state == TaskState::Done
                && matches!(
                    task.state,
                    TaskState::Running | TaskState::Paused | TaskState::Capped
                )
            {
                // The leader found nothing of the run left in the crawl.
                if let Ok(task) = self.tasks.by_id_mut(id) {
                    task.state = TaskState::Done;
                }
                continue;
            }
            let changed = match (task.state, state) {
                (now, wanted) if now == wanted => continue,
                (_, TaskState::Paused) => self.pause_task(id),
                (TaskState::Paused, TaskState::Running) => self.resume_task(id),
                (_, wanted) if wanted.ended() => self.end_task(id, wanted),
                _ => continue,
            };
            if let Err(e) = changed {
                debug!(task = %name, cause = %e, "a task change did not apply here");
            }
        }
    }

    /// Adds a task and queues its seeds. The engine's own task is added the same way.
    pub(super) fn add_task(&mut self, def: TaskDef) -> Result<TaskView, TaskError> {
        self.add_task_seeded(def, true)
    }

    /// Adds a task, queuing its seeds when `seed` says so (in a shared crawl, the leader
    /// seeds the crawl's own task, once).
    pub(super) fn add_task_seeded(
        &mut self,
        def: TaskDef,
        seed: bool,
    ) -> Result<TaskView, TaskError> {
        if self.stopping {
            return Err(TaskError::Stopped);
        }
        let id = self.tasks.add(def)?;
        let def = self.tasks.by_id_mut(id)?.def.clone();
        if def.schedule.is_some() {
            // It runs at its ticks, not now.
            self.schedule_task(id);
            self.record_task(id);
            return Ok(self.tasks.by_id_mut(id)?.view());
        }
        self.record_task(id);
        if seed {
            self.push_seeds(&def, Instant::now());
        }
        self.record_run_start(id);
        let task = self.tasks.by_id_mut(id)?;
        task.settle();
        info!(id, task = %def.name, seeds = def.seeds.len(), "task started");
        Ok(task.view())
    }

    fn pause_task(&mut self, id: u64) -> Result<TaskView, TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        let next = task.next_state(TaskAction::Pause)?;
        if next == TaskState::Paused {
            task.state = TaskState::Paused;
            info!(id, task = %task.def.name, "task paused");
            self.record_task(id);
        }
        Ok(self.tasks.by_id_mut(id)?.view())
    }

    fn resume_task(&mut self, id: u64) -> Result<TaskView, TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        let was = task.state;
        let next = task.next_state(TaskAction::Resume)?;
        if was == TaskState::Paused && next == TaskState::Running {
            task.state = TaskState::Running;
            task.settle();
            let name = task.def.name.clone();
            info!(id, task = %name, "task resumed");
            self.frontier.unpark(&name, Instant::now());
            self.record_task(id);
        }
        Ok(self.tasks.by_id_mut(id)?.view())
    }

    /// Ends a task as `how` says: closed or stopped (its requests in flight finish and are
    /// saved), killed (they are cancelled at once), or timed out (stopped by its deadline).
    /// Its queued requests are dropped, never requeued.
    pub(super) fn end_task(&mut self, id: u64, how: TaskState) -> Result<TaskView, TaskError> {
        if how == TaskState::Closed {
            self.unschedule(id)?;
        }
        let task = self.tasks.by_id_mut(id)?;
        task.next_state(TaskAction::End(how))?;
        task.state = how;
        if how == TaskState::Killed {
            task.kill.cancel();
        }
        let name = task.def.name.clone();
        let in_flight = task.in_flight;
        match how {
            TaskState::Closed => {
                info!(id, task = %name, "task closed: its queued requests are dropped")
            }
            TaskState::Killed => {
                info!(id, task = %name, in_flight, "task killed: its requests in flight are cancelled")
            }
            TaskState::Timeout => {
                info!(id, task = %name, in_flight, "task ran past its deadline: stopped, its requests in flight finish")
            }
            _ => info!(id, task = %name, in_flight, "task stopped: its requests in flight finish"),
        }
        self.record_task(id);
        // Parked requests go now; queued ones as their turn comes (see `Hold::Drop`).
        let reason = how.drop_reason();
        for d in self.frontier.drop_parked(&name) {
            self.tally(&name, super::tally::Outcome::Skipped { reason });
            self.finished(&d);
        }
        Ok(self.tasks.by_id_mut(id)?.view())
    }

    /// Keeps a scheduled task added through the API in the history store, for a restarted
    /// engine.
    fn keep_schedule(&mut self, id: u64) {
        if self.frontier.shares_tasks() {
            // A shared crawl keeps its tasks with its frontier.
            return;
        }
        let (Some(history), Ok(task)) = (self.handle.history.clone(), self.tasks.by_id_mut(id))
        else {
            return;
        };
        if task.def.schedule.is_none() {
            return;
        }
        let spec = crate::tasks::record::TaskSpec::from_def(&task.def);
        let json = serde_json::to_string(&spec).unwrap_or_default();
        if let Err(e) = history.keep_schedule(&task.def.name, &json) {
            warn!(task = %task.def.name, cause = %e, "could not keep the task's schedule");
        }
    }

    /// Stops every running task past its deadline (status `timeout`).
    pub(super) fn enforce_deadlines(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .tasks
            .iter()
            .filter(|t| {
                t.run_open
                    && matches!(
                        t.state,
                        TaskState::Running | TaskState::Paused | TaskState::Capped
                    )
            })
            .filter(|t| {
                t.def
                    .timeout
                    .and_then(|limit| t.started.checked_add(limit))
                    .is_some_and(|deadline| now >= deadline)
            })
            .map(|t| t.id)
            .collect();
        let leading = self.frontier.leads();
        for id in late {
            match self.end_task(id, TaskState::Timeout) {
                // The leader's deadline is the crawl's: every engine stops the run (a
                // frontier that shares no task records nothing).
                Ok(view) if leading => self.share_task_state(&view),
                Ok(_) => {}
                Err(e) => debug!(id, cause = %e, "a task's deadline did not apply"),
            }
        }
    }
}
