//! `bench`: measures Spinneret on this machine against the machine's own limits, and writes
//! `target/bench/report.json`. `make bench` runs it on release binaries; `--quick` is small.

// The report is one `json!` literal, deeper than the default limit expands.
#![recursion_limit = "256"]

use anyhow::{Context as _, bail};
use bench::pages::Site;
use bench::server::{Server, Tally};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod render;

/// Measures crawl speed, CPU, RPC overhead and memory on this machine, and writes a report.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Pages in the benchmark site.
    #[arg(long, default_value_t = 20_000)]
    pages: usize,
    /// A small run (2,000 pages and smaller memory figures) that finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Requests in flight in the crawls.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Latency the server adds in the latency-bound run, in milliseconds.
    #[arg(long = "latency_ms", default_value_t = 50)]
    latency_ms: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
    /// Measure only the frontier's memory per URL with N URLs and print it (run in a fresh
    /// process, so memory freed by earlier steps cannot hide growth).
    #[arg(long = "measure_seen", value_name = "N", hide = true)]
    measure_seen: Option<usize>,
}

struct Sizes {
    pages: usize,
    render_pages: usize,
    latency_pages: usize,
    seen: [usize; 2],
    items: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(n) = args.measure_seen {
        println!("{}", seen_bytes_per_url(n));
        return Ok(());
    }
    let sizes = if args.quick {
        Sizes {
            pages: args.pages.min(2_000),
            // A tenth of the site, at least 20 pages: rendering is a thousand times slower.
            render_pages: (args.pages.min(2_000) / 10).max(20),
            latency_pages: 500,
            seen: [100_000, 1_000_000],
            items: 50_000,
        }
    } else {
        Sizes {
            pages: args.pages,
            render_pages: 500.min(args.pages),
            latency_pages: 10_000.min(args.pages),
            seen: [1_000_000, 10_000_000],
            items: 200_000,
        }
    };
    let bins = std::env::current_exe()?
        .parent()
        .context("no binary directory")?
        .to_owned();
    for b in ["engine", "worker", "itemsaver"] {
        if !bins.join(b).exists() {
            bail!(
                "{} is not built next to bench; run `cargo build --release --workspace --bins`",
                bins.join(b).display()
            );
        }
    }
    let dir = tempfile::tempdir()?;
    let site = Arc::new(Site::new(sizes.pages));
    let server = Server::start(site.clone()).await?;
    let c = args.concurrency;

    step(
        1,
        "server_raw_pages_per_s: every page by a tight concurrent client",
    );
    let server_raw = server_raw(&server, sizes.pages, c).await?;
    server.reset();

    step(
        2,
        "parse_ceiling_pages_per_s: the links parser over every page, all cores",
    );
    let parse_site = site.clone();
    let parse_ceiling = tokio::task::spawn_blocking(move || parse_ceiling(&parse_site)).await??;

    step(
        3,
        "inprocess_pages_per_s: engine --seed, single-machine mode (and warc_pages_per_s, with --warc)",
    );
    let crawl_flags = vec![
        format!("--seed={}", server.url(0)),
        format!("--concurrency={c}"),
        format!("--per_host={c}"),
        "--no_state".to_owned(),
    ];
    let mut flags = crawl_flags.clone();
    flags.push(format!(
        "--store={}",
        dir.path().join("inprocess.db").display()
    ));
    let inprocess = engine(&bins, dir.path(), &flags).await?;
    let inprocess_tally = server.tally();
    // The same crawl archiving every response as WARC: what --warc costs.
    server.reset();
    let mut warc_flags = crawl_flags.clone();
    warc_flags.push(format!("--store={}", dir.path().join("warc.db").display()));
    warc_flags.push(format!("--warc={}", dir.path().join("warc").display()));
    let warc = engine(&bins, dir.path(), &warc_flags).await?;
    let warc_bytes: u64 = std::fs::read_dir(dir.path().join("warc"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(dir.path().join("warc"))?;
    server.reset();
    server.reset();

    step(
        4,
        "distributed_pages_per_s: itemsaver + two workers + engine over loopback RPC",
    );
    let store = dir.path().join("distributed.db");
    let saver = spawn_server(
        &bins,
        "itemsaver",
        &[format!("--store={}", store.display())],
    )
    .await?;
    let w0 = spawn_server(&bins, "worker", &[format!("--concurrency={c}")]).await?;
    let w1 = spawn_server(&bins, "worker", &[format!("--concurrency={c}")]).await?;
    let mut flags = crawl_flags.clone();
    flags.push(format!("--itemsaver_host={}", saver.addr));
    flags.push(format!("--worker_hosts={},{}", w0.addr, w1.addr));
    let distributed = engine(&bins, dir.path(), &flags).await?;
    let tally = server.tally();
    let others_cpu: f64 = [&saver, &w0, &w1]
        .iter()
        .map(|s| process_cpu_secs(s.pid()).unwrap_or(0.0))
        .sum();
    drop((saver, w0, w1));
    let items_stored = itemsaver::SqliteStore::open(&store)?.count(None)?;
    let pages = tally.fetched.max(1) as f64;
    let engine_cpu = distributed["cpu_secs"].as_f64().unwrap_or(0.0);
    let cpu_ms_per_page = (engine_cpu + others_cpu) * 1000.0 / pages;
    let rpc_calls_per_page = distributed["rpc_calls"].as_f64().unwrap_or(0.0) / pages;
    let rpc_bytes_per_page = distributed["rpc_bytes"].as_f64().unwrap_or(0.0) / pages;
    server.reset();

    step(
        5,
        "latency_bound_pages_per_s: the server waits before every answer",
    );
    server.set_latency(Duration::from_millis(args.latency_ms));
    let mut flags = crawl_flags.clone();
    flags.push(format!(
        "--store={}",
        dir.path().join("latency.db").display()
    ));
    flags.push(format!("--max_pages={}", sizes.latency_pages));
    let latency = engine(&bins, dir.path(), &flags).await?;
    server.set_latency(Duration::ZERO);
    let ideal = c as f64 / (args.latency_ms as f64 / 1000.0);

    step(
        6,
        "seen_bytes_per_url: engine memory per URL known (seen set plus queue)",
    );
    let mut seen = [0.0; 2];
    for (slot, n) in seen.iter_mut().zip(sizes.seen) {
        let out = Command::new(std::env::current_exe()?)
            .arg(format!("--measure_seen={n}"))
            .output()
            .await?;
        *slot = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("seen measurement")?;
    }

    step(
        7,
        "itemsaver_items_per_s: saves into the default store (and postgres_items_per_s into PostgreSQL), batches of 500",
    );
    let items_per_s = itemsaver_items_per_s(dir.path(), sizes.items).await?;
    let postgres = postgres_items_per_s(sizes.items).await?;
    if postgres.is_none() {
        eprintln!("    postgres_items_per_s skipped: no PostgreSQL (scripts/deps.sh installs it)");
    }

    step(
        8,
        "cluster_pages_per_s: two engines share the crawl in Redis, with two workers and an itemsaver",
    );
    server.reset();
    let cluster = match find_redis_server() {
        Some(redis_server) => Some(
            cluster_crawl(
                &bins,
                dir.path(),
                &redis_server,
                &server,
                &crawl_flags,
                c,
                sizes.pages,
                sizes.seen[0],
            )
            .await?,
        ),
        None => {
            eprintln!("    skipped: no redis-server (scripts/deps.sh installs it)");
            None
        }
    };
    server.reset();

    step(
        9,
        "render_pages_per_s: one worker renders pages in headless Chromium, against the same worker fetching them",
    );
    let rendering =
        render::render_vs_plain(&bins, dir.path(), &server.url(0), sizes.render_pages).await?;
    if rendering.is_none() {
        eprintln!("    skipped: no Chromium (scripts/deps.sh installs it)");
    }
    server.reset();

    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let inprocess_pps = num(&inprocess["pages_per_sec"]);
    let distributed_pps = num(&distributed["pages_per_sec"]);
    let report = json!({
        "server_raw_pages_per_s": round(server_raw),
        "parse_ceiling_pages_per_s": round(parse_ceiling),
        "inprocess_pages_per_s": round(inprocess_pps),
        "warc_pages_per_s": round(num(&warc["pages_per_sec"])),
        "ratio_warc_to_inprocess": round3(num(&warc["pages_per_sec"]) / inprocess_pps.max(1e-9)),
        "warc_bytes_per_page": round(warc_bytes as f64 / sizes.pages.max(1) as f64),
        "distributed_pages_per_s": round(distributed_pps),
        "cpu_ms_per_page": round3(cpu_ms_per_page),
        "rpc_calls_per_page": round3(rpc_calls_per_page),
        "rpc_bytes_per_page": round(rpc_bytes_per_page),
        "latency_bound_pages_per_s": round(num(&latency["pages_per_sec"])),
        "latency_bound_ideal_pages_per_s": round(ideal),
        "seen_bytes_per_url": round(seen[1]),
        "itemsaver_items_per_s": round(items_per_s),
        "postgres_items_per_s": postgres.map(|(rate, _)| round(rate)),
        "postgres_copy_items_per_s": postgres.map(|(_, rate)| round(rate)),
        "ratio_distributed_to_inprocess": round3(distributed_pps / inprocess_pps.max(1e-9)),
        "ratio_inprocess_to_parse_ceiling": round3(inprocess_pps / parse_ceiling.max(1e-9)),
        "cluster_pages_per_s": cluster.as_ref().map(|c| round(c.pages_per_s)),
        "ratio_cluster_to_distributed": cluster.as_ref().map(|c| round3(c.pages_per_s / distributed_pps.max(1e-9))),
        "ratio_cluster_to_inprocess": cluster.as_ref().map(|c| round3(c.pages_per_s / inprocess_pps.max(1e-9))),
        "redis_cmds_per_page": cluster.as_ref().map(|c| round3(c.cmds_per_page)),
        "cluster_engine_cpu_ms_per_page": cluster.as_ref().map(|c| round3(c.engine_cpu_ms_per_page)),
        "cluster_loop_turns_per_page": cluster.as_ref().map(|c| round3(c.loop_turns_per_page)),
        "redis_bytes_per_seen_url": cluster.as_ref().map(|c| round3(c.seen_bytes_per_url)),
        "redis_bytes_per_queued_url": cluster.as_ref().map(|c| round(c.queued_bytes_per_url)),
        "render_pages_per_s": rendering.as_ref().map(|r| round3(r.render_pages_per_s)),
        "render_cpu_ms_per_page": rendering.as_ref().map(|r| round3(r.render_cpu_ms_per_page)),
        "render_plain_pages_per_s": rendering.as_ref().map(|r| round(r.plain_pages_per_s)),
        "render_plain_cpu_ms_per_page": rendering.as_ref().map(|r| round3(r.plain_cpu_ms_per_page)),
        "ratio_render_to_plain": rendering.as_ref().map(|r| round3(r.render_pages_per_s / r.plain_pages_per_s.max(1e-9))),
        "correctness": {
            "pages": sizes.pages,
            "pages_fetched": tally.fetched,
            "unique": tally.unique,
            "duplicates": tally.duplicates,
            "missing": tally.missing,
            "items_stored": items_stored,
            "inprocess_exact": exact(&inprocess_tally, sizes.pages),
            "cluster_exact": cluster.as_ref().map(|c| c.exact),
            "cluster_engine_shares": cluster.as_ref().map(|c| c.shares.clone()),
        },
        "context": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "cpu": cpu_model(),
            "concurrency": c,
            "latency_ms": args.latency_ms,
            "latency_bound_pages": sizes.latency_pages,
            "seen_bytes_per_url_at": { sizes.seen[0].to_string(): round(seen[0]), sizes.seen[1].to_string(): round(seen[1]) },
            "redis_bytes_measured_at_urls": sizes.seen[0],
            "render_pages": rendering.as_ref().map(|r| r.pages),
            "render_concurrency_and_tabs": [render::CONCURRENCY, render::TABS],
            "items_saved_in_store_bench": sizes.items,
            "binaries": bins.display().to_string(),
        }
    });
    print_table(&report);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("report written to {}", args.out.display());
    if cluster.as_ref().is_some_and(|c| !c.exact) {
        bail!("the cluster crawl was not exact");
    }
    if !exact(&tally, sizes.pages) || items_stored != sizes.pages as u64 {
        bail!(
            "the distributed crawl was not exact: {tally:?}, {items_stored} items stored for {} pages",
            sizes.pages
        );
    }
    Ok(())
}

fn step(n: u32, what: &str) {
    eprintln!("[{n}] {what}");
}

fn exact(t: &Tally, pages: usize) -> bool {
    t.fetched == pages as u64 && t.unique == pages as u64 && t.duplicates == 0 && t.missing == 0
}

fn round(x: f64) -> f64 {
    x.round()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn server_raw(server: &Server, pages: usize, concurrency: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let started = Instant::now();
    let fetched = futures::stream::iter(0..pages)
        .map(|i| {
            let client = client.clone();
            let url = server.url(i);
            async move { client.get(url).send().await?.bytes().await.map(|b| b.len()) }
        })
        .buffer_unordered(concurrency)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    if fetched != pages {
        bail!("the raw client fetched {fetched} of {pages} pages");
    }
    Ok(pages as f64 / started.elapsed().as_secs_f64())
}

fn parse_ceiling(site: &Site) -> anyhow::Result<f64> {
    use worker::parsers::{LinksParser, Page, Parser as _};
    let pages: Vec<(url::Url, Vec<u8>)> = (0..site.pages)
        .map(|i| {
            (
                url::Url::parse(&format!("http://bench.test/p/{i}.html")).expect("url"),
                site.page(i),
            )
        })
        .collect();
    let request = common::Request {
        url: String::new(),
        parser: "links".into(),
        depth: 0,
        task: "bench".into(),
        meta: Default::default(),
        spider: None,
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = Instant::now();
    let links: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = pages
            .chunks(pages.len().div_ceil(threads))
            .map(|chunk| {
                let request = &request;
                scope.spawn(move || {
                    let mut links = 0;
                    for (url, body) in chunk {
                        let html = std::str::from_utf8(body).unwrap_or("");
                        let page = Page {
                            request,
                            url,
                            html,
                            max_links: 5_000,
                            budget: &worker::parsers::Budget::unlimited(),
                        };
                        links += LinksParser.parse(&page).map(|e| e.links.len()).unwrap_or(0);
                    }
                    links
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    if links != site.pages * bench::pages::LINKS_PER_PAGE {
        bail!(
            "the parser found {links} links, expected {}",
            site.pages * bench::pages::LINKS_PER_PAGE
        );
    }
    Ok(site.pages as f64 / elapsed)
}

/// Runs the engine to the end and returns its JSON summary.
async fn engine(bins: &Path, dir: &Path, flags: &[String]) -> anyhow::Result<Value> {
    let summary = dir.join("summary.json");
    let _ = std::fs::remove_file(&summary);
    let out = Command::new(bins.join("engine"))
        .current_dir(dir)
        .args(flags)
        .arg(format!("--summary_json={}", summary.display()))
        .env("RUST_LOG", "warn")
        // The bench's site is on 127.0.0.1, which the SSRF guard refuses by default.
        .env("SPINNERET_ALLOW_PRIVATE", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        bail!("engine failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(&summary)?)?)
}

struct Spawned {
    addr: String,
    child: Child,
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

async fn spawn_server(bins: &Path, name: &str, flags: &[String]) -> anyhow::Result<Spawned> {
    let mut child = Command::new(bins.join(name))
        .args(flags)
        .arg("--port=0")
        .env("RUST_LOG", "warn")
        .env("SPINNERET_ALLOW_PRIVATE", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await??
        .context("no address")?;
    let addr = line
        .strip_prefix("listening on ")
        .context("unexpected first line")?
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned { addr, child })
}

/// CPU seconds (user + system) process `pid` used so far.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs(pid, false)
}

/// CPU seconds (user + system) process `pid` used so far, with those of the children it
/// reaped when `reaped` says.
fn cpu_secs(pid: u32, reaped: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime, then cutime, cstime (fields 14 to 17 of stat(5)), in clock ticks.
    let ticks = fields.get(11..if reaped { 15 } else { 13 })?;
    ticks
        .iter()
        .map(|t| t.parse::<f64>().ok())
        .sum::<Option<f64>>()
        .map(|t| t / 100.0)
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        * 1024.0
}

/// Memory the engine's frontier grows by per URL it knows (seen and queued), with `n`
/// synthetic URLs on 1,000 hosts.
fn seen_bytes_per_url(n: usize) -> f64 {
    use engine::config::Politeness;
    use engine::frontier::EmbeddedFrontier;
    let before = rss_bytes();
    let mut frontier = EmbeddedFrontier::new(Politeness {
        per_host: 8,
        delay: Duration::ZERO,
        max_backoff: Duration::from_secs(60),
        max_pages_per_host: None,
        max_queue_per_host: usize::MAX,
        robots: false,
    });
    let now = tokio::time::Instant::now();
    for k in 0..n {
        let host = format!("site{}.example:80", k % 1_000);
        let url = format!("http://site{}.example/articles/{k}/index.html", k % 1_000);
        let fp = common::fingerprint(&url);
        let request = common::Request {
            url,
            parser: "links".into(),
            depth: 3,
            task: "default".into(),
            meta: Default::default(),
            spider: None,
        };
        frontier.push(request, host, (0, fp), 0, k as u64 + 1, String::new, now);
    }
    let grown = rss_bytes() - before;
    let per_url = grown / n as f64;
    drop(frontier);
    per_url
}

async fn itemsaver_items_per_s(dir: &Path, n: usize) -> anyhow::Result<f64> {
    let store = Arc::new(itemsaver::SqliteStore::open(dir.join("store-bench.db"))?);
    items_per_s(store, n).await
}

/// Items per second saved into a PostgreSQL store on a server of its own, and, for
/// comparison, by the other way to upsert a batch (COPY into a temporary table, then one
/// INSERT ... ON CONFLICT from it). `None` without the server's programs (scripts/deps.sh
/// installs them).
async fn postgres_items_per_s(n: usize) -> anyhow::Result<Option<(f64, f64)>> {
    if !Path::new("/usr/lib/postgresql").exists() && std::env::var_os("PG_BIN").is_none() {
        return Ok(None);
    }
    let server =
        tokio::task::spawn_blocking(spinneret_tests::postgres::PostgresServer::start).await?;
    let store = itemsaver::store::PostgresStore::open(&server.url()).await?;
    let rate = items_per_s(Arc::new(store), n).await?;
    let copy_rate = postgres_copy_items_per_s(&server.url(), n).await?;
    tokio::task::spawn_blocking(move || drop(server)).await?;
    Ok(Some((rate, copy_rate)))
}

/// The COPY way to upsert batches of 500 (see [`postgres_items_per_s`]), into the table the
/// store made, under other task names.
async fn postgres_copy_items_per_s(url: &str, n: usize) -> anyhow::Result<f64> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let started = Instant::now();
    for start in (0..n).step_by(500) {
        let tx = client.transaction().await?;
        tx.batch_execute(
            "CREATE TEMP TABLE incoming (task text, id text, url text, kind text, payload jsonb,
             position int4) ON COMMIT DROP",
        )
        .await?;
        let sink = tx.copy_in("COPY incoming FROM STDIN BINARY").await?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::INT4,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures::pin_mut!(writer);
        for i in start..(start + 500).min(n) {
            let item = bench_item(i);
            let payload = serde_json::Value::Object(common::value::payload_to_json(&item.payload));
            let task = "bench-copy";
            let position: Option<i32> = None;
            writer
                .as_mut()
                .write(&[&task, &item.id, &item.url, &item.kind, &payload, &position])
                .await?;
        }
        writer.finish().await?;
        let now = 0i64;
        tx.execute(
            "INSERT INTO items (task, id, url, kind, payload, position, first_saved_at, saved_at)
             SELECT task, id, url, kind, payload, position, $1, $1 FROM incoming
             ON CONFLICT (task, id) DO UPDATE SET url = excluded.url, kind = excluded.kind,
                 payload = excluded.payload, position = excluded.position,
                 saved_at = excluded.saved_at",
            &[&now],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Items per second saved into `store` through the itemsaver service, batches of 500.
async fn items_per_s(store: Arc<dyn itemsaver::ItemStore>, n: usize) -> anyhow::Result<f64> {
    let client = itemsaver::in_process(itemsaver::ItemSaverServer::new(
        store,
        itemsaver::DEFAULT_MAX_BATCH,
        itemsaver::DEFAULT_MAX_ITEM_BYTES,
    ));
    let started = Instant::now();
    for start in (0..n).step_by(500) {
        let batch = common::Batch {
            items: (start..(start + 500).min(n)).map(bench_item).collect(),
            pages: Vec::new(),
        };
        client
            .save(common::transport::deadline(Duration::from_secs(60)), batch)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The item the store benchmarks save: a page's title, description and link count.
fn bench_item(i: usize) -> common::Item {
    let mut payload = common::Payload::new();
    payload.insert(
        "title".into(),
        common::Value::Text(format!("Benchmark page {i}")),
    );
    payload.insert(
        "description".into(),
        common::Value::Text(format!("Page {i} of the benchmark site")),
    );
    payload.insert("outlinks".into(), common::Value::Int(50));
    let url = format!("http://bench.test/p/{i}.html");
    common::Item {
        id: url.clone(),
        url,
        kind: "page".into(),
        task: "bench".into(),
        payload,
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_table(report: &Value) {
    let targets: [(&str, &str); 31] = [
        ("server_raw_pages_per_s", ""),
        ("parse_ceiling_pages_per_s", ""),
        ("inprocess_pages_per_s", ""),
        ("warc_pages_per_s", ""),
        ("ratio_warc_to_inprocess", ""),
        ("warc_bytes_per_page", ""),
        ("distributed_pages_per_s", ""),
        ("cpu_ms_per_page", "<= 0.4"),
        ("rpc_calls_per_page", "<= 3"),
        ("rpc_bytes_per_page", "<= 5000"),
        ("latency_bound_pages_per_s", ">= 0.9 x ideal"),
        ("latency_bound_ideal_pages_per_s", ""),
        ("seen_bytes_per_url", "<= 64"),
        ("itemsaver_items_per_s", ">= 100000"),
        ("postgres_items_per_s", ">= 50000"),
        ("postgres_copy_items_per_s", ""),
        ("ratio_distributed_to_inprocess", ">= 0.9"),
        ("ratio_inprocess_to_parse_ceiling", ">= 0.7"),
        ("cluster_pages_per_s", ""),
        ("ratio_cluster_to_distributed", ">= 0.8"),
        ("ratio_cluster_to_inprocess", ""),
        ("redis_cmds_per_page", "<= 3"),
        ("cluster_engine_cpu_ms_per_page", ""),
        ("cluster_loop_turns_per_page", ""),
        ("redis_bytes_per_seen_url", "<= 16"),
        ("redis_bytes_per_queued_url", ""),
        ("render_pages_per_s", ""),
        ("render_cpu_ms_per_page", ""),
        ("render_plain_pages_per_s", ""),
        ("render_plain_cpu_ms_per_page", ""),
        ("ratio_render_to_plain", ""),
    ];
    println!("{:<34} {:>14}  target", "measure", "value");
    for (key, target) in targets {
        println!("{key:<34} {:>14}  {target}", report[key].to_string());
    }
    println!("correctness: {}", report["correctness"]);
}

/// What the cluster run measured.
struct ClusterFigures {
    pages_per_s: f64,
    cmds_per_page: f64,
    /// CPU time the two engines used, per page fetched, in milliseconds.
    engine_cpu_ms_per_page: f64,
    /// Crawl loop turns of the two engines per page fetched.
    loop_turns_per_page: f64,
    seen_bytes_per_url: f64,
    queued_bytes_per_url: f64,
    exact: bool,
    shares: Vec<u64>,
}

fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    path.exists().then_some(path)
}

/// Starts a redis-server on a free loopback port in `dir` (append-only file on, as the
/// cluster docs ask) and waits until it answers.
async fn start_redis(binary: &Path, dir: &Path) -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "everysec"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("redis://127.0.0.1:{port}/0");
    let started = Instant::now();
    loop {
        if let Ok(mut conn) =
            common::redis_conn::RedisConn::connect(&url, &Default::default()).await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return Ok((child, url));
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("redis-server did not answer on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two engines crawl the site as one shared crawl; then the Redis memory of `urls` URLs is
/// measured on a crawl of its own.
#[allow(clippy::too_many_arguments)]
async fn cluster_crawl(
    bins: &Path,
    dir: &Path,
    redis_server: &Path,
    server: &Server,
    crawl_flags: &[String],
    c: usize,
    pages: usize,
    urls: usize,
) -> anyhow::Result<ClusterFigures> {
    let redis_dir = dir.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let (_redis, url) = start_redis(redis_server, &redis_dir).await?;
    let store = dir.join("cluster.db");
    let saver = spawn_server(
        bins,
        "itemsaver",
        &[
            format!("--store={}", store.display()),
            format!("--redis={url}"),
        ],
    )
    .await?;
    let workers = [
        spawn_server(
            bins,
            "worker",
            &[format!("--concurrency={c}"), format!("--redis={url}")],
        )
        .await?,
        spawn_server(
            bins,
            "worker",
            &[format!("--concurrency={c}"), format!("--redis={url}")],
        )
        .await?,
    ];
    let cluster = [format!("--redis={url}"), "--crawl=bench".to_owned()];
    let mut first = crawl_flags.to_vec();
    first.extend_from_slice(&cluster);
    let mut second: Vec<String> = crawl_flags
        .iter()
        .filter(|f| !f.starts_with("--seed"))
        .cloned()
        .collect();
    second.extend_from_slice(&cluster);
    let dir_a = dir.join("engine-a");
    let dir_b = dir.join("engine-b");
    std::fs::create_dir_all(&dir_a)?;
    std::fs::create_dir_all(&dir_b)?;
    let (a, b) = tokio::try_join!(engine(bins, &dir_a, &first), engine(bins, &dir_b, &second))?;
    let tally = server.tally();
    drop((saver, workers));
    let items = itemsaver::SqliteStore::open(&store)?.count(None)?;
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let done = |v: &Value| {
        num(v, "pages_ok")
            + v["pages_failed"]
                .as_object()
                .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum())
    };
    let fetched = done(&a) + done(&b);
    let elapsed = num(&a, "elapsed_secs")
        .max(num(&b, "elapsed_secs"))
        .max(1e-9);
    let cmds = num(&a, "redis_commands") + num(&b, "redis_commands");
    let (seen_bytes, queued_bytes) = redis_memory(&url, urls).await?;
    Ok(ClusterFigures {
        pages_per_s: fetched / elapsed,
        cmds_per_page: cmds / fetched.max(1.0),
        engine_cpu_ms_per_page: (num(&a, "cpu_secs") + num(&b, "cpu_secs")) * 1000.0
            / fetched.max(1.0),
        loop_turns_per_page: (num(&a, "loop_turns") + num(&b, "loop_turns")) / fetched.max(1.0),
        seen_bytes_per_url: seen_bytes,
        queued_bytes_per_url: queued_bytes,
        exact: exact(&tally, pages) && items == pages as u64,
        shares: vec![done(&a) as u64, done(&b) as u64],
    })
}

/// Bytes of Redis memory per URL in a crawl's seen set and in its queues, with `n` URLs of
/// the shape the bench's site has, on 1,000 hosts, offered the way engines offer links.
async fn redis_memory(url: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    use engine::cluster::{RedisFrontier, RedisFrontierConfig, SEEN_SHARDS};
    let conn = RedisFrontier::connect(url, &Default::default()).await?;
    let mut frontier = RedisFrontier::new(
        conn.clone(),
        "memory",
        RedisFrontierConfig {
            politeness: engine::config::Politeness {
                per_host: 8,
                delay: Duration::ZERO,
                max_queue_per_host: usize::MAX,
                max_backoff: Duration::from_secs(60),
                ..Default::default()
            },
            lease: Duration::from_secs(15),
        },
    );
    frontier.keep_limits().await?;
    let batch = 2_000;
    for start in (0..n).step_by(batch) {
        let def = engine::tasks::TaskDef {
            name: "default".into(),
            seeds: (start..(start + batch).min(n))
                .map(|k| {
                    url::Url::parse(&format!(
                        "http://site{}.example/articles/{k}/index.html",
                        k % 1_000
                    ))
                })
                .collect::<Result<_, _>>()?,
            parser: "links".into(),
            spider: None,
            max_pages: None,
            max_depth: None,
            allow_domains: Vec::new(),
            render: false,
            timeout: None,
            schedule: None,
        };
        frontier
            .offer(&engine::cluster::seed_urls(&def, false), true)
            .await?;
    }
    let mut conn = conn;
    let usage = |keys: Vec<String>| {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        pipe
    };
    let seen: Vec<String> = (0..SEEN_SHARDS)
        .map(|s| format!("{}:seen:{s}", frontier.prefix()))
        .collect();
    let queues: Vec<String> = (0..1_000)
        .map(|h| format!("{}:q:site{h}.example:80", frontier.prefix()))
        .collect();
    let seen: Vec<Option<u64>> = usage(seen).query_async(&mut conn).await?;
    let queues: Vec<Option<u64>> = usage(queues).query_async(&mut conn).await?;
    let per = |v: Vec<Option<u64>>| v.into_iter().flatten().sum::<u64>() as f64 / n as f64;
    Ok((per(seen), per(queues)))
}
