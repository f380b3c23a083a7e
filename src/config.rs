//! How to reach the API server: its URL, the bearer token, and the CA to trust.
//!
//! A [`Config`] is plain data and building one never fails; everything fallible (reading the
//! token and CA files, checking the URL) happens in [`Config::prepare`], which
//! [`Resolver::spawn`](crate::Resolver::spawn) calls, so a bad configuration fails at spawn
//! with a clear error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::credentials::exec::ExecSpec;
use crate::credentials::{Secret, TokenSource};
use crate::Error;

/// Where service-account files are mounted in a pod.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Clone, Debug)]
enum TokenSpec {
    Value(Secret),
    File(PathBuf),
    Exec(ExecSpec),
}

/// PEM, inline or in a file read at spawn.
#[derive(Clone)]
pub(crate) enum PemSource {
    File(PathBuf),
    Pem(Vec<u8>),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => write!(f, "file {}", p.display()),
            PemSource::Pem(_) => f.write_str("PEM"),
        }
    }
}

impl PemSource {
    fn read(&self, what: &str) -> Result<(Vec<u8>, String), Error> {
        match self {
            PemSource::Pem(pem) => Ok((pem.clone(), format!("the {what} PEM"))),
            PemSource::File(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!("cannot read {what} file {}: {e}", path.display()))
                })?;
                Ok((pem, format!("{what} file {}", path.display())))
            }
        }
    }
}

/// The connection to the Kubernetes API server.
///
/// ```
/// use kuberesolver::Config;
///
/// // Through `kubectl proxy`: plain HTTP on loopback, no token.
/// let local = Config::new("http://127.0.0.1:8001");
///
/// // Directly, with a service-account token and the cluster CA.
/// let direct = Config::new("https://10.96.0.1:443")
///     .token_file("/var/run/secrets/kubernetes.io/serviceaccount/token")
///     .ca_file("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
/// ```
///
/// TLS is always verified: against the configured CA (every certificate of the PEM bundle),
/// or the Mozilla roots of `webpki-roots` when none is configured. An IP-address server
/// (`https://10.96.0.1`, `https://[fd00::1]`) is verified against the certificate's IP SANs.
/// No proxy from the environment (`HTTPS_PROXY`) is used. `Debug` never shows the token.
///
/// A `Config::new(url)` starts with no token (no `Authorization` header), the webpki roots,
/// no client certificate, no default namespace (a target without one then means `default`),
/// and the URL's host as the name to verify. The TLS settings (a CA, a client certificate, a
/// TLS server name) need an `https://` URL; with `http://`, spawn fails with a
/// [`Config`](crate::ErrorKind::Config) error.
#[derive(Clone)]
pub struct Config {
    server: String,
    token: Option<TokenSpec>,
    ca: Option<PemSource>,
    namespace: Option<String>,
    tls_server_name: Option<String>,
    client: Option<(PemSource, PemSource)>,
    /// Only a kubeconfig can turn verification off.
    insecure: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field(
                "token",
                &match &self.token {
                    None => "none".to_string(),
                    Some(TokenSpec::Value(_)) => "<redacted>".to_string(),
                    Some(TokenSpec::File(p)) => format!("file {}", p.display()),
                    Some(TokenSpec::Exec(e)) => format!("exec {:?}", e.command),
                },
            )
            .field(
                "ca",
                &match &self.ca {
                    None => "webpki roots".to_string(),
                    Some(source) => format!("{source:?}"),
                },
            )
            .field("namespace", &self.namespace)
            .field("tls_server_name", &self.tls_server_name)
            .field("client_certificate", &self.client.as_ref().map(|c| &c.0))
            .field("insecure_skip_tls_verify", &self.insecure)
            .finish()
    }
}

impl Config {
    /// A server URL: `http://` (e.g. `kubectl proxy` on `http://127.0.0.1:8001`) or
    /// `https://host[:port]`, optionally with a path prefix. Checked at spawn.
    ///
    /// The port defaults to 443 for `https` and 80 for `http`. An IPv6 host goes in brackets
    /// (`https://[fd00::1]:6443`); user info, a query or a fragment is an error.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # use kuberesolver::ErrorKind;
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url()); // http://127.0.0.1:<port>
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    ///
    /// // A bad URL is an error at spawn, not here.
    /// let bad = Config::new("10.96.0.1:443"); // no scheme
    /// let result = Resolver::builder("kubernetes:///echo.prod:grpc").config(bad).spawn();
    /// assert_eq!(result.unwrap_err().kind(), ErrorKind::Config);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(server: impl Into<String>) -> Config {
        Config {
            server: server.into(),
            token: None,
            ca: None,
            namespace: None,
            tls_server_name: None,
            client: None,
            insecure: false,
        }
    }

    /// A fixed bearer token. Prefer [`token_file`](Self::token_file) for tokens that rotate.
    ///
    /// Default: no token. Surrounding whitespace is trimmed; an empty token, or one with
    /// characters a header cannot carry, fails at spawn. Replaces a token or token file set
    /// before.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url()).token("s3cret");
    /// assert!(!format!("{config:?}").contains("s3cret")); // never shown
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// assert_eq!(server.requests()[0].bearer_token(), Some("s3cret"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Config {
        self.token = Some(TokenSpec::Value(Secret::unchecked(token.into())));
        self
    }

    /// A file holding the bearer token, re-read about once a minute and at once after a 401,
    /// so rotated (projected service-account) tokens keep working. Read first at spawn.
    ///
    /// Default: no token. Surrounding whitespace (the usual trailing newline) is trimmed.
    /// Replaces a token or token file set before.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let path = std::env::temp_dir().join(format!("token-{}", std::process::id()));
    /// std::fs::write(&path, "s3cret\n")?;
    /// let config = Config::new(server.url()).token_file(&path);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// assert_eq!(server.requests()[0].bearer_token(), Some("s3cret"));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.token = Some(TokenSpec::File(path.into()));
        self
    }

    /// A PEM file of CA certificates to trust instead of the webpki roots; every certificate
    /// in it is trusted. Read at spawn.
    ///
    /// Default: the webpki roots. Needs an `https://` server URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, TEST_CA_PEM};
    ///
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let ca = std::env::temp_dir().join(format!("ca-{}.crt", std::process::id()));
    /// std::fs::write(&ca, TEST_CA_PEM)?;
    /// let config = Config::new(server.url()).ca_file(&ca); // https://127.0.0.1:<port>
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # std::fs::remove_file(&ca)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.ca = Some(PemSource::File(path.into()));
        self
    }

    /// CA certificates as PEM bytes, like [`ca_file`](Self::ca_file).
    ///
    /// Default: the webpki roots. Parsed at spawn: PEM without a certificate is an error then.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, TEST_CA_PEM};
    ///
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url()).ca_pem(TEST_CA_PEM);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Config {
        self.ca = Some(PemSource::Pem(pem.into()));
        self
    }

    /// The namespace for targets that name none.
    ///
    /// Default: none, and a target without a namespace then means `default`.
    /// [`in_cluster`](Self::in_cluster) sets the pod's own namespace, and
    /// [`kubeconfig`](Self::kubeconfig) the current context's.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url()).namespace("prod");
    /// assert_eq!(config.default_namespace(), Some("prod"));
    /// let resolver = Resolver::builder("kubernetes:///echo:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.target().to_string(), "kubernetes:///echo.prod:grpc");
    /// # assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = Some(namespace.into());
        self
    }

    /// The name to verify the server's certificate against, instead of the URL's host
    /// (kubeconfig `tls-server-name`). As with client-go, the name is only the TLS server name
    /// (SNI) and the name verified; connections still go to the URL's host, and the `Host`
    /// header still names it.
    ///
    /// Default: the URL's host. Needs an `https://` server URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, TEST_CA_PEM};
    ///
    /// // The test certificate names `localhost`; connect to 127.0.0.1 and verify `localhost`.
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url()).ca_pem(TEST_CA_PEM).tls_server_name("localhost");
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Config {
        self.tls_server_name = Some(name.into());
        self
    }

    /// A client certificate (chain) and its private key, as PEM files read at spawn, for API
    /// servers that authenticate clients by certificate.
    ///
    /// Default: no client certificate. Needs an `https://` server URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, CLIENT_CA_PEM, TEST_CA_PEM};
    /// use kuberesolver::testkit::{CLIENT_CERT_PEM, CLIENT_KEY_PEM};
    ///
    /// let server = FakeApiServer::builder()
    ///     .tls(TlsIdentity::test_server())
    ///     .client_ca(CLIENT_CA_PEM) // requires a client certificate
    ///     .start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let cert = std::env::temp_dir().join(format!("client-{}.pem", std::process::id()));
    /// let key = cert.with_extension("key");
    /// std::fs::write(&cert, CLIENT_CERT_PEM)?;
    /// std::fs::write(&key, CLIENT_KEY_PEM)?;
    /// let config = Config::new(server.url())
    ///     .ca_pem(TEST_CA_PEM)
    ///     .client_certificate_files(&cert, &key);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # std::fs::remove_file(&cert)?;
    /// # std::fs::remove_file(&key)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_certificate_files(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Config {
        self.client = Some((
            PemSource::File(certificate.into()),
            PemSource::File(key.into()),
        ));
        self
    }

    /// A client certificate (chain) and its private key as PEM bytes.
    ///
    /// Default: no client certificate. Parsed at spawn. Needs an `https://` server URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// use kuberesolver::testkit::{TlsIdentity, CLIENT_CA_PEM, TEST_CA_PEM};
    /// use kuberesolver::testkit::{CLIENT_CERT_PEM, CLIENT_KEY_PEM};
    ///
    /// let server = FakeApiServer::builder()
    ///     .tls(TlsIdentity::test_server())
    ///     .client_ca(CLIENT_CA_PEM) // requires a client certificate
    ///     .start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let config = Config::new(server.url())
    ///     .ca_pem(TEST_CA_PEM)
    ///     .client_certificate_pem(CLIENT_CERT_PEM, CLIENT_KEY_PEM);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(config)
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_certificate_pem(
        mut self,
        certificate: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Config {
        self.client = Some((
            PemSource::Pem(certificate.into()),
            PemSource::Pem(key.into()),
        ));
        self
    }

    pub(crate) fn client_identity(mut self, certificate: PemSource, key: PemSource) -> Config {
        self.client = Some((certificate, key));
        self
    }

    pub(crate) fn insecure_from_kubeconfig(mut self) -> Config {
        self.insecure = true;
        self
    }

    pub(crate) fn exec(mut self, spec: ExecSpec) -> Config {
        self.token = Some(TokenSpec::Exec(spec));
        self
    }

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
        let files = crate::kubeconfig::locate(&|k| std::env::var(k).ok());
        crate::kubeconfig::load(&files, &kubectl.into())
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
        crate::kubeconfig::load(&[path.into()], Path::new("kubectl"))
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
        crate::kubeconfig::load(&paths, Path::new("kubectl"))
    }

    /// The server URL as given.
    ///
    /// ```
    /// use kuberesolver::Config;
    ///
    /// assert_eq!(Config::new("http://127.0.0.1:8001").server(), "http://127.0.0.1:8001");
    /// ```
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The default namespace, when one is set (see [`namespace`](Self::namespace)).
    ///
    /// ```
    /// use kuberesolver::Config;
    ///
    /// let config = Config::new("http://127.0.0.1:8001");
    /// assert_eq!(config.default_namespace(), None); // targets without a namespace mean `default`
    /// assert_eq!(config.namespace("prod").default_namespace(), Some("prod"));
    /// ```
    pub fn default_namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
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
    pub(crate) fn in_cluster_from(
        env: &dyn Fn(&str) -> Option<String>,
        dir: &Path,
    ) -> Result<Config, Error> {
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

    pub(crate) fn infer_from(
        env: &dyn Fn(&str) -> Option<String>,
        service_account: &Path,
        kubectl: &Path,
    ) -> Result<Config, Error> {
        let listed = crate::kubeconfig::listed(env);
        if let Some(files) = listed.as_ref().filter(|f| f.iter().any(|f| f.is_file())) {
            return crate::kubeconfig::load(files, kubectl);
        }
        if env("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
            return Config::in_cluster_from(env, service_account);
        }
        let files = listed.unwrap_or_else(|| crate::kubeconfig::in_home(env));
        crate::kubeconfig::load(&files, kubectl).map_err(|e| {
            Error::config(format!(
                "cannot infer the API server: not in a pod (KUBERNETES_SERVICE_HOST is not set), and {e}; \
                 alternatively run `kubectl proxy` and use Config::new(\"http://127.0.0.1:8001\")"
            ))
        })
    }

    /// Check the URL, read the files: everything that can fail before the watcher starts.
    pub(crate) fn prepare(&self) -> Result<Prepared, Error> {
        let server = parse_server(&self.server)?;
        let ca = match &self.ca {
            None => None,
            Some(source) => {
                let (pem, what) = source.read("CA")?;
                Some(parse_certificates(&pem, &what)?)
            }
        };
        let client = match &self.client {
            None => None,
            Some((cert, key)) => {
                let (pem, what) = cert.read("client certificate")?;
                let chain = parse_certificates(&pem, &what)?;
                let (pem, what) = key.read("client key")?;
                let key = ureq::tls::PrivateKey::from_pem(&pem)
                    .map_err(|_| Error::config(format!("{what} holds no private key")))?;
                Some(ureq::tls::ClientCert::new_with_certs(&chain, key))
            }
        };
        let tls_used =
            ca.is_some() || client.is_some() || self.tls_server_name.is_some() || self.insecure;
        if tls_used && !server.https {
            return Err(Error::config(format!(
                "TLS settings are configured but the server URL {:?} is not https",
                self.server
            )));
        }
        let token = match &self.token {
            None => None,
            Some(TokenSpec::Value(secret)) => Some(Arc::new(TokenSource::fixed(secret)?)),
            Some(TokenSpec::File(path)) => Some(Arc::new(TokenSource::file(path.clone())?)),
            Some(TokenSpec::Exec(spec)) => Some(Arc::new(TokenSource::exec(spec.clone())?)),
        };
        let (base, connect_to, host_header) = match &self.tls_server_name {
            None => (server.base, None, None),
            Some(name) => {
                if name.is_empty() || name.contains(['/', ':', '@', ' ', '?', '#']) {
                    return Err(Error::config(format!("bad tls-server-name {name:?}")));
                }
                // As client-go: connect to the URL's host and send it as `Host` (a proxy or
                // load balancer in front of the API server may route on it), and use `name`
                // only for SNI and to verify the certificate. ureq takes both SNI and the
                // verified name from the URL, so the URL names `name`, a resolver maps it
                // back to the real host, and the request carries an explicit `Host`.
                let real = server.authority_with_port.clone();
                (
                    format!("https://{name}:{}{}", server.port, server.path),
                    Some((name.clone(), real)),
                    Some(server.authority.clone()),
                )
            }
        };
        if self.insecure {
            log::warn!(
                "TLS verification of {} is OFF (insecure-skip-tls-verify in the kubeconfig): \
                 anyone in the path can read the token and forge the endpoints",
                self.server
            );
        }
        Ok(Prepared {
            base,
            ca,
            client,
            insecure: self.insecure,
            connect_to,
            host_header,
            token,
            namespace: self.namespace.clone(),
        })
    }
}

/// A checked configuration.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    /// The CA certificates to trust; `None` means the webpki roots.
    pub ca: Option<Vec<ureq::tls::Certificate<'static>>>,
    pub client: Option<ureq::tls::ClientCert>,
    pub insecure: bool,
    /// With a tls-server-name: (the name in `base`, the real `host:port` to connect to).
    pub connect_to: Option<(String, String)>,
    /// With a tls-server-name: the `Host` header, the server URL's authority as written.
    pub host_header: Option<String>,
    pub token: Option<Arc<TokenSource>>,
    pub namespace: Option<String>,
}

struct Server {
    base: String,
    https: bool,
    /// `host[:port]` as written in the URL.
    authority: String,
    /// `host:port` with the default port filled in.
    authority_with_port: String,
    port: u16,
    path: String,
}

fn parse_server(url: &str) -> Result<Server, Error> {
    let bad = |why: &str| Error::config(format!("bad server URL {url:?}: {why}"));
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    if rest.contains(['?', '#']) {
        return Err(bad("no query or fragment allowed"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported; use a token"));
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("whitespace in the host"));
    }
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return Err(bad("unclosed '[' in an IPv6 host"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("junk after the IPv6 host"))?,
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => {
                if host.is_empty() {
                    return Err(bad("no host"));
                }
                if port.contains(':') {
                    return Err(bad("an IPv6 host must be in brackets"));
                }
                Some(port)
            }
            None => None,
        }
    };
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        },
        None if https => 443,
        None => 80,
    };
    let host = match authority.rfind(':') {
        Some(i) if !authority.ends_with(']') => &authority[..i],
        _ => authority,
    };
    let path = path.trim_end_matches('/');
    Ok(Server {
        base: format!(
            "{}://{authority}{path}",
            if https { "https" } else { "http" }
        ),
        https,
        authority: authority.to_string(),
        authority_with_port: format!("{host}:{port}"),
        port,
        path: path.to_string(),
    })
}

fn parse_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(Error::config(format!("{what} is not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::config(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fresh_dir;

    fn base(url: &str) -> Result<String, String> {
        parse_server(url).map(|s| s.base).map_err(|e| e.to_string())
    }

    #[test]
    fn server_urls_are_normalized() {
        assert_eq!(
            base("http://127.0.0.1:8001"),
            Ok("http://127.0.0.1:8001".into())
        );
        assert_eq!(
            base("https://10.96.0.1:443/"),
            Ok("https://10.96.0.1:443".into())
        );
        assert_eq!(
            base("https://[fd00::1]:6443"),
            Ok("https://[fd00::1]:6443".into())
        );
        assert_eq!(
            base("https://api.example/k8s/"),
            Ok("https://api.example/k8s".into())
        );
    }

    #[test]
    fn bad_server_urls_say_why() {
        for (url, why) in [
            ("10.96.0.1:443", "http:// or https://"),
            ("https://", "no host"),
            ("https://:443", "no host"),
            ("https://user:pw@host", "credentials"),
            ("https://host:0", "port"),
            ("https://host:99999", "port"),
            ("https://fd00::1:443", "brackets"),
            ("https://[fd00::1", "unclosed"),
            ("https://[nope]:1", "IPv6"),
            ("https://host?x=1", "query"),
        ] {
            let err = base(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

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

    #[test]
    fn unreadable_files_fail_at_prepare_naming_the_file() {
        let err = Config::new("https://h")
            .token_file("/nonexistent/token")
            .prepare();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/token"));
        let err = Config::new("https://h")
            .ca_file("/nonexistent/ca.crt")
            .prepare();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/ca.crt"));
        let err = Config::new("https://h").ca_pem("not pem").prepare();
        assert!(err.unwrap_err().to_string().contains("no certificate"));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let config = Config::new("https://h").token("s3cr3t-token-value");
        let prepared = config.prepare().expect("prepare");
        let shown = format!("{config:?} {prepared:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
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
        let err = crate::kubeconfig::load(&[kubeconfig], Path::new("/nonexistent/kubectl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("YAML") && err.contains("/nonexistent/kubectl"),
            "{err}"
        );
    }

    #[test]
    fn tls_settings_need_an_https_server() {
        let err = Config::new("http://h")
            .tls_server_name("api")
            .prepare()
            .unwrap_err();
        assert!(err.to_string().contains("not https"));
    }
}
