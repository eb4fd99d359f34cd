//! `engine`: runs a crawl across Spinneret workers and sends the items to an itemsaver.

use clap::Parser;
use engine::config::ResumeMode;
use engine::{EngineConfig, EngineError, parse_seed};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Spinneret engine: crawls from the seeds, handing pages round-robin to workers and items in
/// batches to an itemsaver. With no --worker_hosts it fetches in this process; with no
/// --itemsaver_host it stores items in --store itself: `engine --seed URL` crawls a site alone.
#[derive(Parser, Debug)]
#[command(name = "engine", version)]
struct Args {
    /// TOML file setting any flag under its own name (`max_pages = 5000`, lists for repeated
    /// flags; examples in config/). A flag beats its environment variable, which beats the
    /// file, which beats the built-in default.
    #[arg(long, value_name = "FILE", env = "SPINNERET_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Start URL (http or https); repeat for several. With --spider, replaces its start_urls.
    #[arg(
        long = "seed",
        alias = "seeds",
        value_name = "URL",
        env = "SPINNERET_SEEDS",
        value_delimiter = ' ',
        required_unless_present_any = ["spider", "check_spider", "resume", "serve", "crawl", "print_config"]
    )]
    seeds: Vec<String>,

    /// Crawl with this spider file (see SPIDERS.md) instead of --parser.
    #[arg(long, value_name = "FILE", env = "SPINNERET_SPIDER")]
    spider: Option<PathBuf>,

    /// Check a spider file and exit: 0 when it is valid, 1 with the problem otherwise (other
    /// flags, and SPINNERET_* variables, are ignored).
    #[arg(long = "check-spider", alias = "check_spider", value_name = "FILE")]
    check_spider: Option<PathBuf>,

    /// Print the merged configuration (flags, environment, --config file and defaults), with
    /// where each value came from, and exit.
    #[arg(long = "print-config", alias = "print_config")]
    print_config: bool,

    /// Workers to use, comma-separated `host:port` (`:9000` is port 9000 here). None: in-process.
    #[arg(
        long = "worker_hosts",
        value_name = "HOSTS",
        alias = "worker-hosts",
        env = "SPINNERET_WORKER_HOSTS",
        value_delimiter = ','
    )]
    worker_hosts: Vec<String>,

    /// Itemsaver to send items to, `host:port`. None: store in --store from this process.
    #[arg(
        long = "itemsaver_host",
        value_name = "HOST:PORT",
        alias = "itemsaver-host",
        env = "SPINNERET_ITEMSAVER_HOST"
    )]
    itemsaver_host: Option<String>,

    /// Where items are stored when there is no --itemsaver_host: a path or sqlite:PATH (an
    /// SQLite file), postgres://USER@HOST/DB (a PostgreSQL table), or jsonl:PATH (a JSON
    /// Lines file, appended to).
    #[arg(
        long,
        value_name = "STORE",
        env = "SPINNERET_STORE",
        default_value = "items.db",
        hide_env_values = true,        value_parser = itemsaver::StoreSpecParser
    )]
    store: itemsaver::StoreSpec,

    /// Parser the workers apply to every page (see `worker --list-parsers`).
    #[arg(
        long,
        value_name = "NAME",
        env = "SPINNERET_PARSER",
        default_value = "links"
    )]
    parser: String,

    /// Task name items are stored under; re-running a task updates its items. Default: the
    /// spider's name, or `default`.
    #[arg(long, value_name = "NAME", env = "SPINNERET_TASK")]
    task: Option<String>,

    /// Requests in flight at once, across all workers.
    #[arg(
        long,
        value_name = "N",
        env = "SPINNERET_CONCURRENCY",
        default_value_t = 100
    )]
    concurrency: usize,

    /// Requests in flight to one host at once, across all workers. Default: the spider's
    /// politeness.per_host, or 8.
    #[arg(
        long = "per_host",
        value_name = "N",
        alias = "per-host",
        env = "SPINNERET_PER_HOST"
    )]
    per_host: Option<usize>,

    /// Deepest link distance from a seed to fetch (seeds are 0). Default: no limit.
    #[arg(
        long = "max_depth",
        value_name = "N",
        alias = "max-depth",
        env = "SPINNERET_MAX_DEPTH"
    )]
    max_depth: Option<u32>,

    /// Pages to fetch at most. Default: no limit.
    #[arg(
        long = "max_pages",
        value_name = "N",
        alias = "max-pages",
        env = "SPINNERET_MAX_PAGES"
    )]
    max_pages: Option<u64>,

    /// Run the engine's own task on this cron schedule (`"0 3 * * *"`, seconds optional):
    /// each tick starts a new run with a fresh dedup; the engine keeps running between runs.
    /// A spider's `[schedule]` when not given. In cluster mode the leader fires each tick once
    /// for every engine.
    #[arg(long, value_name = "CRON", env = "SPINNERET_SCHEDULE")]
    schedule: Option<String>,

    /// Time zone of --schedule (an IANA name such as Europe/Paris).
    #[arg(
        long,
        value_name = "TZ",
        env = "SPINNERET_TIMEZONE",
        default_value = "UTC"
    )]
    timezone: String,

    /// What a tick of --schedule does while the previous run is still going: `skip` it
    /// (recorded as a skipped run) or `replace` (stop the old run gracefully, then start).
    #[arg(long, value_name = "HOW", env = "SPINNERET_OVERLAP", default_value = "skip", value_parser = parse_overlap)]
    overlap: engine::schedule::Overlap,

    /// File of the run history (SQLite), kept across crawls and restarts. Default `jobs.db`;
    /// in cluster mode none unless given (give each engine its own).
    #[arg(long, value_name = "PATH", env = "SPINNERET_JOBS")]
    jobs: Option<PathBuf>,

    /// Seconds the engine's own task may run before it is stopped gracefully, its items
    /// saved (status `timeout`; the spider's `[limits] timeout_secs` when not given).
    #[arg(
        long = "task_timeout",
        alias = "task-timeout",
        value_name = "SECS",
        env = "SPINNERET_TASK_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=31_536_000)
    )]
    task_timeout: Option<u64>,

    /// Longest URL to schedule, in bytes.
    #[arg(
        long = "max_url_len",
        value_name = "BYTES",
        alias = "max-url-len",
        env = "SPINNERET_MAX_URL_LEN",
        default_value_t = 2048
    )]
    max_url_len: usize,

    /// Domain to stay within (subdomains included); repeat or comma-separate. Default: the seeds' hosts.
    #[arg(
        long = "allow_domain",
        value_name = "DOMAIN",
        alias = "allow-domain",
        env = "SPINNERET_ALLOW_DOMAINS",
        value_delimiter = ','
    )]
    allow_domains: Vec<String>,

    /// Seconds a worker gets to answer one request before it is tried elsewhere.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "rpc_timeout",
        value_name = "SECS",
        alias = "rpc-timeout",
        env = "SPINNERET_RPC_TIMEOUT",
        default_value_t = 60
    )]
    rpc_timeout: u64,

    /// Seconds allowed to connect to a worker or the itemsaver.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=3_600),
        long = "connect_timeout",
        value_name = "SECS",
        alias = "connect-timeout",
        env = "SPINNERET_RPC_CONNECT_TIMEOUT",
        default_value_t = 5
    )]
    connect_timeout: u64,

    /// Items per batch sent to the itemsaver.
    #[arg(
        long = "batch_size",
        value_name = "N",
        alias = "batch-size",
        env = "SPINNERET_BATCH_SIZE",
        default_value_t = 500
    )]
    batch_size: usize,

    /// Milliseconds an item may wait before a partial batch is sent.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=3_600_000),
        long = "batch_interval_ms",
        value_name = "MS",
        alias = "batch-interval-ms",
        env = "SPINNERET_BATCH_INTERVAL_MS",
        default_value_t = 500
    )]
    batch_interval_ms: u64,

    /// Serve the admin API, Prometheus /metrics and the live dashboard on ADDR (`PORT` or
    /// `:PORT` listen on 127.0.0.1; give an IP, such as 0.0.0.0:8080, to listen elsewhere).
    #[arg(long, value_name = "ADDR", env = "SPINNERET_ADMIN", value_parser = common::metrics_http::parse_listen_addr)]
    admin: Option<std::net::SocketAddr>,

    /// Bearer token the admin API's changes (POST, DELETE) require; reads stay open.
    #[arg(
        long = "admin_token",
        alias = "admin-token",
        value_name = "TOKEN",
        env = "SPINNERET_ADMIN_TOKEN",
        requires = "admin",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Another name the admin server answers to (repeat or comma-separate): it serves only
    /// requests naming this machine (loopback, its bound address, or every interface address
    /// when bound to all), --advertise's host, and these names, against DNS rebinding.
    #[arg(
        long = "admin_host",
        alias = "admin-host",
        value_name = "NAME",
        env = "SPINNERET_ADMIN_HOSTS",
        value_delimiter = ',',
        requires = "admin"
    )]
    admin_hosts: Vec<String>,

    /// Serve the admin API on a non-loopback address without --admin_token: anyone who can
    /// reach it could steer the crawl. For private networks only.
    #[arg(long, requires = "admin")]
    insecure: bool,

    /// PEM certificate chain to serve the admin API and dashboard over HTTPS with.
    #[arg(
        long = "admin_tls_cert",
        alias = "admin-tls-cert",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_CERT",
        requires_all = ["admin", "admin_tls_key"]
    )]
    admin_tls_cert: Option<PathBuf>,

    /// PEM private key of --admin_tls_cert.
    #[arg(
        long = "admin_tls_key",
        alias = "admin-tls-key",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_KEY",
        requires = "admin_tls_cert"
    )]
    admin_tls_key: Option<PathBuf>,

    /// PEM CA that alone is trusted for the other engines' admin servers, when a follower
    /// forwards a change to the leader over HTTPS (default: the system's roots and --tls_ca).
    #[arg(
        long = "admin_tls_ca",
        alias = "admin-tls-ca",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_CA",
        requires = "admin_tls_cert"
    )]
    admin_tls_ca: Option<PathBuf>,

    /// Keep running when idle and wait for tasks from the admin API (stop with Ctrl-C).
    #[arg(long, env = "SPINNERET_SERVE", requires = "admin")]
    serve: bool,

    /// No progress line or progress logs, and only warnings and errors logged (RUST_LOG
    /// still wins); the summary is still printed.
    #[arg(long, short = 'q', env = "SPINNERET_QUIET")]
    quiet: bool,

    /// Seconds between progress log lines (when stderr is not a terminal).
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "progress_secs",
        value_name = "SECS",
        alias = "progress-secs",
        env = "SPINNERET_PROGRESS_SECS",
        default_value_t = 5
    )]
    progress_secs: u64,

    /// Also write the summary as JSON to this file.
    #[arg(
        long = "summary_json",
        value_name = "FILE",
        alias = "summary-json",
        env = "SPINNERET_SUMMARY_JSON"
    )]
    summary_json: Option<PathBuf>,

    /// Least milliseconds between two requests to one host, across all workers. Default: the
    /// spider's politeness.delay_ms, or 0.
    #[arg(
        value_parser = clap::value_parser!(u64).range(0..=86_400_000),long, value_name = "MS", env = "SPINNERET_DELAY_MS")]
    delay: Option<u64>,

    /// Do not fetch or obey robots.txt.
    #[arg(
        long = "ignore_robots",
        alias = "ignore-robots",
        env = "SPINNERET_IGNORE_ROBOTS"
    )]
    ignore_robots: bool,

    /// Retries of a page after a connection error, timeout, 5xx or 429 (with back-off).
    #[arg(long, value_name = "N", env = "SPINNERET_RETRIES", default_value_t = 2)]
    retries: u32,

    /// Different workers that may die (crash, lose their connection) while holding one page
    /// before it is given up as poison_page. Workers that drain, restart cleanly, are paused or
    /// removed never count against a page.
    #[arg(
        long = "max_worker_deaths",
        alias = "max-worker-deaths",
        value_name = "N",
        env = "SPINNERET_MAX_WORKER_DEATHS",
        default_value_t = EngineConfig::default().max_worker_deaths,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    max_worker_deaths: u32,

    /// Redirect hops followed from one URL; each hop is deduplicated and scoped like a link.
    #[arg(
        long = "max_redirects",
        alias = "max-redirects",
        value_name = "N",
        env = "SPINNERET_MAX_REDIRECTS",
        default_value_t = 10
    )]
    max_redirects: u32,

    /// Pages fetched from one host at most (stops spider traps); 0 for no limit.
    #[arg(
        long = "max_pages_per_host",
        alias = "max-pages-per-host",
        value_name = "N",
        env = "SPINNERET_MAX_PAGES_PER_HOST",
        default_value_t = 100_000
    )]
    max_pages_per_host: u64,

    /// URLs queued for one host at most (and never more than the host has left of
    /// --max_pages_per_host); links past it are refused and counted as host_queue_full, so a
    /// site of endless links cannot grow the engine.
    #[arg(
        long = "max_queue_per_host",
        alias = "max-queue-per-host",
        value_name = "N",
        env = "SPINNERET_MAX_QUEUE_PER_HOST",
        default_value_t = EngineConfig::default().max_queue_per_host,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000)
    )]
    max_queue_per_host: usize,

    /// Longest a host is slowed down, in seconds, by back-off, Retry-After or Crawl-delay.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "max_backoff",
        alias = "max-backoff",
        value_name = "SECS",
        env = "SPINNERET_MAX_BACKOFF",
        default_value_t = 60
    )]
    max_backoff: u64,

    /// Milliseconds between heartbeats to each worker.
    #[arg(
        value_parser = clap::value_parser!(u64).range(10..=300_000),
        long = "heartbeat_ms",
        alias = "heartbeat-ms",
        value_name = "MS",
        env = "SPINNERET_HEARTBEAT_MS",
        default_value_t = 2000
    )]
    heartbeat_ms: u64,

    /// Heartbeats a worker may miss in a row before it is marked down and its requests move.
    #[arg(
        value_parser = clap::value_parser!(u32).range(1..=1_000),
        long = "heartbeat_misses",
        alias = "heartbeat-misses",
        value_name = "N",
        env = "SPINNERET_HEARTBEAT_MISSES",
        default_value_t = 3
    )]
    heartbeat_misses: u32,

    /// Seconds the crawl waits for a worker to come back when every worker is down.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=604_800),
        long = "no_workers_timeout",
        alias = "no-workers-timeout",
        value_name = "SECS",
        env = "SPINNERET_NO_WORKERS_TIMEOUT",
        default_value_t = 60
    )]
    no_workers_timeout: u64,

    /// Directory for the crawl's durable state (queue, seen URLs, undelivered items, figures),
    /// so that a killed or stopped crawl resumes. Default: TASK.state in the working directory.
    /// Removed when the crawl finishes.
    #[arg(long, value_name = "DIR", env = "SPINNERET_STATE")]
    state: Option<PathBuf>,

    /// Keep no durable state: a crawl that stops cannot be resumed.
    #[arg(long = "no_state", alias = "no-state", env = "SPINNERET_NO_STATE", conflicts_with_all = ["state", "resume"])]
    no_state: bool,

    /// Carry on the unfinished crawl in the state directory; fail if there is none. (Re-running
    /// the same command also carries on, and starts fresh when there is nothing to resume.)
    #[arg(long, env = "SPINNERET_RESUME", conflicts_with = "fresh")]
    resume: bool,

    /// Throw away the state of an unfinished crawl and start over.
    #[arg(long, env = "SPINNERET_FRESH")]
    fresh: bool,

    /// Milliseconds between commits of the state (batched for speed; a crash refetches at most
    /// the pages finished in the last interval).
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=60_000),
        long = "state_sync_ms",
        alias = "state-sync-ms",
        value_name = "MS",
        env = "SPINNERET_STATE_SYNC_MS",
        default_value_t = 200
    )]
    state_sync_ms: u64,

    /// Seconds a stopping crawl (first SIGINT or SIGTERM) waits for its requests in flight.
    #[arg(
        value_parser = clap::value_parser!(u64).range(0..=86_400),
        long = "drain_timeout",
        alias = "drain-timeout",
        value_name = "SECS",
        env = "SPINNERET_DRAIN_TIMEOUT",
        default_value_t = 30
    )]
    drain_timeout: u64,

    /// Seconds the itemsaver may take no items before the crawl stops (its items stay in the
    /// state and are sent on resume); the crawl waits meanwhile.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=604_800),
        long = "itemsaver_timeout",
        alias = "itemsaver-timeout",
        value_name = "SECS",
        env = "SPINNERET_ITEMSAVER_TIMEOUT",
        default_value_t = 300
    )]
    itemsaver_timeout: u64,

    /// File holding the shared secret the workers and itemsavers were given (`--token`);
    /// proven at each connection's set-up, never sent.
    #[arg(long, value_name = "FILE", env = "SPINNERET_TOKEN")]
    token: Option<PathBuf>,

    #[command(flatten, next_help_heading = "TLS")]
    tls: common::tls::TlsArgs,

    #[command(flatten, next_help_heading = "Cluster mode")]
    cluster: ClusterArgs,

    /// Fetch limits of the in-process worker (used only without --worker_hosts; remote workers
    /// take these flags themselves).
    #[command(
        flatten,
        next_help_heading = "Fetch limits (in-process worker only; remote workers take these flags)"
    )]
    fetch: worker::cli::FetchArgs,

    #[command(flatten, next_help_heading = "Logging")]
    log: common::cli::LogArgs,
}

/// Flags of cluster mode: several engines sharing one crawl in Redis.
#[derive(clap::Args, Debug)]
struct ClusterArgs {
    /// Share the crawl with other engines through the Redis at URL (`redis://host:port/db`);
    /// needs --crawl. Workers and itemsavers registered there are found and used.
    #[arg(
        long,
        value_name = "URL",
        env = "SPINNERET_REDIS",
        requires = "crawl",
        hide_env_values = true
    )]
    redis: Option<String>,

    /// The name of the shared crawl: engines given the same name (and --redis) share it.
    /// Letters, digits, '-', '_' and '.'.
    #[arg(
        long,
        value_name = "NAME",
        env = "SPINNERET_CRAWL",
        requires = "redis",
        value_parser = parse_crawl_name
    )]
    crawl: Option<String>,

    /// Seconds a request claimed by an engine stays leased to it unless renewed (a live engine
    /// renews its leases every third of this); the requests of an engine that died go back
    /// to the queue after it.
    #[arg(
        value_parser = clap::value_parser!(u64).range(2..=86_400),
        long = "lease_secs",
        value_name = "SECS",
        env = "SPINNERET_LEASE_SECS",
        default_value_t = 15
    )]
    lease_secs: u64,

    /// The address other engines reach this engine's admin server at (`host:port`), for the
    /// changes they forward to the leader. Defaults to the --admin address, which must then
    /// not be a wildcard like 0.0.0.0.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "SPINNERET_ADVERTISE",
        requires = "redis"
    )]
    advertise: Option<String>,

    /// Seconds Redis may be unreachable before the engine stops with the crawl resumable.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "redis_timeout",
        value_name = "SECS",
        env = "SPINNERET_REDIS_TIMEOUT",
        default_value_t = 60
    )]
    redis_timeout: u64,
}

impl Args {
    /// The crawl these flags describe: a flag given wins, then the spider file, then the
    /// built-in default.
    fn config(&self) -> Result<EngineConfig, EngineError> {
        let loaded = self
            .spider
            .as_deref()
            .map(engine::load_spider)
            .transpose()?;
        let (spider, spec) = match loaded {
            Some((run, spec)) => (Some(run), Some(spec)),
            None => (None, None),
        };
        let cli_seeds: Vec<&String> = self.seeds.iter().filter(|s| !s.trim().is_empty()).collect();
        let seed_texts: Vec<&String> = match &spec {
            Some(spec) if cli_seeds.is_empty() => spec.start_urls.iter().collect(),
            _ => cli_seeds,
        };
        let seeds = seed_texts
            .iter()
            .map(|s| parse_seed(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut allow_domains: Vec<String> = self
            .allow_domains
            .iter()
            .filter(|d| !d.trim().is_empty())
            .cloned()
            .collect();
        if allow_domains.is_empty()
            && let Some(spec) = &spec
        {
            allow_domains = spec.allowed_domains.clone();
        }
        let politeness = spec
            .as_ref()
            .map(|s| s.politeness.clone())
            .unwrap_or_default();
        let limits = spec.as_ref().map(|s| s.limits.clone()).unwrap_or_default();
        let schedule = match &self.schedule {
            Some(cron) => Some(engine::schedule::ScheduleSpec {
                cron: cron.clone(),
                timezone: self.timezone.clone(),
                overlap: self.overlap,
            }),
            None => match &spec {
                Some(spec) => engine::spider_schedule(spec).map_err(EngineError::BadSchedule)?,
                None => None,
            },
        }
        .map(engine::schedule::Schedule::new)
        .transpose()
        .map_err(|e| EngineError::BadSchedule(e.to_string()))?;
        let defaults = EngineConfig::default();
        let task = self
            .task
            .clone()
            .or_else(|| spider.as_ref().map(|s| s.name.clone()))
            .unwrap_or_else(|| defaults.task.clone());
        let worker_hosts = self
            .worker_hosts
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| common::parse_host_spec(h).map_err(EngineError::BadWorkerHost))
            .collect::<Result<Vec<_>, _>>()?;
        if self.fetch.warc.is_some() && (!worker_hosts.is_empty() || self.cluster.redis.is_some()) {
            tracing::warn!(
                "--warc archives what the in-process worker fetches, and the engine uses remote workers here: give --warc to each worker"
            );
        }
        let itemsaver_host = self
            .itemsaver_host
            .as_deref()
            .filter(|h| !h.trim().is_empty())
            .map(|h| common::parse_host_spec(h).map_err(EngineError::BadItemSaverHost))
            .transpose()?;
        let state_path = self
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{task}.state")));
        Ok(EngineConfig {
            seeds,
            parser: self.parser.clone(),

            concurrency: self.concurrency.max(1),
            per_host: self
                .per_host
                .or(politeness.per_host)
                .unwrap_or(defaults.per_host)
                .max(1),
            max_depth: self.max_depth.or(limits.max_depth),
            max_pages: self.max_pages.or(limits.max_pages),
            schedule,
            scheduler_clock: None,
            jobs: match (&self.jobs, &self.cluster.redis) {
                (Some(path), _) => Some(path.clone()),
                (None, None) => Some(PathBuf::from("jobs.db")),
                (None, Some(_)) => None,
            },
            task_timeout: self
                .task_timeout
                .or(limits.timeout_secs)
                .map(engine::tasks::task_timeout)
                .transpose()
                .map_err(EngineError::BadSchedule)?,
            max_url_len: self.max_url_len,
            allow_domains,
            worker_hosts,
            itemsaver_host,
            store: self.store.clone(),
            rpc_timeout: Duration::from_secs(self.rpc_timeout.max(1)),
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            batch_size: self.batch_size.max(1),
            batch_interval: Duration::from_millis(self.batch_interval_ms.max(1)),
            progress_interval: Duration::from_secs(self.progress_secs.max(1)),
            delay: self
                .delay
                .or(politeness.delay_ms)
                .map_or(defaults.delay, Duration::from_millis),
            robots: !self.ignore_robots,
            retries: self.retries,
            max_worker_deaths: self.max_worker_deaths,
            max_redirects: self.max_redirects,
            max_pages_per_host: (self.max_pages_per_host > 0).then_some(self.max_pages_per_host),
            max_queue_per_host: self.max_queue_per_host,
            max_backoff: Duration::from_secs(self.max_backoff.max(1)),
            local_worker: self.fetch.worker_config(self.concurrency.max(1) as u32),
            spider,
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(10)),
            heartbeat_misses: self.heartbeat_misses.max(1),
            no_workers_timeout: Duration::from_secs(self.no_workers_timeout),
            dead_letters: state_path.with_extension("dead-letters.jsonl"),
            // An engine that only serves API tasks keeps them durable too.
            state_dir: (!self.no_state).then(|| state_path.clone()),
            state_sync: Duration::from_millis(self.state_sync_ms.max(1)),
            resume: if self.resume {
                ResumeMode::Require
            } else if self.fresh {
                ResumeMode::Fresh
            } else {
                ResumeMode::Auto
            },
            drain_timeout: Duration::from_secs(self.drain_timeout),
            itemsaver_timeout: Duration::from_secs(self.itemsaver_timeout.max(1)),
            serve: self.serve,
            cluster: match (&self.cluster.redis, &self.cluster.crawl) {
                (Some(redis), Some(crawl)) => Some(engine::config::ClusterConfig {
                    redis: redis.clone(),
                    crawl: crawl.clone(),
                    lease: Duration::from_secs(self.cluster.lease_secs),
                    redis_timeout: Duration::from_secs(self.cluster.redis_timeout),
                    advertise: match &self.cluster.advertise {
                        Some(addr) => Some(
                            common::parse_host_spec(addr)
                                .map_err(|e| EngineError::BadAdvertise(addr.clone(), e))?,
                        ),
                        None => match self.admin {
                            Some(admin) if admin.ip().is_unspecified() => {
                                return Err(EngineError::NeedsAdvertise(admin));
                            }
                            _ => None,
                        },
                    },
                    redis_tls: self.tls.redis_tls()?,
                }),
                _ => None,
            },
            task,
            credentials: common::handshake::Credentials {
                token: common::cli::read_token(self.token.as_deref())?,
                tls: self.tls.client_config()?,
            },
        })
    }
}

fn parse_crawl_name(value: &str) -> Result<String, engine::cluster::name::CrawlNameError> {
    engine::cluster::name::check(value)
}

fn parse_overlap(value: &str) -> Result<engine::schedule::Overlap, String> {
    match value {
        "skip" => Ok(engine::schedule::Overlap::Skip),
        "replace" => Ok(engine::schedule::Overlap::Replace),
        other => Err(format!("{other:?}: use skip or replace")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = common::config::parse_loaded::<Args>();
    let args = loaded.args;
    if args.print_config {
        print!("{}", loaded.described);
        return ExitCode::SUCCESS;
    }
    let json = args.log.log_format == common::cli::LogFormat::Json;
    let progress = engine::progress::Progress::detect(args.quiet, json);
    let level = if args.quiet { "warn" } else { "info" };
    common::cli::init_tracing_with(args.log.log_format, level, progress.log_writer());
    // Connection bursts meet the servers' own limits, not the system's.
    common::cli::raise_open_files_limit();
    match crawl(&args, progress).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn crawl(args: &Args, progress: engine::progress::Progress) -> anyhow::Result<()> {
    if let Some(path) = &args.check_spider {
        let (run, spec) = engine::load_spider(path)?;
        engine::spider_schedule(&spec)
            .map_err(|why| anyhow::anyhow!("spider {}: {why}", path.display()))?;
        let rules: Vec<String> = spec
            .rules
            .iter()
            .map(|r| {
                let start = if r.name == run.start_rule {
                    ", start"
                } else {
                    ""
                };
                let kinds: Vec<&str> = r.extract.iter().map(|x| x.kind.as_str()).collect();
                format!(
                    "{} ({} follow{start}; extracts [{}])",
                    r.name,
                    r.follow.len(),
                    kinds.join(", ")
                )
            })
            .collect();
        println!(
            "spider {:?} in {} is valid: {} rule(s): {}",
            run.name,
            path.display(),
            rules.len(),
            rules.join("; ")
        );
        return Ok(());
    }
    let config = args.config()?;
    let shutdown = CancellationToken::new();
    common::cli::cancel_on_signals(shutdown.clone());
    let admin_token = args.admin_token.clone().filter(|t| !t.is_empty());
    // As short as a password, a token could be guessed: as long as an RPC token at least.
    if let Some(token) = &admin_token
        && token.trim().len() < common::handshake::MIN_TOKEN_BYTES
    {
        anyhow::bail!(
            "--admin_token has {} bytes; use at least {} (for example `head -c 32 /dev/urandom | base64`)",
            token.trim().len(),
            common::handshake::MIN_TOKEN_BYTES
        );
    }
    let admin_tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
        (Some(cert), Some(key)) => Some(common::tls::https_config(common::tls::IdentityFiles {
            cert: ("--admin_tls_cert", cert),
            key: ("--admin_tls_key", key),
        })?),
        _ => None,
    };
    let admin = match args.admin {
        Some(addr) => {
            if !addr.ip().is_loopback() && admin_token.is_none() && !args.insecure {
                anyhow::bail!(
                    "refusing to serve the admin API on {addr} without --admin_token: anyone who can reach it could steer the crawl; give a token, or pass --insecure on a private network"
                );
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for --admin: {e}"))?;
            let scheme = if admin_tls.is_some() { "https" } else { "http" };
            // Scripts and tests read this line to learn the port when given port 0.
            eprintln!("admin on {scheme}://{}/", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let admin_tls_ca = match &args.admin_tls_ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--admin_tls_ca {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "--admin_tls_ca {}: not PEM certificates: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                anyhow::bail!("--admin_tls_ca {}: no certificate in it", path.display());
            }
            Some(pem)
        }
        None => None,
    };
    // Other engines forward changes to this one by its advertised name.
    let mut admin_hosts = args.admin_hosts.clone();
    admin_hosts.extend(args.cluster.advertise.clone());
    let operate = engine::Operate {
        admin,
        admin_token,
        admin_hosts,
        admin_tls,
        admin_tls_ca,
        progress,
    };
    let summary = engine::run_with(config, operate, shutdown).await?;
    println!("{summary}");
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
