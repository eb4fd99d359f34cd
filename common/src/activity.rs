//! Counting work in progress, so a server can drain: refuse new work, wait for the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Work in progress on a server, and whether it is draining.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    in_flight: AtomicU64,
    draining: AtomicBool,
    idle: Notify,
}

/// One piece of work; it counts as in progress until dropped.
#[derive(Debug)]
pub struct Working {
    inner: Arc<Inner>,
}

impl Drop for Working {
    fn drop(&mut self) {
        if self.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Activity {
    /// Counts a new piece of work, or refuses it (`None`) while draining.
    pub fn start(&self) -> Option<Working> {
        if self.inner.draining.load(Ordering::Acquire) {
            return None;
        }
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Working {
            inner: self.inner.clone(),
        })
    }

    /// Work in progress.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Whether new work is refused.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Refuses new work and waits (at most `timeout`) for the work in progress to end; returns
    /// whether it all did.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.draining.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_refuses_new_work_and_waits_for_the_rest() {
        let activity = Activity::default();
        let working = activity.start().expect("accepted");
        let drainer = activity.clone();
        let drained = tokio::spawn(async move { drainer.drain(Duration::from_secs(10)).await });
        drop(working);
        assert!(
            drained.await.expect("join"),
            "drain ends when the last work ends"
        );
        assert!(activity.start().is_none(), "no new work once draining");
    }

    #[tokio::test]
    async fn drain_gives_up_at_the_timeout() {
        let activity = Activity::default();
        let _stuck = activity.start().expect("accepted");
        assert!(!activity.drain(Duration::from_millis(20)).await);
    }
}
