//! Bad input gets a clear 4xx in OpenAI's error shape, never a panic or a 500, and the gateway
//! keeps serving; zstd bodies are accepted; only loopback clients are served.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{post, send};
use common::{provider, Gate};
use serde_json::json;

async fn setup() -> (MockUpstream, Gate) {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("[server]\nmax_body_bytes = 4096\n{}", provider("p", "responses", &m.url(), "models = [\"ok\"]"));
    let gate = Gate::start(&cfg).await;
    (m, gate)
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_4xx_and_the_gateway_keeps_serving() {
    let (m, gate) = setup().await;
    let url = gate.url("/v1/responses");
    let json_ct = [("content-type", "application/json")];
    let big = format!(r#"{{"model":"ok","input":"{}"}}"#, "x".repeat(5000));
    let zstd_ct = [("content-encoding", "zstd"), ("content-type", "application/json")];
    // A frame whose header asks for a 1 TiB window: refused before any decoder allocates.
    let mut huge_window = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 30 << 3];
    huge_window.resize(2 << 10, 0);
    let bomb = zstd(format!(r#"{{"model":"ok","input":"{}"}}"#, "y".repeat(100_000)).as_bytes());
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        ("not an object", b"[1,2,3]".to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        ("invalid UTF-8", b"{\"model\":\"ok\",\"input\":\"\xff\"}".to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        ("empty body", b"".to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        (
            "wrong type for stream",
            br#"{"model":"ok","stream":"yes"}"#.to_vec(),
            json_ct.to_vec(),
            400,
            "invalid_request",
        ),
        ("wrong type for model", br#"{"model":42}"#.to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        ("missing model", br#"{"input":"x"}"#.to_vec(), json_ct.to_vec(), 400, "invalid_request"),
        ("unknown model", br#"{"model":"gpt-nope","input":"x"}"#.to_vec(), json_ct.to_vec(), 404, "model_not_found"),
        ("unknown provider", br#"{"model":"ghost/x","input":"x"}"#.to_vec(), json_ct.to_vec(), 404, "model_not_found"),
        ("too large", big.into_bytes(), json_ct.to_vec(), 413, "payload_too_large"),
        ("bad zstd", b"definitely not zstd".to_vec(), zstd_ct.to_vec(), 400, "invalid_request"),
        ("zstd bomb", bomb, zstd_ct.to_vec(), 413, "payload_too_large"),
        ("zstd frame declaring a 1 TiB window", huge_window, zstd_ct.to_vec(), 400, "invalid_request"),
        ("gzip", b"x".to_vec(), vec![("content-encoding", "gzip"), json_ct[0]], 415, "unsupported_encoding"),
        (
            "not JSON content",
            br#"{"model":"ok"}"#.to_vec(),
            vec![("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
    ];
    for (name, body, headers, status, code) in cases {
        let resp = send("POST", &url, body, &headers).await;
        assert_eq!(resp.status.as_u16(), status, "{name}: {}", resp.text());
        let err = resp.json();
        assert_eq!(err["error"]["code"], code, "{name}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}");
        assert!(err["error"]["type"].is_string(), "{name}");
    }
    let param = send("POST", &url, br#"{"model":"ok","stream":"yes"}"#.to_vec(), &json_ct).await.json();
    assert_eq!(param["error"]["param"], "stream");
    assert_eq!(m.hits(), 0, "nothing invalid reached the upstream");

    for (method, path, status, code) in [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("GET", "/v1/responses", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ] {
        let resp = send(method, &gate.url(path), Vec::new(), &[]).await;
        assert_eq!(resp.status.as_u16(), status, "{method} {path}");
        assert_eq!(resp.json()["error"]["code"], code, "{method} {path}");
    }

    // Still serving.
    let ok = post(&url, &json!({"model": "ok", "input": "x"})).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn zstd_bodies_are_decompressed_before_forwarding() {
    let (m, gate) = setup().await;
    let body = br#"{"model":"ok","input":"compressed hello","stream":true}"#;
    let resp = send(
        "POST",
        &gate.url("/backend-api/codex/responses"),
        zstd(body),
        &[("content-encoding", "zstd"), ("content-type", "application/json")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let up = m.last_request().unwrap();
    assert_eq!(&up.body[..], &body[..]);
    assert_eq!(up.header("content-encoding"), None);
}

#[tokio::test]
async fn broken_websocket_handshakes_and_plain_gets_are_refused_clearly() {
    let (_m, gate) = setup().await;
    for path in ["/v1/responses", "/backend-api/codex/responses", "/responses"] {
        // An upgrade without its key (or with another version) is not a WebSocket handshake.
        for headers in [
            &[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-version", "13")][..],
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ][..],
        ] {
            let resp = send("GET", &gate.url(path), Vec::new(), headers).await;
            assert_eq!(resp.status, 400, "{path}");
            assert!(resp.json()["error"]["message"].as_str().unwrap().contains("WebSocket handshake"), "{path}");
        }
        let resp = send("GET", &gate.url(path), Vec::new(), &[]).await;
        assert_eq!(resp.status, 405, "{path}: a GET that is no upgrade");
    }
}

#[tokio::test]
async fn only_loopback_clients_are_served() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    let (_m, gate) = setup().await;
    let router = codex_gate::server::router(gate.app.clone());
    let call = |ip: &str, path: &str| {
        let method = if path == "/metrics" { "GET" } else { "POST" };
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"model":"ok","input":"x"}"#))
            .unwrap();
        let addr: std::net::SocketAddr = format!("{ip}:5555").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        router.clone().oneshot(req)
    };
    let remote = call("10.1.2.3", "/v1/responses").await.unwrap();
    assert_eq!(remote.status(), 403);
    let body = axum::body::to_bytes(remote.into_body(), 1 << 16).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(call("10.1.2.3", "/metrics").await.unwrap().status(), 403);
    assert_eq!(call("[::ffff:127.0.0.1]", "/v1/responses").await.unwrap().status(), 200);
    assert_eq!(call("[::1]", "/v1/responses").await.unwrap().status(), 200);
}
