//! Finding the workers and itemsavers that registered themselves in Redis: workers join the
//! pool as they appear and leave it when their registration expires; an itemsaver is picked
//! from those registered.

use crate::pool::PoolControl;
use common::redis_conn::RedisConn;
use common::registry::{self, NodeKind, SHARED};
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the worker registry is read while the crawl runs: a worker that registers
/// joins every engine's pool within about this long.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(2);

/// How often the itemsaver registry is read while an engine waits for one at start.
const ITEMSAVER_POLL: Duration = Duration::from_secs(1);

/// Keeps `pool` in step with the registered workers until `stop`: a worker that registers
/// is connected and added, one whose registration expired is removed (its calls in flight
/// finish). Workers given by address (`--worker_hosts`) are left alone.
pub fn workers(mut conn: RedisConn, pool: PoolControl, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Registered address -> pool id of the worker added for it.
        let mut added: HashMap<String, usize> = HashMap::new();
        let mut every = tokio::time::interval(DISCOVER_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let live = match registry::live(&mut conn, SHARED, NodeKind::Worker).await {
                Ok(live) => {
                    failing = false;
                    live
                }
                Err(e) => {
                    if !failing {
                        warn!(cause = %e, "cannot read the worker registry; trying again");
                    }
                    failing = true;
                    continue;
                }
            };
            added.retain(|addr, id| {
                if live.iter().any(|n| &n.addr == addr) {
                    return true;
                }
                info!(worker = %addr, "worker registration expired; removing it");
                let _ = pool.remove(*id);
                false
            });
            for node in live {
                if added.contains_key(&node.addr) {
                    continue;
                }
                match pool.add(&node.addr).await {
                    Ok(view) => {
                        info!(worker = %node.addr, node = %node.id, "registered worker joined");
                        added.insert(node.addr, view.id);
                    }
                    Err(crate::pool::ControlError::Duplicate { id, .. }) => {
                        added.insert(node.addr, id);
                    }
                    Err(e) => {
                        warn!(worker = %node.addr, cause = %e, "registered worker unusable; trying again")
                    }
                }
            }
        }
    })
}

/// The address of a registered itemsaver, waiting up to `wait` for one to register.
pub async fn itemsaver(conn: &mut RedisConn, wait: Duration) -> Option<String> {
    let until = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match registry::live(conn, SHARED, NodeKind::ItemSaver).await {
            Ok(live) if !live.is_empty() => return live.into_iter().next().map(|n| n.addr),
            Ok(_) => {}
            Err(e) => warn!(cause = %e, "cannot read the itemsaver registry"),
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        if !said {
            info!(?wait, "waiting for an itemsaver to register");
            said = true;
        }
        tokio::time::sleep(ITEMSAVER_POLL).await;
    }
}
