//! An in-process fake Kubernetes API server, for tests and demos (feature `testkit`).
//!
//! [`FakeApiServer`] serves the APIs a resolver reads, the way the real kube-apiserver
//! does, well enough that real clients accept it: the crate's tests run `kubectl` (1.20 and
//! 1.27 to 1.33: `get`, `get -A`, `get -w`, `--chunk-size`, `apply -f`, `create`, `replace`,
//! `delete`) against it, and `kubectl proxy` in front of it.
//!
//! - core/v1 Endpoints: `/api/v1/namespaces/{ns}/endpoints[/{name}]`, with
//!   `fieldSelector=metadata.name=NAME`; EndpointSlices:
//!   `/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices[/{name}]`, with
//!   `labelSelector=kubernetes.io/service-name=SVC`; Namespaces: `/api/v1/namespaces[/{name}]`
//!   (`default`, `kube-system`, `kube-public`, `kube-node-lease` from the start).
//! - Every namespace at once: `/api/v1/endpoints`, `/apis/discovery.k8s.io/v1/endpointslices`
//!   (lists and watches), and the legacy watch paths
//!   (`/api/v1/watch/namespaces/{ns}/endpoints/{name}`, which Go's kuberesolver uses).
//! - Discovery: `/version` (1.32 unless [`kubernetes_version`](FakeApiServerBuilder::kubernetes_version)
//!   says otherwise), `/api`, `/apis`, each group version, aggregated discovery when the
//!   client asks for it, an empty `/openapi/v2` (so `kubectl apply` validates nothing it has no
//!   schema for), `/healthz`, `/livez`, `/readyz`.
//! - Writes: create (`POST`), replace (`PUT`), JSON merge patch and strategic merge patch
//!   (`PATCH`), delete, with the server's own metadata (`uid`, `creationTimestamp`, the slice
//!   `generation`), annotations kept (kubectl's last applied configuration), `dryRun=All`, and
//!   the real refusals: 409 `AlreadyExists`, 409 `Conflict` on a stale
//!   `metadata.resourceVersion`, 404 for a missing object or namespace, 403 in a
//!   terminating namespace, 422 `Invalid` names, 415 for other patch types. A deleted
//!   namespace is `Terminating` for a moment, then goes with everything in it.
//!
//! Lists answer `{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":..},"items":[..]}`
//! (items without `kind`/`apiVersion`), in pages with `limit` and `continue` (each page at the
//! first page's resourceVersion, `remainingItemCount` without selectors), at the state
//! `resourceVersion` and `resourceVersionMatch` name (`NotOlderThan`, `Exact`; 410 `Expired`
//! below the last [`compact`](FakeApiServer::compact), also for an old continue token; 504
//! above the current resourceVersion; 422 for the combinations the apiserver refuses).
//! Watches (`watch=true`, `1` or empty; `resourceVersion`, `allowWatchBookmarks`,
//! `timeoutSeconds`) stream newline-terminated JSON events in a chunked `200` body: synthetic
//! `ADDED` events from resourceVersion `0` (or unset), a replay of later events from any
//! other resourceVersion, an `ERROR` event with code 410 (`Expired`) from a resourceVersion
//! older than the last `compact`, `BOOKMARK`s, and a clean end (terminating zero-size chunk)
//! at `timeoutSeconds`. A streaming list (`sendInitialEvents=true` with
//! `resourceVersionMatch=NotOlderThan` and bookmarks) ends its initial events with the
//! bookmark annotated `k8s.io/initial-events-end`. An object that leaves a watch's selection
//! arrives as `DELETED`, one that enters it as `ADDED`. Errors are `Status` objects (`401`,
//! `403` with the real message shape, `404`, `409`, `410`, `422`, `500`, `503` with
//! `Retry-After`, ...) except `429`, which is plain text with `Retry-After`, and missing
//! APIs, which answer `404 page not found` in plain text.
//!
//! Everything else is in the test's hands: objects ([`apply`](FakeApiServer::apply),
//! [`set_endpoints`](FakeApiServer::set_endpoints), [`delete`](FakeApiServer::delete)),
//! bearer token and rotation ([`set_token`](FakeApiServer::set_token)), RBAC
//! ([`forbid`](FakeApiServer::forbid)), missing APIs ([`disable`](FakeApiServer::disable)),
//! how events are cut into chunks ([`ChunkMode`]), faults on open watches ([`Fault`],
//! [`inject`](FakeApiServer::inject)), failed answers ([`Failure`],
//! [`fail_next`](FakeApiServer::fail_next)), TLS ([`TlsIdentity`], with embedded test
//! certificates), a [`kubeconfig`](FakeApiServer::kubeconfig) for `kubectl` and other tools,
//! and a log of every request ([`requests`](FakeApiServer::requests)).
//!
//! The server runs on its own threads (std only, no async). Dropping it, or
//! [`shutdown`](FakeApiServer::shutdown), closes every connection, stalled watches
//! included, and joins its threads.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use kuberesolver::testkit::{FakeApiServer, Pod};
//!
//! let server = FakeApiServer::start()?;
//! let rv = server.set_endpoints(
//!     "prod",
//!     "echo",
//!     &[("grpc", 8080)],
//!     &[Pod::new("echo-1", [10, 0, 0, 1]), Pod::new("echo-2", [10, 0, 0, 2]).ready(false)],
//! );
//!
//! // Any HTTP client works; here, a raw request.
//! let mut conn = std::net::TcpStream::connect(server.addr())?;
//! conn.write_all(
//!     b"GET /api/v1/namespaces/prod/endpoints?fieldSelector=metadata.name%3Decho HTTP/1.1\r\n\
//!       Host: kubernetes\r\nConnection: close\r\n\r\n",
//! )?;
//! let mut response = String::new();
//! conn.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.contains(r#""kind":"EndpointsList""#));
//! assert!(response.contains(&format!(r#""resourceVersion":"{rv}""#)));
//! assert!(response.contains(r#""notReadyAddresses":[{"ip":"10.0.0.2""#));
//!
//! let requests = server.requests();
//! assert_eq!(requests.len(), 1);
//! assert!(requests[0].is_list());
//! assert_eq!(requests[0].param("fieldSelector"), Some("metadata.name=echo"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Faults and failures:
//!
//! ```
//! use std::time::Duration;
//! use kuberesolver::testkit::{ChunkMode, Failure, Fault, FakeApiServer, TlsIdentity};
//!
//! let server = FakeApiServer::builder()
//!     .tls(TlsIdentity::test_server())          // trust kuberesolver::testkit::TEST_CA_PEM
//!     .token(Some("secret".to_owned()))         // require `Authorization: Bearer secret`
//!     .chunk_mode(ChunkMode::Split(7))          // cut every event into 7-byte chunks
//!     .bookmark_interval(Duration::from_millis(200))
//!     .max_watch_timeout(Duration::from_secs(2)) // every watch ends cleanly within 2 s
//!     .start()?;
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//!
//! server.fail_next(2, Failure::TooManyRequests { retry_after_secs: 1 }); // two 429s first
//! server.inject_next_watch(Fault::CutMidEvent);  // the next watch breaks mid-event
//! server.inject(Fault::Reset);                   // every open watch: connection reset
//! server.compact();                              // older resourceVersions now get 410
//! server.set_token(Some("rotated".to_owned()));  // "secret" is refused from now on
//! # Ok::<(), std::io::Error>(())
//! ```

mod control;
mod discovery;
#[doc(hidden)]
pub mod doc_support;
mod errors;
mod faults;
mod handle;
mod http;
mod list;
mod objects;
mod patch;
mod record;
mod render;
mod route;
mod select;
mod server;
mod shared;
mod store;
mod tls;
mod types;
mod watch;
mod writes;

#[cfg(test)]
mod tests;

pub use faults::{Failure, Fault};
pub use handle::{FakeApiServer, FakeApiServerBuilder};
pub use objects::{endpoint_slice_object, endpoints_object, Pod};
pub use record::RequestRecord;
pub use tls::{
    TlsIdentity, BUNDLE_PEM, CLIENT_CA_PEM, CLIENT_CERT_PEM, CLIENT_KEY_PEM, OTHER_CA_PEM,
    TEST_CA_PEM, TEST_SERVER_CERT_PEM, TEST_SERVER_KEY_PEM,
};
pub use types::{AddressType, ChunkMode, Resource, Verb};
