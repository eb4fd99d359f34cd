//! Crawls of a hostile server: every pathology ends in bounded time, under its reason, without
//! breaking a process or its memory bound.

use spinneret_tests::binaries::{
    EngineProc, EngineRun, Server, export, peak_rss_mb, run_engine, signal,
};
use spinneret_tests::hostile::{
    FLAKY_FAILURES, GBK_TITLE, HostileOptions, HostileServer, NESTED_QUOTES, NO_CHARSET_TITLE,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Worker limits small enough to keep the hostile endpoints quick.
const FETCH_LIMITS: [&str; 4] = ["--timeout", "2", "--max_body_bytes", "1048576"];

/// Slack for timing measured at the server: requests leave the engine on time, but may reach
/// the server a few milliseconds apart from when they were sent.
const TIMING_SLACK: Duration = Duration::from_millis(15);

/// Memory bound for the engine and each worker in these crawls, in MiB (measured: about 17
/// for the engine and 20 per worker, debug build).
const MEMORY_BOUND_MB: f64 = 64.0;

struct Crawl {
    run: EngineRun,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

/// Crawls `seeds` of `server` in single-machine mode with `extra` flags.
async fn crawl(server: &HostileServer, seeds: &[&str], extra: &[&str]) -> Crawl {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("items.db");
    let mut args: Vec<String> = vec!["--store".into(), store.display().to_string()];
    for seed in seeds {
        args.extend(["--seed".into(), server.url(seed)]);
    }
    args.extend(FETCH_LIMITS.iter().chain(extra).map(|s| s.to_string()));
    let run = run_engine(dir.path(), &args).await;
    assert!(
        run.status.success(),
        "engine failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    Crawl {
        run,
        store,
        _dir: dir,
    }
}

fn count(summary: &serde_json::Value, section: &str, reason: &str) -> u64 {
    summary[section][reason].as_u64().unwrap_or(0)
}

async fn titles(store: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    export(store)
        .await
        .into_iter()
        .map(|i| {
            let path = i["url"]
                .as_str()
                .and_then(|u| u.splitn(4, '/').nth(3))
                .unwrap_or("")
                .to_owned();
            (
                format!("/{path}"),
                i["title"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_crawl_over_every_pathology_completes_and_counts_each_failure() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir.path()).await;
    let w0 = Server::start("worker", &FETCH_LIMITS, dir.path()).await;
    let w1 = Server::start("worker", &FETCH_LIMITS, dir.path()).await;
    let started = Instant::now();
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={},{}", w0.addr, w1.addr),
            "--seed".into(),
            server.url("/"),
            "--retries=2".into(),
            "--max_depth=12".into(),
            "--per_host=2".into(),
            "--delay=30".into(),
        ],
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        run.status.success(),
        "engine failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        elapsed < Duration::from_secs(90),
        "the crawl must end in bounded time: {elapsed:?}"
    );

    let s = run.summary();
    assert_eq!(count(s, "pages_failed", "timeout"), 2, "drip and hang: {s}");
    assert_eq!(
        count(s, "pages_failed", "too_large"),
        2,
        "huge and bomb: {s}"
    );
    assert_eq!(count(s, "pages_failed", "not_html"), 1, "file.html: {s}");
    assert_eq!(
        count(s, "pages_failed", "too_many_redirects"),
        1,
        "the endless chain: {s}"
    );
    assert_eq!(count(s, "skipped", "robots_disallowed"), 1, "{s}");
    assert_eq!(count(s, "skipped", "redirect_offsite"), 1, "{s}");

    let hits = server.hits();
    assert!(
        !hits.keys().any(|p| p.starts_with("/private/")),
        "a disallowed path was fetched: {hits:?}"
    );
    assert!(
        !hits.contains_key("/elsewhere"),
        "an off-site redirect was followed"
    );
    assert_eq!(hits["/robots.txt"], 1);
    assert_eq!(hits["/"], 1);
    assert_eq!(
        hits["/redirect-loop"], 1,
        "a redirect to itself is already seen"
    );
    assert_eq!(
        server.hits_under("/chain/"),
        11,
        "the chain stops after 10 hops"
    );
    assert_eq!(hits["/throttled"], 2);
    assert_eq!(hits["/flaky"], FLAKY_FAILURES + 1);
    assert_eq!(hits["/drip"], 3, "timeouts are retried --retries times");
    assert_eq!(hits["/after-malformed"], 1, "links survive malformed HTML");
    assert_eq!(
        server.hits_under("/calendar/"),
        12,
        "the calendar stops at the depth limit"
    );
    assert_eq!(
        server.hits_under("/trap/"),
        12,
        "the growing path stops at the depth limit"
    );

    let titles = titles(&store).await;
    assert_eq!(titles["/gbk"], GBK_TITLE);
    assert_eq!(titles["/no-charset"], NO_CHARSET_TITLE);
    assert!(
        titles.contains_key("/wrong-charset"),
        "a page with a wrong charset is still stored"
    );
    assert_eq!(titles["/flaky"], "Recovered");
    assert_eq!(titles["/throttled"], "Throttled, then fine");

    // The workers give up on /hang after 2 s; count it open a little less, so timing noise at
    // the server cannot make an overlap that did not happen.
    let overlap = server.max_concurrency(Duration::from_millis(1_950));
    assert!(overlap <= 2, "per_host 2, yet {overlap} overlapped");
    // The server runs in this (busy) test process, so one handler may start late and bunch
    // up with the next; the engine's spacing shows in nearly every gap, not necessarily all.
    let gaps = server.start_gaps();
    let spaced = gaps
        .iter()
        .filter(|g| **g + TIMING_SLACK >= Duration::from_millis(30))
        .count();
    assert!(
        spaced * 10 >= gaps.len() * 9,
        "--delay 30 ms, yet only {spaced} of {} gaps were that long",
        gaps.len()
    );

    let engine_mb = s["peak_rss_mb"].as_f64().expect("engine peak memory");
    eprintln!("hostile crawl: {elapsed:?}, engine peak {engine_mb:.1} MiB");
    assert!(
        engine_mb < MEMORY_BOUND_MB,
        "engine peaked at {engine_mb:.0} MiB"
    );
    for w in [&w0, &w1] {
        let mb = peak_rss_mb(w.pid());
        eprintln!("hostile crawl: worker peak {mb:.1} MiB");
        assert!(mb < MEMORY_BOUND_MB, "worker peaked at {mb:.0} MiB");
    }
}

#[tokio::test]
async fn slowloris_and_silent_servers_are_cut_off_at_the_timeout() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let started = Instant::now();
    let c = crawl(&server, &["/drip", "/hang"], &["--retries=0"]).await;
    assert_eq!(count(c.run.summary(), "pages_failed", "timeout"), 2);
    // The limit is 2 s; the crawl must not wait for the servers to give up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn huge_body_and_compression_bomb_stop_at_the_body_limit() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/huge", "/bomb"], &[]).await;
    let s = c.run.summary();
    assert_eq!(count(s, "pages_failed", "too_large"), 2, "{s}");
    let mb = s["peak_rss_mb"].as_f64().expect("peak");
    assert!(
        mb < 100.0,
        "20 to 50 MiB bodies were capped at 1 MiB, yet the engine peaked at {mb:.0} MiB"
    );
}

#[tokio::test]
async fn redirect_loops_end_and_chains_stop_at_the_hop_limit() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(
        &server,
        &["/redirect-loop", "/chain/0"],
        &["--max_redirects=3"],
    )
    .await;
    assert_eq!(server.hits()["/redirect-loop"], 1);
    assert_eq!(server.hits_under("/chain/"), 4, "the seed and three hops");
    assert_eq!(
        count(c.run.summary(), "pages_failed", "too_many_redirects"),
        1
    );
}

#[tokio::test]
async fn offsite_redirect_is_not_followed() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/offsite-redirect"], &[]).await;
    assert_eq!(count(c.run.summary(), "skipped", "redirect_offsite"), 1);
    assert!(!server.hits().contains_key("/elsewhere"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/throttled"], &[]).await;
    assert_eq!(c.run.summary()["pages_ok"], 1);
    let starts: Vec<Instant> = server
        .log()
        .iter()
        .filter(|h| h.path == "/throttled")
        .map(|h| h.start)
        .collect();
    assert_eq!(starts.len(), 2);
    let waited = starts[1] - starts[0];
    assert!(
        waited + TIMING_SLACK >= Duration::from_secs(1),
        "Retry-After: 1, yet retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_503_that_recovers_is_retried_and_one_that_does_not_is_counted() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/flaky"], &["--retries=2"]).await;
    assert_eq!(server.hits()["/flaky"], FLAKY_FAILURES + 1);
    assert_eq!(c.run.summary()["pages_ok"], 1);
    assert_eq!(c.run.summary()["retries"], FLAKY_FAILURES);

    let fresh = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&fresh, &["/flaky"], &["--retries=1"]).await;
    assert_eq!(fresh.hits()["/flaky"], 2);
    assert_eq!(count(c.run.summary(), "pages_failed", "http_503"), 1);
}

#[tokio::test]
async fn malformed_html_still_yields_its_links() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/malformed"], &[]).await;
    assert_eq!(server.hits().get("/after-malformed"), Some(&1));
    assert_eq!(c.run.summary()["pages_ok"], 2);
}

#[tokio::test]
async fn wrong_missing_and_gbk_charsets_decode_without_failing() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/wrong-charset", "/no-charset", "/gbk"], &[]).await;
    assert_eq!(c.run.summary()["pages_ok"], 3);
    let titles = titles(&c.store).await;
    assert_eq!(titles["/gbk"], GBK_TITLE);
    assert_eq!(titles["/no-charset"], NO_CHARSET_TITLE);
    assert!(
        titles["/wrong-charset"].starts_with("Gar"),
        "{:?}",
        titles["/wrong-charset"]
    );
}

#[tokio::test]
async fn binary_behind_an_html_link_is_not_parsed() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&server, &["/file.html"], &[]).await;
    assert_eq!(count(c.run.summary(), "pages_failed", "not_html"), 1);
}

#[tokio::test]
async fn spider_traps_stop_at_the_depth_limit_and_the_host_cap() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    crawl(&server, &["/calendar/0", "/trap/"], &["--max_depth=5"]).await;
    assert_eq!(server.hits_under("/calendar/"), 6, "months at depth 0 to 5");
    assert_eq!(server.hits_under("/trap/"), 6, "paths at depth 0 to 5");

    let capped = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(&capped, &["/calendar/0"], &["--max_pages_per_host=8"]).await;
    assert_eq!(capped.hits_under("/calendar/"), 8);
    assert!(count(c.run.summary(), "skipped", "host_page_cap") > 0);
}

#[tokio::test]
async fn crawl_delay_in_robots_txt_spaces_requests() {
    let server = HostileServer::start(HostileOptions {
        crawl_delay: Some(0.3),
        ..Default::default()
    })
    .await
    .expect("server");
    crawl(&server, &["/slow/0", "/slow/1", "/slow/2", "/slow/3"], &[]).await;
    let starts: Vec<Instant> = server
        .log()
        .iter()
        .filter(|h| h.path.starts_with("/slow/"))
        .map(|h| h.start)
        .collect();
    assert_eq!(starts.len(), 4);
    assert_spaced(&starts, Duration::from_millis(300), "Crawl-delay 0.3 s");
}

#[tokio::test]
async fn robots_txt_server_error_means_wait_and_retry() {
    let server = HostileServer::start(HostileOptions {
        robots_failures: 1,
        ..Default::default()
    })
    .await
    .expect("server");
    let c = crawl(&server, &["/slow/0"], &["--retries=2"]).await;
    assert_eq!(server.hits()["/robots.txt"], 2);
    assert_eq!(c.run.summary()["pages_ok"], 1);
    let log = server.log();
    let robots_ok = log
        .iter()
        .filter(|h| h.path == "/robots.txt")
        .nth(1)
        .expect("second robots")
        .start;
    let page = log
        .iter()
        .find(|h| h.path == "/slow/0")
        .expect("page")
        .start;
    assert!(page >= robots_ok, "no page before the robots.txt is known");
}

#[tokio::test]
async fn robots_txt_that_stays_unavailable_skips_the_host() {
    let server = HostileServer::start(HostileOptions {
        robots_failures: 100,
        ..Default::default()
    })
    .await
    .expect("server");
    let c = crawl(&server, &["/slow/0", "/slow/1"], &["--retries=1"]).await;
    assert_eq!(server.hits()["/robots.txt"], 2);
    assert_eq!(server.hits_under("/slow/"), 0);
    assert_eq!(count(c.run.summary(), "skipped", "robots_unavailable"), 2);
}

#[tokio::test]
async fn ignore_robots_fetches_what_robots_txt_disallows() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    crawl(&server, &["/private/secret.html"], &["--ignore_robots"]).await;
    assert_eq!(server.hits().get("/private/secret.html"), Some(&1));
    assert!(!server.hits().contains_key("/robots.txt"));
}

#[tokio::test]
async fn per_host_limit_and_delay_hold_across_the_crawl() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let seeds: Vec<String> = (0..12).map(|i| format!("/slow/{i}")).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    crawl(&server, &seeds, &["--per_host=3", "--ignore_robots"]).await;
    let overlap = server.max_concurrency(Duration::ZERO);
    assert_eq!(
        overlap, 3,
        "per_host 3 with 100 ms pages must reach, and never pass, 3 at once"
    );

    let spaced = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    crawl(
        &spaced,
        &seeds[..6],
        &["--per_host=4", "--delay=150", "--ignore_robots"],
    )
    .await;
    let starts: Vec<Instant> = spaced.log().iter().map(|h| h.start).collect();
    assert_spaced(&starts, Duration::from_millis(150), "--delay 150");
}

/// Checks that requests started at least `delay` apart on average: the span from the first
/// start to the last is at least (n - 1) x delay. Scheduling jitter at the server can move one
/// start, but cannot shrink the span; ignoring the delay would.
fn assert_spaced(starts: &[Instant], delay: Duration, what: &str) {
    let first = starts.iter().min().copied().expect("starts");
    let last = starts.iter().max().copied().expect("starts");
    let least = delay * (starts.len() as u32 - 1);
    assert!(
        last - first + TIMING_SLACK >= least,
        "{what}: {} starts spanned {:?}, less than {least:?}",
        starts.len(),
        last - first
    );
}

/// Raises this process's open-file limit (inherited by the binaries it starts) to `want`, or
/// to the hard limit when that is lower.
fn raise_open_files(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.max(want.min(limit.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Opens `n` TCP connections to `port` from 127.0.0.2 and holds them silent; connections the
/// server never accepts (its backlog full) are given up after a few seconds.
async fn idle_connections(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let attempts = (0..n).map(|_| async move {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind("127.0.0.2:0".parse().ok()?).ok()?;
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        tokio::time::timeout(Duration::from_secs(3), socket.connect(target))
            .await
            .ok()?
            .ok()
    });
    futures::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_cannot_starve_the_rpc_ports() {
    raise_open_files(8_192);
    let dir = tempfile::tempdir().expect("tempdir");
    let site = spinneret_tests::TestSite::start(40).await.expect("site");
    let store = dir.path().join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir.path()).await;
    let worker = Server::start("worker", &[], dir.path()).await;
    let mut idle = idle_connections(worker.port(), 2_000).await;
    idle.extend(idle_connections(saver.port(), 2_000).await);
    // More than the 256 connections a server serves at once: enough to take every slot.
    assert!(idle.len() > 512, "the flood connected: {}", idle.len());

    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host=:{}", saver.port()),
            format!("--worker_hosts=:{}", worker.port()),
            "--seed".into(),
            site.url("/"),
        ],
    )
    .await;
    let run = run.succeeded("the engine could not crawl past the idle flood");
    let pages = site.site.ok_paths().len() as u64;
    assert_eq!(run.summary()["items_saved"], pages);
    assert_eq!(export(&store).await.len() as u64, pages);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spider_on_nested_scopes_stores_what_fits_and_counts_the_rest() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let quotes = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spiders/quotes.toml"
    ))
    .expect("quotes.toml");
    let spider = dir.path().join("nested.toml");
    std::fs::write(&spider, quotes).expect("write spider");
    let spider_arg = spider.display().to_string();
    let seed = server.url("/quotes/nested/");
    let c = crawl(&server, &[], &["--spider", &spider_arg, "--seed", &seed]).await;
    let s = c.run.summary();
    let truncated = s["items_truncated"].as_u64().unwrap_or(0);
    let saved = s["items_saved"].as_u64().unwrap_or(0);
    assert!(truncated > 0 && saved > 0, "{s}");
    assert_eq!(saved + truncated, NESTED_QUOTES as u64, "{s}");
    assert_eq!(export(&c.store).await.len() as u64, saved);
    assert!(
        c.run.stdout.contains("items truncated"),
        "the summary names the cut: {}",
        c.run.stdout
    );
    let rss = c.run.summary()["peak_rss_mb"].as_f64().unwrap_or(0.0);
    // Measured: about 90 MiB (debug build), most of it the 10,000-deep DOM.
    assert!(rss < 160.0, "engine peak {rss} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_trap_of_endless_links_keeps_engine_memory_flat() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = Server::start("worker", &FETCH_LIMITS, dir.path()).await;
    let engine = EngineProc::spawn(
        dir.path(),
        &[
            format!("--worker_hosts={}", worker.addr),
            format!("--seed={}", server.url("/fan/0")),
            format!("--store={}", dir.path().join("items.db").display()),
            format!("--state={}", dir.path().join("fan.state").display()),
            // No page cap: the queue bound alone must hold memory flat.
            "--max_pages_per_host=0".into(),
        ],
    );
    // A minute of crawling the trap: every page fetched offers 5,000 URLs never seen before.
    // Measured (debug build): 1,106 pages, peak 55 MiB; before the queue bound, 817 pages and
    // a peak of 618 MiB with 4 million URLs queued.
    tokio::time::sleep(Duration::from_secs(60)).await;
    signal(engine.pid(), "TERM");
    let run = engine.wait().await.succeeded("the fan trap");
    let s = run.summary();
    let pages = s["pages_ok"].as_u64().unwrap_or(0);
    assert!(pages > 100, "the crawl went on: {s}");
    assert!(
        count(s, "skipped", "host_queue_full") > 0,
        "links past the host's queue bound are refused and counted: {s}"
    );
    let rss = s["peak_rss_mb"].as_f64().unwrap_or(f64::MAX);
    assert!(
        rss < 128.0,
        "engine peak {rss:.0} MiB after {pages} pages of the fan trap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_robots_txt_delays_no_other_host() {
    let bomb = HostileServer::start(HostileOptions {
        robots_bomb: true,
        ..Default::default()
    })
    .await
    .expect("server");
    let other = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let c = crawl(
        &bomb,
        &[],
        &[
            "--seed",
            &bomb.url("/slow/0"),
            "--seed",
            &bomb.url("/slow/1"),
            "--seed",
            &other.url("/list/300"),
            "--per_host=4",
        ],
    )
    .await;
    let s = c.run.summary();
    assert_eq!(bomb.hits()["/robots.txt"], 1, "{s}");
    assert_eq!(other.hits_under("/sleep/"), 300, "{s}");
    // The other host's pages go out steadily while the hostile file is dealt with.
    let mut starts: Vec<Instant> = other
        .log()
        .iter()
        .filter(|h| h.path.starts_with("/sleep/"))
        .map(|h| h.start)
        .collect();
    starts.sort();
    let widest = starts
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // Measured (debug build): 13.2 s when the file was read on the crawl loop with all its
    // 26,000 rules, 0.12 s now.
    assert!(
        widest < Duration::from_secs(1),
        "the other host waited {widest:?} between two requests"
    );
    assert!(
        c.run.stderr.contains("too many rules"),
        "the cut is logged: {}",
        c.run.stderr
    );
}
