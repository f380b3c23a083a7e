//! Health of a resolver: whether it resolved, how fresh it is, what went wrong, and counters.

use std::time::{Duration, SystemTime};

use crate::{Error, Source};

/// Counters since the resolver started. Each only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// LIST requests that succeeded.
    pub lists: u64,
    /// WATCH requests that opened a stream.
    pub watches: u64,
    /// ADDED, MODIFIED and DELETED events applied.
    pub events: u64,
    /// BOOKMARK events received.
    pub bookmarks: u64,
    /// Requests made after the first list: every re-watch and every relist.
    pub reconnects: u64,
    /// Lists made because the resourceVersion expired (410) or the data was malformed.
    pub relists: u64,
    /// Failures of any kind (each one also sets [`Status::last_error`]).
    pub errors: u64,
    /// Snapshots published.
    pub publishes: u64,
}

/// A resolver's health at one moment, from [`Resolver::status`](crate::Resolver::status).
///
/// ```
/// # fn demo(resolver: &kuberesolver::Resolver) {
/// let status = resolver.status();
/// if let Some(error) = &status.last_error {
///     eprintln!("resolver trouble: {error}");
/// }
/// println!("{} endpoints, {} reconnects", status.endpoints, status.counters.reconnects);
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Status {
    /// A first snapshot has been published.
    pub resolved: bool,
    /// The version of the current snapshot (0 before the first).
    pub version: u64,
    /// The number of addresses in the current snapshot.
    pub endpoints: usize,
    /// The API in use (`None` until the first request decided it).
    pub source: Option<Source>,
    /// When the current snapshot was published.
    pub last_update: Option<SystemTime>,
    /// When the API last confirmed the state: a list, an event or a bookmark. The time since
    /// then is how stale the addresses may be.
    pub last_sync: Option<SystemTime>,
    /// The last failure, kept after recovery; compare [`last_error_at`](Self::last_error_at)
    /// with [`last_sync`](Self::last_sync).
    pub last_error: Option<Error>,
    /// When the last failure happened.
    pub last_error_at: Option<SystemTime>,
    /// A watch stream is open now.
    pub watching: bool,
    /// The watcher thread has stopped (the resolver is being dropped).
    pub stopped: bool,
    /// Counters since start.
    pub counters: Counters,
}

impl Status {
    pub(crate) fn new() -> Status {
        Status {
            resolved: false,
            version: 0,
            endpoints: 0,
            source: None,
            last_update: None,
            last_sync: None,
            last_error: None,
            last_error_at: None,
            watching: false,
            stopped: false,
            counters: Counters::default(),
        }
    }

    /// Time since the API last confirmed the state, or `None` before the first sync.
    pub fn staleness(&self) -> Option<Duration> {
        self.last_sync
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }

    /// Resolved, watching, and no failure since the last sync.
    pub fn is_healthy(&self) -> bool {
        let error_after_sync = match (self.last_error_at, self.last_sync) {
            (Some(e), Some(s)) => e > s,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.resolved && self.watching && !error_after_sync
    }
}
