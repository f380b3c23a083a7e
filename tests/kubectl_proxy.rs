//! A real third-party proxy in the path: `kubectl proxy` between the resolver and the fake API
//! server (TLS with the test CA, a bearer token the proxy adds). The proxy re-chunks the
//! watch stream, answers for a missing upstream itself, and is what `Config::new
//! ("http://127.0.0.1:8001")` is for. Without `kubectl` on PATH these tests fail under CI
//! (`.ci/run` installs it) and are skipped locally with a line on stderr.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{
    ChunkMode, FakeApiServer, Fault, Pod, RequestRecord, Resource, TlsIdentity,
};
use kuberesolver::{Backoff, Config, Resolver, Source};
use support::*;

const TOKEN: &str = "proxy-token-0123456789";

/// A `kubectl proxy` child process, killed and reaped on drop (also when a test panics),
/// with its temporary kubeconfig.
struct KubectlProxy {
    child: Child,
    port: u16,
    dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl KubectlProxy {
    /// Starts `kubectl proxy --port=0` in front of `server`; `None` when kubectl is not on
    /// PATH.
    fn start(server: &FakeApiServer, name: &str) -> Option<KubectlProxy> {
        let dir = temp_dir(&format!("kubectl-proxy-{name}"));
        let config_path = write_kubeconfig(server, &dir);
        let spawned = Command::new("kubectl")
            .arg("proxy")
            .arg("--port=0")
            .arg(format!("--kubeconfig={}", config_path.display()))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            Err(e) => panic!("cannot run kubectl: {e}"),
        };
        // Drain both pipes for the child's whole life, so it never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    stderr
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&line);
                    line.clear();
                }
            });
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = tx.send(line.clone());
                line.clear();
            }
        });
        let mut proxy = KubectlProxy {
            child,
            port: 0,
            dir,
            stderr,
        };
        let deadline = Instant::now() + PATIENCE;
        let mut seen = String::new();
        while proxy.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    // "Starting to serve on 127.0.0.1:PORT"
                    if let Some(addr) = line.trim().strip_prefix("Starting to serve on ") {
                        let addr: SocketAddr = addr.parse().expect("kubectl's address");
                        proxy.port = addr.port();
                    }
                }
                Err(_) => panic!(
                    "kubectl proxy did not start; stdout: {seen:?}, stderr: {:?}, exit: {:?}",
                    proxy.stderr(),
                    proxy.child.try_wait()
                ),
            }
        }
        Some(proxy)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for KubectlProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kubectl proxy's stderr:\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS fake API server that requires [`TOKEN`], with frequent bookmarks and events cut
/// into small chunks (which the proxy re-chunks).
fn tls_cluster() -> FakeApiServer {
    FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .token(Some(TOKEN.to_owned()))
        .bookmark_interval(Duration::from_millis(200))
        .chunk_mode(ChunkMode::Split(7))
        .start()
        .expect("server")
}

fn through(proxy: &KubectlProxy, source: Source) -> Resolver {
    Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(proxy.url()))
        .source(source)
        .backoff(
            Backoff::new()
                .initial(Duration::from_millis(100))
                .floor(Duration::from_millis(50))
                .cap(Duration::from_millis(400)),
        )
        .spawn()
        .expect("spawn")
}

/// Waits until the server has received a request matching `which` after the `seen` first.
fn requested_after(
    server: &FakeApiServer,
    seen: usize,
    which: impl Fn(&RequestRecord) -> bool,
) -> bool {
    server.wait_for_requests(PATIENCE, |requests| requests.iter().skip(seen).any(&which))
}

#[test]
fn endpoints_changes_and_watch_faults_go_through_kubectl_proxy() {
    let server = tls_cluster();
    let Some(proxy) = KubectlProxy::start(&server, "endpoints") else {
        missing_prerequisite("kubectl on PATH");
        return;
    };
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(1));
    let r = through(&proxy, Source::Endpoints);
    converges_to(&r, &addrs(8080, [1]));
    assert!(
        server.wait_for_watches(1, PATIENCE),
        "the watch reaches the server"
    );
    let requests = server.requests();
    assert!(
        requests.iter().all(|q| q.bearer_token() == Some(TOKEN)),
        "the proxy added the kubeconfig's token: {requests:?}"
    );

    // Changes stream through while the watch stays open; bookmarks too.
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(3));
    converges_to(&r, &addrs(8080, 1..=3));
    let mut some_unready = pods(3);
    some_unready[1].ready = false;
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &some_unready);
    converges_to(&r, &addrs(8080, [1, 3]));
    eventually("bookmarks arrive through the proxy", || {
        r.status().counters.bookmarks >= 2
    });
    let status = r.status();
    assert_eq!(status.counters.watches, 1, "one open watch: {status:#?}");
    assert_eq!(status.counters.errors, 0, "{status:#?}");

    // A clean end upstream is a clean end downstream: watch again from where it was.
    let seen = server.requests().len();
    assert_eq!(server.inject(Fault::EndCleanly), 1);
    assert!(
        requested_after(&server, seen, RequestRecord::is_watch),
        "re-watched"
    );
    assert!(
        !server.requests()[seen..].iter().any(|q| q.is_list()),
        "no relist after a clean end"
    );
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(4));
    converges_to(&r, &addrs(8080, 1..=4));

    // 410 Expired in the stream: relist.
    let seen = server.requests().len();
    assert!(server.wait_for_watches(1, PATIENCE));
    assert_eq!(server.inject(Fault::Expired), 1);
    assert!(
        requested_after(&server, seen, RequestRecord::is_list),
        "relisted"
    );
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(2));
    converges_to(&r, &addrs(8080, [1, 2]));
    assert!(r.status().counters.relists >= 1);

    // The upstream connection breaks mid-event: the proxy cuts the downstream one.
    assert!(server.wait_for_watches(1, PATIENCE));
    assert_eq!(server.inject(Fault::CutMidEvent), 1);
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(5));
    converges_to(&r, &addrs(8080, 1..=5));

    // The API server goes away: the proxy itself answers, with a 5xx and a plain-text body
    // (kubectl 1.32: `500`, `dial tcp ...: connection refused`). The last good addresses
    // stay, and it comes back on its own.
    let good = r.snapshot();
    server.stop_listening();
    let errors = r.status().counters.errors;
    eventually("the proxy's own error shows", || {
        r.status().counters.errors >= errors + 2
    });
    let error = r.status().last_error.expect("an error");
    println!("with the API server down, through kubectl proxy: {error}");
    assert!(
        error
            .status()
            .is_some_and(|code| (500..600).contains(&code)),
        "{error}"
    );
    assert_eq!(
        r.snapshot().version(),
        good.version(),
        "errors never publish"
    );
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(1));
    server.resume_listening().expect("resume");
    converges_to(&r, &addrs(8080, [1]));
}

#[test]
fn endpoint_slices_merge_and_follow_changes_through_kubectl_proxy() {
    let server = tls_cluster();
    let Some(proxy) = KubectlProxy::start(&server, "slices") else {
        missing_prerequisite("kubectl on PATH");
        return;
    };
    let slice = |name: &str, pods: &[Pod]| echo_slice(&server, name, pods);
    let all = pods(6);
    slice("echo-a", &all[..3]);
    slice("echo-b", &all[3..]);
    let r = through(&proxy, Source::EndpointSlices);
    converges_to(&r, &addrs(8080, 1..=6));
    assert_eq!(r.status().source, Some(Source::EndpointSlices));
    assert!(
        server.wait_for_watches(1, PATIENCE),
        "the watch reaches the server"
    );
    // (The Google Cloud SDK's kubectl asks for `/version` first, to pick a kubectl.)
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .filter(|q| q.verb.is_some())
            .all(|q| q.resource == Some(Resource::EndpointSlices)),
        "{requests:#?}"
    );

    // One slice changes, the other stays.
    slice("echo-b", &all[3..4]);
    converges_to(&r, &addrs(8080, 1..=4));
    // A slice goes away.
    server.delete(Resource::EndpointSlices, "prod", "echo-a");
    converges_to(&r, &addrs(8080, [4]));

    // A clean end, then 410 Expired: still converges.
    let seen = server.requests().len();
    assert_eq!(server.inject(Fault::EndCleanly), 1);
    assert!(
        requested_after(&server, seen, RequestRecord::is_watch),
        "re-watched"
    );
    slice("echo-a", &all[..2]);
    converges_to(&r, &addrs(8080, [1, 2, 4]));
    let seen = server.requests().len();
    assert!(server.wait_for_watches(1, PATIENCE));
    assert_eq!(server.inject(Fault::Expired), 1);
    assert!(
        requested_after(&server, seen, RequestRecord::is_list),
        "relisted"
    );
    slice("echo-c", &all[4..]);
    converges_to(&r, &addrs(8080, [1, 2, 4, 5, 6]));
    eventually("bookmarks arrive through the proxy", || {
        r.status().counters.bookmarks >= 2
    });
    let status = r.status();
    assert!(
        status.counters.relists >= 1 && status.counters.errors == 0,
        "{status:#?}"
    );
}
