//! The load generator, on hyper: one task per connection, each sending requests back to back
//! (closed loop) or on a schedule (fixed rate), or N streams held open at once. Every answer is
//! read to its end and checked for its terminal marker; time to first byte and total time are
//! recorded per request.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use memchr::memmem::Finder;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One kind of request, sent to one target.
pub struct Spec {
    /// `host:port`.
    pub addr: String,
    /// Path and query, e.g. `/v1/responses`.
    pub path: String,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Bytes every complete answer contains (`[DONE]`, `response.completed`, …).
    pub expect: Finder<'static>,
    /// HTTPS with this client config (a target that is the TLS mock itself).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per successful request, microseconds.
    pub total_us: Vec<u32>,
    pub ttfb_us: Vec<u32>,
    /// `x-codex-gate-overhead-ms` of each answer that carried it, microseconds.
    pub header_overhead_us: Vec<u32>,
    pub bytes: u64,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    pub fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.total_us.extend(o.total_us);
        self.ttfb_us.extend(o.ttfb_us);
        self.header_overhead_us.extend(o.header_overhead_us);
        self.bytes += o.bytes;
    }
}

pub async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    connect_with(addr, None).await
}

/// An HTTP/1.1 connection to `addr`, over TLS when `tls` is given (server name: its host).
pub async fn connect_with(
    addr: &str,
    tls: Option<&Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let Some(cfg) = tls else { return handshake(tcp).await };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    handshake(stream).await
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Finds the marker even when it straddles two frames.
struct Scan<'a> {
    finder: &'a Finder<'static>,
    carry: Vec<u8>,
    found: bool,
}

impl Scan<'_> {
    fn push(&mut self, d: &[u8]) {
        if self.found {
            return;
        }
        let n = self.finder.needle().len();
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(&d[..d.len().min(n)]);
        if self.finder.find(&window).is_some() || self.finder.find(d).is_some() {
            self.found = true;
            return;
        }
        if d.len() >= n {
            window.clear();
            window.extend_from_slice(&d[d.len() - n..]);
        } else {
            let cut = window.len().saturating_sub(n);
            window.drain(..cut);
        }
        self.carry = window;
    }
}

/// Send one request on `conn` and read the answer to its end. `open` counts streams that have
/// started and not yet ended.
async fn one(
    conn: &mut SendRequest<Full<Bytes>>,
    spec: &Spec,
    t: &mut Tally,
    open: Option<&AtomicUsize>,
) -> Result<(), String> {
    conn.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::post(&spec.path)
        .header(http::header::HOST, &spec.addr)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(spec.body.clone()))
        .map_err(|e| e.to_string())?;
    for (k, v) in &spec.headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let t0 = Instant::now();
    let resp = conn.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let (parts, mut body) = resp.into_parts();
    if !parts.status.is_success() {
        let b = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(format!("HTTP {}: {}", parts.status, String::from_utf8_lossy(&b[..b.len().min(300)])));
    }
    if let Some(ms) = parts.headers.get("x-codex-gate-overhead-ms").and_then(|v| v.to_str().ok()?.parse::<f64>().ok()) {
        t.header_overhead_us.push((ms * 1000.0) as u32);
    }
    let mut scan = Scan { finder: &spec.expect, carry: Vec::new(), found: false };
    let mut ttfb = None;
    let mut bytes = 0u64;
    let result = loop {
        match body.frame().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(format!("body: {e}")),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    if ttfb.is_none() && !d.is_empty() {
                        ttfb = Some(t0.elapsed());
                        if let Some(o) = open {
                            o.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    bytes += d.len() as u64;
                    scan.push(&d);
                }
            }
        }
    };
    if let (Some(o), Some(_)) = (open, ttfb) {
        o.fetch_sub(1, Ordering::Relaxed);
    }
    result?;
    if !scan.found {
        return Err(format!("answer ended without {:?}", String::from_utf8_lossy(spec.expect.needle())));
    }
    let total = t0.elapsed();
    t.ok += 1;
    t.bytes += bytes;
    t.total_us.push(total.as_micros() as u32);
    t.ttfb_us.push(ttfb.unwrap_or(total).as_micros() as u32);
    Ok(())
}

/// `connections` connections sending until `duration` has passed; with `rate`, the whole run
/// sends that many requests per second in total (spread over the connections), else each
/// connection sends its next request as soon as the last answer ended. Returns the tally and
/// the time until the last answer ended.
pub async fn run(spec: Arc<Spec>, connections: usize, duration: Duration, rate: Option<f64>) -> (Tally, Duration) {
    let start = Instant::now();
    let until = start + duration;
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(0.001)));
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let spec = spec.clone();
            // Paced connections start staggered so the rate is even, not bursts of `connections`.
            let offset = interval.map(|iv| iv.mul_f64(i as f64 / connections as f64)).unwrap_or_default();
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut conn = None;
                let mut next = tokio::time::Instant::from_std(start + offset);
                while Instant::now() < until {
                    if let Some(iv) = interval {
                        tokio::time::sleep_until(next).await;
                        next += iv;
                        if Instant::now() >= until {
                            break;
                        }
                    }
                    if conn.is_none() {
                        match connect_with(&spec.addr, spec.tls.as_ref()).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                t.error(e);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    if let Err(e) = one(c, &spec, &mut t, None).await {
                        t.error(e);
                        conn = None;
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        if let Ok(t) = task.await {
            all.merge(t);
        }
    }
    (all, start.elapsed())
}

/// Streams held open together: each on its own connection, opened evenly over `ramp`.
pub struct Hold {
    /// Streams that have received their first byte and not yet ended.
    pub open: Arc<AtomicUsize>,
    pub task: tokio::task::JoinHandle<Tally>,
}

pub fn hold(spec: Arc<Spec>, streams: usize, ramp: Duration) -> Hold {
    let open = Arc::new(AtomicUsize::new(0));
    let o = open.clone();
    let task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..streams)
            .map(|i| {
                let spec = spec.clone();
                let open = o.clone();
                let at = start + ramp.mul_f64(i as f64 / streams.max(1) as f64);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let mut t = Tally::default();
                    match connect_with(&spec.addr, spec.tls.as_ref()).await {
                        Ok(mut c) => {
                            if let Err(e) = one(&mut c, &spec, &mut t, Some(&open)).await {
                                t.error(e);
                            }
                        }
                        Err(e) => t.error(e),
                    }
                    t
                })
            })
            .collect();
        let mut all = Tally::default();
        for task in tasks {
            if let Ok(t) = task.await {
                all.merge(t);
            }
        }
        all
    });
    Hold { open, task }
}

/// The `p`-th percentile (0–100) of `sorted` (microseconds), in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    let v = sorted;
    if v.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_found_across_frames() {
        let f = Finder::new(b"[DONE]").into_owned();
        for split in 0..=14 {
            let all = b"data: x\n\ndata: [DONE]\n\n";
            let mut s = Scan { finder: &f, carry: Vec::new(), found: false };
            let (a, b) = all.split_at(split.min(all.len()));
            for piece in a.chunks(1).chain(std::iter::once(b)) {
                s.push(piece);
            }
            assert!(s.found, "split at {split}");
        }
        let mut s = Scan { finder: &f, carry: Vec::new(), found: false };
        s.push(b"data: [DO");
        s.push(b"NE");
        assert!(!s.found);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 51.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }
}
