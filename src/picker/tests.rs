//! The picker on a hub published to directly: rotation, feedback, topology, family, the
//! connect helper, failover order, and a seeded property test over all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::snapshot::{Conditions, Details, Endpoint, EndpointData};
use crate::util::Rng;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 80))
}

fn last(a: SocketAddr) -> u8 {
    match a.ip() {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    }
}

fn publish(hub: &Hub, lasts: &[u8]) {
    hub.publish(
        lasts
            .iter()
            .map(|o| Endpoint::bare(addr(*o)))
            .collect::<Vec<_>>(),
    );
}

fn hub_with(lasts: &[u8]) -> Arc<Hub> {
    let hub = Arc::new(Hub::new());
    publish(&hub, lasts);
    hub
}

/// The last octets of `n` picks.
fn picks(picker: &Picker, n: usize) -> Vec<u8> {
    (0..n).filter_map(|_| picker.pick()).map(last).collect()
}

fn distinct(picker: &Picker, n: usize) -> BTreeSet<u8> {
    picks(picker, n).into_iter().collect()
}

/// Wait (loosely bounded) until `condition` holds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn picks_none_when_empty_and_round_robins_over_the_snapshot() {
    let hub = Arc::new(Hub::new());
    let picker = Picker::new(hub.clone());
    assert_eq!(picker.pick(), None);
    publish(&hub, &[1, 2, 3]);
    assert_eq!(picks(&picker, 6), [1, 2, 3, 1, 2, 3]);
}

#[test]
fn sees_a_new_snapshot_on_the_next_call() {
    let hub = Arc::new(Hub::new());
    let picker = Picker::new(hub.clone());
    publish(&hub, &[1]);
    assert_eq!(picker.pick(), Some(addr(1)));
    publish(&hub, &[9]);
    assert_eq!(picker.pick(), Some(addr(9)));
    publish(&hub, &[]);
    assert_eq!(picker.pick(), None);
}

#[test]
fn pickers_of_different_resolvers_on_one_thread_do_not_mix() {
    let (a, b) = (hub_with(&[1]), hub_with(&[2]));
    let (pa, pb) = (Picker::new(a), Picker::new(b));
    for _ in 0..3 {
        assert_eq!(pa.pick(), Some(addr(1)));
        assert_eq!(pb.pick(), Some(addr(2)));
    }
}

#[test]
fn more_pickers_than_a_thread_caches_are_all_served() {
    let hub = hub_with(&[1, 2]);
    let pickers: Vec<Picker> = (0..CACHE_SLOTS * 2)
        .map(|_| Picker::new(hub.clone()))
        .collect();
    for _ in 0..3 {
        for picker in &pickers {
            assert!(picker.pick().is_some());
        }
    }
    let cached = CACHE.with(|c| c.borrow().len());
    assert_eq!(cached, CACHE_SLOTS);
}

#[test]
fn a_plain_picker_picks_from_the_snapshots_own_addresses() {
    let hub = hub_with(&[1, 2]);
    let snapshot = hub.current();
    let candidates = Prefs::default().candidates(&snapshot);
    assert!(candidates.all.shares(&snapshot.addresses()));
    assert!(candidates.preferred.shares(&candidates.all));
}

#[test]
fn a_zone_aware_picker_stays_in_its_zone_and_falls_back_when_it_is_empty() {
    let hub = Arc::new(Hub::new());
    let endpoint = |octet: u8, zone: &str| Endpoint::with_zone(addr(octet), Some(zone));
    hub.publish(vec![endpoint(1, "a"), endpoint(2, "b"), endpoint(3, "a")]);
    let picker = Picker::new(hub.clone()).prefer_zone("a");
    let plain = Picker::new(hub.clone());
    assert_eq!(distinct(&picker, 4), BTreeSet::from([1, 3]));
    assert_eq!(
        distinct(&plain, 6),
        BTreeSet::from([1, 2, 3]),
        "the plain picker on the same thread is not filtered"
    );
    hub.publish(vec![endpoint(2, "b")]);
    assert_eq!(picker.pick(), Some(addr(2)));
    assert_eq!(Picker::new(hub).prefer_zone("").zone(), None);
}

#[test]
fn picks_are_spread_evenly_across_threads() {
    let picker = Picker::new(hub_with(&[1, 2, 3, 4]));
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = picker.clone();
                s.spawn(move || (0..1000).filter_map(|_| p.pick()).collect::<Vec<_>>())
            })
            .collect();
        let mut counts = BTreeMap::new();
        for h in handles {
            for a in h.join().unwrap_or_default() {
                *counts.entry(a).or_insert(0) += 1;
            }
        }
        counts
    });
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|c| *c == 1000), "{counts:?}");
}

#[test]
fn a_failed_address_is_skipped_until_a_success_resets_it() {
    let picker = Picker::new(hub_with(&[1, 2, 3]));
    assert_eq!(distinct(&picker, 3), BTreeSet::from([1, 2, 3]));
    picker.report_failure(addr(2));
    assert_eq!(distinct(&picker, 30), BTreeSet::from([1, 3]));
    picker.report_success(addr(2));
    assert_eq!(distinct(&picker, 3), BTreeSet::from([1, 2, 3]));
}

#[test]
fn every_picker_of_the_resolver_shares_the_health_of_addresses() {
    let hub = hub_with(&[1, 2, 3]);
    let picker = Picker::new(hub.clone());
    let other = Picker::new(hub.clone()).prefer_zone("a");
    // Both have the addresses cached on this thread when a clone elsewhere reports.
    assert_eq!(distinct(&picker, 3).len(), 3);
    assert_eq!(distinct(&other, 3).len(), 3);
    std::thread::scope(|s| {
        let clone = picker.clone();
        s.spawn(move || clone.report_failure(addr(1)));
    });
    assert_eq!(distinct(&picker, 30), BTreeSet::from([2, 3]));
    assert_eq!(distinct(&other, 30), BTreeSet::from([2, 3]));
    let elsewhere = std::thread::scope(|s| {
        let clone = picker.clone();
        s.spawn(move || distinct(&clone, 30))
            .join()
            .unwrap_or_default()
    });
    assert_eq!(elsewhere, BTreeSet::from([2, 3]));
}

#[test]
fn when_every_address_is_ejected_the_one_whose_ejection_ends_first_is_picked() {
    let hub = hub_with(&[1, 2, 3]);
    let short = Picker::new(hub.clone());
    let long = short.ejection(Ejection::new().initial(Duration::from_secs(600)));
    long.report_failure(addr(1));
    short.report_failure(addr(2)); // ends within a second; the others in ten minutes
    long.report_failure(addr(3));
    for picker in [&short, &long, &short.prefer_zone("z")] {
        assert_eq!(picks(picker, 5), [2, 2, 2, 2, 2]);
    }
}

#[test]
fn an_ejection_ends_by_itself_with_one_probing_pick() {
    let hub = hub_with(&[1, 2]);
    let picker = Picker::new(hub).ejection(Ejection::new().initial(Duration::from_millis(20)));
    picker.report_failure(addr(1));
    assert_eq!(distinct(&picker, 10), BTreeSet::from([2]));
    eventually("the ejection ends and 10.0.0.1 is picked again", || {
        picker.pick() == Some(addr(1))
    });
    // That pick was the probe: it failed, so 10.0.0.1 is ejected again, for longer.
    picker.report_failure(addr(1));
    assert_eq!(distinct(&picker, 10), BTreeSet::from([2]));
}

#[test]
fn the_health_of_an_address_that_leaves_the_service_is_forgotten() {
    let hub = hub_with(&[1, 2, 3]);
    let picker = Picker::new(hub.clone());
    picker.report_failure(addr(1));
    picker.report_failure(addr(2));
    assert_eq!(hub.health().recorded(), 2);
    publish(&hub, &[2, 3]);
    assert_eq!(hub.health().recorded(), 1, "10.0.0.1 left and is forgotten");
    publish(&hub, &[1, 2, 3]);
    assert_eq!(distinct(&picker, 30), BTreeSet::from([1, 3]));
    // Failures of addresses that are not in the Service are not even recorded.
    picker.report_failure(addr(9));
    assert_eq!(hub.health().recorded(), 1);
}

#[test]
fn a_picker_uses_healthy_addresses_outside_its_preference_before_ejected_ones() {
    let hub = Arc::new(Hub::new());
    let endpoint = |octet: u8, zone: &str| Endpoint::with_zone(addr(octet), Some(zone));
    hub.publish(vec![endpoint(1, "a"), endpoint(2, "a"), endpoint(3, "b")]);
    let picker = Picker::new(hub).prefer_zone("a");
    picker.report_failure(addr(1));
    assert_eq!(distinct(&picker, 10), BTreeSet::from([2]));
    picker.report_failure(addr(2));
    assert_eq!(distinct(&picker, 10), BTreeSet::from([3]));
}

fn endpoint(ip: IpAddr, details: impl FnOnce(&mut Details)) -> Endpoint {
    let mut e = EndpointData::at(SocketAddr::new(ip, 80));
    details(&mut e.details);
    Endpoint::new(e)
}

#[test]
fn a_picker_of_one_family_picks_only_its_addresses_and_none_when_there_are_none() {
    let hub = Arc::new(Hub::new());
    let v6: IpAddr = "fd00::1".parse().unwrap_or(IpAddr::from([0u16; 8]));
    hub.publish(vec![
        endpoint(IpAddr::from([10, 0, 0, 1]), |_| {}),
        endpoint(v6, |_| {}),
    ]);
    let picker = Picker::new(hub.clone());
    let family = |f: IpFamily| -> BTreeSet<bool> {
        let p = picker.ip_family(f);
        (0..6)
            .filter_map(|_| p.pick())
            .map(|a| a.is_ipv6())
            .collect()
    };
    assert_eq!(family(IpFamily::V4), BTreeSet::from([false]));
    assert_eq!(family(IpFamily::V6), BTreeSet::from([true]));
    assert_eq!(family(IpFamily::Both), BTreeSet::from([false, true]));
    assert_eq!(IpFamily::default(), IpFamily::Both);
    hub.publish(vec![endpoint(IpAddr::from([10, 0, 0, 1]), |_| {})]);
    assert_eq!(picker.ip_family(IpFamily::V6).pick(), None);
}

#[test]
fn a_node_preference_without_hints_picks_the_pods_on_the_callers_node() {
    let hub = Arc::new(Hub::new());
    let on = |octet: u8, node: &str, zone: &str| {
        endpoint(IpAddr::from([10, 0, 0, octet]), |e| {
            e.node = Some(node.into());
            e.zone = Some(zone.into());
        })
    };
    hub.publish(vec![on(1, "n1", "a"), on(2, "n2", "a"), on(3, "n3", "b")]);
    let picker = Picker::new(hub);
    assert_eq!(distinct(&picker.prefer_node("n2"), 6), BTreeSet::from([2]));
    assert_eq!(picker.prefer_node("n2").node(), Some("n2"));
    assert_eq!(picker.prefer_node("").node(), None);
    // No pod on n9: the zone, then everything.
    let both = picker.prefer_node("n9").prefer_zone("b");
    assert_eq!(distinct(&both, 6), BTreeSet::from([3]));
    assert_eq!(
        distinct(&picker.prefer_node("n9"), 6),
        BTreeSet::from([1, 2, 3])
    );
}

/// Attempts by address.
type Tries = std::rc::Rc<std::cell::RefCell<BTreeMap<SocketAddr, usize>>>;

/// A connect function that refuses `dead` and counts every attempt by address.
fn connector(
    dead: &[SocketAddr],
) -> (impl FnMut(SocketAddr) -> io::Result<SocketAddr> + '_, Tries) {
    let tries = std::rc::Rc::new(std::cell::RefCell::new(BTreeMap::new()));
    let count = tries.clone();
    let connect = move |a: SocketAddr| {
        *count.borrow_mut().entry(a).or_insert(0) += 1;
        if dead.contains(&a) {
            Err(io::Error::from(io::ErrorKind::ConnectionRefused))
        } else {
            Ok(a)
        }
    };
    (connect, tries)
}

#[test]
fn connect_with_fails_over_and_tries_a_dead_address_once_per_ejection() {
    let picker = Picker::new(hub_with(&[1, 2, 3]));
    let dead = [addr(2)];
    let (mut connect, tries) = connector(&dead);
    for _ in 0..100 {
        let connected = picker.connect_with(&mut connect);
        assert!(connected.is_ok_and(|a| a != addr(2)));
    }
    let tries = tries.borrow();
    assert_eq!(tries.get(&addr(2)), Some(&1), "{tries:?}");
    assert_eq!(tries.values().sum::<usize>(), 101);
}

#[test]
fn connect_with_tries_each_address_once_up_to_its_bound_and_returns_the_last_error() {
    let all = [addr(1), addr(2), addr(3), addr(4)];
    // Each try on a fresh resolver, all of whose addresses refuse.
    let tries = |attempts: Option<u32>| {
        let picker = Picker::new(hub_with(&[1, 2, 3, 4]));
        let picker = attempts.map_or(picker.clone(), |n| picker.attempts(n));
        let (mut connect, tries) = connector(&all);
        let result = picker.connect_with(&mut connect).map_err(|e| e.kind());
        assert_eq!(result, Err(io::ErrorKind::ConnectionRefused));
        let tries = tries.borrow().clone();
        assert!(tries.values().all(|n| *n == 1), "each once: {tries:?}");
        tries.len()
    };
    assert_eq!(tries(None), 3, "three by default");
    assert_eq!(tries(Some(1)), 1);
    assert_eq!(tries(Some(0)), 1, "0 counts as 1");
    assert_eq!(tries(Some(9)), 4, "never one twice");
    // Bounded by the snapshot, not by the setting: no allocation or search of 2³² steps.
    assert_eq!(tries(Some(u32::MAX)), 4);
}

#[test]
fn connect_with_reports_successes_and_says_when_there_is_nothing_to_connect_to() {
    let hub = hub_with(&[1]);
    let picker = Picker::new(hub.clone()).ejection(Ejection::new().consecutive_failures(2));
    picker.report_failure(addr(1));
    assert_eq!(hub.health().recorded(), 1);
    assert!(picker.connect_with(Ok).is_ok());
    assert_eq!(hub.health().recorded(), 0, "the success reset it");
    publish(&hub, &[]);
    let err = picker.connect_with(Ok).map_err(|e| e.kind());
    assert_eq!(err, Err(io::ErrorKind::NotFound));
}

#[test]
fn std_connect_gets_every_address_healthy_ones_first_in_turn() {
    let hub = hub_with(&[1, 2, 3, 4]);
    let short = Picker::new(hub.clone());
    let long = short.ejection(Ejection::new().initial(Duration::from_secs(600)));
    long.report_failure(addr(1));
    short.report_failure(addr(3));
    let order = |p: &Picker| -> Vec<u8> {
        p.to_socket_addrs()
            .map(|i| i.map(last).collect())
            .unwrap_or_default()
    };
    assert_eq!(order(&short), [2, 4, 3, 1]);
    assert_eq!(
        order(&short),
        [4, 2, 3, 1],
        "the next call starts one further"
    );
    // Preferred ones first, then the others, then the ejected.
    let zoned = Arc::new(Hub::new());
    let endpoint = |octet: u8, zone: &str| Endpoint::with_zone(addr(octet), Some(zone));
    zoned.publish(vec![endpoint(1, "a"), endpoint(2, "b"), endpoint(3, "a")]);
    let picker = Picker::new(zoned.clone()).prefer_zone("b");
    assert_eq!(order(&picker), [2, 1, 3]);
    picker.report_failure(addr(2));
    assert_eq!(order(&picker), [1, 3, 2]);
    zoned.publish(vec![]);
    let err = picker.to_socket_addrs().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(err, Err(io::ErrorKind::NotFound));
}

#[test]
fn the_rotation_leaves_ejected_addresses_out_and_notes_when_the_first_ejection_ends() {
    let t = Instant::now();
    let set =
        |lasts: &[u8]| -> Addresses { lasts.iter().map(|l| addr(*l)).collect::<Vec<_>>().into() };
    let candidates = Candidates {
        all: set(&[1, 2, 3, 4]),
        preferred: set(&[1, 2]),
    };
    let secs = Duration::from_secs;
    let (turn, fallback, next) = rotation(&candidates, &[]);
    assert!(turn.shares(&candidates.preferred));
    assert_eq!((fallback, next), (None, None));
    // An ejected address that is not a candidate does not matter.
    let (turn, _, next) = rotation(&candidates, &[(addr(9), t)]);
    assert_eq!((&turn[..], next), (&set(&[1, 2])[..], None));
    let ejected = [(addr(1), t + secs(5)), (addr(3), t + secs(2))];
    let (turn, fallback, next) = rotation(&candidates, &ejected);
    assert_eq!((&turn[..], fallback), (&set(&[2])[..], None));
    assert_eq!(next, Some(t + secs(2)));
    let ejected = [(addr(1), t + secs(5)), (addr(2), t + secs(4))];
    let (turn, fallback, _) = rotation(&candidates, &ejected);
    assert_eq!((&turn[..], fallback), (&set(&[3, 4])[..], None));
    let ejected: Vec<_> = [(1, 5), (2, 4), (3, 3), (4, 6)]
        .iter()
        .map(|(l, s)| (addr(*l), t + secs(*s)))
        .collect();
    let (turn, fallback, next) = rotation(&candidates, &ejected);
    assert!(turn.is_empty());
    assert_eq!((fallback, next), (Some(addr(3)), Some(t + secs(3))));
}

#[test]
fn the_clock_is_read_less_often_the_faster_picks_come() {
    let fast = Duration::from_micros(100);
    let slow = Duration::from_millis(5);
    assert_eq!(next_stride(1, fast), 2);
    assert_eq!(next_stride(32, fast), 64);
    assert_eq!(next_stride(MAX_STRIDE, fast), MAX_STRIDE);
    assert_eq!(
        MAX_STRIDE, 64,
        "an ended ejection is seen at most 64 picks late"
    );
    assert_eq!(next_stride(64, slow), 1);
    assert_eq!(next_stride(8, Duration::from_millis(1)), 1);
}

/// One endpoint of the property test's pool, with random conditions and hints.
fn random_endpoint(rng: &mut Rng, i: u8) -> Endpoint {
    let ip = if i % 4 == 3 {
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)])
    } else {
        IpAddr::from([10, 0, 0, i])
    };
    let names = ["a", "b", "c"];
    let pick_names = |rng: &mut Rng| -> Box<[Arc<str>]> {
        let mut v: Vec<Arc<str>> = names
            .iter()
            .filter(|_| rng.chance(30))
            .map(|n| Arc::from(*n))
            .collect();
        v.sort();
        v.into_boxed_slice()
    };
    let ready = rng.chance(70);
    let terminating = !ready && rng.chance(70);
    let zone_hints = pick_names(rng);
    let node_hints = pick_names(rng);
    endpoint(ip, |e| {
        e.zone = Some(Arc::from(*rng.pick(&names)));
        e.node = Some(Arc::from(*rng.pick(&names)));
        e.conditions = Conditions {
            ready,
            serving: ready || rng.chance(60),
            terminating,
        };
        e.zone_hints = zone_hints;
        e.node_hints = node_hints;
    })
}

#[test]
fn property_a_pick_is_always_in_the_current_snapshot_and_never_none_when_it_has_one() {
    for seed in [1, 2, 3] {
        property_run(seed);
    }
}

fn property_run(seed: u64) {
    let mut rng = Rng::new(seed);
    let hub = Arc::new(Hub::new());
    let base = Picker::new(hub.clone());
    let quick = Ejection::new()
        .initial(Duration::from_millis(1))
        .cap(Duration::from_millis(4));
    let pickers = [
        base.clone(),
        base.prefer_zone("a"),
        base.prefer_node("b"),
        base.prefer_node("a").prefer_zone("c"),
        base.ip_family(IpFamily::V4),
        base.ip_family(IpFamily::V6).prefer_zone("b"),
        base.ejection(quick),
        base.ejection(quick.consecutive_failures(2))
            .prefer_zone("c"),
    ];
    let family = |p: &Picker, a: &SocketAddr| match p.core.prefs.family {
        IpFamily::V4 => a.is_ipv4(),
        IpFamily::V6 => a.is_ipv6(),
        IpFamily::Both => true,
    };
    let pool: Vec<u8> = (1..=12).collect();
    for step in 0..3000 {
        match rng.below(12) {
            0 => {
                let chosen: Vec<u8> = pool.iter().copied().filter(|_| rng.chance(60)).collect();
                let mut listed: Vec<Endpoint> = chosen
                    .into_iter()
                    .map(|i| random_endpoint(&mut rng, i))
                    .collect();
                listed.retain(|e| e.conditions().ready || e.conditions().terminating);
                listed.sort_by_key(Endpoint::addr);
                hub.publish(listed);
            }
            1..=3 => {
                let p = rng.pick(&pickers);
                let snapshot = hub.current();
                let known = snapshot.addresses();
                if let Some(a) = p.pick().or_else(|| known.first().copied()) {
                    p.report_failure(a);
                }
            }
            4 => {
                if let Some(a) = rng.pick(&pickers).pick() {
                    rng.pick(&pickers).report_success(a);
                }
            }
            5 => std::thread::sleep(Duration::from_micros(rng.below(2000) as u64)),
            _ => {
                let snapshot = hub.current();
                for p in &pickers {
                    let usable: BTreeSet<SocketAddr> = snapshot
                        .addresses()
                        .iter()
                        .filter(|a| family(p, a))
                        .copied()
                        .collect();
                    let picked = p.pick();
                    assert_eq!(
                        picked.is_some(),
                        !usable.is_empty(),
                        "seed {seed}, step {step}: {picked:?} from {usable:?} by {p:?}"
                    );
                    if let Some(a) = picked {
                        assert!(
                            usable.contains(&a),
                            "seed {seed}, step {step}: {a} by {p:?}"
                        );
                    }
                    let order: BTreeSet<SocketAddr> =
                        p.to_socket_addrs().map(|i| i.collect()).unwrap_or_default();
                    assert_eq!(order, usable, "seed {seed}, step {step}: failover by {p:?}");
                }
            }
        }
    }
    assert!(hub.health().recorded() <= pool.len());
}

#[test]
fn a_pick_from_a_thread_locals_destructor_still_picks() {
    // A thread-local whose destructor picks, registered before the picker's cache: the
    // cache is destroyed first, and the pick must neither panic (an abort there) nor fail.
    struct PickOnDrop(Picker, std::sync::mpsc::Sender<Option<SocketAddr>>);
    impl Drop for PickOnDrop {
        fn drop(&mut self) {
            let _ = self.1.send(self.0.pick());
        }
    }
    thread_local! {
        static LAST: RefCell<Option<PickOnDrop>> = const { RefCell::new(None) };
    }
    let picker = Picker::new(hub_with(&[1, 2]));
    let (sent, picked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        LAST.with(|last| *last.borrow_mut() = Some(PickOnDrop(picker.clone(), sent)));
        assert!(picker.pick().is_some(), "the cache is in use");
    })
    .join()
    .expect("the thread ends without a panic");
    let last = picked.recv().expect("the destructor ran");
    assert!(
        matches!(last, Some(a) if a == addr(1) || a == addr(2)),
        "{last:?}"
    );
}
