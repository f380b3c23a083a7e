//! Health of a resolver: whether it resolved, how fresh it is, what went wrong, and counters.

use std::time::{Duration, SystemTime};

use crate::{Error, Source};

/// Counters since the resolver started, in [`Status::counters`]. Each only grows.
///
/// All start at 0 ([`Default`]); compare two readings to see what happened in between.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// resolver.wait_ready(Duration::from_secs(5))?;
/// let counters = resolver.status().counters;
/// assert_eq!((counters.lists, counters.publishes, counters.errors), (1, 1, 0));
/// assert_eq!(counters.relists, 0);
/// println!("{} watches, {} events", counters.watches, counters.events);
/// println!("{} bookmarks, {} reconnects", counters.bookmarks, counters.reconnects);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// Lists after the first attempt: after a 410 (the resourceVersion expired), after
    /// malformed data or an `ERROR` event, each retry of a failed list, and each probe of
    /// EndpointSlices by [`Source::Auto`] on its Endpoints fallback. (Auto's list of
    /// Endpoints right after a refused slice list is part of the same attempt.)
    pub relists: u64,
    /// Failures of any kind (each one also sets [`Status::last_error`]).
    pub errors: u64,
    /// Snapshots published.
    pub publishes: u64,
}

/// A resolver's health at one moment, from [`Resolver::status`](crate::Resolver::status).
///
/// A copy: it does not change after it is taken. Errors never reach a snapshot; they show
/// here, in [`last_error`](Self::last_error), while the last good addresses stay in place.
///
/// ```
/// # use kuberesolver::Source;
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver};
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// resolver.wait_ready(Duration::from_secs(5))?;
/// let status = resolver.status();
/// assert!(status.resolved);
/// assert_eq!((status.version, status.endpoints), (1, 1));
/// assert_eq!(status.source, Some(Source::Endpoints));
/// assert!(status.last_update.is_some() && status.last_sync.is_some());
/// if let Some(error) = &status.last_error {
///     eprintln!("resolver trouble at {:?}: {error}", status.last_error_at);
/// }
/// assert!(!status.stopped);
/// println!("watching: {}, {} reconnects", status.watching, status.counters.reconnects);
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
    /// The API in use (`None` until the first successful list decided it).
    pub source: Option<Source>,
    /// When the current snapshot was published.
    pub last_update: Option<SystemTime>,
    /// When the API last confirmed the state: a list, an event or a bookmark. The time since
    /// then is how stale the addresses may be, unless the state is
    /// [frozen](Self::frozen_since).
    pub last_sync: Option<SystemTime>,
    /// Since when the state the API sends cannot be resolved, while it cannot: the target has
    /// no port and the endpoints now offer several, or the named port is gone. The last good
    /// snapshot is kept (frozen) and [`last_error`](Self::last_error) says why; bookmarks and
    /// events still arrive, but they confirm a state the snapshot does not show. `None` again
    /// once a resolve succeeds.
    pub frozen_since: Option<SystemTime>,
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
            frozen_since: None,
            last_error: None,
            last_error_at: None,
            watching: false,
            stopped: false,
            counters: Counters::default(),
        }
    }

    /// Time since the API last confirmed the state, or `None` before the first sync.
    ///
    /// The addresses are at most this old, as far as the API is concerned. While a watch is
    /// open, a quiet Service still confirms its state with each bookmark the server sends.
    /// While the state cannot be resolved ([`frozen_since`](Self::frozen_since)), the
    /// snapshot shows an older state than the one confirmed: staleness counts from the sync
    /// that brought the unresolvable state, and grows until a resolve succeeds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// let staleness = resolver.status().staleness();
    /// assert!(staleness.is_some_and(|age| age < Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn staleness(&self) -> Option<Duration> {
        self.frozen_since
            .or(self.last_sync)
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }

    /// Resolved, watching, no failure since the last sync, and the state not
    /// [frozen](Self::frozen_since).
    ///
    /// False for a moment between two watches, while the resolver backs off after a
    /// failure, and for as long as the state the API sends cannot be resolved (a readiness
    /// probe built on it must not pass while every address may be gone).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// // The watch opens just after the first list.
    /// let healthy = (0..500).any(|_| {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     resolver.status().is_healthy()
    /// });
    /// assert!(healthy);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_healthy(&self) -> bool {
        let error_after_sync = match (self.last_error_at, self.last_sync) {
            (Some(e), Some(s)) => e > s,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.resolved && self.watching && !error_after_sync && self.frozen_since.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: u64) -> Option<SystemTime> {
        SystemTime::now().checked_sub(Duration::from_secs(secs))
    }

    fn watching_since(secs: u64) -> Status {
        let mut s = Status::new();
        s.resolved = true;
        s.watching = true;
        s.last_sync = ago(secs);
        s
    }

    #[test]
    fn a_resolved_watching_status_without_errors_is_healthy_and_fresh() {
        let s = watching_since(1);
        assert!(s.is_healthy());
        assert!(s.staleness().is_some_and(|d| d < Duration::from_secs(100)));
        for broken in [
            Status {
                resolved: false,
                ..watching_since(1)
            },
            Status {
                watching: false,
                ..watching_since(1)
            },
            Status {
                last_error_at: ago(0),
                ..watching_since(1)
            },
            Status {
                last_error_at: ago(0),
                last_sync: None,
                ..watching_since(1)
            },
        ] {
            assert!(!broken.is_healthy(), "{broken:?}");
        }
        assert_eq!(Status::new().staleness(), None);
    }

    #[test]
    fn a_frozen_state_is_unhealthy_and_stale_from_when_it_froze_despite_later_syncs() {
        let s = Status {
            frozen_since: ago(600),
            last_error_at: ago(590),
            ..watching_since(1)
        };
        assert!(!s.is_healthy());
        assert!(
            s.staleness().is_some_and(|d| d >= Duration::from_secs(600)),
            "{:?}",
            s.staleness()
        );
        let thawed = Status {
            frozen_since: None,
            ..s
        };
        assert!(thawed.is_healthy());
        assert!(thawed
            .staleness()
            .is_some_and(|d| d < Duration::from_secs(100)));
    }
}
