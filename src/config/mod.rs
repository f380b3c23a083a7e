//! How to reach the API server: its URL, the bearer token, and the CA to trust.
//!
//! A [`Config`] describes where things are (a URL, files, an exec plugin) and building one
//! never fails. The children add `impl Config` blocks, one concern each: `discovery` finds a
//! configuration (in a pod, from a kubeconfig, or inferred as kubectl does), `kubeconfig`
//! reads one from a kubeconfig, and `validate` checks the URL and reads the files at spawn
//! ([`Config::access`]), so a bad configuration fails there with a clear error. Being
//! children, they set the private fields directly: nothing else in the crate can.

use std::fmt;
use std::path::PathBuf;

use crate::credentials::exec::ExecSpec;
use crate::credentials::Secret;

mod discovery;
mod kubeconfig;
mod validate;

pub(crate) use validate::ServerAccess;

#[derive(Clone, Debug, PartialEq)]
enum TokenSpec {
    Value(Secret),
    File(PathBuf),
    Exec(ExecSpec),
}

/// PEM, inline or in a file read at spawn.
#[derive(Clone, PartialEq)]
enum PemSource {
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
/// or the Mozilla roots of `webpki-roots` when none is configured (the default `webpki-roots`
/// feature; without it, an `https://` server without a CA fails at spawn). An IP-address server
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

    /// Whether `other` reaches the same API server as the same client: the same URL, token
    /// (value, file or exec plugin), CA, client certificate, TLS server name and verification,
    /// as described (files by path, as client-go keys its transports). The default namespace
    /// is left out: it only fills in targets, which are compared after that.
    pub(crate) fn same_client(&self, other: &Config) -> bool {
        let Config {
            server,
            token,
            ca,
            namespace: _,
            tls_server_name,
            client,
            insecure,
        } = self;
        *server == other.server
            && *token == other.token
            && *ca == other.ca
            && *tls_server_name == other.tls_server_name
            && *client == other.client
            && *insecure == other.insecure
    }
}
