//! Slowing down whoever keeps guessing the admin token: each address's refused changes are
//! counted, and past a few in a row every further refusal to that address is answered late,
//! later each time (up to [`MAX_DELAY`]), and after the refusals before it: guesses sent in
//! parallel wait in line, so an address gets one answer per delay however many connections
//! it opens. A right token, or [`FORGET_AFTER`] without a
//! refusal, clears the count. Addresses are counted as the RPC listener counts them (IPv6 by
//! its /64), and at most [`MAX_ADDRESSES`] are remembered, the stalest forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals answered at once before the delays start (typos happen).
const FREE_REFUSALS: u32 = 3;

/// The first delay; each refusal after it doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// The longest a refusal is held back.
pub const MAX_DELAY: Duration = Duration::from_secs(8);

/// A count is forgotten after this long without a refusal.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The most addresses whose refusals are remembered.
const MAX_ADDRESSES: usize = 4_096;

/// One address's refusals in a row.
#[derive(Debug)]
struct Streak {
    count: u32,
    last: Instant,
    /// When the last refusal to it is answered.
    answered_at: Instant,
}

/// Refused changes per address.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<HashMap<IpAddr, Streak>>,
}

impl Refusals {
    /// Counts a refusal to `ip` at `now`, and says how long to hold its answer back.
    pub fn refused(&self, ip: IpAddr, now: Instant) -> Duration {
        let ip = common::listen::grouped(ip, 64);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_ADDRESSES && !counts.contains_key(&ip) {
            counts.retain(|_, streak| now.duration_since(streak.last) < FORGET_AFTER);
            if counts.len() >= MAX_ADDRESSES
                && let Some(stalest) = counts.iter().min_by_key(|(_, streak)| streak.last)
            {
                let stalest = *stalest.0;
                counts.remove(&stalest);
            }
        }
        let streak = counts.entry(ip).or_insert(Streak {
            count: 0,
            last: now,
            answered_at: now,
        });
        if now.duration_since(streak.last) >= FORGET_AFTER {
            streak.count = 0;
        }
        streak.count = streak.count.saturating_add(1);
        streak.last = now;
        let delay = delay_after(streak.count);
        if delay.is_zero() {
            return Duration::ZERO;
        }
        streak.answered_at = streak.answered_at.max(now) + delay;
        streak.answered_at.duration_since(now)
    }

    /// Forgets `ip`'s refusals: it gave the right token.
    pub fn accepted(&self, ip: IpAddr) {
        let ip = common::listen::grouped(ip, 64);
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

/// The delay of an address's `n`th refusal in a row.
fn delay_after(n: u32) -> Duration {
    if n <= FREE_REFUSALS {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_REFUSALS - 1).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_refusals_from_one_address_are_answered_later_each_time() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let attacker: IpAddr = "127.0.0.2".parse().expect("ip");
        // One guess after another, each sent when the last was answered.
        let mut at = start;
        let mut delays = Vec::new();
        for _ in 0..10 {
            let delay = refusals.refused(attacker, at);
            delays.push(delay);
            at += delay + Duration::from_millis(1);
        }
        assert_eq!(&delays[..3], &[Duration::ZERO; 3], "a few typos are free");
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY, "bounded");
        let start = at;
        // Another address is not slowed by the attacker.
        let other: IpAddr = "127.0.0.3".parse().expect("ip");
        assert_eq!(refusals.refused(other, start), Duration::ZERO);
        // Another address of the attacker's IPv6 /64 is the same attacker.
        for i in 0..3 {
            refusals.refused(format!("2001:db8::{i}").parse().expect("ip"), start);
        }
        assert_eq!(
            refusals.refused("2001:db8::ff".parse().expect("ip"), start),
            FIRST_DELAY
        );
        // A pause long enough forgets the count; so does the right token.
        let later = start + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(refusals.refused(attacker, later), Duration::ZERO);
        for _ in 0..5 {
            refusals.refused(attacker, later);
        }
        refusals.accepted(attacker);
        assert_eq!(refusals.refused(attacker, later), Duration::ZERO);
    }

    #[test]
    fn guesses_sent_in_parallel_wait_in_line() {
        let refusals = Refusals::default();
        let now = Instant::now();
        let attacker: IpAddr = "127.0.0.2".parse().expect("ip");
        let delays: Vec<Duration> = (0..6).map(|_| refusals.refused(attacker, now)).collect();
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY + FIRST_DELAY * 2);
        assert_eq!(delays[5], FIRST_DELAY * 7, "each after the one before");
    }

    #[test]
    fn the_remembered_addresses_are_bounded() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            refusals.refused(IpAddr::from(i.to_be_bytes()), now);
        }
        let held = refusals.counts.lock().expect("lock").len();
        assert!(held <= MAX_ADDRESSES, "{held}");
    }
}
