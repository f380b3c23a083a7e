//! The EndpointSlice source: a correct multi-slice merge (where Go's kuberesolver keeps only
//! the last slice), Auto's fallback, zones, and scale.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kuberesolver::testkit::{AddressType, FakeApiServer, Fault, Pod, Resource};
use kuberesolver::{Conditions, Config, Resolver, Snapshot, Source};
use support::*;

/// Pod `i` of a large Service: IP 10.1.x.y.
fn pod(i: u32) -> Pod {
    Pod::new(
        format!("echo-{i}"),
        [10, 1, (i >> 8) as u8, (i & 0xff) as u8],
    )
    .zone(if i % 2 == 0 { "zone-a" } else { "zone-b" })
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::new(pod(i).ip, 8080)
}

fn range(ids: impl IntoIterator<Item = u32>) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = ids.into_iter().map(addr).collect();
    v.sort();
    v
}

/// Slice `name` of service echo in prod with these pods, port grpc=8080.
fn slice(server: &FakeApiServer, name: &str, ids: impl IntoIterator<Item = u32>) -> String {
    let pods: Vec<Pod> = ids.into_iter().map(pod).collect();
    echo_slice(server, name, &pods)
}

fn slices_resolver(server: &FakeApiServer, source: Source) -> Resolver {
    spawn_on(
        Config::new(server.url()),
        source,
        "kubernetes:///echo.prod:grpc",
    )
}

#[test]
fn endpoints_of_every_slice_are_merged_well_past_a_hundred() {
    let server = cluster();
    slice(&server, "echo-a", 0..100);
    slice(&server, "echo-b", 100..200);
    slice(&server, "echo-c", 200..250);
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..250));
    // A change to one slice keeps the others.
    slice(&server, "echo-b", 100..150);
    converges_to(&r, &range((0..150).chain(200..250)));
    let requests = server.requests();
    assert_eq!(
        requests[0].path,
        "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices"
    );
    assert_eq!(
        requests[0].param("labelSelector"),
        Some("kubernetes.io/service-name=echo")
    );
}

#[test]
fn an_endpoint_in_two_slices_is_counted_once() {
    let server = cluster();
    slice(&server, "echo-a", 0..3);
    slice(&server, "echo-b", 2..5);
    let r = slices_resolver(&server, Source::EndpointSlices);
    let snapshot = converges_to(&r, &range(0..5));
    assert_eq!(snapshot.len(), 5);
    // Removing it from one slice keeps it: it is still in the other.
    slice(&server, "echo-a", 0..2);
    converges_to(&r, &range(0..5));
    slice(&server, "echo-b", 3..5);
    converges_to(&r, &range([0, 1, 3, 4]));
}

#[test]
fn a_slice_deleted_while_disconnected_disappears_after_the_relist() {
    let server = cluster();
    slice(&server, "echo-a", 0..3);
    slice(&server, "echo-b", 3..6);
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..6));
    server.stop_listening();
    eventually("the watch is gone", || server.open_watches() == 0);
    // No event will tell of this deletion: only a relist that replaces every slice (rather
    // than merging the listed ones in) drops echo-b.
    server.delete(Resource::EndpointSlices, "prod", "echo-b");
    server.compact();
    let seen = server.requests().len();
    server.resume_listening().expect("resume");
    converges_to(&r, &range(0..3));
    relisted_after_a_410(&server, seen);
    assert!(r.status().counters.relists >= 1);
}

#[test]
fn a_410_on_an_open_slice_watch_relists_and_drops_slices_deleted_behind_it() {
    let server = cluster();
    slice(&server, "echo-a", 0..3);
    slice(&server, "echo-b", 3..6);
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..6));
    assert!(server.wait_for_watches(1, PATIENCE));
    // The watch goes quiet: the deletion and the change never reach it as events.
    assert_eq!(server.inject(Fault::Stall), 1);
    server.delete(Resource::EndpointSlices, "prod", "echo-b");
    slice(&server, "echo-a", 0..4);
    server.compact();
    let seen = server.requests().len();
    assert_eq!(server.inject(Fault::Expired), 1);
    converges_to(&r, &range(0..4));
    let log = server.requests();
    assert_eq!(log[seen - 1].faults, [Fault::Stall, Fault::Expired]);
    // The watch after the relist may start a moment after the relist's publish.
    eventually("a relist, then a watch", || {
        relisted_and_watching(&server, seen)
    });
}

#[test]
fn a_slice_change_cut_in_flight_is_resumed_from_the_last_resource_version() {
    for fault in [Fault::CutNextEvent, Fault::EndMidNextEvent, Fault::Reset] {
        let server = cluster();
        slice(&server, "echo-a", 0..3);
        let r = slices_resolver(&server, Source::EndpointSlices);
        converges_to(&r, &range(0..3));
        let last_seen = slice(&server, "echo-b", 3..5);
        converges_to(&r, &range(0..5));
        assert!(server.wait_for_watches(1, PATIENCE));
        let seen = server.requests().len();
        assert_eq!(server.inject(fault.clone()), 1);
        // The change the fault cuts (or the one after a reset): a slice deleted, another grown.
        server.delete(Resource::EndpointSlices, "prod", "echo-a");
        slice(&server, "echo-b", 3..7);
        converges_to(&r, &range(3..7));
        resumed_without_relisting(&server, seen, &fault, &last_seen);
        assert_eq!(r.status().counters.relists, 0, "{fault:?}");
    }
}

#[test]
fn a_deleted_slice_event_removes_its_endpoints() {
    let server = cluster();
    slice(&server, "echo-a", 0..3);
    slice(&server, "echo-b", 3..6);
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..6));
    server.delete(Resource::EndpointSlices, "prod", "echo-a");
    converges_to(&r, &range(3..6));
}

#[test]
fn ready_serving_and_terminating_combinations() {
    let server = cluster();
    let pods = [
        pod(1),                   // ready
        pod(2).ready(false),      // not ready
        pod(3).terminating(true), // terminating, still serving: not ready
        pod(4).ready(false).terminating(true),
        pod(5),
    ];
    server.set_endpoint_slice(
        "prod",
        "echo-a",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &pods,
    );
    // A slice written by hand with null conditions: null means ready.
    let mut raw = kuberesolver::testkit::endpoint_slice_object(
        "prod",
        "echo-raw",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &[pod(6), pod(7)],
    );
    raw["endpoints"][0]["conditions"] = serde_json::json!({"ready": null});
    raw["endpoints"][1]
        .as_object_mut()
        .expect("object")
        .remove("conditions");
    server.apply(Resource::EndpointSlices, "prod", "echo-raw", raw);
    let r = slices_resolver(&server, Source::EndpointSlices);
    let snapshot = converges_to(&r, &range([1, 5, 6, 7]));
    // Null (or missing) conditions mean ready, serving and not terminating.
    let null = snapshot
        .endpoints()
        .iter()
        .filter(|e| matches!(e.pod(), Some("echo-6" | "echo-7")));
    let conditions: Vec<Conditions> = null.map(|e| e.conditions()).collect();
    assert_eq!(conditions, [Conditions::default(); 2]);
}

#[test]
fn named_ports_are_resolved_per_slice_during_a_port_change_rollout() {
    let server = cluster();
    let old: Vec<Pod> = (0..3).map(pod).collect();
    let new: Vec<Pod> = (3..6).map(pod).collect();
    server.set_endpoint_slice(
        "prod",
        "echo-old",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &old,
    );
    server.set_endpoint_slice(
        "prod",
        "echo-new",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(9090))],
        &new,
    );
    let r = slices_resolver(&server, Source::EndpointSlices);
    let mut expected: Vec<SocketAddr> = (0..3)
        .map(addr)
        .chain((3..6).map(|i| SocketAddr::new(pod(i).ip, 9090)))
        .collect();
    expected.sort();
    converges_to(&r, &expected);
}

#[test]
fn ipv4_and_ipv6_slices_both_count() {
    let server = cluster();
    slice(&server, "echo-v4", 0..2);
    let v6: Vec<Pod> = (1..=2u16)
        .map(|i| {
            Pod::new(
                format!("echo-{i}"),
                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i]),
            )
        })
        .collect();
    server.set_endpoint_slice(
        "prod",
        "echo-v6",
        "echo",
        AddressType::Ipv6,
        &[("grpc", Some(8080))],
        &v6,
    );
    let r = slices_resolver(&server, Source::EndpointSlices);
    let mut expected = range(0..2);
    expected.extend(v6.iter().map(|p| SocketAddr::new(p.ip, 8080)));
    expected.sort();
    let snapshot = converges_to(&r, &expected);
    let shown: Vec<String> = snapshot.addresses().iter().map(|a| a.to_string()).collect();
    assert!(shown.contains(&"[fd00::1]:8080".to_string()), "{shown:?}");
}

#[test]
fn an_empty_placeholder_slice_counts_as_nothing() {
    let server = cluster();
    server.set_endpoint_slice("prod", "echo-x", "echo", AddressType::Ipv4, &[], &[]);
    let r = slices_resolver(&server, Source::EndpointSlices);
    let first = r.wait_ready(PATIENCE).expect("resolves to empty");
    assert!(first.is_empty());
    slice(&server, "echo-y", 0..2);
    converges_to(&r, &range(0..2));
}

#[test]
fn auto_uses_slices_when_they_exist() {
    let server = cluster();
    slice(&server, "echo-a", 0..2);
    let r = slices_resolver(&server, Source::Auto);
    converges_to(&r, &range(0..2));
    assert_eq!(r.status().source, Some(Source::EndpointSlices));
}

#[test]
fn auto_falls_back_to_endpoints_when_the_slice_api_is_missing_or_forbidden() {
    for missing in [true, false] {
        let server = cluster();
        scale(&server, 2);
        if missing {
            server.disable(Resource::EndpointSlices, true);
        } else {
            server.forbid(Resource::EndpointSlices, true);
        }
        let r = slices_resolver(&server, Source::Auto);
        converges_to(&r, &addrs(8080, [1, 2]));
        let status = r.status();
        assert_eq!(status.source, Some(Source::Endpoints), "{status:#?}");
        // The fallback is immediate: no error was recorded, no backoff was needed.
        assert_eq!(status.counters.errors, 0, "{status:#?}");
        scale(&server, 3);
        converges_to(&r, &addrs(8080, 1..=3));
    }
}

/// The Service's pods `ids` published both ways, as a cluster does: one slice and the
/// Endpoints object.
fn both_sources(server: &FakeApiServer, ids: std::ops::Range<u32>) {
    slice(server, "echo-a", ids.clone());
    let pods: Vec<Pod> = ids.map(pod).collect();
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
}

/// Whether the last request (waited for) is a watch of slices: the resolver runs on them.
fn watches_slices_last(server: &FakeApiServer) -> bool {
    server.wait_for_requests(PATIENCE, |requests| {
        requests
            .last()
            .is_some_and(|q| q.is_watch() && q.resource == Some(Resource::EndpointSlices))
    })
}

const SLICES_RULE: &str = r#"resources: ["endpointslices"]"#;
const ENDPOINTS_RULE: &str = r#"resources: ["endpoints"]"#;

#[test]
fn auto_with_both_sources_forbidden_names_both_rules_and_takes_slices_once_allowed() {
    let server = cluster();
    both_sources(&server, 0..3);
    server.forbid(Resource::EndpointSlices, true);
    server.forbid(Resource::Endpoints, true);
    let r = slices_resolver(&server, Source::Auto);
    eventually("the error names both RBAC rules", || {
        r.status().last_error.is_some_and(|e| {
            e.message().contains(SLICES_RULE) && e.message().contains(ENDPOINTS_RULE)
        })
    });
    let err = r.wait_ready(Duration::ZERO).unwrap_err().to_string();
    assert!(
        err.contains(SLICES_RULE) && err.contains(ENDPOINTS_RULE),
        "{err}"
    );
    // Slices are tried again, not given up on after the first refusal.
    eventually("slices are tried again", || {
        server
            .requests()
            .iter()
            .filter(|q| q.is_list() && q.resource == Some(Resource::EndpointSlices))
            .count()
            >= 3
    });
    // The Role lands for slices only: the resolver takes them.
    server.forbid(Resource::EndpointSlices, false);
    converges_to(&r, &range(0..3));
    assert_eq!(r.status().source, Some(Source::EndpointSlices));
    assert!(watches_slices_last(&server));
}

#[test]
fn auto_on_the_endpoints_fallback_returns_to_slices_at_the_next_relist() {
    let server = cluster();
    both_sources(&server, 0..3);
    server.forbid(Resource::EndpointSlices, true);
    let r = slices_resolver(&server, Source::Auto);
    let snapshot = converges_to(&r, &range(0..3));
    assert_eq!(r.status().source, Some(Source::Endpoints));
    assert!(snapshot.endpoints().iter().all(|e| e.zone().is_none()));
    // RBAC for slices lands while the Endpoints watch is healthy; a relist (forced here
    // with a 410, as a compaction does) moves to slices.
    server.forbid(Resource::EndpointSlices, false);
    assert!(server.wait_for_watches(1, PATIENCE));
    assert_eq!(server.inject(Fault::Expired), 1);
    eventually("the resolver is on slices", || {
        r.status().source == Some(Source::EndpointSlices)
    });
    assert!(watches_slices_last(&server));
    // Slices carry zones, and changes to them now arrive.
    eventually("zones appear", || {
        r.snapshot().endpoints().iter().all(|e| e.zone().is_some())
    });
    slice(&server, "echo-a", 0..5);
    converges_to(&r, &range(0..5));
    assert_eq!(r.status().counters.errors, 0, "{:#?}", r.status());
}

#[test]
fn an_explicit_slice_source_does_not_fall_back() {
    let server = cluster();
    scale(&server, 2);
    server.forbid(Resource::EndpointSlices, true);
    let r = slices_resolver(&server, Source::EndpointSlices);
    let err = not_ready(&r);
    assert_eq!(err.cause().and_then(|c| c.status()), Some(403), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("endpointslices") && text.contains("discovery.k8s.io"),
        "{text}"
    );
}

#[test]
fn the_zone_aware_picker_prefers_the_callers_zone() {
    let server = cluster();
    slice(&server, "echo-a", 0..6);
    let r = slices_resolver(&server, Source::EndpointSlices);
    let snapshot = converges_to(&r, &range(0..6));
    assert_eq!(snapshot.endpoints()[0].zone(), Some("zone-a"));
    let picker = r.picker().prefer_zone("zone-b");
    let picked: BTreeSet<SocketAddr> = (0..30).filter_map(|_| picker.pick()).collect();
    assert_eq!(picked, range([1, 3, 5]).into_iter().collect());
    // Zone b drains: the picker falls back to every ready endpoint.
    slice(&server, "echo-a", [0, 2, 4]);
    converges_to(&r, &range([0, 2, 4]));
    let picked: BTreeSet<SocketAddr> = (0..30).filter_map(|_| picker.pick()).collect();
    assert_eq!(picked, range([0, 2, 4]).into_iter().collect());
}

#[test]
fn five_thousand_endpoints_in_fifty_slices_resolve_completely() {
    let server = cluster();
    for s in 0..50u32 {
        slice(&server, &format!("echo-{s:02}"), s * 100..(s + 1) * 100);
    }
    let r = slices_resolver(&server, Source::EndpointSlices);
    let snapshot = converges_to(&r, &range(0..5000));
    assert_eq!(snapshot.len(), 5000);
}

/// Every published snapshot of a rolling update keeps the pods that were ready throughout,
/// and holds, for each replaced pod, the old one or its replacement (never neither).
#[test]
fn a_rolling_update_one_slice_at_a_time_never_drops_endpoints_ready_throughout() {
    let server = cluster();
    // Ten slices of twenty pods: ids 0..200. Pods with an even id stay; odd ones are replaced.
    let mut members: Vec<Vec<u32>> = (0..10).map(|s| (s * 20..(s + 1) * 20).collect()).collect();
    for (s, ids) in members.iter().enumerate() {
        slice(&server, &format!("echo-{s}"), ids.clone());
    }
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..200));
    let updates = r.updates();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            crossbeam_channel::select! {
                recv(updates) -> s => match s { Ok(s) => seen.push(s), Err(_) => break },
                recv(done_rx) -> _ => break,
            }
        }
        seen
    });
    // As the controller does: the new pod turns ready (added), then the old one leaves.
    for old in (1..20).step_by(2) {
        for (s, ids) in members.iter_mut().enumerate() {
            let old = s as u32 * 20 + old;
            ids.push(1000 + old);
            slice(&server, &format!("echo-{s}"), ids.clone());
            ids.retain(|i| *i != old);
            slice(&server, &format!("echo-{s}"), ids.clone());
        }
    }
    let stable = (0..200).step_by(2);
    let replaced = (1..200).step_by(2);
    converges_to(
        &r,
        &range(stable.clone().chain(replaced.clone().map(|i| 1000 + i))),
    );
    drop(done_tx);
    let snapshots: Vec<Snapshot> = watcher.join().expect("collector");
    assert!(snapshots.len() > 10, "saw {} snapshots", snapshots.len());
    for snapshot in &snapshots {
        let have: BTreeSet<SocketAddr> = snapshot.addresses().iter().copied().collect();
        for id in stable.clone() {
            assert!(
                have.contains(&addr(id)),
                "v{} dropped stable pod {id}",
                snapshot.version()
            );
        }
        for id in replaced.clone() {
            assert!(
                have.contains(&addr(id)) || have.contains(&addr(1000 + id)),
                "v{} lost both pod {id} and its replacement",
                snapshot.version()
            );
        }
    }
}

#[test]
fn resets_and_410s_on_a_slice_watch_are_survived() {
    let server = cluster();
    slice(&server, "echo-a", 0..3);
    let r = slices_resolver(&server, Source::EndpointSlices);
    converges_to(&r, &range(0..3));
    for fault in [Fault::Reset, Fault::Expired, Fault::CutMidEvent] {
        server.wait_for_watches(1, PATIENCE);
        server.inject(fault);
        slice(&server, "echo-b", 10..12);
        converges_to(&r, &range((0..3).chain(10..12)));
        server.delete(Resource::EndpointSlices, "prod", "echo-b");
        converges_to(&r, &range(0..3));
    }
}
