//! HTTP/1.1 answer framing without I/O: the response-head parser and the body decoder
//! (Content-Length, chunked, until close) that the upstream client runs on bytes as they arrive.
//! Kept apart from the sockets so that the parts an upstream controls byte by byte can be
//! property-tested and fuzzed from memory.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// Longest chunk-size or trailer line accepted.
pub const MAX_LINE: usize = 4 << 10;

/// An answer that breaks HTTP/1.1's rules; the text says which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

fn bad(msg: &str) -> Malformed {
    Malformed(msg.to_owned())
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// Parse a response head: `None` until it is complete, else its length and content. Header
/// lines whose name or value `http` cannot hold are dropped, as hyper does.
pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, Malformed> {
    let mut few = [httparse::EMPTY_HEADER; 64];
    let mut many;
    let mut resp = httparse::Response::new(&mut few);
    let mut status = resp.parse(buf);
    if let Err(httparse::Error::TooManyHeaders) = status {
        many = vec![httparse::EMPTY_HEADER; 512];
        resp = httparse::Response::new(&mut many);
        status = resp.parse(buf);
    }
    let len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Malformed(format!("malformed answer head: {e}"))),
    };
    let status =
        StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| bad("malformed answer head: bad status code"))?;
    let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) {
            headers.append(n, v);
        }
    }
    Ok(Some((len, Head { status, version, headers })))
}

impl Head {
    /// Whether the connection may carry another request after this answer.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .get_all(CONNECTION)
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
        };
        match self.version {
            Version::HTTP_11 => !has("close"),
            _ => has("keep-alive"),
        }
    }

    /// Both framings at once may be a smuggling attempt (RFC 9112 §6.3): such an answer is read
    /// by Transfer-Encoding and its connection is not trusted again.
    pub fn ambiguous(&self) -> bool {
        self.headers.contains_key(TRANSFER_ENCODING) && self.headers.contains_key(CONTENT_LENGTH)
    }
}

/// How the body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes, in order.
    Data(Bytes),
    /// The buffer holds no more complete frame: read more (or, at end of stream, see
    /// [`Framing::ends_at_close`]).
    NeedMore,
    /// The body is complete; what is left in the buffer came after it.
    End,
}

impl Framing {
    /// The framing of the answer `head` to a request with `method` (RFC 9112 §6.3).
    pub fn of(head: &Head, method: &Method) -> Result<Framing, Malformed> {
        let s = head.status;
        if *method == Method::HEAD || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED {
            return Ok(Framing::Length(0));
        }
        if let Some(te) = head.headers.get_all(TRANSFER_ENCODING).iter().next_back() {
            // Chunked only when it is the final coding; otherwise the body runs to the close.
            let last = te.to_str().ok().and_then(|s| s.rsplit(',').next()).map(str::trim);
            return Ok(match last {
                Some(l) if l.eq_ignore_ascii_case("chunked") => Framing::Chunked(Chunk::Size),
                _ => Framing::Close,
            });
        }
        let mut length = None;
        for v in head.headers.get_all(CONTENT_LENGTH) {
            for part in v.to_str().unwrap_or("x").split(',') {
                let n: u64 = part.trim().parse().map_err(|_| bad("malformed Content-Length in the answer"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting Content-Length values in the answer"));
                }
                length = Some(n);
            }
        }
        Ok(length.map_or(Framing::Close, Framing::Length))
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }

    /// The connection's end is a valid end of this body (it is framed by the close).
    pub fn ends_at_close(&self) -> bool {
        matches!(self, Framing::Close)
    }

    /// Decode from the front of `buf`, consuming what it uses. Data is handed out as slices of
    /// `buf`, never copied.
    pub fn step(&mut self, buf: &mut Bytes) -> Result<Step, Malformed> {
        loop {
            match *self {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => return Ok(Step::End),
                Framing::Length(_) | Framing::Close | Framing::Chunked(Chunk::Data(_)) if buf.is_empty() => {
                    return Ok(Step::NeedMore)
                }
                Framing::Close => return Ok(Step::Data(std::mem::take(buf))),
                Framing::Length(mut left) => {
                    let data = take_data(buf, &mut left);
                    *self = Framing::Length(left);
                    return Ok(Step::Data(data));
                }
                Framing::Chunked(Chunk::Data(mut left)) => {
                    let data = take_data(buf, &mut left);
                    *self = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                    return Ok(Step::Data(data));
                }
                Framing::Chunked(state) => {
                    let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                    *self = Framing::Chunked(match state {
                        Chunk::Size => match parse_chunk_size(&line)? {
                            0 => Chunk::Trailer,
                            n => Chunk::Data(n),
                        },
                        Chunk::DataEnd if line.is_empty() => Chunk::Size,
                        Chunk::DataEnd => return Err(bad("malformed chunked answer: data longer than its size")),
                        // Trailer fields are not used; an empty line ends them.
                        _ if line.is_empty() => Chunk::Done,
                        _ => Chunk::Trailer,
                    });
                }
            }
        }
    }
}

/// Take one line (without its line end) from `buf`, if a whole one is there.
fn take_line(buf: &mut Bytes) -> Result<Option<Bytes>, Malformed> {
    match memchr::memchr(b'\n', buf) {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i - usize::from(i > 0 && line[i - 1] == b'\r'));
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(bad("malformed chunked answer: line too long")),
        None => Ok(None),
    }
}

/// Up to `left` bytes of data from `buf`.
fn take_data(buf: &mut Bytes, left: &mut u64) -> Bytes {
    let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    *left -= n as u64;
    buf.split_to(n)
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let err = || bad("malformed chunked answer: bad chunk size");
    let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    // 15 hex digits stay below 2^60: no overflow, and no body that large is real.
    if digits.is_empty() || digits.len() > 15 {
        return Err(err());
    }
    let mut n = 0u64;
    for &d in digits {
        n = n * 16 + u64::from((d as char).to_digit(16).ok_or_else(err)?);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decode a whole answer fed in the given pieces: (head, body, the decoder's final state, or
    /// the error).
    fn run(method: &Method, pieces: &[&[u8]]) -> Result<(StatusCode, Vec<u8>, bool), Malformed> {
        let mut buf = Bytes::new();
        let mut pieces = pieces.iter();
        let head = loop {
            if let Some((n, head)) = parse_head(&buf)? {
                buf = buf.slice(n..);
                break head;
            }
            match pieces.next() {
                Some(p) => buf = [&buf[..], p].concat().into(),
                None => return Err(bad("no head")),
            }
        };
        let mut framing = Framing::of(&head, method)?;
        let mut body = Vec::new();
        loop {
            match framing.step(&mut buf)? {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::End => return Ok((head.status, body, true)),
                Step::NeedMore => match pieces.next() {
                    Some(p) => buf = [&buf[..], p].concat().into(),
                    None => return Ok((head.status, body, framing.ends_at_close())),
                },
            }
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let a = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(run(&Method::POST, &[a]).unwrap(), (StatusCode::OK, b"hello!".to_vec(), true));
    }

    #[test]
    fn length_close_and_bodiless_answers() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcEXTRA";
        assert_eq!(run(&Method::POST, &[a]).unwrap().1, b"abc");
        let a = b"HTTP/1.0 200 OK\r\n\r\nto the end";
        assert_eq!(run(&Method::POST, &[a]).unwrap(), (StatusCode::OK, b"to the end".to_vec(), true));
        let a = b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(run(&Method::POST, &[a]).unwrap().1, b"");
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n";
        assert!(run(&Method::HEAD, &[a]).unwrap().2);
    }

    #[test]
    fn truncated_bodies_are_not_complete() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        assert!(!run(&Method::POST, &[a]).unwrap().2);
        let a = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel";
        assert!(!run(&Method::POST, &[a]).unwrap().2);
    }

    #[test]
    fn framing_rules() {
        let head = |s: &[u8]| parse_head(s).unwrap().unwrap().1;
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
        assert_eq!(Framing::of(&h, &Method::GET).unwrap(), Framing::Length(5));
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n");
        assert!(Framing::of(&h, &Method::GET).is_err());
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n");
        assert!(Framing::of(&h, &Method::GET).is_err());
        // Chunked that is not the final coding: read to the close.
        let h = head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(Framing::of(&h, &Method::GET).unwrap(), Framing::Close);
        assert!(h.ambiguous());
        assert!(!head(b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\n\r\n").keep_alive());
        assert!(!head(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive());
        assert!(head(b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for body in [&b"zz\r\n"[..], b"1234567890123456\r\n", b"\r\n", b"3\r\nabcd\r\n"] {
            let a = [&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..], body].concat();
            assert!(run(&Method::POST, &[&a]).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let long = [&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..], &[b'1'; MAX_LINE + 1]].concat();
        assert!(run(&Method::POST, &[&long]).is_err());
    }

    /// A chunked encoding of `data` with the given chunk sizes.
    fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut rest = data;
        for &s in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (c, r) = rest.split_at(s.clamp(1, rest.len()));
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
            rest = r;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        /// However the answer is cut into reads, the body decodes to the bytes that were encoded.
        #[test]
        fn chunked_bodies_survive_any_cuts(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..100, 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let wire = chunked(&data, &sizes);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for c in at.into_iter().chain([wire.len()]) {
                pieces.push(&wire[from..c]);
                from = c;
            }
            prop_assert_eq!(run(&Method::POST, &pieces).unwrap(), (StatusCode::OK, data, true));
        }
    }
}
