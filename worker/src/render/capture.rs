//! What a page's requests meet at the DevTools Fetch domain: images, fonts and media refused
//! unless the rule asks for them; the main document's response read for its status and
//! archived; a redirect of the main document, or a navigation of the main frame elsewhere,
//! stopped and reported like a plain fetch's redirect (so that the engine's scope, robots.txt
//! and redirect limit decide about the target); and, with `--warc_subresources`, every other
//! response archived too.
//!
//! The worker's guard proxy sees no HTTPS bodies, so the records are taken from the browser:
//! the response's status, headers and (decoded) body as Chromium received them.

use super::RenderError;
use crate::warc::WarcWriter;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnable, EventRequestPaused, FailRequestParams,
    GetResponseBodyParams, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use futures::StreamExt;
use std::sync::{Arc, Mutex};

/// Where a rendering worker archives what its browser receives (`--warc`).
#[derive(Clone, Debug)]
pub struct Archive {
    /// The worker's WARC writer, shared with its plain fetches.
    pub writer: Arc<WarcWriter>,
    /// Whether the browser's subrequests are archived too (`--warc_subresources`), not only
    /// the page's own response.
    pub subresources: bool,
}

/// How a page's requests are intercepted.
#[derive(Clone, Debug)]
pub struct Interception {
    /// Whether images, fonts and media are refused.
    pub block_heavy: bool,
    /// Where responses are archived, if anywhere.
    pub archive: Option<Archive>,
    /// The most body bytes kept of one response (`--max_body_bytes`).
    pub max_body_bytes: u64,
}

/// What the interception learnt about the page's main document.
#[derive(Debug, Default)]
pub struct MainDocument {
    /// Its HTTP status, once its response arrived.
    pub status: Option<u16>,
    /// Where the main frame was sent instead of the page (a redirect, or a script or meta
    /// refresh navigating elsewhere), once it was.
    pub redirect: Option<String>,
    /// The first archive write that failed, if one did: the page fails then, as a plain
    /// fetch whose record cannot be written does.
    pub archive_failed: Option<String>,
}

/// A page's interception, running until the page closes.
pub struct Intercepting {
    main: Arc<Mutex<MainDocument>>,
    redirected: tokio::sync::watch::Receiver<bool>,
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
        let main = Arc::new(Mutex::new(MainDocument::default()));
        let (redirect_tx, redirected) = tokio::sync::watch::channel(false);
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
        // Documents are seen before they are requested too, so that a navigation of the
        // main frame elsewhere is stopped before it reaches the other site.
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
        let handler = Handler {
            page: page.clone(),
            main_frame,
            how,
            main: main.clone(),
            redirect_tx,
        };
        tokio::spawn(async move {
            // One at a time, in the order the browser pauses them: the main document's
            // response is seen before any later navigation of its frame.
            while let Some(event) = paused.next().await {
                handler.answer(&event).await;
            }
        });
        page.execute(FetchEnable::builder().patterns(patterns).build())
            .await
            .map_err(nav)?;
        Ok(Intercepting { main, redirected })
    }

    /// Waits until the main frame is sent elsewhere (forever if it never is).
    pub async fn redirected(&self) {
        let mut redirected = self.redirected.clone();
        if redirected.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What is known of the main document so far.
    pub fn main(&self) -> MainDocument {
        let main = self.main.lock().unwrap_or_else(|e| e.into_inner());
        MainDocument {
            status: main.status,
            redirect: main.redirect.clone(),
            archive_failed: main.archive_failed.clone(),
        }
    }
}

struct Handler {
    page: chromiumoxide::Page,
    main_frame: Option<FrameId>,
    how: Interception,
    main: Arc<Mutex<MainDocument>>,
    redirect_tx: tokio::sync::watch::Sender<bool>,
}

impl Handler {
    /// Answers one paused request; every one is answered, or the page would stall.
    async fn answer(&self, event: &EventRequestPaused) {
        let id = event.request_id.clone();
        let main_frame =
            self.main_frame.is_none() || self.main_frame.as_ref() == Some(&event.frame_id);
        let document = main_frame && event.resource_type == ResourceType::Document;
        let Some(status) = event.response_status_code else {
            return self.before_request(event, document).await;
        };
        let status = u16::try_from(status).unwrap_or(0);
        let headers = event.response_headers.as_deref().unwrap_or_default();
        let location = header(headers, "location");
        let (first, sent_elsewhere) = {
            let mut main = self.main.lock().unwrap_or_else(|e| e.into_inner());
            let first = document && main.status.is_none() && main.redirect.is_none();
            let elsewhere = match (document, first, location) {
                // A redirect of the page itself: reported, as a plain fetch reports it.
                (true, true, Some(location)) if (300..400).contains(&status) => {
                    Some(resolve(&event.request.url, location))
                }
                // The frame navigating after its document arrived (a script, a meta refresh).
                (true, false, _) if main.redirect.is_none() => Some(event.request.url.clone()),
                _ => None,
            };
            if first && elsewhere.is_none() {
                main.status = Some(status);
            }
            if let Some(target) = &elsewhere {
                main.redirect = Some(target.clone());
            }
            (first, elsewhere.is_some())
        };
        // The page's own response is archived, and every other one with --warc_subresources
        // (a later navigation is the target's to archive when the engine fetches it).
        let archived = match &self.how.archive {
            Some(archive) if first || (archive.subresources && !document) => Some(archive.clone()),
            _ => None,
        };
        if let Some(archive) = archived {
            let body = if (300..400).contains(&status) {
                // Chromium keeps no body of a redirect.
                (Vec::new(), None)
            } else {
                self.body(event, headers).await
            };
            if let Err(e) = write(&archive, event, status, headers, body).await {
                let mut main = self.main.lock().unwrap_or_else(|e| e.into_inner());
                main.archive_failed.get_or_insert(e);
            }
        }
        if sent_elsewhere {
            let _ = self
                .page
                .execute(FailRequestParams::new(id, ErrorReason::Aborted))
                .await;
            let _ = self.redirect_tx.send(true);
            return;
        }
        let _ = self.page.execute(ContinueRequestParams::new(id)).await;
    }

    /// Answers a request paused before it is sent: a document of the main frame after the
    /// page's own (a script or meta refresh navigating elsewhere) is stopped and reported,
    /// images, fonts and media are refused, and the rest go on.
    async fn before_request(&self, event: &EventRequestPaused, document: bool) {
        let id = event.request_id.clone();
        if document {
            let elsewhere = {
                let mut main = self.main.lock().unwrap_or_else(|e| e.into_inner());
                let after_the_page = main.status.is_some() && main.redirect.is_none();
                if after_the_page {
                    main.redirect = Some(event.request.url.clone());
                }
                after_the_page
            };
            if elsewhere {
                let _ = self
                    .page
                    .execute(FailRequestParams::new(id, ErrorReason::Aborted))
                    .await;
                let _ = self.redirect_tx.send(true);
                return;
            }
        }
        if event.resource_type == ResourceType::Document {
            let _ = self.page.execute(ContinueRequestParams::new(id)).await;
            return;
        }
        let _ = self
            .page
            .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
            .await;
    }

    /// The body of a paused response, up to the body limit, and why it is not whole if it is
    /// not; a response announcing more than the limit is not read at all.
    async fn body(
        &self,
        event: &EventRequestPaused,
        headers: &[HeaderEntry],
    ) -> (Vec<u8>, Option<&'static str>) {
        let limit = self.how.max_body_bytes;
        let announced =
            header(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        if announced.is_some_and(|len| len > limit) {
            return (Vec::new(), Some("length"));
        }
        let Ok(got) = self
            .page
            .execute(GetResponseBodyParams::new(event.request_id.clone()))
            .await
        else {
            return (Vec::new(), Some("unspecified"));
        };
        let mut body = if got.result.base64_encoded {
            match data_encoding::BASE64.decode(got.result.body.as_bytes()) {
                Ok(bytes) => bytes,
                Err(_) => return (Vec::new(), Some("unspecified")),
            }
        } else {
            got.result.body.clone().into_bytes()
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if body.len() > limit {
            body.truncate(limit);
            return (body, Some("length"));
        }
        (body, None)
    }
}

/// Writes one exchange the browser made to the archive, off the async threads.
async fn write(
    archive: &Archive,
    event: &EventRequestPaused,
    status: u16,
    headers: &[HeaderEntry],
    (body, truncated): (Vec<u8>, Option<&'static str>),
) -> Result<(), String> {
    let Ok(url) = url::Url::parse(&event.request.url) else {
        // A data: or blob: URL has no exchange to archive.
        return Ok(());
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Ok(());
    }
    let request_headers = event.request.headers.inner();
    let sent = |name: &str| {
        request_headers
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let user_agent = sent("user-agent");
    let accept = sent("accept");
    let method = event.request.method.clone();
    let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::OK);
    let mut map = reqwest::header::HeaderMap::new();
    for entry in headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(entry.name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&entry.value),
        ) {
            map.append(name, value);
        }
    }
    let writer = archive.writer.clone();
    tokio::task::spawn_blocking(move || {
        writer.write(&crate::warc::Exchange {
            url: &url,
            method: &method,
            user_agent: &user_agent,
            accept: &accept,
            status,
            headers: &map,
            body: &body,
            truncated,
        })
    })
    .await
    .map_err(|e| format!("the archiving task failed: {e}"))?
    .map_err(|e| {
        tracing::error!(cause = %e, "a WARC record could not be written; the page will be tried again");
        e.to_string()
    })
}

/// The value of the header `name` among `headers`.
fn header<'a>(headers: &'a [HeaderEntry], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// `location` resolved against the URL that answered with it.
fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|base| base.join(location.trim()))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.trim().to_owned())
}
