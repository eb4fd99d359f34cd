//! Schedules: a task that recurs on a cron pattern (seconds optional) in a time zone, and the
//! clock the engine's scheduler reads, which tests replace with one they move by hand.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;

/// What a tick does while the previous run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick (recorded as a `skipped` run).
    #[default]
    Skip,
    /// Stop the old run gracefully, then start the new one.
    Replace,
}

/// A schedule as written: in a spider file's `[schedule]`, the task API's `schedule`, or the
/// engine's `--schedule` flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A cron pattern: `minute hour day-of-month month day-of-week`, with an optional leading
    /// seconds field.
    pub cron: String,
    /// The time zone the pattern is read in (an IANA name such as `Europe/Paris`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// What a tick does while the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron pattern does not parse.
    #[error("schedule {cron:?}: {why}")]
    Cron {
        /// The pattern.
        cron: String,
        /// What the parser said.
        why: String,
    },
    /// The time zone is unknown.
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/Paris)")]
    TimeZone(String),
}

/// A checked schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// As written.
    pub spec: ScheduleSpec,
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Schedule {
    /// Checks `spec`.
    pub fn new(spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let cron = croner::Cron::from_str(&spec.cron).map_err(|e| ScheduleError::Cron {
            cron: spec.cron.clone(),
            why: e.to_string(),
        })?;
        let tz = chrono_tz::Tz::from_str(&spec.timezone)
            .map_err(|_| ScheduleError::TimeZone(spec.timezone.clone()))?;
        Ok(Schedule { spec, cron, tz })
    }

    /// The first tick strictly after `after`; `None` when the pattern matches no time to come.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Ticks strictly after `after` and at or before `until`, counted up to `max`.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, max: u64) -> u64 {
        let mut n = 0;
        let mut at = after;
        while n < max {
            match self.next_after(at) {
                Some(next) if next <= until => {
                    n += 1;
                    at = next;
                }
                _ => break,
            }
        }
        n
    }
}

/// The time the scheduler goes by.
pub trait SchedulerClock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once it is `at` or later (or when the clock was moved, to look again).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl SchedulerClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        // Woken at least once a minute: a clock set forward or back is seen soon.
        Box::pin(tokio::time::sleep(
            wait.min(std::time::Duration::from_secs(60)),
        ))
    }
}

/// A clock that moves only when told: for tests of schedules, so that minutes pass at once
/// while fetches and timeouts keep real time.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: tokio::sync::watch::Sender::new(start),
        })
    }

    /// Moves it on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or_default();
        self.now.send_modify(|now| *now += by);
    }
}

impl SchedulerClock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut moves = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *moves.borrow_and_update() >= at {
                    return;
                }
                if moves.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn schedule(cron: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        Schedule::new(ScheduleSpec {
            cron: cron.into(),
            timezone: timezone.into(),
            overlap: Overlap::Skip,
        })
    }

    #[test]
    fn patterns_tick_in_their_time_zone_with_seconds_optional() {
        let nightly = schedule("0 3 * * *", "UTC").expect("nightly");
        assert_eq!(
            nightly.next_after(at("2026-11-26T10:00:00Z")),
            Some(at("2026-11-27T03:00:00Z"))
        );
        let paris = schedule("0 3 * * *", "Europe/Paris").expect("paris");
        assert_eq!(
            paris.next_after(at("2026-11-26T10:00:00Z")),
            Some(at("2026-11-27T02:00:00Z"))
        );
        let every_ten_seconds = schedule("*/10 * * * * *", "UTC").expect("seconds");
        assert_eq!(
            every_ten_seconds.next_after(at("2026-11-26T10:00:01Z")),
            Some(at("2026-11-26T10:00:10Z"))
        );
        let minutely = schedule("* * * * *", "UTC").expect("minutely");
        assert_eq!(
            minutely.ticks_between(at("2026-11-26T10:00:00Z"), at("2026-11-26T11:00:00Z"), 1000),
            60
        );
        assert_eq!(
            minutely.ticks_between(at("2026-11-26T10:00:00Z"), at("2026-11-27T10:00:00Z"), 100),
            100,
            "counted up to the bound"
        );
    }

    #[test]
    fn bad_patterns_and_zones_are_named() {
        let err = schedule("61 * * * *", "UTC").expect_err("minute 61");
        assert!(err.to_string().contains("61 * * * *"), "{err}");
        let err = schedule("* * * * *", "Mars/Olympus").expect_err("zone");
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_when_moved() {
        let clock = ManualClock::new(at("2026-11-26T10:00:00Z"));
        let sleeper = clock.sleep_until(at("2026-11-26T10:01:00Z"));
        let woke = tokio::spawn(sleeper);
        clock.advance(std::time::Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!woke.is_finished());
        clock.advance(std::time::Duration::from_secs(30));
        tokio::time::timeout(std::time::Duration::from_secs(5), woke)
            .await
            .expect("woken")
            .expect("task");
    }
}
