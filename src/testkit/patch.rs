//! PATCH bodies: JSON merge patch (RFC 7386), and strategic merge patch as far as the
//! served kinds make it differ (not at all: their lists are atomic).

use serde_json::{Map, Value};

/// The patch types a PATCH may carry, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

/// The media types the server accepts for PATCH, as listed in its 415 message.
pub(crate) const ACCEPTED: &str =
    "application/merge-patch+json, application/strategic-merge-patch+json";

impl PatchType {
    /// The patch type of a `Content-Type` header (parameters ignored); `None` for any
    /// other.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().map(str::trim) {
            Some("application/merge-patch+json") => Some(PatchType::Merge),
            Some("application/strategic-merge-patch+json") => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// `patch` applied to `target` (RFC 7386): objects merge key by key, `null` removes a
/// key, anything else (arrays included) replaces.
pub(crate) fn merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in patch {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// A strategic merge patch for Endpoints, EndpointSlices and Namespaces, as a merge
/// patch: their lists have no merge keys (`subsets`, `endpoints`, `ports` are atomic), so
/// only the `$` directives (`$patch`, `$retainKeys`, `$setElementOrder/...`,
/// `$deleteFromPrimitiveList/...`) differ, and kubectl sends them only for lists that merge.
/// They are dropped.
pub(crate) fn strip_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// `patch` of type `kind` applied to `target`.
pub(crate) fn apply(kind: PatchType, target: &Value, patch: &Value) -> Value {
    match kind {
        PatchType::Merge => merge(target, patch),
        PatchType::Strategic => merge(target, &strip_directives(patch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_examples_of_rfc_7386() {
        // Appendix A: target, patch, result.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(merge(&target, &patch), want, "{target} + {patch}");
        }
    }

    #[test]
    fn a_strategic_patch_of_these_kinds_is_a_merge_patch_without_directives() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
                          "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        let patch = json!({
            "$patch": "merge",
            "metadata": {"labels": {"b": null, "c": "3"}, "$setElementOrder/finalizers": ["x"]},
            "subsets": [{"addresses": [{"ip": "10.0.0.2", "$retainKeys": ["ip"]}]}],
        });
        assert_eq!(
            apply(PatchType::Strategic, &live, &patch),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}, "finalizers": ["x"]},
                   "subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]})
        );
        let with_directive = apply(PatchType::Merge, &live, &json!({"$patch": "x"}));
        assert_eq!(
            with_directive["$patch"], "x",
            "a merge patch keeps every key"
        );
    }

    #[test]
    fn content_types() {
        use PatchType::*;
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json"),
            Some(Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(Strategic)
        );
        for other in [
            "application/json-patch+json",
            "application/apply-patch+yaml",
            "application/json",
            "",
        ] {
            assert_eq!(PatchType::from_content_type(other), None, "{other}");
        }
    }
}
