//! Selectors: which objects of a collection a list or a watch selects, and what a watcher
//! sees of each change (`fieldSelector`, `labelSelector`, as the real server reads them).

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::{Key, LogEvent};
use super::types::Resource;

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
    /// `None`: every namespace (a cluster-wide collection, or a cluster-scoped resource).
    pub namespace: Option<String>,
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
        namespace: Option<&str>,
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
            namespace: namespace.map(str::to_owned),
            reqs,
        })
    }

    /// Whether the request had selectors (a list then has no `remainingItemCount`).
    pub fn selects(&self) -> bool {
        !self.reqs.is_empty()
    }

    /// Whether an object kept under `(resource, namespace)` is in this filter's collection.
    pub fn covers(&self, resource: Resource, namespace: &str) -> bool {
        resource == self.resource && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    /// The objects of `objects` in this filter's collection that it selects, in key order
    /// (namespace, then name), with their keys.
    pub fn pick<'a>(
        &'a self,
        objects: &'a BTreeMap<Key, Value>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        objects
            .iter()
            .filter(move |((r, ns, _), obj)| self.covers(*r, ns) && self.matches(obj))
    }

    /// Whether `obj` (of this filter's collection) is selected.
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
        if !self.covers(ev.resource, &ev.namespace) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::store::ServerState;
    use crate::testkit::types::ChunkMode;
    use serde_json::json;

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"k": "v"}}});
        let f = |fs: Option<&str>, ls: Option<&str>| {
            Filter::parse(Resource::Endpoints, Some("ns"), None, fs, ls).map(|f| f.matches(&obj))
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
    fn selection_changes() {
        let mut st = ServerState::new(None, ChunkMode::PerEvent);
        let f = Filter::parse(
            Resource::EndpointSlices,
            Some("ns"),
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
