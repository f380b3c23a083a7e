//! The watch loop as an explicit state machine, with no I/O and no clock.
//!
//! ```text
//!            Start                Listed{rv}
//!   Empty ──────────▶ List ────────────────▶ Watching{rv} ──▶ Watch(rv)
//!     ▲                 │ ListFailed              │  │  WatchEnded{healthy}: Watch(rv) again
//!     │ Expired (410)   ▼                         │  │  (unhealthy: back off first)
//!     └──────────── BackingOff{resume} ◀──────────┘  └─ WatchFailed: back off, then
//!                     │ Waited                            resume from rv, or relist
//!                     └──▶ List (resume None) | Watch(rv)
//! ```
//!
//! The watcher thread performs each [`Command`], reports what happened as an [`Outcome`], and
//! [`Machine::step`] says what to do next. Backoff delays come from the [`Backoff`] policy
//! object; the machine decides when to use it and when to reset it.

use std::time::Duration;

use crate::backoff::Backoff;

/// Where the watch is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No usable resourceVersion: the next request is a list.
    Empty,
    /// A list or watch succeeded up to this resourceVersion: the next request watches from it.
    Watching { resource_version: String },
    /// Waiting out a backoff; then watch from `resume`, or list when it is `None`.
    BackingOff { resume: Option<String> },
}

/// What the watcher thread must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// LIST the Service's objects and replace the state.
    List,
    /// WATCH from this resourceVersion.
    Watch { resource_version: String },
    /// Sleep (interruptibly), then report [`Outcome::Waited`].
    Wait(Duration),
}

/// What happened when the thread carried out the last command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The thread starts.
    Start,
    /// The list succeeded; its resourceVersion.
    Listed { resource_version: String },
    /// The list failed; `retry_after` from a 429/503.
    ListFailed { retry_after: Option<Duration> },
    /// The server ended the watch cleanly (timeoutSeconds). `healthy`: it delivered an event
    /// or a bookmark, or stayed open long enough; a watch that ends at once without either is
    /// treated as a failure, so a misbehaving server is not hammered.
    WatchEnded {
        resource_version: String,
        healthy: bool,
    },
    /// 410 Gone/Expired (as an ERROR event or a status): the resourceVersion is compacted away.
    Expired { healthy: bool },
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

/// The state machine: a phase, the backoff, and a guard against 410 loops.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    backoff: Backoff,
    expired_in_a_row: u32,
}

impl Machine {
    pub(crate) fn new(backoff: Backoff) -> Machine {
        Machine {
            phase: Phase::Empty,
            backoff,
            expired_in_a_row: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Advance on `outcome` and return the next command.
    pub(crate) fn step(&mut self, outcome: Outcome) -> Command {
        match outcome {
            Outcome::Start => self.list(),
            Outcome::Listed { resource_version } => self.watch(resource_version),
            Outcome::ListFailed { retry_after } => self.back_off(None, retry_after),
            Outcome::WatchEnded {
                resource_version,
                healthy: true,
            } => {
                self.healthy();
                self.watch(resource_version)
            }
            Outcome::WatchEnded {
                resource_version,
                healthy: false,
            } => self.back_off(Some(resource_version), None),
            Outcome::Expired { healthy } => {
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
            },
        }
    }

    fn healthy(&mut self) {
        self.backoff.reset();
        self.expired_in_a_row = 0;
    }

    fn list(&mut self) -> Command {
        self.phase = Phase::Empty;
        Command::List
    }

    fn watch(&mut self, resource_version: String) -> Command {
        self.phase = Phase::Watching {
            resource_version: resource_version.clone(),
        };
        Command::Watch { resource_version }
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

    fn machine() -> Machine {
        Machine::new(Backoff::new(BackoffPolicy::default(), 42))
    }

    fn watch(rv: &str) -> Command {
        Command::Watch {
            resource_version: rv.into(),
        }
    }

    fn waits(c: &Command) -> Duration {
        match c {
            Command::Wait(d) => *d,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn starts_by_listing_then_watches_from_the_lists_resource_version() {
        let mut m = machine();
        assert_eq!(m.step(Outcome::Start), Command::List);
        assert_eq!(
            m.step(Outcome::Listed {
                resource_version: "10".into()
            }),
            watch("10")
        );
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
        m.step(Outcome::Listed {
            resource_version: "10".into(),
        });
        let next = m.step(Outcome::WatchEnded {
            resource_version: "17".into(),
            healthy: true,
        });
        assert_eq!(next, watch("17"));
    }

    #[test]
    fn a_watch_that_ends_at_once_with_nothing_backs_off_and_the_delays_grow() {
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(Outcome::Listed {
            resource_version: "1".into(),
        });
        let mut last_ceiling = Duration::ZERO;
        for n in 0..6 {
            let d = waits(&m.step(Outcome::WatchEnded {
                resource_version: "1".into(),
                healthy: false,
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
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(Outcome::Listed {
            resource_version: "5".into(),
        });
        assert_eq!(m.step(Outcome::Expired { healthy: true }), Command::List);
        m.step(Outcome::Listed {
            resource_version: "9".into(),
        });
        let next = m.step(Outcome::Expired { healthy: false });
        waits(&next);
        assert_eq!(m.phase(), &Phase::BackingOff { resume: None });
        assert_eq!(m.step(Outcome::Waited), Command::List);
    }

    #[test]
    fn a_failed_watch_resumes_from_its_resource_version_after_the_backoff() {
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(Outcome::Listed {
            resource_version: "5".into(),
        });
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
        let mut m = machine();
        m.step(Outcome::Start);
        m.step(Outcome::Listed {
            resource_version: "5".into(),
        });
        waits(&m.step(Outcome::WatchFailed {
            resource_version: "8".into(),
            retry_after: None,
            relist: true,
            healthy: false,
        }));
        assert_eq!(m.step(Outcome::Waited), Command::List);
    }

    #[test]
    fn a_failed_list_retries_the_list_and_honours_retry_after() {
        let mut m = machine();
        m.step(Outcome::Start);
        let d = waits(&m.step(Outcome::ListFailed {
            retry_after: Some(Duration::from_secs(4)),
        }));
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        );
        assert_eq!(m.step(Outcome::Waited), Command::List);
    }

    #[test]
    fn a_healthy_watch_resets_the_backoff() {
        let mut m = machine();
        m.step(Outcome::Start);
        for _ in 0..8 {
            m.step(Outcome::ListFailed { retry_after: None });
            m.step(Outcome::Waited);
        }
        m.step(Outcome::Listed {
            resource_version: "3".into(),
        });
        m.step(Outcome::WatchEnded {
            resource_version: "3".into(),
            healthy: true,
        });
        let d = waits(&m.step(Outcome::WatchFailed {
            resource_version: "3".into(),
            retry_after: None,
            relist: false,
            healthy: false,
        }));
        assert!(d <= Duration::from_secs(1), "{d:?}");
    }
}
