//! How a request is kept in Redis: the request and its history, in one compact record that
//! any engine of the crawl can turn back into a request to send.

use crate::frontier::{Dispatched, Kind};
use common::Request;
use serde::{Deserialize, Serialize};

/// A queued request as stored in Redis.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    request: Request,
    robots: bool,
    redirects: u32,
    attempts: u32,
    requeues: u32,
    deaths: Vec<u64>,
    /// The scheduled run it belongs to (0: its task has no schedule).
    run: u64,
}

/// Encodes a new request of `kind` of run `run`, found after `redirects` hops.
pub fn encode_new(request: &Request, kind: Kind, redirects: u32, run: u64) -> Vec<u8> {
    encode(&Entry {
        request: request.clone(),
        robots: kind == Kind::Robots,
        redirects,
        attempts: 0,
        requeues: 0,
        deaths: Vec::new(),
        run,
    })
}

/// Where a new URL goes: its host, its fingerprint, the redirect hops that led to it and
/// its task's run (0 for a task without a schedule).
#[derive(Debug)]
pub struct Place {
    /// The host key.
    pub host: String,
    /// Its fingerprint, salted by task (and run).
    pub fingerprint: u64,
    /// Redirect hops that led to it.
    pub redirects: u32,
    /// Its task's run.
    pub run: u64,
}

/// The record of a URL to offer: `request` at `place`, with the host's robots.txt request at
/// `robots_url` when this is the first URL of the host the offering engine sends.
pub fn new_url(request: &Request, place: Place, robots_url: Option<String>) -> super::NewUrl {
    let robots = robots_url.map_or_else(Vec::new, |url| {
        let robots = Request {
            url,
            ..request.clone()
        };
        encode_new(&robots, Kind::Robots, 0, 0)
    });
    super::NewUrl {
        fingerprint: place.fingerprint,
        entry: encode_new(request, Kind::Page, place.redirects, place.run),
        robots,
        run: super::tasks::run_key(&request.task, place.run),
        // A redirect's target is offered once, like a seed: a full host queue takes it.
        bounded: place.redirects == 0,
        host: place.host,
    }
}

/// Encodes a request taken before, with its history (retries spent, deaths seen).
pub fn encode_again(d: &Dispatched) -> Vec<u8> {
    encode(&Entry {
        request: d.request.clone(),
        robots: d.kind == Kind::Robots,
        redirects: d.redirects,
        attempts: d.attempts,
        requeues: d.requeues,
        deaths: d.deaths.clone(),
        run: d.run,
    })
}

fn encode(entry: &Entry) -> Vec<u8> {
    // A request always serializes: it is plain strings, numbers and a map of strings.
    bincode::serialize(entry).unwrap_or_default()
}

/// A queued request as versions before scheduled runs stored it (its run is 0).
#[derive(Deserialize)]
struct EntryWithoutRun {
    request: Request,
    robots: bool,
    redirects: u32,
    attempts: u32,
    requeues: u32,
    deaths: Vec<u64>,
}

/// Reads a stored request back, leased under `lease`; `None` when the record is unreadable
/// (written by another version). Records from before runs were kept read as run 0, so a
/// crawl started by an older engine carries on.
pub fn decode(bytes: &[u8], lease: u64, host: String) -> Option<Dispatched> {
    use bincode::Options;
    let options = || {
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(common::transport::MAX_FRAME_BYTES as u64)
    };
    // A current record is longer than an old one: an old one ends before its run.
    let entry: Entry = match options().deserialize(bytes) {
        Ok(entry) => entry,
        Err(_) => {
            let old: EntryWithoutRun = options().deserialize(bytes).ok()?;
            Entry {
                request: old.request,
                robots: old.robots,
                redirects: old.redirects,
                attempts: old.attempts,
                requeues: old.requeues,
                deaths: old.deaths,
                run: 0,
            }
        }
    };
    Some(Dispatched {
        id: lease,
        request: entry.request,
        host,
        kind: if entry.robots {
            Kind::Robots
        } else {
            Kind::Page
        },
        attempts: entry.attempts,
        requeues: entry.requeues,
        deaths: entry.deaths,
        last_worker: None,
        redirects: entry.redirects,
        run: entry.run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_its_history_survive_the_round_trip() {
        let request = Request {
            url: "http://a.test/x".into(),
            parser: "links".into(),
            depth: 3,
            task: "t".into(),
            meta: [("k".to_string(), "v".to_string())].into(),
            spider: Some(7),
        };
        let d = Dispatched {
            id: 1,
            request: request.clone(),
            host: "a.test:80".into(),
            kind: Kind::Page,
            attempts: 2,
            requeues: 1,
            deaths: vec![9],
            last_worker: Some(4),
            redirects: 1,
            run: 3,
        };
        let back = decode(&encode_again(&d), 77, "a.test:80".into()).expect("decodes");
        assert_eq!(back.id, 77);
        assert_eq!(back.request, request);
        assert_eq!((back.attempts, back.requeues, back.redirects), (2, 1, 1));
        assert_eq!(back.deaths, vec![9]);
        assert_eq!(back.run, 3);
        assert_eq!(back.last_worker, None, "worker indexes are per engine");
        let robots = decode(&encode_new(&request, Kind::Robots, 0, 0), 1, "h".into());
        assert_eq!(robots.map(|d| d.kind), Some(Kind::Robots));
        assert!(decode(b"\xff\xff", 1, "h".into()).is_none());
    }

    #[test]
    fn a_record_from_before_runs_reads_as_run_zero() {
        #[derive(Serialize)]
        struct Old {
            request: Request,
            robots: bool,
            redirects: u32,
            attempts: u32,
            requeues: u32,
            deaths: Vec<u64>,
        }
        let request = Request {
            url: "http://a.test/x".into(),
            parser: "links".into(),
            depth: 1,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        };
        let old = bincode::serialize(&Old {
            request: request.clone(),
            robots: false,
            redirects: 2,
            attempts: 1,
            requeues: 0,
            deaths: vec![5],
        })
        .expect("encode");
        let back = decode(&old, 9, "a.test:80".into()).expect("an old record reads");
        assert_eq!(back.request, request);
        assert_eq!((back.redirects, back.attempts, back.run), (2, 1, 0));
        assert_eq!(back.deaths, vec![5]);
    }
}
