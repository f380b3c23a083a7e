//! The event-stream decoder: bytes from a chunked watch body → lines → typed events.
//!
//! Chunks do not align with events: one chunk may hold several events, one event may span
//! several chunks. [`LineSplitter`] reassembles newline-terminated lines and caps their length;
//! [`decode_event`] turns one line into a [`WatchEvent`]. Both are pure and never panic.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{EndpointSlice, Endpoints, List, Meta, Status};
use crate::source::Resource;
use crate::state::{normalize_endpoints, normalize_slice, Normalized};
use crate::Error;

/// The default cap on one event line: a 1000-address Endpoints object is ~200 KiB.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// Splits a byte stream into newline-terminated lines of at most `max` bytes.
///
/// A longer line is dropped as a whole and reported once as [`Line::TooLong`]; the bytes
/// kept in memory never exceed `max` plus one read buffer.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    max: usize,
    /// Inside an over-long line: discard until the next newline.
    skipping: bool,
}

/// One item from the splitter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Complete(&'a [u8]),
    /// A line longer than the cap was dropped.
    TooLong,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            start: 0,
            max,
            skipping: false,
        }
    }

    /// Append bytes read from the stream. Call [`next_line`](Self::next_line) until it returns
    /// `None` before pushing more.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.skipping {
            if let Some(i) = bytes.iter().position(|b| *b == b'\n') {
                self.skipping = false;
                self.buf.extend_from_slice(&bytes[i + 1..]);
            }
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete line, if one is buffered.
    pub(crate) fn next_line(&mut self) -> Option<Line<'_>> {
        loop {
            if self.skipping {
                return None;
            }
            let pending = &self.buf[self.start..];
            let Some(i) = pending.iter().position(|b| *b == b'\n') else {
                if pending.len() > self.max {
                    self.buf.clear();
                    self.start = 0;
                    self.skipping = true;
                    return Some(Line::TooLong);
                }
                return None;
            };
            let begin = self.start;
            self.start += i + 1;
            if i > self.max {
                return Some(Line::TooLong);
            }
            let mut end = begin + i;
            if end > begin && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if self.buf[begin..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Line::Complete(&self.buf[begin..end]));
        }
    }

    /// Bytes of an unfinished line (a stream that ends here was cut mid-event).
    pub(crate) fn has_partial(&self) -> bool {
        self.skipping
            || self.buf[self.start..]
                .iter()
                .any(|b| !b.is_ascii_whitespace())
    }
}

/// A decoded watch event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// ADDED or MODIFIED: the object's new state.
    Applied {
        name: String,
        resource_version: Option<String>,
        object: Normalized,
    },
    /// DELETED: the object is gone (or no longer matches the selector).
    Deleted {
        name: String,
        resource_version: Option<String>,
    },
    /// BOOKMARK: nothing changed up to this resourceVersion.
    Bookmark { resource_version: String },
    /// ERROR: a Status; code 410 means the resourceVersion is too old.
    Error {
        code: Option<u16>,
        reason: Option<String>,
        message: String,
    },
    /// A type this client does not know; ignored.
    Unknown { kind: String },
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct BookmarkObject {
    #[serde(default)]
    metadata: Option<Meta>,
}

/// Decode one event line of a watch on `resource`.
pub(crate) fn decode_event(line: &[u8], resource: Resource) -> Result<WatchEvent, Error> {
    let raw: RawEvent<'_> = serde_json::from_slice(line)
        .map_err(|e| Error::decode(format!("malformed watch event: {e}")))?;
    let object = raw.object.map(RawValue::get).unwrap_or("null");
    let missing = || Error::decode(format!("{} event without an object", raw.kind));
    match raw.kind.as_ref() {
        "ADDED" | "MODIFIED" => {
            let (meta, object) = decode_object(object, resource)?;
            let meta = meta.ok_or_else(missing)?;
            Ok(WatchEvent::Applied {
                name: meta
                    .name
                    .ok_or_else(|| Error::decode("object without a name"))?,
                resource_version: meta.resource_version,
                object,
            })
        }
        "DELETED" => {
            let (meta, _) = decode_object(object, resource)?;
            let meta = meta.ok_or_else(missing)?;
            Ok(WatchEvent::Deleted {
                name: meta
                    .name
                    .ok_or_else(|| Error::decode("object without a name"))?,
                resource_version: meta.resource_version,
            })
        }
        "BOOKMARK" => {
            let bookmark: Option<BookmarkObject> = serde_json::from_str(object)
                .map_err(|e| Error::decode(format!("malformed bookmark: {e}")))?;
            let resource_version = bookmark
                .and_then(|b| b.metadata)
                .and_then(|m| m.resource_version)
                .ok_or_else(|| Error::decode("bookmark without a resourceVersion"))?;
            Ok(WatchEvent::Bookmark { resource_version })
        }
        "ERROR" => {
            let status: Option<Status> = serde_json::from_str(object).unwrap_or_default();
            let status = status.unwrap_or_default();
            Ok(WatchEvent::Error {
                code: status.code,
                reason: status.reason,
                message: status.message.unwrap_or_default(),
            })
        }
        other => Ok(WatchEvent::Unknown {
            kind: other.to_string(),
        }),
    }
}

/// Decode one object (an event's or a list item) into its metadata and groups.
fn decode_object(json: &str, resource: Resource) -> Result<(Option<Meta>, Normalized), Error> {
    let bad = |e: serde_json::Error| Error::decode(format!("malformed {resource} object: {e}"));
    match resource {
        Resource::Endpoints => {
            let object: Option<Endpoints> = serde_json::from_str(json).map_err(bad)?;
            Ok(object.map_or((None, Normalized::default()), |o| {
                let n = normalize_endpoints(&o);
                (o.metadata, n)
            }))
        }
        Resource::EndpointSlices => {
            let object: Option<EndpointSlice> = serde_json::from_str(json).map_err(bad)?;
            Ok(object.map_or((None, Normalized::default()), |o| {
                let n = normalize_slice(&o);
                (o.metadata, n)
            }))
        }
    }
}

/// A decoded list response: its resourceVersion and each item by name.
#[derive(Debug)]
pub(crate) struct Listed {
    pub resource_version: String,
    pub items: Vec<(String, Normalized)>,
}

/// Decode a list response body.
pub(crate) fn decode_list(body: &[u8], resource: Resource) -> Result<Listed, Error> {
    let list: List<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| Error::decode(format!("malformed {resource} list: {e}")))?;
    let resource_version = list
        .metadata
        .and_then(|m| m.resource_version)
        .filter(|rv| !rv.is_empty())
        .ok_or_else(|| Error::decode(format!("{resource} list without a resourceVersion")))?;
    let mut items = Vec::new();
    for item in list.items.unwrap_or_default() {
        let (meta, object) = decode_object(item.get(), resource)?;
        let name = meta
            .and_then(|m| m.name)
            .ok_or_else(|| Error::decode(format!("{resource} list item without a name")))?;
        items.push((name, object));
    }
    Ok(Listed {
        resource_version,
        items,
    })
}

/// The Status in an error body, if the body is one (429 bodies are plain text).
pub(crate) fn decode_status(body: &[u8]) -> Option<Status> {
    serde_json::from_slice::<Status>(body)
        .ok()
        .filter(|s| s.code.is_some() || s.message.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `stream` cut into the given chunk sizes (cycled), collecting lines.
    fn lines_of(stream: &[u8], chunks: &[usize], max: usize) -> Vec<Result<String, ()>> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut rest = stream;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].clamp(1, rest.len());
            i += 1;
            splitter.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(line) = splitter.next_line() {
                out.push(match line {
                    Line::Complete(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Line::TooLong => Err(()),
                });
            }
        }
        out
    }

    const STREAM: &[u8] =
        b"{\"type\":\"ADDED\"}\n{\"type\":\"MODIFIED\"}\r\n\n{\"type\":\"DELETED\"}\n";

    #[test]
    fn events_split_across_chunks_or_sharing_one_come_out_whole() {
        let expected = vec![
            Ok("{\"type\":\"ADDED\"}".to_string()),
            Ok("{\"type\":\"MODIFIED\"}".to_string()),
            Ok("{\"type\":\"DELETED\"}".to_string()),
        ];
        for chunks in [&[1][..], &[2, 3], &[7], &[5, 100], &[STREAM.len()]] {
            assert_eq!(
                lines_of(STREAM, chunks, 1024),
                expected,
                "chunks {chunks:?}"
            );
        }
    }

    #[test]
    fn an_over_long_line_is_dropped_once_and_the_next_line_survives() {
        let mut stream = vec![b'x'; 5000];
        stream.extend_from_slice(b"\n{\"ok\":1}\n");
        for chunks in [&[1][..], &[100], &[6000]] {
            let lines = lines_of(&stream, chunks, 64);
            assert_eq!(
                lines,
                vec![Err(()), Ok("{\"ok\":1}".to_string())],
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn memory_stays_bounded_while_skipping_an_endless_line() {
        let mut splitter = LineSplitter::new(1024);
        let mut too_long = 0;
        for _ in 0..10_000 {
            splitter.push(&[b'a'; 512]);
            while let Some(line) = splitter.next_line() {
                assert_eq!(line, Line::TooLong);
                too_long += 1;
            }
            assert!(splitter.buf.len() <= 1024 + 512);
        }
        assert_eq!(too_long, 1);
        assert!(splitter.has_partial());
    }

    #[test]
    fn a_stream_cut_mid_event_leaves_a_partial_line() {
        let mut splitter = LineSplitter::new(1024);
        splitter.push(b"{\"type\":\"ADDED\"}\n{\"type\":");
        assert!(splitter.next_line().is_some());
        assert!(splitter.next_line().is_none());
        assert!(splitter.has_partial());
    }

    fn event(line: &str) -> WatchEvent {
        decode_event(line.as_bytes(), Resource::Endpoints).expect("decodes")
    }

    #[test]
    fn decodes_added_with_its_ready_addresses() {
        let e = event(
            r#"{"type":"ADDED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"echo","resourceVersion":"12"},"subsets":[{"addresses":[{"ip":"10.0.0.1","nodeName":"n1","targetRef":{"kind":"Pod","name":"echo-1"}}],"notReadyAddresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":8080,"protocol":"TCP"}]}]}}"#,
        );
        let WatchEvent::Applied {
            name,
            resource_version,
            object,
        } = e
        else {
            panic!("not applied: {e:?}");
        };
        assert_eq!(name, "echo");
        assert_eq!(resource_version.as_deref(), Some("12"));
        let group = &object.groups[0];
        assert_eq!(group.members.len(), 2);
        assert!(group.members[0].conditions.ready);
        assert!(!group.members[1].conditions.ready);
        assert_eq!(group.members[0].pod.as_deref(), Some("echo-1"));
    }

    #[test]
    fn decodes_bookmarks_deletions_410_and_unknown_types() {
        assert_eq!(
            event(
                r#"{"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion":"12746"}}}"#
            ),
            WatchEvent::Bookmark {
                resource_version: "12746".into()
            }
        );
        assert_eq!(
            event(
                r#"{"type":"DELETED","object":{"metadata":{"name":"echo","resourceVersion":"13"}}}"#
            ),
            WatchEvent::Deleted {
                name: "echo".into(),
                resource_version: Some("13".into())
            }
        );
        let expired = event(
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1234 (5678)","reason":"Expired","code":410}}"#,
        );
        assert!(
            matches!(
                expired,
                WatchEvent::Error {
                    code: Some(410),
                    ..
                }
            ),
            "{expired:?}"
        );
        assert_eq!(
            event(r#"{"type":"SURPRISE","object":{}}"#),
            WatchEvent::Unknown {
                kind: "SURPRISE".into()
            }
        );
    }

    #[test]
    fn slice_bookmarks_with_null_fields_decode() {
        let e = decode_event(
            br#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"99"},"addressType":"","endpoints":null,"ports":null}}"#,
            Resource::EndpointSlices,
        );
        assert_eq!(
            e.ok(),
            Some(WatchEvent::Bookmark {
                resource_version: "99".into()
            })
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "{not json",
            "null",
            "[]",
            r#"{"type":"ADDED"}"#,
            r#"{"type":"ADDED","object":null}"#,
            r#"{"type":"ADDED","object":{"metadata":{}}}"#,
            r#"{"type":"ADDED","object":{"metadata":{"name":"x"},"subsets":"nope"}}"#,
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":[{"ports":[{"port":"80"}]}]}}"#,
            r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#,
            r#"{"type":7}"#,
        ] {
            assert!(
                decode_event(line.as_bytes(), Resource::Endpoints).is_err(),
                "{line} should be an error"
            );
        }
    }

    #[test]
    fn nulls_where_collections_are_expected_read_as_empty() {
        let e = event(
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":[{"addresses":null,"notReadyAddresses":null,"ports":null}]}}"#,
        );
        assert!(matches!(e, WatchEvent::Applied { .. }));
        let e = event(r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":null}}"#);
        assert!(matches!(e, WatchEvent::Applied { .. }));
    }

    #[test]
    fn lists_carry_their_resource_version_and_items() {
        let listed = decode_list(
            br#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"10245"},"items":[{"metadata":{"name":"echo"},"subsets":[]}]}"#,
            Resource::Endpoints,
        )
        .expect("list");
        assert_eq!(listed.resource_version, "10245");
        assert_eq!(listed.items.len(), 1);
        let empty = decode_list(
            br#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[]}"#,
            Resource::Endpoints,
        )
        .expect("empty list");
        assert!(empty.items.is_empty());
        assert!(decode_list(br#"{"items":[]}"#, Resource::Endpoints).is_err());
    }

    #[test]
    fn status_bodies_decode_and_plain_text_does_not() {
        let s =
            decode_status(br#"{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}"#);
        assert_eq!(s.and_then(|s| s.code), Some(403));
        assert!(decode_status(b"Too many requests, please try again later.").is_none());
    }
}
