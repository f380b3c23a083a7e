//! Which endpoints a picker prefers: those of its IP family, and among them, as kube-proxy
//! chooses with topology hints, then by the caller's own node and zone, or else all.
//!
//! Plain functions of a snapshot and the preferences, run once per snapshot version and
//! thread, never on the hot path.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::snapshot::{Addresses, Endpoint, Snapshot};

/// Which IP family a [`Picker`](crate::Picker) picks from.
///
/// A dual-stack Service lists each pod once per family, in an IPv4 and an IPv6 slice. The
/// default is [`Both`](IpFamily::Both): it is the only choice that works unchanged in
/// IPv4-only, IPv6-only and dual-stack clusters, and in a dual-stack cluster each pod is
/// still picked evenly (once per family in a round). A client that cannot reach one family
/// (no IPv6 route, say) picks only the other, and does not fail half of its picks.
///
/// ```
/// # use std::net::{IpAddr, SocketAddr};
/// # use std::time::Duration;
/// # use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
/// # use kuberesolver::{Config, IpFamily, Resolver};
/// # let server = FakeApiServer::start()?;
/// let ports = [("grpc", Some(8080))];
/// let v4 = Pod::new("echo-1", [10, 0, 0, 1]);
/// let v6 = Pod::new("echo-1", "fd00::1".parse::<IpAddr>()?);
/// server.set_endpoint_slice("prod", "echo-v4", "echo", AddressType::Ipv4, &ports, &[v4]);
/// server.set_endpoint_slice("prod", "echo-v6", "echo", AddressType::Ipv6, &ports, &[v6]);
/// # let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
/// #     .config(Config::new(server.url()))
/// #     .spawn()?;
/// # resolver.wait_ready(Duration::from_secs(5))?;
/// assert_eq!(resolver.snapshot().len(), 2);
/// let picker = resolver.picker().ip_family(IpFamily::V4);
/// for _ in 0..3 {
///     assert_eq!(picker.pick(), Some(SocketAddr::from(([10, 0, 0, 1], 8080))));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpFamily {
    /// IPv4 and IPv6 addresses alike (the default).
    #[default]
    Both,
    /// IPv4 addresses only.
    V4,
    /// IPv6 addresses only.
    V6,
}

impl IpFamily {
    fn admits(self, addr: SocketAddr) -> bool {
        match self {
            IpFamily::Both => true,
            IpFamily::V4 => addr.is_ipv4(),
            IpFamily::V6 => addr.is_ipv6(),
        }
    }
}

/// What a picker prefers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Prefs {
    pub zone: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub family: IpFamily,
}

/// Which rule chose a picker's preferred endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// No preference applies: every endpoint.
    All,
    /// Every endpoint has `hints.forNodes` and some name the caller's node.
    NodeHints,
    /// Every endpoint has `hints.forZones` and some name the caller's zone.
    ZoneHints,
    /// No usable hints, and some endpoints run on the caller's node.
    Node,
    /// No usable hints, and some endpoints are in the caller's zone.
    Zone,
}

/// The addresses a picker chooses from in one snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Candidates {
    /// Every address of the snapshot's endpoints in the picker's family, sorted.
    pub all: Addresses,
    /// The preferred ones among them, sorted; never empty unless `all` is.
    pub preferred: Addresses,
}

impl Candidates {
    pub(crate) fn none() -> Candidates {
        let empty = Addresses::from(Vec::new());
        Candidates {
            all: empty.clone(),
            preferred: empty,
        }
    }
}

impl Prefs {
    /// The candidates in `snapshot`.
    pub(crate) fn candidates(&self, snapshot: &Snapshot) -> Candidates {
        if self.family == IpFamily::Both && self.zone.is_none() && self.node.is_none() {
            // The plain picker: the snapshot's own addresses, shared, not copied.
            let all = snapshot.addresses();
            return Candidates {
                preferred: all.clone(),
                all,
            };
        }
        let endpoints: Vec<&Endpoint> = snapshot
            .endpoints()
            .iter()
            .filter(|e| self.family.admits(e.addr()))
            .collect();
        let addrs = |es: &[&Endpoint]| -> Addresses {
            es.iter().map(|e| e.addr()).collect::<Vec<_>>().into()
        };
        let all = addrs(&endpoints);
        let (rule, preferred) = self.prefer(&endpoints);
        let preferred = match rule {
            Rule::All => all.clone(),
            _ => addrs(&preferred),
        };
        Candidates { all, preferred }
    }

    /// kube-proxy's choice (`topologyModeFromHints`, `availableForTopology`): hints count only
    /// when every endpoint carries them and some name the caller; node hints before zone
    /// hints. Without usable hints, the caller's own node, then zone. Endpoints that are not
    /// ready (used while no endpoint is) are taken all: topology does not apply to them.
    pub(crate) fn prefer<'e>(&self, endpoints: &[&'e Endpoint]) -> (Rule, Vec<&'e Endpoint>) {
        if !endpoints.iter().all(|e| e.conditions().ready) {
            return (Rule::All, Vec::new());
        }
        /// Whether an endpoint is for the caller of that name.
        type For = fn(&Endpoint, &str) -> bool;
        /// How many hints of the rule's kind an endpoint has, for rules that need every
        /// endpoint to have some.
        type Hinted = Option<fn(&Endpoint) -> usize>;
        let (node, zone) = (self.node.as_deref(), self.zone.as_deref());
        let rules: [(Option<&str>, Rule, For, Hinted); 4] = [
            (
                node,
                Rule::NodeHints,
                |e, node| e.node_hints().any(|n| n == node),
                Some(|e| e.node_hints().len()),
            ),
            (
                zone,
                Rule::ZoneHints,
                |e, zone| e.zone_hints().any(|z| z == zone),
                Some(|e| e.zone_hints().len()),
            ),
            (node, Rule::Node, |e, node| e.node() == Some(node), None),
            (zone, Rule::Zone, |e, zone| e.zone() == Some(zone), None),
        ];
        for (name, rule, is_for, hinted) in rules {
            let Some(name) = name else { continue };
            if hinted.is_some_and(|hints| endpoints.iter().any(|e| hints(e) == 0)) {
                continue;
            }
            let chosen: Vec<&'e Endpoint> = endpoints
                .iter()
                .copied()
                .filter(|e| is_for(e, name))
                .collect();
            if !chosen.is_empty() {
                return (rule, chosen);
            }
        }
        (Rule::All, Vec::new())
    }
}

/// kube-proxy's `TestCategorizeEndpoints` cases for Cluster traffic (`pkg/proxy/topology_test.go`)
/// and the node-hint cases that follow from `topologyModeFromHints`, on snapshots made of the
/// endpoints as the API lists them. The Local traffic policy cases do not apply to a client:
/// the Service's policies are not in its endpoints.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Conditions, Details, EndpointData};
    use std::collections::BTreeSet;

    /// How an endpoint is listed.
    #[derive(Clone, Copy)]
    enum State {
        Ready,
        Unready,
        /// Serving while terminating.
        Terminating,
    }

    /// Endpoint 10.1.2.`last`:80 with zone hints `zones` and node hints `nodes`.
    fn ep(last: u8, state: State, zones: &[&str], nodes: &[&str]) -> Endpoint {
        let names = |l: &[&str]| l.iter().map(|n| Arc::from(*n)).collect();
        Endpoint::new(EndpointData {
            addr: SocketAddr::from(([10, 1, 2, last], 80)),
            details: Details {
                conditions: match state {
                    State::Ready => Conditions::default(),
                    State::Unready => Conditions {
                        ready: false,
                        serving: false,
                        terminating: false,
                    },
                    State::Terminating => Conditions {
                        ready: false,
                        serving: true,
                        terminating: true,
                    },
                },
                zone_hints: names(zones),
                node_hints: names(nodes),
                ..Details::default()
            },
        })
    }

    use State::{Ready as R, Terminating as ST, Unready as U};

    /// The last octets a picker in `zone` on `node` prefers among `endpoints`.
    fn preferred(zone: &str, node: &str, endpoints: &[Endpoint]) -> BTreeSet<u8> {
        let mut listed: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| e.conditions().ready || e.conditions().terminating)
            .cloned()
            .collect();
        listed.sort();
        let prefs = Prefs {
            zone: (!zone.is_empty()).then(|| Arc::from(zone)),
            node: (!node.is_empty()).then(|| Arc::from(node)),
            family: IpFamily::Both,
        };
        let candidates = prefs.candidates(&Snapshot::new(1, &listed));
        candidates
            .preferred
            .iter()
            .map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => v4.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect()
    }

    fn set(lasts: &[u8]) -> BTreeSet<u8> {
        lasts.iter().copied().collect()
    }

    #[test]
    fn zone_hints_are_used_when_every_endpoint_has_them_and_some_name_the_callers_zone() {
        // 1: "should use topology since all endpoints have hints, node has a zone label and
        // and there are endpoints for the node's zone"
        let eps = [
            ep(3, R, &["a"], &[]),
            ep(4, R, &["b"], &[]),
            ep(5, R, &["c"], &[]),
            ep(6, R, &["a"], &[]),
        ];
        assert_eq!(preferred("a", "", &eps), set(&[3, 6]));
        // 10: "multiple hints per endpoint, filtering includes any endpoint with zone included"
        let eps = [
            ep(3, R, &["a", "b", "c"], &[]),
            ep(4, R, &["b", "c"], &[]),
            ep(5, R, &["b", "d"], &[]),
            ep(6, R, &["c"], &[]),
        ];
        assert_eq!(preferred("c", "", &eps), set(&[3, 4, 6]));
    }

    #[test]
    fn zone_hints_are_not_used_without_a_zone_or_when_none_names_it() {
        let eps = [ep(3, R, &["a"], &[])];
        // 4: "empty node labels", 5: "empty zone label"
        assert_eq!(preferred("", "", &eps), set(&[3]));
        // 6: "node in different zone, no endpoint filtering"
        assert_eq!(preferred("b", "", &eps), set(&[3]));
    }

    #[test]
    fn only_ready_endpoints_count_for_the_hints() {
        // 7: "unready endpoint"
        let eps = [
            ep(3, R, &["a"], &[]),
            ep(4, R, &["b"], &[]),
            ep(5, R, &["c"], &[]),
            ep(6, U, &["a"], &[]),
        ];
        assert_eq!(preferred("a", "", &eps), set(&[3]));
        // 8: "only unready endpoints in same zone (should not filter)"
        let eps = [
            ep(3, U, &["a"], &[]),
            ep(4, R, &["b"], &[]),
            ep(5, R, &["c"], &[]),
            ep(6, U, &["a"], &[]),
        ];
        assert_eq!(preferred("a", "", &eps), set(&[4, 5]));
    }

    #[test]
    fn one_endpoint_without_hints_turns_hints_off() {
        // 9: "missing hints, no filtering applied"
        let eps = [
            ep(3, R, &["a"], &[]),
            ep(4, R, &["b"], &[]),
            ep(5, R, &[], &[]),
            ep(6, R, &["a"], &[]),
        ];
        assert_eq!(preferred("a", "", &eps), set(&[3, 4, 5, 6]));
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready() {
        // 16: "endpoints not Ready", 17: "some endpoints are Ready", 18: "all endpoints are
        // terminating"
        assert_eq!(
            preferred("", "", &[ep(0, U, &[], &[]), ep(1, U, &[], &[])]),
            set(&[])
        );
        assert_eq!(
            preferred("", "", &[ep(0, U, &[], &[]), ep(1, R, &[], &[])]),
            set(&[1])
        );
        let terminating = [ep(0, ST, &[], &[]), ep(1, ST, &[], &[])];
        assert_eq!(preferred("", "", &terminating), set(&[0, 1]));
    }

    #[test]
    fn node_hints_come_before_zone_hints_with_the_same_safeguards() {
        let both = |last, node| ep(last, R, &["a"], &[node]);
        // Every endpoint has node hints and one names the caller's node.
        assert_eq!(
            preferred("a", "n1", &[both(1, "n1"), both(2, "n2")]),
            set(&[1])
        );
        // None names it: the zone hints.
        assert_eq!(
            preferred("a", "n3", &[both(1, "n1"), both(2, "n2")]),
            set(&[1, 2])
        );
        // Not every endpoint has node hints: the zone hints.
        let partial = [both(1, "n1"), ep(2, R, &["a"], &[])];
        assert_eq!(preferred("a", "n1", &partial), set(&[1, 2]));
        // An unready endpoint without hints does not count.
        let unready = [both(1, "n1"), both(2, "n2"), ep(3, U, &[], &[])];
        assert_eq!(preferred("a", "n1", &unready), set(&[1]));
        // While none is ready, topology is ignored.
        let terminating = [ep(1, ST, &[], &["n1"]), ep(2, ST, &[], &["n2"])];
        assert_eq!(preferred("a", "n1", &terminating), set(&[1, 2]));
        // A caller with no zone is not filtered by zone hints.
        assert_eq!(preferred("", "n1", &[ep(1, R, &["a"], &[])]), set(&[1]));
    }

    #[test]
    fn without_usable_hints_the_callers_node_then_zone_are_preferred() {
        let at = |last: u8, node: &str, zone: &str, zones: &[&str]| {
            Endpoint::new(EndpointData {
                addr: SocketAddr::from(([10, 1, 2, last], 80)),
                details: Details {
                    node: Some(Arc::from(node)),
                    zone: Some(Arc::from(zone)),
                    zone_hints: zones.iter().map(|z| Arc::from(*z)).collect(),
                    ..Details::default()
                },
            })
        };
        let eps = [
            at(1, "n1", "a", &[]),
            at(2, "n2", "a", &[]),
            at(3, "n3", "b", &[]),
        ];
        assert_eq!(preferred("", "n2", &eps), set(&[2]));
        assert_eq!(preferred("a", "", &eps), set(&[1, 2]));
        assert_eq!(preferred("b", "n9", &eps), set(&[3]));
        assert_eq!(preferred("c", "n9", &eps), set(&[1, 2, 3]));
        // Zone hints that name the caller's zone win over its own zone.
        let hinted = [at(1, "n1", "a", &["b"]), at(2, "n2", "b", &["a"])];
        assert_eq!(preferred("a", "", &hinted), set(&[2]));
        assert_eq!(preferred("a", "n1", &hinted), set(&[2]));
    }

    #[test]
    fn each_rule_is_named() {
        let eps = [ep(1, R, &["a"], &["n1"])];
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let rule = |zone: Option<&str>, node: Option<&str>| {
            let prefs = Prefs {
                zone: zone.map(Arc::from),
                node: node.map(Arc::from),
                family: IpFamily::Both,
            };
            prefs.prefer(&refs).0
        };
        assert_eq!(rule(Some("a"), Some("n1")), Rule::NodeHints);
        assert_eq!(rule(Some("a"), Some("n2")), Rule::ZoneHints);
        assert_eq!(rule(Some("b"), None), Rule::All);
    }
}
