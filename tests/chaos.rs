//! The chaos soak: a seeded random schedule of endpoint changes interleaved with every fault
//! the fake API server has, against one resolver, on core/v1 Endpoints and on EndpointSlices.
//!
//! Checked along the way and at the end:
//! - after each quiet period the published snapshot equals the truth (addresses and details)
//!   within [`CONVERGENCE_BOUND`];
//! - every snapshot published is recorded (through the resolver's test-only publish observer,
//!   so none replaced within a millisecond is missed): versions run 1, 2, 3, ... with none
//!   missing, consecutive ones differ, and there are no more publishes than changes of the
//!   truth;
//! - each published snapshot equals a truth the test set, in the order the truths were set,
//!   and never one set after it was published: nothing is published because of an error;
//! - every empty snapshot was published while the truth was empty (no spurious empties);
//! - what the subscriber and polling saw is what was published under that version;
//! - exactly one `kuberesolver` thread while the resolver lives, none after the drop;
//! - `status()` counters account for every request the server saw and every fault that broke
//!   a watch or a request (see [`Soak::check_counters`]).
//!
//! The schedule: steps of endpoint changes (scale up and down, readiness flips, terminating
//! pods, pods replaced on the same IP, node moves, port lists, slices created, deleted, moved
//! between, copied, emptied to placeholders, IPv6 slices, objects the resolver must ignore) and
//! faults dealt from a shuffled deck of every kind ([`Kind`]: clean end, reset, cut mid-event,
//! a change cut in flight, a clean end in the middle of a change, stall, garbage line, a line
//! over the event size cap, unknown event, ERROR 500 event, 410 ERROR event, compaction
//! (behind a stalled watch, or before a reset), 401 with token rotation, 403 then allowed,
//! 429 plain text with Retry-After, 500, 503, connection closed without an answer, hung
//! request, 410 status, a fault on the next watch, and a server restart on the same port with
//! connections refused meanwhile), with chunking changes and quiet periods in between. The
//! Service is made empty only in ways that keep "no spurious empty" decidable (see
//! [`Soak::empty_step`] and [`Soak::restart`]). Not in it: TLS refusals, `kubectl proxy`, many
//! resolvers, endless error bodies (their own tests cover them).
//!
//! A soak deals whole decks until at least `KUBERESOLVER_SOAK_FAULTS` faults (default
//! [`DEFAULT_FAULTS`]) took effect on the resolver, counted from the server's request log (a
//! fault injected into no watch, or a failure queued but never consumed, does not count); a
//! schedule whose faults mostly miss fails. `KUBERESOLVER_SOAK_SEED` picks the schedule
//! (default [`DEFAULT_SEED`]). The seed fixes the sequence of steps, not thread timing: a
//! replay runs the same steps with a different interleaving. Each soak prints its counts per
//! fault kind (`--nocapture` shows them) and saves them to `chaos-<source>.txt` in Cargo's
//! target tmp folder (`target/tmp/`), where `.ci/run` prints them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use kuberesolver::fuzzing::Rng;
use kuberesolver::testkit::{
    AddressType, ChunkMode, Failure, FakeApiServer, Fault, Pod, RequestRecord, Resource,
    TlsIdentity, Verb, TEST_CA_PEM,
};
use kuberesolver::{Backoff, Config, Resolver, Snapshot, Source, Status};

/// The schedule when `KUBERESOLVER_SOAK_SEED` is not set.
const DEFAULT_SEED: u64 = 20_251_125;
/// Faults per soak that must reach the resolver (counted from the server's request log) when
/// `KUBERESOLVER_SOAK_FAULTS` is not set: the two soaks of one `cargo test` make 1,000.
const DEFAULT_FAULTS: u64 = 500;
/// The resolver's event line cap in the soak, so that an over-long line is cheap to send.
const MAX_EVENT: usize = 64 * 1024;
/// How long a quiet period may take to converge. The resolver's own bounds are far lower (a
/// backoff cap of 200 ms, a read timeout of 500 ms, a response timeout of 1 s); this leaves
/// room for a slow machine.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(10);
/// Any other wait.
const PATIENCE: Duration = Duration::from_secs(10);

const NS: &str = "prod";
const SERVICE: &str = "echo";
const TARGET: &str = "kubernetes:///echo.prod:grpc";
const PORT: u16 = 8080;

/// The two soaks run one after the other: each counts the process's `kuberesolver` threads,
/// and each gets the machine to itself.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn chaos_soak_on_endpoints() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let settings = Settings::from_env("endpoints", 1);
    Soak::start(
        settings,
        Source::Endpoints,
        Wire::Http,
        EndpointsWorld::default(),
    )
    .run();
}

#[test]
fn chaos_soak_on_endpoint_slices() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let settings = Settings::from_env("endpoint slices", 2);
    Soak::start(
        settings,
        Source::EndpointSlices,
        Wire::Https,
        SlicesWorld::default(),
    )
    .run();
}

// ----- settings and randomness -----

/// Plain HTTP (the `kubectl proxy` shape) or TLS with the test CA (the in-cluster shape).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Http,
    Https,
}

struct Settings {
    label: &'static str,
    seed: u64,
    /// Deal whole decks until at least this many faults reached the resolver.
    faults: u64,
    /// Mixed into the seed so that the two soaks do not run the same schedule.
    stream: u64,
    /// `KUBERESOLVER_SOAK_VERBOSE=1`: print every step as it happens.
    verbose: bool,
}

impl Settings {
    fn from_env(label: &'static str, stream: u64) -> Settings {
        Settings {
            label,
            seed: env_u64("KUBERESOLVER_SOAK_SEED").unwrap_or(DEFAULT_SEED),
            faults: env_u64("KUBERESOLVER_SOAK_FAULTS").unwrap_or(DEFAULT_FAULTS),
            stream,
            verbose: env_u64("KUBERESOLVER_SOAK_VERBOSE").is_some_and(|v| v > 0),
        }
    }

    fn replay(&self) -> String {
        format!(
            "KUBERESOLVER_SOAK_SEED={} KUBERESOLVER_SOAK_FAULTS={}",
            self.seed, self.faults
        )
    }
}

/// A decimal (or `0x` hexadecimal) number from the environment; a value that does not parse
/// fails the test rather than silently running the default.
fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let text = raw.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(n) => Some(n),
        Err(e) => panic!("{name}={raw:?} is not a number: {e}"),
    }
}

/// The crate's xorshift64*, seeded through splitmix64 so that neighbouring seeds (and streams)
/// differ at once.
fn seeded(seed: u64, stream: u64) -> Rng {
    let mut z =
        (seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rng::new(z ^ (z >> 31))
}

/// Uniform in `lo..=hi` milliseconds.
fn millis(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.next_u64() % (hi - lo + 1))
}

// ----- what the test compares -----

/// One published endpoint as the test sees it: address, whether the snapshot uses it (else
/// it is only in its terminating ones), pod, node, zone, hostname, and the conditions ready,
/// serving, terminating.
type Ep = (
    SocketAddr,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    (bool, bool, bool),
);

/// A whole snapshot (or truth): its endpoints, used or terminating, sorted by address.
type View = Vec<Ep>;

/// Whether a view has no endpoint to use: an empty snapshot.
fn void(view: &View) -> bool {
    !view.iter().any(|e| e.1)
}

fn view_of(snapshot: &Snapshot) -> View {
    let used = snapshot.endpoints().iter().map(|e| (e, true));
    let terminating = snapshot.terminating().iter().map(|e| (e, false));
    let mut view: View = used
        .chain(terminating)
        .map(|(e, used)| {
            let c = e.conditions();
            (
                e.addr(),
                used,
                e.pod().map(str::to_owned),
                e.node().map(str::to_owned),
                e.zone().map(str::to_owned),
                e.hostname().map(str::to_owned),
                (c.ready, c.serving, c.terminating),
            )
        })
        .collect();
    // Used ones first at each address, and each address once (a terminating endpoint used
    // for want of a ready one is in both lists).
    view.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    view.dedup_by(|a, b| a.0 == b.0);
    view
}

/// `[addr pod@node, ...]`, for failure messages.
fn show(view: &View) -> String {
    let items: Vec<String> = view
        .iter()
        .map(|(addr, used, pod, node, ..)| {
            format!(
                "{addr} {}@{}{}",
                pod.as_deref().unwrap_or("-"),
                node.as_deref().unwrap_or("-"),
                if *used { "" } else { " (terminating)" }
            )
        })
        .collect();
    let used = view.iter().filter(|e| e.1).count();
    format!("[{}] ({used} used)", items.join(", "))
}

/// One state of the Service the test set on the server.
struct Truth {
    /// When it was recorded: just before the server applied it, so a snapshot of it is
    /// always published later.
    wall: SystemTime,
    view: View,
    step: usize,
}

/// Every truth in the order it was set.
#[derive(Default)]
struct History {
    truths: Vec<Truth>,
}

impl History {
    fn record(&mut self, step: usize, view: View) {
        self.truths.push(Truth {
            wall: SystemTime::now(),
            view,
            step,
        });
    }

    fn current(&self) -> &View {
        &self.truths.last().expect("a first truth").view
    }

    /// The truth in force at `wall`.
    fn at(&self, wall: SystemTime) -> Option<&Truth> {
        let after = self.truths.partition_point(|t| t.wall <= wall);
        after.checked_sub(1).map(|i| &self.truths[i])
    }
}

/// Applies changes to the server, recording each resulting truth first.
struct Writer<'a> {
    server: &'a FakeApiServer,
    history: &'a mut History,
    step: usize,
}

impl Writer<'_> {
    fn endpoints(&mut self, view: View, ports: &[(&str, u16)], pods: &[Pod]) {
        self.history.record(self.step, view);
        self.server.set_endpoints(NS, SERVICE, ports, pods);
    }

    fn slice(
        &mut self,
        view: View,
        name: &str,
        address_type: AddressType,
        ports: &[(&str, Option<u16>)],
        pods: &[Pod],
    ) {
        self.history.record(self.step, view);
        self.server
            .set_endpoint_slice(NS, name, SERVICE, address_type, ports, pods);
    }

    fn delete(&mut self, view: View, resource: Resource, name: &str) {
        self.history.record(self.step, view);
        self.server.delete(resource, NS, name);
    }
}

// ----- the model of the Service -----

/// A pod: its identity and placement never change (a replacement is a new name).
#[derive(Clone, Debug)]
struct PodSpec {
    name: String,
    ip: IpAddr,
    node: String,
    zone: String,
    hostname: Option<String>,
}

/// A pod as one object lists it.
#[derive(Clone, Debug)]
struct Member {
    pod: PodSpec,
    ready: bool,
    terminating: bool,
}

/// Pod `id`: a fresh address per id, never reused (IPv4 10.`base`.x.y or IPv6 fd00::…).
fn pod_spec(id: u32, base: u8, v6: bool) -> PodSpec {
    let ip = if v6 {
        IpAddr::from([
            0xfd00,
            0,
            0,
            0,
            0,
            u16::from(base),
            (id >> 16) as u16,
            id as u16,
        ])
    } else {
        IpAddr::from([10, base, (id >> 8) as u8, id as u8])
    };
    PodSpec {
        name: format!("echo-{id}"),
        ip,
        node: format!("node-{}", id % 5),
        zone: ["zone-a", "zone-b", "zone-c"][id as usize % 3].to_string(),
        hostname: (id % 4 == 0).then(|| format!("echo-{id}")),
    }
}

impl Member {
    fn new(pod: PodSpec, ready: bool) -> Member {
        Member {
            pod,
            ready,
            terminating: false,
        }
    }

    /// Whether it is ready (a terminating pod never is).
    fn serves(&self) -> bool {
        self.ready && !self.terminating
    }

    /// Whether a snapshot lists it: ready, or terminating (EndpointSlices only).
    fn listed(&self) -> bool {
        self.serves() || self.terminating
    }

    fn to_pod(&self) -> Pod {
        let p = &self.pod;
        let pod = Pod::new(p.name.clone(), p.ip)
            .node(p.node.clone())
            .zone(p.zone.clone())
            .ready(self.ready)
            .terminating(self.terminating);
        match &p.hostname {
            Some(h) => pod.hostname(h.clone()),
            None => pod,
        }
    }

    /// How a snapshot shows it, given whether any endpoint is ready (then the ready ones
    /// are used, else those serving while terminating); zones exist on EndpointSlices only.
    /// A terminating pod stays serving while it is ready, as the testkit writes it.
    fn ep(&self, zones: bool, any_ready: bool) -> Ep {
        let p = &self.pod;
        let used = if any_ready {
            self.serves()
        } else {
            self.terminating && self.ready
        };
        (
            SocketAddr::new(p.ip, PORT),
            used,
            Some(p.name.clone()),
            Some(p.node.clone()),
            zones.then(|| p.zone.clone()),
            p.hostname.clone(),
            (self.serves(), self.ready, self.terminating),
        )
    }
}

/// The Service as the test wants it, on one source.
trait World {
    /// What the resolver must publish now.
    fn view(&self) -> View;
    /// The objects before the resolver starts.
    fn init(&mut self, rng: &mut Rng, out: &mut Writer<'_>);
    /// A random change that keeps the Service non-empty, or brings it back when it is empty.
    fn change(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String;
    /// Add a pod with an address no earlier truth had: converging to it proves the resolver
    /// has caught up with every earlier truth.
    fn fresh(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String;
    /// Empty the Service. Once empty, it stays empty until the last write of this call.
    fn empty(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String;
    /// Change objects the resolver must not publish anything for.
    fn noise(&mut self, rng: &mut Rng, server: &FakeApiServer) -> String;
}

/// core/v1: one Endpoints object `echo`.
#[derive(Clone, Default)]
struct EndpointsWorld {
    exists: bool,
    members: Vec<Member>,
    metrics_port: bool,
    ids: u32,
}

impl EndpointsWorld {
    fn new_member(&mut self, ready: bool) -> Member {
        self.ids += 1;
        Member::new(pod_spec(self.ids, 0, false), ready)
    }

    fn write(&self, out: &mut Writer<'_>) {
        if !self.exists {
            out.delete(self.view(), Resource::Endpoints, SERVICE);
            return;
        }
        let ports: &[(&str, u16)] = if self.metrics_port {
            &[("grpc", PORT), ("metrics", 9090)]
        } else {
            &[("grpc", PORT)]
        };
        let pods: Vec<Pod> = self.members.iter().map(Member::to_pod).collect();
        out.endpoints(self.view(), ports, &pods);
    }

    fn recreate(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        let what = if self.exists {
            "pods come back"
        } else {
            self.exists = true;
            self.members.clear();
            "the Endpoints object is recreated"
        };
        self.members.retain(|m| !m.terminating);
        let mut woke = 0;
        for m in &mut self.members {
            if !m.ready && rng.chance(50) {
                m.ready = true;
                woke += 1;
            }
        }
        let mut added = rng.range(0, 3);
        for _ in 0..added {
            let m = self.new_member(rng.chance(80));
            self.members.push(m);
        }
        if void(&self.view()) {
            let m = self.new_member(true);
            self.members.push(m);
            added += 1;
        }
        self.write(out);
        format!("{what}: {woke} ready again, {added} new")
    }
}

impl World for EndpointsWorld {
    fn view(&self) -> View {
        if !self.exists {
            return Vec::new();
        }
        // The Endpoints controller leaves terminating pods out, and a resolver unready ones.
        let mut view: View = self
            .members
            .iter()
            .filter(|m| m.serves())
            .map(|m| m.ep(false, true))
            .collect();
        view.sort();
        view
    }

    fn init(&mut self, rng: &mut Rng, out: &mut Writer<'_>) {
        self.exists = true;
        for _ in 0..rng.range(2, 5) {
            let m = self.new_member(true);
            self.members.push(m);
        }
        self.write(out);
    }

    fn change(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        if void(&self.view()) {
            return self.recreate(rng, out);
        }
        let before = self.clone();
        let n = self.members.len();
        let what = match rng.below(7) {
            0 => {
                let k = rng.range(1, 4);
                for _ in 0..k {
                    let m = self.new_member(rng.chance(85));
                    self.members.push(m);
                }
                format!("scale up by {k}")
            }
            1 => {
                let k = rng.range(1, 3).min(n);
                for _ in 0..k {
                    let i = rng.below(self.members.len());
                    self.members.remove(i);
                }
                format!("scale down by {k}")
            }
            2 => {
                let mut flipped = Vec::new();
                for _ in 0..rng.range(1, 3) {
                    let m = &mut self.members[rng.below(n)];
                    m.ready = !m.ready;
                    flipped.push(format!(
                        "{} {}",
                        m.pod.name,
                        if m.ready { "ready" } else { "not ready" }
                    ));
                }
                format!("flip {}", flipped.join(", "))
            }
            3 => {
                let m = &mut self.members[rng.below(n)];
                m.terminating = true;
                format!("{} terminating", m.pod.name)
            }
            4 => {
                self.ids += 1;
                let m = &mut self.members[rng.below(n)];
                let old = std::mem::replace(&mut m.pod.name, format!("echo-{}", self.ids));
                format!("{old} replaced by {} on the same IP", m.pod.name)
            }
            5 => {
                let m = &mut self.members[rng.below(n)];
                m.pod.node = format!("node-{}", rng.below(9));
                format!("{} now on {}", m.pod.name, m.pod.node)
            }
            _ => {
                self.metrics_port = !self.metrics_port;
                format!(
                    "metrics port {}",
                    if self.metrics_port {
                        "added"
                    } else {
                        "removed"
                    }
                )
            }
        };
        if void(&self.view()) {
            *self = before;
            return format!("{what}: skipped, it would leave no ready pod");
        }
        self.write(out);
        what
    }

    fn fresh(&mut self, _rng: &mut Rng, out: &mut Writer<'_>) -> String {
        if !self.exists {
            self.exists = true;
            self.members.clear();
        }
        let m = self.new_member(true);
        let what = format!("fresh pod {} at {}", m.pod.name, m.pod.ip);
        self.members.push(m);
        self.write(out);
        what
    }

    fn empty(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        let what = match rng.below(4) {
            0 => {
                self.exists = false;
                self.members.clear();
                "the Endpoints object is deleted"
            }
            1 => {
                self.members.clear();
                "scaled to zero"
            }
            2 => {
                self.members.iter_mut().for_each(|m| m.ready = false);
                "every pod not ready"
            }
            _ => {
                self.members.iter_mut().for_each(|m| m.terminating = true);
                "every pod terminating"
            }
        };
        self.write(out);
        what.to_string()
    }

    fn noise(&mut self, rng: &mut Rng, server: &FakeApiServer) -> String {
        let pods = [Pod::new("other-1", [10, 9, 0, rng.range(1, 200) as u8])];
        match rng.below(3) {
            0 => {
                server.set_endpoints(NS, "other", &[("grpc", PORT)], &pods);
                "Endpoints prod/other changed".into()
            }
            1 => {
                server.delete(Resource::Endpoints, NS, "other");
                "Endpoints prod/other deleted".into()
            }
            _ => {
                server.set_endpoints("staging", SERVICE, &[("grpc", PORT)], &pods);
                "Endpoints staging/echo changed".into()
            }
        }
    }
}

/// One EndpointSlice of the Service.
#[derive(Clone)]
struct Slice {
    name: String,
    v6: bool,
    members: Vec<Member>,
    /// `endpoints: null, ports: null`, as the controller leaves for a Service without pods.
    placeholder: bool,
    metrics_port: bool,
}

/// discovery.k8s.io/v1: several slices of Service `echo`, IPv4 and IPv6.
#[derive(Clone, Default)]
struct SlicesWorld {
    slices: Vec<Slice>,
    ids: u32,
    names: u32,
}

/// Where a single-object change goes.
enum Write {
    Slice(usize),
    Delete(String),
    Done,
}

impl SlicesWorld {
    fn new_member(&mut self, v6: bool, ready: bool) -> Member {
        self.ids += 1;
        Member::new(pod_spec(self.ids, 1, v6), ready)
    }

    fn new_slice(&mut self, v6: bool) -> Slice {
        self.names += 1;
        Slice {
            name: format!("echo-{}{}", if v6 { "v6-" } else { "" }, self.names),
            v6,
            members: Vec::new(),
            placeholder: false,
            metrics_port: false,
        }
    }

    /// A new slice with `n` fresh endpoints, the first ready.
    fn add_slice(&mut self, rng: &mut Rng, v6: bool, n: usize) -> usize {
        let mut slice = self.new_slice(v6);
        for i in 0..n {
            slice
                .members
                .push(self.new_member(v6, i == 0 || rng.chance(85)));
        }
        self.slices.push(slice);
        self.slices.len() - 1
    }

    fn write_slice(&self, i: usize, out: &mut Writer<'_>) {
        let s = &self.slices[i];
        let mut ports: Vec<(&str, Option<u16>)> = Vec::new();
        if !s.placeholder {
            ports.push(("grpc", Some(PORT)));
            if s.metrics_port {
                ports.push(("metrics", Some(9090)));
            }
        }
        let pods: Vec<Pod> = s.members.iter().map(Member::to_pod).collect();
        let family = if s.v6 {
            AddressType::Ipv6
        } else {
            AddressType::Ipv4
        };
        out.slice(self.view(), &s.name, family, &ports, &pods);
    }

    fn delete_slice(&mut self, i: usize, out: &mut Writer<'_>) -> String {
        let s = self.slices.remove(i);
        out.delete(self.view(), Resource::EndpointSlices, &s.name);
        s.name
    }

    /// Slices that list endpoints.
    fn with_members(&self) -> Vec<usize> {
        (0..self.slices.len())
            .filter(|&i| !self.slices[i].members.is_empty())
            .collect()
    }

    /// Move (or copy) an endpoint into another slice of its family: the new home is written
    /// first, so the endpoint is never missing in between (and the view never changes).
    fn move_member(&mut self, rng: &mut Rng, keep: bool, out: &mut Writer<'_>) -> String {
        let sources = self.with_members();
        if sources.is_empty() {
            return "no endpoint to move".into();
        }
        let from = sources[rng.below(sources.len())];
        let m = self.slices[from].members[rng.below(self.slices[from].members.len())].clone();
        let v6 = self.slices[from].v6;
        let ip = m.pod.ip;
        // A slice that lists it already may list it with other conditions: not a target.
        let targets: Vec<usize> = (0..self.slices.len())
            .filter(|&i| i != from && self.slices[i].v6 == v6)
            .filter(|&i| !self.slices[i].members.iter().any(|x| x.pod.ip == ip))
            .collect();
        if targets.is_empty() {
            return format!("no slice to take {}", m.pod.name);
        }
        let to = targets[rng.below(targets.len())];
        self.slices[to].placeholder = false;
        self.slices[to].members.push(m.clone());
        self.write_slice(to, out);
        let (verb, from_name, to_name) = (
            if keep { "copy" } else { "move" },
            self.slices[from].name.clone(),
            self.slices[to].name.clone(),
        );
        if !keep {
            self.slices[from].members.retain(|x| x.pod.ip != ip);
            self.write_slice(from, out);
        }
        format!("{verb} {} from {from_name} to {to_name}", m.pod.name)
    }
}

impl World for SlicesWorld {
    fn view(&self) -> View {
        let members = || self.slices.iter().flat_map(|s| s.members.iter());
        let any_ready = members().any(Member::serves);
        let mut view: View = members()
            .filter(|m| m.listed())
            .map(|m| m.ep(true, any_ready))
            .collect();
        // An endpoint listed by two slices is one address, with the same details in both but
        // maybe not the same conditions: one that is not terminating wins, else a serving one.
        let rank = |e: &Ep| (!e.6 .2, e.6 .1);
        view.sort_by(|a, b| a.0.cmp(&b.0).then(rank(b).cmp(&rank(a))));
        view.dedup_by(|a, b| a.0 == b.0);
        view
    }

    fn init(&mut self, rng: &mut Rng, out: &mut Writer<'_>) {
        for _ in 0..3 {
            let n = rng.range(2, 4);
            let i = self.add_slice(rng, false, n);
            self.write_slice(i, out);
        }
        let i = self.add_slice(rng, true, 2);
        self.write_slice(i, out);
    }

    fn change(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        if void(&self.view()) {
            let i = if self.slices.len() < 6 || rng.chance(50) {
                let (n, v6) = (rng.range(1, 4), rng.chance(20));
                self.add_slice(rng, v6, n)
            } else {
                let i = rng.below(self.slices.len());
                let v6 = self.slices[i].v6;
                let m = self.new_member(v6, true);
                let s = &mut self.slices[i];
                s.placeholder = false;
                s.members.push(m);
                i
            };
            self.write_slice(i, out);
            return format!("{} brings the Service back", self.slices[i].name);
        }
        let before = self.clone();
        let any = rng.below(self.slices.len());
        let filled = self.with_members();
        let full = filled.first().map(|_| filled[rng.below(filled.len())]);
        let (what, write) = match (rng.below(10), full) {
            (1, Some(i)) => {
                let k = rng.range(1, 3).min(self.slices[i].members.len());
                for _ in 0..k {
                    let j = rng.below(self.slices[i].members.len());
                    self.slices[i].members.remove(j);
                }
                (
                    format!("{} scales down by {k}", self.slices[i].name),
                    Write::Slice(i),
                )
            }
            (2, Some(i)) => {
                let s = &mut self.slices[i];
                let j = rng.below(s.members.len());
                s.members[j].ready = !s.members[j].ready;
                let state = if s.members[j].ready {
                    "ready"
                } else {
                    "not ready"
                };
                (
                    format!("{}: {} {state}", s.name, s.members[j].pod.name),
                    Write::Slice(i),
                )
            }
            (3, Some(i)) => {
                let s = &mut self.slices[i];
                let j = rng.below(s.members.len());
                s.members[j].terminating = true;
                (
                    format!("{}: {} terminating", s.name, s.members[j].pod.name),
                    Write::Slice(i),
                )
            }
            (4, _) if self.slices.len() < 6 => {
                let (n, v6) = (rng.range(1, 4), rng.chance(25));
                let i = self.add_slice(rng, v6, n);
                (
                    format!("new slice {}", self.slices[i].name),
                    Write::Slice(i),
                )
            }
            (5, _) if self.slices.len() > 1 => {
                let name = self.slices[any].name.clone();
                self.slices.remove(any);
                (format!("slice {name} deleted"), Write::Delete(name))
            }
            (6, _) => (self.move_member(rng, false, out), Write::Done),
            (7, _) => (self.move_member(rng, true, out), Write::Done),
            (8, _) if !self.slices[any].placeholder => {
                let s = &mut self.slices[any];
                s.metrics_port = !s.metrics_port;
                (
                    format!("{}: metrics port toggled", s.name),
                    Write::Slice(any),
                )
            }
            (9, _) if self.slices.len() < 6 => {
                let mut s = self.new_slice(rng.chance(25));
                s.placeholder = true;
                self.slices.push(s);
                let i = self.slices.len() - 1;
                (
                    format!("placeholder slice {}", self.slices[i].name),
                    Write::Slice(i),
                )
            }
            _ => {
                let k = rng.range(1, 4);
                let v6 = self.slices[any].v6;
                for _ in 0..k {
                    let m = self.new_member(v6, rng.chance(85));
                    self.slices[any].members.push(m);
                }
                self.slices[any].placeholder = false;
                (
                    format!("{} scales up by {k}", self.slices[any].name),
                    Write::Slice(any),
                )
            }
        };
        if void(&self.view()) {
            // Moves and copies never get here: they leave the view as it was.
            *self = before;
            return format!("{what}: skipped, it would leave no ready endpoint");
        }
        match write {
            Write::Slice(i) => self.write_slice(i, out),
            Write::Delete(name) => out.delete(self.view(), Resource::EndpointSlices, &name),
            Write::Done => {}
        }
        what
    }

    fn fresh(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        let i = if self.slices.is_empty() {
            self.add_slice(rng, false, 1)
        } else {
            let i = rng.below(self.slices.len());
            let v6 = self.slices[i].v6;
            let m = self.new_member(v6, true);
            let s = &mut self.slices[i];
            s.placeholder = false;
            s.members.push(m);
            i
        };
        self.write_slice(i, out);
        let s = &self.slices[i];
        let m = s.members.last().expect("the fresh member");
        format!(
            "fresh endpoint {} at {} in {}",
            m.pod.name, m.pod.ip, s.name
        )
    }

    fn empty(&mut self, rng: &mut Rng, out: &mut Writer<'_>) -> String {
        let n = self.slices.len();
        match rng.below(3) {
            0 => {
                while !self.slices.is_empty() {
                    let i = rng.below(self.slices.len());
                    self.delete_slice(i, out);
                }
                format!("all {n} slices deleted")
            }
            1 => {
                for i in 0..n {
                    let s = &mut self.slices[i];
                    s.members.clear();
                    s.placeholder = true;
                    self.write_slice(i, out);
                }
                format!("all {n} slices emptied to placeholders")
            }
            _ => {
                for i in 0..n {
                    for m in &mut self.slices[i].members {
                        // Terminating and no longer serving, or not ready: nothing to use.
                        m.ready = false;
                        m.terminating = rng.chance(50);
                    }
                    self.write_slice(i, out);
                }
                format!("every endpoint of {n} slices not ready or terminating")
            }
        }
    }

    fn noise(&mut self, rng: &mut Rng, server: &FakeApiServer) -> String {
        match rng.below(3) {
            0 => {
                // Selected by the label, and ignored: FQDN slices carry no IPs.
                let host = format!("pod-{}.example.com", rng.below(100));
                let fqdn = serde_json::json!({
                    "metadata": {
                        "name": "echo-fqdn",
                        "labels": {
                            "kubernetes.io/service-name": SERVICE,
                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                        },
                    },
                    "addressType": "FQDN",
                    "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
                    "ports": [{"name": "grpc", "port": PORT, "protocol": "TCP"}],
                });
                server.apply(Resource::EndpointSlices, NS, "echo-fqdn", fqdn);
                "FQDN slice echo-fqdn changed".into()
            }
            1 => {
                server.delete(Resource::EndpointSlices, NS, "echo-fqdn");
                "FQDN slice echo-fqdn deleted".into()
            }
            _ => {
                let pods = [Pod::new("other-1", [10, 9, 0, rng.range(1, 200) as u8])];
                server.set_endpoint_slice(
                    NS,
                    "other-abcde",
                    "other",
                    AddressType::Ipv4,
                    &[("grpc", Some(PORT))],
                    &pods,
                );
                "slice of Service other changed".into()
            }
        }
    }
}

// ----- faults -----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    CleanEnd,
    Reset,
    CutMidEvent,
    CutNextEvent,
    EndMidNextEvent,
    Stall,
    Garbage,
    OversizedLine,
    UnknownEvent,
    ErrorEvent,
    Expired,
    Compaction,
    TokenRotation,
    Forbidden,
    TooManyRequests,
    InternalError,
    Unavailable,
    CloseWithoutAnswer,
    Hang,
    GoneOnWatch,
    NextWatch,
    Restart,
}

impl Kind {
    const ALL: [Kind; 22] = [
        Kind::CleanEnd,
        Kind::Reset,
        Kind::CutMidEvent,
        Kind::CutNextEvent,
        Kind::EndMidNextEvent,
        Kind::Stall,
        Kind::Garbage,
        Kind::OversizedLine,
        Kind::UnknownEvent,
        Kind::ErrorEvent,
        Kind::Expired,
        Kind::Compaction,
        Kind::TokenRotation,
        Kind::Forbidden,
        Kind::TooManyRequests,
        Kind::InternalError,
        Kind::Unavailable,
        Kind::CloseWithoutAnswer,
        Kind::Hang,
        Kind::GoneOnWatch,
        Kind::NextWatch,
        Kind::Restart,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::CleanEnd => "clean end",
            Kind::Reset => "reset",
            Kind::CutMidEvent => "cut mid-event",
            Kind::CutNextEvent => "change cut in flight",
            Kind::EndMidNextEvent => "clean end mid-change",
            Kind::Stall => "stall",
            Kind::Garbage => "garbage line",
            Kind::OversizedLine => "line over the cap",
            Kind::UnknownEvent => "unknown event type",
            Kind::ErrorEvent => "ERROR 500 event",
            Kind::Expired => "410 ERROR event",
            Kind::Compaction => "410 on resume after compaction",
            Kind::TokenRotation => "401 + token rotation",
            Kind::Forbidden => "403 then allowed",
            Kind::TooManyRequests => "429 plain text + Retry-After",
            Kind::InternalError => "500",
            Kind::Unavailable => "503 + Retry-After",
            Kind::CloseWithoutAnswer => "closed without an answer",
            Kind::Hang => "hung request",
            Kind::GoneOnWatch => "410 status on a watch",
            Kind::NextWatch => "fault on the next watch",
            Kind::Restart => "server restart",
        }
    }
}

/// Lines the decoder must refuse (the watcher relists after each).
const GARBAGE: [&str; 6] = [
    "{not json",
    "garbage",
    "\u{1}\u{2}\u{3}",
    r#"{"type":"ADDED","object":null}"#,
    r#"{"type":"MODIFIED","object":{"metadata":{}}}"#,
    r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#,
];

/// An event type from the future: skipped, the watch goes on.
const UNKNOWN_EVENT: &str = r#"{"type":"FUTURE","object":{}}"#;

/// A non-410 ERROR event: the watch fails, and the resolver watches again or relists.
const ERROR_EVENT: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcdserver: request timed out","reason":"InternalError","code":500}}"#;

/// A line longer than the resolver's cap: dropped unread past the cap, then a relist.
fn oversized_line() -> String {
    format!(
        r#"{{"type":"MODIFIED","object":{{"metadata":{{"name":"{}"}}}}}}"#,
        "x".repeat(MAX_EVENT)
    )
}

/// How many faults of each kind took effect on the resolver, from the server's request log:
/// faults a watch carried out on the wire, failures that answered a request, 401s and 403s
/// from token rotation and RBAC (a run of them, while the resolver retries, counts once),
/// watches answered with the 410 of a compacted resourceVersion; and `restarts` that cut an
/// open watch. (Faults on the next watch count as the fault they were.)
fn effects(log: &[RequestRecord], restarts: u64) -> BTreeMap<Kind, u64> {
    let mut took = BTreeMap::new();
    let mut add = |kind: Kind| *took.entry(kind).or_insert(0) += 1;
    let mut previous = 0;
    for r in log {
        for fault in &r.faults {
            add(match fault {
                Fault::EndCleanly => Kind::CleanEnd,
                Fault::Reset => Kind::Reset,
                Fault::CutMidEvent => Kind::CutMidEvent,
                Fault::CutNextEvent => Kind::CutNextEvent,
                Fault::EndMidNextEvent => Kind::EndMidNextEvent,
                Fault::Stall => Kind::Stall,
                Fault::Expired => Kind::Expired,
                Fault::Garbage(line) if line == UNKNOWN_EVENT => Kind::UnknownEvent,
                Fault::Garbage(line) if line == ERROR_EVENT => Kind::ErrorEvent,
                Fault::Garbage(line) if line.len() > MAX_EVENT => Kind::OversizedLine,
                Fault::Garbage(_) => Kind::Garbage,
            });
        }
        if r.expired {
            add(Kind::Compaction);
        }
        match (&r.failure, r.status) {
            (Some(Failure::TooManyRequests { .. }), _) => add(Kind::TooManyRequests),
            (Some(Failure::InternalError), _) => add(Kind::InternalError),
            (Some(Failure::Unavailable), _) => add(Kind::Unavailable),
            (Some(Failure::CloseWithoutAnswer), _) => add(Kind::CloseWithoutAnswer),
            (Some(Failure::Hang), _) => add(Kind::Hang),
            (Some(Failure::Status { .. }), _) => add(Kind::GoneOnWatch),
            (None, 401) if previous != 401 => add(Kind::TokenRotation),
            (None, 403) if previous != 403 => add(Kind::Forbidden),
            _ => {}
        }
        previous = r.status;
    }
    if restarts > 0 {
        took.insert(Kind::Restart, restarts);
    }
    took
}

// ----- the soak -----

/// The token file the resolver reads, rotated like a projected service-account token.
struct TokenFile {
    dir: PathBuf,
    path: PathBuf,
    current: String,
    rotations: u32,
}

impl TokenFile {
    fn new(label: &str) -> TokenFile {
        let dir = std::env::temp_dir().join(format!(
            "kuberesolver-chaos-{}-{}",
            std::process::id(),
            label.replace(' ', "-")
        ));
        std::fs::create_dir_all(&dir).expect("token dir");
        let path = dir.join("token");
        let current = "chaos-token-0".to_string();
        std::fs::write(&path, &current).expect("token file");
        TokenFile {
            dir,
            path,
            current,
            rotations: 0,
        }
    }

    /// Swap the file's content atomically (as the kubelet does) and return the new token.
    fn rotate(&mut self) -> String {
        self.rotations += 1;
        self.current = format!("chaos-token-{}", self.rotations);
        let next = self.dir.join("token.next");
        std::fs::write(&next, &self.current).expect("write the next token");
        std::fs::rename(&next, &self.path).expect("swap the token");
        self.current.clone()
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Threads named like the resolver's watcher (`kuberesolver <service>`), or `None` where
/// `/proc` is missing.
fn resolver_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|comm| comm.starts_with("kuberesolver"))
            })
            .count(),
    )
}

/// The log index of the newest watch the server answered 200, read without copying the log.
fn latest_watch(server: &FakeApiServer) -> Option<usize> {
    let mut latest = None;
    server.wait_for_requests(Duration::ZERO, |log| {
        latest = log.iter().rposition(|r| r.is_watch() && r.status == 200);
        true
    });
    latest
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

struct Soak<W: World> {
    settings: Settings,
    source: Source,
    resource: Resource,
    server: FakeApiServer,
    resolver: Option<Resolver>,
    collector: Option<JoinHandle<Vec<Snapshot>>>,
    world: W,
    history: History,
    rng: Rng,
    token: TokenFile,
    started: Instant,
    step: usize,
    recent: VecDeque<String>,
    /// Every snapshot seen by polling, by version.
    observed: BTreeMap<u64, Snapshot>,
    /// Faults dealt, by kind (what took effect is counted from the request log).
    dealt: BTreeMap<Kind, u64>,
    /// Restarts that cut an open watch.
    restarts_cut: u64,
    /// Every snapshot the resolver published, in order (through its publish observer).
    published: Arc<Mutex<Vec<Snapshot>>>,
    /// The faults still to come in this round, and how many rounds were started.
    deck: Vec<Kind>,
    rounds: u64,
    /// Log indexes of 200 watches that a fault certainly ended (see [`Soak::inject`]).
    broken: BTreeSet<usize>,
    /// Log indexes of the newest request when the server stopped listening.
    cut: BTreeSet<usize>,
    convergence: Vec<Duration>,
    down: bool,
    down_until: Option<usize>,
    forbidden_until: Option<usize>,
    changes: u64,
    empties: u64,
    problems: Vec<String>,
}

impl<W: World> Soak<W> {
    fn start(settings: Settings, source: Source, wire: Wire, world: W) -> Soak<W> {
        println!(
            "chaos soak [{}]: seed {} until {} faults reached the resolver (replay: {})",
            settings.label,
            settings.seed,
            settings.faults,
            settings.replay()
        );
        let token = TokenFile::new(settings.label);
        let mut builder = FakeApiServer::builder()
            .token(Some(token.current.clone()))
            .bookmark_interval(Duration::from_millis(50));
        if wire == Wire::Https {
            builder = builder.tls(TlsIdentity::test_server());
        }
        let server = builder.start().expect("fake API server starts");
        let mut config = Config::new(server.url()).token_file(&token.path);
        if wire == Wire::Https {
            config = config.ca_pem(TEST_CA_PEM);
        }
        let resource = match source {
            Source::EndpointSlices => Resource::EndpointSlices,
            _ => Resource::Endpoints,
        };
        let mut soak = Soak {
            rng: seeded(settings.seed, settings.stream),
            settings,
            source,
            resource,
            server,
            resolver: None,
            collector: None,
            world,
            history: History::default(),
            token,
            started: Instant::now(),
            step: 0,
            recent: VecDeque::new(),
            observed: BTreeMap::new(),
            dealt: BTreeMap::new(),
            restarts_cut: 0,
            published: Arc::new(Mutex::new(Vec::new())),
            deck: Vec::new(),
            rounds: 0,
            broken: BTreeSet::new(),
            cut: BTreeSet::new(),
            convergence: Vec::new(),
            down: false,
            down_until: None,
            forbidden_until: None,
            changes: 0,
            empties: 0,
            problems: Vec::new(),
        };
        let mut out = Writer {
            server: &soak.server,
            history: &mut soak.history,
            step: 0,
        };
        soak.world.init(&mut soak.rng, &mut out);
        let published = soak.published.clone();
        let resolver = Resolver::builder(TARGET)
            .config(config)
            .source(source)
            // Short waits, so that a fault costs little time and many fit in a run. (The
            // policy's own behaviour is the unit tests' and the fault table's business.)
            .backoff(
                Backoff::new()
                    .initial(Duration::from_millis(30))
                    .floor(Duration::from_millis(10))
                    .cap(Duration::from_millis(200)),
            )
            // Ten bookmarks' time (they come every 50 ms).
            .read_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(1))
            // Watches also end on their own, every 3 to 4 s.
            .watch_timeout(Duration::from_secs(4))
            .max_event_size(MAX_EVENT)
            .observe_publishes(move |snapshot| {
                published
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(snapshot.clone());
            })
            .spawn()
            .expect("the resolver spawns");
        let updates = resolver.updates();
        let collector = thread::Builder::new()
            .name("chaos-collector".into())
            .spawn(move || updates.iter().collect::<Vec<Snapshot>>())
            .expect("collector thread");
        soak.resolver = Some(resolver);
        soak.collector = Some(collector);
        soak.started = Instant::now();
        soak.quiet("first resolution");
        soak
    }

    fn resolver(&self) -> &Resolver {
        self.resolver.as_ref().expect("the resolver is alive")
    }

    /// Faults that reached the resolver so far, from the server's request log.
    fn took_effect(&self) -> u64 {
        effects(&self.server.requests(), self.restarts_cut)
            .values()
            .sum()
    }

    /// Deal whole decks until enough faults have reached the resolver. A schedule whose
    /// faults mostly miss it fails rather than running on.
    fn run(mut self) {
        let target = self.settings.faults;
        let most_rounds = 3 * target / Kind::ALL.len() as u64 + 3;
        let mut checked = 0;
        loop {
            self.step();
            if self.deck.is_empty() && self.rounds > checked {
                checked = self.rounds;
                let took = self.took_effect();
                self.note(format!("round {checked} dealt; {took} faults took effect"));
                if took >= target {
                    break;
                }
                if self.rounds >= most_rounds {
                    self.fail(&format!(
                        "after {} rounds only {took} of {target} faults reached the resolver",
                        self.rounds
                    ));
                }
            }
        }
        self.finish();
    }

    fn note(&mut self, what: impl Into<String>) {
        if self.recent.len() == 40 {
            self.recent.pop_front();
        }
        let at = self.started.elapsed().as_millis();
        let line = format!("  step {} @{at}ms: {}", self.step, what.into());
        if self.settings.verbose {
            println!("{line}");
        }
        self.recent.push_back(line);
    }

    /// Fail now, with everything needed to understand and replay.
    fn fail(&self, what: &str) -> ! {
        let (snapshot, status) = match &self.resolver {
            Some(r) => (
                format!(
                    "v{} {}",
                    r.snapshot().version(),
                    show(&view_of(&r.snapshot()))
                ),
                format!("{:#?}", r.status()),
            ),
            None => ("(dropped)".into(), "(dropped)".into()),
        };
        panic!(
            "chaos soak [{}] seed {} step {}: {what}\n  replay: {}\n  truth: {}\n  snapshot: {snapshot}\n  last steps:\n{}\n  status: {status}",
            self.settings.label,
            self.settings.seed,
            self.step,
            self.settings.replay(),
            show(self.history.current()),
            self.recent.iter().cloned().collect::<Vec<_>>().join("\n"),
        );
    }

    fn step(&mut self) {
        self.step += 1;
        self.check_threads();
        if self.down_until.is_some_and(|s| self.step >= s) {
            self.resume();
            self.note("the server listens again");
        }
        if self.forbidden_until.is_some_and(|s| self.step >= s) {
            self.forbidden_until = None;
            self.server.forbid(self.resource, false);
            self.note("allowed again");
        }
        match self.rng.below(100) {
            0..=34 => {
                for _ in 0..self.rng.range(1, 3) {
                    self.change();
                }
            }
            35..=39 => self.empty_step(),
            40..=43 => {
                let what = self.world.noise(&mut self.rng, &self.server);
                self.note(format!("noise: {what}"));
            }
            44..=95 => self.fault(),
            _ => {
                let mode = match self.rng.below(3) {
                    0 => ChunkMode::PerEvent,
                    1 => ChunkMode::Split(self.rng.range(1, 40)),
                    _ => ChunkMode::Coalesce,
                };
                self.server.set_chunk_mode(mode);
                self.note(format!("chunking {mode:?}"));
            }
        }
        if self.rng.chance(15) {
            self.quiet("quiet period");
        }
        let pause = millis(&mut self.rng, 0, 10);
        thread::sleep(pause);
    }

    fn change(&mut self) {
        let mut out = Writer {
            server: &self.server,
            history: &mut self.history,
            step: self.step,
        };
        let what = self.world.change(&mut self.rng, &mut out);
        self.changes += 1;
        self.note(what);
    }

    /// Empty the Service in a way that makes "no spurious empty" checkable: first converge to
    /// a view no earlier truth had (so the resolver is past every earlier truth, empty ones
    /// included), then empty it and converge again before anything else changes. An empty
    /// snapshot is then correct only while the truth is empty.
    fn empty_step(&mut self) {
        let mut out = Writer {
            server: &self.server,
            history: &mut self.history,
            step: self.step,
        };
        let what = self.world.fresh(&mut self.rng, &mut out);
        self.changes += 1;
        self.note(what);
        self.quiet("before emptying");
        let mut out = Writer {
            server: &self.server,
            history: &mut self.history,
            step: self.step,
        };
        let what = self.world.empty(&mut self.rng, &mut out);
        self.changes += 1;
        self.empties += 1;
        self.note(format!("empty: {what}"));
        self.quiet("after emptying");
    }

    /// Undo what keeps the resolver from converging: the server down, RBAC, queued failures.
    fn heal(&mut self) {
        if self.down {
            self.resume();
        }
        if self.forbidden_until.take().is_some() {
            self.server.forbid(self.resource, false);
        }
        self.server.clear_failures();
    }

    /// Heal, then wait until the snapshot equals the truth.
    fn quiet(&mut self, why: &str) {
        self.heal();
        let truth = self.history.current().clone();
        let began = Instant::now();
        loop {
            let snapshot = self.resolver().snapshot();
            let converged = snapshot.version() > 0 && view_of(&snapshot) == truth;
            if snapshot.version() > 0 {
                self.observed.entry(snapshot.version()).or_insert(snapshot);
            }
            if converged {
                break;
            }
            if began.elapsed() > CONVERGENCE_BOUND {
                self.fail(&format!(
                    "{why}: the snapshot did not converge to the truth within {CONVERGENCE_BOUND:?}"
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
        let took = began.elapsed();
        self.convergence.push(took);
        self.note(format!("{why}: converged in {took:.1?}"));
        // Let the chaos that follows find a watch to break, most of the time.
        self.server.wait_for_watches(1, Duration::from_secs(1));
        self.check_threads();
    }

    /// One watcher thread, whatever happens.
    fn check_threads(&self) {
        if let Some(n) = resolver_threads() {
            if n != 1 {
                self.fail(&format!("{n} kuberesolver threads instead of 1"));
            }
        }
    }

    fn resume(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while let Err(e) = self.server.resume_listening() {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "cannot listen on {} again: {e}",
                    self.server.addr()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.down = false;
        self.down_until = None;
    }

    fn count(&mut self, kind: Kind) {
        *self.dealt.entry(kind).or_default() += 1;
    }

    /// Apply `fault` to the open watches. When it `breaks` a watch and reached exactly one,
    /// and the newest 200 watch in the log was the same before and after, that watch has
    /// certainly ended (by this fault, or before it, since it was no longer the one open):
    /// its log index goes to `broken`, and the request after it must count as a reconnect.
    fn inject(&mut self, kind: Kind, fault: Fault, breaks: bool) {
        self.count(kind);
        let label: String = format!("{fault:?}").chars().take(80).collect();
        // Mostly aim at a watch; sometimes at whatever is there (maybe nothing).
        if !self.down && self.rng.chance(80) {
            self.server.wait_for_watches(1, Duration::from_secs(1));
        }
        let before = latest_watch(&self.server);
        let reached = self.server.inject(fault);
        let after = latest_watch(&self.server);
        if breaks && reached == 1 && before == after {
            if let Some(watch) = before {
                self.broken.insert(watch);
            }
        }
        self.note(format!(
            "{}: {label} reached {reached} watch(es)",
            kind.name()
        ));
    }

    /// Sometimes end the open watch so that a queued failure or a policy change bites now.
    fn kick(&mut self) {
        if self.rng.chance(60) {
            if self.rng.chance(50) {
                self.inject(Kind::CleanEnd, Fault::EndCleanly, true);
            } else {
                self.inject(Kind::Reset, Fault::Reset, true);
            }
        }
    }

    fn fail_next(&mut self, kind: Kind, verb: Verb, n: usize, failure: Failure) {
        self.count(kind);
        self.note(format!(
            "{}: the next {n} {verb:?} request(s) fail",
            kind.name()
        ));
        self.server.fail_next_for(verb, n, failure);
        self.kick();
    }

    fn fault(&mut self) {
        // Faults are dealt from a shuffled deck of every kind, so that each comes up once per
        // round; restarts and compactions twice, as they are what forces relists.
        if self.deck.is_empty() {
            self.deck.extend(Kind::ALL);
            self.deck.extend([Kind::Restart, Kind::Compaction]);
            for i in (1..self.deck.len()).rev() {
                let j = self.rng.below(i + 1);
                self.deck.swap(i, j);
            }
            self.rounds += 1;
        }
        let kind = self.deck.pop().expect("a full deck");
        match kind {
            Kind::CleanEnd => self.inject(kind, Fault::EndCleanly, true),
            Kind::Reset => self.inject(kind, Fault::Reset, true),
            Kind::CutMidEvent => self.inject(kind, Fault::CutMidEvent, true),
            // Armed now, carried out on the next change, which follows at once (a fault
            // that ends the watch first keeps it from taking effect).
            Kind::CutNextEvent => {
                self.inject(kind, Fault::CutNextEvent, false);
                self.change();
            }
            Kind::EndMidNextEvent => {
                self.inject(kind, Fault::EndMidNextEvent, false);
                self.change();
            }
            Kind::Stall => self.inject(kind, Fault::Stall, true),
            Kind::OversizedLine => self.inject(kind, Fault::Garbage(oversized_line()), true),
            Kind::Garbage => {
                let line = GARBAGE[self.rng.below(GARBAGE.len())];
                self.inject(kind, Fault::Garbage(line.into()), true);
            }
            Kind::UnknownEvent => self.inject(kind, Fault::Garbage(UNKNOWN_EVENT.into()), false),
            Kind::ErrorEvent => self.inject(kind, Fault::Garbage(ERROR_EVENT.into()), true),
            Kind::Expired => self.inject(kind, Fault::Expired, true),
            Kind::Compaction => match self.rng.below(3) {
                0 => {
                    // The watch goes silent, the Service changes behind its back, history is
                    // compacted: the resumed watch gets the 410 ERROR event and relists.
                    self.inject(kind, Fault::Stall, true);
                    self.change();
                    self.server.compact();
                    self.note("compacted behind a stalled watch");
                }
                1 => {
                    self.server.compact();
                    self.inject(kind, Fault::Reset, true);
                }
                _ => {
                    self.count(kind);
                    self.server.compact();
                    self.note("compacted");
                }
            },
            Kind::TokenRotation => {
                self.count(kind);
                let token = self.token.rotate();
                self.server.set_token(Some(token));
                self.note("token rotated: file first, then the server");
                self.kick();
            }
            Kind::Forbidden => {
                self.count(kind);
                self.server.forbid(self.resource, true);
                let steps = self.rng.range(1, 4);
                self.forbidden_until = Some(self.step + steps);
                self.note(format!("forbidden for {steps} step(s)"));
                self.kick();
            }
            Kind::TooManyRequests => {
                let n = self.rng.range(1, 2);
                let failure = Failure::TooManyRequests {
                    retry_after_secs: 1,
                };
                self.fail_next(kind, Verb::Any, n, failure);
            }
            Kind::InternalError => {
                let n = self.rng.range(1, 2);
                self.fail_next(kind, Verb::Any, n, Failure::InternalError);
            }
            Kind::Unavailable => {
                let n = self.rng.range(1, 2);
                self.fail_next(kind, Verb::Any, n, Failure::Unavailable);
            }
            Kind::CloseWithoutAnswer => {
                self.fail_next(kind, Verb::Any, 1, Failure::CloseWithoutAnswer);
            }
            Kind::Hang => self.fail_next(kind, Verb::Any, 1, Failure::Hang),
            Kind::GoneOnWatch => {
                let gone = Failure::status(410, "Expired", "too old resource version: 1 (2)");
                self.fail_next(kind, Verb::Watch, 1, gone);
            }
            Kind::NextWatch => {
                self.count(kind);
                let fault = match self.rng.below(5) {
                    0 => Fault::EndCleanly,
                    1 => Fault::Reset,
                    2 => Fault::CutMidEvent,
                    3 => Fault::Expired,
                    _ => Fault::Garbage(GARBAGE[0].into()),
                };
                self.note(format!("{}: {fault:?}", kind.name()));
                self.server.inject_next_watch(fault);
                self.kick();
            }
            Kind::Restart => self.restart(),
        }
    }

    /// Stop listening (every connection closed, new ones refused), maybe change things while
    /// down, and listen again on the same port now or a few steps later.
    fn restart(&mut self) {
        self.count(Kind::Restart);
        let open = self.server.open_watches();
        let latest = latest_watch(&self.server);
        self.server.stop_listening();
        // Whatever watch was newest has ended now.
        if let Some(watch) = latest {
            self.broken.insert(watch);
        }
        // The request in flight, if any, is the newest in the log. The server may have
        // recorded its 200 and then failed to write the headers on the closed socket: the
        // resolver saw a failed request, not a list or watch.
        self.server.wait_for_requests(Duration::ZERO, |log| {
            if let Some(last) = log.len().checked_sub(1) {
                self.cut.insert(last);
            }
            true
        });
        if open > 0 {
            self.restarts_cut += 1;
        }
        self.down = true;
        self.note(format!("server down ({open} watch(es) open)"));
        match self.rng.below(4) {
            0 => {
                for _ in 0..self.rng.range(1, 3) {
                    self.change();
                }
            }
            1 => {
                // Deleted and recreated while the resolver cannot see it. Compacting after
                // the recreation makes the resolver relist instead of replaying the gap, so
                // it must never publish the empty state in between.
                let mut out = Writer {
                    server: &self.server,
                    history: &mut self.history,
                    step: self.step,
                };
                let emptied = self.world.empty(&mut self.rng, &mut out);
                let back = self.world.change(&mut self.rng, &mut out);
                self.server.compact();
                self.changes += 2;
                self.note(format!("while down: {emptied}; {back}; compacted"));
            }
            _ => {}
        }
        if self.rng.chance(25) {
            self.server.compact();
            self.note("compacted while down");
        }
        if self.rng.chance(60) {
            let pause = millis(&mut self.rng, 20, 400);
            thread::sleep(pause);
            self.resume();
            self.note(format!("the server listens again after {pause:?}"));
        } else {
            self.down_until = Some(self.step + self.rng.range(1, 3));
        }
    }

    /// A moment where the request log and the status agree: the resolver is reading a watch
    /// the server answered 200, it made no request since, and no fault was aimed at it.
    fn quiescent_cut(&mut self) -> (Vec<RequestRecord>, Status) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let first = self.server.requests();
            let status = self.resolver().status();
            let log = self.server.requests();
            let settled = first.len() == log.len()
                && status.watching
                && log.last().is_some_and(|r| r.is_watch() && r.status == 200)
                && !self.broken.contains(&(log.len() - 1));
            if settled {
                return (log, status);
            }
            if Instant::now() > deadline {
                self.fail("the resolver never settled on an open watch at the end");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn problem(&mut self, what: String) {
        self.problems.push(what);
    }

    /// What the request log proves about the counters. Every request the resolver makes is
    /// a reconnect except its first and the watch right after each successful list; the
    /// server logs every request that reaches it; one that does not (refused while the
    /// server is down) fails with a counted error.
    fn check_counters(&mut self, log: &[RequestRecord], status: &Status) {
        let c = status.counters;
        let count = |f: &dyn Fn(&RequestRecord) -> bool| log.iter().filter(|r| f(r)).count() as u64;
        let total = log.len() as u64;
        let lists = count(&|r| r.is_list());
        let lists_ok = count(&|r| r.is_list() && r.status == 200);
        let watches_ok = count(&|r| r.is_watch() && r.status == 200);
        let failed = count(&|r| r.status != 200);
        // A 410 answer to a watch means "relist", not an error.
        let failed_with_error = count(&|r| r.status != 200 && !(r.is_watch() && r.status == 410));
        let strangers = count(&|r| !r.is_list() && !r.is_watch());
        if strangers > 0 {
            self.problem(format!(
                "{strangers} logged requests are neither lists nor watches"
            ));
        }
        // A 200 the restart cut before its headers left counts on the server's side only.
        let cut = |f: &dyn Fn(&RequestRecord) -> bool| {
            self.cut
                .iter()
                .filter(|&&i| log.get(i).is_some_and(f))
                .count() as u64
        };
        let lists_cut = cut(&|r| r.is_list() && r.status == 200);
        let watches_cut = cut(&|r| r.is_watch() && r.status == 200);
        if c.lists > lists_ok || c.lists + lists_cut < lists_ok {
            self.problem(format!(
                "counters.lists = {} but the server answered {lists_ok} lists with 200 \
                 ({lists_cut} of them maybe cut by a restart)",
                c.lists
            ));
        }
        if c.watches > watches_ok || c.watches + watches_cut < watches_ok {
            self.problem(format!(
                "counters.watches = {} but the server answered {watches_ok} watches with 200 \
                 ({watches_cut} of them maybe cut by a restart)",
                c.watches
            ));
        }
        let seen = total - 1 - lists_ok;
        if c.reconnects < seen {
            self.problem(format!(
                "counters.reconnects = {} but the server saw {seen} requests that were not the first \
                 nor the watch after a successful list",
                c.reconnects
            ));
        }
        let unseen = c.reconnects.saturating_sub(seen);
        if c.errors < failed_with_error + unseen {
            self.problem(format!(
                "counters.errors = {} but {failed_with_error} requests were refused by the server and \
                 {unseen} reconnects never reached it: a reconnect without a reason",
                c.errors
            ));
        }
        if c.relists + 1 < lists || c.relists + 1 - lists > unseen {
            self.problem(format!(
                "counters.relists = {} but the server saw {lists} lists ({unseen} requests unseen)",
                c.relists
            ));
        }
        let broken = self.broken.len() as u64 + failed;
        if c.reconnects < broken {
            self.problem(format!(
                "counters.reconnects = {} but {} watches were ended by faults and {failed} requests failed",
                c.reconnects,
                self.broken.len()
            ));
        }
        if c.publishes != status.version {
            self.problem(format!(
                "counters.publishes = {} but the version is {}",
                c.publishes, status.version
            ));
        }
        if status.source != Some(self.source) {
            self.problem(format!("status.source = {:?}", status.source));
        }
    }

    /// Every snapshot published (the observer's complete record), against what was seen by
    /// polling and by the subscriber, and against the history of truths.
    fn check_snapshots(&mut self, published: &[Snapshot], collected: &[Snapshot], last: u64) {
        let mut problems = Vec::new();
        // A complete record: versions 1, 2, 3, ... with none missing, up to the last one.
        for (i, s) in published.iter().enumerate() {
            if s.version() != i as u64 + 1 {
                problems.push(format!(
                    "publish {} carries v{}: versions are not contiguous",
                    i + 1,
                    s.version()
                ));
                break;
            }
        }
        if published.len() as u64 != last {
            problems.push(format!(
                "{} publishes recorded, but the last version is v{last}",
                published.len()
            ));
        }
        for pair in published.windows(2) {
            if view_of(&pair[0]) == view_of(&pair[1]) {
                problems.push(format!(
                    "v{} and v{} are the same: a publish without a change",
                    pair[0].version(),
                    pair[1].version()
                ));
            }
        }
        // What readers saw is what was published under that version.
        let seen = collected.iter().chain(self.observed.values());
        for s in seen {
            let recorded = s
                .version()
                .checked_sub(1)
                .and_then(|i| published.get(i as usize));
            if !recorded
                .is_some_and(|p| view_of(p) == view_of(s) && p.published_at() == s.published_at())
            {
                problems.push(format!(
                    "v{} seen by a reader was never published as such",
                    s.version()
                ));
            }
        }
        for pair in collected.windows(2) {
            if pair[1].version() <= pair[0].version() {
                problems.push(format!(
                    "the subscriber got v{} after v{}",
                    pair[1].version(),
                    pair[0].version()
                ));
            }
        }
        // Each publish equals a truth the test set before it was published, in the order the
        // truths were set; an empty one only while the truth was empty.
        let mut at = 0;
        for snapshot in published {
            let version = snapshot.version();
            let view = view_of(snapshot);
            let Some(at_time) = snapshot.published_at() else {
                problems.push(format!("v{version} has no publication time"));
                continue;
            };
            let truths = &self.history.truths;
            let found = (at..truths.len())
                .take_while(|&i| truths[i].wall <= at_time)
                .find(|&i| truths[i].view == view);
            match found {
                Some(i) => at = i,
                None => problems.push(format!(
                    "v{version} = {} equals no truth set (in order) before it was published: \
                     published because of an error?",
                    show(&view)
                )),
            }
            if void(&view) {
                match self.history.at(at_time) {
                    Some(t) if void(&t.view) => {}
                    Some(t) => problems.push(format!(
                        "v{version} is empty but the truth was {} (set at step {}): a spurious empty",
                        show(&t.view),
                        t.step
                    )),
                    None => problems.push(format!("v{version} is empty before any truth")),
                }
            }
        }
        let changes = self
            .history
            .truths
            .windows(2)
            .filter(|w| w[0].view != w[1].view)
            .count() as u64;
        if published.len() as u64 > changes + 1 {
            problems.push(format!(
                "{} publishes for {changes} changes of the truth (+1 for the first)",
                published.len()
            ));
        }
        self.problems.extend(problems);
    }

    fn finish(mut self) {
        self.heal();
        self.quiet("final quiet period");
        let (log, status) = self.quiescent_cut();
        self.check_counters(&log, &status);

        let resolver = self.resolver.take().expect("the resolver is alive");
        let dropped = Instant::now();
        drop(resolver);
        let drop_took = dropped.elapsed();
        let collected = match self.collector.take().map(JoinHandle::join) {
            Some(Ok(snapshots)) => snapshots,
            _ => {
                self.problem("the collector thread failed".into());
                Vec::new()
            }
        };
        let deadline = Instant::now() + PATIENCE;
        while resolver_threads().is_some_and(|n| n > 0) {
            if Instant::now() > deadline {
                let n = resolver_threads().unwrap_or(0);
                self.problem(format!("{n} kuberesolver threads after the drop"));
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let published = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.check_snapshots(&published, &collected, status.version);
        let took = effects(&log, self.restarts_cut);
        let total: u64 = took.values().sum();
        if total < self.settings.faults {
            self.problem(format!(
                "only {total} faults reached the resolver, {} asked for",
                self.settings.faults
            ));
        }
        if self.rounds > 1 {
            let missing: Vec<&str> = Kind::ALL
                .iter()
                .filter(|k| !self.dealt.contains_key(k))
                .map(|k| k.name())
                .collect();
            if !missing.is_empty() {
                self.problem(format!("never injected: {}", missing.join(", ")));
            }
        }
        // Over a few rounds every kind gets through at least once (faults on the next watch
        // count as the fault they were).
        if self.rounds >= 5 {
            let missed: Vec<&str> = Kind::ALL
                .iter()
                .filter(|&&k| k != Kind::NextWatch && !took.contains_key(&k))
                .map(|k| k.name())
                .collect();
            if !missed.is_empty() {
                self.problem(format!("never took effect: {}", missed.join(", ")));
            }
        }
        let summary = self.summary(&log, &status, &published, &collected, &took, drop_took);
        println!("{summary}");
        self.save(&summary);
        if !self.problems.is_empty() {
            panic!(
                "chaos soak [{}] seed {} failed (replay: {}):\n  {}\n  truth: {}\n  \
                 last snapshot: {}\n  last steps:\n{}\n  status: {status:#?}",
                self.settings.label,
                self.settings.seed,
                self.settings.replay(),
                self.problems.join("\n  "),
                show(self.history.current()),
                published.last().map_or("none".into(), |s| format!(
                    "v{} {}",
                    s.version(),
                    show(&view_of(s))
                )),
                self.recent.iter().cloned().collect::<Vec<_>>().join("\n"),
            );
        }
    }

    /// Where `.ci/run` finds the summary: `cargo test` hides a passing test's output.
    fn save(&self, summary: &str) {
        let dir = PathBuf::from(option_env!("CARGO_TARGET_TMPDIR").unwrap_or("target/tmp"));
        let name = format!("chaos-{}.txt", self.settings.label.replace(' ', "-"));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(&name), format!("{summary}\n")));
        if let Err(e) = written {
            println!(
                "cannot save the summary to {}: {e}",
                dir.join(name).display()
            );
        }
    }

    fn summary(
        &self,
        log: &[RequestRecord],
        status: &Status,
        published: &[Snapshot],
        collected: &[Snapshot],
        took: &BTreeMap<Kind, u64>,
        drop_took: Duration,
    ) -> String {
        let c = status.counters;
        let mut convergence = self.convergence.clone();
        convergence.sort();
        let total_took: u64 = took.values().sum();
        let total_dealt: u64 = self.dealt.values().sum();
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let dealt = self.dealt.get(&kind).copied().unwrap_or(0);
            // Faults on the next watch take effect as the fault they were.
            let effect = match kind {
                Kind::NextWatch => "-".to_string(),
                _ => took.get(&kind).copied().unwrap_or(0).to_string(),
            };
            kinds.push(format!("    {:<32} {effect:>6} {dealt:>6}", kind.name()));
        }
        let empties = published.iter().filter(|s| s.is_empty()).count();
        format!(
            "chaos soak [{}] seed {}: {:.1?}, {} rounds of every fault, {} steps, {} changes \
             ({} truths, {} emptied), {} quiet periods\n  \
             faults that took effect (from the request log): {total_took}; dealt: {total_dealt}\n    \
             {:<32} {:>6} {:>6}\n{}\n  \
             requests logged: {} (lists {} of which {} ok, watches {} of which {} ok); \
             {} watches ended by faults; {} in flight at a restart\n  \
             counters: reconnects {} relists {} errors {} publishes {} lists {} watches {} events {} bookmarks {}\n  \
             snapshots: {} published, all recorded ({} empty), {} seen by the subscriber, {} by polling; \
             resolver dropped in {drop_took:.1?}\n  \
             convergence: p50 {:.1?} p90 {:.1?} max {:.1?}",
            self.settings.label,
            self.settings.seed,
            self.started.elapsed(),
            self.rounds,
            self.step,
            self.changes,
            self.history.truths.len(),
            self.empties,
            self.convergence.len(),
            "fault",
            "took",
            "dealt",
            kinds.join("\n"),
            log.len(),
            log.iter().filter(|r| r.is_list()).count(),
            log.iter().filter(|r| r.is_list() && r.status == 200).count(),
            log.iter().filter(|r| r.is_watch()).count(),
            log.iter().filter(|r| r.is_watch() && r.status == 200).count(),
            self.broken.len(),
            self.cut.len(),
            c.reconnects,
            c.relists,
            c.errors,
            c.publishes,
            c.lists,
            c.watches,
            c.events,
            c.bookmarks,
            published.len(),
            empties,
            collected.len(),
            self.observed.len(),
            percentile(&convergence, 50),
            percentile(&convergence, 90),
            percentile(&convergence, 100),
        )
    }
}
