//! The picker against real pods: TCP listeners on 127.0.0.x (all of 127/8 is loopback on
//! Linux), one Service port shared by all, as in a cluster. A pod that refuses connections,
//! one that accepts and then never answers, and a one-replica rollout with `maxSurge: 0`,
//! each through `Picker::connect_with`.

mod support;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
use kuberesolver::{Config, Ejection, Picker, Resolver, Source};
use support::*;

/// How long an exchange may wait for a pod before it counts as failed.
const TIMEOUT: Duration = Duration::from_millis(200);

/// What a pod does with a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers each line with `<name>: <line>`.
    Echo,
    /// Accepts, reads nothing, answers nothing (a stuck process).
    Stall,
}

/// A pod's process: serves its listener until dropped, then refuses connections.
struct Backend {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(name: &'static str, listener: TcpListener, behaviour: Behaviour) -> Backend {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let (halt, count) = (stop.clone(), served.clone());
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            thread::scope(|scope| {
                while !halt.load(Ordering::Relaxed) {
                    let Ok((stream, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    match behaviour {
                        Behaviour::Stall => held.push(stream),
                        Behaviour::Echo => {
                            let (halt, count) = (&halt, &count);
                            scope.spawn(move || echo(name, &stream, halt, count));
                        }
                    }
                }
            });
        });
        Backend {
            stop,
            served,
            thread: Some(thread),
        }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo(name: &str, stream: &TcpStream, stop: &AtomicBool, served: &AtomicU64) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if (&*stream)
                    .write_all(format!("{name}: {line}").as_bytes())
                    .is_err()
                {
                    return;
                }
                served.fetch_add(1, Ordering::Relaxed);
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// One request on a new connection: the answering pod's name.
fn exchange(addr: SocketAddr, request: &str) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    (&stream).write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    match answer.trim_end().split_once(": ") {
        Some((pod, echoed)) if echoed == request => Ok(pod.to_string()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, answer)),
    }
}

/// Listeners on 127.0.0.`last` for each of `lasts`, all on one port; `None` where 127/8 is
/// not all loopback (then the caller reports the missing prerequisite).
fn listeners(lasts: &[u8]) -> Option<(u16, Vec<TcpListener>)> {
    for _ in 0..20 {
        let first = TcpListener::bind((IpAddr::from([127, 0, 0, lasts[0]]), 0)).ok()?;
        let port = first.local_addr().ok()?.port();
        let mut all = vec![first];
        for last in &lasts[1..] {
            match TcpListener::bind((IpAddr::from([127, 0, 0, *last]), port)) {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == lasts.len() {
            return Some((port, all));
        }
    }
    None
}

fn last(addr: SocketAddr) -> u8 {
    match addr.ip() {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(_) => 0,
    }
}

fn at(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

/// The Service `echo` in `prod` as one EndpointSlice of these pods on `port`.
fn publish(server: &FakeApiServer, port: u16, pods: &[Pod]) {
    let ports = [("tcp", Some(port))];
    server.set_endpoint_slice("prod", "echo-x1", "echo", AddressType::Ipv4, &ports, pods);
}

fn resolver(server: &FakeApiServer) -> Resolver {
    with_fast_retries(Resolver::builder("kubernetes:///echo.prod:tcp"))
        .config(Config::new(server.url()))
        .source(Source::EndpointSlices)
        .spawn()
        .expect("resolver spawns")
}

/// Sets its flag when dropped: the client stops even when the test fails mid-way (a failed
/// assertion unwinds through `thread::scope`, which waits for the client).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// When each address was tried.
type Attempts = BTreeMap<SocketAddr, Vec<Instant>>;

/// Requests through `picker` until `stop`: how many succeeded and failed, and the attempts.
fn client(picker: &Picker, stop: &AtomicBool) -> (u64, u64, Attempts) {
    let mut attempts = Attempts::new();
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let result = picker.connect_with(|addr| {
            attempts.entry(addr).or_default().push(Instant::now());
            exchange(addr, &format!("request {ok}"))
        });
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                eprintln!("request failed: {e}");
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    (ok, failed, attempts)
}

#[test]
fn through_connect_with_no_request_fails_and_a_dead_pod_is_tried_once_per_ejection() {
    let Some((port, mut listeners)) = listeners(&[2, 3, 4]) else {
        missing_prerequisite("listeners on 127.0.0.2-4 (all of 127/8 is loopback on Linux)");
        return;
    };
    let stalled = Backend::start("stalled", listeners.remove(2), Behaviour::Stall);
    drop(listeners.remove(1)); // 127.0.0.3: nobody listens, connections are refused
    let healthy = Backend::start("healthy", listeners.remove(0), Behaviour::Echo);
    let server = cluster();
    let pods = [2, 3, 4].map(|last| Pod::new(format!("echo-{last}"), [127, 0, 0, last]));
    publish(&server, port, &pods);
    let r = resolver(&server);
    r.wait_ready(PATIENCE).expect("resolves");
    // The default ejection: 1 s, doubling; far longer than a stalled exchange (200 ms).
    let picker = r.picker();
    let initial = Ejection::default().initial_time();

    let stop = AtomicBool::new(false);
    let (ok, failed, attempts) = thread::scope(|s| {
        let requests = s.spawn(|| client(&picker, &stop));
        let stopping = StopOnDrop(&stop);
        thread::sleep(Duration::from_secs(2));
        drop(stopping);
        requests.join().expect("client")
    });
    let count: BTreeMap<SocketAddr, usize> = attempts.iter().map(|(a, t)| (*a, t.len())).collect();
    assert_eq!(failed, 0, "{ok} ok; attempts {count:?}");
    assert_eq!(
        healthy.served(),
        ok,
        "every request answered by the healthy pod"
    );
    // Each failure ejects the pod for at least 80% of the initial time (more after the
    // first), and one pick probes it when that is over: one attempt per ejection.
    let shortest = initial.mul_f64(0.8);
    for (last, what) in [(3, "refusing"), (4, "stalled")] {
        let tries = attempts.get(&at(last, port)).map_or(&[][..], Vec::as_slice);
        assert!(!tries.is_empty(), "the {what} pod was tried: {count:?}");
        for pair in tries.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= shortest,
                "the {what} pod was tried again {gap:?} after a failure: {count:?}, {ok} ok"
            );
        }
    }
    drop(stalled);
}

#[test]
fn a_one_replica_rollout_with_max_surge_zero_serves_every_request() {
    let Some((port, mut listeners)) = listeners(&[5, 6]) else {
        missing_prerequisite("listeners on 127.0.0.5-6 (all of 127/8 is loopback on Linux)");
        return;
    };
    let new = Backend::start("echo-new", listeners.remove(1), Behaviour::Echo);
    let old = Backend::start("echo-old", listeners.remove(0), Behaviour::Echo);
    let server = cluster();
    let (old_pod, new_pod) = (
        Pod::new("echo-old", [127, 0, 0, 5]),
        Pod::new("echo-new", [127, 0, 0, 6]),
    );
    publish(&server, port, std::slice::from_ref(&old_pod));
    let r = resolver(&server);
    r.wait_ready(PATIENCE).expect("resolves");
    let picker = r.picker();
    let stop = AtomicBool::new(false);
    let old = Mutex::new(Some(old));
    let result = thread::scope(|s| {
        let requests = s.spawn(|| client(&picker, &stop));
        let stopping = StopOnDrop(&stop);
        // Each phase lasts 300 ms once the resolver has it; returns the addresses it used.
        let phase = |pods: &[Pod]| {
            let before = r.snapshot().version();
            publish(&server, port, pods);
            eventually("the resolver has the change", || {
                r.snapshot().version() > before
            });
            let used: Vec<u8> = r.snapshot().addresses().iter().map(|a| last(*a)).collect();
            thread::sleep(Duration::from_millis(300));
            used
        };
        thread::sleep(Duration::from_millis(300));
        // maxSurge 0: the old pod is deleted first; it serves through its grace period while
        // its replacement starts.
        let terminating = old_pod.clone().terminating(true);
        let used = [
            phase(&[terminating.clone(), new_pod.clone().ready(false)]),
            phase(&[terminating, new_pod.clone()]),
            phase(std::slice::from_ref(&new_pod)),
        ];
        // Its grace period over, the old pod's process ends.
        drop(old.lock().map(|mut o| o.take()));
        thread::sleep(Duration::from_millis(300));
        drop(stopping);
        (requests.join().expect("client"), used)
    });
    let ((ok, failed, attempts), used) = result;
    let count: BTreeMap<SocketAddr, usize> = attempts.iter().map(|(a, t)| (*a, t.len())).collect();
    assert_eq!(failed, 0, "{ok} ok; attempts {count:?}; pods used {used:?}");
    assert_eq!(
        used,
        [vec![5], vec![6], vec![6]],
        "the terminating pod until the new one is ready"
    );
    assert!(new.served() > 0, "the new pod served");
    assert!(ok > 100, "requests flowed throughout: {ok}");
}
