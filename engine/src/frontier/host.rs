//! One host's pacing: its queue, its in-flight count, its delay and back-off, and its
//! robots.txt state.

use super::Kind;
use super::entry::Queued;
use crate::robots::Rules;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// What is known of a host's robots.txt.
#[derive(Debug)]
pub(super) enum RobotsState {
    /// The robots.txt request is at the front of the queue.
    Unknown,
    /// The robots.txt request is in flight; nothing else is sent.
    Fetching,
    /// Known.
    Known(Rules),
}

/// One host: its queue, what it has in flight, and when it may be sent its next request.
#[derive(Debug)]
pub(super) struct Host {
    /// Its queued requests, the robots.txt one first while the rules are unknown.
    pub(super) pending: VecDeque<Queued>,
    /// Requests to it in flight.
    pub(super) in_flight: usize,
    /// When its next request may start.
    pub(super) next_allowed: Instant,
    /// Its robots.txt.
    pub(super) robots: RobotsState,
    /// `--delay`, raised by Crawl-delay.
    pub(super) delay: Duration,
    /// Extra delay after 429 and 503, halved on each success.
    pub(super) backoff: Duration,
    /// Pages sent to it (first tries only).
    pub(super) pages: u64,
    /// Whether it is in the ready round or the sleeping heap.
    pub(super) scheduled: bool,
}

impl Host {
    /// A host first seen `now`, paced by `delay`; its robots.txt is fetched first when
    /// `robots` (the caller queues that request).
    pub(super) fn new(now: Instant, delay: Duration, robots: bool) -> Host {
        Host {
            pending: VecDeque::new(),
            in_flight: 0,
            next_allowed: now,
            robots: if robots {
                RobotsState::Unknown
            } else {
                RobotsState::Known(Rules::AllowAll)
            },
            delay,
            backoff: Duration::ZERO,
            pages: 0,
            scheduled: false,
        }
    }

    /// Whether the host may be sent a request once its wait is over.
    pub(super) fn can_send(&self, per_host: usize) -> bool {
        match self.robots {
            RobotsState::Unknown => {
                self.in_flight == 0 && self.pending.front().is_some_and(|d| d.kind == Kind::Robots)
            }
            RobotsState::Fetching => false,
            RobotsState::Known(_) => !self.pending.is_empty() && self.in_flight < per_host,
        }
    }

    /// Why a page must not be sent, if it must not.
    pub(super) fn refusal(&self, d: &Queued, max_pages: Option<u64>) -> Option<&'static str> {
        match &self.robots {
            RobotsState::Known(Rules::DisallowAll) => return Some("robots_unavailable"),
            RobotsState::Known(rules) if !rules.allows(&d.url) => {
                return Some("robots_disallowed");
            }
            _ => {}
        }
        // Retries of a page already counted do not count again.
        let first_try = d.attempts == 0 && d.requeues == 0;
        (first_try && max_pages.is_some_and(|max| self.pages >= max)).then_some("host_page_cap")
    }
}
