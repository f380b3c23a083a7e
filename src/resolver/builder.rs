//! How a [`Resolver`] is made: [`Resolver::spawn`], [`Resolver::builder`] and the [`Builder`]
//! they lead to, with every option, checked and started by [`Builder::spawn`].

use std::fmt;
use std::time::Duration;

use super::Resolver;
use crate::backoff::Backoff;
use crate::client::{Client, Timeouts};
use crate::lines::MAX_LINE;
use crate::publish::Hub;
#[cfg(feature = "testkit")]
use crate::snapshot::Snapshot;
use crate::target::DEFAULT_SCHEME;
use crate::util::at_most_a_year;
use crate::watcher::Job;
use crate::watches::{join, join_or_start, NewWatch, WatchKey};
use crate::{Config, Error, Source, Target};

impl Resolver {
    /// Parse `target`, infer the configuration ([`Config::infer`](crate::Config::infer)) and start watching.
    ///
    /// Fails only on configuration problems (a bad target, not in a cluster, unreadable
    /// files); network trouble shows in [`status`](Self::status) and
    /// [`wait_ready`](Self::wait_ready). The same as `Resolver::builder(target).spawn()`, with
    /// every option at its default (see [`Builder`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use kuberesolver::Resolver;
    ///
    /// let resolver = Resolver::spawn("kubernetes:///echo.prod:grpc")?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    ///
    /// A bad target fails at once, before anything else is looked at:
    ///
    /// ```
    /// use kuberesolver::{ErrorKind, Resolver};
    ///
    /// let err = Resolver::spawn("kubernetes:///echo.prod:70000").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidTarget);
    /// ```
    pub fn spawn(target: &str) -> Result<Resolver, Error> {
        Resolver::builder(target).spawn()
    }

    /// A [`Builder`] for `target`, to set the configuration, source and timeouts.
    ///
    /// The target is parsed at [`spawn`](Builder::spawn), with the scheme of
    /// [`Builder::scheme`]; see [`Target`] for the forms it takes.
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
    ///
    /// [`Builder::scheme`] does not apply: the target is already parsed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// use kuberesolver::{Port, Target};
    ///
    /// let target = Target::new("echo")?
    ///     .with_namespace("prod")?
    ///     .with_port(Port::Name("grpc".to_string()))?;
    /// let resolver = Resolver::builder_for(target)
    ///     .config(Config::new(server.url()))
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder_for(target: Target) -> Builder {
        Builder::new(TargetSpec::Parsed(target))
    }
}

/// The target as given: a string parsed at spawn, or a [`Target`] built in code.
enum TargetSpec {
    Text(String),
    Parsed(Target),
}

/// Configures and starts a [`Resolver`]. Every option has a default; see each method.
///
/// From [`Resolver::builder`] (a target string) or [`Resolver::builder_for`] (a [`Target`]).
/// Nothing is checked until [`spawn`](Builder::spawn). `Debug` never shows the token.
///
/// ```
/// # use kuberesolver::testkit::{FakeApiServer, Pod};
/// use std::time::Duration;
/// use kuberesolver::{Backoff, Config, Resolver, Source};
///
/// # let server = FakeApiServer::start()?;
/// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// let resolver = Resolver::builder("k8s:///echo.prod:grpc")
///     .scheme("k8s")
///     .config(Config::new(server.url()))
///     .source(Source::Endpoints)
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(10))
///     .watch_timeout(Duration::from_secs(60))
///     .read_timeout(Duration::from_secs(90))
///     .backoff(Backoff::new().floor(Duration::from_millis(100)).cap(Duration::from_secs(10)))
///     .max_event_size(1 << 20)
///     .spawn()?;
/// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a Builder does nothing until spawn() is called"]
pub struct Builder {
    target: TargetSpec,
    /// Set by [`Builder::scheme`]; `None` means `kubernetes` for a target string, and any
    /// scheme for a parsed [`Target`].
    scheme: Option<String>,
    config: Option<Config>,
    source: Source,
    timeouts: Timeouts,
    read_timeout_set: bool,
    watch_timeout: Duration,
    backoff: Backoff,
    max_line: usize,
    #[cfg(feature = "testkit")]
    observer: Option<crate::publish::PublishObserver>,
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

/// The default watch window's upper end: below common load-balancer idle limits.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(240);

impl Builder {
    fn new(target: TargetSpec) -> Builder {
        Builder {
            target,
            scheme: None,
            config: None,
            source: Source::default(),
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response: Duration::from_secs(30),
                read: DEFAULT_WATCH_TIMEOUT + Duration::from_secs(30),
            },
            read_timeout_set: false,
            watch_timeout: DEFAULT_WATCH_TIMEOUT,
            backoff: Backoff::default(),
            max_line: MAX_LINE,
            #[cfg(feature = "testkit")]
            observer: None,
        }
    }

    /// The API server to use. Default: [`Config::infer`] at spawn.
    ///
    /// ```
    /// use kuberesolver::{Config, Resolver};
    ///
    /// // Through `kubectl proxy`.
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(Config::new("http://127.0.0.1:8001"));
    /// ```
    pub fn config(mut self, config: Config) -> Builder {
        self.config = Some(config);
        self
    }

    /// The API to watch. Default: [`Source::Auto`].
    ///
    /// ```
    /// use kuberesolver::{Resolver, Source};
    ///
    /// // A cluster older than EndpointSlices, or a Role that covers only `endpoints`.
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc").source(Source::Endpoints);
    /// ```
    pub fn source(mut self, source: Source) -> Builder {
        self.source = source;
        self
    }

    /// The target scheme to accept instead of `kubernetes` (Go's
    /// `RegisterInClusterWithSchema`). Default: `kubernetes`.
    ///
    /// Compared ignoring ASCII case. A target with another scheme fails
    /// [`spawn`](Self::spawn) with an [`InvalidTarget`](crate::ErrorKind::InvalidTarget) error;
    /// so does a [`Target`] given to [`Resolver::builder_for`] when this is set and the
    /// target's own scheme ([`Target::with_scheme`]) differs. Without this, a parsed target
    /// keeps whatever scheme it has.
    ///
    /// ```
    /// use kuberesolver::{Config, ErrorKind, Resolver, Target};
    ///
    /// let builder = Resolver::builder("k8s:///echo.prod:grpc").scheme("k8s");
    ///
    /// // Without it, `k8s` is not the expected scheme: an error at spawn.
    /// let err = Resolver::builder("k8s:///echo.prod:grpc").spawn().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidTarget);
    ///
    /// // A parsed target must have the scheme asked for.
    /// let target = Target::new("echo")?.with_namespace("prod")?;
    /// let err = Resolver::builder_for(target).scheme("k8s").spawn().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidTarget);
    /// assert_eq!(err.to_string(), r#"scheme "kubernetes" is not "k8s" in "kubernetes:///echo.prod""#);
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn scheme(mut self, scheme: impl Into<String>) -> Builder {
        self.scheme = Some(scheme.into());
        self
    }

    /// How long connecting may take: the TCP connect and, for `https`, the TLS handshake.
    /// Default: 5 s.
    ///
    /// Dropping the resolver during a TCP connect to a black-holed server returns within
    /// 0.8 s; the thread then finishes by itself within this time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::Resolver;
    ///
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .connect_timeout(Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.connect = at_most_a_year(timeout);
        self
    }

    /// How long the server may take to answer a request with its response headers, once the
    /// request is sent. Default: 30 s.
    ///
    /// The TLS handshake comes before and counts against the
    /// [connect timeout](Self::connect_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::Resolver;
    ///
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .response_timeout(Duration::from_secs(10));
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.response = at_most_a_year(timeout);
        self
    }

    /// The longest silence on an open watch before the connection is declared dead and
    /// replaced. Default: the watch timeout + 30 s (270 s), since a server without bookmarks
    /// may send nothing until the watch ends.
    ///
    /// It applies to every read from the connection, lists included. Once set, it no longer
    /// follows [`watch_timeout`](Self::watch_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::Resolver;
    ///
    /// // A server that sends a bookmark at least every minute lets a dead connection show sooner.
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .read_timeout(Duration::from_secs(90));
    /// ```
    pub fn read_timeout(mut self, timeout: Duration) -> Builder {
        self.timeouts.read = at_most_a_year(timeout);
        self.read_timeout_set = true;
        self
    }

    /// The upper end of the `timeoutSeconds` each watch asks for; each watch picks a random
    /// value in `[¾ × timeout, timeout]` so that many clients do not reconnect in step.
    /// Default: 240 s (a 180–240 s window, below common load-balancer idle limits). At least 1 s.
    ///
    /// In whole seconds (the fraction is dropped). Unless [`read_timeout`](Self::read_timeout)
    /// was set, the read timeout becomes this + 30 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::Resolver;
    ///
    /// // Watches end after 45–60 s; the read timeout becomes 90 s.
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .watch_timeout(Duration::from_secs(60));
    /// ```
    pub fn watch_timeout(mut self, timeout: Duration) -> Builder {
        self.watch_timeout = at_most_a_year(timeout).max(Duration::from_secs(1));
        if !self.read_timeout_set {
            self.timeouts.read = self.watch_timeout + Duration::from_secs(30);
        }
        self
    }

    /// Backoff after failures: the first delay is drawn from `[floor, initial]`, each later
    /// one from a window whose upper end is twice the previous one's, never past `cap`.
    /// Default: [`Backoff::default()`] (`initial` 1 s, `floor` 500 ms, `cap` 30 s).
    ///
    /// See [`Backoff`] for the exact rule, `Retry-After`, and how the bounds are kept
    /// consistent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kuberesolver::{Backoff, Resolver};
    ///
    /// // Retry sooner, and never wait more than 10 s.
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc").backoff(
    ///     Backoff::new()
    ///         .initial(Duration::from_millis(500))
    ///         .floor(Duration::from_millis(100))
    ///         .cap(Duration::from_secs(10)),
    /// );
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Builder {
        self.backoff = backoff.normalized();
        self
    }

    /// The longest watch event line accepted; a longer one is dropped and the state relisted.
    /// Default: 16 MiB. Values below 1 KiB count as 1 KiB.
    ///
    /// ```
    /// use kuberesolver::Resolver;
    ///
    /// let builder = Resolver::builder("kubernetes:///echo.prod:grpc").max_event_size(4 << 20);
    /// ```
    pub fn max_event_size(mut self, bytes: usize) -> Builder {
        self.max_line = bytes.max(1024);
        self
    }

    /// Test support (feature `testkit`; not a stable API): calls `observer` with every
    /// snapshot the resolver publishes, in version order, on the watcher thread, before
    /// subscribers are offered it. A latest-wins subscriber may miss a snapshot that was
    /// replaced at once; this sees them all. Keep `observer` quick: it delays the watcher.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
    /// let versions = Arc::new(Mutex::new(Vec::new()));
    /// let seen = versions.clone();
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(Config::new(server.url()))
    ///     .source(Source::Endpoints)
    ///     .observe_publishes(move |s| seen.lock().unwrap().push(s.version()))
    ///     .spawn()?;
    /// resolver.wait_ready(Duration::from_secs(5))?;
    /// assert_eq!(*versions.lock().unwrap(), [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub fn observe_publishes(
        mut self,
        observer: impl Fn(&Snapshot) + Send + Sync + 'static,
    ) -> Builder {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Check everything and start the watcher thread.
    ///
    /// Parses the target, infers the configuration when none was given, checks the server
    /// URL, reads the token, CA and client certificate files, and runs a kubeconfig's exec
    /// credential plugin. Fails only on these
    /// ([`InvalidTarget`](crate::ErrorKind::InvalidTarget) or
    /// [`Config`](crate::ErrorKind::Config) errors); it makes no request, so a server that is
    /// down is not an error here: it shows in [`Resolver::status`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Pod};
    /// use kuberesolver::{Config, ErrorKind, Resolver, Source};
    ///
    /// # let server = FakeApiServer::start()?;
    /// # let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// # server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    ///     .config(Config::new(server.url()))
    ///     .source(Source::Endpoints)
    ///     .spawn()?;
    /// assert_eq!(resolver.wait_ready(Duration::from_secs(5))?.len(), 1);
    ///
    /// let missing = Config::new("https://10.96.0.1:443").ca_file("/nonexistent/ca.crt");
    /// let result = Resolver::builder("kubernetes:///echo.prod:grpc").config(missing).spawn();
    /// let err = result.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.to_string().contains("/nonexistent/ca.crt"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(self) -> Result<Resolver, Error> {
        let target = match (self.target, &self.scheme) {
            (TargetSpec::Text(text), scheme) => {
                Target::parse_with_scheme(&text, scheme.as_deref().unwrap_or(DEFAULT_SCHEME))?
            }
            (TargetSpec::Parsed(target), None) => target,
            (TargetSpec::Parsed(target), Some(scheme)) => {
                let wanted = target.clone().with_scheme(scheme)?;
                if wanted.scheme() != target.scheme() {
                    return Err(Error::invalid_target(
                        &target.to_string(),
                        format!("scheme {:?} is not {:?}", target.scheme(), wanted.scheme()),
                    ));
                }
                target
            }
        };
        let config = match self.config {
            Some(config) => config,
            None => Config::infer()?,
        };
        let namespace = target
            .namespace_or(config.default_namespace().unwrap_or("default"))
            .to_string();
        let target = target.with_namespace(&namespace)?;
        let service = target.service().to_string();
        let key = WatchKey {
            namespace: namespace.clone(),
            service: service.clone(),
            source: self.source,
            config: config.clone(),
            timeouts: self.timeouts,
            watch_timeout: self.watch_timeout,
            backoff: self.backoff,
            max_line: self.max_line,
            #[cfg(feature = "testkit")]
            alone: self.observer.is_some().then(WatchKey::unique),
            #[cfg(not(feature = "testkit"))]
            alone: None,
        };
        let port = target.port().cloned();
        let label = target.to_string();
        // A resolver joining a running watch reads no file and runs no plugin: the first
        // resolver of the watch did, with a configuration described the same way.
        let membership = match join(&key, &port, &label) {
            Some(membership) => membership,
            None => {
                let access = config.access()?;
                let client = Client::new(&access, self.timeouts);
                #[cfg_attr(not(feature = "testkit"), allow(unused_mut))]
                let mut hub = Hub::new();
                #[cfg(feature = "testkit")]
                if let Some(observer) = self.observer {
                    hub.observe(observer);
                }
                let job = Job {
                    label: format!("{}:///{service}.{namespace}", target.scheme()),
                    namespace,
                    service,
                    source: self.source,
                    backoff: self.backoff,
                    watch_timeout: self.watch_timeout,
                    max_line: self.max_line,
                };
                let new = NewWatch {
                    thread_name: format!("kuberesolver {}", job.service),
                    job,
                    client,
                    hub,
                };
                join_or_start(key, port, &label, new)?
            }
        };
        Ok(Resolver::new(target, membership))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::A_YEAR;

    #[test]
    fn huge_durations_are_clamped_not_overflowed() {
        let builder = Resolver::builder("kubernetes:///a:1")
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .watch_timeout(Duration::MAX)
            .backoff(
                Backoff::new()
                    .initial(Duration::MAX)
                    .floor(Duration::MAX)
                    .cap(Duration::MAX),
            );
        assert_eq!(builder.timeouts.connect, A_YEAR);
        assert_eq!(builder.timeouts.read, A_YEAR + Duration::from_secs(30));
        assert_eq!(builder.backoff.cap, A_YEAR);
        let mut backoff = crate::backoff::Delays::new(builder.backoff, 1);
        for _ in 0..40 {
            assert!(backoff.next_delay(Some(Duration::MAX)) <= A_YEAR);
        }
    }

    #[test]
    fn a_scheme_set_for_a_parsed_target_must_be_the_targets() {
        // Nothing listens there; spawning does not connect.
        let spawn = |target: Target, scheme: Option<&str>| {
            let mut builder =
                Resolver::builder_for(target).config(Config::new("http://127.0.0.1:9"));
            if let Some(scheme) = scheme {
                builder = builder.scheme(scheme);
            }
            builder.spawn().map(|r| r.target().to_string())
        };
        let echo = || Target::new("echo").expect("a valid service");
        let k8s = || echo().with_scheme("k8s").expect("a valid scheme");
        let err = spawn(echo(), Some("k8s")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidTarget);
        assert!(
            err.to_string()
                .contains(r#"scheme "kubernetes" is not "k8s""#),
            "{err}"
        );
        assert_eq!(
            spawn(k8s(), Some("K8S")).ok().as_deref(),
            Some("k8s:///echo.default")
        );
        assert_eq!(
            spawn(k8s(), None).ok().as_deref(),
            Some("k8s:///echo.default")
        );
        assert_eq!(
            spawn(echo(), None).ok().as_deref(),
            Some("kubernetes:///echo.default")
        );
        let bad = spawn(echo(), Some("8s")).unwrap_err();
        assert_eq!(bad.kind(), crate::ErrorKind::InvalidTarget);
        assert!(
            bad.to_string().contains("does not start with a letter"),
            "{bad}"
        );
    }
}
