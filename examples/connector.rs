//! `connector`: a custom TCP connector with long-lived connections, kept in step with the
//! Service: `cargo run --example connector`.
//!
//! Per-request connections (as in the `demo` example) rebalance by themselves. Long-lived
//! connections, the usual case for gRPC and database-style protocols, do not: a client must
//! open a connection to each pod that becomes ready and close the connection of each pod that
//! leaves. This example keeps one persistent connection per ready pod, driven by
//! `Resolver::updates()` and `Snapshot::diff`, sends requests round robin over them, and on a
//! failed request retries on the next connection. It runs against the simulated API server and
//! two echo "pods" (127.0.0.2 and .3; Linux, where all of 127/8 is loopback), replaces both
//! with a rolling deploy (127.0.0.4 and .5), and reports zero failed requests.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kuberesolver::testkit::{FakeApiServer, Pod};
use kuberesolver::{Config, Resolver, Snapshot, Source};

/// A persistent connection to one pod.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn call(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(answer.trim_end().to_string())
    }
}

/// One connection per ready endpoint, following the resolver's snapshots.
struct Connector {
    conns: BTreeMap<SocketAddr, Conn>,
    current: Snapshot,
    turn: usize,
}

impl Connector {
    fn new(first: Snapshot) -> Connector {
        let mut connector = Connector {
            conns: BTreeMap::new(),
            current: first.clone(),
            turn: 0,
        };
        connector.apply(&first, None);
        connector
    }

    /// Open connections to added endpoints, close those of removed ones.
    fn follow(&mut self, next: Snapshot) {
        let previous = std::mem::replace(&mut self.current, next.clone());
        self.apply(&next, Some(&previous));
    }

    fn apply(&mut self, next: &Snapshot, previous: Option<&Snapshot>) {
        let diff = match previous {
            Some(p) => next.diff(p),
            None => next.diff(&next.clone()),
        };
        for gone in &diff.removed {
            // Dropping the connection closes it; the pod is terminating and drains it.
            self.conns.remove(&gone.addr());
        }
        let wanted = if previous.is_some() {
            diff.added.iter().map(|e| e.addr()).collect()
        } else {
            next.addresses().to_vec()
        };
        for addr in wanted {
            match Conn::open(addr) {
                Ok(conn) => {
                    self.conns.insert(addr, conn);
                }
                Err(e) => eprintln!("  cannot connect to {addr} yet: {e}"),
            }
        }
    }

    /// Send on the next connection in turn; on failure drop that connection and try the next.
    fn call(&mut self, line: &str) -> Result<(String, u32), String> {
        let mut retries = 0;
        for _ in 0..self.conns.len().max(1) + 2 {
            let addrs: Vec<SocketAddr> = self.conns.keys().copied().collect();
            if addrs.is_empty() {
                // Reconnect to whatever is ready now.
                let current = self.current.clone();
                self.apply(&current, None);
                retries += 1;
                continue;
            }
            self.turn = self.turn.wrapping_add(1);
            let addr = addrs[self.turn % addrs.len()];
            let result = match self.conns.get_mut(&addr) {
                Some(conn) => conn.call(line),
                None => continue,
            };
            match result {
                Ok(answer) => return Ok((answer, retries)),
                Err(_) => {
                    self.conns.remove(&addr);
                    retries += 1;
                }
            }
        }
        Err(format!("no pod answered {line:?}"))
    }
}

/// An echo pod: answers each line with `<name>: <line>` until stopped, then closes.
fn pod(
    name: &'static str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(thread::spawn(move || {
        let mut workers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let stop = stop.clone();
                    workers.push(thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut reader = BufReader::new(match stream.try_clone() {
                            Ok(s) => s,
                            Err(_) => return,
                        });
                        let mut writer = stream;
                        let mut line = String::new();
                        while !stop.load(Ordering::Relaxed) {
                            match reader.read_line(&mut line) {
                                Ok(0) => return,
                                Ok(_) => {
                                    if writer
                                        .write_all(format!("{name}: {line}").as_bytes())
                                        .is_err()
                                    {
                                        return;
                                    }
                                    line.clear();
                                }
                                Err(_) => continue,
                            }
                        }
                    }));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        for w in workers {
            let _ = w.join();
        }
    }))
}

fn main() -> Result<(), Box<dyn Error>> {
    let port = TcpListener::bind("127.0.0.2:0")?.local_addr()?.port();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let names = ["echo-v1-a", "echo-v1-b", "echo-v2-a", "echo-v2-b"];
    let stops: Vec<Arc<AtomicBool>> = names
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let mut pods = Vec::new();
    for i in 0..2 {
        pods.push(pod(names[i], at(2 + i as u8), stops[i].clone())?);
    }
    let server = FakeApiServer::start()?;
    let publish = |ready: &[usize]| {
        let list: Vec<Pod> = ready
            .iter()
            .map(|i| Pod::new(names[*i], at(2 + *i as u8).ip()))
            .collect();
        server.set_endpoints("demo", "echo", &[("tcp", port)], &list);
    };
    publish(&[0, 1]);

    let resolver = Resolver::builder("kubernetes:///echo.demo:tcp")
        .config(Config::new(server.url()))
        .source(Source::Endpoints)
        .spawn()?;
    let updates = resolver.updates();
    let mut connector = Connector::new(resolver.wait_ready(Duration::from_secs(5))?);

    let started = Instant::now();
    let (mut ok, mut failed, mut retried) = (0u64, 0u64, 0u64);
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    let new_pods = thread::scope(|scope| {
        // The rolling deploy, on its own thread, as the cluster would do it.
        let deploy = scope.spawn(|| -> Result<Vec<thread::JoinHandle<()>>, String> {
            let mut started_pods = Vec::new();
            let mut ready = vec![0, 1];
            for (old, new) in [(0usize, 2usize), (1, 3)] {
                thread::sleep(Duration::from_millis(600));
                let handle = pod(names[new], at(2 + new as u8), stops[new].clone());
                started_pods.push(handle.map_err(|e| e.to_string())?);
                ready.push(new);
                publish(&ready);
                println!("+ {} ready", names[new]);
                thread::sleep(Duration::from_millis(400));
                ready.retain(|i| *i != old);
                publish(&ready);
                println!("- {} terminating", names[old]);
                thread::sleep(Duration::from_millis(500)); // the preStop grace period
                stops[old].store(true, Ordering::Relaxed);
                println!("x {} stopped", names[old]);
            }
            Ok(started_pods)
        });
        while started.elapsed() < Duration::from_secs(4) {
            while let Ok(snapshot) = updates.try_recv() {
                connector.follow(snapshot);
            }
            match connector.call(&format!("request {ok}")) {
                Ok((answer, retries)) => {
                    ok += 1;
                    retried += u64::from(retries);
                    let pod = answer.split(':').next().unwrap_or("?").to_string();
                    *served.entry(pod).or_default() += 1;
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("FAILED: {e}");
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        deploy
            .join()
            .map_err(|_| "the deploy thread panicked".to_string())?
    })?;
    pods.extend(new_pods);
    for stop in &stops {
        stop.store(true, Ordering::Relaxed);
    }
    drop(connector);
    for p in pods {
        let _ = p.join();
    }
    println!("\n{:<12} {:>8}", "POD", "SERVED");
    for (pod, n) in &served {
        println!("{pod:<12} {n:>8}");
    }
    println!("\nrequests: {ok} ok, {failed} failed, {retried} retried on another connection");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
