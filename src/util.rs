//! Small helpers that several modules need and none owns: server text made safe to show,
//! locks that survive a panic elsewhere, a small random generator, and the one-year cap on
//! durations.
//!
//! This module imports nothing from the crate, so any module may use it without creating an
//! import cycle.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration any option takes: a year. Longer values (up to `Duration::MAX`) are
/// capped, so that adding one to a clock can never overflow.
pub(crate) const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `d`, or [`A_YEAR`] when it is longer.
pub(crate) fn at_most_a_year(d: Duration) -> Duration {
    d.min(A_YEAR)
}

/// A body or message shown in an error or a log line: at most 300 characters, control
/// characters escaped, so a hostile server cannot forge log lines.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 300 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// Nothing in this crate panics while holding a lock, and every guarded value stays valid at
// each step of every update; so a poisoned lock (a panic in a user's observer, say) holds
// good data, and the lock is taken anyway.

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads `l`, poisoned or not.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Writes `l`, poisoned or not.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: a small, fast, deterministic generator, good enough for jitter and for
/// exploring inputs in tests. Not for anything secret.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; the state is never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A seed that differs per process and per call.
    pub fn entropy() -> u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        );
        h.finish()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`; 0 when `n` is 0.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn below(&mut self, n: usize) -> usize {
        // The remainder is below `n`, a usize, so it fits.
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A duration in `[0, bound]` at nanosecond resolution.
    pub fn up_to(&mut self, bound: Duration) -> Duration {
        let nanos = bound.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos.saturating_add(1))
    }

    /// A number in `lo..=hi` (`lo <= hi`).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True `percent` times in a hundred.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items`, which must not be empty (tests only: it panics on an empty slice).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A fresh, empty folder for one unit test (`name` unique among them) under the temp dir.
#[cfg(test)]
pub(crate) fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kuberesolver-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_and_caps_length() {
        assert_eq!(printable(b"line\nforged"), "line\\nforged");
        assert_eq!(printable(&[b'x'; 1000]).chars().count(), 301);
        assert_eq!(printable(&[b'x'; 300]).chars().count(), 300);
        assert_eq!(printable(b"  padded \r\n"), "padded");
    }

    #[test]
    fn durations_are_capped_at_a_year() {
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        assert_eq!(A_YEAR, days(365));
        assert_eq!(at_most_a_year(Duration::MAX), A_YEAR);
        assert_eq!(at_most_a_year(days(366)), A_YEAR);
        assert_eq!(at_most_a_year(days(364)), days(364));
        let second = Duration::from_secs(1);
        assert_eq!(at_most_a_year(second), second);
    }

    #[test]
    fn a_poisoned_lock_still_gives_its_value() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _m = lock(&m2);
            let _l = write(&l2);
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 3));
    }

    #[test]
    fn the_generator_is_xorshift64_star() {
        // The first outputs for seed 42, from a separate implementation (Python) of
        // x ^= x >> 12; x ^= x << 25; x ^= x >> 27; x * 0x2545F4914F6CDD1D.
        let mut rng = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                0x9eb3_1902_fb08_80bd,
                0x7411_91fc_cc34_92f7,
                0x1d2f_a72b_7757_ad59
            ]
        );
        // An even seed and the odd one above it are the same generator.
        assert_eq!(Rng::new(6).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn bounded_draws_stay_in_their_bounds_and_cover_them() {
        let mut rng = Rng::new(42);
        let (mut below, mut range, mut nanos) = ([false; 5], [false; 5], [false; 2]);
        for _ in 0..1000 {
            below[rng.below(5)] = true;
            range[rng.range(3, 7) - 3] = true;
            let d = rng.up_to(Duration::from_nanos(1));
            nanos[usize::from(d == Duration::from_nanos(1))] = true;
            assert!(d <= Duration::from_nanos(1));
            assert_eq!(*rng.pick(&[9]), 9);
        }
        // Every value, both ends included.
        assert!(below.iter().all(|s| *s), "{below:?}");
        assert!(range.iter().all(|s| *s), "{range:?}");
        assert!(nanos.iter().all(|s| *s), "{nanos:?}");
        assert!(rng.up_to(Duration::MAX) <= Duration::MAX);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.up_to(Duration::ZERO), Duration::ZERO);
        assert_eq!(rng.range(4, 4), 4);
        let heads = (0..1000).filter(|_| rng.chance(50)).count();
        assert!((400..600).contains(&heads), "{heads}");
        assert!(!(0..100).any(|_| rng.chance(0)));
        assert!((0..100).all(|_| rng.chance(100)));
    }

    #[test]
    fn entropy_differs_between_calls() {
        assert_ne!(Rng::entropy(), Rng::entropy());
    }
}
