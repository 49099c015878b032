//! The first check every request meets. A web page the user visits can make the browser send
//! requests to `http://127.0.0.1:2455` (cross-site "simple" requests) or, after DNS rebinding,
//! to `http://attacker.example:2455` that land on the gateway. So, on every route:
//! - `Host` must be a loopback name, an IP literal (a browser only sends one when the page's
//!   own origin is that address) or a name in `[server] allowed_hosts`;
//! - an `Origin`, when present, must be the request's own origin or an allowed host;
//! - a request with a body that changes state must say `Content-Type: application/json`, which
//!   a cross-site form or `no-cors` fetch cannot send without a CORS preflight (never answered).

use crate::app::App;
use crate::error::GateError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Method};
use std::net::IpAddr;
use std::sync::Arc;

/// The host part of an authority (`host[:port]`, `[v6]:port`). Names are compared without
/// regard to case, so nothing here allocates (this runs for every request).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// `host` ends with `.suffix` (case-insensitively).
fn is_subdomain(host: &str, suffix: &str) -> bool {
    let (h, s) = (host.as_bytes(), suffix.as_bytes());
    h.len() > s.len() + 1 && h[h.len() - s.len() - 1] == b'.' && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || is_subdomain(host, "localhost")
}

/// `allowed` is lower-cased when the config is read.
fn configured(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => is_subdomain(host, suffix),
        None => host.eq_ignore_ascii_case(a),
    })
}

/// May a request name `authority` in its `Host`?
pub fn host_allowed(authority: &str, allowed: &[String]) -> bool {
    let host = host_of(authority.trim());
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty() && (is_loopback_name(host) || host.parse::<IpAddr>().is_ok() || configured(host, allowed))
}

/// May a page at `origin` send requests to this gateway at `authority`? Only its own pages
/// (same scheme-less authority), loopback names, or configured hosts. An IP-literal origin other
/// than the gateway's own is a foreign site.
pub fn origin_allowed(origin: &str, authority: Option<&str>, allowed: &[String]) -> bool {
    let Some((_, rest)) = origin.split_once("://") else { return false };
    let o = rest.trim_end_matches('/');
    if authority.is_some_and(|a| a.trim().eq_ignore_ascii_case(o)) {
        return true;
    }
    let host = host_of(o);
    let loopback_ip = host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback());
    is_loopback_name(host) || loopback_ip || configured(host, allowed)
}

/// `application/json`, or any `+json` type, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// Check a request's Host, Origin and Content-Type; `Err` is the refusal to send. `has_body`:
/// the request carries body bytes (whatever its headers say, e.g. HTTP/2 without a length).
pub fn check(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    has_body: bool,
    allowed: &[String],
) -> Result<(), GateError> {
    // HTTP/2 carries the authority in the URI; HTTP/1.1 in Host. A request with neither did not
    // come from a browser.
    let authority =
        headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    if let Some(a) = authority {
        if !host_allowed(a, allowed) {
            return Err(GateError::Forbidden {
                code: "host_not_allowed",
                message: "this gateway does not answer for that Host; add it to [server] allowed_hosts".into(),
            });
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| origin_allowed(o, authority, allowed));
        if !ok {
            return Err(GateError::Forbidden {
                code: "origin_not_allowed",
                message: "cross-site requests are refused; add the page's host to [server] allowed_hosts".into(),
            });
        }
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let body = has_body || declares_body(headers) || headers.contains_key(header::CONTENT_TYPE);
    if changes_state && body && !is_json(headers) && !sdk_upload(uri, headers) {
        return Err(GateError::UnsupportedMediaType);
    }
    Ok(())
}

/// The one form upload an API client makes: an image edit (the OpenAI SDKs send it as
/// `multipart/form-data`). It must carry `Authorization`, which a page cannot add to a
/// cross-site request without a preflight the gateway never grants.
fn sdk_upload(uri: &http::Uri, headers: &HeaderMap) -> bool {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("multipart/form-data"));
    multipart && uri.path().ends_with("/images/edits") && headers.contains_key(header::AUTHORIZATION)
}

/// The middleware form of [`check`], outermost on every route.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    use http_body::Body as _;
    let has_body = !req.body().is_end_stream();
    if let Err(e) = check(req.method(), req.uri(), req.headers(), has_body, &app.config.server.allowed_hosts) {
        tracing::debug!(code = %e.code(), path = %req.uri().path(), "request refused by the host/origin guard");
        return e.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let allowed = vec!["gate.example.com".to_owned(), "*.corp.example".to_owned()];
        for ok in [
            "localhost",
            "LOCALHOST:2455",
            "app.localhost:2455",
            "127.0.0.1:2455",
            "[::1]:2455",
            "::1",
            "10.0.0.5:2455",
            "gate.example.com",
            "gate.example.com.:2455",
            "a.corp.example:1",
            "a.b.corp.example",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:2455",
            "localhost.attacker.example",
            "corp.example",
            "xcorp.example",
            "",
            "gate.example.com.evil",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let allowed = vec!["*.corp.example".to_owned()];
        assert!(origin_allowed("http://127.0.0.1:2455", Some("127.0.0.1:2455"), &[]));
        assert!(origin_allowed("http://localhost:3000", Some("127.0.0.1:2455"), &[]));
        assert!(origin_allowed("http://[::1]:2455", Some("127.0.0.1:2455"), &[]));
        assert!(origin_allowed("https://ui.corp.example", Some("gate:2455"), &allowed));
        assert!(origin_allowed("http://10.0.0.5:2455", Some("10.0.0.5:2455"), &[]));
        for bad in ["http://attacker.example", "null", "http://1.2.3.4", "http://10.0.0.5:2455", "file://"] {
            assert!(!origin_allowed(bad, Some("127.0.0.1:2455"), &allowed), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        let req = |method: Method, ct: Option<&str>, len: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:2455".parse().unwrap());
            h.insert(header::CONTENT_LENGTH, len.parse().unwrap());
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            check(&method, &"/v1/responses".parse().unwrap(), &h, len != "0", &[])
        };
        assert!(req(Method::POST, Some("application/json"), "10").is_ok());
        assert!(req(Method::POST, Some("Application/JSON; charset=utf-8"), "10").is_ok());
        assert!(req(Method::POST, None, "0").is_ok(), "a bodiless POST (pause, reload)");
        assert!(req(Method::GET, Some("text/plain"), "0").is_ok());
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")] {
            assert!(matches!(req(Method::POST, ct, "10"), Err(GateError::UnsupportedMediaType)), "{ct:?}");
        }
        assert!(matches!(req(Method::DELETE, Some("text/plain"), "0"), Err(GateError::UnsupportedMediaType)));
        // An SDK's image edit upload: multipart with its Authorization, on that path only.
        let upload = |path: &str, auth: bool| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap());
            h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
            if auth {
                h.insert(header::AUTHORIZATION, "Bearer sk-x".parse().unwrap());
            }
            check(&Method::POST, &path.parse().unwrap(), &h, true, &[])
        };
        assert!(upload("/v1/images/edits", true).is_ok());
        assert!(matches!(upload("/v1/images/edits", false), Err(GateError::UnsupportedMediaType)));
        assert!(matches!(upload("/v1/responses", true), Err(GateError::UnsupportedMediaType)));
    }
}
