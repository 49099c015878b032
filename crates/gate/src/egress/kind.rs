//! Transport failures by kind (as pingora's `ErrorType`): the kind is the error code a client
//! and the request log see, and the `/metrics` label, so an operator can tell a refused connect
//! from a DNS failure, a TLS failure, a reset, a timeout, a broken answer or a broken proxy.

use base64::Engine;
use http::HeaderValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// TCP connect refused or unreachable.
    Connect,
    Dns,
    Tls,
    /// The connection was reset or closed before the answer ended.
    Reset,
    /// Connect (including the TLS handshake) took too long.
    Timeout,
    /// The answer is not HTTP, or not the API's answer.
    Malformed,
    /// The configured proxy failed or refused.
    Proxy,
}

impl TransportKind {
    /// The error code for clients, the request log and metrics.
    pub fn code(self) -> &'static str {
        match self {
            TransportKind::Connect => "upstream_connect_failed",
            TransportKind::Dns => "upstream_dns_failed",
            TransportKind::Tls => "upstream_tls_failed",
            TransportKind::Reset => "upstream_connection_reset",
            TransportKind::Timeout => "upstream_connect_timeout",
            TransportKind::Malformed => "upstream_bad_answer",
            TransportKind::Proxy => "upstream_proxy_failed",
        }
    }
}

/// Why a request got no (usable) answer. The message names the step that failed, never a
/// header value or a proxy password.
#[derive(Debug)]
pub struct ClientError {
    pub kind: TransportKind,
    message: String,
}

impl ClientError {
    pub fn new(kind: TransportKind, message: impl Into<String>) -> ClientError {
        ClientError { kind, message: message.into() }
    }

    /// An I/O failure at `step`, typed by the error's kind.
    pub fn io(step: &str, e: &std::io::Error) -> ClientError {
        ClientError { kind: io_kind(e, TransportKind::Reset), message: format!("{step}: {e}") }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

fn io_kind(e: &std::io::Error, otherwise: TransportKind) -> TransportKind {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => TransportKind::Connect,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => TransportKind::Reset,
        TimedOut => TransportKind::Timeout,
        InvalidData => TransportKind::Tls,
        _ => otherwise,
    }
}

/// The message of `e` and all its sources.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Type a connector's error by what its source chain holds.
pub fn from_connect(e: &(dyn std::error::Error + 'static), host: &str, port: u16) -> ClientError {
    let mut kind = TransportKind::Connect;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<super::DnsError>() {
            kind = TransportKind::Dns;
            break;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = io_kind(io, TransportKind::Connect);
        }
        src = s.source();
    }
    ClientError::new(kind, format!("connect to {host}:{port}: {}", chain(e)))
}

/// A proxy URL as it may be shown: without its password.
pub fn redact_proxy(uri: &http::Uri) -> String {
    let s = uri.to_string();
    match (uri.authority().map(|a| a.as_str()), uri.scheme_str()) {
        (Some(a), Some(scheme)) if a.contains('@') => {
            let host = a.rsplit_once('@').map_or(a, |(_, h)| h);
            format!("{scheme}://***@{host}")
        }
        _ => s,
    }
}

/// `user:password` from a proxy URL, percent-decoding not applied (proxies take them as given).
pub fn userinfo(uri: &http::Uri) -> Option<(String, String)> {
    let a = uri.authority()?.as_str();
    let (info, _) = a.rsplit_once('@')?;
    let (u, p) = info.split_once(':').unwrap_or((info, ""));
    Some((u.to_owned(), p.to_owned()))
}

pub fn basic_auth(uri: &http::Uri) -> Option<HeaderValue> {
    let (u, p) = userinfo(uri)?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let mut v = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_redaction() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(ClientError::io("connect", &refused).kind, TransportKind::Connect);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ClientError::io("read", &reset).kind, TransportKind::Reset);
        let dns = super::super::DnsError(std::io::Error::other("no such host"));
        assert_eq!(from_connect(&dns, "nx.invalid", 443).kind, TransportKind::Dns);
        let p: http::Uri = "http://me:s3cret@proxy.lan:3128".parse().unwrap();
        assert_eq!(redact_proxy(&p), "http://***@proxy.lan:3128");
        assert_eq!(userinfo(&p), Some(("me".into(), "s3cret".into())));
        assert!(basic_auth(&p).unwrap().is_sensitive());
        let codes: std::collections::HashSet<_> = [
            TransportKind::Connect,
            TransportKind::Dns,
            TransportKind::Tls,
            TransportKind::Reset,
            TransportKind::Timeout,
            TransportKind::Malformed,
            TransportKind::Proxy,
        ]
        .iter()
        .map(|k| k.code())
        .collect();
        assert_eq!(codes.len(), 7, "each kind has its own code");
    }
}
