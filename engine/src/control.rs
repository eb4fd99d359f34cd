//! The running crawl's handle for the outside: the figures it publishes, and the commands
//! an operator sends it (through the admin API).
//!
//! The crawl loop owns every piece of crawl state; nothing else touches it. It publishes a
//! snapshot of its figures a few times a second and answers commands between events, so an
//! operator's request never races a request in flight.

use crate::metrics::EngineMetrics;
use crate::pool::PoolControl;
use crate::tasks::{TaskDef, TaskError, TaskView};
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

/// What an operator asks the crawl loop to do.
#[derive(Debug)]
pub enum Command {
    /// Start a new task.
    AddTask(Box<TaskDef>, Reply),
    /// Hold a task's requests.
    PauseTask(u64, Reply),
    /// Send a paused task's requests again.
    ResumeTask(u64, Reply),
    /// Drop a task's queued requests and schedule none of its links.
    CloseTask(u64, Reply),
    /// End a task's run: no new requests; those in flight finish and are saved.
    StopTask(u64, Reply),
    /// End a task's run at once: its requests in flight are cancelled, their answers
    /// discarded.
    KillTask(u64, Reply),
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
    pub jobs: Option<crate::jobs::JobsStore>,
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
            jobs: None,
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

    async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<TaskView, TaskError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| TaskError::Stopped)?;
        rx.await.map_err(|_| TaskError::Stopped)?
    }

    /// Starts a task in the running crawl.
    pub async fn add_task(&self, def: TaskDef) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::AddTask(Box::new(def), r)).await
    }

    /// Holds a task's requests; those in flight finish.
    pub async fn pause_task(&self, id: u64) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::PauseTask(id, r)).await
    }

    /// Sends a paused task's requests again.
    pub async fn resume_task(&self, id: u64) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::ResumeTask(id, r)).await
    }

    /// Closes a task: its queued requests are dropped, its in-flight results still saved.
    pub async fn close_task(&self, id: u64) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::CloseTask(id, r)).await
    }

    /// Stops a task: no new requests; those in flight finish and their items are saved.
    pub async fn stop_task(&self, id: u64) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::StopTask(id, r)).await
    }

    /// Kills a task: its requests in flight are cancelled at once, their answers discarded.
    pub async fn kill_task(&self, id: u64) -> Result<TaskView, TaskError> {
        self.ask(|r| Command::KillTask(id, r)).await
    }
}
