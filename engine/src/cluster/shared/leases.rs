//! The leases an engine holds, kept alive on a task of their own.

use super::*;

/// The leases an engine holds, shared with the task that extends them.
#[derive(Clone, Debug, Default)]
pub(super) struct Held(std::sync::Arc<std::sync::Mutex<HashSet<u64>>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, lease: u64) {
        self.lock().insert(lease);
    }

    pub(super) fn remove(&self, lease: u64) {
        self.lock().remove(&lease);
    }

    pub(super) fn contains(&self, lease: u64) -> bool {
        self.lock().contains(&lease)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(super) fn ids(&self) -> Vec<u64> {
        self.lock().iter().copied().collect()
    }
}

/// Extends the leases in `held` every third of `lease` until `stop`, on a task of its own so
/// that a crawl loop waiting (for a slow itemsaver, say) never lets a lease lapse under a
/// live engine. A lease found gone is dropped from `held`: its request is another's now.
pub(super) fn extend_leases(
    mut redis: RedisFrontier,
    held: Held,
    lease: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if held.is_empty() {
                continue;
            }
            match redis.extend_or_miss(&held.ids()).await {
                Ok(missing) => {
                    for lease in missing {
                        held.remove(lease);
                    }
                }
                Err(e) => debug!(cause = %e, "could not extend the leases; trying again"),
            }
        }
    });
}
