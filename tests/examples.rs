//! The example programs run for real: `watch` against the fake API server, `demo` and
//! `connector` end to end. `cargo test` builds the examples before it runs this file; a run
//! that did not (`cargo test --test examples`) skips locally and fails under CI.

mod support;

use std::process::Command;

use kuberesolver::testkit::{AddressType, Pod};
use support::*;

/// Service `echo` in `prod` is this one pod, in one EndpointSlice.
fn only_pod(server: &kuberesolver::testkit::FakeApiServer, pod: Pod) {
    server.set_endpoint_slice(
        "prod",
        "echo-a",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &[pod],
    );
}

#[test]
fn the_watch_cli_prints_each_change_with_zone_node_and_pod() {
    let Some(watch) = example("watch") else {
        missing_prerequisite("the watch example binary (`cargo test` builds it)");
        return;
    };
    let server = cluster();
    only_pod(
        &server,
        Pod::new("echo-7d9f-abcde", [10, 0, 0, 1])
            .node("node-a")
            .zone("zone-1"),
    );
    let mut child = Command::new(&watch)
        .args([
            "kubernetes:///echo.prod:grpc",
            "--server",
            &server.url(),
            "--for",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch runs");
    // Read its output as it comes; change the Service once the first pod is shown.
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    while !lines
        .recv_deadline(deadline)
        .expect("the first pod is shown")
        .contains("+ 10.0.0.1:8080")
    {}
    only_pod(
        &server,
        Pod::new("echo-7d9f-fghij", [10, 0, 0, 2])
            .node("node-b")
            .zone("zone-2"),
    );
    let output = child.wait_with_output().expect("watch ends by itself");
    let stdout = reader.join().expect("reader");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("v1") && stdout.contains("v2"), "{stdout}");
    assert!(
        stdout.contains("+ 10.0.0.1:8080")
            && stdout.contains("zone-1")
            && stdout.contains("node-a")
            && stdout.contains("echo-7d9f-abcde"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- 10.0.0.1:8080") && stdout.contains("+ 10.0.0.2:8080"),
        "{stdout}"
    );
    assert!(stderr.contains("done: v2"), "{stderr}");
}

/// Run an example to completion; it exits non-zero when a request failed.
fn runs_with_zero_failures(name: &str) {
    let Some(path) = example(name) else {
        missing_prerequisite(&format!(
            "the {name} example binary (`cargo test` builds it)"
        ));
        return;
    };
    let output = Command::new(&path).output().expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn the_demo_rolls_a_deploy_with_zero_failed_requests() {
    runs_with_zero_failures("demo");
}

#[test]
fn the_connector_keeps_connections_in_step_with_zero_failed_requests() {
    runs_with_zero_failures("connector");
}
