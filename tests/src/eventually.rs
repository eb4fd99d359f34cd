//! Bounded waits for a condition that has no event to wait on (an HTTP API, a log, a Redis
//! key): one helper that checks it again and again, instead of a poll loop at every wait.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] checks its condition again.
pub const POLL: Duration = Duration::from_millis(50);

/// Checks `check` every [`POLL`] until it holds, and returns what it gave; fails the test
/// saying it waited `timeout` for `what` (and what the last check saw) if it never held.
///
/// For a condition with an event to wait on (a watch channel, a site's hit count), wait on
/// the event instead.
pub async fn eventually<C, Fut>(
    timeout: Duration,
    what: &str,
    check: C,
) -> <Fut::Output as Outcome>::Value
where
    C: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    eventually_every(timeout, POLL, what, check).await
}

/// [`eventually`], checking every `every`: for a condition that changes at its own pace (a
/// state published once a second) or a check that must not come faster (a retried request).
pub async fn eventually_every<C, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: C,
) -> <Fut::Output as Outcome>::Value
where
    C: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let started = tokio::time::Instant::now();
    loop {
        let seen = match check().await.into_result() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if started.elapsed() >= timeout {
            match seen {
                Some(seen) => panic!("waited {timeout:?} for {what}; {seen}"),
                None => panic!("waited {timeout:?} for {what}"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// What one check of a condition found: `true`, `Some(value)` or `Ok(value)` when it holds;
/// `Err(seen)` says what was seen instead, for the failure message.
pub trait Outcome {
    /// What the wait returns once the condition holds.
    type Value;
    /// What a check that failed saw.
    type Seen: Display;
    /// The value when the condition holds, else what was seen (if the check says).
    fn into_result(self) -> Result<Self::Value, Option<Self::Seen>>;
}

impl Outcome for bool {
    type Value = ();
    type Seen = Infallible;

    fn into_result(self) -> Result<(), Option<Infallible>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    type Seen = Infallible;

    fn into_result(self) -> Result<T, Option<Infallible>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    type Seen = E;

    fn into_result(self) -> Result<T, Option<E>> {
        self.map_err(Some)
    }
}
