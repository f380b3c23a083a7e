//! What the resolver publishes: an immutable, cheaply cloned set of endpoints to use, and
//! those that are shutting down.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

mod book;
mod listing;

pub(crate) use book::Book;
pub use listing::Listing;
pub(crate) use listing::{sort_and_dedup, Run};

/// The conditions of an endpoint, as the API reports them.
///
/// A terminating endpoint is never ready (even when a Service publishes not-ready
/// addresses). `serving` is `true` unless the API says otherwise (EndpointSlices only;
/// core/v1 Endpoints cannot say, and list no terminating pod). `null` conditions mean the
/// [`Default`]: ready, serving, not terminating. The API may add conditions, and so may this
/// type (`#[non_exhaustive]`): read its fields, compare it with `Conditions::default()`.
///
/// A snapshot's [`endpoints`](Snapshot::endpoints) are the ready ones, as long as there is
/// one. When there is none, they are those still `serving` while `terminating`, as kube-proxy
/// does (KEP-1669): a one-replica Deployment rolled with `maxSurge: 0` stops its pod before
/// the new one is ready, and the old pod, serving in its grace period, is the only one left.
/// [`Snapshot::terminating`] lists every terminating endpoint, used or not.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
/// # use kuberesolver::{Conditions, Config, Resolver};
/// # let server = FakeApiServer::start()?;
/// let ports = [("grpc", Some(8080))];
/// let old = Pod::new("echo-1", [10, 0, 0, 1]);
/// let new = Pod::new("echo-2", [10, 0, 0, 2]);
/// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &ports, &[
///     old.clone().terminating(true),
///     new.clone().ready(false),
/// ]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .spawn()?;
/// let updates = resolver.updates();
/// // echo-2 is not ready yet: echo-1, terminating but still serving, is used meanwhile.
/// let snapshot = updates.recv_timeout(Duration::from_secs(5))?;
/// let conditions = snapshot.endpoints()[0].conditions();
/// assert!(!conditions.ready && conditions.serving && conditions.terminating);
/// // echo-2 is ready: only echo-2 is used.
/// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &ports, &[
///     old.terminating(true),
///     new,
/// ]);
/// let snapshot = updates.recv_timeout(Duration::from_secs(5))?;
/// assert_eq!(snapshot.endpoints()[0].pod(), Some("echo-2"));
/// assert_eq!(snapshot.endpoints()[0].conditions(), Conditions::default());
/// assert_eq!(snapshot.terminating()[0].pod(), Some("echo-1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Conditions {
    /// The pod passes its readiness probe and is not terminating.
    pub ready: bool,
    /// The pod passes its readiness probe, terminating or not.
    pub serving: bool,
    /// The pod is shutting down.
    pub terminating: bool,
}

impl Default for Conditions {
    /// Ready, serving, not terminating: what `null` conditions mean.
    fn default() -> Self {
        Conditions {
            ready: true,
            serving: true,
            terminating: false,
        }
    }
}

/// One address of the Service, with the details the API gives about it.
///
/// Cheap to clone (one `Arc`), so snapshots are rebuilt quickly after each change. The
/// details other than the address are `None` (or empty) when the API leaves them out; the
/// zone and the topology hints come only from EndpointSlices. `Display` writes the address,
/// then the pod name when known.
///
/// ```
/// # use std::net::{IpAddr, SocketAddr};
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver};
/// # let server = FakeApiServer::start()?;
/// let pod = Pod::new("echo-1", [10, 0, 0, 1]).node("node-a").zone("eu-west-1a").hostname("e1");
/// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &[("grpc", Some(8080))], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .spawn()?;
/// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
/// let endpoint = &snapshot.endpoints()[0];
/// assert_eq!(endpoint.addr(), SocketAddr::from(([10, 0, 0, 1], 8080)));
/// assert_eq!((endpoint.ip(), endpoint.port()), (IpAddr::from([10, 0, 0, 1]), 8080));
/// assert_eq!(endpoint.pod(), Some("echo-1"));
/// assert_eq!(endpoint.node(), Some("node-a"));
/// assert_eq!(endpoint.zone(), Some("eu-west-1a"));
/// assert_eq!(endpoint.hostname(), Some("e1"));
/// assert!(endpoint.conditions().ready);
/// assert_eq!(endpoint.to_string(), r#"10.0.0.1:8080 ("echo-1")"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(Arc<EndpointData>);

/// The fields of an [`Endpoint`]; ordered by address first.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EndpointData {
    pub addr: SocketAddr,
    pub details: Details,
}

/// What the API says about an endpoint besides its address (the same for each of its ports).
/// The default: nothing known, ready.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Details {
    pub hostname: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub zone: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
    pub conditions: Conditions,
    /// `hints.forZones`: the zones whose clients should use this endpoint.
    pub zone_hints: Box<[Arc<str>]>,
    /// `hints.forNodes`: the nodes whose clients should use this endpoint.
    pub node_hints: Box<[Arc<str>]>,
}

impl EndpointData {
    /// An address with no details, ready.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn at(addr: SocketAddr) -> EndpointData {
        EndpointData {
            addr,
            details: Details::default(),
        }
    }
}

impl Endpoint {
    pub(crate) fn new(data: EndpointData) -> Endpoint {
        Endpoint(Arc::new(data))
    }

    /// Whether `self` and `other` differ at most in their conditions: the same pod at the
    /// same address, which may have started terminating.
    fn same_but_conditions(&self, other: &Endpoint) -> bool {
        let (a, b) = (&self.0.details, &other.0.details);
        self.0.addr == other.0.addr
            && (&a.hostname, &a.node, &a.zone, &a.pod) == (&b.hostname, &b.node, &b.zone, &b.pod)
            && (&a.zone_hints, &a.node_hints) == (&b.zone_hints, &b.node_hints)
    }

    /// The address to connect to: the pod IP and the chosen port.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// The pod IP.
    pub fn ip(&self) -> IpAddr {
        self.0.addr.ip()
    }

    /// The chosen port.
    pub fn port(&self) -> u16 {
        self.0.addr.port()
    }

    /// The endpoint's `hostname`, set for pods of headless Services with a subdomain.
    pub fn hostname(&self) -> Option<&str> {
        self.0.details.hostname.as_deref()
    }

    /// The node the pod runs on (`nodeName`).
    pub fn node(&self) -> Option<&str> {
        self.0.details.node.as_deref()
    }

    /// The zone of the node (EndpointSlices only).
    pub fn zone(&self) -> Option<&str> {
        self.0.details.zone.as_deref()
    }

    /// The name of the pod behind the address (`targetRef` of kind Pod).
    pub fn pod(&self) -> Option<&str> {
        self.0.details.pod.as_deref()
    }

    /// The endpoint's conditions: see [`Conditions`] for when a snapshot uses an endpoint
    /// that is not ready.
    pub fn conditions(&self) -> Conditions {
        self.0.details.conditions
    }

    /// The zones whose clients should use this endpoint (`hints.forZones`, EndpointSlices
    /// only): set by the EndpointSlice controller for topology-aware routing
    /// (`trafficDistribution: PreferClose`, or the annotation `topology-mode: Auto`). A
    /// [zone-aware picker](crate::Picker#zone-and-node-aware-picking) follows them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver};
    /// # let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).zone("eu-west-1a").zone_hints(["eu-west-1a"]);
    /// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &[("grpc", Some(8080))], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .spawn()?;
    /// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
    /// let endpoint = &snapshot.endpoints()[0];
    /// assert_eq!(endpoint.zone_hints().collect::<Vec<_>>(), ["eu-west-1a"]);
    /// assert_eq!(endpoint.node_hints().len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn zone_hints(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.details.zone_hints.iter().map(|z| &**z)
    }

    /// The nodes whose clients should use this endpoint (`hints.forNodes`, EndpointSlices
    /// only, Kubernetes 1.33 and later): set for `trafficDistribution: PreferSameNode`. A
    /// [node-aware picker](crate::Picker::prefer_node) follows them.
    pub fn node_hints(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.details.node_hints.iter().map(|n| &**n)
    }

    /// An endpoint with only an address, for tests.
    #[cfg(test)]
    pub(crate) fn bare(addr: SocketAddr) -> Endpoint {
        Endpoint::new(EndpointData::at(addr))
    }

    #[cfg(test)]
    pub(crate) fn with_zone(addr: SocketAddr, zone: Option<&str>) -> Endpoint {
        let mut data = EndpointData::at(addr);
        data.details.zone = zone.map(Arc::from);
        Endpoint::new(data)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Endpoint {
    /// `addr` then the pod name, quoted, when known: `10.0.0.1:8080 ("echo-6f9c-abcde")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.addr)?;
        if let Some(pod) = &self.0.details.pod {
            write!(f, " ({pod:?})")?;
        }
        Ok(())
    }
}

/// The addresses of a snapshot: sorted, de-duplicated, and cheap to clone.
///
/// Derefs to `[SocketAddr]`, so it indexes, iterates and slices like one. Cloning is one
/// atomic increment; two `Addresses` are equal when they hold the same addresses.
///
/// ```
/// # use std::net::SocketAddr;
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// # let server = FakeApiServer::start()?;
/// # let pods = [Pod::new("echo-2", [10, 0, 0, 2]), Pod::new("echo-1", [10, 0, 0, 1])];
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// # resolver.wait_ready(Duration::from_secs(5))?;
/// let addrs = resolver.addresses();
/// assert_eq!(addrs.len(), 2);
/// assert_eq!(addrs[0], SocketAddr::from(([10, 0, 0, 1], 8080))); // sorted
/// for addr in addrs.iter() {
///     println!("{addr}");
/// }
/// assert_eq!(addrs, resolver.snapshot().addresses());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Addresses {
    /// The addresses, then room for more: a publisher that holds the only reference writes
    /// the next snapshot's addresses into it, instead of allocating (see `book.rs`).
    buf: Arc<[SocketAddr]>,
    len: usize,
}

impl Deref for Addresses {
    type Target = [SocketAddr];
    #[inline]
    fn deref(&self) -> &[SocketAddr] {
        // `len` never exceeds the buffer; the whole buffer would be the answer otherwise.
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

impl PartialEq for Addresses {
    fn eq(&self, other: &Addresses) -> bool {
        **self == **other
    }
}

impl Eq for Addresses {}

impl std::hash::Hash for Addresses {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Addresses {
    /// Where the addresses are in memory, and how many the buffer there holds.
    #[cfg(test)]
    pub(crate) fn buffer(&self) -> (*const SocketAddr, usize) {
        (Arc::as_ptr(&self.buf).cast(), self.buf.len())
    }

    /// Whether both are the same addresses in memory, not copies.
    #[cfg(test)]
    pub(crate) fn shares(&self, other: &Addresses) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf) && self.len == other.len
    }
}

impl From<Vec<SocketAddr>> for Addresses {
    /// These addresses, as they are (the caller keeps them sorted where that matters).
    fn from(addrs: Vec<SocketAddr>) -> Addresses {
        let buf: Arc<[SocketAddr]> = Arc::from(addrs);
        Addresses {
            len: buf.len(),
            buf,
        }
    }
}

/// The state of the Service at one moment: the endpoints to use, those shutting down, and a
/// version.
///
/// Cloning is one atomic increment. Versions start at 1 for the first resolution and grow by
/// one with each published change; version 0 is the empty "not resolved yet" snapshot.
/// Get one from [`Resolver::snapshot`](crate::Resolver::snapshot),
/// [`Resolver::wait_ready`](crate::Resolver::wait_ready) or [`Updates`](crate::Updates).
///
/// ```
/// # use std::net::SocketAddr;
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
/// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
/// assert_eq!(snapshot.version(), 1); // the first resolution
/// assert_eq!(snapshot.len(), 1);
/// assert!(!snapshot.is_empty());
/// assert_eq!(snapshot.addresses()[..], [SocketAddr::from(([10, 0, 0, 1], 8080))]);
/// assert_eq!(snapshot.endpoints()[0].pod(), Some("echo-1"));
/// assert!(snapshot.published_at().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Snapshot(Arc<Inner>);

struct Inner {
    version: u64,
    addresses: Addresses,
    /// What the snapshot was made of: each object's listed endpoints.
    listing: Listing,
    /// The endpoints to use and the terminating ones, flattened from `listing` when first
    /// asked for (a snapshot made from the previous one has only its addresses at first).
    flat: OnceLock<Flat>,
    /// How many endpoints are terminating, known without flattening.
    terminating: usize,
    at: Option<SystemTime>,
}

/// The endpoints of a snapshot, one per address, sorted by address.
struct Flat {
    used: Vec<Endpoint>,
    terminating: Vec<Endpoint>,
}

impl Flat {
    /// The endpoints of `listed` (sorted, one per address) a snapshot uses, and its
    /// terminating ones. The used ones are `listed` itself, filtered in place: a Service's
    /// endpoints are cloned once, not twice.
    fn of(mut listed: Vec<Endpoint>) -> Flat {
        let any_ready = listed.iter().any(|e| e.conditions().ready);
        let terminating = listed
            .iter()
            .filter(|e| e.conditions().terminating)
            .cloned()
            .collect();
        listed.retain(|e| used(e.conditions(), any_ready));
        Flat {
            used: listed,
            terminating,
        }
    }
}

/// Whether an endpoint with `conditions` is used, given whether any endpoint is ready: the
/// ready ones, else those serving while terminating (kube-proxy's rule, KEP-1669).
fn used(conditions: Conditions, any_ready: bool) -> bool {
    if any_ready {
        conditions.ready
    } else {
        conditions.serving && conditions.terminating
    }
}

impl Snapshot {
    /// The snapshot before the first resolution: version 0, empty.
    pub(crate) fn unresolved() -> Snapshot {
        Snapshot::from_listing(0, Listing::default())
    }

    /// A snapshot of `listed`: the endpoints the API lists as ready or terminating (others
    /// are left out), sorted and de-duplicated by address here.
    #[cfg(test)]
    pub(crate) fn new(version: u64, listed: &[Endpoint]) -> Snapshot {
        Snapshot::from_listing(version, Listing::from(listed.to_vec()))
    }

    /// A snapshot of `listing`, flattened now.
    pub(crate) fn from_listing(version: u64, listing: Listing) -> Snapshot {
        let flat = Flat::of(listing.flatten());
        let addresses = Addresses::from(flat.used.iter().map(Endpoint::addr).collect::<Vec<_>>());
        let terminating = flat.terminating.len();
        Snapshot(Arc::new(Inner {
            version,
            addresses,
            listing,
            flat: OnceLock::from(flat),
            terminating,
            at: (version > 0).then(SystemTime::now),
        }))
    }

    /// A snapshot of `listing` whose addresses in use and count of terminating endpoints
    /// are known: its endpoints are flattened when first asked for.
    fn listed(
        version: u64,
        listing: Listing,
        addresses: Addresses,
        terminating: usize,
    ) -> Snapshot {
        Snapshot(Arc::new(Inner {
            version,
            addresses,
            listing,
            flat: OnceLock::new(),
            terminating,
            at: Some(SystemTime::now()),
        }))
    }

    fn flat(&self) -> &Flat {
        self.0
            .flat
            .get_or_init(|| Flat::of(self.0.listing.flatten()))
    }

    /// Whether the endpoints were flattened (made from scratch, or asked for).
    #[cfg(test)]
    pub(crate) fn is_flat(&self) -> bool {
        self.0.flat.get().is_some()
    }

    /// How many endpoints are terminating: `terminating().len()`, without flattening.
    pub(crate) fn terminating_len(&self) -> usize {
        self.0.terminating
    }

    /// The version: 0 before the first resolution, then +1 per published change.
    ///
    /// A resolver publishes a snapshot only when the endpoints, the terminating ones or their
    /// details change, so two of its snapshots with the same version hold the same endpoints.
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
    /// let d = Duration::from_secs(5);
    /// assert_eq!(updates.recv_timeout(d)?.version(), 1); // the first resolution
    /// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    /// assert_eq!(updates.recv_timeout(d)?.version(), 2); // one change
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// The addresses to use, sorted and de-duplicated: those of [`endpoints`](Self::endpoints).
    pub fn addresses(&self) -> Addresses {
        self.0.addresses.clone()
    }

    /// The endpoints to use, with their details, in the order of
    /// [`addresses`](Self::addresses): the ready ones, or, while none is ready, those still
    /// serving while terminating (see [`Conditions`]).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.flat().used
    }

    /// Every terminating endpoint the API lists, serving or not, sorted by address: pods
    /// shutting down, which finish their in-flight work but should get no new work. They are
    /// in [`endpoints`](Self::endpoints) too while no endpoint is ready and they still serve.
    /// Always empty with core/v1 Endpoints, which leave terminating pods out.
    pub fn terminating(&self) -> &[Endpoint] {
        &self.flat().terminating
    }

    /// The number of addresses to use.
    pub fn len(&self) -> usize {
        self.0.addresses.len()
    }

    /// Whether there is no address to use.
    ///
    /// An empty snapshot is the API's word that the Service has no ready endpoint (and none
    /// serving while terminating); it is published (even as the first resolution), while
    /// failures never publish.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// let unready = Pod::new("echo-1", [10, 0, 0, 1]).ready(false);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[unready]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
    /// assert!(snapshot.is_empty());
    /// assert_eq!((snapshot.version(), snapshot.len()), (1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.addresses.is_empty()
    }

    /// When this snapshot was published (`None` for the unresolved snapshot).
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
    /// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
    /// let published = snapshot.published_at().expect("a resolved snapshot has a time");
    /// assert!(published <= std::time::SystemTime::now());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn published_at(&self) -> Option<SystemTime> {
        self.0.at
    }

    /// What changed from `previous` to `self`: endpoints that are used now and were not
    /// ([`added`](Diff::added)), endpoints that were used and are not any more
    /// ([`removed`](Diff::removed)), and endpoints that started terminating
    /// ([`draining`](Diff::draining)).
    ///
    /// An endpoint whose details changed at the same address (say, the IP now belongs to
    /// another pod) shows in `added` (the new one) and `removed` (the old one). An endpoint
    /// that started terminating shows in `draining`, and in `removed` too unless it is still
    /// used for want of a ready one (its conditions alone changed then, which is no change
    /// of use): a connector holding a connection to a removed endpoint closes it at once, or,
    /// when the endpoint is draining, stops opening streams on it and closes it once its
    /// in-flight work is done.
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
    /// let previous = updates.recv_timeout(Duration::from_secs(5))?; // echo-1
    /// // A rolling deploy replaces echo-1 with echo-2.
    /// let pod = Pod::new("echo-2", [10, 0, 0, 2]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let current = updates.recv_timeout(Duration::from_secs(5))?;
    /// let diff = current.diff(&previous);
    /// assert_eq!(diff.added[0].pod(), Some("echo-2"));
    /// assert_eq!(diff.removed[0].pod(), Some("echo-1"));
    /// assert!(current.diff(&current).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn diff(&self, previous: &Snapshot) -> Diff {
        let mut diff = Diff::default();
        // The endpoint of `self` that was used in `previous` as `old` and now terminates.
        let started_terminating = |old: &Endpoint| {
            let i = self
                .terminating()
                .binary_search_by(|t| t.addr().cmp(&old.addr()))
                .ok()?;
            let new = &self.terminating()[i];
            (!old.conditions().terminating && new.same_but_conditions(old)).then_some(new)
        };
        // Both lists are sorted by address with one entry per address: one merge walk.
        let (mut new, mut old) = (
            self.endpoints().iter().peekable(),
            previous.endpoints().iter().peekable(),
        );
        loop {
            let order = match (new.peek(), old.peek()) {
                (None, None) => return diff,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(n), Some(o)) => n.addr().cmp(&o.addr()),
            };
            match order {
                std::cmp::Ordering::Less => diff.added.extend(new.next().cloned()),
                std::cmp::Ordering::Greater => {
                    if let Some(o) = old.next() {
                        diff.draining.extend(started_terminating(o).cloned());
                        diff.removed.push(o.clone());
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(n), Some(o)) = (new.next(), old.next()) {
                        if !n.same_but_conditions(o) {
                            diff.added.push(n.clone());
                            diff.removed.push(o.clone());
                        } else if let Some(t) = started_terminating(o) {
                            diff.draining.push(t.clone());
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.0.version)
            .field("addresses", &self.0.addresses)
            .finish()
    }
}

/// The difference between two snapshots, from [`Snapshot::diff`].
///
/// Each list is sorted by address. The default is the empty difference. It may gain fields
/// (`#[non_exhaustive]`), so it is made only by [`Snapshot::diff`] and `Diff::default()`.
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
/// let before = updates.recv_timeout(Duration::from_secs(5))?;
/// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
/// let diff = updates.recv_timeout(Duration::from_secs(5))?.diff(&before);
/// let added: Vec<String> = diff.added.iter().map(|e| e.to_string()).collect();
/// assert_eq!(added, [r#"10.0.0.2:8080 ("echo-2")"#]);
/// assert!(diff.removed.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diff {
    /// Endpoints used in the new snapshot and not in the old one.
    pub added: Vec<Endpoint>,
    /// Endpoints used in the old snapshot and not in the new one: they left the Service,
    /// turned unready, or started terminating (then they are in `draining` too).
    pub removed: Vec<Endpoint>,
    /// Endpoints used in the old snapshot that started terminating, as the new snapshot
    /// shows them: their pods are shutting down and finish their in-flight work. They are in
    /// the new snapshot's [`terminating`](Snapshot::terminating); in `removed` too, unless
    /// the new snapshot still uses them because no endpoint is ready.
    pub draining: Vec<Endpoint>,
}

impl Diff {
    /// Whether nothing changed: every list is empty.
    ///
    /// ```
    /// use kuberesolver::Diff;
    ///
    /// assert!(Diff::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.draining.is_empty()
    }
}

#[cfg(test)]
mod tests;
