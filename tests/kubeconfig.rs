//! Outside the cluster: kubeconfigs (JSON directly, YAML through the real kubectl), client
//! certificates, tls-server-name, insecure-skip-tls-verify, and exec credential plugins,
//! against the fake API server.

mod support;

use std::path::{Path, PathBuf};

use kuberesolver::testkit::{
    FakeApiServer, Fault, TlsIdentity, CLIENT_CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM, TEST_CA_PEM,
};
use kuberesolver::{Config, ErrorKind, Resolver, Source};
use support::*;

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh temporary folder for one test.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kuberesolver-kubeconfig-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A JSON kubeconfig with one context; `cluster` and `user` are JSON object bodies.
fn write_kubeconfig(dir: &Path, cluster: serde_json::Value, user: serde_json::Value) -> PathBuf {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "me", "namespace": "prod"}}],
        "clusters": [{"name": "fake", "cluster": cluster}],
        "users": [{"name": "me", "user": user}],
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

fn resolve_with(config: Config, target: &str) -> Resolver {
    spawn_on(config, Source::Endpoints, target)
}

fn tls_cluster(identity: TlsIdentity, token: Option<&str>) -> FakeApiServer {
    let server = FakeApiServer::builder()
        .tls(identity)
        .token(token.map(str::to_string))
        .start()
        .expect("server");
    scale(&server, 2);
    server
}

#[test]
fn a_json_kubeconfig_with_ca_data_and_a_token_resolves_in_the_contexts_namespace() {
    let server = tls_cluster(TlsIdentity::test_server(), Some("kc-token"));
    let dir = folder("json");
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": server.url(), "certificate-authority-data": base64(TEST_CA_PEM.as_bytes())}),
        serde_json::json!({"token": "kc-token"}),
    );
    let config = Config::from_kubeconfig_file(&path).expect("kubeconfig");
    assert!(!format!("{config:?}").contains("kc-token"));
    let r = resolve_with(config, "kubernetes:///echo:grpc");
    converges_to(&r, &addrs(8080, [1, 2]));
    assert_eq!(r.target().namespace(), Some("prod"));
}

#[test]
fn relative_ca_and_token_files_are_read_from_the_kubeconfigs_folder() {
    let server = tls_cluster(TlsIdentity::test_server(), Some("file-token"));
    let dir = folder("relative");
    std::fs::write(dir.join("ca.pem"), TEST_CA_PEM).expect("ca");
    std::fs::write(dir.join("token"), "file-token\n").expect("token");
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": server.url(), "certificate-authority": "ca.pem"}),
        serde_json::json!({"tokenFile": "token"}),
    );
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    converges_to(&r, &addrs(8080, [1, 2]));
}

#[test]
fn a_client_certificate_authenticates_and_is_required() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .client_ca(CLIENT_CA_PEM)
        .start()
        .expect("server");
    scale(&server, 1);
    let dir = folder("client-cert");
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": server.url(), "certificate-authority-data": base64(TEST_CA_PEM.as_bytes())}),
        serde_json::json!({
            "client-certificate-data": base64(CLIENT_CERT_PEM.as_bytes()),
            "client-key-data": base64(CLIENT_KEY_PEM.as_bytes()),
        }),
    );
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    converges_to(&r, &addrs(8080, [1]));
    // The same cluster without the certificate: the handshake fails, nothing resolves.
    let without = resolve_with(
        Config::new(server.url()).ca_pem(TEST_CA_PEM),
        "kubernetes:///echo.prod:grpc",
    );
    let err = not_ready(&without);
    assert_eq!(
        err.cause().map(|c| c.kind()),
        Some(ErrorKind::Transport),
        "{err}"
    );
}

#[test]
fn tls_server_name_verifies_the_certificate_for_that_name() {
    // This certificate is only valid for example.com, not for 127.0.0.1.
    let server = tls_cluster(TlsIdentity::wrong_san(), None);
    let dir = folder("server-name");
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({
            "server": server.url(),
            "certificate-authority-data": base64(TEST_CA_PEM.as_bytes()),
            "tls-server-name": "example.com",
        }),
        serde_json::json!({}),
    );
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    converges_to(&r, &addrs(8080, [1, 2]));
    let wrong = resolve_with(
        Config::new(server.url())
            .ca_pem(TEST_CA_PEM)
            .tls_server_name("other.example"),
        "kubernetes:///echo.prod:grpc",
    );
    let err = not_ready(&wrong);
    let cause = err.cause().expect("a cause");
    assert_eq!(cause.kind(), ErrorKind::Transport, "{err}");
    assert!(
        cause.to_string().contains("not valid for name"),
        "the name was checked: {cause}"
    );
}

#[test]
fn insecure_skip_tls_verify_is_honoured_only_from_a_kubeconfig() {
    let server = tls_cluster(TlsIdentity::wrong_san(), None);
    let dir = folder("insecure");
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": server.url(), "insecure-skip-tls-verify": true}),
        serde_json::json!({}),
    );
    let config = Config::from_kubeconfig_file(&path).expect("kubeconfig");
    assert!(format!("{config:?}").contains("insecure_skip_tls_verify: true"));
    let r = resolve_with(config, "kubernetes:///echo:grpc");
    converges_to(&r, &addrs(8080, [1, 2]));
}

/// An exec plugin script that prints the token in `dir/token`, counts its runs in `dir/runs`,
/// and saves `KUBERNETES_EXEC_INFO` to `dir/info`. It answers in the apiVersion it was asked in.
fn exec_plugin(dir: &Path) -> PathBuf {
    let script = dir.join("plugin.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nD={}\necho run >> \"$D/runs\"\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$D/info\"\n\
             V=$(sed -n 's/.*\"apiVersion\":\"\\([^\"]*\\)\".*/\\1/p' \"$D/info\")\n\
             printf '{{\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}}}' \"$V\" \"$(cat \"$D/token\")\"\n",
            dir.display()
        ),
    )
    .expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    script
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_exec_plugin_token_is_cached_and_fetched_again_after_a_401() {
    let server = FakeApiServer::builder()
        .token(Some("exec-1".into()))
        .start()
        .expect("server");
    scale(&server, 1);
    let dir = folder("exec");
    std::fs::write(dir.join("token"), "exec-1").expect("token");
    let script = exec_plugin(&dir);
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": server.url()}),
        serde_json::json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": script.display().to_string(),
            "args": ["get-token"],
            "env": [{"name": "PLUGIN_SECRET", "value": "not-logged"}],
            "interactiveMode": "Never",
        }}),
    );
    let config = Config::from_kubeconfig_file(&path).expect("kubeconfig");
    let r = resolve_with(config, "kubernetes:///echo:grpc");
    converges_to(&r, &addrs(8080, [1]));
    server.wait_for_watches(1, PATIENCE);
    assert_eq!(runs(&dir), 1, "cached until it expires (2099)");
    let info = std::fs::read_to_string(dir.join("info")).expect("info");
    assert!(
        info.contains("\"kind\":\"ExecCredential\"")
            && info.contains("client.authentication.k8s.io/v1"),
        "{info}"
    );
    // The credential rotates: the old token gets a 401, and the plugin runs again.
    std::fs::write(dir.join("token"), "exec-2").expect("rotate");
    server.set_token(Some("exec-2".into()));
    server.inject(Fault::EndCleanly);
    scale(&server, 2);
    converges_to(&r, &addrs(8080, [1, 2]));
    assert!(runs(&dir) >= 2);
    assert!(server.requests().iter().any(|q| q.status == 401));
    assert_eq!(
        server.requests().last().and_then(|q| q.bearer_token()),
        Some("exec-2")
    );
}

/// What the plugin of `dir` found in `KUBERNETES_EXEC_INFO` when it last ran.
fn exec_info(dir: &Path) -> serde_json::Value {
    let info = std::fs::read_to_string(dir.join("info")).expect("the plugin ran");
    serde_json::from_str(&info).expect("KUBERNETES_EXEC_INFO is JSON")
}

/// A cluster whose CA file is named relatively, with a tls-server-name and two extensions.
fn cluster_for_exec_plugins(server: &FakeApiServer, dir: &Path) -> serde_json::Value {
    std::fs::write(dir.join("ca.pem"), TEST_CA_PEM).expect("ca");
    serde_json::json!({
        "server": server.url(),
        "certificate-authority": "ca.pem",
        "tls-server-name": "localhost",
        "extensions": [
            {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kuberesolver-test", "region": ["eu", 1]}},
            {"name": "another-extension", "extension": {"audience": "not-this-one"}},
        ],
    })
}

#[test]
fn an_exec_plugin_that_asks_for_cluster_info_gets_the_server_ca_name_and_exec_extension() {
    let server = tls_cluster(TlsIdentity::test_server(), Some("exec-cluster"));
    let dir = folder("exec-cluster");
    std::fs::write(dir.join("token"), "exec-cluster").expect("token");
    let script = exec_plugin(&dir);
    for provide_cluster_info in [true, false] {
        let path = write_kubeconfig(
            &dir,
            cluster_for_exec_plugins(&server, &dir),
            serde_json::json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": script.display().to_string(),
                "interactiveMode": "Never",
                "provideClusterInfo": provide_cluster_info,
            }}),
        );
        let r = resolve_with(
            Config::from_kubeconfig_file(&path).expect("kubeconfig"),
            "kubernetes:///echo:grpc",
        );
        converges_to(&r, &addrs(8080, [1, 2]));
        let spec = &exec_info(&dir)["spec"];
        if provide_cluster_info {
            assert_eq!(
                spec["cluster"],
                serde_json::json!({
                    "server": server.url(),
                    "certificate-authority-data": base64(TEST_CA_PEM.as_bytes()),
                    "tls-server-name": "localhost",
                    "config": {"audience": "kuberesolver-test", "region": ["eu", 1]},
                }),
                "{spec}"
            );
        } else {
            assert_eq!(spec, &serde_json::json!({"interactive": false}));
        }
    }
}

#[test]
fn an_exec_plugin_gets_the_same_cluster_info_from_us_as_from_kubectl() {
    if !kubectl_runs() {
        return;
    }
    let server = tls_cluster(TlsIdentity::test_server(), Some("exec-cluster"));
    let dir = folder("exec-cluster-kubectl");
    std::fs::write(dir.join("token"), "exec-cluster").expect("token");
    let script = exec_plugin(&dir);
    // v1beta1, which every kubectl since 1.20 (the first with provideClusterInfo) speaks.
    let path = write_kubeconfig(
        &dir,
        cluster_for_exec_plugins(&server, &dir),
        serde_json::json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": script.display().to_string(),
            "provideClusterInfo": true,
        }}),
    );
    let kubectl = std::process::Command::new("kubectl")
        .args(["get", "--raw", "/api/v1/namespaces/prod/endpoints/echo"])
        .env("KUBECONFIG", &path)
        .output()
        .expect("kubectl runs");
    assert!(
        kubectl.status.success(),
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    let from_kubectl = exec_info(&dir);
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    converges_to(&r, &addrs(8080, [1, 2]));
    let from_us = exec_info(&dir);
    assert_eq!(from_us["spec"]["cluster"], from_kubectl["spec"]["cluster"]);
    assert!(
        from_us["spec"]["cluster"]["config"].is_object(),
        "{from_us}"
    );
}

#[test]
fn a_failing_exec_plugin_fails_spawn_with_its_stderr() {
    let dir = folder("exec-fail");
    let script = dir.join("fail.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'please run: cloud auth login' >&2\nexit 3\n",
    )
    .expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = write_kubeconfig(
        &dir,
        serde_json::json!({"server": "http://127.0.0.1:1"}),
        serde_json::json!({"exec": {"command": script.display().to_string()}}),
    );
    let config = Config::from_kubeconfig_file(&path).expect("kubeconfig parses");
    let err = Resolver::builder("kubernetes:///echo:grpc")
        .config(config)
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("please run: cloud auth login"),
        "{err}"
    );
}

/// Whether the real kubectl runs here. A test that needs it fails when `CI` is set (CI
/// installs it), and says it is skipped otherwise.
fn kubectl_runs() -> bool {
    let runs = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        missing_prerequisite("kubectl on PATH");
    }
    runs
}

/// A YAML kubeconfig: the cluster `fake` is `server` (with the test CA in `ca.pem` next to the
/// file, named relatively), then `rest` (contexts, users, current-context).
fn kubeconfig_yaml(server: &FakeApiServer, rest: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: ca.pem\n{rest}",
        server.url()
    )
}

/// `dir/config`: [`kubeconfig_yaml`] with the current context `test` in `prod`, whose user is
/// written as the YAML flow mapping `user`.
fn write_yaml_kubeconfig(dir: &Path, server: &FakeApiServer, user: &str) -> PathBuf {
    std::fs::write(dir.join("ca.pem"), TEST_CA_PEM).expect("ca");
    let path = dir.join("config");
    let rest = format!(
        "current-context: test\ncontexts:\n- name: test\n  context: {{cluster: fake, user: me, namespace: prod}}\n\
         users:\n- name: me\n  user: {user}\n"
    );
    std::fs::write(&path, kubeconfig_yaml(server, &rest)).expect("yaml");
    path
}

#[test]
fn a_yaml_kubeconfigs_relative_token_file_and_exec_command_are_found_in_its_folder() {
    if !kubectl_runs() {
        return;
    }
    let server = tls_cluster(TlsIdentity::test_server(), Some("relative-token"));
    // The test runs in the crate's folder; the kubeconfig is elsewhere, and the paths it
    // names do not exist relative to the working directory.
    let dir = folder("yaml-relative");
    assert!(!Path::new("relative-token-file").exists() && !Path::new("bin/plugin.sh").exists());
    std::fs::write(dir.join("relative-token-file"), "relative-token\n").expect("token");
    let path = write_yaml_kubeconfig(&dir, &server, "{tokenFile: relative-token-file}");
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    converges_to(&r, &addrs(8080, [1, 2]));

    let plugin_dir = dir.join("bin");
    std::fs::create_dir_all(&plugin_dir).expect("bin");
    std::fs::write(plugin_dir.join("token"), "relative-token").expect("token");
    exec_plugin(&plugin_dir);
    let path = write_yaml_kubeconfig(
        &dir,
        &server,
        "{exec: {command: ./bin/plugin.sh, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}",
    );
    let r = resolve_with(
        Config::from_kubeconfig_file(&path).expect("kubeconfig"),
        "kubernetes:///echo:grpc",
    );
    // The server takes only this token, which only the plugin prints.
    converges_to(&r, &addrs(8080, [1, 2]));
}

#[test]
fn with_several_kubeconfig_files_a_users_paths_start_from_the_first_file_that_defines_it() {
    if !kubectl_runs() {
        return;
    }
    let server = tls_cluster(TlsIdentity::test_server(), Some("right-token"));
    let root = folder("several");
    for current in ["files", "plugin"] {
        // The contexts and the cluster in one file; the user `me` in the next two (the first
        // wins) with a token file next to each; the user `plugin` only in the last, JSON one.
        let contexts = root.join("contexts");
        std::fs::create_dir_all(&contexts).expect("contexts");
        std::fs::write(contexts.join("ca.pem"), TEST_CA_PEM).expect("ca");
        let rest = format!(
            "current-context: {current}\ncontexts:\n\
             - name: files\n  context: {{cluster: fake, user: me, namespace: prod}}\n\
             - name: plugin\n  context: {{cluster: fake, user: plugin, namespace: prod}}\n"
        );
        let contexts = contexts.join("config");
        std::fs::write(&contexts, kubeconfig_yaml(&server, &rest)).expect("contexts");
        let first = root.join("first");
        std::fs::create_dir_all(&first).expect("first");
        std::fs::write(first.join("token"), "right-token").expect("token");
        std::fs::write(
            first.join("config"),
            "apiVersion: v1\nkind: Config\nusers:\n- name: me\n  user: {tokenFile: token}\n",
        )
        .expect("first");
        let last = root.join("last");
        std::fs::create_dir_all(last.join("bin")).expect("last");
        std::fs::write(last.join("token"), "wrong-token").expect("token");
        std::fs::write(last.join("bin").join("token"), "right-token").expect("token");
        exec_plugin(&last.join("bin"));
        std::fs::write(
            last.join("config.json"),
            serde_json::json!({"apiVersion": "v1", "kind": "Config", "users": [
                {"name": "me", "user": {"tokenFile": "token"}},
                {"name": "plugin", "user": {"exec": {
                    "command": "./bin/plugin.sh",
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "interactiveMode": "Never",
                }}},
            ]})
            .to_string(),
        )
        .expect("last");
        let config = Config::from_kubeconfig_files([
            contexts,
            root.join("missing"),
            first.join("config"),
            last.join("config.json"),
        ])
        .expect(current);
        let r = resolve_with(config, "kubernetes:///echo:grpc");
        // The server takes only the right token.
        converges_to(&r, &addrs(8080, [1, 2]));
    }
}

#[test]
fn a_yaml_kubeconfig_is_read_through_kubectl() {
    if !kubectl_runs() {
        return;
    }
    let server = tls_cluster(TlsIdentity::test_server(), Some("yaml-token"));
    let dir = folder("yaml");
    let path = write_yaml_kubeconfig(&dir, &server, "{token: yaml-token}");
    let config = Config::from_kubeconfig_file(&path).expect("kubectl reads the YAML");
    let r = resolve_with(config, "kubernetes:///echo:grpc");
    converges_to(&r, &addrs(8080, [1, 2]));
}
