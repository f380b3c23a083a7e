//! Serving one watch: initial events, replay, live events, bookmarks, timeouts, chunking
//! modes and injected faults.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use super::errors::StatusError;
use super::faults::Fault;
use super::http::{write_chunk, write_last_chunk, write_stream_head, Answer, Conn};
use super::render::{bookmark_line, event_line, expired_line, object_json};
use super::select::Filter;
use super::shared::{Flow, ServerCore, POLL, TARGET};
use super::store::WatchSlot;
use super::types::ChunkMode;

/// Without `timeoutSeconds` (and without a cap) a watch lasts this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The pre-timeout bookmark comes this long before the end (less for short watches).
const BOOKMARK_LEAD: Duration = Duration::from_secs(2);
/// Coalesce mode flushes at this many buffered bytes...
const COALESCE_BYTES: usize = 2048;
/// ...or this long after the first buffered byte.
const COALESCE_DELAY: Duration = Duration::from_millis(5);

/// The parameters of a watch request.
pub(crate) struct WatchParams {
    /// `None`: unset or "0".
    pub rv: Option<u64>,
    /// Start with an ADDED event for every selected object (rather than a replay of the
    /// changes after `rv`).
    pub initial_events: bool,
    /// End the initial events with the bookmark annotated `k8s.io/initial-events-end`
    /// (a streaming list: `sendInitialEvents=true` with bookmarks).
    pub end_bookmark: bool,
    pub bookmarks: bool,
    pub timeout_secs: Option<u64>,
    pub headers: Vec<(&'static str, String)>,
    pub close: bool,
}

/// `true`/`false` the way the apiserver's query decoder reads booleans (an empty value is
/// true).
pub(crate) fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None => Ok(false),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("{name}: Invalid value: {other:?}: strconv.ParseBool: parsing {other:?}: invalid syntax")),
    }
}

impl WatchParams {
    /// Reads and checks a watch's query: `resourceVersion`, `allowWatchBookmarks`,
    /// `timeoutSeconds`, and a streaming list's `sendInitialEvents` with
    /// `resourceVersionMatch=NotOlderThan` (422 for the combinations the apiserver
    /// refuses).
    pub fn parse<'a>(
        param: impl Fn(&str) -> Option<&'a str>,
        headers: Vec<(&'static str, String)>,
        close: bool,
    ) -> Result<WatchParams, StatusError> {
        let bad = StatusError::bad_request;
        let bookmarks =
            parse_bool("allowWatchBookmarks", param("allowWatchBookmarks")).map_err(bad)?;
        let timeout_secs = match param("timeoutSeconds").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                bad(format!(
                    "timeoutSeconds: Invalid value: {s:?}: must be a non-negative integer"
                ))
            })?),
        };
        let rv = match param("resourceVersion").filter(|s| !s.is_empty() && *s != "0") {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                bad(format!(
                    "resourceVersion: Invalid value: {s:?}: invalid resource version"
                ))
            })?),
        };
        let send_initial = match param("sendInitialEvents") {
            None => None,
            v => Some(parse_bool("sendInitialEvents", v).map_err(bad)?),
        };
        let matching = param("resourceVersionMatch").unwrap_or("");
        let mut errors = Vec::new();
        if send_initial.is_some() && matching != "NotOlderThan" {
            errors.push("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".to_owned());
        }
        if !matching.is_empty() {
            if send_initial.is_none() {
                errors.push("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".to_owned());
            }
            if matching != "NotOlderThan" {
                errors.push(format!("resourceVersionMatch: Unsupported value: {matching:?}: supported values: \"NotOlderThan\""));
            }
            if param("continue").is_some_and(|c| !c.is_empty()) {
                errors.push("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided".to_owned());
            }
        }
        if !errors.is_empty() {
            return Err(StatusError::invalid_options(&errors));
        }
        Ok(WatchParams {
            rv,
            initial_events: send_initial.unwrap_or(rv.is_none()),
            end_bookmark: send_initial == Some(true) && bookmarks,
            bookmarks,
            timeout_secs,
            headers,
            close,
        })
    }
}

enum Start {
    TooLarge(u64, u64),
    Expired(Vec<u8>),
    Stream {
        id: u64,
        initial: Vec<Vec<u8>>,
        cursor: u64,
    },
}

/// Serves a watch on `conn`; what happens goes into the log entry `record`.
pub(crate) fn serve(
    shared: &ServerCore,
    conn: &mut Conn,
    conn_id: u64,
    record: u64,
    filter: Filter,
    params: WatchParams,
) -> Flow {
    let started = Instant::now();
    let cap = shared.settings.max_watch_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let timeout = match params.timeout_secs {
        Some(s) if s > 0 => Duration::from_secs(s).min(cap),
        _ => cap,
    };
    let after_stream = if params.close {
        Flow::Close
    } else {
        Flow::KeepAlive
    };

    let start = {
        let mut st = shared.lock();
        match params.rv {
            Some(rv) if rv > st.rv => Start::TooLarge(rv, st.rv),
            Some(rv) if rv < st.horizon && !params.initial_events => {
                Start::Expired(expired_line(rv, st.horizon))
            }
            rv => {
                let mut initial: Vec<Vec<u8>> = match rv {
                    _ if params.initial_events => filter
                        .pick(&st.objects)
                        .map(|(_, o)| event_line("ADDED", &object_json(filter.resource, o)))
                        .collect(),
                    None => Vec::new(),
                    Some(rv) => st
                        .events_after(rv)
                        .iter()
                        .filter_map(|e| filter.convert(e))
                        .map(|(kind, o)| event_line(kind, &object_json(filter.resource, &o)))
                        .collect(),
                };
                if params.end_bookmark {
                    initial.push(bookmark_line(filter.resource, st.rv, true));
                }
                let id = st.next_id();
                let faults: VecDeque<Fault> =
                    st.next_watch_faults.pop_front().into_iter().collect();
                st.watches.insert(id, WatchSlot { faults });
                Start::Stream {
                    id,
                    initial,
                    cursor: st.rv,
                }
            }
        }
    };
    match start {
        Start::TooLarge(rv, current) => {
            shared.set_status(record, 504);
            let answer = Answer::error(&StatusError::too_large(rv, current));
            match answer.write_to(conn, params.close) {
                Ok(()) => after_stream,
                Err(_) => Flow::Abort,
            }
        }
        Start::Expired(line) => {
            shared.update_record(record, |r| {
                r.status = 200;
                r.expired = true;
            });
            let res = write_stream_head(conn, &params.headers, params.close)
                .and_then(|()| write_chunk(conn, &line))
                .and_then(|()| write_last_chunk(conn));
            match res {
                Ok(()) => after_stream,
                Err(_) => Flow::Abort,
            }
        }
        Start::Stream {
            id,
            initial,
            cursor,
        } => {
            shared.set_status(record, 200);
            let bookmarks = params.bookmarks;
            let deadline = started + timeout;
            let mut w = Watch {
                shared,
                conn,
                id,
                conn_id,
                record,
                filter,
                cursor,
                deadline,
                next_bookmark: bookmarks.then(|| started + shared.settings.bookmark_interval),
                pre_timeout: bookmarks.then(|| deadline - BOOKMARK_LEAD.min(timeout / 2)),
                buf: Vec::new(),
                buf_since: None,
                stalled: false,
                cut_next: None,
                after_stream,
            };
            let flow = w.run(&params.headers, initial);
            shared.lock().watches.remove(&id);
            shared.changed();
            flow
        }
    }
}

enum Step {
    Lines(Vec<Vec<u8>>, ChunkMode),
    Fault(Fault, ChunkMode),
    Bookmark(Vec<u8>, ChunkMode),
    Flush,
    Timeout,
    Poll,
    Stop,
}

struct Watch<'a> {
    shared: &'a ServerCore,
    conn: &'a mut Conn,
    id: u64,
    conn_id: u64,
    /// This watch's entry in the request log.
    record: u64,
    filter: Filter,
    /// Every log event up to this resourceVersion has been handled.
    cursor: u64,
    deadline: Instant,
    next_bookmark: Option<Instant>,
    pre_timeout: Option<Instant>,
    /// Coalesce mode's pending bytes, and when the first of them was buffered.
    buf: Vec<u8>,
    buf_since: Option<Instant>,
    stalled: bool,
    /// [`Fault::CutNextEvent`] or [`Fault::EndMidNextEvent`] waits for the next event.
    cut_next: Option<Fault>,
    after_stream: Flow,
}

impl Watch<'_> {
    fn run(&mut self, headers: &[(&'static str, String)], initial: Vec<Vec<u8>>) -> Flow {
        let mode = self.shared.lock().chunk_mode;
        let head = write_stream_head(self.conn, headers, self.after_stream == Flow::Close);
        let head = head.and_then(|()| initial.iter().try_for_each(|l| self.emit(l, mode)));
        if head.is_err() {
            return Flow::Abort;
        }
        loop {
            let step = self.next_step();
            let result = match step {
                Step::Lines(lines, mode) => match self.cut_next.take() {
                    Some(cut) => self.cut(cut, &lines[0]).map(Some),
                    None => lines
                        .iter()
                        .try_for_each(|l| self.emit(l, mode))
                        .map(|()| None),
                },
                Step::Bookmark(line, mode) => self.emit(&line, mode).map(|()| None),
                Step::Flush => self.flush_buf().map(|()| None),
                Step::Timeout => self.end_cleanly().map(Some),
                Step::Poll => Ok(self.conn.peer_closed().then_some(Flow::Abort)),
                Step::Stop => Ok(Some(Flow::Abort)),
                Step::Fault(fault, mode) => self.fault(fault, mode),
            };
            match result {
                Ok(None) => {}
                Ok(Some(flow)) => return flow,
                Err(_) => return Flow::Abort,
            }
        }
    }

    fn next_step(&mut self) -> Step {
        let shared = self.shared;
        let mut st = shared.lock();
        let last_poll = Instant::now();
        loop {
            if ServerCore::conn_gone(&st, self.conn_id) {
                return Step::Stop;
            }
            // Watches poll, so a terminating namespace goes on time with no request to
            // carry it.
            if st.reap(Instant::now()) {
                shared.changed();
            }
            let mode = st.chunk_mode;
            if let Some(fault) = st
                .watches
                .get_mut(&self.id)
                .and_then(|w| w.faults.pop_front())
            {
                return Step::Fault(fault, mode);
            }
            let now = Instant::now();
            let mut wake = last_poll + POLL;
            if !self.stalled {
                if self.cursor < st.rv {
                    let lines: Vec<Vec<u8>> = st
                        .events_after(self.cursor)
                        .iter()
                        .filter_map(|e| self.filter.convert(e))
                        .map(|(kind, o)| event_line(kind, &object_json(self.filter.resource, &o)))
                        .collect();
                    self.cursor = st.rv;
                    if !lines.is_empty() {
                        return Step::Lines(lines, mode);
                    }
                }
                if !self.buf.is_empty() && mode != ChunkMode::Coalesce {
                    return Step::Flush;
                }
                if let Some(since) = self.buf_since {
                    if now >= since + COALESCE_DELAY {
                        return Step::Flush;
                    }
                    wake = wake.min(since + COALESCE_DELAY);
                }
                if now >= self.deadline {
                    return Step::Timeout;
                }
                wake = wake.min(self.deadline);
                let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
                if due(self.next_bookmark) || due(self.pre_timeout) {
                    if due(self.pre_timeout) {
                        self.pre_timeout = None;
                    }
                    if due(self.next_bookmark) {
                        self.next_bookmark = Some(now + shared.settings.bookmark_interval);
                    }
                    return Step::Bookmark(
                        bookmark_line(self.filter.resource, self.cursor, false),
                        mode,
                    );
                }
                for t in [self.next_bookmark, self.pre_timeout].into_iter().flatten() {
                    wake = wake.min(t);
                }
            }
            if now >= last_poll + POLL {
                return Step::Poll;
            }
            st = shared.wait(st, wake.saturating_duration_since(now));
        }
    }

    /// Sends one event line (or garbage) in the current chunking mode.
    fn emit(&mut self, line: &[u8], mode: ChunkMode) -> io::Result<()> {
        match mode {
            ChunkMode::PerEvent => {
                self.flush_buf()?;
                write_chunk(self.conn, line)
            }
            ChunkMode::Split(n) => {
                self.flush_buf()?;
                line.chunks(n.max(1))
                    .try_for_each(|piece| write_chunk(self.conn, piece))
            }
            ChunkMode::Coalesce => {
                self.buf.extend_from_slice(line);
                self.buf_since.get_or_insert_with(Instant::now);
                if self.buf.len() >= COALESCE_BYTES {
                    self.flush_buf()?;
                }
                Ok(())
            }
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.buf_since = None;
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        write_chunk(self.conn, &buf)
    }

    fn end_cleanly(&mut self) -> io::Result<Flow> {
        self.flush_buf()?;
        write_last_chunk(self.conn)?;
        Ok(self.after_stream)
    }

    /// The log says this fault took effect.
    fn took_effect(&self, fault: &Fault) {
        let fault = fault.clone();
        self.shared
            .update_record(self.record, |r| r.faults.push(fault));
    }

    /// Sends the first half of `line`, then breaks off as `cut` says.
    fn cut(&mut self, cut: Fault, line: &[u8]) -> io::Result<Flow> {
        self.flush_buf()?;
        write_chunk(self.conn, &line[..line.len() / 2])?;
        self.took_effect(&cut);
        if cut == Fault::EndMidNextEvent {
            write_last_chunk(self.conn)?;
            Ok(self.after_stream)
        } else {
            Ok(Flow::Abort)
        }
    }

    fn fault(&mut self, fault: Fault, mode: ChunkMode) -> io::Result<Option<Flow>> {
        log::debug!(target: TARGET, "watch {}: fault {fault:?}", self.id);
        let flow = match &fault {
            Fault::EndCleanly => self.end_cleanly().map(Some),
            Fault::Reset => self.flush_buf().map(|()| Some(Flow::Abort)),
            Fault::CutMidEvent => {
                let line = bookmark_line(self.filter.resource, self.cursor, false);
                self.flush_buf()
                    .and_then(|()| write_chunk(self.conn, &line[..line.len() / 2]))
                    .map(|()| Some(Flow::Abort))
            }
            Fault::CutNextEvent | Fault::EndMidNextEvent => {
                self.cut_next = Some(fault);
                return Ok(None);
            }
            Fault::Stall => {
                self.stalled = true;
                self.flush_buf().map(|()| None)
            }
            Fault::Garbage(text) => {
                let mut line = text.clone().into_bytes();
                line.push(b'\n');
                self.emit(&line, mode).map(|()| None)
            }
            Fault::Expired => {
                let current = self.shared.lock().rv.max(self.cursor + 1);
                let line = expired_line(self.cursor, current);
                self.flush_buf()
                    .and_then(|()| write_chunk(self.conn, &line))
                    .and_then(|()| self.end_cleanly())
                    .map(Some)
            }
        }?;
        self.took_effect(&fault);
        Ok(flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<WatchParams, StatusError> {
        let param = |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        WatchParams::parse(param, Vec::new(), false)
    }

    #[test]
    fn bools_read_as_the_apiserver_reads_them() {
        assert_eq!(parse_bool("w", Some("")), Ok(true));
        assert_eq!(parse_bool("w", Some("1")), Ok(true));
        assert_eq!(parse_bool("w", Some("true")), Ok(true));
        assert_eq!(parse_bool("w", Some("false")), Ok(false));
        assert_eq!(parse_bool("w", Some("0")), Ok(false));
        assert_eq!(parse_bool("w", None), Ok(false));
        assert!(parse_bool("w", Some("yes")).is_err());
    }

    #[test]
    fn initial_events_come_from_an_unset_version_or_when_asked_for() {
        let p = |pairs: &[(&str, &str)]| {
            parse(pairs).map(|w| (w.rv, w.initial_events, w.end_bookmark, w.bookmarks))
        };
        assert_eq!(p(&[]), Ok((None, true, false, false)));
        assert_eq!(
            p(&[("resourceVersion", "0")]),
            Ok((None, true, false, false))
        );
        assert_eq!(
            p(&[("resourceVersion", "7"), ("allowWatchBookmarks", "true")]),
            Ok((Some(7), false, false, true))
        );
        let streaming = [
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("allowWatchBookmarks", "true"),
        ];
        assert_eq!(p(&streaming), Ok((None, true, true, true)));
        let mut from_seven = streaming.to_vec();
        from_seven.push(("resourceVersion", "7"));
        assert_eq!(p(&from_seven), Ok((Some(7), true, true, true)));
        assert_eq!(
            p(&streaming[..2]),
            Ok((None, true, false, false)),
            "no bookmarks: no end bookmark"
        );
        let skip = [
            ("sendInitialEvents", "false"),
            ("resourceVersionMatch", "NotOlderThan"),
        ];
        assert_eq!(p(&skip), Ok((None, false, false, false)));
    }

    #[test]
    fn streaming_list_options_are_checked_as_the_apiserver_checks_them() {
        let refused = |pairs: &[(&str, &str)], part: &str| {
            let e = parse(pairs).err().map(|e| (e.code, e.message));
            assert!(
                e.as_ref()
                    .is_some_and(|(c, m)| *c == 422 && m.contains(part)),
                "{pairs:?}: {e:?}"
            );
        };
        refused(
            &[("sendInitialEvents", "true")],
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        );
        refused(
            &[("resourceVersionMatch", "NotOlderThan")],
            "forbidden for watch unless sendInitialEvents is provided",
        );
        refused(
            &[
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "Exact"),
            ],
            "Unsupported value: \"Exact\"",
        );
        refused(
            &[
                ("sendInitialEvents", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
                ("continue", "x"),
            ],
            "forbidden when continue is provided",
        );
        for pairs in [
            [("timeoutSeconds", "-1")],
            [("resourceVersion", "x1")],
            [("allowWatchBookmarks", "maybe")],
            [("sendInitialEvents", "maybe")],
        ] {
            assert_eq!(parse(&pairs).err().map(|e| e.code), Some(400), "{pairs:?}");
        }
        assert_eq!(
            parse(&[("timeoutSeconds", "")]).map(|w| w.timeout_secs),
            Ok(None)
        );
        assert_eq!(
            parse(&[("timeoutSeconds", "5")]).map(|w| w.timeout_secs),
            Ok(Some(5))
        );
    }
}
