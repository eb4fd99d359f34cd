//! Queue entries, compact since the queue may hold millions: a URL, a few small numbers,
//! and the index of the request's interned origin.

use super::{Dispatched, Kind};
use common::Request;
use std::collections::BTreeMap;

/// Everything of a request but its URL, depth and history: shared by the many requests that
/// have it (one per parser, task, metadata and spider in use), so the queue stores an index.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    parser: String,
    task: String,
    meta: BTreeMap<String, String>,
    spider: Option<u64>,
}

/// A queued request, compact, since the queue may hold millions: the URL, a few small
/// numbers, and the index of its [`Origin`]. Its host is the queue it sits in.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) url: Box<str>,
    pub(super) id: u64,
    depth: u32,
    redirects: u32,
    origin: u32,
    pub(super) attempts: u16,
    pub(super) requeues: u16,
    last_worker: Option<u32>,
    pub(super) kind: Kind,
    /// Worker deaths it was in flight for; `None` for nearly every entry.
    deaths: Option<Box<[u64]>>,
}

impl Queued {
    /// Whether a worker died holding this request.
    pub(super) fn is_suspect(&self) -> bool {
        self.deaths.is_some()
    }
}

/// The origins in use, interned: a queue entry stores an index.
#[derive(Debug, Default)]
pub(super) struct Origins(Vec<Origin>);

impl Origins {
    /// The index of `request`'s origin, added if new. Origins are few (one per parser, task,
    /// metadata and spider in use); the last one used is checked first.
    pub(super) fn intern(&mut self, request: &Request) -> u32 {
        let same = |o: &Origin| {
            o.parser == request.parser
                && o.task == request.task
                && o.spider == request.spider
                && o.meta == request.meta
        };
        if let Some(i) = self.0.iter().rposition(same) {
            return i as u32;
        }
        self.0.push(Origin {
            parser: request.parser.clone(),
            task: request.task.clone(),
            meta: request.meta.clone(),
            spider: request.spider,
        });
        (self.0.len() - 1) as u32
    }

    /// The task of a queue entry.
    pub(super) fn task(&self, q: &Queued) -> &str {
        &self.0[q.origin as usize].task
    }

    /// A new queue entry for `request` (no history yet).
    pub(super) fn entry(
        &mut self,
        request: Request,
        id: u64,
        redirects: u32,
        kind: Kind,
    ) -> Queued {
        let origin = self.intern(&request);
        Queued {
            url: request.url.into_boxed_str(),
            id,
            depth: request.depth,
            redirects,
            origin,
            attempts: 0,
            requeues: 0,
            last_worker: None,
            kind,
            deaths: None,
        }
    }

    /// Turns a dispatched request back into a queue entry.
    pub(super) fn compact(&mut self, d: Dispatched) -> Queued {
        let origin = self.intern(&d.request);
        Queued {
            url: d.request.url.into_boxed_str(),
            id: d.id,
            depth: d.request.depth,
            redirects: d.redirects,
            origin,
            attempts: d.attempts.min(u32::from(u16::MAX)) as u16,
            requeues: d.requeues.min(u32::from(u16::MAX)) as u16,
            last_worker: d.last_worker.map(|w| w as u32),
            kind: d.kind,
            deaths: (!d.deaths.is_empty()).then(|| d.deaths.into_boxed_slice()),
        }
    }

    /// Rebuilds the full request of a queue entry of `host`.
    pub(super) fn expand(&self, q: Queued, host: &str) -> Dispatched {
        let o = &self.0[q.origin as usize];
        Dispatched {
            id: q.id,
            request: Request {
                url: q.url.into_string(),
                parser: o.parser.clone(),
                depth: q.depth,
                task: o.task.clone(),
                meta: o.meta.clone(),
                spider: o.spider,
            },
            host: host.to_owned(),
            kind: q.kind,
            attempts: u32::from(q.attempts),
            requeues: u32::from(q.requeues),
            deaths: q.deaths.map(Vec::from).unwrap_or_default(),
            last_worker: q.last_worker.map(|w| w as usize),
            redirects: q.redirects,
            run: 0,
        }
    }
}
