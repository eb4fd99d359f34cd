//! The running crawl's handle for the outside: the figures it publishes, and the commands
//! an operator sends it (through the admin API).
//!
//! The crawl loop owns every piece of crawl state; nothing else touches it. It publishes a
//! snapshot of its figures a few times a second and answers commands between events, so an
//! operator's request never races a request in flight.

use crate::metrics::EngineMetrics;
use crate::pool::PoolControl;
use crate::tasks::{TaskAction, TaskDef, TaskError, TaskView};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Commands waiting for the crawl loop at most; senders wait beyond that.
pub const COMMAND_QUEUE: usize = 64;

/// Samples of the throughput history kept (one a second).
pub const HISTORY: usize = 600;

/// Where a command's answer goes.
pub type Reply = oneshot::Sender<Result<TaskView, TaskError>>;

/// What an operator asks of the crawl's tasks.
#[derive(Debug)]
pub enum TaskCommand {
    /// Start a new task.
    Add(Box<TaskDef>),
    /// Pause, resume, close, stop or kill a task.
    Change(u64, TaskAction),
}

/// An operator's command for the crawl loop, with the idempotency key it came with (a shared
/// crawl's leader records the answer under it with the change) and where its answer goes.
#[derive(Debug)]
pub struct Command {
    /// What is asked.
    pub what: TaskCommand,
    /// The Redis key of its idempotency key's answer, when it came with one (cluster mode).
    pub key: Option<String>,
    /// Where the answer goes.
    pub reply: Reply,
}

/// One point of the throughput history.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the crawl started.
    pub t: f64,
    /// Page fetches ended so far.
    pub pages: u64,
    /// Items acknowledged so far.
    pub items: u64,
}

/// The crawl's figures, as published for `/api/status` and the dashboard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrawlStatus {
    /// `running`, `idle` (waiting for tasks with `--serve`), `stopping` or `finished`.
    pub state: &'static str,
    /// Seconds since the crawl started.
    pub elapsed_secs: f64,
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Pages redirected elsewhere.
    pub pages_redirected: u64,
    /// Requests not sent, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Page failures, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Page retries.
    pub retries: u64,
    /// Requests waiting (queued, retrying, or held for paused tasks).
    pub queued: u64,
    /// URLs the crawl knows (its seen set: each task's current run's; in cluster mode the
    /// whole crawl's, every run's, from Redis).
    pub urls_seen: u64,
    /// Commands this engine sent to Redis so far (cluster mode; a script call is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_commands: Option<u64>,
    /// Requests in flight.
    pub in_flight: u64,
    /// Items extracted and handed to the sink.
    pub items_extracted: u64,
    /// Items the itemsaver acknowledged.
    pub items_saved: u64,
    /// Page fetches ended per second, over the last few seconds.
    pub pages_per_sec: f64,
    /// Every task.
    pub tasks: Vec<TaskView>,
    /// Throughput history, oldest first.
    pub history: Vec<Sample>,
    /// Whether the engine waits for tasks when idle (`--serve`).
    pub serve: bool,
}

/// A cloneable handle on a running crawl.
#[derive(Clone, Debug)]
pub struct CrawlHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Arc<CrawlStatus>>,
    /// The crawl's workers.
    pub pool: PoolControl,
    /// The crawl's metrics.
    pub metrics: Arc<EngineMetrics>,
    /// The shared crawl, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::engines::ClusterHandle>>,
    /// The history of the tasks' runs, when the engine keeps one.
    pub history: Option<crate::history::RunHistory>,
}

/// The crawl loop's end of a [`CrawlHandle`].
#[derive(Debug)]
pub struct CrawlEnd {
    /// Commands to answer.
    pub commands: mpsc::Receiver<Command>,
    /// Where to publish figures.
    pub status: watch::Sender<Arc<CrawlStatus>>,
}

/// A connected handle and crawl end.
pub fn channel(pool: PoolControl, metrics: Arc<EngineMetrics>) -> (CrawlHandle, CrawlEnd) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (status_tx, status) = watch::channel(Arc::new(CrawlStatus::default()));
    (
        CrawlHandle {
            commands: commands_tx,
            status,
            pool,
            metrics,
            cluster: None,
            history: None,
        },
        CrawlEnd {
            commands,
            status: status_tx,
        },
    )
}

impl CrawlHandle {
    /// The latest published figures.
    pub fn status(&self) -> Arc<CrawlStatus> {
        self.status.borrow().clone()
    }

    /// Carries out `what` in the running crawl; `key` is the Redis key its answer is kept
    /// under for repeats (see [`Command::key`]).
    pub async fn ask(&self, what: TaskCommand, key: Option<String>) -> Result<TaskView, TaskError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command { what, key, reply })
            .await
            .map_err(|_| TaskError::Stopped)?;
        rx.await.map_err(|_| TaskError::Stopped)?
    }

    /// Starts a task in the running crawl.
    pub async fn add_task(&self, def: TaskDef) -> Result<TaskView, TaskError> {
        self.ask(TaskCommand::Add(Box::new(def)), None).await
    }

    /// Changes a task's state as `action` says.
    pub async fn change_task(&self, id: u64, action: TaskAction) -> Result<TaskView, TaskError> {
        self.ask(TaskCommand::Change(id, action), None).await
    }
}
