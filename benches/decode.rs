//! Decode + merge throughput (BENCHMARKS.md, 1) of a watch stream of MODIFIED events, against
//! `serde_json::from_slice::<serde_json::Value>` over the same lines in the same run.
//!
//! Streams: events for one core/v1 Endpoints object of 1000 addresses, and for one
//! EndpointSlice of 100 endpoints; each event flips one pod's readiness, so every event is a
//! real change. "decode" is `decode_event` (typed models, normalization); "decode + merge"
//! also applies the object to the state and resolves the sorted, de-duplicated endpoints,
//! i.e. everything the watcher does per event before publishing.
//!
//! Run: `cargo bench --bench decode` (`ROUNDS=N` to change the number of rounds, default 15;
//! `STREAM=Slice` or `STREAM=Endpoints` for one stream only).
//! Prints a table; the ratio column is against the Value baseline of the same round.

mod common;

use std::hint::black_box;

use common::{endpoints_event, median, setting, slice_event, time};
use kuberesolver::fuzzing::Merger;
use kuberesolver::Port;

struct Stream {
    name: &'static str,
    slices: bool,
    lines: Vec<Vec<u8>>,
}

impl Stream {
    fn bytes(&self) -> usize {
        self.lines.iter().map(Vec::len).sum()
    }
}

fn main() {
    common::smoke_notice();
    let rounds: usize = setting("ROUNDS", 15, 1);
    let (big, small): (u32, u32) = if common::smoke() { (2, 4) } else { (40, 400) };
    println!(
        "decode + merge throughput ({}; median of {rounds} rounds)",
        common::machine()
    );
    let streams = [
        Stream {
            name: "Endpoints, 1000 addresses",
            slices: false,
            lines: (1..=big)
                .map(|g| endpoints_event("MODIFIED", 1000, g))
                .collect(),
        },
        Stream {
            name: "EndpointSlice, 100 endpoints",
            slices: true,
            lines: (1..=small)
                .map(|g| slice_event("MODIFIED", 0, 100, g))
                .collect(),
        },
    ];
    println!(
        "{:<30} {:<22} {:>9} {:>10} {:>12} {:>9}",
        "stream", "what", "MB/s", "events/s", "µs/event", "vs base"
    );
    let only = std::env::var("STREAM").unwrap_or_default();
    for stream in streams.iter().filter(|s| s.name.contains(only.as_str())) {
        let bytes = stream.bytes() as f64;
        let events = stream.lines.len() as f64;
        let port = Some(Port::Name("grpc".into()));
        let mut merger = Merger::new(stream.slices, port);
        // The object exists before the MODIFIED events arrive.
        merger.apply(&stream.lines[0]).expect("applies");
        merger.resolve().expect("resolves");
        let (mut base, mut decode, mut merge) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            base.push(time(|| {
                for line in &stream.lines {
                    let value: serde_json::Value =
                        serde_json::from_slice(line).expect("valid json");
                    black_box(value);
                }
            }));
            decode.push(time(|| {
                for line in &stream.lines {
                    black_box(merger.decode_only(line));
                }
            }));
            merge.push(time(|| {
                for line in &stream.lines {
                    black_box(merger.apply(line).expect("applies"));
                    black_box(merger.resolve().expect("resolves"));
                }
            }));
        }
        let base = median(&mut base);
        for (what, secs) in [
            ("serde_json::Value (base)", base),
            ("decode", median(&mut decode)),
            ("decode + merge", median(&mut merge)),
        ] {
            println!(
                "{:<30} {:<22} {:>9.0} {:>10.0} {:>12.1} {:>8.2}×",
                stream.name,
                what,
                bytes / secs / 1e6,
                events / secs,
                secs / events * 1e6,
                base / secs,
            );
        }
        println!(
            "{:<30} ({} events, {:.1} KiB per event)",
            "",
            stream.lines.len(),
            bytes / events / 1024.0
        );
    }
    println!("goal: decode + merge ≥ 2.00× the Value baseline");
}
