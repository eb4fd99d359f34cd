//! One Redis connection type for a single server or a Redis Cluster, so that cluster mode's
//! scripts and the node registry run unchanged on either.
//!
//! `--redis` takes one URL (`redis://host:port/db`, `rediss://` for TLS) for a single server,
//! and for a Redis Cluster either several comma-separated node URLs or one
//! `redis+cluster://host:port[,host:port...]`.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Time to connect to Redis; a Redis that is away fails calls quickly, and the callers retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for Redis to answer one command (a script call included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection attempts within one call before it fails.
const RETRIES: usize = 2;
/// Longest wait between those attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A connection to a single Redis server (reconnecting on its own) or to a Redis Cluster
/// (following its slots), counting the commands sent; cheap to clone (clones share the
/// connection and the count).
#[derive(Clone)]
pub struct RedisConn {
    link: Link,
    sent: Arc<AtomicU64>,
}

#[derive(Clone)]
enum Link {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.link {
            Link::Single(_) => "RedisConn::Single",
            Link::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// Where `--redis` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server at this URL.
    Single(String),
    /// A Redis Cluster reached through these node URLs.
    Cluster(Vec<String>),
}

/// Why a `--redis` value could not be used.
#[derive(Debug, thiserror::Error)]
#[error("--redis {spec:?}: {source}")]
pub struct RedisConnectError {
    /// The value given, its passwords masked.
    pub spec: String,
    /// What the client said.
    #[source]
    pub source: RedisError,
}

/// TLS for `rediss://` URLs: the CA to trust instead of the system's roots (`--tls_ca`), and
/// a client certificate and key for a Redis that asks for one (`--tls_cert/--tls_key`), all
/// PEM. Redis AUTH comes from the URL (`rediss://user:password@host:port/db`).
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    /// The CA certificate to trust.
    pub ca: Option<Vec<u8>>,
    /// The client certificate and its key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    /// The certificates as the client takes them, when any are given.
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }
}

/// `spec` with the password of each URL in it masked, for messages and logs. Each URL's
/// user information runs from its `://` to the last `@` before the next URL, so a password
/// holding a comma or an `@` is masked whole.
pub fn redacted(spec: &str) -> String {
    // Where each URL's part after `://` starts.
    let starts: Vec<usize> = spec.match_indices("://").map(|(i, _)| i + 3).collect();
    let mut out = String::with_capacity(spec.len());
    let mut copied = 0;
    for (n, &start) in starts.iter().enumerate() {
        // This URL ends at the comma before the next URL's scheme.
        let end = starts.get(n + 1).map_or(spec.len(), |&next| {
            let scheme = next - 3;
            spec[start..scheme].rfind(',').map_or(scheme, |c| start + c)
        });
        let Some(at) = spec[start..end].rfind('@') else {
            continue;
        };
        if let Some((user, _)) = spec[start..start + at].split_once(':') {
            out.push_str(&spec[copied..start]);
            out.push_str(user);
            out.push_str(":***");
            copied = start + at;
        }
    }
    out.push_str(&spec[copied..]);
    out
}

/// Whether a Redis URL asks for TLS.
fn is_tls(url: &str) -> bool {
    url.trim_start().starts_with("rediss://")
}

/// Reads a `--redis` value: one URL for a server, several (or `redis+cluster://`) for a
/// cluster.
pub fn parse_target(spec: &str) -> RedisTarget {
    let spec = spec.trim();
    if let Some(nodes) = spec.strip_prefix("redis+cluster://") {
        return RedisTarget::Cluster(
            nodes
                .split(',')
                .filter(|n| !n.trim().is_empty())
                .map(|n| format!("redis://{}", n.trim()))
                .collect(),
        );
    }
    let urls: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    match urls.as_slice() {
        [one] => RedisTarget::Single(one.clone()),
        _ => RedisTarget::Cluster(urls),
    }
}

impl RedisConn {
    /// Checks that `spec` reads as a `--redis` value, without connecting.
    pub fn check(spec: &str) -> Result<(), RedisConnectError> {
        let fail = |source| RedisConnectError {
            spec: redacted(spec),
            source,
        };
        match parse_target(spec) {
            RedisTarget::Single(url) => redis::Client::open(url.as_str()).map(drop).map_err(fail),
            RedisTarget::Cluster(nodes) => redis::cluster::ClusterClient::new(nodes)
                .map(drop)
                .map_err(fail),
        }
    }

    /// Connects to what `spec` names (see [`parse_target`]), with `tls` for `rediss://` URLs.
    pub async fn connect(spec: &str, tls: &RedisTls) -> Result<RedisConn, RedisConnectError> {
        let fail = |source| RedisConnectError {
            spec: redacted(spec),
            source,
        };
        let certificates = tls.certificates();
        match parse_target(spec) {
            RedisTarget::Single(url) => {
                let client = match &certificates {
                    Some(certs) if is_tls(&url) => {
                        redis::Client::build_with_tls(url.as_str(), certs.clone())
                    }
                    _ => redis::Client::open(url.as_str()),
                }
                .map_err(fail)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(RETRIES)
                    .set_max_delay(MAX_RETRY_DELAY);
                Ok(RedisConn::over(Link::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(fail)?,
                )))
            }
            RedisTarget::Cluster(nodes) => {
                let tls_nodes = nodes.iter().any(|n| is_tls(n));
                let mut builder = redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(RETRIES as u32);
                if let (true, Some(certs)) = (tls_nodes, certificates) {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(fail)?;
                Ok(RedisConn::over(Link::Cluster(
                    client.get_async_connection().await.map_err(fail)?,
                )))
            }
        }
    }

    fn over(link: Link) -> RedisConn {
        RedisConn {
            link,
            sent: Arc::default(),
        }
    }

    /// Commands sent so far through this connection and its clones (a script call is one).
    pub fn commands_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.sent
            .fetch_add(pipeline.len() as u64, Ordering::Relaxed);
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_messages() {
        assert_eq!(
            redacted("rediss://:s3cret@r1:6380/0"),
            "rediss://:***@r1:6380/0"
        );
        assert_eq!(
            redacted("redis://app:pw@a:1,redis://b:2"),
            "redis://app:***@a:1,redis://b:2"
        );
        assert_eq!(redacted("redis://r1:6379/0"), "redis://r1:6379/0");
        assert_eq!(
            redacted("rediss://:a,b@c@r1:6380/0"),
            "rediss://:***@r1:6380/0"
        );
        assert_eq!(
            redacted("rediss://u:p1@a:1,rediss://v:p2@b:2"),
            "rediss://u:***@a:1,rediss://v:***@b:2"
        );
    }

    #[test]
    fn one_url_is_a_server_and_several_are_a_cluster() {
        assert_eq!(
            parse_target("redis://r1:6379/0"),
            RedisTarget::Single("redis://r1:6379/0".into())
        );
        assert_eq!(
            parse_target("redis://a:1,redis://b:2"),
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            parse_target("redis+cluster://a:1,b:2"),
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
    }
}
