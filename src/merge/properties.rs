//! Seeded property: the snapshot a publisher makes from what changed (`Book::next`) holds
//! what a snapshot made from scratch of the same objects holds, over random sequences of
//! objects added, changed, deleted and relisted: addresses listed by several objects,
//! readiness and terminating flips, groups without the port, IPv4 and IPv6 together, two
//! target ports at once, old snapshots held by readers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{Group, Member, Objects, PortDef};
use crate::snapshot::{Book, Conditions, Details, Snapshot};
use crate::util::Rng;
use crate::Port;

fn port(name: &str, number: u16) -> PortDef {
    PortDef {
        name: Some(name.to_string()),
        port: Some(number),
    }
}

fn random_ports(rng: &mut Rng) -> Vec<PortDef> {
    match rng.below(20) {
        0..=13 => vec![port("grpc", 8080)],
        14 => vec![port("grpc", 9090)],
        15 => Vec::new(),
        16 | 17 => vec![port("other", 7000)],
        _ => vec![port("grpc", 8080), port("metrics", 9100)],
    }
}

fn random_member(rng: &mut Rng) -> Member {
    let ip = if rng.chance(70) {
        IpAddr::from([10, 0, 0, rng.range(1, 16) as u8])
    } else {
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, rng.range(1, 8) as u16])
    };
    // (ready, serving, terminating), as the merge normalizes them: never ready and
    // terminating at once.
    let (ready, serving, terminating) = *rng.pick(&[
        (true, true, false),
        (true, true, false),
        (true, true, false),
        (false, false, false),
        (false, true, false),
        (false, true, true),
        (false, false, true),
    ]);
    let name = |rng: &mut Rng, names: &[&str]| -> Option<Arc<str>> {
        let i = rng.below(names.len() + 1);
        names.get(i).map(|n| Arc::from(*n))
    };
    Member {
        ip,
        details: Details {
            pod: name(rng, &["p1", "p2", "p3"]),
            zone: name(rng, &["a", "b"]),
            node: name(rng, &["n1", "n2"]),
            conditions: Conditions {
                ready,
                serving,
                terminating,
            },
            ..Details::default()
        },
    }
}

fn random_object(rng: &mut Rng) -> Vec<Group> {
    (0..rng.range(1, 2))
        .map(|_| Group {
            ports: random_ports(rng),
            members: (0..rng.below(7)).map(|_| random_member(rng)).collect(),
        })
        .collect()
}

const NAMES: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];

/// What one target port's publisher has: its books and its current snapshot.
struct Port_ {
    port: Option<Port>,
    book: Book,
    current: Snapshot,
}

/// The addresses of `snapshot`, checked against its endpoints: sorted and unique.
fn addresses(snapshot: &Snapshot) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = snapshot.addresses().to_vec();
    assert!(addrs.windows(2).all(|w| w[0] < w[1]), "{addrs:?}");
    let of_endpoints: Vec<SocketAddr> = snapshot.endpoints().iter().map(|e| e.addr()).collect();
    assert_eq!(addrs, of_endpoints);
    addrs
}

fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut objects = Objects::default();
    let mut mirror: BTreeMap<String, Vec<Group>> = BTreeMap::new();
    let mut ports: Vec<Port_> = [Some(Port::Name("grpc".into())), Some(Port::Number(8080))]
        .into_iter()
        .map(|port| Port_ {
            port,
            book: Book::default(),
            current: Snapshot::unresolved(),
        })
        .collect();
    // Snapshots a reader still holds, with what they held when published: the publisher
    // must never write into their addresses.
    let mut held: Vec<(Snapshot, Vec<SocketAddr>)> = Vec::new();
    for step in 0..400 {
        let at = format!("seed {seed}, step {step}");
        // One watch read may bring several events before a publish.
        for _ in 0..rng.range(1, 3) {
            let name = rng.pick(&NAMES).to_string();
            match rng.below(10) {
                0..=5 => {
                    let groups = random_object(&mut rng);
                    mirror.insert(name.clone(), groups.clone());
                    objects.apply(name, groups);
                }
                6 => {
                    // The same object again: no change.
                    if let Some(groups) = mirror.get(&name) {
                        assert!(!objects.apply(name, groups.clone()), "{at}");
                    }
                }
                7 | 8 => {
                    assert_eq!(
                        objects.delete(&name),
                        mirror.remove(&name).is_some(),
                        "{at}"
                    );
                }
                _ => {
                    // A relist: some objects as they were, others new, others gone.
                    let mut listed = BTreeMap::new();
                    for n in NAMES {
                        match (rng.below(3), mirror.get(n)) {
                            (0, Some(same)) => {
                                listed.insert(n.to_string(), same.clone());
                            }
                            (1, _) => {
                                listed.insert(n.to_string(), random_object(&mut rng));
                            }
                            _ => {}
                        }
                    }
                    mirror = listed;
                    objects.replace_all(mirror.clone());
                }
            }
        }
        for p in &mut ports {
            let mut fresh = Objects::default();
            fresh.replace_all(mirror.clone());
            let expected = fresh.resolve(p.port.as_ref(), "echo");
            let listing = objects.resolve(p.port.as_ref(), "echo");
            let (listing, expected) = match (listing, expected) {
                (Ok(listing), Ok(expected)) => (listing, expected),
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{at}");
                    continue;
                }
                (a, b) => panic!("{at}: {a:?} against {b:?} from scratch"),
            };
            let expected = Snapshot::new(p.current.version() + 1, &expected.flatten());
            let differs = p.current.version() == 0
                || p.current.endpoints() != expected.endpoints()
                || p.current.terminating() != expected.terminating();
            let next = p.book.next(&p.current, listing, p.current.version() + 1);
            p.book.check();
            assert_eq!(next.is_some(), differs, "{at}, port {:?}", p.port);
            if let Some(next) = next {
                assert_eq!(next.version(), p.current.version() + 1, "{at}");
                let previous = std::mem::replace(&mut p.current, next);
                if rng.chance(20) {
                    let addrs = previous.addresses().to_vec();
                    held.push((previous, addrs));
                }
            }
            let got = &p.current;
            assert_eq!(
                addresses(got),
                addresses(&expected),
                "{at}, port {:?}",
                p.port
            );
            assert_eq!(got.endpoints(), expected.endpoints(), "{at}");
            assert_eq!(got.terminating(), expected.terminating(), "{at}");
            assert_eq!(got.terminating_len(), expected.terminating().len(), "{at}");
            assert_eq!(got.len(), expected.len(), "{at}");
        }
        for (snapshot, addrs) in &held {
            assert_eq!(
                &snapshot.addresses()[..],
                &addrs[..],
                "{at}: a held snapshot changed"
            );
        }
        if rng.chance(5) {
            held.clear();
        }
    }
}

#[test]
fn property_a_snapshot_made_from_what_changed_equals_one_made_from_scratch() {
    for seed in 1..=40 {
        run(seed);
    }
}
