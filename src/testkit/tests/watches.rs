//! Watches: initial events, replay, 410, bookmarks, timeouts, chunking, faults, selection.

use super::*;

#[test]
fn watch_from_zero_then_live_events() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion=0"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["kind"], "Endpoints");
    assert_eq!(ev["object"]["apiVersion"], "v1");
    assert_eq!(ev["object"]["metadata"]["name"], "echo");
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));

    server.set_endpoints("prod", "other", &[("grpc", 8080)], &[]); // not selected
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods()[..1]);
    let ev = c.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(
        ev["object"]["subsets"][0]["addresses"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let rv = server
        .delete(Resource::Endpoints, "prod", "echo")
        .expect("existed");
    let ev = c.event();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(ev["object"]["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
    assert_eq!(server.delete(Resource::Endpoints, "prod", "echo"), None);

    // `watch=` (empty) and `watch=true` mean true too; unset RV means "from now, with
    // synthetic ADDED".
    for w in ["watch=", "watch=true", "watch"] {
        let mut c = Client::new(&server);
        c.watch(&format!("{EP}?fieldSelector=metadata.name%3Dother&{w}"));
        assert_eq!(c.event()["type"], "ADDED");
    }
    assert!(server.requests().iter().filter(|r| r.is_watch()).count() == 4);
}

#[test]
fn resume_replays_only_later_events() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let rv2 = server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods());
    let rv4 = server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv2}&allowWatchBookmarks=true"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv4.as_str());
    assert_eq!(ev["object"]["subsets"][0]["ports"][0]["port"], 8082);
    let rv5 = server.set_endpoints("prod", "echo", &[("grpc", 8083)], &pods());
    let ev = c.event();
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv5.as_str());

    // A resourceVersion from the future: 504, as the real server after its wait.
    let mut c = Client::new(&server);
    let (status, err) = c.get_json(&format!("{EP}?watch=1&resourceVersion=999999"));
    assert_eq!(status, 504);
    assert_eq!(err["reason"], "Timeout");
}

#[test]
fn expired_after_compact_is_an_error_event_in_a_200_stream() {
    let server = FakeApiServer::start().expect("start");
    let old = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    server.compact();
    let horizon = server.resource_version();
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={old}"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(
        ev["object"],
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message": format!("too old resource version: {old} ({horizon})"),
               "reason":"Expired","code":410})
    );
    assert_eq!(c.chunk().expect("clean end"), None);
    // The connection stays usable, and resuming from the horizon works.
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={horizon}"
    ));
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    assert_eq!(
        c.event()["object"]["metadata"]["resourceVersion"],
        rv.as_str()
    );
    let expired: Vec<bool> = server.requests().iter().map(|r| r.expired).collect();
    assert_eq!(
        expired,
        [true, false],
        "the log tells the two watches apart"
    );
}

#[test]
fn bookmarks_arrive() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
    ));
    let rv = server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods()); // invisible
    let (ev, took) = timed(|| c.event());
    assert!(took < Duration::from_secs(1));
    assert_eq!(
        ev,
        json!({"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion": rv}}})
    );
    assert_eq!(c.event()["type"], "BOOKMARK");

    let rv = server.set_endpoint_slice("prod", "echo-a", "echo", AddressType::Ipv4, &[], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho&watch=1&resourceVersion={rv}&allowWatchBookmarks=1"
    ));
    assert_eq!(
        c.event(),
        json!({"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",
               "metadata":{"resourceVersion": rv},"addressType":"","endpoints":null,"ports":null}})
    );

    // No bookmarks unless asked: the watch stays quiet.
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
    ));
    assert_eq!(c.chunk().expect("clean end"), None);
}

#[test]
fn timeout_ends_with_the_zero_chunk() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv}&timeoutSeconds=3&allowWatchBookmarks=true"
    ));
    // The pre-timeout bookmark (half-way for a 3 s watch), then the end at 3 s. Lower
    // bounds only: load delays, it never hastens.
    let (ev, to_bookmark) = timed(|| c.event());
    assert_eq!(ev["type"], "BOOKMARK");
    let (end, to_end) = timed(|| c.chunk().expect("clean end"));
    assert_eq!(end, None);
    assert!(
        to_end >= Duration::from_millis(750),
        "the bookmark came well before the end: {to_bookmark:?}, then {to_end:?}"
    );
    assert!(
        to_bookmark + to_end >= Duration::from_millis(2900),
        "ended at timeoutSeconds, not before: {:?}",
        to_bookmark + to_end
    );
    // Keep-alive after a clean end.
    let (status, _) = c.get_json(EP);
    assert_eq!(status, 200);
    assert_eq!(server.connections_accepted(), 1);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // max_watch_timeout caps long watches.
    let server = FakeApiServer::builder()
        .max_watch_timeout(Duration::from_millis(200))
        .start()
        .expect("start");
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1&timeoutSeconds=3600"));
    let (end, took) = timed(|| c.chunk().expect("clean end"));
    assert_eq!(end, None);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn split_mode_cuts_events_into_chunks() {
    let server = FakeApiServer::builder()
        .chunk_mode(ChunkMode::Split(16))
        .start()
        .expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1"));
    let mut line = Vec::new();
    let mut chunks = 0;
    while !line.ends_with(b"\n") {
        let chunk = c.chunk().expect("chunk").expect("data");
        assert!(chunk.len() <= 16);
        line.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks > 5, "{chunks}");
    let ev: Value = serde_json::from_slice(&line).expect("json");
    assert_eq!(ev["type"], "ADDED");

    // Runtime change: back to one chunk per event.
    server.set_chunk_mode(ChunkMode::PerEvent);
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    assert_eq!(c.event()["type"], "MODIFIED");
}

#[test]
fn coalesce_mode_puts_several_events_in_one_chunk() {
    let server = FakeApiServer::builder()
        .chunk_mode(ChunkMode::Coalesce)
        .start()
        .expect("start");
    let from = server.resource_version();
    for port in 1..=3 {
        server.set_endpoints("prod", "echo", &[("grpc", port)], &pods()[..1]);
    }
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={from}"
    ));
    let chunk = c.chunk().expect("chunk").expect("data");
    let text = String::from_utf8(chunk).expect("utf-8");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[2]["type"], "MODIFIED");
    // A lone live event still arrives quickly.
    let (ev, took) = timed(|| {
        server.set_endpoints("prod", "echo", &[("grpc", 9)], &pods());
        c.event()
    });
    assert_eq!(ev["object"]["subsets"][0]["ports"][0]["port"], 9);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn faults_on_open_watches() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let target = format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1");
    let open = |server: &FakeApiServer| {
        let mut c = Client::new(server);
        c.watch(&target);
        assert_eq!(c.event()["type"], "ADDED");
        assert!(server.wait_for_watches(1, Duration::from_secs(1)));
        c
    };

    // EndCleanly: the zero chunk.
    let mut c = open(&server);
    assert_eq!(server.inject(Fault::EndCleanly), 1);
    assert_eq!(c.chunk().expect("chunk"), None);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // Garbage: a bad line, then the stream goes on.
    let mut c = open(&server);
    server.inject(Fault::Garbage("{not json".into()));
    assert_eq!(c.chunk().expect("chunk"), Some(b"{not json\n".to_vec()));
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    assert_eq!(c.event()["type"], "MODIFIED");
    server.inject(Fault::Reset);
    // Reset: EOF without the terminating chunk.
    assert!(c.chunk().is_err());

    // CutMidEvent: half an event line, then EOF.
    let mut c = open(&server);
    server.inject(Fault::CutMidEvent);
    let half = c.chunk().expect("chunk").expect("data");
    assert!(!half.ends_with(b"\n") && half.starts_with(b"{\"type\":"));
    assert!(serde_json::from_slice::<Value>(&half).is_err());
    assert!(c.chunk().is_err());
    let faults = |server: &FakeApiServer| server.requests().last().map(|r| r.faults.clone());
    assert_eq!(faults(&server), Some(vec![Fault::CutMidEvent]));

    // CutNextEvent: nothing until the next change, then half of that event, then EOF.
    let mut c = open(&server);
    server.inject(Fault::CutNextEvent);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(faults(&server), Some(vec![]), "armed, not yet carried out");
    server.set_endpoints("prod", "echo", &[("grpc", 8083)], &pods());
    let half = c.chunk().expect("chunk").expect("data");
    assert!(half.starts_with(b"{\"type\":\"MODIFIED\"") && !half.ends_with(b"\n"));
    assert!(serde_json::from_slice::<Value>(&half).is_err());
    assert!(c.chunk().is_err());
    assert_eq!(faults(&server), Some(vec![Fault::CutNextEvent]));

    // EndMidNextEvent: half of the next event, then the zero chunk.
    let mut c = open(&server);
    server.inject(Fault::EndMidNextEvent);
    server.set_endpoints("prod", "echo", &[("grpc", 8084)], &pods());
    let half = c.chunk().expect("chunk").expect("data");
    assert!(half.starts_with(b"{\"type\":\"MODIFIED\"") && !half.ends_with(b"\n"));
    assert_eq!(c.chunk().expect("chunk"), None);
    assert_eq!(faults(&server), Some(vec![Fault::EndMidNextEvent]));

    // Expired: the 410 ERROR event, then a clean end.
    let mut c = open(&server);
    server.inject(Fault::Expired);
    let ev = c.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["code"]),
        (&json!("ERROR"), &json!(410))
    );
    assert_eq!(c.chunk().expect("chunk"), None);

    // inject_next_watch: right after the initial events.
    server.inject_next_watch(Fault::EndCleanly);
    let mut c = Client::new(&server);
    c.watch(&target);
    assert_eq!(c.event()["type"], "ADDED");
    assert_eq!(c.chunk().expect("chunk"), None);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // Stall: nothing more, even bookmarks or the timeout; shutdown still ends it at once.
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{target}&allowWatchBookmarks=true&timeoutSeconds=1"
    ));
    assert_eq!(c.event()["type"], "ADDED");
    server.inject(Fault::Stall);
    server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    c.r.get_mut();
    let stalled = std::thread::spawn(move || c.rest());
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(server.open_watches(), 1);
    // Prompt: the stalled watch does not hold the shutdown (a loose bound; the accept loop
    // alone would give up only after 2 s).
    let ((), took) = timed(|| server.shutdown());
    assert!(took < Duration::from_secs(1), "{took:?}");
    let rest = stalled.join().expect("reader");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(server.open_watches(), 0);
    server.shutdown(); // idempotent
}

#[test]
fn selection_changes_are_added_and_deleted() {
    let server = FakeApiServer::start().expect("start");
    let from = server.set_endpoint_slice("prod", "s1", "echo", AddressType::Ipv4, &[], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho&watch=1&resourceVersion={from}"
    ));
    let moved = server.set_endpoint_slice("prod", "s1", "other", AddressType::Ipv4, &[], &pods());
    let ev = c.event();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["kind"], "EndpointSlice");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], moved.as_str());
    server.set_endpoint_slice("prod", "s1", "echo", AddressType::Ipv4, &[], &pods());
    assert_eq!(c.event()["type"], "ADDED");
}

#[test]
fn client_going_away_closes_its_watch() {
    let server = FakeApiServer::start().expect("start");
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    drop(c);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));
    assert!(server.wait_for_requests(Duration::from_secs(1), |_| true));
}
