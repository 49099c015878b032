//! HTTP/2 to upstreams that offer it in ALPN (the ChatGPT backend and OpenAI do), through
//! hyper's client connection API: one connection per host, proxy and pool account carries all of
//! its concurrent streams, as Codex itself connects, so a turn pays no TCP or TLS setup and many
//! turns share one socket.

use super::client::Io;
use crate::egress::{ClientError, TransportKind};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection unused this long is let go (the server would close it soon anyway).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Pings while streams are open find a dead connection in seconds instead of at the stream's
/// idle timeout.
const PING_EVERY: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Flow-control windows. A stream's window bounds what one slow client can leave unread; the
/// connection's is shared by every stream of the account, so one stalled client must not stall
/// the rest.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

type Sender = SendRequest<Full<Bytes>>;

/// Open HTTP/2 connections by pool key.
#[derive(Default)]
pub(super) struct H2Pool {
    conns: Mutex<HashMap<Arc<str>, (Sender, Instant)>>,
}

impl H2Pool {
    /// A live connection for `key`, if there is one.
    pub(super) fn get(&self, key: &str) -> Option<Sender> {
        let mut conns = self.conns.lock();
        let (send, used) = conns.get_mut(key)?;
        if send.is_closed() || used.elapsed() > IDLE_TIMEOUT {
            conns.remove(key);
            return None;
        }
        *used = Instant::now();
        Some(send.clone())
    }

    /// Keep `send` for later requests, unless a live one is already kept (two requests that
    /// connected at once: the second connection serves its request and then closes).
    pub(super) fn put(&self, key: &str, send: &Sender) {
        let now = Instant::now();
        let mut conns = self.conns.lock();
        conns.retain(|_, (s, used)| !s.is_closed() && now.duration_since(*used) <= IDLE_TIMEOUT);
        if !conns.contains_key(key) {
            conns.insert(Arc::from(key), (send.clone(), now));
        }
    }
}

/// Start HTTP/2 on a connection whose TLS handshake chose `h2`; the connection is driven by a
/// task of its own until every sender and stream is gone.
pub(super) async fn handshake(io: Io, target: &str) -> Result<Sender, ClientError> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let (send, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::new(TransportKind::Malformed, format!("HTTP/2 handshake with {target}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/2 upstream connection ended");
        }
    });
    Ok(send)
}

/// Why a request on an HTTP/2 connection failed.
pub(super) enum Failed {
    /// Nothing of it reached the connection (it had closed): send it elsewhere.
    Unsent(Box<Request<Bytes>>),
    Sent(ClientError),
}

/// Send `req` as one stream on `send`; resolves when the answer's head arrives.
pub(super) async fn send(send: &mut Sender, req: Request<Bytes>) -> Result<Response<Incoming>, Failed> {
    let (mut parts, body) = req.into_parts();
    // The authority travels as `:authority`, built from the URI: never with credentials in it.
    parts.headers.remove(http::header::HOST);
    if let Some(a) = parts.uri.authority().filter(|a| a.as_str().contains('@')) {
        let bare = a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h).to_owned();
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.authority = bare.parse().ok();
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    // A second handle on the body (a reference count) in case it has to go elsewhere.
    let kept = body.clone();
    match send.try_send_request(Request::from_parts(parts, Full::new(body))).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Failed::Unsent(Box::new(Request::from_parts(req.into_parts().0, kept)))),
            None => Err(Failed::Sent(error("sending the request", e.error()))),
        },
    }
}

/// A hyper HTTP/2 failure as a typed transport error.
pub(super) fn error(step: &str, e: &hyper::Error) -> ClientError {
    let kind = if e.is_timeout() { TransportKind::Timeout } else { TransportKind::Reset };
    ClientError::new(kind, format!("{step} (HTTP/2): {}", crate::egress::chain(e)))
}
