//! How a request is kept in Redis: the request and its history, in one compact record that
//! any engine of the crawl can turn back into a request to send.

pub use crate::frontier::Place;
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
        run: crate::tasks::record::run_key(&request.task, place.run),
        // A redirect's target is offered once, like a seed: a full host queue takes it.
        bounded: place.redirects == 0,
        host: place.host,
        task: request.task.clone(),
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

/// The start of every record this version writes: a record without it was written before
/// heads were (its first bytes are a URL's length, never this large).
const MAGIC: &[u8; 4] = b"spn\x02";

/// What every version can read of a record, whatever follows it: whether it is a
/// robots.txt request, and the key of its scheduled run ("RUN:TASK", empty for none). It
/// never changes, so a record another version wrote can still be counted out of its run.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Head {
    robots: bool,
    run: String,
}

fn encode(entry: &Entry) -> Vec<u8> {
    let head = Head {
        robots: entry.robots,
        run: crate::tasks::record::run_key(&entry.request.task, entry.run),
    };
    let mut bytes = MAGIC.to_vec();
    // A request always serializes: it is plain strings, numbers and a map of strings.
    bytes.extend(bincode::serialize(&head).unwrap_or_default());
    bytes.extend(bincode::serialize(entry).unwrap_or_default());
    bytes
}

/// What is known of a record that does not read as a request (written by another version,
/// or damaged): enough to end it cleanly.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Its head reads: whether it was a robots.txt request and its run's key.
    Known {
        /// Whether it was its host's robots.txt request.
        robots: bool,
        /// The key of its scheduled run (empty for none).
        run: String,
    },
    /// Nothing of it reads.
    Unknown,
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

/// Reads a stored request back, leased under `lease`; what is known of it when it does not
/// read. Records from before runs were kept read as run 0, so a crawl started by an older
/// engine carries on.
pub fn decode(bytes: &[u8], lease: u64, host: String) -> Result<Dispatched, Unreadable> {
    use bincode::Options;
    let options = || {
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(common::transport::MAX_FRAME_BYTES as u64)
    };
    let entry: Entry = match bytes.strip_prefix(MAGIC.as_slice()) {
        Some(rest) => {
            let head: Head = options()
                .deserialize(rest)
                .map_err(|_| Unreadable::Unknown)?;
            let body = options()
                .serialized_size(&head)
                .ok()
                .and_then(|n| rest.get(n as usize..))
                .ok_or(Unreadable::Unknown)?;
            options().deserialize(body).map_err(|_| Unreadable::Known {
                robots: head.robots,
                run: head.run,
            })?
        }
        // A current record is longer than an old one: an old one ends before its run.
        None => match options().deserialize(bytes) {
            Ok(entry) => entry,
            Err(_) => {
                let old: EntryWithoutRun = options()
                    .deserialize(bytes)
                    .map_err(|_| Unreadable::Unknown)?;
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
        },
    };
    Ok(Dispatched {
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
        assert_eq!(robots.map(|d| d.kind), Ok(Kind::Robots));
        assert_eq!(
            decode(b"\xff\xff", 1, "h".into()).err(),
            Some(Unreadable::Unknown)
        );
    }

    #[test]
    fn a_record_whose_request_does_not_read_still_tells_its_run_and_kind() {
        let request = Request {
            url: "http://a.test/x".into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        };
        let mut record = encode_new(&request, Kind::Robots, 0, 4);
        // Another version's request: the same head, a body this one cannot read.
        record.truncate(record.len() - 20);
        assert_eq!(
            decode(&record, 1, "h".into()).err(),
            Some(Unreadable::Known {
                robots: true,
                run: "4:t".into()
            })
        );
        // A record written before heads were still reads.
        let headless = bincode::serialize(&Entry {
            request: request.clone(),
            robots: false,
            redirects: 0,
            attempts: 1,
            requeues: 0,
            deaths: Vec::new(),
            run: 2,
        })
        .expect("encode");
        let back = decode(&headless, 1, "h".into()).expect("reads");
        assert_eq!((back.request, back.run, back.attempts), (request, 2, 1));
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
