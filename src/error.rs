//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// What went wrong, in words a caller can act on.
///
/// Match on [`Error::kind`]; the message (`Display`) says the rest. An `Error` never carries
/// the bearer token. New kinds may be added, so a `match` needs a `_` arm.
///
/// [`Resolver::spawn`](crate::Resolver::spawn) fails only with `InvalidTarget` or `Config`;
/// the kinds of network trouble show in [`Status::last_error`](crate::Status::last_error) and
/// as the [`cause`](Error::cause) of a `NotReady` error.
///
/// ```
/// use kuberesolver::{Config, ErrorKind, Resolver};
///
/// let result = Resolver::builder("kubernetes:///echo.prod:grpc")
///     .config(Config::new("10.96.0.1:443")) // no scheme
///     .spawn();
/// let err = result.unwrap_err();
/// match err.kind() {
///     ErrorKind::InvalidTarget | ErrorKind::Config => eprintln!("fix the setup: {err}"),
///     ErrorKind::NotReady => eprintln!("not resolved yet: {err}"),
///     _ => eprintln!("{err}"),
/// }
/// assert_eq!(err.kind(), ErrorKind::Config);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target string (`kubernetes:///svc.ns:port`) is malformed.
    InvalidTarget,
    /// The configuration is unusable: a bad URL, an unreadable token or CA file, a bad PEM.
    Config,
    /// The API server answered with an error status (401, 403, 404, 410, 429, 5xx, ...).
    Api,
    /// The connection failed: refused, reset, timed out, or TLS verification failed.
    Transport,
    /// The server sent something that is not what the Kubernetes API sends.
    Decode,
    /// The target's port cannot be chosen from the endpoints (unknown name, or several ports
    /// and none named).
    Port,
    /// Nothing was resolved within the time given to [`Resolver::wait_ready`](crate::Resolver::wait_ready).
    NotReady,
    /// The resolver's watcher thread has stopped.
    Stopped,
}

/// An error of this crate: a kind, a message, and for API errors the HTTP status.
///
/// `Display` writes the message followed by the cause's, after `": "`;
/// [`std::error::Error::source`] is the cause.
///
/// ```
/// use kuberesolver::{ErrorKind, Target};
///
/// let err = "kubernetes:///a:70000".parse::<Target>().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidTarget);
/// assert!(err.to_string().contains("port 70000 out of range"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    reason: Option<String>,
    retry_after: Option<Duration>,
    cause: Option<Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                reason: None,
                retry_after: None,
                cause: None,
            }),
        }
    }

    pub(crate) fn invalid_target(input: &str, problem: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::InvalidTarget,
            format!("{problem} in {:?}", input),
        )
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn transport(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Transport, message)
    }

    pub(crate) fn decode(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Decode, message)
    }

    pub(crate) fn port(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Port, message)
    }

    /// An error status from the API server; `reason` is the Status `reason` when there is one.
    pub(crate) fn api(
        status: u16,
        reason: Option<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Error {
        let mut err = Error::new(ErrorKind::Api, message);
        err.inner.status = Some(status);
        err.inner.reason = reason;
        err.inner.retry_after = retry_after;
        err
    }

    pub(crate) fn with_cause(mut self, cause: Option<Error>) -> Error {
        self.inner.cause = cause;
        self
    }

    /// This error, its message preceded by `earlier`'s: two failures that matter together
    /// (both sources of `Source::Auto` refused), each naming its own fix.
    pub(crate) fn after(mut self, earlier: &Error) -> Error {
        self.inner.message = format!("{}; then {}", earlier.inner.message, self.inner.message);
        self
    }

    /// The category of the error.
    ///
    /// ```
    /// use kuberesolver::{ErrorKind, Target};
    ///
    /// let err = Target::new("Echo").unwrap_err(); // uppercase is not a Kubernetes name
    /// assert_eq!(err.kind(), ErrorKind::InvalidTarget);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status for [`ErrorKind::Api`] errors (e.g. `403`), else `None`.
    ///
    /// For an `ERROR` event on an open watch, it is the event's `code` (500 when it has none).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use kuberesolver::{Config, ErrorKind, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// server.forbid(Resource::Endpoints, true); // RBAC: no right to list endpoints
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// // Poll the status until the first request has failed.
    /// let error = (0..500)
    ///     .find_map(|_| {
    ///         std::thread::sleep(Duration::from_millis(10));
    ///         resolver.status().last_error
    ///     })
    ///     .expect("the list is refused");
    /// assert_eq!(error.kind(), ErrorKind::Api);
    /// assert_eq!(error.status(), Some(403));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The Kubernetes `Status.reason` for API errors (e.g. `"Forbidden"`, `"Expired"`), when the
    /// server sent one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use kuberesolver::{Config, ErrorKind, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// server.forbid(Resource::Endpoints, true); // RBAC: no right to list endpoints
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// // Poll the status until the first request has failed.
    /// let error = (0..500)
    ///     .find_map(|_| {
    ///         std::thread::sleep(Duration::from_millis(10));
    ///         resolver.status().last_error
    ///     })
    ///     .expect("the list is refused");
    /// assert_eq!(error.reason(), Some("Forbidden"));
    /// assert!(error.message().contains(r#"cannot list resource "endpoints""#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }

    /// The server's `Retry-After`, for answers that carry one (429 and 503 usually do).
    ///
    /// The resolver waits at least this long (capped by the backoff cap) before it retries.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Failure};
    /// # use kuberesolver::{Config, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// server.fail_next(1, Failure::TooManyRequests { retry_after_secs: 3 });
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// # let error = (0..500)
    /// #     .find_map(|_| {
    /// #         std::thread::sleep(Duration::from_millis(10));
    /// #         resolver.status().last_error
    /// #     })
    /// #     .expect("the list is refused");
    /// // `error` is `resolver.status().last_error`, once the first list has failed.
    /// assert_eq!(error.status(), Some(429));
    /// assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message without the cause chain.
    ///
    /// ```
    /// let err = "kubernetes:///echo.prod:0".parse::<kuberesolver::Target>().unwrap_err();
    /// assert_eq!(err.message(), r#"port 0 out of range in "kubernetes:///echo.prod:0""#);
    /// ```
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The error that explains this one: for [`ErrorKind::NotReady`] and
    /// [`ErrorKind::Stopped`], the last failure of the watcher, if any. Other errors have none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuberesolver::testkit::{FakeApiServer, Resource};
    /// # use kuberesolver::{Config, ErrorKind, Resolver, Source};
    /// # let server = FakeApiServer::start()?;
    /// server.forbid(Resource::Endpoints, true); // RBAC: no right to list endpoints
    /// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
    /// #     .config(Config::new(server.url()))
    /// #     .source(Source::Endpoints)
    /// #     .spawn()?;
    /// // Poll the status until the first request has failed.
    /// let error = (0..500)
    ///     .find_map(|_| {
    ///         std::thread::sleep(Duration::from_millis(10));
    ///         resolver.status().last_error
    ///     })
    ///     .expect("the list is refused");
    /// let err = resolver.wait_ready(Duration::ZERO).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotReady);
    /// assert_eq!(err.message(), "no endpoints resolved within 0ns");
    /// assert_eq!(err.cause(), Some(&error));
    /// assert_eq!(err.to_string(), format!("{}: {error}", err.message()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cause(&self) -> Option<&Error> {
        self.inner.cause.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(cause) = &self.inner.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &inner.kind)
            .field("message", &inner.message);
        if let Some(status) = inner.status {
            d.field("status", &status);
        }
        if let Some(reason) = &inner.reason {
            d.field("reason", reason);
        }
        if let Some(retry_after) = inner.retry_after {
            d.field("retry_after", &retry_after);
        }
        if let Some(cause) = &inner.cause {
            d.field("cause", cause);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .cause
            .as_ref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}
