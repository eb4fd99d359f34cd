//! The frontier: what is queued, per host, and the set of every URL ever seen.
//!
//! Hosts take turns, and a host already at its in-flight limit is skipped rather than
//! blocking the others, so one slow site never stalls the crawl.

use common::Request;
use std::collections::{HashMap, HashSet, VecDeque};

/// A request taken from the frontier, with what the engine tracks about it.
#[derive(Clone, Debug)]
pub struct Dispatched {
    /// The request sent to a worker.
    pub request: Request,
    /// Its host key (`host:port`), for the per-host accounting.
    pub host: String,
    /// Times a worker failed it (connection lost, deadline) rather than the site.
    pub worker_failures: u32,
}

#[derive(Debug, Default)]
struct HostQueue {
    pending: VecDeque<Dispatched>,
    in_flight: usize,
    in_ready: bool,
}

/// Per-host queues, a round-robin of hosts with work, and the seen set.
///
/// The seen set holds 64-bit fingerprints of canonical URLs (see [`common::fingerprint`]):
/// about 16 bytes a URL instead of the URL itself.
#[derive(Debug)]
pub struct Frontier {
    seen: HashSet<u64>,
    hosts: HashMap<String, HostQueue>,
    ready: VecDeque<String>,
    queued: usize,
    per_host: usize,
}

impl Frontier {
    /// An empty frontier allowing `per_host` requests in flight to one host.
    pub fn new(per_host: usize) -> Self {
        Frontier {
            seen: HashSet::new(),
            hosts: HashMap::new(),
            ready: VecDeque::new(),
            queued: 0,
            per_host: per_host.max(1),
        }
    }

    /// Records `fingerprint` as seen; returns whether it was new.
    pub fn mark_seen(&mut self, fingerprint: u64) -> bool {
        self.seen.insert(fingerprint)
    }

    /// Queues `request` unless its fingerprint was seen before; returns whether it was queued.
    pub fn push(&mut self, request: Request, host: String, fingerprint: u64) -> bool {
        if !self.mark_seen(fingerprint) {
            return false;
        }
        self.enqueue(
            Dispatched {
                request,
                host,
                worker_failures: 0,
            },
            false,
        );
        true
    }

    /// Puts a request that must be tried again at the front of its host's queue.
    pub fn requeue_front(&mut self, dispatched: Dispatched) {
        self.enqueue(dispatched, true);
    }

    fn enqueue(&mut self, d: Dispatched, front: bool) {
        let host = d.host.clone();
        let q = self.hosts.entry(host.clone()).or_default();
        if front {
            q.pending.push_front(d);
        } else {
            q.pending.push_back(d);
        }
        self.queued += 1;
        self.mark_ready(&host);
    }

    fn mark_ready(&mut self, host: &str) {
        if let Some(q) = self.hosts.get_mut(host)
            && !q.in_ready
            && !q.pending.is_empty()
            && q.in_flight < self.per_host
        {
            q.in_ready = true;
            self.ready.push_back(host.to_owned());
        }
    }

    /// Takes the next request from the next host below its in-flight limit.
    pub fn pop(&mut self) -> Option<Dispatched> {
        let host = self.ready.pop_front()?;
        let q = self.hosts.get_mut(&host)?;
        q.in_ready = false;
        let d = q.pending.pop_front()?;
        q.in_flight += 1;
        self.queued -= 1;
        self.mark_ready(&host);
        Some(d)
    }

    /// Records that a request to `host` finished, freeing a slot for that host.
    pub fn done(&mut self, host: &str) {
        let remove = match self.hosts.get_mut(host) {
            Some(q) => {
                q.in_flight = q.in_flight.saturating_sub(1);
                q.in_flight == 0 && q.pending.is_empty()
            }
            None => false,
        };
        if remove {
            self.hosts.remove(host);
        } else {
            self.mark_ready(host);
        }
    }

    /// Whether a request can be taken now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Requests waiting in the queues.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// URLs ever seen.
    pub fn seen(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> Request {
        Request {
            url: url.into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: Default::default(),
        }
    }

    fn push(f: &mut Frontier, host: &str, path: &str) -> bool {
        let url = format!("http://{host}{path}");
        f.push(req(&url), host.into(), common::fingerprint(&url))
    }

    #[test]
    fn push_says_whether_the_url_was_new() {
        let mut f = Frontier::new(8);
        assert!(push(&mut f, "a.test", "/1"));
        assert!(!push(&mut f, "a.test", "/1"));
        assert_eq!(f.queued(), 1);
        assert_eq!(f.seen(), 1);
    }

    #[test]
    fn hosts_take_turns() {
        let mut f = Frontier::new(8);
        for i in 0..3 {
            push(&mut f, "a.test", &format!("/{i}"));
        }
        push(&mut f, "b.test", "/0");
        let order: Vec<String> = std::iter::from_fn(|| f.pop()).map(|d| d.host).collect();
        assert_eq!(order, vec!["a.test", "b.test", "a.test", "a.test"]);
    }

    #[test]
    fn a_host_at_its_limit_does_not_block_others() {
        let mut f = Frontier::new(1);
        push(&mut f, "slow.test", "/1");
        push(&mut f, "slow.test", "/2");
        push(&mut f, "fast.test", "/1");
        push(&mut f, "fast.test", "/2");
        let first = f.pop().expect("first");
        assert_eq!(first.host, "slow.test");
        let second = f.pop().expect("second");
        assert_eq!(second.host, "fast.test");
        assert!(f.pop().is_none(), "both hosts are at their limit of 1");
        f.done("fast.test");
        assert_eq!(
            f.pop().expect("fast again").request.url,
            "http://fast.test/2"
        );
        f.done("slow.test");
        assert_eq!(
            f.pop().expect("slow again").request.url,
            "http://slow.test/2"
        );
    }

    #[test]
    fn requeued_requests_go_first() {
        let mut f = Frontier::new(8);
        push(&mut f, "a.test", "/1");
        push(&mut f, "a.test", "/2");
        let d = f.pop().expect("pop");
        f.done(&d.host);
        f.requeue_front(d);
        assert_eq!(f.pop().expect("pop").request.url, "http://a.test/1");
    }
}
