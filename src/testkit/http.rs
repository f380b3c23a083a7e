//! A small HTTP/1.1 server side: connections (plain or TLS), request parsing,
//! responses and chunked bodies.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};

use rustls::{ServerConnection, StreamOwned};

use super::errors::StatusError;

/// Largest request head accepted (request line + headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (3 MiB, as the real server's limit for one object).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// One accepted connection.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// The local address of the connection (where the server listens).
    pub(crate) fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.sock().local_addr()
    }

    /// Closes the TCP connection at once (no TLS close_notify, no terminating chunk).
    pub(crate) fn abort(&mut self) {
        let _ = self.sock().shutdown(Shutdown::Both);
    }

    /// Closes politely: TLS close_notify, then the TCP connection.
    pub(crate) fn close(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.sock().shutdown(Shutdown::Both);
    }

    /// Whether the peer has closed the connection (or it broke), checked without
    /// blocking. Bytes the peer sends meanwhile are discarded (a client sends nothing
    /// while it reads a watch or waits for an answer).
    pub(crate) fn peer_closed(&mut self) -> bool {
        if self.sock().set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match self {
            Conn::Plain(s) => {
                let mut buf = [0u8; 512];
                match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => !matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ),
                }
            }
            Conn::Tls(s) => {
                let s = &mut **s;
                match s.conn.read_tls(&mut s.sock) {
                    Ok(0) => true,
                    Ok(_) => match s.conn.process_new_packets() {
                        Err(_) => true,
                        Ok(state) => {
                            let pending = state.plaintext_bytes_to_read();
                            if pending > 0 {
                                let mut sink = vec![0u8; pending];
                                let _ = s.conn.reader().read(&mut sink);
                            }
                            state.peer_has_closed()
                        }
                    },
                    Err(e) => !matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ),
                }
            }
        };
        if self.sock().set_nonblocking(false).is_err() {
            return true;
        }
        closed
    }
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub http10: bool,
    /// The body (`Content-Length` bytes; empty without one).
    pub body: Vec<u8>,
}

impl Request {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the answer.
    pub fn keep_alive(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| tokens.split(',').any(|x| x.trim() == t);
        if self.http10 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// First query parameter of that name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection (or it broke) between requests.
    Closed,
    /// The head exceeded [`MAX_HEAD`].
    TooLarge,
    /// Not HTTP/1.x as we understand it.
    Bad(String),
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn fill(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut tmp = [0u8; 8192];
    loop {
        match conn.read(&mut tmp) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

/// Reads the next request from `conn`; `buf` keeps bytes already read past it.
pub(crate) fn read_request(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<Request, ReadError> {
    // Leading empty lines before a request line are allowed (RFC 9112 §2.2).
    let (head_end, body_start) = loop {
        while buf.first() == Some(&b'\r') && buf.get(1) == Some(&b'\n') {
            buf.drain(..2);
        }
        while buf.first() == Some(&b'\n') {
            buf.drain(..1);
        }
        if let Some(found) = find_head_end(buf) {
            break found;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        fill(conn, buf)?;
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Bad("request head is not UTF-8".into()))?
        .to_owned();
    buf.drain(..body_start);

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => {
            return Err(ReadError::Bad(format!(
                "malformed request line {request_line:?}"
            )))
        }
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad(format!("unsupported version {version:?}"))),
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed header line {line:?}")));
        };
        if name.is_empty() || name.contains(' ') || name.contains('\t') {
            return Err(ReadError::Bad(format!("malformed header name {name:?}")));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }

    // Absolute form (through a proxy): drop scheme and authority.
    let mut target = target;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            target = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let target = target.split('#').next().unwrap_or("");
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(ReadError::Bad(format!("bad request target {target:?}")));
    }
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| ReadError::Bad(format!("bad escape in path {raw_path:?}")))?;
    let query = parse_query(raw_query)
        .ok_or_else(|| ReadError::Bad(format!("bad escape in query {raw_query:?}")))?;

    let mut request = Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        http10,
        body: Vec::new(),
    };

    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            "request bodies with Transfer-Encoding are not supported".into(),
        ));
    }
    if let Some(len) = request.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(ReadError::Bad("request body too large".into()));
        }
        while buf.len() < len {
            fill(conn, buf)?;
        }
        request.body = buf.drain(..len).collect();
    }
    Ok(request)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set). `None` on a bad escape
/// or when the result is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `a=1&b=x%3Dy`; `None` on a bad escape.
pub(crate) fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in q.split(['&', ';']) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Some(out)
}

/// The reason phrase of a status code.
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A complete (non-streaming) answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, body: String) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// The `Status` of a failed request, with its `Retry-After`.
    pub fn error(e: &StatusError) -> Answer {
        let answer = Answer::json(e.code, e.body());
        match e.retry_after {
            Some(secs) => answer.header("Retry-After", secs.to_string()),
            None => answer,
        }
    }

    /// A body of another content type (discovery, OpenAPI).
    pub fn typed(status: u16, content_type: &'static str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: vec![("X-Content-Type-Options", "nosniff".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the answer with a `Content-Length`.
    pub fn write_to(&self, conn: &mut Conn, close: bool) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nCache-Control: no-cache, private\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        conn.write_all(&bytes)?;
        conn.flush()
    }
}

/// Writes the head of a chunked `200` stream.
pub(crate) fn write_stream_head(
    conn: &mut Conn,
    headers: &[(&'static str, String)],
    close: bool,
) -> io::Result<()> {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    conn.write_all(out.as_bytes())?;
    conn.flush()
}

/// Writes one chunk and flushes it (nothing for empty data: that would end the body).
pub(crate) fn write_chunk(conn: &mut Conn, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    conn.write_all(&out)?;
    conn.flush()
}

/// Writes the terminating zero-size chunk: the clean end of a chunked body.
pub(crate) fn write_last_chunk(conn: &mut Conn) -> io::Result<()> {
    conn.write_all(b"0\r\n\r\n")?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%3Db+c", true).as_deref(), Some("a=b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", true), None);
        assert_eq!(percent_decode("%4", true), None);
        assert_eq!(percent_decode("%ff", true), None);
        let q = parse_query("watch&fieldSelector=metadata.name%3Decho&x=").unwrap_or_default();
        assert_eq!(
            q,
            vec![
                ("watch".to_owned(), String::new()),
                ("fieldSelector".to_owned(), "metadata.name=echo".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some((15, 18)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest"), Some((14, 16)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
