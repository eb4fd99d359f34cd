//! The crawl's key schema in Redis, in one table: every key a crawl keeps, under its prefix
//! `{spinneret:NAME}` (the hash tag keeps a crawl on one Redis Cluster slot). Rust names keys
//! through [`Keys`]; the Lua scripts through the table `KEY` that [`lua_table`] makes from the
//! same [`SCHEMA`] (`KEY.leader`, and `KEY.host .. host` for a key per host), so a key's
//! name is written once.

/// One key (or family of keys) of a crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Its name in Rust and in Lua's `KEY` table.
    pub name: &'static str,
    /// What follows the prefix: the whole key, or, for a family (ending in `:`), the part
    /// before each member's own name.
    pub suffix: &'static str,
    /// The Redis type and what it holds.
    pub holds: &'static str,
}

const fn key(name: &'static str, suffix: &'static str, holds: &'static str) -> Key {
    Key {
        name,
        suffix,
        holds,
    }
}

/// Every key of a crawl.
pub const SCHEMA: &[Key] = &[
    // Settings and membership.
    key(
        "settings",
        ":settings",
        "string: the crawl's settings (JSON), stored by its first engine",
    ),
    key(
        "ran",
        ":ran",
        "string: set once an engine ran with the stored settings",
    ),
    key(
        "limits",
        ":limits",
        "hash: the politeness limits the scripts read (per_host, max_queue_per_host, delay_ms, max_backoff_ms, max_pages_per_host)",
    ),
    key(
        "schema",
        ":schema",
        "string: the version of this key layout (see `cluster::LAYOUT`)",
    ),
    key(
        "engines",
        ":engines",
        "sorted set: engine ids by the end of their heartbeat",
    ),
    key(
        "node",
        ":node:",
        "hash per engine: its admin address (addr)",
    ),
    key(
        "engine",
        ":engine:",
        "hash per engine: its report (role, state, dispatched, wanted mode)",
    ),
    key(
        "leader",
        ":leader",
        "string: the leader lease, ENGINE:EPOCH",
    ),
    key(
        "epoch",
        ":epoch",
        "counter: the last leader epoch handed out",
    ),
    key(
        "idem",
        ":idem:",
        "string per idempotency key: a change's first answer",
    ),
    key(
        "finals",
        ":finals",
        "hash: each engine's figures when it left, for the totals",
    ),
    // The frontier.
    key(
        "host",
        ":host:",
        "hash per host: inflight, next_at, delay, robots, pages, queued, backoff, e:ENGINE",
    ),
    key(
        "q",
        ":q:",
        "list per host (q:HOST: robots.txt and older requests) and per host and task (q:HOST#TASK)",
    ),
    key(
        "tq",
        ":tq:",
        "list per host: the tasks with requests there, taken in turn",
    ),
    key("th", ":th:", "set per task: the hosts holding its requests"),
    key(
        "ready",
        ":ready",
        "sorted set: hosts with requests, by when they may be claimed",
    ),
    key(
        "queued",
        ":queued",
        "counter: requests queued in the whole crawl",
    ),
    key(
        "task_queued",
        ":task_queued",
        "hash: requests queued per task",
    ),
    key(
        "claimers",
        ":claimers",
        "sorted set: engines that claimed lately, by when",
    ),
    key(
        "lease_seq",
        ":lease_seq",
        "counter: the last lease id handed out",
    ),
    key(
        "leases",
        ":leases",
        "sorted set: lease ids by when they expire",
    ),
    key(
        "lease",
        ":leases:",
        "hash per lease: host, entry, engine, task",
    ),
    key(
        "deferred_seq",
        ":deferred_seq",
        "counter: the last deferred id handed out",
    ),
    key(
        "deferred",
        ":deferred",
        "sorted set: deferred ids by when they are due",
    ),
    key(
        "deferral",
        ":deferred:",
        "hash per deferred request: host, entry, task",
    ),
    key("robots", ":robots", "hash: each host's robots.txt record"),
    key(
        "seen",
        ":seen:",
        "set per shard (seen:SHARD) or per run and shard (seen:RUN:SHARD): URL fingerprints",
    ),
    key("seen_count", ":seen_count", "counter: URLs seen"),
    // Tasks, runs and budgets.
    key(
        "tasks",
        ":tasks",
        "list: every task's record (JSON), in the order they were added",
    ),
    key(
        "tasks_version",
        ":tasks_version",
        "counter: bumped at each task change",
    ),
    key(
        "task_states",
        ":task_states",
        "hash: each task's state, STATE#RUN",
    ),
    key(
        "run_ends",
        ":run_ends",
        "hash: how each task's last run ended",
    ),
    key("run_open", ":run_open", "hash: requests open per run"),
    key("ticks", ":ticks", "hash: each scheduled task's last tick"),
    key("pages", ":pages", "hash: pages taken per budget (TASK#RUN)"),
    key(
        "spent",
        ":spent",
        "hash: task to the run whose page budget is spent",
    ),
    key("seeded", ":seeded", "string: set once the crawl was seeded"),
    key(
        "opened",
        ":opened",
        "string: set once the crawl (or a run) was opened to work",
    ),
    key("done", ":done", "string: set when the crawl is done"),
];

/// The keys of one crawl, named from [`SCHEMA`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of crawl `name`.
    pub fn of_crawl(name: &str) -> Keys {
        Keys {
            prefix: format!("{{spinneret:{name}}}"),
        }
    }

    /// The keys under `prefix` (a crawl's, as [`Keys::prefix`] gives it).
    pub fn with_prefix(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The crawl's prefix, `{spinneret:NAME}` (the scripts' `KEYS[1]`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key named `name` in [`SCHEMA`] (a family's common part, for one ending in `:`).
    fn named(&self, name: &str) -> String {
        let suffix = SCHEMA
            .iter()
            .find(|k| k.name == name)
            .map_or_else(|| unreachable!("{name} is in the schema"), |k| k.suffix);
        format!("{}{suffix}", self.prefix)
    }

    /// The crawl's settings.
    pub fn settings(&self) -> String {
        self.named("settings")
    }
    /// Set once an engine ran with the stored settings.
    pub fn ran(&self) -> String {
        self.named("ran")
    }
    /// The politeness limits the scripts read.
    pub fn limits(&self) -> String {
        self.named("limits")
    }
    /// The version of the crawl's key layout.
    pub fn schema(&self) -> String {
        self.named("schema")
    }
    /// The engines' heartbeats.
    pub fn engines(&self) -> String {
        self.named("engines")
    }
    /// Engine `id`'s admin address.
    pub fn node(&self, id: &str) -> String {
        format!("{}{id}", self.named("node"))
    }
    /// Engine `id`'s report.
    pub fn engine(&self, id: &str) -> String {
        format!("{}{id}", self.named("engine"))
    }
    /// The leader lease.
    pub fn leader(&self) -> String {
        self.named("leader")
    }
    /// The kept answer of a change with idempotency key `key`.
    pub fn idem(&self, key: &str) -> String {
        format!("{}{key}", self.named("idem"))
    }
    /// The engines' figures when they left.
    pub fn finals(&self) -> String {
        self.named("finals")
    }
    /// Lease ids by expiry.
    pub fn leases(&self) -> String {
        self.named("leases")
    }
    /// Deferred ids by due time.
    pub fn deferred(&self) -> String {
        self.named("deferred")
    }
    /// Requests queued in the crawl.
    pub fn queued(&self) -> String {
        self.named("queued")
    }
    /// The hosts' robots.txt records.
    pub fn robots(&self) -> String {
        self.named("robots")
    }
    /// Seen fingerprints of shard `shard`, or of `run`'s shard `shard`.
    pub fn seen(&self, run: Option<&str>, shard: u64) -> String {
        match run {
            Some(run) => format!("{}{run}:{shard}", self.named("seen")),
            None => format!("{}{shard}", self.named("seen")),
        }
    }
    /// The task records.
    pub fn tasks(&self) -> String {
        self.named("tasks")
    }
    /// The tasks' version.
    pub fn tasks_version(&self) -> String {
        self.named("tasks_version")
    }
    /// The tasks' states.
    pub fn task_states(&self) -> String {
        self.named("task_states")
    }
    /// How the tasks' last runs ended.
    pub fn run_ends(&self) -> String {
        self.named("run_ends")
    }
    /// Requests open per run.
    pub fn run_open(&self) -> String {
        self.named("run_open")
    }
    /// The scheduled tasks' last ticks.
    pub fn ticks(&self) -> String {
        self.named("ticks")
    }
    /// Set when the crawl is done.
    pub fn done(&self) -> String {
        self.named("done")
    }
}

/// The Lua table naming every key of [`SCHEMA`] under the prefix `K`, put before every
/// script: `KEY.leader` is the leader lease, `KEY.host .. host` a host's hash.
pub fn lua_table() -> String {
    let mut out = String::from("local KEY = {\n");
    for key in SCHEMA {
        out.push_str(&format!("  {} = K .. '{}',\n", key.name, key.suffix));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_name_and_one_suffix() {
        let mut names: Vec<&str> = SCHEMA.iter().map(|k| k.name).collect();
        let mut suffixes: Vec<&str> = SCHEMA.iter().map(|k| k.suffix).collect();
        names.sort_unstable();
        suffixes.sort_unstable();
        let (n, s) = (names.len(), suffixes.len());
        names.dedup();
        suffixes.dedup();
        assert_eq!(
            (names.len(), suffixes.len()),
            (n, s),
            "no name or suffix twice"
        );
        assert!(SCHEMA.iter().all(|k| k.suffix.starts_with(':')));
    }

    #[test]
    fn keys_carry_the_crawls_hash_tag() {
        let keys = Keys::of_crawl("news");
        assert_eq!(keys.leader(), "{spinneret:news}:leader");
        assert_eq!(keys.node("e1"), "{spinneret:news}:node:e1");
        assert_eq!(keys.seen(None, 3), "{spinneret:news}:seen:3");
        assert_eq!(keys.seen(Some("t#2"), 3), "{spinneret:news}:seen:t#2:3");
        assert!(lua_table().contains("  host = K .. ':host:',\n"));
    }

    #[test]
    fn every_script_names_its_keys_from_the_table() {
        // A key spelt out in a script (`K .. ':leader'`) would bypass the schema.
        for (file, text) in super::super::frontier::script_sources() {
            assert!(
                !text.contains("K .. ':"),
                "{file} spells a key out instead of naming it from KEY"
            );
            for used in text.split("KEY.").skip(1) {
                let name: String = used
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    SCHEMA.iter().any(|k| k.name == name),
                    "{file} names KEY.{name}, which is not in the schema"
                );
            }
        }
    }
}
