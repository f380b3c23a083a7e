//! Against hand-written servers that do what the testkit will not: an endless event line and
//! an endless error body cannot grow memory past the caps, and a watch that stays silent (no
//! bookmark) until its timeoutSeconds is renewed at once, not backed off.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kuberesolver::{Config, ErrorKind, Source};
use support::*;

const LIST: &str = r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"echo","resourceVersion":"7"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"name":"grpc","port":8080}]}]}]}"#;

/// Reads one request head; returns its request line.
fn request_line(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut line = String::new();
    while reader.read_line(&mut line).ok()? > 2 {
        line.clear();
    }
    Some(first)
}

/// A server whose lists are fine and whose watches (or errors) never end: `endless` writes
/// the hostile answer until the client goes away. Counts the bytes it managed to send.
fn hostile(
    endless: fn(&mut TcpStream, &str) -> std::io::Result<()>,
) -> (String, Arc<AtomicU64>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent2, stop2) = (sent.clone(), stop.clone());
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let sent = sent2.clone();
            let stop = stop2.clone();
            std::thread::spawn(move || {
                while let Some(line) = request_line(&stream) {
                    if line.contains("watch=true") || line.contains("hostile") {
                        let finished = endless(&mut stream, &line);
                        sent.fetch_add(1, Ordering::Relaxed);
                        // A body that ended cleanly leaves the connection open for the next
                        // request, as a real server does; a broken one ends it.
                        if finished.is_err() {
                            return;
                        }
                        continue;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        LIST.len()
                    );
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(LIST.as_bytes()))
                        .is_err()
                        || stop.load(Ordering::Relaxed)
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, sent, stop)
}

/// A watch whose first event line never ends: 1 MiB chunks of `a`, up to 64 MiB.
fn endless_line(stream: &mut TcpStream, _request: &str) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
        stream.write_all(&chunk)?;
        stream.write_all(b"\r\n")?;
    }
    Ok(())
}

/// An error answer whose body never ends.
fn endless_error(stream: &mut TcpStream, _request: &str) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let chunk = vec![b'e'; 1 << 20];
    for _ in 0..64 {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
        stream.write_all(&chunk)?;
        stream.write_all(b"\r\n")?;
    }
    Ok(())
}

/// Resident memory of this process in KiB (Linux), for a loose bound.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn an_endless_event_line_is_dropped_at_the_cap_and_the_last_good_snapshot_stays() {
    let (url, watches, stop) = hostile(endless_line);
    let before = rss_kib();
    let r = with_fast_retries(kuberesolver::Resolver::builder(
        "kubernetes:///echo.prod:grpc",
    ))
    .config(Config::new(url))
    .source(Source::Endpoints)
    .max_event_size(1 << 20)
    .spawn()
    .expect("spawn");
    let first = r.wait_ready(PATIENCE).expect("the list resolves");
    eventually("the over-long line is reported", || {
        r.status()
            .last_error
            .is_some_and(|e| e.kind() == ErrorKind::Decode && e.to_string().contains("longer than"))
    });
    eventually("it relisted and watched again", || {
        watches.load(Ordering::Relaxed) >= 2
    });
    assert_eq!(r.snapshot().version(), first.version(), "nothing published");
    assert_eq!(&r.addresses()[..], addrs(8080, [1]));
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        // The server sent up to 64 MiB per watch; the client kept at most the 1 MiB cap
        // plus a read buffer. Allow generous slack for the allocator and other tests.
        assert!(
            after < before + 24 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn an_endless_error_body_is_read_only_up_to_its_cap() {
    let (url, answered, stop) = hostile(endless_error);
    let r = with_fast_retries(kuberesolver::Resolver::builder(
        "kubernetes:///hostile.prod:grpc",
    ))
    .config(Config::new(url))
    .source(Source::Endpoints)
    .spawn()
    .expect("spawn");
    eventually("the 500 is reported", || {
        r.status()
            .last_error
            .is_some_and(|e| e.status() == Some(500))
    });
    let error = r.status().last_error.expect("error");
    assert!(
        error.to_string().len() < 2000,
        "the message is capped: {} bytes",
        error.to_string().len()
    );
    eventually("retried", || answered.load(Ordering::Relaxed) >= 2);
    stop.store(true, Ordering::Relaxed);
}

/// A watch that sends nothing, not even a bookmark, and ends cleanly at its timeoutSeconds.
fn silent_until_timeout(stream: &mut TcpStream, request: &str) -> std::io::Result<()> {
    let seconds: u64 = request
        .split(['?', '&', ' '])
        .find_map(|p| p.strip_prefix("timeoutSeconds="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    std::thread::sleep(Duration::from_secs(seconds));
    stream.write_all(b"0\r\n\r\n")
}

#[test]
fn a_quiet_watch_without_bookmarks_that_ends_on_time_is_renewed_at_once() {
    let (url, watches, stop) = hostile(silent_until_timeout);
    // Default backoff: if a quiet, on-time clean end counted as a failure, the third watch
    // would come only after backoffs of 0.5-1 s and then 0.5-2 s.
    let r = kuberesolver::Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(url))
        .source(Source::Endpoints)
        .watch_timeout(Duration::from_secs(1))
        .spawn()
        .expect("spawn");
    r.wait_ready(PATIENCE).expect("ready");
    let started = std::time::Instant::now();
    eventually("four watches ended", || {
        watches.load(Ordering::Relaxed) >= 4
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(5200),
        "four 1 s watches took {took:?}"
    );
    assert_eq!(r.status().counters.errors, 0);
    stop.store(true, Ordering::Relaxed);
}
