//! permessage-deflate (RFC 7692) on both of the gateway's WebSocket sides: a client that offers
//! it (as Codex does) gets compressed frames both ways, with the bytes on its wire to show for
//! it; the gateway's own sockets to the pool's backend and to a Responses provider offer it and
//! carry the turns compressed; an offer the gateway cannot honour is declined, not half-kept.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::Gate;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use yawc::frame::{Frame, OpCode};

/// A client connection that counts what it writes and reads.
struct Counted {
    tcp: tokio::net::TcpStream,
    up: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.down.fetch_add(buf.filled().len() - before, Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.up.fetch_add(n, Relaxed);
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

type Ws = yawc::WebSocket<Counted>;

async fn connect(gate: &Gate, options: yawc::Options) -> (Ws, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let url = gate.url("/v1/responses").replace("http://", "ws://");
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let (up, down) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let io = Counted { tcp, up: up.clone(), down: down.clone() };
    let ws = yawc::WebSocket::handshake(url.parse().unwrap(), io, options).await.unwrap();
    (ws, up, down)
}

async fn turn(ws: &mut Ws, frame: &Value) -> Vec<Value> {
    ws.send(Frame::text(frame.to_string())).await.unwrap();
    let mut events = Vec::new();
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next_frame())
            .await
            .expect("an event within 10 s")
            .expect("the connection stays open");
        if msg.opcode() != OpCode::Text {
            continue;
        }
        let v: Value = serde_json::from_slice(msg.payload()).expect("every frame is one JSON event");
        let end = matches!(v["type"].as_str(), Some("response.completed" | "response.failed" | "error"));
        events.push(v);
        if end {
            return events;
        }
    }
}

fn create(model: &str, text: &str, previous: Option<&str>) -> Value {
    let mut f = json!({"type": "response.create", "model": model, "stream": true, "store": false,
                       "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]});
    if let Some(p) = previous {
        f["previous_response_id"] = json!(p);
    }
    f
}

fn completed_id(events: &[Value]) -> String {
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{events:?}");
    done["response"]["id"].as_str().unwrap().to_owned()
}

/// A big question goes up compressed and a big answer (200 deltas of 1 KB) comes back compressed.
#[tokio::test]
async fn a_client_offering_deflate_gets_compressed_frames_both_ways_and_so_do_the_upstream_sockets() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.set_api_websocket(true);
    let gate = common::every_kind(&mock).await;
    // ~190 KB of Codex-like prose: deflate shrinks it more than tenfold.
    let big = "You are a coding agent running in the Codex CLI. Keep going until the task is done. ".repeat(2300);
    for (i, model) in ["resp/ok:deltas=200,size=1000", "pool/ok:deltas=200,size=1000", "chat/ok:deltas=200,size=1000"]
        .into_iter()
        .enumerate()
    {
        let before = mock.requests().len();
        let options = yawc::Options::default().with_balanced_compression().with_max_payload_read(8 << 20);
        let (mut ws, up, down) = connect(&gate, options).await;
        let (up0, down0) = (up.load(Relaxed), down.load(Relaxed));
        let events = turn(&mut ws, &create(model, &big, None)).await;
        let id = completed_id(&events);
        let (sent, got) = (up.load(Relaxed) - up0, down.load(Relaxed) - down0);
        assert!(sent < big.len() / 8, "{model}: {sent} bytes on the wire for a {} byte frame", big.len());
        let text: usize = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap().len())
            .sum();
        assert!(text >= 200_000, "{model}: the whole answer arrived ({text} bytes of text)");
        assert!(got < text / 2, "{model}: {got} bytes came back for {text} bytes of text");
        // The next turn on the same compressed connection builds on the first.
        completed_id(&turn(&mut ws, &create(model, "and now?", Some(&id))).await);
        assert_eq!(gate.app.metrics.ws_deflate.load(Relaxed), i as u64 + 1);
        if !model.starts_with("chat/") {
            let frames: Vec<_> = mock.requests()[before..].iter().filter(|r| r.method == "WS").cloned().collect();
            assert_eq!(frames.len(), 2, "{model}: both turns went over the upstream socket");
            for f in &frames {
                let agreed = f.headers.get("x-mock-websocket-extensions").map(|v| v.to_str().unwrap().to_owned());
                assert!(agreed.as_deref().is_some_and(|a| a.starts_with("permessage-deflate")), "{model}: {agreed:?}");
            }
            assert!(String::from_utf8_lossy(&frames[0].body).contains(&big[..4000]), "the frame arrived whole");
        }
    }
    assert_eq!(gate.app.metrics.ws_upstream_deflate.load(Relaxed), 2, "the pool's and the provider's sockets");
}

#[tokio::test]
async fn a_client_without_deflate_or_with_an_offer_the_gateway_cannot_keep_gets_plain_frames() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = common::every_kind(&mock).await;
    for offer in [None, Some("permessage-deflate; server_max_window_bits=10")] {
        let mut req = gate.url("/v1/responses").replace("http://", "ws://").into_client_request().unwrap();
        if let Some(o) = offer {
            req.headers_mut().insert("sec-websocket-extensions", o.parse().unwrap());
        }
        // tungstenite has no deflate: a compressed frame would fail its reads.
        let (mut ws, answer) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert!(answer.headers().get("sec-websocket-extensions").is_none(), "{offer:?}: {:?}", answer.headers());
        let f = create("resp/ok:deltas=20,size=1000", &"x".repeat(5000), None);
        ws.send(tokio_tungstenite::tungstenite::Message::Text(f.to_string().into())).await.unwrap();
        loop {
            use futures_util::StreamExt;
            let msg = ws.next().await.unwrap().unwrap();
            let tokio_tungstenite::tungstenite::Message::Text(t) = msg else { continue };
            if t.as_str().contains("\"response.completed\"") {
                break;
            }
        }
    }
    assert_eq!(gate.app.metrics.ws_deflate.load(Relaxed), 0);
}
