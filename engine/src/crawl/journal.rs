//! The crawl's journal: the changes of each loop turn, in order, for the durable state (a
//! page's links, items and removal from the queue go as one group, committed together or not
//! at all), and the ids it gives queued requests and spooled pages.

use crate::state::{Change, StateError, StateHandle};

/// What the crawl records of itself, and where.
pub(super) struct Journal {
    state: StateHandle,
    /// Whether changes are kept (a crawl without a state directory, or one whose state is
    /// kept by its frontier, records none).
    durable: bool,
    pending: Vec<Change>,
    next_id: u64,
    next_seq: u64,
}

impl Journal {
    /// A journal writing to `state`, keeping changes when `durable` says so.
    pub(super) fn new(state: StateHandle, durable: bool) -> Journal {
        Journal {
            state,
            durable,
            pending: Vec::new(),
            next_id: 1,
            next_seq: 1,
        }
    }

    /// Whether changes are kept.
    pub(super) fn durable(&self) -> bool {
        self.durable
    }

    /// The state written to.
    pub(super) fn state(&self) -> &StateHandle {
        &self.state
    }

    /// Records `change` with the turn, when changes are kept.
    pub(super) fn record(&mut self, change: Change) {
        if self.durable {
            self.pending.push(change);
        }
    }

    /// The id the next queued request gets.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The id [`Journal::next_id`] gave was used.
    pub(super) fn id_used(&mut self) {
        self.next_id += 1;
    }

    /// A request of an earlier run of the crawl holds id `id`: ids go on after it.
    pub(super) fn id_restored(&mut self, id: u64) {
        self.next_id = self.next_id.max(id + 1);
    }

    /// The spool sequence number of the next page's items.
    pub(super) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The spool of an earlier run of the crawl ends at `last`: sequence numbers go on after.
    pub(super) fn seq_restored(&mut self, last: Option<u64>) {
        self.next_seq = last.map_or(1, |seq| seq + 1);
    }

    /// Sends the turn's changes to the state writer as one group.
    pub(super) async fn commit_turn(&mut self) -> Result<(), StateError> {
        let changes = std::mem::take(&mut self.pending);
        self.state.record(changes).await
    }
}
