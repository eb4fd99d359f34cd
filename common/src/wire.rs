//! The messages that cross the wire between engine, workers and itemsaver.

use crate::value::Payload;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A page the engine asks a worker to fetch and parse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The absolute http(s) URL to fetch.
    pub url: String,
    /// The registry name of the parser to apply to the page.
    pub parser: String,
    /// Link distance from the seed (seeds are depth 0).
    pub depth: u32,
    /// The crawl task this request belongs to; items are stored under it.
    pub task: String,
    /// Free-form metadata carried from the request that discovered this one.
    #[serde(deserialize_with = "crate::budget::meta")]
    pub meta: BTreeMap<String, String>,
    /// The content hash of the spider whose rule `parser` names, for spider crawls; the worker
    /// was sent the spider once with `load_spider`.
    pub spider: Option<u64>,
}

/// How a page is rendered in a browser before it is parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderRequest {
    /// What the page waits for before its DOM is taken.
    pub wait: RenderWait,
    /// The longest wait for `wait`'s selector, in ms (0: the request's deadline).
    pub wait_ms: u64,
    /// Times to scroll to the bottom, for lazy lists.
    pub scroll: u32,
    /// Whether images, fonts and media are downloaded too.
    pub all_resources: bool,
}

/// What a rendered page waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RenderWait {
    /// The load event.
    #[default]
    Load,
    /// The load event, then the network quiet for a moment.
    NetworkIdle,
    /// An element matching this CSS selector.
    Selector(String),
}

/// A link a parser found, which the engine may schedule as a new request.
///
/// Kept lean on purpose: the engine fills in depth and task, so a page with fifty links
/// does not ship fifty copies of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FollowUp {
    /// The absolute URL, resolved against the page's `<base>` or final URL.
    pub url: String,
    /// The parser for the linked page; `None` means the same parser as the referring page.
    pub parser: Option<String>,
}

/// Facts about one completed fetch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchFacts {
    /// The URL after following redirects.
    pub final_url: String,
    /// The HTTP status of the final response.
    pub status: u16,
    /// Body bytes received (after decompression).
    pub bytes: u64,
    /// Wall time from sending the request to the end of the body, in milliseconds.
    pub elapsed_ms: u64,
    /// Whether the page was rendered in a browser (`elapsed_ms` is then its render time).
    #[serde(default)]
    pub rendered: bool,
}

/// What a worker returns for a successfully fetched and parsed page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParseResult {
    /// Items the parser extracted.
    #[serde(deserialize_with = "crate::budget::items")]
    pub items: Vec<Item>,
    /// Links the parser wants followed.
    #[serde(deserialize_with = "crate::budget::follow_ups")]
    pub requests: Vec<FollowUp>,
    /// How the fetch went.
    pub fetch: FetchFacts,
    /// Where the page redirects to (absolute), when the response was a redirect. Workers do
    /// not follow redirects themselves, so each hop goes through the engine's dedup and scope.
    pub redirect: Option<String>,
    /// Items dropped because a required field was missing.
    pub items_dropped: u32,
    /// Items not extracted because the page's result reached the worker's size limit.
    pub items_truncated: u32,
    /// How many position-keyed items of each kind the page yielded, for every kind its rule
    /// extracts: stored items of the page at higher positions are stale.
    #[serde(deserialize_with = "crate::budget::page_yields")]
    pub yields: Vec<PageYield>,
}

/// A robots.txt response, as fetched; the engine interprets it (RFC 9309).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotsFile {
    /// The HTTP status after up to five redirects.
    pub status: u16,
    /// The body (truncated at the worker's robots.txt size limit).
    pub body: Vec<u8>,
}

/// One extracted record, stored by the itemsaver under `(task, id)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Identity within the task: saving the same `(task, id)` again updates the item.
    pub id: String,
    /// The page the item came from.
    pub url: String,
    /// What sort of record this is (`page` for the `links` parser).
    pub kind: String,
    /// The crawl task the item belongs to.
    pub task: String,
    /// The item's fields.
    pub payload: Payload,
}

impl Item {
    /// Roughly how many bytes the item takes on the wire and in a batch: its text plus a
    /// little per field; what size limits are measured in.
    pub fn approx_bytes(&self) -> usize {
        let payload: usize = self
            .payload
            .iter()
            .map(|(k, v)| k.len() + v.approx_bytes())
            .sum();
        self.id.len() + self.url.len() + self.kind.len() + self.task.len() + payload + 32
    }

    /// Elements the item counts for in a message's decoding budget (see [`crate::budget`]).
    pub fn elements(&self) -> usize {
        1 + self.payload.len()
            + self
                .payload
                .values()
                .map(|v| match v {
                    crate::Value::List(items) => items.len(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

/// Why a worker could not produce a `ParseResult` for a request.
///
/// Errors are data on the wire: the engine counts them by [`FetchError::reason`] and decides
/// from [`FetchError::is_retryable`] whether trying again could help.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FetchError {
    /// The server answered with a non-success status.
    #[error("HTTP status {status}")]
    Http {
        /// The status code.
        status: u16,
        /// The value of `Retry-After` in seconds, when the server sent one.
        retry_after_secs: Option<u64>,
    },
    /// The connect or total time limit ran out.
    #[error("timed out after {elapsed_ms} ms")]
    Timeout {
        /// How long the fetch had run.
        elapsed_ms: u64,
    },
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The body was larger than the limit.
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The response was not HTML and the parser does not take other types.
    #[error("not HTML (content type {content_type:?})")]
    NotHtml {
        /// The Content-Type the server sent.
        content_type: String,
    },
    /// More redirects than the limit.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The limit.
        limit: u32,
    },
    /// The URL could not be fetched as given.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The request named a parser the worker does not have.
    #[error("unknown parser {0:?}")]
    UnknownParser(String),
    /// The request named a spider the worker was not sent (or has forgotten, after a restart).
    #[error("unknown spider {0:016x}")]
    UnknownSpider(u64),
    /// The parser failed on the page.
    #[error("parse failed: {0}")]
    Parse(String),
    /// The page's result would not fit in one RPC frame, or hold more elements than a peer
    /// decodes.
    #[error(
        "result of {bytes} bytes and {elements} elements is over the limit of {limit} bytes or {} elements",
        crate::budget::MAX_ELEMENTS
    )]
    ResultTooLarge {
        /// The encoded size of the result.
        bytes: u64,
        /// Items, fields and list values in it.
        elements: u64,
        /// The most bytes a result may take.
        limit: u64,
    },
    /// The worker is shutting down and takes no new work; send the request elsewhere.
    #[error("worker unavailable: {0}")]
    Unavailable(String),
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
    /// The host is, or resolves only to, an address the worker does not fetch from
    /// (loopback, private, link-local, ...): its SSRF guard.
    #[error("blocked address: {0}")]
    BlockedAddress(String),
    /// The response could not be written to the worker's WARC archive (`--warc`): the page
    /// is tried again, so that none is crawled without its record.
    #[error("archiving failed: {0}")]
    Archive(String),
    /// The page asked to be rendered and this worker does not render (`worker --render`).
    #[error("this worker does not render pages")]
    NoRenderer,
    /// The browser crashed (or ran out of memory) rendering the page.
    #[error("the browser crashed rendering the page")]
    RenderCrashed,
    /// The page's script never yielded by the deadline.
    #[error("the page's script did not yield by its deadline")]
    RenderHung,
    /// The page did not render by its deadline (it never finished loading).
    #[error("the page did not render by its deadline")]
    RenderTimeout,
    /// The browser failed otherwise (it could not start, or refused a step).
    #[error("rendering failed: {0}")]
    Render(String),
}

impl FetchError {
    /// A short stable label for summaries and metrics, such as `http_404` or `timeout`.
    pub fn reason(&self) -> String {
        match self {
            FetchError::Http { status, .. } => format!("http_{status}"),
            FetchError::Timeout { .. } => "timeout".into(),
            FetchError::Connect(_) => "connect".into(),
            FetchError::TooLarge { .. } => "too_large".into(),
            FetchError::NotHtml { .. } => "not_html".into(),
            FetchError::TooManyRedirects { .. } => "too_many_redirects".into(),
            FetchError::InvalidUrl(_) => "invalid_url".into(),
            FetchError::UnknownParser(_) => "unknown_parser".into(),
            FetchError::UnknownSpider(_) => "unknown_spider".into(),
            FetchError::Parse(_) => "parse".into(),
            FetchError::ResultTooLarge { .. } => "result_too_large".into(),
            FetchError::Unavailable(_) => "worker_unavailable".into(),
            FetchError::Other(_) => "other".into(),
            FetchError::BlockedAddress(_) => "blocked_address".into(),
            FetchError::Archive(_) => "archive_failed".into(),
            FetchError::NoRenderer => "no_render_worker".into(),
            FetchError::RenderCrashed => "render_crashed".into(),
            FetchError::RenderHung => "render_script_hung".into(),
            FetchError::RenderTimeout => "render_timeout".into(),
            FetchError::Render(_) => "render_failed".into(),
        }
    }

    /// Whether trying the request again later could succeed (connection errors, timeouts,
    /// 5xx and 429); permanent failures such as other 4xx are not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Http { status, .. } => *status == 429 || *status >= 500,
            FetchError::Timeout { .. } | FetchError::Connect(_) | FetchError::Archive(_) => true,
            // A browser that crashed or failed may have been another page's doing; a worker
            // that does not render should not have been sent it. A script that never yields
            // will not yield the next time either.
            FetchError::RenderCrashed
            | FetchError::RenderTimeout
            | FetchError::Render(_)
            | FetchError::NoRenderer => true,
            _ => false,
        }
    }
}

/// A parser a worker offers, as listed by `worker --list-parsers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParserInfo {
    /// The registry name requests use.
    pub name: String,
    /// One line on what it extracts.
    pub description: String,
}

/// What a worker says about itself when the engine connects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// An id for this worker process, stable for its life.
    pub node_id: String,
    /// The Spinneret version the worker runs.
    pub version: String,
    /// How many requests the worker runs at once; the engine keeps at most this many in flight.
    pub concurrency: u32,
    /// The User-Agent header the worker sends; its product token is matched against robots.txt.
    pub user_agent: String,
    /// The parsers it offers.
    pub parsers: Vec<ParserInfo>,
    /// Pages it renders at once in a browser (`worker --render`'s `--render_tabs`); 0 when
    /// it does not render. The engine keeps at most this many rendered pages in flight there.
    #[serde(default)]
    pub render_tabs: u32,
}

impl WorkerInfo {
    /// Whether it renders pages in a browser.
    pub fn renders(&self) -> bool {
        self.render_tabs > 0
    }
}

/// A worker's health and load, answered to the engine's heartbeats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// An id for this worker process, stable for its life.
    pub node_id: String,
    /// The Spinneret version it runs.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Requests it is working on.
    pub in_flight: u64,
    /// Requests it answered with a result.
    pub done: u64,
    /// Requests it answered with an error.
    pub failed: u64,
    /// Whether it refuses new work.
    pub paused: bool,
    /// Crawl requests it is working on now, by task (at most 64 tasks named; the rest as
    /// `other`).
    pub in_flight_by_task: std::collections::BTreeMap<String, u64>,
    /// Seconds the oldest of them has been going; a large figure is a stuck worker.
    pub oldest_in_flight_secs: Option<f64>,
    /// Whether it renders pages in a browser (`worker --render`).
    #[serde(default)]
    pub renders: bool,
}

/// Items for the itemsaver to store in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The items. A page's items travel in one batch, unless that page alone is refused as too
    /// large.
    #[serde(deserialize_with = "crate::budget::items")]
    pub items: Vec<Item>,
    /// For each page and kind of position-keyed items the batch covers, how many that page
    /// yields now: stored items of the page at higher positions are stale and deleted in the
    /// same transaction.
    #[serde(deserialize_with = "crate::budget::page_yields")]
    pub pages: Vec<PageYield>,
}

/// How many position-keyed items (ids `URL#KIND-N`) of one kind a page yielded when fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageYield {
    /// The task the items belong to.
    pub task: String,
    /// The page.
    pub url: String,
    /// The kind of item.
    pub kind: String,
    /// Items of that kind at positions `0..count`; those at `count` and beyond are stale.
    pub count: u32,
}

/// The itemsaver's answer to a batch: sent only after the batch is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveAck {
    /// Items in the batch that were committed (inserted or updated).
    pub saved: u64,
}

/// Why a worker did not load a spider file the engine sent (`load_spider`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LoadSpiderError {
    /// The file does not compile: the compiler's message, naming the rule and field.
    #[error("{0}")]
    Invalid(String),
    /// The worker could not load it now (its cache failed, or it is shutting down).
    #[error("the worker could not load it: {0}")]
    Unavailable(String),
}

/// Why the itemsaver could not store a batch; nothing of the batch was committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SaveError {
    /// The store failed (disk full, locked, corrupt, ...).
    #[error("store failed: {0}")]
    Store(String),
    /// The batch was refused as too large; a smaller one may pass.
    #[error("batch of {items} items is over the limit of {limit}")]
    BatchTooLarge {
        /// Items in the batch.
        items: u64,
        /// The limit.
        limit: u64,
    },
    /// One item of the batch can never be stored (too large, or invalid); the rest may be.
    #[error("item {index} ({id:?}) refused: {reason}")]
    Rejected {
        /// Its position in the batch.
        index: u32,
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn realistic_result() -> ParseResult {
        let mut payload = Payload::new();
        payload.insert("title".into(), Value::Text("A page".into()));
        payload.insert("outlinks".into(), Value::Int(50));
        ParseResult {
            items: vec![Item {
                id: "http://127.0.0.1:8000/p/1.html".into(),
                url: "http://127.0.0.1:8000/p/1.html".into(),
                kind: "page".into(),
                task: "default".into(),
                payload,
            }],
            requests: (0..50)
                .map(|i| FollowUp {
                    url: format!("http://127.0.0.1:8000/p/{i}.html"),
                    parser: None,
                })
                .collect(),
            fetch: FetchFacts {
                final_url: "http://127.0.0.1:8000/p/1.html".into(),
                status: 200,
                bytes: 53_000,
                elapsed_ms: 3,
                rendered: false,
            },
            redirect: None,
            items_dropped: 0,
            items_truncated: 0,
            yields: Vec::new(),
        }
    }

    #[test]
    fn parse_result_round_trips_through_bincode() {
        let r = realistic_result();
        let bytes = bincode::serialize(&r).expect("serialize");
        assert_eq!(
            bincode::deserialize::<ParseResult>(&bytes).expect("deserialize"),
            r
        );
    }

    #[test]
    fn errors_round_trip_through_bincode() {
        for e in [
            FetchError::Http {
                status: 503,
                retry_after_secs: Some(5),
            },
            FetchError::Timeout { elapsed_ms: 30_000 },
            FetchError::NotHtml {
                content_type: "image/png".into(),
            },
        ] {
            let bytes = bincode::serialize(&Err::<ParseResult, _>(e.clone())).expect("serialize");
            let back: Result<ParseResult, FetchError> = bincode::deserialize(&bytes).expect("de");
            assert_eq!(back, Err(e));
        }
    }

    #[test]
    fn retryable_errors_are_transient_ones() {
        assert!(
            FetchError::Http {
                status: 503,
                retry_after_secs: None
            }
            .is_retryable()
        );
        assert!(
            FetchError::Http {
                status: 429,
                retry_after_secs: None
            }
            .is_retryable()
        );
        assert!(
            !FetchError::Http {
                status: 404,
                retry_after_secs: None
            }
            .is_retryable()
        );
        assert!(!FetchError::TooLarge { limit: 1 }.is_retryable());
        assert_eq!(
            FetchError::Http {
                status: 404,
                retry_after_secs: None
            }
            .reason(),
            "http_404"
        );
    }
}
