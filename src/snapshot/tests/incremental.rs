//! The publisher's books on runs made by hand: which way a snapshot is made, and which
//! buffer its addresses are written into. (The seeded property that the snapshot made from
//! what changed equals one made from scratch drives the merge too: `merge/properties.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;

use super::super::{Book, Endpoint, EndpointData, Listing, Run, Snapshot};

/// Object `run`'s run: 10.0.<run>.1 and .2 (but for the `unready`, which are not listed),
/// ready, of pod "pod" (but for the `renamed`: "other").
fn run_of(run: u8, unready: &[u8], renamed: &[u8]) -> Run {
    Run {
        name: Arc::from(format!("object-{run:03}")),
        endpoints: (1..=2)
            .filter(|last| !unready.contains(last))
            .map(|last| {
                let mut data = EndpointData::at(SocketAddr::from(([10, 0, run, last], 80)));
                let pod = if renamed.contains(&last) {
                    "other"
                } else {
                    "pod"
                };
                data.details.pod = Some(Arc::from(pod));
                Endpoint::new(data)
            })
            .collect(),
    }
}

/// 50 objects, each listing two ready endpoints.
fn fifty() -> Vec<Run> {
    (0..50).map(|run| run_of(run, &[], &[])).collect()
}

/// The listing of `runs` with `changed` in place of the runs of the same name: the others
/// are shared, as the merge shares the runs of objects that did not change.
fn listing(runs: &mut [Run], changed: &[Run]) -> Listing {
    for c in changed {
        if let Some(r) = runs.iter_mut().find(|r| r.name == c.name) {
            *r = c.clone();
        }
    }
    Listing::of_runs(runs.to_vec())
}

#[test]
fn a_change_of_one_object_among_many_edits_the_addresses_without_flattening() {
    let mut runs = fifty();
    let mut book = Book::default();
    let first = book.next(&Snapshot::unresolved(), listing(&mut runs, &[]), 1);
    let first = first.expect("published");
    assert!(first.is_flat() && first.len() == 100);
    let one_gone = listing(&mut runs, &[run_of(7, &[2], &[])]);
    let one_gone = book.next(&first, one_gone, 2).expect("published");
    assert!(!one_gone.is_flat(), "decided from the one run that changed");
    assert_eq!(one_gone.len(), 99);
    assert!(!one_gone
        .addresses()
        .contains(&SocketAddr::from(([10, 0, 7, 2], 80))));
    // Another pod at an address in use: the same addresses, shared, not copied.
    let renamed = listing(&mut runs, &[run_of(9, &[], &[1])]);
    let renamed = book
        .next(&one_gone, renamed, 3)
        .expect("a change of details");
    assert!(!renamed.is_flat() && renamed.addresses().shares(&one_gone.addresses()));
    assert_eq!(renamed.endpoints()[17].pod(), Some("other"));
    book.check();
}

#[test]
fn the_addresses_of_an_older_snapshot_are_reused_only_once_nothing_holds_them() {
    let mut runs = fifty();
    let mut book = Book::default();
    let mut next = |current: &Snapshot, changed: Run| {
        let listing = listing(&mut runs, &[changed]);
        book.next(current, listing, current.version() + 1)
            .expect("published")
    };
    let v1 = next(&Snapshot::unresolved(), run_of(0, &[], &[]));
    let v1_buffer = v1.addresses().buffer();
    let v2 = next(&v1, run_of(1, &[1], &[]));
    // A reader still holds v1: v3 goes elsewhere, and v1 stays as it was.
    let v3 = next(&v2, run_of(2, &[1], &[]));
    assert_ne!(v3.addresses().buffer(), v1_buffer);
    assert_eq!(v1.len(), 100);
    assert!(v1
        .addresses()
        .contains(&SocketAddr::from(([10, 0, 2, 1], 80))));
    // Nothing holds v2 but the books: v4 is written into its buffer (the same place, and
    // the room left after 99 addresses, not after 97 as a new buffer would have).
    let v2_buffer = v2.addresses().buffer();
    assert_ne!(v2_buffer.1, v3.addresses().buffer().1);
    drop((v1, v2));
    let v4 = next(&v3, run_of(3, &[1], &[]));
    assert_eq!(v4.addresses().buffer(), v2_buffer);
    assert_eq!(v4.len(), 97);
    assert!(!v4
        .addresses()
        .contains(&SocketAddr::from(([10, 0, 3, 1], 80))));
}
