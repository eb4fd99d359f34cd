//! Starting the engine. The parts of a crawl (worker pool, item sink, state, frontier, run
//! history) are built in one place per mode, [`embedded`] (one engine, its state in SQLite) or
//! [`cluster`] (a crawl shared with other engines in Redis), chosen once here; then every
//! crawl runs the same way, through [`run_parts`], and its mode finishes it.

mod cluster;
mod embedded;
mod parts;

use crate::config::EngineConfig;
use crate::crawl::{Crawl, Stopped};
use crate::error::EngineError;
use crate::frontier::Frontier;
use crate::state::Restored;
use crate::summary::Summary;
use tokio_util::sync::CancellationToken;

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
    pub progress: crate::progress::Progress,
}

/// What a mode built: a crawl ready to run, or the summary of one that needs no run (a
/// shared crawl that is done already).
enum Built<F> {
    Ready(Box<Parts<F>>),
    Finished(Box<Summary>),
}

/// A crawl ready to run, with what it resumes from and what its mode does at the end.
struct Parts<F> {
    crawl: Crawl<F>,
    restored: Restored,
    end: End,
}

/// What a mode does once its crawl ended.
enum End {
    Embedded(embedded::EmbeddedEnd),
    Cluster(cluster::ClusterEnd),
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
    config: EngineConfig,
    mut operate: Operate,
    shutdown: CancellationToken,
) -> Result<Summary, EngineError> {
    // The one place the mode is chosen: each builds its parts, with its own frontier.
    if config.cluster.is_some() {
        let built = cluster::build(config, &mut operate).await?;
        run_built(built, operate, shutdown).await
    } else {
        let built = embedded::build(config, &mut operate).await?;
        run_built(built, operate, shutdown).await
    }
}

/// Runs what a mode built, unless it needs no run.
async fn run_built<F: Frontier>(
    built: Built<F>,
    operate: Operate,
    shutdown: CancellationToken,
) -> Result<Summary, EngineError> {
    match built {
        Built::Finished(summary) => Ok(*summary),
        Built::Ready(parts) => run_parts(*parts, operate, shutdown).await,
    }
}

/// Runs a crawl, whatever its mode: serves the admin API while it runs, then hands how it
/// ended to its mode.
async fn run_parts<F: Frontier>(
    parts: Parts<F>,
    operate: Operate,
    shutdown: CancellationToken,
) -> Result<Summary, EngineError> {
    let Parts {
        crawl,
        restored,
        end,
    } = parts;
    let _stop_admin = parts::serve_admin(operate, &crawl);
    let result: Result<(Stopped, Summary), EngineError> = crawl.run(restored, shutdown).await;
    match end {
        End::Embedded(end) => end.finish(result).await,
        End::Cluster(end) => end.finish(result).await,
    }
}
