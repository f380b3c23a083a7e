//! Shutdown and leaks: dropping a resolver in any state is prompt and leaves no thread, no
//! socket and no file descriptor behind; dead servers and silent streams are caught by the
//! timeouts; a server that ends every watch at once is not hammered.
//!
//! Threads are counted by name in `/proc/self/task/*/comm` (Linux keeps the first 15 bytes):
//! the watcher thread is `kuberesolver <service>`, so each test names its services with its own
//! two-letter prefix and counts `kuberesolver <prefix>` threads, which lets the tests run in
//! parallel. File descriptors are process-wide: the one test that counts them runs alone.

mod support;

use std::io::ErrorKind as IoErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kuberesolver::testkit::{Failure, FakeApiServer, Fault};
use kuberesolver::{Backoff, Config, ErrorKind, Resolver, Source};
use support::*;

/// The leak test holds it for writing (it counts the process's file descriptors); every
/// other test holds it for reading.
static PROCESS: RwLock<()> = RwLock::new(());

fn shared_process() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner())
}

fn whole_process() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(|e| e.into_inner())
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable")
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .count()
}

/// Watcher threads of resolvers whose service name starts with the two letters `tag`
/// (`kuberesolver ` is 13 bytes: the tag fills the 15 bytes Linux keeps). Threads the
/// watcher itself spawns inherit its name, so they count too.
fn watcher_threads(tag: &str) -> usize {
    assert_eq!(tag.len(), 2, "a tag is two letters");
    threads_named(&format!("kuberesolver {tag}"))
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// Drops `resolver` (whose service starts with `tag`): the drop returns within a second and
/// its thread is gone.
/// (Threads are counted on Linux only.)
fn drop_promptly(state: &str, resolver: Resolver, tag: &str) {
    drop_within(Duration::from_secs(1), state, resolver, tag);
}

/// [`drop_promptly`], with its own bound on how long the drop may take.
fn drop_within(bound: Duration, state: &str, resolver: Resolver, tag: &str) {
    let linux = cfg!(target_os = "linux");
    assert!(
        !linux || watcher_threads(tag) >= 1,
        "{state}: the watcher thread runs before the drop"
    );
    let started = Instant::now();
    drop(resolver);
    let took = started.elapsed();
    assert!(took < bound, "{state}: dropping took {took:?}");
    if !linux {
        return;
    }
    eventually(
        &format!("{state}: no kuberesolver {tag}* thread is left"),
        || watcher_threads(tag) == 0,
    );
}

/// A resolver on Service `service` in `prod` with one ready pod, resolved and watching.
fn watching_one_pod(server: &FakeApiServer, service: &str) -> Resolver {
    server.set_endpoints("prod", service, &[("grpc", 8080)], &pods(1));
    let r = resolver(server, &format!("kubernetes:///{service}.prod:grpc"));
    converges_to(&r, &addrs(8080, [1]));
    assert!(server.wait_for_watches(1, PATIENCE), "a watch opens");
    r
}

/// A builder on `url` with the default timeouts and the default backoff policy.
fn plain_builder(url: &str, target: &str) -> kuberesolver::Builder {
    Resolver::builder(target)
        .config(Config::new(url))
        .source(Source::Endpoints)
}

/// A TCP server that accepts connections and then neither reads nor answers: a hung API
/// server, or a load balancer whose backend is gone.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let accepted = accepted.clone();
            std::thread::Builder::new()
                .name("silent-server".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        match listener.accept() {
                            Ok((stream, _)) => accepted
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(stream),
                            // WouldBlock: nobody is knocking.
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
                .expect("spawn the silent server")
        };
        Silent {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ----- dropping in every state -----

#[test]
fn dropping_while_the_list_hangs_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let server = cluster();
    server.fail_next(100, Failure::Hang);
    let r = resolver(&server, "kubernetes:///la-listing.prod:grpc");
    eventually("the list request hangs on the server", || {
        server.requests().iter().any(|q| q.is_list())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!r.status().resolved, "{:#?}", r.status());
    drop_promptly("listing", r, "la");
    eventually("the server sees the connection closed", || {
        server.open_connections() == 0
    });
}

#[test]
fn dropping_while_watching_a_quiet_stream_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let server = cluster();
    let r = watching_one_pod(&server, "lb-watching");
    eventually("the status says watching", || r.status().watching);
    drop_promptly("watching", r, "lb");
    eventually("the server sees the watch closed", || {
        server.open_watches() == 0 && server.open_connections() == 0
    });
}

#[test]
fn dropping_during_a_stalled_read_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let server = cluster();
    let r = watching_one_pod(&server, "lc-stalled");
    assert_eq!(server.inject(Fault::Stall), 1);
    // The stalled stream holds back this change: the read is blocked.
    server.set_endpoints("prod", "lc-stalled", &[("grpc", 8080)], &pods(2));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(&r.addresses()[..], addrs(8080, [1]), "the read is stalled");
    drop_promptly("stalled read", r, "lc");
    eventually("the server sees the watch closed", || {
        server.open_watches() == 0
    });
}

#[test]
fn dropping_during_a_long_backoff_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let server = cluster();
    server.fail_next(100, Failure::InternalError);
    let r = builder(&server, "kubernetes:///ld-backoff.prod:grpc")
        .backoff(
            Backoff::new()
                .initial(Duration::from_secs(20))
                .floor(Duration::from_secs(10))
                .cap(Duration::from_secs(30)),
        )
        .spawn()
        .expect("spawn");
    eventually("the first failure", || r.status().counters.errors > 0);
    assert_eq!(server.requests().len(), 1, "backing off, not retrying yet");
    drop_promptly("backing off", r, "ld");
}

#[test]
fn dropping_while_a_silent_server_holds_the_request_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let silent = Silent::start();
    // Default connect and response timeouts (10 s, 30 s): only the drop can end the wait.
    let r = plain_builder(&silent.url(), "kubernetes:///le-silent.prod:grpc")
        .spawn()
        .expect("spawn");
    eventually("the resolver connects", || silent.connections() >= 1);
    // Time to write the request and block awaiting the response.
    std::thread::sleep(Duration::from_millis(200));
    let status = r.status();
    assert!(
        !status.resolved && status.counters.errors == 0,
        "{status:#?}"
    );
    drop_promptly("awaiting a response", r, "le");
}

#[test]
fn dropping_during_a_tls_handshake_that_never_completes_returns_within_a_second_and_leaves_no_thread(
) {
    let _process = shared_process();
    let silent = Silent::start();
    let url = silent.url().replace("http://", "https://");
    let r = plain_builder(&url, "kubernetes:///lh-handshake.prod:grpc")
        .spawn()
        .expect("spawn");
    eventually("the resolver connects", || silent.connections() >= 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(r.status().counters.errors, 0, "{:#?}", r.status());
    drop_promptly("TLS handshake", r, "lh");
}

#[test]
fn dropping_while_the_server_is_down_returns_within_a_second_and_leaves_no_thread() {
    let _process = shared_process();
    let server = cluster();
    server.stop_listening();
    let r = builder(&server, "kubernetes:///lf-down.prod:grpc")
        .backoff(
            Backoff::new()
                .initial(Duration::from_secs(20))
                .floor(Duration::from_secs(10))
                .cap(Duration::from_secs(30)),
        )
        .spawn()
        .expect("spawn");
    eventually("the connection is refused", || {
        r.status().counters.errors > 0
    });
    let error = r.status().last_error.expect("the refusal shows");
    assert_eq!(error.kind(), ErrorKind::Transport, "{error}");
    drop_promptly("server down", r, "lf");
}

/// A listener whose accept queue is full, and the connections that fill it: Linux drops
/// further SYNs, so a new connect blocks until its timeout, as to a blackholed API server.
/// `None` when the kernel does not behave so.
fn full_accept_queue() -> Option<(TcpListener, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut held = Vec::new();
    while held.len() < 4096 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(e) if e.kind() == IoErrorKind::TimedOut => return Some((listener, held)),
            Err(_) => return None,
        }
    }
    None
}

/// The URL of a [`full_accept_queue`] and what keeps it full, or `None` after reporting the
/// missing prerequisite.
fn blackholed_server() -> Option<(String, TcpListener, Vec<TcpStream>)> {
    let Some((listener, held)) = full_accept_queue() else {
        missing_prerequisite("a kernel on which a connect to a full accept queue blocks (Linux)");
        return None;
    };
    let url = format!("http://{}", listener.local_addr().expect("address"));
    Some((url, listener, held))
}

#[test]
fn dropping_during_a_blocked_tcp_connect_does_not_wait_for_the_connect_and_leaves_no_thread() {
    let _process = shared_process();
    let Some((url, _listener, _held)) = blackholed_server() else {
        return;
    };
    // The default connect timeout (5 s): the drop returns at once; the thread ends by itself
    // when the connect times out, within the patience of `drop_promptly`.
    let r = plain_builder(&url, "kubernetes:///lg-connect.prod:grpc")
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let status = r.status();
    assert_eq!(status.counters.errors, 0, "still connecting: {status:#?}");
    // A TCP connect cannot be interrupted: the drop does not wait for the thread, which ends
    // by itself at the connect timeout.
    drop_promptly("connecting", r, "lg");
}

#[test]
fn dropping_resolvers_whose_threads_are_stuck_connecting_waits_for_none_of_them() {
    let _process = shared_process();
    let Some((url, _listener, _held)) = blackholed_server() else {
        return;
    };
    // Each on its own Service, so each has its own watch and thread, all stuck in a connect
    // (the default 5 s timeout) that nothing can interrupt.
    let resolvers: Vec<Resolver> = (0..5)
        .map(|i| {
            plain_builder(&url, &format!("kubernetes:///lm-{i}.prod:grpc"))
                .spawn()
                .expect("spawn")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for r in &resolvers {
        let status = r.status();
        assert_eq!(status.counters.errors, 0, "still connecting: {status:#?}");
    }
    // A drop that waited for its thread even briefly (say 0.8 s, as once) would take seconds
    // for five; the sum of their stops must not be paid.
    let started = Instant::now();
    drop(resolvers);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "dropping five took {took:?}");
    if cfg!(target_os = "linux") {
        eventually("every lm thread ends at its connect timeout", || {
            watcher_threads("lm") == 0
        });
    }
}

// ----- leaks -----

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "counts /proc/self/fd and /proc/self/task"
)]
fn two_hundred_resolvers_spawned_and_dropped_leak_no_thread_socket_or_descriptor() {
    let _process = whole_process();
    let server = cluster();
    server.set_endpoints("prod", "lk-churn", &[("grpc", 8080)], &pods(2));
    let target = "kubernetes:///lk-churn.prod:grpc";
    // Warm up once, so one-time allocations (rustls provider, logger, ...) are not counted.
    {
        let r = resolver(&server, target);
        converges_to(&r, &addrs(8080, [1, 2]));
    }
    eventually("the warm-up connection is closed", || {
        server.open_connections() == 0
    });
    let fds_before = open_fds();
    let threads_before = threads_named("kuberesolver");
    for i in 0..200 {
        match i % 5 {
            // Dropped at once: maybe before its first request.
            0 => drop(resolver(&server, target)),
            // Dropped after the first resolution.
            1 => {
                let r = resolver(&server, target);
                r.wait_ready(PATIENCE).expect("ready");
            }
            // Dropped with its watch open.
            2 => {
                let r = resolver(&server, target);
                eventually("the watch is open", || r.status().watching);
            }
            // Dropped while the server holds its list.
            3 => {
                let seen = server.requests().len();
                server.fail_next(1, Failure::Hang);
                let r = resolver(&server, target);
                eventually("the list hangs", || server.requests().len() > seen);
                drop(r);
            }
            // Dropped after an error, while backing off or retrying.
            _ => {
                server.fail_next(1, Failure::InternalError);
                let r = resolver(&server, target);
                eventually("the error", || r.status().counters.errors > 0);
            }
        }
    }
    eventually("every watcher thread is gone", || {
        threads_named("kuberesolver") <= threads_before
    });
    eventually("the server sees every connection closed", || {
        server.open_connections() == 0
    });
    // The server's side of each socket closes a little after the client's.
    let slack = 4;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let fds = open_fds();
        if fds <= fds_before + slack {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "file descriptors leaked: {fds_before} before, {fds} after 200 resolvers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----- timeouts -----

#[test]
fn a_server_that_accepts_and_never_answers_is_abandoned_after_the_response_timeout() {
    let _process = shared_process();
    let silent = Silent::start();
    let addr = silent.addr;
    let r = plain_builder(&silent.url(), "kubernetes:///echo.prod:grpc")
        .response_timeout(Duration::from_millis(300))
        .backoff(
            Backoff::new()
                .initial(Duration::from_millis(100))
                .floor(Duration::from_millis(50))
                .cap(Duration::from_millis(400)),
        )
        .spawn()
        .expect("spawn");
    eventually("three requests timed out", || {
        r.status().counters.errors >= 3
    });
    assert!(silent.connections() >= 2, "it retried on new connections");
    let status = r.status();
    let error = status.last_error.as_ref().expect("the timeout shows");
    assert_eq!(error.kind(), ErrorKind::Transport, "{error}");
    assert!(error.to_string().contains("timeout"), "{error}");
    let err = r.wait_ready(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotReady);
    assert!(err.to_string().contains("timeout"), "{err}");

    // A working API server takes the silent one's place: it resolves on its own.
    drop(silent);
    let server = FakeApiServer::builder()
        .bind(addr)
        .start()
        .expect("a server on the same address");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(2));
    converges_to(&r, &addrs(8080, [1, 2]));
}

#[test]
fn a_watch_that_stalls_without_a_byte_is_replaced_after_the_read_timeout() {
    let _process = shared_process();
    // Bookmarks every 100 ms: a healthy watch is never silent for anything near the 1.5 s
    // read timeout, even on a loaded machine.
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .expect("server");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(1));
    let r = builder(&server, "kubernetes:///echo.prod:grpc")
        .read_timeout(Duration::from_millis(1500))
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    assert!(server.wait_for_watches(1, PATIENCE), "a watch opens");
    // Twenty bookmarks: the quiet watch outlived the read timeout.
    eventually("bookmarks flow", || r.status().counters.bookmarks >= 20);
    let status = r.status();
    assert!(
        status.counters.errors == 0 && status.counters.watches == 1,
        "a quiet watch with bookmarks does not time out: {status:#?}"
    );
    let rv = server.resource_version();
    server.clear_requests();
    assert_eq!(server.inject(Fault::Stall), 1);
    eventually("a new watch replaces the stalled one", || {
        server.requests().iter().any(|q| q.is_watch())
    });
    let requests = server.requests();
    let watch = requests.iter().find(|q| q.is_watch()).expect("a watch");
    assert_eq!(
        watch.param("resourceVersion"),
        Some(rv.as_str()),
        "it resumes where it was"
    );
    assert!(
        !requests.iter().any(|q| q.is_list()),
        "no relist: {requests:?}"
    );
    eventually("the stalled watch's connection is closed", || {
        server.open_watches() == 1
    });
    let error = r.status().last_error.expect("the stall shows");
    assert!(error.to_string().contains("read timeout"), "{error}");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(3));
    converges_to(&r, &addrs(8080, 1..=3));
}

// ----- no hot loop -----

/// Requests matching `which` recorded in `[from, from + window)`.
fn requests_between(
    server: &FakeApiServer,
    from: Instant,
    window: Duration,
    which: impl Fn(&kuberesolver::testkit::RequestRecord) -> bool,
) -> usize {
    server
        .requests()
        .iter()
        .filter(|q| q.at >= from && q.at < from + window && which(q))
        .count()
}

#[test]
fn a_server_that_ends_every_watch_at_once_is_not_hammered() {
    let _process = shared_process();
    // Every watch ends cleanly as soon as it starts, with no event and no bookmark.
    let server = FakeApiServer::builder()
        .max_watch_timeout(Duration::ZERO)
        .start()
        .expect("server");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(1));
    // The default backoff policy: what users get.
    let r = plain_builder(&server.url(), "kubernetes:///echo.prod:grpc")
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    let from = Instant::now();
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let watches = requests_between(&server, from, window, |q| q.is_watch());
    println!("{watches} watches in {window:?}");
    assert!(
        watches <= 5 * window.as_secs() as usize,
        "{watches} watches in {window:?}: a hot loop"
    );
    assert!(watches >= 2, "it keeps watching: {watches} in {window:?}");
    assert!(r.status().resolved);
}

#[test]
fn a_server_that_expires_every_watch_at_once_is_not_hammered_with_relists() {
    let _process = shared_process();
    let server = cluster();
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(1));
    // Every watch: the 410 ERROR event at once, then a clean end.
    for _ in 0..1000 {
        server.inject_next_watch(Fault::Expired);
    }
    let started = Instant::now();
    let r = plain_builder(&server.url(), "kubernetes:///echo.prod:grpc")
        .spawn()
        .expect("spawn");
    converges_to(&r, &addrs(8080, [1]));
    let window = Duration::from_secs(3);
    std::thread::sleep(window.saturating_sub(started.elapsed()));
    let lists = requests_between(&server, started, window, |q| q.is_list());
    let watches = requests_between(&server, started, window, |q| q.is_watch());
    println!("{lists} lists and {watches} watches in {window:?}");
    assert!(
        lists <= 5 * window.as_secs() as usize && watches <= 5 * window.as_secs() as usize,
        "{lists} lists and {watches} watches in {window:?}: a hot loop"
    );
    assert!(lists >= 2, "it keeps relisting: {lists} in {window:?}");
    assert_eq!(&r.addresses()[..], addrs(8080, [1]), "and keeps the truth");
}
