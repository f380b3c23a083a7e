//! The server's state: objects, the event log, selectors, and JSON rendering.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::TcpStream;

use serde_json::{Map, Value};

use super::faults::{Failure, Fault};
use super::objects::fake_uid;
use super::record::RequestRecord;
use super::types::{ChunkMode, Resource, Verb};

/// The first resourceVersion handed out is `INITIAL_RV + 1`.
const INITIAL_RV: u64 = 1000;

/// One change in the event log.
#[derive(Debug)]
pub(crate) struct LogEvent {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    /// The object after the change; `None` for a deletion.
    pub object: Option<Value>,
    /// The object before the change; `None` for a creation.
    pub prev: Option<Value>,
}

/// A pending `fail_next` rule.
#[derive(Debug)]
pub(crate) struct FailRule {
    pub verb: Verb,
    pub remaining: usize,
    pub failure: Failure,
}

/// An open watch.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    pub faults: VecDeque<Fault>,
}

/// Everything behind the server's mutex.
pub(crate) struct ServerState {
    pub rv: u64,
    /// Watches from a resourceVersion below this get `410 Expired`.
    pub horizon: u64,
    pub objects: BTreeMap<(Resource, String, String), Value>,
    pub log: Vec<LogEvent>,
    pub token: Option<String>,
    pub chunk_mode: ChunkMode,
    pub forbidden: HashSet<Resource>,
    pub disabled: HashSet<Resource>,
    pub failures: VecDeque<FailRule>,
    pub next_watch_faults: VecDeque<Fault>,
    pub watches: HashMap<u64, WatchSlot>,
    /// Open connections (a clone of each socket, to close them from outside).
    pub conns: HashMap<u64, TcpStream>,
    pub requests: Vec<RequestRecord>,
    pub next_id: u64,
    pub accepted: u64,
    pub listening: bool,
    pub shutdown: bool,
}

impl ServerState {
    pub fn new(token: Option<String>, chunk_mode: ChunkMode) -> ServerState {
        ServerState {
            rv: INITIAL_RV,
            horizon: 0,
            objects: BTreeMap::new(),
            log: Vec::new(),
            token,
            chunk_mode,
            forbidden: HashSet::new(),
            disabled: HashSet::new(),
            failures: VecDeque::new(),
            next_watch_faults: VecDeque::new(),
            watches: HashMap::new(),
            conns: HashMap::new(),
            requests: Vec::new(),
            next_id: 1,
            accepted: 0,
            listening: false,
            shutdown: false,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Creates or replaces an object; returns the new resourceVersion.
    pub fn apply(&mut self, resource: Resource, namespace: &str, name: &str, object: Value) -> u64 {
        let key = (resource, namespace.to_owned(), name.to_owned());
        // The caller logs a value that is not an object.
        let mut obj = match object {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.remove("kind");
        obj.remove("apiVersion");
        self.rv += 1;
        let rv = self.rv;
        let prev = self.objects.get(&key).cloned();
        let prev_uid = prev
            .as_ref()
            .and_then(|p| p.pointer("/metadata/uid"))
            .cloned();
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            meta.insert("name".into(), Value::String(name.to_owned()));
            meta.insert("namespace".into(), Value::String(namespace.to_owned()));
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            let uid = prev_uid.unwrap_or_else(|| {
                Value::String(fake_uid(&format!(
                    "{}/{namespace}/{name}/{rv}",
                    resource.plural()
                )))
            });
            meta.entry("uid").or_insert(uid);
        }
        let obj = Value::Object(obj);
        self.objects.insert(key, obj.clone());
        self.log.push(LogEvent {
            rv,
            resource,
            namespace: namespace.to_owned(),
            object: Some(obj),
            prev,
        });
        rv
    }

    /// Deletes an object; returns the new resourceVersion, `None` when it did not exist.
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<u64> {
        let key = (resource, namespace.to_owned(), name.to_owned());
        let prev = self.objects.remove(&key)?;
        self.rv += 1;
        self.log.push(LogEvent {
            rv: self.rv,
            resource,
            namespace: namespace.to_owned(),
            object: None,
            prev: Some(prev),
        });
        Some(self.rv)
    }

    /// Objects that `filter` selects, in name order.
    pub fn matching<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((r, ns, _), obj)| {
                *r == filter.resource && *ns == filter.namespace && filter.matches(obj)
            })
            .map(|(_, obj)| obj)
    }

    /// Log events with a resourceVersion above `rv`.
    pub fn events_after(&self, rv: u64) -> &[LogEvent] {
        let start = self.log.partition_point(|e| e.rv <= rv);
        &self.log[start..]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
}

#[derive(Debug, Clone)]
enum Req {
    Field(Field, bool, String),
    Label(String, bool, String),
    Exists(String, bool),
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub resource: Resource,
    pub namespace: String,
    reqs: Vec<Req>,
}

fn split_op(term: &str) -> Option<(&str, bool, &str)> {
    if let Some((k, v)) = term.split_once("!=") {
        return Some((k.trim(), false, v.trim()));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Some((k.trim(), true, v.trim()));
    }
    term.split_once('=')
        .map(|(k, v)| (k.trim(), true, v.trim()))
}

impl Filter {
    /// Parses the selectors of a request (`name` from the path acts as
    /// `metadata.name=name`). `Err` carries a BadRequest message in the real server's words.
    pub fn parse(
        resource: Resource,
        namespace: &str,
        name: Option<&str>,
        field_selector: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Filter, String> {
        let mut reqs = Vec::new();
        if let Some(name) = name {
            reqs.push(Req::Field(Field::Name, true, name.to_owned()));
        }
        for term in field_selector.unwrap_or("").split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let Some((k, eq, v)) = split_op(term) else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            let field = match k {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => return Err(format!("field label not supported: {other}")),
            };
            reqs.push(Req::Field(field, eq, v.to_owned()));
        }
        let labels = label_selector.unwrap_or("");
        if labels.contains('(') {
            return Err(format!(
                "unable to parse requirement: set-based selectors are not supported by the fake server: {labels:?}"
            ));
        }
        for term in labels.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = match split_op(term) {
                Some((k, eq, v)) => Req::Label(k.to_owned(), eq, v.to_owned()),
                None => match term.strip_prefix('!') {
                    Some(k) => Req::Exists(k.trim().to_owned(), false),
                    None => Req::Exists(term.to_owned(), true),
                },
            };
            let key = match &req {
                Req::Label(k, _, _) | Req::Exists(k, _) => k,
                Req::Field(..) => "",
            };
            if key.is_empty() || key.contains(' ') {
                return Err(format!(
                    "unable to parse requirement: invalid label key {key:?}"
                ));
            }
            reqs.push(req);
        }
        Ok(Filter {
            resource,
            namespace: namespace.to_owned(),
            reqs,
        })
    }

    /// Whether `obj` (of this filter's resource and namespace) is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let meta = |k: &str| {
            obj.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
        };
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
        };
        self.reqs.iter().all(|req| match req {
            Req::Field(f, eq, v) => {
                let actual = match f {
                    Field::Name => meta("name"),
                    Field::Namespace => meta("namespace"),
                };
                (actual == Some(v.as_str())) == *eq
            }
            // `key!=value` also selects objects without the label.
            Req::Label(k, eq, v) => (label(k) == Some(v.as_str())) == *eq,
            Req::Exists(k, exists) => label(k).is_some() == *exists,
        })
    }

    /// What a watcher with this filter sees of `ev`, as the real watch cache decides it:
    /// a change into the selection is ADDED, out of it DELETED (carrying the previous
    /// state with the event's resourceVersion).
    pub fn convert(&self, ev: &LogEvent) -> Option<(&'static str, Value)> {
        if ev.resource != self.resource || ev.namespace != self.namespace {
            return None;
        }
        let cur = ev.object.as_ref().filter(|o| self.matches(o));
        let old = ev.prev.as_ref().filter(|o| self.matches(o));
        match (cur, old) {
            (Some(cur), None) => Some(("ADDED", cur.clone())),
            (Some(cur), Some(_)) => Some(("MODIFIED", cur.clone())),
            (None, Some(old)) => {
                let mut old = old.clone();
                if let Some(Value::Object(meta)) = old.get_mut("metadata") {
                    meta.insert("resourceVersion".into(), Value::String(ev.rv.to_string()));
                }
                Some(("DELETED", old))
            }
            (None, None) => None,
        }
    }
}

/// A JSON string literal.
pub(crate) fn js(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `obj` with `kind` and `apiVersion` first, as the server renders a single object.
pub(crate) fn object_json(resource: Resource, obj: &Value) -> String {
    let mut m = match obj {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    m.remove("kind");
    m.remove("apiVersion");
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{}",
        js(resource.kind()),
        js(resource.api_version())
    );
    if m.is_empty() {
        return head + "}";
    }
    let rest = Value::Object(m).to_string();
    format!("{head},{}", &rest[1..])
}

/// One watch event line, `\n` included.
pub(crate) fn event_line(kind: &str, object_json: &str) -> Vec<u8> {
    format!("{{\"type\":{},\"object\":{}}}\n", js(kind), object_json).into_bytes()
}

/// A BOOKMARK event line.
pub(crate) fn bookmark_line(resource: Resource, rv: u64) -> Vec<u8> {
    let extra = match resource {
        Resource::Endpoints => "",
        Resource::EndpointSlices => ",\"addressType\":\"\",\"endpoints\":null,\"ports\":null",
    };
    let obj = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{{\"resourceVersion\":\"{rv}\"}}{extra}}}",
        js(resource.kind()),
        js(resource.api_version())
    );
    event_line("BOOKMARK", &obj)
}

/// A `Status` object (always `status: Failure`).
pub(crate) fn status_json(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<&Value>,
) -> String {
    let details = details
        .map(|d| format!("\"details\":{d},"))
        .unwrap_or_default();
    format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":{},\"reason\":{},{details}\"code\":{code}}}",
        js(message),
        js(reason)
    )
}

/// The ERROR event a watch from a compacted resourceVersion gets.
pub(crate) fn expired_line(rv: u64, horizon: u64) -> Vec<u8> {
    let status = status_json(
        410,
        "Expired",
        &format!("too old resource version: {rv} ({horizon})"),
        None,
    );
    event_line("ERROR", &status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"k": "v"}}});
        let f = |fs: Option<&str>, ls: Option<&str>| {
            Filter::parse(Resource::Endpoints, "ns", None, fs, ls).map(|f| f.matches(&obj))
        };
        assert_eq!(f(Some("metadata.name=a"), None), Ok(true));
        assert_eq!(f(Some("metadata.name==b"), None), Ok(false));
        assert_eq!(f(Some("metadata.name!=b"), None), Ok(true));
        assert_eq!(f(None, Some("k=v")), Ok(true));
        assert_eq!(f(None, Some("k=w")), Ok(false));
        assert_eq!(f(None, Some("k,!j")), Ok(true));
        assert_eq!(f(None, Some("j")), Ok(false));
        assert_eq!(f(None, None), Ok(true));
        assert!(f(Some("spec.x=1"), None).is_err());
        assert!(f(Some("garbage"), None).is_err());
        assert!(f(None, Some("k in (a,b)")).is_err());
        assert!(f(None, Some("=v")).is_err());
    }

    #[test]
    fn rendering() {
        let o = json!({"metadata": {"name": "a"}, "kind": "X"});
        assert_eq!(
            object_json(Resource::Endpoints, &o),
            r#"{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"a"}}"#
        );
        assert_eq!(
            String::from_utf8(bookmark_line(Resource::EndpointSlices, 7)).unwrap_or_default(),
            "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":\"discovery.k8s.io/v1\",\"metadata\":{\"resourceVersion\":\"7\"},\"addressType\":\"\",\"endpoints\":null,\"ports\":null}}\n"
        );
        let s: Value =
            serde_json::from_str(&status_json(401, "Unauthorized", "Unauthorized", None))
                .unwrap_or_default();
        assert_eq!(s["code"], 401);
        assert_eq!(s["status"], "Failure");
    }

    #[test]
    fn selection_changes() {
        let mut st = ServerState::new(None, ChunkMode::PerEvent);
        let f = Filter::parse(
            Resource::EndpointSlices,
            "ns",
            None,
            None,
            Some("kubernetes.io/service-name=svc"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let with = |svc: &str| json!({"metadata": {"labels": {"kubernetes.io/service-name": svc}}});
        st.apply(Resource::EndpointSlices, "ns", "s1", with("svc"));
        st.apply(Resource::EndpointSlices, "ns", "s1", with("svc"));
        let rv = st.apply(Resource::EndpointSlices, "ns", "s1", with("other"));
        st.apply(Resource::EndpointSlices, "ns", "s1", with("other"));
        st.apply(Resource::EndpointSlices, "ns", "s1", with("svc"));
        st.delete(Resource::EndpointSlices, "ns", "s1");
        st.apply(Resource::EndpointSlices, "other-ns", "s1", with("svc"));
        let seen: Vec<_> = st
            .events_after(0)
            .iter()
            .filter_map(|e| f.convert(e))
            .collect();
        let kinds: Vec<_> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"]);
        assert_eq!(seen[2].1["metadata"]["resourceVersion"], rv.to_string());
        assert_eq!(
            seen[2].1["metadata"]["labels"]["kubernetes.io/service-name"],
            "svc"
        );
        assert_eq!(st.events_after(rv).len(), 4);
    }
}
