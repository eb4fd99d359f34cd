//! What a crawl is asked to do, and the limits it runs within.

use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// How gently each host is crawled, and the limits per host, applied across all workers
/// (and, in cluster mode, across all engines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Politeness {
    /// Requests in flight to one host at most.
    pub per_host: usize,
    /// Least time between two requests to one host.
    pub delay: Duration,
    /// Longest a host is slowed down (back-off, Retry-After or Crawl-delay).
    pub max_backoff: Duration,
    /// Pages fetched from one host at most.
    pub max_pages_per_host: Option<u64>,
    /// URLs queued for one host at most; more are refused (`host_queue_full`).
    pub max_queue_per_host: usize,
    /// Whether robots.txt is fetched and obeyed.
    pub robots: bool,
}

impl Default for Politeness {
    fn default() -> Self {
        Politeness {
            per_host: 8,
            delay: Duration::ZERO,
            max_backoff: Duration::from_secs(60),
            max_pages_per_host: Some(100_000),
            max_queue_per_host: 200_000,
            robots: true,
        }
    }
}

/// Everything the engine needs to run one crawl.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Canonical start URLs.
    pub seeds: Vec<Url>,
    /// Parser applied to every page.
    pub parser: String,
    /// Task name items are stored under; re-running a task updates its items.
    pub task: String,
    /// Requests in flight at once, across all workers.
    pub concurrency: usize,
    /// How gently each host is crawled, and the per-host limits: one section that the
    /// embedded frontier and the shared one in Redis both honour.
    pub politeness: Politeness,
    /// Deepest link distance from a seed that is fetched; `None` for no limit.
    pub max_depth: Option<u32>,
    /// Pages fetched at most; `None` for no limit.
    pub max_pages: Option<u64>,
    /// How long the engine's own task may run before it is stopped (status `timeout`).
    pub task_timeout: Option<std::time::Duration>,
    /// The run history file (`--jobs`); `None` keeps no history.
    pub jobs: Option<std::path::PathBuf>,
    /// When the engine's own task runs again (each tick a new run); `None`: once.
    pub schedule: Option<crate::schedule::Schedule>,
    /// The clock schedules go by (tests move one by hand); `None`: the system's.
    pub scheduler_clock: Option<std::sync::Arc<dyn crate::schedule::SchedulerClock>>,
    /// Longest URL scheduled, in bytes.
    pub max_url_len: usize,
    /// Domains whose hosts (and subdomains) may be crawled; empty means the seeds' hosts.
    pub allow_domains: Vec<String>,
    /// Worker addresses (`host:port`); empty runs a worker in this process.
    pub worker_hosts: Vec<String>,
    /// Itemsaver address; `None` stores items in `store` from this process.
    pub itemsaver_host: Option<String>,
    /// Where items are stored when there is no itemsaver (see [`itemsaver::StoreSpec`]).
    pub store: itemsaver::StoreSpec,
    /// Deadline of each crawl RPC; above the workers' fetch timeout.
    pub rpc_timeout: Duration,
    /// Time allowed to connect to a worker or the itemsaver.
    pub connect_timeout: Duration,
    /// Items sent to the itemsaver per batch at most.
    pub batch_size: usize,
    /// Longest time an item waits before its batch is sent.
    pub batch_interval: Duration,
    /// How often progress is logged.
    pub progress_interval: Duration,
    /// Different worker processes that may die holding one page before the page is given up
    /// as `poison_page` (a browser crashed by the page counts as one); a worker that leaves,
    /// is paused or removed never counts.
    pub max_worker_deaths: u32,
    /// Retries of a page after a failure that may pass (connection, timeout, 5xx, 429).
    pub retries: u32,
    /// Redirect hops followed from one URL.
    pub max_redirects: u32,
    /// Settings of the in-process worker, when there are no worker hosts.
    pub local_worker: worker::WorkerConfig,
    /// The spider to run instead of `parser`, when crawling with `--spider`.
    pub spider: Option<SpiderRun>,
    /// Render every page of the crawl in a browser (`--render`).
    pub render: bool,
    /// Interval between heartbeats to each worker.
    pub heartbeat: Duration,
    /// Heartbeats missed in a row before a worker is marked down.
    pub heartbeat_misses: u32,
    /// How long the crawl waits for a worker when every one is down.
    pub no_workers_timeout: Duration,
    /// Where the crawl's durable state is kept; `None` keeps nothing (`--no_state`).
    pub state_dir: Option<PathBuf>,
    /// Where items the store refused are written (JSON Lines, appended): at the end of the
    /// crawl from the state's dead letters, or at once when there is no state.
    pub dead_letters: PathBuf,
    /// How often the state is committed.
    pub state_sync: Duration,
    /// What to do with an existing state.
    pub resume: ResumeMode,
    /// How long a stopping crawl waits for its requests in flight.
    pub drain_timeout: Duration,
    /// How long the itemsaver may take no items before the crawl stops (its items kept).
    pub itemsaver_timeout: Duration,
    /// Keep running when idle, waiting for tasks from the admin API (`--serve`).
    pub serve: bool,
    /// Cluster mode: the crawl is shared with other engines in Redis (`--redis`, `--crawl`).
    pub cluster: Option<ClusterConfig>,
    /// What the engine proves itself to workers and itemsavers with.
    pub credentials: common::handshake::Credentials,
}

/// How an engine joins a crawl shared in Redis.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The Redis URL (`redis://host:port/db`).
    pub redis: String,
    /// The crawl's name: every engine started with it shares one frontier.
    pub crawl: String,
    /// How long a claimed request stays leased unless extended; a dead engine's requests go
    /// back to the queue after it.
    pub lease: Duration,
    /// How long Redis may be unreachable before the engine stops (the crawl resumable).
    pub redis_timeout: Duration,
    /// The address other engines reach this one's admin API at, registered for forwarding.
    pub advertise: Option<String>,
    /// TLS for a `rediss://` Redis (from `--tls_ca`, `--tls_cert/--tls_key`).
    pub redis_tls: common::redis_conn::RedisTls,
}

/// What to do with the state an earlier run left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResumeMode {
    /// Carry on an unfinished crawl if there is one, else start fresh.
    #[default]
    Auto,
    /// Carry on, and fail when there is nothing to carry on (`--resume`).
    Require,
    /// Throw the earlier state away and start over (`--fresh`).
    Fresh,
}

/// A checked spider file, as the crawl needs it.
#[derive(Clone, Debug)]
pub struct SpiderRun {
    /// The spider's name.
    pub name: String,
    /// The file's text, sent to every worker once.
    pub source: String,
    /// The content hash requests name it by.
    pub hash: u64,
    /// The rule for the start URLs.
    pub start_rule: String,
    /// How the pages of each rule that renders are rendered, by rule name.
    pub renders: std::collections::BTreeMap<String, common::RenderRequest>,
}

impl SpiderRun {
    /// Compiles the spider file `source` (named `file` in errors), also returning its spec.
    pub fn compile(
        file: &str,
        source: String,
    ) -> Result<(SpiderRun, worker::spider::spec::SpiderSpec), worker::spider::SpiderError> {
        let compiled = worker::spider::compile(file, &source)?;
        let run = SpiderRun {
            name: compiled.spec.name.clone(),
            hash: compiled.hash,
            start_rule: compiled.start_rule.clone(),
            renders: compiled
                .rules()
                .iter()
                .filter_map(|r| Some((r.name.clone(), r.render.clone()?)))
                .collect(),
            source,
        };
        Ok((run, compiled.spec))
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seeds: Vec::new(),
            parser: "links".into(),
            task: "default".into(),
            concurrency: 100,
            politeness: Politeness::default(),
            max_depth: None,
            max_pages: None,
            task_timeout: None,
            jobs: None,
            schedule: None,
            scheduler_clock: None,
            max_url_len: 2048,
            allow_domains: Vec::new(),
            worker_hosts: Vec::new(),
            itemsaver_host: None,
            store: itemsaver::StoreSpec::Sqlite(PathBuf::from("items.db")),
            rpc_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            batch_size: 500,
            batch_interval: Duration::from_millis(500),
            progress_interval: Duration::from_secs(5),
            max_worker_deaths: 3,
            retries: 2,
            max_redirects: 10,
            local_worker: worker::WorkerConfig::default(),
            spider: None,
            render: false,
            heartbeat: Duration::from_secs(2),
            heartbeat_misses: 3,
            no_workers_timeout: Duration::from_secs(60),
            state_dir: None,
            dead_letters: PathBuf::from("default.dead-letters.jsonl"),
            state_sync: Duration::from_millis(200),
            resume: ResumeMode::Auto,
            drain_timeout: Duration::from_secs(30),
            itemsaver_timeout: Duration::from_secs(300),
            serve: false,
            cluster: None,
            credentials: Default::default(),
        }
    }
}
