//! Round-robin picking over the current snapshot, skipping addresses that callers reported
//! failing, without a lock on the hot path.
//!
//! `pick()` reads the snapshot version and the health generation from two atomics. Each
//! thread caches, per picker, the addresses it picks from for the version and generation it
//! saw last; only when one of them moved does it take the locks once to refresh. So the steady
//! state is two atomic loads, a short search, one `fetch_add` and an index, with or without
//! failure feedback. While an address is ejected, a thread also looks at the clock every few
//! picks (each pick when they are rare, up to every 64 when they are fast: see
//! `next_stride`), so it notices that an ejection ended within about two milliseconds while
//! picks come fast, and at most 64 picks late when they slow down at once.
//!
//! `topology.rs` decides which endpoints a picker prefers (family, hints, node, zone); the
//! health of addresses is `crate::health`, kept by the resolver's hub for all its pickers.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::health::{Ejection, Review};
use crate::publish::Hub;
use crate::snapshot::Addresses;

#[cfg(test)]
mod tests;
mod topology;

pub use topology::IpFamily;
use topology::{Candidates, Prefs};

/// Picks addresses of the current snapshot in turn, skipping those that callers reported
/// failing.
///
/// `Clone + Send + Sync`; clones share the rotation. `pick()` sees a newly published snapshot
/// on its next call, and returns `None` only while the Service has no endpoint to use (of
/// the picker's [family](Self::ip_family)). From [`Resolver::picker`](crate::Resolver::picker).
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
/// # Failure feedback
///
/// A pod can be listed and unreachable: its node died (the endpoint turns unready about 40 s
/// later), it is stuck, or a NetworkPolicy blocks it. Tell the picker:
/// [`report_failure`](Self::report_failure) ejects the address, so that `pick()` skips it
/// for a while (1 s, doubling with each ejection in a row up to 60 s, jittered: see
/// [`Ejection`], set with [`ejection`](Self::ejection)); [`report_success`](Self::report_success)
/// resets it. When the time is up, one pick goes to the address to probe it. `pick()` never
/// returns `None` because of ejections: when every address is ejected, it returns the one whose
/// ejection ends first (Envoy's panic mode). The health of an address is shared by every
/// picker of the resolver (and of the resolvers that share its watch and port), kept across
/// snapshots, and forgotten when the address leaves the Service.
///
/// [`connect_with`](Self::connect_with) does it all: it picks, runs your connect function,
/// reports the outcome, and on an error tries the next address. `TcpStream::connect(&picker)`
/// fails over too, through [`ToSocketAddrs`](#impl-ToSocketAddrs-for-Picker).
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
/// let picker = resolver.picker();
/// let dead = SocketAddr::from(([10, 0, 0, 1], 8080));
/// picker.report_failure(dead); // a connect to it was refused
/// assert!((0..10).all(|_| picker.pick() != Some(dead)));
/// picker.report_success(dead); // it answered after all
/// assert!((0..10).any(|_| picker.pick() == Some(dead)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Zone and node aware picking
///
/// [`prefer_zone`](Self::prefer_zone) keeps traffic in the caller's zone (cross-zone traffic
/// costs money and latency), [`prefer_node`](Self::prefer_node) on the caller's node. They
/// follow the Service's topology hints as kube-proxy does, with its safeguards:
///
/// 1. `hints.forNodes` (Kubernetes 1.33+, `trafficDistribution: PreferSameNode`), when every
///    ready endpoint has some and one names the caller's node: those naming it;
/// 2. else `hints.forZones` (`trafficDistribution: PreferClose`, or `topology-mode: Auto`),
///    when every ready endpoint has some and one names the caller's zone: those naming it;
/// 3. else, without usable hints, the caller's own preference: the endpoints on its node,
///    if any, else those in its zone, if any;
/// 4. else every endpoint.
///
/// While no endpoint is ready (terminating ones are used), topology does not apply, as in
/// kube-proxy. Zones and hints come from EndpointSlices; core/v1 Endpoints carry neither (a
/// node preference still works there). When every preferred address is ejected, the picker
/// uses the others before it falls back to ejected ones.
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
    hub: Arc<Hub>,
    core: Arc<Core>,
}

/// What clones of a picker share: the rotation and the settings.
struct Core {
    /// Unique per core, so that a thread's cache entry is this core's and no other's.
    id: u64,
    cursor: AtomicUsize,
    prefs: Prefs,
    ejection: Ejection,
    attempts: u32,
}

impl Core {
    fn new(prefs: Prefs, ejection: Ejection, attempts: u32) -> Arc<Core> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new(Core {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cursor: AtomicUsize::new(0),
            prefs,
            ejection,
            attempts,
        })
    }
}

/// How many pickers one thread caches addresses for. More are served, just with more
/// refreshes; the bound keeps a thread from holding the addresses of pickers long dropped.
const CACHE_SLOTS: usize = 8;

/// The most picks between two looks at the clock while an address is ejected. It bounds how
/// many picks late a thread that learned a long stride while busy notices an ended ejection
/// once its picks turn rare; a clock read per 64 picks costs well under a nanosecond a pick.
const MAX_STRIDE: u32 = 64;

/// What one thread knows for one picker.
struct Slot {
    core: u64,
    version: u64,
    generation: u64,
    candidates: Candidates,
    /// What `pick()` rotates over: the preferred addresses that are not ejected, or, when
    /// all of those are, the others that are not.
    rotation: Addresses,
    /// When every candidate is ejected: the one whose ejection ends first.
    fallback: Option<SocketAddr>,
    /// The first end of an ejection of a candidate, if any is ejected.
    next_expiry: Option<Instant>,
    /// Picks left until the next look at the clock, and how many to wait after that.
    countdown: u32,
    stride: u32,
    checked_at: Instant,
}

thread_local! {
    static CACHE: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// The error of a connect with nothing to connect to.
fn no_endpoint() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "no endpoint to connect to: the Service has no ready endpoint",
    )
}

impl Picker {
    pub(crate) fn new(hub: Arc<Hub>) -> Picker {
        Picker {
            hub,
            core: Core::new(Prefs::default(), Ejection::new(), 3),
        }
    }

    /// This picker with other settings: a rotation of its own, the same health.
    fn with(&self, change: impl FnOnce(&mut Prefs, &mut Ejection, &mut u32)) -> Picker {
        let (mut prefs, mut ejection, mut attempts) = (
            self.core.prefs.clone(),
            self.core.ejection,
            self.core.attempts,
        );
        change(&mut prefs, &mut ejection, &mut attempts);
        Picker {
            hub: self.hub.clone(),
            core: Core::new(prefs, ejection, attempts),
        }
    }

    /// This picker, but preferring endpoints in `zone` (see [Zone and node aware
    /// picking](#zone-and-node-aware-picking)). An empty zone means no preference.
    ///
    /// Default: no preference. The returned picker has a rotation of its own, not shared
    /// with the picker it came from. While no ready endpoint is preferred, it picks from all.
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
    pub fn prefer_zone(&self, zone: impl Into<String>) -> Picker {
        let zone: String = zone.into();
        self.with(|prefs, _, _| prefs.zone = (!zone.is_empty()).then(|| Arc::from(zone)))
    }

    /// This picker, but preferring endpoints on `node`, the caller's node (see [Zone and
    /// node aware picking](#zone-and-node-aware-picking)): those whose `hints.forNodes`
    /// name it when the Service sets node hints, else those running on it. An empty name
    /// means no preference.
    ///
    /// Default: no preference. Get the node's name from the downward API
    /// (`spec.nodeName`). The returned picker has a rotation of its own.
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver};
    /// # let server = FakeApiServer::start()?;
    /// // trafficDistribution: PreferSameNode: each endpoint is hinted for its own node.
    /// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &[("grpc", Some(8080))], &[
    ///     Pod::new("echo-1", [10, 0, 0, 1]).node("node-a").node_hints(["node-a"]),
    ///     Pod::new("echo-2", [10, 0, 0, 2]).node("node-b").node_hints(["node-b"]),
    /// ]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .spawn()?;
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// let node = "node-b"; // e.g. from env NODE_NAME, set through the downward API
    /// let picker = resolver.picker().prefer_node(node);
    /// assert_eq!(picker.node(), Some("node-b"));
    /// assert!((0..3).all(|_| picker.pick() == Some(SocketAddr::from(([10, 0, 0, 2], 8080)))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefer_node(&self, node: impl Into<String>) -> Picker {
        let node: String = node.into();
        self.with(|prefs, _, _| prefs.node = (!node.is_empty()).then(|| Arc::from(node)))
    }

    /// This picker, picking only addresses of `family` (see [`IpFamily`]). Default:
    /// [`IpFamily::Both`]. The returned picker has a rotation of its own.
    pub fn ip_family(&self, family: IpFamily) -> Picker {
        self.with(|prefs, _, _| prefs.family = family)
    }

    /// This picker, ejecting addresses reported failing under `policy` (see [`Ejection`];
    /// default: `Ejection::new()`). The returned picker has a rotation of its own, and the
    /// same health of addresses as every picker of the resolver.
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Ejection, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// // Requests that fail now and then must not eject a pod: three in a row do.
    /// let picker = resolver.picker().ejection(Ejection::new().consecutive_failures(3));
    /// let flaky = SocketAddr::from(([10, 0, 0, 1], 8080));
    /// picker.report_failure(flaky);
    /// assert!((0..4).any(|_| picker.pick() == Some(flaky)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ejection(&self, policy: Ejection) -> Picker {
        self.with(|_, ejection, _| *ejection = policy)
    }

    /// This picker, with [`connect_with`](Self::connect_with) trying at most `attempts`
    /// addresses per call (0 counts as 1). Default: 3, enough to get past a dead pod and one
    /// that left a moment ago. The returned picker has a rotation of its own.
    pub fn attempts(&self, attempts: u32) -> Picker {
        self.with(|_, _, n| *n = attempts.max(1))
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
        self.core.prefs.zone.as_deref()
    }

    /// The preferred node, if any.
    pub fn node(&self) -> Option<&str> {
        self.core.prefs.node.as_deref()
    }

    /// The next address in turn, or `None` when the Service has no endpoint to use.
    ///
    /// Skips ejected addresses (see [Failure feedback](#failure-feedback)) while others are
    /// left. Sees a newly published snapshot on the next call. Takes no lock in the steady
    /// state.
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
    // Inlined, with the rare paths (first use on a thread, a new version or generation, a
    // look at the clock) out of line: the steady state is two loads, a short search, a
    // `fetch_add` and an index.
    #[inline]
    pub fn pick(&self) -> Option<SocketAddr> {
        let version = self.hub.version();
        let generation = self.hub.health().generation();
        let cached = CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = match cache.iter().position(|s| s.core == self.core.id) {
                Some(i) => i,
                None => self.new_slot(&mut cache),
            };
            let slot = &mut cache[index];
            if slot.version != version || slot.generation != generation {
                if let Some(probe) = self.refresh(slot, version, generation) {
                    return Some(probe);
                }
            } else if slot.next_expiry.is_some() {
                slot.countdown -= 1;
                if slot.countdown == 0 {
                    if let Some(probe) = self.tick(slot) {
                        return Some(probe);
                    }
                }
            }
            let len = slot.rotation.len();
            if len == 0 {
                return slot.fallback;
            }
            let turn = self.core.cursor.fetch_add(1, Ordering::Relaxed);
            slot.rotation.get(turn % len).copied()
        });
        // The thread's cache is gone only while its thread-locals are destroyed (a pick from
        // another one's `Drop`): then the failover order, read afresh, gives the pick.
        cached.unwrap_or_else(|_| self.failover_order().first().copied())
    }

    #[cold]
    #[inline(never)]
    fn new_slot(&self, cache: &mut Vec<Slot>) -> usize {
        if cache.len() >= CACHE_SLOTS {
            cache.remove(0);
        }
        cache.push(Slot {
            core: self.core.id,
            version: u64::MAX,
            generation: u64::MAX,
            candidates: Candidates::none(),
            rotation: Addresses::from(Vec::new()),
            fallback: None,
            next_expiry: None,
            countdown: 1,
            stride: 1,
            checked_at: Instant::now(),
        });
        cache.len() - 1
    }

    /// A new snapshot version or health generation: recompute what this thread picks from.
    /// Returns an address to probe, when this pick is to probe one.
    #[cold]
    #[inline(never)]
    fn refresh(&self, slot: &mut Slot, version: u64, generation: u64) -> Option<SocketAddr> {
        if slot.version != version {
            let snapshot = self.hub.current();
            slot.version = snapshot.version();
            slot.candidates = self.core.prefs.candidates(&snapshot);
        }
        // The generation read before the health itself: a change made meanwhile brings
        // another refresh, never a missed one.
        slot.generation = generation;
        self.rebuild(slot, None)
    }

    /// A look at the clock while an address is ejected: has an ejection ended?
    #[cold]
    #[inline(never)]
    fn tick(&self, slot: &mut Slot) -> Option<SocketAddr> {
        let now = Instant::now();
        slot.stride = next_stride(slot.stride, now.saturating_duration_since(slot.checked_at));
        slot.countdown = slot.stride;
        slot.checked_at = now;
        if slot.next_expiry.is_some_and(|end| now >= end) {
            return self.rebuild(slot, Some(now));
        }
        None
    }

    /// The rotation from the candidates and the ejected addresses.
    fn rebuild(&self, slot: &mut Slot, now: Option<Instant>) -> Option<SocketAddr> {
        let candidates = &slot.candidates;
        let now = now.unwrap_or_else(Instant::now);
        let Review { ejected, probe } =
            self.hub.health().review(now, &self.core.ejection, |addr| {
                candidates.preferred.binary_search(&addr).is_ok()
            });
        let (rotation, fallback, next_expiry) = rotation(candidates, &ejected);
        slot.rotation = rotation;
        slot.fallback = fallback;
        slot.next_expiry = next_expiry;
        slot.checked_at = now;
        slot.countdown = slot.stride;
        probe
    }

    /// Reports that `addr` failed (a connect refused or timed out, a connection reset): after
    /// the [policy's](Self::ejection) number of failures in a row, `pick()` skips it for an
    /// ejection time. Failures reported while it is ejected do not count (they come from
    /// picks made before). Failures of an address that is not in the current snapshot are
    /// ignored. Every picker of the resolver sees the ejection.
    pub fn report_failure(&self, addr: SocketAddr) {
        let hub = &self.hub;
        hub.health()
            .failure(addr, Instant::now(), &self.core.ejection, |addr| {
                hub.current().addresses().binary_search(&addr).is_ok()
            });
    }

    /// Reports that `addr` works: its failures are forgotten, and its ejection, if any, ends.
    /// Costs one atomic load while no address has a failure on record.
    pub fn report_success(&self, addr: SocketAddr) {
        self.hub.health().success(addr);
    }

    /// Runs `connect` with a picked address and reports the outcome; on an error, tries the
    /// next address, up to [`attempts`](Self::attempts) addresses (3 by default), each once.
    /// Returns the first success, or the last error (an error of kind
    /// [`NotFound`](io::ErrorKind::NotFound) when there was no address to try).
    ///
    /// `connect` may do more than connect (a handshake, a request): any error it returns
    /// counts as a failure of the address, so return `Ok` for failures that are not the
    /// address's fault (an error answer from a healthy server). Give it a timeout: a pod
    /// whose node died does not refuse, it never answers.
    ///
    /// ```
    /// # use std::io::{BufRead, BufReader, Write};
    /// # use std::net::TcpStream;
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{line_echo, refused};
    /// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver};
    /// # let server = FakeApiServer::start()?;
    /// # let (alive, dead) = (line_echo()?, refused()?);
    /// # for (name, addr) in [("echo-a", alive), ("echo-b", dead)] {
    /// #     let ports = [("tcp", Some(addr.port()))];
    /// #     let pod = Pod::new(name, addr.ip());
    /// #     server.set_endpoint_slice("prod", name, "echo", AddressType::Ipv4, &ports, &[pod]);
    /// # }
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:tcp")
    /// #     .config(Config::new(server.url()))
    /// #     .spawn()?;
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// // Two pods: one answers, the other refuses connections.
    /// let picker = resolver.picker();
    /// let mut dead_tries = 0;
    /// for _ in 0..5 {
    ///     let answer = picker.connect_with(|addr| {
    ///         dead_tries += usize::from(addr == dead);
    ///         let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    ///         stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    ///         (&stream).write_all(b"hello\n")?;
    ///         let mut line = String::new();
    ///         BufReader::new(&stream).read_line(&mut line)?;
    ///         Ok(line)
    ///     })?;
    ///     assert_eq!(answer, "hello\n"); // every request answered
    /// }
    /// assert_eq!(dead_tries, 1); // then the dead pod was ejected
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_with<T>(
        &self,
        mut connect: impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> io::Result<T> {
        // No more attempts, and no more picks per attempt, than the snapshot has addresses:
        // `attempts(u32::MAX)` must neither allocate for it nor spin through it.
        let listed = self.hub.current().len();
        let attempts = usize::try_from(self.core.attempts).map_or(listed, |n| n.min(listed));
        let mut tried: Vec<SocketAddr> = Vec::with_capacity(attempts);
        let mut last = None;
        for _ in 0..attempts {
            // Clones on other threads take turns too: a few picks find an untried address.
            let next = (0..=listed)
                .filter_map(|_| self.pick())
                .find(|addr| !tried.contains(addr));
            let Some(addr) = next else { break };
            tried.push(addr);
            match connect(addr) {
                Ok(value) => {
                    self.report_success(addr);
                    return Ok(value);
                }
                Err(e) => {
                    self.report_failure(addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(no_endpoint))
    }

    /// Every address to try, in the order to try them: the preferred ones that are not
    /// ejected, in turn (each call starts one further), then the others that are not
    /// ejected, then the ejected ones, those whose ejection ends first first.
    fn failover_order(&self) -> Vec<SocketAddr> {
        let snapshot = self.hub.current();
        let candidates = self.core.prefs.candidates(&snapshot);
        let review = self
            .hub
            .health()
            .review(Instant::now(), &self.core.ejection, |_| false);
        let ejected = |addr: &SocketAddr| {
            review
                .ejected
                .binary_search_by(|(e, _)| e.cmp(addr))
                .is_ok()
        };
        let mut order: Vec<SocketAddr> = candidates
            .preferred
            .iter()
            .filter(|a| !ejected(a))
            .copied()
            .collect();
        if !order.is_empty() {
            let turn = self.core.cursor.fetch_add(1, Ordering::Relaxed);
            let len = order.len();
            order.rotate_left(turn % len);
        }
        order.extend(
            candidates
                .all
                .iter()
                .filter(|a| !ejected(a) && candidates.preferred.binary_search(a).is_err()),
        );
        let mut late: Vec<(std::time::Instant, SocketAddr)> = review
            .ejected
            .iter()
            .filter(|(a, _)| candidates.all.binary_search(a).is_ok())
            .map(|(a, until)| (*until, *a))
            .collect();
        late.sort_unstable();
        order.extend(late.into_iter().map(|(_, a)| a));
        order
    }
}

/// How many picks to let pass before the next look at the clock, after `stride` picks took
/// `since`. While they took less than a millisecond, twice as many (up to [`MAX_STRIDE`]), so
/// the clock costs next to nothing on a busy thread and the looks stay under two milliseconds
/// apart; else at the next pick, where the clock costs nothing either.
fn next_stride(stride: u32, since: Duration) -> u32 {
    if since < Duration::from_millis(1) {
        stride.saturating_mul(2).min(MAX_STRIDE)
    } else {
        1
    }
}

/// What a thread rotates over, given the candidates and the ejected addresses (sorted):
/// the rotation, the fallback when it is empty, and the first end of an ejection that matters.
fn rotation(
    candidates: &Candidates,
    ejected: &[(SocketAddr, Instant)],
) -> (Addresses, Option<SocketAddr>, Option<Instant>) {
    let ejection = |addr: &SocketAddr| {
        ejected
            .binary_search_by(|(e, _)| e.cmp(addr))
            .ok()
            .map(|i| ejected[i].1)
    };
    let relevant: Vec<(Instant, SocketAddr)> = candidates
        .all
        .iter()
        .filter_map(|a| ejection(a).map(|until| (until, *a)))
        .collect();
    if relevant.is_empty() {
        return (candidates.preferred.clone(), None, None);
    }
    let next_expiry = relevant.iter().map(|(until, _)| *until).min();
    let healthy = |from: &[SocketAddr]| -> Vec<SocketAddr> {
        from.iter()
            .filter(|a| ejection(a).is_none())
            .copied()
            .collect()
    };
    let mut rotation = healthy(&candidates.preferred);
    if rotation.is_empty() {
        rotation = healthy(&candidates.all);
    }
    let fallback = if rotation.is_empty() {
        relevant.iter().min().map(|(_, a)| *a)
    } else {
        None
    };
    (Addresses::from(rotation), fallback, next_expiry)
}

/// Failover for plain `std` code: `TcpStream::connect(&picker)` tries the addresses in
/// turn, those not ejected first (see `Picker::connect_with` for the order's rules), so a
/// dead pod costs one refused connect, not a failed request.
///
/// The limits are std's: `connect` does not say which address failed, so nothing is reported
/// to the picker and a dead pod stays in the rotation (use
/// [`connect_with`](Picker::connect_with), which reports); and `connect` has no timeout, so a
/// pod that does not answer at all (its node died) holds the connect for the system's TCP
/// timeout, minutes, before the next address is tried. Returns an error of kind
/// [`NotFound`](io::ErrorKind::NotFound) when the Service has no endpoint.
///
/// ```
/// # use std::net::{TcpListener, TcpStream};
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// # let server = FakeApiServer::start()?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let port = listener.local_addr()?.port();
/// # server.set_endpoints("prod", "echo", &[("tcp", port)], &[Pod::new("echo-1", [127, 0, 0, 1])]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:tcp")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// # resolver.wait_ready(Duration::from_secs(5))?;
/// let picker = resolver.picker();
/// let stream = TcpStream::connect(&picker)?;
/// assert_eq!(stream.peer_addr()?.port(), port);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl ToSocketAddrs for Picker {
    type Iter = std::vec::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        let order = self.failover_order();
        if order.is_empty() {
            return Err(no_endpoint());
        }
        Ok(order.into_iter())
    }
}

impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefs = &self.core.prefs;
        f.debug_struct("Picker")
            .field("version", &self.hub.version())
            .field("zone", &prefs.zone)
            .field("node", &prefs.node)
            .field("family", &prefs.family)
            .field("ejection", &self.core.ejection)
            .field("attempts", &self.core.attempts)
            .finish()
    }
}
