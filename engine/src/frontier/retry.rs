//! Requests waiting out a back-off before they go back to their host's queue.

use super::Dispatched;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::time::Instant;

/// A request waiting out its retry back-off.
#[derive(Debug)]
struct Deferred {
    at: Instant,
    seq: u64,
    dispatched: Dispatched,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deferred {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Requests waiting out their retry back-off, earliest first.
#[derive(Debug, Default)]
pub(super) struct Retries {
    heap: BinaryHeap<Reverse<Deferred>>,
    next_seq: u64,
}

impl Retries {
    /// Holds `dispatched` until `at`.
    pub(super) fn push(&mut self, dispatched: Dispatched, at: Instant) {
        self.next_seq += 1;
        self.heap.push(Reverse(Deferred {
            at,
            seq: self.next_seq,
            dispatched,
        }));
    }

    /// The next request whose wait is over at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Dispatched> {
        if self.next_at()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(d)| d.dispatched)
    }

    /// When the next wait ends.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }
}
