//! Against hand-written servers that do what the testkit will not: an endless event line and
//! an endless error body are read up to their caps and no further (the server sends them in
//! stages and watches when the client hangs up), and a watch that stays silent (no bookmark)
//! until its timeoutSeconds is renewed at once, not backed off.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuberesolver::{Backoff, Config, ErrorKind, Resolver, Source};
use support::*;

const LIST: &str = r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"echo","resourceVersion":"7"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"name":"grpc","port":8080}]}]}]}"#;

const MIB: u64 = 1 << 20;

/// The tests that measure this process's memory run one at a time.
static MEMORY: Mutex<()> = Mutex::new(());

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

/// Counts the bytes written through it.
struct Counting<'a> {
    stream: &'a mut TcpStream,
    written: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// How far a client took a [`staged`] answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HungUp {
    /// Before it had `early` bytes: it stopped short of its cap.
    Early,
    /// Once it had `late` bytes, and before any more came: it stopped at its cap.
    AtTheCap,
    /// Not even then: it read on past the cap.
    Never,
    /// Not a staged answer (it ended on its own).
    NotAsked,
}

/// One hostile answer: the bytes written, and when the client hung up.
#[derive(Clone, Copy, Debug)]
struct Answer {
    written: u64,
    hung_up: HungUp,
}

/// How a hostile server answers a watch (or any request for the Service `hostile`).
type Endless = fn(&mut Counting<'_>, &str) -> std::io::Result<HungUp>;

/// A server whose lists are fine and whose watches (or errors) are hostile: `endless` writes
/// its answer until it is done or the client goes away, and each hostile answer is recorded.
struct Hostile {
    url: String,
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    fn start(endless: Endless) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (answers2, stop2) = (answers.clone(), stop.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (answers, stop) = (answers2.clone(), stop2.clone());
                std::thread::spawn(move || serve(stream, endless, &answers, &stop));
            }
        });
        Hostile { url, answers, stop }
    }

    /// Every hostile answer that is over, in order.
    fn answers(&self) -> Vec<Answer> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, endless: Endless, answers: &Mutex<Vec<Answer>>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    // A client that neither reads nor closes ends the answer too.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    while let Some(line) = request_line(&stream) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if line.contains("watch=true") || line.contains("hostile") {
            let mut out = Counting {
                stream: &mut stream,
                written: 0,
            };
            let outcome = endless(&mut out, &line);
            let answer = Answer {
                written: out.written,
                hung_up: *outcome.as_ref().unwrap_or(&HungUp::NotAsked),
            };
            answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(answer);
            // A body that ended cleanly leaves the connection open for the next request,
            // as a real server does; any other ends it.
            match outcome {
                Ok(HungUp::NotAsked) => continue,
                _ => {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            LIST.len()
        );
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(LIST.as_bytes()));
        if sent.is_err() {
            return;
        }
    }
}

/// Whether the client closes the connection within `wait` (it sends nothing meanwhile).
fn hangs_up_within(stream: &mut TcpStream, wait: Duration) -> bool {
    use std::io::{ErrorKind as Io, Read};
    if stream.set_read_timeout(Some(wait)).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), Io::WouldBlock | Io::TimedOut | Io::Interrupted),
    }
}

/// Writes `bytes` of `byte` as chunks of at most 64 KiB.
fn chunks(out: &mut Counting<'_>, byte: u8, bytes: u64) -> std::io::Result<()> {
    let chunk = vec![byte; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let piece = &chunk[..left.min(chunk.len() as u64) as usize];
        out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
        out.write_all(piece)?;
        out.write_all(b"\r\n")?;
        left -= piece.len() as u64;
    }
    out.flush()
}

/// A chunked body of `byte`s that never ends, served in stages that measure what the client
/// reads: `early` bytes, after which a client with a cap above them must still be reading;
/// then up to `late` bytes, after which a client with a cap below them must hang up; then,
/// for a client that does not, 64 MiB more.
fn staged(
    out: &mut Counting<'_>,
    head: &str,
    byte: u8,
    early: u64,
    late: u64,
) -> std::io::Result<HungUp> {
    out.write_all(head.as_bytes())?;
    chunks(out, byte, early)?;
    // A client still reading blocks for more; one that stopped short hangs up at once. (A
    // slow client hanging up late would be missed, never wrongly blamed.)
    if hangs_up_within(out.stream, Duration::from_millis(500)) {
        return Ok(HungUp::Early);
    }
    chunks(out, byte, late - early)?;
    // Well within the test's patience, so that a client that reads on is named as such.
    if hangs_up_within(out.stream, Duration::from_secs(5)) {
        return Ok(HungUp::AtTheCap);
    }
    // Whatever happens now, it read on; the count shows how far.
    let _ = chunks(out, byte, 64 * MIB);
    Ok(HungUp::Never)
}

const CHUNKED_200: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A watch whose first event line never ends, staged around the default cap (16 MiB).
fn endless_line(out: &mut Counting<'_>, _request: &str) -> std::io::Result<HungUp> {
    staged(
        out,
        CHUNKED_200,
        b'a',
        LINE_CAP - 64 * 1024,
        LINE_CAP + 64 * 1024,
    )
}

/// The same around a cap of 1 MiB.
fn endless_line_1_mib(out: &mut Counting<'_>, _request: &str) -> std::io::Result<HungUp> {
    staged(out, CHUNKED_200, b'a', MIB - 64 * 1024, MIB + 64 * 1024)
}

/// The default event line cap.
const LINE_CAP: u64 = 16 * MIB;

/// The error body cap.
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// A 500 whose body never ends, staged around the error body cap (64 KiB).
fn endless_error(out: &mut Counting<'_>, _request: &str) -> std::io::Result<HungUp> {
    let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    staged(
        out,
        head,
        b'e',
        ERROR_BODY_CAP - 1024,
        ERROR_BODY_CAP + 1024,
    )
}

/// Resident memory of this process in KiB (Linux), for a loose bound.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A resolver of `{service}.prod:grpc` on `hostile`; `max_event_size` when given.
fn resolver_on(hostile: &Hostile, service: &str, max_event_size: Option<usize>) -> Resolver {
    let builder = with_fast_retries(Resolver::builder(format!(
        "kubernetes:///{service}.prod:grpc"
    )))
    .config(Config::new(&hostile.url))
    .source(Source::Endpoints);
    match max_event_size {
        Some(bytes) => builder.max_event_size(bytes),
        None => builder,
    }
    .spawn()
    .expect("spawn")
}

/// Every answer was read up to the cap and no further.
fn stopped_at_the_cap(answers: &[Answer]) {
    let taken: Vec<u64> = answers.iter().map(|a| a.written).collect();
    println!("bytes sent per answer before the client hung up: {taken:?}");
    assert!(
        answers.iter().all(|a| a.hung_up == HungUp::AtTheCap),
        "the client must read up to its cap and hang up there: {answers:?}"
    );
}

/// The watch's endless line is dropped at `cap` (read up to it, and no further), the state
/// relisted, nothing published, memory bounded.
fn endless_line_is_dropped_at(cap: u64, endless: Endless, max_event_size: Option<usize>) {
    let _memory = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let hostile = Hostile::start(endless);
    let before = rss_kib();
    let r = resolver_on(&hostile, "echo", max_event_size);
    let first = r.wait_ready(PATIENCE).expect("the list resolves");
    eventually("a watch was answered", || !hostile.answers().is_empty());
    stopped_at_the_cap(&hostile.answers());
    eventually("it relisted and watched again", || {
        hostile.answers().len() >= 2
    });
    stopped_at_the_cap(&hostile.answers());
    let error = r
        .status()
        .last_error
        .expect("the over-long line is reported");
    assert_eq!(error.kind(), ErrorKind::Decode, "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("longer than {cap} bytes")),
        "{error}"
    );
    assert_eq!(r.snapshot().version(), first.version(), "nothing published");
    assert_eq!(&r.addresses()[..], addrs(8080, [1]));
    assert!(r.status().counters.relists >= 1);
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        // At most the cap, rounded up by the buffer's growth, plus a read buffer; generous
        // slack for the allocator and the tests running beside this one.
        let bound = before + 2 * cap / 1024 + 24 * 1024;
        assert!(
            after < bound,
            "RSS grew from {before} KiB to {after} KiB (bound {bound} KiB)"
        );
    }
}

#[test]
fn an_endless_event_line_is_dropped_at_the_cap_and_the_last_good_snapshot_stays() {
    endless_line_is_dropped_at(LINE_CAP, endless_line, None);
}

#[test]
fn a_lower_event_line_cap_set_on_the_builder_is_honoured() {
    endless_line_is_dropped_at(MIB, endless_line_1_mib, Some(1 << 20));
}

#[test]
fn an_endless_error_body_is_read_only_up_to_its_cap() {
    let hostile = Hostile::start(endless_error);
    let r = resolver_on(&hostile, "hostile", None);
    eventually("an error answer", || !hostile.answers().is_empty());
    stopped_at_the_cap(&hostile.answers());
    eventually("retried", || hostile.answers().len() >= 2);
    stopped_at_the_cap(&hostile.answers());
    let error = r.status().last_error.expect("the 500 is reported");
    assert_eq!(error.status(), Some(500), "{error}");
}

/// A watch that sends nothing, not even a bookmark, and ends cleanly at its timeoutSeconds.
fn silent_until_timeout(out: &mut Counting<'_>, request: &str) -> std::io::Result<HungUp> {
    let seconds: u64 = request
        .split(['?', '&', ' '])
        .find_map(|p| p.strip_prefix("timeoutSeconds="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    out.write_all(CHUNKED_200.as_bytes())?;
    std::thread::sleep(Duration::from_secs(seconds));
    out.write_all(b"0\r\n\r\n")?;
    Ok(HungUp::NotAsked)
}

#[test]
fn a_quiet_watch_without_bookmarks_that_ends_on_time_is_renewed_at_once() {
    let hostile = Hostile::start(silent_until_timeout);
    // A backoff of at least 20 s: if a quiet, on-time clean end counted as a failure, the
    // second watch would come only after it.
    let r = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(&hostile.url))
        .source(Source::Endpoints)
        .watch_timeout(Duration::from_secs(1))
        .backoff(
            Backoff::new()
                .initial(Duration::from_secs(30))
                .floor(Duration::from_secs(20))
                .cap(Duration::from_secs(30)),
        )
        .spawn()
        .expect("spawn");
    r.wait_ready(PATIENCE).expect("ready");
    let started = Instant::now();
    eventually("four watches ended", || hostile.answers().len() >= 4);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "four 1 s watches took {took:?}: backed off"
    );
    assert_eq!(r.status().counters.errors, 0);
}
