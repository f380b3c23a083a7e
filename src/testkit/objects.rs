//! Builders for real-looking `Endpoints` and `EndpointSlice` objects.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::types::AddressType;

/// A pod behind a Service, as the endpoints controllers would publish it.
///
/// Build one with [`Pod::new`] and the builder-style setters:
///
/// ```
/// use kuberesolver::testkit::Pod;
///
/// let pod = Pod::new("echo-7d9f-abcde", [10, 0, 0, 7])
///     .node("node-a")
///     .zone("eu-west-1a")
///     .ready(false);
/// assert_eq!(pod.ip.to_string(), "10.0.0.7");
/// assert!(!pod.ready);
/// ```
///
/// The fields are there to read; a later release may add some (the struct is
/// `#[non_exhaustive]`), so a struct literal does not compile outside this crate:
///
/// ```compile_fail
/// use kuberesolver::testkit::Pod;
///
/// let pod = Pod {
///     name: "echo-1".to_owned(),
///     ip: [10, 0, 0, 1].into(),
///     ready: true,
///     terminating: false,
///     node: None,
///     hostname: None,
///     zone: None,
/// };
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pod {
    /// Pod name (goes to `targetRef.name`).
    pub name: String,
    /// Pod IP.
    pub ip: IpAddr,
    /// Whether the pod is ready (`addresses` vs `notReadyAddresses`, `conditions.ready`).
    pub ready: bool,
    /// Whether the pod is terminating. The Endpoints controller leaves terminating pods
    /// out; EndpointSlices list them with `ready: false`, `serving: <ready>`,
    /// `terminating: true`.
    pub terminating: bool,
    /// The node it runs on (`nodeName`).
    pub node: Option<String>,
    /// Its `hostname` (set for StatefulSet pods behind a headless Service).
    pub hostname: Option<String>,
    /// Its zone (`zone`, EndpointSlices only).
    pub zone: Option<String>,
    /// The zones whose clients should use it (`hints.forZones`, EndpointSlices only).
    pub zone_hints: Vec<String>,
    /// The nodes whose clients should use it (`hints.forNodes`, EndpointSlices only).
    pub node_hints: Vec<String>,
}

impl Pod {
    /// A ready pod with no node, hostname or zone.
    ///
    /// `ip` takes anything that converts to an [`IpAddr`]: an `IpAddr`, an
    /// `Ipv4Addr`, `[u8; 4]`, `[u16; 8]`...
    ///
    /// ```
    /// use kuberesolver::testkit::Pod;
    ///
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    /// assert!(pod.ready && !pod.terminating);
    /// assert_eq!((pod.node, pod.hostname, pod.zone), (None, None, None));
    ///
    /// let v6 = Pod::new("echo-2", "fd00::2".parse::<std::net::IpAddr>()?);
    /// assert!(v6.ip.is_ipv6());
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn new(name: impl Into<String>, ip: impl Into<IpAddr>) -> Pod {
        Pod {
            name: name.into(),
            ip: ip.into(),
            ready: true,
            terminating: false,
            node: None,
            hostname: None,
            zone: None,
            zone_hints: Vec::new(),
            node_hints: Vec::new(),
        }
    }

    /// Sets readiness. Default: ready.
    ///
    /// An Endpoints object lists an unready pod in `notReadyAddresses`; a slice gives it
    /// `ready: false`. Either way a resolver does not use it (unless it is terminating and
    /// was ready, and no other pod is ready: see [`terminating`](Self::terminating)).
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoints_object, Pod};
    ///
    /// let starting = Pod::new("echo-1", [10, 0, 0, 1]).ready(false);
    /// let obj = endpoints_object("prod", "echo", &[("grpc", 8080)], &[starting]);
    /// assert_eq!(obj["subsets"][0]["notReadyAddresses"][0]["ip"], "10.0.0.1");
    /// assert!(obj["subsets"][0].get("addresses").is_none());
    /// ```
    #[must_use]
    pub fn ready(mut self, ready: bool) -> Pod {
        self.ready = ready;
        self
    }

    /// Marks the pod as terminating (or not). Default: not terminating.
    ///
    /// See [`terminating`](Pod#structfield.terminating) for how each object shows it. A
    /// terminating pod that is still ready (`serving: true` in a slice) is what a resolver
    /// uses while no pod is ready; `.ready(false).terminating(true)` is one that is not
    /// serving any more.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoint_slice_object, endpoints_object, AddressType, Pod};
    ///
    /// let leaving = Pod::new("echo-1", [10, 0, 0, 1]).terminating(true);
    /// let pods = [leaving.clone()];
    /// let slice = endpoint_slice_object("prod", "echo-x1", "echo", AddressType::Ipv4, &[], &pods);
    /// let conditions = &slice["endpoints"][0]["conditions"];
    /// assert_eq!((&conditions["ready"], &conditions["serving"]), (&false.into(), &true.into()));
    /// assert_eq!(conditions["terminating"], true);
    /// let endpoints = endpoints_object("prod", "echo", &[("grpc", 8080)], &[leaving]);
    /// assert!(endpoints.get("subsets").is_none()); // left out
    /// ```
    #[must_use]
    pub fn terminating(mut self, terminating: bool) -> Pod {
        self.terminating = terminating;
        self
    }

    /// Sets the node name (`nodeName`). Default: none.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoints_object, Pod};
    ///
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).node("node-a");
    /// let obj = endpoints_object("prod", "echo", &[("grpc", 8080)], &[pod]);
    /// assert_eq!(obj["subsets"][0]["addresses"][0]["nodeName"], "node-a");
    /// ```
    #[must_use]
    pub fn node(mut self, node: impl Into<String>) -> Pod {
        self.node = Some(node.into());
        self
    }

    /// Sets the hostname (`hostname`). Default: none.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoints_object, Pod};
    ///
    /// let pod = Pod::new("db-0", [10, 0, 0, 1]).hostname("db-0");
    /// let obj = endpoints_object("prod", "db", &[("pg", 5432)], &[pod]);
    /// assert_eq!(obj["subsets"][0]["addresses"][0]["hostname"], "db-0");
    /// ```
    #[must_use]
    pub fn hostname(mut self, hostname: impl Into<String>) -> Pod {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets the zone (`zone`, in EndpointSlices only). Default: none.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoint_slice_object, AddressType, Pod};
    ///
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).zone("eu-west-1a");
    /// let slice = endpoint_slice_object("prod", "echo-x1", "echo", AddressType::Ipv4, &[], &[pod]);
    /// assert_eq!(slice["endpoints"][0]["zone"], "eu-west-1a");
    /// ```
    #[must_use]
    pub fn zone(mut self, zone: impl Into<String>) -> Pod {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the zone hints (`hints.forZones`, in EndpointSlices only), as the EndpointSlice
    /// controller does for topology-aware routing. Default: none.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoint_slice_object, AddressType, Pod};
    ///
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).zone("a").zone_hints(["a", "b"]);
    /// let slice = endpoint_slice_object("prod", "echo-x1", "echo", AddressType::Ipv4, &[], &[pod]);
    /// assert_eq!(slice["endpoints"][0]["hints"]["forZones"][1]["name"], "b");
    /// assert!(slice["endpoints"][0]["hints"].get("forNodes").is_none());
    /// ```
    #[must_use]
    pub fn zone_hints<S: Into<String>>(mut self, zones: impl IntoIterator<Item = S>) -> Pod {
        self.zone_hints = zones.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the node hints (`hints.forNodes`, in EndpointSlices only), as the EndpointSlice
    /// controller does for `trafficDistribution: PreferSameNode`. Default: none.
    ///
    /// ```
    /// use kuberesolver::testkit::{endpoint_slice_object, AddressType, Pod};
    ///
    /// let pod = Pod::new("echo-1", [10, 0, 0, 1]).node("n1").node_hints(["n1"]);
    /// let slice = endpoint_slice_object("prod", "echo-x1", "echo", AddressType::Ipv4, &[], &[pod]);
    /// assert_eq!(slice["endpoints"][0]["hints"]["forNodes"][0]["name"], "n1");
    /// ```
    #[must_use]
    pub fn node_hints<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Pod {
        self.node_hints = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// `{"forZones": [...], "forNodes": [...]}` with the lists that are not empty, or `None`.
    fn hints(&self) -> Option<Value> {
        let names = |list: &[String]| -> Value {
            list.iter().map(|name| json!({ "name": name })).collect()
        };
        let mut hints = Map::new();
        if !self.zone_hints.is_empty() {
            hints.insert("forZones".into(), names(&self.zone_hints));
        }
        if !self.node_hints.is_empty() {
            hints.insert("forNodes".into(), names(&self.node_hints));
        }
        (!hints.is_empty()).then_some(Value::Object(hints))
    }

    fn target_ref(&self, namespace: &str) -> Value {
        json!({
            "kind": "Pod",
            "namespace": namespace,
            "name": self.name,
            "uid": fake_uid(&format!("pod/{namespace}/{}", self.name)),
        })
    }
}

/// A deterministic, well-formed UID derived from `seed` (FNV-1a).
pub(crate) fn fake_uid(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let h2 = h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        h & 0xfff,
        (h2 >> 52) & 0xfff,
        h2 & 0xffff_ffff_ffff
    )
}

/// `at` as the API writes a timestamp (`metav1.Time`): RFC 3339 in UTC, to the second,
/// e.g. `2024-01-02T03:04:05Z`. Times before 1970 count as 1970.
pub(crate) fn timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since the epoch to a proleptic Gregorian date, by 400-year eras of 146 097 days
    // that start on 1 March (so that the leap day ends a year).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A core/v1 `Endpoints` object (without `kind`/`apiVersion`: the server adds them where
/// the real one does), as the Endpoints controller writes it.
///
/// One subset: ready pods in `addresses`, unready ones in `notReadyAddresses`, terminating
/// ones left out; `ports` are `{name, port, protocol: "TCP"}` (no `name` when it is `""`).
/// Empty lists are omitted, and `subsets` is omitted entirely when no pod is listed, as the
/// real server does. `metadata.resourceVersion` is set by the server.
///
/// ```
/// use kuberesolver::testkit::{endpoints_object, Pod};
///
/// let obj = endpoints_object("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// assert_eq!(obj["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
/// assert_eq!(obj["subsets"][0]["ports"][0]["port"], 8080);
/// ```
pub fn endpoints_object(namespace: &str, name: &str, ports: &[(&str, u16)], pods: &[Pod]) -> Value {
    let address = |p: &Pod| {
        let mut a = Map::new();
        a.insert("ip".into(), Value::String(p.ip.to_string()));
        if let Some(h) = &p.hostname {
            a.insert("hostname".into(), Value::String(h.clone()));
        }
        if let Some(n) = &p.node {
            a.insert("nodeName".into(), Value::String(n.clone()));
        }
        a.insert("targetRef".into(), p.target_ref(namespace));
        Value::Object(a)
    };
    let listed: Vec<&Pod> = pods.iter().filter(|p| !p.terminating).collect();
    let ready: Vec<Value> = listed
        .iter()
        .filter(|p| p.ready)
        .map(|p| address(p))
        .collect();
    let not_ready: Vec<Value> = listed
        .iter()
        .filter(|p| !p.ready)
        .map(|p| address(p))
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, port)| {
            let mut m = Map::new();
            if !n.is_empty() {
                m.insert("name".into(), Value::String((*n).to_string()));
            }
            m.insert("port".into(), Value::from(*port));
            m.insert("protocol".into(), Value::String("TCP".into()));
            Value::Object(m)
        })
        .collect();

    let mut obj = Map::new();
    obj.insert(
        "metadata".into(),
        json!({ "name": name, "namespace": namespace }),
    );
    if !listed.is_empty() {
        let mut subset = Map::new();
        if !ready.is_empty() {
            subset.insert("addresses".into(), Value::Array(ready));
        }
        if !not_ready.is_empty() {
            subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
        }
        if !ports.is_empty() {
            subset.insert("ports".into(), Value::Array(ports));
        }
        obj.insert("subsets".into(), Value::Array(vec![Value::Object(subset)]));
    }
    Value::Object(obj)
}

/// A `discovery.k8s.io/v1` `EndpointSlice` object for Service `service`, as the
/// EndpointSlice controller writes it (without `kind`/`apiVersion`).
///
/// Labels `kubernetes.io/service-name: <service>` and
/// `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`;
/// `addressType` from `address_type` (see [`AddressType`] for odd values); each pod becomes
/// `{addresses: [ip], conditions: {ready, serving, terminating}, nodeName?, zone?,
/// hostname?, hints?, targetRef}`; ports are `{name, port, protocol: "TCP"}` with `name: ""` when
/// unnamed and no `port` when `None`. With no pods `endpoints` is `null`, with no ports
/// `ports` is `null` (what a placeholder slice looks like once stored).
///
/// ```
/// use kuberesolver::testkit::{endpoint_slice_object, AddressType, Pod};
///
/// let obj = endpoint_slice_object(
///     "prod", "echo-abc12", "echo", AddressType::Ipv4,
///     &[("grpc", Some(8080))],
///     &[Pod::new("echo-1", [10, 0, 0, 1]).ready(false)],
/// );
/// assert_eq!(obj["metadata"]["labels"]["kubernetes.io/service-name"], "echo");
/// assert_eq!(obj["endpoints"][0]["conditions"]["ready"], false);
/// ```
pub fn endpoint_slice_object(
    namespace: &str,
    name: &str,
    service: &str,
    address_type: AddressType,
    ports: &[(&str, Option<u16>)],
    pods: &[Pod],
) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let mut e = Map::new();
            e.insert("addresses".into(), json!([p.ip.to_string()]));
            e.insert(
                "conditions".into(),
                json!({
                    "ready": p.ready && !p.terminating,
                    "serving": p.ready,
                    "terminating": p.terminating,
                }),
            );
            if let Some(h) = &p.hostname {
                e.insert("hostname".into(), Value::String(h.clone()));
            }
            if let Some(n) = &p.node {
                e.insert("nodeName".into(), Value::String(n.clone()));
            }
            if let Some(z) = &p.zone {
                e.insert("zone".into(), Value::String(z.clone()));
            }
            if let Some(hints) = p.hints() {
                e.insert("hints".into(), hints);
            }
            e.insert("targetRef".into(), p.target_ref(namespace));
            Value::Object(e)
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, port)| {
            let mut m = Map::new();
            m.insert("name".into(), Value::String((*n).to_string()));
            if let Some(port) = port {
                m.insert("port".into(), Value::from(*port));
            }
            m.insert("protocol".into(), Value::String("TCP".into()));
            Value::Object(m)
        })
        .collect();
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generateName": format!("{service}-"),
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type.as_str(),
        "endpoints": if endpoints.is_empty() { Value::Null } else { Value::Array(endpoints) },
        "ports": if ports.is_empty() { Value::Null } else { Value::Array(ports) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_shape() {
        let pods = [
            Pod::new("a", [10, 0, 0, 1]).node("n1").hostname("a"),
            Pod::new("b", [10, 0, 0, 2]).ready(false),
            Pod::new("c", [10, 0, 0, 3]).terminating(true),
        ];
        let o = endpoints_object("ns", "svc", &[("", 80), ("grpc", 9090)], &pods);
        let s = &o["subsets"][0];
        assert_eq!(s["addresses"].as_array().map(Vec::len), Some(1));
        assert_eq!(s["addresses"][0]["nodeName"], "n1");
        assert_eq!(s["addresses"][0]["hostname"], "a");
        assert_eq!(s["addresses"][0]["targetRef"]["kind"], "Pod");
        assert_eq!(s["notReadyAddresses"][0]["ip"], "10.0.0.2");
        assert!(s["ports"][0].get("name").is_none());
        assert_eq!(s["ports"][1]["name"], "grpc");
        let empty = endpoints_object("ns", "svc", &[("", 80)], &[]);
        assert!(empty.get("subsets").is_none());
    }

    #[test]
    fn slice_shape() {
        let o = endpoint_slice_object(
            "ns",
            "svc-x",
            "svc",
            AddressType::Ipv6,
            &[("", None)],
            &[Pod::new(
                "a",
                "fd00::1"
                    .parse::<IpAddr>()
                    .unwrap_or(IpAddr::from([0u16; 8])),
            )
            .zone("z")],
        );
        assert_eq!(o["addressType"], "IPv6");
        assert_eq!(o["endpoints"][0]["addresses"][0], "fd00::1");
        assert_eq!(o["endpoints"][0]["zone"], "z");
        assert_eq!(o["ports"][0]["name"], "");
        assert!(o["ports"][0].get("port").is_none());
        let empty = endpoint_slice_object("ns", "svc-x", "svc", AddressType::Ipv4, &[], &[]);
        assert!(empty["endpoints"].is_null());
        assert!(empty["ports"].is_null());
        assert_ne!(fake_uid("a"), fake_uid("b"));
        assert_eq!(fake_uid("a").len(), 36);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let at = |secs: u64| timestamp(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_704_164_645), "2024-01-02T03:04:05Z");
        assert_eq!(at(951_825_600), "2000-02-29T12:00:00Z"); // a leap day of a century
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z"); // 2100 has no 29 February
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(1_735_689_600), "2025-01-01T00:00:00Z");
        let before = UNIX_EPOCH - std::time::Duration::from_secs(5);
        assert_eq!(timestamp(before), "1970-01-01T00:00:00Z");
    }
}
