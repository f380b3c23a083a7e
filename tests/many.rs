//! Many resolvers on one API server: each resolves its own Service, and when the server
//! restarts they all come back without a thundering herd; resolvers of one Service share one
//! watch, each with its own subscriptions, and the watch outlives all but the last of them.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use kuberesolver::testkit::{FakeApiServer, Pod};
use kuberesolver::{Config, Resolver, Source, Updates};
use support::*;

const SERVICES: usize = 100;

/// The pods of service `svc-{i}` at generation `generation`: `1 + (i + generation) % 3`
/// pods with IPs `10.{generation}.{i}.k`.
fn service_pods(i: usize, generation: u8) -> Vec<Pod> {
    let count = 1 + (i + generation as usize) % 3;
    (1..=count as u8)
        .map(|k| {
            Pod::new(
                format!("svc-{i}-{generation}-{k}"),
                [10, generation, i as u8, k],
            )
        })
        .collect()
}

fn service_addrs(i: usize, generation: u8) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = service_pods(i, generation)
        .iter()
        .map(|p| SocketAddr::new(p.ip, 8080))
        .collect();
    addrs.sort();
    addrs
}

fn publish(server: &FakeApiServer, i: usize, generation: u8) {
    server.set_endpoints(
        "many",
        &format!("svc-{i}"),
        &[("grpc", 8080)],
        &service_pods(i, generation),
    );
}

fn target(i: usize) -> String {
    format!("kubernetes:///svc-{i}.many:grpc")
}

/// Each resolver `i` has its Service's one pod, and every resolver has its watch open.
fn all_converge_and_watch(server: &FakeApiServer, resolvers: &[Resolver]) {
    for (i, r) in resolvers.iter().enumerate() {
        converges_to(r, &service_addrs(i, 1));
    }
    assert!(
        server.wait_for_watches(SERVICES, PATIENCE),
        "one watch each: {} open",
        server.open_watches()
    );
}

#[test]
fn a_hundred_resolvers_on_a_hundred_services_each_resolve_and_follow_their_own() {
    let server = cluster();
    for i in 0..SERVICES {
        publish(&server, i, 1);
    }
    let resolvers: Vec<Resolver> = (0..SERVICES)
        .map(|i| builder(&server, &target(i)).spawn().expect("spawn"))
        .collect();
    all_converge_and_watch(&server, &resolvers);
    // Every Service changes at once; each resolver sees its own change only.
    for i in 0..SERVICES {
        publish(&server, i, 2);
    }
    for (i, r) in resolvers.iter().enumerate() {
        converges_to(r, &service_addrs(i, 2));
    }
    for (i, r) in resolvers.iter().enumerate() {
        let status = r.status();
        assert_eq!(status.counters.errors, 0, "svc-{i}: {status:#?}");
        assert_eq!(status.counters.lists, 1, "svc-{i}: {status:#?}");
    }
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A text histogram of `sorted` in 10 buckets between its min and max.
fn histogram(sorted: &[Duration]) -> String {
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let width = (max - min).max(Duration::from_millis(1)) / 10;
    let mut counts = [0usize; 10];
    for d in sorted {
        let bucket = ((*d - min).as_nanos() / width.as_nanos()).min(9) as usize;
        counts[bucket] += 1;
    }
    let mut out = String::new();
    for (b, count) in counts.iter().enumerate() {
        let from = min + width * b as u32;
        out.push_str(&format!(
            "  {:>5} ms .. {:>5} ms {:>3} {}\n",
            from.as_millis(),
            (from + width).as_millis(),
            count,
            "#".repeat(*count)
        ));
    }
    out
}

#[test]
fn after_a_server_restart_all_reconnect_spread_out_and_converge_to_the_new_truth() {
    let server = cluster();
    for i in 0..SERVICES {
        publish(&server, i, 1);
    }
    // The default backoff policy: the first retry is drawn from [0.5 s, 1 s].
    let resolvers: Vec<Resolver> = (0..SERVICES)
        .map(|i| {
            Resolver::builder(target(i))
                .config(Config::new(server.url()))
                .source(Source::Endpoints)
                .spawn()
                .expect("spawn")
        })
        .collect();
    all_converge_and_watch(&server, &resolvers);

    // The restart: every watch is cut at the same moment; a tenth of the Services change
    // while the server is away.
    server.clear_requests();
    let restart = Instant::now();
    server.stop_listening();
    assert_eq!(server.open_watches(), 0, "every watch is cut");
    let changed: Vec<usize> = (0..SERVICES).step_by(10).collect();
    for &i in &changed {
        publish(&server, i, 2);
    }
    server.resume_listening().expect("resume");
    let cut = restart.elapsed();

    for (i, r) in resolvers.iter().enumerate() {
        let generation = if changed.contains(&i) { 2 } else { 1 };
        converges_to(r, &service_addrs(i, generation));
    }
    assert!(
        server.wait_for_watches(SERVICES, PATIENCE),
        "one watch each again: {} open",
        server.open_watches()
    );

    // The first request of each resolver after the restart.
    let mut first: BTreeMap<String, Instant> = BTreeMap::new();
    for q in server.requests() {
        let service = q.param("fieldSelector").unwrap_or_default().to_string();
        first.entry(service).or_insert(q.at);
    }
    assert_eq!(first.len(), SERVICES, "every resolver came back: {first:?}");
    let mut offsets: Vec<Duration> = first.values().map(|at| *at - restart).collect();
    offsets.sort();
    let (min, p10, p50, p90, max) = (
        offsets[0],
        quantile(&offsets, 0.1),
        quantile(&offsets, 0.5),
        quantile(&offsets, 0.9),
        offsets[offsets.len() - 1],
    );
    let ms = |d: Duration| d.as_millis();
    println!(
        "first requests of {SERVICES} resolvers after the restart (server away for {} ms), \
         offsets from the restart:\nmin {} ms, p10 {} ms, p50 {} ms, p90 {} ms, max {} ms\n{}",
        ms(cut),
        ms(min),
        ms(p10),
        ms(p50),
        ms(p90),
        ms(max),
        histogram(&offsets)
    );
    for (i, r) in resolvers.iter().enumerate() {
        let status = r.status();
        assert!(
            status.counters.errors >= 1 && status.counters.reconnects >= 1,
            "svc-{i} noticed the cut as a failure: {status:#?}"
        );
    }
    // How the retries spread over the window is the backoff policy's, proven by its unit
    // tests (`backoff::tests`); wall-clock spread on a loaded machine proves nothing. What
    // the clock can show: none came back before the floor.
    assert!(
        min >= Duration::from_millis(400),
        "a resolver came back at once ({min:?}), before the backoff floor"
    );
}

// ----- resolvers of one Service share one watch -----

/// Lists and watches in the server's request log.
fn lists_and_watches(server: &FakeApiServer) -> (usize, usize) {
    let requests = server.requests();
    (
        requests.iter().filter(|q| q.is_list()).count(),
        requests.iter().filter(|q| q.is_watch()).count(),
    )
}

/// `updates` hands over what it holds, then ends.
fn ends(updates: &Updates) {
    loop {
        match updates.recv_timeout(PATIENCE) {
            Ok(_) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => panic!("the subscription did not end"),
        }
    }
}

#[test]
fn fifty_resolvers_of_one_service_share_one_watch_and_each_goes_on_when_any_other_is_dropped() {
    let server = cluster();
    publish(&server, 0, 1);
    let mut resolvers: Vec<Resolver> = (0..50)
        .map(|_| builder(&server, &target(0)).spawn().expect("spawn"))
        .collect();
    for r in &resolvers {
        converges_to(r, &service_addrs(0, 1));
    }
    eventually("every resolver watching", || {
        resolvers.iter().all(|r| r.status().watching)
    });
    assert_eq!(
        lists_and_watches(&server),
        (1, 1),
        "one list and one watch for 50 resolvers: {:?}",
        server.requests()
    );
    assert_eq!(server.open_connections(), 1);
    let mut updates: Vec<Updates> = resolvers.iter().map(Resolver::updates).collect();

    // Every change reaches every resolver, and every subscription.
    for generation in 2..=3 {
        publish(&server, 0, generation);
        for (r, u) in resolvers.iter().zip(&updates) {
            converges_to(r, &service_addrs(0, generation));
            let seen = u.recv_timeout(PATIENCE).expect("a snapshot");
            let latest = u.try_iter().last().unwrap_or(seen);
            assert_eq!(latest.addresses()[..], service_addrs(0, generation)[..]);
        }
    }

    // Dropping one, the first (which started the watch) included, ends its own subscriptions
    // only; the others go on, on the same watch.
    for i in [17, 0] {
        drop(resolvers.remove(i));
        ends(&updates.remove(i));
        let generation = 4 + i as u8 % 2;
        publish(&server, 0, generation);
        for (r, u) in resolvers.iter().zip(&updates) {
            converges_to(r, &service_addrs(0, generation));
            assert!(u.recv_timeout(PATIENCE).is_ok(), "still subscribed");
        }
    }
    assert_eq!(resolvers.len(), 48);
    assert_eq!(
        lists_and_watches(&server),
        (1, 1),
        "{:?}",
        server.requests()
    );

    // The last one out stops the watch.
    drop(resolvers);
    for u in &updates {
        ends(u);
    }
    eventually("the watch is closed", || server.open_connections() == 0);
}

#[test]
fn resolvers_of_one_service_on_two_ports_share_the_watch_and_each_gets_its_port() {
    let server = cluster();
    let pods = service_pods(0, 1);
    let ports = [("grpc", 8080), ("metrics", 9090)];
    server.set_endpoints("many", "svc-0", &ports, &pods);
    let port_of = |port: u16| -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = pods.iter().map(|p| SocketAddr::new(p.ip, port)).collect();
        addrs.sort();
        addrs
    };
    let grpc = builder(&server, "kubernetes:///svc-0.many:grpc")
        .spawn()
        .expect("spawn");
    converges_to(&grpc, &port_of(8080));
    // Joins the running watch, and has its port's snapshot without waiting for an event.
    let metrics = builder(&server, "kubernetes:///svc-0.many:metrics")
        .spawn()
        .expect("spawn");
    converges_to(&metrics, &port_of(9090));
    let by_number = builder(&server, "kubernetes:///svc-0.many:9090")
        .spawn()
        .expect("spawn");
    converges_to(&by_number, &port_of(9090));
    assert_eq!(lists_and_watches(&server).0, 1, "{:?}", server.requests());
    assert_eq!(server.open_connections(), 1);
    drop(grpc);
    let more: Vec<Pod> = service_pods(0, 1)
        .into_iter()
        .chain(service_pods(1, 1))
        .collect();
    server.set_endpoints("many", "svc-0", &ports, &more);
    let grown = |port: u16| -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = more.iter().map(|p| SocketAddr::new(p.ip, port)).collect();
        addrs.sort();
        addrs
    };
    converges_to(&metrics, &grown(9090));
    converges_to(&by_number, &grown(9090));
}

#[test]
fn resolvers_that_differ_in_credentials_or_settings_have_watches_of_their_own() {
    let server = cluster();
    publish(&server, 0, 1);
    let expected = service_addrs(0, 1);
    let same = || builder(&server, &target(0));
    let resolvers = [
        same().spawn(),
        same().spawn(),
        same().watch_timeout(Duration::from_secs(60)).spawn(),
        same().max_event_size(1 << 20).spawn(),
        same().config(Config::new(server.url()).token("a")).spawn(),
    ];
    for r in &resolvers {
        converges_to(r.as_ref().expect("spawn"), &expected);
    }
    assert!(
        server.wait_for_watches(4, PATIENCE),
        "four watches for five resolvers"
    );
    assert_eq!(server.open_watches(), 4);
}
