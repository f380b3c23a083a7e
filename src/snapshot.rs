//! What the resolver publishes: an immutable, cheaply cloned set of ready endpoints.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

/// The conditions of an endpoint, as the API reports them.
///
/// A snapshot holds only ready endpoints, and a terminating endpoint is never ready, so in a
/// snapshot `ready` is always `true` and `terminating` always `false`: a pod that starts
/// shutting down leaves the snapshot at once. `serving` is `true` unless the API says
/// otherwise (EndpointSlices only; core/v1 Endpoints cannot say). `null` conditions mean the
/// [`Default`]: ready, serving, not terminating. The API may add conditions, and so may this
/// type (`#[non_exhaustive]`): read its fields, compare it with `Conditions::default()`.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
/// # use kuberesolver::{Conditions, Config, Resolver};
/// # let server = FakeApiServer::start()?;
/// server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &[("grpc", Some(8080))], &[
///     Pod::new("echo-1", [10, 0, 0, 1]),
///     Pod::new("echo-2", [10, 0, 0, 2]).terminating(true),
/// ]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .spawn()?;
/// let snapshot = resolver.wait_ready(Duration::from_secs(5))?;
/// assert_eq!(snapshot.len(), 1); // echo-2 is terminating, so not ready
/// let conditions = snapshot.endpoints()[0].conditions();
/// assert!(conditions.ready && conditions.serving && !conditions.terminating);
/// assert_eq!(conditions, Conditions::default());
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

/// One ready address of the Service, with the details the API gives about it.
///
/// Cheap to clone (one `Arc`), so snapshots are rebuilt quickly after each change. The
/// details other than the address are `None` when the API leaves them out; the zone comes
/// only from EndpointSlices. `Display` writes the address, then the pod name when known.
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
    pub hostname: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub zone: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
    pub conditions: Conditions,
}

impl Endpoint {
    pub(crate) fn new(data: EndpointData) -> Endpoint {
        Endpoint(Arc::new(data))
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
        self.0.hostname.as_deref()
    }

    /// The node the pod runs on (`nodeName`).
    pub fn node(&self) -> Option<&str> {
        self.0.node.as_deref()
    }

    /// The zone of the node (EndpointSlices only).
    pub fn zone(&self) -> Option<&str> {
        self.0.zone.as_deref()
    }

    /// The name of the pod behind the address (`targetRef` of kind Pod).
    pub fn pod(&self) -> Option<&str> {
        self.0.pod.as_deref()
    }

    /// The endpoint's conditions.
    pub fn conditions(&self) -> Conditions {
        self.0.conditions
    }

    /// An endpoint with only an address and maybe a zone, for tests.
    #[cfg(test)]
    pub(crate) fn bare(addr: SocketAddr) -> Endpoint {
        Endpoint::with_zone(addr, None)
    }

    #[cfg(test)]
    pub(crate) fn with_zone(addr: SocketAddr, zone: Option<&str>) -> Endpoint {
        Endpoint::new(EndpointData {
            addr,
            hostname: None,
            node: None,
            zone: zone.map(Arc::from),
            pod: None,
            conditions: Conditions::default(),
        })
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
        if let Some(pod) = &self.0.pod {
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
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Addresses(Arc<[SocketAddr]>);

impl Deref for Addresses {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.0
    }
}

impl fmt::Debug for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Addresses {
    pub(crate) fn shared(&self) -> &Arc<[SocketAddr]> {
        &self.0
    }
}

/// The state of the Service at one moment: its ready endpoints and a version.
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
    endpoints: Vec<Endpoint>,
    at: Option<SystemTime>,
}

impl Snapshot {
    /// The snapshot before the first resolution: version 0, empty.
    pub(crate) fn unresolved() -> Snapshot {
        Snapshot(Arc::new(Inner {
            version: 0,
            addresses: Addresses(Arc::from(Vec::new())),
            endpoints: Vec::new(),
            at: None,
        }))
    }

    /// A new snapshot of sorted, de-duplicated endpoints.
    pub(crate) fn new(version: u64, endpoints: Vec<Endpoint>) -> Snapshot {
        let addresses: Vec<SocketAddr> = endpoints.iter().map(Endpoint::addr).collect();
        Snapshot(Arc::new(Inner {
            version,
            addresses: Addresses(Arc::from(addresses)),
            endpoints,
            at: Some(SystemTime::now()),
        }))
    }

    /// The version: 0 before the first resolution, then +1 per published change.
    ///
    /// A resolver publishes a snapshot only when the ready endpoints or their details change,
    /// so two of its snapshots with the same version hold the same endpoints.
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

    /// The ready addresses, sorted and de-duplicated.
    pub fn addresses(&self) -> Addresses {
        self.0.addresses.clone()
    }

    /// The ready endpoints with their details, in the order of [`addresses`](Self::addresses).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.0.endpoints
    }

    /// The number of ready addresses.
    pub fn len(&self) -> usize {
        self.0.endpoints.len()
    }

    /// Whether there is no ready address.
    ///
    /// An empty snapshot is the API's word that the Service has no ready endpoint; it is
    /// published (even as the first resolution), while failures never publish.
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
        self.0.endpoints.is_empty()
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

    /// What changed from `previous` to `self`: endpoints that appeared and ones that left.
    ///
    /// An endpoint whose details changed at the same address (say, the IP now belongs to
    /// another pod) shows in both lists, the new one in `added` and the old one in `removed`.
    /// An endpoint that starts terminating is no longer ready: it shows in `removed` only.
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
        // Both lists are sorted by address with one entry per address: one merge walk.
        let (mut new, mut old) = (
            self.endpoints().iter().peekable(),
            previous.endpoints().iter().peekable(),
        );
        let mut diff = Diff::default();
        loop {
            match (new.peek(), old.peek()) {
                (None, None) => return diff,
                (Some(_), None) => diff.added.extend(new.by_ref().cloned()),
                (None, Some(_)) => diff.removed.extend(old.by_ref().cloned()),
                (Some(n), Some(o)) => match n.addr().cmp(&o.addr()) {
                    std::cmp::Ordering::Less => diff.added.extend(new.next().cloned()),
                    std::cmp::Ordering::Greater => diff.removed.extend(old.next().cloned()),
                    std::cmp::Ordering::Equal => {
                        if n != o {
                            diff.added.push((*n).clone());
                            diff.removed.push((*o).clone());
                        }
                        new.next();
                        old.next();
                    }
                },
            }
        }
    }

    pub(crate) fn same_endpoints(&self, endpoints: &[Endpoint]) -> bool {
        self.0.endpoints == endpoints
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
/// Both lists are sorted by address. The default is the empty difference. It may gain fields
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
    /// Endpoints in the new snapshot and not in the old one.
    pub added: Vec<Endpoint>,
    /// Endpoints in the old snapshot and not in the new one.
    pub removed: Vec<Endpoint>,
}

impl Diff {
    /// Whether nothing changed: both lists are empty.
    ///
    /// ```
    /// use kuberesolver::Diff;
    ///
    /// assert!(Diff::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}
