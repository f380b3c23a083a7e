//! `watch`: a small debugging CLI for real clusters. It resolves a target and prints every
//! change as a table: when, what was added and removed, and each endpoint's zone, node and pod.
//!
//! ```sh
//! cargo run --example watch -- kubernetes:///echo.prod:grpc            # in a pod or with a kubeconfig
//! cargo run --example watch -- kubernetes:///echo.prod:grpc --server http://127.0.0.1:8001
//! cargo run --example watch -- kubernetes:///echo.prod:grpc --source endpoints --for 30
//! ```
//!
//! The configuration is inferred (`Config::infer`: in-cluster, else your kubeconfig) unless
//! `--server` names an API server (for example `kubectl proxy`). Press Ctrl-C to stop, or
//! give `--for SECONDS`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kuberesolver::{Config, Endpoint, Resolver, Snapshot, Source};

struct Args {
    target: String,
    server: Option<String>,
    source: Source,
    run_for: Option<Duration>,
}

fn usage() -> ! {
    eprintln!(
        "usage: watch TARGET [--server URL] [--source auto|endpoints|endpointslices] [--for SECONDS]\n\
         example: watch kubernetes:///echo.prod:grpc --server http://127.0.0.1:8001"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        target: String::new(),
        server: None,
        source: Source::Auto,
        run_for: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" => parsed.server = Some(args.next().unwrap_or_else(|| usage())),
            "--source" => {
                parsed.source = match args.next().as_deref() {
                    Some("auto") => Source::Auto,
                    Some("endpoints") => Source::Endpoints,
                    Some("endpointslices") => Source::EndpointSlices,
                    _ => usage(),
                }
            }
            "--for" => {
                let secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
                parsed.run_for = Some(Duration::from_secs(secs));
            }
            "-h" | "--help" => usage(),
            target if parsed.target.is_empty() && !target.starts_with('-') => {
                parsed.target = target.to_string()
            }
            _ => usage(),
        }
    }
    if parsed.target.is_empty() {
        usage();
    }
    parsed
}

/// `2026-11-25T20:15:00.123Z` without a date library.
fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

fn row(mark: &str, e: &Endpoint) -> String {
    let c = e.conditions();
    format!(
        "  {mark} {:<42} {:<12} {:<20} {:<36} {}",
        e.addr().to_string(),
        e.zone().unwrap_or("-"),
        e.node().unwrap_or("-"),
        e.pod().unwrap_or("-"),
        if c.terminating {
            "terminating"
        } else if c.serving {
            "serving"
        } else {
            ""
        },
    )
}

fn print_change(snapshot: &Snapshot, previous: &Snapshot) {
    let diff = snapshot.diff(previous);
    let at = snapshot.published_at().unwrap_or_else(SystemTime::now);
    println!(
        "{}  v{}  {} in use  (+{} -{}, {} draining)",
        timestamp(at),
        snapshot.version(),
        snapshot.len(),
        diff.added.len(),
        diff.removed.len(),
        diff.draining.len()
    );
    println!(
        "    {:<42} {:<12} {:<20} {:<36} STATE",
        "ADDRESS", "ZONE", "NODE", "POD"
    );
    for e in &diff.added {
        println!("{}", row("+", e));
    }
    let draining = |e: &Endpoint| diff.draining.iter().any(|d| d.addr() == e.addr());
    for e in diff.removed.iter().filter(|e| !draining(e)) {
        println!("{}", row("-", e));
    }
    for e in &diff.draining {
        println!("{}", row("~", e));
    }
    for e in snapshot
        .endpoints()
        .iter()
        .filter(|e| !diff.added.contains(e) && !diff.draining.contains(e))
    {
        println!("{}", row(" ", e));
    }
    println!();
}

fn main() {
    let args = parse_args();
    let mut builder = Resolver::builder(args.target.clone()).source(args.source);
    if let Some(server) = &args.server {
        builder = builder.config(Config::new(server.clone()));
    }
    let resolver = match builder.spawn() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot watch {}: {e}", args.target);
            std::process::exit(1);
        }
    };
    eprintln!("watching {} (Ctrl-C to stop)", resolver.target());
    let started = Instant::now();
    let updates = resolver.updates();
    let mut previous = resolver.snapshot();
    let mut reported_error = None;
    loop {
        if args.run_for.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        match updates.recv_timeout(Duration::from_secs(1)) {
            Ok(snapshot) => {
                print_change(&snapshot, &previous);
                previous = snapshot;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let status = resolver.status();
                let error = status.last_error.as_ref().map(|e| e.to_string());
                if error.is_some() && error != reported_error && !status.is_healthy() {
                    eprintln!(
                        "{}  trouble: {}",
                        timestamp(SystemTime::now()),
                        error.as_deref().unwrap_or("")
                    );
                    reported_error = error;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = resolver.status();
    eprintln!(
        "done: v{}, {} lists, {} watches, {} events, {} reconnects, {} errors",
        status.version,
        status.counters.lists,
        status.counters.watches,
        status.counters.events,
        status.counters.reconnects,
        status.counters.errors
    );
}
