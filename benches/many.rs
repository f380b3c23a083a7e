//! Many resolvers in one process (BENCHMARKS.md, 8): N resolvers on N distinct Services, and N
//! resolvers on one Service, against the testkit's fake API server: the resident memory and
//! the threads they add, the API connections, lists and watches the server sees, the time
//! until every one has its first snapshot, and the time to drop them all.
//!
//! Each measurement runs in a child process of its own (this binary with `--child`), so
//! that the heap one scenario leaves behind does not lower the next one's RSS, and each is
//! repeated (`RUNS`): the table gives the median and the range.
//!
//! Baselines from the same run:
//! - "floor": N bare threads, each with one plain socket watching its Service on the same
//!   fake API server (a raw `GET ...?watch=true`, read into a 4 KiB buffer): the thread,
//!   the connection and the server's side of a watch, with nothing of a resolver. Dropping
//!   the floor shuts every socket down, then joins every thread.
//! - "floor, 1 watch": one such thread: what N resolvers of one Service would cost if they
//!   shared one watch.
//!
//! What is counted: RSS from /proc/self/status (VmRSS) after every resolver has its first
//! snapshot and says it is watching, minus RSS before the first spawn (the server and its
//! objects are there already); threads from /proc/self/task (the fake server's connection
//! threads included: one per connection); the watcher threads (named `kuberesolver ...`)
//! still alive right after the drop returned; the server's open connections and the lists
//! and watches in its request log.
//!
//! Run: `cargo bench --bench many` (`N=100,1000` distinct Services, `SAME=50,1000` resolvers
//! of one Service, `RUNS=3` repetitions of each).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{median, rss_kib, setting, thread_count, threads_named, OtherLoad};
use kuberesolver::testkit::{AddressType, FakeApiServer, Pod, Resource};
use kuberesolver::{Config, Resolver, Source};

const NAMESPACE: &str = "many";
const PODS: u8 = 3;
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Bare threads and sockets, one watch per Service.
    Floor,
    /// Resolvers, each on its own Service.
    Distinct,
    /// Resolvers, all on one Service.
    Same,
}

impl Scenario {
    fn arg(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::Distinct => "distinct",
            Scenario::Same => "same",
        }
    }

    fn parse(arg: &str) -> Option<Scenario> {
        [Scenario::Floor, Scenario::Distinct, Scenario::Same]
            .into_iter()
            .find(|s| s.arg() == arg)
    }

    fn label(self, n: usize) -> String {
        match (self, n) {
            (Scenario::Floor, 1) => "floor, 1 watch (shared ideal)".into(),
            (Scenario::Floor, _) => "floor: thread + socket watch".into(),
            (Scenario::Distinct, _) => "resolvers, distinct Services".into(),
            (Scenario::Same, _) => "resolvers, one Service".into(),
        }
    }
}

/// What one child measured.
#[derive(Clone, Copy, Default)]
struct Measured {
    rss_added_kib: f64,
    threads_added: f64,
    connections: f64,
    lists: f64,
    watches: f64,
    ready_s: f64,
    drop_s: f64,
    watchers_left: f64,
}

const FIELDS: [&str; 8] = [
    "rss_added_kib",
    "threads_added",
    "connections",
    "lists",
    "watches",
    "ready_s",
    "drop_s",
    "watchers_left",
];

impl Measured {
    fn values(&self) -> [f64; 8] {
        [
            self.rss_added_kib,
            self.threads_added,
            self.connections,
            self.lists,
            self.watches,
            self.ready_s,
            self.drop_s,
            self.watchers_left,
        ]
    }

    fn from_values(v: [f64; 8]) -> Measured {
        Measured {
            rss_added_kib: v[0],
            threads_added: v[1],
            connections: v[2],
            lists: v[3],
            watches: v[4],
            ready_s: v[5],
            drop_s: v[6],
            watchers_left: v[7],
        }
    }

    fn to_line(self) -> String {
        let pairs: Vec<String> = FIELDS
            .iter()
            .zip(self.values())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("RESULT {}", pairs.join(" "))
    }

    fn from_line(line: &str) -> Option<Measured> {
        let rest = line.strip_prefix("RESULT ")?;
        let mut values = [f64::NAN; 8];
        for pair in rest.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            let i = FIELDS.iter().position(|k| *k == key)?;
            values[i] = value.parse().ok()?;
        }
        values
            .iter()
            .all(|v| !v.is_nan())
            .then(|| Measured::from_values(values))
    }
}

fn service(i: usize) -> String {
    format!("svc-{i}")
}

/// One EndpointSlice of `PODS` ready pods for each of `services` Services.
fn populate(server: &FakeApiServer, services: usize) {
    for i in 0..services {
        let pods: Vec<Pod> = (1..=PODS)
            .map(|k| {
                Pod::new(
                    format!("{}-{k}", service(i)),
                    [10, (i >> 8) as u8, i as u8, k],
                )
            })
            .collect();
        server.set_endpoint_slice(
            NAMESPACE,
            &format!("{}-abcde", service(i)),
            &service(i),
            AddressType::Ipv4,
            &[("grpc", Some(8080))],
            &pods,
        );
    }
}

/// Waits for `done`, polling; panics after `PATIENCE` (a bench that cannot finish says so).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The settled state after everything is ready: RSS, threads, what the server saw.
fn settle_and_count(server: &FakeApiServer, before_rss: u64, before_threads: usize) -> Measured {
    std::thread::sleep(Duration::from_millis(300));
    let requests = server.requests();
    Measured {
        rss_added_kib: rss_kib().saturating_sub(before_rss) as f64,
        threads_added: thread_count().saturating_sub(before_threads) as f64,
        connections: server.open_connections() as f64,
        lists: requests.iter().filter(|r| r.is_list()).count() as f64,
        watches: requests.iter().filter(|r| r.is_watch()).count() as f64,
        ..Measured::default()
    }
}

/// N resolvers on N Services (`Distinct`) or on one (`Same`).
fn resolvers(scenario: Scenario, n: usize) -> Measured {
    let server = FakeApiServer::start().expect("fake API server");
    let services = if scenario == Scenario::Same { 1 } else { n };
    populate(&server, services);
    std::thread::sleep(Duration::from_millis(200));
    let (before_rss, before_threads) = (rss_kib(), thread_count());

    let start = Instant::now();
    let resolvers: Vec<Resolver> = (0..n)
        .map(|i| {
            let svc = service(if scenario == Scenario::Same { 0 } else { i });
            Resolver::builder(format!("kubernetes:///{svc}.{NAMESPACE}:grpc"))
                .config(Config::new(server.url()))
                .source(Source::EndpointSlices)
                .spawn()
                .expect("spawn")
        })
        .collect();
    for r in &resolvers {
        let snapshot = r.wait_ready(PATIENCE).expect("first snapshot");
        assert_eq!(snapshot.len(), usize::from(PODS), "{}", r.target());
    }
    let ready_s = start.elapsed().as_secs_f64();
    wait_for("every resolver watching", || {
        resolvers.iter().all(|r| r.status().watching)
    });
    let mut measured = settle_and_count(&server, before_rss, before_threads);
    measured.ready_s = ready_s;

    let start = Instant::now();
    drop(resolvers);
    measured.drop_s = start.elapsed().as_secs_f64();
    measured.watchers_left = threads_named("kuberesolver").len() as f64;
    measured
}

/// The floor: N threads, each with a socket watching its Service; no resolver.
fn floor(n: usize) -> Measured {
    let server = FakeApiServer::start().expect("fake API server");
    populate(&server, n);
    std::thread::sleep(Duration::from_millis(200));
    let (before_rss, before_threads) = (rss_kib(), thread_count());
    let addr = server.addr();
    let path = Resource::EndpointSlices.collection_path(NAMESPACE);

    let start = Instant::now();
    let (ready_tx, ready) = crossbeam_channel::unbounded::<TcpStream>();
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let request = format!(
                "GET {path}?labelSelector=kubernetes.io%2Fservice-name%3D{}&watch=true\
                 &allowWatchBookmarks=true HTTP/1.1\r\nHost: {addr}\r\n\r\n",
                service(i)
            );
            let ready_tx = ready_tx.clone();
            std::thread::Builder::new()
                .name("floor watch".into())
                .spawn(move || {
                    let mut tcp = TcpStream::connect(addr).expect("connect");
                    tcp.write_all(request.as_bytes()).expect("request");
                    let mut buf = [0u8; 4096];
                    // The headers and the first event: the watch is open.
                    if matches!(tcp.read(&mut buf), Ok(0) | Err(_)) {
                        return;
                    }
                    let _ = ready_tx.send(tcp.try_clone().expect("clone"));
                    while matches!(tcp.read(&mut buf), Ok(k) if k > 0) {}
                })
                .expect("spawn")
        })
        .collect();
    let sockets: Vec<TcpStream> = (0..n)
        .map(|_| ready.recv_timeout(PATIENCE).expect("every watch opens"))
        .collect();
    let ready_s = start.elapsed().as_secs_f64();
    let mut measured = settle_and_count(&server, before_rss, before_threads);
    measured.ready_s = ready_s;

    let start = Instant::now();
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    measured.drop_s = start.elapsed().as_secs_f64();
    measured
}

fn child(args: &[String]) {
    let scenario = args
        .first()
        .and_then(|a| Scenario::parse(a))
        .expect("--child floor|distinct|same N");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).expect("N");
    let measured = match scenario {
        Scenario::Floor => floor(n),
        _ => resolvers(scenario, n),
    };
    println!("{}", measured.to_line());
}

fn run_child(scenario: Scenario, n: usize) -> Measured {
    let exe = std::env::current_exe().expect("this bench's path");
    let output = Command::new(exe)
        .args(["--child", scenario.arg(), &n.to_string()])
        .output()
        .expect("run a child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout.lines().find_map(Measured::from_line);
    match result {
        Some(m) if output.status.success() => m,
        _ => panic!(
            "child {} {n} failed ({}):\n{stdout}\n{}",
            scenario.arg(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn list(name: &str, full: &str, smoke: &str) -> Vec<usize> {
    let text: String = setting(name, full.to_string(), smoke.to_string());
    text.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// `median [min–max]` of the samples, or just the median when they all agree.
fn spread(samples: &[f64], scale: f64, decimals: usize) -> String {
    let mut v: Vec<f64> = samples.iter().map(|x| x * scale).collect();
    let m = median(&mut v);
    let (lo, hi) = (v[0], v[v.len() - 1]);
    if (hi - lo).abs() < 1e-9 {
        format!("{m:.decimals$}")
    } else {
        format!("{m:.decimals$} [{lo:.decimals$}–{hi:.decimals$}]")
    }
}

fn column(runs: &[Measured], field: usize) -> Vec<f64> {
    runs.iter().map(|m| m.values()[field]).collect()
}

fn med(runs: &[Measured], field: usize) -> f64 {
    median(&mut column(runs, field))
}

const KIB_TO_MB: f64 = 1024.0 / 1e6;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    common::smoke_notice();
    let distinct = list("N", "100,1000", "3");
    let same = list("SAME", "50,1000", "3");
    let runs: usize = setting("RUNS", 3, 1);
    let load_before = common::load_average();

    let mut plan: Vec<(Scenario, usize)> = Vec::new();
    let floor_for_same = (!same.is_empty()).then_some((Scenario::Floor, 1));
    let steps = distinct
        .iter()
        .flat_map(|&n| [(Scenario::Floor, n), (Scenario::Distinct, n)])
        .chain(floor_for_same)
        .chain(same.iter().map(|&n| (Scenario::Same, n)));
    for step in steps {
        if !plan.contains(&step) {
            plan.push(step);
        }
    }
    // Runs are interleaved so that a change of load touches every scenario alike.
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); plan.len()];
    let mut others = Vec::new();
    for run in 0..runs {
        for (i, &(scenario, n)) in plan.iter().enumerate() {
            eprintln!("run {}/{runs}: {} × {n}", run + 1, scenario.label(n));
            let load = OtherLoad::start();
            results[i].push(run_child(scenario, n));
            others.push(load.cores());
        }
    }

    println!(
        "many resolvers in one process ({}; load average {load_before} before; other work kept \
         {} cores busy during a run, median [min–max])",
        common::machine(),
        spread(&others, 1.0, 2),
    );
    println!("median [min–max] of {runs} runs, each in a fresh process");
    println!(
        "{:<31} {:>5} {:>22} {:>8} {:>7} {:>6} {:>7} {:>20} {:>20} {:>6}",
        "scenario",
        "N",
        "RSS added MB",
        "threads",
        "conns",
        "lists",
        "watches",
        "all ready s",
        "drop all s",
        "left"
    );
    for (&(scenario, n), runs) in plan.iter().zip(&results) {
        println!(
            "{:<31} {:>5} {:>22} {:>8.0} {:>7.0} {:>6.0} {:>7.0} {:>20} {:>20} {:>6.0}",
            scenario.label(n),
            n,
            spread(&column(runs, 0), KIB_TO_MB, 2),
            med(runs, 1),
            med(runs, 2),
            med(runs, 3),
            med(runs, 4),
            spread(&column(runs, 5), 1.0, 3),
            spread(&column(runs, 6), 1.0, 3),
            med(runs, 7),
        );
    }
    println!(
        "threads: all added, the fake server's connection threads included; left: watcher \
         threads alive right after the drop returned"
    );

    let find = |s: Scenario, n: usize| {
        plan.iter()
            .position(|&p| p == (s, n))
            .map(|i| &results[i][..])
    };
    println!();
    for &n in &distinct {
        let (Some(res), Some(base)) = (find(Scenario::Distinct, n), find(Scenario::Floor, n))
        else {
            continue;
        };
        let own = med(res, 0) - med(base, 0);
        println!(
            "{n} resolvers, distinct Services: RSS added {:.1} MB, floor {:.1} MB: {:.0} KiB \
             per resolver above the floor; drop all {:.3} s, floor {:.3} s",
            med(res, 0) * KIB_TO_MB,
            med(base, 0) * KIB_TO_MB,
            own / n as f64,
            med(res, 6),
            med(base, 6),
        );
    }
    for &n in &same {
        let Some(res) = find(Scenario::Same, n) else {
            continue;
        };
        println!(
            "{n} resolvers, one Service: {:.0} connections, {:.0} lists, {:.0} watches \
             (shared: 1, 1, 1); RSS added {:.1} MB",
            med(res, 2),
            med(res, 3),
            med(res, 4),
            med(res, 0) * KIB_TO_MB,
        );
    }
    println!(
        "goals (issue 12), for 1,000 resolvers on distinct Services: RSS added ≤ 50 MB, \
         dropping them all ≤ 1 s; resolvers of one Service share one watch"
    );
}
