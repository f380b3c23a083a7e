//! The write verbs on a state, without sockets: what is stored, what is answered, and each
//! refusal with its real Status.

use serde_json::{json, Value};

use super::*;
use crate::testkit::types::ChunkMode;

fn state() -> ServerState {
    let mut st = ServerState::new(None, ChunkMode::PerEvent);
    st.ensure_namespace("prod");
    st
}

fn at(resource: Resource, ns: Option<&str>, name: Option<&str>) -> ApiPath {
    ApiPath {
        resource,
        namespace: ns.map(str::to_owned),
        name: name.map(str::to_owned),
        watch: false,
    }
}

fn eps(name: Option<&str>) -> ApiPath {
    at(Resource::Endpoints, Some("prod"), name)
}

fn body(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn parsed(w: &Result<Written, StatusError>) -> Value {
    w.as_ref()
        .map(|w| serde_json::from_str(&w.body).unwrap_or_default())
        .unwrap_or_default()
}

fn refusal(w: Result<Written, StatusError>) -> (u16, &'static str, String) {
    match w {
        Ok(w) => panic!("expected a refusal, got {w:?}"),
        Err(e) => (e.code, e.reason, e.message),
    }
}

fn web() -> Value {
    json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": "web"},
           "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]})
}

/// Creates `web()` and returns what the server answered.
fn create_web(st: &mut ServerState) -> Value {
    parsed(&create(st, &eps(None), &body(&web()), false))
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

fn stored(st: &ServerState, name: &str) -> Value {
    st.objects
        .get(&(Resource::Endpoints, "prod".to_owned(), name.to_owned()))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn create_stores_the_object_with_the_metadata_the_server_owns() {
    let mut st = state();
    let sent = json!({"metadata": {"name": "web", "uid": "mine", "creationTimestamp": null,
                                   "annotations": {"a": "b"}}, "subsets": []});
    let w = create(&mut st, &eps(None), &body(&sent), false);
    assert_eq!(w.as_ref().map(|w| w.code), Ok(201));
    let answer = parsed(&w);
    assert_eq!(
        (&answer["kind"], &answer["apiVersion"]),
        (&json!("Endpoints"), &json!("v1"))
    );
    let meta = &answer["metadata"];
    assert_eq!(
        (&meta["name"], &meta["namespace"]),
        (&json!("web"), &json!("prod"))
    );
    assert_eq!(meta["resourceVersion"], st.rv.to_string());
    assert_ne!(meta["uid"], "mine");
    assert!(meta["creationTimestamp"]
        .as_str()
        .is_some_and(|t| t.len() == 20 && t.ends_with('Z')));
    assert_eq!(meta["annotations"]["a"], "b");
    assert!(meta.get("generation").is_none());
    assert_eq!(stored(&st, "web")["metadata"], *meta);
    assert_eq!(st.log.last().map(|e| e.prev.is_none()), Some(true));

    let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "endpoints": null});
    let path = at(Resource::EndpointSlices, Some("prod"), None);
    let w = create(&mut st, &path, &body(&slice), false);
    assert_eq!(parsed(&w)["metadata"]["generation"], 1);
    assert_eq!(parsed(&w)["apiVersion"], "discovery.k8s.io/v1");
}

#[test]
fn create_refuses_what_the_real_server_refuses() {
    let mut st = state();
    assert!(create(&mut st, &eps(None), &body(&web()), false).is_ok());
    let mut other_ns = web();
    other_ns["metadata"]["namespace"] = "dev".into();
    let slice = json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": {"name": "x"}});
    let with_rv = json!({"metadata": {"name": "x", "resourceVersion": "5"}});
    let elsewhere = at(Resource::Endpoints, Some("nowhere"), None);
    let namespaces = at(Resource::Namespaces, None, None);
    let cases: [(&ApiPath, Vec<u8>, u16, &str, &str); 11] = [
        (&eps(None), body(&web()), 409, "AlreadyExists", "endpoints \"web\" already exists"),
        (&elsewhere, body(&web()), 404, "NotFound", "namespaces \"nowhere\" not found"),
        (&eps(None), body(&other_ns), 400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"),
        (&eps(None), body(&json!({"metadata": {}})), 422, "Invalid", "Endpoints \"\" is invalid: metadata.name: Required value: name or generateName is required"),
        (&eps(None), body(&json!({"metadata": {"name": "Web"}})), 422, "Invalid", "Endpoints \"Web\" is invalid: metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"),
        (&namespaces, body(&json!({"metadata": {"name": "a.b"}})), 422, "Invalid", "Namespace \"a.b\" is invalid: metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"),
        (&eps(None), body(&with_rv), 500, "InternalError", "resourceVersion should not be set on objects to be created"),
        (&eps(None), body(&slice), 400, "BadRequest", "the object provided is unrecognized (must be of type Endpoints)"),
        (&eps(None), b"{not json".to_vec(), 400, "BadRequest", "couldn't get version/kind; json parse error"),
        (&eps(None), b"[1]".to_vec(), 400, "BadRequest", "the object provided is unrecognized"),
        (&eps(None), br#"{"metadata": 7}"#.to_vec(), 400, "BadRequest", "metadata is not an object"),
    ];
    for (path, sent, code, reason, message) in cases {
        let got = refusal(create(&mut st, path, &sent, false));
        assert_eq!((got.0, got.1), (code, reason), "{message}");
        assert!(
            got.2.starts_with(message) || got.2.contains(message),
            "{got:?}"
        );
    }
}

#[test]
fn generate_name_dry_run_and_namespaces() {
    let mut st = state();
    let rv = st.rv;
    let w = create(
        &mut st,
        &eps(None),
        &body(&json!({"metadata": {"generateName": "web-"}})),
        false,
    );
    let name = parsed(&w)["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert!(
        name[4..]
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{name}"
    );
    let w = create(
        &mut st,
        &eps(None),
        &body(&json!({"metadata": {"generateName": "web-"}})),
        false,
    );
    assert_ne!(
        parsed(&w)["metadata"]["name"],
        name.as_str(),
        "each one new"
    );
    assert_eq!(st.rv, rv + 2);

    let dry = create(&mut st, &eps(None), &body(&web()), true);
    assert_eq!(dry.as_ref().map(|w| w.code), Ok(201));
    assert_eq!(parsed(&dry)["metadata"]["name"], "web");
    assert_eq!(st.rv, rv + 2, "a dry run stores nothing");
    assert!(stored(&st, "web").is_null());

    let ns = at(Resource::Namespaces, None, None);
    let sent = json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "dev"}, "spec": {}, "status": {}});
    let made = parsed(&create(&mut st, &ns, &body(&sent), false));
    assert_eq!(
        made["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "dev"
    );
    assert_eq!(made["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(made["status"]["phase"], "Active");
    assert!(made["metadata"].get("namespace").is_none());
    assert!(st.namespace_exists("dev"));
}

#[test]
fn replace_checks_the_resource_version_and_keeps_what_the_server_owns() {
    let mut st = state();
    let first = create_web(&mut st);
    let rv = meta(&first, "resourceVersion").to_owned();
    let mut next = web();
    next["subsets"][0]["addresses"][0]["ip"] = "10.0.0.2".into();
    next["metadata"]["resourceVersion"] = rv.clone().into();
    next["metadata"]["uid"] = "forged".into();
    let w = replace(&mut st, &eps(Some("web")), &body(&next), false);
    assert_eq!(w.as_ref().map(|w| w.code), Ok(200));
    let second = parsed(&w);
    assert_eq!(second["subsets"][0]["addresses"][0]["ip"], "10.0.0.2");
    assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(
        second["metadata"]["creationTimestamp"],
        first["metadata"]["creationTimestamp"]
    );
    assert_ne!(second["metadata"]["resourceVersion"], rv.as_str());

    // The same write again names a resourceVersion that is no longer current.
    let (code, reason, message) = refusal(replace(&mut st, &eps(Some("web")), &body(&next), false));
    assert_eq!((code, reason), (409, "Conflict"));
    assert_eq!(message, "Operation cannot be fulfilled on endpoints \"web\": the object has been modified; please apply your changes to the latest version and try again");
    // Without a resourceVersion the update is unconditional.
    let mut unconditional = next.clone();
    unconditional["metadata"]["resourceVersion"] = Value::Null;
    unconditional["subsets"] = json!([]);
    assert!(replace(&mut st, &eps(Some("web")), &body(&unconditional), false).is_ok());
    assert_eq!(stored(&st, "web")["subsets"], json!([]));

    let (code, _, message) = refusal(replace(&mut st, &eps(Some("other")), &body(&web()), false));
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "the name of the object (web) does not match the name on the URL (other)"
    );
}

#[test]
fn a_replacement_that_changes_nothing_is_no_new_version() {
    let mut st = state();
    create(&mut st, &eps(None), &body(&web()), false).ok();
    let (rv, events) = (st.rv, st.log.len());
    let same = replace(&mut st, &eps(Some("web")), &body(&web()), false);
    assert_eq!(parsed(&same)["metadata"]["resourceVersion"], rv.to_string());
    assert_eq!((st.rv, st.log.len()), (rv, events));
}

#[test]
fn put_creates_endpoints_but_not_slices_and_slices_count_generations() {
    let mut st = state();
    let w = replace(&mut st, &eps(Some("web")), &body(&web()), false);
    assert_eq!(w.as_ref().map(|w| w.code), Ok(201));
    assert!(!stored(&st, "web").is_null());

    let path = at(Resource::EndpointSlices, Some("prod"), Some("s"));
    let slice = json!({"metadata": {"name": "s", "labels": {"a": "1"}}, "addressType": "IPv4"});
    let (code, reason, _) = refusal(replace(&mut st, &path, &body(&slice), false));
    assert_eq!((code, reason), (404, "NotFound"));
    create(
        &mut st,
        &at(Resource::EndpointSlices, Some("prod"), None),
        &body(&slice),
        false,
    )
    .ok();
    let mut relabelled = slice.clone();
    relabelled["metadata"]["labels"]["a"] = "2".into();
    let w = replace(&mut st, &path, &body(&relabelled), false);
    assert_eq!(
        parsed(&w)["metadata"]["generation"],
        1,
        "metadata alone is no new generation"
    );
    relabelled["addressType"] = "IPv6".into();
    let w = replace(&mut st, &path, &body(&relabelled), false);
    assert_eq!(parsed(&w)["metadata"]["generation"], 2);
}

#[test]
fn patches_merge_keep_the_immutable_and_honour_a_resource_version() {
    let mut st = state();
    let first = create_web(&mut st);
    let merge = "application/merge-patch+json";
    let diff = json!({"metadata": {"labels": {"app": "web"}, "name": "renamed", "uid": "x"},
                      "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
    let w = patch(&mut st, &eps(Some("web")), merge, &body(&diff), false);
    let patched = parsed(&w);
    assert_eq!(patched["metadata"]["labels"]["app"], "web");
    assert_eq!(patched["metadata"]["name"], "web");
    assert_eq!(patched["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(
        patched["subsets"],
        json!([{"addresses": [{"ip": "10.0.0.9"}]}])
    );

    let smp = "application/strategic-merge-patch+json";
    let diff = json!({"$patch": "merge", "metadata": {"labels": {"app": null}}});
    let w = patch(&mut st, &eps(Some("web")), smp, &body(&diff), false);
    assert!(parsed(&w)["metadata"]["labels"].get("app").is_none());
    assert!(parsed(&w).get("$patch").is_none());

    let stale = json!({"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}, "subsets": []});
    assert_eq!(
        refusal(patch(
            &mut st,
            &eps(Some("web")),
            merge,
            &body(&stale),
            false
        ))
        .1,
        "Conflict"
    );
    let (code, reason, message) = refusal(patch(
        &mut st,
        &eps(Some("web")),
        "application/json-patch+json",
        b"[]",
        false,
    ));
    assert_eq!((code, reason), (415, "UnsupportedMediaType"));
    assert!(
        message.starts_with(
            "the body of the request was in an unknown format - accepted media types include: "
        ),
        "{message}"
    );
    assert_eq!(
        refusal(patch(&mut st, &eps(Some("none")), merge, b"{}", false)).0,
        404
    );
    assert_eq!(
        refusal(patch(&mut st, &eps(Some("web")), merge, b"{oops", false)).0,
        400
    );
    assert_eq!(
        refusal(patch(&mut st, &eps(Some("web")), merge, b"[1]", false)).0,
        400
    );
    assert_eq!(
        refusal(patch(
            &mut st,
            &eps(Some("web")),
            merge,
            br#"{"metadata": null}"#,
            false
        ))
        .0,
        400
    );
    assert_eq!(
        refusal(patch(
            &mut st,
            &eps(Some("web")),
            merge,
            br#"{"kind": "Pod"}"#,
            false
        ))
        .0,
        400
    );
}

#[test]
fn delete_answers_a_success_status_and_checks_preconditions() {
    let mut st = state();
    let made = create_web(&mut st);
    let uid = meta(&made, "uid").to_owned();
    let wrong = json!({"preconditions": {"uid": "other"}});
    let (code, reason, message) = refusal(delete(&mut st, &eps(Some("web")), &body(&wrong), false));
    assert_eq!((code, reason), (409, "Conflict"));
    assert_eq!(message, format!("Operation cannot be fulfilled on endpoints \"web\": Precondition failed: UID in precondition: other, UID in object meta: {uid}"));
    let stale = json!({"preconditions": {"resourceVersion": "1"}});
    assert!(
        refusal(delete(&mut st, &eps(Some("web")), &body(&stale), false))
            .2
            .contains("ResourceVersion in precondition: 1")
    );
    assert!(delete(&mut st, &eps(Some("web")), b"", true).is_ok());
    assert!(!stored(&st, "web").is_null(), "a dry run deletes nothing");

    let options = json!({"propagationPolicy": "Background", "preconditions": {"uid": uid}});
    let w = delete(&mut st, &eps(Some("web")), &body(&options), false);
    assert_eq!(w.as_ref().map(|w| w.code), Ok(200));
    assert_eq!(
        parsed(&w),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "web", "kind": "endpoints", "uid": uid}})
    );
    assert!(stored(&st, "web").is_null());
    assert_eq!(
        refusal(delete(&mut st, &eps(Some("web")), b"", false)).0,
        404
    );
    assert_eq!(
        refusal(delete(&mut st, &eps(Some("none")), b"{bad", false)).0,
        404
    );
    create(&mut st, &eps(None), &body(&web()), false).ok();
    assert_eq!(
        refusal(delete(&mut st, &eps(Some("web")), b"{bad", false)).0,
        400
    );
}

#[test]
fn a_deleted_namespace_is_terminating_then_gone_with_its_objects() {
    let mut st = state();
    create(&mut st, &eps(None), &body(&web()), false).ok();
    let ns = at(Resource::Namespaces, None, Some("prod"));
    assert!(delete(&mut st, &ns, b"", true).is_ok());
    assert!(!st.is_terminating("prod"), "a dry run deletes nothing");
    let w = delete(&mut st, &ns, b"", false);
    let gone = parsed(&w);
    assert_eq!(gone["kind"], "Namespace");
    assert_eq!(gone["status"]["phase"], "Terminating");
    assert!(gone["metadata"]["deletionTimestamp"].is_string());
    // While it terminates, what is in it can still be read and deleted, not created.
    assert!(st.namespace_exists("prod") && !stored(&st, "web").is_null());
    let new = json!({"metadata": {"name": "new"}});
    let (code, reason, message) = refusal(create(&mut st, &eps(None), &body(&new), false));
    assert_eq!((code, reason), (403, "Forbidden"));
    assert_eq!(message, "endpoints \"new\" is forbidden: unable to create new content in namespace prod because it is being terminated");
    assert!(st.reap(std::time::Instant::now() + NAMESPACE_TERMINATION));
    assert!(!st.namespace_exists("prod"));
    assert!(stored(&st, "web").is_null());
}

#[test]
fn names_are_dns_labels_and_subdomains() {
    for ok in ["a", "web", "a-b", "0", "a1", &"a".repeat(63)] {
        assert!(is_label(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(!is_label(bad), "{bad}");
    }
    assert!(is_subdomain("a.b-c.d"));
    assert!(is_subdomain(
        &[
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        ]
        .join(".")
    ));
    assert!(!is_subdomain(
        &[
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        ]
        .join(".")
    ));
    assert!(!is_subdomain("a..b"));
    assert!(!is_subdomain(".a"));
}
