//! Round-robin picking over the current snapshot without a lock on the hot path.
//!
//! `pick()` reads the snapshot version from an atomic. Each thread caches, per resolver, the
//! addresses of the version it saw last; only when the version moved does it take the read
//! lock once to refresh. So the steady state is one atomic load, one `fetch_add` and an index,
//! and the watcher never waits for pickers (nor they for it, beyond one refresh).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::publish::Hub;

/// Picks addresses of the current snapshot in turn.
///
/// `Clone + Send + Sync`; clones share the rotation. `pick()` sees a newly published snapshot
/// on its next call and returns `None` while the Service has no ready address. From
/// [`Resolver::picker`](crate::Resolver::picker); the [picking guide](crate::guide::picking)
/// shows a connector that tries the next address when a connect fails.
///
/// ```
/// # use std::net::SocketAddr;
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// # let server = FakeApiServer::start()?;
/// # let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// # resolver.wait_ready(Duration::from_secs(5))?;
/// // Two ready pods, 10.0.0.1 and 10.0.0.2.
/// let picker = resolver.picker();
/// let clone = picker.clone(); // shares the rotation, e.g. with another thread
/// let picks = [picker.pick(), clone.pick(), picker.pick()];
/// let addr = |last: u8| Some(SocketAddr::from(([10, 0, 0, last], 8080)));
/// assert_eq!(picks, [addr(1), addr(2), addr(1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Zone-aware picking
///
/// [`prefer_zone`](Self::prefer_zone) keeps traffic in the caller's zone (cross-zone traffic
/// costs money and latency): it picks round robin among the ready endpoints whose zone is
/// the given one, and falls back to all ready endpoints while none of them is in that zone.
/// Zones come from EndpointSlices (`endpoints[].zone`); core/v1 Endpoints carry none, so
/// there a zone-aware picker behaves like a plain one.
///
/// ```
/// # use std::net::SocketAddr;
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver};
/// # let server = FakeApiServer::start()?;
/// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &[("grpc", Some(8080))], &[
///     Pod::new("echo-1", [10, 0, 0, 1]).zone("eu-west-1a"),
///     Pod::new("echo-2", [10, 0, 0, 2]).zone("eu-west-1b"),
/// ]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .spawn()?;
/// # resolver.wait_ready(Duration::from_secs(5))?;
/// // The caller's zone, e.g. the node's `topology.kubernetes.io/zone` label.
/// let zone = "eu-west-1b";
/// let picker = resolver.picker().prefer_zone(zone);
/// assert_eq!(picker.zone(), Some("eu-west-1b"));
/// for _ in 0..3 {
///     assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 2], 8080))));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Picker {
    shared: Arc<Hub>,
    cursor: Arc<AtomicUsize>,
    zone: Option<Arc<str>>,
}

/// How many resolvers one thread caches addresses for. More are served, just with more
/// refreshes; the bound keeps a thread from holding the addresses of resolvers long dropped.
const CACHE_SLOTS: usize = 8;

struct Slot {
    resolver: u64,
    zone: Option<Arc<str>>,
    version: u64,
    addresses: Arc<[SocketAddr]>,
}

thread_local! {
    static CACHE: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

impl Picker {
    pub(crate) fn new(shared: Arc<Hub>) -> Picker {
        Picker {
            shared,
            cursor: Arc::new(AtomicUsize::new(0)),
            zone: None,
        }
    }

    /// This picker, but preferring endpoints in `zone` (see [Zone-aware
    /// picking](#zone-aware-picking)). An empty zone means no preference.
    ///
    /// Default: no preference. The returned picker has a rotation of its own, not shared
    /// with the picker it came from. While no ready endpoint is in `zone`, it picks from all.
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver};
    /// # let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).zone("eu-west-1a");
    /// let ports = [("grpc", Some(8080))];
    /// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &ports, &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .spawn()?;
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// // No endpoint in eu-west-1c: fall back to the others.
    /// let picker = resolver.picker().prefer_zone("eu-west-1c");
    /// assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 1], 8080))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefer_zone(mut self, zone: impl Into<String>) -> Picker {
        let zone: String = zone.into();
        self.zone = (!zone.is_empty()).then(|| Arc::from(zone));
        self.cursor = Arc::new(AtomicUsize::new(0));
        self
    }

    /// The preferred zone, if any.
    ///
    /// ```
    /// # use kuberesolver::testkit::FakeApiServer;
    /// # use kuberesolver::{Config, Resolver};
    /// # let server = FakeApiServer::start()?;
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .spawn()?;
    /// assert_eq!(resolver.picker().zone(), None);
    /// assert_eq!(resolver.picker().prefer_zone("eu-west-1a").zone(), Some("eu-west-1a"));
    /// assert_eq!(resolver.picker().prefer_zone("").zone(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The addresses this picker chooses from in `snapshot`.
    fn candidates(&self, snapshot: &crate::Snapshot) -> Arc<[SocketAddr]> {
        if let Some(zone) = &self.zone {
            let local: Vec<SocketAddr> = snapshot
                .endpoints()
                .iter()
                .filter(|e| e.zone() == Some(zone))
                .map(|e| e.addr())
                .collect();
            if !local.is_empty() {
                return Arc::from(local);
            }
        }
        snapshot.addresses().shared().clone()
    }

    /// The next address in turn, or `None` when there is none.
    ///
    /// Sees a newly published snapshot on the next call. Takes no lock in the steady state.
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// let starting = Pod::new("echo-1", [10, 0, 0, 1]).ready(false);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[starting.clone()]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// let updates = resolver.updates();
    /// updates.recv_timeout(Duration::from_secs(5))?;
    /// let picker = resolver.picker();
    /// assert_eq!(picker.pick(), None); // no ready pod
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[starting.ready(true)]);
    /// updates.recv_timeout(Duration::from_secs(5))?;
    /// assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 1], 8080))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Inlined, with the rare paths (first use on a thread, a new version) out of line: the
    // steady state is then a version load, a short search, a `fetch_add` and an index.
    #[inline]
    pub fn pick(&self) -> Option<SocketAddr> {
        let version = self.shared.version();
        let id = self.shared.id();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = match cache
                .iter()
                .position(|s| s.resolver == id && s.zone == self.zone)
            {
                Some(i) => i,
                None => self.new_slot(&mut cache),
            };
            let slot = &mut cache[index];
            if slot.version != version {
                self.refresh(slot);
            }
            let len = slot.addresses.len();
            if len == 0 {
                return None;
            }
            let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
            slot.addresses.get(turn % len).copied()
        })
    }

    #[cold]
    #[inline(never)]
    fn new_slot(&self, cache: &mut Vec<Slot>) -> usize {
        if cache.len() >= CACHE_SLOTS {
            cache.remove(0);
        }
        cache.push(Slot {
            resolver: self.shared.id(),
            zone: self.zone.clone(),
            version: u64::MAX,
            addresses: Arc::from(Vec::new()),
        });
        cache.len() - 1
    }

    #[cold]
    #[inline(never)]
    fn refresh(&self, slot: &mut Slot) {
        let snapshot = self.shared.current();
        slot.version = snapshot.version();
        slot.addresses = self.candidates(&snapshot);
    }
}

impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picker")
            .field("version", &self.shared.version())
            .field("zone", &self.zone)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Endpoint;

    fn publish(shared: &Hub, last_octets: &[u8]) {
        shared.publish(
            last_octets
                .iter()
                .map(|o| Endpoint::bare(SocketAddr::from(([10, 0, 0, *o], 80))))
                .collect(),
        );
    }

    #[test]
    fn picks_none_when_empty_and_round_robins_over_the_snapshot() {
        let shared = Arc::new(Hub::new());
        let picker = Picker::new(shared.clone());
        assert_eq!(picker.pick(), None);
        publish(&shared, &[1, 2, 3]);
        let picks: Vec<u8> = (0..6)
            .filter_map(|_| picker.pick())
            .map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => v4.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn sees_a_new_snapshot_on_the_next_call() {
        let shared = Arc::new(Hub::new());
        let picker = Picker::new(shared.clone());
        publish(&shared, &[1]);
        assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 1], 80))));
        publish(&shared, &[9]);
        assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 9], 80))));
        publish(&shared, &[]);
        assert_eq!(picker.pick(), None);
    }

    #[test]
    fn pickers_of_different_resolvers_on_one_thread_do_not_mix() {
        let a = Arc::new(Hub::new());
        let b = Arc::new(Hub::new());
        publish(&a, &[1]);
        publish(&b, &[2]);
        let (pa, pb) = (Picker::new(a), Picker::new(b));
        for _ in 0..3 {
            assert_eq!(pa.pick(), Some(SocketAddr::from(([10, 0, 0, 1], 80))));
            assert_eq!(pb.pick(), Some(SocketAddr::from(([10, 0, 0, 2], 80))));
        }
    }

    #[test]
    fn a_zone_aware_picker_stays_in_its_zone_and_falls_back_when_it_is_empty() {
        let shared = Arc::new(Hub::new());
        let endpoint = |octet: u8, zone: &str| {
            Endpoint::with_zone(SocketAddr::from(([10, 0, 0, octet], 80)), Some(zone))
        };
        shared.publish(vec![endpoint(1, "a"), endpoint(2, "b"), endpoint(3, "a")]);
        let picker = Picker::new(shared.clone()).prefer_zone("a");
        let plain = Picker::new(shared.clone());
        let mut in_a: Vec<_> = (0..4).filter_map(|_| picker.pick()).collect();
        in_a.sort();
        in_a.dedup();
        assert_eq!(in_a.len(), 2);
        assert!(in_a
            .iter()
            .all(|a| a.ip() != std::net::IpAddr::from([10, 0, 0, 2])));
        let mut all: Vec<_> = (0..6).filter_map(|_| plain.pick()).collect();
        all.sort();
        all.dedup();
        assert_eq!(
            all.len(),
            3,
            "the plain picker on the same thread is not filtered"
        );
        shared.publish(vec![endpoint(2, "b")]);
        assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 2], 80))));
    }

    #[test]
    fn picks_are_spread_evenly_across_threads() {
        let shared = Arc::new(Hub::new());
        publish(&shared, &[1, 2, 3, 4]);
        let picker = Picker::new(shared);
        let counts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let p = picker.clone();
                    s.spawn(move || (0..1000).filter_map(|_| p.pick()).collect::<Vec<_>>())
                })
                .collect();
            let mut counts = std::collections::HashMap::new();
            for h in handles {
                for a in h.join().unwrap_or_default() {
                    *counts.entry(a).or_insert(0) += 1;
                }
            }
            counts
        });
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|c| *c == 1000), "{counts:?}");
    }
}
