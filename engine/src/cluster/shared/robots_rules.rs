//! Hosts' robots.txt rules in a shared crawl: the records in Redis (the file, or that none
//! could be had), read once per host by each engine and kept here.

use super::*;

/// Reads a stored robots.txt record: the file, or `None` when it could not be had.
pub fn read_record(bytes: &[u8], agent: &str) -> (Rules, Option<Duration>) {
    match bincode::deserialize::<Option<RobotsFile>>(bytes) {
        Ok(Some(file)) => match crate::robots::read(&file, agent).0 {
            Verdict::Known(rules, delay) => (rules, delay),
            Verdict::TryLater => (Rules::DisallowAll, None),
        },
        Ok(None) => (Rules::DisallowAll, None),
        Err(_) => (Rules::AllowAll, None),
    }
}

/// Hosts' robots.txt rules as this engine knows them, shared with its claims on their way
/// (which read the records of the hosts not in it).
#[derive(Clone, Debug, Default)]
pub(super) struct KnownRules(std::sync::Arc<std::sync::RwLock<HashMap<String, Rules>>>);

impl KnownRules {
    pub(super) fn get(&self, host: &str) -> Option<Rules> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    pub(super) fn contains(&self, host: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(host)
    }

    pub(super) fn insert(&self, host: String, rules: Rules) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host, rules);
    }
}
