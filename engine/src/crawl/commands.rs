//! What the crawl does with an operator's commands: add, pause, resume and close tasks.

use super::Crawl;
use crate::control::Command;
use crate::tasks::{TaskDef, TaskError, TaskState, TaskView};
use tokio::time::Instant;
use tracing::info;

impl Crawl {
    /// Carries out a command and answers it.
    pub(super) fn command(&mut self, command: Command) {
        let (reply, result) = match command {
            Command::AddTask(def, reply) => (reply, self.add_task(*def)),
            Command::PauseTask(id, reply) => (reply, self.pause_task(id)),
            Command::ResumeTask(id, reply) => (reply, self.resume_task(id)),
            Command::CloseTask(id, reply) => (reply, self.close_task(id)),
        };
        // The asker may have gone away (a closed HTTP connection); the command stands.
        let _ = reply.send(result);
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
        if seed {
            self.push_seeds(&def, Instant::now());
        }
        let task = self.tasks.by_id_mut(id)?;
        task.settle();
        info!(id, task = %def.name, seeds = def.seeds.len(), "task started");
        Ok(task.view())
    }

    fn pause_task(&mut self, id: u64) -> Result<TaskView, TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        match task.state {
            // Capped: nothing of it will be sent again; pausing changes nothing.
            TaskState::Capped => Ok(task.view()),
            TaskState::Running | TaskState::Paused => {
                task.state = TaskState::Paused;
                info!(id, task = %task.def.name, "task paused");
                Ok(task.view())
            }
            state => Err(TaskError::Finished {
                id,
                state,
                action: "paused",
            }),
        }
    }

    fn resume_task(&mut self, id: u64) -> Result<TaskView, TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        match task.state {
            TaskState::Paused => {
                task.state = TaskState::Running;
                task.settle();
                let name = task.def.name.clone();
                info!(id, task = %name, "task resumed");
                self.frontier.unpark(&name, Instant::now());
                Ok(self.tasks.by_id_mut(id)?.view())
            }
            TaskState::Running | TaskState::Capped => Ok(task.view()),
            state => Err(TaskError::Finished {
                id,
                state,
                action: "resumed",
            }),
        }
    }

    fn close_task(&mut self, id: u64) -> Result<TaskView, TaskError> {
        let task = self.tasks.by_id_mut(id)?;
        task.state = TaskState::Closed;
        let name = task.def.name.clone();
        info!(id, task = %name, "task closed: its queued requests are dropped");
        // Parked requests go now; queued ones as their turn comes (see `Hold::Drop`).
        for d in self.frontier.drop_parked(&name) {
            let reason = "task_closed";
            self.tally(&name, super::tally::Outcome::Skipped { reason });
            self.finished(&d);
        }
        Ok(self.tasks.by_id_mut(id)?.view())
    }
}
