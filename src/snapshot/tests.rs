//! Which endpoints a snapshot uses, and what a diff says, terminating endpoints included.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;

/// How the API lists an endpoint.
#[derive(Clone, Copy)]
enum State {
    Ready,
    /// Serving while terminating.
    Terminating,
    /// Terminating and no longer serving.
    Gone,
}

use State::{Gone, Ready, Terminating};

fn ep(last: u8, state: State, pod: &str) -> Endpoint {
    let (ready, serving, terminating) = match state {
        Ready => (true, true, false),
        Terminating => (false, true, true),
        Gone => (false, false, true),
    };
    Endpoint::new(EndpointData {
        addr: SocketAddr::from(([10, 0, 0, last], 80)),
        details: Details {
            pod: Some(Arc::from(pod)),
            conditions: Conditions {
                ready,
                serving,
                terminating,
            },
            ..Details::default()
        },
    })
}

fn snapshot(listed: &[Endpoint]) -> Snapshot {
    Snapshot::new(1, listed)
}

fn lasts(endpoints: &[Endpoint]) -> Vec<u8> {
    endpoints
        .iter()
        .map(|e| match e.ip() {
            std::net::IpAddr::V4(v4) => v4.octets()[3],
            std::net::IpAddr::V6(_) => 0,
        })
        .collect()
}

#[test]
fn a_snapshot_uses_the_ready_endpoints_else_those_serving_while_terminating() {
    let s = snapshot(&[ep(1, Ready, "a"), ep(2, Terminating, "b"), ep(3, Gone, "c")]);
    assert_eq!(lasts(s.endpoints()), [1]);
    assert_eq!(s.addresses()[..], [SocketAddr::from(([10, 0, 0, 1], 80))]);
    assert_eq!(lasts(s.terminating()), [2, 3]);
    assert_eq!(s.len(), 1);
    let s = snapshot(&[
        ep(2, Terminating, "b"),
        ep(3, Gone, "c"),
        ep(4, Terminating, "d"),
    ]);
    assert_eq!(lasts(s.endpoints()), [2, 4]);
    assert_eq!(lasts(s.terminating()), [2, 3, 4]);
    let s = snapshot(&[ep(3, Gone, "c")]);
    assert!(s.is_empty());
    assert_eq!(lasts(s.terminating()), [3]);
    let unresolved = Snapshot::unresolved();
    assert!(unresolved.is_empty() && unresolved.terminating().is_empty());
}

/// Whether a publisher that published `before` publishes `after`.
fn publishes(before: &[Endpoint], after: &[Endpoint]) -> bool {
    let mut book = Book::default();
    let first = book.next(&Snapshot::unresolved(), Listing::from(before.to_vec()), 1);
    let first = first.expect("the first listing is always published");
    book.next(&first, Listing::from(after.to_vec()), 2)
        .is_some()
}

#[test]
fn a_change_of_the_terminating_endpoints_alone_is_a_change() {
    let listed = [ep(1, Ready, "a"), ep(2, Terminating, "b")];
    assert!(!publishes(&listed, &listed));
    assert!(publishes(&listed, &[ep(1, Ready, "a"), ep(2, Gone, "b")]));
    assert!(publishes(&listed, &[ep(1, Ready, "a")]));
    assert!(publishes(
        &listed,
        &[ep(1, Ready, "x"), ep(2, Terminating, "b")]
    ));
}

#[test]
fn an_endpoint_that_starts_terminating_is_removed_and_draining() {
    let before = snapshot(&[ep(1, Ready, "a"), ep(2, Ready, "b")]);
    let after = snapshot(&[ep(1, Terminating, "a"), ep(2, Ready, "b")]);
    let diff = after.diff(&before);
    assert_eq!(lasts(&diff.draining), [1]);
    assert!(diff.draining[0].conditions().terminating, "as it is now");
    assert_eq!(lasts(&diff.removed), [1]);
    assert!(diff.removed[0].conditions().ready, "as it was");
    assert!(diff.added.is_empty(), "{diff:?}");
    // Not serving any more makes no difference.
    let after = snapshot(&[ep(1, Gone, "a"), ep(2, Ready, "b")]);
    assert_eq!(lasts(&after.diff(&before).draining), [1]);
}

#[test]
fn an_endpoint_still_used_for_want_of_a_ready_one_is_draining_and_nothing_else() {
    // A one-replica rollout with maxSurge 0: the old pod terminates first.
    let before = snapshot(&[ep(1, Ready, "old")]);
    let terminating = snapshot(&[ep(1, Terminating, "old")]);
    let diff = terminating.diff(&before);
    assert_eq!(lasts(&diff.draining), [1]);
    assert!(diff.added.is_empty() && diff.removed.is_empty(), "{diff:?}");
    // The new pod is ready: the old one leaves; it was already draining.
    let replaced = snapshot(&[ep(1, Terminating, "old"), ep(2, Ready, "new")]);
    let diff = replaced.diff(&terminating);
    assert_eq!(
        (lasts(&diff.added), lasts(&diff.removed)),
        (vec![2], vec![1])
    );
    assert!(diff.draining.is_empty());
    // Its conditions changing while it is not used are no change of use.
    let stopped = snapshot(&[ep(1, Gone, "old"), ep(2, Ready, "new")]);
    assert!(stopped.diff(&replaced).is_empty());
}

#[test]
fn endpoints_that_leave_or_change_pods_are_added_and_removed() {
    let before = snapshot(&[ep(1, Ready, "a"), ep(2, Ready, "b"), ep(3, Ready, "c")]);
    // 1 left, 2 is another pod now (and terminating: a new pod is no old pod draining).
    let after = snapshot(&[
        ep(2, Terminating, "x"),
        ep(3, Ready, "c"),
        ep(4, Ready, "d"),
    ]);
    let diff = after.diff(&before);
    assert_eq!(lasts(&diff.added), [4]);
    assert_eq!(lasts(&diff.removed), [1, 2]);
    assert!(diff.draining.is_empty());
    assert!(after.diff(&after).is_empty());
    let later = snapshot(&[ep(2, Ready, "y"), ep(3, Ready, "c")]);
    let diff = later.diff(&snapshot(&[ep(2, Ready, "b"), ep(3, Ready, "c")]));
    assert_eq!(
        (lasts(&diff.added), lasts(&diff.removed)),
        (vec![2], vec![2])
    );
}

#[test]
fn only_conditions_differ_between_the_same_pod_ready_and_terminating() {
    assert!(ep(1, Ready, "a").same_but_conditions(&ep(1, Terminating, "a")));
    assert!(!ep(1, Ready, "a").same_but_conditions(&ep(1, Ready, "b")));
    assert!(!ep(1, Ready, "a").same_but_conditions(&ep(2, Ready, "a")));
    let hinted = |zones: &[&str], nodes: &[&str]| {
        Endpoint::new(EndpointData {
            addr: SocketAddr::from(([10, 0, 0, 1], 80)),
            details: Details {
                zone_hints: zones.iter().map(|z| Arc::from(*z)).collect(),
                node_hints: nodes.iter().map(|n| Arc::from(*n)).collect(),
                ..Details::default()
            },
        })
    };
    assert!(hinted(&["a"], &[]).same_but_conditions(&hinted(&["a"], &[])));
    assert!(!hinted(&["a"], &[]).same_but_conditions(&hinted(&["b"], &[])));
    assert!(!hinted(&[], &["n"]).same_but_conditions(&hinted(&[], &[])));
    let with = |f: fn(&mut Details)| {
        let mut data = EndpointData::at(SocketAddr::from(([10, 0, 0, 1], 80)));
        f(&mut data.details);
        Endpoint::new(data)
    };
    let plain = with(|_| {});
    for other in [
        with(|d| d.hostname = Some(Arc::from("h"))),
        with(|d| d.node = Some(Arc::from("n"))),
        with(|d| d.zone = Some(Arc::from("z"))),
    ] {
        assert!(!plain.same_but_conditions(&other), "{other:?}");
    }
}

#[test]
fn removing_then_adding_what_a_diff_says_turns_the_old_endpoints_into_the_new() {
    // A connector that keeps one connection per endpoint and only reads `added` and
    // `removed` ends with exactly the endpoints in use, whatever started terminating.
    let mut rng = crate::util::Rng::new(10);
    let states = [Ready, Ready, Terminating, Gone];
    let pods: [&str; 2] = ["a", "b"];
    let mut previous = snapshot(&[]);
    for _ in 0..2000 {
        let mut listed = Vec::new();
        for last in 1..=6 {
            if rng.chance(70) {
                listed.push(ep(last, *rng.pick(&states), pods[rng.below(2)]));
            }
        }
        let current = snapshot(&listed);
        let diff = current.diff(&previous);
        let mut held: Vec<Endpoint> = previous.endpoints().to_vec();
        held.retain(|e| !diff.removed.contains(e));
        held.extend(diff.added.iter().cloned());
        held.sort_by_key(|e| e.addr());
        let key = |e: &Endpoint| (e.addr(), e.pod().map(str::to_owned));
        let used: Vec<_> = current.endpoints().iter().map(key).collect();
        let held: Vec<_> = held.iter().map(key).collect();
        assert_eq!(held, used, "{previous:?} -> {current:?}: {diff:?}");
        for d in &diff.draining {
            assert!(d.conditions().terminating, "{d:?}");
            assert!(current.terminating().contains(d), "{d:?}");
        }
        previous = current;
    }
}

mod incremental;
