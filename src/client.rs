//! The tiny API client: LIST and WATCH one Service's objects over ureq, and turn every
//! non-2xx answer into an [`Error`] that carries the Status (or the plain-text body),
//! the HTTP status and `Retry-After`.
//!
//! One ureq `Agent` per watch: [`Client::shutdown_handle`] gives the resolver a clone whose
//! `shutdown()` interrupts a read blocked in the watcher thread. The agent's TLS connector
//! is shared with every other agent of the same TLS settings (`tls.rs`), and its buffers are
//! sized to what a watch reads and writes, not ureq's 128 KiB defaults.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Response;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, NextTimeout, TcpConnector};
use ureq::Body;

use crate::config::ServerAccess;
use crate::credentials::{TokenConnector, TokenSource, PLACEHOLDER};
use crate::decode::{decode_list, decode_status, Listed, MAX_RESOURCE_VERSION};
use crate::source::Api;
use crate::tls::{tls_config, SharedTls};
use crate::util::printable;
use crate::Error;

/// The largest error body we read; the rest is dropped.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The largest list response we accept: 5,000 endpoints in slices are ~2 MiB.
pub(crate) const MAX_LIST_BODY: u64 = 256 * 1024 * 1024;

/// The input buffer of each layer of a connection (TCP, TLS): the most one socket read
/// takes, and the largest response head accepted. An API server's head is under 1 KiB (a
/// few `Warning` headers included), and 4 KiB is also what nginx accepts from an upstream
/// by default; a watch event of a few KiB comes in a read or two. Each connection holds
/// this per layer while its watch is open, so it is most of a resolver's heap: 4 KiB
/// instead of 8 saves 4 MB per 1,000 watches over plain HTTP, 8 MB over https.
const INPUT_BUFFER: usize = 4 * 1024;

/// Room in the output buffer beyond the server URL for the longest request line: the
/// resource path with the namespace and Service (63 bytes each at most), the selector and
/// the watch parameters (well under 1 KiB), and the resourceVersion, each byte of which may
/// take three escaped. ureq writes the request a whole line at a time.
const REQUEST_LINE_ROOM: usize = 1024 + 3 * MAX_RESOURCE_VERSION;

/// Network timeouts, each with one meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// TCP connect (and name resolution).
    pub connect: Duration,
    /// From sending a request to the response headers. (ureq bounds the TLS handshake by the
    /// connect timeout.)
    pub response: Duration,
    /// Between two reads of a body: how long a silent watch may stay silent before it is
    /// declared dead. Must exceed the watch timeout window, since a quiet Service on a server
    /// that sends no bookmarks sends nothing until the watch ends.
    pub read: Duration,
}

/// A LIST/WATCH client for one API server.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    /// An explicit `Host` header, when the URL carries a tls-server-name instead of the host.
    host: Option<String>,
    token: Option<Arc<TokenSource>>,
}

/// An open watch: the body to read events from.
pub(crate) struct WatchStream {
    pub body: ureq::BodyReader<'static>,
}

impl Client {
    pub(crate) fn new(access: &ServerAccess, timeouts: Timeouts) -> Client {
        let config = ureq::Agent::config_builder()
            .tls_config(tls_config(access))
            // Never a proxy from the environment: in a cluster the API is reached directly.
            .proxy(None)
            // We read error bodies ourselves: they carry the Status and Retry-After.
            .http_status_as_error(false)
            .https_only(access.base.starts_with("https://"))
            .max_redirects(0)
            .user_agent(concat!("kuberesolver/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .timeout_connect(Some(timeouts.connect))
            .timeout_recv_response(Some(timeouts.response))
            .timeout_per_read(Some(timeouts.read))
            .max_idle_connections_per_host(2)
            .input_buffer_size(INPUT_BUFFER)
            .max_response_header_size(INPUT_BUFFER)
            .output_buffer_size(access.base.len() + REQUEST_LINE_ROOM)
            .build();
        let resolver = ServerNameResolver {
            connect_to: access.connect_to.clone(),
            inner: DefaultResolver::default(),
        };
        // TCP, then TLS for https: ureq's default chain without the proxy links (no proxy
        // is ever used) and with the TLS connector shared per TLS setting.
        let connector = ().chain(TcpConnector::default()).chain(SharedTls::for_access(access));
        let agent = match &access.token {
            // The token goes in below ureq's request logging: see credentials/wire.rs.
            Some(token) => ureq::Agent::with_parts(
                config,
                connector.chain(TokenConnector {
                    token: token.clone(),
                }),
                resolver,
            ),
            None => ureq::Agent::with_parts(config, connector, resolver),
        };
        Client {
            agent,
            base: access.base.clone(),
            host: access.host_header.clone(),
            token: access.token.clone(),
        }
    }

    /// A handle whose `shutdown()` makes every request of this client fail at once.
    pub(crate) fn shutdown_handle(&self) -> ureq::Agent {
        self.agent.clone()
    }

    /// The token was refused (401): re-read it. Returns whether it changed.
    pub(crate) fn refresh_token(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.refresh_now())
    }

    fn get(&self, path_and_query: &str) -> Result<Response<Body>, Error> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut request = self.agent.get(&url);
        if let Some(host) = &self.host {
            request = request.header("Host", host);
        }
        if self.token.is_some() {
            request = request.header("Authorization", format!("Bearer {PLACEHOLDER}"));
        }
        request
            .call()
            .map_err(|e| transport_error(&e, path_and_query))
    }

    /// LIST the Service's objects.
    pub(crate) fn list(
        &self,
        resource: Api,
        namespace: &str,
        service: &str,
    ) -> Result<Listed, Error> {
        let path = format!(
            "{}?{}",
            resource.collection(namespace),
            resource.selector(service)
        );
        let response = self.get(&path)?;
        let response = check(response, resource, namespace, service, "list")?;
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_LIST_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::transport(format!("reading the {resource} list failed: {e}")))?;
        if body.len() as u64 > MAX_LIST_BODY {
            return Err(Error::decode(format!(
                "the {resource} list is larger than {MAX_LIST_BODY} bytes"
            )));
        }
        decode_list(&body, resource)
    }

    /// WATCH from `resource_version`; the server ends the stream after `timeout_seconds`.
    pub(crate) fn watch(
        &self,
        resource: Api,
        namespace: &str,
        service: &str,
        resource_version: &str,
        timeout_seconds: u64,
    ) -> Result<WatchStream, Error> {
        let path = format!(
            "{}?{}&watch=true&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={timeout_seconds}",
            resource.collection(namespace),
            resource.selector(service),
            query_escape(resource_version),
        );
        let response = self.get(&path)?;
        let response = check(response, resource, namespace, service, "watch")?;
        Ok(WatchStream {
            body: response.into_body().into_reader(),
        })
    }
}

/// Resolves the URL's host as usual, except a kubeconfig `tls-server-name`: the URL carries
/// that name (so TLS verifies it), and this maps it back to the server's real `host:port`.
#[derive(Debug)]
struct ServerNameResolver {
    connect_to: Option<(String, String)>,
    inner: DefaultResolver,
}

impl Resolver for ServerNameResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some((name, real)) = &self.connect_to {
            if uri.host() == Some(name.as_str()) {
                let real: ureq::http::Uri = format!("https://{real}/")
                    .parse()
                    .map_err(|_| ureq::Error::BadUri(real.clone()))?;
                return self.inner.resolve(&real, config, timeout);
            }
        }
        self.inner.resolve(uri, config, timeout)
    }
}

/// A resourceVersion is opaque: escape anything that is not a safe query character.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pass 2xx through; turn anything else into an API error with the Status message.
fn check(
    response: Response<Body>,
    resource: Api,
    namespace: &str,
    service: &str,
    verb: &str,
) -> Result<Response<Body>, Error> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    // A failed read leaves what arrived; the status code says enough on its own.
    let _ = response
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let (reason, message) = match decode_status(&body) {
        Some(s) => (s.reason, s.message.unwrap_or_default()),
        None => (None, printable(&body)),
    };
    let mut text = format!("{verb} {resource} {namespace}/{service}: HTTP {status}");
    if let Some(reason) = &reason {
        text.push_str(&format!(" {}", printable(reason.as_bytes())));
    }
    if !message.is_empty() {
        text.push_str(&format!(": {}", printable(message.as_bytes())));
    }
    match status {
        403 => text.push_str(&format!(
            " (grant the service account a Role rule: {})",
            resource.rbac_rule()
        )),
        401 => text.push_str(" (the token is missing, expired or rotated)"),
        _ => {}
    }
    Err(Error::api(status, reason, text, retry_after))
}

fn transport_error(e: &ureq::Error, path: &str) -> Error {
    let path = path.split('?').next().unwrap_or(path);
    Error::transport(format!("GET {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_are_escaped_as_opaque_strings() {
        assert_eq!(query_escape("12345"), "12345");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
    }
}
