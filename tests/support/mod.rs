//! A small vocabulary for the integration tests: a fake cluster, a resolver on it, and waits
//! that read as sentences. Every wait is bounded loosely; none asserts a timing.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, FakeApiServer, Fault, Pod};
use kuberesolver::{Backoff, Builder, Config, Error, ErrorKind, Resolver, Snapshot, Source};

/// How long any wait may take before the test fails: generous, so slow CI never flakes.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A plain-HTTP fake API server (the `kubectl proxy` shape).
pub fn cluster() -> FakeApiServer {
    FakeApiServer::start().expect("fake API server starts")
}

/// `n` ready pods named `echo-1..` with IPs `10.0.0.1..`.
pub fn pods(n: u8) -> Vec<Pod> {
    (1..=n)
        .map(|i| Pod::new(format!("echo-{i}"), [10, 0, 0, i]))
        .collect()
}

/// Sets the IPv4 slice `name` of the Service echo in prod: these pods, port grpc=8080.
pub fn echo_slice(server: &FakeApiServer, name: &str, pods: &[Pod]) -> String {
    let ports = [("grpc", Some(8080))];
    server.set_endpoint_slice("prod", name, "echo", AddressType::Ipv4, &ports, pods)
}

/// The addresses `10.0.0.i:port` for each i.
pub fn addrs(port: u16, last_octets: impl IntoIterator<Item = u8>) -> Vec<SocketAddr> {
    last_octets
        .into_iter()
        .map(|i| SocketAddr::from(([10, 0, 0, i], port)))
        .collect()
}

/// Retries after 50–100 ms, at most 400 ms apart: tests converge fast after a fault.
pub fn with_fast_retries(builder: Builder) -> Builder {
    builder.backoff(
        Backoff::new()
            .initial(Duration::from_millis(100))
            .floor(Duration::from_millis(50))
            .cap(Duration::from_millis(400)),
    )
}

/// A builder on `server` for `target`, watching Endpoints, with fast retries for tests.
pub fn builder(server: &FakeApiServer, target: &str) -> Builder {
    with_fast_retries(Resolver::builder(target))
        .config(Config::new(server.url()))
        .source(Source::Endpoints)
}

/// Service `echo` in `prod` has `n` ready pods (`pods(n)`) behind port `grpc` = 8080.
pub fn scale(server: &FakeApiServer, n: u8) -> String {
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods(n))
}

/// A resolver for `target` with `config` and `source`, and fast retries.
pub fn spawn_on(config: Config, source: Source, target: &str) -> Resolver {
    with_fast_retries(Resolver::builder(target))
        .config(config)
        .source(source)
        .spawn()
        .expect("resolver spawns")
}

/// A resolver on `server` for `target` (see [`builder`]).
pub fn resolver(server: &FakeApiServer, target: &str) -> Resolver {
    builder(server, target).spawn().expect("resolver spawns")
}

/// Wait until the current snapshot has exactly `expected` addresses; return that snapshot.
pub fn converges_to(resolver: &Resolver, expected: &[SocketAddr]) -> Snapshot {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot = resolver.snapshot();
        if snapshot.version() > 0 && &snapshot.addresses()[..] == expected {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "never converged to {expected:?}; last {snapshot:?}, status {:#?}",
            resolver.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An example binary that `cargo test` built next to this test's binary.
pub fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

/// A fresh empty folder under the system's temporary folder, for this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuberesolver-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes into `dir` the kubeconfig of `server` (`FakeApiServer::kubeconfig`); its path.
pub fn write_kubeconfig(server: &FakeApiServer, dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig.json");
    std::fs::write(&path, server.kubeconfig()).expect("write the kubeconfig");
    path
}

/// Whether this run is CI's (env `CI` set, and not `false` or `0`), where a missing
/// prerequisite fails a test instead of skipping it.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A test cannot run here because `what` is missing: under CI that fails the test (a test
/// that passes without running proves nothing); locally it says so on stderr, and the caller
/// returns.
pub fn missing_prerequisite(what: &str) {
    assert!(
        !under_ci(),
        "{what}: this test needs it, and CI is set (`.ci/run` installs what it can)"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!`, and hides it
    // for a test that passes.
    let _ = writeln!(std::io::stderr(), "skipped: {what} (under CI this fails)");
}

/// Wait until `condition` holds, or fail with `what`.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `resolver` reports a failure in `status()`, then return the error `wait_ready`
/// gives: not ready, with that failure as its cause. (Waiting for the failure, rather than
/// for a short deadline, keeps a slow machine from failing the test.)
pub fn not_ready(resolver: &Resolver) -> Error {
    eventually("a failure shows in status()", || {
        resolver.status().last_error.is_some()
    });
    let err = resolver
        .wait_ready(Duration::ZERO)
        .expect_err("nothing resolved");
    assert_eq!(err.kind(), ErrorKind::NotReady, "{err}");
    assert!(err.cause().is_some(), "the failure is the cause: {err}");
    err
}

/// The requests after the first `seen` show a watch answered with the 410 of a compacted
/// resourceVersion, and a successful list after it.
pub fn relisted_after_a_410(server: &FakeApiServer, seen: usize) {
    let log = server.requests();
    let after = &log[seen.min(log.len())..];
    let expired = after.iter().position(|q| q.is_watch() && q.expired);
    assert!(
        expired.is_some_and(|i| after[i..].iter().any(|q| q.is_list() && q.status == 200)),
        "a 410 on resume, then a relist: {after:#?}"
    );
}

/// Whether the requests after the first `seen` show a successful list, then a watch that
/// streams.
pub fn relisted_and_watching(server: &FakeApiServer, seen: usize) -> bool {
    let log = server.requests();
    let after = &log[seen.min(log.len())..];
    after
        .iter()
        .position(|q| q.is_list() && q.status == 200)
        .is_some_and(|i| after[i..].iter().any(|q| q.is_watch() && q.status == 200))
}

/// The watch that was the newest request when `seen` requests had been made carried out
/// `fault`, and the requests since then are a watch from `resource_version` (the last one the
/// resolver had) with no list anywhere.
pub fn resumed_without_relisting(
    server: &FakeApiServer,
    seen: usize,
    fault: &Fault,
    resource_version: &str,
) {
    let log = server.requests();
    assert_eq!(
        log[seen - 1].faults,
        std::slice::from_ref(fault),
        "{fault:?} took effect"
    );
    let after = &log[seen..];
    assert!(
        after.first().is_some_and(|q| q.is_watch()),
        "{fault:?}: watched again: {after:#?}"
    );
    assert_eq!(
        after[0].param("resourceVersion"),
        Some(resource_version),
        "{fault:?}: resumed from the last resourceVersion it had"
    );
    assert!(
        !after.iter().any(|q| q.is_list()),
        "{fault:?}: no relist: {after:#?}"
    );
}
