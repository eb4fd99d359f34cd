//! The shared frontier against a real `redis-server`: dedup, politeness across engines,
//! leases that survive a dead engine, idempotent completion, compact seen sets, and a Redis
//! killed and restarted from its append-only file.

use engine::cluster::{
    Again, Finished, NewUrl, Offer, Pace, RedisFrontier, RedisFrontierConfig, RobotsRequest, Tick,
};
use engine::schedule::Overlap;
use engine::tasks::TaskState;
use engine::tasks::record::{TaskChange, run_key};
use spinneret_tests::redis::RedisServer;
use std::collections::HashMap;
use std::time::Duration;

fn config() -> RedisFrontierConfig {
    RedisFrontierConfig {
        politeness: engine::config::Politeness {
            per_host: 2,
            delay: Duration::ZERO,
            max_queue_per_host: 1_000,
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        },
        lease: Duration::from_secs(30),
    }
}

async fn frontier(redis: &RedisServer, config: RedisFrontierConfig) -> RedisFrontier {
    let conn = RedisFrontier::connect(&redis.url(), &Default::default())
        .await
        .expect("connect");
    let mut frontier = RedisFrontier::new(conn, "test", config);
    // The crawl's limits, as an engine keeps them when it joins.
    assert_eq!(frontier.keep_limits().await.expect("limits"), None);
    frontier
}

/// Two engines' frontiers of one crawl, with `n` URLs of host a.test queued.
async fn two_with_urls(
    redis: &RedisServer,
    config: RedisFrontierConfig,
    n: u64,
) -> (RedisFrontier, RedisFrontier) {
    let mut a = frontier(redis, config.clone()).await;
    let b = frontier(redis, config).await;
    let urls: Vec<NewUrl> = (0..n).map(|i| url("a.test:80", i)).collect();
    a.offer(&urls, true).await.expect("offer");
    (a, b)
}

/// A completion: fetched, with these links.
fn done(links: &[NewUrl]) -> Finished<'_> {
    Finished {
        pace: Pace::Same,
        again: Again::Never,
        links,
        robots: None,
        crawl_delay: Duration::ZERO,
        robots_request: RobotsRequest::No,
        counted: true,
        run: "",
    }
}

fn url(host: &str, n: u64) -> NewUrl {
    NewUrl {
        host: host.into(),
        fingerprint: common::fingerprint(&format!("http://{host}/{n}")),
        entry: format!("http://{host}/{n}").into_bytes(),
        robots: Vec::new(),
        run: String::new(),
        bounded: true,
        task: "t".into(),
    }
}

#[tokio::test]
async fn offers_are_deduplicated_and_a_full_host_queue_refuses_links() {
    let redis = RedisServer::start().await;
    let mut f = frontier(
        &redis,
        RedisFrontierConfig {
            politeness: engine::config::Politeness {
                max_queue_per_host: 3,
                ..config().politeness
            },
            ..config()
        },
    )
    .await;
    let batch: Vec<NewUrl> = (0..4).map(|n| url("a.test:80", n)).collect();
    let got = f.offer(&batch, true).await.expect("offer");
    assert_eq!(
        got,
        vec![Offer::Queued, Offer::Queued, Offer::Queued, Offer::Refused]
    );
    assert_eq!(
        f.offer(&batch[..1], true).await.expect("offer"),
        vec![Offer::Seen]
    );
    assert_eq!(
        f.offer(&batch[3..], false).await.expect("offer"),
        vec![Offer::Queued],
        "unbounded offers (seeds, redirects) are not refused, and a refused URL was not marked seen"
    );
    assert_eq!(f.queued().await.expect("queued"), 4);
}

#[tokio::test]
async fn two_engines_never_exceed_the_per_host_limit_together() {
    let redis = RedisServer::start().await;
    let mut a = frontier(&redis, config()).await;
    let mut b = frontier(&redis, config()).await;
    let urls: Vec<NewUrl> = (0..10)
        .map(|n| url("a.test:80", n))
        .chain((0..10).map(|n| url("b.test:80", n)))
        .collect();
    a.offer(&urls, true).await.expect("offer");
    let first = a.claim("engine-a", 100).await.expect("claim");
    let second = b.claim("engine-b", 100).await.expect("claim");
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for c in first.iter().chain(&second) {
        *per_host.entry(c.host.clone()).or_default() += 1;
    }
    assert_eq!(per_host["a.test:80"], 2, "{per_host:?}");
    assert_eq!(per_host["b.test:80"], 2, "{per_host:?}");
    assert!(second.is_empty(), "the first engine took every free slot");
    // A slot frees when its lease completes, for whichever engine claims next.
    assert!(a.complete(&first[0], done(&[])).await.expect("complete"));
    let next = b.claim("engine-b", 100).await.expect("claim");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].host, first[0].host);
}

#[tokio::test]
async fn the_delay_spaces_claims_to_one_host_across_engines() {
    let redis = RedisServer::start().await;
    let config = RedisFrontierConfig {
        politeness: engine::config::Politeness {
            per_host: 8,
            delay: Duration::from_millis(300),
            ..config().politeness
        },
        ..config()
    };
    let mut a = frontier(&redis, config.clone()).await;
    let mut b = frontier(&redis, config).await;
    let urls: Vec<NewUrl> = (0..3).map(|n| url("a.test:80", n)).collect();
    a.offer(&urls, true).await.expect("offer");
    assert_eq!(a.claim("a", 10).await.expect("claim").len(), 1);
    assert!(
        b.claim("b", 10).await.expect("claim").is_empty(),
        "the host's next slot is 300 ms away for every engine"
    );
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.is_empty() {
        got = b.claim("b", 10).await.expect("claim");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn an_expired_lease_returns_its_request_and_completing_twice_changes_nothing() {
    let redis = RedisServer::start().await;
    let short = RedisFrontierConfig {
        lease: Duration::from_millis(100),
        ..config()
    };
    let mut f = frontier(&redis, short).await;
    f.offer(&[url("a.test:80", 1)], true).await.expect("offer");
    let claimed = f.claim("dead-engine", 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(f.reap(100).await.expect("reap"), 0, "not expired yet");
    // The lease runs on Redis's clock; outlive it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(f.reap(100).await.expect("reap"), 1);
    assert_eq!(
        (f.queued().await.ok(), f.leased().await.ok()),
        (Some(1), Some(0))
    );
    assert!(
        !f.complete(&claimed[0], done(&[url("a.test:80", 2)]))
            .await
            .expect("complete"),
        "a reaped lease is gone: its late completion ends nothing"
    );
    assert_eq!(
        f.queued().await.expect("queued"),
        2,
        "but its links are queued: the engine that found them will not offer them again"
    );
    let again = f.claim("live-engine", 10).await.expect("claim");
    assert_eq!(
        again[0].entry, claimed[0].entry,
        "the same request, leased again"
    );
    assert_eq!(f.extend(&[again[0].lease]).await.expect("extend"), 1);
    assert!(
        f.complete(&again[0], done(&[url("a.test:80", 2)]))
            .await
            .expect("complete")
    );
    assert!(!f.complete(&again[0], done(&[])).await.expect("complete"));
    assert_eq!(
        (f.queued().await.ok(), f.leased().await.ok()),
        (Some(1), Some(0)),
        "the link offered twice is queued once"
    );
}

#[tokio::test]
async fn a_late_completion_after_its_lease_was_reaped_queues_its_links_and_is_counted() {
    let redis = RedisServer::start().await;
    let lease = RedisFrontierConfig {
        lease: Duration::from_secs(2),
        ..config()
    };
    let mut f = frontier(&redis, lease).await;
    f.offer(&[url("a.test:80", 1), url("b.test:80", 1)], true)
        .await
        .expect("offer");
    let claimed = f.claim("cut-off-engine", 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    // The engine is cut off from Redis longer than its leases: they lapse and are reaped.
    let started = std::time::Instant::now();
    while f.reap(100).await.expect("reap") < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "never reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back, it completes a link-only page through `complete`, and one through `settle`.
    let links_a = [url("a.test:80", 2), url("c.test:80", 1)];
    assert!(
        !f.complete(&claimed[0], done(&links_a))
            .await
            .expect("complete")
    );
    let links_b = [url("b.test:80", 2)];
    let report = f
        .settle(&[engine::cluster::SettleOp::Complete {
            lease: claimed[1].lease,
            host: &claimed[1].host,
            finished: done(&links_b),
        }])
        .await
        .expect("settle");
    assert_eq!((report.held, report.late), (0, 1));
    assert_eq!(
        report.next,
        Some(Duration::ZERO),
        "the requeued hosts are ready now"
    );
    // Both reaped requests and all three links wait to be claimed.
    assert_eq!(f.queued().await.expect("queued"), 5);
    let mut entries: Vec<String> = Vec::new();
    for _ in 0..3 {
        for c in f.claim("live-engine", 10).await.expect("claim") {
            entries.push(String::from_utf8(c.entry.clone()).expect("entry"));
            f.complete(&c, done(&[])).await.expect("complete");
        }
    }
    entries.sort();
    assert_eq!(
        entries,
        [
            "http://a.test:80/1",
            "http://a.test:80/2",
            "http://b.test:80/1",
            "http://b.test:80/2",
            "http://c.test:80/1"
        ]
    );
}

#[tokio::test]
async fn a_redirect_target_is_queued_at_a_full_host_queue_and_a_link_is_refused() {
    let redis = RedisServer::start().await;
    let mut f = frontier(
        &redis,
        RedisFrontierConfig {
            politeness: engine::config::Politeness {
                per_host: 1,
                max_queue_per_host: 1,
                ..config().politeness
            },
            ..config()
        },
    )
    .await;
    f.offer(&[url("a.test:80", 1), url("b.test:80", 1)], true)
        .await
        .expect("offer");
    let claimed = f.claim("e", 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    // a's queue is full again.
    f.offer(&[url("a.test:80", 2)], true).await.expect("offer");
    let b = claimed.iter().find(|c| c.host == "b.test:80").expect("b");
    // b's page links to a third page of a, and redirects to a fourth.
    let link = url("a.test:80", 3);
    let redirect = NewUrl {
        bounded: false,
        ..url("a.test:80", 4)
    };
    assert!(
        f.complete(b, done(&[link.clone(), redirect]))
            .await
            .expect("complete")
    );
    let a = claimed.iter().find(|c| c.host == "a.test:80").expect("a");
    f.complete(a, done(&[])).await.expect("complete");
    let mut entries: Vec<String> = Vec::new();
    for _ in 0..4 {
        for c in f.claim("e", 10).await.expect("claim") {
            entries.push(String::from_utf8(c.entry.clone()).expect("entry"));
            f.complete(&c, done(&[])).await.expect("complete");
        }
    }
    entries.sort();
    assert_eq!(
        entries,
        ["http://a.test:80/2", "http://a.test:80/4"],
        "the redirect's target was taken, the link refused (not marked seen)"
    );
    assert_eq!(
        f.offer(&[link], true).await.expect("offer"),
        vec![Offer::Queued]
    );
}

#[tokio::test]
async fn the_seen_set_stays_in_compact_integer_sets_of_at_most_16_bytes_a_url_at_a_million() {
    const URLS: u64 = 1_000_000;
    let redis = RedisServer::start().await;
    let mut f = frontier(
        &redis,
        RedisFrontierConfig {
            politeness: engine::config::Politeness {
                max_queue_per_host: usize::MAX,
                ..config().politeness
            },
            ..config()
        },
    )
    .await;
    // Marked seen the way offer does (SADD of the fingerprint to its shard), in big pipelines:
    // a million offers through the scripts would only make the test slow.
    let mut conn = RedisFrontier::connect(&redis.url(), &Default::default())
        .await
        .expect("connect");
    let fingerprints: Vec<u64> = (0..URLS)
        .map(|n| common::fingerprint(&format!("http://h{}.test/{n}", n % 1_000)))
        .collect();
    for chunk in fingerprints.chunks(50_000) {
        let mut pipe = redis::pipe();
        for fp in chunk {
            pipe.sadd(f.seen_shard_key(*fp), *fp as i64).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.expect("sadd");
    }
    // And one offered through the script, which must find it seen.
    let seen = NewUrl {
        fingerprint: fingerprints[7],
        ..url("h7.test:80", 7)
    };
    assert_eq!(
        f.offer(&[seen], true).await.expect("offer"),
        vec![Offer::Seen]
    );
    let mut bytes = 0u64;
    let mut pipe = redis::pipe();
    for shard in 0..engine::cluster::SEEN_SHARDS {
        pipe.cmd("MEMORY")
            .arg("USAGE")
            .arg(f.seen_shard_key(shard))
            .arg("SAMPLES")
            .arg(0);
    }
    let usages: Vec<Option<u64>> = pipe.query_async(&mut conn).await.expect("memory usage");
    bytes += usages.into_iter().flatten().sum::<u64>();
    let per_url = bytes as f64 / URLS as f64;
    assert!(
        per_url <= 16.0,
        "{per_url:.1} bytes a seen URL at a million"
    );
    let key = f.seen_shard_key(fingerprints[0]);
    let encoding = redis.command(&format!("OBJECT ENCODING {key}")).await;
    assert!(encoding.contains("intset"), "{key}: {encoding}");
    eprintln!("seen set: {per_url:.2} bytes a URL at {URLS} URLs, {key} is {encoding:?}");
}

#[tokio::test]
async fn a_redis_killed_and_restarted_from_its_append_only_file_keeps_the_frontier() {
    let mut redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let urls: Vec<NewUrl> = (0..5).map(|n| url("a.test:80", n)).collect();
    f.offer(&urls, true).await.expect("offer");
    let claimed = f.claim("e", 1).await.expect("claim");
    // Redis writes its append-only file before it answers, so what it acknowledged survives a
    // killed process (appendfsync everysec only matters for a power cut).
    redis.kill9().await;
    redis.restart().await;
    let mut f = frontier(&redis, config()).await;
    assert_eq!(f.queued().await.expect("queued"), 4);
    assert_eq!(f.leased().await.expect("leased"), 1);
    assert!(
        f.complete(&claimed[0], done(&[])).await.expect("complete"),
        "the lease survived the restart"
    );
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_stale_leader_is_refused() {
    let redis = RedisServer::start().await;
    let mut a = frontier(&redis, config()).await;
    let mut b = frontier(&redis, config()).await;
    let ttl = Duration::from_millis(200);
    // Engine ids may hold colons (an address).
    let a_id = "10.0.0.5:7000";
    let first = a.elect(a_id, ttl).await.expect("elect").expect("a leads");
    assert_eq!(b.elect("b", ttl).await.expect("elect"), None, "one leader");
    assert_eq!(a.elect(a_id, ttl).await.expect("renew"), Some(first));
    assert_eq!(
        a.promote(first, 10).await.expect("promote"),
        Some(0),
        "the leader acts"
    );
    // The leader pauses past its lease (SIGSTOP): another takes over with a new epoch.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = b.elect("b", ttl).await.expect("elect").expect("b leads");
    assert!(second > first);
    assert_eq!(
        a.elect("a", ttl).await.expect("elect"),
        None,
        "a steps down"
    );
    assert_eq!(
        a.finish(first).await.expect("finish"),
        None,
        "stale epoch refused"
    );
    assert_eq!(a.promote(first, 10).await.expect("promote"), None);
    assert_eq!(
        a.seed(first, &[url("a.test:80", 1)]).await.expect("seed"),
        None,
        "a stale leader cannot seed"
    );
    assert_eq!(
        b.finish(second).await.expect("finish"),
        Some(false),
        "a crawl not seeded yet is not done"
    );
    assert_eq!(b.seed(second, &[]).await.expect("seed"), Some(true));
    assert_eq!(
        b.seed(second, &[url("a.test:80", 1)]).await.expect("seed"),
        Some(false),
        "seeded once"
    );
    assert_eq!(b.queued().await.expect("queued"), 0);
    assert_eq!(b.finish(second).await.expect("finish"), Some(true));
}

#[tokio::test]
async fn a_retry_waits_its_back_off_and_the_crawl_is_done_only_when_nothing_is_left() {
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let epoch = f
        .elect("e", Duration::from_secs(10))
        .await
        .expect("elect")
        .expect("leader");
    assert_eq!(
        f.seed(epoch, &[url("a.test:80", 1)]).await.expect("seed"),
        Some(true)
    );
    assert_eq!(
        f.finish(epoch).await.expect("finish"),
        Some(false),
        "queued"
    );
    let claimed = f.claim("e", 10).await.expect("claim");
    assert_eq!(
        f.finish(epoch).await.expect("finish"),
        Some(false),
        "leased"
    );
    let retry = Finished {
        again: Again::After(&claimed[0].entry, Duration::from_millis(200)),
        ..done(&[])
    };
    assert!(f.complete(&claimed[0], retry).await.expect("complete"));
    assert_eq!(f.deferred().await.expect("deferred"), 1);
    assert_eq!(
        f.finish(epoch).await.expect("finish"),
        Some(false),
        "deferred"
    );
    assert_eq!(
        f.promote(epoch, 10).await.expect("promote"),
        Some(0),
        "not due"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(f.promote(epoch, 10).await.expect("promote"), Some(1));
    let again = f.claim("e", 10).await.expect("claim");
    assert_eq!(again[0].entry, claimed[0].entry);
    assert!(f.complete(&again[0], done(&[])).await.expect("complete"));
    assert_eq!(f.finish(epoch).await.expect("finish"), Some(true));
}

#[tokio::test]
async fn a_host_sends_only_its_robots_txt_until_it_is_stored_and_its_crawl_delay_holds() {
    let redis = RedisServer::start().await;
    let mut a = frontier(&redis, config()).await;
    let mut b = frontier(&redis, config()).await;
    let mut urls: Vec<NewUrl> = (0..3).map(|n| url("a.test:80", n)).collect();
    // The first URL of a host an engine offers carries the host's robots.txt request.
    urls[0].robots = b"robots".to_vec();
    a.offer(&urls, true).await.expect("offer");
    let robots = a.claim("a", 10).await.expect("claim");
    assert_eq!(robots.len(), 1, "only the robots.txt request: {robots:?}");
    assert_eq!(robots[0].entry, b"robots");
    assert!(
        b.claim("b", 10).await.expect("claim").is_empty(),
        "nothing else until the rules are known"
    );
    assert_eq!(b.robots(&["a.test:80"]).await.expect("robots"), vec![None]);
    let stored = Finished {
        robots: Some(b"the rules"),
        crawl_delay: Duration::from_millis(300),
        ..done(&[])
    };
    assert!(a.complete(&robots[0], stored).await.expect("complete"));
    assert_eq!(
        b.robots(&["a.test:80"]).await.expect("robots"),
        vec![Some(b"the rules".to_vec())]
    );
    assert_eq!(b.claim("b", 10).await.expect("claim").len(), 1);
    assert!(
        a.claim("a", 10).await.expect("claim").is_empty(),
        "the Crawl-delay one engine read holds for the other"
    );
}

#[tokio::test]
async fn a_429_on_a_reaped_lease_still_slows_its_host() {
    let redis = RedisServer::start().await;
    let mut f = frontier(
        &redis,
        RedisFrontierConfig {
            lease: Duration::from_millis(50),
            politeness: engine::config::Politeness {
                per_host: 4,
                ..config().politeness
            },
        },
    )
    .await;
    f.offer(
        &(0..3).map(|n| url("a.test:80", n)).collect::<Vec<_>>(),
        true,
    )
    .await
    .expect("offer");
    let slow = f.claim("e", 1).await.expect("claim");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.reap(10).await.expect("reap"), 1);
    let throttled = Finished {
        pace: Pace::Throttled(Some(Duration::from_secs(60))),
        ..done(&[])
    };
    assert!(!f.complete(&slow[0], throttled).await.expect("complete"));
    assert!(
        f.claim("e", 10).await.expect("claim").is_empty(),
        "the host waits out its back-off though the lease was gone"
    );
}

/// A URL of run `run` of task "t".
fn run_url(host: &str, n: u64, run: u64) -> NewUrl {
    NewUrl {
        fingerprint: common::fingerprint(&format!("http://{host}/{n}#{run}")),
        run: run_key("t", run),
        ..url(host, n)
    }
}

/// Pages of run `run` of task "t" still open, as Redis counts them.
async fn open_in(f: &mut RedisFrontier, run: u64) -> i64 {
    let open = f.runs_open().await.expect("runs");
    let key = run_key("t", run);
    open.into_iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn each_tick_fires_once_and_a_run_ends_when_nothing_of_it_is_left() {
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let epoch = f
        .elect("e", Duration::from_secs(10))
        .await
        .expect("elect")
        .expect("leader");
    let seeds = [run_url("a.test:80", 0, 1)];
    assert_eq!(
        f.tick(epoch, "t", 60, Overlap::Skip, 1, &seeds)
            .await
            .expect("tick"),
        (Tick::Started, None)
    );
    assert_eq!(f.run_of("t").await.expect("run"), (1, Some(60)));
    assert_eq!(
        f.tick(epoch, "t", 60, Overlap::Skip, 2, &[])
            .await
            .expect("tick")
            .0,
        Tick::FiredBefore,
        "a tick fires once, whichever leader tries"
    );
    assert_eq!(
        f.tick(epoch + 1, "t", 120, Overlap::Skip, 2, &[])
            .await
            .expect("tick")
            .0,
        Tick::NotLeader
    );
    assert_eq!(
        f.tick(epoch, "t", 120, Overlap::Skip, 7, &[])
            .await
            .expect("tick")
            .0,
        Tick::RunMoved
    );
    assert_eq!(open_in(&mut f, 1).await, 1, "the seed is open");
    // The seed's page yields a link (offered as it is answered), then completes.
    let seed = f.claim("e", 10).await.expect("claim");
    let link = [run_url("a.test:80", 1, 1)];
    let done_with_link = Finished {
        run: &run_key("t", 1),
        ..done(&link)
    };
    assert!(
        f.complete(&seed[0], done_with_link)
            .await
            .expect("complete")
    );
    assert_eq!(open_in(&mut f, 1).await, 1, "the link is open");
    assert_eq!(
        f.end_runs(epoch, &["t".into()]).await.expect("end"),
        Some(0)
    );
    assert_eq!(
        f.tick(epoch, "t", 120, Overlap::Skip, 2, &[])
            .await
            .expect("tick"),
        (Tick::Skipped, Some(60)),
        "the run is still open"
    );
    // A request sent again keeps the page open (a retry after a back-off takes the same
    // branch of the script); its end closes the run.
    let link = f.claim("e", 10).await.expect("claim");
    let again = Finished {
        again: Again::Now(&link[0].entry),
        run: &run_key("t", 1),
        ..done(&[])
    };
    assert!(f.complete(&link[0], again).await.expect("complete"));
    assert_eq!(
        open_in(&mut f, 1).await,
        1,
        "a request sent again is still open"
    );
    let link = f.claim("e", 10).await.expect("claim");
    let finished = Finished {
        run: &run_key("t", 1),
        ..done(&[])
    };
    assert!(f.complete(&link[0], finished).await.expect("complete"));
    assert_eq!(open_in(&mut f, 1).await, 0);
    assert_eq!(
        f.end_runs(epoch, &["t".into()]).await.expect("end"),
        Some(1)
    );
    let read = f.tasks_since(0, 0).await.expect("read").expect("news");
    assert_eq!(read.states, vec![("t".to_owned(), "done#1".to_owned())]);
    // The next tick starts run 2; a tick while it is open replaces it when told to.
    let seeds = [run_url("a.test:80", 0, 2)];
    assert_eq!(
        f.tick(epoch, "t", 180, Overlap::Replace, 2, &seeds)
            .await
            .expect("tick"),
        (Tick::Started, Some(120))
    );
    assert_eq!(
        f.tick(epoch, "t", 240, Overlap::Replace, 3, &[])
            .await
            .expect("tick")
            .0,
        Tick::Replaced
    );
    let read = f.tasks_since(0, 0).await.expect("read").expect("news");
    assert_eq!(read.states, vec![("t".to_owned(), "running#3".to_owned())]);
    assert_eq!(
        read.run_ends,
        vec![("t".to_owned(), "stopped#2".to_owned())]
    );
    // A change made for an earlier run never turns the task back; a close counts for all.
    let stale = [TaskChange::State("t".into(), TaskState::Stopped, 2)];
    let unfenced = engine::cluster::TaskFence::default();
    assert_eq!(
        f.record_change(epoch, &stale, &[], &unfenced)
            .await
            .expect("record"),
        engine::cluster::Recorded::Now
    );
    let read = f.tasks_since(0, 0).await.expect("read").expect("news");
    assert_eq!(read.states, vec![("t".to_owned(), "running#3".to_owned())]);
    let close = [TaskChange::State("t".into(), TaskState::Closed, 2)];
    assert_eq!(
        f.record_change(epoch, &close, &[], &unfenced)
            .await
            .expect("record"),
        engine::cluster::Recorded::Now
    );
    let read = f.tasks_since(0, 0).await.expect("read").expect("news");
    assert_eq!(read.states, vec![("t".to_owned(), "closed#3".to_owned())]);
    assert_eq!(
        f.tick(epoch, "t", 300, Overlap::Skip, 4, &[])
            .await
            .expect("tick")
            .0,
        Tick::Closed
    );
}

#[tokio::test]
async fn asking_an_engine_that_expired_since_it_was_listed_leaves_no_key_for_ever() {
    let redis = RedisServer::start().await;
    let mut conn = RedisFrontier::connect(&redis.url(), &Default::default())
        .await
        .expect("connect");
    let prefix = engine::cluster::crawl_prefix("asked");
    let node = common::registry::Node {
        id: "engine-1".into(),
        addr: "127.0.0.1:1".into(),
    };
    // Listed as live, while its report (and its key) already expired.
    common::registry::heartbeat(
        &mut conn,
        &prefix,
        common::registry::NodeKind::Engine,
        &node,
        Duration::from_secs(30),
    )
    .await
    .expect("heartbeat");
    let view = engine::cluster::engines::ask(
        &mut conn,
        &prefix,
        "engine-1",
        engine::cluster::engines::EngineMode::Draining,
    )
    .await
    .expect("ask");
    assert!(view.is_some());
    let ttl = redis
        .command(&format!("PTTL {prefix}:engine:engine-1"))
        .await;
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().expect("ttl");
    assert!(ttl > 0, "the asked engine's key lives for ever: {ttl}");
}

#[tokio::test]
async fn a_task_change_keeps_its_answer_in_the_same_step_and_is_recorded_once() {
    use engine::cluster::{Recorded, TaskFence};
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let epoch = f
        .elect("leader", Duration::from_secs(30))
        .await
        .expect("elect")
        .expect("leads");
    let key = format!("{}:idem:add-a", f.prefix());
    let add = [TaskChange::Added(r#"{"name":"a"}"#.into())];
    let fence = TaskFence {
        key: Some(&key),
        answer: b"\x00\xc9{}",
        keep: Duration::from_secs(60),
        tasks: Some(0),
    };
    // A leader that has not read every task is refused, and so is a stale epoch: neither
    // records anything nor keeps an answer.
    let behind = TaskFence {
        tasks: Some(1),
        ..fence.clone()
    };
    assert_eq!(
        f.record_change(epoch, &add, &[], &behind)
            .await
            .expect("record"),
        Recorded::Moved
    );
    assert_eq!(
        f.record_change(epoch + 1, &add, &[], &fence)
            .await
            .expect("record"),
        Recorded::Stale
    );
    assert_eq!(redis.command(&format!("EXISTS {key}")).await, ":0\r\n");
    assert_eq!(
        f.record_change(epoch, &add, &[], &fence)
            .await
            .expect("record"),
        Recorded::Now
    );
    assert_eq!(
        redis.command(&format!("GET {key}")).await,
        "$4\r\n\x00\u{c9}{}\r\n".replace('\u{c9}', "\u{fffd}"),
        "the answer is kept with the change"
    );
    // A retry of the change that landed (its reply lost) records nothing again.
    assert_eq!(
        f.record_change(epoch, &add, &[], &fence)
            .await
            .expect("record"),
        Recorded::Before
    );
    let read = f.tasks_since(0, 0).await.expect("read").expect("news");
    assert_eq!(read.records, vec![r#"{"name":"a"}"#.to_owned()]);
}

#[tokio::test]
async fn each_scheduled_run_has_a_seen_set_of_its_own_that_stays_compact() {
    // A low bound stands for the default 512 and millions of URLs: every URL of the test
    // lands in shard 0, 12 a run, 36 over three runs.
    let redis = RedisServer::start_with(&["--set-max-intset-entries", "16"]).await;
    let mut f = frontier(&redis, config()).await;
    let epoch = f
        .elect("leader", Duration::from_secs(30))
        .await
        .expect("elect")
        .expect("leads");
    let urls = |run: u64| -> Vec<NewUrl> {
        (0..12)
            .map(|n| NewUrl {
                fingerprint: (run * 1_000 + n) * engine::cluster::SEEN_SHARDS,
                ..run_url("a.test:80", n, run)
            })
            .collect()
    };
    for run in 1..=3 {
        let (tick, _) = f
            .tick(epoch, "t", 60 * run as i64, Overlap::Replace, run, &[])
            .await
            .expect("tick");
        assert!(matches!(tick, Tick::Started | Tick::Replaced), "{tick:?}");
        f.offer(&urls(run), true).await.expect("offer");
    }
    let key = |run: u64| f.run_seen_shard_key(&run_key("t", run), 0);
    let encoding = redis.command(&format!("OBJECT ENCODING {}", key(3))).await;
    assert!(encoding.contains("intset"), "{}: {encoding}", key(3));
    for run in [1, 2] {
        assert_eq!(
            redis.command(&format!("EXISTS {}", key(run))).await,
            ":0\r\n",
            "run {run}'s seen set outlived the next run's start"
        );
    }
    // Within a run, dedup holds.
    assert_eq!(
        f.offer(&urls(3)[..1], true).await.expect("offer"),
        vec![Offer::Seen]
    );
}

#[tokio::test]
async fn a_hosts_back_off_is_one_for_every_engine_and_halves_when_it_answers_well() {
    let redis = RedisServer::start().await;
    let config = RedisFrontierConfig {
        politeness: engine::config::Politeness {
            per_host: 1,
            max_backoff: Duration::from_secs(4),
            ..config().politeness
        },
        ..config()
    };
    let (mut a, mut b) = two_with_urls(&redis, config, 10).await;
    let host = format!("{}:host:a.test:80", a.prefix());
    let ready = format!("{}:ready", a.prefix());
    let backoff = || async {
        let reply = redis.command(&format!("HGET {host} backoff")).await;
        bulk(&reply).parse::<u64>().unwrap_or(0)
    };
    // Two engines take turns with the host, each answered 429: the back-off doubles with
    // every answer, whichever engine had it, up to the bound.
    let throttled = Finished {
        pace: Pace::Throttled(None),
        again: Again::After(b"again", Duration::from_millis(1)),
        ..done(&[])
    };
    let mut seen = Vec::new();
    for i in 0..6 {
        let f = if i % 2 == 0 { &mut a } else { &mut b };
        // Past the hold (the test does not wait it out: it moves the host's time back).
        redis.command(&format!("HSET {host} next_at 0")).await;
        redis.command(&format!("ZADD {ready} 0 a.test:80")).await;
        let claimed = f.claim(&format!("e{i}"), 1).await.expect("claim");
        assert_eq!(claimed.len(), 1, "turn {i}");
        f.complete(&claimed[0], throttled).await.expect("complete");
        seen.push(backoff().await);
    }
    assert_eq!(seen, [250, 500, 1_000, 2_000, 4_000, 4_000]);
    // The host held for the back-off, for every engine.
    assert!(a.claim("a", 1).await.expect("claim").is_empty());
    assert!(b.claim("b", 1).await.expect("claim").is_empty());
    // A good answer halves it, for every engine.
    redis.command(&format!("HSET {host} next_at 0")).await;
    redis.command(&format!("ZADD {ready} 0 a.test:80")).await;
    let claimed = b.claim("b", 1).await.expect("claim");
    let fine = Finished {
        pace: Pace::Recovered,
        ..done(&[])
    };
    b.complete(&claimed[0], fine).await.expect("complete");
    assert_eq!(backoff().await, 2_000);
}

/// The value of a RESP bulk-string reply (empty for nil).
fn bulk(reply: &str) -> String {
    reply.lines().nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_tasks_page_budget_counts_pages_sent_across_engines_and_gets_back_what_was_not_done() {
    use engine::cluster::Reserved;
    let redis = RedisServer::start().await;
    let short = RedisFrontierConfig {
        lease: Duration::from_millis(100),
        politeness: engine::config::Politeness {
            per_host: 10,
            ..config().politeness
        },
    };
    let (mut a, mut b) = two_with_urls(&redis, short, 4).await;
    let first = a.claim("a", 2).await.expect("claim");
    let second = b.claim("b", 2).await.expect("claim");
    let budget = engine::cluster::budget_key("t", 0);
    // A budget of three pages for the crawl, whichever engine sends them.
    let mut got = Vec::new();
    for c in &first {
        got.push(a.reserve(c.lease, &budget, 3).await.expect("reserve"));
    }
    for c in &second {
        got.push(b.reserve(c.lease, &budget, 3).await.expect("reserve"));
    }
    assert_eq!(
        got,
        [
            Reserved::Taken,
            Reserved::Taken,
            Reserved::Taken,
            Reserved::Spent
        ]
    );
    // The task's requests stay queued while its budget is spent: none is claimed.
    a.offer(&[url("a.test:80", 9)], true).await.expect("offer");
    assert!(a.claim("a", 10).await.expect("claim").is_empty());
    assert_eq!(a.queued().await.expect("queued"), 1);
    // A page sent again later (a retry) gives its place back, and the task's requests may
    // be claimed again.
    let retry = Finished {
        again: Again::After(b"again", Duration::from_secs(60)),
        ..done(&[])
    };
    a.complete(&first[0], retry).await.expect("complete");
    let ninth = a.claim("a", 10).await.expect("claim");
    assert_eq!(ninth.len(), 1, "the task's budget has room again");
    a.complete(&ninth[0], done(&[])).await.expect("complete");
    assert_eq!(
        b.reserve(second[1].lease, &budget, 3)
            .await
            .expect("reserve"),
        Reserved::Taken
    );
    // A page done for good keeps it; one whose engine died gives it back when reaped.
    a.complete(&first[1], done(&[])).await.expect("complete");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(a.reap(10).await.expect("reap"), 2, "b's two leases lapsed");
    let again = a.claim("a", 10).await.expect("claim");
    assert_eq!(again.len(), 2);
    let mut got = Vec::new();
    for c in &again {
        got.push(a.reserve(c.lease, &budget, 3).await.expect("reserve"));
    }
    assert_eq!(got, [Reserved::Taken, Reserved::Taken]);
    assert_eq!(
        a.reserve(first[0].lease, &budget, 3)
            .await
            .expect("reserve"),
        Reserved::LeaseGone
    );
}

#[tokio::test]
async fn a_paused_tasks_requests_stay_queued_and_tasks_take_turns_on_a_host() {
    let redis = RedisServer::start().await;
    let mut f = frontier(
        &redis,
        RedisFrontierConfig {
            politeness: engine::config::Politeness {
                per_host: 10,
                ..config().politeness
            },
            ..config()
        },
    )
    .await;
    let epoch = f
        .elect("leader", Duration::from_secs(30))
        .await
        .expect("elect")
        .expect("leads");
    let of = |task: &str, n: u64| NewUrl {
        fingerprint: common::fingerprint(&format!("http://a.test/{task}/{n}")),
        entry: format!("{task}{n}").into_bytes(),
        task: task.into(),
        ..url("a.test:80", n)
    };
    let urls: Vec<NewUrl> = (0..3).flat_map(|n| [of("p", n), of("r", n)]).collect();
    f.offer(&urls, true).await.expect("offer");
    // The host's tasks take turns.
    let two = f.claim("e", 2).await.expect("claim");
    let mut firsts: Vec<&[u8]> = two.iter().map(|c| &c.entry[..]).collect();
    firsts.sort();
    assert_eq!(firsts, [&b"p0"[..], &b"r0"[..]]);
    // Paused, a task's requests stay queued, counted for it, and are not handed out.
    let pause = [TaskChange::State("p".into(), TaskState::Paused, 0)];
    let fence = engine::cluster::TaskFence::default();
    f.record_change(epoch, &pause, &[], &fence)
        .await
        .expect("pause");
    let rest = f.claim("e", 10).await.expect("claim");
    let entries: Vec<&[u8]> = rest.iter().map(|c| &c.entry[..]).collect();
    assert_eq!(entries, [&b"r1"[..], &b"r2"[..]]);
    assert!(f.claim("e", 10).await.expect("claim").is_empty());
    let (counts, per_task) = f.status().await.expect("status");
    assert_eq!(counts.queued, 2);
    let per_task: HashMap<String, u64> = per_task.into_iter().collect();
    assert_eq!((per_task["p"], per_task["r"]), (2, 0));
    // Resumed, its host is ready again at once.
    let resume = [TaskChange::State("p".into(), TaskState::Running, 0)];
    f.record_change(epoch, &resume, &[], &fence)
        .await
        .expect("resume");
    let rest = f.claim("e", 10).await.expect("claim");
    let entries: Vec<&[u8]> = rest.iter().map(|c| &c.entry[..]).collect();
    assert_eq!(entries, [&b"p1"[..], &b"p2"[..]]);
}

#[tokio::test]
async fn a_scheduled_run_whose_budget_is_spent_ends_and_the_next_tick_starts_anew() {
    use engine::cluster::Reserved;
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let epoch = f
        .elect("e", Duration::from_secs(10))
        .await
        .expect("elect")
        .expect("leader");
    let seeds = [run_url("a.test:80", 0, 1), run_url("a.test:80", 1, 1)];
    assert_eq!(
        f.tick(epoch, "t", 60, Overlap::Skip, 1, &seeds)
            .await
            .expect("tick")
            .0,
        Tick::Started
    );
    // A budget of one page: the first goes and completes, the second is refused and goes
    // back to its lane, held there.
    let budget = engine::cluster::budget_key("t", 1);
    let claimed = f.claim("e", 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        f.reserve(claimed[0].lease, &budget, 1)
            .await
            .expect("reserve"),
        Reserved::Taken
    );
    assert_eq!(
        f.reserve(claimed[1].lease, &budget, 1)
            .await
            .expect("reserve"),
        Reserved::Spent
    );
    let done_run = Finished {
        run: &run_key("t", 1),
        ..done(&[])
    };
    f.complete(&claimed[0], done_run).await.expect("complete");
    let back = Finished {
        again: Again::Now(&claimed[1].entry),
        ..done(&[])
    };
    f.complete(&claimed[1], back).await.expect("complete");
    assert!(f.claim("e", 10).await.expect("claim").is_empty(), "held");
    // Nothing of the run is leased or deferred: it ends, capped, its request left queued.
    assert_eq!(
        f.end_runs(epoch, &["t".into()]).await.expect("end"),
        Some(1)
    );
    assert_eq!(f.queued().await.expect("queued"), 1);
    // The next tick starts the next run; what the last one left is claimed again (for the
    // engines to drop).
    assert_eq!(
        f.tick(epoch, "t", 120, Overlap::Skip, 2, &[])
            .await
            .expect("tick")
            .0,
        Tick::Started
    );
    assert_eq!(f.claim("e", 10).await.expect("claim").len(), 1);
}

#[tokio::test]
async fn a_hosts_robots_txt_request_takes_no_place_of_its_page_cap() {
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    redis
        .command("HSET {spinneret:test}:limits max_pages_per_host 1")
        .await;
    // A seed of a new host comes with the host's robots.txt request: with a cap of one page
    // the seed is queued, and a second page is not.
    let seed = NewUrl {
        robots: b"robots".to_vec(),
        bounded: false,
        ..url("a.test:80", 1)
    };
    assert_eq!(
        f.offer(&[seed, url("a.test:80", 2)], true)
            .await
            .expect("offer"),
        [Offer::Queued, Offer::OverPageCap]
    );
    // The robots.txt request goes out first, alone; the seed is still within the cap.
    let robots = f.claim("e", 10).await.expect("claim");
    assert_eq!(robots.len(), 1);
    assert_eq!(
        f.offer(&[url("a.test:80", 3)], true).await.expect("offer"),
        [Offer::OverPageCap]
    );
}

#[tokio::test]
async fn a_crawl_of_the_old_key_layout_is_moved_on_and_a_newer_one_is_refused() {
    let redis = RedisServer::start().await;
    // Layout 1 kept no limits and no layout key: an engine joining writes both.
    let mut old = frontier(&redis, config()).await;
    let prefix = engine::cluster::crawl_prefix("test");
    let get = |line: String| {
        let redis = &redis;
        async move { redis.command(&line).await }
    };
    assert_eq!(get(format!("GET {prefix}:schema")).await, "$1\r\n2\r\n");
    assert_eq!(
        get(format!("HGET {prefix}:limits max_queue_per_host")).await,
        "$4\r\n1000\r\n"
    );
    // A crawl laid out by a later version is refused, its limits untouched.
    get(format!("SET {prefix}:schema 3")).await;
    get(format!("HSET {prefix}:limits per_host 7")).await;
    assert_eq!(old.keep_limits().await.expect("limits"), Some(3));
    assert_eq!(
        get(format!("HGET {prefix}:limits per_host")).await,
        "$1\r\n7\r\n"
    );
}

#[tokio::test]
async fn a_crawl_whose_limits_are_gone_fails_its_calls_saying_so() {
    let redis = RedisServer::start().await;
    let mut f = frontier(&redis, config()).await;
    let prefix = engine::cluster::crawl_prefix("test");
    redis.command(&format!("DEL {prefix}:limits")).await;
    let error = f
        .offer(&[url("a.test:80", 1)], true)
        .await
        .expect_err("no limits, no offer");
    assert!(
        error.to_string().contains("no politeness limits"),
        "{error}"
    );
}
