//! Many resolvers in one process (BENCHMARKS.md, 8): N resolvers on N distinct Services, and N
//! resolvers on one Service, against the testkit's fake API server: the resident memory and
//! the threads they add, the API connections, lists and watches the server sees, the time
//! until every one has its first snapshot, and the time to drop them all.
//!
//! Each measurement runs in a child process of its own (this binary with `--child`), so
//! that the heap one scenario leaves behind does not lower the next one's RSS, and each is
//! repeated (`RUNS`): the table gives the median and the range. The fake API server runs in
//! a process of its own too (this binary with `--server`, driven over its stdin and
//! stdout), so that the RSS and threads counted are the resolvers' alone, not the server's
//! thread per connection; `SERVER=inline` puts it in the measured process instead, as the
//! issue 12 baseline was first measured.
//!
//! Baselines from the same run:
//! - "floor": N bare threads, each with one plain socket watching its Service on the same
//!   fake API server (a raw `GET ...?watch=true`, read into a 4 KiB buffer): the thread and
//!   the connection of a watch, with nothing of a resolver. Dropping the floor shuts every
//!   socket down, then joins every thread.
//! - "floor, 1 watch": one such thread: what N resolvers of one Service cost if they share
//!   one watch.
//!
//! The resolvers use plain HTTP, as the floor does; the `https + token` rows (`TLS`) use the
//! server's test certificate, its CA and a bearer token, as in a cluster.
//!
//! What is counted: RSS from /proc/self/status (VmRSS) after every resolver has its first
//! snapshot and says it is watching, minus RSS before the first spawn; threads from
//! /proc/self/task; the watcher threads (named `kuberesolver ...`) still alive right after
//! the drop returned (a drop no longer waits for them: they end by themselves); the server's
//! open connections and the lists and watches in its request log.
//!
//! Run: `cargo bench --bench many` (`N=100,1000` distinct Services, `SAME=50,1000` resolvers
//! of one Service, `TLS=1000` resolvers on distinct Services over https with a token,
//! `RUNS=3` repetitions of each, `SERVER=process|inline`; `SMAPS=1` also prints, per
//! measurement, its resident memory by kind of mapping: thread stacks, heap, files).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{median, rss_by_mapping, rss_kib, setting, thread_count, threads_named, OtherLoad};
use kuberesolver::testkit::{AddressType, FakeApiServer, Pod, Resource, TlsIdentity, TEST_CA_PEM};
use kuberesolver::{Config, Resolver, Source};

const NAMESPACE: &str = "many";
const PODS: u8 = 3;
const PATIENCE: Duration = Duration::from_secs(120);
const TOKEN: &str = "many-bench-token";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Bare threads and sockets, one watch per Service.
    Floor,
    /// Resolvers, each on its own Service.
    Distinct,
    /// Resolvers, all on one Service.
    Same,
    /// Resolvers, each on its own Service, over https with a token.
    DistinctTls,
}

impl Scenario {
    fn arg(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::Distinct => "distinct",
            Scenario::Same => "same",
            Scenario::DistinctTls => "distinct-tls",
        }
    }

    fn parse(arg: &str) -> Option<Scenario> {
        [
            Scenario::Floor,
            Scenario::Distinct,
            Scenario::Same,
            Scenario::DistinctTls,
        ]
        .into_iter()
        .find(|s| s.arg() == arg)
    }

    fn label(self, n: usize) -> String {
        match (self, n) {
            (Scenario::Floor, 1) => "floor, 1 watch (shared ideal)".into(),
            (Scenario::Floor, _) => "floor: thread + socket watch".into(),
            (Scenario::Distinct, _) => "resolvers, distinct Services".into(),
            (Scenario::Same, _) => "resolvers, one Service".into(),
            (Scenario::DistinctTls, _) => "resolvers, distinct, https+token".into(),
        }
    }

    fn tls(self) -> bool {
        self == Scenario::DistinctTls
    }
}

/// The fake API server of a measurement: in a process of its own (the default), or in the
/// measured process (`SERVER=inline`).
enum Api {
    Inline(FakeApiServer),
    Process {
        child: Child,
        commands: ChildStdin,
        answers: BufReader<ChildStdout>,
        url: String,
    },
}

impl Api {
    fn start(services: usize, tls: bool) -> Api {
        if std::env::var("SERVER").is_ok_and(|v| v == "inline") {
            return Api::Inline(start_server(services, tls));
        }
        let exe = std::env::current_exe().expect("this bench's path");
        let mut child = Command::new(exe)
            .args([
                "--server",
                &services.to_string(),
                if tls { "tls" } else { "plain" },
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server process");
        let commands = child.stdin.take().expect("stdin");
        let mut answers = BufReader::new(child.stdout.take().expect("stdout"));
        let url = read_answer(&mut answers, "URL ");
        Api::Process {
            child,
            commands,
            answers,
            url,
        }
    }

    fn url(&self) -> String {
        match self {
            Api::Inline(server) => server.url(),
            Api::Process { url, .. } => url.clone(),
        }
    }

    fn addr(&self) -> SocketAddr {
        let url = self.url();
        let authority = url.split("://").nth(1).expect("a URL");
        authority.parse().expect("host:port")
    }

    /// (open connections, lists, watches) the server has seen.
    fn counts(&mut self) -> (usize, usize, usize) {
        match self {
            Api::Inline(server) => server_counts(server),
            Api::Process {
                commands, answers, ..
            } => {
                writeln!(commands, "counts").expect("ask the server");
                commands.flush().expect("flush");
                let answer = read_answer(answers, "COUNTS ");
                let n: Vec<usize> = answer
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                (n[0], n[1], n[2])
            }
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Api::Process { child, .. } = self {
            // The server process this measurement started; nothing else is killed.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_answer(answers: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = answers.read_line(&mut line).expect("the server answers");
        assert!(n > 0, "the server process ended");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

fn start_server(services: usize, tls: bool) -> FakeApiServer {
    let server = if tls {
        FakeApiServer::builder()
            .tls(TlsIdentity::test_server())
            .token(Some(TOKEN.into()))
            .start()
    } else {
        FakeApiServer::start()
    }
    .expect("fake API server");
    populate(&server, services);
    server
}

fn server_counts(server: &FakeApiServer) -> (usize, usize, usize) {
    let requests = server.requests();
    (
        server.open_connections(),
        requests.iter().filter(|r| r.is_list()).count(),
        requests.iter().filter(|r| r.is_watch()).count(),
    )
}

/// `--server N plain|tls`: serve N Services until stdin ends, answering `counts`.
fn server_process(args: &[String]) {
    let services: usize = args.first().and_then(|a| a.parse().ok()).expect("N");
    let tls = args.get(1).is_some_and(|a| a == "tls");
    let server = start_server(services, tls);
    let mut out = std::io::stdout().lock();
    writeln!(out, "URL {}", server.url()).expect("stdout");
    out.flush().expect("flush");
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let (connections, lists, watches) = server_counts(&server);
        writeln!(out, "COUNTS {connections} {lists} {watches}").expect("stdout");
        out.flush().expect("flush");
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
fn settle_and_count(server: &mut Api, before_rss: u64, before_threads: usize) -> Measured {
    std::thread::sleep(Duration::from_millis(300));
    if std::env::var_os("SMAPS").is_some() {
        let kinds: Vec<String> = rss_by_mapping()
            .iter()
            .map(|(kind, kib)| format!("{kind} {:.1} MB", *kib as f64 * 1.024 / 1000.0))
            .collect();
        eprintln!("  resident by mapping: {}", kinds.join(", "));
    }
    let (connections, lists, watches) = server.counts();
    Measured {
        rss_added_kib: rss_kib().saturating_sub(before_rss) as f64,
        threads_added: thread_count().saturating_sub(before_threads) as f64,
        connections: connections as f64,
        lists: lists as f64,
        watches: watches as f64,
        ..Measured::default()
    }
}

/// N resolvers on N Services (`Distinct`, `DistinctTls`) or on one (`Same`).
fn resolvers(scenario: Scenario, n: usize) -> Measured {
    let services = if scenario == Scenario::Same { 1 } else { n };
    let mut server = Api::start(services, scenario.tls());
    std::thread::sleep(Duration::from_millis(200));
    let config = if scenario.tls() {
        Config::new(server.url()).ca_pem(TEST_CA_PEM).token(TOKEN)
    } else {
        Config::new(server.url())
    };
    let (before_rss, before_threads) = (rss_kib(), thread_count());

    let start = Instant::now();
    let resolvers: Vec<Resolver> = (0..n)
        .map(|i| {
            let svc = service(if scenario == Scenario::Same { 0 } else { i });
            Resolver::builder(format!("kubernetes:///{svc}.{NAMESPACE}:grpc"))
                .config(config.clone())
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
    let mut measured = settle_and_count(&mut server, before_rss, before_threads);
    measured.ready_s = ready_s;

    let start = Instant::now();
    drop(resolvers);
    measured.drop_s = start.elapsed().as_secs_f64();
    measured.watchers_left = threads_named("kuberesolver").len() as f64;
    measured
}

/// The floor: N threads, each with a socket watching its Service; no resolver.
fn floor(n: usize) -> Measured {
    let mut server = Api::start(n, false);
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
    let mut measured = settle_and_count(&mut server, before_rss, before_threads);
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
        .expect("--child floor|distinct|same|distinct-tls N");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).expect("N");
    let measured = match scenario {
        Scenario::Floor => floor(n),
        _ => resolvers(scenario, n),
    };
    println!("{}", measured.to_line());
}

fn run_child(scenario: Scenario, n: usize) -> Measured {
    let exe = std::env::current_exe().expect("this bench's path");
    let mut command = Command::new(exe);
    command.args(["--child", scenario.arg(), &n.to_string()]);
    if std::env::var_os("SMAPS").is_some() {
        command.stderr(Stdio::inherit());
    }
    let output = command.output().expect("run a child");
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
    if let Some(i) = args.iter().position(|a| a == "--server") {
        server_process(&args[i + 1..]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    common::smoke_notice();
    let distinct = list("N", "100,1000", "3");
    let same = list("SAME", "50,1000", "3");
    let tls = list("TLS", "1000", "3");
    let runs: usize = setting("RUNS", 3, 1);
    let load_before = common::load_average();

    let mut plan: Vec<(Scenario, usize)> = Vec::new();
    let floor_for_same = (!same.is_empty()).then_some((Scenario::Floor, 1));
    let steps = distinct
        .iter()
        .flat_map(|&n| [(Scenario::Floor, n), (Scenario::Distinct, n)])
        .chain(floor_for_same)
        .chain(same.iter().map(|&n| (Scenario::Same, n)))
        .chain(tls.iter().map(|&n| (Scenario::DistinctTls, n)));
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
    let inline = std::env::var("SERVER").is_ok_and(|v| v == "inline");
    println!(
        "threads: all added{}; left: watcher threads alive right after the drop returned \
         (they end by themselves)",
        if inline {
            ", the fake server's connection threads included (SERVER=inline)"
        } else {
            " (the fake server runs in a process of its own)"
        }
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
    for &n in &tls {
        let (Some(res), Some(plain)) =
            (find(Scenario::DistinctTls, n), find(Scenario::Distinct, n))
        else {
            continue;
        };
        println!(
            "{n} resolvers, distinct Services, https + token: RSS added {:.1} MB ({:.0} KiB \
             each), plain HTTP {:.1} MB; drop all {:.3} s",
            med(res, 0) * KIB_TO_MB,
            med(res, 0) / n as f64,
            med(plain, 0) * KIB_TO_MB,
            med(res, 6),
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
