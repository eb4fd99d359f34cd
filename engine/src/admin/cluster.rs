//! The admin API of a shared crawl: the engines of the crawl, pausing, resuming and draining
//! any of them, and changes sent to any engine carried out by the leader.
//!
//! A follower forwards every change to the leader's admin address (from the engine registry)
//! signed with a key derived from the admin token rather than with the token itself (see
//! [`super::signature`]), with an idempotency key it chose, reused on every retry; the leader keeps each key's answer
//! for an hour and answers a repeat with it, so a change sent during a failover is applied once.
//! While no leader is known the follower keeps trying for a few seconds, then answers 503.

use super::signature::{self, Signed, SigningKey};
use super::{Admin, ApiError, ApiResult};
use crate::cluster::engines::{self, AdminTrust, ClusterHandle, EngineMode, EngineView};
use crate::cluster::keys::Keys;
use crate::cluster::leader::Role;
use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tracing::{debug, warn};

/// The header naming a change, so that a repeat of it is answered, not applied again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header marking a change forwarded by another engine (forwarded at most once).
pub(super) const FORWARDED: &str = "x-spinneret-forwarded";

/// The Redis key a change's answer is kept under, handed to the task handlers so that a
/// shared crawl's leader records the answer in the same script as the change.
#[derive(Clone, Debug)]
pub struct ChangeKey(pub String);

/// How long a change's answer is kept for repeats of its key.
pub const KEEP_ANSWERS: Duration = Duration::from_secs(3_600);

/// Largest answer kept or forwarded.
pub(super) const MAX_ANSWER_BYTES: usize = 1 << 20;

fn cluster(admin: &Admin) -> ApiResult<&ClusterHandle> {
    admin.crawl.cluster.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this engine is not in cluster mode (start it with --redis and --crawl)",
        )
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("redis is unavailable: {e}"),
    )
}

/// `GET /api/engines`: every engine of the crawl.
pub(super) async fn list(State(admin): State<Admin>) -> ApiResult<Json<Vec<EngineView>>> {
    let c = cluster(&admin)?;
    let mut conn = c.conn.clone();
    Ok(Json(
        engines::list(&mut conn, &c.prefix)
            .await
            .map_err(unavailable)?,
    ))
}

async fn ask(admin: &Admin, id: &str, mode: EngineMode) -> ApiResult<Json<EngineView>> {
    let c = cluster(admin)?;
    let mut conn = c.conn.clone();
    engines::ask(&mut conn, &c.prefix, id, mode)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no engine of this crawl has id {id:?}"),
            )
        })
}

/// `POST /api/engines/{id}/pause`.
pub(super) async fn pause(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<EngineView>> {
    ask(&admin, &id, EngineMode::Paused).await
}

/// `POST /api/engines/{id}/resume`.
pub(super) async fn resume(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<EngineView>> {
    ask(&admin, &id, EngineMode::Running).await
}

/// `DELETE /api/engines/{id}`: the engine finishes its requests in flight and exits 0.
pub(super) async fn drain(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<EngineView>)> {
    let view = ask(&admin, &id, EngineMode::Draining).await?;
    Ok((StatusCode::ACCEPTED, view))
}

/// Sends a change to the leader when this engine is a follower, and answers a repeat of a
/// change (same idempotency key) on the leader with its first answer.
pub(super) async fn forward(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let Some(c) = admin.crawl.cluster.clone() else {
        return next.run(request).await;
    };
    // Reads are answered here. Workers are each engine's own (their ids are indexes into its
    // pool), and an engine's mode is set in Redis directly: neither goes to the leader.
    let path = request.uri().path();
    if matches!(*request.method(), Method::GET | Method::HEAD)
        || path.starts_with("/api/workers")
        || path.starts_with("/api/engines")
    {
        return next.run(request).await;
    }
    let key = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|k| k.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(str::to_owned);
    if matches!(*c.role.borrow(), Role::Leader(_)) {
        return match key {
            Some(key) => apply_once(&c, &key, request, next).await,
            None => next.run(request).await,
        };
    }
    if request.headers().contains_key(FORWARDED) {
        // Sent here as to the leader, which this engine no longer is: the sender retries.
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this engine is not the leader (any more); try again",
        )
        .into_response();
    }
    let key = key.unwrap_or_else(new_key);
    to_leader(&c, admin.signing.as_deref(), &key, request).await
}

/// An idempotency key for a change that came without one.
fn new_key() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:016x}{:08x}",
        common::fingerprint(&format!("{now}:{}", std::process::id())),
        now as u32
    )
}

/// Carries out a change once per key: a repeat gets the first answer. The change records
/// its answer under the key in the same script as the change itself (see `crawl::proposals`),
/// and the crawl loop takes changes one at a time, so two repeats in flight together apply
/// it once.
async fn apply_once(c: &ClusterHandle, key: &str, request: Request, next: Next) -> Response {
    let stored_key = Keys::with_prefix(&c.prefix).idem(key);
    let mut conn = c.conn.clone();
    let stored: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
        .arg(&stored_key)
        .query_async(&mut conn)
        .await;
    match stored {
        Ok(Some(bytes)) => {
            return match decode_answer(&bytes) {
                Some(response) => {
                    debug!(key, "a repeated change: answered as before");
                    response
                }
                None => unavailable("an unreadable stored answer").into_response(),
            };
        }
        Ok(None) => {}
        Err(e) => return unavailable(e).into_response(),
    }
    let mut request = request;
    request
        .extensions_mut()
        .insert(ChangeKey(stored_key.clone()));
    // Applied and kept on a task of its own: a client that goes away mid-change cannot leave
    // the change applied with no answer kept for its retry.
    let applied = tokio::spawn(async move {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, MAX_ANSWER_BYTES).await.unwrap_or_default();
        keep_answer(&mut conn, &stored_key, parts, bytes).await
    });
    match applied.await {
        Ok(response) => response,
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change failed: {e}"),
        )
        .into_response(),
    }
}

/// Keeps a change's answer for repeats of its key (a server error is not kept: the change
/// was not applied, and a retry tries again; nor one that may yet land, whose own script
/// keeps its answer), and returns it.
async fn keep_answer(
    conn: &mut common::redis_conn::RedisConn,
    stored_key: &str,
    parts: axum::http::response::Parts,
    bytes: axum::body::Bytes,
) -> Response {
    if parts.status.is_server_error() {
        // Not applied (or, unsure, it may land yet, and its own script keeps its answer
        // under the key): nothing is kept, and a retry tries again.
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut record = Vec::with_capacity(bytes.len() + 2);
    record.extend_from_slice(&parts.status.as_u16().to_be_bytes());
    record.extend_from_slice(&bytes);
    // The first answer kept wins: the change's own script may have kept it already, and a
    // repeat that raced it (refused as a duplicate, say) gets that answer too.
    let kept: Result<Option<Vec<u8>>, _> = redis::Script::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
         return redis.call('GET', KEYS[1])",
    )
    .key(stored_key)
    .arg(record)
    .arg(KEEP_ANSWERS.as_secs())
    .invoke_async(conn)
    .await;
    match kept {
        Ok(Some(first)) => {
            if let Some(response) = decode_answer(&first) {
                return response;
            }
        }
        Ok(None) => {}
        Err(e) => {
            warn!(key = %stored_key, cause = %e, "could not keep a change's answer; a repeat may apply it again");
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn decode_answer(bytes: &[u8]) -> Option<Response> {
    let (status, body) = bytes.split_at_checked(2)?;
    let status = StatusCode::from_u16(u16::from_be_bytes([status[0], status[1]])).ok()?;
    Some(
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_vec(),
        )
            .into_response(),
    )
}

/// The HTTP client changes are forwarded with: over HTTPS it trusts `--admin_tls_ca` alone
/// when given, else the system's roots and `--tls_ca`; it never goes through a proxy from
/// the environment.
fn forwarding_client(c: &ClusterHandle) -> Result<reqwest::Client, reqwest::Error> {
    let http = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
    };
    if !c.admin_https {
        return http().build();
    }
    match &c.admin_trust {
        AdminTrust::Only(pem) => http()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?)
            .build(),
        AdminTrust::SystemAnd(None) => http().build(),
        AdminTrust::SystemAnd(Some(pem)) => {
            let ca = reqwest::Certificate::from_pem(pem)?;
            http()
                .tls_certs_merge([ca.clone()])
                .build()
                // A verifier that cannot add roots to the system's: the CA alone.
                .or_else(|_| http().tls_certs_only([ca]).build())
        }
    }
}

/// Sends a change to the leader, signed with `signing` (the operator's token stays here),
/// retrying with the same key until one answers or `forward_wait` passes.
async fn to_leader(
    c: &ClusterHandle,
    signing: Option<&SigningKey>,
    key: &str,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, super::MAX_BODY_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        )
        .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let scheme = if c.admin_https { "https" } else { "http" };
    let http = match forwarding_client(c) {
        Ok(http) => http,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot make the client that forwards to the leader: {e}"),
            )
            .into_response();
        }
    };
    let deadline = tokio::time::Instant::now() + c.forward_wait;
    let mut last;
    loop {
        match leader_addr(c).await {
            Ok(Some(addr)) => {
                let mut call = http
                    .request(parts.method.clone(), format!("{scheme}://{addr}{path}"))
                    .header(IDEMPOTENCY_KEY, key)
                    .header(FORWARDED, "1")
                    .body(body.clone());
                if let Some(value) = parts.headers.get(header::CONTENT_TYPE) {
                    call = call.header(header::CONTENT_TYPE, value.clone());
                }
                let mut call = match call.build() {
                    Ok(call) => call,
                    Err(e) => {
                        return ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("cannot forward this change: {e}"),
                        )
                        .into_response();
                    }
                };
                // Signed afresh on every try (a retry after a long wait is not stale), over
                // the path as sent.
                let signature = signing.map(|signing| {
                    let url = call.url();
                    let sent_path = match url.query() {
                        Some(query) => format!("{}?{query}", url.path()),
                        None => url.path().to_owned(),
                    };
                    let signed = Signed {
                        crawl: &c.prefix,
                        method: parts.method.as_str(),
                        path: &sent_path,
                        key,
                        body: &body,
                    };
                    signing.sign(&signed, std::time::SystemTime::now())
                });
                if let Some(value) = signature
                    .as_deref()
                    .and_then(|s| HeaderValue::from_str(s).ok())
                {
                    call.headers_mut().insert(signature::HEADER, value);
                }
                match http.execute(call).await {
                    Ok(answer) if answer.status() != StatusCode::SERVICE_UNAVAILABLE => {
                        let status = answer.status();
                        let answer_signature = answer
                            .headers()
                            .get(signature::ANSWER_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let bytes = answer.bytes().await.unwrap_or_default();
                        if let (Some(signing), Some(signature)) = (signing, &signature)
                            && !signing.verify_answer(
                                answer_signature.as_deref(),
                                signature,
                                status.as_u16(),
                                &bytes,
                            )
                        {
                            warn!(%addr, %status, "the leader's address answered a forwarded change without the crawl's signature");
                            // What it said is shown for the operator, bounded, but not taken
                            // as the answer.
                            let said: String = String::from_utf8_lossy(&bytes)
                                .chars()
                                .filter(|c| !c.is_control())
                                .take(300)
                                .collect();
                            return ApiError::new(
                                StatusCode::BAD_GATEWAY,
                                format!(
                                    "the engine at {addr}, named as the leader, answered {status} without the signature of this engine's --admin_token: it holds another token, or is not this crawl's leader; the change's outcome is unknown. It said: {said}"
                                ),
                            )
                            .into_response();
                        }
                        return (
                            status,
                            [(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            )],
                            bytes.to_vec(),
                        )
                            .into_response();
                    }
                    Ok(answer) => {
                        last = format!("the leader at {addr} answered {}", answer.status())
                    }
                    Err(e) => last = format!("the leader at {addr} did not answer: {e}"),
                }
            }
            Ok(None) => last = "no leader is known".into(),
            Err(e) => last = format!("redis: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{last}; the change may not have been applied: send it again with the header `{IDEMPOTENCY_KEY}: {key}`"
                ),
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The admin address of the engine holding the leader lease.
async fn leader_addr(c: &ClusterHandle) -> Result<Option<String>, redis::RedisError> {
    let mut conn = c.conn.clone();
    let held: Option<String> = redis::cmd("GET")
        .arg(Keys::with_prefix(&c.prefix).leader())
        .query_async(&mut conn)
        .await?;
    let Some((engine, _epoch)) = held.as_deref().and_then(|h| h.rsplit_once(':')) else {
        return Ok(None);
    };
    let addr: Option<String> = redis::cmd("HGET")
        .arg(Keys::with_prefix(&c.prefix).node(engine))
        .arg("addr")
        .query_async(&mut conn)
        .await?;
    Ok(addr.filter(|a| !a.is_empty()))
}
