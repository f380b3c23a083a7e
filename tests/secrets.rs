//! The bearer token never appears in a log line (at any level, ureq's wire dump included), in
//! `Debug` output, or in an error. This file is its own test binary because it installs a
//! process-wide logger.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use kuberesolver::testkit::{Failure, FakeApiServer, Fault, Resource, TlsIdentity, TEST_CA_PEM};
use kuberesolver::{Backoff, Config, Resolver, Source};
use support::*;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.ZmFrZQ";
const ROTATED: &str = "eyJhbGciOiJSUzI1NiJ9.cm90YXRlZC10b2tlbg.c2lnbmVk";

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Every piece of the token at least 8 characters long: a wire dump cuts lines at 16 bytes,
/// so a leak would show as fragments, not as the whole token.
fn fragments(token: &str) -> Vec<&str> {
    let bytes = token.len();
    (0..bytes.saturating_sub(8))
        .filter(|i| token.is_char_boundary(*i) && token.is_char_boundary(i + 8))
        .map(|i| &token[i..i + 8])
        .collect()
}

fn assert_no_token(text: &str, what: &str) {
    for token in [TOKEN, ROTATED] {
        for fragment in fragments(token) {
            assert!(
                !text.contains(fragment),
                "{what} carries a piece of the token ({fragment:?}):\n{text}"
            );
        }
    }
}

#[test]
fn the_token_never_reaches_a_log_line_a_debug_output_or_an_error() {
    log::set_logger(&Capture).expect("the only logger");
    log::set_max_level(log::LevelFilter::Trace);

    let dir = std::env::temp_dir().join(format!("kuberesolver-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).expect("write");

    let mut debug = String::new();
    for tls in [false, true] {
        let mut builder = FakeApiServer::builder().token(Some(TOKEN.into()));
        if tls {
            builder = builder.tls(TlsIdentity::test_server());
        }
        let server = builder.start().expect("server");
        scale(&server, 2);
        let mut config = Config::new(server.url()).token_file(&token_file);
        if tls {
            config = config.ca_pem(TEST_CA_PEM);
        }
        // A forbidden first list, then a 401 after rotation, then a server error: every error path.
        server.forbid(Resource::Endpoints, true);
        let r = Resolver::builder("kubernetes:///echo.prod:grpc")
            .config(config.clone())
            .source(Source::Endpoints)
            .backoff(
                Backoff::new()
                    .initial(Duration::from_millis(50))
                    .floor(Duration::from_millis(20))
                    .cap(Duration::from_millis(200)),
            )
            .spawn()
            .expect("spawn");
        let not_ready = not_ready(&r);
        server.forbid(Resource::Endpoints, false);
        converges_to(&r, &addrs(8080, [1, 2]));
        std::fs::write(&token_file, ROTATED).expect("rotate");
        server.set_token(Some(ROTATED.into()));
        server.wait_for_watches(1, PATIENCE);
        server.inject(Fault::EndCleanly);
        scale(&server, 3);
        converges_to(&r, &addrs(8080, 1..=3));
        server.fail_next(1, Failure::InternalError);
        server.inject(Fault::Reset);
        eventually("the 500 was answered", || {
            server.requests().iter().any(|q| q.status == 500)
        });
        let status = r.status();
        assert!(
            server.requests().iter().any(|q| q.status == 401),
            "the rotation caused a 401"
        );
        debug.push_str(&format!(
            "{config:?}\n{r:?}\n{status:?}\n{not_ready:?}\n{not_ready}\n{:?}\n",
            server.requests()
        ));
        drop(r);
        std::fs::write(&token_file, TOKEN).expect("reset");
    }

    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    assert!(
        lines.contains("ureq_proto"),
        "the test must see ureq's TRACE wire dump, or it proves nothing"
    );
    assert!(lines.contains("TRACE"), "TRACE lines were captured");
    assert_no_token(&lines, "the log");
    assert_no_token(&debug, "Debug or Display output");
    let _ = std::fs::remove_dir_all(dir);
}
