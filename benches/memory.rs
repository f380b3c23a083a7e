//! Memory (BENCHMARKS.md, 5): the resident memory one resolver adds while holding a 5,000-endpoint Service
//! (50 EndpointSlices of 100), and the resident memory after 100,000 watch events (it must
//! not grow).
//!
//! RSS is read from /proc/self/status (VmRSS). The server is the minimal one of
//! `common/server.rs`; its data (the list body, the event lines) is built before the
//! baseline is read, so the difference is the resolver's: its thread, its HTTP agent, the
//! decoded state and the snapshot. Baseline from the same run: the size of the JSON the
//! Service's objects take on the wire.
//!
//! glibc gives each thread that allocates its own malloc arena, whose pages stay resident
//! after the transient buffers of a decode are freed: run with `MALLOC_ARENA_MAX=1` to see
//! the resolver's own memory without that overhead.
//!
//! Run: `cargo bench --bench memory` (`EVENTS=N`, default 100000;
//! `MALLOC_ARENA_MAX=1 cargo bench --bench memory` for one malloc arena).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{chunk, serve};
use common::{list_body, object_of, rss_kib, setting, slice_event};
use kuberesolver::{Config, Resolver, Source};

const SLICES: u32 = 50;
const PER_SLICE: u32 = 100;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    common::smoke_notice();
    let events: usize = setting("EVENTS", 100_000, 500);
    println!("memory of one resolver ({})", common::machine());
    // Everything the server needs, built before the baseline.
    let items: Vec<_> = (0..SLICES)
        .map(|s| object_of(&slice_event("ADDED", s, PER_SLICE, 2)))
        .collect();
    let list = list_body("EndpointSliceList", items, 1000);
    // Two states of each slice; cycling through them changes one slice per event.
    let lines: Vec<Vec<u8>> = (0..SLICES)
        .flat_map(|s| [1, 2].map(|g| chunk(&slice_event("MODIFIED", s, PER_SLICE, g))))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, watches) = crossbeam_channel::unbounded();
    let list_bytes = list.len();
    serve(listener, false, Arc::new(list), tx);
    std::thread::sleep(Duration::from_millis(100));

    let before = rss_kib();
    let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(format!("http://127.0.0.1:{port}")))
        .source(Source::EndpointSlices)
        .spawn()
        .expect("resolver");
    let first = resolver
        .wait_ready(Duration::from_secs(30))
        .expect("first resolution");
    let mut stream = watches
        .recv_timeout(Duration::from_secs(10))
        .expect("the resolver opens a watch");
    std::thread::sleep(Duration::from_millis(200));
    let ready = rss_kib();
    println!(
        "{} endpoints in {SLICES} slices: {:.2} MiB of JSON on the wire (baseline)",
        first.len(),
        list_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "RSS before the resolver {:.2} MiB, with it {:.2} MiB: added {:.2} MiB (goal ≤ 3 MB = 2.86 MiB)",
        mib(before),
        mib(ready),
        mib(ready.saturating_sub(before))
    );

    println!();
    println!(
        "{:>10} {:>10} {:>12} {:>14}",
        "events", "RSS MiB", "Δ vs 10% MiB", "events/s"
    );
    let step = (events / 10).max(1);
    let mut warm = None;
    let started = Instant::now();
    let base_events = resolver.status().counters.events;
    let mut sent = 0usize;
    for i in 0..events {
        let slice = i % SLICES as usize;
        let variant = (i / SLICES as usize) % 2;
        stream
            .write_all(&lines[slice * 2 + variant])
            .expect("write");
        sent += 1;
        if sent % step == 0 {
            stream.flush().expect("flush");
            // Wait until the resolver has consumed everything sent so far.
            let deadline = Instant::now() + Duration::from_secs(60);
            while resolver.status().counters.events - base_events < sent as u64 {
                assert!(Instant::now() < deadline, "the resolver keeps up");
                std::thread::sleep(Duration::from_millis(2));
            }
            let rss = rss_kib();
            let warm_rss = *warm.get_or_insert(rss);
            println!(
                "{sent:>10} {:>10.2} {:>+12.2} {:>14.0}",
                mib(rss),
                mib(rss) - mib(warm_rss),
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let last = rss_kib();
    println!(
        "growth from {step} to {sent} events: {:+.2} MiB (goal: none); snapshot v{}, {} endpoints",
        mib(last) - mib(warm.unwrap_or(last)),
        resolver.snapshot().version(),
        resolver.snapshot().len()
    );
}
