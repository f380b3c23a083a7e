//! Prometheus numbers: resolvers' [`Status`] and snapshot sizes in the text exposition
//! format (0.0.4) or OpenMetrics 1.0, labelled by target, with no dependency.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Resolver, Snapshot, Status, Target};

/// The two text formats Prometheus scrapes.
///
/// ```
/// use kuberesolver::MetricsFormat;
///
/// // What Prometheus sends: OpenMetrics first.
/// let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// assert_eq!(MetricsFormat::from_accept(Some(accept)), MetricsFormat::OpenMetrics);
/// assert_eq!(MetricsFormat::from_accept(None), MetricsFormat::Text);
/// assert_eq!(MetricsFormat::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricsFormat {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`); the default, which
    /// every scraper reads.
    #[default]
    Text,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): counter families
    /// named without `_total`, units, and a final `# EOF`.
    OpenMetrics,
}

impl MetricsFormat {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Text => "text/plain; version=0.0.4; charset=utf-8",
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }

    /// The format a scraper's `Accept` header prefers: OpenMetrics when it ranks
    /// `application/openmetrics-text` at least as high as plain text, else
    /// [`Text`](MetricsFormat::Text) (also without a header, or with one that names
    /// neither).
    pub fn from_accept(accept: Option<&str>) -> MetricsFormat {
        let (mut open_metrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for param in parts {
                match param.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("q", v)) => q = v.parse().unwrap_or(0.0),
                    Some(("version", v)) => version = Some(v.to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0" | "0.0.1")) =>
                {
                    open_metrics = open_metrics.max(q);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            MetricsFormat::OpenMetrics
        } else {
            MetricsFormat::Text
        }
    }
}

/// Renders resolvers' health as Prometheus metrics, one series per target.
///
/// Every series carries the label `target` (the canonical target, e.g.
/// `kubernetes:///echo.prod:grpc`). Resolvers of the same target appear once (the first).
///
/// | metric | type | what |
/// |---|---|---|
/// | `kuberesolver_ready_endpoints` | gauge | ready endpoints in the current snapshot |
/// | `kuberesolver_terminating_endpoints` | gauge | terminating endpoints in it (used only while none is ready) |
/// | `kuberesolver_snapshot_version` | gauge | its version (+1 per published change) |
/// | `kuberesolver_resolved`, `_healthy`, `_watching`, `_frozen` | gauge | 1 or 0: see [`Status`] and [`Status::is_healthy`] |
/// | `kuberesolver_staleness_seconds` | gauge | [`Status::staleness`]: how old the addresses may be |
/// | `kuberesolver_last_update_timestamp_seconds` | gauge | when the current snapshot was published |
/// | `kuberesolver_last_sync_timestamp_seconds` | gauge | when the API last confirmed the state |
/// | `kuberesolver_last_error_timestamp_seconds` | gauge | when the last failure happened |
/// | `kuberesolver_source_info` | info (gauge in 0.0.4) | the API in use, as the label `source` |
/// | `kuberesolver_{lists,watches,events,bookmarks,reconnects,relists,errors,publishes}_total` | counter | [`Counters`](crate::Counters) |
///
/// A time not known yet (no sync, no error) has no sample. With
/// [`go_names`](Metrics::go_names), the gauges of Go's kuberesolver are added under its
/// names and its `target` label (`kubernetes://namespace/service:port`), so that dashboards
/// and alerts written for it keep working: `kuberesolver_endpoints_total` (ready endpoints),
/// `kuberesolver_addresses_total` (addresses) and `kuberesolver_client_last_update` (Unix
/// time of the last update, while there are addresses). (Go names these gauges `_total`,
/// against the convention; Prometheus reads them as gauges all the same.)
///
/// ```
/// use std::time::Duration;
/// use kuberesolver::testkit::{FakeApiServer, Pod};
/// use kuberesolver::{Config, Metrics, MetricsFormat, Resolver, Source};
///
/// let server = FakeApiServer::start()?;
/// server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
/// let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
///     .config(Config::new(server.url()))
///     .source(Source::Endpoints)
///     .spawn()?;
/// resolver.wait_ready(Duration::from_secs(5))?;
///
/// let text = Metrics::new().render(&[&resolver]);
/// assert!(text.contains("kuberesolver_ready_endpoints{target=\"kubernetes:///echo.prod:grpc\"} 1\n"));
/// assert!(text.contains("kuberesolver_lists_total{target=\"kubernetes:///echo.prod:grpc\"} 1\n"));
///
/// let open_metrics = Metrics::new()
///     .format(MetricsFormat::OpenMetrics)
///     .go_names(true)
///     .render(&[&resolver]);
/// assert!(open_metrics.contains("# TYPE kuberesolver_lists counter\n"));
/// assert!(open_metrics.contains("kuberesolver_addresses_total{target=\"kubernetes://prod/echo:grpc\"} 1\n"));
/// assert!(open_metrics.ends_with("# EOF\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    format: MetricsFormat,
    go_names: bool,
}

/// What one target's series are made of.
struct Entry {
    target: String,
    go_target: String,
    status: Status,
    snapshot: Snapshot,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Info,
}

/// Go's `targetInfo.String()`: `scheme://namespace/service:port`, the port as written (empty
/// when none).
fn go_target(target: &Target) -> String {
    let port = target.port().map(ToString::to_string).unwrap_or_default();
    format!(
        "{}://{}/{}:{port}",
        target.scheme(),
        target.namespace().unwrap_or_default(),
        target.service()
    )
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unix time in seconds, to the millisecond.
fn unix_seconds(t: SystemTime) -> f64 {
    let millis = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    millis as f64 / 1000.0
}

/// The exposition being written.
struct Exposition {
    out: String,
    open_metrics: bool,
}

impl Exposition {
    /// One metric family: its metadata, then one sample per `(target, value)`.
    fn family(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (String, String)>,
    ) {
        let om = self.open_metrics;
        let (family, sample) = match kind {
            Kind::Counter if om => (name.to_owned(), format!("{name}_total")),
            Kind::Counter => (format!("{name}_total"), format!("{name}_total")),
            Kind::Info if om => (name.to_owned(), format!("{name}_info")),
            Kind::Info => (format!("{name}_info"), format!("{name}_info")),
            Kind::Gauge => (name.to_owned(), name.to_owned()),
        };
        let type_name = match kind {
            Kind::Counter => "counter",
            Kind::Info if om => "info",
            Kind::Gauge | Kind::Info => "gauge",
        };
        let mut help = help.replace('\\', "\\\\").replace('\n', "\\n");
        if om {
            help = help.replace('"', "\\\"");
        }
        let type_line = format!("# TYPE {family} {type_name}\n");
        let help_line = format!("# HELP {family} {help}\n");
        if om {
            self.out.push_str(&type_line);
            if let Some(unit) = family.strip_suffix("_seconds").map(|_| "seconds") {
                let _ = writeln!(self.out, "# UNIT {family} {unit}");
            }
            self.out.push_str(&help_line);
        } else {
            self.out.push_str(&help_line);
            self.out.push_str(&type_line);
        }
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{sample}{{{labels}}} {value}");
        }
    }
}

fn flag(b: bool) -> String {
    u8::from(b).to_string()
}

impl Metrics {
    /// Text format 0.0.4, our metric names only.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The format to render (default [`MetricsFormat::Text`]); see
    /// [`MetricsFormat::from_accept`] to follow the scraper's `Accept` header.
    #[must_use]
    pub fn format(mut self, format: MetricsFormat) -> Metrics {
        self.format = format;
        self
    }

    /// Also render the gauges of Go's kuberesolver, under its names (default: no).
    #[must_use]
    pub fn go_names(mut self, on: bool) -> Metrics {
        self.go_names = on;
        self
    }

    /// The `Content-Type` of what [`render`](Metrics::render) returns.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The metrics of these resolvers, as of now.
    pub fn render(&self, resolvers: &[&Resolver]) -> String {
        let entries: Vec<Entry> = resolvers
            .iter()
            .map(|r| Entry {
                target: r.target().to_string(),
                go_target: go_target(r.target()),
                status: r.status(),
                snapshot: r.snapshot(),
            })
            .collect();
        self.render_entries(entries)
    }

    fn render_entries(&self, mut entries: Vec<Entry>) -> String {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|e| seen.insert(e.target.clone()));
        let mut x = Exposition {
            out: String::new(),
            open_metrics: self.format == MetricsFormat::OpenMetrics,
        };
        let label = |e: &Entry| format!("target=\"{}\"", escape_label(&e.target));
        let each = |f: &dyn Fn(&Entry) -> Option<String>| -> Vec<(String, String)> {
            entries
                .iter()
                .filter_map(|e| f(e).map(|v| (label(e), v)))
                .collect()
        };
        let count = |e: &Entry, pick: fn(crate::Conditions) -> bool| {
            let n = e
                .snapshot
                .endpoints()
                .iter()
                .filter(|p| pick(p.conditions()))
                .count();
            Some(n.to_string())
        };
        let time = |t: Option<SystemTime>| t.map(|t| unix_seconds(t).to_string());

        x.family(
            "kuberesolver_ready_endpoints",
            Kind::Gauge,
            "Ready endpoints in the current snapshot.",
            each(&|e| count(e, |c| c.ready)),
        );
        x.family(
            "kuberesolver_terminating_endpoints",
            Kind::Gauge,
            "Terminating endpoints in the current snapshot (used only while none is ready).",
            each(&|e| Some(e.snapshot.terminating().len().to_string())),
        );
        x.family(
            "kuberesolver_snapshot_version",
            Kind::Gauge,
            "Version of the current snapshot (0 before the first resolution, +1 per published change).",
            each(&|e| Some(e.snapshot.version().to_string())),
        );
        x.family(
            "kuberesolver_resolved",
            Kind::Gauge,
            "1 once a first snapshot has been published.",
            each(&|e| Some(flag(e.status.resolved))),
        );
        x.family(
            "kuberesolver_healthy",
            Kind::Gauge,
            "1 while resolved, watching, with no failure since the last sync, and not frozen.",
            each(&|e| Some(flag(e.status.is_healthy()))),
        );
        x.family(
            "kuberesolver_watching",
            Kind::Gauge,
            "1 while a watch stream is open.",
            each(&|e| Some(flag(e.status.watching))),
        );
        x.family(
            "kuberesolver_frozen",
            Kind::Gauge,
            "1 while the state the API sends cannot be resolved and the last good snapshot is kept.",
            each(&|e| Some(flag(e.status.frozen_since.is_some()))),
        );
        x.family(
            "kuberesolver_staleness_seconds",
            Kind::Gauge,
            "Seconds since the API last confirmed the state the snapshot shows.",
            each(&|e| e.status.staleness().map(|d| d.as_secs_f64().to_string())),
        );
        x.family(
            "kuberesolver_last_update_timestamp_seconds",
            Kind::Gauge,
            "Unix time the current snapshot was published.",
            each(&|e| time(e.status.last_update)),
        );
        x.family(
            "kuberesolver_last_sync_timestamp_seconds",
            Kind::Gauge,
            "Unix time the API last confirmed the state: a list, an event or a bookmark.",
            each(&|e| time(e.status.last_sync)),
        );
        x.family(
            "kuberesolver_last_error_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the last failure.",
            each(&|e| time(e.status.last_error_at)),
        );
        let with_source: Vec<(String, String)> = entries
            .iter()
            .filter_map(|e| {
                let source = e.status.source?;
                Some((format!("{},source=\"{source}\"", label(e)), "1".to_owned()))
            })
            .collect();
        x.family(
            "kuberesolver_source",
            Kind::Info,
            "The API the resolver reads: Endpoints or EndpointSlices.",
            with_source,
        );
        type Counter = fn(&crate::Counters) -> u64;
        let counters: [(&str, &str, Counter); 8] = [
            ("lists", "LIST requests that succeeded.", |c| c.lists),
            ("watches", "WATCH requests that opened a stream.", |c| {
                c.watches
            }),
            (
                "events",
                "ADDED, MODIFIED and DELETED events applied.",
                |c| c.events,
            ),
            ("bookmarks", "BOOKMARK events received.", |c| c.bookmarks),
            ("reconnects", "Requests made after the first list.", |c| {
                c.reconnects
            }),
            ("relists", "Lists after the first attempt.", |c| c.relists),
            ("errors", "Failures of any kind.", |c| c.errors),
            ("publishes", "Snapshots published.", |c| c.publishes),
        ];
        for (name, help, read) in counters {
            x.family(
                &format!("kuberesolver_{name}"),
                Kind::Counter,
                help,
                each(&|e| Some(read(&e.status.counters).to_string())),
            );
        }
        if self.go_names {
            let go = |f: &dyn Fn(&Entry) -> Option<String>| -> Vec<(String, String)> {
                entries
                    .iter()
                    .filter_map(|e| {
                        let labels = format!("target=\"{}\"", escape_label(&e.go_target));
                        f(e).map(|v| (labels, v))
                    })
                    .collect()
            };
            x.family(
                "kuberesolver_endpoints_total",
                Kind::Gauge,
                "The number of endpoints for a given target",
                go(&|e| count(e, |c| c.ready)),
            );
            x.family(
                "kuberesolver_addresses_total",
                Kind::Gauge,
                "The number of addresses for a given target",
                go(&|e| Some(e.snapshot.addresses().len().to_string())),
            );
            x.family(
                "kuberesolver_client_last_update",
                Kind::Gauge,
                "The last time the resolver client was updated",
                go(&|e| time(e.status.last_update.filter(|_| !e.snapshot.is_empty()))),
            );
        }
        if x.open_metrics {
            x.out.push_str("# EOF\n");
        }
        x.out
    }
}

#[cfg(test)]
mod tests;
