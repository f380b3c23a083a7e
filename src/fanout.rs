//! One watch, many resolvers: the Service's merged state, and the hubs the watch publishes
//! to, one per target port.
//!
//! Resolvers of one Service that share a watch (see `watches.rs`) may want different ports:
//! the port changes the resolution, not what is watched. So the watch keeps the objects once
//! and resolves them once per port in use; resolvers of the same port share that port's
//! [`Hub`] (its snapshots, versions and status), and each keeps its own pickers and
//! subscriptions on it. A port whose last resolver leaves is dropped and its hub stopped.
//!
//! The watcher thread changes the objects and publishes; a resolver that joins with a new
//! port resolves the current objects itself, so it does not wait for the next event. Both
//! hold the one lock here for that long; readers of snapshots never take it.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use log::{info, warn};

use crate::merge::{Group, Objects};
use crate::publish::Hub;
use crate::util::lock;
use crate::{Error, Port, Status};

/// The state and the per-port hubs of one watch.
pub(crate) struct Fanout {
    state: Mutex<State>,
}

struct State {
    objects: Objects,
    /// The API's state was listed: `objects` is worth resolving for a port that joins.
    listed: bool,
    /// The watch's own last failure and when (not a port's): a port that joins while the
    /// watch fails (a 403 before the first list, say) must show the cause like the others.
    last_error: Option<(Error, SystemTime)>,
    views: Vec<View>,
}

/// One target port of the watch's Service, and the resolvers on it.
struct View {
    port: Option<Port>,
    /// The target of the first resolver on this port, for log lines.
    label: String,
    hub: Arc<Hub>,
    members: usize,
}

impl Fanout {
    /// A watch with one resolver so far, on `port`, publishing to `hub`.
    pub(crate) fn new(port: Option<Port>, label: String, hub: Arc<Hub>) -> Fanout {
        Fanout {
            state: Mutex::new(State {
                objects: Objects::default(),
                listed: false,
                last_error: None,
                views: vec![View {
                    port,
                    label,
                    hub,
                    members: 1,
                }],
            }),
        }
    }

    /// A resolver joins on `port`: the hub of that port, made now if no resolver uses the
    /// port yet. A new hub gets the watch's counters and, once the watch has listed, its
    /// first snapshot at once (or the port error).
    pub(crate) fn join(&self, port: Option<Port>, label: String, service: &str) -> Arc<Hub> {
        let mut state = lock(&self.state);
        if let Some(view) = state.views.iter_mut().find(|v| v.port == port) {
            view.members += 1;
            return view.hub.clone();
        }
        let hub = Arc::new(Hub::new());
        if let Some(other) = state.views.first() {
            let watch = other.hub.status();
            hub.update_status(|status| inherit(status, &watch, state.last_error.as_ref()));
        }
        let view = View {
            port,
            label,
            hub: hub.clone(),
            members: 1,
        };
        if state.listed {
            let State { objects, .. } = &mut *state;
            publish_view(objects, &view, service, false);
        }
        state.views.push(view);
        hub
    }

    /// A resolver on `hub` leaves. The last one on its port stops the hub (its subscriptions
    /// end). Returns how many resolvers remain on the watch.
    pub(crate) fn leave(&self, hub: &Arc<Hub>) -> usize {
        let mut state = lock(&self.state);
        if let Some(i) = state.views.iter().position(|v| Arc::ptr_eq(&v.hub, hub)) {
            state.views[i].members -= 1;
            if state.views[i].members == 0 {
                state.views.swap_remove(i).hub.stop();
            }
        }
        state.views.iter().map(|v| v.members).sum()
    }

    /// Replace the objects: the result of a list.
    pub(crate) fn replace_all(&self, objects: Vec<(String, Vec<Group>)>) {
        let mut state = lock(&self.state);
        state.objects.replace_all(objects);
        state.listed = true;
    }

    /// ADDED or MODIFIED; whether anything changed.
    pub(crate) fn apply(&self, name: String, groups: Vec<Group>) -> bool {
        lock(&self.state).objects.apply(name, groups)
    }

    /// DELETED; whether anything changed.
    pub(crate) fn delete(&self, name: &str) -> bool {
        lock(&self.state).objects.delete(name)
    }

    /// Resolve the objects for each port and publish what changed. A port that cannot be
    /// resolved keeps its last good snapshot and says why (unless the watch is `stopping`).
    pub(crate) fn publish(&self, service: &str, stopping: bool) {
        let mut state = lock(&self.state);
        let State { objects, views, .. } = &mut *state;
        for view in views.iter() {
            publish_view(objects, view, service, stopping);
        }
    }

    /// Change the status of every port: what the watch did is the same for all of them.
    pub(crate) fn update_status(&self, f: impl Fn(&mut Status)) {
        for view in &lock(&self.state).views {
            view.hub.update_status(&f);
        }
    }

    /// A failure of the watch, on every port (status only, never a publish).
    pub(crate) fn record_error(&self, error: &Error) {
        let mut state = lock(&self.state);
        state.last_error = Some((error.clone(), SystemTime::now()));
        for view in &state.views {
            view.hub.record_error(error.clone());
        }
    }

    /// The watch stopped: every subscription ends and `wait_ready` wakes, on every port.
    pub(crate) fn stop(&self) {
        for view in &lock(&self.state).views {
            view.hub.stop();
        }
    }
}

/// Resolve `objects` for `view`'s port and publish, or record why it cannot be resolved.
fn publish_view(objects: &mut Objects, view: &View, service: &str, stopping: bool) {
    match objects.resolve(view.port.as_ref(), service) {
        Ok(endpoints) => {
            if let Some(snapshot) = view.hub.publish(endpoints) {
                info!(
                    "{}: {} endpoints in use, {} terminating (v{})",
                    view.label,
                    snapshot.len(),
                    snapshot.terminating_len(),
                    snapshot.version()
                );
            }
        }
        Err(e) => {
            if !stopping {
                warn!("{}: {e}", view.label);
                view.hub.record_unresolvable(e);
            }
        }
    }
}

/// What a port that joins a running watch takes from the watch's status: what the watch
/// did (counters, source, sync, watching) and its last failure, not what another port
/// published or failed at.
fn inherit(status: &mut Status, watch: &Status, failure: Option<&(Error, SystemTime)>) {
    let publishes = status.counters.publishes;
    let errors = status.counters.errors;
    status.counters = watch.counters;
    status.counters.publishes = publishes;
    status.counters.errors = errors;
    status.source = watch.source;
    status.last_sync = watch.last_sync;
    status.watching = watch.watching;
    if let Some((error, at)) = failure {
        status.last_error = Some(error.clone());
        status.last_error_at = Some(*at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::normalize_endpoints;
    use crate::model::Endpoints;
    use crate::ErrorKind;

    fn grpc() -> Option<Port> {
        Some(Port::Name("grpc".into()))
    }

    fn metrics() -> Option<Port> {
        Some(Port::Name("metrics".into()))
    }

    /// The groups of an Endpoints object with `ips` ready on ports grpc 8080 and metrics 9090.
    fn groups(ips: &[&str]) -> Vec<Group> {
        let addresses: Vec<String> = ips.iter().map(|ip| format!(r#"{{"ip":"{ip}"}}"#)).collect();
        let json = format!(
            r#"{{"metadata":{{"name":"echo"}},"subsets":[{{"addresses":[{}],
            "ports":[{{"name":"grpc","port":8080}},{{"name":"metrics","port":9090}}]}}]}}"#,
            addresses.join(",")
        );
        let object: Endpoints = serde_json::from_str(&json).expect("an Endpoints object");
        normalize_endpoints(&object).groups
    }

    fn ports(hub: &Hub) -> Vec<u16> {
        hub.current().addresses().iter().map(|a| a.port()).collect()
    }

    fn watch_on_grpc() -> (Fanout, Arc<Hub>) {
        let hub = Arc::new(Hub::new());
        let fanout = Fanout::new(grpc(), "echo:grpc".into(), hub.clone());
        (fanout, hub)
    }

    #[test]
    fn each_port_gets_its_own_resolution_of_one_state() {
        let (fanout, grpc_hub) = watch_on_grpc();
        fanout.replace_all(vec![("echo".into(), groups(&["10.0.0.1"]))]);
        fanout.publish("echo", false);
        let metrics_hub = fanout.join(metrics(), "echo:metrics".into(), "echo");
        // Joining a listed watch resolves at once, without waiting for an event.
        assert_eq!(ports(&grpc_hub), [8080]);
        assert_eq!(ports(&metrics_hub), [9090]);
        assert!(fanout.apply("echo".into(), groups(&["10.0.0.1", "10.0.0.2"])));
        fanout.publish("echo", false);
        assert_eq!(ports(&grpc_hub), [8080, 8080]);
        assert_eq!(ports(&metrics_hub), [9090, 9090]);
        assert_eq!((grpc_hub.version(), metrics_hub.version()), (2, 2));
    }

    #[test]
    fn resolvers_of_one_port_share_its_hub_and_the_last_one_out_stops_it() {
        let (fanout, hub) = watch_on_grpc();
        let same = fanout.join(grpc(), "echo:grpc".into(), "echo");
        assert!(Arc::ptr_eq(&hub, &same));
        let updates = hub.subscribe(0);
        assert_eq!(fanout.leave(&same), 1);
        assert!(!hub.status().stopped, "one resolver is left on the port");
        assert_eq!(fanout.leave(&hub), 0);
        assert!(hub.status().stopped);
        assert!(updates.recv().is_err(), "the subscription ended");
    }

    #[test]
    fn a_port_that_joins_before_the_list_waits_for_it() {
        let (fanout, _) = watch_on_grpc();
        let metrics_hub = fanout.join(metrics(), "echo:metrics".into(), "echo");
        assert_eq!(
            metrics_hub.version(),
            0,
            "nothing listed yet: nothing to publish"
        );
        fanout.replace_all(vec![("echo".into(), groups(&["10.0.0.1"]))]);
        fanout.publish("echo", false);
        assert_eq!(ports(&metrics_hub), [9090]);
    }

    #[test]
    fn a_port_that_joins_a_watch_failing_before_its_list_shows_the_cause() {
        let (fanout, _) = watch_on_grpc();
        fanout.record_error(&Error::new(
            ErrorKind::Api,
            "forbidden: list endpointslices",
        ));
        let metrics_hub = fanout.join(metrics(), "echo:metrics".into(), "echo");
        let joined = metrics_hub.status();
        assert_eq!(joined.last_error.map(|e| e.kind()), Some(ErrorKind::Api));
        assert!(joined.last_error_at.is_some());
        assert!(!joined.resolved);
    }

    #[test]
    fn a_port_error_stays_on_its_port_and_watch_errors_reach_every_port() {
        let (fanout, grpc_hub) = watch_on_grpc();
        fanout.replace_all(vec![("echo".into(), groups(&["10.0.0.1"]))]);
        fanout.publish("echo", false);
        let missing = fanout.join(Some(Port::Name("http".into())), "echo:http".into(), "echo");
        assert!(missing.status().frozen_since.is_some());
        assert_eq!(
            missing.status().last_error.map(|e| e.kind()),
            Some(ErrorKind::Port)
        );
        assert!(grpc_hub.status().last_error.is_none());
        fanout.record_error(&Error::transport("reset"));
        for hub in [&grpc_hub, &missing] {
            assert_eq!(
                hub.status().last_error.map(|e| e.kind()),
                Some(ErrorKind::Transport)
            );
        }
    }

    #[test]
    fn a_port_that_joins_late_takes_the_watchs_counters_not_another_ports() {
        let (fanout, grpc_hub) = watch_on_grpc();
        fanout.replace_all(vec![("echo".into(), groups(&["10.0.0.1"]))]);
        fanout.publish("echo", false);
        fanout.update_status(|s| {
            s.counters.lists += 1;
            s.counters.watches += 3;
            s.watching = true;
        });
        fanout.record_error(&Error::transport("reset"));
        let metrics_hub = fanout.join(metrics(), "echo:metrics".into(), "echo");
        let (joined, first) = (metrics_hub.status(), grpc_hub.status());
        assert_eq!((joined.counters.lists, joined.counters.watches), (1, 3));
        assert!(joined.watching);
        assert_eq!(joined.counters.publishes, 1, "its own first snapshot");
        assert_eq!(
            joined.counters.errors, 0,
            "the count is of its own failures"
        );
        assert_eq!(
            joined.last_error.map(|e| e.kind()),
            Some(ErrorKind::Transport),
            "the watch's last failure"
        );
        assert!(joined.last_error_at.is_some());
        assert_eq!((first.counters.publishes, first.counters.errors), (1, 1));
    }

    #[test]
    fn stop_ends_every_port() {
        let (fanout, grpc_hub) = watch_on_grpc();
        let metrics_hub = fanout.join(metrics(), "echo:metrics".into(), "echo");
        fanout.stop();
        assert!(grpc_hub.status().stopped && metrics_hub.status().stopped);
    }
}
