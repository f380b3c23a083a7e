//! The request log: one [`RequestRecord`] per request the server received.

use std::fmt;
use std::time::Instant;

use super::faults::{Failure, Fault};
use super::types::{Resource, Verb};

/// One request the server received
/// ([`FakeApiServer::requests`](super::FakeApiServer::requests)).
///
/// `Debug` does not print the bearer token; [`bearer_token`](RequestRecord::bearer_token)
/// gives it for assertions. Only the server makes records, and a later release may add
/// fields (the struct is `#[non_exhaustive]`): match one with `..`.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
/// use kuberesolver::testkit::Resource;
///
/// # let server = echo_server()?;
/// # let resolver = echo_resolver(&server)?;
/// assert!(server.wait_for_watches(1, Duration::from_secs(5)));
/// let requests = server.requests();
/// let (list, watch) = (&requests[0], &requests[1]);
/// assert_eq!(list.method, "GET");
/// assert_eq!(list.path, "/api/v1/namespaces/prod/endpoints");
/// assert_eq!(list.query[0], ("fieldSelector".to_string(), "metadata.name=echo".to_string()));
/// assert_eq!(list.param("limit"), None); // the resolver lists in one page
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
#[non_exhaustive]
pub struct RequestRecord {
    pub(super) id: u64,
    /// The method, e.g. `GET` (empty when the request line could not be parsed).
    pub method: String,
    /// The URL-decoded path, without the query.
    pub path: String,
    /// The URL-decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Get, List, Watch, Create, Update, Patch or Delete; `None` for a document (discovery,
    /// `/version`, ...), a path the server does not serve, or a method the path does not take.
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
    /// The injected [`Failure`] that answered it instead
    /// ([`FakeApiServer::fail_next`](super::FakeApiServer::fail_next)).
    pub failure: Option<Failure>,
    /// The [`Fault`]s this watch carried out on the wire, in order: a fault counts here
    /// once it took effect (an injected one that the watch ended before has not).
    pub faults: Vec<Fault>,
    /// A watch from a resourceVersion older than the last
    /// [`compact`](super::FakeApiServer::compact): answered with the 410 `Expired` ERROR
    /// event in a 200 stream.
    pub expired: bool,
    pub(super) token: Option<String>,
}

impl RequestRecord {
    /// The first query parameter of that name (decoded).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET and returns the raw response.
    /// get(&server, "/api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Decho")?;
    /// let list = &server.requests()[0];
    /// assert_eq!(list.param("fieldSelector"), Some("metadata.name=echo"));
    /// assert_eq!(list.param("watch"), None);
    /// # Ok::<(), std::io::Error>(())
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
    /// # use kuberesolver::testkit::doc_support::get;
    /// use std::time::Duration;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::builder().max_watch_timeout(Duration::from_millis(10)).start()?;
    /// // `get` sends a GET and returns the raw response: here, once the watch ended.
    /// get(&server, "/api/v1/namespaces/prod/endpoints?watch=true")?;
    /// assert!(server.requests()[0].is_watch());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_watch(&self) -> bool {
        self.verb == Some(Verb::Watch)
    }

    /// Whether it was a list (a collection GET without `watch`).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// // `get` sends a GET and returns the raw response.
    /// get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert!(server.requests()[0].is_list());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_list(&self) -> bool {
        self.verb == Some(Verb::List)
    }

    /// Whether it was a GET of one object.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::{echo_server, get};
    /// # let server = echo_server()?;
    /// // `get` sends a GET and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints/echo")?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(server.requests()[0].is_get());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_get(&self) -> bool {
        self.verb == Some(Verb::Get)
    }

    /// The bearer token sent, if any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{add_echo, resolver};
    /// use kuberesolver::testkit::FakeApiServer;
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// # add_echo(&server);
    /// # let resolver = resolver(Config::new(server.url()).token("s3cret"))?;
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
