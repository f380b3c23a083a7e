//! The `Status` objects the server answers failures with, in the real server's words
//! (apimachinery's `errors.New*` and the registry's messages).

use serde_json::{json, Map, Value};

use super::types::Resource;

/// A failed request, as a `Status` object and its HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// `metadata.continue` of the Status (a 410 on an expired continue token carries one).
    pub next: Option<String>,
}

impl StatusError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> StatusError {
        StatusError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
            next: None,
        }
    }

    fn with_details(mut self, details: Value) -> StatusError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> StatusError {
        StatusError::new(400, "BadRequest", message)
    }

    /// `endpoints "x" not found`.
    pub fn not_found(resource: Resource, name: &str) -> StatusError {
        StatusError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .with_details(details(resource, Some(name)))
    }

    /// `endpoints "x" already exists`.
    pub fn already_exists(resource: Resource, name: &str) -> StatusError {
        StatusError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .with_details(details(resource, Some(name)))
    }

    /// A stale `metadata.resourceVersion` on an update or a patch (the registry's
    /// `OptimisticLockErrorMsg`).
    pub fn conflict(resource: Resource, name: &str) -> StatusError {
        StatusError::conflict_because(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `Operation cannot be fulfilled on endpoints "x": <why>`.
    pub fn conflict_because(resource: Resource, name: &str, why: &str) -> StatusError {
        StatusError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .with_details(details(resource, Some(name)))
    }

    /// 422 `Invalid` for an object: `Endpoints "x" is invalid: <field>: <error>` (the kind,
    /// not the resource, as the real message has it).
    pub fn invalid(resource: Resource, name: &str, field: &str, error: &str) -> StatusError {
        let mut d = details(resource, Some(name));
        d["kind"] = Value::String(resource.kind().to_owned());
        d["causes"] = json!([{"reason": "FieldValueInvalid", "message": error, "field": field}]);
        StatusError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {error}",
                resource.kind()
            ),
        )
        .with_details(d)
    }

    /// 422 `Invalid` for query parameters: `ListOptions.meta.k8s.io "" is invalid: ...`.
    pub fn invalid_options(errors: &[String]) -> StatusError {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                let (field, message) = e.split_once(": ").unwrap_or(("", e));
                json!({"reason": "FieldValueForbidden", "message": message, "field": field})
            })
            .collect();
        let list = if errors.len() == 1 {
            errors[0].clone()
        } else {
            format!("[{}]", errors.join(", "))
        };
        StatusError::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {list}"),
        )
        .with_details(json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}))
    }

    /// 504 for a resourceVersion the server has not reached (after the watch cache's
    /// wait, on a real server).
    pub fn too_large(rv: u64, current: u64) -> StatusError {
        let mut e = StatusError::new(
            504,
            "Timeout",
            format!("Too large resource version: {rv}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }));
        e.retry_after = Some(1);
        e
    }

    /// 410 `Expired`.
    pub fn expired(message: impl Into<String>) -> StatusError {
        StatusError::new(410, "Expired", message)
    }

    /// A create in a namespace that is being deleted (NamespaceLifecycle admission).
    pub fn namespace_terminating(resource: Resource, name: &str, namespace: &str) -> StatusError {
        let mut d = details(resource, Some(name));
        d["causes"] = json!([{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {namespace} is being terminated"),
            "field": "metadata.namespace",
        }]);
        StatusError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                resource.qualified()
            ),
        )
        .with_details(d)
    }

    /// A request the server's own user may not make (RBAC).
    pub fn forbidden(
        user: &str,
        verb: &str,
        resource: Resource,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> StatusError {
        let subject = match name {
            Some(n) => format!("{} \"{n}\" is forbidden", resource.qualified()),
            None => format!("{} is forbidden", resource.qualified()),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        StatusError::new(
            403,
            "Forbidden",
            format!(
                "{subject}: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                resource.plural(),
                resource.group(),
            ),
        )
        .with_details(details(resource, name))
    }

    /// The `Status` object, its fields in the real server's order.
    pub fn body(&self) -> String {
        let status = status_json(self.code, self.reason, &self.message, self.details.as_ref());
        match &self.next {
            None => status,
            Some(next) => status.replacen(
                "\"metadata\":{}",
                &format!(
                    "\"metadata\":{{\"continue\":{}}}",
                    Value::String(next.clone())
                ),
                1,
            ),
        }
    }
}

/// `details` of a Status about one object: its name, the group (omitted for core) and the
/// resource as `kind`, as the real server fills them.
pub(crate) fn details(resource: Resource, name: Option<&str>) -> Value {
    let mut d = Map::new();
    if let Some(n) = name {
        d.insert("name".into(), Value::String(n.to_owned()));
    }
    if !resource.group().is_empty() {
        d.insert("group".into(), Value::String(resource.group().to_owned()));
    }
    d.insert("kind".into(), Value::String(resource.plural().to_owned()));
    Value::Object(d)
}

/// A `Status` object with `status: Failure`.
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
        Value::String(message.to_owned()),
        Value::String(reason.to_owned())
    )
}

/// The `Status` a successful DELETE answers (for resources that do not return the object).
pub(crate) fn deleted_json(resource: Resource, name: &str, uid: Option<&str>) -> String {
    let mut d = details(resource, Some(name));
    if let Some(uid) = uid {
        d["uid"] = Value::String(uid.to_owned());
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(e: &StatusError) -> Value {
        serde_json::from_str(&e.body()).unwrap_or_default()
    }

    #[test]
    fn object_errors_have_the_real_messages_and_details() {
        let e = StatusError::not_found(Resource::EndpointSlices, "x");
        assert_eq!(
            parsed(&e),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"endpointslices.discovery.k8s.io \"x\" not found","reason":"NotFound",
                   "details":{"name":"x","group":"discovery.k8s.io","kind":"endpointslices"},"code":404})
        );
        let e = StatusError::already_exists(Resource::Endpoints, "web");
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        assert_eq!(e.message, "endpoints \"web\" already exists");
        assert_eq!(
            parsed(&e)["details"],
            json!({"name":"web","kind":"endpoints"})
        );
        let e = StatusError::conflict(Resource::Endpoints, "web");
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert_eq!(e.message, "Operation cannot be fulfilled on endpoints \"web\": the object has been modified; please apply your changes to the latest version and try again");
        let e = StatusError::invalid(Resource::Endpoints, "Web", "metadata.name", "bad");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "Endpoints \"Web\" is invalid: metadata.name: bad"
        );
        assert_eq!(parsed(&e)["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn option_errors_timeouts_and_rbac() {
        let one = StatusError::invalid_options(&["a: Forbidden: x".into()]);
        assert_eq!(
            one.message,
            "ListOptions.meta.k8s.io \"\" is invalid: a: Forbidden: x"
        );
        assert_eq!(parsed(&one)["details"]["causes"][0]["field"], "a");
        let two = StatusError::invalid_options(&["a: x".into(), "b: y".into()]);
        assert_eq!(
            two.message,
            "ListOptions.meta.k8s.io \"\" is invalid: [a: x, b: y]"
        );
        let e = StatusError::too_large(9, 5);
        assert_eq!((e.code, e.retry_after), (504, Some(1)));
        assert_eq!(e.message, "Too large resource version: 9, current: 5");
        let e = StatusError::forbidden("u", "list", Resource::Endpoints, None, None);
        assert_eq!(e.message, "endpoints is forbidden: User \"u\" cannot list resource \"endpoints\" in API group \"\" at the cluster scope");
        let mut e = StatusError::expired("gone");
        e.next = Some("tok".into());
        assert_eq!(parsed(&e)["metadata"], json!({"continue": "tok"}));
        assert_eq!(parsed(&e)["code"], 410);
    }

    #[test]
    fn deleted_is_a_success_status() {
        let d: Value =
            serde_json::from_str(&deleted_json(Resource::EndpointSlices, "s", Some("u")))
                .unwrap_or_default();
        assert_eq!(
            d,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
                   "details":{"name":"s","group":"discovery.k8s.io","kind":"endpointslices","uid":"u"}})
        );
    }
}
