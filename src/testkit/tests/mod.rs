//! Tests of the fake server through raw HTTP/1.1 over `std::net::TcpStream` (and rustls),
//! by topic: requests and their answers, watches, connections and TLS, and what real tools
//! need of an API server (discovery, writes, paging, cluster-wide and streaming watches).
//! This file holds their vocabulary: a hand-written HTTP client and a few helpers.

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
        self.send_body("GET", target, headers, b"")
    }

    fn send_body(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: kubernetes\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let w = self.r.get_mut();
        w.write_all(req.as_bytes())?;
        w.write_all(body)?;
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
        self.call("GET", target, headers, b"")
    }

    /// Any request with a body; the answer's head and body (`Content-Length`).
    fn call(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Head, Vec<u8>) {
        self.send_body(method, target, headers, body).expect("send");
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

mod api;
mod connections;
mod requests;
mod watches;
