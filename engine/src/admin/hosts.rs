//! The names the admin server answers to, token or not: a defence against DNS
//! rebinding, where a page on the attacker's domain re-points that domain at this machine and
//! then talks to the admin server as same-origin. The browser then sends the attacker's name
//! as `Host`, so only names that mean this machine are served: loopback names and addresses,
//! the address the server is bound to (every interface address when bound to all), and names
//! the operator gives with `--admin_host` (and, in cluster mode, `--advertise`). With a
//! token, changes are safe from a rebound page already, but reads are not: `/api/tasks`
//! shows seeds, which may carry credentials.

use std::net::{IpAddr, SocketAddr};

/// The `Host` values the admin server accepts.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    names: Vec<String>,
    addresses: Vec<IpAddr>,
}

impl AllowedHosts {
    /// The names of a server bound to `bound`, plus `extra` (from `--admin_host`).
    pub fn new(bound: SocketAddr, extra: &[String]) -> Self {
        let addresses = if bound.ip().is_unspecified() {
            interface_addresses()
        } else {
            vec![bound.ip()]
        };
        AllowedHosts {
            names: extra
                .iter()
                .map(|n| strip_port(n.trim()).to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
            addresses,
        }
    }

    /// Whether a request naming the server as `host` (a `Host` header: name or address, with
    /// an optional port) may be served.
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host.trim()).to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name) {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return ip.is_loopback() || self.addresses.contains(&ip);
        }
        false
    }
}

/// `host` without its `:port`, if it has one (`[::1]:80` gives `[::1]`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// The addresses of this machine's network interfaces.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that stays valid until freeifaddrs;
    // each entry's address is read only when present and of a family whose layout is known.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_bound_address_are_served_others_refused() {
        let hosts = AllowedHosts::new("192.0.2.7:8080".parse().expect("addr"), &[]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "app.localhost",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "192.0.2.7:8080",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "192.0.2.8",
            "localhost.evil.example",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn names_given_by_the_operator_are_served() {
        let hosts = AllowedHosts::new(
            "127.0.0.1:8080".parse().expect("addr"),
            &["Crawler.Internal".into(), "10.0.0.5:8080".into()],
        );
        assert!(hosts.allows("crawler.internal:8080"));
        assert!(hosts.allows("10.0.0.5"));
        assert!(!hosts.allows("crawler.internal.evil.example"));
    }

    #[test]
    fn bound_to_every_interface_serves_their_addresses() {
        let hosts = AllowedHosts::new("0.0.0.0:8080".parse().expect("addr"), &[]);
        let mine = interface_addresses();
        assert!(
            mine.iter().any(IpAddr::is_loopback),
            "lo is listed: {mine:?}"
        );
        for ip in mine {
            let host = match ip {
                IpAddr::V4(v4) => format!("{v4}:8080"),
                IpAddr::V6(v6) => format!("[{v6}]:8080"),
            };
            assert!(hosts.allows(&host), "{host}");
        }
        assert!(!hosts.allows("evil.example"));
    }
}
