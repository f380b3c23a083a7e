//! The watch loop as an explicit state machine, with no I/O and no clock.
//!
//! ```text
//!            Start              Listed{rv}
//!   Empty ─────────▶ List(r) ─────────────▶ Watching{rv} ──▶ Watch(r, rv)
//!     ▲                 │ ListFailed              │  │  WatchEnded{healthy}: Watch(r, rv) again
//!     │ Expired (410)   ▼                         │  │  (unhealthy: back off first)
//!     └──────────── BackingOff{resume} ◀──────────┘  └─ WatchFailed / ErrorEvent: back off,
//!                     │ Waited                            then resume from rv, or relist
//!                     └──▶ List(r) (resume None) | Watch(r, rv)
//! ```
//!
//! The watcher thread performs each [`Command`], reports what happened as an [`Outcome`], and
//! [`Machine::step`] says what to do next. Backoff delays come from the [`Backoff`] policy
//! object; the machine decides when to use it and when to reset it.
//!
//! The machine also owns the choice of API resource (`r` above) for [`Source::Auto`]:
//!
//! - Every list starts with EndpointSlices. A 403 or 404 on it falls back to Endpoints at once
//!   (no backoff), for this list only: the next list (a retry, a relist after a 410 or after
//!   bad data) tries slices again. So a pod that starts before its RoleBinding lands, or while
//!   RBAC propagates, ends up on slices as soon as they are allowed.
//! - A healthy watch is rarely relisted, so while Auto runs on the Endpoints fallback it probes
//!   slices at a clean watch end once [`PROBE_SLICES_EVERY`] of watch time has passed: a list of
//!   slices that, when refused (or failing), resumes the Endpoints watch from its
//!   resourceVersion, and when it succeeds replaces the state and watches slices from then on.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::source::Resource;
use crate::Source;

/// While [`Source::Auto`] runs on its Endpoints fallback, it probes EndpointSlices again
/// at the first clean watch end after this much watch time: rarely enough that the probe
/// (one refused request) is noise for the API server, soon enough that a Role fixed after the
/// pod started is picked up within minutes.
pub(crate) const PROBE_SLICES_EVERY: Duration = Duration::from_secs(5 * 60);

/// How many 500 `InternalError` events in a row resume the watch before a relist.
pub(crate) const MAX_INTERNAL_ERROR_RESUMES: u32 = 3;

/// Where the watch is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No usable resourceVersion: the next request is a list.
    Empty,
    /// A list or watch succeeded up to this resourceVersion: the next request watches from it.
    Watching { resource_version: String },
    /// Waiting out a backoff; then watch from `resume`, or list when it is `None`.
    BackingOff { resume: Option<String> },
    /// Auto on its Endpoints fallback lists slices to see whether they are allowed now; when
    /// they are not, it watches Endpoints again from `resume`.
    Probing { resume: String },
}

/// What the watcher thread must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// LIST the Service's objects of `resource` and replace the state.
    List { resource: Resource },
    /// WATCH `resource` from this resourceVersion.
    Watch {
        resource: Resource,
        resource_version: String,
    },
    /// Sleep (interruptibly), then report [`Outcome::Waited`].
    Wait(Duration),
}

/// What an `ERROR` event inside a watch means, told apart as client-go's reflector does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchError {
    /// 410 (reason `Expired` or `Gone`): the resourceVersion was compacted away; relist.
    Expired,
    /// 429 (`TooManyRequests`): back off, then resume from the same resourceVersion.
    TooManyRequests,
    /// 500 (`InternalError`): resume, a few times in a row, then relist.
    InternalError,
    /// Anything else (403, 400, 422, 504, no code, ...): the watch cannot go on; relist
    /// after a backoff.
    Other,
}

impl WatchError {
    /// The meaning of an `ERROR` event's Status `code` and `reason`.
    pub(crate) fn classify(code: Option<u16>, reason: Option<&str>) -> WatchError {
        match (code, reason) {
            (Some(410), _) | (_, Some("Expired" | "Gone")) => WatchError::Expired,
            (Some(429), _) | (_, Some("TooManyRequests")) => WatchError::TooManyRequests,
            (Some(500), _) | (_, Some("InternalError")) => WatchError::InternalError,
            _ => WatchError::Other,
        }
    }
}

/// What happened when the thread carried out the last command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The thread starts.
    Start,
    /// The list succeeded; its resourceVersion.
    Listed { resource_version: String },
    /// The list failed: the HTTP status when the server answered one, and `retry_after`
    /// from a 429/503.
    ListFailed {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// The server ended the watch cleanly (timeoutSeconds) after `lasted`. `healthy`: it
    /// delivered an event or a bookmark, or stayed open long enough; a watch that ends at once
    /// without either is treated as a failure, so a misbehaving server is not hammered.
    WatchEnded {
        resource_version: String,
        healthy: bool,
        lasted: Duration,
    },
    /// 410 Gone/Expired on the watch request: the resourceVersion is compacted away.
    Expired { healthy: bool },
    /// The watch sent an `ERROR` event.
    ErrorEvent {
        resource_version: String,
        error: WatchError,
        healthy: bool,
    },
    /// The watch failed (connect, TLS, status, reset, stall, bad data). `relist` when the
    /// state can no longer be trusted (malformed data) and must be listed afresh.
    WatchFailed {
        resource_version: String,
        retry_after: Option<Duration>,
        relist: bool,
        healthy: bool,
    },
    /// The backoff wait is over.
    Waited,
}

/// The state machine: a phase, the resource in use, the backoff, and guards against loops.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    source: Source,
    /// The resource of the current (or last) request.
    resource: Resource,
    /// Auto only: the status (403 or 404) of the last refused EndpointSlice list; `None` once
    /// a slice list succeeds.
    slices_refused: Option<u16>,
    /// Healthy watch time on the Endpoints fallback since slices were last tried.
    since_probe: Duration,
    backoff: Backoff,
    expired_in_a_row: u32,
    internal_errors_in_a_row: u32,
}

impl Machine {
    pub(crate) fn new(source: Source, backoff: Backoff) -> Machine {
        let mut machine = Machine {
            phase: Phase::Empty,
            source,
            resource: Resource::EndpointSlices,
            slices_refused: None,
            since_probe: Duration::ZERO,
            backoff,
            expired_in_a_row: 0,
            internal_errors_in_a_row: 0,
        };
        machine.resource = machine.first_resource();
        machine
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Auto only: the status (403 or 404) with which the last EndpointSlice list was refused,
    /// while no slice list has succeeded since. `Some` means Auto runs (or will run) on the
    /// Endpoints fallback.
    pub(crate) fn slices_refused(&self) -> Option<u16> {
        self.slices_refused
    }

    /// Advance on `outcome` and return the next command.
    pub(crate) fn step(&mut self, outcome: Outcome) -> Command {
        match outcome {
            Outcome::Start => self.list(),
            Outcome::Listed { resource_version } => {
                if self.resource == Resource::EndpointSlices {
                    self.slices_refused = None;
                }
                self.since_probe = Duration::ZERO;
                self.internal_errors_in_a_row = 0;
                self.watch(resource_version)
            }
            Outcome::ListFailed {
                status,
                retry_after,
            } => self.list_failed(status, retry_after),
            Outcome::WatchEnded {
                resource_version,
                healthy: true,
                lasted,
            } => {
                self.healthy();
                if self.on_fallback() {
                    self.since_probe = self.since_probe.saturating_add(lasted);
                    if self.since_probe >= PROBE_SLICES_EVERY {
                        return self.probe(resource_version);
                    }
                }
                self.watch(resource_version)
            }
            Outcome::WatchEnded {
                resource_version,
                healthy: false,
                ..
            } => self.back_off(Some(resource_version), None),
            Outcome::Expired { healthy } => self.expired(healthy),
            Outcome::ErrorEvent {
                resource_version,
                error,
                healthy,
            } => {
                if healthy {
                    self.healthy();
                }
                match error {
                    WatchError::Expired => self.expired(healthy),
                    WatchError::TooManyRequests => self.back_off(Some(resource_version), None),
                    WatchError::InternalError
                        if self.internal_errors_in_a_row < MAX_INTERNAL_ERROR_RESUMES =>
                    {
                        self.internal_errors_in_a_row += 1;
                        self.back_off(Some(resource_version), None)
                    }
                    WatchError::InternalError | WatchError::Other => self.back_off(None, None),
                }
            }
            Outcome::WatchFailed {
                resource_version,
                retry_after,
                relist,
                healthy,
            } => {
                if healthy {
                    self.healthy();
                }
                let resume = if relist { None } else { Some(resource_version) };
                self.back_off(resume, retry_after)
            }
            Outcome::Waited => match std::mem::replace(&mut self.phase, Phase::Empty) {
                Phase::BackingOff { resume: Some(rv) } => self.watch(rv),
                Phase::BackingOff { resume: None } | Phase::Empty => self.list(),
                Phase::Watching { resource_version } => self.watch(resource_version),
                Phase::Probing { resume } => self.resume_fallback(resume),
            },
        }
    }

    /// The resource every list starts with.
    fn first_resource(&self) -> Resource {
        match self.source {
            Source::Endpoints => Resource::Endpoints,
            Source::EndpointSlices | Source::Auto => Resource::EndpointSlices,
        }
    }

    fn on_fallback(&self) -> bool {
        self.source == Source::Auto && self.resource == Resource::Endpoints
    }

    fn list_failed(&mut self, status: Option<u16>, retry_after: Option<Duration>) -> Command {
        let probing = match std::mem::replace(&mut self.phase, Phase::Empty) {
            Phase::Probing { resume } => Some(resume),
            _ => None,
        };
        let refused = self.source == Source::Auto
            && self.resource == Resource::EndpointSlices
            && matches!(status, Some(403 | 404));
        if refused {
            self.slices_refused = status;
        }
        match probing {
            // A probe that fails for any reason changes nothing: keep watching Endpoints.
            Some(resume) => self.resume_fallback(resume),
            None if refused => {
                self.resource = Resource::Endpoints;
                Command::List {
                    resource: Resource::Endpoints,
                }
            }
            None => self.back_off(None, retry_after),
        }
    }

    fn expired(&mut self, healthy: bool) -> Command {
        if healthy {
            self.healthy();
        }
        self.expired_in_a_row += 1;
        if self.expired_in_a_row == 1 {
            self.list()
        } else {
            // A fresh list that expires at once again: the server is not sane; wait.
            self.back_off(None, None)
        }
    }

    fn healthy(&mut self) {
        self.backoff.reset();
        self.expired_in_a_row = 0;
        self.internal_errors_in_a_row = 0;
    }

    fn list(&mut self) -> Command {
        self.phase = Phase::Empty;
        self.resource = self.first_resource();
        Command::List {
            resource: self.resource,
        }
    }

    fn probe(&mut self, resume: String) -> Command {
        self.since_probe = Duration::ZERO;
        self.phase = Phase::Probing { resume };
        self.resource = Resource::EndpointSlices;
        Command::List {
            resource: Resource::EndpointSlices,
        }
    }

    fn resume_fallback(&mut self, resume: String) -> Command {
        self.resource = Resource::Endpoints;
        self.watch(resume)
    }

    fn watch(&mut self, resource_version: String) -> Command {
        self.phase = Phase::Watching {
            resource_version: resource_version.clone(),
        };
        Command::Watch {
            resource: self.resource,
            resource_version,
        }
    }

    fn back_off(&mut self, resume: Option<String>, retry_after: Option<Duration>) -> Command {
        self.phase = Phase::BackingOff { resume };
        Command::Wait(self.backoff.next_delay(retry_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::BackoffPolicy;

    const SLICES: Resource = Resource::EndpointSlices;
    const ENDPOINTS: Resource = Resource::Endpoints;

    fn machine() -> Machine {
        machine_for(Source::Endpoints)
    }

    fn machine_for(source: Source) -> Machine {
        Machine::new(source, Backoff::new(BackoffPolicy::default(), 42))
    }

    fn list(resource: Resource) -> Command {
        Command::List { resource }
    }

    fn watch(rv: &str) -> Command {
        watch_of(ENDPOINTS, rv)
    }

    fn watch_of(resource: Resource, rv: &str) -> Command {
        Command::Watch {
            resource,
            resource_version: rv.into(),
        }
    }

    fn listed(rv: &str) -> Outcome {
        Outcome::Listed {
            resource_version: rv.into(),
        }
    }

    fn list_failed(status: u16) -> Outcome {
        Outcome::ListFailed {
            status: Some(status),
            retry_after: None,
        }
    }

    fn ended(rv: &str, lasted: Duration) -> Outcome {
        Outcome::WatchEnded {
            resource_version: rv.into(),
            healthy: true,
            lasted,
        }
    }

    fn error_event(rv: &str, error: WatchError) -> Outcome {
        Outcome::ErrorEvent {
            resource_version: rv.into(),
            error,
            healthy: false,
        }
    }

    fn waits(c: &Command) -> Duration {
        match c {
            Command::Wait(d) => *d,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    /// A machine for `source` that listed and watches from "5".
    fn watching(source: Source) -> Machine {
        let mut m = machine_for(source);
        m.step(Outcome::Start);
        m.step(listed("5"));
        m
    }

    #[test]
    fn starts_by_listing_then_watches_from_the_lists_resource_version() {
        let mut m = machine();
        assert_eq!(m.step(Outcome::Start), list(ENDPOINTS));
        assert_eq!(m.step(listed("10")), watch("10"));
        assert_eq!(
            m.phase(),
            &Phase::Watching {
                resource_version: "10".into()
            }
        );
    }

    #[test]
    fn a_clean_end_rewatches_at_once_from_the_last_resource_version() {
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(listed("10"));
        let next = m.step(ended("17", PROBE_SLICES_EVERY * 2));
        assert_eq!(next, watch("17"));
    }

    #[test]
    fn a_watch_that_ends_at_once_with_nothing_backs_off_and_the_delays_grow() {
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(listed("1"));
        let mut last_ceiling = Duration::ZERO;
        for n in 0..6 {
            let d = waits(&m.step(Outcome::WatchEnded {
                resource_version: "1".into(),
                healthy: false,
                lasted: Duration::ZERO,
            }));
            assert!(d >= Duration::from_millis(500), "attempt {n}: {d:?}");
            let ceiling = Duration::from_secs(1 << n).min(Duration::from_secs(30));
            assert!(d <= ceiling);
            last_ceiling = ceiling;
            assert_eq!(m.step(Outcome::Waited), watch("1"));
        }
        assert_eq!(last_ceiling, Duration::from_secs(30));
    }

    #[test]
    fn expired_relists_at_once_the_first_time_and_backs_off_when_it_repeats() {
        let mut m = watching(Source::Endpoints);
        assert_eq!(m.step(Outcome::Expired { healthy: true }), list(ENDPOINTS));
        m.step(listed("9"));
        let next = m.step(Outcome::Expired { healthy: false });
        waits(&next);
        assert_eq!(m.phase(), &Phase::BackingOff { resume: None });
        assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    }

    #[test]
    fn a_failed_watch_resumes_from_its_resource_version_after_the_backoff() {
        let mut m = watching(Source::Endpoints);
        let next = m.step(Outcome::WatchFailed {
            resource_version: "8".into(),
            retry_after: None,
            relist: false,
            healthy: true,
        });
        waits(&next);
        assert_eq!(m.step(Outcome::Waited), watch("8"));
    }

    #[test]
    fn malformed_data_relists_after_the_backoff() {
        let mut m = watching(Source::Endpoints);
        waits(&m.step(Outcome::WatchFailed {
            resource_version: "8".into(),
            retry_after: None,
            relist: true,
            healthy: false,
        }));
        assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    }

    #[test]
    fn a_failed_list_retries_the_list_and_honours_retry_after() {
        let mut m = machine();
        m.step(Outcome::Start);
        let d = waits(&m.step(Outcome::ListFailed {
            status: Some(429),
            retry_after: Some(Duration::from_secs(4)),
        }));
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        );
        assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
    }

    #[test]
    fn a_healthy_watch_resets_the_backoff() {
        let mut m = machine();
        m.step(Outcome::Start);
        for _ in 0..8 {
            m.step(Outcome::ListFailed {
                status: None,
                retry_after: None,
            });
            m.step(Outcome::Waited);
        }
        m.step(listed("3"));
        m.step(ended("3", Duration::from_secs(1)));
        let d = waits(&m.step(Outcome::WatchFailed {
            resource_version: "3".into(),
            retry_after: None,
            relist: false,
            healthy: false,
        }));
        assert!(d <= Duration::from_secs(1), "{d:?}");
    }

    #[test]
    fn error_events_are_told_apart_by_code_or_reason() {
        use WatchError::*;
        let cases = [
            (Some(410), Some("Expired"), Expired),
            (Some(410), None, Expired),
            (None, Some("Gone"), Expired),
            (None, Some("Expired"), Expired),
            (Some(429), Some("TooManyRequests"), TooManyRequests),
            (Some(429), None, TooManyRequests),
            (None, Some("TooManyRequests"), TooManyRequests),
            (Some(500), Some("InternalError"), InternalError),
            (Some(500), None, InternalError),
            (None, Some("InternalError"), InternalError),
            (Some(403), Some("Forbidden"), Other),
            (Some(400), Some("BadRequest"), Other),
            (Some(422), Some("Invalid"), Other),
            (Some(504), Some("Timeout"), Other),
            (Some(503), Some("ServiceUnavailable"), Other),
            (None, None, Other),
        ];
        for (code, reason, expected) in cases {
            assert_eq!(
                WatchError::classify(code, reason),
                expected,
                "{code:?} {reason:?}"
            );
        }
    }

    #[test]
    fn an_expired_error_event_relists_at_once() {
        let mut m = watching(Source::Endpoints);
        assert_eq!(
            m.step(error_event("8", WatchError::Expired)),
            list(ENDPOINTS)
        );
    }

    #[test]
    fn too_many_requests_in_a_watch_backs_off_and_resumes_from_the_same_version() {
        let mut m = watching(Source::Endpoints);
        for _ in 0..10 {
            waits(&m.step(error_event("8", WatchError::TooManyRequests)));
            assert_eq!(m.step(Outcome::Waited), watch("8"));
        }
    }

    #[test]
    fn internal_errors_resume_a_few_times_in_a_row_then_relist() {
        let mut m = watching(Source::Endpoints);
        for _ in 0..MAX_INTERNAL_ERROR_RESUMES {
            waits(&m.step(error_event("8", WatchError::InternalError)));
            assert_eq!(m.step(Outcome::Waited), watch("8"));
        }
        waits(&m.step(error_event("8", WatchError::InternalError)));
        assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
        // The count starts again after the list.
        m.step(listed("9"));
        waits(&m.step(error_event("9", WatchError::InternalError)));
        assert_eq!(m.step(Outcome::Waited), watch("9"));
    }

    #[test]
    fn a_watch_that_progressed_between_internal_errors_keeps_resuming() {
        let mut m = watching(Source::Endpoints);
        for n in 0..(MAX_INTERNAL_ERROR_RESUMES * 3) {
            let rv = n.to_string();
            waits(&m.step(Outcome::ErrorEvent {
                resource_version: rv.clone(),
                error: WatchError::InternalError,
                healthy: true,
            }));
            assert_eq!(m.step(Outcome::Waited), watch(&rv));
        }
    }

    #[test]
    fn any_other_error_event_relists_after_a_backoff() {
        let mut m = watching(Source::Endpoints);
        for _ in 0..5 {
            let d = waits(&m.step(error_event("8", WatchError::Other)));
            assert!(d >= Duration::from_millis(500), "{d:?}");
            assert_eq!(m.step(Outcome::Waited), list(ENDPOINTS));
            m.step(listed("8"));
        }
    }

    #[test]
    fn repeated_error_events_without_progress_grow_the_backoff() {
        let mut m = watching(Source::Endpoints);
        let mut ceilings = Vec::new();
        for n in 0..6u32 {
            let d = waits(&m.step(error_event("8", WatchError::Other)));
            let ceiling = Duration::from_secs(1 << n).min(Duration::from_secs(30));
            assert!(d <= ceiling, "attempt {n}: {d:?}");
            ceilings.push(ceiling);
            m.step(Outcome::Waited);
            m.step(listed("8"));
        }
        assert_eq!(ceilings.last(), Some(&Duration::from_secs(30)));
    }

    #[test]
    fn endpoint_slices_and_auto_start_with_slices() {
        assert_eq!(
            machine_for(Source::EndpointSlices).step(Outcome::Start),
            list(SLICES)
        );
        assert_eq!(machine_for(Source::Auto).step(Outcome::Start), list(SLICES));
        let mut m = watching(Source::EndpointSlices);
        assert_eq!(m.step(ended("6", Duration::ZERO)), watch_of(SLICES, "6"));
    }

    #[test]
    fn auto_falls_back_to_endpoints_at_once_when_slices_are_forbidden_or_missing() {
        for status in [403, 404] {
            let mut m = machine_for(Source::Auto);
            m.step(Outcome::Start);
            assert_eq!(m.step(list_failed(status)), list(ENDPOINTS));
            assert_eq!(m.slices_refused(), Some(status));
            assert_eq!(m.step(listed("7")), watch("7"));
        }
    }

    #[test]
    fn auto_does_not_fall_back_on_other_failures() {
        for status in [401, 429, 500, 503] {
            let mut m = machine_for(Source::Auto);
            m.step(Outcome::Start);
            waits(&m.step(list_failed(status)));
            assert_eq!(m.slices_refused(), None);
            assert_eq!(m.step(Outcome::Waited), list(SLICES));
        }
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        waits(&m.step(Outcome::ListFailed {
            status: None,
            retry_after: None,
        }));
    }

    #[test]
    fn an_explicit_source_never_falls_back() {
        for source in [Source::EndpointSlices, Source::Endpoints] {
            let mut m = machine_for(source);
            let first = m.step(Outcome::Start);
            for status in [403, 404] {
                waits(&m.step(list_failed(status)));
                assert_eq!(m.step(Outcome::Waited), first);
                assert_eq!(m.slices_refused(), None);
            }
        }
    }

    #[test]
    fn auto_keeps_trying_slices_first_while_both_are_forbidden() {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        for _ in 0..5 {
            assert_eq!(m.step(list_failed(403)), list(ENDPOINTS));
            waits(&m.step(list_failed(403)));
            assert_eq!(m.slices_refused(), Some(403));
            assert_eq!(m.step(Outcome::Waited), list(SLICES));
        }
        // The Role is fixed for slices: they resolve and the fallback is over.
        assert_eq!(m.step(listed("12")), watch_of(SLICES, "12"));
        assert_eq!(m.slices_refused(), None);
    }

    #[test]
    fn auto_on_the_fallback_returns_to_slices_at_the_next_relist() {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        m.step(list_failed(403));
        assert_eq!(m.step(listed("7")), watch("7"));
        // A 410 relists: slices first.
        assert_eq!(m.step(Outcome::Expired { healthy: true }), list(SLICES));
        assert_eq!(m.step(listed("20")), watch_of(SLICES, "20"));
        assert_eq!(m.slices_refused(), None);
        // And a failed list on the fallback retries slices first too.
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        m.step(list_failed(404));
        waits(&m.step(list_failed(500)));
        assert_eq!(m.step(Outcome::Waited), list(SLICES));
    }

    #[test]
    fn auto_on_the_fallback_probes_slices_after_enough_watch_time() {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        m.step(list_failed(403));
        m.step(listed("7"));
        let step = PROBE_SLICES_EVERY / 3;
        assert_eq!(m.step(ended("8", step)), watch("8"));
        assert_eq!(m.step(ended("9", step)), watch("9"));
        // Failures and quick ends add nothing.
        waits(&m.step(Outcome::WatchEnded {
            resource_version: "9".into(),
            healthy: false,
            lasted: PROBE_SLICES_EVERY,
        }));
        assert_eq!(m.step(Outcome::Waited), watch("9"));
        assert_eq!(m.step(ended("10", step)), list(SLICES));
        assert_eq!(
            m.phase(),
            &Phase::Probing {
                resume: "10".into()
            }
        );
        // Still refused: back to the Endpoints watch where it was, without a wait or a list.
        assert_eq!(m.step(list_failed(403)), watch("10"));
        assert_eq!(m.slices_refused(), Some(403));
        // A probe that fails otherwise resumes too, and the clock starts again each time.
        assert_eq!(m.step(ended("11", step * 2)), watch("11"));
        assert_eq!(m.step(ended("12", step)), list(SLICES));
        assert_eq!(m.step(list_failed(500)), watch("12"));
        assert_eq!(m.step(ended("13", PROBE_SLICES_EVERY)), list(SLICES));
        // Allowed now: slices from here on, and no more probes.
        assert_eq!(m.step(listed("14")), watch_of(SLICES, "14"));
        assert_eq!(m.slices_refused(), None);
        assert_eq!(
            m.step(ended("15", PROBE_SLICES_EVERY * 2)),
            watch_of(SLICES, "15")
        );
    }

    #[test]
    fn a_probe_is_not_made_when_slices_are_in_use_or_the_source_is_endpoints() {
        let mut m = watching(Source::Auto);
        assert_eq!(
            m.step(ended("6", PROBE_SLICES_EVERY * 2)),
            watch_of(SLICES, "6")
        );
        let mut m = watching(Source::Endpoints);
        assert_eq!(m.step(ended("6", PROBE_SLICES_EVERY * 2)), watch("6"));
    }

    #[test]
    fn watches_after_the_fallback_watch_endpoints_until_the_next_list() {
        let mut m = machine_for(Source::Auto);
        m.step(Outcome::Start);
        m.step(list_failed(404));
        m.step(listed("7"));
        waits(&m.step(Outcome::WatchFailed {
            resource_version: "9".into(),
            retry_after: None,
            relist: false,
            healthy: false,
        }));
        assert_eq!(m.step(Outcome::Waited), watch("9"));
        waits(&m.step(error_event("9", WatchError::TooManyRequests)));
        assert_eq!(m.step(Outcome::Waited), watch("9"));
    }
}
