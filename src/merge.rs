//! The merge: objects from the API, normalized into [`Group`]s, merged into the sorted,
//! de-duplicated endpoints of a snapshot.
//!
//! A group is "these endpoints × these ports": one subset of an Endpoints object, or one
//! EndpointSlice. The watcher keeps one entry per object name, so an ADDED or MODIFIED event
//! replaces that object's groups, a DELETED removes them, and a relist replaces the whole map.
//! Everything here is plain data: no I/O, no clocks.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::{or_empty, Address, EndpointPort, EndpointSlice, Endpoints, Named, Str};
use crate::snapshot::{sort_and_dedup, Conditions, Details, Endpoint, EndpointData, Listing, Run};
use crate::{Error, Port};

/// One port a group offers; `name` is `None` for an unnamed port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortDef {
    pub name: Option<String>,
    pub port: Option<u16>,
}

/// An address of a group before a port is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub ip: IpAddr,
    pub details: Details,
}

/// Whether a snapshot lists an endpoint with `conditions`: ready or terminating (pods that
/// are starting, or failing their probe while not terminating, are of no use to anyone).
fn listed(conditions: Conditions) -> bool {
    conditions.ready || conditions.terminating
}

/// Whether a snapshot may use an endpoint with `conditions`: ready, or serving while
/// terminating (used while no endpoint is ready).
fn usable(conditions: Conditions) -> bool {
    conditions.ready || (conditions.serving && conditions.terminating)
}

fn shared(s: &Option<Str<'_>>) -> Option<Arc<str>> {
    s.as_deref().map(Arc::from)
}

/// Node and zone names repeat across an object's endpoints: they share one allocation.
#[derive(Default)]
struct Names(std::collections::HashSet<Arc<str>>);

impl Names {
    fn get(&mut self, s: &Option<Str<'_>>) -> Option<Arc<str>> {
        let s = s.as_deref()?;
        if let Some(known) = self.0.get(s) {
            return Some(known.clone());
        }
        let new: Arc<str> = Arc::from(s);
        self.0.insert(new.clone());
        Some(new)
    }

    /// The names of a hint list, without empty ones, sorted and unique.
    fn list(&mut self, named: Option<&Vec<Named<'_>>>) -> Box<[Arc<str>]> {
        let mut names: Vec<Arc<str>> = named
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|n| n.name.as_deref().is_some_and(|s| !s.is_empty()))
            .filter_map(|n| self.get(&n.name))
            .collect();
        names.sort();
        names.dedup();
        names.into_boxed_slice()
    }
}

/// Endpoints that share one port list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Group {
    pub ports: Vec<PortDef>,
    pub members: Vec<Member>,
}

/// One object, normalized: its groups, the Service it says it belongs to, and what was
/// skipped (to warn about, once).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ObjectGroups {
    pub groups: Vec<Group>,
    /// Addresses that are not IP addresses (skipped).
    pub bad_ips: Vec<String>,
    /// The object is an FQDN EndpointSlice (ignored).
    pub fqdn: bool,
    /// The Service the object says it belongs to: an Endpoints object's name, an
    /// EndpointSlice's `kubernetes.io/service-name` label.
    pub service: Option<String>,
}

impl ObjectGroups {
    /// Whether the object belongs to `service`. The API server selects only such objects;
    /// a proxy or mock that ignores the selector sends every object of the namespace, and
    /// those of other Services must not be merged.
    pub(crate) fn belongs_to(&self, service: &str) -> bool {
        self.service.as_deref() == Some(service)
    }
}

fn port_defs(ports: &Option<Vec<EndpointPort>>) -> Vec<PortDef> {
    or_empty(ports)
        .iter()
        .map(|p| PortDef {
            name: p
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            port: p
                .port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0),
        })
        .collect()
}

fn pod_name(target_ref: &Option<crate::model::ObjectRef>) -> Option<Arc<str>> {
    let r = target_ref.as_ref()?;
    match r.kind.as_deref() {
        Some("Pod") | None => shared(&r.name),
        Some(_) => None,
    }
}

/// core/v1 Endpoints: one group per subset; `addresses` are ready, `notReadyAddresses` not.
pub(crate) fn normalize_endpoints(object: &Endpoints) -> ObjectGroups {
    let mut out = ObjectGroups {
        service: object
            .metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .map(str::to_owned),
        ..ObjectGroups::default()
    };
    let mut names = Names::default();
    for subset in or_empty(&object.subsets) {
        let mut group = Group {
            ports: port_defs(&subset.ports),
            members: Vec::new(),
        };
        let ready = or_empty(&subset.addresses).iter().map(|a| (a, true));
        let not_ready = or_empty(&subset.not_ready_addresses)
            .iter()
            .map(|a| (a, false));
        for (address, ready) in ready.chain(not_ready) {
            match member_of_address(address, ready, &mut names) {
                Ok(member) => group.members.push(member),
                Err(bad) => out.bad_ips.push(bad),
            }
        }
        out.groups.push(group);
    }
    out
}

fn member_of_address(address: &Address, ready: bool, names: &mut Names) -> Result<Member, String> {
    let raw = address.ip.as_deref().unwrap_or("");
    let ip: IpAddr = raw.parse().map_err(|_| raw.to_string())?;
    Ok(Member {
        ip,
        details: Details {
            hostname: shared(&address.hostname),
            node: names.get(&address.node_name),
            pod: pod_name(&address.target_ref),
            conditions: Conditions {
                ready,
                serving: ready,
                terminating: false,
            },
            ..Details::default()
        },
    })
}

/// discovery.k8s.io/v1 EndpointSlice: one group. `ready` and `serving` null mean true,
/// `terminating` null means false (as kube-proxy reads them), and a terminating endpoint is
/// never ready. Topology hints are kept (`forNodes` too, which kube-proxy reads only behind
/// a feature gate: the API server stores them only when the controller set them).
pub(crate) fn normalize_slice(slice: &EndpointSlice) -> ObjectGroups {
    let mut out = ObjectGroups {
        service: slice
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.service_name.as_deref())
            .map(str::to_owned),
        ..ObjectGroups::default()
    };
    if slice.address_type.as_deref() == Some("FQDN") {
        out.fqdn = true;
        return out;
    }
    let mut group = Group {
        ports: port_defs(&slice.ports),
        members: Vec::with_capacity(or_empty(&slice.endpoints).len()),
    };
    let mut names = Names::default();
    for endpoint in or_empty(&slice.endpoints) {
        let c = endpoint.conditions.as_ref();
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        let conditions = Conditions {
            ready: c.and_then(|c| c.ready).unwrap_or(true) && !terminating,
            serving: c.and_then(|c| c.serving).unwrap_or(true),
            terminating,
        };
        let hints = endpoint.hints.as_ref();
        let details = Details {
            hostname: shared(&endpoint.hostname),
            node: names.get(&endpoint.node_name),
            zone: names.get(&endpoint.zone),
            pod: pod_name(&endpoint.target_ref),
            conditions,
            zone_hints: names.list(hints.and_then(|h| h.for_zones.as_ref())),
            node_hints: names.list(hints.and_then(|h| h.for_nodes.as_ref())),
        };
        // The API allows exactly one address per endpoint; take every one that parses.
        for raw in or_empty(&endpoint.addresses) {
            match raw.parse::<IpAddr>() {
                Ok(ip) => group.members.push(Member {
                    ip,
                    details: details.clone(),
                }),
                Err(_) => out.bad_ips.push(raw.to_string()),
            }
        }
    }
    out.groups.push(group);
    out
}

/// The objects of one Service, by object name, each with its resolutions cached.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    objects: BTreeMap<String, Entry>,
    /// The ports resolved for lately, the latest last: each object caches its resolution
    /// for each, at the same index.
    ports: Vec<Option<Port>>,
    /// The place of `ports` the next new port takes once all are taken.
    evict: usize,
}

/// The most ports whose resolutions are cached: one per target port that resolvers of the
/// watch use, which is one or two.
const CACHED_PORTS: usize = 4;

#[derive(Debug)]
struct Entry {
    /// The name, shared with the runs of its resolutions.
    name: Arc<str>,
    groups: Vec<Group>,
    /// The object's resolution for each port of `Objects::ports`, once made. Kept as long
    /// as the object does not change: an unchanged object's run is the same `Arc` in every
    /// listing.
    resolved: [Option<Resolved>; CACHED_PORTS],
}

impl Entry {
    fn new(name: &str, groups: Vec<Group>) -> Entry {
        Entry {
            name: Arc::from(name),
            groups,
            resolved: Default::default(),
        }
    }
}

/// What one object contributes for one port.
#[derive(Debug, Clone)]
struct Resolved {
    /// Its listed endpoints (ready or terminating), sorted, one per address.
    endpoints: Arc<[Endpoint]>,
    /// Whether any of them is usable.
    usable: bool,
    /// Usable addresses in groups that do not offer the port: their port descriptions.
    unmatched: Option<Vec<String>>,
    /// The port cannot be chosen at all (several ports, none named).
    fatal: Option<Error>,
}

impl Objects {
    /// Replace everything: the result of a list.
    pub(crate) fn replace_all(&mut self, objects: impl IntoIterator<Item = (String, Vec<Group>)>) {
        self.objects = objects
            .into_iter()
            .map(|(name, groups)| {
                let entry = Entry::new(&name, groups);
                (name, entry)
            })
            .collect();
    }

    /// ADDED or MODIFIED: the object's groups replace what it had. Returns whether anything
    /// changed.
    pub(crate) fn apply(&mut self, name: String, groups: Vec<Group>) -> bool {
        if self.objects.get(&name).map(|e| &e.groups) == Some(&groups) {
            return false;
        }
        let entry = Entry::new(&name, groups);
        self.objects.insert(name, entry);
        true
    }

    /// DELETED: the object's endpoints leave. Returns whether anything changed.
    pub(crate) fn delete(&mut self, name: &str) -> bool {
        self.objects.remove(name).is_some()
    }

    /// The listed endpoints (ready or terminating) for `port`: per object, sorted by
    /// address and de-duplicated on `ip:port`; of two at one address, one that is not
    /// terminating wins, as in kube-proxy, else one that is serving. Across objects, the
    /// same rule applies when the listing is flattened (`Listing::flatten`).
    ///
    /// A named port is looked up per group, so groups that differ in ports (a rollout that
    /// renames or renumbers a port) each contribute what they have. A number is used as is.
    /// No port needs exactly one port per group. Errors: several ports and no name given, or
    /// usable addresses (ready, or serving while terminating) exist but none offers the
    /// named port. The error names the ports there are.
    ///
    /// Each object's share is cached until the object changes, so an event costs the
    /// resolution of one object, and a listing that shares every other object's run.
    pub(crate) fn resolve(&mut self, port: Option<&Port>, service: &str) -> Result<Listing, Error> {
        let slot = self.port_slot(port);
        let mut runs = Vec::with_capacity(self.objects.len());
        let mut names: Vec<String> = Vec::new();
        let mut unmatched_usable = false;
        let mut any_usable = false;
        for entry in self.objects.values_mut() {
            let name = entry.name.clone();
            let resolved = &mut entry.resolved[slot];
            let resolved =
                resolved.get_or_insert_with(|| resolve_groups(&entry.groups, port, service));
            if let Some(fatal) = &resolved.fatal {
                return Err(fatal.clone());
            }
            any_usable |= resolved.usable;
            if let Some(unmatched) = &resolved.unmatched {
                unmatched_usable = true;
                for d in unmatched {
                    if !names.contains(d) {
                        names.push(d.clone());
                    }
                }
            }
            runs.push(Run {
                name,
                endpoints: resolved.endpoints.clone(),
            });
        }
        if unmatched_usable && !any_usable {
            let wanted = match port {
                Some(p) => format!("no port named {:?}", p.to_string()),
                None => "no usable port".to_string(),
            };
            return Err(Error::port(format!(
                "{wanted} on the ready endpoints of service {service:?}; ports there: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        Ok(Listing::of_runs(runs))
    }

    /// Where the resolutions for `port` are cached. A new port when every place is taken
    /// replaces the ports in turn, and the resolutions made for the one it replaces.
    fn port_slot(&mut self, port: Option<&Port>) -> usize {
        if let Some(i) = self.ports.iter().position(|p| p.as_ref() == port) {
            return i;
        }
        if self.ports.len() < CACHED_PORTS {
            self.ports.push(port.cloned());
            return self.ports.len() - 1;
        }
        let slot = self.evict % CACHED_PORTS;
        self.evict = slot + 1;
        self.ports[slot] = port.cloned();
        for entry in self.objects.values_mut() {
            entry.resolved[slot] = None;
        }
        slot
    }
}

/// Resolve one object's groups for `port`.
fn resolve_groups(groups: &[Group], port: Option<&Port>, service: &str) -> Resolved {
    let mut endpoints = Vec::new();
    let mut resolved = Resolved {
        endpoints: Arc::from(Vec::new()),
        usable: false,
        unmatched: None,
        fatal: None,
    };
    for group in groups {
        if !group.members.iter().any(|m| listed(m.details.conditions)) {
            continue;
        }
        // Only usable members make a port that cannot be chosen an error: a group of pods
        // that are all shutting down and no longer serving contributes nothing either way.
        let wanted = group.members.iter().any(|m| usable(m.details.conditions));
        let chosen = match port {
            Some(Port::Number(n)) => Some(*n),
            Some(Port::Name(name)) => group
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.port),
            None => match group.ports.as_slice() {
                [only] => only.port,
                [] => None,
                _ if !wanted => continue,
                several => {
                    resolved.fatal = Some(Error::port(format!(
                        "the endpoints of service {service:?} have several ports ({}); name one in the target, e.g. \":{}\"",
                        describe_ports(several),
                        several.iter().find_map(|p| p.name.as_deref()).unwrap_or("PORT"),
                    )));
                    return resolved;
                }
            },
        };
        let Some(chosen) = chosen else {
            if wanted {
                let unmatched = resolved.unmatched.get_or_insert_with(Vec::new);
                unmatched.extend(group.ports.iter().map(describe_port));
            }
            continue;
        };
        endpoints.extend(
            group
                .members
                .iter()
                .filter(|m| listed(m.details.conditions))
                .map(|m| {
                    Endpoint::new(EndpointData {
                        addr: SocketAddr::new(m.ip, chosen),
                        details: m.details.clone(),
                    })
                }),
        );
    }
    sort_and_dedup(&mut endpoints);
    resolved.usable = endpoints.iter().any(|e| usable(e.conditions()));
    resolved.endpoints = Arc::from(endpoints);
    resolved
}

fn describe_port(p: &PortDef) -> String {
    match (&p.name, p.port) {
        (Some(name), Some(port)) => format!("{name:?}={port}"),
        (Some(name), None) => format!("{name:?}"),
        (None, Some(port)) => format!("unnamed={port}"),
        (None, None) => "unnamed".to_string(),
    }
}

fn describe_ports(ports: &[PortDef]) -> String {
    ports
        .iter()
        .map(describe_port)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointSlice, Endpoints};

    fn endpoints(json: &str) -> Vec<Group> {
        let object: Endpoints = serde_json::from_str(json).expect("endpoints json");
        normalize_endpoints(&object).groups
    }

    fn slice(json: &str) -> Vec<Group> {
        let object: EndpointSlice = serde_json::from_str(json).expect("slice json");
        normalize_slice(&object).groups
    }

    fn state(objects: Vec<(&str, Vec<Group>)>) -> Objects {
        let mut s = Objects::default();
        s.replace_all(objects.into_iter().map(|(n, g)| (n.to_string(), g)));
        s
    }

    /// The addresses a snapshot of the resolution would use.
    fn addrs(s: &mut Objects, port: Option<Port>) -> Result<Vec<String>, String> {
        s.resolve(port.as_ref(), "echo")
            .map(|eps| {
                let snapshot = crate::Snapshot::new(1, &eps.flatten());
                snapshot.addresses().iter().map(|a| a.to_string()).collect()
            })
            .map_err(|e| e.to_string())
    }

    /// Every endpoint of the resolution: address, ready, serving, terminating.
    fn listed(s: &mut Objects, port: Option<Port>) -> Vec<(String, bool, bool, bool)> {
        s.resolve(port.as_ref(), "echo")
            .map(|l| l.flatten())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let c = e.conditions();
                (e.addr().to_string(), c.ready, c.serving, c.terminating)
            })
            .collect()
    }

    fn named(n: &str) -> Option<Port> {
        Some(Port::Name(n.into()))
    }

    const TWO_PORTS: &str = r#"{"subsets":[
        {"addresses":[{"ip":"10.0.0.2"},{"ip":"10.0.0.1"}],"notReadyAddresses":[{"ip":"10.0.0.3"}],
         "ports":[{"name":"grpc","port":8080},{"name":"metrics","port":9090}]}]}"#;

    #[test]
    fn ready_addresses_times_the_named_port_sorted_without_not_ready_ones() {
        let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
        assert_eq!(
            addrs(&mut s, named("grpc")),
            Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into()])
        );
        assert_eq!(
            addrs(&mut s, named("metrics")),
            Ok(vec!["10.0.0.1:9090".into(), "10.0.0.2:9090".into()])
        );
    }

    #[test]
    fn a_port_number_is_used_as_is() {
        let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
        assert_eq!(
            addrs(&mut s, Some(Port::Number(7000))),
            Ok(vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()])
        );
    }

    #[test]
    fn resolutions_for_more_ports_than_are_cached_stay_right() {
        let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
        for _ in 0..2 {
            for n in 1..=CACHED_PORTS as u16 + 1 {
                assert_eq!(
                    addrs(&mut s, Some(Port::Number(n))),
                    Ok(vec![format!("10.0.0.1:{n}"), format!("10.0.0.2:{n}")])
                );
            }
        }
        assert_eq!(
            addrs(&mut s, named("grpc")),
            Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:8080".into()])
        );
    }

    #[test]
    fn no_port_with_several_ports_is_an_error_naming_them() {
        let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
        let err = addrs(&mut s, None).unwrap_err();
        assert!(
            err.contains("\"grpc\"=8080") && err.contains("\"metrics\"=9090"),
            "{err}"
        );
    }

    #[test]
    fn no_port_with_exactly_one_port_uses_it() {
        let mut s = state(vec![(
            "echo",
            endpoints(r#"{"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":80}]}]}"#),
        )]);
        assert_eq!(addrs(&mut s, None), Ok(vec!["10.0.0.1:80".into()]));
    }

    #[test]
    fn an_unknown_port_name_is_an_error_listing_the_names() {
        let mut s = state(vec![("echo", endpoints(TWO_PORTS))]);
        let err = addrs(&mut s, named("http")).unwrap_err();
        assert!(
            err.contains("no port named \"http\"") && err.contains("grpc"),
            "{err}"
        );
    }

    #[test]
    fn named_ports_are_matched_per_subset() {
        let mut s = state(vec![(
            "echo",
            endpoints(
                r#"{"subsets":[
                {"addresses":[{"ip":"10.0.0.1"}],"ports":[{"name":"grpc","port":8080}]},
                {"addresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":9000}]},
                {"addresses":[{"ip":"10.0.0.3"}],"ports":[{"name":"other","port":1}]}]}"#,
            ),
        )]);
        assert_eq!(
            addrs(&mut s, named("grpc")),
            Ok(vec!["10.0.0.1:8080".into(), "10.0.0.2:9000".into()])
        );
    }

    #[test]
    fn no_subsets_or_a_deleted_object_resolve_to_empty() {
        let mut s = state(vec![("echo", endpoints("{}"))]);
        assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
        s.apply("echo".into(), endpoints(TWO_PORTS));
        assert_eq!(addrs(&mut s, named("grpc")).map(|a| a.len()), Ok(2));
        assert!(s.delete("echo"));
        assert!(!s.delete("echo"));
        assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
    }

    #[test]
    fn applying_the_same_object_twice_is_not_a_change() {
        let mut s = Objects::default();
        assert!(s.apply("echo".into(), endpoints(TWO_PORTS)));
        assert!(!s.apply("echo".into(), endpoints(TWO_PORTS)));
    }

    #[test]
    fn addresses_that_are_not_ips_are_skipped_and_reported() {
        let object: Endpoints = serde_json::from_str(
            r#"{"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"not-an-ip"},{}],"ports":[{"port":80}]}]}"#,
        )
        .expect("json");
        let n = normalize_endpoints(&object);
        assert_eq!(n.groups[0].members.len(), 1);
        assert_eq!(n.bad_ips, vec!["not-an-ip".to_string(), String::new()]);
    }

    #[test]
    fn slices_merge_across_names_and_deduplicate_ip_port() {
        let a = slice(
            r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"]}],"ports":[{"name":"grpc","port":8080}]}"#,
        );
        let b = slice(
            r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.2"]},{"addresses":["10.0.0.3"]}],"ports":[{"name":"grpc","port":8080}]}"#,
        );
        let mut s = state(vec![("a", a), ("b", b)]);
        assert_eq!(
            addrs(&mut s, named("grpc")),
            Ok(vec![
                "10.0.0.1:8080".into(),
                "10.0.0.2:8080".into(),
                "10.0.0.3:8080".into()
            ])
        );
    }

    #[test]
    fn slice_conditions_null_means_ready_and_terminating_is_never_ready() {
        let mut s = state(vec![(
            "a",
            slice(
                r#"{"addressType":"IPv4","ports":[{"name":"","port":80}],"endpoints":[
                {"addresses":["10.0.0.1"],"conditions":{}},
                {"addresses":["10.0.0.2"],"conditions":{"ready":null,"serving":null,"terminating":null}},
                {"addresses":["10.0.0.3"],"conditions":{"ready":false}},
                {"addresses":["10.0.0.4"],"conditions":{"ready":true,"terminating":true}},
                {"addresses":["10.0.0.5"]}]}"#,
            ),
        )]);
        assert_eq!(
            addrs(&mut s, None),
            Ok(vec![
                "10.0.0.1:80".into(),
                "10.0.0.2:80".into(),
                "10.0.0.5:80".into()
            ])
        );
        // The terminating one is listed, for a snapshot's `terminating`; the unready one not.
        let terminating = ("10.0.0.4:80".to_string(), false, true, true);
        let all = listed(&mut s, None);
        assert_eq!(all.len(), 4);
        assert_eq!(all[2], terminating);
    }

    /// A slice of one port `grpc` 8080 with these endpoints (JSON objects).
    fn slice_of(endpoints: &str) -> Vec<Group> {
        slice(&format!(
            r#"{{"addressType":"IPv4","ports":[{{"name":"grpc","port":8080}}],"endpoints":[{endpoints}]}}"#
        ))
    }

    #[test]
    fn serving_terminating_endpoints_are_used_only_while_none_is_ready() {
        // kube-proxy's table: serving+terminating ones while none is ready; never those
        // that are neither ready nor serving, nor unready ones that are not terminating.
        const ST: &str = r#""conditions":{"ready":false,"serving":true,"terminating":true}"#;
        let cases: [(&str, &[&str]); 6] = [
            (
                &format!(r#"{{"addresses":["10.0.0.1"]}},{{"addresses":["10.0.0.2"],{ST}}}"#),
                &["10.0.0.1:8080"],
            ),
            (
                &format!(
                    r#"{{"addresses":["10.0.0.1"],"conditions":{{"ready":false,"serving":false}}}},{{"addresses":["10.0.0.2"],{ST}}}"#
                ),
                &["10.0.0.2:8080"],
            ),
            (
                &format!(r#"{{"addresses":["10.0.0.1"],{ST}}},{{"addresses":["10.0.0.2"],{ST}}}"#),
                &["10.0.0.1:8080", "10.0.0.2:8080"],
            ),
            (
                r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false}},{"addresses":["10.0.0.2"],"conditions":{"ready":false}}"#,
                &[],
            ),
            (
                r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"terminating":true}}"#,
                &["10.0.0.1:8080"],
            ),
            (
                r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":true}}"#,
                &[],
            ),
        ];
        for (endpoints, used) in cases {
            let mut s = state(vec![("a", slice_of(endpoints))]);
            let used: Vec<String> = used.iter().map(|u| u.to_string()).collect();
            assert_eq!(addrs(&mut s, named("grpc")), Ok(used), "{endpoints}");
        }
    }

    #[test]
    fn of_two_endpoints_at_one_address_one_that_is_not_terminating_wins_else_a_serving_one() {
        let terminating =
            slice_of(r#"{"addresses":["10.0.0.1"],"conditions":{"terminating":true}}"#);
        let stopped = slice_of(
            r#"{"addresses":["10.0.0.1"],"conditions":{"serving":false,"terminating":true}}"#,
        );
        let ready = slice_of(r#"{"addresses":["10.0.0.1"]}"#);
        // Both orders of the two objects.
        let kept = |a: &Vec<Group>, b: &Vec<Group>| {
            [[a, b], [b, a]].map(|[x, y]| {
                let mut s = state(vec![("a", x.clone()), ("b", y.clone())]);
                listed(&mut s, named("grpc"))
            })
        };
        let addr = "10.0.0.1:8080".to_string();
        for one in kept(&terminating, &ready) {
            assert_eq!(one, [(addr.clone(), true, true, false)]);
        }
        for one in kept(&stopped, &terminating) {
            assert_eq!(one, [(addr.clone(), false, true, true)]);
        }
    }

    #[test]
    fn a_port_that_cannot_be_chosen_is_an_error_only_for_endpoints_that_could_be_used() {
        let two_ports = |endpoints: &str| {
            slice(&format!(
                r#"{{"addressType":"IPv4","ports":[{{"name":"a","port":1}},{{"name":"b","port":2}}],"endpoints":[{endpoints}]}}"#
            ))
        };
        let gone = r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":false,"terminating":true}}"#;
        let serving = r#"{"addresses":["10.0.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true}}"#;
        // Pods that no longer serve: nothing to use, no error either way.
        let mut s = state(vec![("a", two_ports(gone))]);
        assert_eq!(addrs(&mut s, None), Ok(vec![]));
        assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
        // Serving ones: the port must be chosen.
        let mut s = state(vec![("a", two_ports(serving))]);
        assert!(addrs(&mut s, None).is_err());
        assert!(addrs(&mut s, named("grpc")).is_err());
        // Listed but not usable elsewhere does not hide the error of usable ones.
        let mut s = state(vec![("a", two_ports(serving)), ("b", slice_of(gone))]);
        assert!(addrs(&mut s, named("a")).is_ok_and(|a| a.len() == 1));
        let gone_with_c = slice(
            r#"{"addressType":"IPv4","ports":[{"name":"c","port":3}],"endpoints":[{"addresses":["10.0.0.9"],"conditions":{"ready":false,"serving":false,"terminating":true}}]}"#,
        );
        let mut s = state(vec![("a", gone_with_c), ("b", two_ports(serving))]);
        assert_eq!(listed(&mut s, named("a")).len(), 1);
        let err = addrs(&mut s, named("c")).unwrap_err();
        assert!(err.contains("no port named \"c\""), "{err}");
    }

    #[test]
    fn topology_hints_are_kept_sorted_without_empty_or_repeated_names() {
        let mut s = state(vec![(
            "a",
            slice_of(
                r#"{"addresses":["10.0.0.1"],"hints":{"forZones":[{"name":"b"},{"name":""},{"name":"a"},{"name":"b"},{}],"forNodes":[{"name":"n1"}]}},
                   {"addresses":["10.0.0.2"],"hints":{"forZones":null,"forNodes":[]}},
                   {"addresses":["10.0.0.3"],"hints":null}"#,
            ),
        )]);
        let eps = s
            .resolve(named("grpc").as_ref(), "echo")
            .map(|l| l.flatten())
            .unwrap_or_default();
        let hints: Vec<(Vec<&str>, Vec<&str>)> = eps
            .iter()
            .map(|e| (e.zone_hints().collect(), e.node_hints().collect()))
            .collect();
        assert_eq!(
            hints,
            [
                (vec!["a", "b"], vec!["n1"]),
                (vec![], vec![]),
                (vec![], vec![])
            ]
        );
        // The same names share one allocation with the zone and node names.
        let zone = slice_of(
            r#"{"addresses":["10.0.0.1"],"zone":"a","hints":{"forZones":[{"name":"a"}]}}"#,
        );
        let member = &zone[0].members[0];
        assert!(Arc::ptr_eq(
            member.details.zone.as_ref().expect("zone"),
            &member.details.zone_hints[0]
        ));
    }

    #[test]
    fn slices_with_null_endpoints_ports_or_port_and_fqdn_slices_count_as_nothing() {
        let placeholder = slice(r#"{"addressType":"IPv4","endpoints":null,"ports":null}"#);
        let null_port = slice(
            r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.9"]}],"ports":[{"name":"grpc","port":null}]}"#,
        );
        let object: EndpointSlice = serde_json::from_str(
            r#"{"addressType":"FQDN","endpoints":[{"addresses":["example.com"]}],"ports":[{"port":80}]}"#,
        )
        .expect("json");
        let fqdn = normalize_slice(&object);
        assert!(fqdn.fqdn && fqdn.groups.is_empty());
        let mut s = state(vec![("p", placeholder), ("n", null_port)]);
        assert!(
            addrs(&mut s, named("grpc")).is_err(),
            "ready endpoint without the port"
        );
        let mut s = state(vec![(
            "p",
            slice(r#"{"addressType":"IPv4","endpoints":null,"ports":null}"#),
        )]);
        assert_eq!(addrs(&mut s, named("grpc")), Ok(vec![]));
    }

    #[test]
    fn dual_stack_slices_both_count() {
        let v4 = slice(
            r#"{"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"grpc","port":8080}]}"#,
        );
        let v6 = slice(
            r#"{"addressType":"IPv6","endpoints":[{"addresses":["fd00::1"]}],"ports":[{"name":"grpc","port":8080}]}"#,
        );
        let mut s = state(vec![("v4", v4), ("v6", v6)]);
        assert_eq!(
            addrs(&mut s, named("grpc")),
            Ok(vec!["10.0.0.1:8080".into(), "[fd00::1]:8080".into()])
        );
    }

    #[test]
    fn objects_say_which_service_they_belong_to() {
        let owner = |json: &str| {
            let object: EndpointSlice = serde_json::from_str(json).expect("slice json");
            normalize_slice(&object)
        };
        let ours = owner(
            r#"{"metadata":{"name":"echo-x1","labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":"echo"}},"addressType":"IPv4"}"#,
        );
        assert!(ours.belongs_to("echo"));
        assert!(!ours.belongs_to("echo-x1") && !ours.belongs_to("other"));
        let fqdn = owner(
            r#"{"metadata":{"name":"f","labels":{"kubernetes.io/service-name":"other"}},"addressType":"FQDN"}"#,
        );
        assert!(fqdn.fqdn && !fqdn.belongs_to("echo") && fqdn.belongs_to("other"));
        // A slice that carries no Service label belongs to none, whatever its name.
        for json in [
            r#"{"metadata":{"name":"echo"}}"#,
            r#"{"metadata":{"name":"echo","labels":null}}"#,
            r#"{"metadata":{"name":"echo","labels":{"app":"echo"}}}"#,
            r#"{"metadata":{"name":"echo","labels":{"kubernetes.io/service-name":null}}}"#,
            r#"{"metadata":null}"#,
        ] {
            assert!(!owner(json).belongs_to("echo"), "{json}");
        }
        // Endpoints carry the Service's name, and nothing else counts.
        let endpoints = |json: &str| {
            let object: Endpoints = serde_json::from_str(json).expect("endpoints json");
            normalize_endpoints(&object)
        };
        assert!(endpoints(r#"{"metadata":{"name":"echo"}}"#).belongs_to("echo"));
        let other = endpoints(
            r#"{"metadata":{"name":"other","labels":{"kubernetes.io/service-name":"echo"}}}"#,
        );
        assert!(!other.belongs_to("echo"));
        assert!(!endpoints(r#"{"subsets":[]}"#).belongs_to("echo"));
    }
}
