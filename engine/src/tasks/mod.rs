//! Crawl tasks: a seed set plus a parser or spider and its limits. The engine runs the task
//! its flags describe, and the admin API adds, pauses, resumes and closes more while it runs.

use crate::config::{EngineConfig, SpiderRun};
use crate::scope::Scope;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use url::Url;

/// The longest `timeout_secs` a task may have: a year.
pub const MAX_TIMEOUT_SECS: u64 = 31_536_000;

/// A task's `timeout_secs` out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timeout_secs = {0}: give 1 to {MAX_TIMEOUT_SECS} seconds")]
pub struct TimeoutOutOfRange(pub u64);

/// A task's `timeout_secs`, checked (1 second to a year).
pub fn task_timeout(secs: u64) -> Result<std::time::Duration, TimeoutOutOfRange> {
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
        Ok(std::time::Duration::from_secs(secs))
    } else {
        Err(TimeoutOutOfRange(secs))
    }
}

/// Why a recorded task (or a shared crawl's settings) cannot be taken up again: written by
/// another version, or damaged.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record is not the JSON this version writes.
    #[error("it does not read: {0}")]
    Json(#[from] serde_json::Error),
    /// A seed is not a URL this version crawls.
    #[error("{0}")]
    Seed(String),
    /// Its spider file does not compile.
    #[error(transparent)]
    Spider(#[from] worker::spider::SpiderError),
    /// Its timeout is out of range.
    #[error(transparent)]
    Timeout(#[from] TimeoutOutOfRange),
    /// Its schedule does not read.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
}

/// What a task is asked to do.
#[derive(Clone, Debug)]
pub struct TaskDef {
    /// The name items are stored under; unique in the engine.
    pub name: String,
    /// Canonical start URLs.
    pub seeds: Vec<Url>,
    /// The built-in parser, when there is no spider.
    pub parser: String,
    /// The spider run instead of `parser`.
    pub spider: Option<SpiderRun>,
    /// Pages fetched for this task at most.
    pub max_pages: Option<u64>,
    /// Deepest link distance from a seed that is fetched.
    pub max_depth: Option<u32>,
    /// Domains the task may crawl; empty means its seeds' hosts.
    pub allow_domains: Vec<String>,
    /// Render every page in a browser (`engine --render`), whatever its rule says.
    pub render: bool,
    /// How long it may run before it is stopped with status `timeout`.
    pub timeout: Option<std::time::Duration>,
    /// When it runs again: each tick starts a new run (none: it runs once, at once).
    pub schedule: Option<crate::schedule::Schedule>,
}

impl TaskDef {
    /// The task the engine's own flags describe.
    pub fn from_config(config: &EngineConfig) -> TaskDef {
        TaskDef {
            name: config.task.clone(),
            seeds: config.seeds.clone(),
            parser: config.parser.clone(),
            spider: config.spider.clone(),
            max_pages: config.max_pages,
            max_depth: config.max_depth,
            allow_domains: config.allow_domains.clone(),
            timeout: config.task_timeout,
            schedule: config.schedule.clone(),
            render: config.render,
        }
    }

    /// How a page for `parser` (a parser, or a rule of the task's spider) is rendered, when
    /// it is: every page when the task renders all, else those of the spider's rules that
    /// say `render = true`.
    pub fn render_of(&self, parser: &str) -> Option<common::RenderRequest> {
        let of_rule = self
            .spider
            .as_ref()
            .and_then(|s| s.renders.get(parser).cloned());
        of_rule.or_else(|| self.render.then(common::RenderRequest::default))
    }

    /// Its seeds with the requests that fetch them.
    pub fn seed_requests(&self) -> impl Iterator<Item = (&Url, common::Request)> {
        let (parser, spider) = self.start();
        self.seeds.iter().map(move |seed| {
            let request = common::Request {
                url: seed.to_string(),
                parser: parser.clone(),
                depth: 0,
                task: self.name.clone(),
                meta: Default::default(),
                spider,
            };
            (seed, request)
        })
    }

    /// The parser (or spider rule) and spider hash its seed requests carry.
    pub fn start(&self) -> (String, Option<u64>) {
        match &self.spider {
            Some(s) => (s.start_rule.clone(), Some(s.hash)),
            None => (self.parser.clone(), None),
        }
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Requests are being sent.
    Running,
    /// Its requests are held until it is resumed; those in flight finish.
    Paused,
    /// Closed by an operator: queued requests dropped, in-flight results still saved.
    Closed,
    /// Reached its `max_pages`; what is left stays queued, unsent.
    Capped,
    /// Nothing of it is left queued or in flight.
    Done,
    /// Stopped by an operator: no new requests, those in flight finished and were saved.
    Stopped,
    /// Killed by an operator: its requests in flight were cancelled, their answers discarded.
    Killed,
    /// Ran past its `timeout_secs` and was stopped as by `stop`.
    Timeout,
    /// A scheduled task between runs, waiting for its next tick.
    Waiting,
}

impl TaskState {
    /// Whether the task was ended by an operator or its deadline: its queued requests are
    /// dropped, and the links of its pages are not scheduled.
    pub fn ended(self) -> bool {
        matches!(
            self,
            TaskState::Closed | TaskState::Stopped | TaskState::Killed | TaskState::Timeout
        )
    }

    /// How a run in this state ended; `None` while it goes on.
    pub fn run_status(self) -> Option<crate::history::RunStatus> {
        use crate::history::RunStatus;
        Some(match self {
            TaskState::Running | TaskState::Paused | TaskState::Waiting => return None,
            TaskState::Done | TaskState::Capped => RunStatus::Done,
            TaskState::Closed | TaskState::Stopped => RunStatus::Stopped,
            TaskState::Killed => RunStatus::Killed,
            TaskState::Timeout => RunStatus::Timeout,
        })
    }

    /// The reason its dropped requests are counted under.
    pub fn drop_reason(self) -> &'static str {
        match self {
            TaskState::Stopped => "task_stopped",
            TaskState::Killed => "task_killed",
            TaskState::Timeout => "task_timeout",
            TaskState::Waiting => "run_ended",
            _ => "task_closed",
        }
    }
}

/// What the frontier does with a task's request when its turn comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Send it.
    Go,
    /// Keep it aside, unsent, until the task resumes.
    Park,
    /// The task's page budget is spoken for: keep it aside, unsent (a shared crawl skips it).
    Cap,
    /// Drop it, counted under this reason.
    Drop(&'static str),
    /// Of a task or scheduled run this engine has not read of yet (a shared crawl): look
    /// again shortly.
    Wait,
}

/// One task and its running figures.
#[derive(Debug)]
pub struct Task {
    /// Its id in the admin API (the engine's own task is 1).
    pub id: u64,
    /// What it was asked to do.
    pub def: TaskDef,
    /// The URLs it may follow.
    pub scope: Scope,
    /// Mixed into URL fingerprints so two tasks may fetch the same URL; 0 for the first task,
    /// whose durable seen set predates tasks.
    pub salt: u64,
    /// Where it is in its life.
    pub state: TaskState,
    /// Requests queued, parked or in flight.
    pub open: u64,
    /// Pages in flight.
    pub in_flight: u64,
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Pages that were redirected elsewhere.
    pub pages_redirected: u64,
    /// Requests not sent (robots.txt, caps, closed).
    pub skipped: u64,
    /// Items extracted and sent to the itemsaver.
    pub items: u64,
    /// Whether its requests are shared with other engines in Redis: it is done when the
    /// shared crawl is, not when this engine's count of its open requests says so.
    pub shared: bool,
    /// In a shared crawl, its requests queued in Redis, as the engine last read them.
    pub shared_queued: u64,
    /// Cancelled when the task is killed: its requests in flight end at once.
    pub kill: tokio_util::sync::CancellationToken,
    /// When it started, for its deadline.
    pub started: tokio::time::Instant,
    /// Whether a run of it is going (started and not yet recorded as ended).
    pub run_open: bool,
    /// Its run's id in the run history, while the run is going and recorded.
    pub run: Option<i64>,
    /// Whether its run began on a shared crawl that was done already (a serving engine
    /// restarted on a finished crawl): a run that then does nothing here is not kept.
    pub run_on_done_crawl: bool,
    /// Its last few runs, newest first, for the dashboard.
    pub recent_runs: Vec<crate::history::RunView>,
    /// A scheduled task's next tick.
    pub next_tick: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a new run starts as soon as the one going ends (`overlap = "replace"`).
    pub restart_pending: bool,
    /// Runs started, for a fresh dedup salt per run.
    pub runs_started: u64,
    /// In a shared crawl, the scheduled run this engine takes part in, numbered by the
    /// crawl (0: none yet, or not shared); its requests carry it.
    pub run_seq: u64,
    /// The last shared run of it that was killed: late answers of its pages are discarded
    /// even after the next run started.
    pub killed_run: Option<u64>,
    /// A shared crawl's engines spent its page budget (see `cluster::Reserved::Spent`).
    pub budget_spent: bool,
}

impl Task {
    /// Page fetches that ended, the count `max_pages` limits.
    pub fn outcomes(&self) -> u64 {
        self.pages_ok + self.pages_failed + self.pages_redirected
    }

    /// Whether it reached its page cap (here, or across a shared crawl: see `budget_spent`).
    pub fn capped(&self) -> bool {
        self.budget_spent || self.def.max_pages.is_some_and(|max| self.outcomes() >= max)
    }

    /// Whether new links of its pages of run `run` are scheduled: not once it is closed or
    /// capped, nor from an earlier run's pages.
    pub fn accepts_links(&self, run: u64) -> bool {
        run == self.run_seq
            && !self.state.ended()
            && self.state != TaskState::Waiting
            && !self.capped()
    }

    /// What the frontier does with this task's next request.
    pub fn hold(&self) -> Hold {
        match self.state {
            // Between runs, what an ended run left queued goes.
            state if state.ended() || state == TaskState::Waiting => {
                Hold::Drop(state.drop_reason())
            }
            TaskState::Paused => Hold::Park,
            TaskState::Capped => Hold::Cap,
            TaskState::Running
            | TaskState::Done
            | TaskState::Closed
            | TaskState::Stopped
            | TaskState::Killed
            | TaskState::Timeout
            | TaskState::Waiting => {
                if self
                    .def
                    .max_pages
                    .is_some_and(|max| self.outcomes() + self.in_flight >= max)
                {
                    Hold::Cap
                } else {
                    Hold::Go
                }
            }
        }
    }

    /// How its current run ended, once it has: nothing of it in flight, and nothing more to
    /// send. `None` while it goes on.
    pub fn run_outcome(&self) -> Option<crate::history::RunStatus> {
        if self.in_flight > 0 {
            return None;
        }
        self.state.run_status()
    }

    /// Its run's figures so far.
    pub fn run_figures(&self) -> crate::history::RunFigures {
        crate::history::RunFigures {
            pages_ok: self.pages_ok,
            pages_failed: self.pages_failed,
            items: self.items,
        }
    }

    /// Moves a running task to done or capped when nothing of it can be sent any more.
    pub fn settle(&mut self) {
        if !matches!(self.state, TaskState::Running | TaskState::Done)
            || (self.shared && self.state == TaskState::Done)
        {
            // A shared task is done when the crawl (or the leader, for a run) says so.
            return;
        }
        self.state = if self.open == 0 && !self.shared {
            TaskState::Done
        } else if self.capped() && self.in_flight == 0 {
            TaskState::Capped
        } else {
            TaskState::Running
        };
    }

    /// The task as the admin API shows it.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id,
            name: self.def.name.clone(),
            state: self.state,
            seeds: self.def.seeds.iter().map(Url::to_string).collect(),
            parser: self.def.parser.clone(),
            spider: self.def.spider.as_ref().map(|s| s.name.clone()),
            max_pages: self.def.max_pages,
            max_depth: self.def.max_depth,
            pages_ok: self.pages_ok,
            pages_failed: self.pages_failed,
            skipped: self.skipped,
            items: self.items,
            queued: if self.shared {
                self.shared_queued
            } else {
                self.open.saturating_sub(self.in_flight)
            },
            in_flight: self.in_flight,
            recent_runs: self.recent_runs.clone(),
            schedule: self.def.schedule.as_ref().map(|s| s.spec.clone()),
            next_tick: self.next_tick.map(|t| t.to_rfc3339()),
        }
    }
}

/// An operator's change of a task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    /// Hold its requests.
    Pause,
    /// Send a paused task's requests again.
    Resume,
    /// End it: closed, stopped, killed (or timed out, by its deadline).
    End(TaskState),
}

impl Task {
    /// The state `action` gives this task, or why it is refused; changes nothing (a shared
    /// crawl's leader checks a change before it records it, and applies it after).
    pub fn next_state(&self, action: TaskAction) -> Result<TaskState, TaskError> {
        let id = self.id;
        match action {
            TaskAction::Pause => match self.state {
                // Capped: nothing of it will be sent again; pausing changes nothing.
                TaskState::Capped => Ok(TaskState::Capped),
                TaskState::Running | TaskState::Paused => Ok(TaskState::Paused),
                state => Err(TaskError::Finished {
                    id,
                    state,
                    action: "paused",
                }),
            },
            TaskAction::Resume => match self.state {
                TaskState::Paused => Ok(TaskState::Running),
                TaskState::Running | TaskState::Capped => Ok(self.state),
                state => Err(TaskError::Finished {
                    id,
                    state,
                    action: "resumed",
                }),
            },
            TaskAction::End(how) => {
                // A kill may follow a stop or a deadline whose requests hang.
                let escalation = how == TaskState::Killed
                    && matches!(self.state, TaskState::Stopped | TaskState::Timeout)
                    && self.in_flight > 0;
                let refused = how != TaskState::Closed
                    && !escalation
                    && (self.state.ended() || self.state == TaskState::Waiting || !self.run_open);
                if refused {
                    return Err(TaskError::Finished {
                        id,
                        state: self.state,
                        action: match how {
                            TaskState::Killed => "killed",
                            _ => "stopped",
                        },
                    });
                }
                Ok(how)
            }
        }
    }
}

/// A task as the admin API and the dashboard show it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    /// Its id, for `/api/tasks/{id}`.
    pub id: u64,
    /// Its name (items are stored under it).
    pub name: String,
    /// `running`, `paused`, `closed`, `capped` or `done`.
    pub state: TaskState,
    /// Its start URLs.
    pub seeds: Vec<String>,
    /// Its parser (or the spider's start rule).
    pub parser: String,
    /// Its spider's name, if it runs one.
    pub spider: Option<String>,
    /// Its page limit.
    pub max_pages: Option<u64>,
    /// Its depth limit.
    pub max_depth: Option<u32>,
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Requests not sent.
    pub skipped: u64,
    /// Items extracted.
    pub items: u64,
    /// Requests waiting (queued, retrying or held).
    pub queued: u64,
    /// Pages in flight.
    pub in_flight: u64,
    /// Its last few runs, newest first.
    pub recent_runs: Vec<crate::history::RunView>,
    /// Its schedule, if it recurs.
    pub schedule: Option<crate::schedule::ScheduleSpec>,
    /// Its next tick (RFC 3339), if scheduled.
    pub next_tick: Option<String>,
}

/// Why a task operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No task has this id.
    #[error("no task has id {0}")]
    NotFound(u64),
    /// Another task has this name.
    #[error("a task named {0:?} already exists")]
    Duplicate(String),
    /// The task is closed or finished; it cannot change state.
    #[error("task {id} is {state:?} and cannot be {action}")]
    Finished {
        /// The task.
        id: u64,
        /// Its state.
        state: TaskState,
        /// What was asked.
        action: &'static str,
    },
    /// The task definition is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The crawl is no longer running.
    #[error("the crawl has stopped")]
    Stopped,
    /// A shared crawl's change could not be recorded for the other engines (this engine no
    /// longer leads, or Redis failed); it may be sent again.
    #[error("the change could not be recorded for the other engines ({0}); send it again")]
    NotShared(String),
    /// A shared crawl's change may or may not have been recorded (Redis did not answer in
    /// time): nothing was applied here; every engine takes it up if it was recorded, and a
    /// repeat with the same idempotency key gets its answer then.
    #[error(
        "the change may not have been recorded ({0}); send it again with the same Idempotency-Key"
    )]
    Unsure(String),
}
pub mod record;
mod set;
pub use set::{Tasks, UNKNOWN_TASK_WAIT};

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, max_pages: Option<u64>) -> TaskDef {
        TaskDef {
            name: name.into(),
            seeds: vec![Url::parse("http://a.test/").expect("url")],
            parser: "links".into(),
            spider: None,
            max_pages,
            max_depth: None,
            allow_domains: Vec::new(),
            render: false,
            timeout: None,
            schedule: None,
        }
    }

    #[test]
    fn names_are_unique_and_ids_count_from_one() {
        let mut tasks = Tasks::default();
        assert_eq!(tasks.add(def("a", None)).expect("a"), 1);
        assert_eq!(tasks.add(def("b", None)).expect("b"), 2);
        assert!(matches!(
            tasks.add(def("a", None)),
            Err(TaskError::Duplicate(_))
        ));
        assert!(matches!(tasks.by_id_mut(3), Err(TaskError::NotFound(3))));
        assert!(matches!(tasks.by_id_mut(0), Err(TaskError::NotFound(0))));
        assert_eq!(
            tasks.named("a").expect("a").salt,
            0,
            "the first task keeps plain fingerprints"
        );
        assert_ne!(tasks.named("b").expect("b").salt, 0);
    }

    #[test]
    fn a_task_at_its_cap_holds_its_requests() {
        let mut tasks = Tasks::default();
        tasks.add(def("a", Some(2))).expect("a");
        let t = tasks.named_mut("a").expect("a");
        t.open = 5;
        assert_eq!(t.hold(), Hold::Go);
        t.in_flight = 1;
        t.pages_ok = 1;
        assert_eq!(t.hold(), Hold::Cap, "one done and one in flight make two");
        t.in_flight = 0;
        t.pages_ok = 2;
        t.open = 3;
        t.settle();
        assert_eq!(t.state, TaskState::Capped);
        t.state = TaskState::Closed;
        assert_eq!(t.hold(), Hold::Drop("task_closed"));
    }

    #[test]
    fn a_shared_crawls_page_of_a_task_not_read_of_waits_a_minute_then_is_dropped() {
        let start = tokio::time::Instant::now();
        let mut embedded = Tasks::default();
        assert_eq!(embedded.hold("new", 0, start), Hold::Go);
        let mut shared = Tasks {
            shared: true,
            ..Tasks::default()
        };
        assert_eq!(shared.hold("new", 0, start), Hold::Wait);
        let later = start + UNKNOWN_TASK_WAIT - std::time::Duration::from_millis(1);
        assert_eq!(shared.hold("new", 0, later), Hold::Wait);
        // Its news arrives in time: it goes.
        shared.add(def("new", None)).expect("new");
        assert_eq!(shared.hold("new", 0, later), Hold::Go);
        // A task that never shows up waits a minute from when it was first met.
        assert_eq!(shared.hold("ghost", 0, later), Hold::Wait);
        assert_eq!(
            shared.hold("ghost", 0, later + UNKNOWN_TASK_WAIT),
            Hold::Drop("unknown_task")
        );
    }
}
