//! A rolling deploy under load, with no request lost: `cargo run --example demo`.
//!
//! The demo starts a simulated Kubernetes API server (`kuberesolver::testkit::FakeApiServer`)
//! and three real TCP echo servers playing the pods of Service `echo` in namespace `demo`,
//! on 127.0.0.2, .3 and .4 (all of 127/8 is loopback on Linux). A [`Resolver`] lists and
//! watches the Service's EndpointSlices, and four client threads send requests non-stop
//! through its [`Picker`], with [`Picker::connect_with`]: a failed attempt is reported (the
//! pod is skipped for a while) and retried on another pod. Then, the way Kubernetes does it:
//!
//! 1. `echo-v1-b` breaks and hangs up on every request; until its readiness probe fails,
//!    it is still listed, and the clients retry those requests on another pod. Then it is
//!    marked not ready (the resolver drops it), recovers, and is ready again.
//! 2. The node of `echo-v1-c` dies: the pod cannot be reached (connections are refused), but
//!    it stays listed as ready until the node controller notices (about 40 s in a real
//!    cluster, 2 s here), then it is marked not ready. The picker skips it after the first
//!    refused connect, and probes it once per ejection time (1 s, then 2 s).
//! 3. A rolling deploy replaces each v1 pod by a v2 pod (on 127.0.0.5, .6, .7): the new pod
//!    starts, becomes ready and joins the Service; the old one starts terminating, keeps
//!    serving for a grace period (a preStop sleep), and only then stops.
//! 4. The Deployment is scaled down to one replica, then restarted with `maxSurge: 0`: its
//!    only pod terminates before the new one (127.0.0.8) is ready. The resolver keeps using
//!    the terminating pod, which still serves in its grace period, until the new one is ready.
//!
//! A table prints about once a second (snapshot version, each pod's state, the requests it
//! served and the attempts that failed on it), and a line for each step. The demo ends by
//! itself after about 15 s and exits with status 1 if any request failed. [`send`] is the
//! pattern for a custom connector.

use std::error::Error;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
use kuberesolver::{Config, Picker, Resolver, Snapshot};

type Fallible<T = ()> = Result<T, Box<dyn Error>>;

const CLIENTS: usize = 4;
const PAUSE_BETWEEN_REQUESTS: Duration = Duration::from_millis(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a terminating pod keeps serving (its preStop sleep).
const GRACE: Duration = Duration::from_secs(1);
/// The pod whose node dies: listed, but unreachable.
const DEAD: usize = 2;

/// The pods (name, IP, node): v1 runs from the start; the deploy replaces it with v2, the
/// restart the last v2 pod with v3.
const PODS: [(&str, [u8; 4], &str); 7] = [
    ("echo-v1-a", [127, 0, 0, 2], "node-1"),
    ("echo-v1-b", [127, 0, 0, 3], "node-2"),
    ("echo-v1-c", [127, 0, 0, 4], "node-3"),
    ("echo-v2-a", [127, 0, 0, 5], "node-1"),
    ("echo-v2-b", [127, 0, 0, 6], "node-2"),
    ("echo-v2-c", [127, 0, 0, 7], "node-3"),
    ("echo-v3-a", [127, 0, 0, 8], "node-1"),
];

/// What the cluster says about a pod.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Absent,
    Starting,
    Ready,
    /// Listed as ready, but hanging up on every request (its probe has not failed yet).
    Failing,
    /// Listed as ready, but its node is dead: connections are refused.
    Unreachable,
    NotReady,
    Terminating,
    Gone,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Absent => "-",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failing => "failing",
            State::Unreachable => "unreachable",
            State::NotReady => "not ready",
            State::Terminating => "terminating",
            State::Gone => "gone",
        }
    }

    /// How the EndpointSlice controller lists the pod, or `None` when it is left out.
    fn listed(self, pod: Pod) -> Option<Pod> {
        match self {
            State::Ready | State::Failing | State::Unreachable => Some(pod),
            State::Starting | State::NotReady => Some(pod.ready(false)),
            // Still serving in its grace period.
            State::Terminating => Some(pod.terminating(true)),
            State::Absent | State::Gone => None,
        }
    }

    /// Whether the pod is listed as ready.
    fn ready(self) -> bool {
        matches!(self, State::Ready | State::Failing | State::Unreachable)
    }

    /// Whether a resolver uses the pod's address: the ready ones, or while none is, the
    /// terminating ones (they still serve in their grace period).
    fn used(self, any_ready: bool) -> bool {
        if any_ready {
            self.ready()
        } else {
            self == State::Terminating
        }
    }
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    served: [AtomicU64; PODS.len()],
    /// Attempts that failed on each pod (and were retried on another).
    failed_on: [AtomicU64; PODS.len()],
}

impl Stats {
    fn failed_attempt(&self, addr: SocketAddr) {
        if let Some(i) = PODS.iter().position(|p| IpAddr::from(p.1) == addr.ip()) {
            self.failed_on[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // The API server and the three v1 pods, published as the Endpoints of `echo`.
    let mut demo = Demo::new()?;
    for pod in 0..3 {
        demo.start_pod(pod)?;
        demo.pods[pod].state = State::Ready;
    }
    demo.publish();

    let resolver = Resolver::builder("kubernetes:///echo.demo:tcp")
        .config(Config::new(demo.server.url()))
        .spawn()?;
    let first = resolver.wait_ready(Duration::from_secs(5))?;
    demo.log(&format!("resolved: {:?}", &first.addresses()[..]));

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<io::Result<JoinHandle<()>>> = (0..CLIENTS)
        .map(|id| {
            let (picker, stats, stop) = (resolver.picker(), demo.stats.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || client(id, &picker, &stats, &stop))
        })
        .collect();
    let mut result = match clients.iter().find_map(|c| c.as_ref().err()) {
        Some(e) => Err(format!("cannot start a client: {e}").into()),
        None => play(&mut demo, &resolver),
    };

    // Stop the clients first, then the resolver, the pods and the API server.
    stop.store(true, Ordering::Relaxed);
    for handle in clients.into_iter().flatten() {
        if handle.join().is_err() {
            result = Err("a client thread panicked".into());
        }
    }
    let last = resolver.snapshot();
    drop(resolver);
    let (summary, stats) = (demo.table(&last), demo.stats.clone());
    drop(demo);
    println!("\nfinal:\n{summary}");
    let failed = stats.failed.load(Ordering::Relaxed);
    println!(
        "requests: {} ok, {failed} failed, {} retried on another pod",
        stats.ok.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
    );
    println!(
        "attempts that went to the unreachable pod: {} (its node was dead for 2 s)",
        stats.failed_on[DEAD].load(Ordering::Relaxed)
    );
    result?;
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The scenario: one pod breaks and recovers, one pod's node dies, a rolling deploy from v1
/// to v2, a scale-down to one replica, and a restart of it with `maxSurge: 0`.
fn play(demo: &mut Demo, r: &Resolver) -> Fallible {
    demo.pause(ms(2000), r);
    demo.set_state(1, State::Failing, "hangs up on every request", r)?;
    demo.pause(ms(300), r);
    demo.set_state(1, State::NotReady, "its readiness probe failed", r)?;
    demo.pause(ms(700), r);
    demo.set_state(1, State::Ready, "recovered", r)?;
    demo.pause(ms(1000), r);
    demo.stop_backend(DEAD);
    demo.set_state(DEAD, State::Unreachable, "its node died, still listed", r)?;
    demo.pause(ms(2000), r);
    demo.set_state(DEAD, State::NotReady, "the node controller noticed", r)?;
    demo.pause(ms(500), r);
    // Rolling update with maxSurge 1, maxUnavailable 0: a new pod is ready before an old
    // one goes, and the old one leaves the Endpoints before it stops.
    for (old, new) in [(0, 3), (1, 4), (2, 5)] {
        demo.start_pod(new)?;
        demo.log(&format!("~ {} starting", PODS[new].0));
        demo.pause(ms(300), r);
        demo.set_state(new, State::Ready, "its readiness probe passed", r)?;
        demo.pause(ms(300), r);
        if old == DEAD {
            demo.set_state(old, State::Gone, "deleted (its node is gone)", r)?;
            continue;
        }
        demo.set_state(old, State::Terminating, "deleted, in its preStop sleep", r)?;
        demo.pause(GRACE, r);
        demo.stop_pod(old);
    }
    demo.pause(ms(1000), r);
    demo.log("~ scaled down to one replica");
    for pod in [4, 5] {
        demo.set_state(pod, State::Terminating, "deleted, in its preStop sleep", r)?;
    }
    demo.pause(GRACE, r);
    demo.stop_pod(4);
    demo.stop_pod(5);
    demo.pause(ms(500), r);
    // A restart with maxSurge 0 (maxUnavailable 1): the only pod goes first.
    demo.log("~ rollout restart with maxSurge 0");
    demo.set_state(
        3,
        State::Terminating,
        "deleted, serving in its grace period",
        r,
    )?;
    demo.start_pod(6)?;
    demo.log(&format!("~ {} starting", PODS[6].0));
    demo.pause(ms(500), r);
    demo.set_state(6, State::Ready, "its readiness probe passed", r)?;
    demo.pause(GRACE - ms(500), r);
    demo.stop_pod(3);
    demo.pause(ms(1500), r);
    Ok(())
}

/// One client: requests in a loop until `stop`, counting which pod answered each.
fn client(id: usize, picker: &Picker, stats: &Stats, stop: &AtomicBool) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match send(
            picker,
            &format!("hello from client {id}, request {n}"),
            stats,
        ) {
            Ok((pod, retries)) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                stats
                    .retries
                    .fetch_add(u64::from(retries), Ordering::Relaxed);
                if let Some(i) = PODS.iter().position(|p| p.0 == pod) {
                    stats.served[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                if stats.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("request failed: {e}");
                }
            }
        }
        thread::sleep(PAUSE_BETWEEN_REQUESTS);
    }
}

/// Sends one request to the Service the way a custom connector should: through
/// [`Picker::connect_with`], which picks an address, runs the exchange, reports the outcome
/// to the picker (a failing pod is skipped for a while, then probed once) and on an error
/// tries the next address, up to three. Returns the answering pod's name and how many
/// attempts failed before.
///
/// The picker always follows the latest snapshot, so a pod that left the Service is not
/// picked again. Retrying covers the rest: a pod that broke but is still listed (its
/// readiness probe has not failed yet, or its node died), or one picked just before it left.
fn send(picker: &Picker, request: &str, stats: &Stats) -> io::Result<(String, u32)> {
    let mut failed = 0;
    let pod = picker.connect_with(|addr| {
        let result = exchange(addr, request);
        if result.is_err() {
            stats.failed_attempt(addr);
            failed += 1;
        }
        result
    })?;
    Ok((pod, failed))
}

/// One request on a new connection to `addr`: writes a line, reads `<pod>: <line>` back.
fn exchange(addr: SocketAddr, request: &str) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&stream).write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    match answer.strip_suffix('\n').and_then(|a| a.split_once(": ")) {
        Some((pod, echo)) if echo == request => Ok(pod.to_string()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{addr} answered {answer:?}"),
        )),
    }
}

/// A pod's process: a TCP server answering each line with `<pod name>: <line>`. Dropping it
/// closes the listener (new connections are refused) and waits for open connections.
struct Backend {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(name: &'static str, listener: TcpListener) -> io::Result<Backend> {
        let addr = listener.local_addr()?;
        let healthy = Arc::new(AtomicBool::new(true));
        let stopping = Arc::new(AtomicBool::new(false));
        let (h, s) = (healthy.clone(), stopping.clone());
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || accept_loop(name, listener, &h, &s))?;
        let thread = Some(thread);
        Ok(Backend {
            addr,
            healthy,
            stopping,
            thread,
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocked accept() so that it sees the flag (on loopback, connecting to an
        // open listener succeeds at once), then waits for the open connections to finish.
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(name: &str, listener: TcpListener, healthy: &AtomicBool, stopping: &AtomicBool) {
    thread::scope(|scope| {
        for stream in listener.incoming() {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else {
                thread::sleep(Duration::from_millis(1)); // e.g. out of file descriptors
                continue;
            };
            let healthy = healthy.load(Ordering::SeqCst);
            // Without a thread, the connection is dropped and the client retries elsewhere.
            let _ =
                thread::Builder::new().spawn_scoped(scope, move || serve(name, stream, healthy));
        }
        drop(listener); // refuse new connections now; the scope waits for open ones
    });
}

/// Answers each line on `stream`; a broken pod hangs up instead.
fn serve(name: &str, stream: TcpStream, healthy: bool) {
    if !healthy {
        return;
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    for line in BufReader::new(&stream).lines() {
        let Ok(line) = line else { break };
        let answer = format!("{name}: {line}\n");
        if (&stream).write_all(answer.as_bytes()).is_err() {
            break;
        }
    }
}

/// Binds one free port on every pod IP up front, so that the v2 pods surely get the same
/// port later (a Service's pods share the target port). Nobody connects to a pod before
/// it is in the Endpoints, so binding early changes nothing else.
fn reserve_port() -> io::Result<(u16, Vec<TcpListener>)> {
    let mut last_error = io::Error::other("no free port");
    for _ in 0..20 {
        let first = TcpListener::bind((IpAddr::from(PODS[0].1), 0))?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for (_, ip, _) in &PODS[1..] {
            match TcpListener::bind((IpAddr::from(*ip), port)) {
                Ok(listener) => listeners.push(listener),
                Err(e) => {
                    last_error = e;
                    break;
                }
            }
        }
        if listeners.len() == PODS.len() {
            return Ok((port, listeners));
        }
    }
    Err(last_error)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// One entry of `PODS` in the simulated cluster.
struct Slot {
    state: State,
    /// The pod's socket, reserved until the pod starts.
    listener: Option<TcpListener>,
    backend: Option<Backend>,
}

/// The simulated cluster (API server and pods) and the live table.
///
/// Fields drop in order: the pods stop (in-flight requests finish), then the API server.
struct Demo {
    pods: Vec<Slot>,
    server: FakeApiServer,
    port: u16,
    stats: Arc<Stats>,
    started: Instant,
    next_table: Instant,
}

impl Demo {
    fn new() -> Fallible<Demo> {
        let server = FakeApiServer::start()?;
        let (port, listeners) = reserve_port()?;
        let pods = listeners.into_iter().map(|l| Slot {
            state: State::Absent,
            listener: Some(l),
            backend: None,
        });
        let started = Instant::now();
        Ok(Demo {
            pods: pods.collect(),
            server,
            port,
            stats: Arc::default(),
            started,
            next_table: started + Duration::from_secs(1),
        })
    }

    fn start_pod(&mut self, i: usize) -> io::Result<()> {
        if let Some(listener) = self.pods[i].listener.take() {
            self.pods[i].backend = Some(Backend::start(PODS[i].0, listener)?);
            self.pods[i].state = State::Starting;
        }
        Ok(())
    }

    /// Stops the pod's process: from now on its connections are refused.
    fn stop_backend(&mut self, i: usize) {
        self.pods[i].backend = None; // waits for its open connections
    }

    /// The pod's grace period is over: its process ends, and it leaves the EndpointSlice.
    fn stop_pod(&mut self, i: usize) {
        self.stop_backend(i);
        self.pods[i].state = State::Gone;
        self.publish();
        self.log(&format!("x {} stopped: connections refused", PODS[i].0));
    }

    /// Writes the EndpointSlice as the controller would; returns the addresses a resolver
    /// uses, sorted.
    fn publish(&self) -> Vec<SocketAddr> {
        let mut pods = Vec::new();
        let mut used = Vec::new();
        let any_ready = self.pods.iter().any(|slot| slot.state.ready());
        for (&(name, ip, node), slot) in PODS.iter().zip(&self.pods) {
            if let Some(pod) = slot.state.listed(Pod::new(name, ip).node(node)) {
                pods.push(pod);
            }
            if slot.state.used(any_ready) {
                used.push(SocketAddr::from((ip, self.port)));
            }
        }
        let ports = [("tcp", Some(self.port))];
        let v4 = AddressType::Ipv4;
        self.server
            .set_endpoint_slice("demo", "echo-x7k2p", "echo", v4, &ports, &pods);
        used.sort();
        used
    }

    /// Changes a pod's state, updates the Endpoints if that changes them, and waits until
    /// the resolver has the new addresses.
    fn set_state(&mut self, i: usize, state: State, why: &str, r: &Resolver) -> Fallible {
        let before = std::mem::replace(&mut self.pods[i].state, state);
        if let Some(backend) = &self.pods[i].backend {
            backend
                .healthy
                .store(state != State::Failing, Ordering::SeqCst);
        }
        let sign = match state {
            State::Ready => '+',
            State::Failing => '!',
            _ => '-',
        };
        let mut line = format!("{sign} {} {}: {why}", PODS[i].0, state.label());
        let pod = || Pod::new(PODS[i].0, PODS[i].1);
        if state.listed(pod()) != before.listed(pod()) {
            let at = Instant::now();
            let expected = self.publish();
            while r.addresses()[..] != expected[..] {
                if at.elapsed() > Duration::from_secs(5) {
                    return Err(format!("the resolver missed a change: {:?}", r.status()).into());
                }
                thread::sleep(Duration::from_micros(50));
            }
            let version = r.snapshot().version();
            let took = at.elapsed().as_secs_f64() * 1e3;
            line += &format!("  [resolver at v{version} after {took:.1} ms]");
        }
        self.log(&line);
        Ok(())
    }

    /// Sleeps for `duration`, printing the table when one is due.
    fn pause(&mut self, duration: Duration, resolver: &Resolver) {
        let until = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= self.next_table {
                print!("{}", self.table(&resolver.snapshot()));
                self.next_table += Duration::from_secs(1);
            }
            if now >= until {
                break;
            }
            thread::sleep(until.min(self.next_table) - now);
        }
    }

    fn log(&self, text: &str) {
        println!("{:6.2}s  {text}", self.started.elapsed().as_secs_f64());
    }

    /// The table: totals, then each pod's state, whether `snapshot` has it (so that the
    /// picker picks it) and how many requests it served.
    fn table(&self, snapshot: &Snapshot) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = format!(
            "{:6.2}s  snapshot v{}  requests: {} ok, {} retried, {} failed\n",
            self.started.elapsed().as_secs_f64(),
            snapshot.version(),
            load(&self.stats.ok),
            load(&self.stats.retries),
            load(&self.stats.failed),
        );
        out += "         POD        ADDRESS           STATE        PICKED    SERVED    FAILED\n";
        for (i, (&(name, ip, _), slot)) in PODS.iter().zip(&self.pods).enumerate() {
            if slot.state != State::Absent {
                let addr = SocketAddr::from((ip, self.port));
                let picked = snapshot.endpoints().iter().any(|e| e.pod() == Some(name));
                let picked = if picked { "yes" } else { "no" };
                let (state, served) = (slot.state.label(), load(&self.stats.served[i]));
                let failed = load(&self.stats.failed_on[i]);
                out += &format!(
                    "         {name:<11}{addr:<18}{state:<13}{picked:<6}{served:>9}{failed:>10}\n"
                );
            }
        }
        out
    }
}
