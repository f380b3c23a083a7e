//! The server's JSON: objects with `kind` and `apiVersion` first, lists, watch event
//! lines, bookmarks.

use serde_json::{Map, Value};

use super::errors::status_json;
use super::types::Resource;

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

/// A list: `metadata` with the resourceVersion, and `continue` and `remainingItemCount`
/// when there is more; `items` always present, its objects without `kind`/`apiVersion`.
pub(crate) fn list_json<'a>(
    resource: Resource,
    rv: u64,
    next: Option<(&str, Option<usize>)>,
    items: impl Iterator<Item = &'a Value>,
) -> String {
    let mut meta = format!("\"resourceVersion\":\"{rv}\"");
    if let Some((token, remaining)) = next {
        meta.push_str(&format!(",\"continue\":{}", js(token)));
        if let Some(n) = remaining {
            meta.push_str(&format!(",\"remainingItemCount\":{n}"));
        }
    }
    let items: Vec<String> = items.map(Value::to_string).collect();
    format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{{{meta}}},\"items\":[{}]}}",
        js(resource.list_kind()),
        js(resource.api_version()),
        items.join(",")
    )
}

/// One watch event line, `\n` included.
pub(crate) fn event_line(kind: &str, object_json: &str) -> Vec<u8> {
    format!("{{\"type\":{},\"object\":{}}}\n", js(kind), object_json).into_bytes()
}

/// A BOOKMARK event line: an empty object of the watched kind, as Go serialises one, with
/// only its resourceVersion (and, for the bookmark that ends a streaming list's initial
/// events, the annotation `k8s.io/initial-events-end: "true"`).
pub(crate) fn bookmark_line(resource: Resource, rv: u64, initial_events_end: bool) -> Vec<u8> {
    let extra = match resource {
        Resource::Endpoints => "",
        Resource::EndpointSlices => ",\"addressType\":\"\",\"endpoints\":null,\"ports\":null",
        Resource::Namespaces => ",\"spec\":{},\"status\":{}",
    };
    let annotations = if initial_events_end {
        ",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}"
    } else {
        ""
    };
    let obj = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{{\"resourceVersion\":\"{rv}\"{annotations}}}{extra}}}",
        js(resource.kind()),
        js(resource.api_version())
    );
    event_line("BOOKMARK", &obj)
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

    fn text(line: Vec<u8>) -> String {
        String::from_utf8(line).unwrap_or_default()
    }

    #[test]
    fn objects_and_bookmarks() {
        let o = json!({"metadata": {"name": "a"}, "kind": "X"});
        assert_eq!(
            object_json(Resource::Endpoints, &o),
            r#"{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"a"}}"#
        );
        assert_eq!(
            object_json(Resource::Namespaces, &json!(null)),
            r#"{"kind":"Namespace","apiVersion":"v1"}"#
        );
        assert_eq!(
            text(bookmark_line(Resource::EndpointSlices, 7, false)),
            "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":\"discovery.k8s.io/v1\",\"metadata\":{\"resourceVersion\":\"7\"},\"addressType\":\"\",\"endpoints\":null,\"ports\":null}}\n"
        );
        assert_eq!(
            text(bookmark_line(Resource::Endpoints, 8, true)),
            "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Endpoints\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"8\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}\n"
        );
        let ns: Value = serde_json::from_slice(&bookmark_line(Resource::Namespaces, 9, false))
            .unwrap_or_default();
        assert_eq!(ns["object"]["kind"], "Namespace");
        assert_eq!(ns["object"]["spec"], json!({}));
        let s: Value = serde_json::from_slice(&expired_line(3, 5)).unwrap_or_default();
        assert_eq!(s["type"], "ERROR");
        assert_eq!(s["object"]["code"], 410);
        assert_eq!(s["object"]["message"], "too old resource version: 3 (5)");
    }

    #[test]
    fn lists_say_continue_and_remaining_only_when_there_is_more() {
        let items = [json!({"metadata": {"name": "a"}})];
        assert_eq!(
            list_json(Resource::Endpoints, 5, None, items.iter()),
            r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"a"}}]}"#
        );
        assert_eq!(
            list_json(Resource::Namespaces, 5, Some(("t", Some(2))), [].iter()),
            r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"5","continue":"t","remainingItemCount":2},"items":[]}"#
        );
        assert_eq!(
            list_json(Resource::EndpointSlices, 5, Some(("t", None)), [].iter()),
            r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"5","continue":"t"},"items":[]}"#
        );
    }
}
