//! What one page may cost: bytes of items and links in its result, and time to make them.
//!
//! Parsers run on a blocking thread that no one can cancel, so they check the deadline
//! themselves, in their loops, and give up once the engine has stopped waiting.

use std::cell::Cell;
use std::time::Instant;

/// Calls to [`Budget::check_time`] between two readings of the clock.
const CLOCK_EVERY: u32 = 64;

/// A parse that outlived its deadline and was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("parse abandoned at its deadline")]
pub struct Overtime;

/// The byte budget and deadline of one page's parse.
#[derive(Debug)]
pub struct Budget {
    max_bytes: usize,
    used: Cell<usize>,
    deadline: Option<Instant>,
    calls: Cell<u32>,
}

impl Budget {
    /// A budget of `max_bytes` for the result, to be spent before `deadline`.
    pub fn new(max_bytes: usize, deadline: Option<Instant>) -> Self {
        Budget {
            max_bytes,
            used: Cell::new(0),
            deadline,
            calls: Cell::new(0),
        }
    }

    /// No bound at all, for benchmarks and tests of parsing alone.
    pub fn unlimited() -> Self {
        Budget::new(usize::MAX, None)
    }

    /// The whole budget in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Spends `bytes` if they fit in what is left; returns whether they did.
    pub fn take(&self, bytes: usize) -> bool {
        let used = self.used.get();
        match used.checked_add(bytes) {
            Some(total) if total <= self.max_bytes => {
                self.used.set(total);
                true
            }
            _ => false,
        }
    }

    /// Fails once the deadline has passed; cheap enough to call in every loop turn.
    pub fn check_time(&self) -> Result<(), Overtime> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let calls = self.calls.get().wrapping_add(1);
        self.calls.set(calls);
        if calls.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
            return Err(Overtime);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_spends_only_what_fits() {
        let b = Budget::new(10, None);
        assert!(b.take(6));
        assert!(!b.take(5), "over the budget: refused, nothing spent");
        assert!(b.take(4));
        assert!(!b.take(usize::MAX));
    }

    #[test]
    fn a_passed_deadline_is_noticed_within_a_few_checks() {
        let b = Budget::new(10, Some(Instant::now()));
        let first_failure = (0..1_000).position(|_| b.check_time().is_err());
        assert!(first_failure.is_some_and(|n| n < CLOCK_EVERY as usize));
        assert!(Budget::unlimited().check_time().is_ok());
    }
}
