//! Tests of the fake server through raw HTTP/1.1 over `std::net::TcpStream` (and rustls).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};

use super::*;

const EP: &str = "/api/v1/namespaces/prod/endpoints";
const ES: &str = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices";

trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A minimal HTTP/1.1 client: one connection, requests written by hand, responses
/// (Content-Length or chunked) read by hand.
struct Client {
    r: BufReader<Box<dyn Io>>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn new(server: &FakeApiServer) -> Client {
        let s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Client {
            r: BufReader::new(Box::new(s)),
        }
    }

    fn tls(server: &FakeApiServer, config: ClientConfig) -> Client {
        let s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let conn = ClientConnection::new(Arc::new(config), name).expect("client conn");
        Client {
            r: BufReader::new(Box::new(StreamOwned::new(conn, s))),
        }
    }

    fn send(&mut self, target: &str, headers: &[(&str, &str)]) -> io::Result<()> {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: kubernetes\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let w = self.r.get_mut();
        w.write_all(req.as_bytes())?;
        w.flush()
    }

    fn head(&mut self) -> io::Result<Head> {
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header");
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        Ok(Head { status, headers })
    }

    /// One chunk of a chunked body; `None` for the terminating chunk.
    fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut size = String::new();
        if self.r.read_line(&mut size)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(size.trim(), 16).map_err(io::Error::other)?;
        let mut data = vec![0u8; size];
        self.r.read_exact(&mut data)?;
        let mut crlf = [0u8; 2];
        self.r.read_exact(&mut crlf)?;
        assert_eq!(&crlf, b"\r\n");
        Ok((size > 0).then_some(data))
    }

    fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> (Head, Vec<u8>) {
        self.send(target, headers).expect("send");
        let head = self.head().expect("head");
        let len: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).expect("body");
        (head, body)
    }

    fn get_json(&mut self, target: &str) -> (u16, Value) {
        let (head, body) = self.get(target, &[]);
        (
            head.status,
            serde_json::from_slice(&body).expect("json body"),
        )
    }

    /// Starts a watch and checks the 200 chunked head.
    fn watch(&mut self, target: &str) -> Head {
        self.send(target, &[]).expect("send");
        let head = self.head().expect("head");
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        assert_eq!(head.header("content-type"), Some("application/json"));
        head
    }

    /// The next complete event (several chunks may make one event).
    fn event(&mut self) -> Value {
        let mut line = Vec::new();
        loop {
            let chunk = self.chunk().expect("chunk").expect("not the last chunk");
            line.extend_from_slice(&chunk);
            if line.ends_with(b"\n") {
                let text = std::str::from_utf8(&line).expect("utf-8");
                assert_eq!(
                    text.matches('\n').count(),
                    1,
                    "one event per chunk here: {text}"
                );
                return serde_json::from_str(text).expect("event json");
            }
        }
    }

    /// Reads until EOF; whatever arrived.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        v
    }
}

fn pods() -> Vec<Pod> {
    vec![
        Pod::new("echo-1", [10, 0, 0, 1]).node("n1"),
        Pod::new("echo-2", [10, 0, 0, 2]),
    ]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

#[test]
fn a_careless_server_ignores_selectors_on_lists_and_watches() {
    let server = FakeApiServer::builder()
        .ignore_selectors(true)
        .start()
        .expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("", 80)], &pods());
    server.set_endpoints("dev", "echo", &[("", 80)], &pods());
    let mut c = Client::new(&server);
    let (status, list) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho"));
    assert_eq!(status, 200);
    let names: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    assert_eq!(names, [&json!("echo"), &json!("other")]);
    let mut w = Client::new(&server);
    w.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=true"
    ));
    assert_eq!(w.event()["object"]["metadata"]["name"], "echo");
    assert_eq!(w.event()["object"]["metadata"]["name"], "other");
    // A name in the path still counts.
    let (status, one) = c.get_json(&format!("{EP}/other"));
    assert_eq!((status, &one["metadata"]["name"]), (200, &json!("other")));
}

#[test]
fn list_with_selectors() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("", 80)], &pods());
    server.set_endpoints("dev", "echo", &[("", 80)], &pods());
    server.set_endpoint_slice(
        "prod",
        "echo-a",
        "echo",
        AddressType::Ipv4,
        &[("grpc", Some(8080))],
        &pods(),
    );
    server.set_endpoint_slice("prod", "echo-b", "echo", AddressType::Ipv6, &[], &[]);
    let rv = server.set_endpoint_slice("prod", "other-a", "other", AddressType::Ipv4, &[], &pods());

    let mut c = Client::new(&server);
    let (status, list) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho"));
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "EndpointsList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["metadata"]["resourceVersion"], rv.as_str());
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert!(items[0].get("kind").is_none() && items[0].get("apiVersion").is_none());
    assert_eq!(items[0]["metadata"]["name"], "echo");
    assert_eq!(items[0]["metadata"]["namespace"], "prod");
    assert_eq!(items[0]["subsets"][0]["addresses"][1]["ip"], "10.0.0.2");

    let (_, all) = c.get_json(EP);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));

    let (status, slices) = c.get_json(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho"
    ));
    assert_eq!(status, 200);
    assert_eq!(slices["kind"], "EndpointSliceList");
    assert_eq!(slices["apiVersion"], "discovery.k8s.io/v1");
    let names: Vec<&str> = slices["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["echo-a", "echo-b"]);
    assert!(slices["items"][1]["endpoints"].is_null());

    let (status, empty) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Dnone"));
    assert_eq!(status, 200);
    assert_eq!(empty["items"], json!([]));

    let (status, err) = c.get_json(&format!("{EP}?fieldSelector=spec.foo%3Dbar"));
    assert_eq!(status, 400);
    assert_eq!(err["kind"], "Status");
    assert_eq!(err["reason"], "BadRequest");
    assert_eq!(err["code"], 400);

    // Everything above went over one kept-alive connection.
    assert_eq!(server.connections_accepted(), 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs
        .iter()
        .all(|r| r.is_list() && r.connection == reqs[0].connection));
    assert_eq!(reqs[0].param("fieldSelector"), Some("metadata.name=echo"));
    assert_eq!(
        reqs[2].param("labelSelector"),
        Some("kubernetes.io/service-name=echo")
    );
    assert_eq!(reqs[4].status, 400);
}

#[test]
fn get_one_object() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    let (head, body) = c.get(&format!("{EP}/echo"), &[]);
    assert_eq!(head.status, 200);
    assert!(head
        .header("warning")
        .is_some_and(|w| w.contains("deprecated")));
    let text = String::from_utf8(body).expect("utf-8");
    assert!(
        text.starts_with(r#"{"kind":"Endpoints","apiVersion":"v1","#),
        "{text}"
    );
    let obj: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(obj["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(server.get(Resource::Endpoints, "prod", "echo"), Some(obj));

    let (status, err) = c.get_json(&format!("{EP}/nope"));
    assert_eq!(status, 404);
    assert_eq!(err["reason"], "NotFound");
    assert_eq!(err["message"], r#"endpoints "nope" not found"#);
    assert!(server.requests()[0].is_get());

    let (head, body) = c.get("/api/v1/namespaces/prod/pods", &[]);
    assert_eq!(head.status, 404);
    assert_eq!(body, b"404 page not found\n");
}

#[test]
fn watch_from_zero_then_live_events() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion=0"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["kind"], "Endpoints");
    assert_eq!(ev["object"]["apiVersion"], "v1");
    assert_eq!(ev["object"]["metadata"]["name"], "echo");
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));

    server.set_endpoints("prod", "other", &[("grpc", 8080)], &[]); // not selected
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods()[..1]);
    let ev = c.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(
        ev["object"]["subsets"][0]["addresses"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let rv = server
        .delete(Resource::Endpoints, "prod", "echo")
        .expect("existed");
    let ev = c.event();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(ev["object"]["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
    assert_eq!(server.delete(Resource::Endpoints, "prod", "echo"), None);

    // `watch=` (empty) and `watch=true` mean true too; unset RV means "from now, with
    // synthetic ADDED".
    for w in ["watch=", "watch=true", "watch"] {
        let mut c = Client::new(&server);
        c.watch(&format!("{EP}?fieldSelector=metadata.name%3Dother&{w}"));
        assert_eq!(c.event()["type"], "ADDED");
    }
    assert!(server.requests().iter().filter(|r| r.is_watch()).count() == 4);
}

#[test]
fn resume_replays_only_later_events() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let rv2 = server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods());
    let rv4 = server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv2}&allowWatchBookmarks=true"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv4.as_str());
    assert_eq!(ev["object"]["subsets"][0]["ports"][0]["port"], 8082);
    let rv5 = server.set_endpoints("prod", "echo", &[("grpc", 8083)], &pods());
    let ev = c.event();
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv5.as_str());

    // A resourceVersion from the future: 504, as the real server after its wait.
    let mut c = Client::new(&server);
    let (status, err) = c.get_json(&format!("{EP}?watch=1&resourceVersion=999999"));
    assert_eq!(status, 504);
    assert_eq!(err["reason"], "Timeout");
}

#[test]
fn expired_after_compact_is_an_error_event_in_a_200_stream() {
    let server = FakeApiServer::start().expect("start");
    let old = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    server.compact();
    let horizon = server.resource_version();
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={old}"
    ));
    let ev = c.event();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(
        ev["object"],
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message": format!("too old resource version: {old} ({horizon})"),
               "reason":"Expired","code":410})
    );
    assert_eq!(c.chunk().expect("clean end"), None);
    // The connection stays usable, and resuming from the horizon works.
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={horizon}"
    ));
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    assert_eq!(
        c.event()["object"]["metadata"]["resourceVersion"],
        rv.as_str()
    );
    let expired: Vec<bool> = server.requests().iter().map(|r| r.expired).collect();
    assert_eq!(
        expired,
        [true, false],
        "the log tells the two watches apart"
    );
}

#[test]
fn bookmarks_arrive() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
    ));
    let rv = server.set_endpoints("prod", "other", &[("grpc", 8080)], &pods()); // invisible
    let (ev, took) = timed(|| c.event());
    assert!(took < Duration::from_secs(1));
    assert_eq!(
        ev,
        json!({"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion": rv}}})
    );
    assert_eq!(c.event()["type"], "BOOKMARK");

    let rv = server.set_endpoint_slice("prod", "echo-a", "echo", AddressType::Ipv4, &[], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho&watch=1&resourceVersion={rv}&allowWatchBookmarks=1"
    ));
    assert_eq!(
        c.event(),
        json!({"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",
               "metadata":{"resourceVersion": rv},"addressType":"","endpoints":null,"ports":null}})
    );

    // No bookmarks unless asked: the watch stays quiet.
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
    ));
    assert_eq!(c.chunk().expect("clean end"), None);
}

#[test]
fn timeout_ends_with_the_zero_chunk() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={rv}&timeoutSeconds=3&allowWatchBookmarks=true"
    ));
    // The pre-timeout bookmark (half-way for a 3 s watch), then the end at 3 s. Lower
    // bounds only: load delays, it never hastens.
    let (ev, to_bookmark) = timed(|| c.event());
    assert_eq!(ev["type"], "BOOKMARK");
    let (end, to_end) = timed(|| c.chunk().expect("clean end"));
    assert_eq!(end, None);
    assert!(
        to_end >= Duration::from_millis(750),
        "the bookmark came well before the end: {to_bookmark:?}, then {to_end:?}"
    );
    assert!(
        to_bookmark + to_end >= Duration::from_millis(2900),
        "ended at timeoutSeconds, not before: {:?}",
        to_bookmark + to_end
    );
    // Keep-alive after a clean end.
    let (status, _) = c.get_json(EP);
    assert_eq!(status, 200);
    assert_eq!(server.connections_accepted(), 1);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // max_watch_timeout caps long watches.
    let server = FakeApiServer::builder()
        .max_watch_timeout(Duration::from_millis(200))
        .start()
        .expect("start");
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1&timeoutSeconds=3600"));
    let (end, took) = timed(|| c.chunk().expect("clean end"));
    assert_eq!(end, None);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn split_mode_cuts_events_into_chunks() {
    let server = FakeApiServer::builder()
        .chunk_mode(ChunkMode::Split(16))
        .start()
        .expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1"));
    let mut line = Vec::new();
    let mut chunks = 0;
    while !line.ends_with(b"\n") {
        let chunk = c.chunk().expect("chunk").expect("data");
        assert!(chunk.len() <= 16);
        line.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks > 5, "{chunks}");
    let ev: Value = serde_json::from_slice(&line).expect("json");
    assert_eq!(ev["type"], "ADDED");

    // Runtime change: back to one chunk per event.
    server.set_chunk_mode(ChunkMode::PerEvent);
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    assert_eq!(c.event()["type"], "MODIFIED");
}

#[test]
fn coalesce_mode_puts_several_events_in_one_chunk() {
    let server = FakeApiServer::builder()
        .chunk_mode(ChunkMode::Coalesce)
        .start()
        .expect("start");
    let from = server.resource_version();
    for port in 1..=3 {
        server.set_endpoints("prod", "echo", &[("grpc", port)], &pods()[..1]);
    }
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{EP}?fieldSelector=metadata.name%3Decho&watch=1&resourceVersion={from}"
    ));
    let chunk = c.chunk().expect("chunk").expect("data");
    let text = String::from_utf8(chunk).expect("utf-8");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[2]["type"], "MODIFIED");
    // A lone live event still arrives quickly.
    let (ev, took) = timed(|| {
        server.set_endpoints("prod", "echo", &[("grpc", 9)], &pods());
        c.event()
    });
    assert_eq!(ev["object"]["subsets"][0]["ports"][0]["port"], 9);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn token_is_required_and_rotates() {
    let server = FakeApiServer::builder()
        .token(Some("t1".into()))
        .start()
        .expect("start");
    let mut c = Client::new(&server);
    let unauthorized = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                              "message":"Unauthorized","reason":"Unauthorized","code":401});
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 401);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(unauthorized.clone())
    );
    let (head, _) = c.get(EP, &[("Authorization", "Bearer wrong")]);
    assert_eq!(head.status, 401);
    let (head, _) = c.get(EP, &[("Authorization", "Bearer t1")]);
    assert_eq!(head.status, 200);

    server.set_token(Some("t2".into()));
    let (head, body) = c.get(EP, &[("Authorization", "Bearer t1")]);
    assert_eq!(head.status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).ok(),
        Some(unauthorized)
    );
    let (head, _) = c.get(EP, &[("authorization", "bearer t2")]);
    assert_eq!(head.status, 200);

    let reqs = server.requests();
    assert!(!reqs[0].authorization);
    assert!(reqs[1].authorization);
    assert_eq!(reqs[2].bearer_token(), Some("t1"));
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200, 401, 200]);
    let debug = format!("{reqs:?}");
    assert!(!debug.contains("t1") && !debug.contains("t2"), "{debug}");
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn forbidden_has_the_real_message() {
    let server = FakeApiServer::start().expect("start");
    server.forbid(Resource::Endpoints, true);
    server.forbid(Resource::EndpointSlices, true);
    let mut c = Client::new(&server);
    let (status, err) = c.get_json(&format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1"));
    assert_eq!(status, 403);
    assert_eq!(err["reason"], "Forbidden");
    assert_eq!(err["code"], 403);
    assert_eq!(
        err["message"],
        r#"endpoints "echo" is forbidden: User "system:serviceaccount:default:test" cannot watch resource "endpoints" in API group "" in the namespace "prod""#
    );
    let (_, err) = c.get_json(EP);
    assert_eq!(
        err["message"],
        r#"endpoints is forbidden: User "system:serviceaccount:default:test" cannot list resource "endpoints" in API group "" in the namespace "prod""#
    );
    let (_, err) = c.get_json(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho"
    ));
    assert_eq!(
        err["message"],
        r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:default:test" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "prod""#
    );
    let (_, err) = c.get_json(&format!("{EP}/echo"));
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.contains("cannot get resource")));

    server.forbid(Resource::Endpoints, false);
    assert_eq!(c.get_json(EP).0, 200);

    // A missing API: plain-text 404.
    server.disable(Resource::EndpointSlices, true);
    server.forbid(Resource::EndpointSlices, false);
    let (head, body) = c.get(ES, &[]);
    assert_eq!(head.status, 404);
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(body, b"404 page not found\n");
}

#[test]
fn failures_instead_of_answers() {
    let server = FakeApiServer::start().expect("start");
    server.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    server.fail_next(1, Failure::Unavailable);
    server.fail_next(1, Failure::InternalError);
    server.fail_next(
        1,
        Failure::status(410, "Expired", "The provided continue parameter is too old"),
    );
    let mut c = Client::new(&server);
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 429);
    assert_eq!(head.header("retry-after"), Some("3"));
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(body, b"Too many requests, please try again later.\n");
    let (head, body) = c.get(EP, &[]);
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("1"));
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert_eq!(c.get_json(EP).0, 500);
    let (status, body) = c.get_json(EP);
    assert_eq!((status, &body["reason"]), (410, &json!("Expired")));
    assert_eq!(c.get_json(EP).0, 200);
    let injected: Vec<Option<Failure>> = server
        .requests()
        .iter()
        .map(|r| r.failure.clone())
        .collect();
    assert_eq!(
        injected,
        [
            Some(Failure::TooManyRequests {
                retry_after_secs: 3
            }),
            Some(Failure::Unavailable),
            Some(Failure::InternalError),
            Some(Failure::status(
                410,
                "Expired",
                "The provided continue parameter is too old"
            )),
            None,
        ]
    );

    // Per verb: only the watch fails.
    server.fail_next_for(Verb::Watch, 1, Failure::InternalError);
    assert_eq!(c.get_json(EP).0, 200);
    assert_eq!(c.get_json(&format!("{EP}?watch=1")).0, 500);

    // A body as is: a watch answered like a list, by a server that does not stream.
    let list = r#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}"#;
    server.fail_next_for(
        Verb::Watch,
        1,
        Failure::Body {
            code: 200,
            body: list.into(),
        },
    );
    let (head, body) = c.get(&format!("{EP}?watch=true"), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(body, list.as_bytes());

    // Close without an answer.
    server.fail_next(1, Failure::CloseWithoutAnswer);
    c.send(EP, &[]).expect("send");
    assert!(c.rest().is_empty());
    assert_eq!(server.requests().last().map(|r| r.status), Some(0));

    // Hang until shutdown.
    server.fail_next(1, Failure::Hang);
    let mut c = Client::new(&server);
    c.send(EP, &[]).expect("send");
    assert!(server.wait_for_requests(Duration::from_secs(1), |r| r.len() == 9));
    std::thread::sleep(Duration::from_millis(50));
    let ((), took) = timed(|| server.shutdown());
    assert!(c.rest().is_empty());
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn faults_on_open_watches() {
    let server = FakeApiServer::start().expect("start");
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let target = format!("{EP}?fieldSelector=metadata.name%3Decho&watch=1");
    let open = |server: &FakeApiServer| {
        let mut c = Client::new(server);
        c.watch(&target);
        assert_eq!(c.event()["type"], "ADDED");
        assert!(server.wait_for_watches(1, Duration::from_secs(1)));
        c
    };

    // EndCleanly: the zero chunk.
    let mut c = open(&server);
    assert_eq!(server.inject(Fault::EndCleanly), 1);
    assert_eq!(c.chunk().expect("chunk"), None);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // Garbage: a bad line, then the stream goes on.
    let mut c = open(&server);
    server.inject(Fault::Garbage("{not json".into()));
    assert_eq!(c.chunk().expect("chunk"), Some(b"{not json\n".to_vec()));
    server.set_endpoints("prod", "echo", &[("grpc", 8081)], &pods());
    assert_eq!(c.event()["type"], "MODIFIED");
    server.inject(Fault::Reset);
    // Reset: EOF without the terminating chunk.
    assert!(c.chunk().is_err());

    // CutMidEvent: half an event line, then EOF.
    let mut c = open(&server);
    server.inject(Fault::CutMidEvent);
    let half = c.chunk().expect("chunk").expect("data");
    assert!(!half.ends_with(b"\n") && half.starts_with(b"{\"type\":"));
    assert!(serde_json::from_slice::<Value>(&half).is_err());
    assert!(c.chunk().is_err());
    let faults = |server: &FakeApiServer| server.requests().last().map(|r| r.faults.clone());
    assert_eq!(faults(&server), Some(vec![Fault::CutMidEvent]));

    // CutNextEvent: nothing until the next change, then half of that event, then EOF.
    let mut c = open(&server);
    server.inject(Fault::CutNextEvent);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(faults(&server), Some(vec![]), "armed, not yet carried out");
    server.set_endpoints("prod", "echo", &[("grpc", 8083)], &pods());
    let half = c.chunk().expect("chunk").expect("data");
    assert!(half.starts_with(b"{\"type\":\"MODIFIED\"") && !half.ends_with(b"\n"));
    assert!(serde_json::from_slice::<Value>(&half).is_err());
    assert!(c.chunk().is_err());
    assert_eq!(faults(&server), Some(vec![Fault::CutNextEvent]));

    // EndMidNextEvent: half of the next event, then the zero chunk.
    let mut c = open(&server);
    server.inject(Fault::EndMidNextEvent);
    server.set_endpoints("prod", "echo", &[("grpc", 8084)], &pods());
    let half = c.chunk().expect("chunk").expect("data");
    assert!(half.starts_with(b"{\"type\":\"MODIFIED\"") && !half.ends_with(b"\n"));
    assert_eq!(c.chunk().expect("chunk"), None);
    assert_eq!(faults(&server), Some(vec![Fault::EndMidNextEvent]));

    // Expired: the 410 ERROR event, then a clean end.
    let mut c = open(&server);
    server.inject(Fault::Expired);
    let ev = c.event();
    assert_eq!(
        (&ev["type"], &ev["object"]["code"]),
        (&json!("ERROR"), &json!(410))
    );
    assert_eq!(c.chunk().expect("chunk"), None);

    // inject_next_watch: right after the initial events.
    server.inject_next_watch(Fault::EndCleanly);
    let mut c = Client::new(&server);
    c.watch(&target);
    assert_eq!(c.event()["type"], "ADDED");
    assert_eq!(c.chunk().expect("chunk"), None);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    // Stall: nothing more, even bookmarks or the timeout; shutdown still ends it at once.
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{target}&allowWatchBookmarks=true&timeoutSeconds=1"
    ));
    assert_eq!(c.event()["type"], "ADDED");
    server.inject(Fault::Stall);
    server.set_endpoints("prod", "echo", &[("grpc", 8082)], &pods());
    c.r.get_mut();
    let stalled = std::thread::spawn(move || c.rest());
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(server.open_watches(), 1);
    // Prompt: the stalled watch does not hold the shutdown (a loose bound; the accept loop
    // alone would give up only after 2 s).
    let ((), took) = timed(|| server.shutdown());
    assert!(took < Duration::from_secs(1), "{took:?}");
    let rest = stalled.join().expect("reader");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(server.open_watches(), 0);
    server.shutdown(); // idempotent
}

#[test]
fn selection_changes_are_added_and_deleted() {
    let server = FakeApiServer::start().expect("start");
    let from = server.set_endpoint_slice("prod", "s1", "echo", AddressType::Ipv4, &[], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!(
        "{ES}?labelSelector=kubernetes.io%2Fservice-name%3Decho&watch=1&resourceVersion={from}"
    ));
    let moved = server.set_endpoint_slice("prod", "s1", "other", AddressType::Ipv4, &[], &pods());
    let ev = c.event();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["kind"], "EndpointSlice");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], moved.as_str());
    server.set_endpoint_slice("prod", "s1", "echo", AddressType::Ipv4, &[], &pods());
    assert_eq!(c.event()["type"], "ADDED");
}

#[test]
fn client_going_away_closes_its_watch() {
    let server = FakeApiServer::start().expect("start");
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    drop(c);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));
    assert!(server.wait_for_requests(Duration::from_secs(1), |_| true));
}

#[test]
fn malformed_requests_get_errors_not_panics() {
    let server = FakeApiServer::start().expect("start");
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(raw(b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET /x%zz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(
        b"GET /api/v1/namespaces/prod/endpoints?watch=maybe HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400 "));
    assert!(raw(b"GET /api/v1/namespaces/prod/endpoints?watch=1&resourceVersion=abc HTTP/1.1\r\nConnection: close\r\n\r\n")
        .starts_with("HTTP/1.1 400 "));
    assert!(raw(b"POST /api/v1/namespaces/prod/endpoints HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        .starts_with("HTTP/1.1 405 "));
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert!(raw(&huge).starts_with("HTTP/1.1 431 "));
    // HTTP/1.0 and Connection: close get closed after the answer.
    let r = raw(b"GET /api/v1/namespaces/prod/endpoints HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200 ") && r.ends_with("\"items\":[]}"),
        "{r}"
    );
    let r = raw(b"GET /api/v1/namespaces/prod/endpoints HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.contains("Connection: close\r\n"));
    // The server is still fine.
    assert_eq!(Client::new(&server).get_json(EP).0, 200);
}

#[test]
fn stop_and_resume_listening_keeps_state() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1&resourceVersion={rv}"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    let ((), took) = timed(|| server.stop_listening());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(c.chunk().is_err());
    assert_eq!(server.open_watches(), 0);
    assert!(TcpStream::connect(server.addr()).is_err());
    server.resume_listening().expect("resume");
    let (status, list) = Client::new(&server).get_json(EP);
    assert_eq!(status, 200);
    assert_eq!(list["metadata"]["resourceVersion"], rv.as_str());
}

fn client_config(
    ca_pem: &str,
) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
}

fn tls_list(server: &FakeApiServer, config: ClientConfig) -> io::Result<u16> {
    let mut c = Client::tls(server, config);
    c.send(EP, &[("Connection", "close")])?;
    Ok(c.head()?.status)
}

#[test]
fn tls_handshake_and_verification() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .start()
        .expect("start");
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let config = || client_config(TEST_CA_PEM).with_no_client_auth();
    assert_eq!(tls_list(&server, config()).ok(), Some(200));
    // A watch over TLS, ended by a fault.
    let mut c = Client::tls(&server, config());
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    server.inject(Fault::EndCleanly);
    assert_eq!(c.chunk().expect("chunk"), None);
    // All certificates of a bundle are trusted; an unrelated CA is not.
    assert_eq!(
        tls_list(&server, client_config(BUNDLE_PEM).with_no_client_auth()).ok(),
        Some(200)
    );
    assert!(tls_list(&server, client_config(OTHER_CA_PEM).with_no_client_auth()).is_err());
    // A client closing a TLS watch is noticed.
    let mut c = Client::tls(&server, config());
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    drop(c);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    for bad in [TlsIdentity::wrong_san(), TlsIdentity::expired()] {
        let server = FakeApiServer::builder().tls(bad).start().expect("start");
        assert!(tls_list(&server, config()).is_err());
    }
}

#[test]
fn tls_client_certificates() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .client_ca(CLIENT_CA_PEM)
        .start()
        .expect("start");
    assert!(tls_list(&server, client_config(TEST_CA_PEM).with_no_client_auth()).is_err());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(CLIENT_CERT_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(CLIENT_KEY_PEM.as_bytes()).expect("key");
    let config = client_config(TEST_CA_PEM)
        .with_client_auth_cert(certs, key)
        .expect("client auth");
    assert_eq!(tls_list(&server, config).ok(), Some(200));
}

#[test]
fn shutdown_is_prompt_with_everything_open() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .start()
        .expect("start");
    let config = client_config(TEST_CA_PEM).with_no_client_auth();
    let mut watch = Client::tls(&server, config.clone());
    watch.watch(&format!("{EP}?watch=1"));
    let mut idle = Client::tls(&server, config);
    assert_eq!(idle.get_json(EP).0, 200);
    let _half_open = TcpStream::connect(server.addr()).expect("connect"); // no handshake
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    let ((), took) = timed(|| drop(server));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(watch.chunk().is_err());
}

#[test]
fn ipv6_and_connection_close_on_watches() {
    let Ok(server) = FakeApiServer::builder()
        .bind("[::1]:0".parse().expect("addr"))
        .max_watch_timeout(Duration::from_millis(100))
        .start()
    else {
        // Under CI a missing prerequisite fails the test; locally it is skipped, loudly.
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "no IPv6 loopback address (::1), and CI is set");
        // Not `eprintln!`, which the harness captures and hides for a passing test.
        let _ = writeln!(io::stderr(), "skipped: no IPv6 loopback address (::1)");
        return;
    };
    assert!(
        server.url().starts_with("http://[::1]:"),
        "{}",
        server.url()
    );
    let mut c = Client::new(&server);
    assert_eq!(c.get_json(EP).0, 200);
    c.send(&format!("{EP}?watch=1"), &[("Connection", "close")])
        .expect("send");
    let head = c.head().expect("head");
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(c.chunk().expect("clean end"), None);
    assert!(c.rest().is_empty());
}
