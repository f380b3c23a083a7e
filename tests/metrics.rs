//! The metrics exposition read by a real parser: the Python `prometheus_client`'s text
//! parser and its strict OpenMetrics parser (`.ci/run` installs it with pip). Without
//! python3 and that module these tests fail under CI and are skipped locally with a line
//! on stderr. Also: the `metrics` example serves both formats by the `Accept` header.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use kuberesolver::testkit::{AddressType, FakeApiServer, Pod, Resource};
use kuberesolver::{Metrics, MetricsFormat, Resolver, Source};
use serde_json::Value;
use support::*;

/// Parses the files named by argv[1] (text 0.0.4) and argv[2] (OpenMetrics) and prints
/// `{"text": [...], "openmetrics": [...]}`, each family as `{name, type, help, unit,
/// samples: [[name, labels, value]]}`. A parse error is an exception: a non-zero exit.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
def families(parse, path):
    with open(path) as f:
        return [{"name": m.name, "type": m.type, "help": m.documentation, "unit": getattr(m, "unit", ""),
                 "samples": [[s.name, s.labels, s.value] for s in m.samples]} for m in parse(f.read())]
print(json.dumps({"text": families(text, sys.argv[1]), "openmetrics": families(om, sys.argv[2])}))
"#;

/// Whether python3 can import `prometheus_client`; reports it missing otherwise.
fn have_parser() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing_prerequisite(
            "python3 with prometheus_client (pip install prometheus-client==0.26.0)",
        );
    }
    ok
}

/// Runs [`PARSE`] on both expositions.
fn run_parser(text: &str, open_metrics: &str) -> std::process::Output {
    // Tests run in parallel: a folder per call.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = temp_dir(&format!("metrics-parse-{n}"));
    let (t, o) = (dir.join("text.txt"), dir.join("openmetrics.txt"));
    std::fs::write(&t, text).expect("write");
    std::fs::write(&o, open_metrics).expect("write");
    let out = Command::new("python3")
        .args(["-c", PARSE])
        .arg(&t)
        .arg(&o)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Both expositions as the Python parsers read them.
fn parsed(text: &str, open_metrics: &str) -> Value {
    let out = run_parser(text, open_metrics);
    assert!(
        out.status.success(),
        "the parser refused it: {}\n--- text\n{text}\n--- openmetrics\n{open_metrics}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python")
}

/// The family `name` of one parse.
fn family<'a>(families: &'a Value, name: &str) -> &'a Value {
    families
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no family {name} in {families:#}"))
}

/// The value of sample `sample` of `family` for `target`.
fn value(families: &Value, name: &str, sample: &str, target: &str) -> Option<f64> {
    family(families, name)["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == sample && s[1]["target"] == target)
        .and_then(|s| s[2].as_f64())
}

const ECHO: &str = "kubernetes:///echo.prod:grpc";
const CART: &str = "kubernetes:///cart.prod:grpc";
const NOPE: &str = "kubernetes:///nope.prod:grpc";

fn spawn(server: &FakeApiServer, target: &str, source: Source) -> Resolver {
    spawn_on(kuberesolver::Config::new(server.url()), source, target)
}

#[test]
fn both_formats_parse_with_prometheus_clients_parsers_and_say_what_status_says() {
    if !have_parser() {
        return;
    }
    let server = cluster();
    scale(&server, 2);
    let cart = [
        Pod::new("cart-1", [10, 0, 1, 1]),
        Pod::new("cart-2", [10, 0, 1, 2]).terminating(true),
    ];
    let ports = [("grpc", Some(9090))];
    server.set_endpoint_slice("prod", "cart-a", "cart", AddressType::Ipv4, &ports, &cart);
    server.forbid(Resource::Endpoints, true);
    let nope = spawn(&server, NOPE, Source::Endpoints);
    not_ready(&nope);
    server.forbid(Resource::Endpoints, false);
    // `nope` has no Endpoints object: an empty, resolved snapshot, after its failures.
    let echo = spawn(&server, ECHO, Source::Endpoints);
    let cart = spawn(&server, CART, Source::EndpointSlices);
    converges_to(&echo, &addrs(8080, [1, 2]));
    eventually("cart resolves", || cart.snapshot().len() == 1);
    eventually("nope resolves", || nope.status().resolved);
    eventually("both watch", || {
        echo.status().watching && cart.status().watching
    });

    let resolvers = [&echo, &cart, &nope];
    let text = Metrics::new().go_names(true).render(&resolvers);
    let open_metrics = Metrics::new()
        .format(MetricsFormat::OpenMetrics)
        .go_names(true)
        .render(&resolvers);
    let parsed = parsed(&text, &open_metrics);
    for (format, families) in [
        ("text", &parsed["text"]),
        ("openmetrics", &parsed["openmetrics"]),
    ] {
        let ready = |target| {
            value(
                families,
                "kuberesolver_ready_endpoints",
                "kuberesolver_ready_endpoints",
                target,
            )
        };
        assert_eq!(
            (ready(ECHO), ready(CART), ready(NOPE)),
            (Some(2.0), Some(1.0), Some(0.0)),
            "{format}"
        );
        assert_eq!(
            family(families, "kuberesolver_ready_endpoints")["type"],
            "gauge"
        );
        let counter = family(families, "kuberesolver_lists");
        assert_eq!(
            counter["type"], "counter",
            "{format}: the family is named without _total"
        );
        let lists = |r: &Resolver| {
            value(
                families,
                "kuberesolver_lists",
                "kuberesolver_lists_total",
                &r.target().to_string(),
            )
        };
        assert_eq!(
            lists(&echo),
            Some(echo.status().counters.lists as f64),
            "{format}"
        );
        let errors = value(
            families,
            "kuberesolver_errors",
            "kuberesolver_errors_total",
            NOPE,
        );
        assert!(errors.is_some_and(|e| e >= 1.0), "{format}: {errors:?}");
        let error_at = value(
            families,
            "kuberesolver_last_error_timestamp_seconds",
            "kuberesolver_last_error_timestamp_seconds",
            NOPE,
        );
        let expected = nope
            .status()
            .last_error_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        assert!(
            error_at
                .zip(expected)
                .is_some_and(|(got, want)| (got - want.as_secs_f64()).abs() < 0.01),
            "{format}: {error_at:?} {expected:?}"
        );
        let stale = value(
            families,
            "kuberesolver_staleness_seconds",
            "kuberesolver_staleness_seconds",
            ECHO,
        );
        assert!(
            stale.is_some_and(|s| (0.0..60.0).contains(&s)),
            "{format}: {stale:?}"
        );
        let healthy = value(
            families,
            "kuberesolver_healthy",
            "kuberesolver_healthy",
            ECHO,
        );
        assert_eq!(healthy, Some(1.0), "{format}");
        let info = if format == "text" {
            "kuberesolver_source_info"
        } else {
            "kuberesolver_source"
        };
        let source = family(families, info)["samples"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s[1]["target"] == CART))
            .map(|s| s[1]["source"].clone());
        assert_eq!(source, Some("EndpointSlices".into()), "{format}");
        let go = value(
            families,
            "kuberesolver_addresses_total",
            "kuberesolver_addresses_total",
            "kubernetes://prod/echo:grpc",
        );
        assert_eq!(go, Some(2.0), "{format}: Go's name and label");
    }
    let om = &parsed["openmetrics"];
    assert_eq!(family(om, "kuberesolver_source")["type"], "info");
    assert_eq!(
        family(om, "kuberesolver_staleness_seconds")["unit"],
        "seconds"
    );
}

#[test]
fn the_strict_parser_refuses_what_the_exposition_must_not_do() {
    if !have_parser() {
        return;
    }
    // The check has teeth: the same exposition without `# EOF`, or with a counter family
    // named `_total`, is refused.
    let server = cluster();
    scale(&server, 1);
    let echo = spawn(&server, ECHO, Source::Endpoints);
    converges_to(&echo, &addrs(8080, [1]));
    let text = Metrics::new().render(&[&echo]);
    let good = Metrics::new()
        .format(MetricsFormat::OpenMetrics)
        .render(&[&echo]);
    let refused = |open_metrics: &str| !run_parser(&text, open_metrics).status.success();
    assert!(!refused(&good));
    assert!(refused(good.trim_end_matches("# EOF\n")));
    assert!(refused(&good.replace(
        "# TYPE kuberesolver_lists counter",
        "# TYPE kuberesolver_lists_total counter"
    )));
}

#[test]
fn the_metrics_example_serves_both_formats_by_the_accept_header() {
    let Some(path) = example("metrics") else {
        missing_prerequisite("the metrics example binary (`cargo test` builds it)");
        return;
    };
    let mut child = Command::new(path)
        .args(["--listen", "127.0.0.1:0", "--for", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8_lossy(&first).into_owned();
    let addr = first
        .strip_prefix("serving http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("the example says where it serves: {first:?}"))
        .to_owned();
    let scrape = |accept: Option<&str>| {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n").expect("write");
        let mut response = String::new();
        conn.read_to_string(&mut response).expect("read");
        response
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = scrape(Some(prometheus));
    let text = scrape(None);
    let _ = child.kill();
    let _ = child.wait();
    assert!(om.starts_with("HTTP/1.1 200 OK\r\n"), "{om}");
    assert!(
        om.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("kuberesolver_ready_endpoints{target=\"kubernetes:///echo.prod:grpc\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("kuberesolver_ready_endpoints{target=\"kubernetes:///cart.prod:grpc\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("kuberesolver_addresses_total{target=\"kubernetes://prod/cart:grpc\"} 2\n"),
        "{text}"
    );
    if have_parser() {
        let body = |r: &str| {
            r.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default()
        };
        let both = parsed(&body(&text), &body(&om));
        let publishes = &family(&both["openmetrics"], "kuberesolver_publishes")["samples"];
        assert_eq!(publishes.as_array().map(Vec::len), Some(2), "{publishes}");
    }
}
