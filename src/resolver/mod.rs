//! The public handle: [`Resolver`] owns the watcher thread and hands out its readers.
//! `builder.rs` adds the ways to make one (`Resolver::spawn`, `Resolver::builder`) and the
//! [`Builder`] they return, so that this file and that one do not name each other.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::publish::{Hub, Updates};
use crate::snapshot::{Addresses, Snapshot};
use crate::watches::Membership;
use crate::{Error, Picker, Status, Target};

mod builder;

pub use builder::Builder;

/// Resolves one Kubernetes Service to the ready addresses of its pods, and keeps them current.
///
/// A watcher thread lists and then watches the Service's endpoints. Reading (`addresses`,
/// `snapshot`, `picker().pick()`) never waits for the network. Dropping the last resolver of
/// a watch stops it at once: the connection is shut (a blocked read ends), every
/// subscription ends, and the thread ends by itself within milliseconds; the drop does not
/// wait for it, so dropping a thousand resolvers is quick. (Two things cannot be interrupted:
/// a TCP connect to a server that drops packets, and a kubeconfig exec credential plugin that
/// is running. That thread ends within the [connect timeout](Builder::connect_timeout) or the
/// plugin's 30 s limit, and sends nothing.)
///
/// Resolvers of the same Service in one process share one watch: one thread, one connection,
/// one list and one watch request, however many there are (one per gRPC channel, per worker,
/// ...), when they reach the same API server with the same [`Config`](crate::Config) (server,
/// credentials, CA, as described), from the same [`Source`](crate::Source), with the same
/// timeouts, backoff and event size cap; the target's port may differ (the watch resolves its
/// state for each port in use). Resolvers that differ in any of these have watches of their
/// own. Each resolver keeps its own pickers and subscriptions: dropping one ends its
/// [`updates`](Self::updates) streams and leaves the others going; the watch stops with the
/// last. Resolvers sharing a watch on one port share its snapshots, versions and
/// [`status`](Self::status): a resolver that joins a running watch starts at the current
/// snapshot and version, and its status counts what the watch did before it joined.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// use kuberesolver::{Config, Resolver, Source};
///
/// # let server = FakeApiServer::start()?;
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// let spawn = || {
///     Resolver::builder("kubernetes:///echo.prod:grpc")
///         .config(Config::new(server.url()))
///         .source(Source::Endpoints)
///         .spawn()
/// };
/// let (a, b) = (spawn()?, spawn()?);
/// a.wait_ready(Duration::from_secs(5))?;
/// b.wait_ready(Duration::from_secs(5))?;
/// let lists = server.requests().iter().filter(|q| q.is_list()).count();
/// assert_eq!(lists, 1); // one watch for both
/// let updates = a.updates();
/// drop(a);
/// assert!(updates.iter().last().is_some()); // a's subscription ends with a
/// assert_eq!(b.addresses().len(), 1); // and b goes on
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```no_run
/// use std::time::Duration;
/// use kuberesolver::Resolver;
///
/// let resolver = Resolver::spawn("kubernetes:///echo.prod:grpc")?;
/// let first = resolver.wait_ready(Duration::from_secs(5))?;
/// println!("{} ready endpoints", first.len());
/// let picker = resolver.picker();
/// let addr = picker.pick(); // round robin over the ready endpoints
/// # Ok::<(), kuberesolver::Error>(())
/// ```
///
/// The same against a simulated cluster, the fake API server of the `testkit` feature
/// (see the [testing guide](crate::guide::testing)):
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::testkit::{FakeApiServer, Pod};
/// use kuberesolver::{Config, Resolver, Source};
///
/// let server = FakeApiServer::start()?;
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
///     .config(Config::new(server.url()))
///     .source(Source::Endpoints)
///     .spawn()?;
/// let first = resolver.wait_ready(Duration::from_secs(5))?;
/// assert_eq!(first.addresses()[0].to_string(), "10.0.0.1:8080");
/// assert_eq!(resolver.picker().pick(), Some(first.addresses()[0]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Keep the resolver for as long as its addresses are wanted: dropping it stops the watcher.
/// A resolver that is dropped at once is a warning (`#[must_use]`), as in
/// `Resolver::spawn(target)?;`. (An explicit `let _ = Resolver::spawn(target)` drops it too,
/// and no lint can see that; bind it to a name.)
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), kuberesolver::Error> {
/// kuberesolver::Resolver::spawn("kubernetes:///echo.prod:grpc")?; // stopped at once
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Resolver stops its watcher; keep it while its addresses are used"]
pub struct Resolver {
    target: Target,
    /// Tags this resolver's subscriptions on the hub it may share.
    id: u64,
    /// Its place on the watch, with the hub of its port. Dropped after `Drop::drop` ended
    /// this resolver's subscriptions; the last one stops the watch.
    membership: Membership,
}

impl Resolver {
    fn new(target: Target, membership: Membership) -> Resolver {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Resolver {
            target,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            membership,
        }
    }

    /// Where this resolver's port of the watch publishes.
    fn hub(&self) -> &Arc<Hub> {
        self.membership.hub()
    }

    /// Wait until the first resolution and return it, or fail after `timeout` with an
    /// [`ErrorKind::NotReady`](crate::ErrorKind::NotReady) error whose
    /// [`cause`](Error::cause) is the last failure (a 403 with the RBAC rule to add, a
    /// connection refused, ...).
    ///
    /// Returns at once when the resolver has resolved already. The first resolution may be
    /// empty: that is the API's answer for a Service without a ready pod.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    /// use kuberesolver::{Config, Resolver, Source};
    ///
    /// let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(Config::new(server.url()))
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// let first = resolver.wait_ready(Duration::from_secs(5))?;
    /// assert_eq!((first.version(), first.len()), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_ready(&self, timeout: Duration) -> Result<Snapshot, Error> {
        self.hub().wait_ready(timeout)
    }

    /// The current addresses to use (see [`Snapshot::addresses`]), sorted and de-duplicated.
    /// Cheap: one `Arc` clone.
    ///
    /// Empty before the first resolution. The same as `snapshot().addresses()`.
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
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// let addrs = resolver.addresses();
    /// assert_eq!(addrs[..], [SocketAddr::from(([10, 0, 0, 1], 8080))]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn addresses(&self) -> Addresses {
        self.hub().current().addresses()
    }

    /// The current snapshot: version, addresses and endpoint details.
    ///
    /// Before the first resolution, the empty snapshot of version 0. Never waits for the
    /// network.
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
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// let snapshot = resolver.snapshot();
    /// assert_eq!(snapshot.version(), 1);
    /// assert_eq!(snapshot.endpoints()[0].pod(), Some("echo-1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        self.hub().current()
    }

    /// A new subscription to snapshots: the current one (once resolved), then each change.
    ///
    /// Latest wins: a subscriber that reads slowly skips to the newest snapshot. See
    /// [`Updates`].
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
    /// let first = updates.recv_timeout(Duration::from_secs(5))?;
    /// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods); // scale up
    /// let next = updates.recv_timeout(Duration::from_secs(5))?;
    /// assert_eq!((first.len(), next.len()), (1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn updates(&self) -> Updates {
        self.hub().subscribe(self.id)
    }

    /// A round-robin picker over the current snapshot, which skips addresses its callers
    /// report failing (see [`Picker`]).
    ///
    /// Each call returns a picker with its own rotation; clones of one picker share theirs.
    /// The health of addresses is shared by every picker of the resolver, and of the resolvers
    /// that share its watch and port: every picker sees every report.
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
    /// let (first, second) = (picker.pick(), picker.pick());
    /// assert_eq!(first, Some(SocketAddr::from(([10, 0, 0, 1], 8080))));
    /// assert_eq!(second, Some(SocketAddr::from(([10, 0, 0, 2], 8080))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn picker(&self) -> Picker {
        Picker::new(self.hub().clone())
    }

    /// Health and counters: whether it resolved, how stale the addresses may be, the last
    /// error, and counts of lists, watches, events and more. See [`Status`].
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
    /// # resolver.wait_ready(Duration::from_secs(5))?;
    /// let status = resolver.status();
    /// assert!(status.resolved);
    /// assert!(status.last_error.is_none());
    /// println!("{} lists, {} events", status.counters.lists, status.counters.events);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Status {
        self.hub().status()
    }

    /// The target, with the namespace filled in.
    ///
    /// A target without a namespace gets the configuration's default namespace at spawn,
    /// else `default`.
    ///
    /// ```
    /// # use kuberesolver::testkit::FakeApiServer;
    /// use kuberesolver::{Config, Resolver};
    ///
    /// # let server = FakeApiServer::start()?;
    /// let resolver = Resolver::builder("kubernetes:///echo:grpc")
    ///     .config(Config::new(server.url()))
    ///     .spawn()?;
    /// assert_eq!(resolver.target().namespace(), Some("default"));
    /// assert_eq!(resolver.target().to_string(), "kubernetes:///echo.default:grpc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for Resolver {
    /// Ends this resolver's subscriptions; then its membership leaves the watch, and the last
    /// one stops the watcher thread (see the type's docs).
    fn drop(&mut self) {
        self.hub().end_subscriptions(self.id);
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("target", &self.target.to_string())
            .field("version", &self.hub().version())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn the_public_handles_can_be_shared_across_threads() {
        send_sync::<Resolver>();
        send_sync::<crate::Picker>();
        send_sync::<Snapshot>();
        send_sync::<Addresses>();
        send_sync::<Updates>();
        send_sync::<Status>();
        send_sync::<Error>();
        send_sync::<crate::Config>();
    }
}
