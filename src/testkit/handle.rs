//! The handle a test holds: [`FakeApiServer`] and its [`FakeApiServerBuilder`]: start,
//! stop, listen again.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::server;
use super::shared::{lock, ServerCore, Settings, TARGET};
use super::store::ServerState;
use super::tls::{self, TlsIdentity};
use super::types::ChunkMode;
use crate::base64::{self, Alphabet};

/// Settings for a [`FakeApiServer`]; from [`FakeApiServer::builder`].
///
/// Defaults: plain HTTP on `127.0.0.1` (any free port), no authentication, one chunk per
/// event, a bookmark every 60 s, watches capped only by their own `timeoutSeconds` (30 min
/// without one), the user `system:serviceaccount:default:test` in 403 messages, and
/// Kubernetes 1.32 at `/version`.
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
///
/// let server = FakeApiServer::builder()
///     .token(Some("s3cret".to_owned()))
///     .chunk_mode(ChunkMode::Coalesce)
///     .bookmark_interval(Duration::from_secs(1))
///     .start()?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FakeApiServerBuilder {
    bind: SocketAddr,
    tls: Option<TlsIdentity>,
    client_ca: Option<String>,
    token: Option<String>,
    chunk_mode: ChunkMode,
    bookmark_interval: Duration,
    max_watch_timeout: Option<Duration>,
    user: String,
    ignore_selectors: bool,
    version: (u32, u32),
}

impl fmt::Debug for FakeApiServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApiServerBuilder")
            .field("bind", &self.bind)
            .field("tls", &self.tls.is_some())
            .field("client_ca", &self.client_ca.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("chunk_mode", &self.chunk_mode)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("max_watch_timeout", &self.max_watch_timeout)
            .field("user", &self.user)
            .field("ignore_selectors", &self.ignore_selectors)
            .field("version", &self.version)
            .finish()
    }
}

impl FakeApiServerBuilder {
    /// The address to listen on; default `127.0.0.1:0` (any free port). A fixed
    /// address lets a test start a new server where an old one was.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let first = FakeApiServer::start()?;
    /// let addr = first.addr();
    /// drop(first);
    /// // A new server, with new state, where clients already point.
    /// let second = FakeApiServer::builder().bind(addr).start()?;
    /// assert_eq!(second.addr(), addr);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> FakeApiServerBuilder {
        self.bind = addr;
        self
    }

    /// Serve HTTPS with this identity (e.g. [`TlsIdentity::test_server`]). Default: plain
    /// HTTP.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{add_echo, resolver};
    /// use kuberesolver::testkit::{FakeApiServer, TlsIdentity, TEST_CA_PEM};
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::builder().tls(TlsIdentity::test_server()).start()?;
    /// assert!(server.url().starts_with("https://127.0.0.1:"));
    /// # add_echo(&server);
    /// // A client that trusts the test CA gets in.
    /// let config = Config::new(server.url()).ca_pem(TEST_CA_PEM);
    /// # let resolver = resolver(config)?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tls(mut self, identity: TlsIdentity) -> FakeApiServerBuilder {
        self.tls = Some(identity);
        self
    }

    /// Require client certificates signed by a CA of this PEM bundle (e.g.
    /// [`CLIENT_CA_PEM`](super::CLIENT_CA_PEM)); only with
    /// [`tls`](FakeApiServerBuilder::tls). Default: no client certificate asked for.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{add_echo, resolver};
    /// use kuberesolver::testkit::{FakeApiServer, TlsIdentity, CLIENT_CA_PEM};
    /// use kuberesolver::testkit::{CLIENT_CERT_PEM, CLIENT_KEY_PEM, TEST_CA_PEM};
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::builder()
    ///     .tls(TlsIdentity::test_server())
    ///     .client_ca(CLIENT_CA_PEM)
    ///     .start()?;
    /// # add_echo(&server);
    /// let config = Config::new(server.url())
    ///     .ca_pem(TEST_CA_PEM)
    ///     .client_certificate_pem(CLIENT_CERT_PEM, CLIENT_KEY_PEM);
    /// # let resolver = resolver(config)?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn client_ca(mut self, pem: &str) -> FakeApiServerBuilder {
        self.client_ca = Some(pem.to_owned());
        self
    }

    /// Require `Authorization: Bearer <token>` (default: no authentication).
    ///
    /// A request without it, or with another token, gets a 401 `Unauthorized` Status.
    /// [`FakeApiServer::set_token`] changes it later.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::builder().token(Some("s3cret".to_owned())).start()?;
    /// // `get` sends a GET without a token and returns the raw response.
    /// assert!(get(&server, "/api/v1/namespaces/prod/endpoints")?.starts_with("HTTP/1.1 401"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> FakeApiServerBuilder {
        self.token = token;
        self
    }

    /// How watch events are cut into chunks (default [`ChunkMode::PerEvent`]).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::{add_echo, get};
    /// use std::time::Duration;
    /// use kuberesolver::testkit::{ChunkMode, FakeApiServer};
    ///
    /// let server = FakeApiServer::builder()
    ///     .chunk_mode(ChunkMode::Split(1)) // one byte per chunk: the worst a proxy can do
    ///     .max_watch_timeout(Duration::from_millis(10)) // so that the watch below ends
    ///     .start()?;
    /// # add_echo(&server);
    /// // `get` sends a GET and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints?watch=true")?;
    /// assert!(response.contains("\r\n1\r\n{\r\n1\r\n\"\r\n1\r\nt\r\n")); // `{"t` of `{"type"`
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn chunk_mode(mut self, mode: ChunkMode) -> FakeApiServerBuilder {
        self.chunk_mode = mode;
        self
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 60 s).
    ///
    /// At least 1 ms.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::doc_support::{add_echo, echo_resolver};
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::builder()
    ///     .bookmark_interval(Duration::from_millis(20))
    ///     .start()?;
    /// # add_echo(&server);
    /// # let resolver = echo_resolver(&server)?;
    /// // The resolver asks for bookmarks; each one confirms its state.
    /// let bookmarked = (0..500).any(|_| {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     resolver.status().counters.bookmarks > 0
    /// });
    /// assert!(bookmarked);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> FakeApiServerBuilder {
        // Capped at a year so that `Instant` arithmetic cannot overflow.
        self.bookmark_interval = interval.clamp(Duration::from_millis(1), crate::util::A_YEAR);
        self
    }

    /// Caps every watch's duration (its `timeoutSeconds`, or 30 min without one); at the
    /// end the body ends cleanly.
    ///
    /// Default: no cap.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use std::time::Duration;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::builder()
    ///     .max_watch_timeout(Duration::from_millis(50))
    ///     .start()?;
    /// // A watch that asks for an hour ends cleanly after 50 ms: the terminating chunk.
    /// // `get` sends a GET and returns the raw response.
    /// let path = "/api/v1/namespaces/prod/endpoints?watch=true&timeoutSeconds=3600";
    /// let response = get(&server, path)?;
    /// assert!(response.ends_with("0\r\n\r\n"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn max_watch_timeout(mut self, timeout: Duration) -> FakeApiServerBuilder {
        self.max_watch_timeout = Some(timeout.min(crate::util::A_YEAR));
        self
    }

    /// The user named in 403 messages (default `system:serviceaccount:default:test`).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Resource};
    ///
    /// let server = FakeApiServer::builder().user("system:serviceaccount:prod:client").start()?;
    /// server.forbid(Resource::Endpoints, true);
    /// // `get` sends a GET and returns the raw response.
    /// let response = get(&server, "/api/v1/namespaces/prod/endpoints")?;
    /// assert!(response.contains(r#"User \"system:serviceaccount:prod:client\" cannot list"#));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> FakeApiServerBuilder {
        self.user = user.into();
        self
    }

    /// Ignore `fieldSelector` and `labelSelector` on lists and watches, and answer with every
    /// object of the namespace, as some proxies and mock servers do (a name in the path still
    /// counts). Default: `false`, selectors apply as on a real API server.
    ///
    /// A resolver must check on its side that an object belongs to its Service.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::{FakeApiServer, Pod};
    ///
    /// let server = FakeApiServer::builder().ignore_selectors(true).start()?;
    /// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
    /// server.set_endpoints("prod", "other", &[("grpc", 8080)], &[Pod::new("other-1", [10, 0, 9, 1])]);
    /// // `get` sends a GET and returns the raw response.
    /// let path = "/api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Decho";
    /// let response = get(&server, path)?;
    /// assert!(response.contains(r#""name":"echo""#));
    /// assert!(response.contains(r#""name":"other""#)); // not selected, sent anyway
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn ignore_selectors(mut self, ignore: bool) -> FakeApiServerBuilder {
        self.ignore_selectors = ignore;
        self
    }

    /// The Kubernetes version `/version` reports (default 1.32), as `gitVersion`
    /// `v{major}.{minor}.0`.
    ///
    /// Tools read it: kubectl warns about too great a skew, and a version dispatcher (the
    /// Google Cloud SDK's `kubectl` runs the `kubectl.1.N` that matches the server's minor)
    /// chooses the client by it.
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::get;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::builder().kubernetes_version(1, 29).start()?;
    /// // `get` sends a GET and returns the raw response.
    /// let response = get(&server, "/version")?;
    /// assert!(response.contains(r#""minor":"29""#) && response.contains(r#""gitVersion":"v1.29.0""#));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn kubernetes_version(mut self, major: u32, minor: u32) -> FakeApiServerBuilder {
        self.version = (major, minor);
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or the client CA PEM does not parse.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let first = FakeApiServer::start()?;
    /// assert!(FakeApiServer::builder().bind(first.addr()).start().is_err()); // taken
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start(self) -> io::Result<FakeApiServer> {
        let tls = match &self.tls {
            None => None,
            Some(identity) => {
                let client_ca = match &self.client_ca {
                    None => None,
                    Some(pem) => Some(tls::parse_certs(pem)?),
                };
                Some(identity.server_config(client_ca.as_deref())?)
            }
        };
        let listener = TcpListener::bind(self.bind)?;
        let addr = listener.local_addr()?;
        let mut state = ServerState::new(self.token, self.chunk_mode);
        state.listening = true;
        let settings = Settings {
            bookmark_interval: self.bookmark_interval,
            max_watch_timeout: self.max_watch_timeout,
            tls,
            user: self.user,
            ignore_selectors: self.ignore_selectors,
            version: self.version,
        };
        let server = FakeApiServer {
            core: Arc::new(ServerCore::new(state, settings)),
            addr,
            accept: Mutex::new(None),
        };
        server.spawn_accept(listener)?;
        log::debug!(target: TARGET, "fake API server listening on {}", server.url());
        Ok(server)
    }
}

/// The fake Kubernetes API server. See the [module documentation](super).
///
/// `Send + Sync`: share it with `Arc` or by reference across threads. Dropping it shuts
/// it down.
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::testkit::{FakeApiServer, Pod};
/// use kuberesolver::{Config, Resolver, Source};
///
/// let server = FakeApiServer::start()?;
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
///     .config(Config::new(server.url()))
///     .source(Source::Endpoints)
///     .spawn()?;
/// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FakeApiServer {
    pub(super) core: Arc<ServerCore>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    /// Starts a plain-HTTP server on `127.0.0.1` (any free port) with default settings.
    ///
    /// The same as `FakeApiServer::builder().start()`; see [`FakeApiServerBuilder`] for the
    /// defaults.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert!(server.url().starts_with("http://127.0.0.1:"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When no port can be bound or no thread spawned.
    pub fn start() -> io::Result<FakeApiServer> {
        Self::builder().start()
    }

    /// Settings for a server: see [`FakeApiServerBuilder`], whose example starts with this.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            client_ca: None,
            token: None,
            chunk_mode: ChunkMode::PerEvent,
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: None,
            user: "system:serviceaccount:default:test".to_owned(),
            ignore_selectors: false,
            version: (1, 32),
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` or `https://127.0.0.1:41234`.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    /// use kuberesolver::Config;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert_eq!(server.url(), format!("http://{}", server.addr()));
    /// let config = Config::new(server.url()); // what a resolver needs
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.core.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The address it listens on.
    ///
    /// ```
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// assert!(server.addr().ip().is_loopback());
    /// let conn = std::net::TcpStream::connect(server.addr())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig (JSON, which is valid YAML) whose current context is this server: its
    /// URL, the bearer token it requires now (if any) and, over HTTPS, the test CA
    /// ([`TEST_CA_PEM`](super::TEST_CA_PEM), which signs every built-in
    /// [`TlsIdentity`](super::TlsIdentity)) as `certificate-authority-data`. Write it to a
    /// file and point `kubectl --kubeconfig` (or anything that reads kubeconfigs) at it.
    ///
    /// ```
    /// use kuberesolver::testkit::{FakeApiServer, TlsIdentity};
    ///
    /// let server = FakeApiServer::builder()
    ///     .tls(TlsIdentity::test_server())
    ///     .token(Some("s3cret".to_owned()))
    ///     .start()?;
    /// let kubeconfig: serde_json::Value = serde_json::from_str(&server.kubeconfig())?;
    /// assert_eq!(kubeconfig["current-context"], "testkit");
    /// let cluster = &kubeconfig["clusters"][0]["cluster"];
    /// assert_eq!(cluster["server"], server.url());
    /// assert!(cluster["certificate-authority-data"].as_str().is_some_and(|ca| ca.starts_with("LS0tLS1CRUdJTi")));
    /// assert_eq!(kubeconfig["users"][0]["user"]["token"], "s3cret");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kubeconfig(&self) -> String {
        let mut cluster = serde_json::json!({ "server": self.url() });
        if self.core.settings.tls.is_some() {
            let ca = base64::encode(super::TEST_CA_PEM.as_bytes(), Alphabet::Standard);
            cluster["certificate-authority-data"] = ca.into();
        }
        let user = match &self.core.lock().token {
            Some(token) => serde_json::json!({ "token": token }),
            None => serde_json::json!({}),
        };
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "testkit", "cluster": cluster }],
            "users": [{ "name": "testkit", "user": user }],
            "contexts": [{ "name": "testkit", "context": { "cluster": "testkit", "user": "testkit" } }],
            "current-context": "testkit",
        })
        .to_string()
    }

    fn spawn_accept(&self, listener: TcpListener) -> io::Result<()> {
        let core = self.core.clone();
        let handle = thread::Builder::new()
            .name("fake-apiserver-accept".into())
            .spawn(move || server::accept_loop(core, listener))?;
        *lock(&self.accept) = Some(handle);
        Ok(())
    }

    /// Stops the accept loop (waking it) and waits for it.
    fn stop_accepting(&self) {
        let handle = lock(&self.accept).take();
        let Some(handle) = handle else {
            return;
        };
        let end = Instant::now() + Duration::from_secs(2);
        while !handle.is_finished() {
            if Instant::now() >= end {
                log::debug!(target: TARGET, "accept thread did not stop; detaching it");
                return;
            }
            server::wake(self.addr);
            if !handle.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = handle.join();
    }

    /// Stops the server: no more connections, every open one closed (stalled watches
    /// and hanging requests included), threads joined. Idempotent; `Drop` calls it.
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// server.shutdown();
    /// assert!(TcpStream::connect(server.addr()).is_err()); // refused
    /// assert!(server.resume_listening().is_err()); // for good
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self) {
        {
            let mut st = self.core.lock();
            st.shutdown = true;
            st.listening = false;
        }
        self.core.changed();
        self.stop_accepting();
        self.core.close_connections();
    }

    /// Simulates the API server going away: closes the listening socket (new connections
    /// are refused) and every open connection. State is kept; see
    /// [`resume_listening`](Self::resume_listening).
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use kuberesolver::testkit::FakeApiServer;
    ///
    /// let server = FakeApiServer::start()?;
    /// server.stop_listening();
    /// assert!(TcpStream::connect(server.addr()).is_err()); // refused: the server is "down"
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_listening(&self) {
        self.core.lock().listening = false;
        self.core.changed();
        self.stop_accepting();
        self.core.close_connections();
    }

    /// Listens again on the same address after [`stop_listening`](Self::stop_listening),
    /// with the same objects and resourceVersions (a no-op while listening).
    ///
    /// ```
    /// # use kuberesolver::testkit::doc_support::echo_server;
    /// use std::net::TcpStream;
    ///
    /// # let server = echo_server()?;
    /// let rv = server.resource_version();
    /// server.stop_listening();
    /// server.resume_listening()?;
    /// assert!(TcpStream::connect(server.addr()).is_ok());
    /// assert_eq!(server.resource_version(), rv); // same state
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the port was taken meanwhile, or after [`shutdown`](Self::shutdown).
    pub fn resume_listening(&self) -> io::Result<()> {
        if self.core.lock().shutdown {
            return Err(io::Error::other("the fake API server was shut down"));
        }
        if lock(&self.accept).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)?;
        self.core.lock().listening = true;
        self.spawn_accept(listener)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
