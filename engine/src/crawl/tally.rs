//! What became of each request, as the crawl counts it (see `Figures::count`: the task's
//! figures, the crawl's summary and the metrics move together).

use super::Crawl;
use crate::frontier::Frontier;
use crate::frontier::{Dispatched, Kind};

/// What became of a request (or a URL offered to the queue), as counted.
#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome<'a> {
    /// A page fetched and parsed, with its HTTP status and what it yielded.
    Page {
        /// The HTTP status.
        status: u16,
        /// Items extracted.
        items: u64,
        /// Items dropped for a missing required field.
        dropped: u32,
        /// Items cut by the result budget.
        truncated: u32,
    },
    /// A redirect answer.
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// A page that failed for good.
    Failed {
        /// The HTTP status, or 0 when there was none.
        status: u16,
        /// Why, as a stable label.
        reason: &'a str,
    },
    /// A request taken from the queue and not sent (robots.txt, caps, a closed task).
    Skipped {
        /// Why.
        reason: &'a str,
    },
    /// A URL refused before it was queued (`host_page_cap`, `host_queue_full`).
    Refused {
        /// Why.
        reason: &'a str,
    },
}

impl<F: Frontier> Crawl<F> {
    /// Counts `outcome` for a request of `task`: in the task's figures, the summary and the
    /// metrics at once.
    pub(super) fn tally(&mut self, task: &str, outcome: Outcome<'_>) {
        self.count(task, true, outcome);
    }

    /// Counts `outcome` for request `d`. A page of an earlier run of its task (a shared
    /// crawl's run replaced while it was in flight) counts in the summary and metrics only:
    /// its run's figures were recorded when the run ended.
    pub(super) fn tally_of(&mut self, d: &Dispatched, outcome: Outcome<'_>) {
        let current = self.is_current(d);
        self.count(&d.request.task, current, outcome);
    }

    /// Whether `d` belongs to its task's run going here (robots.txt requests always do).
    pub(super) fn is_current(&self, d: &Dispatched) -> bool {
        d.kind == Kind::Robots
            || self
                .tasks
                .named(&d.request.task)
                .is_none_or(|t| d.run >= t.run_seq)
    }

    fn count(&mut self, task: &str, in_task: bool, outcome: Outcome<'_>) {
        let t = self.tasks.named_mut(task).filter(|_| in_task);
        self.figures.count(t, outcome);
    }
}
