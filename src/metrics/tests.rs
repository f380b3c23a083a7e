//! The exposition, without a resolver: what each format writes for crafted states.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::snapshot::{Endpoint, EndpointData};
use crate::{Conditions, Source};

fn endpoint(last: u8, conditions: Conditions) -> Endpoint {
    let mut data = EndpointData::at(SocketAddr::from(([10, 0, 0, last], 8080)));
    data.details.conditions = conditions;
    Endpoint::new(data)
}

fn at(secs: u64) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_millis(secs * 1000 + 250))
}

/// `echo.prod:grpc` resolved from Endpoints: two ready endpoints and a terminating one,
/// version 3, counters 1..=8, times at fixed instants (no sync: no staleness sample).
fn echo() -> Entry {
    let terminating = Conditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    let mut status = Status::new();
    status.resolved = true;
    status.version = 3;
    status.endpoints = 3;
    status.source = Some(Source::Endpoints);
    status.last_update = at(1_700_000_000);
    status.last_error_at = at(1_700_000_100);
    status.watching = true;
    status.counters = crate::Counters {
        lists: 1,
        watches: 2,
        events: 3,
        bookmarks: 4,
        reconnects: 5,
        relists: 6,
        errors: 7,
        publishes: 8,
    };
    let snapshot = Snapshot::new(
        3,
        &[
            endpoint(1, Conditions::default()),
            endpoint(2, Conditions::default()),
            endpoint(3, terminating),
        ],
    );
    let target: Target = "kubernetes:///echo.prod:grpc"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    Entry {
        target: target.to_string(),
        go_target: go_target(&target),
        status,
        snapshot,
    }
}

/// A resolver that has not resolved yet.
fn waiting() -> Entry {
    Entry {
        target: "kubernetes:///cart.shop:8080".into(),
        go_target: "kubernetes://shop/cart:8080".into(),
        status: Status::new(),
        snapshot: Snapshot::unresolved(),
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn text_format_has_help_then_type_then_one_sample_per_target() {
    let text = Metrics::new().render_entries(vec![echo(), waiting()]);
    let l = lines(&text);
    assert_eq!(
        l[..4],
        [
            "# HELP kuberesolver_ready_endpoints Ready endpoints in the current snapshot.",
            "# TYPE kuberesolver_ready_endpoints gauge",
            "kuberesolver_ready_endpoints{target=\"kubernetes:///echo.prod:grpc\"} 2",
            "kuberesolver_ready_endpoints{target=\"kubernetes:///cart.shop:8080\"} 0",
        ]
    );
    for expected in [
        "kuberesolver_terminating_endpoints{target=\"kubernetes:///echo.prod:grpc\"} 1",
        "kuberesolver_snapshot_version{target=\"kubernetes:///echo.prod:grpc\"} 3",
        "kuberesolver_resolved{target=\"kubernetes:///echo.prod:grpc\"} 1",
        "kuberesolver_resolved{target=\"kubernetes:///cart.shop:8080\"} 0",
        "kuberesolver_healthy{target=\"kubernetes:///echo.prod:grpc\"} 0",
        "kuberesolver_watching{target=\"kubernetes:///echo.prod:grpc\"} 1",
        "kuberesolver_frozen{target=\"kubernetes:///echo.prod:grpc\"} 0",
        "kuberesolver_last_update_timestamp_seconds{target=\"kubernetes:///echo.prod:grpc\"} 1700000000.25",
        "kuberesolver_last_error_timestamp_seconds{target=\"kubernetes:///echo.prod:grpc\"} 1700000100.25",
        "# TYPE kuberesolver_source_info gauge",
        "kuberesolver_source_info{target=\"kubernetes:///echo.prod:grpc\",source=\"Endpoints\"} 1",
        "# TYPE kuberesolver_lists_total counter",
        "kuberesolver_lists_total{target=\"kubernetes:///echo.prod:grpc\"} 1",
        "kuberesolver_watches_total{target=\"kubernetes:///echo.prod:grpc\"} 2",
        "kuberesolver_events_total{target=\"kubernetes:///echo.prod:grpc\"} 3",
        "kuberesolver_bookmarks_total{target=\"kubernetes:///echo.prod:grpc\"} 4",
        "kuberesolver_reconnects_total{target=\"kubernetes:///echo.prod:grpc\"} 5",
        "kuberesolver_relists_total{target=\"kubernetes:///echo.prod:grpc\"} 6",
        "kuberesolver_errors_total{target=\"kubernetes:///echo.prod:grpc\"} 7",
        "kuberesolver_publishes_total{target=\"kubernetes:///echo.prod:grpc\"} 8",
        "kuberesolver_publishes_total{target=\"kubernetes:///cart.shop:8080\"} 0",
    ] {
        assert!(l.contains(&expected), "{expected}\n{text}");
    }
    // Times not known yet have no sample; the family is still announced.
    assert!(text.contains("# TYPE kuberesolver_staleness_seconds gauge\n# HELP kuberesolver_last_update_timestamp_seconds"), "{text}");
    assert!(
        !text.contains("last_update_timestamp_seconds{target=\"kubernetes:///cart"),
        "{text}"
    );
    assert!(
        !text.contains("source_info{target=\"kubernetes:///cart"),
        "{text}"
    );
    assert!(
        !text.contains("kuberesolver_addresses_total"),
        "Go's names only when asked"
    );
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    assert_eq!(l.iter().filter(|l| l.starts_with("# TYPE")).count(), 20);
}

#[test]
fn open_metrics_names_counter_families_without_total_has_units_and_ends_with_eof() {
    let text = Metrics::new()
        .format(MetricsFormat::OpenMetrics)
        .render_entries(vec![echo()]);
    let l = lines(&text);
    assert_eq!(
        l[..3],
        [
            "# TYPE kuberesolver_ready_endpoints gauge",
            "# HELP kuberesolver_ready_endpoints Ready endpoints in the current snapshot.",
            "kuberesolver_ready_endpoints{target=\"kubernetes:///echo.prod:grpc\"} 2",
        ]
    );
    for expected in [
        "# TYPE kuberesolver_lists counter",
        "kuberesolver_lists_total{target=\"kubernetes:///echo.prod:grpc\"} 1",
        "# TYPE kuberesolver_staleness_seconds gauge",
        "# UNIT kuberesolver_staleness_seconds seconds",
        "# UNIT kuberesolver_last_error_timestamp_seconds seconds",
        "# TYPE kuberesolver_source info",
        "kuberesolver_source_info{target=\"kubernetes:///echo.prod:grpc\",source=\"Endpoints\"} 1",
    ] {
        assert!(l.contains(&expected), "{expected}\n{text}");
    }
    assert!(!text.contains("# TYPE kuberesolver_lists_total"), "{text}");
    assert!(!text.contains("\n\n"), "no blank line");
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
}

#[test]
fn go_names_carry_gos_target_label() {
    let text = Metrics::new()
        .go_names(true)
        .render_entries(vec![echo(), waiting()]);
    for expected in [
        "# HELP kuberesolver_endpoints_total The number of endpoints for a given target",
        "# TYPE kuberesolver_endpoints_total gauge",
        "kuberesolver_endpoints_total{target=\"kubernetes://prod/echo:grpc\"} 2",
        "kuberesolver_addresses_total{target=\"kubernetes://prod/echo:grpc\"} 2",
        "kuberesolver_addresses_total{target=\"kubernetes://shop/cart:8080\"} 0",
        "kuberesolver_client_last_update{target=\"kubernetes://prod/echo:grpc\"} 1700000000.25",
    ] {
        assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
    }
    assert!(
        !text.contains("client_last_update{target=\"kubernetes://shop"),
        "no addresses, no update time"
    );
    let om = Metrics::new()
        .go_names(true)
        .format(MetricsFormat::OpenMetrics)
        .render_entries(vec![echo()]);
    assert!(om.contains("# TYPE kuberesolver_endpoints_total gauge\n"));
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn gos_target_string_has_the_namespace_before_the_service_and_keeps_an_empty_port() {
    let t = |s: &str| go_target(&s.parse::<Target>().unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        t("kubernetes:///echo.prod:grpc"),
        "kubernetes://prod/echo:grpc"
    );
    assert_eq!(
        t("kubernetes:///echo.prod:8080"),
        "kubernetes://prod/echo:8080"
    );
    assert_eq!(t("kubernetes:///echo.prod"), "kubernetes://prod/echo:");
    assert_eq!(t("kubernetes:///echo"), "kubernetes:///echo:");
    let k8s =
        Target::parse_with_scheme("k8s:///echo.prod:grpc", "k8s").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(go_target(&k8s), "k8s://prod/echo:grpc");
}

#[test]
fn a_target_appears_once_and_staleness_counts_from_the_last_sync() {
    let mut fresh = echo();
    fresh.status.last_sync = SystemTime::now().checked_sub(Duration::from_secs(30));
    let text = Metrics::new().render_entries(vec![fresh, echo(), waiting()]);
    assert_eq!(
        text.matches("kuberesolver_ready_endpoints{target=\"kubernetes:///echo.prod:grpc\"}")
            .count(),
        1
    );
    let staleness = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "kuberesolver_staleness_seconds{target=\"kubernetes:///echo.prod:grpc\"} ",
            )
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        staleness.is_some_and(|s| (30.0..60.0).contains(&s)),
        "{text}"
    );
    assert!(text.contains(
        "kuberesolver_last_sync_timestamp_seconds{target=\"kubernetes:///echo.prod:grpc\"} 1"
    ));
}

#[test]
fn label_values_and_help_are_escaped() {
    assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    let mut odd = waiting();
    odd.target = "x\"y\\z\n".into();
    let text = Metrics::new().render_entries(vec![odd]);
    assert!(
        text.contains("kuberesolver_resolved{target=\"x\\\"y\\\\z\\n\"} 0\n"),
        "{text}"
    );
    let mut x = Exposition {
        out: String::new(),
        open_metrics: false,
    };
    x.family("m", Kind::Gauge, "a \"b\" \\ c\nd", Vec::new());
    assert_eq!(x.out, "# HELP m a \"b\" \\\\ c\\nd\n# TYPE m gauge\n");
    let mut x = Exposition {
        out: String::new(),
        open_metrics: true,
    };
    x.family("m", Kind::Gauge, "a \"b\"", Vec::new());
    assert_eq!(x.out, "# TYPE m gauge\n# HELP m a \\\"b\\\"\n");
}

#[test]
fn the_accept_header_chooses_the_format() {
    use MetricsFormat::*;
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let cases = [
        (Some(prometheus), OpenMetrics),
        (Some("application/openmetrics-text"), OpenMetrics),
        (
            Some("application/openmetrics-text; version=0.0.1"),
            OpenMetrics,
        ),
        (
            Some("APPLICATION/OPENMETRICS-TEXT;q=0.5, text/plain;q=0.5"),
            OpenMetrics,
        ),
        (
            Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
            Text,
        ),
        (Some("application/openmetrics-text;version=2.0.0"), Text),
        (Some("application/openmetrics-text;q=0"), Text),
        (Some("application/openmetrics-text;q=x"), Text),
        (Some("*/*;q=1,application/openmetrics-text;q=0.9"), Text),
        (
            Some("text/*;q=0.2,application/openmetrics-text;q=0.3"),
            OpenMetrics,
        ),
        (Some("application/json"), Text),
        (Some(""), Text),
        (None, Text),
    ];
    for (accept, want) in cases {
        assert_eq!(MetricsFormat::from_accept(accept), want, "{accept:?}");
    }
    assert_eq!(
        Metrics::new().content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        Metrics::new().format(OpenMetrics).content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[test]
fn times_before_1970_are_zero_and_millis_are_kept() {
    assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0.0);
    assert_eq!(
        unix_seconds(UNIX_EPOCH + Duration::from_micros(1_500_999)),
        1.5
    );
}
