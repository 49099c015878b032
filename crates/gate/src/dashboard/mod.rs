//! The browser dashboard, served by the binary on the gateway's own port: the page and its
//! assets are compiled in (no build step, nothing fetched at run time — plain JS, CSS and SVG
//! charts), served with a strict Content-Security-Policy; [`session`] signs people in and holds
//! the CSRF tokens; [`api`] is what the pages read.

pub mod api;
pub mod session;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// (path, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// What every dashboard response says about where it may be framed, loaded from and sent.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The whole UI's size in bytes (for the size test and the docs).
pub fn assets_size() -> usize {
    ASSETS.iter().map(|(_, _, b)| b.len()).sum()
}

fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, b)| {
                let d = Sha256::digest(b.as_bytes());
                format!("\"{}\"", d.iter().take(8).map(|x| format!("{x:02x}")).collect::<String>())
            })
            .collect()
    })[i]
}

fn serve(name: &str, req: &Request) -> Response {
    let Some(i) = ASSETS.iter().position(|(n, _, _)| *n == name) else {
        return crate::error::GateError::NotFound(format!("no dashboard asset {name}")).into_response();
    };
    let (_, ctype, body) = ASSETS[i];
    let tag = etag(i);
    let fresh = req.headers().get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    // Revalidated on each load (a 304 when unchanged), so an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /` and `GET /dashboard[/…]`: the page (its views are `#/…` fragments).
pub async fn page(req: Request) -> Response {
    serve("index.html", &req)
}

/// `GET /dashboard/assets/{name}`.
pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>, req: Request) -> Response {
    serve(&name, &req)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_whole_ui_is_small() {
        // The budget is 300 KB compressed; this holds the uncompressed total under it.
        assert!(super::assets_size() < 300 << 10, "{} bytes", super::assets_size());
        for (name, _, body) in super::ASSETS {
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{name} refers to another origin");
        }
    }
}
