//! The retry policy: capped exponential backoff with jitter. [`Backoff`] is the public
//! setting; [`Delays`] is its running state, a value the state machine owns.
//!
//! Delay `n` (counting from 0) is drawn uniformly from `[floor, min(cap, initial × 2ⁿ)]`:
//! full jitter above a small floor, so a thousand clients that lost the same API server spread
//! their retries over the whole window, and none of them retries in a hot loop. A server's
//! `Retry-After` is a lower bound (itself capped), with up to a second of jitter on top.

use std::time::Duration;

use crate::util::{at_most_a_year, Rng};

/// How long a resolver waits before it retries after a failure: capped exponential backoff
/// with jitter. Set it with [`Builder::backoff`](crate::Builder::backoff).
///
/// Delay `n` (counting from 0) is drawn uniformly from `[floor, min(cap, initial × 2ⁿ)]`, so
/// the first delay is in `[floor, initial]` and each later window's upper end doubles, never
/// past `cap`. A server's `Retry-After` is waited out too, up to `cap`. The count starts again
/// once a watch is healthy. Defaults: `initial` 1 s, `floor` 500 ms, `cap` 30 s.
///
/// Each bound has its own setter, so none can be passed for another. Durations over a year
/// count as a year; a `cap` below `floor` is raised to `floor`, and `initial` is kept within
/// `[floor, cap]`, whatever the order of the setters.
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::{Backoff, Resolver};
///
/// // Retry sooner, and never wait more than 10 s.
/// let backoff = Backoff::new()
///     .initial(Duration::from_millis(500))
///     .floor(Duration::from_millis(100))
///     .cap(Duration::from_secs(10));
/// let builder = Resolver::builder("kubernetes:///echo.prod:grpc").backoff(backoff);
/// assert_eq!(Backoff::new(), Backoff::default());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a Backoff does nothing until it is given to Builder::backoff"]
pub struct Backoff {
    /// The upper bound of the first delay.
    pub(crate) initial: Duration,
    /// No delay is shorter (except when all three are zero, for tests).
    pub(crate) floor: Duration,
    /// No delay is longer, Retry-After included.
    pub(crate) cap: Duration,
}

impl Default for Backoff {
    /// `initial` 1 s, `floor` 500 ms, `cap` 30 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            floor: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The defaults: `initial` 1 s, `floor` 500 ms, `cap` 30 s.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// The upper end of the first delay's window; each later window's doubles. Default: 1 s.
    pub fn initial(mut self, initial: Duration) -> Backoff {
        self.initial = at_most_a_year(initial);
        self
    }

    /// The shortest delay: no retry comes sooner. Default: 500 ms.
    pub fn floor(mut self, floor: Duration) -> Backoff {
        self.floor = at_most_a_year(floor);
        self
    }

    /// The longest delay, a server's `Retry-After` included. Default: 30 s.
    pub fn cap(mut self, cap: Duration) -> Backoff {
        self.cap = at_most_a_year(cap);
        self
    }

    /// The bounds made consistent: `cap` at least `floor`, `initial` within `[floor, cap]`.
    pub(crate) fn normalized(self) -> Backoff {
        let cap = self.cap.max(self.floor);
        Backoff {
            initial: self.initial.max(self.floor).min(cap),
            floor: self.floor,
            cap,
        }
    }
}

/// The running state of a [`Backoff`]: how many failures in a row, and a random source.
#[derive(Debug)]
pub(crate) struct Delays {
    policy: Backoff,
    failures: u32,
    rng: Rng,
}

impl Delays {
    pub(crate) fn new(policy: Backoff, seed: u64) -> Delays {
        Delays {
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
    use crate::util::A_YEAR;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn first_delay_is_between_half_a_second_and_a_second() {
        for seed in 0..1000 {
            let d = Delays::new(Backoff::default(), seed).next_delay(None);
            assert!(d >= secs(0.5) && d <= secs(1.0), "{d:?}");
        }
    }

    #[test]
    fn delays_grow_then_stay_under_the_cap_for_every_seed() {
        for seed in 0..500 {
            let mut b = Delays::new(Backoff::default(), seed);
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
        let mut b = Delays::new(Backoff::default(), 7);
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
            .map(|_| Delays::new(Backoff::default(), seeds.next_u64()).next_delay(None))
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
            .map(|&seed| Delays::new(Backoff::default(), seed).next_delay(None))
            .collect();
        assert!(delays.len() > 990, "{} distinct first delays", delays.len());
    }

    #[test]
    fn reset_starts_again_from_the_first_delay() {
        let mut b = Delays::new(Backoff::default(), 3);
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
            let mut b = Delays::new(Backoff::default(), seed);
            let d = b.next_delay(Some(secs(5.0)));
            assert!(d >= secs(5.0) && d <= secs(6.0), "{d:?}");
            let d = b.next_delay(Some(secs(3600.0)));
            assert!(d <= secs(30.0) && d >= secs(29.0), "{d:?}");
        }
    }

    #[test]
    fn bounds_are_made_consistent_whatever_the_order_of_the_setters() {
        let ms = Duration::from_millis;
        let bounds = |b: Backoff| {
            let b = b.normalized();
            (b.initial, b.floor, b.cap)
        };
        assert_eq!(bounds(Backoff::new()), (secs(1.0), ms(500), secs(30.0)));
        let low_cap = Backoff::new().cap(ms(100)).floor(ms(300)).initial(ms(50));
        assert_eq!(bounds(low_cap), (ms(300), ms(300), ms(300)));
        let high_initial = Backoff::new().initial(ms(900)).cap(ms(400));
        assert_eq!(bounds(high_initial), (ms(500), ms(500), ms(500)));
        let wide = Backoff::new().floor(ms(10)).initial(ms(20)).cap(ms(30));
        assert_eq!(bounds(wide), (ms(20), ms(10), ms(30)));
        let huge = Backoff::new()
            .initial(Duration::MAX)
            .floor(Duration::MAX)
            .cap(Duration::MAX);
        assert_eq!(bounds(huge), (A_YEAR, A_YEAR, A_YEAR));
    }
}
