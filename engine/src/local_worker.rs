//! The settings of single-machine mode's in-process worker: its SSRF guard lets through the
//! addresses of the hosts the user named as seeds, so that `engine --seed http://intranet/`
//! works on one machine, while every other private address stays refused.

use crate::config::EngineConfig;
use crate::state::Restored;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tracing::{info, warn};
use url::{Host, Url};

/// Seed hosts looked up at most; a longer seed list keeps the guard for the rest.
const MAX_SEED_HOSTS: usize = 1_000;
/// Time to look up one seed host.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lookups at once.
const LOOKUPS_AT_ONCE: usize = 16;

/// A seed's origin: its scheme, its host as the URL writes it, and its port.
type Origin = (String, String, u16);

fn origin_of(url: &Url) -> Option<Origin> {
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_owned(),
        url.port_or_known_default()?,
    ))
}

/// The addresses a seed's host is: its own when it is an IP literal, or those a name resolves
/// to (none when the lookup fails or takes too long).
async fn resolve(url: &Url) -> Vec<IpAddr> {
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        Some(Host::Ipv4(v4)) => vec![v4.into()],
        Some(Host::Ipv6(v6)) => vec![v6.into()],
        Some(Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(e)) => {
                    warn!(host = %name, cause = %e, "cannot look up a seed host; its private addresses stay refused");
                    Vec::new()
                }
                Err(_) => {
                    warn!(host = %name, "looking up a seed host timed out; its private addresses stay refused");
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    }
}

/// The in-process worker's settings: `config.local_worker`, its guard also letting each seed
/// origin (`--seed`, the spider's start URLs, or the seeds of the crawl being resumed) reach
/// its own host's special (private, loopback, ...) addresses, and nothing else: not another
/// host resolving to them, not another port of the host.
pub async fn settings(config: &EngineConfig, restored: &Restored) -> worker::WorkerConfig {
    settings_with(config, restored, |url| async move { resolve(&url).await }).await
}

/// [`settings`], with `lookup` giving the addresses of a seed's host.
async fn settings_with<F, Fut>(
    config: &EngineConfig,
    restored: &Restored,
    lookup: F,
) -> worker::WorkerConfig
where
    F: Fn(Url) -> Fut,
    Fut: std::future::Future<Output = Vec<IpAddr>>,
{
    let mut settings = config.local_worker.clone();
    if settings.fetch.addresses.allow_private {
        return settings;
    }
    let resumed_seeds = restored
        .queue
        .iter()
        .filter(|(_, e)| e.request.depth == 0 && e.redirects == 0)
        .filter_map(|(_, e)| Url::parse(&e.request.url).ok());
    let mut origins: BTreeMap<Origin, Url> = BTreeMap::new();
    for url in config.seeds.iter().cloned().chain(resumed_seeds) {
        if let Some(origin) = origin_of(&url) {
            origins.entry(origin).or_insert(url);
        }
    }
    if origins.len() > MAX_SEED_HOSTS {
        warn!(
            origins = origins.len(),
            looked_up = MAX_SEED_HOSTS,
            "too many seed origins to look up; private addresses of the others stay refused"
        );
    }
    let lookup = &lookup;
    let found: Vec<(Origin, Vec<IpAddr>)> =
        futures::stream::iter(origins.into_iter().take(MAX_SEED_HOSTS))
            .map(|(origin, url)| async move { (origin, lookup(url).await) })
            .buffer_unordered(LOOKUPS_AT_ONCE)
            .collect()
            .await;
    for ((scheme, host, port), addrs) in found {
        let policy = &settings.fetch.addresses;
        let special = addrs
            .iter()
            .filter(|ip| policy.kind(**ip).is_some())
            .count();
        if special == 0 {
            continue;
        }
        if special < addrs.len() {
            // A name that mixes public and private addresses is a rebinding trap as often as
            // an intranet: no allowance.
            warn!(%host, addresses = ?addrs, "a seed host resolves to public and private addresses; its private ones stay refused");
            continue;
        }
        info!(origin = %format!("{scheme}://{host}:{port}"), addresses = ?addrs, "the in-process worker may fetch this seed origin from its own private addresses");
        settings
            .fetch
            .addresses
            .origins
            .push(worker::addresses::AllowedOrigin {
                scheme,
                host,
                port,
                addrs,
            });
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seeds: &[&str]) -> EngineConfig {
        let mut config = EngineConfig {
            seeds: seeds.iter().map(|s| Url::parse(s).expect("url")).collect(),
            ..EngineConfig::default()
        };
        config.local_worker.fetch.addresses = Default::default();
        config
    }

    #[tokio::test]
    async fn a_seeds_own_private_addresses_are_let_through_for_its_origin_and_no_other() {
        let config = config(&["http://127.0.0.1:8000/", "http://93.184.216.34/"]);
        let settings = settings(&config, &Restored::default()).await;
        let policy = &settings.fetch.addresses;
        assert!(policy.allowed.is_empty(), "no bare address is allowed");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(policy.check("127.0.0.1", ip("127.0.0.1")).is_ok());
        assert!(policy.check("h", ip("127.0.0.1")).is_err(), "another host");
        assert!(policy.check("127.0.0.1", ip("127.0.0.2")).is_err());
        assert!(policy.check("h", ip("10.0.0.1")).is_err());
        let url = |u: &str| Url::parse(u).expect("url");
        assert!(policy.check_url(&url("http://127.0.0.1:8000/x")).is_ok());
        assert!(policy.check_url(&url("http://127.0.0.1:2375/")).is_err());
    }

    #[tokio::test]
    async fn a_seed_host_with_public_and_private_addresses_gets_no_allowance() {
        let config = config(&["http://mixed.example/", "http://intranet.example:8080/"]);
        let settings = settings_with(&config, &Restored::default(), |url| async move {
            let addrs: &[&str] = match url.host_str() {
                Some("mixed.example") => &["93.184.216.34", "169.254.169.254", "127.0.0.1"],
                _ => &["10.0.0.7"],
            };
            addrs.iter().map(|a| a.parse().expect("ip")).collect()
        })
        .await;
        let origins = &settings.fetch.addresses.origins;
        assert_eq!(origins.len(), 1, "{origins:?}");
        assert_eq!(
            (origins[0].host.as_str(), origins[0].port),
            ("intranet.example", 8080)
        );
        let policy = &settings.fetch.addresses;
        let metadata = "169.254.169.254".parse().expect("ip");
        assert!(policy.check("mixed.example", metadata).is_err());
    }
}
