//! Which network addresses a worker may fetch from: the SSRF guard.
//!
//! By default a worker refuses loopback, private (RFC 1918, RFC 4193), link-local (including
//! the cloud metadata address 169.254.169.254), CGNAT, multicast, unspecified and broadcast
//! addresses, so that nobody who can send it a URL can make it reach its own network. The
//! check is made on the addresses the HTTP client connects to: host names go through
//! [`GuardedResolver`], which hands the connector only permitted addresses (a name that
//! resolves differently a moment later cannot slip through, since nothing is resolved
//! twice), and IP literals, which skip resolution, are checked by [`AddressPolicy::check_url`]
//! before each request and each robots.txt redirect hop. Page redirects are not followed by
//! the worker: each hop comes back as a new request and is checked like any URL.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use url::{Host, Url};

/// Which addresses fetches may connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Every address is allowed (`--allow_private`): for intranet crawls and tests.
    pub allow_private: bool,
    /// Networks allowed although they are special (`--allow_addr CIDR`).
    pub allowed: Vec<IpNet>,
    /// Origins whose own special addresses are allowed, and for them only (the seeds of a
    /// single-machine crawl: `engine --seed http://intranet/`).
    pub origins: Vec<AllowedOrigin>,
}

/// An origin (scheme, host and port) allowed to reach its own special addresses: the host
/// name resolved to these addresses, every one of them special, when the crawl started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host as the URL writes it (a name, an IPv4 literal, or `[v6]`).
    pub host: String,
    /// The port, given or the scheme's.
    pub port: u16,
    /// The addresses allowed for this host (those it resolved to).
    pub addrs: Vec<IpAddr>,
}

/// A fetch refused because its host is, or resolves only to, a blocked address.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{host} is {addr}, a {kind} address this worker does not fetch from (--allow_private or --allow_addr to permit it)"
)]
pub struct Blocked {
    /// The host asked for.
    pub host: String,
    /// The address it is or resolved to.
    pub addr: IpAddr,
    /// What kind of address it is.
    pub kind: &'static str,
}

/// Reads an `--allow_addr` value: a network in CIDR notation, or one address.
pub fn parse_network(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not a network (10.2.0.0/16) or an address (10.2.0.7)"))
}

/// The kind of special address `ip` is, or `None` for an ordinary public one.
pub fn special_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "CGNAT"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if a == 0 {
        "unspecified"
    } else if a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b & 0xfe) == 18)
    {
        // 240/4, IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15).
        "reserved"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address: mapped (::ffff:a.b.c.d),
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d, and the local-use 64:ff9b:1::/48)
    // and 6to4 (2002:AABB:CCDD::, the address in the second and third groups).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let segments = ip.segments();
    let v4_of = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let [.., hi, lo] = segments;
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return special_v4(v4_of(hi, lo));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1] {
        return special_v4(v4_of(hi, lo));
    }
    if segments[0] == 0x2002 {
        return special_v4(v4_of(segments[1], segments[2]));
    }
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if segments[0] & 0xfe00 == 0xfc00 {
        "private"
    } else if segments[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if segments[0] & 0xffc0 == 0xfec0 {
        "site-local"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

impl AddressPolicy {
    /// Allows every address.
    pub fn allow_all() -> AddressPolicy {
        AddressPolicy {
            allow_private: true,
            allowed: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Why connecting to `ip` for `host` is refused, if it is. An allowed origin's addresses
    /// pass for its own host name only (its port is checked by [`AddressPolicy::check_url`]
    /// before any connection).
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_private
            || self.allowed.iter().any(|net| net.contains(&ip))
            || self
                .origins
                .iter()
                .any(|o| o.host == host && o.addrs.contains(&ip))
        {
            return Ok(());
        }
        match special_kind(ip) {
            None => Ok(()),
            Some(kind) => Err(Blocked {
                host: host.to_owned(),
                addr: ip,
                kind,
            }),
        }
    }

    /// Checks a URL before it is fetched: another origin of an allowed origin's host (another
    /// port or scheme) gets no allowance, and a host that is an IP literal (the HTTP client
    /// connects to those without resolving them) is checked here; host names are checked
    /// when resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        let host = url.host_str().unwrap_or_default();
        if !self.allow_private {
            let mut of_host = self.origins.iter().filter(|o| o.host == host).peekable();
            if of_host.peek().is_some()
                && !of_host.clone().any(|o| {
                    o.scheme == url.scheme() && Some(o.port) == url.port_or_known_default()
                })
            {
                // The host's addresses are all special, and allowed for its seed's origin
                // alone: this one is refused as they would be.
                let blocked = of_host
                    .flat_map(|o| o.addrs.iter().copied())
                    .find(|ip| !self.allowed.iter().any(|net| net.contains(ip)));
                if let Some(addr) = blocked {
                    return Err(Blocked {
                        host: host.to_owned(),
                        addr,
                        kind: special_kind(addr).unwrap_or("special"),
                    });
                }
            }
        }
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), ip)
    }

    /// The DNS resolver to give the HTTP client, or `None` when every address is allowed
    /// (the client's own resolver then serves).
    pub fn resolver(&self) -> Option<Arc<GuardedResolver>> {
        (!self.allow_private).then(|| {
            Arc::new(GuardedResolver {
                policy: self.clone(),
            })
        })
    }
}

/// Resolves host names for the HTTP client and hands it only the permitted addresses; a
/// name with none fails with [`Blocked`].
#[derive(Debug)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        refused.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match (permitted.is_empty(), refused) {
                (true, Some(blocked)) => Err(Box::new(blocked) as _),
                _ => Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The [`Blocked`] refusal somewhere in an error's chain of causes, if there is one.
pub fn blocked_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origins_addresses_are_allowed_for_its_host_and_port_only() {
        let policy = AddressPolicy {
            origins: vec![AllowedOrigin {
                scheme: "http".into(),
                host: "intranet".into(),
                port: 8000,
                addrs: vec!["10.0.0.5".parse().expect("ip")],
            }],
            ..AddressPolicy::default()
        };
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        assert!(policy.check("intranet", ip).is_ok(), "its own host");
        assert!(
            policy.check("other.example", ip).is_err(),
            "another name resolving to the same address"
        );
        assert!(
            policy
                .check("intranet", "10.0.0.6".parse().expect("ip"))
                .is_err(),
            "another address of the host"
        );
        let url = |u: &str| Url::parse(u).expect("url");
        assert!(policy.check_url(&url("http://intranet:8000/a")).is_ok());
        for other in [
            "http://intranet:2375/containers/json",
            "https://intranet:8000/",
            "http://intranet/",
        ] {
            let refused = policy.check_url(&url(other)).expect_err(other);
            assert_eq!((refused.addr, refused.kind), (ip, "private"), "{other}");
        }
    }

    fn blocked(ip: &str) -> Option<&'static str> {
        special_kind(ip.parse().expect("ip"))
    }

    #[test]
    fn special_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("fd00::1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b:1::a00:1", "private"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("2002:a9fe:a9fe::", "link-local"),
            ("2002:7f00:1::1", "loopback"),
            ("fec0::1", "site-local"),
            ("192.0.0.170", "reserved"),
            ("198.18.0.1", "reserved"),
        ] {
            assert_eq!(blocked(ip), Some(kind), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1111",
            "2002:5db8:d822::1",
            "198.20.0.1",
            "192.0.2.1",
        ] {
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }

    #[test]
    fn allowances_open_what_they_name() {
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(AddressPolicy::default().check("h", ip).is_err());
        assert!(AddressPolicy::allow_all().check("h", ip).is_ok());
        let policy = AddressPolicy {
            allow_private: false,
            allowed: vec!["10.1.0.0/16".parse().expect("net")],
            origins: Vec::new(),
        };
        assert!(policy.check("h", ip).is_ok());
        assert!(policy.check("h", "10.2.0.1".parse().expect("ip")).is_err());
    }

    #[test]
    fn ip_literal_urls_are_checked_and_names_are_left_to_the_resolver() {
        let policy = AddressPolicy::default();
        let url = |u: &str| Url::parse(u).expect("url");
        let err = policy
            .check_url(&url("http://169.254.169.254/latest/meta-data/"))
            .expect_err("metadata");
        assert_eq!(err.kind, "link-local");
        assert!(policy.check_url(&url("http://[::1]:8080/")).is_err());
        assert!(policy.check_url(&url("http://localhost/")).is_ok());
        assert!(policy.check_url(&url("http://93.184.216.34/")).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_blocked_addresses_is_refused() {
        use reqwest::dns::Resolve;
        let resolver = AddressPolicy::default().resolver().expect("guarded");
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let blocked = blocked_in(err.as_ref()).expect("a Blocked error");
        assert_eq!(blocked.kind, "loopback");
    }
}
