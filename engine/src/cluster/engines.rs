//! The engines of a shared crawl, as every engine sees them: each reports its role, state
//! and share of the work with its heartbeat, and any engine may ask another to pause, resume
//! or drain through Redis (the asked engine reads it on its next heartbeat).

use super::leader::{LEADER_TTL, Role};
use common::redis_conn::RedisConn;
use common::registry::{self, NodeKind};
use serde::Serialize;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What an engine is doing, as an operator set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// Claiming and sending requests.
    Running,
    /// Sending nothing new; its requests in flight finish.
    Paused,
    /// Finishing its requests in flight, then leaving the crawl (exit 0).
    Draining,
}

impl EngineMode {
    fn as_str(self) -> &'static str {
        match self {
            EngineMode::Running => "running",
            EngineMode::Paused => "paused",
            EngineMode::Draining => "draining",
        }
    }

    fn parse(text: &str) -> Option<EngineMode> {
        match text {
            "running" => Some(EngineMode::Running),
            "paused" => Some(EngineMode::Paused),
            "draining" => Some(EngineMode::Draining),
            _ => None,
        }
    }
}

/// This engine's mode and figures, shared by the crawl loop and its heartbeat.
#[derive(Debug)]
pub struct EngineState {
    mode: AtomicU8,
    dispatched: AtomicU64,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            mode: AtomicU8::new(0),
            dispatched: AtomicU64::new(0),
        }
    }
}

impl EngineState {
    /// The mode now.
    pub fn mode(&self) -> EngineMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => EngineMode::Paused,
            2 => EngineMode::Draining,
            _ => EngineMode::Running,
        }
    }

    /// Changes the mode; draining is for good.
    pub fn set_mode(&self, mode: EngineMode) {
        if self.mode() == EngineMode::Draining {
            return;
        }
        let code = match mode {
            EngineMode::Running => 0,
            EngineMode::Paused => 1,
            EngineMode::Draining => 2,
        };
        self.mode.store(code, Ordering::SeqCst);
    }

    /// Counts requests this engine sent.
    pub fn dispatched(&self, n: u64) {
        self.dispatched.fetch_add(n, Ordering::Relaxed);
    }
}

/// An engine of the crawl as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EngineView {
    /// Its id (`HOST-PID-STAMP`).
    pub id: String,
    /// Its admin address, where other engines forward changes.
    pub addr: String,
    /// `leader`, `follower` or `unknown`.
    pub role: String,
    /// `running`, `paused` or `draining`.
    pub state: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: f64,
    /// Requests it sent.
    pub dispatched: u64,
}

fn key(prefix: &str, id: &str) -> String {
    super::keys::Keys::with_prefix(prefix).engine(id)
}

fn redis_err(what: &'static str) -> impl FnOnce(redis::RedisError) -> super::ClusterError {
    move |source| super::ClusterError::Redis { what, source }
}

/// This engine's round (see [`RedisFrontier::round`]): its heartbeat and report, the leader
/// lease, and the leader's chores, in one call; takes up the mode an operator asked of it.
pub async fn round(
    redis: &mut super::RedisFrontier,
    node: &registry::Node,
    state: &EngineState,
    max: usize,
) -> Result<super::frontier::Round, super::ClusterError> {
    let report = (
        state.mode().as_str(),
        state.dispatched.load(Ordering::Relaxed),
    );
    let round = redis
        .round(&node.id, &node.addr, LEADER_TTL, report, max)
        .await?;
    if let Some(mode) = round.wanted.as_deref().and_then(EngineMode::parse) {
        state.set_mode(mode);
    }
    Ok(round)
}

/// Every live engine of the crawl.
pub async fn list(
    conn: &mut RedisConn,
    prefix: &str,
) -> Result<Vec<EngineView>, super::ClusterError> {
    let nodes = registry::live(conn, prefix, NodeKind::Engine)
        .await
        .map_err(|e| super::ClusterError::Redis {
            what: "list engines",
            source: e.source,
        })?;
    // Asked of the crawl's own slot: on a Redis Cluster a bare TIME goes to any node.
    let (secs, micros): (u64, u64) = redis::Script::new("return redis.call('TIME')")
        .key(prefix)
        .invoke_async(conn)
        .await
        .map_err(redis_err("read the time"))?;
    let now_ms = secs * 1000 + micros / 1000;
    let mut views = Vec::new();
    for node in nodes {
        let (report, deadline): (std::collections::HashMap<String, String>, Option<f64>) =
            redis::pipe()
                .hgetall(key(prefix, &node.id))
                .zscore(super::keys::Keys::with_prefix(prefix).engines(), &node.id)
                .query_async(conn)
                .await
                .map_err(redis_err("read an engine"))?;
        let beat = deadline.map_or(0.0, |d| d - LEADER_TTL.as_millis() as f64);
        views.push(EngineView {
            id: node.id,
            addr: node.addr,
            role: report
                .get("role")
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
            state: report
                .get("state")
                .cloned()
                .unwrap_or_else(|| "running".into()),
            heartbeat_age_secs: ((now_ms as f64 - beat) / 1000.0).max(0.0),
            dispatched: report
                .get("dispatched")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        });
    }
    views.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(views)
}

/// Asks engine `id` to change its mode; `None` when no live engine has that id. The engine
/// takes it up on its next heartbeat (within a second).
pub async fn ask(
    conn: &mut RedisConn,
    prefix: &str,
    id: &str,
    mode: EngineMode,
) -> Result<Option<EngineView>, super::ClusterError> {
    let Some(mut view) = list(conn, prefix).await?.into_iter().find(|e| e.id == id) else {
        return Ok(None);
    };
    // An engine that expired since it was listed leaves no key behind without a lifetime.
    let _: i64 = redis::Script::new(
        "redis.call('HSET', KEYS[1], 'wanted', ARGV[1])
         if redis.call('PTTL', KEYS[1]) < 0 then
           redis.call('PEXPIRE', KEYS[1], ARGV[2])
         end
         return 1",
    )
    .key(key(prefix, id))
    .arg(mode.as_str())
    .arg(LEADER_TTL.as_millis() as u64)
    .invoke_async(conn)
    .await
    .map_err(redis_err("ask an engine"))?;
    if view.state != EngineMode::Draining.as_str() {
        view.state = mode.as_str().to_owned();
    }
    Ok(Some(view))
}

/// What the admin API needs of a shared crawl.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    /// The crawl's Redis.
    pub conn: RedisConn,
    /// The crawl's key prefix.
    pub prefix: String,
    /// This engine's id.
    pub engine: String,
    /// This engine's role, as the leader job last saw it.
    pub role: watch::Receiver<Role>,
    /// How long an admin change waits for a leader to forward it to.
    pub forward_wait: Duration,
    /// Whether the admin servers speak HTTPS (`--admin_tls_cert/--admin_tls_key`), so that
    /// changes are sent to the leader's over HTTPS.
    pub admin_https: bool,
    /// The CAs trusted for the leader's admin server over HTTPS.
    pub admin_trust: AdminTrust,
}

/// The CAs an engine trusts for another engine's admin server over HTTPS.
#[derive(Clone, Debug)]
pub enum AdminTrust {
    /// Only this CA (PEM, `--admin_tls_ca`).
    Only(Vec<u8>),
    /// The system's roots, and this CA (PEM, `--tls_ca`) when given.
    SystemAnd(Option<Vec<u8>>),
}
