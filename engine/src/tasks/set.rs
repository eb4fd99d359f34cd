//! The crawl's tasks, by id and by name: the one owner of every task's state and figures,
//! and of what becomes of a request of a task that is paused, capped, ended or unknown.

use super::*;

/// Every task of the engine, by id and by name.
#[derive(Debug, Default)]
pub struct Tasks {
    pub(super) list: Vec<Task>,
    pub(super) by_name: HashMap<String, usize>,
    /// Whether the crawl is shared with other engines (see [`Task::shared`]).
    pub shared: bool,
    /// Shared crawl: task names met in claimed requests before this engine read of them,
    /// with when they were first met (see [`Tasks::hold`]).
    pub(super) unknown: HashMap<String, tokio::time::Instant>,
}

/// How long a shared crawl's request of a task this engine has not read of waits for the
/// task's news before it is dropped as `unknown_task`: the news reaches every engine within
/// a second, so only a task that never existed (or a record no engine can read) waits it out.
pub const UNKNOWN_TASK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Task names [`Tasks`] keeps waiting on at most; past it, it starts their waits afresh.
const UNKNOWN_TASKS_CAP: usize = 4_096;

impl Tasks {
    /// Adds a task and returns its id.
    /// A task left unnamed is named `task-ID`.
    pub fn add(&mut self, def: TaskDef) -> Result<u64, TaskError> {
        let task = self.next_task(def)?;
        let id = task.id;
        self.by_name.insert(task.def.name.clone(), self.list.len());
        self.list.push(task);
        Ok(id)
    }

    /// The task `def` would become if added now (named, when unnamed, as [`Tasks::add`]
    /// names it), without adding it: what a shared crawl's leader records before it applies.
    pub fn preview_add(&self, def: TaskDef) -> Result<Task, TaskError> {
        self.next_task(def)
    }

    fn next_task(&self, mut def: TaskDef) -> Result<Task, TaskError> {
        if def.name.is_empty() {
            let id = self.list.len() + 1;
            def.name = format!("task-{id}");
            let mut n = 1;
            while self.by_name.contains_key(&def.name) {
                n += 1;
                def.name = format!("task-{id}-{n}");
            }
        }
        if self.by_name.contains_key(&def.name) {
            return Err(TaskError::Duplicate(def.name));
        }
        let index = self.list.len();
        let salt = if index == 0 {
            0
        } else {
            common::fingerprint(&format!("task:{}", def.name))
        };
        Ok(Task {
            id: index as u64 + 1,
            scope: Scope::new(&def.allow_domains, &def.seeds),
            def,
            salt,
            state: TaskState::Running,
            open: 0,
            in_flight: 0,
            pages_ok: 0,
            pages_failed: 0,
            pages_redirected: 0,
            skipped: 0,
            items: 0,
            shared: self.shared,
            shared_queued: 0,
            kill: tokio_util::sync::CancellationToken::new(),
            started: tokio::time::Instant::now(),
            run_open: false,
            run_on_done_crawl: false,
            run: None,
            recent_runs: Vec::new(),
            next_tick: None,
            restart_pending: false,
            runs_started: 0,
            run_seq: 0,
            killed_run: None,
            budget_spent: false,
        })
    }

    /// The index of the task named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The task named `name`.
    pub fn named(&self, name: &str) -> Option<&Task> {
        self.index(name).map(|i| &self.list[i])
    }

    /// The task named `name`, to update.
    pub fn named_mut(&mut self, name: &str) -> Option<&mut Task> {
        self.index(name).map(|i| &mut self.list[i])
    }

    /// The task at `index`.
    pub fn at(&self, index: usize) -> &Task {
        &self.list[index]
    }

    /// The task with id `id`, to update.
    pub fn by_id_mut(&mut self, id: u64) -> Result<&mut Task, TaskError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.list.get_mut(i))
            .ok_or(TaskError::NotFound(id))
    }

    /// What the frontier does with a page of task `name` in its run `run` at `now`: one of
    /// an earlier run is dropped, one of a run not known yet waits. In a shared crawl a page
    /// of a task this engine has not read of waits too (its links would find no task to
    /// follow them), up to [`UNKNOWN_TASK_WAIT`], then is dropped as `unknown_task`; in an
    /// embedded crawl it goes (a request of an older state's task).
    pub fn hold(&mut self, name: &str, run: u64, now: tokio::time::Instant) -> Hold {
        if !self.unknown.is_empty() && self.by_name.contains_key(name) {
            self.unknown.remove(name);
        }
        match self.named(name) {
            None if self.shared => {
                if self.unknown.len() >= UNKNOWN_TASKS_CAP && !self.unknown.contains_key(name) {
                    self.unknown.clear();
                }
                let since = *self.unknown.entry(name.to_owned()).or_insert(now);
                if now.duration_since(since) >= UNKNOWN_TASK_WAIT {
                    Hold::Drop("unknown_task")
                } else {
                    Hold::Wait
                }
            }
            None => Hold::Go,
            // Closed for every run.
            Some(t) if t.state == TaskState::Closed => Hold::Drop(t.state.drop_reason()),
            Some(t) if run < t.run_seq => Hold::Drop(TaskState::Waiting.drop_reason()),
            Some(t) if run > t.run_seq => Hold::Wait,
            Some(t) => t.hold(),
        }
    }

    /// Every task, to change, in id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Task> {
        self.list.iter_mut()
    }

    /// Every task, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.list.iter()
    }

    /// Whether a task waits for ticks of its schedule: the engine keeps running for it.
    pub fn any_scheduled(&self) -> bool {
        self.list.iter().any(|t| t.next_tick.is_some())
    }

    /// Whether a paused task still has requests: the engine waits for it to be resumed.
    pub fn any_paused_with_work(&self) -> bool {
        self.list
            .iter()
            .any(|t| t.state == TaskState::Paused && t.open > 0 && !t.capped())
    }

    /// The spider source with content hash `hash`, if a task runs it.
    pub fn spider_source(&self, hash: u64) -> Option<&str> {
        self.list
            .iter()
            .filter_map(|t| t.def.spider.as_ref())
            .find(|s| s.hash == hash)
            .map(|s| s.source.as_str())
    }

    /// Marks every running task of a shared crawl done: the crawl is. A scheduled run is
    /// left to the leader, which ends it when nothing of it is left (the crawl may be done
    /// for a moment as a run starts), unless no tick is left to come.
    pub fn all_done(&mut self) {
        for t in &mut self.list {
            if t.state == TaskState::Running && (t.run_seq == 0 || t.next_tick.is_none()) {
                t.state = TaskState::Done;
            }
        }
    }

    /// Every task as the admin API shows it.
    pub fn views(&self) -> Vec<TaskView> {
        self.list.iter().map(Task::view).collect()
    }
}
