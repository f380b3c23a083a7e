//! The server's state: objects, the event log (and the state at any resourceVersion it
//! still holds), namespaces, the test's knobs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::faults::{Failure, Fault};
use super::objects::{fake_uid, timestamp};
use super::record::RequestRecord;
use super::types::{ChunkMode, Resource, Verb};

/// The first resourceVersion handed out is `INITIAL_RV + 1`.
const INITIAL_RV: u64 = 1000;

/// The namespaces every cluster starts with.
const BUILTIN_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// How long a deleted namespace stays `Terminating` before its contents and itself are
/// gone: long enough for a client that deletes a namespace and then what is in it (kubectl
/// deleting a file in order) to find it all still there, as on a real cluster.
pub(crate) const NAMESPACE_TERMINATION: Duration = Duration::from_millis(300);

/// Where an object is kept: resource, namespace (`""` for a namespace itself), name.
pub(crate) type Key = (Resource, String, String);

/// One change in the event log.
#[derive(Debug)]
pub(crate) struct LogEvent {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
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
    /// Watches and lists at a resourceVersion below this get `410 Expired`.
    pub horizon: u64,
    pub objects: BTreeMap<Key, Value>,
    pub log: Vec<LogEvent>,
    /// Namespaces deleted over HTTP, `Terminating` until then.
    pub terminating: BTreeMap<String, Instant>,
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
        let mut st = ServerState {
            rv: INITIAL_RV - BUILTIN_NAMESPACES.len() as u64,
            horizon: 0,
            objects: BTreeMap::new(),
            log: Vec::new(),
            terminating: BTreeMap::new(),
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
        };
        for ns in BUILTIN_NAMESPACES {
            st.ensure_namespace(ns);
        }
        st
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Stores `object` under its key as the server's new state of it: sets
    /// `metadata.resourceVersion` to a new resourceVersion, logs the change, and returns
    /// that resourceVersion. Everything else in `object` is the caller's.
    pub fn put(&mut self, resource: Resource, namespace: &str, name: &str, object: Value) -> u64 {
        let mut obj = match object {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.remove("kind");
        obj.remove("apiVersion");
        self.rv += 1;
        let rv = self.rv;
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        meta["resourceVersion"] = Value::String(rv.to_string());
        let obj = Value::Object(obj);
        let key = (resource, namespace.to_owned(), name.to_owned());
        let prev = self.objects.insert(key, obj.clone());
        self.log.push(LogEvent {
            rv,
            resource,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            object: Some(obj),
            prev,
        });
        rv
    }

    /// Creates or replaces an object as a test's fixture: `metadata.name` and
    /// `metadata.namespace` from the arguments, `uid` and `creationTimestamp` kept from
    /// the previous state (or the object's own, or new); returns the new resourceVersion.
    pub fn apply(&mut self, resource: Resource, namespace: &str, name: &str, object: Value) -> u64 {
        let namespace = if resource.namespaced() { namespace } else { "" };
        let mut obj = match object {
            Value::Object(m) => Value::Object(m),
            _ => json!({}),
        };
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let prev = self
            .objects
            .get(&(resource, namespace.to_owned(), name.to_owned()));
        let kept = |field: &str| prev.and_then(|p| p["metadata"].get(field)).cloned();
        let uid = kept("uid").unwrap_or_else(|| {
            let seed = format!("{}/{namespace}/{name}/{}", resource.plural(), self.rv + 1);
            Value::String(fake_uid(&seed))
        });
        let created = kept("creationTimestamp")
            .unwrap_or_else(|| Value::String(timestamp(SystemTime::now())));
        if let Value::Object(meta) = &mut obj["metadata"] {
            meta.insert("name".into(), Value::String(name.to_owned()));
            if resource.namespaced() {
                meta.insert("namespace".into(), Value::String(namespace.to_owned()));
            } else {
                meta.remove("namespace");
            }
            meta.entry("uid").or_insert(uid);
            meta.entry("creationTimestamp").or_insert(created);
        }
        if resource == Resource::Namespaces {
            namespace_defaults(&mut obj, name);
        }
        self.put(resource, namespace, name, obj)
    }

    /// Creates the namespace `name` unless it exists (a fixture in a namespace brings its
    /// namespace, as if the test had created it first).
    pub fn ensure_namespace(&mut self, name: &str) {
        if !self.namespace_exists(name) {
            self.apply(Resource::Namespaces, "", name, json!({}));
        }
    }

    pub fn namespace_exists(&self, name: &str) -> bool {
        let key = (Resource::Namespaces, String::new(), name.to_owned());
        self.objects.contains_key(&key)
    }

    /// Deletes an object (a namespace with everything in it); returns the new
    /// resourceVersion, `None` when it did not exist.
    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<u64> {
        let namespace = if resource.namespaced() { namespace } else { "" };
        let key = (resource, namespace.to_owned(), name.to_owned());
        if resource == Resource::Namespaces && self.objects.contains_key(&key) {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(r, ns, _)| r.namespaced() && ns == name)
                .cloned()
                .collect();
            for (r, ns, n) in inside {
                self.delete(r, &ns, &n);
            }
        }
        let prev = self.objects.remove(&key)?;
        self.rv += 1;
        self.log.push(LogEvent {
            rv: self.rv,
            resource,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            object: None,
            prev: Some(prev),
        });
        Some(self.rv)
    }

    /// Marks namespace `name` `Terminating` (a deletion over HTTP): it and its contents go
    /// at `until`, when [`reap`](Self::reap) runs; the namespace's new state is returned.
    pub fn terminate_namespace(&mut self, name: &str, until: Instant) -> Option<Value> {
        let key = (Resource::Namespaces, String::new(), name.to_owned());
        let mut ns = self.objects.get(&key)?.clone();
        if !self.terminating.contains_key(name) {
            ns["metadata"]["deletionTimestamp"] = Value::String(timestamp(SystemTime::now()));
            ns["status"] = json!({"phase": "Terminating"});
            self.put(Resource::Namespaces, "", name, ns);
            self.terminating.insert(name.to_owned(), until);
        }
        self.objects.get(&key).cloned()
    }

    /// Whether namespace `name` is being deleted.
    pub fn is_terminating(&self, name: &str) -> bool {
        self.terminating.contains_key(name)
    }

    /// Deletes the namespaces whose termination is due, with their contents (what the
    /// namespace controller does); returns whether anything changed.
    pub fn reap(&mut self, now: Instant) -> bool {
        let due: Vec<String> = self
            .terminating
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &due {
            self.terminating.remove(name);
            self.delete(Resource::Namespaces, "", name);
        }
        !due.is_empty()
    }

    /// Log events with a resourceVersion above `rv`.
    pub fn events_after(&self, rv: u64) -> &[LogEvent] {
        let start = self.log.partition_point(|e| e.rv <= rv);
        &self.log[start..]
    }

    /// The objects of `resource` as they were at resourceVersion `rv` (not below the
    /// compaction horizon, not above the current one): the current ones with every later
    /// change undone.
    pub fn objects_at(&self, resource: Resource, rv: u64) -> BTreeMap<Key, Value> {
        let mut objects: BTreeMap<Key, Value> = self
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == resource)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ev in self.events_after(rv).iter().rev() {
            if ev.resource != resource {
                continue;
            }
            let key = (ev.resource, ev.namespace.clone(), ev.name.clone());
            match &ev.prev {
                Some(prev) => objects.insert(key, prev.clone()),
                None => objects.remove(&key),
            };
        }
        objects
    }
}

/// What the server fills in a Namespace: the name label, the `kubernetes` finalizer unless
/// the object lists its own, phase `Active` (the status is the server's).
pub(crate) fn namespace_defaults(obj: &mut Value, name: &str) {
    let labels = &mut obj["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["kubernetes.io/metadata.name"] = Value::String(name.to_owned());
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    if obj["spec"].get("finalizers").is_none() {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    obj["status"] = json!({"phase": "Active"});
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ServerState {
        ServerState::new(None, ChunkMode::PerEvent)
    }

    fn names(objects: &BTreeMap<Key, Value>) -> Vec<String> {
        objects
            .keys()
            .map(|(_, ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    #[test]
    fn a_new_server_has_the_builtin_namespaces_and_hands_out_resource_versions_after_1000() {
        let mut st = state();
        assert_eq!(st.rv, INITIAL_RV);
        for ns in BUILTIN_NAMESPACES {
            assert!(st.namespace_exists(ns), "{ns}");
        }
        let ns = &st.objects[&(Resource::Namespaces, String::new(), "default".to_owned())];
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "default"
        );
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(ns["metadata"].get("namespace").is_none());
        assert_eq!(
            st.apply(Resource::Endpoints, "default", "a", json!({})),
            INITIAL_RV + 1
        );
        assert!(!st.namespace_exists("prod"));
    }

    #[test]
    fn fixtures_keep_uid_and_creation_time_across_replacements() {
        let mut st = state();
        st.apply(Resource::Endpoints, "prod", "a", json!({"subsets": []}));
        let first = st.objects[&(Resource::Endpoints, "prod".into(), "a".into())].clone();
        let rv = st.apply(
            Resource::Endpoints,
            "prod",
            "a",
            json!({"kind": "X", "metadata": 3}),
        );
        let second = &st.objects[&(Resource::Endpoints, "prod".into(), "a".into())];
        assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
        assert_eq!(
            second["metadata"]["creationTimestamp"],
            first["metadata"]["creationTimestamp"]
        );
        assert_eq!(second["metadata"]["resourceVersion"], rv.to_string());
        assert_eq!(second["metadata"]["namespace"], "prod");
        assert!(second.get("kind").is_none() && second.get("subsets").is_none());
        let other = st.apply(Resource::Endpoints, "prod", "b", json!(null));
        let b = &st.objects[&(Resource::Endpoints, "prod".into(), "b".into())];
        assert_ne!(b["metadata"]["uid"], first["metadata"]["uid"]);
        assert_eq!(b["metadata"]["resourceVersion"], other.to_string());
    }

    #[test]
    fn the_state_at_an_older_resource_version_undoes_later_changes() {
        let mut st = state();
        let r1 = st.apply(Resource::Endpoints, "prod", "a", json!({"v": 1}));
        st.apply(Resource::Endpoints, "prod", "b", json!({"v": 1}));
        let r3 = st.apply(Resource::Endpoints, "prod", "a", json!({"v": 2}));
        st.apply(Resource::EndpointSlices, "prod", "s", json!({}));
        st.delete(Resource::Endpoints, "prod", "b");
        st.apply(Resource::Endpoints, "dev", "c", json!({}));
        let at = |rv| st.objects_at(Resource::Endpoints, rv);
        assert_eq!(names(&at(r1)), ["prod/a"]);
        assert_eq!(
            at(r1)[&(Resource::Endpoints, "prod".into(), "a".into())]["v"],
            1
        );
        assert_eq!(names(&at(r3)), ["prod/a", "prod/b"]);
        assert_eq!(
            at(r3)[&(Resource::Endpoints, "prod".into(), "a".into())]["v"],
            2
        );
        assert_eq!(names(&at(st.rv)), ["dev/c", "prod/a"]);
        assert!(at(INITIAL_RV).is_empty());
    }

    #[test]
    fn deleting_a_namespace_deletes_what_is_in_it() {
        let mut st = state();
        st.ensure_namespace("prod");
        st.apply(Resource::Endpoints, "prod", "a", json!({}));
        st.apply(Resource::EndpointSlices, "prod", "s", json!({}));
        st.apply(Resource::Endpoints, "dev", "a", json!({}));
        let rv = st.delete(Resource::Namespaces, "ignored", "prod");
        assert_eq!(rv, Some(st.rv));
        assert!(!st.namespace_exists("prod"));
        let left: Vec<&Key> = st
            .objects
            .keys()
            .filter(|k| k.0 != Resource::Namespaces)
            .collect();
        assert_eq!(
            left,
            [&(Resource::Endpoints, "dev".to_owned(), "a".to_owned())]
        );
        let deleted: Vec<&str> = st
            .events_after(rv.unwrap_or(0) - 3)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(deleted, ["a", "s", "prod"]);
        assert_eq!(st.delete(Resource::Namespaces, "", "prod"), None);
    }

    #[test]
    fn a_terminating_namespace_keeps_its_contents_until_it_is_reaped() {
        let mut st = state();
        st.ensure_namespace("prod");
        st.apply(Resource::Endpoints, "prod", "a", json!({}));
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(60);
        let ns = st.terminate_namespace("prod", until).unwrap_or_default();
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert!(ns["metadata"]["deletionTimestamp"].is_string());
        assert!(st.is_terminating("prod") && st.namespace_exists("prod"));
        let rv = st.rv;
        assert!(st.terminate_namespace("prod", t0).is_some());
        assert_eq!(st.rv, rv, "deleting it again changes nothing");
        assert!(st.terminate_namespace("nowhere", t0).is_none());
        assert!(!st.reap(until - Duration::from_millis(1)));
        assert!(st.namespace_exists("prod"));
        assert!(st.reap(until));
        assert!(!st.namespace_exists("prod") && !st.is_terminating("prod"));
        assert!(!st
            .objects
            .contains_key(&(Resource::Endpoints, "prod".into(), "a".into())));
        assert!(!st.reap(until));
    }
}
