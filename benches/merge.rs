//! Merge cost per watch event as the number of EndpointSlices grows (1, 10, 50 slices of 100
//! endpoints): decode one MODIFIED event, apply it to the state, resolve the snapshot.
//!
//! Run: `cargo bench --bench merge`. Prints a table; no assertions.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kuberesolver::fuzzing::Merger;
use kuberesolver::testkit::{endpoint_slice_object, AddressType, Pod};
use kuberesolver::Port;

fn slice_event(kind: &str, slice: u32, generation: u32) -> Vec<u8> {
    let pods: Vec<Pod> = (0..100u32)
        .map(|i| {
            let id = slice * 100 + i;
            // Each generation flips one pod's readiness so every event is a real change.
            let ready = !(i == generation % 100 && generation % 2 == 1);
            Pod::new(
                format!("echo-{id}"),
                [10, 1, (id >> 8) as u8, (id & 0xff) as u8],
            )
            .node(format!("node-{}", id % 20))
            .zone(if id % 2 == 0 { "zone-a" } else { "zone-b" })
            .ready(ready)
        })
        .collect();
    let mut object = endpoint_slice_object(
        "prod",
        &format!("echo-{slice:03}"),
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &pods,
    );
    object["kind"] = "EndpointSlice".into();
    object["apiVersion"] = "discovery.k8s.io/v1".into();
    object["metadata"]["resourceVersion"] = (1000 + generation).to_string().into();
    // `type` before `object`, as the API server writes events.
    let mut line = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
    serde_json::to_writer(&mut line, &object).expect("serializes");
    line.extend_from_slice(b"}\n");
    line
}

fn per_event(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then only a smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    println!("merge cost per MODIFIED event (100-endpoint slice), by total slice count");
    println!(
        "{:>7} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "slices", "endpoints", "decode µs", "apply µs", "resolve µs", "total µs"
    );
    for slices in [1u32, 10, 50] {
        let mut merger = Merger::new(true, Some(Port::Name("grpc".into())));
        for s in 0..slices {
            merger.apply(&slice_event("ADDED", s, 0)).expect("added");
        }
        let events: Vec<Vec<u8>> = (1..=if smoke { 10 } else { 200 })
            .map(|g| slice_event("MODIFIED", g % slices, g))
            .collect();
        let rounds = if smoke { 1 } else { 5u32 };
        let n = rounds * events.len() as u32;
        let (mut decode, mut apply, mut resolve) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            for line in &events {
                let t = Instant::now();
                black_box(merger.decode_only(line));
                decode += t.elapsed();
                let t = Instant::now();
                black_box(merger.apply(line).expect("applies"));
                apply += t.elapsed();
                let t = Instant::now();
                black_box(merger.resolve().expect("resolves"));
                resolve += t.elapsed();
            }
        }
        // apply includes its own decode; report the merge share separately.
        let merge_only = apply.saturating_sub(decode);
        println!(
            "{:>7} {:>10} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            slices,
            slices * 100,
            per_event(decode, n),
            per_event(merge_only, n),
            per_event(resolve, n),
            per_event(apply + resolve, n),
        );
    }
}
