//! Merge cost per watch event as the Service grows (BENCHMARKS.md, "merge", and issue 12's
//! 100,000 endpoints in 1,000 slices).
//!
//! 1. Through a resolver, on a Service of 1,000 EndpointSlices of 100 endpoints: the time
//!    from spawn to the first snapshot; then events that each change one slice, timed from
//!    our server writing the event to a subscriber holding the new snapshot (p50, p90, max);
//!    and the RSS every tenth of the events. The server is the minimal one of
//!    `common/server.rs` (plain HTTP on loopback), which writes the events the bench hands
//!    it. Baselines from the same run: for the first snapshot, the same list body fetched
//!    over a bare socket from the same server, and parsed as a `serde_json::Value`; for an
//!    event, the same measurement on a Service of one slice (the same event bytes, 1/1000th
//!    of the endpoints): what an event costs when its cost depends only on the slice; for
//!    the RSS, the RSS when the resolver had its first snapshot.
//! 2. Without sockets, each stage of one MODIFIED event (a 100-endpoint slice) as the slice
//!    count grows: decode, merge (apply to the state), resolve (the sorted, de-duplicated
//!    endpoints), publish (compare with the current snapshot, swap it, and a subscriber's
//!    `try_recv`). Baseline: the one-slice row.
//!
//! Every event changes one pod's readiness in its slice, so each one publishes.
//!
//! Run: `cargo bench --bench merge` (`SLICES=1000` slices of 100 in part 1, `EVENTS=200`
//! events, `GAP_US=1000` between events, `REPEATS=5` first snapshots, `ROUNDS=5` rounds of
//! part 2's events for up to 50 slices, one round above).

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{chunk, serve, Stream};
use common::{
    list_body, median, object_of, percentile, rss_kib, setting, slice_event, timed_update,
    OtherLoad,
};
use crossbeam_channel::Receiver;
use kuberesolver::fuzzing::{Merger, Publisher};
use kuberesolver::testkit::Resource;
use kuberesolver::{Config, Port, Resolver, Source};

const PER_SLICE: u32 = 100;

/// The line of event `i` (from 0) of a Service of `slices` slices: it changes slice
/// `i % slices`, making one of its pods not ready, a different pod than that slice's
/// previous event did, so the resolved endpoints always change.
fn event_line(slices: u32, i: u32) -> Vec<u8> {
    let generation = 2 * (i + i / slices) + 1;
    slice_event("MODIFIED", i % slices, PER_SLICE, generation)
}

/// A Service of `slices` slices, every pod ready, and `events` changes of it.
struct Service {
    slices: u32,
    list: Arc<Vec<u8>>,
    /// Each event line as an HTTP chunk.
    chunks: Vec<Vec<u8>>,
}

impl Service {
    fn new(slices: u32, events: u32) -> Service {
        let items = (0..slices)
            .map(|s| object_of(&slice_event("ADDED", s, PER_SLICE, 0)))
            .collect();
        Service {
            slices,
            list: Arc::new(list_body("EndpointSliceList", items, 1000)),
            chunks: (0..events).map(|i| chunk(&event_line(slices, i))).collect(),
        }
    }

    fn endpoints(&self) -> usize {
        (self.slices * PER_SLICE) as usize
    }
}

/// The bench server for `service`: its address and the watch streams it hands over.
fn start_server(service: &Service) -> (SocketAddr, Receiver<Stream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, watches) = crossbeam_channel::unbounded();
    serve(listener, false, service.list.clone(), tx);
    (addr, watches)
}

fn spawn_resolver(addr: SocketAddr) -> Resolver {
    Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(format!("http://{addr}")))
        .source(Source::EndpointSlices)
        .spawn()
        .expect("resolver")
}

/// Seconds from spawn to the first snapshot.
fn first_snapshot(service: &Service, addr: SocketAddr) -> (Resolver, f64) {
    let t = Instant::now();
    let resolver = spawn_resolver(addr);
    let snapshot = resolver
        .wait_ready(Duration::from_secs(120))
        .expect("first snapshot");
    let elapsed = t.elapsed().as_secs_f64();
    assert_eq!(snapshot.len(), service.endpoints());
    (resolver, elapsed)
}

struct Events {
    /// µs from writing each event to a subscriber holding the snapshot it made.
    latencies: Vec<f64>,
    /// RSS KiB before the resolver was spawned.
    rss_before: u64,
    /// (events so far, RSS KiB), the first at the first snapshot.
    rss: Vec<(usize, u64)>,
}

/// One resolver on `service`: every event written to its watch, one at a time, each timed
/// until a subscriber has the new snapshot.
fn events(service: &Service, gap: Duration) -> (Events, f64) {
    let (addr, watches) = start_server(service);
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = rss_kib();
    let (resolver, first) = first_snapshot(service, addr);
    let updates = resolver.updates();
    let mut stream = watches
        .recv_timeout(Duration::from_secs(30))
        .expect("the resolver opens a watch");
    while updates.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(200));
    let mut rss = vec![(0, rss_kib())];
    let step = (service.chunks.len() / 10).max(1);
    let mut latencies = Vec::with_capacity(service.chunks.len());
    let mut last = resolver.snapshot().version();
    for (i, chunk) in service.chunks.iter().enumerate() {
        latencies.push(timed_update(&mut stream, chunk, &updates, &mut last));
        if (i + 1) % step == 0 {
            rss.push((i + 1, rss_kib()));
        }
        std::thread::sleep(gap);
    }
    (
        Events {
            latencies,
            rss_before,
            rss,
        },
        first,
    )
}

/// The floor of a first snapshot: the list fetched over a bare socket (seconds), then
/// parsed as a `serde_json::Value` (seconds).
fn fetch_and_parse(addr: SocketAddr) -> (f64, f64) {
    let t = Instant::now();
    let mut tcp = TcpStream::connect(addr).expect("connect");
    let path = Resource::EndpointSlices.collection_path("prod");
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("headers");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).expect("body");
    let fetch = t.elapsed().as_secs_f64();
    let t = Instant::now();
    black_box(serde_json::from_slice::<serde_json::Value>(&body).expect("json"));
    (fetch, t.elapsed().as_secs_f64())
}

/// `median [min–max]`.
fn spread(samples: &mut [f64], scale: f64) -> String {
    let m = median(samples) * scale;
    format!(
        "{m:.3} [{:.3}–{:.3}]",
        samples[0] * scale,
        samples[samples.len() - 1] * scale
    )
}

fn through_a_resolver() {
    let slices: u32 = setting("SLICES", 1000, 10);
    let n_events: u32 = setting("EVENTS", 200, 10);
    let repeats: usize = setting("REPEATS", 5, 1);
    let gap = Duration::from_micros(setting("GAP_US", 1000, 1000));
    let big = Service::new(slices, n_events);
    let small = Service::new(1, n_events);
    let load_before = common::load_average();
    let others = OtherLoad::start();
    // The RSS series first, while this process has done nothing else.
    let (big_events, first) = events(&big, gap);
    let (small_events, _) = events(&small, gap);

    let (addr, _watches) = start_server(&big);
    let mut firsts = vec![first];
    for _ in 1..repeats {
        firsts.push(first_snapshot(&big, addr).1);
    }
    let (mut fetches, mut parses): (Vec<f64>, Vec<f64>) =
        (0..repeats).map(|_| fetch_and_parse(addr)).unzip();
    println!(
        "{} endpoints in {slices} slices, through a resolver ({}; load average {load_before} \
         before; other work kept {:.2} cores busy meanwhile); list body {:.1} MB, one event \
         {:.1} KiB",
        big.endpoints(),
        common::machine(),
        others.cores(),
        big.list.len() as f64 / 1e6,
        big.chunks.first().map_or(0, Vec::len) as f64 / 1024.0,
    );
    println!();
    println!("first snapshot, s (median [min–max] of {repeats})");
    println!("{:<52} {}", "spawn → wait_ready", spread(&mut firsts, 1.0));
    println!(
        "{:<52} {}",
        "baseline: the list over a bare socket",
        spread(&mut fetches, 1.0)
    );
    println!(
        "{:<52} {}",
        "baseline: the list parsed as serde_json::Value",
        spread(&mut parses, 1.0)
    );
    println!("goal: ≤ 0.5 s");

    println!();
    println!(
        "one slice changes → a subscriber has the new snapshot, µs ({n_events} events, \
         {gap:?} apart)"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "Service", "p50", "p90", "max"
    );
    for (service, events) in [(&big, &big_events), (&small, &small_events)] {
        let mut l = events.latencies.clone();
        let label = if service.slices == 1 {
            format!("baseline: {} endpoints in 1 slice", service.endpoints())
        } else {
            format!(
                "{} endpoints in {} slices",
                service.endpoints(),
                service.slices
            )
        };
        println!(
            "{label:<52} {:>10.0} {:>10.0} {:>10.0}",
            median(&mut l),
            percentile(&mut l, 90.0),
            percentile(&mut l, 100.0)
        );
    }
    println!("goal: p50 ≤ 1 ms (1000 µs) with 100,000 endpoints");

    println!();
    println!(
        "RSS of the process while those events arrive ({} endpoints)",
        big.endpoints()
    );
    let ready = big_events.rss[0].1;
    println!(
        "before the resolver {:.2} MiB, at its first snapshot {:.2} MiB: it added {:.2} MiB",
        big_events.rss_before as f64 / 1024.0,
        ready as f64 / 1024.0,
        ready.saturating_sub(big_events.rss_before) as f64 / 1024.0
    );
    println!("{:>8} {:>10} {:>18}", "events", "RSS MiB", "Δ vs ready MiB");
    for &(n, kib) in &big_events.rss {
        println!(
            "{n:>8} {:>10.2} {:>+18.2}",
            kib as f64 / 1024.0,
            (kib as f64 - ready as f64) / 1024.0
        );
    }
    println!("goal: flat (baseline: the RSS at the first snapshot, 0 events)");
}

fn per_stage() {
    let sizes: Vec<u32> = if common::smoke() {
        vec![1, 10]
    } else {
        vec![1, 10, 50, 1000]
    };
    let n_events: u32 = setting("EVENTS", 200, 10);
    let load_before = common::load_average();
    let others = OtherLoad::start();
    let mut rows = Vec::new();
    rows.push(format!(
        "{:>7} {:>10} {:>10} {:>10} {:>11} {:>11} {:>11} {:>9}",
        "slices",
        "endpoints",
        "decode µs",
        "merge µs",
        "resolve µs",
        "publish µs",
        "total µs",
        "vs 1"
    ));
    let mut base = None;
    for slices in sizes {
        let mut merger = Merger::new(true, Some(Port::Name("grpc".into())));
        for s in 0..slices {
            merger
                .apply(&slice_event("ADDED", s, PER_SLICE, 0))
                .expect("added");
        }
        let publisher = Publisher::new();
        publisher.publish(merger.resolve_endpoints().expect("resolves"));
        let updates = publisher.updates();
        while updates.try_recv().is_ok() {}
        let lines: Vec<Vec<u8>> = (0..n_events).map(|i| event_line(slices, i)).collect();
        let rounds = if slices > 50 {
            1
        } else {
            setting("ROUNDS", 5, 1)
        };
        let (mut decode, mut merge, mut resolve, mut publish) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
        let mut unchanged = 0;
        for _ in 0..rounds {
            for line in &lines {
                let t = Instant::now();
                black_box(merger.decode_only(line));
                let decode_us = us(t);
                let t = Instant::now();
                black_box(merger.apply(line).expect("applies"));
                // apply decodes again: count only what comes after decoding.
                let merge_us = (us(t) - decode_us).max(0.0);
                let t = Instant::now();
                let endpoints = merger.resolve_endpoints().expect("resolves");
                let resolve_us = us(t);
                let t = Instant::now();
                let published = publisher.publish(endpoints);
                let received = updates.try_recv();
                publish.push(us(t));
                if published.is_none() || received.is_err() {
                    unchanged += 1;
                }
                decode.push(decode_us);
                merge.push(merge_us);
                resolve.push(resolve_us);
            }
        }
        let [d, m, r, p] = [&mut decode, &mut merge, &mut resolve, &mut publish].map(|v| median(v));
        let total = d + m + r + p;
        let base = *base.get_or_insert(total);
        rows.push(format!(
            "{slices:>7} {:>10} {d:>10.1} {m:>10.1} {r:>11.1} {p:>11.1} {total:>11.1} {:>8.1}×",
            slices * PER_SLICE,
            total / base
        ));
        if unchanged > 0 {
            rows.push(format!("        ({unchanged} events did not publish)"));
        }
    }
    println!(
        "merge cost per MODIFIED event (100-endpoint slice), by total slice count; no sockets \
         (load average {load_before} before; other work kept {:.2} cores busy meanwhile)",
        others.cores()
    );
    for row in rows {
        println!("{row}");
    }
    println!("medians per stage; baseline: the one-slice row (the same event, the Service is that slice)");
}

fn main() {
    common::smoke_notice();
    through_a_resolver();
    println!();
    per_stage();
}
