//! The testkit's vocabulary: which API ([`Resource`]), which kind of request ([`Verb`]),
//! which kind of address a slice holds ([`AddressType`]), and how watch events are cut
//! into chunks ([`ChunkMode`]).

/// The resources the server knows.
///
/// Names an API in [`FakeApiServer::apply`](super::FakeApiServer::apply),
/// [`forbid`](super::FakeApiServer::forbid), [`disable`](super::FakeApiServer::disable) and
/// in each [`RequestRecord`](super::RequestRecord); each method below shows its part of the
/// API's names and paths. A later release may serve more (the enum is `#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Resource {
    /// core/v1 `Endpoints` (`/api/v1/namespaces/{ns}/endpoints`).
    Endpoints,
    /// `discovery.k8s.io/v1` `EndpointSlice`
    /// (`/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`).
    EndpointSlices,
    /// core/v1 `Namespace` (`/api/v1/namespaces`), cluster-scoped: its objects are kept
    /// under the namespace `""`.
    Namespaces,
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
            Resource::Namespaces => "Namespace",
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
            Resource::Namespaces => "NamespaceList",
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
            Resource::Endpoints | Resource::Namespaces => "v1",
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
            Resource::Endpoints | Resource::Namespaces => "",
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
            Resource::Namespaces => "namespaces",
        }
    }

    /// The collection path in `namespace`, e.g. `/api/v1/namespaces/prod/endpoints`
    /// (`/api/v1/namespaces` for [`Namespaces`](Resource::Namespaces), whatever
    /// `namespace` is).
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// let path = Resource::Endpoints.collection_path("prod");
    /// assert_eq!(path, "/api/v1/namespaces/prod/endpoints");
    /// assert_eq!(Resource::Namespaces.collection_path(""), "/api/v1/namespaces");
    /// ```
    pub fn collection_path(self, namespace: &str) -> String {
        match self {
            Resource::Namespaces => "/api/v1/namespaces".to_owned(),
            _ => format!("{}/namespaces/{namespace}/{}", self.prefix(), self.plural()),
        }
    }

    /// Whether its objects live in a namespace (all but [`Namespaces`](Resource::Namespaces)).
    ///
    /// ```
    /// use kuberesolver::testkit::Resource;
    ///
    /// assert!(Resource::EndpointSlices.namespaced());
    /// assert!(!Resource::Namespaces.namespaced());
    /// ```
    pub fn namespaced(self) -> bool {
        self != Resource::Namespaces
    }

    /// Every resource the server knows, in discovery order.
    pub(crate) const ALL: [Resource; 3] = [
        Resource::Endpoints,
        Resource::Namespaces,
        Resource::EndpointSlices,
    ];

    /// The path of its group version: `/api/v1` or `/apis/discovery.k8s.io/v1`.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Resource::Endpoints | Resource::Namespaces => "/api/v1",
            Resource::EndpointSlices => "/apis/discovery.k8s.io/v1",
        }
    }

    /// The singular name discovery announces.
    pub(crate) fn singular(self) -> &'static str {
        match self {
            Resource::Endpoints => "endpoints",
            Resource::EndpointSlices => "endpointslice",
            Resource::Namespaces => "namespace",
        }
    }

    /// The short names `kubectl` accepts (`ep`, `ns`; slices have none on a real server).
    pub(crate) fn short_names(self) -> &'static [&'static str] {
        match self {
            Resource::Endpoints => &["ep"],
            Resource::EndpointSlices => &[],
            Resource::Namespaces => &["ns"],
        }
    }

    /// `endpoints` or `endpointslices.discovery.k8s.io`, as in error messages.
    pub(crate) fn qualified(self) -> &'static str {
        match self {
            Resource::Endpoints => "endpoints",
            Resource::EndpointSlices => "endpointslices.discovery.k8s.io",
            Resource::Namespaces => "namespaces",
        }
    }
}

/// The `addressType` of an EndpointSlice: the kind of address all its endpoints carry.
///
/// The EndpointSlice controller writes one slice per IP family (a dual-stack Service has
/// both); `FQDN` slices are written by hand or by other controllers. A test that needs a
/// value no controller writes builds the object with
/// [`endpoint_slice_object`](super::endpoint_slice_object) and changes `addressType` before
/// [`apply`](super::FakeApiServer::apply):
///
/// ```
/// use kuberesolver::testkit::{endpoint_slice_object, AddressType, FakeApiServer, Resource};
///
/// let server = FakeApiServer::start()?;
/// let mut odd = endpoint_slice_object("prod", "echo-x", "echo", AddressType::Ipv4, &[], &[]);
/// odd["addressType"] = "IPv5".into();
/// server.apply(Resource::EndpointSlices, "prod", "echo-x", odd);
/// let stored = server.get(Resource::EndpointSlices, "prod", "echo-x").expect("stored");
/// assert_eq!(stored["addressType"], "IPv5");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// `IPv4`.
    Ipv4,
    /// `IPv6`.
    Ipv6,
    /// `FQDN`: host names, no IPs (a resolver leaves these slices out).
    Fqdn,
}

impl AddressType {
    /// The value as the API writes it: `IPv4`, `IPv6` or `FQDN`.
    ///
    /// ```
    /// use kuberesolver::testkit::AddressType;
    ///
    /// assert_eq!(AddressType::Ipv6.as_str(), "IPv6");
    /// assert_eq!(AddressType::Fqdn.as_str(), "FQDN");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::Ipv4 => "IPv4",
            AddressType::Ipv6 => "IPv6",
            AddressType::Fqdn => "FQDN",
        }
    }
}

/// How watch events are cut into HTTP chunks. Real servers and proxies do all of these;
/// a client must not care.
///
/// Set with [`FakeApiServerBuilder::chunk_mode`](super::FakeApiServerBuilder::chunk_mode)
/// or, on a running server, with
/// [`FakeApiServer::set_chunk_mode`](super::FakeApiServer::set_chunk_mode). Default:
/// [`PerEvent`](ChunkMode::PerEvent).
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::doc_support::{add_echo, echo_resolver};
/// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
///
/// // Every event cut into 7-byte chunks: the resolver reassembles them.
/// let server = FakeApiServer::builder().chunk_mode(ChunkMode::Split(7)).start()?;
/// # add_echo(&server);
/// # let resolver = echo_resolver(&server)?;
/// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
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

/// The kind of request ([`RequestRecord::verb`](super::RequestRecord::verb)), and a filter
/// for [`FakeApiServer::fail_next_for`](super::FakeApiServer::fail_next_for).
///
/// ```
/// # use kuberesolver::testkit::doc_support::get;
/// use kuberesolver::testkit::{FakeApiServer, Verb};
///
/// let server = FakeApiServer::start()?;
/// // `get` sends a GET and returns the raw response.
/// get(&server, "/api/v1/namespaces/prod/endpoints")?; // a collection
/// get(&server, "/api/v1/namespaces/prod/endpoints/echo")?; // one object (404 here)
/// get(&server, "/api/v1/namespaces/prod/pods")?; // not an API the server serves
/// let verbs: Vec<Option<Verb>> = server.requests().into_iter().map(|r| r.verb).collect();
/// assert_eq!(verbs, [Some(Verb::List), Some(Verb::Get), None]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// Any request (filters only; records never carry it).
    Any,
    /// GET of one object by name.
    Get,
    /// LIST of a collection.
    List,
    /// WATCH (`watch=true`; `watch=1` and an empty `watch=` count too, as on a real server;
    /// and every request on a legacy `/watch/` path).
    Watch,
    /// POST to a collection: a new object.
    Create,
    /// PUT of one object: a replacement.
    Update,
    /// PATCH of one object (JSON merge patch, or a strategic merge patch).
    Patch,
    /// DELETE of one object.
    Delete,
}

impl Verb {
    /// The RBAC verb: `*`, `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
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
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}
