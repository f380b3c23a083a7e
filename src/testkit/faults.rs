//! What a test does to the wire: [`Fault`]s on open watches, [`Failure`]s instead of
//! answers.

/// Something that happens to an open watch
/// ([`FakeApiServer::inject`](super::FakeApiServer::inject),
/// [`FakeApiServer::inject_next_watch`](super::FakeApiServer::inject_next_watch)).
///
/// ```
/// # use kuberesolver::testkit::doc_support::get;
/// use kuberesolver::testkit::{FakeApiServer, Fault};
///
/// let server = FakeApiServer::start()?;
/// server.inject_next_watch(Fault::Expired);
/// // `get` sends a GET and returns the raw response: the watch ends after the ERROR event.
/// let response = get(&server, "/api/v1/namespaces/prod/endpoints?watch=true")?;
/// assert!(response.contains(r#"{"type":"ERROR","object":{"kind":"Status""#));
/// assert!(response.contains(r#""reason":"Expired""#) && response.contains(r#""code":410"#));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// End the body cleanly now (terminating zero-size chunk), as at a timeout.
    EndCleanly,
    /// Close the TCP connection abruptly, without the terminating chunk.
    Reset,
    /// Send the first half of an event line (as a complete chunk), then close abruptly.
    /// The line is a bookmark's, sent at once: nothing the client lacks is in flight.
    CutMidEvent,
    /// Wait for the next object event this watch streams (a change, not a bookmark), send
    /// the first half of its line (as a complete chunk), then close abruptly: the change is
    /// in flight when the connection breaks, and the client never sees all of it.
    CutNextEvent,
    /// Like [`CutNextEvent`](Fault::CutNextEvent), but end the body cleanly after the half
    /// line (terminating zero-size chunk), as a proxy that gives up politely would.
    EndMidNextEvent,
    /// Send nothing more (no events, no bookmarks, no timeout) while keeping the
    /// connection open until shutdown. Faults injected later still apply.
    Stall,
    /// Send this text plus `\n` as an event line (e.g. `{not json`), then carry on.
    Garbage(String),
    /// Send the `ERROR` event with code 410 `Expired`, then end cleanly.
    Expired,
}

/// How a request is answered instead of normally
/// ([`FakeApiServer::fail_next`](super::FakeApiServer::fail_next),
/// [`FakeApiServer::fail_next_for`](super::FakeApiServer::fail_next_for)).
///
/// ```
/// # use std::time::Duration;
/// # use kuberesolver::testkit::doc_support::{echo_resolver, echo_server};
/// use kuberesolver::testkit::{Failure, Verb};
///
/// # let server = echo_server()?;
/// // The first watch is refused with 410: the resolver lists again at once.
/// let expired = Failure::status(410, "Expired", "too old resource version");
/// server.fail_next_for(Verb::Watch, 1, expired);
/// # let resolver = echo_resolver(&server)?;
/// let relisted = server.wait_for_requests(Duration::from_secs(5), |requests| {
///     requests.iter().filter(|r| r.is_list()).count() == 2
/// });
/// assert!(relisted);
/// assert_eq!(server.requests()[1].status, 410);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A JSON `Status` with this code, reason and message (`Retry-After: 1` added for 429
    /// and 503).
    Status {
        /// HTTP status code, e.g. 410, 422, 504.
        code: u16,
        /// The `reason` field, e.g. `Expired`, `Invalid`, `Timeout`.
        reason: String,
        /// The `message` field.
        message: String,
    },
    /// 429 with a plain-text body and `Retry-After`, as API priority and fairness answers.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// 503 `ServiceUnavailable` Status with `Retry-After: 1`.
    Unavailable,
    /// 500 `InternalError` Status.
    InternalError,
    /// This HTTP status and this body as `application/json`, as is (with a
    /// `Content-Length`): e.g. a `200` whose body is one List or one Status, as a proxy or
    /// mock that does not stream watches answers a watch.
    Body {
        /// HTTP status code, e.g. 200.
        code: u16,
        /// The body, sent byte for byte (no newline added).
        body: String,
    },
    /// Read the request, then close the connection without answering.
    CloseWithoutAnswer,
    /// Read the request and never answer (until shutdown, or until the client gives up).
    Hang,
}

impl Failure {
    /// Shorthand for [`Failure::Status`].
    ///
    /// ```
    /// use kuberesolver::testkit::Failure;
    ///
    /// let failure = Failure::status(504, "Timeout", "the server was too slow");
    /// let Failure::Status { code, reason, message } = failure else { unreachable!() };
    /// assert_eq!((code, reason.as_str()), (504, "Timeout"));
    /// assert_eq!(message, "the server was too slow");
    /// ```
    pub fn status(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure::Status {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }
}
