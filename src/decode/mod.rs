//! The event decoder: one line of a watch body (framed by `lines`) → a typed event; a list
//! body → its items; an error body → its Status.
//!
//! [`decode_event`] turns a line into a [`WatchEvent`], [`decode_list`] a list into
//! [`Listed`], and [`not_an_event`] tells a body that is one complete object (a server that
//! does not stream) from a line cut mid-event. All pure, and none panics.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::merge::{normalize_endpoints, normalize_slice, ObjectGroups};
use crate::model::{EndpointSlice, Endpoints, List, Meta, StatusObject, Str};
use crate::source::Api;
use crate::util::printable;
use crate::Error;

/// A decoded watch event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// ADDED or MODIFIED: the object's new state.
    Applied {
        name: String,
        resource_version: Option<String>,
        object: ObjectGroups,
    },
    /// DELETED: the object is gone (or no longer matches the selector).
    Deleted {
        name: String,
        resource_version: Option<String>,
    },
    /// BOOKMARK: nothing changed up to this resourceVersion.
    Bookmark { resource_version: String },
    /// ERROR: a Status; code 410 means the resourceVersion is too old.
    Error {
        code: Option<u16>,
        reason: Option<String>,
        message: String,
    },
    /// A type this client does not know; ignored.
    Unknown { kind: String },
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct BookmarkObject<'a> {
    #[serde(default, borrow)]
    metadata: Option<Meta<'a>>,
}

/// Decode one event line of a watch on `resource`.
///
/// One pass over the line: when `type` comes before `object` (as the API server writes it),
/// an ADDED, MODIFIED or DELETED object is decoded straight into the typed model. Anything
/// else, and any line that pass does not accept, takes the general path (the event with
/// its object as raw JSON, then the object), which decides the result and the error message.
/// Both paths use the same models, so they agree on every line the fast one accepts.
pub(crate) fn decode_event(line: &[u8], resource: Api) -> Result<WatchEvent, Error> {
    let fast = std::str::from_utf8(line).ok().and_then(|text| {
        let mut de = serde_json::Deserializer::from_str(text);
        let event = serde::de::DeserializeSeed::deserialize(EventSeed(resource), &mut de).ok()?;
        de.end().ok()?;
        Some(event)
    });
    match fast {
        Some(FastEvent {
            kind,
            object: FastObject::Raw(raw),
        }) => finish(&kind, raw.map(RawValue::get).unwrap_or("null"), resource),
        Some(FastEvent {
            kind,
            object: FastObject::Endpoints(object),
        }) => finish_object(&kind, normalize(object)),
        Some(FastEvent {
            kind,
            object: FastObject::Slice(object),
        }) => finish_object(&kind, normalize(object)),
        None => decode_event_general(line, resource),
    }
}

/// The general path: the event with its object as raw JSON, then the object.
fn decode_event_general(line: &[u8], resource: Api) -> Result<WatchEvent, Error> {
    let raw: RawEvent<'_> = serde_json::from_slice(line)
        .map_err(|e| Error::decode(format!("malformed watch event: {}", brief(&e))))?;
    finish(
        &raw.kind,
        raw.object.map(RawValue::get).unwrap_or("null"),
        resource,
    )
}

/// An event as the one-pass decoder read it.
struct FastEvent<'a> {
    kind: Str<'a>,
    object: FastObject<'a>,
}

enum FastObject<'a> {
    /// `type` came first and names an object event: the typed object.
    Endpoints(Option<Endpoints<'a>>),
    Slice(Option<EndpointSlice<'a>>),
    /// Anything else: the object's JSON, if there is one.
    Raw(Option<&'a RawValue>),
}

struct EventSeed(Api);

impl<'de> serde::de::DeserializeSeed<'de> for EventSeed {
    type Value = FastEvent<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FastEvent<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EventSeed {
    type Value = FastEvent<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a watch event")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<FastEvent<'de>, A::Error> {
        use serde::de::Error as _;
        let mut kind: Option<Str<'de>> = None;
        let mut object: Option<FastObject<'de>> = None;
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key {
                "type" => {
                    if kind.is_some() {
                        return Err(A::Error::duplicate_field("type"));
                    }
                    kind = Some(map.next_value()?);
                }
                "object" => {
                    if object.is_some() {
                        return Err(A::Error::duplicate_field("object"));
                    }
                    let typed = matches!(kind.as_deref(), Some("ADDED" | "MODIFIED" | "DELETED"));
                    object = Some(match (typed, self.0) {
                        (true, Api::Endpoints) => FastObject::Endpoints(map.next_value()?),
                        (true, Api::EndpointSlices) => FastObject::Slice(map.next_value()?),
                        (false, _) => FastObject::Raw(map.next_value()?),
                    });
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        // An object that came before its type is raw JSON: `finish` decodes it.
        let object = object.unwrap_or(FastObject::Raw(None));
        Ok(FastEvent { kind, object })
    }
}

/// The longest resourceVersion taken, in bytes. Servers send a decimal counter (etcd's
/// revision: 20 digits at most); the limit keeps a broken server's version from outgrowing
/// the request buffer (the client sizes it for this many bytes, escaped).
pub(crate) const MAX_RESOURCE_VERSION: usize = 256;

/// `rv` as a resourceVersion to resume from, unless it is longer than any server sends.
fn resource_version(rv: Str<'_>) -> Result<String, Error> {
    let rv = rv.into_owned();
    if rv.len() > MAX_RESOURCE_VERSION {
        return Err(Error::decode(format!(
            "a resourceVersion of {} bytes (more than {MAX_RESOURCE_VERSION})",
            rv.len()
        )));
    }
    Ok(rv)
}

/// The event of type `kind` whose object is `object` (JSON text).
fn finish(kind: &str, object: &str, resource: Api) -> Result<WatchEvent, Error> {
    match kind {
        "ADDED" | "MODIFIED" | "DELETED" => finish_object(kind, decode_object(object, resource)?),
        "BOOKMARK" => {
            let bookmark: Option<BookmarkObject<'_>> = serde_json::from_str(object)
                .map_err(|e| Error::decode(format!("malformed bookmark: {}", brief(&e))))?;
            let resource_version = bookmark
                .and_then(|b| b.metadata)
                .and_then(|m| m.resource_version)
                .map(resource_version)
                .ok_or_else(|| Error::decode("bookmark without a resourceVersion"))??;
            Ok(WatchEvent::Bookmark { resource_version })
        }
        "ERROR" => {
            let status: Option<StatusObject> = serde_json::from_str(object).unwrap_or_default();
            let status = status.unwrap_or_default();
            Ok(WatchEvent::Error {
                code: status.code,
                reason: status.reason,
                message: status.message.unwrap_or_default(),
            })
        }
        other => Ok(WatchEvent::Unknown {
            kind: other.to_string(),
        }),
    }
}
/// An ADDED, MODIFIED or DELETED event from its object's metadata and groups.
fn finish_object(
    kind: &str,
    (meta, object): (Option<Meta<'_>>, ObjectGroups),
) -> Result<WatchEvent, Error> {
    let meta = meta.ok_or_else(|| Error::decode(format!("{kind} event without an object")))?;
    let name = meta
        .name
        .ok_or_else(|| Error::decode("object without a name"))?
        .into_owned();
    let resource_version = meta.resource_version.map(resource_version).transpose()?;
    Ok(if kind == "DELETED" {
        WatchEvent::Deleted {
            name,
            resource_version,
        }
    } else {
        WatchEvent::Applied {
            name,
            resource_version,
            object,
        }
    })
}

/// Decode one object (an event's or a list item) into its metadata and groups.
fn decode_object(json: &str, resource: Api) -> Result<(Option<Meta<'_>>, ObjectGroups), Error> {
    let bad =
        |e: serde_json::Error| Error::decode(format!("malformed {resource} object: {}", brief(&e)));
    match resource {
        Api::Endpoints => Ok(normalize(
            serde_json::from_str::<Option<Endpoints<'_>>>(json).map_err(bad)?,
        )),
        Api::EndpointSlices => Ok(normalize(
            serde_json::from_str::<Option<EndpointSlice<'_>>>(json).map_err(bad)?,
        )),
    }
}

/// An object of either resource, as the decoder needs it: its metadata and its groups.
trait Object<'a> {
    fn normalize(&self) -> ObjectGroups;
    fn into_metadata(self) -> Option<Meta<'a>>;
}

impl<'a> Object<'a> for Endpoints<'a> {
    fn normalize(&self) -> ObjectGroups {
        normalize_endpoints(self)
    }
    fn into_metadata(self) -> Option<Meta<'a>> {
        self.metadata
    }
}

impl<'a> Object<'a> for EndpointSlice<'a> {
    fn normalize(&self) -> ObjectGroups {
        normalize_slice(self)
    }
    fn into_metadata(self) -> Option<Meta<'a>> {
        self.metadata
    }
}

/// An object's metadata and groups; a `null` object has neither.
fn normalize<'a>(object: Option<impl Object<'a>>) -> (Option<Meta<'a>>, ObjectGroups) {
    match object {
        None => (None, ObjectGroups::default()),
        Some(object) => {
            let groups = object.normalize();
            (object.into_metadata(), groups)
        }
    }
}

/// A serde error for a message: it may quote a whole (hostile, huge) string from the input,
/// so it is escaped and capped like any server text.
fn brief(e: &serde_json::Error) -> String {
    printable(e.to_string().as_bytes())
}

/// A watch line, or what is left of a watch body at its end, that is one complete JSON value
/// but no event: what a server or proxy that does not stream watches answers (a List, or a
/// Status with or without a trailing newline).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotAnEvent {
    /// A `Status` (`kind: Status`, or a `code` without a `kind`).
    Status {
        code: Option<u16>,
        reason: Option<String>,
        message: String,
    },
    /// Any other complete JSON value, e.g. an `EndpointsList`; its `kind` if it has one.
    Other { kind: Option<String> },
}

impl NotAnEvent {
    /// The error to report: a Status keeps its code, reason and message.
    pub(crate) fn into_error(self) -> Error {
        let what = "the watch answered with";
        let instead = "instead of a stream of events; relisting";
        match self {
            NotAnEvent::Status {
                code: Some(code),
                reason,
                message,
            } => Error::api(
                code,
                reason,
                format!(
                    "{what} a Status {instead}: HTTP {code}: {}",
                    printable(message.as_bytes())
                ),
                None,
            ),
            NotAnEvent::Status {
                code: None,
                message,
                ..
            } => Error::decode(format!(
                "{what} a Status {instead}: {}",
                printable(message.as_bytes())
            )),
            NotAnEvent::Other { kind } => Error::decode(format!(
                "{what} one {} {instead} (a server or proxy that does not stream watches?)",
                kind.map_or("JSON value".to_string(), |k| { printable(k.as_bytes()) })
            )),
        }
    }
}

/// What `bytes` is when it is one complete JSON value but not a watch event; `None` when it
/// is an event (perhaps malformed) or not complete JSON (a line cut mid-event).
pub(crate) fn not_an_event(bytes: &[u8]) -> Option<NotAnEvent> {
    use serde::de::IgnoredAny;
    use serde_json::Value;
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        kind: Option<Value>,
        #[serde(rename = "type", default)]
        event_type: Option<IgnoredAny>,
        #[serde(default)]
        code: Option<Value>,
        #[serde(default)]
        reason: Option<Value>,
        #[serde(default)]
        message: Option<Value>,
    }
    let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
    match serde_json::from_slice::<Peek>(bytes) {
        Ok(peek) if peek.event_type.is_some() => None,
        Ok(peek) => {
            let kind = text(peek.kind);
            let code = peek
                .code
                .and_then(|c| c.as_u64())
                .and_then(|c| u16::try_from(c).ok());
            if kind.as_deref() == Some("Status") || (kind.is_none() && code.is_some()) {
                Some(NotAnEvent::Status {
                    code,
                    reason: text(peek.reason),
                    message: text(peek.message).unwrap_or_default(),
                })
            } else {
                Some(NotAnEvent::Other { kind })
            }
        }
        Err(_) => serde_json::from_slice::<IgnoredAny>(bytes)
            .ok()
            .map(|_| NotAnEvent::Other { kind: None }),
    }
}

/// A decoded list response: its resourceVersion and each item by name.
#[derive(Debug)]
pub(crate) struct Listed {
    pub resource_version: String,
    pub items: Vec<(String, ObjectGroups)>,
}

/// Decode a list response body.
pub(crate) fn decode_list(body: &[u8], resource: Api) -> Result<Listed, Error> {
    let list: List<'_, &RawValue> = serde_json::from_slice(body)
        .map_err(|e| Error::decode(format!("malformed {resource} list: {}", brief(&e))))?;
    let resource_version = list
        .metadata
        .and_then(|m| m.resource_version)
        .filter(|rv| !rv.is_empty())
        .map(resource_version)
        .ok_or_else(|| Error::decode(format!("{resource} list without a resourceVersion")))??;
    let mut items = Vec::new();
    for item in list.items.unwrap_or_default() {
        let (meta, object) = decode_object(item.get(), resource)?;
        let name = meta
            .and_then(|m| m.name)
            .map(Str::into_owned)
            .ok_or_else(|| Error::decode(format!("{resource} list item without a name")))?;
        items.push((name, object));
    }
    Ok(Listed {
        resource_version,
        items,
    })
}

/// The Status in an error body, if the body is one (429 bodies are plain text).
pub(crate) fn decode_status(body: &[u8]) -> Option<StatusObject> {
    serde_json::from_slice::<StatusObject>(body)
        .ok()
        .filter(|s| s.code.is_some() || s.message.is_some())
}

#[cfg(test)]
mod tests;
