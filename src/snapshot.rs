//! What the resolver publishes: an immutable, cheaply cloned set of ready endpoints.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

/// The conditions of an endpoint, as the API reports them.
///
/// A snapshot holds only ready endpoints, so `ready` is always `true` there; `serving` and
/// `terminating` tell a caller which of them are draining (EndpointSlices only; core/v1
/// Endpoints cannot say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
/// Cheap to clone (one `Arc`), so snapshots are rebuilt quickly after each change.
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
    /// `addr` then the pod name when known: `10.0.0.1:8080 (echo-6f9c-abcde)`.
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
/// Derefs to `[SocketAddr]`, so it indexes, iterates and slices like one.
///
/// ```
/// # fn demo(resolver: &kuberesolver::Resolver) {
/// let addrs = resolver.addresses();
/// for addr in addrs.iter() {
///     println!("{addr}");
/// }
/// # }
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
    pub fn is_empty(&self) -> bool {
        self.0.endpoints.is_empty()
    }

    /// When this snapshot was published (`None` for the unresolved snapshot).
    pub fn published_at(&self) -> Option<SystemTime> {
        self.0.at
    }

    /// What changed from `previous` to `self`: endpoints that appeared and ones that left.
    ///
    /// An endpoint whose details changed (say, it started terminating) shows in both lists.
    ///
    /// ```
    /// # fn demo(resolver: &kuberesolver::Resolver) {
    /// let mut previous = resolver.snapshot();
    /// for snapshot in resolver.updates().iter() {
    ///     let diff = snapshot.diff(&previous);
    ///     println!("+{} -{}", diff.added.len(), diff.removed.len());
    ///     previous = snapshot;
    /// }
    /// # }
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Endpoints in the new snapshot and not in the old one.
    pub added: Vec<Endpoint>,
    /// Endpoints in the old snapshot and not in the new one.
    pub removed: Vec<Endpoint>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}
