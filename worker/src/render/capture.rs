//! What a page's requests meet at the DevTools Fetch domain: images, fonts and media refused
//! unless the rule asks for them; the main document's response read for its status and
//! archived; a redirect of the main document, or a navigation of the main frame elsewhere,
//! stopped and reported like a plain fetch's redirect (so that the engine's scope, robots.txt
//! and redirect limit decide about the target); and, with `--warc_subresources`, every other
//! response archived too.
//!
//! The worker's guard proxy sees no HTTPS bodies, so the records are taken from the browser:
//! the response's status and headers, and its body (decoded) read as a stream up to the body
//! limit and handed back to the page. A body over the limit is not handed on: the request
//! fails (the page itself fails `too_large`, as a plain fetch would).

use super::RenderError;
use super::archive::Archive;
use crate::warc::WarcError;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnable, EventRequestPaused, FailRequestParams,
    FulfillRequestParams, HeaderEntry, RequestId, RequestPattern, RequestStage,
    TakeResponseBodyAsStreamParams,
};
use chromiumoxide::cdp::browser_protocol::io::{CloseParams, ReadParams};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use futures::StreamExt;
use std::sync::{Arc, Mutex};

/// Response bodies of one page read at once; more wait for one of these to end.
const READING: usize = 8;
/// Bytes asked of the browser per read of a body.
const CHUNK: i64 = 256 * 1024;
/// The largest body handed back to the page: Chromium refuses a DevTools message past about
/// 100 MiB (a fulfilled body goes as one, in base64), and drops the connection.
const MAX_HANDED_ON: u64 = 64 * 1024 * 1024;

/// How a page's requests are intercepted.
#[derive(Clone, Debug)]
pub struct Interception {
    /// The page's URL: a navigation of its frame to it again (a reload) is no redirect.
    pub page_url: String,
    /// Whether images, fonts and media are refused.
    pub block_heavy: bool,
    /// Where responses are archived, if anywhere.
    pub archive: Option<Archive>,
    /// The most body bytes of one response archived and handed on (`--max_body_bytes`, and
    /// at most [`MAX_HANDED_ON`]).
    pub max_body_bytes: u64,
    /// When the page's render ends: a body still being read then is cut there.
    pub deadline: std::time::Instant,
}

/// What the interception learnt about the page's main document.
#[derive(Clone, Debug, Default)]
pub struct MainDocument {
    /// Its HTTP status, once its response arrived (the last one, when it reloaded itself).
    pub status: Option<u16>,
    /// Where the main frame was sent instead of the page (a redirect, or a script or meta
    /// refresh navigating elsewhere), once it was.
    pub redirect: Option<String>,
    /// Whether its body passed the body limit (it is then not loaded).
    pub too_large: bool,
    /// Whether its body broke off while it was read (it is then not loaded).
    pub broke_off: bool,
}

/// A page's interception, running until the page closes.
pub struct Intercepting {
    shared: Arc<Shared>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

/// What the answering tasks and the page's render share.
struct Shared {
    main: Mutex<MainDocument>,
    /// The first archive write that failed, if one did: the page fails then, as a plain
    /// fetch whose record cannot be written does.
    archive_failed: Mutex<Option<WarcError>>,
}

impl Intercepting {
    /// Starts intercepting `page`'s requests (before it navigates), as `how` says; the main
    /// document is the first document response of `main_frame`.
    pub async fn start(
        page: &chromiumoxide::Page,
        main_frame: Option<FrameId>,
        how: Interception,
    ) -> Result<Intercepting, RenderError> {
        let nav = |e: chromiumoxide::error::CdpError| RenderError::Navigation(e.to_string());
        let mut paused = page
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(nav)?;
        let shared = Arc::new(Shared {
            main: Mutex::new(MainDocument::default()),
            archive_failed: Mutex::new(None),
        });
        let (stop_tx, stopped) = tokio::sync::watch::channel(false);
        let patterns = patterns(&how);
        let handler = Arc::new(Handler {
            page: page.clone(),
            main_frame,
            how,
            shared: shared.clone(),
            stop_tx,
            reading: tokio::sync::Semaphore::new(READING),
        });
        tokio::spawn(async move {
            // Each on a task of its own (as many as the page has requests paused), so that
            // a response that never ends holds up only itself; the main document's
            // decisions are taken under its lock, and body reads share a few permits.
            while let Some(event) = paused.next().await {
                let handler = handler.clone();
                tokio::spawn(async move { handler.answer(&event).await });
            }
        });
        page.execute(FetchEnable::builder().patterns(patterns).build())
            .await
            .map_err(nav)?;
        Ok(Intercepting { shared, stopped })
    }

    /// Waits until the page's own load ends early: its frame sent elsewhere, or its body
    /// over the limit or broken off (forever if none of these happens).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        if stopped.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What is known of the main document so far.
    pub fn main(&self) -> MainDocument {
        lock(&self.shared.main).clone()
    }

    /// The archive write that failed, if one did (taken: asked once).
    pub fn archive_failure(&self) -> Option<WarcError> {
        lock(&self.shared.archive_failed).take()
    }
}

/// The requests paused: the heavy kinds before they are sent (to refuse them), documents
/// before they are sent (to stop a navigation elsewhere), and at their response the
/// documents, or every response when subresources are archived.
fn patterns(how: &Interception) -> Vec<RequestPattern> {
    let mut patterns = Vec::new();
    if how.block_heavy {
        for kind in [ResourceType::Image, ResourceType::Font, ResourceType::Media] {
            patterns.push(
                RequestPattern::builder()
                    .resource_type(kind)
                    .request_stage(RequestStage::Request)
                    .build(),
            );
        }
    }
    patterns.push(
        RequestPattern::builder()
            .resource_type(ResourceType::Document)
            .request_stage(RequestStage::Request)
            .build(),
    );
    let everything = how.archive.as_ref().is_some_and(|a| a.subresources);
    patterns.push(match everything {
        true => RequestPattern::builder()
            .url_pattern("*")
            .request_stage(RequestStage::Response)
            .build(),
        false => RequestPattern::builder()
            .resource_type(ResourceType::Document)
            .request_stage(RequestStage::Response)
            .build(),
    });
    patterns
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Handler {
    page: chromiumoxide::Page,
    main_frame: Option<FrameId>,
    how: Interception,
    shared: Arc<Shared>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    /// Permits to read bodies (see [`READING`]).
    reading: tokio::sync::Semaphore,
}

/// How a paused request is let go.
enum Release {
    /// As it is.
    Continue,
    /// Refused, for this reason.
    Fail(ErrorReason),
    /// With the body read from it (its stream was taken).
    Fulfill(Vec<u8>),
}

/// A response body as read for the archive.
struct Body {
    bytes: Vec<u8>,
    /// Why it is not whole, if it is not (`length`: over the limit; `disconnect`: broken
    /// off; `unspecified`: not read).
    truncated: Option<&'static str>,
    /// Whether its stream was taken: the request must then be fulfilled or failed.
    taken: bool,
}

impl Body {
    /// A body not read (the request goes on as it came).
    fn unread(truncated: Option<&'static str>) -> Body {
        Body {
            bytes: Vec::new(),
            truncated,
            taken: false,
        }
    }
}

impl Handler {
    /// Answers one paused request; every one is answered, or the page would stall.
    async fn answer(&self, event: &EventRequestPaused) {
        let main_frame =
            self.main_frame.is_none() || self.main_frame.as_ref() == Some(&event.frame_id);
        let document = main_frame && event.resource_type == ResourceType::Document;
        let release = match (event.response_status_code, &event.response_error_reason) {
            (Some(status), _) => {
                let status = u16::try_from(status).unwrap_or(0);
                self.at_response(event, document, status).await
            }
            // It failed at the network: the browser reports that itself.
            (None, Some(_)) => Release::Continue,
            (None, None) => self.before_request(event, document),
        };
        self.release(event, release).await;
    }

    /// A request paused before it is sent: a document of the main frame after the page's own
    /// (a script or meta refresh navigating elsewhere) is stopped and reported, images,
    /// fonts and media are refused, and the rest go on.
    fn before_request(&self, event: &EventRequestPaused, document: bool) -> Release {
        if document {
            let mut main = lock(&self.shared.main);
            if main.redirect.is_some() {
                // Sent elsewhere already: its frame goes nowhere else.
                return Release::Fail(ErrorReason::Aborted);
            }
            if main.status.is_some() && !same_page(&event.request.url, &self.how.page_url) {
                main.redirect = Some(event.request.url.clone());
                drop(main);
                return self.stop(ErrorReason::Aborted);
            }
        }
        match event.resource_type {
            ResourceType::Document => Release::Continue,
            _ => Release::Fail(ErrorReason::BlockedByClient),
        }
    }

    /// A response paused: the page's own is read for its status (and a redirect of it
    /// stopped), and archived as the archive asks.
    async fn at_response(
        &self,
        event: &EventRequestPaused,
        document: bool,
        status: u16,
    ) -> Release {
        let headers = event.response_headers.as_deref().unwrap_or_default();
        let location = header(headers, "location");
        let redirect = (300..400).contains(&status) && location.is_some();
        // The page's own response: its first document, or the page again (it reloaded
        // itself, as a script challenge does: the last one counts).
        let (own, elsewhere) = {
            let mut main = lock(&self.shared.main);
            let own = document
                && main.redirect.is_none()
                && (main.status.is_none() || same_page(&event.request.url, &self.how.page_url));
            let elsewhere = match (own, location) {
                // A redirect of the page itself: reported, as a plain fetch reports it.
                (true, Some(location)) if redirect => Some(resolve(&event.request.url, location)),
                (true, _) => None,
                // The frame navigated elsewhere, past the request stage.
                (false, _) if document && main.redirect.is_none() => {
                    Some(event.request.url.clone())
                }
                (false, _) => None,
            };
            match &elsewhere {
                Some(target) => main.redirect = Some(target.clone()),
                None if own => main.status = Some(status),
                None => {}
            }
            (own, elsewhere.is_some())
        };
        // The page's own response is archived, and every other one with --warc_subresources
        // (a later navigation is the target's to archive when the engine fetches it).
        let archive = match &self.how.archive {
            Some(archive) if own || (archive.subresources && !document) => archive.clone(),
            _ if elsewhere => return self.stop(ErrorReason::Aborted),
            _ => return Release::Continue,
        };
        let limit = self.how.max_body_bytes.min(MAX_HANDED_ON);
        let announced =
            header(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        let body = if redirect {
            // Chromium keeps no body of a redirect.
            Body::unread(None)
        } else if streams(event, headers, status) {
            // A stream may never end.
            Body::unread(Some("unspecified"))
        } else if !own && announced.is_some_and(|len| len > limit) {
            // A subrequest said to be too long: archived by its headers, and left to the
            // browser as it comes.
            Body::unread(Some("length"))
        } else {
            match self.reading.acquire().await {
                Ok(_permit) => self.body(&event.request_id, limit).await,
                Err(_) => Body::unread(Some("unspecified")),
            }
        };
        let (taken, truncated) = (body.taken, body.truncated);
        let (written, bytes) = archive
            .write(event, status, headers, body.bytes, truncated)
            .await;
        let body = match bytes {
            Some(bytes) => Body {
                bytes,
                truncated,
                taken,
            },
            // The bytes went with the archiving task: the page cannot have them.
            None => Body {
                bytes: Vec::new(),
                truncated: Some("unspecified"),
                taken,
            },
        };
        if let Err(e) = written {
            tracing::error!(url = %event.request.url, cause = %e, "a WARC record could not be written; the page fails archive_failed");
            lock(&self.shared.archive_failed).get_or_insert(e);
        }
        if elsewhere {
            return self.stop(ErrorReason::Aborted);
        }
        match (body.taken, body.truncated) {
            (true, None) => Release::Fulfill(body.bytes),
            (false, _) => Release::Continue,
            // Read in part (over the limit, or broken off): not handed on, as a plain fetch
            // hands on no body past its limit; the page itself fails then.
            (true, Some(why)) => {
                if own {
                    let mut main = lock(&self.shared.main);
                    match why {
                        "length" => main.too_large = true,
                        _ => main.broke_off = true,
                    }
                    drop(main);
                    return self.stop(ErrorReason::Failed);
                }
                Release::Fail(ErrorReason::Failed)
            }
        }
    }

    /// Refuses the paused request and ends the page's load.
    fn stop(&self, reason: ErrorReason) -> Release {
        let _ = self.stop_tx.send(true);
        Release::Fail(reason)
    }

    /// Lets a paused request go as `release` says.
    async fn release(&self, event: &EventRequestPaused, release: Release) {
        let id = event.request_id.clone();
        let fail = |reason| FailRequestParams::new(event.request_id.clone(), reason);
        let done = match release {
            Release::Continue => self
                .page
                .execute(ContinueRequestParams::new(id))
                .await
                .map(|_| ()),
            Release::Fail(reason) => self.page.execute(fail(reason)).await.map(|_| ()),
            Release::Fulfill(body) => {
                let fulfil = FulfillRequestParams::builder()
                    .request_id(id)
                    .response_code(event.response_status_code.unwrap_or(200))
                    .response_headers(handed_on(
                        event.response_headers.as_deref().unwrap_or_default(),
                    ))
                    .body(data_encoding::BASE64.encode(&body))
                    .build();
                let handed = match fulfil {
                    Ok(fulfil) => self.page.execute(fulfil).await.map(|_| ()),
                    Err(why) => Err(chromiumoxide::error::CdpError::msg(why)),
                };
                match handed {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Its stream was taken: it cannot go on as it came, only fail.
                        tracing::debug!(url = %event.request.url, cause = %e, "a response could not be handed on");
                        self.page
                            .execute(fail(ErrorReason::Failed))
                            .await
                            .map(|_| ())
                    }
                }
            }
        };
        if let Err(e) = done {
            // The page closed meanwhile, most often: its render is over.
            tracing::debug!(url = %event.request.url, cause = %e, "a paused request could not be let go");
        }
    }

    /// The body of a paused response, read as a stream up to one byte past `limit`, and by
    /// the page's deadline.
    async fn body(&self, id: &RequestId, limit: u64) -> Body {
        let Ok(stream) = self
            .page
            .execute(TakeResponseBodyAsStreamParams::new(id.clone()))
            .await
        else {
            return Body::unread(Some("unspecified"));
        };
        let handle = stream.result.stream;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let deadline = tokio::time::Instant::from_std(self.how.deadline);
        let mut bytes = Vec::new();
        let mut truncated = None;
        loop {
            let read = ReadParams::builder()
                .handle(handle.clone())
                .size(CHUNK)
                .build();
            let chunk = match read {
                Ok(read) => tokio::time::timeout_at(deadline, self.page.execute(read)).await,
                Err(_) => break truncated = Some("unspecified"),
            };
            let Ok(Ok(chunk)) = chunk else {
                break truncated = Some("disconnect");
            };
            let chunk = chunk.result;
            let data = match chunk.base64_encoded {
                Some(true) => match data_encoding::BASE64.decode(chunk.data.as_bytes()) {
                    Ok(data) => data,
                    Err(_) => break truncated = Some("unspecified"),
                },
                _ => chunk.data.into_bytes(),
            };
            bytes.extend_from_slice(&data);
            if bytes.len() > limit {
                bytes.truncate(limit);
                break truncated = Some("length");
            }
            if chunk.eof {
                break;
            }
        }
        let _ = self.page.execute(CloseParams::new(handle)).await;
        Body {
            bytes,
            truncated,
            taken: true,
        }
    }
}

/// Whether a response is a stream that may never end (an event stream, media, a range):
/// its headers are archived, not its body.
fn streams(event: &EventRequestPaused, headers: &[HeaderEntry], status: u16) -> bool {
    matches!(
        event.resource_type,
        ResourceType::EventSource | ResourceType::Media | ResourceType::WebSocket
    ) || status == 206
        || header(headers, "content-type")
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
}

/// The headers a response read here is handed on with: its body is decoded and whole, so
/// its encoding and length headers go.
fn handed_on(headers: &[HeaderEntry]) -> Vec<HeaderEntry> {
    headers
        .iter()
        .filter(|h| {
            !["content-encoding", "content-length", "transfer-encoding"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect()
}

/// The value of the header `name` among `headers`.
fn header<'a>(headers: &'a [HeaderEntry], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Whether `a` and `b` are the same page (fragments aside).
fn same_page(a: &str, b: &str) -> bool {
    let strip = |u: &str| {
        url::Url::parse(u).map(|mut u| {
            u.set_fragment(None);
            u
        })
    };
    match (strip(a), strip(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `location` resolved against the URL that answered with it.
fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|base| base.join(location.trim()))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.trim().to_owned())
}
