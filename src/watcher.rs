//! The watcher thread: carries out the state machine's commands against the API, feeds
//! events into the state merge, and publishes what changed.
//!
//! This is the only place where the machine, the client, the decoder, the merge and the
//! publisher meet. Everything it does is also visible in [`Status`](crate::Status).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};

use crate::backoff::{Backoff, Delays};
use crate::client::Client;
use crate::decode::{decode_event, not_an_event, WatchEvent};
use crate::fanout::Fanout;
use crate::lines::{Line, LineSplitter};
use crate::machine::{Command, Machine, Outcome, WatchError};
use crate::merge::{Group, ObjectGroups};
use crate::source::Api;
use crate::util::{printable, Rng};
use crate::{Error, Source};

/// A watch that stayed open this long was healthy even if it carried nothing.
const MIN_HEALTHY_WATCH: Duration = Duration::from_secs(5);

/// The job of one watcher: which Service, from which source, with which timings. (The ports
/// are the fanout's: one watch serves every port of its Service.)
pub(crate) struct Job {
    /// The Service as a target without a port, for log lines.
    pub label: String,
    pub namespace: String,
    pub service: String,
    pub source: Source,
    pub backoff: Backoff,
    /// The server ends each watch after a random time in `[watch_timeout × 3/4, watch_timeout]`.
    pub watch_timeout: Duration,
    pub max_line: usize,
}

/// The watcher thread's body.
pub(crate) struct Watcher {
    job: Job,
    client: Client,
    /// The Service's state, and the hubs of the ports in use.
    fanout: Arc<Fanout>,
    stop: Receiver<()>,
    stopping: Arc<AtomicBool>,
    /// What to do next, and the books of the loop: resourceVersion, reconnects, relists.
    machine: Machine,
    /// The resource of the current request (the machine chooses it).
    resource: Api,
    rng: Rng,
    /// Auto only: why the last EndpointSlice list was refused, while it stays refused; kept to
    /// name both RBAC rules when Endpoints are refused too.
    slices_refusal: Option<Error>,
    /// Auto's fallback to Endpoints was reported once already (later ones are debug lines).
    fallback_reported: bool,
    /// FQDN slices were reported once already.
    fqdn_reported: std::cell::Cell<bool>,
    /// Objects of other Services (a server that ignores the selector) were reported once.
    foreign_reported: std::cell::Cell<bool>,
}

impl Watcher {
    pub(crate) fn new(
        job: Job,
        client: Client,
        fanout: Arc<Fanout>,
        stop: Receiver<()>,
        stopping: Arc<AtomicBool>,
    ) -> Watcher {
        let mut rng = Rng::new(Rng::entropy());
        let backoff = Delays::new(job.backoff, rng.next_u64());
        Watcher {
            machine: Machine::new(job.source, backoff),
            job,
            client,
            fanout,
            stop,
            stopping,
            resource: Api::EndpointSlices,
            rng,
            slices_refusal: None,
            fallback_reported: false,
            fqdn_reported: std::cell::Cell::new(false),
            foreign_reported: std::cell::Cell::new(false),
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Run until the resolver is dropped.
    pub(crate) fn run(mut self) {
        // Whatever ends this thread, even a panic, ends the subscriptions and wakes wait_ready.
        let _stop = StopOnExit(self.fanout.clone());
        let mut command = self.machine.step(Outcome::Start);
        while !self.stopping() {
            let mut list_error = None;
            let outcome = match command {
                Command::List { resource } => {
                    self.resource = resource;
                    match self.list() {
                        Ok(listed) => listed,
                        Err(e) => {
                            let outcome = Outcome::ListFailed {
                                status: e.status(),
                                retry_after: e.retry_after(),
                            };
                            list_error = Some(e);
                            outcome
                        }
                    }
                }
                Command::Watch {
                    resource,
                    resource_version,
                } => {
                    self.resource = resource;
                    self.watch(resource_version)
                }
                Command::Wait(delay) => match self.stop.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => Outcome::Waited,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if self.stopping() {
                break;
            }
            command = self.machine.step(outcome);
            let counts = self.machine.counts();
            self.fanout.update_status(|s| {
                s.counters.reconnects = counts.reconnects;
                s.counters.relists = counts.relists;
            });
            if let Some(e) = list_error {
                self.list_failed(e);
            }
            if let Command::Wait(delay) = &command {
                debug!("{}: retrying in {delay:.1?}", self.job.label);
            }
        }
        debug!("{}: watcher stopped", self.job.label);
    }

    fn fail(&self, error: Error) {
        if !self.stopping() {
            warn!("{}: {error}", self.job.label);
            self.fanout.record_error(&error);
        }
    }

    fn synced(&self) {
        self.fanout
            .update_status(|s| s.last_sync = Some(SystemTime::now()));
    }

    fn list(&mut self) -> Result<Outcome, Error> {
        let s = &self.job;
        let listed = self.client.list(self.resource, &s.namespace, &s.service)?;
        let resource = self.resource;
        self.fanout.update_status(|st| {
            st.counters.lists += 1;
            st.source = Some(resource.source());
        });
        if resource == Api::EndpointSlices && self.slices_refusal.take().is_some() {
            info!(
                "{}: the EndpointSlice API is allowed now; using it instead of Endpoints",
                s.label
            );
        }
        let items = listed
            .items
            .into_iter()
            .filter_map(|(name, object)| {
                let groups = self.keep_ours_and_warn(&name, object)?;
                Some((name, groups))
            })
            .collect::<Vec<_>>();
        self.fanout.replace_all(items);
        self.synced();
        self.publish();
        Ok(Outcome::Listed {
            resource_version: listed.resource_version,
        })
    }

    /// Report a failed list, once the machine has decided what comes next. Auto's slice list
    /// refused (the machine falls back to Endpoints, or keeps watching them after a probe) is
    /// not a failure of the resolver.
    fn list_failed(&mut self, e: Error) {
        if e.status() == Some(401) {
            self.client.refresh_token();
        }
        let refused = self.machine.slices_refused();
        match self.resource {
            Api::EndpointSlices if refused.is_some() && e.status() == refused => {
                let label = &self.job.label;
                let what = if refused == Some(404) {
                    "missing"
                } else {
                    "forbidden"
                };
                if self.fallback_reported {
                    debug!("{label}: the EndpointSlice API is still {what}; using Endpoints");
                } else {
                    self.fallback_reported = true;
                    warn!(
                        "{label}: the EndpointSlice API is {what} ({e}); falling back to core/v1 \
                         Endpoints, and trying EndpointSlices again at each relist. To use \
                         EndpointSlices, grant the service account a Role rule: {}",
                        Api::EndpointSlices.rbac_rule()
                    );
                }
                self.slices_refusal = Some(e);
            }
            // On the fallback, an Endpoints failure also says why slices were not used: with
            // both refused, the error names both RBAC rules.
            Api::Endpoints if refused.is_some() => {
                let e = match &self.slices_refusal {
                    Some(slices) => e.after(slices),
                    None => e,
                };
                self.fail(e);
            }
            _ => self.fail(e),
        }
    }

    /// Keep the groups of an object of our Service, and warn about what the decoder skipped
    /// (FQDN slices once, bad addresses each time); `None`, and a warning the first time, for
    /// an object of another Service.
    fn keep_ours_and_warn(&self, name: &str, object: ObjectGroups) -> Option<Vec<Group>> {
        if !object.belongs_to(&self.job.service) {
            if !self.foreign_reported.replace(true) {
                warn!(
                    "{}: the API server sent {} {name:?} of Service {:?}: it ignores the \
                     selector (a proxy or mock?); ignoring objects of other Services",
                    self.job.label,
                    self.resource,
                    printable(object.service.as_deref().unwrap_or("<none>").as_bytes())
                );
            }
            return None;
        }
        if !object.bad_ips.is_empty() {
            warn!(
                "{}: {} {name:?} has addresses that are not IPs, skipped: {}",
                self.job.label,
                self.resource,
                printable(object.bad_ips.join(", ").as_bytes())
            );
        }
        if object.fqdn && !self.fqdn_reported.replace(true) {
            debug!(
                "{}: ignoring FQDN EndpointSlice {name:?} (and any others)",
                self.job.label
            );
        }
        Some(object.groups)
    }

    /// Merge the state into endpoints for each port and publish what changed. A port problem
    /// is an error of that port: it keeps its last good snapshot.
    fn publish(&mut self) {
        self.fanout.publish(&self.job.service, self.stopping());
    }

    fn watch(&mut self, resource_version: String) -> Outcome {
        let s = &self.job;
        let window = s.watch_timeout.as_secs().max(1);
        let timeout = window - self.rng.next_u64() % (window / 4 + 1);
        let started = Instant::now();
        let mut stream = match self.client.watch(
            self.resource,
            &s.namespace,
            &s.service,
            &resource_version,
            timeout,
        ) {
            Ok(stream) => stream,
            Err(e) => {
                if e.status() == Some(410) {
                    debug!("{}: resourceVersion expired; relisting", s.label);
                    return Outcome::Expired { healthy: false };
                }
                if e.status() == Some(401) {
                    self.client.refresh_token();
                }
                let retry_after = e.retry_after();
                self.fail(e);
                return Outcome::WatchFailed {
                    retry_after,
                    relist: false,
                    healthy: false,
                };
            }
        };
        self.fanout.update_status(|st| {
            st.counters.watches += 1;
            st.watching = true;
        });
        // A watch that lasted as long as it asked for was healthy, even if nothing happened.
        let healthy_after = MIN_HEALTHY_WATCH.min(
            Duration::from_secs(timeout)
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_millis(500)),
        );
        let outcome = self.stream(&mut stream.body, started, healthy_after);
        self.fanout.update_status(|st| st.watching = false);
        outcome
    }

    /// Read events until the stream ends or fails.
    fn stream(
        &mut self,
        body: &mut impl Read,
        started: Instant,
        healthy_after: Duration,
    ) -> Outcome {
        let mut splitter = LineSplitter::new(self.job.max_line);
        let mut progressed = false;
        let failed = |relist: bool, progressed: bool| Outcome::WatchFailed {
            retry_after: None,
            relist,
            healthy: progressed,
        };
        loop {
            match splitter.read_from(body) {
                Ok(0) => {
                    if splitter.has_partial() {
                        // One complete object and no event (a List, a Status): resuming would
                        // get the same answer; relist, as client-go does after bad data.
                        if let Some(object) = not_an_event(splitter.partial()) {
                            self.fail(object.into_error());
                            return failed(true, progressed);
                        }
                        self.fail(Error::transport(
                            "the watch stream ended in the middle of an event",
                        ));
                        return failed(false, progressed);
                    }
                    debug!("{}: watch ended; watching again", self.job.label);
                    let lasted = started.elapsed();
                    return Outcome::WatchEnded {
                        healthy: progressed || lasted >= healthy_after,
                        lasted,
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                        || e.get_ref()
                            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
                    let message = if timed_out {
                        "the watch stream went silent past the read timeout (dead connection?)"
                            .to_string()
                    } else {
                        format!("the watch stream failed: {e}")
                    };
                    self.fail(Error::transport(message));
                    return failed(false, progressed);
                }
            }
            let mut dirty = false;
            while let Some(line) = splitter.next_line() {
                let line = match line {
                    Line::Complete(line) => line,
                    Line::TooLong => {
                        self.fail(Error::decode(format!(
                            "a watch event is longer than {} bytes; relisting",
                            self.job.max_line
                        )));
                        return failed(true, progressed);
                    }
                };
                let event = match decode_event(line, self.resource) {
                    Ok(event) => event,
                    Err(e) => {
                        self.fail(match not_an_event(line) {
                            Some(object) => object.into_error(),
                            None => Error::decode(format!(
                                "{e}; relisting (line starts {:?})",
                                printable(&line[..line.len().min(80)])
                            )),
                        });
                        return failed(true, progressed);
                    }
                };
                match event {
                    WatchEvent::Applied {
                        name,
                        resource_version: rv,
                        object,
                    } => {
                        dirty |= match self.keep_ours_and_warn(&name, object) {
                            Some(groups) => self.fanout.apply(name, groups),
                            // Not ours (any more): a selector would have sent DELETED.
                            None => self.fanout.delete(&name),
                        };
                        self.advance(rv, true);
                    }
                    WatchEvent::Deleted {
                        name,
                        resource_version: rv,
                    } => {
                        dirty |= self.fanout.delete(&name);
                        self.advance(rv, true);
                    }
                    WatchEvent::Bookmark {
                        resource_version: rv,
                    } => {
                        self.advance(Some(rv), false);
                    }
                    WatchEvent::Error {
                        code,
                        reason,
                        message,
                    } => {
                        if dirty {
                            self.publish();
                        }
                        let error = WatchError::classify(code, reason.as_deref());
                        let next = match error {
                            WatchError::Expired => {
                                debug!(
                                    "{}: resourceVersion {} expired; relisting",
                                    self.job.label,
                                    self.machine.resource_version().unwrap_or_default()
                                );
                                None
                            }
                            WatchError::TooManyRequests | WatchError::InternalError => {
                                Some("resuming after a backoff (relisting if it repeats)")
                            }
                            WatchError::Other => Some("relisting after a backoff"),
                        };
                        if let Some(next) = next {
                            self.fail(Error::api(
                                code.unwrap_or(500),
                                reason,
                                format!(
                                    "the watch sent an ERROR event: {}; {next}",
                                    printable(message.as_bytes())
                                ),
                                None,
                            ));
                        }
                        return Outcome::ErrorEvent {
                            error,
                            healthy: progressed,
                        };
                    }
                    WatchEvent::Unknown { kind } => {
                        debug!(
                            "{}: ignoring a watch event of unknown type {:?}",
                            self.job.label,
                            printable(kind.as_bytes())
                        );
                    }
                }
                progressed = true;
            }
            if dirty {
                self.publish();
            }
        }
    }

    /// Take a new resourceVersion from an event or bookmark, and count it.
    fn advance(&mut self, resource_version: Option<String>, is_event: bool) {
        self.machine.advance(resource_version);
        self.fanout.update_status(|s| {
            if is_event {
                s.counters.events += 1;
            } else {
                s.counters.bookmarks += 1;
            }
            s.last_sync = Some(SystemTime::now());
        });
    }
}

/// Marks every port of the watch stopped when the watcher thread ends, however it ends.
struct StopOnExit(Arc<Fanout>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.update_status(|s| s.watching = false);
        self.0.stop();
    }
}
