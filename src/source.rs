//! Where endpoints come from: the [`Source`] a user picks, and the API resource behind it.
//!
//! This is the seam between the watcher, which is the same for every source, and the object
//! model: an [`Api`] knows its path, its selector and its RBAC rule, and `decode` turns its
//! objects into the source-neutral [`Group`](crate::merge::Group)s that the merge works on.
//! (`Api`, not `Resource`: the testkit's public `Resource` names the same two APIs for the
//! fake server.)

use std::fmt;

/// Which Kubernetes API the resolver watches; set with
/// [`Builder::source`](crate::Builder::source). Default: [`Auto`](Source::Auto).
///
/// [`Status::source`](crate::Status::source) says which API is in use. See the
/// [sources guide](crate::guide::sources) for how they differ and how slices are merged.
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{FakeApiServer, Pod, Resource};
/// # use kuberesolver::{Config, Resolver, Source};
/// # let server = FakeApiServer::start()?;
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// // A cluster without the EndpointSlice API: `Auto` falls back to core/v1 Endpoints.
/// server.disable(Resource::EndpointSlices, true);
/// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
///     .config(Config::new(server.url()))
///     .source(Source::Auto)
///     .spawn()?;
/// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
/// assert_eq!(resolver.status().source, Some(Source::Endpoints));
/// assert_eq!(Source::default(), Source::Auto);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Source {
    /// core/v1 Endpoints: one object per Service, truncated by the API at 1000 addresses,
    /// deprecated since Kubernetes 1.33, single-stack. Needs `get/list/watch` on `endpoints`.
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlices: many slices per Service, merged; dual-stack,
    /// zones, serving/terminating conditions. Needs `list/watch` on `endpointslices`.
    EndpointSlices,
    /// EndpointSlices, falling back to Endpoints when the slice API is missing (404) or
    /// forbidden (403). The default.
    ///
    /// The fallback is never final: every list (the first, each retry, each relist) tries
    /// slices first, and while it runs on Endpoints a healthy watch probes slices again about
    /// every five minutes. So a pod that starts before its RoleBinding lands moves to slices
    /// once they are allowed. While both APIs are refused, the error names both RBAC rules.
    #[default]
    Auto,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Endpoints => "Endpoints",
            Source::EndpointSlices => "EndpointSlices",
            Source::Auto => "Auto",
        })
    }
}

/// A concrete API resource the watcher lists and watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    Endpoints,
    EndpointSlices,
}

impl Api {
    /// The collection path in `namespace`.
    pub(crate) fn collection(self, namespace: &str) -> String {
        match self {
            Api::Endpoints => format!("/api/v1/namespaces/{namespace}/endpoints"),
            Api::EndpointSlices => {
                format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
            }
        }
    }

    /// The selector query parameter that picks the Service's objects. Names are DNS-1123
    /// labels (checked by the target grammar), so they need no escaping.
    pub(crate) fn selector(self, service: &str) -> String {
        match self {
            Api::Endpoints => format!("fieldSelector=metadata.name%3D{service}"),
            Api::EndpointSlices => {
                format!("labelSelector=kubernetes.io%2Fservice-name%3D{service}")
            }
        }
    }

    /// The `Source` this resource implements, for `status()`.
    pub(crate) fn source(self) -> Source {
        match self {
            Api::Endpoints => Source::Endpoints,
            Api::EndpointSlices => Source::EndpointSlices,
        }
    }

    /// The RBAC rule a Role needs for this resource.
    pub(crate) fn rbac_rule(self) -> &'static str {
        match self {
            Api::Endpoints => {
                "apiGroups: [\"\"], resources: [\"endpoints\"], verbs: [\"get\", \"list\", \"watch\"]"
            }
            Api::EndpointSlices => {
                "apiGroups: [\"discovery.k8s.io\"], resources: [\"endpointslices\"], verbs: [\"list\", \"watch\"]"
            }
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Endpoints => "endpoints",
            Api::EndpointSlices => "endpointslices",
        })
    }
}
