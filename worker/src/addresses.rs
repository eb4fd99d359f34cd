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

use ipnet::{IpNet, Ipv6Net};
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
    /// This network's own NAT64 prefixes (`--nat64_prefix`, RFC 6052): an address inside one
    /// is judged as the IPv4 address it embeds.
    pub nat64: Vec<Ipv6Net>,
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

/// An address flag's value that does not read.
#[derive(Debug, thiserror::Error)]
pub enum AddrFlagError {
    /// Not a network or an address (`--allow_addr`).
    #[error("{0:?} is not a network (10.2.0.0/16) or an address (10.2.0.7)")]
    NotANetwork(String),
    /// Not an IPv6 network (`--nat64_prefix`).
    #[error("{0:?} is not an IPv6 network (2001:db8:64::/96)")]
    NotAnIpv6Network(String),
    /// An IPv6 network of a length RFC 6052 does not allow (`--nat64_prefix`).
    #[error("{0:?}: a NAT64 prefix is 32, 40, 48, 56, 64 or 96 bits long (RFC 6052)")]
    Nat64Length(String),
}

/// Reads an `--allow_addr` value: a network in CIDR notation, or one address.
pub fn parse_network(value: &str) -> Result<IpNet, AddrFlagError> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| AddrFlagError::NotANetwork(value.to_owned()))
}

/// Reads a `--nat64_prefix` value: an IPv6 network of one of the lengths RFC 6052 allows
/// (32, 40, 48, 56, 64 or 96 bits).
pub fn parse_nat64_prefix(value: &str) -> Result<Ipv6Net, AddrFlagError> {
    let value = value.trim();
    let net: Ipv6Net = value
        .parse()
        .map_err(|_| AddrFlagError::NotAnIpv6Network(value.to_owned()))?;
    if ![32, 40, 48, 56, 64, 96].contains(&net.prefix_len()) {
        return Err(AddrFlagError::Nat64Length(value.to_owned()));
    }
    Ok(net.trunc())
}

/// The IPv4 address embedded in `ip` under NAT64 prefix `prefix` (RFC 6052, section 2.2:
/// the 32 bits follow the prefix, skipping bits 64 to 71).
fn nat64_embedded(prefix: &Ipv6Net, ip: Ipv6Addr) -> Ipv4Addr {
    let bytes = ip.octets();
    let start = usize::from(prefix.prefix_len() / 8);
    let mut v4 = [0u8; 4];
    let mut from = (start..16).filter(|&i| i != 8);
    for byte in &mut v4 {
        *byte = from.next().map_or(0, |i| bytes[i]);
    }
    Ipv4Addr::from(v4)
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
    } else if ip.is_documentation() {
        // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (RFC 5737): never on the internet,
        // so whatever answers there is local.
        "documentation"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address: mapped (::ffff:a.b.c.d),
    // SIIT's IPv4-translated (::ffff:0:a.b.c.d, RFC 7915), IPv4-compatible (::a.b.c.d), NAT64's
    // well-known prefix (64:ff9b::a.b.c.d, RFC 6052) and 6to4 (2002:AABB:CCDD::, the address
    // in the second and third groups).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    let segments = ip.segments();
    let v4_of = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let [.., hi, lo] = segments;
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return special_v4(v4_of(hi, lo));
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return special_v4(v4_of(hi, lo));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return special_v4(v4_of(hi, lo));
    }
    if segments[0] == 0x2002 {
        return special_v4(v4_of(segments[1], segments[2]));
    }
    Some(if segments[..3] == [0x64, 0xff9b, 1] {
        // NAT64's local-use prefix (RFC 8215): each network chooses its own layout inside it,
        // so the IPv4 address cannot be read; it leads into a local translator.
        "NAT64 local-use"
    } else if segments[..2] == [0x2001, 0] {
        // Teredo (RFC 4380) tunnels to an IPv4 address through a relay of the network's.
        "Teredo"
    } else if segments[..2] == [0x2001, 0xdb8] {
        "documentation"
    } else if ip.is_loopback() {
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
            ..AddressPolicy::default()
        }
    }

    /// The kind of special address `ip` is on this network (its NAT64 prefixes known), or
    /// `None` for an ordinary public one.
    pub fn kind(&self, ip: IpAddr) -> Option<&'static str> {
        if let IpAddr::V6(v6) = ip
            && let Some(prefix) = self.nat64.iter().find(|p| p.contains(&v6))
        {
            return special_v4(nat64_embedded(prefix, v6));
        }
        special_kind(ip)
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
        match self.kind(ip) {
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
                        kind: self.kind(addr).unwrap_or("special"),
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
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("2002:a9fe:a9fe::", "link-local"),
            ("2002:7f00:1::1", "loopback"),
            ("fec0::1", "site-local"),
            ("192.0.0.170", "reserved"),
            ("198.18.0.1", "reserved"),
            // IPv4 documentation networks (RFC 5737), and IPv6's (RFC 3849).
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("2001:db8::1", "documentation"),
            // SIIT's IPv4-translated addresses (::ffff:0:0/96) carry the address they reach.
            ("::ffff:0:7f00:1", "loopback"),
            ("::ffff:0:a9fe:a9fe", "link-local"),
            // The local-use NAT64 prefix has no layout to read: blocked whole.
            ("64:ff9b:1::a00:1", "NAT64 local-use"),
            ("64:ff9b:1:ffff::808:808", "NAT64 local-use"),
            ("64:ff9b:1:a00:1::", "NAT64 local-use"),
            // Teredo tunnels through a relay to an address of its own choosing.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
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
            "::ffff:0:808:808",
            "64:ff9b::808:808",
        ] {
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }

    #[test]
    fn nat64_addresses_decode_as_rfc_6052_lays_them_out() {
        // RFC 6052, section 2.4: 192.0.2.33 under a prefix of each length.
        for (prefix, address) in [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ] {
            let prefix = parse_nat64_prefix(prefix).expect("prefix");
            assert_eq!(
                nat64_embedded(&prefix, address.parse().expect("ip")),
                Ipv4Addr::new(192, 0, 2, 33),
                "{prefix} {address}"
            );
        }
    }

    #[test]
    fn addresses_under_a_networks_own_nat64_prefix_are_judged_by_their_ipv4_address() {
        let prefixes = [
            "2001:db8:64::/96",
            "2001:db8:100::/40",
            "2001:db8:1234::/48",
        ];
        let policy = AddressPolicy {
            nat64: prefixes
                .iter()
                .map(|p| parse_nat64_prefix(p).expect("prefix"))
                .collect(),
            ..AddressPolicy::default()
        };
        let kind = |ip: &str| policy.kind(ip.parse().expect("ip"));
        // /96: the address in the last 32 bits.
        assert_eq!(kind("2001:db8:64::a9fe:a9fe"), Some("link-local"));
        assert_eq!(kind("2001:db8:64::808:808"), None);
        // /40: 127.0.0.1 as 2001:db8:17f:0:1:: (bits 64 to 71 skipped).
        assert_eq!(kind("2001:db8:17f:0:1::"), Some("loopback"));
        assert_eq!(kind("2001:db8:108:8:8::"), None);
        // /48: 10.0.0.1 as 2001:db8:1234:a00:0:100::.
        assert_eq!(kind("2001:db8:1234:a00:0:100::"), Some("private"));
        // Outside every prefix, the usual rules (2001:db8::/32 is documentation).
        assert_eq!(kind("2001:db8:ffff::1"), Some("documentation"));
        assert!(parse_nat64_prefix("2001:db8::/33").is_err());
        assert!(parse_nat64_prefix("10.0.0.0/8").is_err());
        let refused = policy
            .check("nat64.example", "2001:db8:64::7f00:1".parse().expect("ip"))
            .expect_err("refused");
        assert_eq!(refused.kind, "loopback");
    }

    #[test]
    fn allowances_open_what_they_name() {
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(AddressPolicy::default().check("h", ip).is_err());
        assert!(AddressPolicy::allow_all().check("h", ip).is_ok());
        let policy = AddressPolicy {
            allow_private: false,
            allowed: vec!["10.1.0.0/16".parse().expect("net")],
            ..AddressPolicy::default()
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
