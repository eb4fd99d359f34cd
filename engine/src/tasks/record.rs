//! A task's record, as it is kept (in a single engine's state and run history, and in a shared
//! crawl's Redis), and a shared crawl's task changes: the leader records each task added
//! through the admin API and each change of a task's state, and every engine takes them up
//! on its next tick, in the order they were added, so that task ids agree across engines.

use crate::config::SpiderRun;
use crate::tasks::{RecordError, TaskDef, TaskState};
use serde::{Deserialize, Serialize};

/// A task as stored in Redis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    name: String,
    seeds: Vec<String>,
    parser: String,
    spider: Option<String>,
    max_pages: Option<u64>,
    max_depth: Option<u32>,
    allow_domains: Vec<String>,
    /// Seconds a run may take (records from before deadlines have none).
    #[serde(default)]
    timeout_secs: Option<u64>,
    /// Its schedule, if it recurs.
    #[serde(default)]
    schedule: Option<crate::schedule::ScheduleSpec>,
    /// Whether every page is rendered (records from before rendering have none).
    #[serde(default)]
    render: bool,
}

impl TaskSpec {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The record of a task.
    pub fn from_def(def: &TaskDef) -> TaskSpec {
        TaskSpec {
            name: def.name.clone(),
            seeds: def.seeds.iter().map(|u| u.to_string()).collect(),
            parser: def.parser.clone(),
            spider: def.spider.as_ref().map(|s| s.source.clone()),
            max_pages: def.max_pages,
            max_depth: def.max_depth,
            allow_domains: def.allow_domains.clone(),
            timeout_secs: def.timeout.map(|t| t.as_secs()),
            schedule: def.schedule.as_ref().map(|s| s.spec.clone()),
            render: def.render,
        }
    }

    /// The task again (its spider compiled); why not, when the record is unusable.
    pub fn to_def(&self) -> Result<TaskDef, RecordError> {
        let seeds = self
            .seeds
            .iter()
            .map(|s| crate::parse_seed(s).map_err(|e| RecordError::Seed(e.to_string())))
            .collect::<Result<_, _>>()?;
        let spider = match &self.spider {
            None => None,
            Some(source) => Some(SpiderRun::compile("a task's spider", source.clone())?.0),
        };
        Ok(TaskDef {
            name: self.name.clone(),
            seeds,
            parser: self.parser.clone(),
            spider,
            max_pages: self.max_pages,
            max_depth: self.max_depth,
            allow_domains: self.allow_domains.clone(),
            render: self.render,
            timeout: self
                .timeout_secs
                .map(crate::tasks::task_timeout)
                .transpose()
                .map_err(RecordError::Timeout)?,
            schedule: self
                .schedule
                .clone()
                .map(crate::schedule::Schedule::new)
                .transpose()?,
        })
    }
}

/// A task change to record for every engine.
#[derive(Clone, Debug)]
pub enum TaskChange {
    /// A task was added (its JSON record).
    Added(String),
    /// A task's state changed, in its run (0 for a task without a schedule).
    State(String, TaskState, u64),
}

/// The key a scheduled run's open pages are counted under in Redis (`RUN:TASK`); empty for
/// run 0, a task without a schedule, whose pages are not counted.
pub fn run_key(task: &str, run: u64) -> String {
    if run == 0 {
        String::new()
    } else {
        format!("{run}:{task}")
    }
}

/// The dedup salt of run `run` of `task` in a shared crawl: every engine derives the same
/// one from the run's number, which Redis hands out once per crawl.
pub fn run_salt(task: &str, run: u64) -> u64 {
    common::fingerprint(&format!("task:{task}:run:{run}"))
}

/// A task's state as stored: `STATE#RUN` for a scheduled task's run, the state alone
/// otherwise.
pub fn state_value(state: TaskState, run: u64) -> String {
    if run == 0 {
        state_name(state).to_owned()
    } else {
        format!("{}#{run}", state_name(state))
    }
}

/// A stored state and run read back.
pub fn parse_state_value(value: &str) -> Option<(TaskState, u64)> {
    match value.split_once('#') {
        Some((state, run)) => Some((parse_state(state)?, run.parse().ok()?)),
        None => Some((parse_state(value)?, 0)),
    }
}

/// The name of a state as stored.
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "running",
        TaskState::Paused => "paused",
        TaskState::Closed => "closed",
        TaskState::Capped => "capped",
        TaskState::Done => "done",
        TaskState::Stopped => "stopped",
        TaskState::Killed => "killed",
        TaskState::Timeout => "timeout",
        TaskState::Waiting => "waiting",
    }
}

/// A stored state name read back.
pub fn parse_state(name: &str) -> Option<TaskState> {
    Some(match name {
        "running" => TaskState::Running,
        "paused" => TaskState::Paused,
        "closed" => TaskState::Closed,
        "capped" => TaskState::Capped,
        "done" => TaskState::Done,
        "stopped" => TaskState::Stopped,
        "killed" => TaskState::Killed,
        "timeout" => TaskState::Timeout,
        "waiting" => TaskState::Waiting,
        _ => return None,
    })
}

/// What changed in the crawl's tasks since an engine last looked.
#[derive(Debug, Default)]
pub struct TaskNews {
    /// Tasks added, in order.
    pub added: Vec<TaskDef>,
    /// Every task's state an operator (or, for a scheduled task, the leader) set, by
    /// name, with its run.
    pub states: Vec<(String, TaskState, u64)>,
    /// Scheduled runs that ended when a newer run replaced them: task, state, run.
    pub run_ends: Vec<(String, TaskState, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_runs_survive_the_round_trip() {
        for (state, run) in [(TaskState::Running, 0), (TaskState::Done, 7)] {
            assert_eq!(
                parse_state_value(&state_value(state, run)),
                Some((state, run))
            );
        }
        assert_eq!(state_value(TaskState::Stopped, 3), "stopped#3");
        assert_eq!(parse_state_value("bogus#1"), None);
        assert_eq!(parse_state_value("done#x"), None);
        assert_eq!(run_key("t", 0), "");
        assert_eq!(run_key("a:b", 2), "2:a:b");
        assert_ne!(run_salt("t", 1), run_salt("t", 2));
    }
}
