//! An operator's change of a shared crawl's tasks: checked against this engine's tasks,
//! recorded in Redis by the leader (fenced by its epoch, with the answer to its idempotency
//! key in the same step), and only then applied here. A change Redis refused is applied
//! nowhere; one whose fate is unknown is applied by every engine from the task news if it
//! landed, and its answer waits under its key for the operator's retry.

use super::Crawl;
use crate::control::{Reply, TaskCommand};
use crate::frontier::{Frontier, Recorded, TaskFence};
use crate::tasks::record::{TaskChange, TaskSpec};
use crate::tasks::{TaskAction, TaskDef, TaskError, TaskView};
use tracing::{info, warn};

/// How often a change is checked again when the leader had not read every task yet.
const MOVED_RETRIES: usize = 3;

/// How long the answer to a change sent without an idempotency key is kept: only this
/// engine's own retries of it read it.
const OWN_KEY_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// An operator's change waiting to be recorded in Redis.
#[derive(Debug)]
pub(super) struct Proposal {
    what: TaskCommand,
    key: Option<String>,
    reply: Reply,
}

/// The operators' changes of one turn, and the answers held until the turn's changes are
/// recorded.
#[derive(Debug, Default)]
pub(super) struct Proposals {
    waiting: Vec<Proposal>,
    answers: Vec<(Reply, Result<TaskView, TaskError>)>,
}

impl Proposals {
    /// Sends the answers held: the turn's changes are recorded.
    pub(super) fn answer_all(&mut self) {
        for (reply, result) in self.answers.drain(..) {
            // The asker may have gone away (a closed HTTP connection); the change stands.
            let _ = reply.send(result);
        }
    }
}

/// A change checked and ready to record: what goes to Redis, and what is applied here after.
struct Checked {
    change: TaskChange,
    /// A new task's seeds, as its definition and dedup salt.
    seeds: Option<(TaskDef, u64)>,
    answer: Vec<u8>,
    apply: Apply,
}

/// What is applied here once the change is recorded.
enum Apply {
    Add(Box<TaskDef>),
    Action(u64, TaskAction),
}

/// The answer kept under an idempotency key: the HTTP status in two bytes, then the body.
fn answer(status: u16, view: &TaskView) -> Vec<u8> {
    let mut bytes = status.to_be_bytes().to_vec();
    bytes.extend(serde_json::to_vec(view).unwrap_or_default());
    bytes
}

impl<F: Frontier> Crawl<F> {
    /// Takes an operator's command in a shared crawl: refused at once when it cannot apply,
    /// recorded with the turn otherwise (see [`Crawl::record_proposals`]).
    pub(super) fn propose(&mut self, what: TaskCommand, key: Option<String>, reply: Reply) {
        if let Err(e) = self.check(&what) {
            let _ = reply.send(Err(e));
            return;
        }
        self.proposals.waiting.push(Proposal { what, key, reply });
    }

    /// What `what` records and applies, or why it is refused; changes nothing.
    fn check(&mut self, what: &TaskCommand) -> Result<Checked, TaskError> {
        if self.stopping {
            return Err(TaskError::Stopped);
        }
        match what {
            TaskCommand::Add(def) => {
                let task = self.tasks.preview_add((**def).clone())?;
                let spec = serde_json::to_string(&TaskSpec::from_def(&task.def))
                    .map_err(|e| TaskError::Invalid(e.to_string()))?;
                // A scheduled task's seeds are queued at its ticks.
                let seeds = match &task.def.schedule {
                    Some(_) => None,
                    None => Some((task.def.clone(), task.salt)),
                };
                Ok(Checked {
                    change: TaskChange::Added(spec),
                    seeds,
                    answer: answer(201, &task.view()),
                    apply: Apply::Add(Box::new(task.def)),
                })
            }
            TaskCommand::Change(id, action) => {
                let task = self.tasks.by_id_mut(*id)?;
                let state = task.next_state(*action)?;
                let mut view = task.view();
                view.state = state;
                Ok(Checked {
                    change: TaskChange::State(task.def.name.clone(), state, task.run_seq),
                    seeds: None,
                    answer: answer(200, &view),
                    apply: Apply::Action(*id, *action),
                })
            }
        }
    }

    /// Records the operators' changes taken this turn, each fenced by the leader's epoch, and
    /// applies those recorded; their answers go out with the turn's.
    pub(super) async fn record_proposals(&mut self) {
        for proposal in std::mem::take(&mut self.proposals.waiting) {
            let result = self.record_proposal(&proposal).await;
            self.proposals.answers.push((proposal.reply, result));
        }
    }

    async fn record_proposal(&mut self, proposal: &Proposal) -> Result<TaskView, TaskError> {
        // A change sent without an idempotency key gets one of its own, so that the retries
        // of `record_change` after a reply lost never record it twice.
        let (key, keep) = match &proposal.key {
            Some(key) => (key.clone(), crate::admin::KEEP_ANSWERS),
            None => (self.own_key(), OWN_KEY_KEPT),
        };
        for _ in 0..MOVED_RETRIES {
            // Checked again: the news read since may have changed the task.
            let checked = self.check(&proposal.what)?;
            let tasks = self.frontier.tasks_read();
            let fence = TaskFence {
                key: Some(&key),
                answer: &checked.answer,
                keep,
                tasks: matches!(checked.apply, Apply::Add(_)).then_some(tasks),
            };
            let seeds_of = checked.seeds.as_ref().map(|(def, salt)| (def, *salt));
            let recorded = self
                .frontier
                .record_change(&checked.change, seeds_of, &fence)
                .await
                .map_err(|e| {
                    warn!(cause = %e, "an operator's change may or may not be recorded: nothing applied here");
                    TaskError::Unsure(e.to_string())
                })?;
            match recorded {
                Recorded::Now => return self.apply(checked.apply),
                Recorded::Before => {
                    // Recorded by an earlier attempt under the same key: the news brings it
                    // here (this attempt's check may differ: an unnamed task's name), and the
                    // answer kept under the key is the asker's.
                    self.read_news_now().await;
                    return self.view_of(&checked.apply);
                }
                Recorded::Stale => {
                    return Err(TaskError::NotShared(
                        "this engine no longer leads the crawl".into(),
                    ));
                }
                // A new leader that has not read every task yet: read them, check again.
                Recorded::Moved => self.read_news_now().await,
            }
        }
        Err(TaskError::NotShared(
            "the crawl's tasks kept changing meanwhile".into(),
        ))
    }

    /// Takes up the task news now, whatever the last tick read of their version.
    async fn read_news_now(&mut self) {
        self.frontier.news_due();
        self.take_task_news().await;
    }

    /// The task a change is about, as it is here now.
    fn view_of(&mut self, apply: &Apply) -> Result<TaskView, TaskError> {
        match apply {
            Apply::Add(def) => self
                .tasks
                .named(&def.name)
                .map(|t| t.view())
                // An unnamed task's earlier attempt named it otherwise: its kept answer
                // stands (see `admin::cluster::keep_answer`).
                .ok_or_else(|| TaskError::Duplicate(def.name.clone())),
            Apply::Action(id, _) => Ok(self.tasks.by_id_mut(*id)?.view()),
        }
    }

    /// An idempotency key of this engine's own, for a change sent without one.
    fn own_key(&mut self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.frontier
            .idempotency_key(&format!("own-{}-{nanos}", std::process::id()))
    }

    /// Applies a change recorded in Redis (the task news brings it to the other engines).
    fn apply(&mut self, apply: Apply) -> Result<TaskView, TaskError> {
        match apply {
            Apply::Add(def) => {
                let name = def.name.clone();
                match self.add_task_seeded(*def, false) {
                    Err(TaskError::Duplicate(_)) => {
                        // Taken up from the news already (a retry of a change that landed).
                        let task = self.tasks.named(&name).ok_or(TaskError::Stopped)?;
                        Ok(task.view())
                    }
                    other => other,
                }
            }
            Apply::Action(id, action) => {
                let view = self.apply_action(id, action)?;
                info!(id, task = %view.name, state = ?view.state, "task change recorded for every engine");
                Ok(view)
            }
        }
    }
}
