//! Publishing: the current snapshot, its subscribers, and the status, shared between the
//! watcher thread (the only writer) and any number of readers.
//!
//! The current snapshot sits behind an `RwLock` that is held only to clone or swap an `Arc`.
//! Each subscriber has a bounded(1) channel: publishing replaces a snapshot the subscriber has
//! not read yet (latest wins), never blocks, and forgets subscribers whose [`Updates`] was
//! dropped; subscribing sweeps them out too (amortised), so a quiet Service does not
//! collect dropped subscriptions between publishes.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::health::Health;
use crate::snapshot::{Book, Listing, Snapshot};
use crate::util::{lock, read, write};
use crate::{Error, ErrorKind, Status};

/// A stream of snapshots: each new one, latest wins.
///
/// Derefs to a [`crossbeam_channel::Receiver<Snapshot>`], so `recv()`, `recv_timeout(d)`,
/// `try_recv()`, `iter()` and `crossbeam_channel::select!` all work. That makes
/// crossbeam-channel 0.5 part of this crate's public API, on purpose: a subscriber can wait on
/// updates and its own channels in one `select!`. A crossbeam-channel release that breaks
/// its API would be a breaking release of this crate too (see the README's Semver notes).
/// A subscriber that never reads holds at most one pending snapshot, the newest. The stream starts with the current
/// snapshot when the resolver has one, and ends when the resolver is dropped.
///
/// Dropping an `Updates` unsubscribes it. `&Updates` is iterable: `for snapshot in &updates`
/// runs until the resolver is dropped.
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
/// let updates = resolver.updates();
/// let first = updates.recv_timeout(Duration::from_secs(5))?; // the current snapshot
/// assert_eq!(first.len(), 1);
/// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods); // scale up
/// let next = updates.recv_timeout(Duration::from_secs(5))?;
/// println!("v{}: {:?}", next.version(), next.addresses());
/// assert_eq!(next.len(), 2);
/// drop(resolver);
/// assert!(updates.recv().is_err()); // the stream ends with the resolver
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Updates {
    rx: Receiver<Snapshot>,
    _alive: Arc<()>,
}

impl Deref for Updates {
    type Target = Receiver<Snapshot>;
    fn deref(&self) -> &Receiver<Snapshot> {
        &self.rx
    }
}

impl<'a> IntoIterator for &'a Updates {
    type Item = Snapshot;
    type IntoIter = crossbeam_channel::Iter<'a, Snapshot>;
    fn into_iter(self) -> Self::IntoIter {
        self.rx.iter()
    }
}

impl std::fmt::Debug for Updates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("pending", &self.rx.len())
            .finish()
    }
}

struct Subscriber {
    /// The resolver that handed it out: its subscriptions end when that resolver is dropped,
    /// though the hub lives on for the others that share it.
    owner: u64,
    tx: Sender<Snapshot>,
    /// Our own handle on the channel, to drop an unread snapshot when a newer one comes.
    drain: Receiver<Snapshot>,
    alive: Weak<()>,
    /// The newest version offered, so a snapshot is never offered twice.
    offered: u64,
}

/// The subscribers, and when to next sweep out those whose [`Updates`] was dropped.
#[derive(Default)]
struct Subscribers {
    list: Vec<Subscriber>,
    /// Sweep when the list reaches this length: twice what was alive after the last sweep,
    /// so each sweep is paid for by as many subscriptions as it may visit.
    sweep_at: usize,
}

/// The list never sweeps below this length: a few dead entries cost nothing.
const MIN_SWEEP_AT: usize = 16;

impl Subscribers {
    fn push(&mut self, subscriber: Subscriber) {
        if self.list.len() >= self.sweep_at.max(MIN_SWEEP_AT) {
            self.list.retain(|s| s.alive.strong_count() > 0);
            self.sweep_at = self.list.len() * 2;
        }
        self.list.push(subscriber);
    }
}

/// Called with every snapshot as it is published (feature `testkit`, for tests that must see
/// every publish, which a latest-wins subscriber cannot).
pub(crate) type PublishObserver = Box<dyn Fn(&Snapshot) + Send + Sync>;

/// The hub of one resolver: where its watcher thread publishes, and where its readers
/// (pickers, subscribers, `snapshot`, `status`, `wait_ready`) read.
pub(crate) struct Hub {
    /// What the pickers' callers reported about the addresses; forgotten as they leave.
    health: Health,
    current: RwLock<Snapshot>,
    /// What the current snapshot was made from, to make the next one from what changed.
    book: Mutex<Book>,
    /// The current snapshot's version, readable without a lock (for the picker).
    version: AtomicU64,
    subscribers: Mutex<Subscribers>,
    status: Mutex<Status>,
    changed: Condvar,
    observer: Option<PublishObserver>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            health: Health::new(),
            current: RwLock::new(Snapshot::unresolved()),
            book: Mutex::new(Book::default()),
            version: AtomicU64::new(0),
            subscribers: Mutex::new(Subscribers::default()),
            status: Mutex::new(Status::new()),
            changed: Condvar::new(),
            observer: None,
        }
    }

    /// Calls `observer` with every snapshot, in version order, on the watcher thread.
    #[cfg(feature = "testkit")]
    pub(crate) fn observe(&mut self, observer: PublishObserver) {
        self.observer = Some(observer);
    }

    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> Snapshot {
        read(&self.current).clone()
    }

    #[inline]
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Publish `listing` (the listed endpoints: ready or terminating) if it differs from
    /// the current snapshot, or if nothing was published yet. Returns the new snapshot when
    /// one was published.
    ///
    /// The listing comes from a successful resolve, so the state is no longer frozen.
    pub(crate) fn publish(&self, listing: impl Into<Listing>) -> Option<Snapshot> {
        lock(&self.status).frozen_since = None;
        let current = self.current();
        let snapshot = lock(&self.book).next(&current, listing.into(), current.version() + 1)?;
        *write(&self.current) = snapshot.clone();
        self.version.store(snapshot.version(), Ordering::Release);
        // After the swap: a failure reported from now on sees the new snapshot, and one
        // recorded before is forgotten here if its address left.
        self.health.forget_absent(&snapshot.addresses()[..]);
        {
            let mut status = lock(&self.status);
            status.resolved = true;
            status.version = snapshot.version();
            status.endpoints = snapshot.len();
            status.last_update = snapshot.published_at();
            status.counters.publishes += 1;
        }
        if let Some(observe) = &self.observer {
            observe(&snapshot);
        }
        self.changed.notify_all();
        lock(&self.subscribers)
            .list
            .retain_mut(|s| offer(s, snapshot.clone()));
        Some(snapshot)
    }

    /// A new subscription of resolver `owner` (see [`end_subscriptions`](Self::end_subscriptions)).
    pub(crate) fn subscribe(&self, owner: u64) -> Updates {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let alive = Arc::new(());
        let mut subscriber = Subscriber {
            owner,
            tx,
            drain: rx.clone(),
            alive: Arc::downgrade(&alive),
            offered: 0,
        };
        let mut subscribers = lock(&self.subscribers);
        let stopped = lock(&self.status).stopped;
        if !stopped {
            let current = self.current();
            if current.version() > 0 {
                offer(&mut subscriber, current);
            }
            subscribers.push(subscriber);
        }
        Updates { rx, _alive: alive }
    }

    /// End the subscriptions of resolver `owner`: it is dropped, and the hub goes on for the
    /// others. Each ends as it would when the watch stops: after the snapshot it holds, if any.
    pub(crate) fn end_subscriptions(&self, owner: u64) {
        lock(&self.subscribers).list.retain(|s| s.owner != owner);
    }

    #[cfg(test)]
    pub(crate) fn subscriber_count(&self) -> usize {
        let mut subscribers = lock(&self.subscribers);
        subscribers.list.retain(|s| s.alive.strong_count() > 0);
        subscribers.list.len()
    }

    /// Entries in the subscriber list, dropped ones not swept yet included.
    #[cfg(test)]
    fn subscriber_entries(&self) -> usize {
        lock(&self.subscribers).list.len()
    }

    pub(crate) fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Change the status under its lock.
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    /// Record a failure: status only, never a publish.
    pub(crate) fn record_error(&self, error: Error) {
        self.record(error, false);
    }

    /// Record that the state the API sent cannot be resolved (the target's port cannot be
    /// chosen): the snapshot stays frozen at the last good one, and the status says so until
    /// a resolve succeeds ([`publish`](Self::publish)).
    pub(crate) fn record_unresolvable(&self, error: Error) {
        self.record(error, true);
    }

    fn record(&self, error: Error, unresolvable: bool) {
        {
            let mut status = lock(&self.status);
            let now = SystemTime::now();
            status.counters.errors += 1;
            status.last_error = Some(error);
            status.last_error_at = Some(now);
            if unresolvable && status.frozen_since.is_none() {
                // The sync that brought the unresolvable state; the snapshot is older.
                status.frozen_since = Some(status.last_sync.unwrap_or(now));
            }
        }
        self.changed.notify_all();
    }

    /// The watcher stopped: end every subscription and wake `wait_ready`.
    pub(crate) fn stop(&self) {
        lock(&self.status).stopped = true;
        lock(&self.subscribers).list.clear();
        self.changed.notify_all();
    }

    /// The first snapshot, or why there is none after `timeout`.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> Result<Snapshot, Error> {
        // A timeout too large to add to the clock means "no deadline".
        let deadline = Instant::now().checked_add(timeout);
        let mut status = lock(&self.status);
        loop {
            if status.resolved {
                drop(status);
                return Ok(self.current());
            }
            if status.stopped {
                return Err(Error::new(ErrorKind::Stopped, "the resolver has stopped")
                    .with_cause(status.last_error.clone()));
            }
            let now = Instant::now();
            let left = match deadline {
                Some(deadline) if now >= deadline => {
                    return Err(Error::new(
                        ErrorKind::NotReady,
                        format!("no endpoints resolved within {timeout:?}"),
                    )
                    .with_cause(status.last_error.clone()));
                }
                Some(deadline) => deadline - now,
                None => Duration::from_secs(3600),
            };
            status = self
                .changed
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Hand `snapshot` to a subscriber, replacing one it has not read. False when it is gone.
fn offer(subscriber: &mut Subscriber, snapshot: Snapshot) -> bool {
    if subscriber.alive.strong_count() == 0 {
        return false;
    }
    if snapshot.version() <= subscriber.offered {
        return true;
    }
    subscriber.offered = snapshot.version();
    let mut snapshot = snapshot;
    // Two rounds suffice: only this thread sends, so after draining there is room.
    for _ in 0..2 {
        match subscriber.tx.try_send(snapshot) {
            Ok(()) => return true,
            Err(TrySendError::Full(back)) => {
                let _ = subscriber.drain.try_recv();
                snapshot = back;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    use crate::snapshot::Endpoint;

    fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
        ports
            .iter()
            .map(|p| Endpoint::bare(SocketAddr::from(([10, 0, 0, 1], *p))))
            .collect()
    }

    #[test]
    fn publishes_only_changes_and_versions_grow_by_one() {
        let shared = Hub::new();
        assert_eq!(
            shared.publish(endpoints(&[1])).map(|s| s.version()),
            Some(1)
        );
        assert!(shared.publish(endpoints(&[1])).is_none());
        assert_eq!(
            shared.publish(endpoints(&[1, 2])).map(|s| s.version()),
            Some(2)
        );
        assert_eq!(shared.current().version(), 2);
        assert_eq!(shared.version(), 2);
    }

    #[test]
    fn the_first_resolution_publishes_even_when_empty() {
        let shared = Hub::new();
        let first = shared.publish(Vec::new());
        assert_eq!(first.map(|s| s.version()), Some(1));
        assert!(shared.status().resolved);
    }

    #[test]
    fn a_subscriber_that_never_reads_holds_only_the_latest_snapshot() {
        let shared = Hub::new();
        let updates = shared.subscribe(0);
        for n in 1..=100u16 {
            shared.publish(endpoints(&[n]));
        }
        assert_eq!(updates.len(), 1);
        let latest = updates.try_recv().map(|s| s.version());
        assert_eq!(latest, Ok(100));
        assert!(updates.try_recv().is_err());
    }

    #[cfg(feature = "testkit")]
    #[test]
    fn an_observer_sees_every_publish_that_a_subscriber_may_miss() {
        let mut shared = Hub::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        shared.observe(Box::new(move |s| lock(&record).push(s.version())));
        let updates = shared.subscribe(0);
        for n in 1..=5u16 {
            shared.publish(endpoints(&[n]));
        }
        shared.publish(endpoints(&[5]));
        assert_eq!(*lock(&seen), [1, 2, 3, 4, 5]);
        assert_eq!(
            updates.try_iter().map(|s| s.version()).collect::<Vec<_>>(),
            [5]
        );
    }

    #[test]
    fn a_dropped_subscriber_is_forgotten() {
        let shared = Hub::new();
        let kept = shared.subscribe(0);
        drop(shared.subscribe(0));
        shared.publish(endpoints(&[1]));
        assert_eq!(shared.subscriber_count(), 1);
        assert!(kept.try_recv().is_ok());
    }

    #[test]
    fn dropped_subscriptions_are_swept_without_a_publish() {
        let shared = Hub::new();
        shared.publish(endpoints(&[1]));
        let kept: Vec<Updates> = (0..5).map(|_| shared.subscribe(0)).collect();
        let mut most = 0;
        for _ in 0..10_000 {
            drop(shared.subscribe(0));
            most = most.max(shared.subscriber_entries());
        }
        assert!(
            most <= 2 * MIN_SWEEP_AT,
            "{most} entries for 5 live subscribers"
        );
        assert_eq!(shared.subscriber_count(), 5);
        // Many live subscribers are all kept, and the sweeps stay amortised.
        let more: Vec<Updates> = (0..1000).map(|_| shared.subscribe(0)).collect();
        for _ in 0..10_000 {
            drop(shared.subscribe(0));
        }
        assert!(shared.subscriber_entries() <= 2 * (1005 + 1));
        assert_eq!(shared.subscriber_count(), 1005);
        shared.publish(endpoints(&[2]));
        for updates in kept.iter().chain(&more) {
            assert_eq!(updates.try_iter().last().map(|s| s.version()), Some(2));
        }
    }

    #[test]
    fn an_unresolvable_state_is_frozen_until_a_resolve_succeeds() {
        let shared = Hub::new();
        let sync = |shared: &Hub, at: u64| {
            shared.update_status(|s| {
                s.last_sync = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at))
            })
        };
        let port_error = || Error::port("several ports and none named");
        sync(&shared, 10);
        shared.publish(endpoints(&[1]));
        assert_eq!(shared.status().frozen_since, None);
        sync(&shared, 20);
        shared.record_unresolvable(port_error());
        let frozen = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(20));
        assert_eq!(shared.status().frozen_since, frozen);
        // Later syncs and failures do not move it; other errors do not freeze.
        sync(&shared, 30);
        shared.record_unresolvable(port_error());
        shared.record_error(Error::transport("reset"));
        assert_eq!(shared.status().frozen_since, frozen);
        // A successful resolve thaws it, even when it publishes nothing new.
        assert!(shared.publish(endpoints(&[1])).is_none());
        assert_eq!(shared.status().frozen_since, None);
        shared.record_error(Error::transport("reset"));
        assert_eq!(shared.status().frozen_since, None);
        // Never synced: frozen from now.
        let fresh = Hub::new();
        fresh.record_unresolvable(port_error());
        assert!(fresh.status().frozen_since.is_some());
    }

    #[test]
    fn ending_one_owners_subscriptions_leaves_the_others() {
        let shared = Hub::new();
        let (mine, theirs) = (shared.subscribe(1), shared.subscribe(2));
        shared.publish(endpoints(&[1]));
        shared.end_subscriptions(1);
        assert_eq!(mine.recv().map(|s| s.version()), Ok(1), "what it held");
        assert!(mine.recv().is_err(), "then the end");
        shared.publish(endpoints(&[2]));
        assert_eq!(theirs.try_iter().last().map(|s| s.version()), Some(2));
        assert_eq!(shared.subscriber_count(), 1);
    }

    #[test]
    fn a_new_subscriber_starts_with_the_current_snapshot() {
        let shared = Hub::new();
        shared.publish(endpoints(&[7]));
        let updates = shared.subscribe(0);
        assert_eq!(updates.try_recv().map(|s| s.version()), Ok(1));
    }

    #[test]
    fn stop_ends_subscriptions_and_wait_ready_reports_the_last_error() {
        let shared = Hub::new();
        let updates = shared.subscribe(0);
        shared.record_error(Error::api(403, Some("Forbidden".into()), "forbidden", None));
        let err = shared.wait_ready(Duration::from_millis(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotReady);
        assert_eq!(err.cause().and_then(Error::status), Some(403));
        shared.stop();
        assert!(updates.recv().is_err());
        assert_eq!(
            shared
                .wait_ready(Duration::from_secs(5))
                .unwrap_err()
                .kind(),
            ErrorKind::Stopped
        );
    }
}
