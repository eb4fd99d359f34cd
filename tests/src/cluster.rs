//! A cluster for the cluster-mode tests: Redis (one server or a Redis Cluster), an itemsaver
//! and workers that register themselves, engines of a crawl on it, and reading back what
//! they did (the leader lease, the engines' and workers' lists).

use crate::admin::AdminEngine;
use crate::binaries::{EngineProc, EngineRun, Server, assert_items_match_site, export};
use crate::eventually::{eventually, eventually_every};
use crate::hostile::HostileServer;
use crate::redis::{RedisCluster, RedisServer};
use crate::site::TestSite;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pages of the test site the cluster tests crawl.
pub const PAGES: usize = 60;

/// The admin token of the forwarding tests (every engine of a crawl holds the same one).
pub const TOKEN: &str = "s3cret-s3cret-s3cret";

/// The Redis a cluster uses: one server, or a Redis Cluster.
pub enum Backend {
    /// One `redis-server`.
    Server(Box<RedisServer>),
    /// A Redis Cluster of several masters.
    Cluster(RedisCluster),
}

/// A cluster's shared parts: Redis, an itemsaver and workers, all registered.
pub struct Cluster {
    /// The Redis it runs on.
    pub backend: Backend,
    /// Its `--redis` value.
    pub url: String,
    /// The itemsaver's store.
    pub store: PathBuf,
    /// The itemsaver, killed when taken and dropped.
    pub itemsaver: Option<Server>,
    /// The workers, each killed when removed and dropped.
    pub workers: Vec<Server>,
}

impl Cluster {
    /// A single `redis-server`, an itemsaver and two workers.
    pub async fn start(dir: &Path) -> Cluster {
        Cluster::with_workers(dir, 2).await
    }

    /// A single `redis-server`, an itemsaver and `count` workers.
    pub async fn with_workers(dir: &Path, count: usize) -> Cluster {
        let redis = RedisServer::start().await;
        let url = redis.url();
        Cluster::on(Backend::Server(Box::new(redis)), url, dir, count).await
    }

    /// The same parts on a three-master Redis Cluster.
    pub async fn on_redis_cluster(dir: &Path) -> Cluster {
        let redis = RedisCluster::start(3).await;
        let url = redis.url();
        Cluster::on(Backend::Cluster(redis), url, dir, 2).await
    }

    /// An itemsaver and `count` workers on `backend`, whose `--redis` value is `url`.
    pub async fn on(backend: Backend, url: String, dir: &Path, count: usize) -> Cluster {
        let store = dir.join("items.db");
        let store_arg = store.display().to_string();
        let itemsaver =
            Server::start("itemsaver", &["--store", &store_arg, "--redis", &url], dir).await;
        let mut workers = Vec::new();
        for _ in 0..count {
            workers.push(Server::start("worker", &["--redis", &url], dir).await);
        }
        Cluster {
            backend,
            url,
            store,
            itemsaver: Some(itemsaver),
            workers,
        }
    }

    /// The single Redis server (the tests that kill or read it use one).
    pub fn redis(&mut self) -> &mut RedisServer {
        match &mut self.backend {
            Backend::Server(redis) => redis,
            Backend::Cluster(_) => panic!("this test runs on a single redis-server"),
        }
    }

    /// The single Redis server, to read.
    pub fn server(&self) -> &RedisServer {
        match &self.backend {
            Backend::Server(redis) => redis,
            Backend::Cluster(_) => panic!("this test runs on a single redis-server"),
        }
    }

    /// The flags of an engine of crawl `crawl` on this cluster, with `more`.
    pub fn flags(&self, crawl: &str, more: &[String]) -> Vec<String> {
        let mut args = vec![
            "--redis".to_owned(),
            self.url.clone(),
            "--crawl".to_owned(),
            crawl.to_owned(),
        ];
        args.extend_from_slice(more);
        args
    }

    /// An engine of crawl `crawl` on this cluster, with `more` flags.
    pub fn engine(&self, dir: &Path, crawl: &str, more: &[String]) -> EngineProc {
        EngineProc::spawn(dir, &self.flags(crawl, more))
    }
}

/// The pages an engine run fetched, by its summary.
pub fn pages_ok(run: &EngineRun) -> u64 {
    run.summary()["pages_ok"].as_u64().unwrap_or(0)
}

/// Crawls `pages` 100 ms pages of a hostile server with two engines on crawl `crawl`, each
/// given `polite`; returns the server and the pages the joining engine fetched. Past its
/// twelve slow pages, URLs differ by a query.
pub async fn two_engines_crawl_slow_pages(
    cluster: &Cluster,
    dir: &Path,
    crawl: &str,
    pages: u64,
    polite: &[String],
) -> (HostileServer, u64) {
    let server = HostileServer::start(Default::default())
        .await
        .expect("server");
    let mut first: Vec<String> = (0..pages)
        .flat_map(|i| {
            let url = server.url(&format!("/slow/{}?n={i}", i % 12));
            ["--seed".to_owned(), url]
        })
        .collect();
    first.extend_from_slice(polite);
    let b = cluster.engine(dir, crawl, polite);
    let a = cluster.engine(dir, crawl, &first);
    let a = a.wait().await.succeeded("engine a");
    let b = b.wait().await.succeeded("engine b");
    assert_eq!(pages_ok(&a) + pages_ok(&b), pages);
    (server, pages_ok(&b))
}

/// Redis commands per second of engines `runs` (their summaries' `redis_commands` over
/// their time).
pub fn commands_per_sec(runs: &[&EngineRun]) -> f64 {
    runs.iter()
        .map(|r| {
            let s = r.summary();
            s["redis_commands"].as_f64().unwrap_or(0.0) / s["elapsed_secs"].as_f64().unwrap_or(1.0)
        })
        .sum::<f64>()
        / runs.len() as f64
}

/// The pid of the engine leading crawl `crawl`, from its leader lease (`ENGINE:EPOCH`, with
/// engine ids `HOST-PID-STAMP`); `None` while no engine holds it.
pub async fn leader_pid(redis: &RedisServer, crawl: &str) -> Option<u32> {
    let reply = redis
        .command(&format!("GET {{spinneret:{crawl}}}:leader"))
        .await;
    let value = reply.lines().nth(1)?;
    let (engine, _epoch) = value.rsplit_once(':')?;
    engine.rsplit('-').nth(1)?.parse().ok()
}

/// Waits (bounded) until `check` holds of the leader's pid, and says how long it took.
pub async fn wait_for_leader(
    redis: &RedisServer,
    crawl: &str,
    check: impl Fn(Option<u32>) -> bool,
) -> Duration {
    let started = tokio::time::Instant::now();
    // Polling Redis: the leader lease has no event to wait on.
    eventually(Duration::from_secs(30), "the leader to change", || async {
        check(leader_pid(redis, crawl).await)
    })
    .await;
    started.elapsed()
}

/// Checks that every page was fetched, none more than twice (a page whose engine died may be
/// fetched again), and that the items are exactly the site's.
pub async fn assert_crawled_despite_a_fault(site: &TestSite, store: &Path) {
    let hits = site.hits();
    let got: std::collections::BTreeSet<String> = hits.keys().cloned().collect();
    assert_eq!(got, site.site.polite_crawl_paths(), "paths fetched");
    let thrice: Vec<_> = hits.iter().filter(|(_, n)| **n > 2).collect();
    assert!(thrice.is_empty(), "fetched more than twice: {thrice:?}");
    assert_items_match_site(&export(store).await, site);
}

/// A slowed test site crawled by two engines of crawl `crawl` (three requests at a time,
/// 3 s leases), the joining one started first; returns the site and the seeding engine, then
/// the joining one.
pub async fn two_engines_on_a_slow_site(
    cluster: &Cluster,
    dir: &Path,
    crawl: &str,
) -> (TestSite, EngineProc, EngineProc) {
    let site = TestSite::start_slowly(PAGES, Duration::from_millis(100))
        .await
        .expect("site");
    let flags = ["--per_host=3".to_owned(), "--lease_secs=3".to_owned()];
    let b = cluster.engine(dir, crawl, &flags);
    let mut first = vec!["--seed".to_owned(), site.url("/")];
    first.extend_from_slice(&flags);
    let a = cluster.engine(dir, crawl, &first);
    (site, a, b)
}

/// ACL key patterns that match every key but `key`: for each position, the keys that differ
/// there, its proper prefixes, and the longer keys.
pub fn every_key_but(key: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    for (i, c) in key.char_indices() {
        patterns.push(format!("{}[^{c}]*", &key[..i]));
        if i > 0 {
            patterns.push(key[..i].to_owned());
        }
    }
    patterns.push(format!("{key}?*"));
    patterns
}

/// Polls engine `e`'s `/api/workers` (bounded) until `ready` holds for the list.
pub async fn wait_for_workers(
    e: &AdminEngine,
    what: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) {
    // The registry is read every second: there is no event to wait on.
    eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(100),
        what,
        || async {
            let workers = e.get("/api/workers").await;
            let list = workers.as_array().cloned().unwrap_or_default();
            if ready(&list) {
                Ok(())
            } else {
                Err(format!("workers: {workers:#}"))
            }
        },
    )
    .await;
}

/// The engines of the crawl as engine `e` lists them.
pub async fn engines(e: &AdminEngine) -> Vec<serde_json::Value> {
    e.get("/api/engines")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The view of the engine whose admin server is `e`, in `list`.
pub fn view_of<'a>(list: &'a [serde_json::Value], e: &AdminEngine) -> &'a serde_json::Value {
    let addr = e.base.trim_start_matches("http://");
    list.iter()
        .find(|v| v["addr"] == addr)
        .unwrap_or_else(|| panic!("no engine at {addr} in {list:#?}"))
}

/// Polls `/api/engines` on `e` (bounded) until `ready` holds, and returns the list.
pub async fn wait_for_engines(
    e: &AdminEngine,
    what: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    // Engines report once a second: there is no event to wait on.
    eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(100),
        what,
        || async {
            let list = engines(e).await;
            if ready(&list) {
                Ok(list)
            } else {
                Err(format!("engines: {list:#?}"))
            }
        },
    )
    .await
}

/// Two engines of crawl `crawl` (of `site`) serving tasks, with admin tokens `tokens`, as
/// (leader, follower).
pub async fn leader_and_follower(
    cluster: &Cluster,
    dir: &Path,
    crawl: &str,
    site: &TestSite,
    tokens: [&str; 2],
) -> (AdminEngine, AdminEngine) {
    let flags = cluster.flags(crawl, &["--serve".to_owned()]);
    let one = AdminEngine::start(dir, &flags, Some(tokens[0])).await;
    let mut first = flags.clone();
    first.extend(["--seed".to_owned(), site.url("/")]);
    let two = AdminEngine::start(dir, &first, Some(tokens[1])).await;
    let list = wait_for_engines(&one, "two engines, one leading", |l| {
        l.len() == 2 && l.iter().filter(|e| e["role"] == "leader").count() == 1
    })
    .await;
    if view_of(&list, &one)["role"] == "leader" {
        (one, two)
    } else {
        (two, one)
    }
}

/// A server that answers every request `200 {}` and keeps what it was sent.
pub async fn capture_server() -> (String, Arc<Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Headers, then whatever of the body has come by then.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                kept.lock().expect("lock").extend_from_slice(&got);
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The bulk strings of a RESP array reply (short values without line breaks).
pub fn bulk_strings(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_owned)
        .collect()
}

/// Sends a change with idempotency key `key` until it is answered `want` (bounded); the
/// answers on the way must be 503s.
pub async fn until_answered(
    e: &AdminEngine,
    method: &str,
    path: &str,
    body: &str,
    key: &str,
    want: u16,
) {
    // Retried as a client would, after the answer's own wait.
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(500),
        &format!("{method} {path} to be answered {want}"),
        || async {
            let answer = e.call_with_key(method, path, body, key).await;
            if answer.status == want {
                return Ok(());
            }
            assert_eq!(answer.status, 503, "{method} {path}: {}", answer.text);
            Err(answer.text)
        },
    )
    .await;
}

/// The statuses of the runs an engine lists, newest first.
pub fn statuses(runs: &serde_json::Value) -> Vec<String> {
    runs.as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["status"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that every page of the site was fetched exactly `n` times: once per run, however
/// many engines.
pub fn assert_fetched_times(site: &TestSite, n: u64) {
    let hits = site.hits();
    for path in site.site.ok_paths() {
        assert_eq!(hits.get(&path).copied().unwrap_or(0), n, "{path}: {hits:?}");
    }
}

/// Six pages of 1.5 s of `server`: two at a time, a run of them takes 4.5 s.
pub fn slow_pages(server: &HostileServer) -> Vec<String> {
    (0..6)
        .map(|i| server.url(&format!("/wait/1500/{i}")))
        .collect()
}

/// Checks that each of [`slow_pages`] was fetched by the first run, the second, or both.
pub fn assert_each_slow_page_fetched_once_or_twice(server: &HostileServer) {
    let hits = server.hits();
    for i in 0..6 {
        let path = format!("/wait/1500/{i}");
        let n = hits.get(&path).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "{path}: {n}");
    }
}
