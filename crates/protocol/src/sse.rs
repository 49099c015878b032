//! Server-Sent Events: an incremental decoder that yields the same events however the bytes are
//! split, and a tiny encoder.
//!
//! The decoder follows the WHATWG event-stream rules that matter for OpenAI streams: `\n`, `\r\n`
//! and `\r` line ends (a `\r\n` split across two chunks counts once), `data:` lines joined with
//! `\n`, one optional space after the colon, `:` comment lines, and dispatch on a blank line.

use std::borrow::Cow;

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Error from [`SseDecoder::push`]: an event or a line grew past the configured limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge {
    /// The limit that was exceeded, in bytes.
    pub limit: usize,
}

impl std::fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SSE event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for SseTooLarge {}

/// Incremental SSE decoder. Feed it chunks with [`push`](Self::push); call
/// [`finish`](Self::finish) at end of stream.
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The previous chunk ended in `\r`: a leading `\n` in the next chunk belongs to it.
    skip_lf: bool,
    limit: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl SseDecoder {
    /// A decoder that refuses events (or lines) larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { line: Vec::new(), data: String::new(), has_data: false, event: None, skip_lf: false, limit }
    }

    /// Decode `chunk`, appending every completed event to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        self.push_tracked(chunk, out).map(|_| ())
    }

    /// [`push`](Self::push), also telling where in `chunk` the decoder was last between two
    /// events: `Some(n)` means `chunk[..n]` ends exactly at an event boundary (`Some(0)`: the
    /// chunk started at one), `None` that it never was. A relay that must add bytes of its own
    /// (an error event, a keep-alive) sends only up to there and holds the rest.
    pub fn push_tracked(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<Option<usize>, SseTooLarge> {
        let total = chunk.len();
        let mut chunk = chunk;
        let mut last = self.at_boundary().then_some(0);
        if self.skip_lf {
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
            if !chunk.is_empty() {
                self.skip_lf = false;
            }
            if self.at_boundary() {
                last = Some(total - chunk.len());
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) {
            let term = chunk[pos];
            let piece = &chunk[..pos];
            if self.line.is_empty() {
                self.process_line(piece, out)?;
            } else {
                self.line.extend_from_slice(piece);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out)?;
                self.line = line;
                self.line.clear();
            }
            chunk = &chunk[pos + 1..];
            if term == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.at_boundary() {
                last = Some(total - chunk.len());
            }
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() + self.data.len() > self.limit {
            return Err(SseTooLarge { limit: self.limit });
        }
        Ok(last)
    }

    /// Nothing of a partial line or event is held: the bytes pushed so far ended exactly at an
    /// event boundary, so the next chunk starts a new event (a relay may pass such chunks on
    /// verbatim).
    pub fn at_boundary(&self) -> bool {
        self.line.is_empty() && !self.has_data && self.event.is_none() && !self.skip_lf
    }

    /// End of stream: a last event without its trailing blank line is still delivered, because
    /// some upstreams end that way and dropping their final event would lose the terminal event.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                } else {
                    // One allocation of the right size for the common one-line event.
                    self.data.reserve_exact(value.len());
                }
                self.data.push_str(&text(value));
                self.has_data = true;
                if self.data.len() > self.limit {
                    return Err(SseTooLarge { limit: self.limit });
                }
            }
            b"event" => self.event = Some(text(value).into_owned()),
            _ => {} // id, retry and unknown fields carry nothing the gateway needs
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent { event: self.event.take(), data: std::mem::take(&mut self.data) });
        }
        self.event = None;
        self.has_data = false;
    }
}

/// `bytes` as text: borrowed when valid UTF-8 (the usual case, checked at SIMD speed), with
/// U+FFFD replacements otherwise.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Encode one event as `event: <name>\ndata: <data>\n\n` (`event:` omitted when `None`).
/// Multi-line data becomes several `data:` lines.
pub fn encode(event: Option<&str>, data: &str, out: &mut Vec<u8>) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracked_boundaries_fall_exactly_between_events_however_the_bytes_are_cut() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\r\ndata: two\r\n\r\ndata: [DONE]\n\n";
        let ends = [15usize, 28, 29, 52, 66];
        for size in 1..stream.len() {
            let mut d = SseDecoder::default();
            let mut evs = Vec::new();
            let mut at = 0;
            let mut sent = 0;
            for piece in stream.chunks(size) {
                if let Some(n) = d.push_tracked(piece, &mut evs).unwrap() {
                    sent = at + n;
                }
                at += piece.len();
                assert!(sent == 0 || ends.contains(&sent), "size {size}: boundary at {sent}");
                // Everything up to the boundary decodes to whole events, nothing more.
                let mut check = SseDecoder::default();
                let mut whole = Vec::new();
                check.push(&stream[..sent], &mut whole).unwrap();
                assert!(check.at_boundary(), "size {size}: {sent}");
            }
            assert_eq!(sent, stream.len(), "size {size}");
            assert_eq!(evs.len(), 3);
        }
    }

    use super::*;

    fn decode_split(input: &[u8], split: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &s in split {
            d.push(&input[last..s], &mut out).unwrap();
            last = s;
        }
        d.push(&input[last..], &mut out).unwrap();
        d.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn decodes_basic_events_with_every_line_ending() {
        for sep in ["\n", "\r\n", "\r"] {
            let s = format!("event: a{sep}data: {{\"x\":1}}{sep}{sep}: comment{sep}data:two{sep}data: lines{sep}{sep}");
            let evs = decode_split(s.as_bytes(), &[]);
            assert_eq!(evs.len(), 2, "sep {sep:?}");
            assert_eq!(evs[0].event.as_deref(), Some("a"));
            assert_eq!(evs[0].data, "{\"x\":1}");
            assert_eq!(evs[1].event, None);
            assert_eq!(evs[1].data, "two\nlines");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let s = b"event: response.created\r\ndata: {\"a\":\"\xc3\xa9\"}\r\n\r\ndata: [DONE]\r\r";
        let whole = decode_split(s, &[]);
        assert_eq!(whole.len(), 2);
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(decode_split(s, &[i, j]), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn final_event_without_blank_line_is_delivered() {
        let evs = decode_split(b"data: last", &[]);
        assert_eq!(evs, vec![SseEvent { event: None, data: "last".into() }]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut d = SseDecoder::new(8);
        let mut out = Vec::new();
        assert!(d.push(b"data: 0123456789", &mut out).is_err());
    }

    #[test]
    fn boundary_is_known_after_each_chunk() {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        assert!(d.at_boundary());
        d.push(b"data: a\n\n: ping\n", &mut out).unwrap();
        assert!(d.at_boundary());
        d.push(b"event: x\n", &mut out).unwrap();
        assert!(!d.at_boundary(), "an event name is pending");
        d.push(b"data: b\n\ndata: c", &mut out).unwrap();
        assert!(!d.at_boundary(), "a partial line is pending");
        d.push(b"\n", &mut out).unwrap();
        assert!(!d.at_boundary(), "data without its blank line is pending");
        d.push(b"\r", &mut out).unwrap();
        assert!(!d.at_boundary(), "a \\r may be followed by its \\n");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let evs = decode_split(b"data: a\xffb\n\n", &[]);
        assert_eq!(evs[0].data, "a\u{fffd}b");
    }

    #[test]
    fn encoder_round_trips() {
        let mut buf = Vec::new();
        encode(Some("x"), "a\nb", &mut buf);
        assert_eq!(buf, b"event: x\ndata: a\ndata: b\n\n");
        assert_eq!(decode_split(&buf, &[3])[0].data, "a\nb");
    }
}
