//! Cluster mode's shared state in Redis: one frontier that every engine of a crawl draws from.
//!
//! `frontier` holds the Redis side (the scripts), `shared` the crawl loop's side, `entry` how
//! a request is stored, `leader` the leader's jobs and `discover` finding workers and
//! itemsavers that registered themselves.

pub mod discover;
pub mod engines;
pub mod entry;
mod frontier;
pub mod keys;
pub mod leader;
pub mod name;
pub mod settings;
pub mod shared;

pub mod totals;

pub use frontier::{
    Again, Claim, Claimed, ClusterError, Counts, Finished, LAYOUT, NewUrl, Offer, Pace, Recorded,
    RedisFrontier, RedisFrontierConfig, Reserved, RobotsRequest, SEEN_SHARDS, SettleOp,
    SettleReport, TaskFence, TasksRead, Tick, budget_key, crawl_prefix,
};
pub use shared::{SharedConfig, SharedFrontier, read_record};

/// The crawl's own task's seeds as the leader queues them (once, when it seeds the crawl).
pub fn seed_urls(def: &crate::tasks::TaskDef, robots: bool) -> Vec<NewUrl> {
    run_seeds(def, robots, 0, 0)
}

/// A task's seeds for run `run` (0: a task without a schedule), fingerprinted with `salt`,
/// each host with its robots.txt request.
pub fn run_seeds(def: &crate::tasks::TaskDef, robots: bool, run: u64, salt: u64) -> Vec<NewUrl> {
    let mut offered = std::collections::HashSet::new();
    def.seed_requests()
        .map(|(seed, request)| {
            let host = crate::crawl::host_key(seed);
            let first = robots && offered.insert(host.clone());
            entry::new_url(
                &request,
                entry::Place {
                    host,
                    fingerprint: common::fingerprint(seed.as_str()) ^ salt,
                    scope: salt,
                    redirects: 0,
                    run,
                },
                first.then(|| crate::robots::robots_url(seed)),
            )
        })
        .collect()
}
