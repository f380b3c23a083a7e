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
//! [`Machine::step`] says what to do next. Backoff delays come from the [`Delays`] of the
//! [`Backoff`](crate::Backoff) policy; the machine decides when to use it and when to reset it.
//!
//! The machine also keeps the books the loop needs: the resourceVersion a watch has reached
//! (the thread reports each event's with [`Machine::advance`], and the next watch resumes
//! from it), and how many requests were reconnects and relists ([`Machine::counts`]).
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

use crate::backoff::Delays;
use crate::source::Api;
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
    List { resource: Api },
    /// WATCH `resource` from this resourceVersion.
    Watch {
        resource: Api,
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
///
/// The outcomes of a watch carry no resourceVersion: the machine knows where the watch
/// started and what [`Machine::advance`] reported since.
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
    WatchEnded { healthy: bool, lasted: Duration },
    /// 410 Gone/Expired on the watch request: the resourceVersion is compacted away.
    Expired { healthy: bool },
    /// The watch sent an `ERROR` event.
    ErrorEvent { error: WatchError, healthy: bool },
    /// The watch failed (connect, TLS, status, reset, stall, bad data). `relist` when the
    /// state can no longer be trusted (malformed data) and must be listed afresh.
    WatchFailed {
        retry_after: Option<Duration>,
        relist: bool,
        healthy: bool,
    },
    /// The backoff wait is over.
    Waited,
}

/// How many requests were not the first of their kind: for [`Status`](crate::Status)'s
/// counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Requests (lists or watches) after a watch ended or a request failed: every request
    /// but the first list, the watch that follows a successful list, and Auto's list of
    /// Endpoints right after its refused slice list (the same attempt).
    pub reconnects: u64,
    /// Lists after the first one, except Auto's list of Endpoints right after its refused
    /// slice list.
    pub relists: u64,
}

/// The state machine: a phase, the resource in use, the backoff, and guards against loops.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    source: Source,
    /// The resource of the current (or last) request.
    resource: Api,
    /// Auto only: the status (403 or 404) of the last refused EndpointSlice list; `None` once
    /// a slice list succeeds.
    slices_refused: Option<u16>,
    /// Healthy watch time on the Endpoints fallback since slices were last tried.
    since_probe: Duration,
    backoff: Delays,
    expired_in_a_row: u32,
    internal_errors_in_a_row: u32,
    /// Lists commanded so far.
    lists: u64,
    /// The command being made is Auto's list of Endpoints right after its refused slice list.
    falling_back: bool,
    counts: Counts,
}

impl Machine {
    pub(crate) fn new(source: Source, backoff: Delays) -> Machine {
        let mut machine = Machine {
            phase: Phase::Empty,
            source,
            resource: Api::EndpointSlices,
            slices_refused: None,
            since_probe: Duration::ZERO,
            backoff,
            expired_in_a_row: 0,
            internal_errors_in_a_row: 0,
            lists: 0,
            falling_back: false,
            counts: Counts::default(),
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

    /// Reconnects and relists so far, counting the command the last [`step`](Self::step)
    /// returned.
    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// The resourceVersion the current watch has reached, while watching.
    pub(crate) fn resource_version(&self) -> Option<&str> {
        match &self.phase {
            Phase::Watching { resource_version } => Some(resource_version),
            _ => None,
        }
    }

    /// An event or bookmark of the current watch carried `resource_version`: the watch has
    /// seen everything up to it, and the next one resumes from there. `None` or an empty
    /// string (a server that leaves it out) keeps the last one. Ignored while not watching.
    pub(crate) fn advance(&mut self, resource_version: Option<String>) {
        if let (
            Phase::Watching {
                resource_version: current,
            },
            Some(new),
        ) = (
            &mut self.phase,
            resource_version.filter(|rv| !rv.is_empty()),
        ) {
            *current = new;
        }
    }

    /// Advance on `outcome` and return the next command.
    pub(crate) fn step(&mut self, outcome: Outcome) -> Command {
        let after_list = matches!(outcome, Outcome::Listed { .. });
        self.falling_back = false;
        let command = self.next(outcome);
        self.count(&command, after_list);
        command
    }

    /// Count `command` among the reconnects and relists (see [`Counts`]).
    fn count(&mut self, command: &Command, after_list: bool) {
        if matches!(command, Command::Wait(_)) {
            return;
        }
        let first = self.lists == 0 || self.falling_back;
        if !first && !after_list {
            self.counts.reconnects += 1;
        }
        if matches!(command, Command::List { .. }) {
            if !first {
                self.counts.relists += 1;
            }
            self.lists += 1;
        }
    }

    /// The command that follows `outcome`.
    fn next(&mut self, outcome: Outcome) -> Command {
        match outcome {
            Outcome::Start => self.list(),
            Outcome::Listed { resource_version } => {
                if self.resource == Api::EndpointSlices {
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
                healthy: true,
                lasted,
            } => {
                self.healthy();
                let Some(resume) = self.resume() else {
                    return self.list();
                };
                if self.on_fallback() {
                    self.since_probe = self.since_probe.saturating_add(lasted);
                    if self.since_probe >= PROBE_SLICES_EVERY {
                        return self.probe(resume);
                    }
                }
                self.watch(resume)
            }
            Outcome::WatchEnded { healthy: false, .. } => {
                let resume = self.resume();
                self.back_off(resume, None)
            }
            Outcome::Expired { healthy } => self.expired(healthy),
            Outcome::ErrorEvent { error, healthy } => {
                if healthy {
                    self.healthy();
                }
                let resume = self.resume();
                match error {
                    WatchError::Expired => self.expired(healthy),
                    WatchError::TooManyRequests => self.back_off(resume, None),
                    WatchError::InternalError
                        if self.internal_errors_in_a_row < MAX_INTERNAL_ERROR_RESUMES =>
                    {
                        self.internal_errors_in_a_row += 1;
                        self.back_off(resume, None)
                    }
                    WatchError::InternalError | WatchError::Other => self.back_off(None, None),
                }
            }
            Outcome::WatchFailed {
                retry_after,
                relist,
                healthy,
            } => {
                if healthy {
                    self.healthy();
                }
                let resume = self.resume().filter(|_| !relist);
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
    fn first_resource(&self) -> Api {
        match self.source {
            Source::Endpoints => Api::Endpoints,
            Source::EndpointSlices | Source::Auto => Api::EndpointSlices,
        }
    }

    /// Where the watch that just ended got to; `None` when no watch was under way (then the
    /// state is listed afresh).
    fn resume(&self) -> Option<String> {
        self.resource_version().map(str::to_owned)
    }

    fn on_fallback(&self) -> bool {
        self.source == Source::Auto && self.resource == Api::Endpoints
    }

    fn list_failed(&mut self, status: Option<u16>, retry_after: Option<Duration>) -> Command {
        let probing = match std::mem::replace(&mut self.phase, Phase::Empty) {
            Phase::Probing { resume } => Some(resume),
            _ => None,
        };
        let refused = self.source == Source::Auto
            && self.resource == Api::EndpointSlices
            && matches!(status, Some(403 | 404));
        if refused {
            self.slices_refused = status;
        }
        match probing {
            // A probe that fails for any reason changes nothing: keep watching Endpoints.
            Some(resume) => self.resume_fallback(resume),
            None if refused => {
                self.falling_back = true;
                self.resource = Api::Endpoints;
                Command::List {
                    resource: Api::Endpoints,
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
        self.resource = Api::EndpointSlices;
        Command::List {
            resource: Api::EndpointSlices,
        }
    }

    fn resume_fallback(&mut self, resume: String) -> Command {
        self.resource = Api::Endpoints;
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
mod tests;
