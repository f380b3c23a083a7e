//! kuberesolver under tokio and tonic: a rolling deploy behind tonic's balancing `Channel`,
//! with no request lost. Run it with `cargo run` in this folder.
//!
//! kuberesolver has no async inside: one blocking thread lists and watches the Kubernetes
//! API and publishes snapshots on a crossbeam channel. This program shows that it embeds in
//! an async program as it is. A plain thread turns the snapshots into the `Change::Insert` /
//! `Change::Remove` messages that tonic's balancing [`Channel`] consumes ([`feed_balancer`],
//! the diff bridge); everything else is ordinary tokio and tonic.
//!
//! The cluster is simulated: `kuberesolver::testkit::FakeApiServer` plays the API server, and
//! real tonic gRPC servers on 127.0.0.2, .3 and .4 play the pods of Service `echo` in
//! namespace `demo` (all of 127/8 is loopback on Linux). Four client tasks send unary `Echo`
//! calls non-stop while a rolling deploy replaces each v1 pod by a v2 pod (127.0.0.5, .6, .7):
//! the new pod becomes ready and joins the Endpoints, then the old one leaves the Endpoints,
//! keeps serving for a grace period (its preStop sleep), and only then shuts down gracefully.
//!
//! The program ends by itself after about 10 s, prints which pod served how many calls, and
//! exits with status 1 if any call failed (after one retry on `Unavailable`).

use std::convert::Infallible;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{FakeApiServer, Pod};
use kuberesolver::{Config, Resolver, Snapshot, Source, Updates};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::channel::Change;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

type Fallible<T = ()> = Result<T, Box<dyn Error>>;

const TARGET: &str = "kubernetes:///echo.demo:grpc";
const CLIENTS: usize = 4;
const PAUSE_BETWEEN_CALLS: Duration = Duration::from_millis(2);
/// A call (waiting for a ready endpoint included) that takes longer counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a terminating pod keeps serving after it left the Endpoints (its preStop sleep):
/// time for the resolver, the bridge and the balancer to stop sending it new calls.
const GRACE: Duration = Duration::from_secs(1);

/// The pods (name, IP): v1 runs from the start; the rolling deploy replaces it with v2.
const PODS: [(&str, [u8; 4]); 6] = [
    ("echo-v1-a", [127, 0, 0, 2]),
    ("echo-v1-b", [127, 0, 0, 3]),
    ("echo-v1-c", [127, 0, 0, 4]),
    ("echo-v2-a", [127, 0, 0, 5]),
    ("echo-v2-b", [127, 0, 0, 6]),
    ("echo-v2-c", [127, 0, 0, 7]),
];

// ---------------------------------------------------------------------------------------
// The gRPC service, written by hand: what tonic-build would generate from this proto, so
// that the example needs no protoc and no build script.
//
//     syntax = "proto3";
//     package echo;
//     service Echo { rpc Echo(EchoRequest) returns (EchoReply); }
//     message EchoRequest { string message = 1; }
//     message EchoReply { string message = 1; string pod = 2; }
// ---------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
    /// The name of the pod that answered.
    #[prost(string, tag = "2")]
    pod: String,
}

/// The HTTP/2 path of the `Echo` method: `/{package}.{service}/{method}`.
const ECHO_PATH: &str = "/echo.Echo/Echo";

/// The client side of `Echo`, as a generated client's method does it: wait until the
/// channel can take a call (the balancer has a ready endpoint), then one unary call.
async fn echo(channel: Channel, message: String) -> Result<EchoReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let request = Request::new(EchoRequest { message });
    let path = PathAndQuery::from_static(ECHO_PATH);
    let reply = grpc.unary(request, path, ProstCodec::default()).await?;
    Ok(reply.into_inner())
}

/// The server side: one pod's `echo.Echo` service, as a generated `EchoServer` does it. It
/// routes on the path and hands the HTTP request to `tonic::server::Grpc::unary`, which
/// decodes the request, calls [`EchoMethod`] and encodes the reply.
#[derive(Clone)]
struct EchoService {
    pod: &'static str,
}

/// The name `Server::add_service` routes on (`/echo.Echo/*`).
impl NamedService for EchoService {
    const NAME: &'static str = "echo.Echo";
}

impl Service<http::Request<Body>> for EchoService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = EchoMethod { pod: self.pod };
        Box::pin(async move {
            Ok(match request.uri().path() {
                ECHO_PATH => {
                    Grpc::new(ProstCodec::default())
                        .unary(method, request)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// The `Echo` method itself: the message back, and the pod's name.
struct EchoMethod {
    pod: &'static str,
}

impl UnaryService<EchoRequest> for EchoMethod {
    type Response = EchoReply;
    type Future = std::future::Ready<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let message = request.into_inner().message;
        let pod = self.pod.to_string();
        std::future::ready(Ok(Response::new(EchoReply { message, pod })))
    }
}

// ---------------------------------------------------------------------------------------
// The diff bridge: kuberesolver's snapshots in, tonic's balancer changes out.
// ---------------------------------------------------------------------------------------

/// Feeds tonic's balancing [`Channel`] from the resolver, until either side goes away.
///
/// Run it on a plain thread (or `tokio::task::spawn_blocking`): `updates` is a blocking
/// crossbeam receiver, and `blocking_send` must not be called on a runtime worker.
///
/// For each snapshot, [`Snapshot::diff`] against the last one forwarded gives the endpoints
/// that appeared and the ones that left; each becomes `Change::Insert(addr, endpoint)` or
/// `Change::Remove(addr)`, keyed by the address. Diffing against the last snapshot
/// *forwarded* keeps the balancer exact even though `updates` skips intermediate snapshots
/// (latest wins). The first snapshot is inserted whole. An address in both lists only
/// changed details (node, conditions): the balancer is told nothing, so that its open
/// connection to that pod stays. Insertions go first, so that even a change replacing every
/// pod never leaves the balancer empty.
///
/// Returns when the resolver is dropped (`updates` ends) or the `Channel` is (`send` fails).
fn feed_balancer(updates: &Updates, balancer: &mpsc::Sender<Change<SocketAddr, Endpoint>>) {
    let mut forwarded: Option<Snapshot> = None;
    for snapshot in updates {
        let (added, removed) = match &forwarded {
            None => (snapshot.endpoints().to_vec(), Vec::new()),
            Some(previous) => {
                let diff = snapshot.diff(previous);
                (diff.added, diff.removed)
            }
        };
        let added: Vec<SocketAddr> = added.iter().map(|e| e.addr()).collect();
        let removed: Vec<SocketAddr> = removed.iter().map(|e| e.addr()).collect();
        for &addr in added.iter().filter(|a| !removed.contains(a)) {
            // The balancer opens (and reopens) the connection itself.
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .expect("a socket address makes a valid URI")
                .connect_timeout(Duration::from_secs(1));
            log(&format!("  bridge: v{} Insert({addr})", snapshot.version()));
            if balancer
                .blocking_send(Change::Insert(addr, endpoint))
                .is_err()
            {
                return;
            }
        }
        for &addr in removed.iter().filter(|a| !added.contains(a)) {
            log(&format!("  bridge: v{} Remove({addr})", snapshot.version()));
            if balancer.blocking_send(Change::Remove(addr)).is_err() {
                return;
            }
        }
        forwarded = Some(snapshot);
    }
}

// ---------------------------------------------------------------------------------------
// The program: the simulated cluster, the clients, the rolling deploy.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    served: [AtomicU64; PODS.len()],
}

#[tokio::main]
async fn main() -> Fallible {
    LazyLock::force(&STARTED);
    // The API server and the three v1 pods, published as the Endpoints of `echo`. The fake
    // API server runs on its own threads; its methods only change memory, so calling them
    // from async code is fine.
    let mut cluster = Cluster::new(FakeApiServer::start()?).await?;
    for pod in 0..3 {
        cluster.start_pod(pod)?;
        cluster.pods[pod].state = State::Ready;
    }
    cluster.publish();

    // `spawn` only starts the watcher thread, but `wait_ready` blocks: both run on tokio's
    // blocking pool, off the runtime's worker threads.
    let url = cluster.api.url();
    let resolver = tokio::task::spawn_blocking(move || -> Result<Resolver, kuberesolver::Error> {
        let resolver = Resolver::builder(TARGET)
            .config(Config::new(url))
            .source(Source::Endpoints)
            .spawn()?;
        resolver.wait_ready(Duration::from_secs(5))?;
        Ok(resolver)
    })
    .await??;
    log(&format!(
        "resolved {TARGET}: {:?}",
        &resolver.addresses()[..]
    ));

    // The balancing channel starts empty; the bridge fills it from the resolver's updates.
    let (channel, balancer) = Channel::balance_channel(64);
    let updates = resolver.updates();
    let bridge = std::thread::Builder::new()
        .name("balancer-feed".to_string())
        .spawn(move || feed_balancer(&updates, &balancer))?;

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<JoinHandle<()>> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, channel.clone(), stats.clone(), stop.clone())))
        .collect();
    drop(channel);

    let mut result = rolling_deploy(&mut cluster, &resolver).await;

    // Stop the clients, then the resolver (which ends `updates`, so the bridge returns), then
    // the pods. Dropping the resolver joins its thread: on the blocking pool as well.
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        if client.await.is_err() {
            result = Err("a client task panicked".into());
        }
    }
    let last = resolver.snapshot();
    let bridge_ended = tokio::task::spawn_blocking(move || {
        drop(resolver);
        bridge.join().is_ok()
    });
    if !bridge_ended.await? {
        result = Err("the bridge thread panicked".into());
    }
    for pod in 0..PODS.len() {
        cluster.stop_pod(pod).await;
    }

    println!("\n{}", cluster.table(&last, &stats));
    let failed = stats.failed.load(Ordering::Relaxed);
    println!(
        "requests: {} ok, {failed} failed, {} retried",
        stats.ok.load(Ordering::Relaxed),
        stats.retried.load(Ordering::Relaxed),
    );
    result?;
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Rolling update with maxSurge 1, maxUnavailable 0, the way Kubernetes does it: a new pod
/// is ready before an old one goes, and the old one leaves the Endpoints before it stops.
async fn rolling_deploy(cluster: &mut Cluster, r: &Resolver) -> Fallible {
    tokio::time::sleep(ms(2000)).await;
    for (old, new) in [(0, 3), (1, 4), (2, 5)] {
        cluster.start_pod(new)?;
        log(&format!("~ {} starting", PODS[new].0));
        tokio::time::sleep(ms(300)).await;
        cluster
            .set_state(new, State::Ready, "its readiness probe passed", r)
            .await?;
        tokio::time::sleep(ms(300)).await;
        let why = "deleted, in its preStop sleep";
        cluster.set_state(old, State::Terminating, why, r).await?;
        tokio::time::sleep(GRACE).await;
        cluster.stop_pod(old).await;
    }
    tokio::time::sleep(ms(2000)).await;
    Ok(())
}

/// One client: `Echo` calls in a loop until `stop`, counting which pod answered each.
///
/// A call that fails with `Unavailable` (the pod went away under it) is retried once; the
/// balancer picks an endpoint again for the retry.
async fn client(id: usize, channel: Channel, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let message = format!("hello from client {id}, call {n}");
        let mut result = call(&channel, &message).await;
        if matches!(&result, Err(status) if status.code() == Code::Unavailable) {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            result = call(&channel, &message).await;
        }
        match result {
            Ok(reply) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = PODS.iter().position(|p| p.0 == reply.pod) {
                    stats.served[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(status) => {
                if stats.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("call failed: {status}");
                }
            }
        }
        tokio::time::sleep(PAUSE_BETWEEN_CALLS).await;
    }
}

/// One `Echo` call with a deadline, checking that the reply echoes the message.
async fn call(channel: &Channel, message: &str) -> Result<EchoReply, Status> {
    let reply = tokio::time::timeout(CALL_TIMEOUT, echo(channel.clone(), message.to_string()))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no reply within {CALL_TIMEOUT:?}")))??;
    if reply.message != message {
        return Err(Status::data_loss(format!(
            "{} echoed {:?}",
            reply.pod, reply.message
        )));
    }
    Ok(reply)
}

/// What the cluster says about a pod.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Absent,
    Starting,
    Ready,
    Terminating,
    Gone,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Absent => "-",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Terminating => "terminating",
            State::Gone => "gone",
        }
    }
}

/// One entry of `PODS` in the simulated cluster.
struct Slot {
    state: State,
    /// The pod's socket, bound up front and served from when the pod starts.
    listener: Option<TcpListener>,
    server: Option<Running>,
}

/// A running pod's gRPC server: its shutdown signal and its task.
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// The simulated cluster: the API server and the pods.
struct Cluster {
    api: FakeApiServer,
    port: u16,
    pods: Vec<Slot>,
}

impl Cluster {
    async fn new(api: FakeApiServer) -> Fallible<Cluster> {
        let (port, listeners) = reserve_port().await?;
        let pods = listeners.into_iter().map(|listener| Slot {
            state: State::Absent,
            listener: Some(listener),
            server: None,
        });
        Ok(Cluster {
            api,
            port,
            pods: pods.collect(),
        })
    }

    /// Starts pod `i`'s gRPC server on its reserved socket.
    fn start_pod(&mut self, i: usize) -> Fallible {
        let slot = &mut self.pods[i];
        let listener = slot.listener.take().ok_or("the pod was started before")?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = Server::builder()
            .add_service(EchoService { pod: PODS[i].0 })
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = signal.await;
            });
        slot.server = Some(Running {
            shutdown,
            task: tokio::spawn(server),
        });
        slot.state = State::Starting;
        Ok(())
    }

    /// Stops pod `i`'s server gracefully, if it runs: it closes its socket, lets the calls in
    /// flight finish and tells clients to go away (HTTP/2 GOAWAY), then returns.
    async fn stop_pod(&mut self, i: usize) {
        let Some(Running { shutdown, task }) = self.pods[i].server.take() else {
            return;
        };
        let _ = shutdown.send(());
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("{} failed: {e}", PODS[i].0),
            Ok(Err(e)) => eprintln!("{} panicked: {e}", PODS[i].0),
            Err(_) => eprintln!("{} did not stop within 5 s", PODS[i].0),
        }
        if self.pods[i].state == State::Terminating {
            self.pods[i].state = State::Gone;
            log(&format!("x {} stopped", PODS[i].0));
        }
    }

    /// Writes the Endpoints as the controller would; returns the ready addresses, sorted.
    fn publish(&self) -> Vec<SocketAddr> {
        let ready: Vec<(&str, [u8; 4])> = PODS
            .iter()
            .zip(&self.pods)
            .filter(|(_, slot)| slot.state == State::Ready)
            .map(|(&pod, _)| pod)
            .collect();
        let pods: Vec<Pod> = ready.iter().map(|&(name, ip)| Pod::new(name, ip)).collect();
        self.api
            .set_endpoints("demo", "echo", &[("grpc", self.port)], &pods);
        let mut addrs: Vec<SocketAddr> = ready
            .iter()
            .map(|&(_, ip)| SocketAddr::from((ip, self.port)))
            .collect();
        addrs.sort();
        addrs
    }

    /// Changes a pod's state, updates the Endpoints, and waits until the resolver has the new
    /// addresses (the bridge forwards them to the balancer at the same moment).
    async fn set_state(&mut self, i: usize, state: State, why: &str, r: &Resolver) -> Fallible {
        self.pods[i].state = state;
        let sign = if state == State::Ready { '+' } else { '-' };
        log(&format!("{sign} {} {}: {why}", PODS[i].0, state.label()));
        let at = Instant::now();
        let expected = self.publish();
        while r.addresses()[..] != expected[..] {
            if at.elapsed() > Duration::from_secs(5) {
                return Err(format!("the resolver missed a change: {:?}", r.status()).into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = at.elapsed().as_secs_f64() * 1e3;
        let version = r.snapshot().version();
        log(&format!(
            "  resolver: at v{version}, seen {took:.1} ms after the change"
        ));
        Ok(())
    }

    /// Each pod: its final state, whether the last snapshot has it, calls it served.
    fn table(&self, last: &Snapshot, stats: &Stats) -> String {
        let mut out = format!("final (snapshot v{}):\n", last.version());
        out += "  POD        ADDRESS           STATE        RESOLVED   SERVED\n";
        for (i, (&(name, ip), slot)) in PODS.iter().zip(&self.pods).enumerate() {
            let addr = SocketAddr::from((ip, self.port));
            let resolved = if last.addresses().contains(&addr) {
                "yes"
            } else {
                "no"
            };
            let served = stats.served[i].load(Ordering::Relaxed);
            let state = slot.state.label();
            out += &format!("  {name:<11}{addr:<18}{state:<13}{resolved:<8}{served:>9}\n");
        }
        out
    }
}

/// Binds one free port on every pod IP up front, so that the v2 pods surely get the same
/// port later (a Service's pods share the target port). Nobody connects to a pod before it
/// is in the Endpoints, so binding early changes nothing else.
async fn reserve_port() -> Fallible<(u16, Vec<TcpListener>)> {
    for _ in 0..20 {
        let first = TcpListener::bind((IpAddr::from(PODS[0].1), 0)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for &(_, ip) in &PODS[1..] {
            match TcpListener::bind((IpAddr::from(ip), port)).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => break,
            }
        }
        if listeners.len() == PODS.len() {
            return Ok((port, listeners));
        }
    }
    Err("no port free on all the pod IPs".into())
}

static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Prints a line with the time since the start.
fn log(text: &str) {
    println!("{:6.2}s  {text}", STARTED.elapsed().as_secs_f64());
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
