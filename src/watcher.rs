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

use crate::backoff::{Backoff, BackoffPolicy, Rng};
use crate::client::{printable, Client};
use crate::decode::{decode_event, Line, LineSplitter, WatchEvent};
use crate::machine::{Command, Machine, Outcome};
use crate::publish::Shared;
use crate::source::Resource;
use crate::state::{Normalized, State};
use crate::{Error, Port, Source};

/// A watch that stayed open this long was healthy even if it carried nothing.
const MIN_HEALTHY_WATCH: Duration = Duration::from_secs(5);

/// What one watcher needs to know.
pub(crate) struct Settings {
    /// The target as the user wrote it, for log lines.
    pub label: String,
    pub namespace: String,
    pub service: String,
    pub port: Option<Port>,
    pub source: Source,
    pub backoff: BackoffPolicy,
    /// The server ends each watch after a random time in `[watch_timeout × 3/4, watch_timeout]`.
    pub watch_timeout: Duration,
    pub max_line: usize,
}

/// The watcher thread's body.
pub(crate) struct Watcher {
    settings: Settings,
    client: Client,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    stopping: Arc<AtomicBool>,
    resource: Resource,
    state: State,
    rng: Rng,
    /// The slice API is missing or forbidden and we fell back to Endpoints (Auto only).
    fell_back: bool,
    /// FQDN slices were reported once already.
    fqdn_reported: std::cell::Cell<bool>,
}

impl Watcher {
    pub(crate) fn new(
        settings: Settings,
        client: Client,
        shared: Arc<Shared>,
        stop: Receiver<()>,
        stopping: Arc<AtomicBool>,
    ) -> Watcher {
        let resource = match settings.source {
            Source::Endpoints => Resource::Endpoints,
            Source::EndpointSlices | Source::Auto => Resource::EndpointSlices,
        };
        Watcher {
            settings,
            client,
            shared,
            stop,
            stopping,
            resource,
            state: State::default(),
            rng: Rng::new(Rng::entropy()),
            fell_back: false,
            fqdn_reported: std::cell::Cell::new(false),
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Run until the resolver is dropped.
    pub(crate) fn run(mut self) {
        // Whatever ends this thread, even a panic, ends the subscriptions and wakes wait_ready.
        let _stop = StopOnExit(self.shared.clone());
        let mut machine = Machine::new(Backoff::new(self.settings.backoff, self.rng.next_u64()));
        let mut command = machine.step(Outcome::Start);
        let mut lists = 0u64;
        let mut after_list = false;
        while !self.stopping() {
            let is_request = !matches!(command, Command::Wait(_));
            if is_request && lists > 0 && !after_list {
                self.shared.update_status(|s| s.counters.reconnects += 1);
            }
            let outcome = match command {
                Command::List => {
                    if lists > 0 {
                        self.shared.update_status(|s| s.counters.relists += 1);
                    }
                    lists += 1;
                    self.list()
                }
                Command::Watch { resource_version } => self.watch(resource_version),
                Command::Wait(delay) => match self.stop.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => Outcome::Waited,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if self.stopping() {
                break;
            }
            after_list = matches!(outcome, Outcome::Listed { .. });
            command = machine.step(outcome);
            if let Command::Wait(delay) = &command {
                debug!("{}: retrying in {delay:.1?}", self.settings.label);
            }
        }
        debug!("{}: watcher stopped", self.settings.label);
    }

    fn fail(&self, error: Error) {
        if !self.stopping() {
            warn!("{}: {error}", self.settings.label);
            self.shared.record_error(error);
        }
    }

    fn synced(&self) {
        self.shared
            .update_status(|s| s.last_sync = Some(SystemTime::now()));
    }

    fn list(&mut self) -> Outcome {
        let s = &self.settings;
        loop {
            match self.client.list(self.resource, &s.namespace, &s.service) {
                Ok(listed) => {
                    let resource = self.resource;
                    self.shared.update_status(|st| {
                        st.counters.lists += 1;
                        st.source = Some(resource.source());
                    });
                    let items = listed
                        .items
                        .into_iter()
                        .map(|(name, object)| {
                            let groups = self.checked(&name, object);
                            (name, groups)
                        })
                        .collect::<Vec<_>>();
                    self.state.replace_all(items);
                    self.synced();
                    self.publish();
                    return Outcome::Listed {
                        resource_version: listed.resource_version,
                    };
                }
                Err(e) if self.should_fall_back(&e) => {
                    warn!(
                        "{}: the EndpointSlice API is {} ({e}); falling back to core/v1 Endpoints. \
                         To use EndpointSlices, grant the service account a Role rule: {}",
                        s.label,
                        if e.status() == Some(404) { "missing" } else { "forbidden" },
                        Resource::EndpointSlices.rbac_rule()
                    );
                    self.fell_back = true;
                    self.resource = Resource::Endpoints;
                }
                Err(e) => {
                    if e.status() == Some(401) {
                        self.client.refresh_token();
                    }
                    let retry_after = e.retry_after();
                    self.fail(e);
                    return Outcome::ListFailed { retry_after };
                }
            }
        }
    }

    fn should_fall_back(&self, e: &Error) -> bool {
        self.settings.source == Source::Auto
            && self.resource == Resource::EndpointSlices
            && !self.fell_back
            && matches!(e.status(), Some(403 | 404))
    }

    /// Warn about what the decoder skipped, and keep the groups.
    fn checked(&self, name: &str, object: Normalized) -> Vec<crate::state::Group> {
        if !object.bad_ips.is_empty() {
            warn!(
                "{}: {} {name:?} has addresses that are not IPs, skipped: {}",
                self.settings.label,
                self.resource,
                printable(object.bad_ips.join(", ").as_bytes())
            );
        }
        if object.fqdn && !self.fqdn_reported.replace(true) {
            debug!(
                "{}: ignoring FQDN EndpointSlice {name:?} (and any others)",
                self.settings.label
            );
        }
        object.groups
    }

    /// Merge the state into endpoints and publish them if they changed. A port problem is an
    /// error: it keeps the last good snapshot.
    fn publish(&mut self) {
        let s = &self.settings;
        match self.state.resolve(s.port.as_ref(), &s.service) {
            Ok(endpoints) => {
                if let Some(snapshot) = self.shared.publish(endpoints) {
                    info!(
                        "{}: {} ready endpoints (v{})",
                        s.label,
                        snapshot.len(),
                        snapshot.version()
                    );
                }
            }
            Err(e) => {
                if !self.stopping() {
                    warn!("{}: {e}", s.label);
                    self.shared.record_unresolvable(e);
                }
            }
        }
    }

    fn watch(&mut self, mut resource_version: String) -> Outcome {
        let s = &self.settings;
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
                    resource_version,
                    retry_after,
                    relist: false,
                    healthy: false,
                };
            }
        };
        self.shared.update_status(|st| {
            st.counters.watches += 1;
            st.watching = true;
        });
        // A watch that lasted as long as it asked for was healthy, even if nothing happened.
        let healthy_after = MIN_HEALTHY_WATCH.min(
            Duration::from_secs(timeout)
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_millis(500)),
        );
        let outcome = self.stream(
            &mut stream.body,
            &mut resource_version,
            started,
            healthy_after,
        );
        self.shared.update_status(|st| st.watching = false);
        outcome
    }

    /// Read events until the stream ends or fails.
    fn stream(
        &mut self,
        body: &mut impl Read,
        resource_version: &mut String,
        started: Instant,
        healthy_after: Duration,
    ) -> Outcome {
        let mut splitter = LineSplitter::new(self.settings.max_line);
        let mut buf = vec![0u8; 64 * 1024];
        let mut progressed = false;
        let failed = |rv: &str, relist: bool, progressed: bool| Outcome::WatchFailed {
            resource_version: rv.to_string(),
            retry_after: None,
            relist,
            healthy: progressed,
        };
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => {
                    if splitter.has_partial() {
                        self.fail(Error::transport(
                            "the watch stream ended in the middle of an event",
                        ));
                        return failed(resource_version, false, progressed);
                    }
                    debug!("{}: watch ended; watching again", self.settings.label);
                    return Outcome::WatchEnded {
                        resource_version: resource_version.clone(),
                        healthy: progressed || started.elapsed() >= healthy_after,
                    };
                }
                Ok(n) => n,
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
                    return failed(resource_version, false, progressed);
                }
            };
            splitter.push(&buf[..n]);
            let mut dirty = false;
            while let Some(line) = splitter.next_line() {
                let line = match line {
                    Line::Complete(line) => line,
                    Line::TooLong => {
                        self.fail(Error::decode(format!(
                            "a watch event is longer than {} bytes; relisting",
                            self.settings.max_line
                        )));
                        return failed(resource_version, true, progressed);
                    }
                };
                let event = match decode_event(line, self.resource) {
                    Ok(event) => event,
                    Err(e) => {
                        self.fail(Error::decode(format!(
                            "{e}; relisting (line starts {:?})",
                            printable(&line[..line.len().min(80)])
                        )));
                        return failed(resource_version, true, progressed);
                    }
                };
                match event {
                    WatchEvent::Applied {
                        name,
                        resource_version: rv,
                        object,
                    } => {
                        let groups = self.checked(&name, object);
                        dirty |= self.state.apply(name, groups);
                        self.advance(resource_version, rv, true);
                    }
                    WatchEvent::Deleted {
                        name,
                        resource_version: rv,
                    } => {
                        dirty |= self.state.delete(&name);
                        self.advance(resource_version, rv, true);
                    }
                    WatchEvent::Bookmark {
                        resource_version: rv,
                    } => {
                        self.advance(resource_version, Some(rv), false);
                    }
                    WatchEvent::Error {
                        code: Some(410), ..
                    } => {
                        if dirty {
                            self.publish();
                        }
                        debug!(
                            "{}: resourceVersion {resource_version} expired; relisting",
                            self.settings.label
                        );
                        return Outcome::Expired {
                            healthy: progressed,
                        };
                    }
                    WatchEvent::Error {
                        code,
                        reason,
                        message,
                    } => {
                        if dirty {
                            self.publish();
                        }
                        self.fail(Error::api(
                            code.unwrap_or(500),
                            reason,
                            format!(
                                "the watch sent an ERROR event: {}",
                                printable(message.as_bytes())
                            ),
                            None,
                        ));
                        return failed(resource_version, false, progressed);
                    }
                    WatchEvent::Unknown { kind } => {
                        debug!(
                            "{}: ignoring a watch event of unknown type {:?}",
                            self.settings.label,
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
    fn advance(&self, current: &mut String, new: Option<String>, is_event: bool) {
        if let Some(rv) = new.filter(|rv| !rv.is_empty()) {
            *current = rv;
        }
        self.shared.update_status(|s| {
            if is_event {
                s.counters.events += 1;
            } else {
                s.counters.bookmarks += 1;
            }
            s.last_sync = Some(SystemTime::now());
        });
    }
}

/// Marks the resolver stopped when the watcher thread ends, however it ends.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.update_status(|s| s.watching = false);
        self.0.stop();
    }
}
