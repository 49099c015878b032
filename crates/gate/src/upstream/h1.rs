//! HTTP/1.1 on the wire for the upstream client: the request head out, and the answer read
//! through the framing in [`codex_gate_protocol::h1`] as bytes arrive. Built for the gateway's
//! load, thousands of mostly idle streams: between two reads a connection holds no buffer at all
//! (each read lands on the stack and leaves as an exact-size `Bytes`).

use super::client::Conn;
use crate::egress::{ClientError, TransportKind};
use bytes::{Bytes, BytesMut};
use codex_gate_protocol::h1::{parse_head, Chunk, Framing, Malformed, Step};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// One read's worth: large enough for big answers, and it lives on the stack only while polled.
const READ_CHUNK: usize = 16 << 10;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 << 10;

/// Read what the socket has (at most [`READ_CHUNK`]) into a `Bytes` of exactly that size; empty
/// means end of stream.
pub(super) fn poll_read_chunk<R: AsyncRead + Unpin>(io: &mut R, cx: &mut Context<'_>) -> Poll<std::io::Result<Bytes>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut rb = ReadBuf::uninit(&mut stack);
    ready!(Pin::new(io).poll_read(cx, &mut rb))?;
    Poll::Ready(Ok(Bytes::copy_from_slice(rb.filled())))
}

/// The request head (and a small body with it) as written to the socket. A `Host` header is
/// added unless the request has one; framing headers are always the client's own.
pub(super) fn encode_request(req: &Request<Bytes>, host: &str) -> Vec<u8> {
    let body = req.body();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut out =
        Vec::with_capacity(256 + req.headers().len() * 48 + if body.len() <= INLINE_BODY { body.len() } else { 0 });
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if path.is_empty() { b"/" } else { path.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers().contains_key(HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in req.headers() {
        if k == CONTENT_LENGTH || k == TRANSFER_ENCODING || k == CONNECTION {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
    if !body.is_empty() || !bodiless {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if body.len() <= INLINE_BODY {
        out.extend_from_slice(body);
    }
    out
}

/// Where sending a request failed. `retry` says another connection may be tried: only when not
/// one byte of the request was written, or when the method is idempotent (GET, HEAD) and no
/// answer byte had arrived. A POST that reached the server may have been run and billed, so it
/// is never sent again (hyper-util's rule).
pub(super) struct SendError {
    pub error: ClientError,
    pub retry: bool,
}

/// Write the request on `conn` and read the answer's head; the body is read as it is polled.
pub(super) async fn send(mut conn: Conn, head: &[u8], req: &Request<Bytes>) -> Result<Response<H1Body>, SendError> {
    let body = req.body();
    let idempotent = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut written = false;
    let write = async {
        // The first write tells "nothing sent" (the socket was already dead) from "sent".
        let n = conn.io.write(head).await?;
        written = n > 0;
        conn.io.write_all(&head[n..]).await?;
        if body.len() > INLINE_BODY {
            conn.io.write_all(body).await?;
        }
        conn.io.flush().await
    };
    if let Err(e) = write.await {
        return Err(SendError { error: ClientError::io("sending the request", &e), retry: !written || idempotent });
    }
    // Usually the head (and often the whole answer) comes in one read, which is parsed where it
    // landed; only a head cut across reads is joined.
    let mut buf = Bytes::new();
    let mut answered = false;
    loop {
        // Parse before reading: an interim answer and the real one can come in one read.
        if !buf.is_empty() {
            let fail = |error| Err(SendError { error, retry: false });
            match parse_head(&buf) {
                Err(e) => return fail(malformed(e)),
                Ok(None) if buf.len() > MAX_HEAD => {
                    return fail(ClientError::new(TransportKind::Malformed, "answer head larger than 64 KB"))
                }
                Ok(None) => {}
                Ok(Some((len, head))) => {
                    buf = buf.slice(len..);
                    // Interim answers (100 Continue, 103 Early Hints) precede the real one; no
                    // request asks for an upgrade, so a 101 is the server's mistake.
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return fail(ClientError::new(TransportKind::Malformed, "unexpected 101 Switching Protocols"));
                    }
                    if head.status.is_informational() {
                        continue;
                    }
                    let framing = match Framing::of(&head, req.method()) {
                        Ok(f) => f,
                        Err(e) => return fail(malformed(e)),
                    };
                    let reusable = head.keep_alive() && !framing.ends_at_close() && !head.ambiguous();
                    let mut resp = Response::new(H1Body { conn: Some(conn), buf, framing, reusable, draining: false });
                    *resp.status_mut() = head.status;
                    *resp.version_mut() = head.version;
                    *resp.headers_mut() = head.headers;
                    return Ok(resp);
                }
            }
        }
        let chunk = match poll_fn(|cx| poll_read_chunk(&mut conn.io, cx)).await {
            Ok(c) if c.is_empty() => {
                let error = ClientError::new(TransportKind::Reset, "connection closed before an answer arrived");
                return Err(SendError { error, retry: !answered && idempotent });
            }
            Ok(c) => c,
            Err(e) => {
                let error = ClientError::io("reading the answer", &e);
                return Err(SendError { error, retry: !answered && idempotent });
            }
        };
        answered = true;
        buf = join(buf, chunk);
    }
}

/// An HTTP/1.1 answer's body. Reading it to the end hands the connection back to the pool;
/// dropping it earlier closes the connection.
pub struct H1Body {
    conn: Option<Conn>,
    /// Received and not yet decoded.
    buf: Bytes,
    framing: Framing,
    reusable: bool,
    /// This body is the background drain of one that was dropped early.
    draining: bool,
}

/// What a dropped body may still have left for its connection to be reused: a stream ends with
/// its terminal event a few bytes before the chunked body does (`data: [DONE]`, `0\r\n\r\n`).
const DRAIN_MAX: u64 = 64 << 10;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for H1Body {
    /// A stream's reader stops at the terminal event, before the body's end: read the rest in
    /// the background (bounded in bytes and time) so the connection can serve the next request
    /// instead of paying TCP and TLS again. Anything longer or slower closes it.
    fn drop(&mut self) {
        if self.draining || !self.reusable {
            return;
        }
        let small = match self.framing {
            Framing::Length(n) => n <= DRAIN_MAX,
            Framing::Chunked(Chunk::Done) | Framing::Close => false,
            Framing::Chunked(_) => true,
        };
        let Some(conn) = self.conn.take().filter(|_| small) else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mut rest = H1Body {
            conn: Some(conn),
            buf: std::mem::take(&mut self.buf),
            framing: self.framing,
            reusable: true,
            draining: true,
        };
        rt.spawn(async move {
            let drain = async {
                let mut read = 0u64;
                while let Some(frame) = std::future::poll_fn(|cx| rest.decode(cx)).await {
                    read += frame.ok()?.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_MAX {
                        return None;
                    }
                }
                Some(())
            };
            // `decode` returned the connection to the pool when it reached the end; on any
            // other way out it is dropped, and closed, with `rest`.
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Body").field("framing", &self.framing).finish_non_exhaustive()
    }
}

impl H1Body {
    /// Append one read to `buf`; `Ready(Ok(false))` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ClientError>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(false)) };
        let chunk = ready!(poll_read_chunk(&mut conn.io, cx)).map_err(|e| ClientError::io("reading the answer", &e))?;
        if chunk.is_empty() {
            return Poll::Ready(Ok(false));
        }
        // Only a line cut between two reads has something left to join.
        self.buf = join(std::mem::take(&mut self.buf), chunk);
        Poll::Ready(Ok(true))
    }

    /// The body is complete: the connection goes back to the pool if nothing else came with it.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && self.buf.is_empty() {
                conn.release();
            }
        }
    }

    /// The next frame by the answer's framing.
    fn decode(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        loop {
            match self.framing.step(&mut self.buf).map_err(malformed)? {
                Step::Data(d) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                Step::End => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Step::NeedMore if ready!(self.poll_fill(cx))? => {}
                Step::NeedMore if self.framing.ends_at_close() => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Step::NeedMore => {
                    return Poll::Ready(Some(Err(ClientError::new(
                        TransportKind::Reset,
                        "connection closed before the answer's end",
                    ))))
                }
            }
        }
    }
}

fn malformed(e: Malformed) -> ClientError {
    ClientError::new(TransportKind::Malformed, e.0)
}

/// `a` then `b`, copying only when both hold something.
fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    let mut joined = BytesMut::with_capacity(a.len() + b.len());
    joined.extend_from_slice(&a);
    joined.extend_from_slice(&b);
    joined.freeze()
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        self.decode(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
