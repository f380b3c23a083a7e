//! Shared by the benches: realistic watch events, statistics, and /proc readers.
//!
//! Every bench prints each figure next to a baseline measured in the same run, because the
//! machine is shared and noisy. Nothing here asserts a timing.
#![allow(dead_code)]

pub mod server;

use std::time::{Duration, Instant};

use kuberesolver::testkit::{endpoint_slice_object, endpoints_object, AddressType, Pod};
use serde_json::{json, Value};

/// The metadata the API server adds to every object, so that decoding skips what a real
/// watch carries: uid, timestamps, labels, annotations and managedFields.
fn add_server_metadata(object: &mut Value, kind: &str, api_version: &str, rv: u64) {
    object["kind"] = kind.into();
    object["apiVersion"] = api_version.into();
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = rv.to_string().into();
    meta["uid"] = "0b8d3c5e-5f55-4c3a-9a55-2d1f1c9e2a10".into();
    meta["creationTimestamp"] = "2024-05-01T10:00:00Z".into();
    if meta.get("labels").is_none() {
        meta["labels"] = json!({"app": "echo", "app.kubernetes.io/part-of": "shop"});
    }
    meta["annotations"] = json!({
        "endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:20:30Z"
    });
    meta["managedFields"] = json!([{
        "manager": if kind == "Endpoints" { "kube-controller-manager" } else { "endpointslice-controller" },
        "operation": "Update",
        "apiVersion": api_version,
        "time": "2024-05-01T10:20:30Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:subsets": {}}
    }]);
}

/// `{"type":KIND,"object":OBJECT}\n`, with `type` first as the API server writes it.
fn line_of(kind: &str, object: Value) -> Vec<u8> {
    let mut line = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
    serde_json::to_writer(&mut line, &object).expect("json");
    line.extend_from_slice(b"}\n");
    line
}

/// Pod `id` of a Service: a node, a zone, a ready flag.
pub fn pod(id: u32, ready: bool) -> Pod {
    Pod::new(
        format!("echo-7d9f8b6c5-{id:05}"),
        [10, 1 + (id >> 16) as u8, (id >> 8) as u8, id as u8],
    )
    .node(format!("node-{:03}", id % 20))
    .zone(if id % 2 == 0 {
        "eu-west-1a"
    } else {
        "eu-west-1b"
    })
    .ready(ready)
}

/// A watch event line (with its `\n`) for a core/v1 Endpoints object of `n` addresses.
/// Each `generation` flips the readiness of one pod, so consecutive events differ.
pub fn endpoints_event(kind: &str, n: u32, generation: u32) -> Vec<u8> {
    let flip = generation % n.max(1);
    let pods: Vec<Pod> = (0..n)
        .map(|i| pod(i, !(i == flip && generation % 2 == 1)))
        .collect();
    let mut object = endpoints_object("prod", "echo", &[("grpc", 8080)], &pods);
    add_server_metadata(&mut object, "Endpoints", "v1", 1000 + u64::from(generation));
    line_of(kind, object)
}

/// A watch event line for EndpointSlice number `slice` of `n` endpoints.
pub fn slice_event(kind: &str, slice: u32, n: u32, generation: u32) -> Vec<u8> {
    let flip = generation % n.max(1);
    let pods: Vec<Pod> = (0..n)
        .map(|i| pod(slice * n + i, !(i == flip && generation % 2 == 1)))
        .collect();
    let mut object = endpoint_slice_object(
        "prod",
        &format!("echo-{slice:05}"),
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &pods,
    );
    add_server_metadata(
        &mut object,
        "EndpointSlice",
        "discovery.k8s.io/v1",
        1000 + u64::from(generation),
    );
    line_of(kind, object)
}

/// A list body of the given items (objects as in events).
pub fn list_body(kind: &str, items: Vec<Value>, rv: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
    .expect("json")
}

/// The `object` of an event line.
pub fn object_of(line: &[u8]) -> Value {
    let mut event: Value = serde_json::from_slice(line).expect("event json");
    event["object"].take()
}

/// Writes `chunk` to a resolver's watch `stream` and waits for the snapshot it makes: the µs
/// from the write to `updates` handing over a snapshot newer than `last` (then updated).
pub fn timed_update(
    stream: &mut impl std::io::Write,
    chunk: &[u8],
    updates: &kuberesolver::Updates,
    last: &mut u64,
) -> f64 {
    let t = Instant::now();
    stream.write_all(chunk).expect("write");
    stream.flush().expect("flush");
    let snapshot = updates
        .recv_timeout(Duration::from_secs(30))
        .expect("a snapshot for each update");
    let micros = t.elapsed().as_secs_f64() * 1e6;
    assert!(snapshot.version() > *last, "a new snapshot");
    *last = snapshot.version();
    micros
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    percentile(samples, 50.0)
}

/// The nearest-rank percentile of `samples` (sorted in place).
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Seconds taken by `f`.
pub fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Nanoseconds per call of `f`, the median of `rounds` rounds of `calls` calls.
pub fn ns_per_call(rounds: usize, calls: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            time(|| {
                for _ in 0..calls {
                    f();
                }
            }) * 1e9
                / calls as f64
        })
        .collect();
    median(&mut samples)
}

/// Whether this is a smoke run: `cargo test --all-targets` runs every bench's `main` (unoptimized
/// and without `--bench`), so the benches then run tiny sizes just to prove they work.
/// `cargo bench` passes `--bench`; pass it yourself when running a bench binary directly.
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// An environment variable as a number, or `default` (`smoke` in a smoke run).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An environment variable as a number, or `full` under `cargo bench` and `smoke` otherwise.
pub fn setting<T: std::str::FromStr>(name: &str, full: T, smoke_value: T) -> T {
    env_or(name, if smoke() { smoke_value } else { full })
}

/// Printed first by every bench in a smoke run.
pub fn smoke_notice() {
    if smoke() {
        println!(
            "(smoke run: tiny sizes, unoptimized if under cargo test; `cargo bench` for figures)"
        );
    }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ----- /proc -----

/// A `Key:   value kB` line of /proc/self/status (or a task's status), in bytes.
pub fn status_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let value = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?;
    value.parse().ok()
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    status_kb("/proc/self/status", "VmRSS").unwrap_or(0)
}

/// This process's resident memory by kind of mapping, in KiB, from /proc/self/smaps: thread
/// stacks (an anonymous read-write mapping right above a guard page, as glibc maps them), the
/// main heap, other anonymous memory (malloc's arenas of the other threads, large
/// allocations) and file-backed pages.
pub fn rss_by_mapping() -> [(&'static str, u64); 4] {
    let mut kinds = [
        ("thread stacks", 0),
        ("[heap]", 0),
        ("other anonymous", 0),
        ("files", 0),
    ];
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return kinds;
    };
    let (mut kind, mut guard_end) = (0, None);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let range = fields
            .first()
            .and_then(|f| f.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            });
        if let (Some((start, end)), Some(perms)) = (range, fields.get(1)) {
            let path = fields.get(5).copied().unwrap_or("");
            let anonymous = path.is_empty();
            kind = if path == "[heap]" {
                1
            } else if anonymous && guard_end == Some(start) && perms.starts_with("rw") {
                0
            } else if anonymous || path.starts_with('[') {
                2
            } else {
                3
            };
            let guard = anonymous && perms.starts_with("---") && end - start <= 64 << 10;
            guard_end = guard.then_some(end);
        } else if fields.first() == Some(&"Rss:") {
            kinds[kind].1 += fields
                .get(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kinds
}

/// The thread ids of this process whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let name =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            if let Ok(tid) = tid.parse() {
                out.push(tid);
            }
        }
    }
    out
}

/// CPU time (user + system) and context switches (voluntary, involuntary) of one thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskUsage {
    pub cpu_seconds: f64,
    pub voluntary: u64,
    pub involuntary: u64,
}

pub fn task_usage(tid: u32) -> TaskUsage {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesized name: state is field 3; utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = 100.0; // USER_HZ on Linux
    let path = format!("/proc/self/task/{tid}/status");
    TaskUsage {
        cpu_seconds: (ticks(14) + ticks(15)) as f64 / hz,
        voluntary: status_kb(&path, "voluntary_ctxt_switches").unwrap_or(0),
        involuntary: status_kb(&path, "nonvoluntary_ctxt_switches").unwrap_or(0),
    }
}

/// CPU seconds (user + system) of the whole process, from /proc/self/stat.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), printed with the figures:
/// the machine is shared, and a figure taken under load is not comparable with a quiet one.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU seconds (user + system) of this process and of its children that have been waited
/// for, from /proc/self/stat.
pub fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17; the name ends at field 2.
    (14..=17)
        .filter_map(|i| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>()
        / 100.0
}

/// CPU seconds the whole machine spent busy (all cores), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// How busy the machine was with other work while a bench ran: the cores that processes
/// other than this one (and its children) kept busy on average. The load average cannot
/// tell, as it counts the bench's own threads.
pub struct OtherLoad {
    start: Instant,
    busy: f64,
    own: f64,
}

impl OtherLoad {
    pub fn start() -> OtherLoad {
        OtherLoad {
            start: Instant::now(),
            busy: machine_busy_seconds(),
            own: own_cpu_seconds(),
        }
    }

    /// Cores busy with other work since `start`, on average.
    pub fn cores(&self) -> f64 {
        let others = (machine_busy_seconds() - self.busy) - (own_cpu_seconds() - self.own);
        (others / self.start.elapsed().as_secs_f64()).max(0.0)
    }
}

/// The threads of this process (entries of /proc/self/task).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |dir| dir.count())
}

/// One line of the machine description, printed at the top of each bench.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
