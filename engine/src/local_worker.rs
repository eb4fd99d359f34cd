//! The settings of single-machine mode's in-process worker: its SSRF guard lets through the
//! addresses of the hosts the user named as seeds, so that `engine --seed http://intranet/`
//! works on one machine, while every other private address stays refused.

use crate::config::EngineConfig;
use crate::state::Restored;
use futures::StreamExt;
use std::collections::BTreeSet;
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

/// A seed's host: an address, or a name to look up with its port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SeedHost {
    Addr(IpAddr),
    Name(String, u16),
}

fn seed_host(url: &Url) -> Option<SeedHost> {
    match url.host()? {
        Host::Ipv4(v4) => Some(SeedHost::Addr(v4.into())),
        Host::Ipv6(v6) => Some(SeedHost::Addr(v6.into())),
        Host::Domain(name) => Some(SeedHost::Name(
            name.to_owned(),
            url.port_or_known_default().unwrap_or(80),
        )),
    }
}

/// The in-process worker's settings: `config.local_worker`, its guard also letting through
/// the special (private, loopback, ...) addresses of the seeds' hosts: `--seed`, the
/// spider's start URLs, or the seeds of the crawl being resumed.
pub async fn settings(config: &EngineConfig, restored: &Restored) -> worker::WorkerConfig {
    let mut settings = config.local_worker.clone();
    if settings.fetch.addresses.allow_private {
        return settings;
    }
    let resumed_seeds = restored
        .queue
        .iter()
        .filter(|(_, e)| e.request.depth == 0 && e.redirects == 0)
        .filter_map(|(_, e)| Url::parse(&e.request.url).ok());
    let hosts: BTreeSet<SeedHost> = config
        .seeds
        .iter()
        .cloned()
        .chain(resumed_seeds)
        .filter_map(|url| seed_host(&url))
        .collect();
    if hosts.len() > MAX_SEED_HOSTS {
        warn!(
            hosts = hosts.len(),
            looked_up = MAX_SEED_HOSTS,
            "too many seed hosts to look up; private addresses of the others stay refused"
        );
    }
    let found: Vec<Vec<IpAddr>> = futures::stream::iter(hosts.into_iter().take(MAX_SEED_HOSTS))
        .map(|host| async move {
            match host {
                SeedHost::Addr(ip) => vec![ip],
                SeedHost::Name(name, port) => {
                    let lookup = tokio::net::lookup_host((name.as_str(), port));
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
            }
        })
        .buffer_unordered(LOOKUPS_AT_ONCE)
        .collect()
        .await;
    let special: BTreeSet<IpAddr> = found
        .into_iter()
        .flatten()
        .filter(|ip| worker::addresses::special_kind(*ip).is_some())
        .collect();
    if !special.is_empty() {
        info!(addresses = ?special, "the in-process worker may fetch from the seeds' own private addresses");
    }
    settings
        .fetch
        .addresses
        .allowed
        .extend(special.into_iter().map(ipnet::IpNet::from));
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_seeds_own_private_addresses_are_let_through_and_no_others() {
        let mut config = EngineConfig {
            seeds: vec![
                Url::parse("http://127.0.0.1:8000/").expect("url"),
                Url::parse("http://93.184.216.34/").expect("url"),
            ],
            ..EngineConfig::default()
        };
        config.local_worker.fetch.addresses = Default::default();
        let settings = settings(&config, &Restored::default()).await;
        let allowed = &settings.fetch.addresses;
        assert_eq!(allowed.allowed, vec!["127.0.0.1/32".parse().expect("net")]);
        assert!(allowed.check("h", "127.0.0.1".parse().expect("ip")).is_ok());
        assert!(
            allowed
                .check("h", "127.0.0.2".parse().expect("ip"))
                .is_err()
        );
        assert!(allowed.check("h", "10.0.0.1".parse().expect("ip")).is_err());
    }
}
