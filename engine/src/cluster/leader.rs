//! The jobs of a shared crawl's leader, and every engine's heartbeat: one engine at a time
//! holds the leader lease (with a fencing epoch) and seeds the crawl once, returns expired
//! leases to their queues, moves due retries back, and decides when the crawl is done.
//! Another engine takes over within the lease's length when it dies.

use super::engines::{self, EngineState};
use super::frontier::{NewUrl, RedisFrontier};
use common::registry::{self, Node, NodeKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the leader lease lasts unless renewed; a dead leader is replaced after it.
pub const LEADER_TTL: Duration = Duration::from_secs(6);

/// How often the lease is renewed (or tried for) and the leader's jobs run.
pub const LEADER_EVERY: Duration = Duration::from_secs(1);

/// Expired leases or due retries moved per round at most.
const BATCH: usize = 1_000;

/// Whether this engine leads the crawl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Not known yet (Redis not reached).
    #[default]
    Unknown,
    /// It leads, under this epoch.
    Leader(u64),
    /// Another engine leads.
    Follower,
}

impl Role {
    /// The role's name, for the admin API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Leader(_) => "leader",
            Role::Follower => "follower",
        }
    }
}

/// Starts the leader job for engine `node` (its id and admin address): it runs until `stop`,
/// publishing the engine's role.
pub fn spawn(
    mut redis: RedisFrontier,
    node: Node,
    seeds: Vec<NewUrl>,
    state: Arc<EngineState>,
    stop: CancellationToken,
) -> (watch::Receiver<Role>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Role::Unknown);
    let handle = tokio::spawn(async move {
        let mut every = tokio::time::interval(LEADER_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut seeded = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            match round(&mut redis, &node, &seeds, &mut seeded, &state).await {
                Ok(role) => {
                    failing = false;
                    let before = *tx.borrow();
                    if role != before {
                        match role {
                            Role::Leader(epoch) => info!(epoch, "leading the crawl"),
                            Role::Follower if matches!(before, Role::Leader(_)) => {
                                warn!("another engine leads the crawl now; following")
                            }
                            _ => {}
                        }
                    }
                    tx.send_replace(role);
                }
                Err(e) => {
                    if !failing {
                        warn!(cause = %e, "leader election failed; trying again");
                    }
                    failing = true;
                    // Out of touch with Redis, it cannot know whether it still leads.
                    tx.send_replace(Role::Unknown);
                }
            }
        }
        // A clean exit hands the lease on at once and leaves the registry.
        let mut conn = redis.connection();
        let prefix = redis.prefix().to_owned();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = registry::leave(&mut conn, &prefix, NodeKind::Engine, &node.id).await;
            let _ = redis.resign(&node.id).await;
        })
        .await;
    });
    (rx, handle)
}

/// One round: heartbeat, election and the leader's jobs in one call, then the seeding.
async fn round(
    redis: &mut RedisFrontier,
    node: &Node,
    seeds: &[NewUrl],
    seeded: &mut bool,
    state: &EngineState,
) -> Result<Role, super::ClusterError> {
    let round = engines::round(redis, node, state, BATCH).await?;
    let Some(epoch) = round.epoch else {
        return Ok(Role::Follower);
    };
    if round.reaped > 0 {
        info!(
            reaped = round.reaped,
            "leases of engines that stopped answering went back to the queue"
        );
    }
    // Every leader-only write carries the epoch: a stale one changes nothing. Seeding is
    // tried until it is known done, and never holds up the other jobs.
    if !*seeded && !seeds.is_empty() {
        match redis.seed(epoch, seeds).await {
            Ok(Some(now)) => {
                if now {
                    info!(seeds = seeds.len(), "crawl seeded");
                }
                *seeded = true;
            }
            Ok(None) => {}
            Err(e) => warn!(cause = %e, "could not seed the crawl; trying again"),
        }
    }
    Ok(Role::Leader(epoch))
}
