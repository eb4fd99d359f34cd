//! The parts every mode builds the same way: the pool's and the sink's settings, the
//! itemsaver connection, the run history and the admin server.

use super::Operate;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::sink::SinkConfig;
use crate::{admin, crawl, history, pool};
use common::traffic::Traffic;
use common::transport;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Opens the run history (`--jobs`), ending as `failed` the runs an engine that died left
/// going.
pub(super) fn open_history(
    config: &EngineConfig,
) -> Result<Option<history::RunHistory>, EngineError> {
    let Some(path) = &config.jobs else {
        return Ok(None);
    };
    let store = history::RunHistory::open(path)?;
    let cut = store.fail_running("engine restarted")?;
    if !cut.is_empty() {
        warn!(tasks = ?cut, "runs an earlier engine left going are recorded as failed");
    }
    Ok(Some(store))
}

/// What the workers are readied for: the spider or the parser. An engine that only serves
/// API tasks asks nothing of its workers up front.
pub(super) fn requirements(config: &EngineConfig, resumed: bool) -> Vec<pool::Requirement> {
    match &config.spider {
        _ if config.serve && config.seeds.is_empty() && !resumed => Vec::new(),
        Some(spider) => vec![pool::Requirement::Spider(spider.source.clone())],
        None => vec![pool::Requirement::Parser(config.parser.clone())],
    }
}

/// The pool's settings from the engine's.
pub(super) fn pool_config(config: &EngineConfig) -> pool::PoolConfig {
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
pub(super) fn sink_config(config: &EngineConfig) -> SinkConfig {
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
pub(super) fn serve_admin<F: crate::frontier::Frontier>(
    operate: Operate,
    crawl: &crawl::Crawl<F>,
) -> tokio_util::sync::DropGuard {
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
pub(super) async fn connect_itemsaver(
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
