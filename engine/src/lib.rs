//! The Spinneret engine: schedules a crawl over a pool of workers and sends the items to an
//! itemsaver.
//!
//! With no worker hosts it runs a worker in this process, and with no itemsaver it stores items
//! itself, so one command crawls a site on one machine.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod crawl;
pub mod crawl_identity;
pub mod error;
pub mod frontier;
pub mod jobs;
pub mod local_worker;
pub mod metrics;
pub mod pool;
pub mod progress;
pub mod robots;
pub mod schedule;
pub mod scope;
pub mod sink;
pub mod state;
pub mod summary;
pub mod tasks;

pub use config::{EngineConfig, SpiderRun};
pub use error::EngineError;
pub use summary::Summary;

use common::traffic::Traffic;
use common::transport;
use config::ResumeMode;
use crawl::Stopped;
use pool::Pool;
use sink::{ItemSink, SinkConfig, Target};
use state::{Restored, StateDir, StateError, StateHandle};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Reads and checks the spider file at `path`.
pub fn load_spider(
    path: &std::path::Path,
) -> Result<(SpiderRun, worker::spider::spec::SpiderSpec), EngineError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| EngineError::SpiderFile {
        path: file.clone(),
        cause: e.to_string(),
    })?;
    Ok(SpiderRun::compile(&file, source)?)
}

/// Checks a seed and returns its canonical URL.
/// The `[schedule]` of a spider file, checked.
pub fn spider_schedule(
    spec: &worker::spider::spec::SpiderSpec,
) -> Result<Option<schedule::ScheduleSpec>, String> {
    let Some(section) = &spec.schedule else {
        return Ok(None);
    };
    let overlap = match section.overlap.as_deref() {
        None | Some("skip") => schedule::Overlap::Skip,
        Some("replace") => schedule::Overlap::Replace,
        Some(other) => {
            return Err(format!(
                "[schedule] overlap = {other:?}: use \"skip\" or \"replace\""
            ));
        }
    };
    let spec = schedule::ScheduleSpec {
        cron: section.cron.clone(),
        timezone: section.timezone.clone().unwrap_or_else(|| "UTC".into()),
        overlap,
    };
    // Checked here, so that a bad pattern names the file's section.
    schedule::Schedule::new(spec.clone()).map_err(|e| format!("[schedule] {e}"))?;
    Ok(Some(spec))
}

pub fn parse_seed(seed: &str) -> Result<url::Url, EngineError> {
    common::canonicalize(seed, None).map_err(|e| EngineError::BadSeed {
        seed: seed.into(),
        reason: e.to_string(),
    })
}

/// How a crawl is watched and steered while it runs.
#[derive(Debug, Default)]
pub struct Operate {
    /// Serve the admin API, metrics and dashboard on this listener.
    pub admin: Option<tokio::net::TcpListener>,
    /// The bearer token changes through the admin API need.
    pub admin_token: Option<String>,
    /// More names the admin server answers to without a token (`--admin_host`).
    pub admin_hosts: Vec<String>,
    /// Serve the admin server over TLS with this (`--admin_tls_cert/--admin_tls_key`).
    pub admin_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The CA (PEM) that alone is trusted for other engines' admin servers
    /// (`--admin_tls_ca`); without it, the system's roots and `--tls_ca`.
    pub admin_tls_ca: Option<Vec<u8>>,
    /// How progress is shown.
    pub progress: progress::Progress,
}

/// Connects to the itemsaver and the workers (or starts them in-process) and runs the crawl,
/// resuming it from its state directory when an earlier run did not finish.
pub async fn run(
    config: EngineConfig,
    shutdown: CancellationToken,
) -> Result<Summary, EngineError> {
    run_with(config, Operate::default(), shutdown).await
}

/// [`run`], watched and steered as `operate` says.
pub async fn run_with(
    mut config: EngineConfig,
    mut operate: Operate,
    shutdown: CancellationToken,
) -> Result<Summary, EngineError> {
    if config.cluster.is_some() {
        return cluster::run::run(config, operate, shutdown).await;
    }
    let state_dir = config.state_dir.as_ref().map(StateDir::new);
    let (state, restored) = match &state_dir {
        Some(dir) => open_state(dir, &mut config).await?,
        None => (StateHandle::disabled(), Restored::default()),
    };
    if config.seeds.is_empty() && !restored.resumed && !config.serve {
        return Err(EngineError::NoSeeds);
    }
    let traffic = Arc::new(Traffic::default());
    let (target, items_at) = match &config.itemsaver_host {
        Some(addr) => {
            let client = connect_itemsaver(addr, &config, &traffic).await?;
            (
                Target::Remote {
                    addr: addr.clone(),
                    client,
                    traffic: traffic.clone(),
                    alternates: None,
                },
                format!("itemsaver at {addr}"),
            )
        }
        None => {
            let store = itemsaver::store::open(&config.store).await?;
            info!(store = %config.store, "storing items in this process");
            let server = itemsaver::ItemSaverServer::new(
                store,
                itemsaver::DEFAULT_MAX_BATCH,
                itemsaver::DEFAULT_MAX_ITEM_BYTES,
            );
            (
                Target::Local(itemsaver::in_process(server)),
                config.store.to_string(),
            )
        }
    };
    let jobs = jobs(&config, restored.resumed);
    let pool_config = pool_config(&config);
    let pool = if config.worker_hosts.is_empty() {
        let server = worker::CrawlServer::new(&local_worker::settings(&config, &restored).await)?;
        if let Some(spider) = &config.spider {
            server
                .load_spider_source(&spider.source)
                .map_err(EngineError::SpiderRefused)?;
        }
        let info = server.worker_info();
        info!(
            concurrency = info.concurrency,
            "fetching with a worker in this process"
        );
        Pool::in_process(
            worker::in_process(server),
            info,
            jobs,
            pool_config,
            traffic.clone(),
        )
    } else {
        Pool::connect(&config.worker_hosts, jobs, pool_config, traffic.clone()).await?
    };
    let sink = ItemSink::start(target, sink_config(&config), state.clone());
    let dead_letters =
        std::path::absolute(&config.dead_letters).unwrap_or_else(|_| config.dead_letters.clone());
    let jobs_store = open_jobs(&config)?;
    let mut crawl = crawl::Crawl::new(
        config,
        pool,
        sink,
        items_at,
        state,
        state_dir.is_some(),
        std::mem::take(&mut operate.progress),
    );
    if let Some(store) = jobs_store {
        crawl = crawl.with_jobs(store);
    }
    let _stop_admin = serve_admin(operate, &crawl);
    let (stopped, mut summary) = crawl.run(restored, shutdown).await?;
    if let Some(dir) = state_dir {
        if stopped == Stopped::Interrupted {
            summary.resumable_state = Some(dir.path().display().to_string());
        } else {
            // Finished: nothing to resume, and a re-run starts a fresh crawl. Items the store
            // refused outlive the state, in a file beside it.
            if dir.export_dead_letters(&dead_letters)? > 0 {
                summary.dead_letters = Some(dead_letters.display().to_string());
            }
            dir.remove()?;
        }
    } else if summary.items_rejected > 0 {
        summary.dead_letters = Some(dead_letters.display().to_string());
    }
    Ok(summary)
}

/// Opens the state in `dir` for the crawl `config` asks for. An unfinished crawl of the state
/// is carried on when it is the same crawl, or as it was with `--resume` (its seeds, spider,
/// scope and store replace the flags given); another crawl is refused, so that two crawls
/// never mix. The state is marked with the crawl it holds.
async fn open_state(
    dir: &StateDir,
    config: &mut EngineConfig,
) -> Result<(StateHandle, Restored), EngineError> {
    if config.resume == ResumeMode::Fresh {
        dir.remove()?;
    }
    if config.resume == ResumeMode::Require && !dir.has_unfinished() {
        return Err(StateError::NothingToResume(dir.path().to_owned()).into());
    }
    let (handle, restored) = dir.open(config.state_sync)?;
    let asked = crawl_identity::CrawlIdentity::of(config);
    let held = restored
        .crawl
        .as_deref()
        .and_then(|json| serde_json::from_str::<crawl_identity::CrawlIdentity>(json).ok())
        .filter(|_| restored.resumed);
    let identity = match held {
        Some(held) => {
            let parts = held.differences(&asked);
            if !parts.is_empty() {
                if config.resume != ResumeMode::Require {
                    return Err(EngineError::StateOfAnotherCrawl {
                        state: dir.path().display().to_string(),
                        holds: held.to_string(),
                        parts: parts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                held.apply_to(config)?;
            }
            held
        }
        None => asked,
    };
    state::log_restored(dir.path(), &restored, &identity);
    handle
        .mark_crawl(serde_json::to_string(&identity).unwrap_or_default())
        .await?;
    Ok((handle, restored))
}

/// Opens the jobs store (`--jobs`), ending as `failed` the runs an engine that died left
/// going.
pub(crate) fn open_jobs(config: &EngineConfig) -> Result<Option<jobs::JobsStore>, EngineError> {
    let Some(path) = &config.jobs else {
        return Ok(None);
    };
    let store = jobs::JobsStore::open(path)?;
    let cut = store.fail_running("engine restarted")?;
    if !cut.is_empty() {
        warn!(tasks = ?cut, "runs an earlier engine left going are recorded as failed");
    }
    Ok(Some(store))
}

/// What the workers are readied for: the spider or the parser. An engine that only serves
/// API tasks asks nothing of its workers up front.
fn jobs(config: &EngineConfig, resumed: bool) -> Vec<pool::Job> {
    match &config.spider {
        _ if config.serve && config.seeds.is_empty() && !resumed => Vec::new(),
        Some(spider) => vec![pool::Job::Spider(spider.source.clone())],
        None => vec![pool::Job::Parser(config.parser.clone())],
    }
}

/// The pool's settings from the engine's.
fn pool_config(config: &EngineConfig) -> pool::PoolConfig {
    pool::PoolConfig {
        max_slots: config.concurrency,
        connect_timeout: config.connect_timeout,
        heartbeat: config.heartbeat,
        heartbeat_misses: config.heartbeat_misses,
        no_workers_timeout: config.no_workers_timeout,
        credentials: config.credentials.clone(),
    }
}

/// The item sink's settings from the engine's.
fn sink_config(config: &EngineConfig) -> SinkConfig {
    SinkConfig {
        batch_size: config.batch_size.max(1),
        batch_interval: config.batch_interval,
        rpc_timeout: config.rpc_timeout,
        unavailable_timeout: config.itemsaver_timeout,
        connect_timeout: config.connect_timeout,
        dead_letters: config.dead_letters.clone(),
        credentials: config.credentials.clone(),
    }
}

/// Serves the admin API and dashboard when asked; the server stops when the guard drops.
fn serve_admin(operate: Operate, crawl: &crawl::Crawl) -> tokio_util::sync::DropGuard {
    let admin_stop = CancellationToken::new();
    let guard = admin_stop.clone().drop_guard();
    if let Some(listener) = operate.admin {
        if let Ok(addr) = listener.local_addr() {
            let scheme = if operate.admin_tls.is_some() {
                "https"
            } else {
                "http"
            };
            info!(url = %format!("{scheme}://{addr}/"), auth = operate.admin_token.is_some(), "admin server and dashboard listening");
        }
        admin::serve(
            listener,
            operate.admin_tls,
            crawl.handle(),
            operate.admin_token,
            &operate.admin_hosts,
            admin_stop,
        );
    }
    guard
}

/// Connects to the itemsaver and checks that it answers as one.
async fn connect_itemsaver(
    addr: &str,
    config: &EngineConfig,
    traffic: &Arc<Traffic>,
) -> Result<common::ItemSaverServiceClient, EngineError> {
    let fail = |cause: String| EngineError::ItemSaver {
        addr: addr.into(),
        cause,
    };
    let client =
        transport::connect_itemsaver(addr, config.connect_timeout, traffic, &config.credentials)
            .await
            .map_err(|e| fail(e.to_string()))?;
    client
        .count(transport::deadline(config.connect_timeout), None)
        .await
        .map_err(|e| {
            fail(format!(
                "connected but it did not answer as an itemsaver: {e}"
            ))
        })?
        .map_err(|e| fail(e.to_string()))?;
    info!(itemsaver = %addr, "itemsaver connected");
    Ok(client)
}
