//! Idle (BENCHMARKS.md, 6): CPU time and wake-ups of a resolver whose Service does not change, over 60 s,
//! while the server sends only bookmarks.
//!
//! The watcher thread (named `kuberesolver <service>`) is found in /proc/self/task; its CPU
//! time comes from `stat` (utime + stime), its wake-ups from `status`
//! (voluntary_ctxt_switches: each time it blocked and was woken). Baseline from the same run:
//! the number of bookmarks the server delivered, i.e. the wake-ups there must be.
//!
//! Run: `cargo bench --bench idle` (`IDLE_SECS=N`, default 60; `BOOKMARK_SECS=N`, default 10).

mod common;

use std::time::{Duration, Instant};

use common::{process_cpu_seconds, setting, task_usage, threads_named};
use kuberesolver::testkit::{FakeApiServer, Pod};
use kuberesolver::{Config, Resolver, Source};

fn main() {
    common::smoke_notice();
    let secs: u64 = setting("IDLE_SECS", 60, 2);
    let bookmark_secs: u64 = setting("BOOKMARK_SECS", 10, 1);
    println!(
        "idle resolver ({}; {secs} s, a bookmark every {bookmark_secs} s)",
        common::machine()
    );
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_secs(bookmark_secs))
        .start()
        .expect("fake API server");
    let pods: Vec<Pod> = (0..100u32).map(|i| common::pod(i, true)).collect();
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(server.url()))
        .source(Source::Endpoints)
        .spawn()
        .expect("resolver");
    resolver
        .wait_ready(Duration::from_secs(10))
        .expect("first resolution");
    assert!(
        server.wait_for_watches(1, Duration::from_secs(10)),
        "a watch"
    );
    std::thread::sleep(Duration::from_millis(200));
    let tid = *threads_named("kuberesolver")
        .first()
        .expect("the watcher thread is named kuberesolver ...");

    let start = task_usage(tid);
    let start_cpu = process_cpu_seconds();
    let start_status = resolver.status();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let elapsed = t.elapsed().as_secs_f64();
    let end = task_usage(tid);
    let end_cpu = process_cpu_seconds();
    let status = resolver.status();

    let bookmarks = status.counters.bookmarks - start_status.counters.bookmarks;
    let watches = status.counters.watches - start_status.counters.watches;
    let wakeups = end.voluntary - start.voluntary;
    println!("{:<48} {:>12}", "", "value");
    println!("{:<48} {:>12.1}", "window (s)", elapsed);
    println!(
        "{:<48} {:>12}",
        "bookmarks received (baseline: wake-ups needed)", bookmarks
    );
    println!("{:<48} {:>12}", "watches opened in the window", watches);
    println!(
        "{:<48} {:>12}",
        "watcher wake-ups (voluntary switches)", wakeups
    );
    println!(
        "{:<48} {:>12}",
        "watcher preemptions (involuntary switches)",
        end.involuntary - start.involuntary
    );
    println!(
        "{:<48} {:>12.2}",
        "watcher CPU seconds",
        end.cpu_seconds - start.cpu_seconds
    );
    println!(
        "{:<48} {:>12.2}",
        "whole process CPU seconds (fake server too)",
        end_cpu - start_cpu
    );
    println!(
        "{:<48} {:>12.2}",
        "watcher wake-ups per bookmark",
        wakeups as f64 / bookmarks.max(1) as f64
    );
    println!("goal: no busy polling, at most one wake-up per bookmark or timer");
}
