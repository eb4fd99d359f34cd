//! Self-registering nodes (cluster mode): workers, itemsavers and engines announce themselves
//! in Redis with a heartbeat and a time to live, and read who else is alive.
//!
//! A registration is a member of a sorted set scored by the time it expires (Redis's clock),
//! plus the address others should dial. Reading prunes what has expired, so a node that died
//! drops out after its TTL without anyone deleting it. Workers and itemsavers serve any crawl
//! and register under their own hash tag; engines register under their crawl's.

use redis::Script;
use redis::aio::ConnectionManager;
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
    conn: &mut ConnectionManager,
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
    conn: &mut ConnectionManager,
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
    conn: &mut ConnectionManager,
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
