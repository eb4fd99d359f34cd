//! Time arithmetic that cannot overflow, for durations that come from flags or peers.

use std::time::Duration;
use tokio::time::Instant;

/// The furthest ahead any timer is set: a later instant is cut to this far from now.
pub const FAR_AHEAD: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + wait`, cut to [`FAR_AHEAD`] instead of overflowing (`Instant + Duration` panics on
/// overflow, and a Retry-After or a flag can ask for centuries).
pub fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(FAR_AHEAD)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_are_cut_not_a_panic() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + FAR_AHEAD);
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
