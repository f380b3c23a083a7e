//! An in-process fake Kubernetes API server, for tests and demos (feature `testkit`).
//!
//! [`FakeApiServer`] serves the two APIs a resolver reads, the way the real
//! kube-apiserver does:
//!
//! - core/v1 Endpoints: `GET /api/v1/namespaces/{ns}/endpoints[/{name}]`, with
//!   `fieldSelector=metadata.name=NAME`;
//! - EndpointSlices: `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices[/{name}]`,
//!   with `labelSelector=kubernetes.io/service-name=SVC`.
//!
//! Lists answer `{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":..},"items":[..]}`
//! (items without `kind`/`apiVersion`). Watches (`watch=true`, `1` or empty; `resourceVersion`,
//! `allowWatchBookmarks`, `timeoutSeconds`) stream newline-terminated JSON events in a
//! chunked `200` body: synthetic `ADDED` events from resourceVersion `0` (or unset), a
//! replay of later events from any other resourceVersion, an `ERROR` event with code 410
//! (`Expired`) from a resourceVersion older than the last [`compact`](FakeApiServer::compact),
//! `BOOKMARK`s, and a clean end (terminating zero-size chunk) at `timeoutSeconds`. An
//! object that leaves a watch's selection arrives as `DELETED`, one that enters it as
//! `ADDED`. Errors are `Status` objects (`401`, `403` with the real message shape, `404`,
//! `410`, `500`, `503` with `Retry-After`, ...) except `429`, which is plain text with
//! `Retry-After`, and missing APIs, which answer `404 page not found` in plain text.
//!
//! Everything else is in the test's hands: objects ([`apply`](FakeApiServer::apply),
//! [`set_endpoints`](FakeApiServer::set_endpoints), [`delete`](FakeApiServer::delete)),
//! bearer token and rotation ([`set_token`](FakeApiServer::set_token)), RBAC
//! ([`forbid`](FakeApiServer::forbid)), missing APIs ([`disable`](FakeApiServer::disable)),
//! how events are cut into chunks ([`ChunkMode`]), faults on open watches ([`Fault`],
//! [`inject`](FakeApiServer::inject)), failed answers ([`Failure`],
//! [`fail_next`](FakeApiServer::fail_next)), TLS ([`TlsIdentity`], with embedded test
//! certificates), and a log of every request ([`requests`](FakeApiServer::requests)).
//!
//! The server runs on its own threads (std only, no async). Dropping it, or
//! [`shutdown`](FakeApiServer::shutdown), closes every connection, stalled watches
//! included, and joins its threads.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use kuberesolver::testkit::{FakeApiServer, Pod};
//!
//! let server = FakeApiServer::start()?;
//! let rv = server.set_endpoints(
//!     "prod",
//!     "echo",
//!     &[("grpc", 8080)],
//!     &[Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2]).ready(false)],
//! );
//!
//! // Any HTTP client works; here, a raw request.
//! let mut conn = std::net::TcpStream::connect(server.addr())?;
//! conn.write_all(
//!     b"GET /api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Decho HTTP/1.1\r\n\
//!       Host: kubernetes\r\nConnection: close\r\n\r\n",
//! )?;
//! let mut response = String::new();
//! conn.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.contains(r#""kind":"EndpointsList""#));
//! assert!(response.contains(&format!(r#""resourceVersion":"{rv}""#)));
//! assert!(response.contains(r#""notReadyAddresses":[{"ip":"10.0.0.2""#));
//!
//! let requests = server.requests();
//! assert_eq!(requests.len(), 1);
//! assert!(requests[0].is_list());
//! assert_eq!(requests[0].param("fieldSelector"), Some("metadata.name=echo"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Faults and failures:
//!
//! ```
//! use std::time::Duration;
//! use kuberesolver::testkit::{ChunkMode, Failure, Fault, FakeApiServer, TlsIdentity};
//!
//! let server = FakeApiServer::builder()
//!     .tls(TlsIdentity::test_server())          // trust kuberesolver::testkit::TEST_CA_PEM
//!     .token(Some("secret".to_owned()))         // require `Authorization: Bearer secret`
//!     .chunk_mode(ChunkMode::Split(7))          // cut every event into 7-byte chunks
//!     .bookmark_interval(Duration::from_millis(200))
//!     .max_watch_timeout(Duration::from_secs(2)) // every watch ends cleanly within 2 s
//!     .start()?;
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//!
//! server.fail_next(2, Failure::TooManyRequests { retry_after_secs: 1 }); // two 429s first
//! server.inject_next_watch(Fault::CutMidEvent);  // the next watch breaks mid-event
//! server.inject(Fault::Reset);                   // every open watch: connection reset
//! server.compact();                              // older resourceVersions now get 410
//! server.set_token(Some("rotated".to_owned()));  // "secret" is refused from now on
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

mod http;
mod objects;
mod server;
mod store;
mod tls;
mod watch;

#[cfg(test)]
mod tests;

pub use objects::{endpoint_slice_object, endpoints_object, Pod};
pub use tls::{
    TlsIdentity, BUNDLE_PEM, CLIENT_CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM, OTHER_CA_PEM,
    TEST_CA_PEM,
};

use server::{Config, Shared};
use store::State;

const TARGET: &str = "kuberesolver::testkit";

/// Durations are capped at a year so that `Instant` arithmetic cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The two resources the server knows.
///
/// Names an API in [`FakeApiServer::apply`], [`forbid`](FakeApiServer::forbid),
/// [`disable`](FakeApiServer::disable) and in each [`RequestRecord`].
///
/// ```
/// use kuberesolver::testkit::Resource;
///
/// let slices = Resource::EndpointSlices;
/// assert_eq!((slices.kind(), slices.list_kind()), ("EndpointSlice", "EndpointSliceList"));
/// assert_eq!((slices.group(), slices.api_version()), ("discovery.k8s.io", "discovery.k8s.io/v1"));
/// assert_eq!(slices.plural(), "endpointslices");
/// assert_eq!(
///     slices.collection_path("prod"),
///     "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices",
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// core/v1 `Endpoints` (`/api/v1/namespaces/{ns}/endpoints`).
    Endpoints,
    /// `discovery.k8s.io/v1` `EndpointSlice`
    /// (`/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`).
    EndpointSlices,
}

impl Resource {
    /// The object kind: `Endpoints` or `EndpointSlice`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert_eq!(Resource::Endpoints.kind(), "Endpoints");
    /// ```
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Endpoints => "Endpoints",
            Resource::EndpointSlices => "EndpointSlice",
        }
    }

    /// The list kind: `EndpointsList` or `EndpointSliceList`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert_eq!(Resource::Endpoints.list_kind(), "EndpointsList");
    /// ```
    pub fn list_kind(self) -> &'static str {
        match self {
            Resource::Endpoints => "EndpointsList",
            Resource::EndpointSlices => "EndpointSliceList",
        }
    }

    /// The `apiVersion`: `v1` or `discovery.k8s.io/v1`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert_eq!(Resource::EndpointSlices.api_version(), "discovery.k8s.io/v1");
    /// ```
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Endpoints => "v1",
            Resource::EndpointSlices => "discovery.k8s.io/v1",
        }
    }

    /// The API group: `""` (core) or `discovery.k8s.io`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert_eq!(Resource::Endpoints.group(), "");
    /// ```
    pub fn group(self) -> &'static str {
        match self {
            Resource::Endpoints => "",
            Resource::EndpointSlices => "discovery.k8s.io",
        }
    }

    /// The resource name in URLs and RBAC rules: `endpoints` or `endpointslices`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert_eq!(Resource::EndpointSlices.plural(), "endpointslices");
    /// ```
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Endpoints => "endpoints",
            Resource::EndpointSlices => "endpointslices",
        }
    }

    /// The collection path in `namespace`, e.g. `/api/v1/namespaces/prod/endpoints`.
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// let path = Resource::Endpoints.collection_path("prod");
    /// assert_eq!(path, "/api/v1/namespaces/prod/endpoints");
    /// ```
    pub fn collection_path(self, namespace: &str) -> String {
        match self {
            Resource::Endpoints => format!("/api/v1/namespaces/{namespace}/endpoints"),
            Resource::EndpointSlices => {
                format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
            }
        }
    }

    /// `endpoints` or `endpointslices.discovery.k8s.io`, as in error messages.
    fn qualified(self) -> &'static str {
        match self {
            Resource::Endpoints => "endpoints",
            Resource::EndpointSlices => "endpointslices.discovery.k8s.io",
        }
    }
}

/// How watch events are cut into HTTP chunks. Real servers and proxies do all of these;
/// a client must not care.
///
/// Set with [`Builder::chunk_mode`] or, on a running server, with
/// [`FakeApiServer::set_chunk_mode`]. Default: [`PerEvent`](ChunkMode::PerEvent).
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// use kuberesolver::testkit::ChunkMode;
///
/// // Every event cut into 7-byte chunks: the resolver reassembles them.
/// let server = FakeApiServer::builder().chunk_mode(ChunkMode::Split(7)).start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// let updates = resolver.updates();
/// assert_eq!(updates.recv_timeout(Duration::from_secs(5))?.len(), 1);
/// server.set_chunk_mode(ChunkMode::Coalesce); // several events per chunk from now on
/// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2])];
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
/// assert_eq!(updates.recv_timeout(Duration::from_secs(5))?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChunkMode {
    /// One chunk per event (the default).
    #[default]
    PerEvent,
    /// Every event is sent as several chunks of at most this many bytes, each flushed
    /// separately (events split across chunks; `0` counts as `1`).
    Split(usize),
    /// Events are buffered and several are sent in one chunk: a flush happens once 2 KiB
    /// are buffered, or 5 ms after the first buffered byte (so a lone event still arrives
    /// quickly).
    Coalesce,
}

/// Something that happens to an open watch ([`FakeApiServer::inject`],
/// [`FakeApiServer::inject_next_watch`]).
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// use kuberesolver::testkit::Fault;
///
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
/// // A 410 on the open watch: the resolver lists again at once.
/// assert_eq!(server.inject(Fault::Expired), 1);
/// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
///     requests.iter().filter(|r| r.is_list()).count() == 2
/// });
/// assert!(relisted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// End the body cleanly now (terminating zero-size chunk), as at a timeout.
    EndCleanly,
    /// Close the TCP connection abruptly, without the terminating chunk.
    Reset,
    /// Send the first half of an event line (as a complete chunk), then close abruptly.
    /// The line is a bookmark's, sent at once: nothing the client lacks is in flight.
    CutMidEvent,
    /// Wait for the next object event this watch streams (a change, not a bookmark), send
    /// the first half of its line (as a complete chunk), then close abruptly: the change is
    /// in flight when the connection breaks, and the client never sees all of it.
    CutNextEvent,
    /// Like [`CutNextEvent`](Fault::CutNextEvent), but end the body cleanly after the half
    /// line (terminating zero-size chunk), as a proxy that gives up politely would.
    EndMidNextEvent,
    /// Send nothing more (no events, no bookmarks, no timeout) while keeping the
    /// connection open until shutdown. Faults injected later still apply.
    Stall,
    /// Send this text plus `\n` as an event line (e.g. `{not json`), then carry on.
    Garbage(String),
    /// Send the `ERROR` event with code 410 `Expired`, then end cleanly.
    Expired,
}

/// How a request is answered instead of normally ([`FakeApiServer::fail_next`],
/// [`FakeApiServer::fail_next_for`]).
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// use kuberesolver::testkit::{Failure, Verb};
///
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// // The first watch is refused with 410: the resolver lists again at once.
/// let expired = Failure::status(410, "Expired", "too old resource version");
/// server.fail_next_for(Verb::Watch, 1, expired);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
///     requests.iter().filter(|r| r.is_list()).count() == 2
/// });
/// assert!(relisted);
/// let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
/// assert_eq!(statuses[..2], [200, 410]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A JSON `Status` with this code, reason and message (`Retry-After: 1` added for 429
    /// and 503).
    Status {
        /// HTTP status code, e.g. 410, 422, 504.
        code: u16,
        /// The `reason` field, e.g. `Expired`, `Invalid`, `Timeout`.
        reason: String,
        /// The `message` field.
        message: String,
    },
    /// 429 with a plain-text body and `Retry-After`, as API priority and fairness answers.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// 503 `ServiceUnavailable` Status with `Retry-After: 1`.
    Unavailable,
    /// 500 `InternalError` Status.
    InternalError,
    /// This HTTP status and this body as `application/json`, as is (with a
    /// `Content-Length`): e.g. a `200` whose body is one List or one Status, as a proxy or
    /// mock that does not stream watches answers a watch.
    Body {
        /// HTTP status code, e.g. 200.
        code: u16,
        /// The body, sent byte for byte (no newline added).
        body: String,
    },
    /// Read the request, then close the connection without answering.
    CloseWithoutAnswer,
    /// Read the request and never answer (until shutdown, or until the client gives up).
    Hang,
}

impl Failure {
    /// Shorthand for [`Failure::Status`].
    ///
    /// ```
    /// use kuberesolver::testkit::Failure;
    ///
    /// let failure = Failure::status(504, "Timeout", "the server was too slow");
    /// let Failure::Status { code, reason, message } = failure else { unreachable!() };
    /// assert_eq!((code, reason.as_str()), (504, "Timeout"));
    /// assert_eq!(message, "the server was too slow");
    /// ```
    pub fn status(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure::Status {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The kind of request ([`RequestRecord::verb`]), and a filter for
/// [`FakeApiServer::fail_next_for`].
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// use kuberesolver::testkit::Verb;
///
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
/// let verbs: Vec<Option<Verb>> = server.requests().iter().map(|r| r.verb).collect();
/// assert_eq!(verbs, [Some(Verb::List), Some(Verb::Watch)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Any request (filters only; records never carry it).
    Any,
    /// GET of one object by name.
    Get,
    /// LIST of a collection.
    List,
    /// WATCH (`watch=true`; `watch=1` and an empty `watch=` count too, as on a real server).
    Watch,
}

impl Verb {
    /// The RBAC verb: `*`, `get`, `list` or `watch`.
    ///
    /// ```
    /// use kuberesolver::testkit::Verb;
    ///
    /// assert_eq!(Verb::Watch.as_str(), "watch");
    /// assert_eq!(Verb::Any.as_str(), "*");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Any => "*",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
        }
    }
}

/// One request the server received ([`FakeApiServer::requests`]).
///
/// `Debug` does not print the bearer token; [`bearer_token`](RequestRecord::bearer_token)
/// gives it for assertions.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// # use kuberesolver::{Config, Resolver, Source};
/// use kuberesolver::testkit::Resource;
///
/// # let server = FakeApiServer::start()?;
/// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .source(Source::Endpoints)
/// #     .spawn()?;
/// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
/// let requests = server.requests();
/// let (list, watch) = (&requests[0], &requests[1]);
/// assert_eq!(list.method, "GET");
/// assert_eq!(list.path, "/api/v1/namespaces/prod/endpoints");
/// assert_eq!(list.query[0], ("fieldSelector".to_string(), "metadata.name=echo".to_string()));
/// assert_eq!(list.resource, Some(Resource::Endpoints));
/// assert_eq!(list.namespace.as_deref(), Some("prod"));
/// assert_eq!((list.status, watch.status), (200, 200));
/// assert!(watch.is_watch() && watch.at >= list.at);
/// assert!(!list.authorization); // no token configured
/// assert_eq!(list.host, Some(server.addr().to_string())); // 127.0.0.1:<port>
/// println!("connections: {} then {}", list.connection, watch.connection);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RequestRecord {
    id: u64,
    /// The method, e.g. `GET` (empty when the request line could not be parsed).
    pub method: String,
    /// The URL-decoded path, without the query.
    pub path: String,
    /// The URL-decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Get, List or Watch; `None` when the path is not one of the served APIs.
    pub verb: Option<Verb>,
    /// The resource the path names, if any.
    pub resource: Option<Resource>,
    /// The namespace the path names, if any.
    pub namespace: Option<String>,
    /// When the request was read.
    pub at: Instant,
    /// The HTTP status answered; `0` while unanswered or when never answered
    /// ([`Failure::Hang`], [`Failure::CloseWithoutAnswer`]). Watches record `200` when
    /// the stream starts.
    pub status: u16,
    /// Whether an `Authorization` header was present.
    pub authorization: bool,
    /// The `Host` header, when there was one: what an API server behind a name-based proxy
    /// routes on.
    pub host: Option<String>,
    /// Which connection carried it (requests on a kept-alive connection share the id).
    pub connection: u64,
    /// The injected [`Failure`] that answered it instead ([`FakeApiServer::fail_next`]).
    pub failure: Option<Failure>,
    /// The [`Fault`]s this watch carried out on the wire, in order: a fault counts here
    /// once it took effect (an injected one that the watch ended before has not).
    pub faults: Vec<Fault>,
    /// A watch from a resourceVersion older than the last
    /// [`compact`](FakeApiServer::compact): answered with the 410 `Expired` ERROR event in
    /// a 200 stream.
    pub expired: bool,
    token: Option<String>,
}

impl RequestRecord {
    /// The first query parameter of that name (decoded).
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
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// let watch = &server.requests()[1];
    /// assert_eq!(watch.param("watch"), Some("true")); // as kubectl and client-go send it
    /// assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
    /// assert!(watch.param("resourceVersion").is_some());
    /// assert_eq!(watch.param("limit"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it was a watch.
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
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert!(server.requests()[1].is_watch());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_watch(&self) -> bool {
        self.verb == Some(Verb::Watch)
    }

    /// Whether it was a list (a collection GET without `watch`).
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
    /// assert!(server.requests()[0].is_list()); // a resolver starts with a list
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_list(&self) -> bool {
        self.verb == Some(Verb::List)
    }

    /// Whether it was a GET of one object.
    ///
    /// ```
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints/echo")?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(server.requests()[0].is_get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_get(&self) -> bool {
        self.verb == Some(Verb::Get)
    }

    /// The bearer token sent, if any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()).token("s3cret"))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// let list = &server.requests()[0];
    /// assert_eq!(list.bearer_token(), Some("s3cret"));
    /// assert!(!format!("{list:?}").contains("s3cret"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bearer_token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

impl fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRecord")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("verb", &self.verb)
            .field("status", &self.status)
            .field("authorization", &self.authorization)
            .field("host", &self.host)
            .field("connection", &self.connection)
            .field("failure", &self.failure)
            .field("faults", &self.faults)
            .field("expired", &self.expired)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`FakeApiServer`]; from [`FakeApiServer::builder`].
///
/// Defaults: plain HTTP on `127.0.0.1` (any free port), no authentication, one chunk per
/// event, a bookmark every 60 s, watches capped only by their own `timeoutSeconds` (30 min
/// without one), and the user `system:serviceaccount:default:test` in 403 messages.
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
///
/// let server = FakeApiServer::builder()
///     .token(Some("s3cret".to_owned()))
///     .chunk_mode(ChunkMode::Coalesce)
///     .bookmark_interval(Duration::from_secs(1))
///     .start()?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Builder {
    bind: SocketAddr,
    tls: Option<TlsIdentity>,
    client_ca: Option<String>,
    token: Option<String>,
    chunk_mode: ChunkMode,
    bookmark_interval: Duration,
    max_watch_timeout: Option<Duration>,
    user: String,
    ignore_selectors: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("bind", &self.bind)
            .field("tls", &self.tls.is_some())
            .field("client_ca", &self.client_ca.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("chunk_mode", &self.chunk_mode)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("max_watch_timeout", &self.max_watch_timeout)
            .field("user", &self.user)
            .field("ignore_selectors", &self.ignore_selectors)
            .finish()
    }
}

impl Builder {
    /// The address to listen on; default `127.0.0.1:0` (any free port). A fixed
    /// address lets a test start a new server where an old one was.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let first = FakeApiServer::start()?;
    /// let addr = first.addr();
    /// drop(first);
    /// // A new server, with new state, where clients already point.
    /// let second = FakeApiServer::builder().bind(addr).start()?;
    /// assert_eq!(second.addr(), addr);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> Builder {
        self.bind = addr;
        self
    }

    /// Serve HTTPS with this identity (e.g. [`TlsIdentity::test_server`]). Default: plain
    /// HTTP.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, TEST_CA_PEM};
    ///
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// assert!(server.url().starts_with("https://127.0.0.1:"));
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()).ca_pem(TEST_CA_PEM))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tls(mut self, identity: TlsIdentity) -> Builder {
        self.tls = Some(identity);
        self
    }

    /// Require client certificates signed by a CA of this PEM bundle (e.g.
    /// [`CLIENT_CA_PEM`]); only with [`tls`](Builder::tls). Default: no client
    /// certificate asked for.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, CLIENT_CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM};
    /// use kuberesolver::testkit::TEST_CA_PEM;
    ///
    /// let server = FakeApiServer::builder()
    ///     .tls(TlsIdentity::test_server())
    ///     .client_ca(CLIENT_CA_PEM)
    ///     .start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url())
    ///     .ca_pem(TEST_CA_PEM)
    ///     .client_certificate_pem(CLIENT_CERT_PEM, CLIENT_KEY_PEM);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(config)
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn client_ca(mut self, pem: &str) -> Builder {
        self.client_ca = Some(pem.to_owned());
        self
    }

    /// Require `Authorization: Bearer <token>` (default: no authentication).
    ///
    /// A request without it, or with another token, gets a 401 `Unauthorized` Status.
    /// [`FakeApiServer::set_token`] changes it later.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 401"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> Builder {
        self.token = token;
        self
    }

    /// How watch events are cut into chunks (default [`ChunkMode::PerEvent`]).
    ///
    /// ```
    /// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
    ///
    /// // One byte per chunk: the worst a proxy can do.
    /// let server = FakeApiServer::builder().chunk_mode(ChunkMode::Split(1)).start()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn chunk_mode(mut self, mode: ChunkMode) -> Builder {
        self.chunk_mode = mode;
        self
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 60 s).
    ///
    /// At least 1 ms.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// let server = FakeApiServer::builder()
    ///     .bookmark_interval(Duration::from_millis(20))
    ///     .start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// // The resolver asks for bookmarks; each one confirms its state.
    /// let bookmarked = (0..500).any(|_| {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     resolver.status().counters.bookmarks > 0
    /// });
    /// assert!(bookmarked);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> Builder {
        self.bookmark_interval = interval.clamp(Duration::from_millis(1), MAX_DURATION);
        self
    }

    /// Caps every watch's duration (its `timeoutSeconds`, or 30 min without one); at the
    /// end the body ends cleanly.
    ///
    /// Default: no cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::testkit::FakeApiServer;
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::builder()
    ///     .max_watch_timeout(Duration::from_millis(50))
    ///     .start()?;
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// // A watch that asks for an hour ends cleanly after 50 ms: the terminating chunk.
    /// let path = "/api/v1/namespaces/prod/endpoints?watch=true&timeoutSeconds=3600";
    /// let response = get(&server, path)?;
    /// assert!(response.ends_with("0\r\n\r\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn max_watch_timeout(mut self, timeout: Duration) -> Builder {
        self.max_watch_timeout = Some(timeout.min(MAX_DURATION));
        self
    }

    /// The user named in 403 messages (default `system:serviceaccount:default:test`).
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::builder().user("system:serviceaccount:prod:client").start()?;
    /// server.forbid(Resource::Endpoints, true);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert!(response.starts_with("HTTP/1.1 403"));
    /// assert!(response.contains(r#"User \"system:serviceaccount:prod:client\" cannot list"#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Builder {
        self.user = user.into();
        self
    }

    /// Ignore `fieldSelector` and `labelSelector` on lists and watches, and answer with every
    /// object of the namespace, as some proxies and mock servers do (a name in the path still
    /// counts). Default: `false`, selectors apply as on a real API server.
    ///
    /// A resolver must check on its side that an object belongs to its Service.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::builder().ignore_selectors(true).start()?;
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
    /// server.set_endpoints("prod", "other", &[("grpc", 8080)], &[Pod::new("other-1", [10, 0, 9, 1])]);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Decho")?;
    /// assert!(response.contains(r#""name":"echo""#));
    /// assert!(response.contains(r#""name":"other""#)); // not selected, sent anyway
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ignore_selectors(mut self, ignore: bool) -> Builder {
        self.ignore_selectors = ignore;
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or the client CA PEM does not parse.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let first = FakeApiServer::start()?;
    /// assert!(FakeApiServer::builder().bind(first.addr()).start().is_err()); // taken
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start(self) -> io::Result<FakeApiServer> {
        let tls = match &self.tls {
            None => None,
            Some(identity) => {
                let client_ca = match &self.client_ca {
                    None => None,
                    Some(pem) => Some(tls::parse_certs(pem)?),
                };
                Some(identity.server_config(client_ca.as_deref())?)
            }
        };
        let listener = TcpListener::bind(self.bind)?;
        let addr = listener.local_addr()?;
        let mut state = State::new(self.token, self.chunk_mode);
        state.listening = true;
        let config = Config {
            bookmark_interval: self.bookmark_interval,
            max_watch_timeout: self.max_watch_timeout,
            tls,
            user: self.user,
            ignore_selectors: self.ignore_selectors,
        };
        let server = FakeApiServer {
            shared: Arc::new(Shared::new(state, config)),
            addr,
            accept: Mutex::new(None),
        };
        server.spawn_accept(listener)?;
        log::debug!(target: TARGET, "fake API server listening on {}", server.url());
        Ok(server)
    }
}

/// The fake Kubernetes API server. See the [module documentation](self).
///
/// `Send + Sync`: share it with `Arc` or by reference across threads. Dropping it shuts
/// it down.
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
/// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    /// Starts a plain-HTTP server on `127.0.0.1` (any free port) with default settings.
    ///
    /// The same as `FakeApiServer::builder().start()`; see [`Builder`] for the defaults.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert!(server.url().starts_with("http://127.0.0.1:"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When no port can be bound or no thread spawned.
    pub fn start() -> io::Result<FakeApiServer> {
        Self::builder().start()
    }

    /// Settings for a server.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, TlsIdentity};
    ///
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// assert!(server.url().starts_with("https://"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            client_ca: None,
            token: None,
            chunk_mode: ChunkMode::PerEvent,
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: None,
            user: "system:serviceaccount:default:test".to_owned(),
            ignore_selectors: false,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` or `https://127.0.0.1:41234`.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert_eq!(server.url(), format!("http://{}", server.addr()));
    /// let config = Config::new(server.url()); // what a resolver needs
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The address it listens on.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert!(server.addr().ip().is_loopback());
    /// let conn = std::net::TcpStream::connect(server.addr())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn spawn_accept(&self, listener: TcpListener) -> io::Result<()> {
        let shared = self.shared.clone();
        let handle = thread::Builder::new()
            .name("fake-apiserver-accept".into())
            .spawn(move || server::accept_loop(shared, listener))?;
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(())
    }

    /// Stops the accept loop (waking it) and waits for it.
    fn stop_accepting(&self) {
        let handle = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(handle) = handle else {
            return;
        };
        let end = Instant::now() + Duration::from_secs(2);
        while !handle.is_finished() {
            if Instant::now() >= end {
                log::debug!(target: TARGET, "accept thread did not stop; detaching it");
                return;
            }
            server::wake(self.addr);
            if !handle.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = handle.join();
    }

    /// Closes every connection and joins the connection threads.
    fn close_connections(&self) {
        let conns: Vec<TcpStream> = self.shared.lock().conns.drain().map(|(_, s)| s).collect();
        for s in &conns {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.shared.changed();
        let handles = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for h in handles {
            let _ = h.join();
        }
    }

    /// Stops the server: no more connections, every open one closed (stalled watches
    /// and hanging requests included), threads joined. Idempotent; `Drop` calls it.
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// server.shutdown();
    /// assert!(TcpStream::connect(server.addr()).is_err()); // refused
    /// assert!(server.resume_listening().is_err()); // for good
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            st.listening = false;
        }
        self.shared.changed();
        self.stop_accepting();
        self.close_connections();
    }

    /// Simulates the API server going away: closes the listening socket (new connections
    /// are refused) and every open connection. State is kept; see
    /// [`resume_listening`](Self::resume_listening).
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// server.stop_listening();
    /// assert!(TcpStream::connect(server.addr()).is_err()); // refused: the server is "down"
    /// server.resume_listening()?;
    /// assert!(TcpStream::connect(server.addr()).is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_listening(&self) {
        self.shared.lock().listening = false;
        self.shared.changed();
        self.stop_accepting();
        self.close_connections();
    }

    /// Listens again on the same address after [`stop_listening`](Self::stop_listening),
    /// with the same objects and resourceVersions (a no-op while listening).
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.stop_listening();
    /// server.resume_listening()?;
    /// assert!(TcpStream::connect(server.addr()).is_ok());
    /// assert_eq!(server.resource_version(), rv); // same state
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the port was taken meanwhile, or after [`shutdown`](Self::shutdown).
    pub fn resume_listening(&self) -> io::Result<()> {
        if self.shared.lock().shutdown {
            return Err(io::Error::other("the fake API server was shut down"));
        }
        if self
            .accept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)?;
        self.shared.lock().listening = true;
        self.spawn_accept(listener)
    }

    // ----- objects -----

    /// Creates or replaces an object; returns its new resourceVersion.
    ///
    /// `object` is stored as given (any JSON object: raw `subsets` work too), with
    /// `metadata.name`, `metadata.namespace`, `metadata.resourceVersion` and
    /// `metadata.uid` set by the server, and `kind`/`apiVersion` removed (they are added
    /// where the real server adds them). Open watches see `ADDED` or `MODIFIED` (or a
    /// selection change as `ADDED`/`DELETED`).
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    /// use serde_json::json;
    ///
    /// let server = FakeApiServer::start()?;
    /// let rv = server.apply(Resource::Endpoints, "prod", "echo", json!({
    ///     "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 8080}]}],
    /// }));
    /// assert_eq!(rv, server.resource_version());
    /// let stored = server.get(Resource::Endpoints, "prod", "echo").expect("stored");
    /// assert_eq!(stored["kind"], "Endpoints");
    /// assert_eq!(stored["metadata"]["resourceVersion"], rv.as_str());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn apply(&self, resource: Resource, namespace: &str, name: &str, object: Value) -> String {
        let rv = self.shared.lock().apply(resource, namespace, name, object);
        self.shared.changed();
        rv.to_string()
    }

    /// Deletes an object; returns the new resourceVersion, or `None` when it did not
    /// exist. Open watches see `DELETED` with its last state.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Pod, Resource};
    ///
    /// let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// assert!(server.delete(Resource::Endpoints, "prod", "echo").is_some());
    /// assert_eq!(server.delete(Resource::Endpoints, "prod", "echo"), None);
    /// assert!(server.get(Resource::Endpoints, "prod", "echo").is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> Option<String> {
        let rv = self.shared.lock().delete(resource, namespace, name);
        self.shared.changed();
        rv.map(|rv| rv.to_string())
    }

    /// An object as a GET would return it (with `kind` and `apiVersion`).
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Pod, Resource};
    ///
    /// let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let object = server.get(Resource::Endpoints, "prod", "echo").expect("stored");
    /// assert_eq!(object["apiVersion"], "v1");
    /// assert_eq!(object["subsets"][0]["addresses"][0]["targetRef"]["name"], "echo-1");
    /// assert_eq!(server.get(Resource::Endpoints, "prod", "other"), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let st = self.shared.lock();
        let obj = st
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))?;
        serde_json::from_str(&store::object_json(resource, obj)).ok()
    }

    /// The current resourceVersion (what a list would return).
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::start()?;
    /// let before = server.resource_version();
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// assert_eq!(server.resource_version(), rv);
    /// assert_ne!(rv, before); // every change moves it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resource_version(&self) -> String {
        self.shared.lock().rv.to_string()
    }

    /// `apply(Resource::Endpoints, ns, name, endpoints_object(ns, name, ports, pods))`.
    ///
    /// The Endpoints object of the Service `name`, as the Endpoints controller writes it:
    /// see [`endpoints_object`]. Calling it again is a rolling update, scaling, or a pod
    /// turning ready; returns the new resourceVersion.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// let starting = Pod::new("echo-2", [10, 0, 0, 2]).ready(false);
    /// let pods = [Pod::new("echo-1", [10, 0, 0, 1]), starting];
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
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
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// let ports = [("grpc", Some(8080))];
    /// let (a, b) = (Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2]));
    /// server.set_endpoint_slice("prod", "echo-a", "echo", "IPv4", &ports, &[a]);
    /// server.set_endpoint_slice("prod", "echo-b", "echo", "IPv4", &ports, &[b]);
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
        address_type: &str,
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
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// let old = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[]);
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.compact();
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let path = format!("/api/v1/namespaces/prod/endpoints?watch=true&resourceVersion={old}");
    /// let response = get(&server, &path)?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.contains(r#""code":410"#));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.horizon = st.rv;
    }

    // ----- behaviour -----

    /// Sets (or removes) the required bearer token. The previous one is refused from now
    /// on; open watches carry on (end them with [`inject`](Self::inject) if needed).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// let server = FakeApiServer::builder().token(Some("old".to_owned())).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.set_token(Some("rotated".to_owned())); // "old" gets 401 from now on
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()).token("rotated"))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_token(&self, token: Option<String>) {
        self.shared.lock().token = token;
    }

    /// Changes the chunking of every watch, open ones included, from the next event on.
    ///
    /// ```
    /// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
    ///
    /// let server = FakeApiServer::start()?;
    /// server.set_chunk_mode(ChunkMode::Split(3));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_chunk_mode(&self, mode: ChunkMode) {
        self.shared.lock().chunk_mode = mode;
        self.shared.changed();
    }

    /// Forbids (or allows again) every request on `resource`: 403 with the real RBAC
    /// message, e.g. `endpoints "echo" is forbidden: User
    /// "system:serviceaccount:default:test" cannot watch resource "endpoints" in API group
    /// "" in the namespace "prod"`.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// server.forbid(Resource::Endpoints, true);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 403"));
    /// server.forbid(Resource::Endpoints, false);
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 200"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn forbid(&self, resource: Resource, forbidden: bool) {
        let mut st = self.shared.lock();
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
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// server.disable(Resource::EndpointSlices, true); // a cluster older than EndpointSlices
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let response = get(&server, "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices")?;
    /// assert!(response.starts_with("HTTP/1.1 404"));
    /// assert!(response.ends_with("404 page not found\n"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disable(&self, resource: Resource, disabled: bool) {
        let mut st = self.shared.lock();
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
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::Fault;
    ///
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// assert_eq!(server.inject(Fault::Reset), 0); // no watch is open yet
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert_eq!(server.inject(Fault::Expired), 1); // the resolver lists again
    /// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
    ///     requests.iter().filter(|r| r.is_list()).count() == 2
    /// });
    /// assert!(relisted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inject(&self, fault: Fault) -> usize {
        let mut st = self.shared.lock();
        for w in st.watches.values_mut() {
            w.faults.push_back(fault.clone());
        }
        let n = st.watches.len();
        drop(st);
        self.shared.changed();
        n
    }

    /// Applies `fault` to the next watch that starts streaming, right after its headers
    /// and initial events. Queued: calling it twice affects the next two watches.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::Fault;
    ///
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.inject_next_watch(Fault::Expired); // the resolver's first watch
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
    ///     requests.iter().filter(|r| r.is_list()).count() == 2
    /// });
    /// assert!(relisted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inject_next_watch(&self, fault: Fault) {
        self.shared.lock().next_watch_faults.push_back(fault);
    }

    /// Answers the next `n` requests (any verb, checked before authentication) with
    /// `failure` instead.
    ///
    /// ```
    /// use kuberesolver::testkit::{Failure, FakeApiServer};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// server.fail_next(1, Failure::Unavailable);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
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
    /// use kuberesolver::testkit::{Failure, FakeApiServer, Pod, Verb};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// server.fail_next_for(Verb::List, 1, Failure::InternalError);
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// let one = get(&server, "/api/v1/namespaces/prod/endpoints/echo")?; // a GET, not a list
    /// assert!(one.starts_with("HTTP/1.1 200"));
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 500"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fail_next_for(&self, verb: Verb, n: usize, failure: Failure) {
        if n == 0 {
            return;
        }
        self.shared.lock().failures.push_back(store::FailRule {
            verb,
            remaining: n,
            failure,
        });
    }

    /// Forgets pending [`fail_next`](Self::fail_next) rules and
    /// [`inject_next_watch`](Self::inject_next_watch) faults.
    ///
    /// ```
    /// use kuberesolver::testkit::{Failure, FakeApiServer};
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// server.fail_next(5, Failure::InternalError);
    /// server.clear_failures();
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 200"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_failures(&self) {
        let mut st = self.shared.lock();
        st.failures.clear();
        st.next_watch_faults.clear();
    }

    // ----- observation -----

    /// How many watches are streaming now (stalled ones included).
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
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert_eq!(server.open_watches(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_watches(&self) -> usize {
        self.shared.lock().watches.len()
    }

    /// Waits until exactly `n` watches are open; returns whether that happened in time.
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
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// drop(resolver); // closes its watch
    /// assert!(server.wait_for_watches(0, Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |st| st.watches.len() == n)
    }

    /// Every request received so far (since the last
    /// [`clear_requests`](Self::clear_requests)), in order.
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
    /// let first = &server.requests()[0];
    /// assert!(first.is_list());
    /// assert_eq!(first.path, "/api/v1/namespaces/prod/endpoints");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert_eq!(server.requests().len(), 1);
    /// server.clear_requests();
    /// assert!(server.requests().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Waits until `done` holds for the recorded requests; returns whether that happened
    /// in time. E.g. `server.wait_for_requests(d, |r| r.iter().filter(|r| r.is_watch()).count() >= 3)`.
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
        self.shared.wait_until(timeout, |st| done(&st.requests))
    }

    /// How many TCP connections have been accepted so far (to check connection reuse).
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    /// # use std::io::{Read, Write};
    /// # fn get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    /// #     let mut conn = std::net::TcpStream::connect(server.addr())?;
    /// #     write!(conn, "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")?;
    /// #     let mut response = String::new();
    /// #     conn.read_to_string(&mut response)?;
    /// #     Ok(response)
    /// # }
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET over a plain TcpStream and returns the raw response.
    /// for _ in 0..2 {
    ///     get(&server, "/api/v1/namespaces/prod/endpoints")?; // `Connection: close` each time
    /// }
    /// assert_eq!(server.connections_accepted(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connections_accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// How many connections are open now.
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
    /// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    /// assert!(server.open_connections() >= 1); // the watch's, at least
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
