//! What a test does with a running [`FakeApiServer`]: its objects, its behaviour (tokens,
//! RBAC, missing APIs, chunking, faults, failures), and what it observed.

use std::time::Duration;

use serde_json::Value;

use super::faults::{Failure, Fault};
use super::handle::FakeApiServer;
use super::objects::{endpoint_slice_object, endpoints_object, Pod};
use super::record::RequestRecord;
use super::render;
use super::shared::TARGET;
use super::store::FailRule;
use super::types::{AddressType, ChunkMode, Resource, Verb};

/// Objects.
impl FakeApiServer {
    /// Creates or replaces an object; returns its new resourceVersion.
    ///
    /// `object` is stored as given (any JSON object: raw `subsets` work too), with
    /// `metadata.name`, `metadata.namespace` and `metadata.resourceVersion` set by the
    /// server, `metadata.uid` and `metadata.creationTimestamp` kept from the object's
    /// previous state (else the object's own, else new), and `kind`/`apiVersion` removed
    /// (they are added where the real server adds them). Open watches see `ADDED` or
    /// `MODIFIED` (or a selection change as `ADDED`/`DELETED`).
    ///
    /// A namespace that does not exist yet is created first, as if the test had created
    /// it (writes over HTTP, like a real server's, need it to exist). For
    /// [`Resource::Namespaces`] `namespace` is ignored.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    /// use serde_json::json;
    ///
    /// let server = FakeApiServer::start()?;
    /// let rv = server.apply(Resource::Endpoints, "prod", "echo", json!({
    ///     "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 8080}]}],
    /// }));
    /// let stored = server.get(Resource::Endpoints, "prod", "echo").expect("stored");
    /// assert_eq!(stored["metadata"]["resourceVersion"], rv.as_str());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn apply(&self, resource: Resource, namespace: &str, name: &str, object: Value) -> String {
        if !object.is_object() {
            log::debug!(target: TARGET, "apply: not a JSON object ({object}), storing an empty one");
        }
        let mut st = self.core.lock();
        if resource.namespaced() {
            st.ensure_namespace(namespace);
        }
        let rv = st.apply(resource, namespace, name, object);
        drop(st);
        self.core.changed();
        rv.to_string()
    }

    /// Deletes an object; returns the new resourceVersion, or `None` when it did not
    /// exist. Open watches see `DELETED` with its last state. Deleting a namespace deletes
    /// everything in it first.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::echo_server;
    /// use kuberesolver::testkit::Resource;
    ///
    /// # let server = echo_server()?;
    /// assert!(server.delete(Resource::Endpoints, "prod", "echo").is_some());
    /// assert_eq!(server.delete(Resource::Endpoints, "prod", "echo"), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> Option<String> {
        let rv = self.core.lock().delete(resource, namespace, name);
        self.core.changed();
        rv.map(|rv| rv.to_string())
    }

    /// An object as a GET would return it (with `kind` and `apiVersion`).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::echo_server;
    /// use kuberesolver::testkit::Resource;
    ///
    /// # let server = echo_server()?;
    /// let object = server.get(Resource::Endpoints, "prod", "echo").expect("stored");
    /// assert_eq!((&object["kind"], &object["apiVersion"]), (&"Endpoints".into(), &"v1".into()));
    /// assert_eq!(server.get(Resource::Endpoints, "prod", "other"), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let st = self.core.lock();
        let namespace = if resource.namespaced() { namespace } else { "" };
        let obj = st
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))?;
        serde_json::from_str(&render::object_json(resource, obj)).ok()
    }

    /// The current resourceVersion (what a list would return).
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let before = server.resource_version();
    /// let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[]);
    /// assert_eq!(server.resource_version(), rv);
    /// assert_ne!(rv, before); // every change moves it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resource_version(&self) -> String {
        self.core.lock().rv.to_string()
    }

    /// `apply(Resource::Endpoints, ns, name, endpoints_object(ns, name, ports, pods))`.
    ///
    /// The Endpoints object of the Service `name`, as the Endpoints controller writes it:
    /// see [`endpoints_object`]. Calling it again is a rolling update, scaling, or a pod
    /// turning ready; returns the new resourceVersion.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::echo_resolver;
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let starting = Pod::new("echo-2", [10, 0, 0, 2]).ready(false);
    /// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), starting];
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    /// # let resolver = echo_resolver(&server)?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1); // echo-1 only
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_endpoints(
        &self,
        namespace: &str,
        name: &str,
        ports: &[(&str, u16)],
        pods: &[Pod],
    ) -> String {
        self.apply(
            Resource::Endpoints,
            namespace,
            name,
            endpoints_object(namespace, name, ports, pods),
        )
    }

    /// `apply(Resource::EndpointSlices, ns, name, endpoint_slice_object(..))`.
    ///
    /// One slice `name` of the Service `service`: see [`endpoint_slice_object`]. A Service
    /// may have many; returns the new resourceVersion.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let ports = [("grpc", Some(8080))];
    /// let (a, b) = (Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2]));
    /// server.set_endpoint_slice("prod", "echo-a", "echo", AddressType::Ipv4, &ports, &[a]);
    /// server.set_endpoint_slice("prod", "echo-b", "echo", AddressType::Ipv4, &ports, &[b]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::EndpointSlices)
    /// #     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 2); // merged
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_endpoint_slice(
        &self,
        namespace: &str,
        name: &str,
        service: &str,
        address_type: AddressType,
        ports: &[(&str, Option<u16>)],
        pods: &[Pod],
    ) -> String {
        self.apply(
            Resource::EndpointSlices,
            namespace,
            name,
            endpoint_slice_object(namespace, name, service, address_type, ports, pods),
        )
    }

    /// Sets the compaction horizon to the current resourceVersion: from now on a watch
    /// from an older resourceVersion gets the 410 `Expired` ERROR event in a 200 stream.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let old = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[]);
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.compact();
    /// // `get` sends a GET and returns the raw response.
    /// let path = format!("/api/v1/namespaces/prod/endpoints?watch=true&resourceVersion={old}");
    /// let response = get(&server, &path)?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.contains(r#""code":410"#));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn compact(&self) {
        let mut st = self.core.lock();
        st.horizon = st.rv;
    }
}

/// Behaviour: tokens, RBAC, missing APIs, chunking, faults and failures.
impl FakeApiServer {
    /// Sets (or removes) the required bearer token. The previous one is refused from now
    /// on; open watches carry on (end them with [`inject`](Self::inject) if needed).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{add_echo, resolver};
    /// use kuberesolver::testkit::FakeApiServer;
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::builder().token(Some("old".to_owned())).start()?;
    /// # add_echo(&server);
    /// server.set_token(Some("rotated".to_owned())); // "old" gets 401 from now on
    /// # let resolver = resolver(Config::new(server.url()).token("rotated"))?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_token(&self, token: Option<String>) {
        self.core.lock().token = token;
    }

    /// Changes the chunking of every watch, open ones included, from the next event on.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// use kuberesolver::testkit::{ChunkMode, Pod};
    ///
    /// # let server = echo_server()?;
    /// # let resolver = echo_resolver(&server)?;
    /// let updates = resolver.updates();
    /// assert_eq!(updates.recv_timeout(Duration::from_secs(5))?.len(), 1);
    /// server.set_chunk_mode(ChunkMode::Coalesce); // several events per chunk from now on
    /// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    /// assert_eq!(updates.recv_timeout(Duration::from_secs(5))?.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_chunk_mode(&self, mode: ChunkMode) {
        self.core.lock().chunk_mode = mode;
        self.core.changed();
    }

    /// Forbids (or allows again) every request on `resource`: 403 with the real RBAC
    /// message, e.g. `endpoints "echo" is forbidden: User
    /// "system:serviceaccount:default:test" cannot watch resource "endpoints" in API group
    /// "" in the namespace "prod"`.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.forbid(Resource::Endpoints, true);
    /// // `get` sends a GET and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 403"));
    /// server.forbid(Resource::Endpoints, false);
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 200"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn forbid(&self, resource: Resource, forbidden: bool) {
        let mut st = self.core.lock();
        if forbidden {
            st.forbidden.insert(resource);
        } else {
            st.forbidden.remove(&resource);
        }
    }

    /// Removes (or restores) the API of `resource`: its paths answer `404 page not found`
    /// in plain text, as for a group the server does not serve.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.disable(Resource::EndpointSlices, true); // a cluster older than EndpointSlices
    /// // `get` sends a GET and returns the raw response.
    /// let response = get(&server, "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices")?;
    /// assert!(response.starts_with("HTTP/1.1 404"));
    /// assert!(response.ends_with("404 page not found\n"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disable(&self, resource: Resource, disabled: bool) {
        let mut st = self.core.lock();
        if disabled {
            st.disabled.insert(resource);
        } else {
            st.disabled.remove(&resource);
        }
    }

    /// Applies `fault` to every open watch now; returns how many it reached.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// use kuberesolver::testkit::Fault;
    ///
    /// # let server = echo_server()?;
    /// assert_eq!(server.inject(Fault::Reset), 0); // no watch is open yet
    /// # let resolver = echo_resolver(&server)?;
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert_eq!(server.inject(Fault::Expired), 1); // the resolver lists again
    /// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
    ///     requests.iter().filter(|r| r.is_list()).count() == 2
    /// });
    /// assert!(relisted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inject(&self, fault: Fault) -> usize {
        let mut st = self.core.lock();
        for w in st.watches.values_mut() {
            w.faults.push_back(fault.clone());
        }
        let n = st.watches.len();
        drop(st);
        self.core.changed();
        n
    }

    /// Applies `fault` to the next watch that starts streaming, right after its headers
    /// and initial events. Queued: calling it twice affects the next two watches.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Fault};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.inject_next_watch(Fault::EndCleanly);
    /// server.inject_next_watch(Fault::Expired);
    /// // `get` sends a GET and returns the raw response: here, once each watch ended.
    /// get(&server, "/api/v1/namespaces/prod/endpoints?watch=true")?;
    /// get(&server, "/api/v1/namespaces/prod/endpoints?watch=true")?;
    /// let faults: Vec<Vec<Fault>> = server.requests().into_iter().map(|r| r.faults).collect();
    /// assert_eq!(faults, [[Fault::EndCleanly], [Fault::Expired]]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn inject_next_watch(&self, fault: Fault) {
        self.core.lock().next_watch_faults.push_back(fault);
    }

    /// Answers the next `n` requests (any verb, checked before authentication) with
    /// `failure` instead.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{Failure, FakeApiServer};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.fail_next(1, Failure::Unavailable);
    /// // `get` sends a GET and returns the raw response.
    /// let first = get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert!(first.starts_with("HTTP/1.1 503") && first.contains("Retry-After: 1"));
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 200"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fail_next_for(Verb::Any, n, failure);
    }

    /// Answers the next `n` requests of kind `verb` with `failure` instead. Rules queue
    /// up; the first one that matches a request applies.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::{echo_server, get};
    /// use kuberesolver::testkit::{Failure, Verb};
    ///
    /// # let server = echo_server()?;
    /// server.fail_next_for(Verb::List, 1, Failure::InternalError);
    /// // `get` sends a GET and returns the raw response.
    /// let one = get(&server, "/api/v1/namespaces/prod/endpoints/echo")?; // a GET, not a list
    /// assert!(one.starts_with("HTTP/1.1 200"));
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 500"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fail_next_for(&self, verb: Verb, n: usize, failure: Failure) {
        if n == 0 {
            return;
        }
        self.core.lock().failures.push_back(FailRule {
            verb,
            remaining: n,
            failure,
        });
    }

    /// Forgets pending [`fail_next`](Self::fail_next) rules and
    /// [`inject_next_watch`](Self::inject_next_watch) faults.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{Failure, FakeApiServer};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.fail_next(5, Failure::InternalError);
    /// server.clear_failures();
    /// // `get` sends a GET and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 200"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_failures(&self) {
        let mut st = self.core.lock();
        st.failures.clear();
        st.next_watch_faults.clear();
    }
}

/// Observation: watches, requests and connections.
impl FakeApiServer {
    /// How many watches are streaming now (stalled ones included).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// # let server = echo_server()?;
    /// # let resolver = echo_resolver(&server)?;
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert_eq!(server.open_watches(), 1); // the resolver's
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_watches(&self) -> usize {
        self.core.lock().watches.len()
    }

    /// Waits until exactly `n` watches are open; returns whether that happened in time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// # let server = echo_server()?;
    /// # let resolver = echo_resolver(&server)?;
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// drop(resolver); // closes its watch
    /// assert!(server.wait_for_watches(0, Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        self.core.wait_until(timeout, |st| st.watches.len() == n)
    }

    /// Every request received so far (since the last
    /// [`clear_requests`](Self::clear_requests)), in order.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET and returns the raw response.
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// get(&server, "/api/v1/namespaces/dev/endpoints")?;
    /// let namespaces: Vec<_> = server.requests().into_iter().map(|r| r.namespace).collect();
    /// assert_eq!(namespaces, [Some("prod".to_owned()), Some("dev".to_owned())]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.core.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET and returns the raw response.
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// server.clear_requests();
    /// assert!(server.requests().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_requests(&self) {
        self.core.lock().requests.clear();
    }

    /// Waits until `done` holds for the recorded requests; returns whether that happened
    /// in time. E.g. `server.wait_for_requests(d, |r| r.iter().filter(|r| r.is_watch()).count() >= 3)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// # let server = echo_server()?;
    /// # let resolver = echo_resolver(&server)?;
    /// let watching = server.wait_for_requests(Duration::from_secs(5), |requests| {
    ///     requests.iter().any(|r| r.is_watch() && r.status == 200)
    /// });
    /// assert!(watching);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_requests(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[RequestRecord]) -> bool,
    ) -> bool {
        self.core.wait_until(timeout, |st| done(&st.requests))
    }

    /// How many TCP connections have been accepted so far (to check connection reuse).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET with `Connection: close` and returns the raw response.
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert_eq!(server.connections_accepted(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connections_accepted(&self) -> u64 {
        self.core.lock().accepted
    }

    /// How many connections are open now.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
    /// # let server = echo_server()?;
    /// # let resolver = echo_resolver(&server)?;
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert!(server.open_connections() >= 1); // the watch's, at least
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_connections(&self) -> usize {
        self.core.lock().conns.len()
    }
}
