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
mod tests;
