//! Which document or API a request path names: the routes of a kube-apiserver, for the
//! resources the testkit serves.

use super::types::Resource;

/// One of the two group versions the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupVersion {
    /// `v1` (core, under `/api`).
    Core,
    /// `discovery.k8s.io/v1` (under `/apis`).
    Discovery,
}

impl GroupVersion {
    pub const ALL: [GroupVersion; 2] = [GroupVersion::Core, GroupVersion::Discovery];

    /// The group: `""` or `discovery.k8s.io`.
    pub fn group(self) -> &'static str {
        match self {
            GroupVersion::Core => "",
            GroupVersion::Discovery => "discovery.k8s.io",
        }
    }

    /// `v1` or `discovery.k8s.io/v1`.
    pub fn group_version(self) -> &'static str {
        match self {
            GroupVersion::Core => "v1",
            GroupVersion::Discovery => "discovery.k8s.io/v1",
        }
    }

    /// The resources it serves, in discovery order.
    pub fn resources(self) -> impl Iterator<Item = Resource> {
        Resource::ALL
            .into_iter()
            .filter(move |r| r.group() == self.group())
    }
}

/// A path that names a document rather than objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doc {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`: the core API versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/discovery.k8s.io`: one group.
    Group,
    /// `/api/v1`, `/apis/discovery.k8s.io/v1`: the resources of a group version.
    Resources(GroupVersion),
    /// `/openapi/v2` (kubectl's client-side validation asks for it).
    OpenApiV2,
}

/// A path that names a collection or an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiPath {
    pub resource: Resource,
    /// `None`: every namespace (a cluster-wide collection, or a cluster-scoped resource).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// A legacy `/watch/` path: every request on it is a watch.
    pub watch: bool,
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Doc(Doc),
    Api(ApiPath),
}

/// Routes `path` (already percent-decoded, without the query); `None` for paths a real
/// server would answer `404 page not found`.
pub(crate) fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let doc = match segs.as_slice() {
        ["version"] => Some(Doc::Version),
        ["healthz" | "livez" | "readyz"] => Some(Doc::Health),
        ["api"] => Some(Doc::CoreVersions),
        ["apis"] => Some(Doc::Groups),
        ["apis", "discovery.k8s.io"] => Some(Doc::Group),
        ["api", "v1"] => Some(Doc::Resources(GroupVersion::Core)),
        ["apis", "discovery.k8s.io", "v1"] => Some(Doc::Resources(GroupVersion::Discovery)),
        ["openapi", "v2"] => Some(Doc::OpenApiV2),
        _ => None,
    };
    if let Some(doc) = doc {
        return Some(Route::Doc(doc));
    }
    let (gv, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => (GroupVersion::Core, rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => (GroupVersion::Discovery, rest),
        _ => return None,
    };
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let plural = |p: &str| gv.resources().find(|r| r.plural() == p);
    let (resource, namespace, name) = match rest {
        ["namespaces"] if gv == GroupVersion::Core => (Resource::Namespaces, None, None),
        ["namespaces", name] if gv == GroupVersion::Core => {
            (Resource::Namespaces, None, Some(*name))
        }
        ["namespaces", ns, p] => (plural(p)?, Some(*ns), None),
        ["namespaces", ns, p, name] => (plural(p)?, Some(*ns), Some(*name)),
        [p] => (plural(p)?, None, None),
        _ => return None,
    };
    if !resource.namespaced() && namespace.is_some()
        || resource.namespaced() && namespace.is_none() && name.is_some()
        || namespace == Some("")
        || name == Some("")
    {
        return None;
    }
    Some(Route::Api(ApiPath {
        resource,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        watch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(resource: Resource, ns: Option<&str>, name: Option<&str>, watch: bool) -> Route {
        Route::Api(ApiPath {
            resource,
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            watch,
        })
    }

    #[test]
    fn namespaced_cluster_wide_and_legacy_watch_paths() {
        use Resource::*;
        let cases = [
            (
                "/api/v1/namespaces/prod/endpoints",
                api(Endpoints, Some("prod"), None, false),
            ),
            (
                "/api/v1/namespaces/prod/endpoints/echo",
                api(Endpoints, Some("prod"), Some("echo"), false),
            ),
            ("/api/v1/endpoints", api(Endpoints, None, None, false)),
            ("/api/v1/watch/endpoints", api(Endpoints, None, None, true)),
            (
                "/api/v1/watch/namespaces/prod/endpoints/echo",
                api(Endpoints, Some("prod"), Some("echo"), true),
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices",
                api(EndpointSlices, Some("prod"), None, false),
            ),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                api(EndpointSlices, None, None, false),
            ),
            (
                "/apis/discovery.k8s.io/v1/watch/namespaces/prod/endpointslices",
                api(EndpointSlices, Some("prod"), None, true),
            ),
            ("/api/v1/namespaces", api(Namespaces, None, None, false)),
            (
                "/api/v1/namespaces/prod",
                api(Namespaces, None, Some("prod"), false),
            ),
            (
                "/api/v1/watch/namespaces/prod",
                api(Namespaces, None, Some("prod"), true),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), Some(want), "{path}");
        }
    }

    #[test]
    fn documents() {
        let cases = [
            ("/version", Doc::Version),
            ("/readyz", Doc::Health),
            ("/api", Doc::CoreVersions),
            ("/apis", Doc::Groups),
            ("/apis/discovery.k8s.io", Doc::Group),
            ("/api/v1", Doc::Resources(GroupVersion::Core)),
            (
                "/apis/discovery.k8s.io/v1",
                Doc::Resources(GroupVersion::Discovery),
            ),
            ("/openapi/v2", Doc::OpenApiV2),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), Some(Route::Doc(want)), "{path}");
        }
    }

    #[test]
    fn what_a_real_server_does_not_serve_is_no_route() {
        for path in [
            "/",
            "",
            "/api/v1/namespaces/prod/pods",
            "/api/v1/namespaces//endpoints",
            "/api/v1/namespaces/prod/endpoints/",
            "/api/v1/namespaces/prod/endpoints/echo/status",
            "/apis/discovery.k8s.io/v1/namespaces/prod/endpoints",
            "/apis/discovery.k8s.io/v1/namespaces",
            "/apis/discovery.k8s.io/v1/endpointslices/x",
            "/api/v1/endpoints/x",
            "/api/v1/namespaces/",
            "/api/v2",
            "/apis/apps/v1",
            "/openapi/v3",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }
}
