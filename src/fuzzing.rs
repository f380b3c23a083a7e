//! Entry points for the fuzz targets in `fuzz/` and the corpus replay tests: not a stable
//! API (behind the `fuzzing` feature, hidden from the docs).

use crate::decode::{decode_event, decode_list, WatchEvent};
use crate::lines::{Line, LineSplitter};
use crate::merge::Objects;
use crate::source::Api;
use crate::Port;

/// What a resolve gives the publisher: each object's endpoints, shared between listings.
pub use crate::snapshot::Listing;

/// The crate's xorshift64* generator, for the seeded tests (`tests/chaos.rs`,
/// `tests/fuzz_corpus.rs`), so that they and the library share one implementation.
pub use crate::util::Rng;

/// Split `stream` into chunks whose sizes cycle through `chunk_sizes` (0 counts as 1), run
/// the line splitter and the event decoder for both resources, and return a printable trace
/// of what came out. The same stream must give the same trace in any chunking.
pub fn decode_stream(stream: &[u8], chunk_sizes: &[u8], max_line: usize) -> Vec<String> {
    let mut splitter = LineSplitter::new(max_line.max(1));
    let mut trace = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let size = chunk_sizes
            .get(i % chunk_sizes.len().max(1))
            .copied()
            .unwrap_or(u8::MAX);
        let n = usize::from(size).clamp(1, rest.len());
        i += 1;
        // As the watcher reads: straight from the stream, at most one read's worth.
        let read = splitter.read_from(&mut &rest[..n]).unwrap_or(n);
        rest = &rest[read..];
        while let Some(line) = splitter.next_line() {
            match line {
                Line::TooLong => trace.push("too long".to_string()),
                Line::Complete(line) => {
                    for resource in [Api::Endpoints, Api::EndpointSlices] {
                        trace.push(match decode_event(line, resource) {
                            Ok(event) => describe(&event),
                            Err(e) => format!("error: {e}"),
                        });
                    }
                }
            }
        }
    }
    trace.push(format!("partial: {}", splitter.has_partial()));
    trace
}

fn describe(event: &WatchEvent) -> String {
    format!("{event:?}")
}

/// Decode `json` as a list of each resource, merge it, and resolve it with a few ports.
/// Returns how many endpoints each resolution gave (or `None` for an error).
pub fn merge_list(json: &[u8]) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for resource in [Api::Endpoints, Api::EndpointSlices] {
        let Ok(listed) = decode_list(json, resource) else {
            out.push(None);
            continue;
        };
        let mut objects = Objects::default();
        objects.replace_all(listed.items.into_iter().map(|(n, o)| (n, o.groups)));
        for port in [
            None,
            Some(Port::Number(80)),
            Some(Port::Name("grpc".into())),
        ] {
            let resolved = objects.resolve(port.as_ref(), "fuzz").map(|l| l.flatten());
            if let Ok(endpoints) = &resolved {
                assert!(
                    endpoints.windows(2).all(|w| w[0].addr() < w[1].addr()),
                    "resolve must return endpoints sorted and unique by address"
                );
            }
            out.push(resolved.ok().map(|e| e.len()));
        }
    }
    out
}

/// The decode → merge → resolve path of the watcher, without sockets, for benchmarks.
pub struct Merger {
    objects: Objects,
    resource: Api,
    port: Option<Port>,
}

impl Merger {
    /// A merger for EndpointSlices (`slices == true`) or Endpoints, resolving `port`.
    pub fn new(slices: bool, port: Option<Port>) -> Merger {
        Merger {
            objects: Objects::default(),
            resource: if slices {
                Api::EndpointSlices
            } else {
                Api::Endpoints
            },
            port,
        }
    }

    /// Decode one watch event line and apply it; true when the state changed.
    pub fn apply(&mut self, line: &[u8]) -> Result<bool, String> {
        match decode_event(line, self.resource).map_err(|e| e.to_string())? {
            WatchEvent::Applied { name, object, .. } => Ok(self.objects.apply(name, object.groups)),
            WatchEvent::Deleted { name, .. } => Ok(self.objects.delete(&name)),
            _ => Ok(false),
        }
    }

    /// Decode one line only (to split decode time from merge time).
    pub fn decode_only(&self, line: &[u8]) -> bool {
        decode_event(line, self.resource).is_ok()
    }

    /// Resolve the merged state into a listing; returns how many endpoints its objects
    /// list (an address listed by two objects counts twice).
    pub fn resolve(&mut self) -> Result<usize, String> {
        self.objects
            .resolve(self.port.as_ref(), "bench")
            .map(|l| l.entries())
            .map_err(|e| e.to_string())
    }
}

impl Merger {
    /// Resolve the merged state into the listing a snapshot is made of (for benchmarks
    /// that time publishing separately).
    pub fn resolve_endpoints(&mut self) -> Result<Listing, String> {
        self.objects
            .resolve(self.port.as_ref(), "bench")
            .map_err(|e| e.to_string())
    }
}

/// The line splitter of the watch body, for benchmarks of the read stage.
pub struct Splitter(LineSplitter);

impl Splitter {
    /// A splitter that caps lines at `max` bytes.
    pub fn new(max: usize) -> Splitter {
        Splitter(LineSplitter::new(max.max(1)))
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.0.push(bytes);
    }

    /// The next complete line (`Err(())` for an over-long one), if one is buffered.
    #[allow(clippy::result_unit_err)]
    pub fn next_line(&mut self) -> Option<Result<&[u8], ()>> {
        self.0.next_line().map(|line| match line {
            Line::Complete(line) => Ok(line),
            Line::TooLong => Err(()),
        })
    }
}

/// The publishing side of a resolver without a watcher thread: what `Watcher::publish`
/// does, plus the readers a `Resolver` hands out, for benchmarks.
pub struct Publisher {
    shared: std::sync::Arc<crate::publish::Hub>,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new()
    }
}

impl Publisher {
    /// Nothing published yet (version 0).
    pub fn new() -> Publisher {
        Publisher {
            shared: std::sync::Arc::new(crate::publish::Hub::new()),
        }
    }

    /// Publish a listing (or endpoints) if it differs from the current snapshot (as the
    /// watcher does).
    pub fn publish(&self, listing: impl Into<Listing>) -> Option<crate::Snapshot> {
        self.shared.publish(listing)
    }

    /// Publish endpoints with only these addresses (ready, no details).
    pub fn publish_addrs(&self, addrs: &[std::net::SocketAddr]) -> Option<crate::Snapshot> {
        let endpoints = addrs
            .iter()
            .map(|addr| crate::snapshot::Endpoint::new(crate::snapshot::EndpointData::at(*addr)))
            .collect::<Vec<_>>();
        self.shared.publish(endpoints)
    }

    /// Publish endpoints with these addresses, each in the zone given with it and hinted
    /// for it (`hints.forZones`), as a Service with topology-aware routing.
    pub fn publish_zoned(&self, addrs: &[(std::net::SocketAddr, &str)]) -> Option<crate::Snapshot> {
        let endpoints = addrs
            .iter()
            .map(|(addr, zone)| {
                let zone: std::sync::Arc<str> = std::sync::Arc::from(*zone);
                let mut data = crate::snapshot::EndpointData::at(*addr);
                data.details.zone = Some(zone.clone());
                data.details.zone_hints = Box::new([zone]);
                crate::snapshot::Endpoint::new(data)
            })
            .collect::<Vec<_>>();
        self.shared.publish(endpoints)
    }

    /// A picker, as `Resolver::picker`.
    pub fn picker(&self) -> crate::Picker {
        crate::Picker::new(self.shared.clone())
    }

    /// The current snapshot, as `Resolver::snapshot`.
    pub fn snapshot(&self) -> crate::Snapshot {
        self.shared.current()
    }

    /// The current addresses, as `Resolver::addresses`.
    pub fn addresses(&self) -> crate::Addresses {
        self.shared.current().addresses()
    }

    /// A subscription, as `Resolver::updates`.
    pub fn updates(&self) -> crate::Updates {
        self.shared.subscribe(0)
    }
}
