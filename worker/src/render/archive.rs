//! WARC records of what a rendering worker's browser received (`--warc`): the exchange as
//! the DevTools protocol shows it at the response stage, written with the worker's WARC
//! writer.

use crate::warc::{WarcError, WarcWriter};
use chromiumoxide::cdp::browser_protocol::fetch::{EventRequestPaused, HeaderEntry};
use std::sync::Arc;

/// Where a rendering worker archives what its browser receives (`--warc`).
#[derive(Clone, Debug)]
pub struct Archive {
    /// The worker's WARC writer, shared with its plain fetches.
    pub writer: Arc<WarcWriter>,
    /// Whether the browser's subrequests are archived too (`--warc_subresources`), not only
    /// the page's own response.
    pub subresources: bool,
}

impl Archive {
    /// Writes one exchange the browser made, off the async threads; the body comes back
    /// (`None` when the writing task failed and took it).
    pub(super) async fn write(
        &self,
        event: &EventRequestPaused,
        status: u16,
        headers: &[HeaderEntry],
        body: Vec<u8>,
        truncated: Option<&'static str>,
    ) -> (Result<(), WarcError>, Option<Vec<u8>>) {
        let Ok(url) = url::Url::parse(&event.request.url) else {
            return (Ok(()), Some(body));
        };
        // A data: or blob: URL has no exchange to archive; nor has a status HTTP has not.
        let Ok(status) = reqwest::StatusCode::from_u16(status) else {
            return (Ok(()), Some(body));
        };
        if !matches!(url.scheme(), "http" | "https") {
            return (Ok(()), Some(body));
        }
        let request_headers: Vec<(String, String)> = event
            .request
            .headers
            .inner()
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let request_body: Vec<u8> = event
            .request
            .post_data_entries
            .iter()
            .flatten()
            .filter_map(|entry| entry.bytes.as_ref())
            .filter_map(|b| data_encoding::BASE64.decode(AsRef::<[u8]>::as_ref(b)).ok())
            .flatten()
            .collect();
        let method = event.request.method.clone();
        let mut map = reqwest::header::HeaderMap::new();
        for entry in headers {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(entry.name.as_bytes()),
                reqwest::header::HeaderValue::from_bytes(entry.value.as_bytes()),
            ) {
                map.append(name, value);
            }
        }
        let writer = self.writer.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = writer.write(&crate::warc::Exchange {
                url: &url,
                method: &method,
                request_headers: &request_headers,
                request_body: &request_body,
                status,
                headers: &map,
                body: &body,
                truncated,
            });
            (written, body)
        })
        .await;
        match written {
            Ok((written, body)) => (written, Some(body)),
            Err(e) => (
                Err(WarcError {
                    path: self.writer.dir().to_path_buf(),
                    source: std::io::Error::other(format!("the archiving task failed: {e}")),
                }),
                None,
            ),
        }
    }
}
