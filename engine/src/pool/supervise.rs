//! Watching one worker: heartbeats while it is up, reconnection with back-off while it is
//! down.

use super::conn::{Admin, Link, WorkerConn};
use super::{Requirement, Shared};
use common::traffic::Traffic;
use common::{CrawlServiceClient, WorkerInfo, transport};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Why a worker could not be taken into the pool.
pub(super) enum Failure {
    /// It did not answer, or is shutting down.
    Unreachable(String),
    /// It answered, but cannot do one of the crawl's requirements.
    Unable(super::RequirementError),
}

pub(super) async fn connect_one(
    addr: &str,
    requirements: &[Requirement],
    timeout: Duration,
    traffic: &Arc<Traffic>,
    credentials: &common::handshake::Credentials,
) -> Result<(CrawlServiceClient, WorkerInfo), Failure> {
    let client = transport::connect_worker(addr, timeout, traffic, credentials)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    traffic.call();
    let info = client
        .info(transport::deadline(timeout))
        .await
        .map_err(|e| {
            Failure::Unreachable(format!(
                "{addr} connected but did not answer as a worker: {e}"
            ))
        })?;
    // A worker that is shutting down answers, but takes no work: not back yet.
    let status = client
        .status(transport::deadline(timeout))
        .await
        .map_err(|e| Failure::Unreachable(format!("{addr} did not answer its status: {e}")))?;
    if status.paused {
        return Err(Failure::Unreachable(format!("{addr} is shutting down")));
    }
    for requirement in requirements {
        requirement
            .prepare(&client, &info, timeout)
            .await
            .map_err(Failure::Unable)?;
    }
    Ok((client, info))
}

/// Watches one worker: heartbeats while it is up, reconnects with back-off while it is down.
/// The in-process worker is only asked for its figures.
pub(super) async fn supervise(
    worker: Arc<WorkerConn>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let config = shared.config.clone();
    let mut misses = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        if worker.is_removed() {
            return;
        }
        if worker.is_down() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            let requirements = shared.requirements();
            match connect_one(
                &worker.addr,
                &requirements,
                config.connect_timeout,
                &shared.traffic,
                &config.credentials,
            )
            .await
            {
                Ok((client, info)) => {
                    let slots = shared.slots(&info);
                    let _leasing = worker.leasing();
                    if let Ok(mut link) = worker.link.lock() {
                        let generation = link.generation + 1;
                        *link = Link::new(client, info, generation);
                    }
                    worker.up.store(true, Ordering::SeqCst);
                    // A paused worker gets its leases when it is resumed.
                    if worker.admin() == Admin::Active {
                        shared.add_leases(&worker, slots);
                    }
                    info!(worker = %worker.addr, "worker is back; rejoining the rotation");
                    misses = 0;
                    backoff = Duration::from_millis(250);
                }
                Err(failure) => {
                    let cause = match failure {
                        Failure::Unreachable(cause) => cause,
                        Failure::Unable(why) => why.to_string(),
                    };
                    debug!(worker = %worker.addr, %cause, ?backoff, "worker still down");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            continue;
        }
        let link = worker.link();
        tokio::select! {
            _ = stop.cancelled() => return,
            // Marked down by the crawl (its connection broke): reconnect now.
            _ = link.down.cancelled() => continue,
            _ = tokio::time::sleep(config.heartbeat) => {}
        }
        let answer = tokio::time::timeout(
            config.heartbeat,
            link.client.status(transport::deadline(config.heartbeat)),
        )
        .await;
        if let Ok(Ok(status)) = &answer {
            worker.record_heartbeat(status.clone());
        }
        if !worker.remote {
            continue;
        }
        match answer {
            // A draining worker finishes what it holds; it closes its connections when done,
            // and is marked down then.
            Ok(Ok(status)) if status.paused => {
                misses = 0;
                shared.withdraw(&worker, link.generation, "it is draining");
            }
            Ok(Ok(_)) => misses = 0,
            Ok(Err(tarpc::client::RpcError::Shutdown)) => {
                shared.mark_down(&worker, link.generation, "connection closed");
            }
            _ => {
                misses += 1;
                debug!(worker = %worker.addr, misses, "heartbeat missed");
                if misses >= config.heartbeat_misses {
                    shared.mark_down(
                        &worker,
                        link.generation,
                        &format!("missed {misses} heartbeats"),
                    );
                    misses = 0;
                }
            }
        }
    }
}
