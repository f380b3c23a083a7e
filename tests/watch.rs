//! The watch against what real API servers, proxies and mock servers send besides the happy
//! path: ERROR events of every kind, a watch answered with one object instead of a stream,
//! selectors that are ignored, and a state that cannot be resolved while bookmarks go on.

mod support;

use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, Failure, FakeApiServer, Fault, Pod, RequestRecord, Verb};
use kuberesolver::{Config, ErrorKind, Resolver, Source};
use support::*;

const TARGET: &str = "kubernetes:///echo.prod:grpc";

fn lists(server: &FakeApiServer) -> usize {
    server.requests().iter().filter(|q| q.is_list()).count()
}

fn watches(server: &FakeApiServer) -> Vec<RequestRecord> {
    server
        .requests()
        .into_iter()
        .filter(RequestRecord::is_watch)
        .collect()
}

/// An `ERROR` watch event carrying a Status with this code and reason.
fn error_event(code: u16, reason: &str) -> String {
    format!(
        r#"{{"type":"ERROR","object":{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"injected {reason}","reason":"{reason}","code":{code}}}}}"#
    )
}

/// A resolver on `server` that listed, resolved two pods and has its watch open.
fn watching(server: &FakeApiServer) -> Resolver {
    scale(server, 2);
    let r = resolver(server, TARGET);
    converges_to(&r, &addrs(8080, [1, 2]));
    assert!(server.wait_for_watches(1, PATIENCE));
    r
}

#[test]
fn error_events_other_than_410_429_and_500_lead_to_a_relist() {
    for (code, reason) in [(403, "Forbidden"), (400, "BadRequest"), (422, "Invalid")] {
        let server = cluster();
        let r = watching(&server);
        assert_eq!(r.status().counters.relists, 0);
        assert_eq!(server.inject(Fault::Garbage(error_event(code, reason))), 1);
        eventually(&format!("a relist after the {code} ERROR event"), || {
            r.status().counters.relists == 1 && lists(&server) == 2
        });
        let error = r.status().last_error.expect("the event is reported");
        assert_eq!(error.status(), Some(code), "{error}");
        assert!(
            error.message().contains(&format!("injected {reason}")),
            "{error}"
        );
        // It watches again from the new list, and changes still arrive.
        scale(&server, 3);
        converges_to(&r, &addrs(8080, 1..=3));
    }
}

#[test]
fn too_many_requests_and_internal_error_events_resume_the_watch_without_a_relist() {
    for (code, reason) in [(429, "TooManyRequests"), (500, "InternalError")] {
        let server = cluster();
        let r = watching(&server);
        let first = watches(&server)[0].clone();
        assert_eq!(server.inject(Fault::Garbage(error_event(code, reason))), 1);
        eventually(
            &format!("a second watch after the {code} ERROR event"),
            || watches(&server).len() == 2,
        );
        let resumed = &watches(&server)[1];
        assert_eq!(
            resumed.param("resourceVersion"),
            first.param("resourceVersion"),
            "{resumed:?}"
        );
        assert_eq!(lists(&server), 1, "{:?}", server.requests());
        assert_eq!(r.status().counters.relists, 0);
        assert_eq!(r.status().last_error.and_then(|e| e.status()), Some(code));
    }
}

#[test]
fn a_watch_answered_with_one_list_object_is_relisted_with_a_backoff() {
    let server = cluster();
    let rv = scale(&server, 2);
    let list = format!(
        r#"{{"kind":"EndpointsList","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"}},"items":[]}}"#
    );
    // Without and with a trailing newline: a server or proxy that does not stream watches.
    for body in [list.clone(), format!("{list}\n")] {
        server.fail_next_for(Verb::Watch, 1, Failure::Body { code: 200, body });
    }
    let r = resolver(&server, TARGET);
    converges_to(&r, &addrs(8080, [1, 2]));
    eventually("two relists, then a watch that streams", || {
        lists(&server) == 3 && server.open_watches() == 1
    });
    let requests = server.requests();
    let kinds: Vec<&str> = requests
        .iter()
        .map(|q| if q.is_list() { "list" } else { "watch" })
        .collect();
    assert_eq!(kinds, ["list", "watch", "list", "watch", "list", "watch"]);
    // Each relist waits out a backoff (at least the 50 ms floor of the test policy).
    for pair in [(1, 2), (3, 4)] {
        let gap = requests[pair.1].at - requests[pair.0].at;
        assert!(gap >= Duration::from_millis(40), "{gap:?}");
    }
    assert_eq!(r.status().counters.relists, 2);
    let error = r.status().last_error.expect("reported");
    assert_eq!(error.kind(), ErrorKind::Decode);
    assert!(
        error.message().contains("one EndpointsList instead"),
        "{error}"
    );
    // And the watch works.
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
}

#[test]
fn a_watch_answered_with_a_status_is_relisted_and_reports_its_code_and_message() {
    let server = cluster();
    scale(&server, 2);
    let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the proxy refuses watches","reason":"Forbidden","code":403}"#;
    server.fail_next_for(
        Verb::Watch,
        1,
        Failure::Body {
            code: 200,
            body: status.into(),
        },
    );
    let r = resolver(&server, TARGET);
    eventually("the Status is reported", || {
        r.status().last_error.is_some_and(|e| {
            e.status() == Some(403) && e.message().contains("the proxy refuses watches")
        })
    });
    eventually("a relist and a streaming watch", || {
        lists(&server) == 2 && server.open_watches() == 1
    });
    assert_eq!(r.status().counters.relists, 1);
}

#[test]
fn a_real_cut_mid_event_still_resumes_from_the_last_resource_version() {
    let server = cluster();
    let r = watching(&server);
    assert_eq!(server.inject(Fault::CutMidEvent), 1);
    eventually("a second watch", || watches(&server).len() == 2);
    assert_eq!(lists(&server), 1);
    assert_eq!(r.status().counters.relists, 0);
}

/// Pod `i` of Service `other`: IP 10.0.9.i.
fn other_pods(n: u8) -> Vec<Pod> {
    (1..=n)
        .map(|i| Pod::new(format!("other-{i}"), [10, 0, 9, i]))
        .collect()
}

#[test]
fn objects_of_other_services_from_a_server_that_ignores_selectors_are_left_out() {
    for source in [Source::Endpoints, Source::EndpointSlices] {
        let server = FakeApiServer::builder()
            .ignore_selectors(true)
            .start()
            .expect("fake API server starts");
        let ports = [("grpc", 8080)];
        let slice_ports = [("grpc", Some(8080))];
        let set = |service: &str, slice: &str, pods: &[Pod]| match source {
            Source::EndpointSlices => server.set_endpoint_slice(
                "prod",
                slice,
                service,
                AddressType::Ipv4,
                &slice_ports,
                pods,
            ),
            _ => server.set_endpoints("prod", service, &ports, pods),
        };
        set("echo", "echo-a", &pods(2));
        set("other", "other-a", &other_pods(3));
        let r = spawn_on(Config::new(server.url()), source, TARGET);
        converges_to(&r, &addrs(8080, [1, 2]));
        // Watch events of the other Service are left out too.
        set("other", "other-a", &other_pods(4));
        set("echo", "echo-a", &pods(3));
        converges_to(&r, &addrs(8080, 1..=3));
        if source == Source::EndpointSlices {
            // A slice that moves to the other Service leaves ours, though no DELETED comes.
            set("echo", "echo-b", &[Pod::new("echo-9", [10, 0, 0, 9])]);
            converges_to(&r, &addrs(8080, [1, 2, 3, 9]));
            set("other", "echo-b", &[Pod::new("echo-9", [10, 0, 0, 9])]);
            converges_to(&r, &addrs(8080, 1..=3));
        }
    }
}

#[test]
fn a_state_that_cannot_be_resolved_is_unhealthy_and_stale_until_it_resolves_again() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .expect("fake API server starts");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(2));
    // No port in the target: the Service's only port.
    let r = resolver(&server, "kubernetes:///echo.prod");
    converges_to(&r, &addrs(8080, [1, 2]));
    eventually("healthy", || r.status().is_healthy());
    // The Service gains a second port: the target's port cannot be chosen any more.
    let ports = [("grpc", 8080), ("metrics", 9090)];
    server.set_endpoints("prod", "echo", &ports, &pods(3));
    eventually("the port error", || {
        r.status()
            .last_error
            .is_some_and(|e| e.kind() == ErrorKind::Port)
    });
    let broke = Instant::now();
    // Bookmarks keep confirming the (unresolvable) state...
    let bookmarks = r.status().counters.bookmarks;
    eventually("three more bookmarks", || {
        r.status().counters.bookmarks >= bookmarks + 3
    });
    // ...but the snapshot is frozen: unhealthy, and as stale as the time since it froze.
    let status = r.status();
    let since_broke = broke.elapsed();
    let staleness = status.staleness().expect("synced");
    assert!(status.watching, "{status:#?}");
    assert!(!status.is_healthy(), "{status:#?}");
    assert!(status.frozen_since.is_some(), "{status:#?}");
    assert!(staleness >= since_broke, "{staleness:?} < {since_broke:?}");
    assert_eq!(r.snapshot().addresses()[..], addrs(8080, [1, 2])[..]);
    // The Service is fixed: resolved, healthy and fresh again.
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(3));
    converges_to(&r, &addrs(8080, 1..=3));
    eventually("healthy again", || r.status().is_healthy());
    let status = r.status();
    assert_eq!(status.frozen_since, None);
    assert!(status
        .staleness()
        .is_some_and(|d| d < Duration::from_secs(5)));
}

#[test]
fn watches_send_watch_true_as_kubectl_and_client_go_do() {
    let server = cluster();
    let _resolver = watching(&server);
    let watch = &watches(&server)[0];
    assert_eq!(watch.param("watch"), Some("true"), "{watch:?}");
}

#[test]
fn a_resource_version_as_long_as_any_taken_is_watched_from_and_a_longer_one_is_refused() {
    // A resolver on `server` whose first list answers with resourceVersion `rv`, no items.
    let listed_at = |server: &FakeApiServer, rv: &str| {
        let rv_json = serde_json::to_string(rv).expect("a string");
        let body = format!(
            r#"{{"kind":"EndpointsList","apiVersion":"v1","metadata":{{"resourceVersion":{rv_json}}},"items":[]}}"#
        );
        server.fail_next_for(Verb::List, 1, Failure::Body { code: 200, body });
        spawn_on(Config::new(server.url()), Source::Endpoints, TARGET)
    };
    let server = cluster();
    // 256 bytes that each take three escaped: the longest request line the client sends.
    let longest = "&".repeat(256);
    let r = listed_at(&server, &longest);
    eventually(
        "a watch from the longest resourceVersion reaches the server",
        || {
            watches(&server).iter().any(|q| {
                q.query
                    .iter()
                    .any(|(k, v)| k == "resourceVersion" && *v == longest)
            })
        },
    );
    drop(r);

    // Longer than any server sends: refused as a decode error (and relisted), never sent.
    let server = cluster();
    scale(&server, 2);
    let longer = "7".repeat(700);
    let r = listed_at(&server, &longer);
    converges_to(&r, &addrs(8080, [1, 2]));
    assert!(lists(&server) >= 2, "relisted: {:?}", server.requests());
    let error = r.status().last_error.expect("the refusal is reported");
    assert_eq!(error.kind(), ErrorKind::Decode, "{error}");
    assert!(
        error.message().contains("resourceVersion of 700 bytes"),
        "{error}"
    );
    assert!(watches(&server).iter().all(|q| q
        .query
        .iter()
        .all(|(k, v)| k != "resourceVersion" || *v != longer)));
}
