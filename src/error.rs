//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// What went wrong, in words a caller can act on.
///
/// Match on [`Error::kind`]; the message (`Display`) says the rest. An `Error` never carries
/// the bearer token.
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

    /// The category of the error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status for [`ErrorKind::Api`] errors (e.g. `403`), else `None`.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The Kubernetes `Status.reason` for API errors (e.g. `"Forbidden"`, `"Expired"`), when the
    /// server sent one.
    pub fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }

    /// The server's `Retry-After`, for 429 and 503 answers that carry one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message without the cause chain.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The error that explains this one: for [`ErrorKind::NotReady`], the last failure of the
    /// watcher, if any.
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
