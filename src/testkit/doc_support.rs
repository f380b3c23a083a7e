//! The hidden setup of the testkit's doctests, so that each example shows only its point.
//!
//! Not part of the API (hidden, and it may change in any release): an example's visible
//! lines must read on their own, so nothing here may do more than its name says.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::{Config, Error, Resolver, Source};

use super::handle::FakeApiServer;
use super::objects::Pod;

/// A started plain-HTTP server with the Service of [`add_echo`].
///
/// # Errors
///
/// When the server cannot start.
pub fn echo_server() -> io::Result<FakeApiServer> {
    let server = FakeApiServer::start()?;
    add_echo(&server);
    Ok(server)
}

/// Gives `server` the Service `echo` in `prod`: one ready pod `echo-1` (`10.0.0.1`), port
/// `grpc` 8080.
pub fn add_echo(server: &FakeApiServer) {
    let pod = Pod::new("echo-1", [10, 0, 0, 1]);
    server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[pod]);
}

/// A resolver of `kubernetes:///echo.prod:grpc` that reads Endpoints with `config`.
///
/// # Errors
///
/// When the resolver cannot start.
pub fn resolver(config: Config) -> Result<Resolver, Error> {
    Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(config)
        .source(Source::Endpoints)
        .spawn()
}

/// [`resolver`] with `Config::new(server.url())`.
///
/// # Errors
///
/// When the resolver cannot start.
pub fn echo_resolver(server: &FakeApiServer) -> Result<Resolver, Error> {
    resolver(Config::new(server.url()))
}

/// Sends `GET path` (`Connection: close`) over a plain `TcpStream` and returns the raw
/// response, head and body, once the server closes the connection.
///
/// # Errors
///
/// When the connection fails.
pub fn get(server: &FakeApiServer, path: &str) -> io::Result<String> {
    let mut conn = TcpStream::connect(server.addr())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    Ok(response)
}

/// A TCP server on `127.0.0.1` that answers each line with the same line, for as long as the
/// process runs (a pod for examples that connect); its address.
///
/// # Errors
///
/// When it cannot listen.
pub fn line_echo() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut writer = &stream;
                for line in BufReader::new(&stream).lines().map_while(Result::ok) {
                    if writeln!(writer, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// An address on `127.0.0.1` where nobody listens: connections are refused (a pod whose
/// process is gone).
///
/// # Errors
///
/// When no port can be found.
pub fn refused() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}
