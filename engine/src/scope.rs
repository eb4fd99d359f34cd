//! Which URLs belong to the crawl: allowed domains and their subdomains.

use url::Url;

/// The allowed domains of a crawl.
#[derive(Clone, Debug)]
pub struct Scope {
    domains: Vec<String>,
}

impl Scope {
    /// A scope over `domains`, or over the seeds' hosts when `domains` is empty.
    pub fn new(domains: &[String], seeds: &[Url]) -> Self {
        let domains = if domains.is_empty() {
            seeds
                .iter()
                .filter_map(|s| s.host_str().map(str::to_owned))
                .collect()
        } else {
            domains
                .iter()
                .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
                .collect()
        };
        Scope { domains }
    }

    /// Whether `url`'s host is an allowed domain or a subdomain of one.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        self.domains.iter().any(|d| {
            host == d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        })
    }

    /// The allowed domains.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn seeds_hosts_are_the_default_scope() {
        let scope = Scope::new(&[], &[url("http://127.0.0.1:8000/")]);
        assert!(scope.allows(&url("http://127.0.0.1:8000/p/1.html")));
        assert!(scope.allows(&url("http://127.0.0.1:9999/other-port")));
        assert!(!scope.allows(&url("http://localhost:8000/")));
    }

    #[test]
    fn subdomains_are_allowed_but_lookalikes_are_not() {
        let scope = Scope::new(&["Example.com".into()], &[]);
        assert!(scope.allows(&url("https://example.com/")));
        assert!(scope.allows(&url("https://www.example.com/")));
        assert!(!scope.allows(&url("https://badexample.com/")));
        assert!(!scope.allows(&url("https://example.com.evil.test/")));
    }
}
