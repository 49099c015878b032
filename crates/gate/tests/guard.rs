//! DNS rebinding and cross-site requests: whatever a web page can make a browser send to the
//! gateway (a foreign `Host` after rebinding, a foreign `Origin`, a `text/plain` "simple"
//! request) is refused on every route before it reaches a handler or an upstream.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::send;
use common::{provider, Gate};

async fn setup(extra: &str) -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("[server]\n{extra}\n{}", provider("p", "responses", &m.url(), "models = [\"ok\"]"));
    (m, Gate::start(&cfg).await)
}

const TURN: &str = r#"{"model":"ok","input":"spend the user's quota"}"#;
const AUTH_JSON: &str = r#"{"auth_mode":"chatgpt","tokens":{"id_token":"x","access_token":"y","refresh_token":"z"}}"#;

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route() {
    let (m, gate) = setup("").await;
    for (method, path, body) in [
        ("GET", "/api/accounts", ""),
        ("GET", "/api/pool", ""),
        ("GET", "/metrics", ""),
        ("GET", "/health", ""),
        ("GET", "/v1/models", ""),
        ("POST", "/v1/responses", TURN),
        ("POST", "/api/accounts/import", AUTH_JSON),
    ] {
        for host in ["attacker.example", "attacker.example:2455", "localhost.attacker.example"] {
            let r = send(method, &gate.url(path), body, &[("host", host), ("content-type", "application/json")]).await;
            assert_eq!(r.status, 403, "{method} {path} Host: {host}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "host_not_allowed");
        }
    }
    assert_eq!(m.hits(), 0);
    // The gateway's own names still work.
    for host in ["localhost:2455", "127.0.0.1", "[::1]:2455"] {
        assert_eq!(send("GET", &gate.url("/api/accounts"), "", &[("host", host)]).await.status, 200, "{host}");
    }
}

#[tokio::test]
async fn cross_site_requests_cannot_add_accounts_or_spend_quota() {
    let (m, gate) = setup("").await;
    let evil = [("origin", "http://attacker.example"), ("content-type", "text/plain")];
    let r = send("POST", &gate.url("/api/accounts/import"), AUTH_JSON, &evil).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "origin_not_allowed");
    let r = send("POST", &gate.url("/v1/responses"), TURN, &evil).await;
    assert_eq!(r.status, 403);
    // A foreign origin is refused even with a JSON content type (the preflight is never answered,
    // but a server must not rely on the browser).
    let r = send(
        "POST",
        &gate.url("/v1/responses"),
        TURN,
        &[("origin", "http://1.2.3.4"), ("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(send("GET", &gate.url("/api/accounts"), "", &[("origin", "null")]).await.status, 403);
    // Without an Origin (old browsers, `<form>` posts), a body that is not JSON is refused.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let r = send("POST", &gate.url("/v1/responses"), TURN, &[("content-type", ct)]).await;
        assert_eq!(r.status, 415, "{ct}");
        assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
        let r = send("POST", &gate.url("/api/accounts/import"), AUTH_JSON, &[("content-type", ct)]).await;
        assert_eq!(r.status, 415, "{ct}");
    }
    assert_eq!(m.hits(), 0, "nothing reached the upstream");
    let accounts = send("GET", &gate.url("/api/accounts"), "", &[]).await.json();
    assert_eq!(accounts["accounts"].as_array().map_or(0, Vec::len), 0, "{accounts}");
    // The gateway's own pages and real clients pass.
    let own = [("origin", "http://127.0.0.1:2455"), ("content-type", "application/json")];
    assert_eq!(send("POST", &gate.url("/v1/responses"), TURN, &own).await.status, 200);
    let plain = [("content-type", "application/json; charset=utf-8")];
    assert_eq!(send("POST", &gate.url("/v1/responses"), TURN, &plain).await.status, 200);
}

#[tokio::test]
async fn configured_hosts_are_served() {
    let (_m, gate) = setup(r#"allowed_hosts = ["gate.example.com", "*.corp.example"]"#).await;
    for host in ["gate.example.com", "gate.example.com:2455", "ai.corp.example"] {
        let r = send("GET", &gate.url("/health"), "", &[("host", host)]).await;
        assert_eq!(r.status, 200, "{host}");
    }
    let r = send("GET", &gate.url("/health"), "", &[("host", "corp.example")]).await;
    assert_eq!(r.status, 403);
    let r =
        send("GET", &gate.url("/health"), "", &[("host", "gate.example.com"), ("origin", "https://ui.corp.example")])
            .await;
    assert_eq!(r.status, 200);
}
