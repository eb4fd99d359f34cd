//! The engine's command line: its flags, in groups (one module each), and the crawl they
//! describe ([`Args::config`]). `main.rs` parses them and runs the engine.

pub mod admin;
pub mod cluster;
pub mod crawl;
pub mod items;
pub mod output;
pub mod politeness;
pub mod schedule;
pub mod state;
pub mod workers;

use crate::config::{EngineConfig, ResumeMode};
use crate::{EngineError, parse_seed};
use std::path::PathBuf;
use std::time::Duration;

/// Spinneret engine: crawls from the seeds, handing pages round-robin to workers and items in
/// batches to an itemsaver. With no --worker_hosts it fetches in this process; with no
/// --itemsaver_host it stores items in --store itself: `engine --seed URL` crawls a site alone.
#[derive(clap::Parser, Debug)]
#[command(name = "engine", version)]
pub struct Args {
    /// TOML file setting any flag under its own name (`max_pages = 5000`, lists for repeated
    /// flags; examples in config/). A flag beats its environment variable, which beats the
    /// file, which beats the built-in default.
    #[arg(long, value_name = "FILE", env = "SPINNERET_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Check a spider file and exit: 0 when it is valid, 1 with the problem otherwise (other
    /// flags, and SPINNERET_* variables, are ignored).
    #[arg(long = "check-spider", alias = "check_spider", value_name = "FILE")]
    pub check_spider: Option<PathBuf>,

    /// Print the merged configuration (flags, environment, --config file and defaults), with
    /// where each value came from, and exit.
    #[arg(long = "print-config", alias = "print_config")]
    pub print_config: bool,

    #[command(flatten, next_help_heading = "Crawl")]
    pub crawl: crawl::CrawlArgs,

    #[command(flatten, next_help_heading = "Schedule")]
    pub runs: schedule::ScheduleArgs,

    #[command(flatten, next_help_heading = "Workers")]
    pub workers: workers::WorkerArgs,

    #[command(flatten, next_help_heading = "Items")]
    pub items: items::ItemArgs,

    #[command(flatten, next_help_heading = "Politeness and limits")]
    pub politeness: politeness::PolitenessArgs,

    #[command(flatten, next_help_heading = "Admin API")]
    pub operate: admin::AdminArgs,

    #[command(flatten, next_help_heading = "Output")]
    pub output: output::OutputArgs,

    #[command(flatten, next_help_heading = "State")]
    pub durability: state::StateArgs,

    #[command(flatten, next_help_heading = "TLS")]
    pub tls: common::tls::TlsArgs,

    #[command(flatten, next_help_heading = "Cluster mode")]
    pub cluster: cluster::ClusterArgs,

    /// Fetch limits of the in-process worker (used only without --worker_hosts; remote workers
    /// take these flags themselves).
    #[command(
        flatten,
        next_help_heading = "Fetch limits (in-process worker only; remote workers take these flags)"
    )]
    pub fetch: worker::cli::FetchArgs,

    #[command(flatten, next_help_heading = "Logging")]
    pub log: common::cli::LogArgs,
}

impl Args {
    /// The crawl these flags describe: a flag given wins, then the spider file, then the
    /// built-in default.
    pub fn config(&self) -> Result<EngineConfig, EngineError> {
        let loaded = self
            .crawl
            .spider
            .as_deref()
            .map(crate::load_spider)
            .transpose()?;
        let (spider, spec) = match loaded {
            Some((run, spec)) => (Some(run), Some(spec)),
            None => (None, None),
        };
        let cli_seeds: Vec<&String> = self
            .crawl
            .seeds
            .iter()
            .filter(|s| !s.trim().is_empty())
            .collect();
        let seed_texts: Vec<&String> = match &spec {
            Some(spec) if cli_seeds.is_empty() => spec.start_urls.iter().collect(),
            _ => cli_seeds,
        };
        let seeds = seed_texts
            .iter()
            .map(|s| parse_seed(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut allow_domains: Vec<String> = self
            .crawl
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
        let schedule = match &self.runs.schedule {
            Some(cron) => Some(crate::schedule::ScheduleSpec {
                cron: cron.clone(),
                timezone: self.runs.timezone.clone(),
                overlap: self.runs.overlap,
            }),
            None => match &spec {
                Some(spec) => crate::spider_schedule(spec)
                    .map_err(|e| EngineError::BadSchedule(e.to_string()))?,
                None => None,
            },
        }
        .map(crate::schedule::Schedule::new)
        .transpose()
        .map_err(|e| EngineError::BadSchedule(e.to_string()))?;
        let defaults = EngineConfig::default();
        let task = self
            .crawl
            .task
            .clone()
            .or_else(|| spider.as_ref().map(|s| s.name.clone()))
            .unwrap_or_else(|| defaults.task.clone());
        let worker_hosts = self
            .workers
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
            .items
            .itemsaver_host
            .as_deref()
            .filter(|h| !h.trim().is_empty())
            .map(|h| common::parse_host_spec(h).map_err(EngineError::BadItemSaverHost))
            .transpose()?;
        let state_path = self
            .durability
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{task}.state")));
        Ok(EngineConfig {
            seeds,
            parser: self.crawl.parser.clone(),
            render: self.crawl.render,

            concurrency: self.crawl.concurrency.max(1),
            politeness: crate::config::Politeness {
                per_host: self
                    .politeness
                    .per_host
                    .or(politeness.per_host)
                    .unwrap_or(defaults.politeness.per_host)
                    .max(1),
                delay: self
                    .politeness
                    .delay
                    .or(politeness.delay_ms)
                    .map_or(defaults.politeness.delay, Duration::from_millis),
                robots: !self.politeness.ignore_robots,
                max_pages_per_host: (self.politeness.max_pages_per_host > 0)
                    .then_some(self.politeness.max_pages_per_host),
                max_queue_per_host: self.politeness.max_queue_per_host,
                max_backoff: Duration::from_secs(self.politeness.max_backoff.max(1)),
            },
            max_depth: self.crawl.max_depth.or(limits.max_depth),
            max_pages: self.crawl.max_pages.or(limits.max_pages),
            schedule,
            scheduler_clock: None,
            jobs: match (&self.runs.jobs, &self.cluster.redis) {
                (Some(path), _) => Some(path.clone()),
                (None, None) => Some(PathBuf::from("jobs.db")),
                (None, Some(_)) => None,
            },
            task_timeout: self
                .runs
                .task_timeout
                .or(limits.timeout_secs)
                .map(crate::tasks::task_timeout)
                .transpose()
                .map_err(|e| EngineError::BadSchedule(e.to_string()))?,
            max_url_len: self.crawl.max_url_len,
            allow_domains,
            worker_hosts,
            itemsaver_host,
            store: self.items.store.clone(),
            rpc_timeout: Duration::from_secs(self.workers.rpc_timeout.max(1)),
            connect_timeout: Duration::from_secs(self.workers.connect_timeout.max(1)),
            batch_size: self.items.batch_size.max(1),
            batch_interval: Duration::from_millis(self.items.batch_interval_ms.max(1)),
            progress_interval: Duration::from_secs(self.output.progress_secs.max(1)),
            retries: self.politeness.retries,
            max_worker_deaths: self.workers.max_worker_deaths,
            max_redirects: self.politeness.max_redirects,
            local_worker: self
                .fetch
                .worker_config(self.crawl.concurrency.max(1) as u32),
            spider,
            heartbeat: Duration::from_millis(self.workers.heartbeat_ms.max(10)),
            heartbeat_misses: self.workers.heartbeat_misses.max(1),
            no_workers_timeout: Duration::from_secs(self.workers.no_workers_timeout),
            dead_letters: state_path.with_extension("dead-letters.jsonl"),
            // An engine that only serves API tasks keeps them durable too.
            state_dir: (!self.durability.no_state).then(|| state_path.clone()),
            state_sync: Duration::from_millis(self.durability.state_sync_ms.max(1)),
            resume: if self.durability.resume {
                ResumeMode::Require
            } else if self.durability.fresh {
                ResumeMode::Fresh
            } else {
                ResumeMode::Auto
            },
            drain_timeout: Duration::from_secs(self.durability.drain_timeout),
            itemsaver_timeout: Duration::from_secs(self.items.itemsaver_timeout.max(1)),
            serve: self.operate.serve,
            cluster: match (&self.cluster.redis, &self.cluster.crawl) {
                (Some(redis), Some(crawl)) => Some(crate::config::ClusterConfig {
                    redis: redis.clone(),
                    crawl: crawl.clone(),
                    lease: Duration::from_secs(self.cluster.lease_secs),
                    redis_timeout: Duration::from_secs(self.cluster.redis_timeout),
                    advertise: match &self.cluster.advertise {
                        Some(addr) => Some(
                            common::parse_host_spec(addr)
                                .map_err(|e| EngineError::BadAdvertise(addr.clone(), e))?,
                        ),
                        None => match self.operate.admin {
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
                token: common::cli::read_token(self.workers.token.as_deref())?,
                tls: self.tls.client_config()?,
            },
        })
    }
}

/// An `--overlap` that is neither `skip` nor `replace`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: use skip or replace")]
pub struct UnknownOverlap(String);

/// Reads `--overlap`.
fn parse_overlap(value: &str) -> Result<crate::schedule::Overlap, UnknownOverlap> {
    match value {
        "skip" => Ok(crate::schedule::Overlap::Skip),
        "replace" => Ok(crate::schedule::Overlap::Replace),
        other => Err(UnknownOverlap(other.to_owned())),
    }
}
