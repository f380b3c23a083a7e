//! The write verbs over HTTP, as the real registry carries them out: create (POST),
//! replace (PUT), patch (PATCH) and delete (DELETE), with the metadata the server owns,
//! resourceVersion preconditions, and the real `Status` for each refusal.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::errors::{deleted_json, StatusError};
use super::objects::{fake_uid, timestamp};
use super::patch::{self, PatchType};
use super::render::object_json;
use super::route::ApiPath;
use super::store::{namespace_defaults, ServerState, NAMESPACE_TERMINATION};
use super::types::Resource;

/// What a successful write answers: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Written {
    pub code: u16,
    pub body: String,
}

/// The message of a name that is not a DNS-1123 subdomain (Endpoints, EndpointSlices).
const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
/// The message of a namespace name that is not a DNS-1123 label.
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Reads a request body as an object of the kind `path` names, in its namespace.
fn decode(path: &ApiPath, body: &[u8]) -> Result<Value, StatusError> {
    let v = decode_kind(path.resource, body)?;
    check_namespace(path, &v)?;
    Ok(v)
}

/// Reads a request body as an object of `resource`'s kind.
fn decode_kind(resource: Resource, body: &[u8]) -> Result<Value, StatusError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        StatusError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    if !v.is_object() {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): not a JSON object",
            resource.kind()
        )));
    }
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(resource.kind());
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(resource.api_version());
    if kind != resource.kind() || api_version != resource.api_version() {
        return Err(StatusError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {api_version}, Kind={kind}",
            resource.kind()
        )));
    }
    if !(v["metadata"].is_object() || v["metadata"].is_null()) {
        return Err(StatusError::bad_request(
            "couldn't decode the object: metadata is not an object",
        ));
    }
    Ok(v)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

/// The namespace an object goes to: the URL's, which the body may repeat but not contradict.
fn check_namespace(path: &ApiPath, obj: &Value) -> Result<(), StatusError> {
    let in_body = meta_str(obj, "namespace");
    match &path.namespace {
        Some(ns) if !in_body.is_empty() && in_body != ns => Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

fn check_name(resource: Resource, name: &str) -> Result<(), StatusError> {
    let (ok, rule) = match resource {
        Resource::Namespaces => (is_label(name), LABEL),
        _ => (is_subdomain(name), SUBDOMAIN),
    };
    if ok {
        return Ok(());
    }
    Err(StatusError::invalid(
        resource,
        name,
        "metadata.name",
        &format!("Invalid value: {}: {rule}", Value::String(name.to_owned())),
    ))
}

/// A suffix for `generateName`, from the apiserver's alphabet (no vowels, no look-alikes),
/// derived from `seed`.
fn suffix(seed: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    fake_uid(seed)
        .bytes()
        .rev()
        .filter(u8::is_ascii_hexdigit)
        .take(5)
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// Sets what the server owns in an object it stores: namespace, name, uid, creation time,
/// the EndpointSlice generation, a Namespace's defaults. `old` is the stored state an
/// update starts from.
fn own(resource: Resource, ns: &str, name: &str, obj: &mut Value, old: Option<&Value>, seed: &str) {
    let meta = &mut obj["metadata"];
    meta["name"] = Value::String(name.to_owned());
    if resource.namespaced() {
        meta["namespace"] = Value::String(ns.to_owned());
    }
    let kept = |field: &str| old.map(|o| o["metadata"][field].clone());
    meta["uid"] = kept("uid").unwrap_or_else(|| Value::String(fake_uid(seed)));
    meta["creationTimestamp"] =
        kept("creationTimestamp").unwrap_or_else(|| Value::String(timestamp(SystemTime::now())));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
    }
    if resource == Resource::EndpointSlices {
        let generation = match old {
            None => 1,
            Some(old) => {
                let previous = old["metadata"]["generation"].as_u64().unwrap_or(1);
                previous + u64::from(!same_except_metadata(old, obj))
            }
        };
        obj["metadata"]["generation"] = generation.into();
    }
    if resource == Resource::Namespaces {
        namespace_defaults(obj, name);
    }
}

fn without(obj: &Value, field: &str) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove(field);
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

fn same_except_metadata(a: &Value, b: &Value) -> bool {
    without(a, "metadata") == without(b, "metadata")
}

/// Stores `obj` as the new state of `name` unless nothing changed (the real server skips
/// a no-op update: no new resourceVersion, no event) or this is a dry run; returns the
/// state to answer with.
fn commit(
    st: &mut ServerState,
    path: &ApiPath,
    name: &str,
    mut obj: Value,
    dry_run: bool,
) -> Value {
    let ns = path.namespace.as_deref().unwrap_or("");
    let key = (path.resource, ns.to_owned(), name.to_owned());
    if let Some(old) = st.objects.get(&key) {
        let mut unchanged = without(&obj, "");
        unchanged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if unchanged == *old {
            return old.clone();
        }
    }
    if dry_run {
        obj["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
        return obj;
    }
    st.put(path.resource, ns, name, obj);
    st.objects.get(&key).cloned().unwrap_or_default()
}

/// The stored state of the object `path` names.
fn current(st: &ServerState, path: &ApiPath) -> Option<Value> {
    let ns = path.namespace.clone().unwrap_or_default();
    let name = path.name.clone().unwrap_or_default();
    st.objects.get(&(path.resource, ns, name)).cloned()
}

/// The stored state of the object `path` names, or the NotFound Status the server answers.
fn existing(st: &ServerState, path: &ApiPath) -> Result<Value, StatusError> {
    current(st, path)
        .ok_or_else(|| StatusError::not_found(path.resource, path.name.as_deref().unwrap_or("")))
}

/// Stores `obj` as the update of `old`, the object `path` names: 200 with the new state.
fn update(
    st: &mut ServerState,
    path: &ApiPath,
    mut obj: Value,
    old: &Value,
    dry_run: bool,
) -> Written {
    let ns = path.namespace.as_deref().unwrap_or("");
    let name = path.name.as_deref().unwrap_or("");
    own(path.resource, ns, name, &mut obj, Some(old), "");
    let stored = commit(st, path, name, obj, dry_run);
    Written {
        code: 200,
        body: object_json(path.resource, &stored),
    }
}

/// A stale resourceVersion in `obj` (empty means unconditional).
fn check_resource_version(
    resource: Resource,
    name: &str,
    obj: &Value,
    current: &Value,
) -> Result<(), StatusError> {
    let wanted = meta_str(obj, "resourceVersion");
    if wanted.is_empty() || wanted == meta_str(current, "resourceVersion") {
        return Ok(());
    }
    Err(StatusError::conflict(resource, name))
}

/// POST to a collection: 201 with the stored object.
pub(crate) fn create(
    st: &mut ServerState,
    path: &ApiPath,
    body: &[u8],
    dry_run: bool,
) -> Result<Written, StatusError> {
    let obj = decode(path, body)?;
    create_object(st, path, obj, dry_run)
}

/// Creates `obj`, decoded from a POST or from a PUT that creates (see [`replace`]).
fn create_object(
    st: &mut ServerState,
    path: &ApiPath,
    mut obj: Value,
    dry_run: bool,
) -> Result<Written, StatusError> {
    let resource = path.resource;
    let ns = path.namespace.as_deref().unwrap_or("");
    let name = match meta_str(&obj, "name") {
        "" => match meta_str(&obj, "generateName") {
            "" => {
                return Err(StatusError::invalid(
                    resource,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
            // Unlike the real server's random names, these never collide.
            prefix => (0..)
                .map(|n| format!("{prefix}{}", suffix(&format!("{prefix}{}/{n}", st.rv))))
                .find(|name| {
                    !st.objects
                        .contains_key(&(resource, ns.to_owned(), name.clone()))
                })
                .unwrap_or_default(),
        },
        name => name.to_owned(),
    };
    check_name(resource, &name)?;
    if resource.namespaced() && !st.namespace_exists(ns) {
        return Err(StatusError::not_found(Resource::Namespaces, ns));
    }
    if resource.namespaced() && st.is_terminating(ns) {
        return Err(StatusError::namespace_terminating(resource, &name, ns));
    }
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(StatusError::new(
            500,
            "InternalError",
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if st
        .objects
        .contains_key(&(resource, ns.to_owned(), name.clone()))
    {
        return Err(StatusError::already_exists(resource, &name));
    }
    let seed = format!("{}/{ns}/{name}/{}", resource.plural(), st.rv + 1);
    own(resource, ns, &name, &mut obj, None, &seed);
    let stored = commit(st, path, &name, obj, dry_run);
    Ok(Written {
        code: 201,
        body: object_json(resource, &stored),
    })
}

/// PUT of one object: 200 with the new state; for Endpoints, 201 when it created the
/// object (their registry allows create on update).
pub(crate) fn replace(
    st: &mut ServerState,
    path: &ApiPath,
    body: &[u8],
    dry_run: bool,
) -> Result<Written, StatusError> {
    let resource = path.resource;
    let name = path.name.as_deref().unwrap_or("");
    let mut obj = decode(path, body)?;
    if meta_str(&obj, "name") != name {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&obj, "name")
        )));
    }
    let Some(old) = current(st, path) else {
        if resource == Resource::Endpoints {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            return create_object(st, path, obj, dry_run);
        }
        return Err(StatusError::not_found(resource, name));
    };
    check_resource_version(resource, name, &obj, &old)?;
    Ok(update(st, path, obj, &old, dry_run))
}

/// PATCH of one object with a merge patch or a strategic merge patch: 200 with the new
/// state. A `metadata.resourceVersion` in the patch is a precondition.
pub(crate) fn patch(
    st: &mut ServerState,
    path: &ApiPath,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<Written, StatusError> {
    let resource = path.resource;
    let name = path.name.as_deref().unwrap_or("");
    let Some(kind) = PatchType::from_content_type(content_type) else {
        return Err(StatusError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                patch::ACCEPTED
            ),
        ));
    };
    let diff: Value = serde_json::from_slice(body)
        .map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?;
    let old = existing(st, path)?;
    check_resource_version(resource, name, &diff, &old)?;
    let obj = patch::apply(kind, &old, &diff);
    if !obj.is_object() || !obj["metadata"].is_object() {
        return Err(StatusError::bad_request(
            "the patched object is not an object with metadata",
        ));
    }
    let obj_kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(resource.kind());
    if obj_kind != resource.kind() {
        return Err(StatusError::bad_request(format!(
            "the patch changes the kind to {obj_kind}"
        )));
    }
    Ok(update(st, path, obj, &old, dry_run))
}

/// DELETE of one object: 200 with a `Success` Status. A Namespace answers with itself,
/// `Terminating`, as the real registry does, and goes with its contents a moment later
/// ([`NAMESPACE_TERMINATION`]). `preconditions` in the DeleteOptions body
/// are checked.
pub(crate) fn delete(
    st: &mut ServerState,
    path: &ApiPath,
    body: &[u8],
    dry_run: bool,
) -> Result<Written, StatusError> {
    let resource = path.resource;
    let name = path.name.as_deref().unwrap_or("");
    let ns = path.namespace.as_deref().unwrap_or("");
    let old = existing(st, path)?;
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| StatusError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let wanted = options["preconditions"][field].as_str().unwrap_or("");
        let actual = meta_str(&old, field);
        if !wanted.is_empty() && wanted != actual {
            return Err(StatusError::conflict_because(
                resource,
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                ),
            ));
        }
    }
    let body = match resource {
        Resource::Namespaces if dry_run => object_json(resource, &old),
        Resource::Namespaces => {
            let until = Instant::now() + NAMESPACE_TERMINATION;
            let terminating = st.terminate_namespace(name, until).unwrap_or(old);
            object_json(resource, &terminating)
        }
        _ => {
            if !dry_run {
                st.delete(resource, ns, name);
            }
            deleted_json(resource, name, old["metadata"]["uid"].as_str())
        }
    };
    Ok(Written { code: 200, body })
}

#[cfg(test)]
mod tests;
