//! `metrics`: resolvers' health on a local `/metrics` page for Prometheus, served with std's
//! `TcpListener` (no HTTP crate).
//!
//! ```sh
//! cargo run --example metrics                                      # a simulated cluster
//! cargo run --example metrics -- kubernetes:///echo.prod:grpc      # a real one (kubeconfig or in-cluster)
//! curl -s http://127.0.0.1:9464/metrics
//! curl -s -H 'Accept: application/openmetrics-text;version=1.0.0' http://127.0.0.1:9464/metrics
//! ```
//!
//! Without a target it starts the testkit's fake API server with two Services in `prod`:
//! `echo` (two ready pods, read from Endpoints) and `cart` (two ready pods and a terminating
//! one, read from EndpointSlices), and resolves both. The format follows the scraper's `Accept` header (OpenMetrics for
//! Prometheus, text 0.0.4 otherwise); Go kuberesolver's gauge names are included.
//! `--listen ADDR` (default `127.0.0.1:9464`; port 0 picks one) and `--for SECONDS` (default:
//! until killed). The first line on stdout is `serving http://ADDR/metrics`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kuberesolver::testkit::{AddressType, FakeApiServer, Pod};
use kuberesolver::{Config, Metrics, MetricsFormat, Resolver, Source};

fn usage() -> ! {
    eprintln!("usage: metrics [TARGET...] [--listen ADDR] [--for SECONDS]");
    std::process::exit(2)
}

/// A simulated cluster with the Services `echo` and `cart` in `prod`.
fn simulated() -> std::io::Result<FakeApiServer> {
    let server = FakeApiServer::start()?;
    let echo = [
        Pod::new("echo-1", [10, 0, 0, 1]),
        Pod::new("echo-2", [10, 0, 0, 2]),
    ];
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &echo);
    let cart = [
        Pod::new("cart-1", [10, 0, 1, 1]),
        Pod::new("cart-2", [10, 0, 1, 2]),
        Pod::new("cart-3", [10, 0, 1, 3]).terminating(true),
    ];
    let ports = [("grpc", Some(9090))];
    server.set_endpoint_slice("prod", "cart-a", "cart", AddressType::Ipv4, &ports, &cart);
    Ok(server)
}

/// Answers one HTTP/1.x request on `stream`: the metrics at `/metrics`, 404 elsewhere.
fn answer(mut stream: TcpStream, resolvers: &[&Resolver]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut accept = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("accept") {
                accept = Some(value.trim().to_owned());
            }
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, content_type, body) = if path == "/metrics" {
        let metrics = Metrics::new()
            .format(MetricsFormat::from_accept(accept.as_deref()))
            .go_names(true);
        ("200 OK", metrics.content_type(), metrics.render(resolvers))
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut targets = Vec::new();
    let mut listen = "127.0.0.1:9464".to_owned();
    let mut run_for = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "--for" => {
                let secs: u64 = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
                run_for = Some(Duration::from_secs(secs));
            }
            "-h" | "--help" => usage(),
            target if !target.starts_with('-') => targets.push(target.to_owned()),
            _ => usage(),
        }
    }

    // Kept alive for as long as the resolvers read it.
    let mut _simulated = None;
    let resolvers: Vec<Resolver> = if targets.is_empty() {
        let server = simulated()?;
        let services = [
            ("kubernetes:///echo.prod:grpc", Source::Endpoints),
            ("kubernetes:///cart.prod:grpc", Source::EndpointSlices),
        ];
        let resolvers = services
            .into_iter()
            .map(|(target, source)| {
                Resolver::builder(target)
                    .config(Config::new(server.url()))
                    .source(source)
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        _simulated = Some(server);
        resolvers
    } else {
        targets
            .iter()
            .map(|t| Resolver::spawn(t))
            .collect::<Result<_, _>>()?
    };
    for resolver in &resolvers {
        if let Err(e) = resolver.wait_ready(Duration::from_secs(5)) {
            eprintln!("{}: {e}", resolver.target());
        }
    }

    let listener = TcpListener::bind(&listen)?;
    println!("serving http://{}/metrics", listener.local_addr()?);
    std::io::stdout().flush()?;
    let until = run_for.map(|d| Instant::now() + d);
    listener.set_nonblocking(true)?;
    let borrowed: Vec<&Resolver> = resolvers.iter().collect();
    while until.is_none_or(|t| Instant::now() < t) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                if let Err(e) = answer(stream, &borrowed) {
                    eprintln!("a scrape failed: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
