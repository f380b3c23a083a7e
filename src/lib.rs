//! Resolve a Kubernetes Service to the live addresses of its pods, by watching the API.
//!
//! `kuberesolver` is for client-side load balancing: a gRPC channel or any custom TCP
//! connector that wants every request spread over every ready pod, and no request sent to a
//! pod that left during a rolling deploy. DNS is stale for up to 30 s; a ClusterIP pins each
//! connection to one pod. This crate lists and then watches the Service's endpoints on a
//! blocking background thread and publishes each change within microseconds. It has no async
//! runtime inside, so it works in plain blocking programs and under any runtime.
//!
//! # From the top
//!
//! - [`Resolver`] owns the watcher thread. [`Resolver::spawn`] takes a target string;
//!   [`Resolver::builder`] also takes a [`Config`], a [`Source`] and timeouts.
//! - [`Snapshot`] is the state at one moment: the sorted [`Addresses`] in use (the ready
//!   endpoints, or while none is ready, the terminating ones still serving) and the
//!   [`Endpoint`]s with their details (pod, node, zone, conditions), with a version.
//! - [`Updates`] delivers each new snapshot to a subscriber, latest wins.
//! - [`Picker`] picks addresses round robin, without a lock on the hot path, skipping those
//!   its callers report failing; [`Picker::connect_with`] connects with failover.
//! - [`Status`] says whether the resolver is healthy, what failed last, and counts events;
//!   [`Metrics`] renders it for Prometheus.
//! - [`Target`] is the parsed `kubernetes:///service.namespace:port` string.
//! - [`Error`] is the one error type; match on [`Error::kind`].
//!
//! The [`guide`] has a page per topic: [targets](guide::targets),
//! [configuration and RBAC](guide::configuration), [sources](guide::sources),
//! [publishing](guide::publishing), [picking](guide::picking),
//! [failure behaviour](guide::failures), and [testing with the testkit](guide::testing).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use kuberesolver::Resolver;
//!
//! // In a pod, the configuration is inferred from the service account.
//! let resolver = Resolver::spawn("kubernetes:///echo.prod:grpc")?;
//! resolver.wait_ready(Duration::from_secs(5))?;
//! println!("{:?}", resolver.addresses());
//!
//! let picker = resolver.picker();
//! if let Some(addr) = picker.pick() {
//!     let stream = std::net::TcpStream::connect(addr);
//! }
//! # Ok::<(), kuberesolver::Error>(())
//! ```
//!
//! Without a cluster, against the simulated API server of the `testkit` feature (see
//! [testing with the testkit](guide::testing)), a rolling deploy seen through [`Updates`]:
//!
//! ```
//! use std::time::Duration;
//! use kuberesolver::testkit::{FakeApiServer, Pod};
//! use kuberesolver::{Config, Resolver, Source};
//!
//! let server = FakeApiServer::start()?;
//! server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-1", [10, 0, 0, 1])]);
//! let resolver = Resolver::builder("kubernetes:///echo.prod:grpc")
//!     .config(Config::new(server.url()))
//!     .source(Source::Endpoints)
//!     .spawn()?;
//! let updates = resolver.updates();
//! let before = updates.recv_timeout(Duration::from_secs(5))?;
//! server.set_endpoints("prod", "echo", &[("grpc", 8080)], &[Pod::new("echo-2", [10, 0, 0, 2])]);
//! let after = updates.recv_timeout(Duration::from_secs(5))?;
//! let diff = after.diff(&before);
//! assert_eq!(diff.added[0].to_string(), r#"10.0.0.2:8080 ("echo-2")"#);
//! assert_eq!(diff.removed[0].to_string(), r#"10.0.0.1:8080 ("echo-1")"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Targets
//!
//! Every form Go's kuberesolver accepts: `kubernetes:///service:8080`,
//! `kubernetes:///service.namespace:grpc`, `kubernetes://namespace/service:8080`,
//! `kubernetes://service.namespace.svc.cluster.local:8080`, and more; see [`Target`]. A port
//! number is the pod port used as is; a name is the endpoint port of that name (the Service
//! port's name); no port means "the only port".
//!
//! # Failure behaviour
//!
//! Network trouble never fails [`Resolver::spawn`] and never empties the addresses: the last
//! good snapshot stays, the error shows in [`Resolver::status`], and the watcher retries with
//! jittered exponential backoff, resuming from the last resourceVersion (or relisting after a
//! 410). Only the API's own word that the Service has no ready endpoint publishes an empty
//! snapshot. The bearer token never appears in a log line, a `Debug` output or an error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod base64;
mod client;
mod config;
mod credentials;
mod decode;
mod error;
mod fanout;
mod health;
mod lines;
mod machine;
mod merge;
mod metrics;
mod model;
mod picker;
mod publish;
mod resolver;
mod snapshot;
mod source;
mod status;
mod target;
mod tls;
mod util;
mod watcher;
mod watches;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guide;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backoff::Backoff;
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use health::Ejection;
pub use metrics::{Metrics, MetricsFormat};
pub use picker::{IpFamily, Picker};
pub use publish::Updates;
pub use resolver::{Builder, Resolver};
pub use snapshot::{Addresses, Conditions, Diff, Endpoint, Snapshot};
pub use source::Source;
pub use status::{Counters, Status};
pub use target::{Port, Target};
