//! A shared crawl's settings: the first engine of a crawl stores what its flags say, and
//! every engine after it adopts them, logging each flag of its own that differs, so that an
//! engine joining with other flags never silently changes the crawl.

use super::frontier::ClusterError;
use crate::config::{EngineConfig, SpiderRun};
use crate::tasks::RecordError;
use common::redis_conn::RedisConn;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::{info, warn};

/// What every engine of a crawl must agree on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrawlSettings {
    task: String,
    seeds: Vec<String>,
    parser: String,
    spider: Option<String>,
    max_depth: Option<u32>,
    max_pages: Option<u64>,
    allow_domains: Vec<String>,
    per_host: usize,
    delay_ms: u64,
    max_queue_per_host: usize,
    robots: bool,
    retries: u32,
    max_redirects: u32,
    max_url_len: usize,
    /// The crawl's own task's schedule (settings from before schedules have none).
    #[serde(default)]
    schedule: Option<crate::schedule::ScheduleSpec>,
    /// Pages of one host at most, across the crawl (settings from before it held in
    /// cluster mode have none).
    #[serde(default)]
    max_pages_per_host: Option<u64>,
    /// The longest 429/503 back-off of a host, in ms (settings from before it was kept
    /// with the crawl's have none: each engine's own then).
    #[serde(default)]
    max_backoff_ms: Option<u64>,
}

impl CrawlSettings {
    /// The settings an engine's flags describe.
    pub fn from_config(config: &EngineConfig) -> Self {
        CrawlSettings {
            task: config.task.clone(),
            seeds: config.seeds.iter().map(|u| u.to_string()).collect(),
            parser: config.parser.clone(),
            spider: config.spider.as_ref().map(|s| s.source.clone()),
            max_depth: config.max_depth,
            max_pages: config.max_pages,
            allow_domains: config.allow_domains.clone(),
            per_host: config.politeness.per_host,
            delay_ms: config.politeness.delay.as_millis() as u64,
            max_queue_per_host: config.politeness.max_queue_per_host,
            robots: config.politeness.robots,
            retries: config.retries,
            max_redirects: config.max_redirects,
            max_url_len: config.max_url_len,
            schedule: config.schedule.as_ref().map(|s| s.spec.clone()),
            max_pages_per_host: config.politeness.max_pages_per_host,
            max_backoff_ms: Some(config.politeness.max_backoff.as_millis() as u64),
        }
    }

    /// Each setting whose value differs from `other`'s, as (flag, ours, theirs).
    fn differences(&self, other: &CrawlSettings) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut check = |name: &'static str, a: String, b: String| {
            if a != b {
                out.push((name, a, b));
            }
        };
        check("--task", self.task.clone(), other.task.clone());
        check("--seed", self.seeds.join(","), other.seeds.join(","));
        check("--parser", self.parser.clone(), other.parser.clone());
        check(
            "--spider",
            format!(
                "{:x}",
                self.spider.as_deref().map_or(0, common::fingerprint)
            ),
            format!(
                "{:x}",
                other.spider.as_deref().map_or(0, common::fingerprint)
            ),
        );
        check(
            "--max_depth",
            format!("{:?}", self.max_depth),
            format!("{:?}", other.max_depth),
        );
        check(
            "--max_pages",
            format!("{:?}", self.max_pages),
            format!("{:?}", other.max_pages),
        );
        check(
            "--allow_domains",
            self.allow_domains.join(","),
            other.allow_domains.join(","),
        );
        check(
            "--max_pages_per_host",
            format!("{:?}", self.max_pages_per_host),
            format!("{:?}", other.max_pages_per_host),
        );
        if let (Some(ours), Some(theirs)) = (self.max_backoff_ms, other.max_backoff_ms) {
            // Settings from before it was kept with the crawl's have none: nothing to say.
            check(
                "--max_backoff",
                format!("{}s", ours as f64 / 1000.0),
                format!("{}s", theirs as f64 / 1000.0),
            );
        }
        check(
            "--per_host",
            self.per_host.to_string(),
            other.per_host.to_string(),
        );
        check(
            "--delay",
            self.delay_ms.to_string(),
            other.delay_ms.to_string(),
        );
        check(
            "--max_queue_per_host",
            self.max_queue_per_host.to_string(),
            other.max_queue_per_host.to_string(),
        );
        check(
            "--ignore_robots",
            (!self.robots).to_string(),
            (!other.robots).to_string(),
        );
        check(
            "--retries",
            self.retries.to_string(),
            other.retries.to_string(),
        );
        check(
            "--max_redirects",
            self.max_redirects.to_string(),
            other.max_redirects.to_string(),
        );
        check(
            "--max_url_len",
            self.max_url_len.to_string(),
            other.max_url_len.to_string(),
        );
        check(
            "--schedule",
            format!("{:?}", self.schedule),
            format!("{:?}", other.schedule),
        );
        out
    }

    /// Puts these settings into `config`.
    fn apply(&self, config: &mut EngineConfig) -> Result<(), RecordError> {
        config.task = self.task.clone();
        config.seeds = self
            .seeds
            .iter()
            .map(|s| crate::parse_seed(s).map_err(|e| RecordError::Seed(e.to_string())))
            .collect::<Result<_, _>>()?;
        config.parser = self.parser.clone();
        config.spider = match &self.spider {
            None => None,
            Some(source) => Some(SpiderRun::compile("the crawl's spider", source.clone())?.0),
        };
        config.max_depth = self.max_depth;
        config.max_pages = self.max_pages;
        config.politeness.max_pages_per_host = self.max_pages_per_host;
        if let Some(ms) = self.max_backoff_ms {
            config.politeness.max_backoff = Duration::from_millis(ms);
        }
        config.allow_domains = self.allow_domains.clone();
        config.politeness.per_host = self.per_host.max(1);
        config.politeness.delay = Duration::from_millis(self.delay_ms);
        config.politeness.max_queue_per_host = self.max_queue_per_host;
        config.politeness.robots = self.robots;
        config.retries = self.retries;
        config.max_redirects = self.max_redirects;
        config.max_url_len = self.max_url_len;
        config.schedule = self
            .schedule
            .clone()
            .map(crate::schedule::Schedule::new)
            .transpose()?;
        Ok(())
    }
}

/// Why a crawl's settings could not be adopted.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] ClusterError),
    /// Nothing is stored and this engine has no seeds to start the crawl with.
    #[error(
        "crawl {0:?} was not started: give the first engine --seed URL (or a spider with start_urls)"
    )]
    NotStarted(String),
    /// The crawl's keys were laid out by a later version of the engine.
    #[error(
        "crawl {crawl:?} was made by a newer spinneret (key layout {found}; this engine knows up to {known}): run the same version on every engine"
    )]
    NewerLayout {
        /// The crawl.
        crawl: String,
        /// The layout found.
        found: u64,
        /// The latest layout this engine knows.
        known: u64,
    },
    /// The stored settings do not read (written by another version?).
    #[error("the stored settings of crawl {crawl:?} are unusable: {why}")]
    Unusable {
        /// The crawl.
        crawl: String,
        /// What is wrong.
        why: RecordError,
    },
}

/// Stores this engine's settings as the crawl's when it is the first (or no engine ran with
/// the settings stored, see [`mark_ran`]), or adopts the crawl's into `config`, logging
/// every flag of its own that differs. An engine without seeds waits up to `wait` for one
/// with seeds to start the crawl.
pub async fn adopt(
    conn: &mut RedisConn,
    prefix: &str,
    crawl: &str,
    config: &mut EngineConfig,
    wait: Duration,
) -> Result<(), SettingsError> {
    let key = super::keys::Keys::with_prefix(prefix).settings();
    let ours = CrawlSettings::from_config(config);
    let redis_err = |what| move |source| ClusterError::Redis { what, source };
    // A crawl laid out by a later version is left as it is: nothing is stored in it.
    let layout: Option<u64> = redis::cmd("GET")
        .arg(super::keys::Keys::with_prefix(prefix).schema())
        .query_async(conn)
        .await
        .map_err(redis_err("read the crawl's key layout"))?;
    if let Some(found) = layout.filter(|found| *found > super::LAYOUT) {
        return Err(SettingsError::NewerLayout {
            crawl: crawl.to_owned(),
            found,
            known: super::LAYOUT,
        });
    }
    if !ours.seeds.is_empty() {
        // Stored unless an engine ran the crawl already: settings that no engine ran with
        // (an engine that stopped at start, its itemsaver unreachable, say) are replaced.
        // The limits the frontier scripts apply go with them, in the same step, into the
        // hash `limits`, and the key layout they are kept in into `schema`.
        let json = serde_json::to_string(&ours).unwrap_or_default();
        let keys = super::keys::Keys::with_prefix(prefix);
        let _: i64 = redis::Script::new(
            "local stored
             if redis.call('EXISTS', KEYS[2]) == 0 then
               stored = redis.call('SET', KEYS[1], ARGV[1])
             else
               stored = redis.call('SET', KEYS[1], ARGV[1], 'NX')
             end
             if stored then
               redis.call('HSET', KEYS[3], 'per_host', ARGV[2], 'max_queue_per_host', ARGV[3],
                 'delay_ms', ARGV[4], 'max_backoff_ms', ARGV[5], 'max_pages_per_host', ARGV[6])
               redis.call('SET', KEYS[4], ARGV[7])
             end
             return 1",
        )
        .key(keys.settings())
        .key(keys.ran())
        .key(keys.limits())
        .key(keys.schema())
        .arg(json)
        .arg(ours.per_host.max(1))
        .arg(ours.max_queue_per_host)
        .arg(ours.delay_ms)
        .arg(ours.max_backoff_ms.unwrap_or(0))
        .arg(ours.max_pages_per_host.unwrap_or(0))
        .arg(super::LAYOUT)
        .invoke_async(conn)
        .await
        .map_err(redis_err("store the crawl's settings"))?;
    }
    let until = tokio::time::Instant::now() + wait;
    let mut said = false;
    let stored = loop {
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(conn)
            .await
            .map_err(redis_err("read the crawl's settings"))?;
        match stored {
            Some(stored) => break stored,
            None if tokio::time::Instant::now() >= until => {
                return Err(SettingsError::NotStarted(crawl.to_owned()));
            }
            None => {
                if !said {
                    info!(
                        crawl,
                        ?wait,
                        "waiting for an engine with seeds to start the crawl"
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let unusable = |why: RecordError| SettingsError::Unusable {
        crawl: crawl.to_owned(),
        why,
    };
    let theirs: CrawlSettings = serde_json::from_str(&stored).map_err(|e| unusable(e.into()))?;
    if theirs != ours {
        let joining = ours.seeds.is_empty();
        for (flag, mine, crawls) in ours.differences(&theirs) {
            if joining && matches!(flag, "--seed" | "--task" | "--spider" | "--parser") {
                continue;
            }
            warn!(flag, ours = %mine, crawl = %crawls, "this flag differs from the crawl's; using the crawl's");
        }
        theirs.apply(config).map_err(unusable)?;
    }
    Ok(())
}

/// Records that an engine runs the crawl with its settings: from then on they are the
/// crawl's for good (until `--fresh`), and an engine with other flags adopts them.
pub async fn mark_ran(conn: &mut RedisConn, prefix: &str) -> Result<(), ClusterError> {
    redis::cmd("SET")
        .arg(super::keys::Keys::with_prefix(prefix).ran())
        .arg(1)
        .query_async::<()>(conn)
        .await
        .map_err(|source| ClusterError::Redis {
            what: "record that the crawl runs",
            source,
        })
}
