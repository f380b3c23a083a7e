//! Finding a configuration: in a pod (the service account), from the user's kubeconfig, or
//! inferred in the order kubectl uses.

use std::path::{Path, PathBuf};

use super::{kubeconfig, Config};
use crate::Error;

/// Where service-account files are mounted in a pod.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Config {
    /// The current context of the user's kubeconfig: `KUBECONFIG` (a list of files) or
    /// `~/.kube/config`.
    ///
    /// A JSON kubeconfig is read directly; a YAML one through
    /// `kubectl config view --minify --flatten -o json` (`kubectl` from `PATH`; see
    /// [`kubeconfig_with_kubectl`](Self::kubeconfig_with_kubectl)). Supported: `server` (with a
    /// path prefix), `certificate-authority(-data)`, `tls-server-name`,
    /// `insecure-skip-tls-verify` (with a loud warning), `token`, `tokenFile`, client
    /// certificates and keys (data or file), `exec` credential plugins (with
    /// `provideClusterInfo`, given the cluster in `KUBERNETES_EXEC_INFO` as client-go does),
    /// and the context's namespace as the default namespace. Relative paths (certificate and token files, and an
    /// exec `command` that contains a `/`; a bare command is looked up on `PATH`) are relative
    /// to the folder of the file that defined them, as client-go resolves them: with several
    /// files, the first file that defines the user.
    /// Not supported, and a clear error: `proxy-url`, basic auth and `auth-provider`.
    ///
    /// ```no_run
    /// use kuberesolver::{Config, Resolver};
    ///
    /// let config = Config::kubeconfig()?;
    /// println!("{} (namespace {:?})", config.server(), config.default_namespace());
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc").config(config).spawn()?;
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn kubeconfig() -> Result<Config, Error> {
        Config::kubeconfig_with_kubectl("kubectl")
    }

    /// [`kubeconfig`](Self::kubeconfig) with the path of the `kubectl` to read YAML with.
    ///
    /// `kubectl` runs only when the kubeconfig is YAML or spread over several files.
    ///
    /// ```no_run
    /// use kuberesolver::Config;
    ///
    /// let config = Config::kubeconfig_with_kubectl("/usr/local/bin/kubectl")?;
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn kubeconfig_with_kubectl(kubectl: impl Into<PathBuf>) -> Result<Config, Error> {
        let files = kubeconfig::locate(&|k| std::env::var(k).ok());
        kubeconfig::load(&files, &kubectl.into())
    }

    /// The current context of one kubeconfig file (JSON directly, YAML through `kubectl` on
    /// `PATH`).
    ///
    /// Supports what [`kubeconfig`](Self::kubeconfig) supports. A kubeconfig that points at
    /// the test server:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let kubeconfig = serde_json::json!({
    ///     "current-context": "dev",
    ///     "contexts": [{"name": "dev", "context": {"cluster": "fake", "namespace": "prod"}}],
    ///     "clusters": [{"name": "fake", "cluster": {"server": server.url()}}],
    /// });
    /// let path = std::env::temp_dir().join(format!("kubeconfig-{}.json", std::process::id()));
    /// std::fs::write(&path, kubeconfig.to_string())?;
    /// let config = Config::from_kubeconfig_file(&path)?;
    /// assert_eq!((config.server(), config.default_namespace()), (&*server.url(), Some("prod")));
    /// let resolver = Resolver::builder("kubernetes:///echo:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_kubeconfig_file(path: impl Into<PathBuf>) -> Result<Config, Error> {
        kubeconfig::load(&[path.into()], Path::new("kubectl"))
    }

    /// The current context of several kubeconfig files merged as kubectl merges a
    /// `KUBECONFIG` list: for a name defined in several files, the first file wins; files
    /// that do not exist are skipped.
    ///
    /// Read through `kubectl` on `PATH` unless there is one JSON file. Relative paths are
    /// relative to the folder of the file that defined them (for a user's token file or exec
    /// command: the first file that defines the user). Supports what
    /// [`kubeconfig`](Self::kubeconfig) supports.
    ///
    /// ```no_run
    /// use kuberesolver::Config;
    ///
    /// // The cluster and context in one file, the credentials in another.
    /// let config = Config::from_kubeconfig_files(["/etc/kube/clusters", "/home/me/.kube/users"])?;
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn from_kubeconfig_files<P: Into<PathBuf>>(
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Config, Error> {
        let paths: Vec<PathBuf> = paths.into_iter().map(Into::into).collect();
        kubeconfig::load(&paths, Path::new("kubectl"))
    }

    /// The configuration of a pod: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
    /// (an IPv6 host is bracketed), with the service-account token, CA and namespace files
    /// under `/var/run/secrets/kubernetes.io/serviceaccount/`.
    ///
    /// Fails when the environment variables are missing (not in a pod). The files are read at
    /// spawn, except the namespace, which is read here (it never changes).
    ///
    /// ```
    /// use kuberesolver::Config;
    ///
    /// // In a pod, the service account; elsewhere, `kubectl proxy`.
    /// let config = Config::in_cluster().unwrap_or_else(|_| Config::new("http://127.0.0.1:8001"));
    /// println!("API server: {}", config.server());
    /// ```
    pub fn in_cluster() -> Result<Config, Error> {
        Config::in_cluster_from(&|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`in_cluster`](Self::in_cluster) with the environment and the folder given, for tests.
    fn in_cluster_from(env: &dyn Fn(&str) -> Option<String>, dir: &Path) -> Result<Config, Error> {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err(Error::config(
                "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
            ));
        };
        if port.parse::<u16>().is_err() {
            return Err(Error::config(format!(
                "KUBERNETES_SERVICE_PORT is not a port: {port:?}"
            )));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty());
        let mut config = Config::new(format!("https://{host}:{port}"))
            .token_file(dir.join("token"))
            .ca_file(dir.join("ca.crt"));
        config.namespace = namespace;
        Ok(config)
    }

    /// The configuration for wherever the program runs, in the order kubectl and
    /// controller-runtime use:
    ///
    /// 1. the kubeconfig files `KUBECONFIG` names, when it is set and one of them exists (even
    ///    in a pod: setting it is a choice, such as a sidecar that reaches another cluster);
    /// 2. [`in_cluster`](Self::in_cluster), when `KUBERNETES_SERVICE_HOST` is set (a pod);
    /// 3. `~/.kube/config`, only when `KUBECONFIG` is not set (as with kubectl, a `KUBECONFIG`
    ///    replaces the default file rather than adding to it);
    ///
    /// else an error that says what was tried. A kubeconfig that exists but cannot be used is
    /// an error, not a reason to try the next.
    ///
    /// What [`Resolver::spawn`](crate::Resolver::spawn) uses, and a
    /// [`Builder`](crate::Builder) without [`config`](crate::Builder::config).
    ///
    /// ```no_run
    /// use kuberesolver::{Config, Resolver};
    ///
    /// let config = Config::infer()?;
    /// println!("API server: {}", config.server());
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc").config(config).spawn()?;
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn infer() -> Result<Config, Error> {
        Config::infer_from(
            &|k| std::env::var(k).ok(),
            Path::new(SERVICE_ACCOUNT_DIR),
            Path::new("kubectl"),
        )
    }

    fn infer_from(
        env: &dyn Fn(&str) -> Option<String>,
        service_account: &Path,
        kubectl: &Path,
    ) -> Result<Config, Error> {
        let listed = kubeconfig::listed(env);
        if let Some(files) = listed.as_ref().filter(|f| f.iter().any(|f| f.is_file())) {
            return kubeconfig::load(files, kubectl);
        }
        if env("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
            return Config::in_cluster_from(env, service_account);
        }
        let files = listed.unwrap_or_else(|| kubeconfig::in_home(env));
        kubeconfig::load(&files, kubectl).map_err(|e| {
            Error::config(format!(
                "cannot infer the API server: not in a pod (KUBERNETES_SERVICE_HOST is not set), and {e}; \
                 alternatively run `kubectl proxy` and use Config::new(\"http://127.0.0.1:8001\")"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fresh_dir;

    #[test]
    fn in_cluster_brackets_ipv6_and_reads_the_namespace() {
        let dir = fresh_dir("incluster");
        std::fs::write(dir.join("namespace"), "prod\n").expect("write");
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let config = Config::in_cluster_from(&env, &dir).expect("in cluster");
        assert_eq!(config.server(), "https://[fd00::1]:443");
        assert_eq!(config.default_namespace(), Some("prod"));
    }

    #[test]
    fn in_cluster_outside_a_pod_is_a_clear_error() {
        let err = Config::in_cluster_from(&|_| None, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"));
    }

    /// A JSON kubeconfig at `path` whose cluster is `server`.
    fn json_kubeconfig(path: &Path, server: &str) {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        let json = format!(
            r#"{{"current-context":"c","contexts":[{{"name":"c","context":{{"cluster":"k"}}}}],
               "clusters":[{{"name":"k","cluster":{{"server":"{server}"}}}}]}}"#
        );
        std::fs::write(path, json).expect("write");
    }

    #[test]
    fn infer_takes_kubeconfig_then_the_pod_then_the_home_kubeconfig() {
        let dir = fresh_dir("infer");
        let listed = dir.join("listed.json");
        json_kubeconfig(&listed, "http://127.0.0.1:8001");
        let home = dir.join("home");
        json_kubeconfig(&home.join(".kube").join("config"), "http://127.0.0.1:8002");
        let missing = dir.join("missing.json");
        let env = |kubeconfig: Option<&Path>, in_pod: bool| {
            let kubeconfig = kubeconfig.map(|p| p.display().to_string());
            let home = home.display().to_string();
            move |k: &str| match k {
                "KUBECONFIG" => kubeconfig.clone(),
                "KUBERNETES_SERVICE_HOST" if in_pod => Some("10.96.0.1".to_string()),
                "KUBERNETES_SERVICE_PORT" if in_pod => Some("443".to_string()),
                "HOME" => Some(home.clone()),
                _ => None,
            }
        };
        let infer = |env: &dyn Fn(&str) -> Option<String>| {
            Config::infer_from(env, &dir, Path::new("/nonexistent/kubectl"))
                .map(|c| c.server().to_string())
                .map_err(|e| e.to_string())
        };
        let pod = "https://10.96.0.1:443".to_string();
        // KUBECONFIG wins, in a pod too.
        assert_eq!(
            infer(&env(Some(&listed), true)),
            Ok("http://127.0.0.1:8001".into())
        );
        assert_eq!(
            infer(&env(Some(&listed), false)),
            Ok("http://127.0.0.1:8001".into())
        );
        // Without it, the pod before ~/.kube/config.
        assert_eq!(infer(&env(None, true)), Ok(pod.clone()));
        assert_eq!(infer(&env(None, false)), Ok("http://127.0.0.1:8002".into()));
        // A KUBECONFIG naming no existing file: the pod, else an error naming it (never
        // ~/.kube/config, which KUBECONFIG replaces).
        assert_eq!(infer(&env(Some(&missing), true)), Ok(pod));
        let err = infer(&env(Some(&missing), false)).unwrap_err();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
        // A KUBECONFIG that exists but is broken is an error, not a reason to use the pod.
        let broken = dir.join("broken.json");
        std::fs::write(&broken, "{").expect("write");
        let err = infer(&env(Some(&broken), true)).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");

        let nowhere = |k: &str| (k == "HOME").then(|| "/nonexistent-home".to_string());
        let err = infer(&nowhere).unwrap_err();
        assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
        assert!(err.contains("/nonexistent-home/.kube/config"), "{err}");
    }

    #[test]
    fn a_yaml_kubeconfig_without_kubectl_says_so() {
        let dir = fresh_dir("yaml");
        let kubeconfig = dir.join("config");
        std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").expect("write");
        let err = kubeconfig::load(&[kubeconfig], Path::new("/nonexistent/kubectl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("YAML") && err.contains("/nonexistent/kubectl"),
            "{err}"
        );
    }
}
