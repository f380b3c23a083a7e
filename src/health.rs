//! What callers learned about addresses: failures reported through a [`Picker`](crate::Picker)
//! eject an address for a jittered, doubling time; a success forgets it.
//!
//! Plain data with the clock passed in, so every rule is tested without waiting. The book
//! holds only addresses with something to remember (a failure, an ejection), never more than
//! the current snapshot has: a failure for an address outside it is ignored, and addresses that
//! leave are forgotten at each publish. Pickers read the book only when its generation moved,
//! so a resolver whose callers report nothing pays one atomic load per pick.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::{at_most_a_year, lock, Rng};

/// When a [`Picker`](crate::Picker) skips an address its callers reported failing.
///
/// After [`consecutive_failures`](Self::consecutive_failures) failures in a row (default 1,
/// right for connect failures), the address is ejected: `pick()` skips it for an ejection
/// time that starts at [`initial`](Self::initial) (default 1 s) and doubles with each
/// ejection in a row, up to [`cap`](Self::cap) (default 60 s). Each time is jittered: it is
/// drawn between 80% and 100% of that, so clients that saw one pod fail together do not come
/// back to it together. A success resets the address. When the time is up, one pick
/// probes the address; if no failure is reported within the initial time after it, the
/// address is back in full. Envoy's outlier detection and grpc-go's reconnect backoff work
/// alike (Envoy starts at 30 s; 1 s suits connect failures, which cost little to retry).
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::Ejection;
///
/// let strict = Ejection::new()
///     .initial(Duration::from_millis(500))
///     .cap(Duration::from_secs(30))
///     .consecutive_failures(3);
/// assert_eq!(strict.initial_time(), Duration::from_millis(500));
/// assert_eq!(strict.max_time(), Duration::from_secs(30));
/// assert_eq!(Ejection::default().failures_to_eject(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    initial: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection::new()
    }
}

/// The share of an ejection time that jitter may take off: 20%, as grpc-go's backoff.
const JITTER_PERCENT: u32 = 20;

impl Ejection {
    /// The defaults: 1 s, doubling up to 60 s, after one failure.
    pub fn new() -> Ejection {
        Ejection {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            failures: 1,
        }
    }

    /// The first ejection time. Default: 1 s. At most a year; zero turns ejection off.
    #[must_use]
    pub fn initial(mut self, initial: Duration) -> Ejection {
        self.initial = at_most_a_year(initial);
        self
    }

    /// The longest ejection time. Default: 60 s. Never below the initial time.
    #[must_use]
    pub fn cap(mut self, cap: Duration) -> Ejection {
        self.cap = at_most_a_year(cap);
        self
    }

    /// How many failures in a row eject an address. Default: 1. Zero counts as one.
    #[must_use]
    pub fn consecutive_failures(mut self, failures: u32) -> Ejection {
        self.failures = failures.max(1);
        self
    }

    /// The first ejection time.
    pub fn initial_time(&self) -> Duration {
        self.initial
    }

    /// The longest ejection time: the cap, or the initial time when that is longer.
    pub fn max_time(&self) -> Duration {
        self.cap.max(self.initial)
    }

    /// How many failures in a row eject an address.
    pub fn failures_to_eject(&self) -> u32 {
        self.failures
    }

    /// The time of the `ejections`-th ejection in a row (1 for the first), jittered.
    pub(crate) fn time(&self, ejections: u32, rng: &mut Rng) -> Duration {
        let doublings = ejections.saturating_sub(1).min(31);
        let nominal = self
            .initial
            .saturating_mul(1 << doublings)
            .min(self.max_time());
        nominal - rng.up_to(nominal * JITTER_PERCENT / 100)
    }
}

/// What the book knows about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    /// Failures since the last success or ejection.
    failures: u32,
    /// Ejections in a row: the next one lasts twice as long.
    ejections: u32,
    /// Ejected until then; `None` when not ejected.
    until: Option<Instant>,
    /// The ejection ended and one pick went to probe the address: ejected again until the
    /// probe's failure is reported or the initial time passes without one.
    probing: bool,
}

struct Book {
    records: HashMap<SocketAddr, Record>,
    rng: Rng,
}

/// The health of one resolver's addresses, shared by all its pickers.
pub(crate) struct Health {
    /// Bumped whenever the set of ejected addresses or their times change.
    generation: AtomicU64,
    /// A bit per address the book holds (see [`bit`]): a success for an address whose bit is
    /// clear has nothing to reset, and needs no lock, even while others are ejected.
    recorded: AtomicU64,
    book: Mutex<Book>,
}

/// The bit of `addr` in [`Health::recorded`]: one of 64, from a hash.
fn bit(addr: &SocketAddr) -> u64 {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => {
            let n = u128::from(v6);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    // splitmix64's finalizer: neighbouring addresses and ports land on unrelated bits.
    let mut x = ip ^ (u64::from(addr.port()) << 32);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    1 << ((x ^ (x >> 31)) >> 58)
}

/// What a picker's view of the book is now, from [`Health::review`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Review {
    /// The addresses ejected now, sorted, each with the end of its ejection.
    pub ejected: Vec<(SocketAddr, Instant)>,
    /// An address whose ejection ended, handed to this caller for one probing pick (it is
    /// in `ejected` too, for everyone else).
    pub probe: Option<SocketAddr>,
}

impl Health {
    pub(crate) fn new() -> Health {
        Health {
            generation: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            book: Mutex::new(Book {
                records: HashMap::new(),
                rng: Rng::new(Rng::entropy()),
            }),
        }
    }

    /// Changes whenever a picker must look again at which addresses are ejected.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self, book: &Book) {
        self.note_recorded(book);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn note_recorded(&self, book: &Book) {
        let bits = book.records.keys().fold(0, |bits, addr| bits | bit(addr));
        self.recorded.store(bits, Ordering::Relaxed);
    }

    /// A failure of `addr` at `now`, under `policy`. Ignored when `listed` says the address
    /// is not in the snapshot (so the book never outgrows it), and while the address is
    /// ejected (picks made before the ejection are still failing; they are no news).
    pub(crate) fn failure(
        &self,
        addr: SocketAddr,
        now: Instant,
        policy: &Ejection,
        listed: impl FnOnce(SocketAddr) -> bool,
    ) {
        if policy.initial.is_zero() {
            // Ejection is off: nothing to count, and no lock to take per failure.
            return;
        }
        let mut book = lock(&self.book);
        if !listed(addr) {
            return;
        }
        let book = &mut *book;
        let record = book.records.entry(addr).or_insert(Record {
            failures: 0,
            ejections: 0,
            until: None,
            probing: false,
        });
        let ejected = record.until.is_some_and(|until| until > now);
        if ejected && !record.probing {
            return;
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= policy.failures {
            record.ejections = record.ejections.saturating_add(1);
            let time = policy.time(record.ejections, &mut book.rng);
            record.until = Some(now.checked_add(time).unwrap_or(now));
            record.failures = 0;
            record.probing = false;
            self.changed(book);
        } else {
            // Not ejected (yet): pickers need not look, but a success has something to reset.
            self.note_recorded(book);
        }
    }

    /// A success of `addr`: whatever the book held about it is forgotten.
    pub(crate) fn success(&self, addr: SocketAddr) {
        if self.recorded.load(Ordering::Relaxed) & bit(&addr) == 0 {
            return;
        }
        let mut book = lock(&self.book);
        if book.records.remove(&addr).is_some() {
            self.changed(&book);
        }
    }

    /// Forget every address that is not in `listed` (sorted): they left the Service.
    ///
    /// Always under the lock, even when nothing seems recorded: a failure that checked the
    /// old snapshot may be about to record, and must then be forgotten here, not later.
    pub(crate) fn forget_absent(&self, listed: &[SocketAddr]) {
        let mut book = lock(&self.book);
        if book.records.is_empty() {
            return;
        }
        let before = book.records.len();
        book.records
            .retain(|addr, _| listed.binary_search(addr).is_ok());
        if book.records.len() != before {
            self.changed(&book);
        }
    }

    /// The ejected addresses at `now`. An ejection that ended with its probe unanswered
    /// ends for good; one that ended without a probe is handed to this caller for one
    /// (the first such address that `claimable` accepts), ejected again for the initial
    /// time of `policy` meanwhile, so that one pick, not every thread's, tries it. An
    /// ended ejection that is not claimable here is not ejected for this caller.
    pub(crate) fn review(
        &self,
        now: Instant,
        policy: &Ejection,
        claimable: impl Fn(SocketAddr) -> bool,
    ) -> Review {
        let mut review = Review::default();
        if self.recorded.load(Ordering::Relaxed) == 0 {
            return review;
        }
        let mut book = lock(&self.book);
        let before = book.records.len();
        let mut changed = false;
        book.records.retain(|addr, record| {
            let Some(until) = record.until else {
                return true;
            };
            if until > now {
                review.ejected.push((*addr, until));
                return true;
            }
            if record.probing {
                // The probe's time passed without an ejecting failure: back in full, and
                // remembered only if it failed at all.
                changed = true;
                record.until = None;
                record.probing = false;
                return record.failures > 0;
            }
            if review.probe.is_none() && claimable(*addr) {
                let until = now.checked_add(policy.initial).unwrap_or(now);
                record.until = Some(until);
                record.probing = true;
                review.probe = Some(*addr);
                review.ejected.push((*addr, until));
                changed = true;
            }
            true
        });
        if changed || book.records.len() != before {
            self.changed(&book);
        }
        review.ejected.sort_unstable();
        review
    }

    /// How many addresses the book holds (tests: it stays bounded).
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> usize {
        lock(&self.book).records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    const LISTED: fn(SocketAddr) -> bool = |_| true;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn ejected(health: &Health, now: Instant) -> Vec<SocketAddr> {
        health
            .review(now, &Ejection::new(), |_| false)
            .ejected
            .iter()
            .map(|(a, _)| *a)
            .collect()
    }

    #[test]
    fn the_defaults_are_one_second_doubling_to_a_minute_after_one_failure() {
        let policy = Ejection::default();
        assert_eq!(policy.initial_time(), secs(1.0));
        assert_eq!(policy.max_time(), secs(60.0));
        assert_eq!(policy.failures_to_eject(), 1);
        assert_eq!(
            Ejection::new().consecutive_failures(0).failures_to_eject(),
            1
        );
        let short_cap = Ejection::new().initial(secs(5.0)).cap(secs(2.0));
        assert_eq!(short_cap.max_time(), secs(5.0));
        assert_eq!(
            Ejection::new().initial(Duration::MAX).initial_time(),
            crate::util::A_YEAR
        );
        assert_eq!(
            Ejection::new().cap(Duration::MAX).max_time(),
            crate::util::A_YEAR
        );
    }

    #[test]
    fn ejection_times_double_up_to_the_cap_and_are_jittered_down_by_at_most_a_fifth() {
        let policy = Ejection::new();
        let mut rng = Rng::new(7);
        for (ejections, nominal) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0)] {
            for _ in 0..1000 {
                let t = policy.time(ejections, &mut rng);
                assert!(
                    t <= secs(nominal) && t >= secs(nominal * 0.8),
                    "ejection {ejections}: {t:?}"
                );
            }
        }
        // Far past the cap, no overflow.
        assert!(policy.time(u32::MAX, &mut rng) <= secs(60.0));
        assert_eq!(
            Ejection::new().initial(Duration::ZERO).time(3, &mut rng),
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_spreads_ejection_times_evenly_over_their_range() {
        // 10,000 first ejections in ten bins of 20 ms between 0.8 s and 1 s: each bin gets
        // about a tenth, so clients that saw a pod fail together come back spread out.
        let policy = Ejection::new();
        let mut rng = Rng::new(42);
        let mut bins = [0u32; 10];
        let mut sum = Duration::ZERO;
        for _ in 0..10_000 {
            let t = policy.time(1, &mut rng);
            sum += t;
            let bin = ((t.as_secs_f64() - 0.8) / 0.02) as usize;
            bins[bin.min(9)] += 1;
        }
        assert!(bins.iter().all(|n| (850..1150).contains(n)), "{bins:?}");
        let mean = sum.as_secs_f64() / 10_000.0;
        assert!((0.89..0.91).contains(&mean), "{mean}");
    }

    #[test]
    fn a_failure_ejects_until_its_time_is_up_and_each_one_in_a_row_doubles_it() {
        let health = Health::new();
        let policy = Ejection::new();
        let t0 = Instant::now();
        let g0 = health.generation();
        health.failure(addr(1), t0, &policy, LISTED);
        assert!(health.generation() > g0);
        assert_eq!(ejected(&health, t0), [addr(1)]);
        assert_eq!(ejected(&health, t0 + secs(0.79)), [addr(1)]);
        let first = health.review(t0, &policy, |_| false).ejected[0].1 - t0;
        assert!(first >= secs(0.8) && first <= secs(1.0), "{first:?}");
        // A failure reported while ejected is no news: it does not lengthen the ejection.
        health.failure(addr(1), t0 + secs(0.5), &policy, LISTED);
        assert_eq!(
            health.review(t0, &policy, |_| false).ejected[0].1 - t0,
            first
        );
        // The time is up: this caller probes; the probe fails: the next ejection is double.
        let t1 = t0 + secs(1.0);
        let review = health.review(t1, &policy, |_| true);
        assert_eq!(review.probe, Some(addr(1)));
        health.failure(addr(1), t1, &policy, LISTED);
        let second = health.review(t1, &policy, |_| false).ejected[0].1 - t1;
        assert!(second >= secs(1.6) && second <= secs(2.0), "{second:?}");
    }

    #[test]
    fn a_success_resets_the_address() {
        let health = Health::new();
        let policy = Ejection::new();
        let t0 = Instant::now();
        health.failure(addr(1), t0, &policy, LISTED);
        health.failure(addr(2), t0, &policy, LISTED);
        let g = health.generation();
        health.success(addr(1));
        assert!(health.generation() > g);
        assert_eq!(ejected(&health, t0), [addr(2)]);
        // After the reset, the next ejection is the first again, not the second.
        health.failure(addr(1), t0, &policy, LISTED);
        let again = health.review(t0, &policy, |_| false).ejected[0].1 - t0;
        assert!(again <= secs(1.0), "{again:?}");
        // A success for an address the book does not hold changes nothing.
        let g = health.generation();
        health.success(addr(9));
        assert_eq!(health.generation(), g);
    }

    #[test]
    fn consecutive_failures_eject_only_at_the_threshold_and_count_again_after_an_ejection() {
        let health = Health::new();
        let policy = Ejection::new().consecutive_failures(3);
        let t0 = Instant::now();
        health.failure(addr(1), t0, &policy, LISTED);
        health.failure(addr(1), t0, &policy, LISTED);
        assert!(ejected(&health, t0).is_empty());
        // A success in between starts the count over.
        health.success(addr(1));
        health.failure(addr(1), t0, &policy, LISTED);
        health.failure(addr(1), t0, &policy, LISTED);
        assert!(ejected(&health, t0).is_empty());
        health.failure(addr(1), t0, &policy, LISTED);
        assert_eq!(ejected(&health, t0), [addr(1)]);
        // After the ejection (unprobed here), three failures again, for double the time.
        let t1 = t0 + secs(1.0);
        assert!(
            ejected(&health, t1).is_empty(),
            "not claimable: not ejected"
        );
        health.failure(addr(1), t1, &policy, LISTED);
        health.failure(addr(1), t1, &policy, LISTED);
        assert!(ejected(&health, t1).is_empty());
        health.failure(addr(1), t1, &policy, LISTED);
        let second = health.review(t1, &policy, |_| false).ejected[0].1 - t1;
        assert!(second >= secs(1.6), "{second:?}");
    }

    #[test]
    fn the_first_failure_below_the_threshold_is_news_for_report_success() {
        let health = Health::new();
        let policy = Ejection::new().consecutive_failures(2);
        let t0 = Instant::now();
        health.failure(addr(1), t0, &policy, LISTED);
        assert_eq!(health.recorded(), 1);
        health.success(addr(1));
        assert_eq!(health.recorded(), 0);
    }

    #[test]
    fn only_one_caller_probes_an_ended_ejection_and_no_news_within_the_probe_time_restores_it() {
        let health = Health::new();
        let policy = Ejection::new();
        let t0 = Instant::now();
        health.failure(addr(1), t0, &policy, LISTED);
        let t1 = t0 + secs(1.0);
        let first = health.review(t1, &policy, |_| true);
        assert_eq!(first.probe, Some(addr(1)));
        assert_eq!(first.ejected.len(), 1, "ejected for every other caller");
        let second = health.review(t1, &policy, |_| true);
        assert_eq!(second.probe, None);
        assert_eq!(second.ejected, first.ejected);
        // The probe's time passes without a failure: not ejected, and the book forgets it.
        let g = health.generation();
        let later = health.review(t1 + secs(1.0), &policy, |_| true);
        assert_eq!(later, Review::default());
        assert!(health.generation() > g);
        assert_eq!(health.recorded(), 0);
    }

    #[test]
    fn a_caller_probes_only_what_it_may_pick_and_one_address_at_a_time() {
        let health = Health::new();
        let policy = Ejection::new();
        let t0 = Instant::now();
        for last in [1, 2, 3] {
            health.failure(addr(last), t0, &policy, LISTED);
        }
        let t1 = t0 + secs(1.0);
        let review = health.review(t1, &policy, |a| a != addr(1));
        let probe = review.probe.expect("one probe");
        assert_ne!(probe, addr(1));
        // Only the probe is ejected for this caller; the others' ejections ended.
        assert_eq!(
            review.ejected.iter().map(|e| e.0).collect::<Vec<_>>(),
            [probe]
        );
    }

    #[test]
    fn failures_of_addresses_outside_the_snapshot_are_ignored_and_leavers_are_forgotten() {
        let health = Health::new();
        let policy = Ejection::new();
        let t0 = Instant::now();
        health.failure(addr(9), t0, &policy, |_| false);
        assert_eq!(health.recorded(), 0);
        let g = health.generation();
        health.forget_absent(&[addr(1)]);
        assert_eq!(health.generation(), g, "nothing to forget");
        for last in [1, 2, 3] {
            health.failure(addr(last), t0, &policy, LISTED);
        }
        let g = health.generation();
        health.forget_absent(&[addr(1), addr(3)]);
        assert!(health.generation() > g);
        assert_eq!(ejected(&health, t0), [addr(1), addr(3)]);
        let g = health.generation();
        health.forget_absent(&[addr(1), addr(3)]);
        assert_eq!(health.generation(), g);
        health.forget_absent(&[]);
        assert_eq!(health.recorded(), 0);
    }

    #[test]
    fn addresses_spread_over_the_bits_of_the_lock_free_success_check() {
        let ports = (8000..8064).map(|p| SocketAddr::from(([10, 0, 0, 1], p)));
        let ips = (0..64).map(|i| SocketAddr::from(([10, 0, 1, i], 80)));
        let v6 = (0..64u16).map(|i| SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 1, i], 80)));
        for (what, addrs) in [
            ("ports", ports.collect::<Vec<_>>()),
            ("IPv4", ips.collect()),
            ("IPv6", v6.collect()),
        ] {
            let bits = addrs.iter().fold(0u64, |b, a| b | bit(a));
            assert!(bits.count_ones() >= 32, "{what}: {bits:064b}");
            assert!(addrs.iter().all(|a| bit(a).count_ones() == 1));
        }
        // Only the recorded addresses' bits are set.
        let health = Health::new();
        health.failure(addr(1), Instant::now(), &Ejection::new(), LISTED);
        assert_eq!(health.recorded.load(Ordering::Relaxed), bit(&addr(1)));
    }

    #[test]
    fn a_zero_initial_time_turns_ejection_off() {
        let health = Health::new();
        let policy = Ejection::new().initial(Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            health.failure(addr(1), t0, &policy, LISTED);
        }
        assert!(ejected(&health, t0).is_empty());
        assert_eq!(
            health.recorded(),
            0,
            "nothing counted: no book to keep or overflow"
        );
    }
}
