//! Self-registering nodes (cluster mode): workers, itemsavers and engines announce themselves
//! in Redis with a heartbeat and a time to live, and read who else is alive.
//!
//! A registration is a member of a sorted set scored by the time it expires (Redis's clock),
//! plus the address others should dial. Reading prunes what has expired, so a node that died
//! drops out after its TTL without anyone deleting it. Workers and itemsavers serve any crawl
//! and register under their own hash tag; engines register under their crawl's.

use crate::redis_conn::RedisConn;
use redis::Script;
use std::time::Duration;

/// The key prefix of the nodes that serve every crawl (workers and itemsavers).
pub const SHARED: &str = "{spinneret:registry}";

/// What sort of node registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A `worker`.
    Worker,
    /// An `itemsaver`.
    ItemSaver,
    /// An `engine` of a crawl.
    Engine,
}

impl NodeKind {
    fn set(self) -> &'static str {
        match self {
            NodeKind::Worker => "workers",
            NodeKind::ItemSaver => "itemsavers",
            NodeKind::Engine => "engines",
        }
    }
}

/// A live node as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its node id (stable for its life; a restart is a new node).
    pub id: String,
    /// The address others dial (`host:port`).
    pub addr: String,
}

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("redis registry: {what}: {source}")]
pub struct RegistryError {
    /// What was being done.
    pub what: &'static str,
    /// What the client said.
    #[source]
    pub source: redis::RedisError,
}

const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Registers a node, or renews its registration, until `ttl` from now.
pub async fn heartbeat(
    conn: &mut RedisConn,
    prefix: &str,
    kind: NodeKind,
    node: &Node,
    ttl: Duration,
) -> Result<(), RegistryError> {
    let script = Script::new(&format!(
        "{NOW}
redis.call('ZADD', KEYS[1] .. ':' .. ARGV[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', KEYS[1] .. ':node:' .. ARGV[2], 'addr', ARGV[3])
redis.call('PEXPIRE', KEYS[1] .. ':node:' .. ARGV[2], tonumber(ARGV[4]))
return 1"
    ));
    script
        .key(prefix)
        .arg(kind.set())
        .arg(&node.id)
        .arg(&node.addr)
        .arg(ttl.as_millis() as u64)
        .invoke_async::<i64>(conn)
        .await
        .map(drop)
        .map_err(|source| RegistryError {
            what: "heartbeat",
            source,
        })
}

/// Takes a node out at once (a clean shutdown), instead of waiting for its TTL.
pub async fn leave(
    conn: &mut RedisConn,
    prefix: &str,
    kind: NodeKind,
    id: &str,
) -> Result<(), RegistryError> {
    redis::pipe()
        .zrem(format!("{prefix}:{}", kind.set()), id)
        .del(format!("{prefix}:node:{id}"))
        .query_async::<()>(conn)
        .await
        .map_err(|source| RegistryError {
            what: "leave",
            source,
        })
}

/// The live nodes of `kind`, pruning those whose registration expired.
pub async fn live(
    conn: &mut RedisConn,
    prefix: &str,
    kind: NodeKind,
) -> Result<Vec<Node>, RegistryError> {
    let script = Script::new(&format!(
        "{NOW}
local set = KEYS[1] .. ':' .. ARGV[1]
local gone = redis.call('ZRANGEBYSCORE', set, '-inf', now)
for _, id in ipairs(gone) do
  redis.call('DEL', KEYS[1] .. ':node:' .. id)
end
redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
local out = {{}}
for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
  local addr = redis.call('HGET', KEYS[1] .. ':node:' .. id, 'addr')
  if addr then
    out[#out + 1] = id
    out[#out + 1] = addr
  end
end
return out"
    ));
    let flat: Vec<String> = script
        .key(prefix)
        .arg(kind.set())
        .invoke_async(conn)
        .await
        .map_err(|source| RegistryError {
            what: "list nodes",
            source,
        })?;
    Ok(flat
        .chunks_exact(2)
        .map(|c| Node {
            id: c[0].clone(),
            addr: c[1].clone(),
        })
        .collect())
}

/// An id unique to this process: host name (or `fallback`), pid and start time.
pub fn node_id(fallback: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!("{host}-{}-{:x}", std::process::id(), started & 0xff_ffff)
}

/// How long a registration lives without a heartbeat; heartbeats go three times as often.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6);

/// The flags of a node that registers itself (workers and itemsavers).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Register this node in the Redis at URL (`redis://host:port/db`) so that engines in
    /// cluster mode find it without --worker_hosts or --itemsaver_host.
    #[arg(
        long,
        value_name = "URL",
        env = "SPINNERET_REDIS",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// The address engines should dial (`host:port`), registered with --redis. Defaults to
    /// the listening address, which must then not be a wildcard like 0.0.0.0.
    #[arg(long, value_name = "HOST:PORT", env = "SPINNERET_ADVERTISE")]
    pub advertise: Option<String>,
}

/// Why a node could not be registered as asked.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// Listening on a wildcard address, the node cannot guess what others should dial.
    #[error(
        "--redis needs --advertise when listening on {0}: give the address engines should dial (host:port)"
    )]
    NeedsAdvertise(std::net::SocketAddr),
    /// `--advertise` is not `host:port`.
    #[error("--advertise {0:?}: {1}")]
    BadAdvertise(String, crate::HostSpecError),
    /// `--redis` is unusable.
    #[error(transparent)]
    BadUrl(#[from] crate::redis_conn::RedisConnectError),
}

impl RegistryArgs {
    /// The address to register for a node listening on `local`, when `--redis` is given.
    pub fn address(&self, local: std::net::SocketAddr) -> Result<Option<String>, AnnounceError> {
        if self.redis.is_none() {
            return Ok(None);
        }
        match &self.advertise {
            Some(addr) => crate::parse_host_spec(addr)
                .map(Some)
                .map_err(|e| AnnounceError::BadAdvertise(addr.clone(), e)),
            None if local.ip().is_unspecified() => Err(AnnounceError::NeedsAdvertise(local)),
            None => Ok(Some(local.to_string())),
        }
    }
}

/// Keeps a node registered while it runs: a heartbeat every third of [`DEFAULT_TTL`], and
/// a clean leave when `shutdown` fires. Redis being away is logged, never fatal: the node
/// serves engines that know its address all the same, and registers again when Redis is back.
pub fn announce(
    url: &str,
    tls: crate::redis_conn::RedisTls,
    kind: NodeKind,
    node: Node,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, AnnounceError> {
    RedisConn::check(url)?;
    let spec = url.to_owned();
    Ok(tokio::spawn(async move {
        let mut conn: Option<RedisConn> = None;
        let mut registered = false;
        let mut every = tokio::time::interval(DEFAULT_TTL / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if conn.is_none() {
                match RedisConn::connect(&spec, &tls).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(cause = %e, "cannot reach redis to register; trying again");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match heartbeat(c, SHARED, kind, &node, DEFAULT_TTL).await {
                Ok(()) if !registered => {
                    registered = true;
                    tracing::info!(node = %node.id, addr = %node.addr, "registered in redis");
                }
                Ok(()) => {}
                Err(e) => {
                    registered = false;
                    tracing::warn!(cause = %e, "registration heartbeat failed; trying again");
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            let left =
                tokio::time::timeout(Duration::from_secs(2), leave(c, SHARED, kind, &node.id));
            if let Ok(Err(e)) = left.await {
                tracing::warn!(cause = %e, "could not leave the registry; the entry expires on its own");
            }
        }
    }))
}
