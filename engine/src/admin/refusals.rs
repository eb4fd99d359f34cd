//! Slowing down whoever keeps guessing the admin token: each address's refused changes are
//! counted, and past a few in a row every further refusal to that address is answered late,
//! later each time (up to [`MAX_DELAY`]). A right token, or [`FORGET_AFTER`] without a
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

/// Refused changes per address.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Refusals {
    /// Counts a refusal to `ip` at `now`, and says how long to hold its answer back.
    pub fn refused(&self, ip: IpAddr, now: Instant) -> Duration {
        let ip = common::listen::grouped(ip, 64);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_ADDRESSES && !counts.contains_key(&ip) {
            counts.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if counts.len() >= MAX_ADDRESSES
                && let Some(stalest) = counts.iter().min_by_key(|(_, (_, last))| *last)
            {
                let stalest = *stalest.0;
                counts.remove(&stalest);
            }
        }
        let entry = counts.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_after(entry.0)
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
        let delays: Vec<Duration> = (0..10)
            .map(|i| refusals.refused(attacker, start + Duration::from_millis(i)))
            .collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3], "a few typos are free");
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY, "bounded");
        // Another address is not slowed by the attacker.
        let other: IpAddr = "127.0.0.3".parse().expect("ip");
        assert_eq!(refusals.refused(other, start), Duration::ZERO);
        // Another address of the attacker's IPv6 /64 is the same attacker.
        for i in 0..4 {
            refusals.refused(format!("2001:db8::{i}").parse().expect("ip"), start);
        }
        assert_eq!(
            refusals.refused("2001:db8::ff".parse().expect("ip"), start),
            FIRST_DELAY * 2
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
