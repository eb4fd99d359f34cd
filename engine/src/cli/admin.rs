//! Engine flags: the admin API, dashboard and metrics, and who may use them.

use std::path::PathBuf;

/// The admin API, dashboard and metrics, and who may use them.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// Serve the admin API, Prometheus /metrics and the live dashboard on ADDR (`PORT` or
    /// `:PORT` listen on 127.0.0.1; give an IP, such as 0.0.0.0:8080, to listen elsewhere).
    #[arg(long, value_name = "ADDR", env = "SPINNERET_ADMIN", value_parser = common::metrics_http::parse_listen_addr)]
    pub admin: Option<std::net::SocketAddr>,

    /// Bearer token the admin API's changes (POST, DELETE) require; reads stay open.
    #[arg(
        long = "admin_token",
        alias = "admin-token",
        value_name = "TOKEN",
        env = "SPINNERET_ADMIN_TOKEN",
        requires = "admin",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Another name the admin server answers to (repeat or comma-separate): it serves only
    /// requests naming this machine (loopback, its bound address, or every interface address
    /// when bound to all), --advertise's host, and these names, against DNS rebinding.
    #[arg(
        long = "admin_host",
        alias = "admin-host",
        value_name = "NAME",
        env = "SPINNERET_ADMIN_HOSTS",
        value_delimiter = ',',
        requires = "admin"
    )]
    pub admin_hosts: Vec<String>,

    /// Serve the admin API on a non-loopback address without --admin_token: anyone who can
    /// reach it could steer the crawl. For private networks only.
    #[arg(long, requires = "admin")]
    pub insecure: bool,

    /// PEM certificate chain to serve the admin API and dashboard over HTTPS with.
    #[arg(
        long = "admin_tls_cert",
        alias = "admin-tls-cert",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_CERT",
        requires_all = ["admin", "admin_tls_key"]
    )]
    pub admin_tls_cert: Option<PathBuf>,

    /// PEM private key of --admin_tls_cert.
    #[arg(
        long = "admin_tls_key",
        alias = "admin-tls-key",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_KEY",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_key: Option<PathBuf>,

    /// PEM CA that alone is trusted for the other engines' admin servers, when a follower
    /// forwards a change to the leader over HTTPS (default: the system's roots and --tls_ca).
    #[arg(
        long = "admin_tls_ca",
        alias = "admin-tls-ca",
        value_name = "FILE",
        env = "SPINNERET_ADMIN_TLS_CA",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_ca: Option<PathBuf>,

    /// Keep running when idle and wait for tasks from the admin API (stop with Ctrl-C).
    #[arg(long, env = "SPINNERET_SERVE", requires = "admin")]
    pub serve: bool,
}
