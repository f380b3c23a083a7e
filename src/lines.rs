//! Line framing of a watch body: chunks in, newline-terminated lines out.
//!
//! Chunks do not align with events: one chunk may hold several events, one event may span
//! several chunks. [`LineSplitter`] reassembles the lines, caps their length, and keeps the
//! bytes of an unfinished line so that a stream cut mid-event can be told from a clean end.
//! Pure and never panics; what a line means is `decode`'s business.

use std::io::{self, Read};

/// The default cap on one event line: a 1000-address Endpoints object is ~200 KiB.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// The most one [`LineSplitter::read_from`] asks for: a typical event (a few KiB) in one
/// read, a big one in a few, and what ureq hands over per read anyway (its input buffer).
pub(crate) const READ_SIZE: usize = 8 * 1024;

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
    /// How many bytes after `start` are known to hold no newline (not searched again when
    /// a long line arrives over several reads).
    scanned: usize,
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
            scanned: 0,
        }
    }

    /// Append bytes read from the stream. Call [`next_line`](Self::next_line) until it returns
    /// `None` before pushing more.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.compact();
        let old = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.appended(old);
    }

    /// One read from `reader`, at most [`READ_SIZE`] bytes, appended to the unfinished line.
    /// The read lands in a buffer on the stack (the watcher's stack is deeper than that
    /// already, from the HTTP client's frames), and the lines handed out are given back
    /// before it: a watch blocked in a read of a quiet stream holds no heap here. Returns
    /// what `read` returned (0 at the end of the stream). Call [`next_line`](Self::next_line)
    /// until it returns `None` before reading more.
    pub(crate) fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        self.compact();
        let mut chunk = [0u8; READ_SIZE];
        let n = reader.read(&mut chunk)?;
        self.push(&chunk[..n]);
        Ok(n)
    }

    /// Drop the lines already handed out; all of them gone, the memory goes too.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf = Vec::new();
        } else if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }

    /// Bytes from `old` on were just appended: while an over-long line is being skipped,
    /// they are discarded up to and including its newline.
    fn appended(&mut self, old: usize) {
        if !self.skipping {
            return;
        }
        match find_newline(&self.buf[old..]) {
            Some(i) => {
                self.skipping = false;
                self.buf.drain(..old + i + 1);
            }
            None => self.buf.truncate(old),
        }
    }

    /// The next complete line, if one is buffered.
    pub(crate) fn next_line(&mut self) -> Option<Line<'_>> {
        loop {
            if self.skipping {
                return None;
            }
            let pending = &self.buf[self.start..];
            let Some(i) = find_newline(&pending[self.scanned..]).map(|i| i + self.scanned) else {
                if pending.len() > self.max {
                    self.buf.clear();
                    self.start = 0;
                    self.scanned = 0;
                    self.skipping = true;
                    return Some(Line::TooLong);
                }
                self.scanned = pending.len();
                return None;
            };
            let begin = self.start;
            self.start += i + 1;
            self.scanned = 0;
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

    /// The unfinished line so far (empty while an over-long line is skipped).
    pub(crate) fn partial(&self) -> &[u8] {
        if self.skipping {
            &[]
        } else {
            &self.buf[self.start..]
        }
    }
}

/// The index of the first `\n` in `bytes`, eight bytes at a time.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A zero byte in `x` (a newline in `chunk`) sets its high bit here.
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return chunk.iter().position(|b| *b == b'\n').map(|i| offset + i);
        }
        offset += 8;
    }
    let rest = chunks.remainder();
    rest.iter().position(|b| *b == b'\n').map(|i| offset + i)
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

    /// A stream that hands out `chunks` (cycled) per read, as a socket might.
    struct Chunked<'a> {
        rest: &'a [u8],
        chunks: &'a [usize],
        reads: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.chunks[self.reads % self.chunks.len()];
            self.reads += 1;
            let n = size.min(buf.len()).min(self.rest.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    fn lines_read(stream: &[u8], chunks: &[usize], max: usize) -> Vec<Result<String, ()>> {
        let mut splitter = LineSplitter::new(max);
        let mut reader = Chunked {
            rest: stream,
            chunks,
            reads: 0,
        };
        let mut out = Vec::new();
        while splitter.read_from(&mut reader).expect("reads") > 0 {
            while let Some(line) = splitter.next_line() {
                out.push(match line {
                    Line::Complete(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Line::TooLong => Err(()),
                });
            }
        }
        out
    }

    #[test]
    fn reading_from_a_stream_gives_the_lines_that_pushing_gives() {
        let mut long = vec![b'x'; 3 * READ_SIZE];
        long.extend_from_slice(b"\n{\"ok\":1}\n");
        long.extend_from_slice(STREAM);
        for chunks in [
            &[1][..],
            &[3, 7],
            &[READ_SIZE],
            &[READ_SIZE + 1, 5],
            &[usize::MAX],
        ] {
            for (stream, max) in [(STREAM, 1024), (&long[..], 64), (&long[..], 1 << 20)] {
                assert_eq!(
                    lines_read(stream, chunks, max),
                    lines_of(stream, chunks, max),
                    "chunks {chunks:?}, max {max}"
                );
            }
        }
    }

    #[test]
    fn a_read_never_asks_for_more_than_read_size() {
        let stream = vec![b'a'; 5 * READ_SIZE];
        let mut splitter = LineSplitter::new(MAX_LINE);
        let mut reader = &stream[..];
        assert_eq!(splitter.read_from(&mut reader).expect("reads"), READ_SIZE);
        assert_eq!(splitter.partial().len(), READ_SIZE);
    }

    #[test]
    fn once_its_lines_are_out_a_splitter_holds_no_memory_however_big_they_were() {
        let mut event = vec![b'x'; 20 * READ_SIZE];
        event.push(b'\n');
        let mut splitter = LineSplitter::new(MAX_LINE);
        let mut reader = &event[..];
        let mut lines = 0;
        while splitter.read_from(&mut reader).expect("reads") > 0 {
            while splitter.next_line().is_some() {
                lines += 1;
            }
        }
        assert_eq!(lines, 1);
        assert_eq!(splitter.buf.capacity(), 0);
        // A partial line is kept whole, however big.
        let mut reader = &event[..10 * READ_SIZE];
        while splitter.read_from(&mut reader).expect("reads") > 0 {}
        assert_eq!(splitter.partial().len(), 10 * READ_SIZE);
    }

    #[test]
    fn memory_stays_bounded_while_reading_an_endless_line() {
        let endless = vec![b'a'; 64 * READ_SIZE];
        let mut splitter = LineSplitter::new(1024);
        let mut reader = &endless[..];
        let mut too_long = 0;
        while splitter.read_from(&mut reader).expect("reads") > 0 {
            while let Some(line) = splitter.next_line() {
                assert_eq!(line, Line::TooLong);
                too_long += 1;
            }
            assert!(splitter.buf.len() <= 1024 + READ_SIZE);
        }
        assert_eq!(too_long, 1);
        assert!(splitter.has_partial());
    }

    #[test]
    fn find_newline_finds_the_first_one_at_any_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'a'; len];
                if at < len {
                    bytes[at] = b'\n';
                    if at + 1 < len {
                        bytes[len - 1] = b'\n';
                    }
                }
                let expected = bytes.iter().position(|b| *b == b'\n');
                assert_eq!(find_newline(&bytes), expected, "{len} {at}");
            }
        }
        // Bytes around the newline's value never match.
        assert_eq!(find_newline(&[9, 11, 0x8a, 0xff, 0, 1, 2, 3, 10]), Some(8));
    }

    #[test]
    fn a_stream_cut_mid_event_leaves_a_partial_line() {
        let mut splitter = LineSplitter::new(1024);
        splitter.push(b"{\"type\":\"ADDED\"}\n{\"type\":");
        assert!(splitter.next_line().is_some());
        assert!(splitter.next_line().is_none());
        assert!(splitter.has_partial());
    }

    #[test]
    fn the_partial_line_is_what_follows_the_last_newline() {
        let mut splitter = LineSplitter::new(16);
        splitter.push(b"{\"a\":1}\n{\"kind\":");
        assert!(splitter.next_line().is_some());
        assert!(splitter.next_line().is_none());
        assert_eq!(splitter.partial(), b"{\"kind\":");
        splitter.push(&[b'x'; 40]);
        assert_eq!(splitter.next_line(), Some(Line::TooLong));
        assert!(splitter.has_partial());
        assert_eq!(splitter.partial(), b"");
    }
}
