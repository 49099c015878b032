//! Responses over WebSocket (codex-protocol §4) with a real WebSocket client: turns on each
//! upstream kind, `previous_response_id` with only the new items becoming the whole history,
//! the prewarm, errors as Codex reads them, the connection rules (keys, bad frames), and the
//! connection's own sockets to the pool's backend and to Responses providers that offer one.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::Gate;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn setup() -> (MockUpstream, Gate) {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = common::every_kind(&mock).await;
    (mock, gate)
}

async fn connect(gate: &Gate, path: &str, key: Option<&str>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    connect_with_answer(gate, path, key).await.map(|(ws, _)| ws)
}

/// [`connect`], with the upgrade's answer.
async fn connect_with_answer(
    gate: &Gate,
    path: &str,
    key: Option<&str>,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), tokio_tungstenite::tungstenite::Error> {
    let mut req = gate.url(path).replace("http://", "ws://").into_client_request().unwrap();
    req.headers_mut().insert("openai-beta", "responses_websockets=2026-02-06".parse().unwrap());
    req.headers_mut().insert("session-id", "sess-ws".parse().unwrap());
    if let Some(k) = key {
        req.headers_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await
}

/// Send one frame and read events until the turn ends (completed, failed, incomplete or error).
async fn turn(ws: &mut Ws, frame: Value) -> Vec<Value> {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    let mut events = Vec::new();
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .expect("the connection stays open")
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).expect("every frame is one JSON event");
        let end = matches!(
            v["type"].as_str(),
            Some("response.completed" | "response.failed" | "response.incomplete" | "error")
        );
        events.push(v);
        if end {
            return events;
        }
    }
}

fn create(model: &str, input: Value, previous: Option<&str>) -> Value {
    let mut f = json!({"type": "response.create", "model": model, "input": input, "stream": true,
                       "tools": [], "tool_choice": "auto", "parallel_tool_calls": true, "store": false});
    if let Some(p) = previous {
        f["previous_response_id"] = json!(p);
    }
    f
}

fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

fn completed_id(events: &[Value]) -> String {
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{events:?}");
    done["response"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn turns_on_every_upstream_kind_build_the_history_from_previous_response_id() {
    let (mock, gate) = setup().await;
    for model in ["resp/ok", "chat/ok", "pool/gpt-5.5"] {
        let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
        let first = turn(&mut ws, create(model, json!([user("first question")]), None)).await;
        let kinds: Vec<&str> = first.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"), "{model}: {kinds:?}");
        assert!(kinds.contains(&"response.output_text.delta"), "{model}: {kinds:?}");
        let id = completed_id(&first);
        // The next request names the last response and sends only what is new.
        let second = turn(&mut ws, create(model, json!([user("second question")]), Some(&id))).await;
        completed_id(&second);
        let sent = mock.last_request().unwrap();
        let up = String::from_utf8_lossy(&sent.body).into_owned();
        if model.starts_with("pool/") {
            // The pool's own socket to the backend: the backend holds the history, so the
            // frame names the previous response and carries only the new item.
            assert_eq!(sent.method, "WS", "{model}: over the connection's socket to the backend");
            let frame = sent.json();
            assert_eq!(frame["type"], "response.create");
            assert_eq!(frame["previous_response_id"], id.as_str(), "{model}");
            assert_eq!(frame["input"].as_array().map(Vec::len), Some(1), "{model}: {up}");
            assert!(up.contains("second question") && !up.contains("first question"), "{model}: {up}");
        } else {
            let (a, b, c) = (up.find("first question"), up.find("d0 d1 d2 d3 d4"), up.find("second question"));
            assert!(a.is_some() && b.is_some() && c.is_some(), "{model}: the whole history went upstream: {up}");
            assert!(a < b && b < c, "{model}: in order: question, answer, new question");
            assert!(!up.contains("previous_response_id"), "{model}");
        }
        // A response that is not the connection's last is refused, as OpenAI does.
        let stale = turn(&mut ws, create(model, json!([user("third")]), Some("resp_unknown"))).await;
        assert_eq!(stale[0]["type"], "error");
        assert_eq!(
            (stale[0]["status"].as_u64(), stale[0]["error"]["code"].as_str()),
            (Some(400), Some("previous_response_not_found"))
        );
    }
    // Each turn is a request in the log, like over HTTP (2 per kind; the refused ones never ran).
    let rows = gate.records(6).await;
    assert_eq!(rows.iter().filter(|r| r.status == 200).count(), 6);
    assert_eq!(gate.app.metrics.ws_turns.load(std::sync::atomic::Ordering::Relaxed), 6);
}

#[tokio::test]
async fn a_prewarm_answers_without_an_upstream_and_the_next_turn_builds_on_it() {
    let (mock, gate) = setup().await;
    let mut ws = connect(&gate, "/backend-api/codex/responses", None).await.unwrap();
    let hits = mock.hits();
    let mut warm = create("resp/ok", json!([user("the whole context")]), None);
    warm["generate"] = json!(false);
    let events = turn(&mut ws, warm).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["response.created", "response.completed"]);
    assert_eq!(events[1]["response"]["usage"]["input_tokens"], 0, "Codex needs a full usage object");
    assert_eq!(mock.hits(), hits, "a prewarm reaches no upstream");
    let id = completed_id(&events);
    let next = turn(&mut ws, create("resp/ok", json!([]), Some(&id))).await;
    completed_id(&next);
    assert!(String::from_utf8_lossy(&mock.last_request().unwrap().body).contains("the whole context"));
}

#[tokio::test]
async fn errors_arrive_as_codex_reads_them_and_the_connection_goes_on() {
    let (_mock, gate) = setup().await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    // An upstream refusal keeps its status, body and rate-limit headers.
    let e = turn(&mut ws, create("resp/usage-limit", json!([user("x")]), None)).await;
    assert_eq!(e.len(), 1);
    assert_eq!((e[0]["type"].as_str(), e[0]["status"].as_u64()), (Some("error"), Some(429)));
    assert_eq!(e[0]["error"]["type"], "usage_limit_reached");
    assert_eq!(e[0]["headers"]["x-codex-primary-used-percent"], "100.0");
    // A model nobody serves, malformed JSON, a frame that is not an object.
    let e = turn(&mut ws, create("nobody/knows", json!([]), None)).await;
    assert_eq!(e[0]["status"], 404, "{e:?}");
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!((e["status"].as_u64(), e["error"]["code"].as_str()), (Some(400), Some("invalid_json")), "{e}");
    // `response.processed` (Codex's acknowledgement) needs no answer: the next frame is the
    // binary frame's error.
    ws.send(Message::Text(json!({"type": "response.processed", "response_id": "x"}).to_string().into())).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let e: Value = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], "binary_frame");
    // ... and the connection still serves turns.
    completed_id(&turn(&mut ws, create("chat/ok", json!("plain string input"), None)).await);
}

/// The next frame as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn with_client_keys_the_upgrade_needs_one() {
    let (_mock, gate) = setup().await;
    let made = common::http::post(&gate.url("/api/keys"), &json!({"name": "ws-key"})).await;
    let secret = made.json()["key"].as_str().unwrap().to_owned();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let Err(err) = connect(&gate, "/v1/responses", None).await else { panic!("no key: the upgrade is refused") };
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 401),
        other => panic!("{other}"),
    }
    let mut ws = connect(&gate, "/v1/responses", Some(&secret)).await.unwrap();
    completed_id(&turn(&mut ws, create("resp/ok", json!([user("hi")]), None)).await);
    let row = gate.record_where("the keyed turn", |r| r.key_id.is_some()).await;
    assert_eq!(row.status, 200);
}

#[tokio::test]
async fn an_account_exhausted_mid_connection_moves_the_next_turn_without_a_failed_turn() {
    let (mock, gate) = setup().await;
    mock.add_chatgpt_account("acc-2", false);
    gate.add_account(&mock, "acc-2", "plus").await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let id = completed_id(&turn(&mut ws, create("pool/gpt-5.5", json!([user("one")]), None)).await);
    let first = gate.record_where("the first turn", |r| r.status == 200).await;
    let served = first.account_id.clone().expect("a pool account served");
    // The account that served the connection runs out of quota between turns.
    let chatgpt_id = gate.app.pool.find(&served).unwrap().chatgpt_account_id.clone();
    mock.set_account_behavior(&chatgpt_id, Some("usage-limit"));
    let second = turn(&mut ws, create("pool/gpt-5.5", json!([user("two")]), Some(&id))).await;
    completed_id(&second);
    let row = gate.record_where("the second turn", |r| r.id != first.id && r.status == 200).await;
    assert_ne!(row.account_id.as_deref(), Some(served.as_str()), "another account served the turn");
    assert_eq!(row.trail.len(), 2, "the exhausted account was tried first: {:?}", row.trail);
    let last = mock.last_request().unwrap();
    assert_eq!(last.method, "WS", "the new account's own socket to the backend");
    assert!(String::from_utf8_lossy(&last.body).contains("one"), "whole history: the new socket's backend has none");
}

#[tokio::test]
async fn pool_turns_share_one_backend_socket_and_fall_back_to_http_when_it_is_off() {
    let (mock, gate) = setup().await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let mut prev: Option<String> = None;
    for n in 0..5 {
        let events = turn(&mut ws, create("pool/gpt-5.5", json!([user(&format!("turn {n}"))]), prev.as_deref())).await;
        prev = Some(completed_id(&events));
    }
    let frames: Vec<_> = mock.requests().into_iter().filter(|r| r.method == "WS").collect();
    assert_eq!(frames.len(), 5, "five turns, five frames on the backend socket");
    assert!(frames[0].json().get("previous_response_id").is_none(), "the first turn carries the whole input");
    for f in &frames[1..] {
        assert_eq!(f.json()["input"].as_array().map(Vec::len), Some(1), "later turns send only the new item");
    }
    assert!(
        !mock.requests().iter().any(|r| r.method == "POST" && r.path.ends_with("/codex/responses")),
        "no HTTP turn"
    );
    let rows = gate.records(5).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.account_id.is_some() && r.input_tokens > 0), "{rows:?}");

    // `[pool] websocket = false`: the same turns go over HTTP with the whole history.
    mock.add_chatgpt_account("acc-http", false);
    let http_gate = Gate::start(&common::pool(&mock, "websocket = false\n")).await;
    http_gate.add_account(&mock, "acc-http", "plus").await;
    let mut ws = connect(&http_gate, "/v1/responses", None).await.unwrap();
    let id = completed_id(&turn(&mut ws, create("pool/gpt-5.5", json!([user("one")]), None)).await);
    completed_id(&turn(&mut ws, create("pool/gpt-5.5", json!([user("two")]), Some(&id))).await);
    let last = mock.last_request().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("POST", "/backend-api/codex/responses"));
    assert!(String::from_utf8_lossy(&last.body).contains("one"), "the whole history over HTTP");
}

#[tokio::test]
async fn responses_provider_turns_go_over_its_websocket_when_it_offers_one_else_http() {
    let (mock, gate) = setup().await;
    mock.set_api_websocket(true);
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let mut prev: Option<String> = None;
    for n in 0..3 {
        let events = turn(&mut ws, create("resp/ok", json!([user(&format!("turn {n}"))]), prev.as_deref())).await;
        prev = Some(completed_id(&events));
    }
    let frames: Vec<_> = mock.requests().into_iter().filter(|r| r.method == "WS").collect();
    assert_eq!(frames.len(), 3, "three turns, three frames on the provider's socket");
    assert!(frames.iter().all(|f| f.path == "/v1/responses"), "the provider's own endpoint");
    assert_eq!(
        frames[0].header("authorization"),
        Some("Bearer sk-provider-resp"),
        "the provider's key, not the client's"
    );
    assert_eq!(frames[0].json()["model"], "ok", "the provider's model name");
    assert!(frames[0].json().get("previous_response_id").is_none());
    for f in &frames[1..] {
        let v = f.json();
        assert_eq!(v["input"].as_array().map(Vec::len), Some(1), "only the new item: {v}");
        assert!(v["previous_response_id"].as_str().is_some_and(|p| p.starts_with("resp_ws_")), "{v}");
    }
    assert!(!mock.requests().iter().any(|r| r.method == "POST"), "no HTTP turn");
    let rows = gate.records(3).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.input_tokens > 0), "each turn is a logged request: {rows:?}");

    // A provider without WebSocket refuses the upgrade: one try per connection, then HTTP.
    mock.set_api_websocket(false);
    let before = mock.requests().len();
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let id = completed_id(&turn(&mut ws, create("resp/ok", json!([user("one")]), None)).await);
    completed_id(&turn(&mut ws, create("resp/ok", json!([user("two")]), Some(&id))).await);
    let sent: Vec<_> = mock.requests()[before..].iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(
        sent,
        [("GET", "/v1/responses"), ("POST", "/v1/responses"), ("POST", "/v1/responses")]
            .map(|(m, p)| (m.into(), p.into())),
        "the refused upgrade, then both turns over HTTP"
    );
    assert!(String::from_utf8_lossy(&mock.last_request().unwrap().body).contains("one"), "the whole history");

    // `websocket = false` on the provider: HTTP without trying.
    let cfg = common::provider("resp", "responses", &mock.url(), "websocket = false");
    let off = Gate::start(&cfg).await;
    mock.set_api_websocket(true);
    let before = mock.requests().len();
    let mut ws = connect(&off, "/v1/responses", None).await.unwrap();
    completed_id(&turn(&mut ws, create("resp/ok", json!([user("one")]), None)).await);
    let sent: Vec<_> = mock.requests()[before..].iter().map(|r| r.method.clone()).collect();
    assert_eq!(sent, ["POST"], "no upgrade tried");
}

#[tokio::test]
async fn a_provider_refusing_the_upgrade_leaves_the_others_on_their_websockets_and_is_not_asked_again() {
    let with = MockUpstream::start(MockOptions::default()).await.unwrap();
    with.set_api_websocket(true);
    let without = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}",
        common::provider("with", "responses", &with.url(), ""),
        common::provider("without", "responses", &without.url(), "")
    );
    let gate = Gate::start(&cfg).await;
    let methods = |m: &MockUpstream| m.requests().iter().map(|r| r.method.clone()).collect::<Vec<_>>();
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    // Turns alternate between the two providers on one connection.
    for (n, model) in ["with/ok", "without/ok", "with/ok", "without/ok", "with/ok"].into_iter().enumerate() {
        completed_id(&turn(&mut ws, create(model, json!([user(&format!("turn {n}"))]), None)).await);
    }
    assert_eq!(methods(&with), ["WS", "WS", "WS"], "every turn to the provider with WebSocket used it");
    assert_eq!(methods(&without), ["GET", "POST", "POST"], "one refused upgrade, then HTTP");
    // A new connection does not ask the refusing provider again.
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    completed_id(&turn(&mut ws, create("without/ok", json!([user("again")]), None)).await);
    assert_eq!(methods(&without), ["GET", "POST", "POST", "POST"], "no second upgrade");
}

#[tokio::test]
async fn a_token_the_backend_refuses_at_the_socket_handshake_is_refreshed_and_the_turn_goes_on() {
    let (mock, gate) = setup().await;
    mock.revoke_access("acc-1");
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let id = completed_id(&turn(&mut ws, create("pool/gpt-5.5", json!([user("one")]), None)).await);
    completed_id(&turn(&mut ws, create("pool/gpt-5.5", json!([user("two")]), Some(&id))).await);
    let reqs = mock.requests();
    assert!(reqs.iter().any(|r| r.path == "/oauth/token"), "the 401 at the handshake refreshed the token");
    let frames: Vec<_> = reqs.iter().filter(|r| r.method == "WS").collect();
    assert_eq!(frames.len(), 2, "both turns on the backend socket, opened with the new token: {reqs:?}");
    let (access, _) = mock.chatgpt_tokens("acc-1").unwrap();
    assert_eq!(frames[0].header("authorization"), Some(format!("Bearer {access}").as_str()));
}

#[tokio::test]
async fn the_upgrade_answer_names_the_models_catalog_codex_would_fetch() {
    let (_mock, gate) = setup().await;
    let models = etag_of_get(&gate, "/v1/models?client_version=0.169.0").await;
    let (_ws, answer) = connect_with_answer(&gate, "/v1/responses", None).await.unwrap();
    let etag = answer.headers().get("x-models-etag").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(etag.as_deref(), Some(models.as_str()), "the ETag /models answers with");
}

#[tokio::test]
async fn with_client_keys_the_upgrade_answer_names_the_catalog_of_the_callers_key() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"fast\"\ntargets = [\"chat/ok\"]\n[[routes]]\nmodel = \"deep\"\ntargets = [\"resp/ok\"]\n",
        common::provider("chat", "chat", &mock.url(), ""),
        common::provider("resp", "responses", &mock.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    let mut secrets = Vec::new();
    for body in [json!({"name": "every-model"}), json!({"name": "fast-only", "models": ["fast"]})] {
        let made = common::http::post(&gate.url("/api/keys"), &body).await;
        assert_eq!(made.status, 200, "{}", made.text());
        secrets.push(made.json()["key"].as_str().unwrap().to_owned());
    }
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let mut etags = Vec::new();
    for secret in &secrets {
        let bearer = format!("Bearer {secret}");
        let r = common::http::send(
            "GET",
            &gate.url("/v1/models?client_version=0.169.0"),
            "",
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 200);
        let models = r.header("etag").expect("an ETag").to_owned();
        let (_ws, answer) = connect_with_answer(&gate, "/v1/responses", Some(secret)).await.unwrap();
        assert_eq!(answer.headers()["x-models-etag"].to_str().unwrap(), models, "the ETag /models answers this key");
        let slugs: Vec<String> =
            r.json()["models"].as_array().unwrap().iter().map(|m| m["slug"].as_str().unwrap().to_owned()).collect();
        etags.push((models, slugs));
    }
    assert_eq!(etags[1].1, ["fast"], "the key's catalog holds only what it may use");
    assert!(etags[0].1.len() > 1 && etags[0].0 != etags[1].0, "a key that sees fewer models has a catalog of its own");
}

#[tokio::test]
async fn an_upgrade_answered_with_the_wrong_accept_key_is_a_failed_attempt_and_the_turn_fails_over() {
    // Switches protocols for anyone, with a Sec-WebSocket-Accept that hashes no key.
    let hostile = common::hostile(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
          sec-websocket-accept: d3JvbmcgYWNjZXB0IGtleQ==\r\n\r\n",
        true,
    )
    .await;
    let good = MockUpstream::start(MockOptions::default()).await.unwrap();
    good.set_api_websocket(true);
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"two\"\ntargets = [\"hostile/ok\", \"good/ok\"]\n",
        common::provider("hostile", "responses", &hostile, ""),
        common::provider("good", "responses", &good.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    completed_id(&turn(&mut ws, create("two", json!([user("hi")]), None)).await);
    let row = gate.record_where("the turn", |r| r.route == "two").await;
    assert_eq!(row.target, "good/ok", "{row:?}");
    assert_eq!(row.trail.len(), 2, "the hostile upgrade was an attempt of its own: {:?}", row.trail);
    assert_eq!(row.trail[0].target, "hostile/ok");
    assert_eq!(row.trail[0].error.as_deref(), Some("upstream_connection_reset"), "{:?}", row.trail[0]);
    assert_eq!(good.requests().iter().filter(|r| r.method == "WS").count(), 1, "the turn went over the good socket");
}

/// The `ETag` of a GET.
async fn etag_of_get(gate: &Gate, path: &str) -> String {
    let r = common::http::send("GET", &gate.url(path), "", &[]).await;
    assert_eq!(r.status, 200);
    r.header("etag").expect("an ETag").to_owned()
}

#[tokio::test]
async fn shutdown_closes_open_connections_as_going_away() {
    let (_mock, gate) = setup().await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    completed_id(&turn(&mut ws, create("resp/ok", json!([user("hi")]), None)).await);
    assert_eq!(gate.app.metrics.ws_open.load(std::sync::atomic::Ordering::Relaxed), 1);
    gate.app.lifecycle.stopping.cancel();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    match msg {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// A frame of Codex turn `turn_id` (Codex names it in `client_metadata`).
fn in_turn(mut frame: Value, turn_id: &str) -> Value {
    frame["client_metadata"] = json!({"x-codex-installation-id": "inst", "turn_id": turn_id});
    frame
}

#[tokio::test]
async fn a_turns_later_frames_go_where_its_first_was_served_and_the_next_turn_starts_over() {
    // Target `a` is down when the turn starts, so `b` serves it; then `a` comes back.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a_addr = down.local_addr().unwrap().to_string();
    drop(down);
    let b = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"two\"\ntargets = [\"a/ok\", \"b/ok\"]\n",
        common::provider("a", "responses", &format!("http://{a_addr}/v1"), ""),
        common::provider("b", "responses", &b.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    let mut ws = connect(&gate, "/v1/responses", None).await.unwrap();
    let id = completed_id(&turn(&mut ws, in_turn(create("two", json!([user("run it")]), None), "turn-1")).await);
    let first = gate.record_where("the turn's first request", |r| r.route == "two").await;
    assert_eq!((first.target.as_str(), first.trail.len()), ("b/ok", 2), "a failed over: {:?}", first.trail);

    let a = MockUpstream::start_on(&a_addr, MockOptions::default()).await.unwrap();
    // The turn's follow-up (a tool's output) stays on `b`, though `a` is first and up again.
    let output = json!({"type": "function_call_output", "call_id": "call_1", "output": "done"});
    let id = completed_id(&turn(&mut ws, in_turn(create("two", json!([output]), Some(&id)), "turn-1")).await);
    let rows = gate.records(2).await;
    assert_eq!(rows[0].target, "b/ok", "{:?}", rows[0]);
    assert_eq!(rows[0].trail.len(), 1);
    assert_eq!(rows[0].trail[0].why, "pinned by the turn state (x-codex-turn-state)");
    assert_eq!(a.hits(), 0, "the turn's later request did not go to the route's first target");
    assert!(
        b.last_request().unwrap().header("x-codex-turn-state").is_none(),
        "the gateway's own turn state is not sent to a third party"
    );

    // The next turn goes by the route again: `a` first.
    completed_id(&turn(&mut ws, in_turn(create("two", json!([user("next task")]), Some(&id)), "turn-2")).await);
    let rows = gate.records(3).await;
    assert_eq!(rows[0].target, "a/ok", "{:?}", rows[0]);
    assert_eq!(rows[0].trail[0].why, "first of the route's 2 targets");
    // (Its upgrade was asked for first, and refused: the mock offers no WebSocket here.)
    let posts = a.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "{:?}", a.requests().iter().map(|r| (&r.method, &r.path)).collect::<Vec<_>>());
}
