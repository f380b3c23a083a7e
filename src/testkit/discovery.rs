//! The documents clients read before they ask for objects: `/version`, API discovery
//! (`/api`, `/apis`, each group version; aggregated discovery when the client asks for it),
//! `/openapi/v2`, and the health checks.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::route::{Doc, GroupVersion};
use super::types::Resource;

/// The Content-Type of aggregated discovery, v2 (what kubectl 1.30+ asks for first).
const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// The same, v2beta1 (kubectl 1.26–1.29).
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
/// The protobuf OpenAPI v2 type, spelled with `.v1.0`: kubectl refuses a response type
/// with the `@` of its own Accept header.
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const JSON: &str = "application/json";

/// The verbs the server serves on each resource.
const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// What the server tells about itself.
pub(crate) struct Served<'a> {
    /// The Kubernetes version `/version` answers (major, minor).
    pub version: (u32, u32),
    /// APIs the test removed: left out of discovery, as a server without them would.
    pub disabled: &'a HashSet<Resource>,
    /// `host:port` the server listens on (for `serverAddressByClientCIDRs`).
    pub address: String,
}

/// Which aggregated discovery version `accept` asks for before plain JSON, if any.
fn aggregated(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k.trim() == n)
                .map(|(_, v)| v.trim())
        };
        let wanted = match (param("g"), param("v"), param("as")) {
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                Some(AGGREGATED_V2)
            }
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                Some(AGGREGATED_V2BETA1)
            }
            _ => None,
        };
        match (media, wanted) {
            ("application/json", Some(kind)) => return Some(kind),
            ("application/json" | "application/*" | "*/*", None) if params.is_empty() => {
                return None
            }
            _ => {}
        }
    }
    None
}

impl Served<'_> {
    fn serves(&self, resource: Resource) -> bool {
        !self.disabled.contains(&resource)
    }

    fn resources(&self, gv: GroupVersion) -> impl Iterator<Item = Resource> + '_ {
        gv.resources().filter(|r| self.serves(*r))
    }

    /// The group versions under `/apis` that still serve something.
    fn groups(&self) -> impl Iterator<Item = GroupVersion> + '_ {
        GroupVersion::ALL
            .into_iter()
            .filter(|gv| *gv != GroupVersion::Core && self.resources(*gv).next().is_some())
    }

    fn version_json(&self) -> Value {
        let (major, minor) = self.version;
        json!({
            "major": major.to_string(),
            "minor": minor.to_string(),
            "gitVersion": format!("v{major}.{minor}.0"),
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        })
    }

    fn group_json(gv: GroupVersion) -> Value {
        let version = json!({"groupVersion": gv.group_version(), "version": "v1"});
        json!({
            "name": gv.group(),
            "versions": [version.clone()],
            "preferredVersion": version,
        })
    }

    fn resource_list(&self, gv: GroupVersion) -> Value {
        let resources: Vec<Value> = self
            .resources(gv)
            .map(|r| {
                let mut v = json!({
                    "name": r.plural(),
                    "singularName": r.singular(),
                    "namespaced": r.namespaced(),
                    "kind": r.kind(),
                    "verbs": VERBS,
                });
                if !r.short_names().is_empty() {
                    v["shortNames"] = json!(r.short_names());
                }
                v
            })
            .collect();
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv.group_version(),
            "resources": resources,
        })
    }

    /// An `APIGroupDiscoveryList` of these group versions (`/api` has the core one alone).
    fn aggregated_list(&self, kind: &str, gvs: impl Iterator<Item = GroupVersion>) -> Value {
        let version = if kind == AGGREGATED_V2 {
            "v2"
        } else {
            "v2beta1"
        };
        let items: Vec<Value> = gvs
            .map(|gv| {
                let resources: Vec<Value> = self
                    .resources(gv)
                    .map(|r| {
                        let mut v = json!({
                            "resource": r.plural(),
                            "responseKind": {"group": r.group(), "version": "v1", "kind": r.kind()},
                            "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular(),
                            "verbs": VERBS,
                        });
                        if !r.short_names().is_empty() {
                            v["shortNames"] = json!(r.short_names());
                        }
                        v
                    })
                    .collect();
                json!({
                    "metadata": {"name": gv.group(), "creationTimestamp": null},
                    "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
                })
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": format!("apidiscovery.k8s.io/{version}"),
            "metadata": {},
            "items": items,
        })
    }

    /// The answer to `doc` for a client that sent `accept`: its Content-Type and body;
    /// `None` where a server without the API answers `404 page not found`.
    pub fn document(&self, doc: Doc, accept: &str) -> Option<(&'static str, Vec<u8>)> {
        let json_doc = |v: Value| Some((JSON, v.to_string().into_bytes()));
        match doc {
            Doc::Version => json_doc(self.version_json()),
            Doc::Health => Some(("text/plain; charset=utf-8", b"ok".to_vec())),
            Doc::CoreVersions => match aggregated(accept) {
                Some(kind) => Some((
                    kind,
                    self.aggregated_list(kind, [GroupVersion::Core].into_iter())
                        .to_string()
                        .into_bytes(),
                )),
                None => json_doc(json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}],
                })),
            },
            Doc::Groups => match aggregated(accept) {
                Some(kind) => Some((
                    kind,
                    self.aggregated_list(kind, self.groups())
                        .to_string()
                        .into_bytes(),
                )),
                None => {
                    let groups: Vec<Value> = self.groups().map(Served::group_json).collect();
                    json_doc(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
                }
            },
            Doc::Group => {
                let gv = self.groups().next()?;
                let mut group = Served::group_json(gv);
                group["kind"] = "APIGroup".into();
                group["apiVersion"] = "v1".into();
                json_doc(group)
            }
            Doc::Resources(gv) => {
                if gv != GroupVersion::Core && self.resources(gv).next().is_none() {
                    return None;
                }
                json_doc(self.resource_list(gv))
            }
            // No schemas: kubectl validates nothing it finds no schema for, and falls back
            // to its built-in types for patches.
            Doc::OpenApiV2 if accept.contains("protobuf") => {
                Some((OPENAPI_V2_PROTOBUF, Vec::new()))
            }
            Doc::OpenApiV2 => json_doc(json!({
                "swagger": "2.0",
                "info": {"title": "Kubernetes", "version": self.version_json()["gitVersion"]},
                "paths": {},
                "definitions": {},
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubectl 1.32's Accept header for `/api` and `/apis`.
    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    fn served(disabled: &HashSet<Resource>) -> Served<'_> {
        Served {
            version: (1, 32),
            disabled,
            address: "127.0.0.1:6443".into(),
        }
    }

    fn doc(s: &Served<'_>, d: Doc, accept: &str) -> (String, Value) {
        let (ty, body) = s.document(d, accept).unwrap_or(("none", Vec::new()));
        (
            ty.to_owned(),
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }

    #[test]
    fn the_accept_header_chooses_aggregated_discovery_by_order() {
        assert_eq!(aggregated(KUBECTL_ACCEPT), Some(AGGREGATED_V2));
        assert_eq!(
            aggregated("application/json;as=APIGroupDiscoveryList;v=v2beta1;g=apidiscovery.k8s.io, application/json"),
            Some(AGGREGATED_V2BETA1)
        );
        assert_eq!(aggregated("application/json, */*"), None);
        assert_eq!(aggregated("application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), None);
        assert_eq!(
            aggregated("*/*,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
            None
        );
        assert_eq!(aggregated("application/yaml,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), Some(AGGREGATED_V2));
        assert_eq!(
            aggregated("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
            None
        );
        assert_eq!(aggregated(""), None);
    }

    #[test]
    fn legacy_discovery_lists_versions_groups_and_resources() {
        let none = HashSet::new();
        let s = served(&none);
        let (ty, api) = doc(&s, Doc::CoreVersions, "application/json, */*");
        assert_eq!(ty, "application/json");
        assert_eq!(api["kind"], "APIVersions");
        assert_eq!(api["versions"], json!(["v1"]));
        assert_eq!(
            api["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.0.1:6443"
        );
        let (_, apis) = doc(&s, Doc::Groups, "application/json");
        assert_eq!(apis["kind"], "APIGroupList");
        assert_eq!(apis["groups"][0]["name"], "discovery.k8s.io");
        assert_eq!(
            apis["groups"][0]["preferredVersion"]["groupVersion"],
            "discovery.k8s.io/v1"
        );
        let (_, group) = doc(&s, Doc::Group, "");
        assert_eq!(
            (&group["kind"], &group["name"]),
            (&json!("APIGroup"), &json!("discovery.k8s.io"))
        );
        let (_, core) = doc(&s, Doc::Resources(GroupVersion::Core), "");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(
            core["resources"],
            json!([
                {"name": "endpoints", "singularName": "endpoints", "namespaced": true, "kind": "Endpoints", "verbs": VERBS, "shortNames": ["ep"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": VERBS, "shortNames": ["ns"]},
            ])
        );
        let (_, slices) = doc(&s, Doc::Resources(GroupVersion::Discovery), "");
        assert_eq!(slices["groupVersion"], "discovery.k8s.io/v1");
        assert_eq!(
            slices["resources"],
            json!([{"name": "endpointslices", "singularName": "endpointslice", "namespaced": true, "kind": "EndpointSlice", "verbs": VERBS}])
        );
    }

    #[test]
    fn aggregated_discovery_has_each_resources_kind_and_scope() {
        let none = HashSet::new();
        let s = served(&none);
        let (ty, api) = doc(&s, Doc::CoreVersions, KUBECTL_ACCEPT);
        assert_eq!(ty, AGGREGATED_V2);
        assert_eq!(api["kind"], "APIGroupDiscoveryList");
        assert_eq!(api["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(api["items"][0]["metadata"]["name"], "");
        let v1 = &api["items"][0]["versions"][0];
        assert_eq!(
            (&v1["version"], &v1["freshness"]),
            (&json!("v1"), &json!("Current"))
        );
        assert_eq!(
            v1["resources"][1],
            json!({"resource": "namespaces", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
                   "scope": "Cluster", "singularResource": "namespace", "verbs": VERBS, "shortNames": ["ns"]})
        );
        let (ty, apis) = doc(
            &s,
            Doc::Groups,
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        );
        assert_eq!(ty, AGGREGATED_V2BETA1);
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert_eq!(apis["items"].as_array().map(Vec::len), Some(1));
        let slices = &apis["items"][0]["versions"][0]["resources"][0];
        assert_eq!(slices["responseKind"]["group"], "discovery.k8s.io");
        assert_eq!(slices["scope"], "Namespaced");
        assert!(slices.get("shortNames").is_none());
    }

    #[test]
    fn a_disabled_api_is_left_out_of_discovery() {
        let off: HashSet<Resource> = [Resource::EndpointSlices, Resource::Endpoints].into();
        let s = served(&off);
        let (_, apis) = doc(&s, Doc::Groups, "application/json");
        assert_eq!(apis["groups"], json!([]));
        let (_, agg) = doc(&s, Doc::Groups, KUBECTL_ACCEPT);
        assert_eq!(agg["items"], json!([]));
        assert!(s.document(Doc::Group, "").is_none());
        assert!(s
            .document(Doc::Resources(GroupVersion::Discovery), "")
            .is_none());
        let (_, core) = doc(&s, Doc::Resources(GroupVersion::Core), "");
        assert_eq!(core["resources"].as_array().map(Vec::len), Some(1));
        assert_eq!(core["resources"][0]["name"], "namespaces");
    }

    #[test]
    fn version_openapi_and_health() {
        let none = HashSet::new();
        let s = Served {
            version: (1, 29),
            ..served(&none)
        };
        let (_, v) = doc(&s, Doc::Version, "");
        assert_eq!(
            (&v["major"], &v["minor"], &v["gitVersion"]),
            (&json!("1"), &json!("29"), &json!("v1.29.0"))
        );
        let proto = s.document(
            Doc::OpenApiV2,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        );
        assert_eq!(proto, Some((OPENAPI_V2_PROTOBUF, Vec::new())));
        let (ty, swagger) = doc(&s, Doc::OpenApiV2, "application/json");
        assert_eq!(ty, "application/json");
        assert_eq!(
            (&swagger["swagger"], &swagger["paths"]),
            (&json!("2.0"), &json!({}))
        );
        assert_eq!(
            s.document(Doc::Health, "").map(|d| d.1),
            Some(b"ok".to_vec())
        );
    }
}
