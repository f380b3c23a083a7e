//! The retry policy: capped exponential backoff with jitter, as a value the state machine owns.
//!
//! Delay `n` (counting from 0) is drawn uniformly from `[floor, min(cap, initial × 2ⁿ)]`:
//! full jitter above a small floor, so a thousand clients that lost the same API server spread
//! their retries over the whole window, and none of them retries in a hot loop. A server's
//! `Retry-After` is a lower bound (itself capped), with up to a second of jitter on top.

use std::time::Duration;

use crate::util::Rng;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BackoffPolicy {
    /// The upper bound of the first delay.
    pub initial: Duration,
    /// No delay is shorter (except when the policy is all zeros, for tests).
    pub floor: Duration,
    /// No delay is longer, Retry-After included.
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            floor: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

/// The backoff state: how many failures in a row, and a random source.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff {
            policy,
            failures: 0,
            rng: Rng::new(seed),
        }
    }

    /// Failures since the last reset.
    #[cfg(test)]
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt after one more failure.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let p = self.policy;
        let exp = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let ceiling = p
            .initial
            .checked_mul(1u32 << exp)
            .unwrap_or(p.cap)
            .min(p.cap)
            .max(p.floor);
        let jittered = p.floor + self.rng.up_to(ceiling - p.floor);
        match retry_after {
            Some(wait) => {
                let spread = self.rng.up_to(Duration::from_secs(1).min(p.cap));
                jittered
                    .max(wait.min(p.cap).saturating_add(spread))
                    .min(p.cap)
            }
            None => jittered,
        }
    }

    /// A healthy period ended the run of failures: start again from the first delay.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn first_delay_is_between_half_a_second_and_a_second() {
        for seed in 0..1000 {
            let d = Backoff::new(BackoffPolicy::default(), seed).next_delay(None);
            assert!(d >= secs(0.5) && d <= secs(1.0), "{d:?}");
        }
    }

    #[test]
    fn delays_grow_then_stay_under_the_cap_for_every_seed() {
        for seed in 0..500 {
            let mut b = Backoff::new(BackoffPolicy::default(), seed);
            for n in 0..40u32 {
                let d = b.next_delay(None);
                let ceiling = secs(2f64.powi(n.min(10) as i32))
                    .min(secs(30.0))
                    .max(secs(0.5));
                assert!(d >= secs(0.5), "attempt {n}: {d:?} under the floor");
                assert!(d <= ceiling, "attempt {n}: {d:?} over {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_delays_over_the_window() {
        let mut b = Backoff::new(BackoffPolicy::default(), 7);
        for _ in 0..6 {
            b.next_delay(None);
        }
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay(None)).collect();
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(min < secs(8.0) && max > secs(22.0), "{min:?}..{max:?}");
    }

    /// `n` clients that lost the same server, each seeded the way a watcher seeds its
    /// backoff: from a stream of its own random numbers.
    fn first_delays_of(n: usize, seeds: &mut Rng) -> Vec<Duration> {
        (0..n)
            .map(|_| Backoff::new(BackoffPolicy::default(), seeds.next_u64()).next_delay(None))
            .collect()
    }

    #[test]
    fn the_first_delays_of_many_clients_spread_evenly_over_the_window() {
        // Ten 50 ms buckets over [0.5 s, 1 s]: each holds about a tenth of 2,000 clients.
        let delays = first_delays_of(2000, &mut Rng::new(20_251_125));
        let mut buckets = [0usize; 10];
        for d in &delays {
            assert!(*d >= secs(0.5) && *d <= secs(1.0), "{d:?}");
            let bucket = ((d.as_secs_f64() - 0.5) / 0.05) as usize;
            buckets[bucket.min(9)] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (150..=250).contains(&n)),
            "not spread evenly: {buckets:?}"
        );
    }

    #[test]
    fn every_watcher_seeds_its_jitter_differently() {
        // A watcher's backoff seed comes from `Rng::entropy()`: watchers started in the same
        // instant must not jitter in step.
        let seeds: std::collections::HashSet<u64> = (0..1000)
            .map(|_| Rng::new(Rng::entropy()).next_u64())
            .collect();
        assert_eq!(seeds.len(), 1000);
        let delays: std::collections::HashSet<Duration> = seeds
            .iter()
            .map(|&seed| Backoff::new(BackoffPolicy::default(), seed).next_delay(None))
            .collect();
        assert!(delays.len() > 990, "{} distinct first delays", delays.len());
    }

    #[test]
    fn reset_starts_again_from_the_first_delay() {
        let mut b = Backoff::new(BackoffPolicy::default(), 3);
        for _ in 0..10 {
            b.next_delay(None);
        }
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay(None) <= secs(1.0));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        for seed in 0..200 {
            let mut b = Backoff::new(BackoffPolicy::default(), seed);
            let d = b.next_delay(Some(secs(5.0)));
            assert!(d >= secs(5.0) && d <= secs(6.0), "{d:?}");
            let d = b.next_delay(Some(secs(3600.0)));
            assert!(d <= secs(30.0) && d >= secs(29.0), "{d:?}");
        }
    }
}
