//! A shared crawl's figures at its end: every engine leaves its own in Redis as it finishes,
//! and the engine that led at the end adds them up for its summary.

use super::leader::LEADER_TTL;
use crate::summary::{ClusterTotals, Summary};
use common::redis_conn::RedisConn;
use common::registry::{self, NodeKind};
use std::time::Duration;
use tracing::{info, warn};

/// How long the leader waits for the other engines' figures: past one registration TTL, so an
/// engine that died before leaving them has dropped out of the registry by then, and a live
/// one on a loaded machine has had time to finish.
const WAIT: Duration = Duration::from_secs(LEADER_TTL.as_secs() + 4);

fn key(prefix: &str) -> String {
    super::keys::Keys::with_prefix(prefix).finals()
}

/// Leaves this engine's figures for the leader.
pub async fn leave_figures(conn: &mut RedisConn, prefix: &str, engine: &str, summary: &Summary) {
    let mine = ClusterTotals {
        engines: 1,
        pages_ok: summary.pages_ok,
        pages_failed: summary.failed_total(),
        pages_redirected: summary.pages_redirected,
        items_saved: summary.items_saved,
    };
    let json = serde_json::to_string(&mine).unwrap_or_default();
    let written: Result<(), _> = redis::cmd("HSET")
        .arg(key(prefix))
        .arg(engine)
        .arg(json)
        .query_async(conn)
        .await;
    if let Err(e) = written {
        warn!(cause = %e, "could not leave this engine's figures for the cluster's totals");
    }
}

/// Every engine's figures, once each engine still registered left them (waiting a little
/// for those finishing at the same moment).
pub async fn add_up(conn: &mut RedisConn, prefix: &str, engine: &str) -> Option<ClusterTotals> {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let finals: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(key(prefix))
            .query_async(conn)
            .await
            .ok()?;
        let live = registry::live(conn, prefix, NodeKind::Engine).await.ok()?;
        let waiting: Vec<&str> = live
            .iter()
            .filter(|n| n.id != engine && !finals.contains_key(&n.id))
            .map(|n| n.id.as_str())
            .collect();
        let late = tokio::time::Instant::now() >= until;
        if waiting.is_empty() || late {
            if late && !waiting.is_empty() {
                warn!(engines = ?waiting, "the cluster's totals leave out engines still finishing");
            }
            info!(
                counted = finals.len(),
                live = live.len(),
                "adding up the cluster's figures"
            );
            let mut totals = ClusterTotals::default();
            for json in finals.values() {
                if let Ok(one) = serde_json::from_str::<ClusterTotals>(json) {
                    totals.add(&one);
                }
            }
            return Some(totals);
        }
        // A few calls a look: looked at twice a second, not ten times.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
