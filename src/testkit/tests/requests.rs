//! Lists, GETs, authentication, RBAC, injected failures and malformed requests.

use super::*;

#[test]
fn a_careless_server_ignores_selectors_on_lists_and_watches() {
    let server = FakeApiServer::builder()
        .ignore_selectors(true)
        .start()
        .expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("", 80)], &pods());
    server.set_endpoints("dev", "echo", &[("", 80)], &pods());
    let mut c = Client::new(&server);
    let (status, list) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho"));
    assert_eq!(status, 200);
    let names: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    assert_eq!(names, [&json!("echo"), &json!("other")]);
    let mut w = Client::new(&server);
    w.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=true"
    ));
    assert_eq!(w.event()["object"]["metadata"]["name"], "echo");
    assert_eq!(w.event()["object"]["metadata"]["name"], "other");
    // A name in the path still counts.
    let (status, one) = c.get_json(&format!("{EP}/other"));
    assert_eq!((status, &one["metadata"]["name"]), (200, &json!("other")));
}

#[test]
fn list_with_selectors() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("", 80)], &pods());
    server.set_endpoints("dev", "echo", &[("", 80)], &pods());
    server.set_endpoint_slice(
        "prod",
        "echo-a",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &pods(),
    );
    server.set_endpoint_slice("prod", "echo-b", "echo", AddressType::Ipv6, &[], &[]);
    let rv = server.set_endpoint_slice("prod", "other-a", "other", AddressType::Ipv4, &[], &pods());

    let mut c = Client::new(&server);
    let (status, list) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho"));
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "EndpointsList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["metadata"]["resourceVersion"], rv.as_str());
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert!(items[0].get("kind").is_none() && items[0].get("apiVersion").is_none());
    assert_eq!(items[0]["metadata"]["name"], "echo");
    assert_eq!(items[0]["metadata"]["namespace"], "prod");
    assert_eq!(items[0]["subsets"][0]["addresses"][1]["ip"], "10.0.0.2");

    let (_, all) = c.get_json(EP);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));

    let (status, slices) = c.get_json(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho"
    ));
    assert_eq!(status, 200);
    assert_eq!(slices["kind"], "EndpointSliceList");
    assert_eq!(slices["apiVersion"], "discovery.k8s.io/v1");
    let names: Vec<&str> = slices["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["echo-a", "echo-b"]);
    assert!(slices["items"][1]["endpoints"].is_null());

    let (status, empty) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Dnone"));
    assert_eq!(status, 200);
    assert_eq!(empty["items"], json!([]));

    let (status, err) = c.get_json(&format!("{EP}?fieldSelector=spec.foo%3Dbar"));
    assert_eq!(status, 400);
    assert_eq!(err["kind"], "Status");
    assert_eq!(err["reason"], "BadRequest");
    assert_eq!(err["code"], 400);

    // Everything above went over one kept-alive connection.
    assert_eq!(server.connections_accepted(), 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs
        .iter()
        .all(|r| r.is_list() && r.connection == reqs[0].connection));
    assert_eq!(reqs[0].param("fieldSelector"), Some("metadata.name=echo"));
    assert_eq!(
        reqs[2].param("labelSelector"),
        Some("kubernetes.io/service-name=echo")
    );
    assert_eq!(reqs[4].status, 400);
}

#[test]
fn get_one_object() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    let (head, body) = c.get(&format!("{EP}/echo"), &[]);
    assert_eq!(head.status, 200);
    assert!(head
        .header("warning")
        .is_some_and(|w| w.contains("deprecated")));
    let text = String::from_utf8(body).expect("utf-8");
    assert!(
        text.starts_with(r#"{"kind":"Endpoints","apiVersion":"v1","#),
        "{text}"
    );
    let obj: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(obj["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(server.get(Resource::Endpoints, "prod", "echo"), Some(obj));

    let (status, err) = c.get_json(&format!("{EP}/nope"));
    assert_eq!(status, 404);
    assert_eq!(err["reason"], "NotFound");
    assert_eq!(err["message"], r#"endpoints "nope" not found"#);
    assert!(server.requests()[0].is_get());

    let (head, body) = c.get("/api/v1/namespaces/prod/pods", &[]);
    assert_eq!(head.status, 404);
    assert_eq!(body, b"404 page not found\n");
}

#[test]
fn token_is_required_and_rotates() {
    let server = FakeApiServer::builder()
        .token(Some("t1".into()))
        .start()
        .expect("start");
    let mut c = Client::new(&server);
    let unauthorized = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                              "message":"Unauthorized","reason":"Unauthorized","code":401});
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 401);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(unauthorized.clone())
    );
    let (head, _) = c.get(EP, &[("Authorization", "Bearer wrong")]);
    assert_eq!(head.status, 401);
    let (head, _) = c.get(EP, &[("Authorization", "Bearer t1")]);
    assert_eq!(head.status, 200);

    server.set_token(Some("t2".into()));
    let (head, body) = c.get(EP, &[("Authorization", "Bearer t1")]);
    assert_eq!(head.status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(unauthorized)
    );
    let (head, _) = c.get(EP, &[("authorization", "bearer t2")]);
    assert_eq!(head.status, 200);

    let reqs = server.requests();
    assert!(!reqs[0].authorization);
    assert!(reqs[1].authorization);
    assert_eq!(reqs[2].bearer_token(), Some("t1"));
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200, 401, 200]);
    let debug = format!("{reqs:?}");
    assert!(!debug.contains("t1") && !debug.contains("t2"), "{debug}");
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn forbidden_has_the_real_message() {
    let server = FakeApiServer::start().expect("start");
    server.forbid(Resource::Endpoints, true);
    server.forbid(Resource::EndpointSlices, true);
    let mut c = Client::new(&server);
    let (status, err) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1"));
    assert_eq!(status, 403);
    assert_eq!(err["reason"], "Forbidden");
    assert_eq!(err["code"], 403);
    assert_eq!(
        err["message"],
        r#"endpoints "echo" is forbidden: User "system:serviceaccount:default:test" cannot watch resource "endpoints" in API group "" in the namespace "prod""#
    );
    let (_, err) = c.get_json(EP);
    assert_eq!(
        err["message"],
        r#"endpoints is forbidden: User "system:serviceaccount:default:test" cannot list resource "endpoints" in API group "" in the namespace "prod""#
    );
    let (_, err) = c.get_json(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho"
    ));
    assert_eq!(
        err["message"],
        r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:default:test" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "prod""#
    );
    let (_, err) = c.get_json(&format!("{EP}/echo"));
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.contains("cannot get resource")));

    server.forbid(Resource::Endpoints, false);
    assert_eq!(c.get_json(EP).0, 200);

    // A missing API: plain-text 404.
    server.disable(Resource::EndpointSlices, true);
    server.forbid(Resource::EndpointSlices, false);
    let (head, body) = c.get(ES, &[]);
    assert_eq!(head.status, 404);
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(body, b"404 page not found\n");
}

#[test]
fn failures_instead_of_answers() {
    let server = FakeApiServer::start().expect("start");
    server.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    server.fail_next(1, Failure::Unavailable);
    server.fail_next(1, Failure::InternalError);
    server.fail_next(
        1,
        Failure::status(410, "Expired", "The provided continue parameter is too old"),
    );
    let mut c = Client::new(&server);
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 429);
    assert_eq!(head.header("retry-after"), Some("3"));
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(body, b"Too many requests, please try again later.\n");
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("1"));
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert_eq!(c.get_json(EP).0, 500);
    let (status, body) = c.get_json(EP);
    assert_eq!((status, &body["reason"]), (410, &json!("Expired")));
    assert_eq!(c.get_json(EP).0, 200);
    let injected: Vec<Option<Failure>> = server
        .requests()
        .iter()
        .map(|r| r.failure.clone())
        .collect();
    assert_eq!(
        injected,
        [
            Some(Failure::TooManyRequests {
                retry_after_secs: 3
            }),
            Some(Failure::Unavailable),
            Some(Failure::InternalError),
            Some(Failure::status(
                410,
                "Expired",
                "The provided continue parameter is too old"
            )),
            None,
        ]
    );

    // Per verb: only the watch fails.
    server.fail_next_for(Verb::Watch, 1, Failure::InternalError);
    assert_eq!(c.get_json(EP).0, 200);
    assert_eq!(c.get_json(&format!("{EP}?watch=1")).0, 500);

    // A body as is: a watch answered like a list, by a server that does not stream.
    let list = r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}"#;
    server.fail_next_for(
        Verb::Watch,
        1,
        Failure::Body {
            code: 200,
            body: list.into(),
        },
    );
    let (head, body) = c.get(&format!("{EP}?watch=true"), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(body, list.as_bytes());

    // Close without an answer.
    server.fail_next(1, Failure::CloseWithoutAnswer);
    c.send(EP, &[]).expect("send");
    assert!(c.rest().is_empty());
    assert_eq!(server.requests().last().map(|r| r.status), Some(0));

    // Hang until shutdown.
    server.fail_next(1, Failure::Hang);
    let mut c = Client::new(&server);
    c.send(EP, &[]).expect("send");
    assert!(server.wait_for_requests(Duration::from_secs(1), |r| r.len() == 9));
    std::thread::sleep(Duration::from_millis(50));
    let ((), took) = timed(|| server.shutdown());
    assert!(c.rest().is_empty());
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn malformed_requests_get_errors_not_panics() {
    let server = FakeApiServer::start().expect("start");
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw(b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET /x%zz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(
        b"GET /api/v1/namespaces/prod/endpoints?watch=maybe HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET /api/v1/namespaces/prod/endpoints?watch=1&resourceVersion=abc HTTP/1.1\r\nConnection: close\r\n\r\n")
        .starts_with("HTTP/1.1 400 "));
    assert!(raw(b"POST /api/v1/namespaces/prod/endpoints HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .starts_with("HTTP/1.1 422 "));
    assert!(raw(b"PUT /api/v1/namespaces/prod/endpoints HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .starts_with("HTTP/1.1 405 "));
    assert!(raw(
        b"POST /api/v1/endpoints HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    .starts_with("HTTP/1.1 405 "));
    assert!(raw(
        b"DELETE /api/v1/watch/namespaces/prod/endpoints/x HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 405 "));
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert!(raw(&huge).starts_with("HTTP/1.1 431 "));
    // HTTP/1.0 and Connection: close get closed after the answer.
    let r = raw(b"GET /api/v1/namespaces/prod/endpoints HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200 ") && r.ends_with("\"items\":[]}"),
        "{r}"
    );
    let r = raw(b"GET /api/v1/namespaces/prod/endpoints HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.contains("Connection: close\r\n"));
    // The server is still fine.
    assert_eq!(Client::new(&server).get_json(EP).0, 200);
}
