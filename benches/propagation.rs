//! Propagation latency (BENCHMARKS.md, 2): from our server writing a watch event to a subscriber holding the
//! new snapshot, over loopback, plain HTTP and TLS, across many updates: p50, p99, max.
//!
//! The server is a minimal HTTP/1.1 server written here (std `TcpListener`, rustls for TLS
//! with the test certificate of `src/testkit/certs/`): it answers the LIST with a JSON list, then
//! the WATCH with a chunked stream that this bench writes to itself, so the clock starts
//! right before the event's chunk is written. The clock stops when `Updates::recv` returns
//! the snapshot on the bench's thread: the path measured is TCP (and TLS) → ureq's chunked
//! body reader → line splitter → decoder → merge → publish → subscriber channel → wake-up.
//! Events alternate between two states of the object, so each one publishes, and they are
//! spaced 300 µs apart so that the watcher thread is blocked in `read` when each arrives.
//!
//! Baseline ("floor") from the same run: the same bytes written to a plain (or TLS) loopback
//! socket whose reader thread, blocked in `read`, wakes the bench through a channel: the
//! transport and the two wake-ups, without any HTTP, decoding or publishing.
//!
//! Where the time goes: each stage timed alone on the same event bytes (median): split (the
//! line splitter), decode (`decode_event`), merge (apply to the state + resolve), publish
//! (swap the snapshot, notify, a subscriber's `try_recv`). The rest of the end-to-end median
//! is transport, HTTP chunk decoding, and thread wake-ups.
//!
//! Run: `cargo bench --bench propagation` (`UPDATES=N`, default 1000; `GAP_US=N`, default 300).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{accept_stream, chunk, client_config, serve, Stream};
use common::{
    endpoints_event, list_body, median, object_of, percentile, setting, slice_event, timed_update,
};
use crossbeam_channel::{Receiver, Sender};
use kuberesolver::fuzzing::{Merger, Publisher, Splitter};
use kuberesolver::testkit::TEST_CA_PEM;
use kuberesolver::{Config, Port, Resolver, Source};
use rustls::pki_types::ServerName;

struct Case {
    name: &'static str,
    slices: bool,
    /// Two event lines that alternate: each one changes the snapshot.
    events: [Vec<u8>; 2],
    list: Vec<u8>,
}

fn case(name: &'static str, slices: bool, n: u32) -> Case {
    let line = |g| {
        if slices {
            slice_event("MODIFIED", 0, n, g)
        } else {
            endpoints_event("MODIFIED", n, g)
        }
    };
    let events = [line(1), line(2)];
    let item = object_of(&line(2));
    let kind = if slices {
        "EndpointSliceList"
    } else {
        "EndpointsList"
    };
    Case {
        name,
        slices,
        events,
        list: list_body(kind, vec![item], 1000),
    }
}

/// End-to-end latencies in µs through a real resolver.
fn end_to_end(case: &Case, tls: bool, updates: usize, gap: Duration) -> Vec<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, watches) = crossbeam_channel::unbounded();
    serve(listener, tls, Arc::new(case.list.clone()), tx);
    let config = if tls {
        Config::new(format!("https://127.0.0.1:{port}")).ca_pem(TEST_CA_PEM)
    } else {
        Config::new(format!("http://127.0.0.1:{port}"))
    };
    let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(config)
        .source(if case.slices {
            Source::EndpointSlices
        } else {
            Source::Endpoints
        })
        .spawn()
        .expect("resolver");
    let updates_rx = resolver.updates();
    resolver
        .wait_ready(Duration::from_secs(10))
        .expect("first resolution");
    let mut stream = watches
        .recv_timeout(Duration::from_secs(10))
        .expect("the resolver opens a watch");
    while updates_rx.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(20));
    let chunks = [chunk(&case.events[0]), chunk(&case.events[1])];
    let mut latencies = Vec::with_capacity(updates);
    let mut last = resolver.snapshot().version();
    for i in 0..updates {
        latencies.push(timed_update(
            &mut stream,
            &chunks[i % 2],
            &updates_rx,
            &mut last,
        ));
        std::thread::sleep(gap);
    }
    drop(resolver);
    latencies
}

/// The floor: the same chunks over a loopback socket to a reader thread that wakes the
/// bench through a channel.
fn floor(case: &Case, tls: bool, updates: usize, gap: Duration) -> Vec<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let chunks = [chunk(&case.events[0]), chunk(&case.events[1])];
    let sizes = [chunks[0].len(), chunks[1].len()];
    let (done_tx, done): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(1);
    let reader = std::thread::spawn(move || {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut stream: Stream = if tls {
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let conn = rustls::ClientConnection::new(client_config(), name).expect("TLS client");
            Box::new(rustls::StreamOwned::new(conn, tcp))
        } else {
            Box::new(tcp)
        };
        // Drive the handshake before the first measured write.
        stream.write_all(b"x").expect("hello");
        stream.flush().expect("flush");
        let mut buf = vec![0u8; 64 * 1024];
        for i in 0..updates {
            let mut want = sizes[i % 2];
            while want > 0 {
                match stream.read(&mut buf[..want.min(64 * 1024)]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => want -= n,
                }
            }
            let _ = done_tx.send(());
        }
    });
    let (tcp, _) = listener.accept().expect("accept");
    let mut stream = accept_stream(tcp, tls);
    let mut hello = [0u8; 1];
    stream.read_exact(&mut hello).expect("hello");
    let mut latencies = Vec::with_capacity(updates);
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..updates {
        let t = Instant::now();
        stream.write_all(&chunks[i % 2]).expect("write");
        stream.flush().expect("flush");
        done.recv_timeout(Duration::from_secs(5)).expect("read");
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(gap);
    }
    let _ = reader.join();
    latencies
}

/// Median µs of each stage on the same event bytes.
fn stages(case: &Case, rounds: usize) -> [f64; 4] {
    let port = Some(Port::Name("grpc".into()));
    let mut merger = Merger::new(case.slices, port);
    merger.apply(&case.events[1]).expect("applies");
    let publisher = Publisher::new();
    publisher.publish(merger.resolve_endpoints().expect("resolves"));
    let updates = publisher.updates();
    let mut splitter = Splitter::new(16 << 20);
    let (mut split, mut decode, mut merge, mut publish) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
    for i in 0..rounds {
        let line = &case.events[i % 2];
        let t = Instant::now();
        splitter.push(line);
        let n = std::iter::from_fn(|| splitter.next_line().map(|l| l.map(<[u8]>::len))).count();
        split.push(us(t));
        assert_eq!(n, 1);
        let t = Instant::now();
        std::hint::black_box(merger.decode_only(line));
        let decode_us = us(t);
        decode.push(decode_us);
        let t = Instant::now();
        std::hint::black_box(merger.apply(line).expect("applies"));
        let endpoints = merger.resolve_endpoints().expect("resolves");
        // apply decodes again: count only what comes after decoding.
        merge.push((us(t) - decode_us).max(0.0));
        let t = Instant::now();
        let published = publisher.publish(endpoints);
        let received = updates.try_recv();
        publish.push(us(t));
        assert!(published.is_some() && received.is_ok());
    }
    [
        median(&mut split),
        median(&mut decode),
        median(&mut merge),
        median(&mut publish),
    ]
}

fn main() {
    common::smoke_notice();
    let updates: usize = setting("UPDATES", 1000, 10);
    let gap = Duration::from_micros(setting("GAP_US", 300, 300));
    println!(
        "propagation latency, server write → subscriber recv ({}; {updates} updates, {gap:?} apart)",
        common::machine()
    );
    let cases = [
        case("Endpoints, 10 addresses", false, 10),
        case("EndpointSlice, 100 endpoints", true, 100),
        case("Endpoints, 1000 addresses", false, 1000),
    ];
    println!(
        "{:<30} {:<6} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "object", "link", "floor p50", "p50", "p99", "max", "p50/floor"
    );
    let mut medians = Vec::new();
    for case in &cases {
        for tls in [false, true] {
            let mut base = floor(case, tls, updates, gap);
            let mut e2e = end_to_end(case, tls, updates, gap);
            let (b50, p50) = (median(&mut base), median(&mut e2e));
            println!(
                "{:<30} {:<6} {:>9.1}µs {:>7.1}µs {:>7.1}µs {:>7.1}µs {:>8.1}×",
                case.name,
                if tls { "TLS" } else { "plain" },
                b50,
                p50,
                percentile(&mut e2e, 99.0),
                percentile(&mut e2e, 100.0),
                p50 / b50,
            );
            if !tls {
                medians.push(p50);
            }
        }
    }
    println!("goal (plain loopback): p50 ≤ 50 µs, p99 ≤ 500 µs");
    println!();
    println!("where the time goes: each stage alone on the same event bytes (median µs)");
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "object", "split", "decode", "merge", "publish", "sum", "e2e p50", "rest"
    );
    for (case, e2e) in cases.iter().zip(&medians) {
        let [split, decode, merge, publish] = stages(
            case,
            if common::smoke() {
                updates
            } else {
                updates.max(100)
            },
        );
        let sum = split + decode + merge + publish;
        println!(
            "{:<30} {split:>8.1} {decode:>8.1} {merge:>8.1} {publish:>8.1} {sum:>8.1} {e2e:>10.1} {:>8.1}",
            case.name,
            e2e - sum
        );
    }
    println!("rest = transport, HTTP chunk decoding and thread wake-ups (compare the floor above)");
}
