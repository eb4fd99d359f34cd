//! The admin server (`engine --admin ADDR`): Prometheus metrics, a JSON API to watch and
//! steer the crawl (workers and tasks), and a live dashboard, all over plain HTTP.
//!
//! Only requests naming this machine are served (against DNS rebinding). Reads are open;
//! changes need `Authorization: Bearer TOKEN` when `--admin_token` is set.
//! Every refusal is a 4xx (or a 502 when a worker cannot be reached) with a JSON body
//! `{"error": "..."}` saying what was wrong.

mod cluster;
pub use cluster::KEEP_ANSWERS;
mod hosts;
mod refusals;
mod signature;
mod tasks;

pub use hosts::AllowedHosts;

use crate::control::{CrawlHandle, CrawlStatus};
use crate::pool::{ControlError, WorkerView};
use crate::tasks::TaskError;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, extract::DefaultBodyLimit};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest request body accepted (a task's spider file included).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the admin handlers share.
#[derive(Clone)]
struct Admin {
    crawl: CrawlHandle,
    token: Option<Arc<str>>,
    /// The key forwarded changes are signed with, from the token.
    signing: Option<Arc<signature::SigningKey>>,
    refusals: Arc<refusals::Refusals>,
    hosts: Arc<AllowedHosts>,
}

/// An API refusal: a status and a message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: &self.1 })).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::NotFound(_) | ControlError::Removed(_) => StatusCode::NOT_FOUND,
            ControlError::BadAddress(_) => StatusCode::BAD_REQUEST,
            ControlError::Duplicate { .. } => StatusCode::CONFLICT,
            ControlError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        let status = match e {
            TaskError::NotFound(_) => StatusCode::NOT_FOUND,
            TaskError::Duplicate(_) | TaskError::Finished { .. } => StatusCode::CONFLICT,
            TaskError::Invalid(_) => StatusCode::BAD_REQUEST,
            TaskError::Stopped | TaskError::NotShared(_) | TaskError::Unsure(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Reads an id from the path: a bad one is a 400 naming it.
fn id_of<T: std::str::FromStr>(what: &str, text: &str) -> ApiResult<T> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} id must be a number, not {text:?}"),
        )
    })
}

/// The admin API's routes over `crawl`, guarded by `token` for changes, served only to
/// requests naming one of `hosts`.
pub fn router(crawl: CrawlHandle, token: Option<String>, hosts: AllowedHosts) -> Router {
    let admin = Admin {
        crawl,
        signing: token
            .as_deref()
            .map(|t| Arc::new(signature::SigningKey::new(t))),
        refusals: Arc::default(),
        token: token.map(Arc::from),
        hosts: Arc::new(hosts),
    };
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/workers", get(list_workers).post(add_worker))
        .route("/api/workers/{id}", get(get_worker).delete(remove_worker))
        .route("/api/workers/{id}/pause", post(pause_worker))
        .route("/api/workers/{id}/resume", post(resume_worker))
        .route("/api/tasks", get(tasks::list).post(tasks::add))
        .route("/api/tasks/{id}", get(tasks::get_one).delete(tasks::close))
        .route("/api/tasks/{id}/pause", post(tasks::pause))
        .route("/api/tasks/{id}/resume", post(tasks::resume))
        .route("/api/tasks/{id}/stop", post(tasks::stop))
        .route("/api/tasks/{id}/runs", get(tasks::runs))
        .route("/api/tasks/{id}/kill", post(tasks::kill))
        .route("/api/engines", get(cluster::list))
        .route("/api/engines/{id}", axum::routing::delete(cluster::drain))
        .route("/api/engines/{id}/pause", post(cluster::pause))
        .route("/api/engines/{id}/resume", post(cluster::resume))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            admin.clone(),
            cluster::forward,
        ))
        .layer(middleware::from_fn_with_state(admin.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(admin)
}

/// Serves the admin API on `listener` until `shutdown`, only to requests naming this machine
/// or one of `admin_hosts`.
pub fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    crawl: CrawlHandle,
    token: Option<String>,
    admin_hosts: &[String],
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let hosts = listener
        .local_addr()
        .map(|bound| AllowedHosts::new(bound, admin_hosts))
        .unwrap_or_default();
    let app = router(crawl, token, hosts);
    tokio::spawn(async move {
        // Bounded connections, a budget of their own for those that sent no request yet, and
        // a header-read timeout: a flood of silent connections cannot stop the admin server,
        // nor take the crawl's file descriptors.
        let limits = common::listen::ServerLimits::default();
        if let Err(e) = common::http_serve::serve(listener, app, tls, limits, shutdown).await {
            tracing::warn!(error = %e, "admin server stopped");
        }
    })
}

/// Serves only requests that name this machine (see [`AllowedHosts`]); lets reads through;
/// changes need the bearer token when one is set, or, forwarded by another engine of the
/// crawl, its signature (see [`signature`]). An address that keeps giving a wrong token is
/// answered later each time (see [`refusals`]).
async fn authorize(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let host = request_host(&request).unwrap_or("");
    if !admin.hosts.allows(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this admin server is not known as {host:?}; give the name with --admin_host, or use an address of this machine"
            ),
        )
        .into_response();
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && cross_origin(&request) {
        // A page elsewhere must not steer the crawl through the operator's browser; the
        // dashboard is served from here, and curl sends no Origin.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "changes from pages of another origin are refused",
        )
        .into_response();
    }
    let forwarded = request.headers().contains_key(cluster::FORWARDED);
    if forwarded && admin.crawl.cluster.is_none() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "this engine is not in cluster mode: it takes no changes forwarded by another engine",
        )
        .into_response();
    }
    let (Some(token), false) = (&admin.token, reads) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let checked = if forwarded {
        signed_change(&admin, request).await
    } else {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            Ok((request, None))
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this change needs `Authorization: Bearer TOKEN` with the engine's --admin_token",
            ))
        }
    };
    match checked {
        Ok((request, signed)) => {
            if let Some(peer) = peer {
                admin.refusals.accepted(peer);
            }
            let response = next.run(request).await;
            match (signed, &admin.signing) {
                (Some(signature), Some(signing)) => {
                    sign_answer(signing, &signature, response).await
                }
                _ => response,
            }
        }
        Err(refusal) => {
            if let Some(peer) = peer {
                let delay = admin.refusals.refused(peer, std::time::Instant::now());
                if !delay.is_zero() {
                    tracing::debug!(%peer, ?delay, "a wrong admin token again: answered late");
                    tokio::time::sleep(delay).await;
                }
            }
            let mut response = refusal.into_response();
            if !forwarded {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

/// A change another engine forwarded, once its signature is checked against this engine's
/// admin token (the body is read to check it, then handed on), with the signature, which its
/// answer is signed over.
async fn signed_change(
    admin: &Admin,
    request: Request,
) -> Result<(Request, Option<String>), ApiError> {
    let (Some(signing), Some(crawl)) = (&admin.signing, &admin.crawl.cluster) else {
        return Ok((request, None));
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        })?;
    let header_of = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let signed = signature::Signed {
        crawl: &crawl.prefix,
        method: parts.method.as_str(),
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        key: header_of(cluster::IDEMPOTENCY_KEY).unwrap_or(""),
        body: &body,
    };
    let given = header_of(signature::HEADER);
    if let Err(e) = signing.verify(given, &signed, std::time::SystemTime::now()) {
        tracing::warn!(error = %e, "refused a forwarded change");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let given = given.map(str::to_owned);
    Ok((
        Request::from_parts(parts, axum::body::Body::from(body)),
        given,
    ))
}

/// Signs the answer to a forwarded change, so that the follower knows it came from an
/// engine holding the admin token.
async fn sign_answer(
    signing: &signature::SigningKey,
    request_signature: &str,
    response: Response,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, cluster::MAX_ANSWER_BYTES).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer to a forwarded change is too large to sign",
        )
        .into_response();
    };
    let mac = signing.sign_answer(request_signature, parts.status.as_u16(), &bytes);
    if let Ok(value) = header::HeaderValue::from_str(&mac) {
        parts.headers.insert(signature::ANSWER_HEADER, value);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Whether a browser sent the request from a page of another origin than this server.
/// The name a request gives the server: HTTP/1.1 sends it in Host, HTTP/2 (which browsers
/// speak over HTTPS) in the URI's authority.
fn request_host(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

fn cross_origin(request: &Request) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return false;
    };
    let host = request_host(request);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see docs/admin-api.md",
    )
}

async fn dashboard() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("dashboard.html")),
    )
}

async fn metrics(State(admin): State<Admin>, headers: axum::http::HeaderMap) -> Response {
    common::metrics_http::render(admin.crawl.metrics.registry(), &headers)
}

/// The body of `GET /api/status`.
#[derive(Serialize)]
struct StatusBody {
    #[serde(flatten)]
    crawl: Arc<CrawlStatus>,
    /// Whether changes need the bearer token.
    auth_required: bool,
    workers_up: usize,
    workers: Vec<WorkerView>,
}

async fn status(State(admin): State<Admin>) -> Json<StatusBody> {
    Json(StatusBody {
        crawl: admin.crawl.status(),
        auth_required: admin.token.is_some(),
        workers_up: admin.crawl.pool.workers_up(),
        workers: admin.crawl.pool.views(),
    })
}

async fn list_workers(State(admin): State<Admin>) -> Json<Vec<WorkerView>> {
    Json(admin.crawl.pool.views())
}

async fn get_worker(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkerView>> {
    let id = id_of::<usize>("worker", &id)?;
    admin
        .crawl
        .pool
        .views()
        .into_iter()
        .find(|w| w.id == id)
        .map(Json)
        .ok_or_else(|| ControlError::NotFound(id).into())
}

/// The body of `POST /api/workers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWorker {
    addr: String,
}

async fn add_worker(
    State(admin): State<Admin>,
    body: Result<Json<NewWorker>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<WorkerView>)> {
    let Json(new) = body?;
    let view = admin.crawl.pool.add(&new.addr).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn pause_worker(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkerView>> {
    Ok(Json(admin.crawl.pool.pause(id_of("worker", &id)?)?))
}

async fn resume_worker(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkerView>> {
    Ok(Json(admin.crawl.pool.resume(id_of("worker", &id)?)?))
}

async fn remove_worker(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<WorkerView>)> {
    let view = admin.crawl.pool.remove(id_of("worker", &id)?)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_from_other_origins_are_spotted() {
        let request = |uri: &str, pairs: &[(header::HeaderName, &'static str)]| {
            let mut r = Request::new(axum::body::Body::empty());
            *r.uri_mut() = uri.parse().expect("uri");
            for (k, v) in pairs {
                r.headers_mut()
                    .insert(k.clone(), header::HeaderValue::from_static(v));
            }
            r
        };
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(!cross_origin(&request("/", std::slice::from_ref(&host))));
        assert!(!cross_origin(&request(
            "/",
            &[host.clone(), (header::ORIGIN, "http://127.0.0.1:8080")]
        )));
        assert!(cross_origin(&request(
            "/",
            &[host.clone(), (header::ORIGIN, "https://evil.example")]
        )));
        assert!(cross_origin(&request(
            "/",
            &[host, (header::ORIGIN, "null")]
        )));
        // HTTP/2 names the server in the authority, with no Host header.
        let h2 = "https://127.0.0.1:8080/api/tasks";
        assert!(!cross_origin(&request(
            h2,
            &[(header::ORIGIN, "https://127.0.0.1:8080")]
        )));
        assert!(cross_origin(&request(
            h2,
            &[(header::ORIGIN, "https://evil.example")]
        )));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
