//! The real `kubectl` against the testkit: discovery, `get` (one namespace, `-A`, paged with
//! `--chunk-size`, `-w`), `apply -f`, `create`, `delete`, each asserting what kubectl printed,
//! and fixtures set up with kubectl that a resolver then reads. The server is HTTPS with the
//! test CA and a bearer token, as a cluster is. Without `kubectl` on PATH these tests fail
//! under CI (`.ci/run` installs it) and are skipped locally with a line on stderr.
//!
//! kubectl 1.20 (Debian's) and the current ones differ on the wire (aggregated discovery,
//! OpenAPI for `apply`, merge patch or strategic merge patch for slices, how `delete` waits);
//! the Google Cloud SDK's `kubectl` is a dispatcher that runs the `kubectl.1.N` matching the
//! server's `/version`, so `every_kubectl_on_this_machine_reads_and_writes_the_testkit` runs
//! each of them.

mod support;

use kuberesolver::testkit::{FakeApiServer, Fault, Pod, Resource, TlsIdentity, Verb, TEST_CA_PEM};
use kuberesolver::{Config, Source};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use support::*;

const TOKEN: &str = "kubectl-token-0123456789";

/// Namespace `shop`; Endpoints `cart` with 10.1.0.1 and 10.1.0.2 on port `grpc` 9090; one
/// EndpointSlice of `cart` with 10.1.0.1.
const FIXTURES: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Endpoints
metadata:
  name: cart
  namespace: shop
subsets:
  - addresses:
      - ip: 10.1.0.1
      - ip: 10.1.0.2
    ports:
      - name: grpc
        port: 9090
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cart-abc12
  namespace: shop
  labels:
    kubernetes.io/service-name: cart
addressType: IPv4
endpoints:
  - addresses: [\"10.1.0.1\"]
    conditions: {ready: true}
ports:
  - name: grpc
    port: 9090
";

/// What one kubectl run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The rows of a table on stdout, each split into its columns.
    fn rows(&self) -> Vec<Vec<&str>> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Whether a `kubectl` runs.
fn have_kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdin(Stdio::null())
        .output()
        .is_ok()
}

/// kubectl with its own kubeconfig (the server's URL, CA and token) and its own discovery
/// cache, in a folder of its own.
struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// `None` when kubectl is not on PATH.
    fn new(server: &FakeApiServer, name: &str) -> Option<Kubectl> {
        if !have_kubectl() {
            return None;
        }
        let dir = temp_dir(&format!("kubectl-{name}"));
        let kubeconfig = write_kubeconfig(server, &dir);
        Some(Kubectl { dir, kubeconfig })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .args(args)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .arg("--request-timeout=30s")
            .env_remove("KUBECONFIG")
            .env("HOME", &self.dir)
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl to its end; one that runs for over a minute is killed, and fails the test
    /// (a server that pages forever, say).
    fn run(&self, args: &[&str]) -> Run {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("kubectl's status") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kubectl {args:?} still ran after a minute: killed");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        Run {
            ok: status.success(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// Writes `text` to a file in kubectl's folder; its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write a manifest");
        path.display().to_string()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A kubectl child process (`get -w`), killed and reaped on drop; its stdout lines come
/// through a channel.
struct Watching {
    child: Child,
    lines: crossbeam_channel::Receiver<String>,
}

impl Watching {
    fn start(kubectl: &Kubectl, args: &[&str]) -> Watching {
        let mut child = kubectl
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs");
        let (tx, lines) = crossbeam_channel::unbounded();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watching { child, lines }
    }

    /// The next line kubectl prints, or a failure after a while.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("kubectl printed a line")
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS fake API server that requires [`TOKEN`], reporting Kubernetes `1.minor`.
fn cluster_at(minor: u32) -> FakeApiServer {
    FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .token(Some(TOKEN.to_owned()))
        .kubernetes_version(1, minor)
        .start()
        .expect("server")
}

fn tls_cluster() -> FakeApiServer {
    cluster_at(32)
}

/// What a resolver needs to read `server`.
fn config(server: &FakeApiServer) -> Config {
    Config::new(server.url()).ca_pem(TEST_CA_PEM).token(TOKEN)
}

/// kubectl for `server`, or `None` after reporting it missing.
fn kubectl(server: &FakeApiServer, name: &str) -> Option<Kubectl> {
    let k = Kubectl::new(server, name);
    if k.is_none() {
        missing_prerequisite("kubectl on PATH");
    }
    k
}

fn assert_age(age: &str) {
    assert!(
        age.ends_with('s') && age[..age.len() - 1].parse::<u32>().is_ok(),
        "an AGE of seconds: {age:?}"
    );
}

#[test]
fn get_prints_each_object_with_its_age_and_not_found_in_the_apis_words() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "get") else {
        return;
    };
    scale(&server, 2);
    echo_slice(&server, "echo-a", &pods(2));
    let run = k.run(&["get", "endpoints", "-n", "prod"]);
    assert!(run.ok, "{run:?}");
    let rows = run.rows();
    assert_eq!(rows[0], ["NAME", "AGE"], "{run:?}");
    assert_eq!((rows.len(), rows[1][0]), (2, "echo"), "{run:?}");
    assert_age(rows[1][1]);
    assert!(run.stderr.contains("v1 Endpoints is deprecated"), "{run:?}");

    let run = k.run(&["get", "endpointslices", "-n", "prod", "-o", "name"]);
    assert_eq!(
        run.stdout, "endpointslice.discovery.k8s.io/echo-a\n",
        "{run:?}"
    );
    let run = k.run(&["get", "ns", "-o", "name"]);
    let namespaces: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        namespaces,
        [
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system",
            "namespace/prod"
        ],
        "{run:?}"
    );
    let run = k.run(&[
        "get",
        "ep",
        "echo",
        "-n",
        "prod",
        "-o",
        "jsonpath={.subsets[0].addresses[*].ip}",
    ]);
    assert_eq!(run.stdout, "10.0.0.1 10.0.0.2", "{run:?}");

    let run = k.run(&["get", "endpoints", "nope", "-n", "prod"]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("Error from server (NotFound): endpoints \"nope\" not found"),
        "{run:?}"
    );
    let run = k.run(&["get", "endpoints", "-n", "empty"]);
    assert!(run.ok && run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .contains("No resources found in empty namespace."),
        "{run:?}"
    );
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.bearer_token() == Some(TOKEN)),
        "kubectl sent the kubeconfig's token: {requests:#?}"
    );
}

#[test]
fn get_all_namespaces_reads_the_cluster_wide_collections() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "get-all") else {
        return;
    };
    for ns in ["prod", "dev"] {
        server.set_endpoints(ns, "echo", &[("grpc", 8080)], &pods(1));
    }
    server.set_endpoints("prod", "cart", &[("grpc", 8080)], &pods(1));
    let run = k.run(&["get", "endpoints", "-A"]);
    assert!(run.ok, "{run:?}");
    let rows: Vec<(&str, &str)> = run.rows().iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        rows,
        [
            ("NAMESPACE", "NAME"),
            ("dev", "echo"),
            ("prod", "cart"),
            ("prod", "echo")
        ],
        "{run:?}"
    );
    let run = k.run(&["get", "endpointslices", "--all-namespaces"]);
    assert!(run.ok, "{run:?}");
    assert!(run.stderr.contains("No resources found"), "{run:?}");
    let lists: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.is_list())
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        lists,
        [
            "/api/v1/endpoints",
            "/apis/discovery.k8s.io/v1/endpointslices"
        ]
    );
}

#[test]
fn get_with_a_chunk_size_follows_continue_tokens_through_every_page() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "chunks") else {
        return;
    };
    for i in 1..=5 {
        server.set_endpoints("prod", &format!("echo-{i}"), &[("grpc", 8080)], &pods(1));
    }
    let run = k.run(&[
        "get",
        "endpoints",
        "-n",
        "prod",
        "--chunk-size=2",
        "-o",
        "name",
    ]);
    assert!(run.ok, "{run:?}");
    let names: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        names,
        (1..=5)
            .map(|i| format!("endpoints/echo-{i}"))
            .collect::<Vec<_>>(),
        "{run:?}"
    );
    let pages: Vec<(Option<String>, bool)> = server
        .requests()
        .iter()
        .filter(|r| r.is_list())
        .map(|r| {
            (
                r.param("limit").map(str::to_owned),
                r.param("continue").is_some(),
            )
        })
        .collect();
    let two = Some("2".to_owned());
    assert_eq!(
        pages,
        [(two.clone(), false), (two.clone(), true), (two, true)]
    );
}

#[test]
fn get_watch_prints_each_change_and_exits_when_the_server_ends_the_watch() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "watch") else {
        return;
    };
    scale(&server, 1);
    let watching = Watching::start(&k, &["get", "endpoints", "-n", "prod", "-w", "-o", "name"]);
    assert_eq!(watching.line(), "endpoints/echo");
    assert!(server.wait_for_watches(1, PATIENCE), "kubectl watches");
    let list = server
        .requests()
        .into_iter()
        .find(|r| r.is_list())
        .expect("a list first");
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("then a watch");
    assert_eq!(
        watch.param("resourceVersion"),
        Some(server.resource_version().as_str()),
        "from the list's resourceVersion ({list:?})"
    );
    server.set_endpoints("prod", "cart", &[("grpc", 8080)], &pods(1));
    assert_eq!(watching.line(), "endpoints/cart");
    server.delete(Resource::Endpoints, "prod", "echo");
    assert_eq!(watching.line(), "endpoints/echo");
    assert_eq!(server.inject(Fault::EndCleanly), 1);
    let mut watching = watching;
    let status = wait_for_exit(&mut watching.child);
    assert!(
        status.is_some_and(|s| s.success()),
        "kubectl ends at the end of the watch: {status:?}"
    );
}

fn wait_for_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    let mut status = None;
    eventually("kubectl exits", || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

#[test]
fn apply_creates_then_leaves_unchanged_then_configures_and_resolvers_read_the_fixtures() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "apply") else {
        return;
    };
    let manifest = k.file("cart.yaml", FIXTURES);
    let run = k.run(&["apply", "-f", &manifest]);
    assert!(run.ok, "{run:?}");
    assert_eq!(
        run.stdout,
        "namespace/shop created\nendpoints/cart created\nendpointslice.discovery.k8s.io/cart-abc12 created\n",
        "{run:?}"
    );
    let endpoints = spawn_on(
        config(&server),
        Source::Endpoints,
        "kubernetes:///cart.shop:grpc",
    );
    let slices = spawn_on(
        config(&server),
        Source::EndpointSlices,
        "kubernetes:///cart.shop:grpc",
    );
    let at = |last: &[u8]| -> Vec<std::net::SocketAddr> {
        last.iter()
            .map(|i| std::net::SocketAddr::from(([10, 1, 0, *i], 9090)))
            .collect()
    };
    converges_to(&endpoints, &at(&[1, 2]));
    converges_to(&slices, &at(&[1]));
    let stored = server
        .get(Resource::Endpoints, "shop", "cart")
        .expect("stored");
    assert!(
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "kept for the next apply's three-way diff: {stored}"
    );

    let run = k.run(&["apply", "-f", &manifest]);
    assert_eq!(
        run.stdout,
        "namespace/shop unchanged\nendpoints/cart unchanged\nendpointslice.discovery.k8s.io/cart-abc12 unchanged\n",
        "{run:?}"
    );
    let changed = k.file(
        "cart-v2.yaml",
        &FIXTURES
            .replace("10.1.0.2", "10.1.0.3")
            .replace("[\"10.1.0.1\"]", "[\"10.1.0.4\"]"),
    );
    let run = k.run(&["apply", "-f", &changed]);
    assert!(run.ok, "{run:?}");
    assert_eq!(
        run.stdout,
        "namespace/shop unchanged\nendpoints/cart configured\nendpointslice.discovery.k8s.io/cart-abc12 configured\n",
        "{run:?}"
    );
    converges_to(&endpoints, &at(&[1, 3]));
    converges_to(&slices, &at(&[4]));
    let patches: Vec<Option<Verb>> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.verb)
        .collect();
    assert_eq!(patches, [Some(Verb::Patch), Some(Verb::Patch)]);
}

#[test]
fn create_twice_is_already_exists_and_a_stale_replace_is_a_conflict() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "create") else {
        return;
    };
    let manifest = k.file("cart.yaml", FIXTURES);
    let run = k.run(&["create", "-f", &manifest]);
    assert!(run.ok, "{run:?}");
    let run = k.run(&["create", "-f", &manifest]);
    assert!(!run.ok, "{run:?}");
    for what in [
        "namespaces \"shop\" already exists",
        "endpoints \"cart\" already exists",
        "endpointslices.discovery.k8s.io \"cart-abc12\" already exists",
    ] {
        assert!(
            run.stderr.contains(&format!(
                "Error from server (AlreadyExists): error when creating \"{manifest}\": {what}"
            )),
            "{what}: {run:?}"
        );
    }
    // `replace` sends the resourceVersion it read: stale after another write, refused.
    let run = k.run(&["get", "endpoints", "cart", "-n", "shop", "-o", "json"]);
    let mut read: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    server.set_endpoints("shop", "cart", &[("grpc", 9090)], &pods(1));
    read["subsets"] = serde_json::json!([]);
    let stale = k.file("stale.json", &read.to_string());
    let run = k.run(&["replace", "-f", &stale]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("Error from server (Conflict): error when replacing")
            && run.stderr.contains(
                "Operation cannot be fulfilled on endpoints \"cart\": the object has been modified"
            ),
        "{run:?}"
    );
}

#[test]
fn delete_removes_objects_and_a_namespace_with_everything_in_it() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "delete") else {
        return;
    };
    scale(&server, 2);
    let r = spawn_on(
        config(&server),
        Source::Endpoints,
        "kubernetes:///echo.prod:grpc",
    );
    converges_to(&r, &addrs(8080, [1, 2]));
    let run = k.run(&["delete", "endpoints", "echo", "-n", "prod"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, "endpoints \"echo\" deleted\n", "{run:?}");
    assert!(server.get(Resource::Endpoints, "prod", "echo").is_none());
    converges_to(&r, &[]);

    let manifest = k.file("cart.yaml", FIXTURES);
    assert!(k.run(&["apply", "-f", &manifest]).ok);
    let run = k.run(&["delete", "-f", &manifest]);
    assert!(
        run.ok,
        "a namespace terminates while what is in it is deleted: {run:?}"
    );
    assert_eq!(
        run.stdout,
        "namespace \"shop\" deleted\nendpoints \"cart\" deleted\nendpointslice.discovery.k8s.io \"cart-abc12\" deleted\n",
        "{run:?}"
    );
    let run = k.run(&["get", "namespace", "shop"]);
    assert!(
        run.stderr
            .contains("Error from server (NotFound): namespaces \"shop\" not found"),
        "gone once kubectl's wait ends: {run:?}"
    );
}

#[test]
fn every_kubectl_on_this_machine_reads_and_writes_the_testkit() {
    let probe = tls_cluster();
    let Some(k) = kubectl(&probe, "versions") else {
        return;
    };
    let client = k.run(&["version", "--client"]);
    drop(k);
    // The Google Cloud SDK's dispatcher runs kubectl.1.27 to kubectl.1.33 by the server's
    // minor; any other kubectl is one version, whatever the server says.
    let minors: Vec<u32> = if client.stdout.contains("dispatcher") {
        (27..=33).collect()
    } else {
        vec![32]
    };
    for minor in minors {
        let server = cluster_at(minor);
        let k = Kubectl::new(&server, &format!("v1-{minor}")).expect("kubectl");
        let run = k.run(&["version", "-o", "json"]);
        let version: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        if client.stdout.contains("dispatcher") {
            let client = version["clientVersion"]["gitVersion"]
                .as_str()
                .unwrap_or("");
            assert!(
                client.starts_with(&format!("v1.{minor}.")),
                "the dispatcher ran kubectl 1.{minor}: {run:?}"
            );
        }
        assert_eq!(
            version["serverVersion"]["gitVersion"],
            format!("v1.{minor}.0")
        );
        let manifest = k.file("cart.yaml", FIXTURES);
        let run = k.run(&["apply", "-f", &manifest]);
        assert!(
            run.ok
                && run
                    .stdout
                    .contains("endpointslice.discovery.k8s.io/cart-abc12 created"),
            "1.{minor}: {run:?}"
        );
        let run = k.run(&["get", "endpoints,endpointslices", "-A", "-o", "name"]);
        assert_eq!(
            run.stdout, "endpoints/cart\nendpointslice.discovery.k8s.io/cart-abc12\n",
            "1.{minor}: {run:?}"
        );
        let run = k.run(&["delete", "endpointslice", "cart-abc12", "-n", "shop"]);
        assert!(run.ok, "1.{minor}: {run:?}");
        println!("kubectl 1.{minor}: get, apply and delete work");
    }
}

#[test]
fn pods_made_with_the_testkit_show_in_kubectl_as_the_controller_would_write_them() {
    let server = tls_cluster();
    let Some(k) = kubectl(&server, "pods") else {
        return;
    };
    let pods = [
        Pod::new("echo-1", [10, 0, 0, 1]).node("node-a"),
        Pod::new("echo-2", [10, 0, 0, 2]).ready(false),
    ];
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods);
    let run = k.run(&[
        "get", "endpoints", "echo", "-n", "prod", "-o",
        "jsonpath={.subsets[0].addresses[0].nodeName} {.subsets[0].notReadyAddresses[0].ip} {.metadata.creationTimestamp}",
    ]);
    let parts: Vec<&str> = run.stdout.split(' ').collect();
    assert_eq!(parts[..2], ["node-a", "10.0.0.2"], "{run:?}");
    assert!(parts[2].ends_with('Z') && parts[2].len() == 20, "{run:?}");
}

/// The README's "Testing your code" example, run as written there: its fixture is
/// `tests/fixtures/cart.yaml`, its test `tests/fixtures/cart.rs` (without the `#[test]`
/// line, so that a machine without kubectl skips it as the other tests do).
mod readme {
    include!("fixtures/cart.rs");

    #[test]
    fn the_readmes_example_sets_up_fixtures_with_kubectl_apply() {
        let readme = include_str!("../README.md");
        let block = |first_line: &str| {
            readme
                .split_once(first_line)
                .and_then(|(_, rest)| rest.split_once("```"))
                .map(|(block, _)| format!("{first_line}{block}"))
                .unwrap_or_else(|| panic!("the README has a block that starts {first_line:?}"))
        };
        assert_eq!(
            block("# tests/fixtures/cart.yaml\n"),
            include_str!("fixtures/cart.yaml")
        );
        assert_eq!(
            block("// tests/cart.rs\n").replacen("#[test]\n", "", 1),
            include_str!("fixtures/cart.rs")
        );
        if !super::have_kubectl() {
            super::missing_prerequisite("kubectl on PATH");
            return;
        }
        if let Err(e) = my_client_follows_the_cart_service() {
            panic!("the README's test: {e}");
        }
    }
}
