//! The merge's tests: resolution per port, conditions, hints and the listing's runs.

use super::*;
use crate::model::{EndpointSlice, Endpoints};

fn endpoints(json: &str) -> Vec<Group> {
    let object: Endpoints = serde_json::from_str(json).expect("endpoints json");
    normalize_endpoints(&object).groups
}

fn slice(json: &str) -> Vec<Group> {
    let object: EndpointSlice = serde_json::from_str(json).expect("slice json");
    normalize_slice(&object).groups
}

fn state(objects: Vec<(&str, Vec<Group>)>) -> Objects {
    let mut s = Objects::default();
    s.replace_all(objects.into_iter().map(|(n, g)| (n.to_string(), g)));
    s
}

/// The addresses a snapshot of the resolution would use.
fn addrs(s: &mut Objects, port: Option<Port>) -> Result<Vec<String>, String> {
    s.resolve(port.as_ref(), "echo")
        .map(|eps| {
            let snapshot = crate::Snapshot::new(1, &eps.flatten());
            snapshot.addresses().iter().map(|a| a.to_string()).collect()
        })
        .map_err(|e| e.to_string())
}

/// Every endpoint of the resolution: address, ready, serving, terminating.
fn listed(s: &mut Objects, port: Option<Port>) -> Vec<(String, bool, bool, bool)> {
    s.resolve(port.as_ref(), "echo")
        .map(|l| l.flatten())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let c = e.conditions();
            (e.addr().to_string(), c.ready, c.serving, c.terminating)
        })
        .collect()
}

fn named(n: &str) -> Option<Port> {
    Some(Port::Name(n.into()))
}

const TWO_PORTS: &str = r#"{"subsets":[
    {"addresses":[{"ip":"10.0.0.2"},{"ip":"10.0.0.1"}],"notReadyAddresses":[{"ip":"10.0.0.3"}],
     "ports":[{"name":"grpc","port":8080},{"name":"metrics","port":9090}]}]}"#;

#[test]
fn ready_addresses_times_the_named_port_sorted_without_not_ready_ones() {
    let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
    assert_eq!(
        addrs(&mut s, named("grpc")),
        Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into()])
    );
    assert_eq!(
        addrs(&mut s, named("metrics")),
        Ok(vec!["10.0.0.1:9090".into(), "10.0.0.2:9090".into()])
    );
}

#[test]
fn a_port_number_is_used_as_is() {
    let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
    assert_eq!(
        addrs(&mut s, Some(Port::Number(7000))),
        Ok(vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()])
    );
}

#[test]
fn resolutions_for_more_ports_than_are_cached_stay_right() {
    let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
    for _ in 0..2 {
        for n in 1..=CACHED_PORTS as u16 + 1 {
            assert_eq!(
                addrs(&mut s, Some(Port::Number(n))),
                Ok(vec![format!("10.0.0.1:{n}"), format!("10.0.0.2:{n}")])
            );
        }
    }
    assert_eq!(
        addrs(&mut s, named("grpc")),
        Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into()])
    );
}

#[test]
fn no_port_with_several_ports_is_an_error_naming_them() {
    let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
    let err = addrs(&mut s, None).unwrap_err();
    assert!(
        err.contains("\"grpc\"=8080") && err.contains("\"metrics\"=9090"),
        "{err}"
    );
}

#[test]
fn no_port_with_exactly_one_port_uses_it() {
    let mut s = state(vec![(
        "echo",
        endpoints(r#"{"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":80}]}]}"#),
    )]);
    assert_eq!(addrs(&mut s, None), Ok(vec!["10.0.0.1:80".into()]));
}

#[test]
fn an_unknown_port_name_is_an_error_listing_the_names() {
    let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
    let err = addrs(&mut s, named("http")).unwrap_err();
    assert!(
        err.contains("no port named \"http\"") && err.contains("grpc"),
        "{err}"
    );
}

#[test]
fn named_ports_are_matched_per_subset() {
    let mut s = state(vec![(
        "echo",
        endpoints(
            r#"{"subsets":[
            {"addresses":[{"ip":"10.0.0.1"}],"ports":[{"name":"grpc","port":8080}]},
            {"addresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":9000}]},
            {"addresses":[{"ip":"10.0.0.3"}],"ports":[{"name":"other","port":1}]}]}"#,
        ),
    )]);
    assert_eq!(
        addrs(&mut s, named("grpc")),
        Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:9000".into()])
    );
}

#[test]
fn no_subsets_or_a_deleted_object_resolve_to_empty() {
    let mut s = state(vec![("echo", endpoints("{}"))]);
    assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
    s.apply("echo".into(), endpoints(TWO_PORTS));
    assert_eq!(addrs(&mut s, named("grpc")).map(|a| a.len()), Ok(2));
    assert!(s.delete("echo"));
    assert!(!s.delete("echo"));
    assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
}

#[test]
fn applying_the_same_object_twice_is_not_a_change() {
    let mut s = Objects::default();
    assert!(s.apply("echo".into(), endpoints(TWO_PORTS)));
    assert!(!s.apply("echo".into(), endpoints(TWO_PORTS)));
}

#[test]
fn addresses_that_are_not_ips_are_skipped_and_reported() {
    let object: Endpoints = serde_json::from_str(
        r#"{"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"not-an-ip"},{}],"ports":[{"port":80}]}]}"#,
    )
    .expect("json");
    let n = normalize_endpoints(&object);
    assert_eq!(n.groups[0].members.len(), 1);
    assert_eq!(n.bad_ips, vec!["not-an-ip".to_string(), String::new()]);
}

#[test]
fn slices_merge_across_names_and_deduplicate_ip_port() {
    let a = slice(
        r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"]}],"ports":[{"name":"grpc","port":8080}]}"#,
    );
    let b = slice(
        r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.2"]},{"addresses":["10.0.0.3"]}],"ports":[{"name":"grpc","port":8080}]}"#,
    );
    let mut s = state(vec![("a", a), ("b", b)]);
    assert_eq!(
        addrs(&mut s, named("grpc")),
        Ok(vec![
            "10.0.0.1:8080".into(),
            "10.0.0.2:8080".into(),
            "10.0.0.3:8080".into()
        ])
    );
}

#[test]
fn slice_conditions_null_means_ready_and_terminating_is_never_ready() {
    let mut s = state(vec![(
        "a",
        slice(
            r#"{"addressType":"IPv4","ports":[{"name":"","port":80}],"endpoints":[
            {"addresses":["10.0.0.1"],"conditions":{}},
            {"addresses":["10.0.0.2"],"conditions":{"ready":null,"serving":null,"terminating":null}},
            {"addresses":["10.0.0.3"],"conditions":{"ready":false}},
            {"addresses":["10.0.0.4"],"conditions":{"ready":true,"terminating":true}},
            {"addresses":["10.0.0.5"]}]}"#,
        ),
    )]);
    assert_eq!(
        addrs(&mut s, None),
        Ok(vec![
            "10.0.0.1:80".into(),
            "10.0.0.2:80".into(),
            "10.0.0.5:80".into()
        ])
    );
    // The terminating one is listed, for a snapshot's `terminating`; the unready one not.
    let terminating = ("10.0.0.4:80".to_string(), false, true, true);
    let all = listed(&mut s, None);
    assert_eq!(all.len(), 4);
    assert_eq!(all[2], terminating);
}

/// A slice of one port `grpc` 8080 with these endpoints (JSON objects).
fn slice_of(endpoints: &str) -> Vec<Group> {
    slice(&format!(
        r#"{{"addressType":"IPv4","ports":[{{"name":"grpc","port":8080}}],"endpoints":[{endpoints}]}}"#
    ))
}

#[test]
fn serving_terminating_endpoints_are_used_only_while_none_is_ready() {
    // kube-proxy's table: serving+terminating ones while none is ready; never those
    // that are neither ready nor serving, nor unready ones that are not terminating.
    const ST: &str = r#""conditions":{"ready":false,"serving":true,"terminating":true}"#;
    let cases: [(&str, &[&str]); 6] = [
        (
            &format!(r#"{{"addresses":["10.0.0.1"]}},{{"addresses":["10.0.0.2"],{ST}}}"#),
            &["10.0.0.1:8080"],
        ),
        (
            &format!(
                r#"{{"addresses":["10.0.0.1"],"conditions":{{"ready":false,"serving":false}}}},{{"addresses":["10.0.0.2"],{ST}}}"#
            ),
            &["10.0.0.2:8080"],
        ),
        (
            &format!(r#"{{"addresses":["10.0.0.1"],{ST}}},{{"addresses":["10.0.0.2"],{ST}}}"#),
            &["10.0.0.1:8080", "10.0.0.2:8080"],
        ),
        (
            r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false}},{"addresses":["10.0.0.2"],"conditions":{"ready":false}}"#,
            &[],
        ),
        (
            r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"terminating":true}}"#,
            &["10.0.0.1:8080"],
        ),
        (
            r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":true}}"#,
            &[],
        ),
    ];
    for (endpoints, used) in cases {
        let mut s = state(vec![("a", slice_of(endpoints))]);
        let used: Vec<String> = used.iter().map(|u| u.to_string()).collect();
        assert_eq!(addrs(&mut s, named("grpc")), Ok(used), "{endpoints}");
    }
}

#[test]
fn of_two_endpoints_at_one_address_one_that_is_not_terminating_wins_else_a_serving_one() {
    let terminating = slice_of(r#"{"addresses":["10.0.0.1"],"conditions":{"terminating":true}}"#);
    let stopped =
        slice_of(r#"{"addresses":["10.0.0.1"],"conditions":{"serving":false,"terminating":true}}"#);
    let ready = slice_of(r#"{"addresses":["10.0.0.1"]}"#);
    // Both orders of the two objects.
    let kept = |a: &Vec<Group>, b: &Vec<Group>| {
        [[a, b], [b, a]].map(|[x, y]| {
            let mut s = state(vec![("a", x.clone()), ("b", y.clone())]);
            listed(&mut s, named("grpc"))
        })
    };
    let addr = "10.0.0.1:8080".to_string();
    for one in kept(&terminating, &ready) {
        assert_eq!(one, [(addr.clone(), true, true, false)]);
    }
    for one in kept(&stopped, &terminating) {
        assert_eq!(one, [(addr.clone(), false, true, true)]);
    }
}

#[test]
fn a_port_that_cannot_be_chosen_is_an_error_only_for_endpoints_that_could_be_used() {
    let two_ports = |endpoints: &str| {
        slice(&format!(
            r#"{{"addressType":"IPv4","ports":[{{"name":"a","port":1}},{{"name":"b","port":2}}],"endpoints":[{endpoints}]}}"#
        ))
    };
    let gone = r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":false,"terminating":true}}"#;
    let serving = r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true}}"#;
    // Pods that no longer serve: nothing to use, no error either way.
    let mut s = state(vec![("a", two_ports(gone))]);
    assert_eq!(addrs(&mut s, None), Ok(vec![]));
    assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
    // Serving ones: the port must be chosen.
    let mut s = state(vec![("a", two_ports(serving))]);
    assert!(addrs(&mut s, None).is_err());
    assert!(addrs(&mut s, named("grpc")).is_err());
    // Listed but not usable elsewhere does not hide the error of usable ones.
    let mut s = state(vec![("a", two_ports(serving)), ("b", slice_of(gone))]);
    assert!(addrs(&mut s, named("a")).is_ok_and(|a| a.len() == 1));
    let gone_with_c = slice(
        r#"{"addressType":"IPv4","ports":[{"name":"c","port":3}],"endpoints":[{"addresses":["10.0.0.9"],"conditions":{"ready":false,"serving":false,"terminating":true}}]}"#,
    );
    let mut s = state(vec![("a", gone_with_c), ("b", two_ports(serving))]);
    assert_eq!(listed(&mut s, named("a")).len(), 1);
    let err = addrs(&mut s, named("c")).unwrap_err();
    assert!(err.contains("no port named \"c\""), "{err}");
}

#[test]
fn topology_hints_are_kept_sorted_without_empty_or_repeated_names() {
    let mut s = state(vec![(
        "a",
        slice_of(
            r#"{"addresses":["10.0.0.1"],"hints":{"forZones":[{"name":"b"},{"name":""},{"name":"a"},{"name":"b"},{}],"forNodes":[{"name":"n1"}]}},
               {"addresses":["10.0.0.2"],"hints":{"forZones":null,"forNodes":[]}},
               {"addresses":["10.0.0.3"],"hints":null}"#,
        ),
    )]);
    let eps = s
        .resolve(named("grpc").as_ref(), "echo")
        .map(|l| l.flatten())
        .unwrap_or_default();
    let hints: Vec<(Vec<&str>, Vec<&str>)> = eps
        .iter()
        .map(|e| (e.zone_hints().collect(), e.node_hints().collect()))
        .collect();
    assert_eq!(
        hints,
        [
            (vec!["a", "b"], vec!["n1"]),
            (vec![], vec![]),
            (vec![], vec![])
        ]
    );
    // The same names share one allocation with the zone and node names.
    let zone =
        slice_of(r#"{"addresses":["10.0.0.1"],"zone":"a","hints":{"forZones":[{"name":"a"}]}}"#);
    let member = &zone[0].members[0];
    assert!(Arc::ptr_eq(
        member.details.zone.as_ref().expect("zone"),
        &member.details.zone_hints[0]
    ));
}

#[test]
fn slices_with_null_endpoints_ports_or_port_and_fqdn_slices_count_as_nothing() {
    let placeholder = slice(r#"{"addressType":"IPv4","endpoints":null,"ports":null}"#);
    let null_port = slice(
        r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.9"]}],"ports":[{"name":"grpc","port":null}]}"#,
    );
    let object: EndpointSlice = serde_json::from_str(
        r#"{"addressType":"FQDN","endpoints":[{"addresses":["example.com"]}],"ports":[{"port":80}]}"#,
    )
    .expect("json");
    let fqdn = normalize_slice(&object);
    assert!(fqdn.fqdn && fqdn.groups.is_empty());
    let mut s = state(vec![("p", placeholder), ("n", null_port)]);
    assert!(
        addrs(&mut s, named("grpc")).is_err(),
        "ready endpoint without the port"
    );
    let mut s = state(vec![(
        "p",
        slice(r#"{"addressType":"IPv4","endpoints":null,"ports":null}"#),
    )]);
    assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
}

#[test]
fn dual_stack_slices_both_count() {
    let v4 = slice(
        r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"grpc","port":8080}]}"#,
    );
    let v6 = slice(
        r#"{"addressType":"IPv6","endpoints":[{"addresses":["fd00::1"]}],"ports":[{"name":"grpc","port":8080}]}"#,
    );
    let mut s = state(vec![("v4", v4), ("v6", v6)]);
    assert_eq!(
        addrs(&mut s, named("grpc")),
        Ok(vec!["10.0.0.1:8080".into(), "[fd00::1]:8080".into()])
    );
}

#[test]
fn objects_say_which_service_they_belong_to() {
    let owner = |json: &str| {
        let object: EndpointSlice = serde_json::from_str(json).expect("slice json");
        normalize_slice(&object)
    };
    let ours = owner(
        r#"{"metadata":{"name":"echo-x1","labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":"echo"}},"addressType":"IPv4"}"#,
    );
    assert!(ours.belongs_to("echo"));
    assert!(!ours.belongs_to("echo-x1") && !ours.belongs_to("other"));
    let fqdn = owner(
        r#"{"metadata":{"name":"f","labels":{"kubernetes.io/service-name":"other"}},"addressType":"FQDN"}"#,
    );
    assert!(fqdn.fqdn && !fqdn.belongs_to("echo") && fqdn.belongs_to("other"));
    // A slice that carries no Service label belongs to none, whatever its name.
    for json in [
        r#"{"metadata":{"name":"echo"}}"#,
        r#"{"metadata":{"name":"echo","labels":null}}"#,
        r#"{"metadata":{"name":"echo","labels":{"app":"echo"}}}"#,
        r#"{"metadata":{"name":"echo","labels":{"kubernetes.io/service-name":null}}}"#,
        r#"{"metadata":null}"#,
    ] {
        assert!(!owner(json).belongs_to("echo"), "{json}");
    }
    // Endpoints carry the Service's name, and nothing else counts.
    let endpoints = |json: &str| {
        let object: Endpoints = serde_json::from_str(json).expect("endpoints json");
        normalize_endpoints(&object)
    };
    assert!(endpoints(r#"{"metadata":{"name":"echo"}}"#).belongs_to("echo"));
    let other = endpoints(
        r#"{"metadata":{"name":"other","labels":{"kubernetes.io/service-name":"echo"}}}"#,
    );
    assert!(!other.belongs_to("echo"));
    assert!(!endpoints(r#"{"subsets":[]}"#).belongs_to("echo"));
}
