//! The one shared upstream HTTP client over connections from [`crate::egress`] (happy eyeballs,
//! proxies, TLS roots): HTTP/2 when a TLS upstream offers it ([`super::h2`]), else HTTP/1.1 with
//! a keep-alive pool. Connections are kept by scheme, `host[:port]`, proxy and pool account, with
//! per-provider connect timeouts. Its own HTTP/1.1 because an open stream through hyper's client
//! held ~25 KB of buffers and channel blocks per connection even while idle; here an idle stream
//! holds a socket and a few words of state (benchmark f: 22.6 vs 52.5 KB per open stream).

use super::h1::{self, H1Body, SendError};
use super::h2::{self, H2Pool};
use crate::config::Provider;
pub use crate::egress::{ClientError, TransportKind};
use crate::egress::{Egress, EgressConfig, ProxyChoice, Route};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// A pooled connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 512;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket, plain or TLS.
pub(super) enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// The TLS handshake chose HTTP/2.
    fn is_h2(&self) -> bool {
        matches!(self, Io::Tls(t) if t.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Tcp($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            Io::Tls($s) => {
                let $s = std::pin::Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// A connection to one upstream host, which knows the pool it returns to.
pub(super) struct Conn {
    pub io: Io,
    tls: bool,
    authority: Arc<str>,
    /// Weak: the pool holds idle connections, and a dropped client must free them.
    pool: Weak<Pool>,
}

impl Conn {
    /// Back to the idle pool, after an answer was read to its end.
    pub(super) fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self);
        }
    }

    /// Still usable after sitting idle: nothing to read, not closed by the server.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(h1::poll_read_chunk(&mut self.io, &mut cx), Poll::Pending)
    }
}

#[derive(Default)]
struct Pool {
    idle: Mutex<Idle>,
}

/// Idle connections to one scheme's hosts, by `authority`, each with when it became idle.
type ByHost = HashMap<Arc<str>, Vec<(Conn, Instant)>>;

#[derive(Default)]
struct Idle {
    /// One map per scheme (http, https), so a lookup needs no allocation.
    by_host: [ByHost; 2],
    last_sweep: Option<Instant>,
}

impl Pool {
    fn take(&self, tls: bool, authority: &str) -> Option<Conn> {
        let now = Instant::now();
        loop {
            let (mut conn, since) = self.idle.lock().by_host[usize::from(tls)].get_mut(authority)?.pop()?;
            if now.duration_since(since) < IDLE_TIMEOUT && conn.is_open() {
                return Some(conn);
            }
        }
    }

    fn put(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        let list = idle.by_host[usize::from(conn.tls)].entry(conn.authority.clone()).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((conn, now));
        }
        // Connections to hosts no longer asked for would otherwise sit here half-closed.
        if idle.last_sweep.is_none_or(|t| now.duration_since(t) > IDLE_TIMEOUT / 3) {
            idle.last_sweep = Some(now);
            for map in &mut idle.by_host {
                map.retain(|_, list| {
                    list.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
                    !list.is_empty()
                });
            }
        }
    }
}

/// An upstream answer's body, over either protocol.
pub struct UpstreamBody(Proto);

enum Proto {
    H1(H1Body),
    H2(hyper::body::Incoming),
    /// A turn read off an upstream WebSocket, its events already framed as SSE.
    Ws(tokio::sync::mpsc::Receiver<Bytes>),
}

impl UpstreamBody {
    /// The events a WebSocket reader sends, as an event-stream body that ends when it stops.
    pub(super) fn from_channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> UpstreamBody {
        UpstreamBody(Proto::Ws(rx))
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Proto::H1(b) => b.fmt(f),
            Proto::H2(_) => f.write_str("UpstreamBody(HTTP/2)"),
            Proto::Ws(_) => f.write_str("UpstreamBody(WebSocket)"),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        match &mut self.get_mut().0 {
            Proto::H1(b) => Pin::new(b).poll_frame(cx),
            Proto::H2(b) => Pin::new(b).poll_frame(cx).map_err(|e| h2::error("reading the answer", &e)),
            Proto::Ws(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Proto::H1(b) => b.is_end_stream(),
            Proto::H2(b) => b.is_end_stream(),
            Proto::Ws(rx) => rx.is_closed() && rx.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Proto::H1(b) => b.size_hint(),
            Proto::H2(b) => b.size_hint(),
            Proto::Ws(_) => SizeHint::default(),
        }
    }
}

/// Which pool account a request is for, carried in its extensions: each account gets its own
/// connections, as each Codex install has its own, so the upstream never sees two accounts on
/// one connection.
#[derive(Debug, Clone)]
pub struct Identity(pub Arc<str>);

/// Where a request goes, borrowed from its URI (this runs for every request).
struct Dest<'a> {
    tls: bool,
    /// Host as used to connect and for TLS (no IPv6 brackets).
    host: &'a str,
    port: u16,
    /// `host[:port]` as written in the URL: the `Host` header and, with `tls`, the pool key.
    authority: &'a str,
}

impl<'a> Dest<'a> {
    fn of(uri: &'a http::Uri) -> Result<Dest<'a>, ClientError> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(ClientError::new(TransportKind::Connect, format!("unsupported URL scheme in {uri}"))),
        };
        let raw = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ClientError::new(TransportKind::Connect, "URL has no host"))?;
        let authority = uri.authority().map_or(raw, |a| a.as_str());
        // Credentials in a URL are not sent as a Host header.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        Ok(Dest {
            tls,
            host: raw.trim_start_matches('[').trim_end_matches(']'),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority,
        })
    }
}

/// The shared client; clones share the pool.
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
    h2: Arc<H2Pool>,
    /// Connect timeout by `host:port`.
    connect_timeouts: Arc<HashMap<String, Duration>>,
    egress: Egress,
    /// The egress TLS settings offering HTTP/1.1 only: a WebSocket upgrade is an HTTP/1.1 request.
    tls_h1: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client that connects directly (no proxy from the environment): for tools and tests.
    pub fn new(providers: &[Provider]) -> UpstreamClient {
        let egress = Egress::new(&EgressConfig::default()).expect("the default TLS setup works");
        Self::with_egress(providers, egress)
    }

    pub fn with_egress(providers: &[Provider], egress: Egress) -> UpstreamClient {
        let mut connect_timeouts = HashMap::new();
        for p in providers {
            if let Ok(uri) = p.base_url.parse::<http::Uri>() {
                if let Ok(d) = Dest::of(&uri) {
                    // Two providers on one host: the longer timeout wins.
                    let e = connect_timeouts.entry(format!("{}:{}", d.host, d.port)).or_insert(p.timeouts.connect);
                    *e = (*e).max(p.timeouts.connect);
                }
            }
        }
        let mut tls_h1 = (*egress.tls_config()).clone();
        tls_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        UpstreamClient {
            pool: Arc::default(),
            h2: Arc::default(),
            connect_timeouts: Arc::new(connect_timeouts),
            egress,
            tls_h1: Arc::new(tls_h1),
        }
    }

    /// A connection for a WebSocket to the `http(s)://` URL `url`, by the route a request to it
    /// would take (`choice`: the account's or provider's proxy).
    pub(super) async fn websocket_io(&self, url: &http::Uri, choice: Option<&ProxyChoice>) -> Result<Io, ClientError> {
        let dest = Dest::of(url)?;
        let route = self.egress.route(url, choice);
        self.connect(&dest, &route, true).await
    }

    /// Send a request; resolves when the answer's head arrives. A pooled connection that turns
    /// out to have been closed by the server is replaced by a fresh one once — for a POST only
    /// if none of it had been written (see [`h1::SendError`], [`h2::Failed`]).
    pub async fn request(&self, mut req: http::Request<Bytes>) -> Result<http::Response<UpstreamBody>, ClientError> {
        let route = self.egress.route(req.uri(), req.extensions().get::<ProxyChoice>());
        if req.uri().scheme_str() == Some("https") {
            let key = key(&Dest::of(req.uri())?, &route, &req).into_owned();
            if let Some(mut send) = self.h2.get(&key) {
                // Boxed, as below: HTTP/2's futures stay out of the HTTP/1.1 path's size.
                match Box::pin(h2::send(&mut send, req)).await {
                    Ok(resp) => return Ok(resp.map(|b| UpstreamBody(Proto::H2(b)))),
                    Err(h2::Failed::Unsent(r)) => req = *r,
                    Err(h2::Failed::Sent(e)) => return Err(e),
                }
            }
        }
        let dest = Dest::of(req.uri())?;
        let key = key(&dest, &route, &req);
        let h1_answer = |r: http::Response<H1Body>| r.map(|b| UpstreamBody(Proto::H1(b)));
        if let Some(conn) = self.pool.take(dest.tls, &key) {
            let head = h1::encode_request(&req, dest.authority);
            match h1::send(conn, &head, &req).await {
                Ok(resp) => return Ok(h1_answer(resp)),
                Err(SendError { retry: true, .. }) => {}
                Err(SendError { error, .. }) => return Err(error),
            }
        }
        let io = self.connect(&dest, &route, false).await?;
        if io.is_h2() {
            let key = key.into_owned();
            let mut send = Box::pin(h2::handshake(io, dest.authority)).await?;
            self.h2.put(&key, &send);
            return match Box::pin(h2::send(&mut send, req)).await {
                Ok(resp) => Ok(resp.map(|b| UpstreamBody(Proto::H2(b)))),
                Err(h2::Failed::Sent(e)) => Err(e),
                Err(h2::Failed::Unsent(_)) => {
                    Err(ClientError::new(TransportKind::Reset, "the new HTTP/2 connection closed at once"))
                }
            };
        }
        let conn = Conn { io, tls: dest.tls, authority: Arc::from(&*key), pool: Arc::downgrade(&self.pool) };
        let head = h1::encode_request(&req, dest.authority);
        h1::send(conn, &head, &req).await.map(h1_answer).map_err(|e| e.error)
    }

    async fn connect(&self, dest: &Dest<'_>, route: &Route, h1_only: bool) -> Result<Io, ClientError> {
        let hp = format!("{}:{}", dest.host, dest.port);
        let limit = self.connect_timeouts.get(&hp).copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connect = async {
            let tcp: TcpStream = self.egress.tcp(dest.host, dest.port, route).await?;
            if !dest.tls {
                return Ok(Io::Tcp(tcp));
            }
            let name = rustls::pki_types::ServerName::try_from(dest.host.to_owned()).map_err(|_| {
                ClientError::new(TransportKind::Tls, format!("`{}` is not a valid TLS server name", dest.host))
            })?;
            let config = if h1_only { self.tls_h1.clone() } else { self.egress.tls_config() };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::new(TransportKind::Tls, format!("TLS handshake with {hp}: {e}")))?;
            Ok(Io::Tls(Box::new(tls)))
        };
        // Boxed: the TLS handshake's state is large, and only new connections need it; unboxed it
        // would make every request's future (moved several times per request) that much bigger.
        match tokio::time::timeout(limit, Box::pin(connect)).await {
            Ok(r) => r,
            Err(_) => {
                let msg = format!("connect to {hp}: timeout after {} ms", limit.as_millis());
                Err(ClientError::new(TransportKind::Timeout, msg))
            }
        }
    }
}

/// The pool key: connections through different proxies, or for different pool accounts,
/// are different connections. Borrowed in the common case (direct, no account).
fn key<'r>(dest: &Dest<'r>, route: &Route, req: &http::Request<Bytes>) -> std::borrow::Cow<'r, str> {
    let who = req.extensions().get::<Identity>();
    match (route, who) {
        (Route::Direct, None) => dest.authority.into(),
        (Route::Direct, Some(Identity(id))) => format!("{} as {id}", dest.authority).into(),
        (Route::Proxy(p), None) => format!("{} via {p}", dest.authority).into(),
        (Route::Proxy(p), Some(Identity(id))) => format!("{} via {p} as {id}", dest.authority).into(),
    }
}
