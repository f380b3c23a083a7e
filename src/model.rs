//! The Kubernetes objects we read, as typed serde models that skip every field we don't use.
//!
//! Every collection may be absent or `null` on the wire, so each one is an `Option` that
//! [`or_empty`] turns into an empty slice.

use serde::Deserialize;

/// `metadata` of an object, a list, or a bookmark.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Meta {
    pub name: Option<String>,
    #[serde(rename = "resourceVersion")]
    pub resource_version: Option<String>,
}

/// A list response: only its resourceVersion and its items matter.
#[derive(Debug, Deserialize)]
pub(crate) struct List<T> {
    #[serde(default)]
    pub metadata: Option<Meta>,
    #[serde(default = "Option::default")]
    pub items: Option<Vec<T>>,
}

/// A `meta/v1` Status: the body of API errors and of ERROR watch events.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `targetRef` of an address: the Pod behind it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ObjectRef {
    pub kind: Option<String>,
    pub name: Option<String>,
}

/// core/v1 Endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoints {
    pub metadata: Option<Meta>,
    pub subsets: Option<Vec<Subset>>,
}

/// One subset of an Endpoints object: every address × every port.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Subset {
    pub addresses: Option<Vec<Address>>,
    #[serde(rename = "notReadyAddresses")]
    pub not_ready_addresses: Option<Vec<Address>>,
    pub ports: Option<Vec<EndpointPort>>,
}

/// An address in an Endpoints subset.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Address {
    pub ip: Option<String>,
    pub hostname: Option<String>,
    #[serde(rename = "nodeName")]
    pub node_name: Option<String>,
    #[serde(rename = "targetRef")]
    pub target_ref: Option<ObjectRef>,
}

/// A port of an Endpoints subset or of an EndpointSlice. `port` may be `null` in slices.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<i64>,
}

/// Absent and `null` collections both read as empty.
pub(crate) fn or_empty<T>(items: &Option<Vec<T>>) -> &[T] {
    items.as_deref().unwrap_or(&[])
}

/// discovery.k8s.io/v1 EndpointSlice.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointSlice {
    pub metadata: Option<Meta>,
    #[serde(rename = "addressType")]
    pub address_type: Option<String>,
    pub endpoints: Option<Vec<SliceEndpoint>>,
    pub ports: Option<Vec<EndpointPort>>,
}

/// One endpoint of a slice: one address (the API allows exactly one) and its conditions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SliceEndpoint {
    pub addresses: Option<Vec<String>>,
    pub conditions: Option<SliceConditions>,
    pub hostname: Option<String>,
    #[serde(rename = "nodeName")]
    pub node_name: Option<String>,
    pub zone: Option<String>,
    #[serde(rename = "targetRef")]
    pub target_ref: Option<ObjectRef>,
}

/// Slice endpoint conditions; `null` means ready, serving, not terminating.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}
