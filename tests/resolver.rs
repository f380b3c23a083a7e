//! The resolver end to end on core/v1 Endpoints, against the fake API server over real sockets.

mod support;

use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, ChunkMode, Failure, FakeApiServer, Fault, Pod, Resource};
use kuberesolver::{Backoff, Config, ErrorKind, Snapshot, Source};
use support::*;

#[test]
fn every_target_form_resolves_the_same_service() {
    let server = cluster();
    scale(&server, 2);
    server.set_endpoints("default", "echo", &[("grpc", 9090)], &pods(1));
    for target in [
        "kubernetes:///echo.prod:8080",
        "kubernetes:///echo.prod:grpc",
        "kubernetes://prod/echo:8080",
        "kubernetes://prod/echo:grpc",
        "kubernetes://echo.prod:8080/",
        "kubernetes://echo.prod:grpc",
        "kubernetes:///echo.prod.svc.cluster.local:grpc",
        "kubernetes://echo.prod.svc.cluster.local:8080",
        "kubernetes:///echo.prod.svc.cluster.local",
        "kubernetes://echo.prod",
        // Go's kuberesolver also takes a fully qualified name and no slashes.
        "kubernetes:///echo.prod.svc.cluster.local.:grpc",
        "kubernetes://echo.prod.svc.cluster.local.:8080",
        "kubernetes:echo.prod:grpc",
        "kubernetes:/echo.prod:8080",
    ] {
        let r = resolver(&server, target);
        let snapshot = r.wait_ready(PATIENCE).expect(target);
        assert_eq!(&snapshot.addresses()[..], addrs(8080, [1, 2]), "{target}");
        assert_eq!(r.target().namespace(), Some("prod"));
    }
    for target in [
        "kubernetes:///echo:grpc",
        "kubernetes://echo:9090/",
        "kubernetes:///echo",
        "kubernetes:echo:grpc",
    ] {
        let r = resolver(&server, target);
        let snapshot = r.wait_ready(PATIENCE).expect(target);
        assert_eq!(&snapshot.addresses()[..], addrs(9090, [1]), "{target}");
        assert_eq!(r.target().namespace(), Some("default"));
    }
}

#[test]
fn service_port_names_up_to_63_characters_and_with_double_hyphens_resolve() {
    let server = cluster();
    let ports = [
        ("tcp-prometheus-servicemonitor", 9402),
        ("grpc--web", 8081),
        ("http", 80),
    ];
    server.set_endpoints("cert-manager", "cert-manager", &ports, &pods(2));
    let slice_ports = ports.map(|(name, port)| (name, Some(port)));
    server.set_endpoint_slice(
        "cert-manager",
        "cert-manager-abcde",
        "cert-manager",
        AddressType::Ipv4,
        &slice_ports,
        &pods(2),
    );
    for source in [Source::Endpoints, Source::EndpointSlices] {
        for (target, port) in [
            (
                "kubernetes:///cert-manager.cert-manager:tcp-prometheus-servicemonitor",
                9402,
            ),
            ("kubernetes:///cert-manager.cert-manager:grpc--web", 8081),
        ] {
            let r = spawn_on(Config::new(server.url()), source, target);
            let snapshot = r.wait_ready(PATIENCE).expect(target);
            assert_eq!(
                &snapshot.addresses()[..],
                addrs(port, [1, 2]),
                "{target} {source:?}"
            );
        }
    }
}

#[test]
fn a_custom_scheme_is_accepted_when_configured() {
    let server = cluster();
    scale(&server, 1);
    let r = builder(&server, "k8s:///echo.prod:grpc")
        .scheme("k8s")
        .spawn()
        .expect("custom scheme");
    assert_eq!(
        &r.wait_ready(PATIENCE).expect("ready").addresses()[..],
        addrs(8080, [1])
    );
    let err = builder(&server, "kubernetes:///echo.prod:grpc")
        .scheme("k8s")
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTarget);
}

#[test]
fn a_bad_target_fails_spawn_with_the_problem_named() {
    let server = cluster();
    let err = builder(&server, "kubernetes:///a:70000")
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTarget);
    assert_eq!(
        err.to_string(),
        "port 70000 out of range in \"kubernetes:///a:70000\""
    );
}

#[test]
fn scaling_up_and_down_propagates_and_not_ready_pods_are_left_out() {
    let server = cluster();
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let first = converges_to(&r, &addrs(8080, [1]));
    scale(&server, 5);
    converges_to(&r, &addrs(8080, 1..=5));
    let mut some_unready = pods(5);
    some_unready[1].ready = false;
    some_unready[3].ready = false;
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &some_unready);
    converges_to(&r, &addrs(8080, [1, 3, 5]));
    scale(&server, 2);
    let last = converges_to(&r, &addrs(8080, [1, 2]));
    assert!(last.version() > first.version());
    let status = r.status();
    assert!(
        status.resolved && status.counters.events >= 3,
        "{status:#?}"
    );
}

#[test]
fn snapshots_carry_endpoint_details() {
    let server = cluster();
    server.set_endpoints(
        "prod",
        "echo",
        &[("grpc", 8080)],
        &[Pod::new("echo-abc", [10, 0, 0, 9])
            .node("node-a")
            .hostname("echo-0")],
    );
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let snapshot = r.wait_ready(PATIENCE).expect("ready");
    let endpoint = &snapshot.endpoints()[0];
    assert_eq!(endpoint.pod(), Some("echo-abc"));
    assert_eq!(endpoint.node(), Some("node-a"));
    assert_eq!(endpoint.hostname(), Some("echo-0"));
    assert!(endpoint.conditions().ready);
}

#[test]
fn a_service_whose_endpoints_are_deleted_or_missing_publishes_an_empty_snapshot() {
    let server = cluster();
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let first = r.wait_ready(PATIENCE).expect("a missing object resolves");
    assert!(first.is_empty());
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    server.delete(Resource::Endpoints, "prod", "echo");
    converges_to(&r, &[]);
}

#[test]
fn events_split_across_chunks_or_coalesced_in_one_resolve_the_same() {
    for mode in [
        ChunkMode::PerEvent,
        ChunkMode::Split(3),
        ChunkMode::Coalesce,
    ] {
        let server = FakeApiServer::builder()
            .chunk_mode(mode)
            .start()
            .expect("server");
        scale(&server, 1);
        let r = resolver(&server, "kubernetes:///echo.prod:grpc");
        converges_to(&r, &addrs(8080, [1]));
        for n in 2..=6 {
            scale(&server, n);
        }
        converges_to(&r, &addrs(8080, 1..=6));
        assert_eq!(r.status().counters.errors, 0, "{mode:?}: {:#?}", r.status());
    }
}

#[test]
fn after_a_clean_end_it_resumes_from_the_last_resource_version_without_relisting() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .expect("server");
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    converges_to(&r, &addrs(8080, [1]));
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    let rv_after_change = server.resource_version();
    eventually("a bookmark arrives", || r.status().counters.bookmarks > 0);
    server.clear_requests();
    assert!(server.inject(Fault::EndCleanly) >= 1);
    eventually("it watches again", || {
        server.requests().iter().any(|q| q.is_watch())
    });
    let requests = server.requests();
    assert!(
        !requests.iter().any(|q| q.is_list()),
        "no relist after a clean end: {requests:?}"
    );
    let watch = requests.iter().find(|q| q.is_watch()).expect("a watch");
    assert_eq!(
        watch.param("resourceVersion"),
        Some(rv_after_change.as_str())
    );
    assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
    let timeout: u64 = watch
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .expect("timeoutSeconds");
    assert!((180..=240).contains(&timeout), "{timeout}");
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
}

#[test]
fn the_first_list_uses_the_field_selector_and_the_watch_starts_at_the_lists_version() {
    let server = cluster();
    let rv = scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    r.wait_ready(PATIENCE).expect("ready");
    server.wait_for_watches(1, PATIENCE);
    let requests = server.requests();
    assert!(requests[0].is_list(), "{requests:?}");
    assert_eq!(requests[0].path, "/api/v1/namespaces/prod/endpoints");
    assert_eq!(
        requests[0].param("fieldSelector"),
        Some("metadata.name=echo")
    );
    assert!(requests[1].is_watch());
    assert_eq!(requests[1].param("resourceVersion"), Some(rv.as_str()));
    assert_eq!(requests[1].param("watch"), Some("true"));
}

#[test]
fn relists_after_410_and_drops_endpoints_deleted_meanwhile() {
    let server = cluster();
    scale(&server, 3);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    converges_to(&r, &addrs(8080, 1..=3));
    // While the client is away, the Endpoints object is deleted and the history compacted
    // past its version. Only a relist that replaces the state (not one merged into it)
    // drops the object: no event will ever say it is gone.
    server.stop_listening();
    eventually("the watch is gone", || server.open_watches() == 0);
    server.delete(Resource::Endpoints, "prod", "echo");
    server.compact();
    let seen = server.requests().len();
    server.resume_listening().expect("resume");
    converges_to(&r, &[]);
    relisted_after_a_410(&server, seen);
    assert!(r.status().counters.relists >= 1);
}

#[test]
fn a_410_error_event_on_an_open_watch_leads_to_a_relist_that_drops_what_was_deleted() {
    let server = cluster();
    scale(&server, 2);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    converges_to(&r, &addrs(8080, [1, 2]));
    assert!(server.wait_for_watches(1, PATIENCE));
    // The watch goes quiet, so the deletion never reaches it as an event; then the 410.
    assert_eq!(server.inject(Fault::Stall), 1);
    server.delete(Resource::Endpoints, "prod", "echo");
    server.compact();
    let seen = server.requests().len();
    assert_eq!(server.inject(Fault::Expired), 1);
    converges_to(&r, &[]);
    let log = server.requests();
    assert_eq!(log[seen - 1].faults, [Fault::Stall, Fault::Expired]);
    assert!(
        log[seen..].iter().any(|q| q.is_list() && q.status == 200),
        "relisted: {:#?}",
        &log[seen..]
    );
    scale(&server, 4);
    converges_to(&r, &addrs(8080, 1..=4));
}

/// Every snapshot `updates` delivers, read as they come, until the resolver is dropped.
fn record(updates: kuberesolver::Updates) -> std::thread::JoinHandle<Vec<Snapshot>> {
    std::thread::spawn(move || updates.iter().collect())
}

#[test]
fn a_garbage_line_is_survived_by_relisting_and_never_publishes() {
    let server = cluster();
    scale(&server, 2);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let offered = record(r.updates());
    let before = converges_to(&r, &addrs(8080, [1, 2]));
    assert!(server.wait_for_watches(1, PATIENCE));
    let seen = server.requests().len();
    assert_eq!(server.inject(Fault::Garbage("{not json".into())), 1);
    // Past the error, the backoff and the relist, until a new watch streams.
    eventually("it relisted and watches again", || {
        relisted_and_watching(&server, seen)
    });
    let status = r.status();
    assert_eq!(
        status.last_error.as_ref().map(|e| e.kind()),
        Some(ErrorKind::Decode),
        "{status:#?}"
    );
    assert!(status.counters.relists >= 1, "{status:#?}");
    assert_eq!(
        r.snapshot().version(),
        before.version(),
        "neither the error nor the relist of the same endpoints published"
    );
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
    drop(r);
    let offered: Vec<(u64, usize)> = offered
        .join()
        .expect("reader")
        .iter()
        .map(|s| (s.version(), s.len()))
        .collect();
    assert_eq!(
        offered,
        [(before.version(), 2), (before.version() + 1, 3)],
        "every snapshot ever offered"
    );
}

#[test]
fn resets_and_cuts_mid_event_resume_from_the_last_resource_version_without_relisting() {
    // Reset and CutMidEvent break the stream between events; CutNextEvent and
    // EndMidNextEvent break it inside the next change (abruptly, or with a clean end of the
    // body after half a line), so that change is in flight and must come again.
    for fault in [
        Fault::Reset,
        Fault::CutMidEvent,
        Fault::CutNextEvent,
        Fault::EndMidNextEvent,
    ] {
        let server = cluster();
        scale(&server, 1);
        let r = resolver(&server, "kubernetes:///echo.prod:grpc");
        converges_to(&r, &addrs(8080, [1]));
        let last_seen = scale(&server, 2);
        converges_to(&r, &addrs(8080, [1, 2]));
        assert!(server.wait_for_watches(1, PATIENCE));
        let seen = server.requests().len();
        assert_eq!(server.inject(fault.clone()), 1);
        scale(&server, 3);
        converges_to(&r, &addrs(8080, 1..=3));
        resumed_without_relisting(&server, seen, &fault, &last_seen);
        let status = r.status();
        assert!(status.counters.reconnects >= 1, "{fault:?}: {status:#?}");
        assert_eq!(status.counters.relists, 0, "{fault:?}: {status:#?}");
        if fault == Fault::EndMidNextEvent {
            // A clean end of the body is no clean end of the watch when a line is unfinished.
            let error = status.last_error.expect("the cut shows");
            assert!(error.to_string().contains("middle of an event"), "{error}");
        }
    }
}

#[test]
fn a_stalled_watch_is_detected_by_the_read_timeout_and_replaced() {
    // No bookmarks: a healthy watch is silent until it ends at its timeoutSeconds (1 s),
    // well within the 3 s read timeout. A stalled one is silent for ever.
    let server = cluster();
    scale(&server, 1);
    let r = builder(&server, "kubernetes:///echo.prod:grpc")
        .watch_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(3))
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    eventually("three quiet watches ended on time", || {
        r.status().counters.watches >= 4
    });
    let status = r.status();
    assert_eq!(status.counters.errors, 0, "quiet is not dead: {status:#?}");
    assert!(server.wait_for_watches(1, PATIENCE));
    assert_eq!(server.inject(Fault::Stall), 1);
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    let error = r.status().last_error.expect("the stall was reported");
    assert!(error.to_string().contains("read timeout"), "{error}");
}

#[test]
fn a_rotated_token_is_re_read_after_a_401() {
    let dir = std::env::temp_dir().join(format!("kuberesolver-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "first-token").expect("write");
    let server = FakeApiServer::builder()
        .token(Some("first-token".into()))
        .start()
        .expect("server");
    scale(&server, 1);
    let r = spawn_on(
        kuberesolver::Config::new(server.url()).token_file(&token_file),
        kuberesolver::Source::Endpoints,
        "kubernetes:///echo.prod:grpc",
    );
    converges_to(&r, &addrs(8080, [1]));
    // The kubelet rotates the token; the server stops accepting the old one.
    std::fs::write(&token_file, "second-token").expect("rotate");
    server.set_token(Some("second-token".into()));
    server.wait_for_watches(1, PATIENCE);
    server.inject(Fault::EndCleanly);
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    let requests = server.requests();
    assert!(requests.iter().any(|q| q.status == 401), "a 401 happened");
    let last = requests.last().expect("requests");
    assert_eq!(last.bearer_token(), Some("second-token"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn forbidden_makes_wait_ready_fail_with_the_verb_and_the_rbac_rule() {
    let server = cluster();
    scale(&server, 1);
    server.forbid(Resource::Endpoints, true);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let err = not_ready(&r);
    let cause = err.cause().expect("the last failure is the cause");
    assert_eq!(cause.status(), Some(403));
    let text = err.to_string();
    assert!(
        text.contains("cannot list resource \"endpoints\""),
        "{text}"
    );
    assert!(text.contains("resources: [\"endpoints\"]"), "{text}");
    // Once the Role is fixed, it resolves on its own.
    server.forbid(Resource::Endpoints, false);
    converges_to(&r, &addrs(8080, [1]));
}

#[test]
fn too_many_requests_with_a_plain_text_body_is_retried_after_retry_after() {
    let server = cluster();
    scale(&server, 1);
    server.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let r = builder(&server, "kubernetes:///echo.prod:grpc")
        .backoff(
            Backoff::new()
                .initial(Duration::from_millis(100))
                .floor(Duration::from_millis(50))
                .cap(Duration::from_secs(5)),
        )
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    let requests = server.requests();
    assert_eq!(requests[0].status, 429);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "honoured Retry-After: {waited:?}"
    );
    let status = r.status();
    let error = status.last_error.expect("the 429 shows");
    assert_eq!(error.status(), Some(429));
    assert!(error.to_string().contains("Too many requests"), "{error}");
}

#[test]
fn server_errors_keep_the_last_good_snapshot_and_are_retried_after_a_backoff() {
    let server = cluster();
    scale(&server, 2);
    // Every retry waits at least 200 ms; a Retry-After of 1 s is honoured (it is below the
    // 2 s cap), and without it the second retry would wait at most 500 ms.
    let floor = Duration::from_millis(200);
    let r = builder(&server, "kubernetes:///echo.prod:grpc")
        .backoff(
            Backoff::new()
                .initial(Duration::from_millis(250))
                .floor(floor)
                .cap(Duration::from_secs(2)),
        )
        .spawn()
        .expect("spawn");
    let good = converges_to(&r, &addrs(8080, [1, 2]));
    assert!(server.wait_for_watches(1, PATIENCE));
    let seen = server.requests().len();
    server.fail_next(1, Failure::Unavailable);
    server.fail_next(3, Failure::InternalError);
    assert_eq!(server.inject(Fault::Reset), 1);
    // A request is logged before it is answered (status 0 until then): wait for the answer.
    eventually("a 503, three 500s, then a watch", || {
        server
            .requests()
            .get(seen + 4)
            .is_some_and(|q| q.status != 0)
    });
    let log = server.requests();
    let after = &log[seen..seen + 5];
    let statuses: Vec<u16> = after.iter().map(|q| q.status).collect();
    assert_eq!(statuses, [503, 500, 500, 500, 200], "{after:#?}");
    let gaps: Vec<Duration> = after.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(950),
        "Retry-After: 1 after the 503 was honoured: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|gap| *gap >= floor),
        "no retry before the backoff floor: {gaps:?}"
    );
    assert_eq!(
        r.snapshot().version(),
        good.version(),
        "errors never publish"
    );
    assert_eq!(&r.addresses()[..], addrs(8080, [1, 2]));
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
}

#[test]
fn the_server_being_down_at_spawn_is_not_a_spawn_error() {
    let server = cluster();
    server.stop_listening();
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let err = not_ready(&r);
    assert_eq!(
        err.cause().map(|c| c.kind()),
        Some(ErrorKind::Transport),
        "{err}"
    );
    scale(&server, 1);
    server.resume_listening().expect("resume");
    converges_to(&r, &addrs(8080, [1]));
}

#[test]
fn dropping_the_resolver_in_the_middle_of_a_blocked_read_stops_within_a_second() {
    let server = cluster();
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    converges_to(&r, &addrs(8080, [1]));
    server.wait_for_watches(1, PATIENCE);
    server.inject(Fault::Stall);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    drop(r);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    eventually("the server sees the watch closed", || {
        server.open_watches() == 0
    });
}

#[test]
fn dropping_the_resolver_while_it_waits_for_a_response_or_backs_off_stops_within_a_second() {
    let server = cluster();
    server.fail_next(100, Failure::Hang);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    eventually("the request hangs", || !server.requests().is_empty());
    let started = Instant::now();
    drop(r);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let server = cluster();
    server.fail_next(100, Failure::InternalError);
    let r = builder(&server, "kubernetes:///echo.prod:grpc")
        .backoff(
            Backoff::new()
                .initial(Duration::from_secs(30))
                .floor(Duration::from_secs(20))
                .cap(Duration::from_secs(30)),
        )
        .spawn()
        .expect("spawn");
    eventually("the first failure", || r.status().counters.errors > 0);
    let started = Instant::now();
    drop(r);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_subscriber_that_never_reads_holds_at_most_one_snapshot() {
    let server = cluster();
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let lazy = r.updates();
    converges_to(&r, &addrs(8080, [1]));
    for n in 2..=30 {
        scale(&server, n);
    }
    let last = converges_to(&r, &addrs(8080, 1..=30));
    assert!(last.version() > 2, "several snapshots were published");
    assert_eq!(lazy.len(), 1, "one pending, not {}", lazy.len());
    let latest = lazy.try_recv().expect("the newest snapshot is pending");
    assert_eq!(latest.version(), last.version());
    assert_eq!(latest.len(), 30);
    assert!(lazy.try_recv().is_err());
    drop(r);
    assert!(
        lazy.recv().is_err(),
        "the stream ends when the resolver is dropped"
    );
}

#[test]
fn updates_deliver_each_change_in_order_and_work_in_select() {
    let server = cluster();
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    let updates = r.updates();
    r.wait_ready(PATIENCE).expect("ready");
    scale(&server, 2);
    let mut seen = Vec::new();
    while seen.last().map(|(_, len)| *len) != Some(2) {
        crossbeam_channel::select! {
            recv(updates) -> snapshot => {
                let snapshot = snapshot.expect("open");
                seen.push((snapshot.version(), snapshot.len()));
            }
            default(PATIENCE) => panic!("no update; saw {seen:?}"),
        }
    }
    // Latest wins, so a slow reader may skip a version, but never goes back.
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert!(seen[0].0 >= 1, "{seen:?}");
}

#[test]
fn the_picker_round_robins_and_follows_changes() {
    let server = cluster();
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    r.wait_ready(PATIENCE).expect("ready");
    let picker = r.picker();
    assert_eq!(picker.pick(), None);
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
    let mut picked: Vec<_> = (0..6).filter_map(|_| picker.pick()).collect();
    assert_eq!(picked.len(), 6);
    picked.sort();
    picked.dedup();
    assert_eq!(picked, addrs(8080, 1..=3));
    server.set_endpoints(
        "prod",
        "echo",
        &[("grpc", 8080)],
        &[Pod::new("echo-9", [10, 0, 0, 9])],
    );
    converges_to(&r, &addrs(8080, [9]));
    assert_eq!(picker.pick(), addrs(8080, [9]).first().copied());
}

#[test]
fn an_omitted_port_with_several_ports_is_an_error_naming_them() {
    let server = cluster();
    server.set_endpoints(
        "prod",
        "echo",
        &[("grpc", 8080), ("metrics", 9090)],
        &pods(1),
    );
    let r = resolver(&server, "kubernetes:///echo.prod");
    let err = not_ready(&r);
    let text = err.to_string();
    assert_eq!(err.cause().map(|c| c.kind()), Some(ErrorKind::Port));
    assert!(
        text.contains("\"grpc\"=8080") && text.contains("\"metrics\"=9090"),
        "{text}"
    );
}

#[test]
fn status_counts_lists_watches_events_and_reconnects() {
    let server = cluster();
    scale(&server, 1);
    let r = resolver(&server, "kubernetes:///echo.prod:grpc");
    converges_to(&r, &addrs(8080, [1]));
    server.wait_for_watches(1, PATIENCE);
    for n in 2..=3 {
        server.inject(Fault::EndCleanly);
        eventually("re-watched", || {
            server.requests().iter().filter(|q| q.is_watch()).count() >= n
        });
    }
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    let status = r.status();
    let c = status.counters;
    assert_eq!(c.lists, 1, "{status:#?}");
    assert!(c.watches >= 3, "{status:#?}");
    assert!(c.reconnects >= 2, "{status:#?}");
    assert!(c.events >= 1 && c.publishes >= 2, "{status:#?}");
    assert!(status.last_sync.is_some() && status.version == r.snapshot().version());
    assert_eq!(status.source, Some(kuberesolver::Source::Endpoints));
}

#[test]
fn a_quiet_watch_that_ends_on_time_is_renewed_at_once_even_with_a_short_timeout() {
    // No bookmarks and no changes: each watch carries nothing and ends at timeoutSeconds.
    // Any backoff would wait at least 20 s, so a renewal within seconds was not backed off.
    let server = cluster();
    scale(&server, 1);
    let r = kuberesolver::Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(kuberesolver::Config::new(server.url()))
        .source(kuberesolver::Source::Endpoints)
        .watch_timeout(Duration::from_secs(2))
        .backoff(
            Backoff::new()
                .initial(Duration::from_secs(30))
                .floor(Duration::from_secs(20))
                .cap(Duration::from_secs(30)),
        )
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    eventually("three watches", || {
        server.requests().iter().filter(|q| q.is_watch()).count() >= 3
    });
    let watches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|q| q.is_watch())
        .collect();
    for pair in watches.windows(2) {
        let asked: u64 = pair[0]
            .param("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .expect("timeoutSeconds");
        let ended = pair[0].at + Duration::from_secs(asked);
        let gap = pair[1].at.saturating_duration_since(ended);
        assert!(
            gap < Duration::from_secs(5),
            "re-watched {gap:?} after a clean end: backed off"
        );
    }
    assert_eq!(r.status().counters.errors, 0);
}
