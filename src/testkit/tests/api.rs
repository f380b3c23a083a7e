//! What real tools need of an API server, over the wire: discovery, writes that open
//! watches see, pages, cluster-wide collections, legacy watch paths, streaming lists.

use super::*;

const SLICES_ALL: &str = "/apis/discovery.k8s.io/v1/endpointslices";

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("json body")
}

#[test]
fn discovery_answers_by_the_accept_header_and_says_it_varies() {
    let server = FakeApiServer::start().expect("start");
    let mut c = Client::new(&server);
    let aggregated =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (head, body) = c.get("/apis", &[("Accept", aggregated)]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    assert_eq!(head.header("vary"), Some("Accept"));
    assert_eq!(
        json_of(&body)["items"][0]["metadata"]["name"],
        "discovery.k8s.io"
    );
    let (head, body) = c.get("/api", &[("Accept", "application/json, */*")]);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(json_of(&body)["kind"], "APIVersions");
    let address = json_of(&body)["serverAddressByClientCIDRs"][0]["serverAddress"].clone();
    assert_eq!(address, server.addr().to_string());
    server.disable(Resource::EndpointSlices, true);
    let (head, body) = c.get("/apis/discovery.k8s.io/v1", &[]);
    assert_eq!((head.status, body), (404, b"404 page not found\n".to_vec()));
    let (head, _) = c.call("POST", "/api", &[], b"{}");
    assert_eq!(head.status, 405);
}

#[test]
fn version_and_health_need_no_token_but_discovery_does() {
    let server = FakeApiServer::builder()
        .token(Some("t".into()))
        .kubernetes_version(1, 27)
        .start()
        .expect("start");
    let mut c = Client::new(&server);
    let (status, version) = c.get_json("/version");
    assert_eq!((status, &version["minor"]), (200, &json!("27")));
    assert_eq!(c.get("/readyz", &[]).1, b"ok");
    assert_eq!(c.get("/api", &[]).0.status, 401);
    // A wrong token is refused even where none is needed.
    assert_eq!(
        c.get("/version", &[("Authorization", "Bearer x")]).0.status,
        401
    );
    assert_eq!(
        c.get("/api", &[("Authorization", "Bearer t")]).0.status,
        200
    );
}

#[test]
fn writes_over_http_reach_open_watches_and_refusals_are_statuses() {
    let server = FakeApiServer::start().expect("start");
    let mut w = Client::new(&server);
    w.watch(&format!(
        "{ES}?watch=true&labelSelector=kubernetes.io%2Fservice-name%3Decho"
    ));
    assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "echo-a", "labels": {"kubernetes.io/service-name": "echo"}},
                       "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]});
    let mut c = Client::new(&server);
    let json_type = [("Content-Type", "application/json")];
    // The namespace must exist first, as on a real server.
    let (head, body) = c.call("POST", ES, &json_type, slice.to_string().as_bytes());
    assert_eq!(
        (head.status, json_of(&body)["message"].clone()),
        (404, json!("namespaces \"prod\" not found"))
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
    let (head, _) = c.call(
        "POST",
        "/api/v1/namespaces",
        &json_type,
        ns.to_string().as_bytes(),
    );
    assert_eq!(head.status, 201);
    let (head, body) = c.call("POST", ES, &json_type, slice.to_string().as_bytes());
    assert_eq!(head.status, 201);
    let created = json_of(&body);
    let ev = w.event();
    assert_eq!((&ev["type"], &ev["object"]), (&json!("ADDED"), &created));

    let merge = [("Content-Type", "application/merge-patch+json")];
    let diff = json!({"endpoints": [{"addresses": ["10.0.0.2"]}]});
    let (head, body) = c.call(
        "PATCH",
        &format!("{ES}/echo-a"),
        &merge,
        diff.to_string().as_bytes(),
    );
    assert_eq!(head.status, 200);
    assert_eq!(json_of(&body)["metadata"]["generation"], 2);
    let ev = w.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["endpoints"][0]["addresses"][0], "10.0.0.2");

    // A stale resourceVersion: 409 Conflict, with the real Status.
    let mut stale = created.clone();
    stale["addressType"] = "IPv6".into();
    let (head, body) = c.call(
        "PUT",
        &format!("{ES}/echo-a"),
        &json_type,
        stale.to_string().as_bytes(),
    );
    assert_eq!(head.status, 409);
    let conflict = json_of(&body);
    assert_eq!(
        (&conflict["kind"], &conflict["reason"]),
        (&json!("Status"), &json!("Conflict"))
    );
    assert_eq!(
        conflict["details"],
        json!({"name": "echo-a", "group": "discovery.k8s.io", "kind": "endpointslices"})
    );
    let (head, body) = c.call("POST", ES, &json_type, slice.to_string().as_bytes());
    assert_eq!(
        (head.status, json_of(&body)["reason"].clone()),
        (409, json!("AlreadyExists"))
    );
    let (head, _) = c.call(
        "PATCH",
        &format!("{ES}/echo-a"),
        &[("Content-Type", "application/json-patch+json")],
        b"[]",
    );
    assert_eq!(head.status, 415);

    let (head, body) = c.call(
        "DELETE",
        &format!("{ES}/echo-a"),
        &json_type,
        br#"{"propagationPolicy":"Background"}"#,
    );
    assert_eq!(
        (head.status, json_of(&body)["status"].clone()),
        (200, json!("Success"))
    );
    assert_eq!(w.event()["type"], "DELETED");
    let verbs: Vec<Option<Verb>> = server.requests().iter().skip(1).map(|r| r.verb).collect();
    use Verb::*;
    assert_eq!(
        verbs,
        [
            Some(Create),
            Some(Create),
            Some(Create),
            Some(Patch),
            Some(Update),
            Some(Create),
            Some(Patch),
            Some(Delete)
        ]
    );
}

#[test]
fn kubectl_chunks_are_pages_of_one_snapshot() {
    let server = FakeApiServer::start().expect("start");
    for i in 1..=5 {
        server.set_endpoints(&format!("ns-{i}"), "echo", &[("", 80)], &pods());
    }
    let mut c = Client::new(&server);
    let (status, first) = c.get_json("/api/v1/endpoints?limit=2");
    assert_eq!(status, 200);
    let rv = first["metadata"]["resourceVersion"].clone();
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    server.delete(Resource::Endpoints, "ns-3", "echo");
    let mut seen: Vec<Value> = first["items"].as_array().cloned().unwrap_or_default();
    let mut token = first["metadata"]["continue"].as_str().map(str::to_owned);
    // At most a page per item: a server that never stops paging fails here.
    for _ in 0..5 {
        let Some(t) = token.clone() else { break };
        let (status, page) = c.get_json(&format!("/api/v1/endpoints?limit=2&continue={t}"));
        assert_eq!((status, &page["metadata"]["resourceVersion"]), (200, &rv));
        seen.extend(page["items"].as_array().cloned().unwrap_or_default());
        token = page["metadata"]["continue"].as_str().map(str::to_owned);
    }
    assert_eq!(token, None, "the last page says so");
    let namespaces: Vec<&str> = seen
        .iter()
        .filter_map(|i| i["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        namespaces,
        ["ns-1", "ns-2", "ns-3", "ns-4", "ns-5"],
        "deleted after the first page, still in its snapshot"
    );
    server.compact();
    let (status, expired) = c.get_json(&format!(
        "/api/v1/endpoints?resourceVersion={}&resourceVersionMatch=Exact",
        rv.as_str().unwrap_or("")
    ));
    assert_eq!((status, &expired["reason"]), (410, &json!("Expired")));
}

#[test]
fn cluster_wide_lists_and_watches_see_every_namespace() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoint_slice("prod", "echo-a", "echo", AddressType::Ipv4, &[], &pods());
    server.set_endpoint_slice("dev", "echo-a", "echo", AddressType::Ipv4, &[], &pods());
    let mut c = Client::new(&server);
    let (status, list) = c.get_json(SLICES_ALL);
    assert_eq!(status, 200);
    let where_: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(where_, ["dev", "prod"]);
    let (_, only_dev) = c.get_json(&format!(
        "{SLICES_ALL}?fieldSelector=metadata.namespace%3Ddev"
    ));
    assert_eq!(only_dev["items"].as_array().map(Vec::len), Some(1));

    let mut w = Client::new(&server);
    w.watch(&format!(
        "{SLICES_ALL}?watch=true&resourceVersion={}",
        server.resource_version()
    ));
    assert!(server.wait_for_watches(1, Duration::from_secs(5)));
    server.set_endpoint_slice("staging", "echo-b", "echo", AddressType::Ipv4, &[], &pods());
    let ev = w.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["metadata"]["namespace"]),
        (&json!("ADDED"), &json!("staging"))
    );
    let watch = server
        .requests()
        .into_iter()
        .find(RequestRecord::is_watch)
        .expect("a watch");
    assert_eq!(
        (watch.resource, watch.namespace),
        (Some(Resource::EndpointSlices), None)
    );

    server.forbid(Resource::EndpointSlices, true);
    let (status, denied) = c.get_json(SLICES_ALL);
    assert_eq!(status, 403);
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("at the cluster scope")),
        "{denied}"
    );
}

#[test]
fn legacy_watch_paths_watch_one_object_or_a_collection() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods());
    let mut one = Client::new(&server);
    one.watch("/api/v1/watch/namespaces/prod/endpoints/echo");
    let ev = one.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["metadata"]["name"]),
        (&json!("ADDED"), &json!("echo"))
    );
    let mut all = Client::new(&server);
    all.watch("/api/v1/watch/endpoints?resourceVersion=0");
    let names: Vec<Value> = (0..2)
        .map(|_| all.event()["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("echo"), json!("other")]);
    server.set_endpoints("prod", "other", &[("grpc", 9090)], &pods());
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 9090)], &pods());
    let ev = one.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["metadata"]["resourceVersion"]),
        (&json!("MODIFIED"), &json!(rv))
    );
    assert!(server.requests().iter().all(RequestRecord::is_watch));
}

#[test]
fn a_streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_secs(3600))
        .start()
        .expect("start");
    server.set_endpoint_slice("prod", "echo-a", "echo", AddressType::Ipv4, &[], &pods());
    server.set_endpoint_slice("prod", "echo-b", "echo", AddressType::Ipv4, &[], &pods());
    let rv = server.resource_version();
    let mut c = Client::new(&server);
    c.watch(&format!("{ES}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion="));
    let added: Vec<Value> = (0..2).map(|_| c.event()).collect();
    assert!(added.iter().all(|e| e["type"] == "ADDED"));
    let end = c.event();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"],
        json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
               "metadata": {"resourceVersion": rv, "annotations": {"k8s.io/initial-events-end": "true"}},
               "addressType": "", "endpoints": null, "ports": null})
    );
    let later = server.set_endpoint_slice("prod", "echo-b", "echo", AddressType::Ipv4, &[], &[]);
    let ev = c.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["metadata"]["resourceVersion"]),
        (&json!("MODIFIED"), &json!(later))
    );

    let mut bad = Client::new(&server);
    let (status, invalid) = bad.get_json(&format!("{ES}?watch=true&sendInitialEvents=true"));
    assert_eq!((status, &invalid["reason"]), (422, &json!("Invalid")));
}
