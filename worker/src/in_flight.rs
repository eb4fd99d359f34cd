//! The requests a worker is working on, by task and age: what its `status` report says it is
//! doing now, so an engine can show a stuck worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Tasks named in one report at most; the rest are summed under `other`.
pub const MAX_TASKS_REPORTED: usize = 64;

/// The requests in flight.
#[derive(Debug, Default)]
pub struct InFlight {
    next: AtomicU64,
    requests: Mutex<HashMap<u64, (String, Instant)>>,
}

/// One request's place in the table; it leaves when dropped.
#[derive(Debug)]
pub struct Tracked {
    table: Arc<InFlight>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut requests = self
            .table
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        requests.remove(&self.id);
    }
}

impl InFlight {
    /// Records a request of `task` as started now.
    pub fn track(self: &Arc<Self>, task: &str) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.insert(id, (task.to_owned(), Instant::now()));
        Tracked {
            table: self.clone(),
            id,
        }
    }

    /// Requests in flight by task, and the oldest one's age in seconds.
    pub fn report(&self) -> (BTreeMap<String, u64>, Option<f64>) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_task: BTreeMap<String, u64> = BTreeMap::new();
        for (task, _) in requests.values() {
            if by_task.len() < MAX_TASKS_REPORTED || by_task.contains_key(task) {
                *by_task.entry(task.clone()).or_default() += 1;
            } else {
                *by_task.entry("other".to_owned()).or_default() += 1;
            }
        }
        let oldest = requests
            .values()
            .map(|(_, since)| since.elapsed().as_secs_f64())
            .fold(None, |max: Option<f64>, age| {
                Some(max.map_or(age, |m| m.max(age)))
            });
        (by_task, oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_task_until_they_end() {
        let table = Arc::new(InFlight::default());
        let a = table.track("news");
        let _b = table.track("news");
        let _c = table.track("docs");
        let (by_task, oldest) = table.report();
        assert_eq!(by_task.get("news"), Some(&2));
        assert_eq!(by_task.get("docs"), Some(&1));
        assert!(oldest.is_some());
        drop(a);
        assert_eq!(table.report().0.get("news"), Some(&1));
    }
}
