//! `Picker::pick()` and snapshot reads, `addresses()` and `snapshot()` (BENCHMARKS.md, 3 and
//! 4), in ns per call on 1, 2 and 4 threads, while a writer publishes a new snapshot every
//! millisecond.
//!
//! Picks are measured plain; with failure feedback in use (one address of 100 ejected, and
//! the same with `report_success` after each pick, as `connect_with` does); and zone-aware
//! on a Service with zone hints (`prefer_zone`). The writer's snapshots carry zones and hints.
//!
//! Baselines from the same run, under the same writer: for `pick()`, a bare
//! `AtomicUsize::fetch_add` plus an index into an `Arc<[SocketAddr]>` (the floor of any
//! shared round robin); for the reads, cloning and dropping an `Arc<[SocketAddr]>`.
//!
//! ns per call is each thread's wall time divided by its calls (so on a 2-core machine, 4
//! threads include time waiting for a core; the baseline has the same handicap).
//!
//! Run: `cargo bench --bench pick` (`ROUNDS=N`, default 11; `CALLS=N` per thread and round,
//! default 2000000; `WRITER_US=N` publish interval in µs, default 1000, 0 for no writer).

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{median, setting};
use kuberesolver::fuzzing::Publisher;
use kuberesolver::Ejection;

fn addrs(n: u16, port: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], port)))
        .collect()
}

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// `n` addresses spread over three zones, each hinted for its own zone.
fn zoned(n: u16) -> Vec<(SocketAddr, &'static str)> {
    addrs(n, 8080)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, ZONES[i % ZONES.len()]))
        .collect()
}

/// Median over rounds of the mean per-thread ns per call of `f` on `threads` threads.
fn measure<F: Fn() + Sync>(threads: usize, rounds: usize, calls: usize, f: F) -> f64 {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let barrier = Barrier::new(threads);
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        // Warm the thread's picker cache and the code path.
                        for _ in 0..1000 {
                            f();
                        }
                        barrier.wait();
                        let t = Instant::now();
                        for _ in 0..calls {
                            f();
                        }
                        t.elapsed().as_secs_f64() * 1e9 / calls as f64
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        samples.push(per_thread.iter().sum::<f64>() / per_thread.len() as f64);
    }
    median(&mut samples)
}

/// Publishes alternating snapshots to each publisher every `interval` until stopped; counts
/// publishes.
struct Writer {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(publishers: Vec<Arc<Publisher>>, interval: Option<Duration>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicUsize::new(0));
        let thread = interval.map(|interval| {
            let (stop, published) = (stop.clone(), published.clone());
            std::thread::spawn(move || {
                let sets = [zoned(100), zoned(101)];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    for publisher in &publishers {
                        if publisher.publish_zoned(&sets[i % 2]).is_some() {
                            published.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(interval);
                }
            })
        });
        Writer {
            stop,
            published,
            thread,
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.published.load(Ordering::Relaxed)
    }
}

fn main() {
    common::smoke_notice();
    let rounds: usize = setting("ROUNDS", 11, 1);
    let calls: usize = setting("CALLS", 2_000_000, 10_000);
    let writer_us: u64 = setting("WRITER_US", 1000, 1000);
    let interval = (writer_us > 0).then(|| Duration::from_micros(writer_us));
    println!(
        "pick() and snapshot reads ({}; median of {rounds} rounds of {calls} calls per thread)",
        common::machine()
    );
    match interval {
        Some(d) => println!("a writer publishes a new 100-address snapshot every {d:?} throughout"),
        None => println!("no concurrent writer"),
    }

    let publisher = Arc::new(Publisher::new());
    publisher.publish_zoned(&zoned(100));
    let picker = publisher.picker();
    let zone_picker = picker.prefer_zone(ZONES[1]);
    // A second resolver's picker, with one address of 100 ejected for the whole run.
    let ejecting = Arc::new(Publisher::new());
    ejecting.publish_zoned(&zoned(100));
    let feedback = ejecting
        .picker()
        .ejection(Ejection::new().initial(Duration::from_secs(3600)));
    feedback.report_failure(addrs(1, 8080)[0]);
    let cursor = Arc::new(AtomicUsize::new(0));
    let slice: Arc<[SocketAddr]> = Arc::from(addrs(100, 8080));

    let writer = Writer::start(vec![publisher.clone(), ejecting.clone()], interval);
    let started = Instant::now();

    println!();
    println!("3. pick(), ns per call");
    println!(
        "{:>8} {:>18} {:>9} {:>7} {:>12} {:>16} {:>11}",
        "threads",
        "fetch_add + index",
        "pick()",
        "ratio",
        "1 ejected",
        "+ report_success",
        "zone hints"
    );
    let mut worst: f64 = 0.0;
    let mut single_feedback = 0.0;
    for threads in [1, 2, 4] {
        let base = measure(threads, rounds, calls, || {
            let turn = cursor.fetch_add(1, Ordering::Relaxed);
            black_box(slice[turn % slice.len()]);
        });
        let pick = measure(threads, rounds, calls, || {
            black_box(picker.pick());
        });
        let ejected = measure(threads, rounds, calls, || {
            black_box(feedback.pick());
        });
        let reported = measure(threads, rounds, calls, || {
            if let Some(addr) = feedback.pick() {
                feedback.report_success(black_box(addr));
            }
        });
        let zone = measure(threads, rounds, calls, || {
            black_box(zone_picker.pick());
        });
        worst = worst.max(pick / base);
        if threads == 1 {
            single_feedback = ejected.max(reported);
        }
        println!(
            "{threads:>8} {base:>18.2} {pick:>9.2} {:>6.2}× {ejected:>12.2} {reported:>16.2} {zone:>11.2}",
            pick / base
        );
    }
    println!("goal: pick() within 1.50× of the baseline (worst here {worst:.2}×)");
    println!("goal: with feedback in use, ≤ 30 ns on one thread (here {single_feedback:.2} ns)");

    println!();
    println!("4. snapshot reads, ns per call");
    println!(
        "{:>8} {:>22} {:>12} {:>12}",
        "threads", "Arc<[_]> clone+drop", "addresses()", "snapshot()"
    );
    for threads in [1, 2, 4] {
        let base = measure(threads, rounds, calls, || {
            black_box(slice.clone());
        });
        let addresses = measure(threads, rounds, calls, || {
            black_box(publisher.addresses());
        });
        let snapshot = measure(threads, rounds, calls, || {
            black_box(publisher.snapshot());
        });
        println!("{threads:>8} {base:>22.2} {addresses:>12.2} {snapshot:>12.2}");
    }

    let secs = started.elapsed().as_secs_f64();
    let published = writer.stop();
    if interval.is_some() {
        println!();
        println!(
            "the writer published {published} snapshots in {secs:.1} s ({:.0}/s per resolver)",
            published as f64 / secs / 2.0
        );
    }
}
