//! `engine`: runs a crawl across Spinneret workers and sends the items to an itemsaver.

use engine::cli::Args;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = common::config::parse_loaded::<Args>();
    let args = loaded.args;
    if args.print_config {
        print!("{}", loaded.described);
        return ExitCode::SUCCESS;
    }
    let json = args.log.log_format == common::cli::LogFormat::Json;
    let progress = engine::progress::Progress::detect(args.output.quiet, json);
    let level = if args.output.quiet { "warn" } else { "info" };
    common::cli::init_tracing_with(args.log.log_format, level, progress.log_writer());
    // Connection bursts meet the servers' own limits, not the system's.
    common::cli::raise_open_files_limit();
    match crawl(&args, progress).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn crawl(args: &Args, progress: engine::progress::Progress) -> anyhow::Result<()> {
    if let Some(path) = &args.check_spider {
        let (run, spec) = engine::load_spider(path)?;
        engine::spider_schedule(&spec)
            .map_err(|why| anyhow::anyhow!("spider {}: {why}", path.display()))?;
        let rules: Vec<String> = spec
            .rules
            .iter()
            .map(|r| {
                let start = if r.name == run.start_rule {
                    ", start"
                } else {
                    ""
                };
                let kinds: Vec<&str> = r.extract.iter().map(|x| x.kind.as_str()).collect();
                format!(
                    "{} ({} follow{start}; extracts [{}])",
                    r.name,
                    r.follow.len(),
                    kinds.join(", ")
                )
            })
            .collect();
        println!(
            "spider {:?} in {} is valid: {} rule(s): {}",
            run.name,
            path.display(),
            rules.len(),
            rules.join("; ")
        );
        return Ok(());
    }
    let config = args.config()?;
    let shutdown = CancellationToken::new();
    common::cli::cancel_on_signals(shutdown.clone());
    let admin_token = args.operate.admin_token.clone().filter(|t| !t.is_empty());
    // As short as a password, a token could be guessed: as long as an RPC token at least.
    if let Some(token) = &admin_token
        && token.trim().len() < common::handshake::MIN_TOKEN_BYTES
    {
        anyhow::bail!(
            "--admin_token has {} bytes; use at least {} (for example `head -c 32 /dev/urandom | base64`)",
            token.trim().len(),
            common::handshake::MIN_TOKEN_BYTES
        );
    }
    let admin_tls = match (&args.operate.admin_tls_cert, &args.operate.admin_tls_key) {
        (Some(cert), Some(key)) => Some(common::tls::https_config(common::tls::IdentityFiles {
            cert: ("--admin_tls_cert", cert),
            key: ("--admin_tls_key", key),
        })?),
        _ => None,
    };
    let admin = match args.operate.admin {
        Some(addr) => {
            if !addr.ip().is_loopback() && admin_token.is_none() && !args.operate.insecure {
                anyhow::bail!(
                    "refusing to serve the admin API on {addr} without --admin_token: anyone who can reach it could steer the crawl; give a token, or pass --insecure on a private network"
                );
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for --admin: {e}"))?;
            let scheme = if admin_tls.is_some() { "https" } else { "http" };
            // Scripts and tests read this line to learn the port when given port 0.
            eprintln!("admin on {scheme}://{}/", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let admin_tls_ca = match &args.operate.admin_tls_ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--admin_tls_ca {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "--admin_tls_ca {}: not PEM certificates: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                anyhow::bail!("--admin_tls_ca {}: no certificate in it", path.display());
            }
            Some(pem)
        }
        None => None,
    };
    // Other engines forward changes to this one by its advertised name.
    let mut admin_hosts = args.operate.admin_hosts.clone();
    admin_hosts.extend(args.cluster.advertise.clone());
    let operate = engine::Operate {
        admin,
        admin_token,
        admin_hosts,
        admin_tls,
        admin_tls_ca,
        progress,
    };
    let summary = engine::run_with(config, operate, shutdown).await?;
    println!("{summary}");
    if let Some(path) = &args.output.summary_json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
