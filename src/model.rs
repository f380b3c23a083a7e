//! The Kubernetes objects we read, as typed serde models that skip every field we don't use.
//!
//! Every collection may be absent or `null` on the wire, so each one is an `Option` that
//! [`or_empty`] turns into an empty slice. Strings are [`Str`]: borrowed from the input when
//! they have no escapes, so decoding an event allocates little besides the vectors.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A JSON string, borrowed from the input when it contains no escape, owned otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Str<'a>, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
            // What `String` accepts too.
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Str<'de>, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Str(Cow::Owned(s.to_owned()))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Str<'de>, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Str(Cow::Borrowed(s))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// `metadata` of an object, a list, or a bookmark.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Meta<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(rename = "resourceVersion", borrow)]
    pub resource_version: Option<Str<'a>>,
    #[serde(borrow)]
    pub labels: Option<Labels<'a>>,
}

/// The one label we read: which Service an EndpointSlice belongs to.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Labels<'a> {
    #[serde(rename = "kubernetes.io/service-name", borrow)]
    pub service_name: Option<Str<'a>>,
}

/// A list response: only its resourceVersion and its items matter.
#[derive(Debug, Deserialize)]
pub(crate) struct List<'a, T> {
    #[serde(default, borrow)]
    pub metadata: Option<Meta<'a>>,
    #[serde(default = "Option::default")]
    pub items: Option<Vec<T>>,
}

/// A `meta/v1` Status: the body of API errors and of ERROR watch events.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusObject {
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `targetRef` of an address: the Pod behind it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ObjectRef<'a> {
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
}

/// core/v1 Endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoints<'a> {
    #[serde(borrow)]
    pub metadata: Option<Meta<'a>>,
    #[serde(borrow)]
    pub subsets: Option<Vec<Subset<'a>>>,
}

/// One subset of an Endpoints object: every address × every port.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Subset<'a> {
    #[serde(borrow)]
    pub addresses: Option<Vec<Address<'a>>>,
    #[serde(rename = "notReadyAddresses", borrow)]
    pub not_ready_addresses: Option<Vec<Address<'a>>>,
    #[serde(borrow)]
    pub ports: Option<Vec<EndpointPort<'a>>>,
}

/// An address in an Endpoints subset.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Address<'a> {
    #[serde(borrow)]
    pub ip: Option<Str<'a>>,
    #[serde(borrow)]
    pub hostname: Option<Str<'a>>,
    #[serde(rename = "nodeName", borrow)]
    pub node_name: Option<Str<'a>>,
    #[serde(rename = "targetRef", borrow)]
    pub target_ref: Option<ObjectRef<'a>>,
}

/// A port of an Endpoints subset or of an EndpointSlice. `port` may be `null` in slices.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointPort<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    pub port: Option<i64>,
}

/// Absent and `null` collections both read as empty.
pub(crate) fn or_empty<T, C: Deref<Target = [T]>>(items: &Option<C>) -> &[T] {
    items.as_deref().unwrap_or(&[])
}

/// The `addresses` of a slice endpoint: exactly one in practice, so one is kept without a
/// vector (no allocation per endpoint), any number is accepted.
#[derive(Debug)]
pub(crate) enum Addrs<'a> {
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

impl<'a> Deref for Addrs<'a> {
    type Target = [Str<'a>];
    fn deref(&self) -> &[Str<'a>] {
        match self {
            Addrs::One(one) => std::slice::from_ref(one),
            Addrs::Many(many) => many,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Addrs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Addrs<'a>, D::Error> {
        struct AddrsVisitor;
        impl<'de> Visitor<'de> for AddrsVisitor {
            type Value = Addrs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Addrs<'de>, A::Error> {
                let Some(first) = seq.next_element::<Str<'de>>()? else {
                    return Ok(Addrs::Many(Vec::new()));
                };
                let Some(second) = seq.next_element::<Str<'de>>()? else {
                    return Ok(Addrs::One(first));
                };
                let mut many = vec![first, second];
                while let Some(more) = seq.next_element()? {
                    many.push(more);
                }
                Ok(Addrs::Many(many))
            }
        }
        deserializer.deserialize_seq(AddrsVisitor)
    }
}

/// discovery.k8s.io/v1 EndpointSlice.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointSlice<'a> {
    #[serde(borrow)]
    pub metadata: Option<Meta<'a>>,
    #[serde(rename = "addressType", borrow)]
    pub address_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub endpoints: Option<Vec<SliceEndpoint<'a>>>,
    #[serde(borrow)]
    pub ports: Option<Vec<EndpointPort<'a>>>,
}

/// One endpoint of a slice: one address (the API allows exactly one) and its conditions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SliceEndpoint<'a> {
    #[serde(borrow)]
    pub addresses: Option<Addrs<'a>>,
    pub conditions: Option<SliceConditions>,
    #[serde(borrow)]
    pub hostname: Option<Str<'a>>,
    #[serde(rename = "nodeName", borrow)]
    pub node_name: Option<Str<'a>>,
    #[serde(borrow)]
    pub zone: Option<Str<'a>>,
    #[serde(rename = "targetRef", borrow)]
    pub target_ref: Option<ObjectRef<'a>>,
    #[serde(borrow)]
    pub hints: Option<Hints<'a>>,
}

/// Topology hints of a slice endpoint: which zones' and nodes' clients should use it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Hints<'a> {
    #[serde(rename = "forZones", borrow)]
    pub for_zones: Option<Vec<Named<'a>>>,
    #[serde(rename = "forNodes", borrow)]
    pub for_nodes: Option<Vec<Named<'a>>>,
}

/// `{"name": ...}`: one entry of `forZones` or `forNodes`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Named<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
}

/// Slice endpoint conditions; `null` means ready, serving, not terminating.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}
