//! Reading the user's kubeconfig: the current context's cluster, user and namespace.
//!
//! JSON kubeconfigs are parsed here; YAML ones (the usual) go through
//! `kubectl config view --minify --flatten -o json`, so there is no YAML parser in the crate.
//! `KUBECONFIG` may list several files (merged by kubectl); without it, `~/.kube/config`.
//!
//! Relative paths are resolved as client-go's `ResolveLocalPaths` does: against the folder of
//! the file that defined the section. `--flatten` inlines certificate files, but leaves
//! `tokenFile` and an exec `command` as written, so for those we find the defining file
//! ourselves: with several files, the first that defines the user (kubectl's merge keeps the
//! first definition of a name).

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::{Config, PemSource, TokenSpec};
use crate::base64::{decode, encode, Alphabet};
use crate::credentials::exec::{ClusterInfo, ExecSpec};
use crate::util::printable;
use crate::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Kubeconfig {
    clusters: Option<Vec<NamedCluster>>,
    users: Option<Vec<NamedUser>>,
    contexts: Option<Vec<NamedContext>>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedCluster {
    name: String,
    cluster: Option<Cluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
    #[serde(rename = "disable-compression")]
    disable_compression: Option<bool>,
    extensions: Option<Vec<NamedExtension>>,
}

/// One entry of a cluster's `extensions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedExtension {
    name: String,
    extension: Option<serde_json::Value>,
}

/// The name of the cluster extension whose value client-go passes to exec plugins as
/// `spec.cluster.config`.
const EXEC_EXTENSION: &str = "client.authentication.k8s.io/exec";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedUser {
    name: String,
    user: Option<User>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    exec: Option<ExecSpec>,
    username: Option<String>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedContext {
    name: String,
    context: Option<Context>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

/// Where the kubeconfig is: `KUBECONFIG` (a `:`-separated list) or `~/.kube/config`.
pub(super) fn locate(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    listed(env).unwrap_or_else(|| in_home(env))
}

/// The files `KUBECONFIG` lists, when it is set and not empty.
pub(super) fn listed(env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<PathBuf>> {
    let list = env("KUBECONFIG").filter(|l| !l.is_empty())?;
    Some(
        std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
    )
}

/// `~/.kube/config`, when `HOME` is set.
pub(super) fn in_home(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| vec![Path::new(&home).join(".kube").join("config")])
        .unwrap_or_default()
}

/// Where the relative paths of the kubeconfig's sections are relative to.
enum Origin<'a> {
    /// One file: its folder (absolute), for every section.
    Folder(Option<PathBuf>),
    /// `kubectl`'s merge of several files, whose certificate files are inlined: the user's
    /// folder is looked up when a relative path needs it.
    Merged {
        files: &'a [&'a PathBuf],
        kubectl: &'a Path,
    },
}

impl Origin<'_> {
    /// The folder relative cluster paths start from.
    fn cluster_folder(&self) -> Option<&Path> {
        match self {
            Origin::Folder(dir) => dir.as_deref(),
            Origin::Merged { .. } => None,
        }
    }

    /// The folder of the first file that defines the user `name`.
    fn user_folder(&self, name: &str) -> Result<Option<PathBuf>, Error> {
        let (files, kubectl) = match self {
            Origin::Folder(dir) => return Ok(dir.clone()),
            Origin::Merged { files, kubectl } => (files, kubectl),
        };
        for file in files.iter() {
            let defined: Kubeconfig = match read_json(file)? {
                Some(parsed) => parsed,
                None => {
                    let json = kubectl_view(&[file], kubectl, &["config", "view", "-o", "json"])?;
                    serde_json::from_slice(&json).map_err(|e| {
                        Error::config(format!("`kubectl config view` printed bad JSON: {e}"))
                    })?
                }
            };
            if defined
                .users
                .unwrap_or_default()
                .iter()
                .any(|u| u.name == name)
            {
                return Ok(folder_of(file));
            }
        }
        Err(Error::config(format!(
            "user {name:?} of the merged kubeconfig is defined in none of its files"
        )))
    }
}

/// The absolute folder of `file`, so that its relative paths stay right if the program
/// changes its working directory later (the token file is re-read every minute).
fn folder_of(file: &Path) -> Option<PathBuf> {
    std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
}

/// A kubeconfig file parsed directly when it is JSON; `None` when it is YAML.
fn read_json(file: &Path) -> Result<Option<Kubeconfig>, Error> {
    let bytes = std::fs::read(file)
        .map_err(|e| Error::config(format!("cannot read kubeconfig {}: {e}", file.display())))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::config(format!(
            "kubeconfig {} is not valid JSON: {e}",
            file.display()
        ))
    })
}

/// Load the current context from `files`: directly when it is one JSON file, else through
/// `kubectl`.
pub(super) fn load(files: &[PathBuf], kubectl: &Path) -> Result<Config, Error> {
    let existing: Vec<&PathBuf> = files.iter().filter(|f| f.is_file()).collect();
    if existing.is_empty() {
        return Err(Error::config(format!(
            "no kubeconfig found (looked for {})",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let [only] = existing.as_slice() {
        if let Some(parsed) = read_json(only)? {
            let origin = Origin::Folder(folder_of(only));
            return to_config(parsed, &origin, &only.display().to_string());
        }
    }
    let json = kubectl_view(
        &existing,
        kubectl,
        &["config", "view", "--minify", "--flatten", "-o", "json"],
    )?;
    let parsed: Kubeconfig = serde_json::from_slice(&json)
        .map_err(|e| Error::config(format!("`kubectl config view` printed bad JSON: {e}")))?;
    let origin = match existing.as_slice() {
        [only] => Origin::Folder(folder_of(only)),
        several => Origin::Merged {
            files: several,
            kubectl,
        },
    };
    to_config(parsed, &origin, "the kubeconfig (via kubectl)")
}

/// `kubectl {args}` with `KUBECONFIG` set to `files`.
fn kubectl_view(files: &[&PathBuf], kubectl: &Path, args: &[&str]) -> Result<Vec<u8>, Error> {
    let list = std::env::join_paths(files)
        .map_err(|e| Error::config(format!("bad kubeconfig path list: {e}")))?;
    let output = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", list)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::config(format!(
                "the kubeconfig is YAML, which is read through kubectl, but `{}` cannot run ({e}); \
                 install kubectl, point to it, or use a JSON kubeconfig",
                kubectl.display()
            ))
        })?;
    if !output.status.success() {
        return Err(Error::config(format!(
            "`kubectl config view` failed: {}",
            printable(&output.stderr)
        )));
    }
    Ok(output.stdout)
}

fn to_config(k: Kubeconfig, origin: &Origin<'_>, source: &str) -> Result<Config, Error> {
    let bad = |why: String| Error::config(format!("{source}: {why}"));
    let context_name = k
        .current_context
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("no current-context".into()))?;
    let context = k
        .contexts
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context)
        .ok_or_else(|| bad(format!("context {context_name:?} not found")))?;
    let cluster_name = context.cluster.unwrap_or_default();
    let mut cluster = k
        .clusters
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster)
        .ok_or_else(|| bad(format!("cluster {cluster_name:?} not found")))?;
    let server = cluster
        .server
        .take()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("cluster {cluster_name:?} has no server")))?;
    if cluster.proxy_url.is_some() {
        return Err(bad(
            "proxy-url is not supported; use `kubectl proxy` instead".into(),
        ));
    }
    let mut config = Config::new(server.clone());
    let pem = |data: Option<String>, file: Option<String>, field: &str, base: Option<&Path>| {
        pem_field(data, file, base).map_err(|()| bad(format!("{field}-data is not base64")))
    };
    let ca = pem(
        cluster.certificate_authority_data.take(),
        cluster.certificate_authority.take(),
        "certificate-authority",
        origin.cluster_folder(),
    )?;
    match &ca {
        Some(PemSource::Pem(bytes)) => config = config.ca_pem(bytes.clone()),
        Some(PemSource::File(file)) => config = config.ca_file(file),
        None => {}
    }
    if let Some(name) = cluster.tls_server_name.clone().filter(|n| !n.is_empty()) {
        config = config.tls_server_name(name);
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        config.insecure = true;
    }
    if let Some(ns) = context.namespace.filter(|n| !n.is_empty()) {
        config = config.namespace(ns);
    }
    let user_name = context.user.unwrap_or_default();
    let user = k
        .users
        .unwrap_or_default()
        .into_iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.user);
    let Some(user) = user else {
        return Ok(config);
    };
    if user.username.is_some() || user.auth_provider.is_some() {
        return Err(bad(format!(
            "user {user_name:?} uses basic auth or an auth-provider, which are not supported; use a token, a client certificate or an exec plugin"
        )));
    }
    // Only the paths client-go resolves: files, and a command with a separator (a bare name
    // is looked up on PATH).
    let relative = |p: &Option<String>| {
        p.as_deref()
            .is_some_and(|p| !p.is_empty() && Path::new(p).is_relative())
    };
    let relative_command = user.exec.as_ref().is_some_and(|e| {
        e.command.contains(std::path::MAIN_SEPARATOR) && Path::new(&e.command).is_relative()
    });
    let folder = if relative_command
        || relative(&user.token_file)
        || relative(&user.client_certificate)
        || relative(&user.client_key)
    {
        origin.user_folder(&user_name)?
    } else {
        None
    };
    let base = folder.as_deref();
    let cert = pem(
        user.client_certificate_data,
        user.client_certificate,
        "client-certificate",
        base,
    )?;
    let key = pem(user.client_key_data, user.client_key, "client-key", base)?;
    match (cert, key) {
        (Some(cert), Some(key)) => config.client = Some((cert, key)),
        (None, None) => {}
        _ => return Err(bad(format!("user {user_name:?} has a client certificate without a key, or a key without a certificate"))),
    }
    if let Some(mut exec) = user.exec {
        if relative_command {
            exec.command = relative_to(base, &exec.command).display().to_string();
        }
        if exec.provide_cluster_info {
            let ca = match ca {
                Some(PemSource::File(file)) => Some(std::fs::read(&file).map_err(|e| {
                    bad(format!(
                        "cannot read certificate-authority file {} for the exec plugin: {e}",
                        file.display()
                    ))
                })?),
                Some(PemSource::Pem(pem)) => Some(pem),
                None => None,
            };
            exec.cluster = Some(ClusterInfo(exec_cluster(&server, &cluster, ca.as_deref())));
        }
        config.token = Some(TokenSpec::Exec(exec));
    } else if let Some(token) = user.token.filter(|t| !t.is_empty()) {
        config = config.token(token);
    } else if let Some(file) = user.token_file.filter(|f| !f.is_empty()) {
        config = config.token_file(relative_to(base, &file));
    }
    Ok(config)
}

/// What client-go gives an exec plugin with `provideClusterInfo: true` as `spec.cluster`
/// (`ConfigToExecCluster`): empty and false fields left out, the CA as base64 of its PEM, and
/// the cluster's exec extension as `config`.
fn exec_cluster(server: &str, cluster: &Cluster, ca: Option<&[u8]>) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    info.insert("server".into(), server.into());
    if let Some(name) = cluster.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
        info.insert("tls-server-name".into(), name.into());
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        info.insert("insecure-skip-tls-verify".into(), true.into());
    }
    if let Some(pem) = ca.filter(|pem| !pem.is_empty()) {
        info.insert(
            "certificate-authority-data".into(),
            encode(pem, Alphabet::Standard).into(),
        );
    }
    if let Some(proxy) = cluster.proxy_url.as_deref().filter(|p| !p.is_empty()) {
        info.insert("proxy-url".into(), proxy.into());
    }
    if cluster.disable_compression == Some(true) {
        info.insert("disable-compression".into(), true.into());
    }
    let extension = cluster
        .extensions
        .iter()
        .flatten()
        .find(|e| e.name == EXEC_EXTENSION)
        .and_then(|e| e.extension.clone());
    if let Some(extension) = extension {
        info.insert("config".into(), extension);
    }
    serde_json::Value::Object(info)
}

/// A `*-data` field (base64 PEM, which wins) or its file form (relative to the kubeconfig's
/// folder). `Err(())` when the data is not base64.
fn pem_field(
    data: Option<String>,
    file: Option<String>,
    base: Option<&Path>,
) -> Result<Option<PemSource>, ()> {
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        return decode(&data, Alphabet::Standard)
            .map(|pem| Some(PemSource::Pem(pem)))
            .ok_or(());
    }
    Ok(file
        .filter(|f| !f.is_empty())
        .map(|f| PemSource::File(relative_to(base, &f))))
}

/// `file` as written, or relative to the kubeconfig's folder (without `./`, so that errors
/// and `Debug` show a clean path).
fn relative_to(base: Option<&Path>, file: &str) -> PathBuf {
    match base {
        Some(dir) if Path::new(file).is_relative() => dir.join(
            Path::new(file)
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect::<PathBuf>(),
        ),
        _ => PathBuf::from(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fresh_dir;

    fn cluster(json: serde_json::Value) -> Cluster {
        serde_json::from_value(json).expect("cluster")
    }

    #[test]
    fn an_exec_plugin_gets_the_cluster_as_client_go_describes_it() {
        let full = cluster(serde_json::json!({
            "server": "ignored: the caller gives it",
            "tls-server-name": "api.internal",
            "insecure-skip-tls-verify": true,
            "proxy-url": "http://proxy:3128",
            "disable-compression": true,
            "extensions": [
                {"name": "other", "extension": {"audience": "wrong"}},
                {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "06e3fbd18de8", "n": [1]}},
            ],
        }));
        assert_eq!(
            exec_cluster("https://10.0.0.1:6443", &full, Some(b"PEM")),
            serde_json::json!({
                "server": "https://10.0.0.1:6443",
                "tls-server-name": "api.internal",
                "insecure-skip-tls-verify": true,
                "certificate-authority-data": "UEVN",
                "proxy-url": "http://proxy:3128",
                "disable-compression": true,
                "config": {"audience": "06e3fbd18de8", "n": [1]},
            })
        );
        // Empty and false fields are left out, as Go's `omitempty` does.
        let bare = cluster(serde_json::json!({
            "tls-server-name": "",
            "insecure-skip-tls-verify": false,
            "extensions": [{"name": "other", "extension": {"audience": "wrong"}}],
        }));
        assert_eq!(
            exec_cluster("https://h", &bare, Some(b"")),
            serde_json::json!({"server": "https://h"})
        );
        assert_eq!(
            exec_cluster("https://h", &Cluster::default(), None),
            serde_json::json!({"server": "https://h"})
        );
    }

    #[test]
    fn kubeconfig_is_located_from_the_env_list_or_home() {
        let env = |k: &str| match k {
            "KUBECONFIG" => Some("/a/config:/b/config".to_string()),
            _ => None,
        };
        assert_eq!(
            locate(&env),
            vec![PathBuf::from("/a/config"), PathBuf::from("/b/config")]
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        assert_eq!(locate(&env), vec![PathBuf::from("/home/me/.kube/config")]);
    }

    fn config(json: &str) -> Result<Config, Error> {
        to_config(
            serde_json::from_str(json).expect("json"),
            &Origin::Folder(Some(PathBuf::from("/kube"))),
            "test",
        )
    }

    const BASE: &str = r#"{"current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u","namespace":"prod"}}],
        "clusters":[{"name":"k","cluster":{"server":"https://10.0.0.1:6443/prefix","certificate-authority":"ca.crt","tls-server-name":"api.internal"}}],
        "users":[{"name":"u","user":{"tokenFile":"token"}}]}"#;

    #[test]
    fn the_current_context_gives_server_namespace_and_relative_files() {
        let c = config(BASE).expect("config");
        assert_eq!(c.server(), "https://10.0.0.1:6443/prefix");
        assert_eq!(c.default_namespace(), Some("prod"));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("/kube/ca.crt") && shown.contains("/kube/token"),
            "{shown}"
        );
        assert!(shown.contains("api.internal"), "{shown}");
    }

    /// Writes `text` to `dir/name`, creating `dir`; returns the path.
    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("folder");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// How `Config`'s `Debug` shows an exec plugin's command (a string in a string).
    fn exec_shown(command: &str) -> String {
        format!(r#"exec \"{command}\""#)
    }

    #[test]
    fn a_token_file_and_an_exec_command_with_a_slash_are_relative_and_bare_commands_are_not() {
        let with_user = |user: &str| BASE.replace(r#"{"tokenFile":"token"}"#, user);
        let exec = |command: &str| {
            with_user(&format!(
                r#"{{"exec":{{"command":"{command}","apiVersion":"client.authentication.k8s.io/v1"}}}}"#
            ))
        };
        for (kubeconfig, expected) in [
            (BASE.to_string(), "file /kube/token".to_string()),
            (
                with_user(r#"{"tokenFile":"./t/token"}"#),
                "file /kube/t/token".to_string(),
            ),
            (
                with_user(r#"{"tokenFile":"/etc/token"}"#),
                "file /etc/token".to_string(),
            ),
            (exec("./bin/plugin"), exec_shown("/kube/bin/plugin")),
            (exec("bin/plugin"), exec_shown("/kube/bin/plugin")),
            (exec("/usr/bin/plugin"), exec_shown("/usr/bin/plugin")),
            (
                exec("gke-gcloud-auth-plugin"),
                exec_shown("gke-gcloud-auth-plugin"),
            ),
        ] {
            let shown = format!("{:?}", config(&kubeconfig).expect("config"));
            assert!(shown.contains(&expected), "{shown} lacks {expected}");
        }
    }

    #[test]
    fn of_several_files_the_first_that_defines_the_user_gives_its_folder() {
        let root = fresh_dir("merged");
        let user = |dir: &str, name: &str| {
            write(
                &root.join(dir),
                "config.json",
                &format!(r#"{{"users":[{{"name":"{name}","user":{{"tokenFile":"token"}}}}]}}"#),
            )
        };
        let files = [user("a", "other"), user("b", "me"), user("c", "me")];
        let files: Vec<&PathBuf> = files.iter().collect();
        let origin = Origin::Merged {
            files: &files,
            kubectl: Path::new("/nonexistent/kubectl"),
        };
        let found = origin.user_folder("me").expect("found");
        assert_eq!(found, Some(root.join("b")));
        let err = origin.user_folder("nobody").unwrap_err().to_string();
        assert!(err.contains("\"nobody\""), "{err}");
        assert_eq!(
            origin.cluster_folder(),
            None,
            "kubectl inlines cluster files"
        );
    }

    #[test]
    fn unsupported_or_broken_kubeconfigs_are_clear_errors() {
        for (json, needle) in [
            (r#"{"contexts":[]}"#, "no current-context"),
            (
                r#"{"current-context":"x","contexts":[]}"#,
                "context \"x\" not found",
            ),
            (
                &BASE.replace("\"cluster\":\"k\"", "\"cluster\":\"nope\""),
                "cluster \"nope\" not found",
            ),
            (
                &BASE.replace(r#""tokenFile":"token""#, r#""username":"admin""#),
                "basic auth",
            ),
            (
                &BASE.replace(r#""tokenFile":"token""#, r#""client-certificate":"c.pem""#),
                "without a key",
            ),
            (
                &BASE.replace(r#""tls-server-name""#, r#""proxy-url":"http://p","x""#),
                "proxy-url",
            ),
        ] {
            let err = config(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
