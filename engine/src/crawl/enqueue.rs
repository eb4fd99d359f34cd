//! Queueing URLs: a task's seeds, the links of its pages and redirect targets, each once
//! per run, recorded durably with the turn.

use super::*;
use crate::frontier::Frontier;

impl<F: Frontier> Crawl<F> {
    /// Queues a URL (already canonical) unless its task's run saw it; records it durably.
    pub(super) fn push(&mut self, url: &Url, request: Request, found: Found, now: Instant) -> bool {
        let index = self.tasks.index(&request.task);
        let (salt, run) = index.map_or((0, 0), |i| {
            let task = self.tasks.at(i);
            (task.salt, task.run_seq)
        });
        let fp = fingerprint(url.as_str()) ^ salt;
        let host = host_key(url);
        let redirects = match found {
            Found::Redirect(hops) => hops,
            Found::Seed | Found::Link => 0,
        };
        // A seed or a redirect's target is offered once: only links, which other pages may
        // offer again, wait for room in a full queue.
        match self.frontier.admit(&host, salt, fp, found == Found::Link) {
            Admission::Open => {}
            Admission::Seen => return false,
            refused => {
                let reason = refused.reason().unwrap_or("refused");
                self.tally(&request.task, Outcome::Refused { reason });
                return false;
            }
        }
        let id = self.journal.next_id();
        let entry = self.journal.durable().then(|| request.clone());
        let task = request.task.clone();
        let place = crate::frontier::Place {
            host,
            fingerprint: fp,
            scope: salt,
            redirects,
            run,
        };
        let queued = self.frontier.push(url, request, place, id, now);
        if queued {
            self.journal.id_used();
            if let Some(t) = self.tasks.named_mut(&task) {
                t.open += 1;
                t.settle();
            }
            if let Some(request) = entry {
                self.journal.record(Pending::Seen(salt, fp));
                self.journal.record(Pending::Enqueue(
                    id,
                    crate::state::QueueEntry { request, redirects },
                ));
            }
        }
        queued
    }

    /// Queues the seeds of a task.
    pub(super) fn push_seeds(&mut self, def: &TaskDef, now: Instant) {
        for (seed, request) in def.seed_requests() {
            self.push(seed, request, Found::Seed, now);
        }
    }
}
