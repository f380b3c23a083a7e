//! The public handle: [`Resolver`] owns the watcher thread; [`Builder`] configures it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::backoff::BackoffPolicy;
use crate::client::{Client, Timeouts};
use crate::decode::MAX_LINE;
use crate::publish::{Shared, Updates};
use crate::snapshot::{Addresses, Snapshot};
use crate::watcher::{Settings, Watcher};
use crate::{Config, Error, Picker, Source, Status, Target};

/// Resolves one Kubernetes Service to the ready addresses of its pods, and keeps them current.
///
/// A `Resolver` owns one watcher thread that lists and then watches the Service's endpoints.
/// Reading (`addresses`, `snapshot`, `picker().pick()`) never waits for the network. Dropping
/// the resolver stops the thread, interrupting a blocked read, and joins it, in well under a
/// second. (The one thing nothing can interrupt is a TCP connect to a server that drops
/// packets: then the drop returns after 0.8 s and the thread ends by itself within the
/// [connect timeout](Builder::connect_timeout).)
///
/// ```no_run
/// use std::time::Duration;
/// use kuberesolver::Resolver;
///
/// let resolver = Resolver::spawn("kubernetes:///echo.prod:grpc")?;
/// let first = resolver.wait_ready(Duration::from_secs(5))?;
/// println!("{} ready endpoints", first.len());
/// let picker = resolver.picker();
/// let addr = picker.pick(); // round robin over the ready endpoints
/// # Ok::<(), kuberesolver::Error>(())
/// ```
pub struct Resolver {
    target: Target,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    agent: Option<ureq::Agent>,
    thread: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Parse `target`, infer the configuration ([`Config::infer`]) and start watching.
    ///
    /// Fails only on configuration problems (a bad target, not in a cluster, unreadable
    /// files); network trouble shows in [`status`](Self::status) and
    /// [`wait_ready`](Self::wait_ready).
    pub fn spawn(target: &str) -> Result<Resolver, Error> {
        Resolver::builder(target).spawn()
    }

    /// A [`Builder`] for `target`, to set the configuration, source and timeouts.
    ///
    /// ```
    /// use kuberesolver::{Config, Resolver, Source};
    ///
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(Config::new("http://127.0.0.1:8001"))
    ///     .source(Source::Endpoints);
    /// ```
    pub fn builder(target: impl Into<String>) -> Builder {
        Builder::new(TargetSpec::Text(target.into()))
    }

    /// A [`Builder`] for a [`Target`] built in code.
    pub fn builder_for(target: Target) -> Builder {
        Builder::new(TargetSpec::Parsed(target))
    }

    /// Wait until the first resolution and return it, or fail after `timeout` with an
    /// [`ErrorKind::NotReady`](crate::ErrorKind::NotReady) error whose
    /// [`cause`](Error::cause) is the last failure (a 403 with the RBAC rule to add, a
    /// connection refused, ...).
    pub fn wait_ready(&self, timeout: Duration) -> Result<Snapshot, Error> {
        self.shared.wait_ready(timeout)
    }

    /// The current ready addresses, sorted and de-duplicated. Cheap: one `Arc` clone.
    pub fn addresses(&self) -> Addresses {
        self.shared.current().addresses()
    }

    /// The current snapshot: version, addresses and endpoint details.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.current()
    }

    /// A new subscription to snapshots: the current one (once resolved), then each change.
    pub fn updates(&self) -> Updates {
        self.shared.subscribe()
    }

    /// A round-robin picker over the current snapshot.
    pub fn picker(&self) -> Picker {
        Picker::new(self.shared.clone())
    }

    /// Health and counters.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The target, with the namespace filled in.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes a backoff wait.
        drop(self.wake.take());
        // Interrupts a blocked connect-less read or a request awaiting its response.
        if let Some(agent) = self.agent.take() {
            agent.shutdown();
        }
        if let Some(thread) = self.thread.take() {
            // Everything the thread can block in is interrupted above, except a TCP connect
            // in progress (std and ureq cannot cancel one): a black-holed API server. Then
            // the thread is left to finish by itself within the connect timeout, so that
            // dropping never takes long.
            let deadline = Instant::now() + JOIN_PATIENCE;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                log::debug!(
                    "{}: the watcher is still connecting; it ends within the connect timeout",
                    self.target
                );
            }
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("target", &self.target.to_string())
            .field("version", &self.shared.version())
            .finish_non_exhaustive()
    }
}

enum TargetSpec {
    Text(String),
    Parsed(Target),
}

/// Configures and starts a [`Resolver`]. Every option has a default; see each method.
pub struct Builder {
    target: TargetSpec,
    scheme: String,
    config: Option<Config>,
    source: Source,
    timeouts: Timeouts,
    read_timeout_set: bool,
    watch_timeout: Duration,
    backoff: BackoffPolicy,
    max_line: usize,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("source", &self.source)
            .field("timeouts", &self.timeouts)
            .field("watch_timeout", &self.watch_timeout)
            .finish_non_exhaustive()
    }
}

/// How long dropping a resolver waits for its thread before leaving it to finish alone.
const JOIN_PATIENCE: Duration = Duration::from_millis(800);

/// The default watch window's upper end: below common load-balancer idle limits.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(240);

impl Builder {
    fn new(target: TargetSpec) -> Builder {
        Builder {
            target,
            scheme: "kubernetes".to_string(),
            config: None,
            source: Source::default(),
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response: Duration::from_secs(30),
                read: DEFAULT_WATCH_TIMEOUT + Duration::from_secs(30),
            },
            read_timeout_set: false,
            watch_timeout: DEFAULT_WATCH_TIMEOUT,
            backoff: BackoffPolicy::default(),
            max_line: MAX_LINE,
        }
    }

    /// The API server to use. Default: [`Config::infer`] at spawn.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = Some(config);
        self
    }

    /// The API to watch. Default: [`Source::Auto`].
    pub fn source(mut self, source: Source) -> Builder {
        self.source = source;
        self
    }

    /// The target scheme to accept instead of `kubernetes` (Go's
    /// `RegisterInClusterWithSchema`). Default: `kubernetes`.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Builder {
        self.scheme = scheme.into();
        self
    }

    /// How long a TCP connect may take. Default: 5 s. (Dropping the resolver during a connect
    /// to a black-holed server returns at once; the thread finishes within this time.)
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.connect = timeout;
        self
    }

    /// How long the server may take to answer a request with its headers (TLS handshake
    /// included). Default: 30 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.response = timeout;
        self
    }

    /// The longest silence on an open watch before the connection is declared dead and
    /// replaced. Default: the watch timeout + 30 s (270 s), since a server without bookmarks
    /// may send nothing until the watch ends.
    pub fn read_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.read = timeout;
        self.read_timeout_set = true;
        self
    }

    /// The upper end of the `timeoutSeconds` each watch asks for; each watch picks a random
    /// value in `[¾ × timeout, timeout]` so that many clients do not reconnect in step.
    /// Default: 240 s (a 180–240 s window, below common load-balancer idle limits). At least 1 s.
    pub fn watch_timeout(mut self, timeout: Duration) -> Builder {
        self.watch_timeout = timeout.max(Duration::from_secs(1));
        if !self.read_timeout_set {
            self.timeouts.read = self.watch_timeout + Duration::from_secs(30);
        }
        self
    }

    /// Backoff after failures: the first delay is drawn from `[floor, initial]`, each later
    /// one from a window twice as wide, never past `cap`. Defaults: 1 s, 500 ms, 30 s.
    pub fn backoff(mut self, initial: Duration, floor: Duration, cap: Duration) -> Builder {
        let cap = cap.max(floor);
        self.backoff = BackoffPolicy {
            initial: initial.max(floor).min(cap),
            floor,
            cap,
        };
        self
    }

    /// The longest watch event line accepted; a longer one is dropped and the state relisted.
    /// Default: 16 MiB.
    pub fn max_event_size(mut self, bytes: usize) -> Builder {
        self.max_line = bytes.max(1024);
        self
    }

    /// Check everything and start the watcher thread.
    pub fn spawn(self) -> Result<Resolver, Error> {
        let target = match self.target {
            TargetSpec::Text(text) => Target::parse_with_scheme(&text, &self.scheme)?,
            TargetSpec::Parsed(target) => target,
        };
        let config = match self.config {
            Some(config) => config,
            None => Config::infer()?,
        };
        let prepared = config.prepare()?;
        let namespace = target
            .namespace_or(prepared.namespace.as_deref().unwrap_or("default"))
            .to_string();
        let target = target.with_namespace(&namespace)?;
        let client = Client::new(&prepared, self.timeouts);
        let agent = client.shutdown_handle();
        let shared = Arc::new(Shared::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let (wake, stop) = crossbeam_channel::bounded(0);
        let settings = Settings {
            label: target.to_string(),
            namespace,
            service: target.service().to_string(),
            port: target.port().cloned(),
            source: self.source,
            backoff: self.backoff,
            watch_timeout: self.watch_timeout,
            max_line: self.max_line,
        };
        let watcher = Watcher::new(settings, client, shared.clone(), stop, stopping.clone());
        let thread = std::thread::Builder::new()
            .name(format!("kuberesolver {}", target.service()))
            .spawn(move || watcher.run())
            .map_err(|e| Error::config(format!("cannot start the watcher thread: {e}")))?;
        Ok(Resolver {
            target,
            shared,
            stopping,
            wake: Some(wake),
            agent: Some(agent),
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn the_public_handles_can_be_shared_across_threads() {
        send_sync::<Resolver>();
        send_sync::<crate::Picker>();
        send_sync::<Snapshot>();
        send_sync::<Addresses>();
        send_sync::<Updates>();
        send_sync::<Status>();
        send_sync::<Error>();
        send_sync::<Config>();
    }
}
