//! A small HTTP endpoint serving a Prometheus registry at `GET /metrics`, for the processes
//! that have nothing else to serve over HTTP (workers, with `--metrics ADDR`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The content type of OpenMetrics text, which the registries encode, for scrapers that ask
/// for it (a Prometheus server does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format 0.0.4, for every other client (curl,
/// `promtool check metrics`).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `registry` in the format the request's `Accept` header asks for: OpenMetrics when
/// it names it, else the Prometheus text format, with names and types matching its samples
/// (a counter `x` is `x_total` in both).
pub fn render(registry: &Registry, headers: &HeaderMap) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(asks_for_openmetrics);
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            prometheus_text(&body),
        )
            .into_response()
    }
}

/// Whether one entry of an `Accept` header asks for OpenMetrics (with a weight above 0).
fn asks_for_openmetrics(entry: &str) -> bool {
    let mut parts = entry.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("application/openmetrics-text") {
        return false;
    }
    !parts.any(|p| {
        p.strip_prefix("q=")
            .and_then(|q| q.trim().parse::<f32>().ok())
            .is_some_and(|q| q <= 0.0)
    })
}

/// A label value as both text formats need it: `\`, `"` and line feeds escaped
/// (`prometheus-client` writes label values as given).
pub fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family takes its
/// samples' `_total` name (and drops `_created` samples), an info family becomes a gauge
/// named `_info`, and `# UNIT` and `# EOF` go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    let mut created: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            created = (kind == "counter").then(|| format!("{}_created", &name[..name.len() - 6]));
            if let Some(text) = help
                .take()
                .and_then(|h| h.split_once(' '))
                .map(|(_, text)| text)
            {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if created.as_deref().is_some_and(|c| {
            line.strip_prefix(c)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        }) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A router with `GET /metrics` rendering `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(r): State<Arc<Registry>>, headers: HeaderMap| async move {
                    render(&r, &headers)
                },
            ),
        )
        .with_state(registry)
}

/// Binds `addr` and serves `router` until `shutdown`, under the limits of
/// [`crate::http_serve`]; returns the bound address once it listens, and the serving task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let limits = crate::listen::ServerLimits::default();
    let task = tokio::spawn(async move {
        if let Err(e) = crate::http_serve::serve(listener, router, None, limits, shutdown).await {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok((local, task))
}

/// Reads an HTTP listen address: `PORT`, `:PORT` (both on 127.0.0.1) or `IP:PORT`. Loopback
/// unless an address says otherwise, since these endpoints are not meant for the open network.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, BadListenAddr> {
    let t = text.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| BadListenAddr(text.to_owned()))
}

/// A listen address that does not read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a listen address (expected PORT, :PORT or IP:PORT)")]
pub struct BadListenAddr(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_text_format_names_families_as_their_samples() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::metrics::info::Info;
        let mut registry = Registry::with_prefix("x");
        let pages = Counter::<u64>::default();
        pages.inc_by(3);
        registry.register("pages", "Pages fetched", pages);
        registry.register("depth", "Queue depth", Gauge::<i64>::default());
        registry.register("build", "Build", Info::new(vec![("version", "1")]));
        let mut openmetrics = String::new();
        prometheus_client::encoding::text::encode(&mut openmetrics, &registry).expect("encode");
        assert!(
            openmetrics.contains("# TYPE x_pages counter"),
            "{openmetrics}"
        );
        let text = prometheus_text(&openmetrics);
        for line in [
            "# HELP x_pages_total Pages fetched.",
            "# TYPE x_pages_total counter",
            "x_pages_total 3",
            "# TYPE x_depth gauge",
            "# TYPE x_build_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        let mut accept = HeaderMap::new();
        let content_type = |headers: &HeaderMap| {
            render(&registry, headers).headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("text")
                .to_owned()
        };
        assert_eq!(content_type(&accept), PROMETHEUS_TEXT);
        accept.insert(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
                .parse()
                .expect("value"),
        );
        assert_eq!(content_type(&accept), OPENMETRICS);
        accept.insert(
            header::ACCEPT,
            "application/openmetrics-text;q=0, text/plain"
                .parse()
                .expect("value"),
        );
        assert_eq!(content_type(&accept), PROMETHEUS_TEXT, "q=0 refuses it");
        assert_eq!(label_value(r#"a "b" \ c"#), r#"a \"b\" \\ c"#);
    }

    #[test]
    fn listen_addresses_default_to_loopback() {
        assert_eq!(
            parse_listen_addr("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr(":8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:9").unwrap(),
            "0.0.0.0:9".parse().unwrap()
        );
        assert!(parse_listen_addr("localhost:x").is_err());
    }
}
