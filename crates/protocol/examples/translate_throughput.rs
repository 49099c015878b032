//! Throughput of the stream machines: MB of upstream SSE per second through SSE decoding plus
//! each translator (and the passthrough repair). Run:
//! `cargo run --release -p codex-gate-protocol --example translate_throughput`

use codex_gate_protocol::repair::ResponsesRepair;
use codex_gate_protocol::sse::{encode, SseDecoder};
use codex_gate_protocol::translate::{ChatToResponses, ResponsesToChat, ToolMap};
use serde_json::json;
use std::time::Instant;

fn chat_stream(deltas: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..deltas {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": {"content": format!("token{i} ")}, "finish_reason": null}]});
        encode(None, &c.to_string(), &mut out);
    }
    encode(None, &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(), &mut out);
    encode(None, "[DONE]", &mut out);
    out
}

fn responses_stream(deltas: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode(
        Some("response.created"),
        &json!({"type": "response.created", "response": {"id": "r"}}).to_string(),
        &mut out,
    );
    let added = json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "m", "role": "assistant", "content": []}});
    encode(Some("response.output_item.added"), &added.to_string(), &mut out);
    for i in 0..deltas {
        let d = json!({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0, "delta": format!("token{i} ")});
        encode(Some("response.output_text.delta"), &d.to_string(), &mut out);
    }
    let done = json!({"type": "response.completed", "response": {"id": "r", "output": [], "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}});
    encode(Some("response.completed"), &done.to_string(), &mut out);
    out
}

fn measure(name: &str, input: &[u8], rounds: usize, mut run: impl FnMut(&[u8]) -> usize) {
    let mut produced = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        produced += run(input);
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (input.len() * rounds) as f64 / 1e6;
    println!(
        "{name:<32} {:>8.1} MB/s in, {:>7.0} events/s, {:>5.2} µs/event ({} bytes out per stream)",
        mb / secs,
        (rounds * 200) as f64 / secs,
        secs * 1e6 / (rounds * 200) as f64,
        produced / rounds
    );
}

fn main() {
    let chat = chat_stream(200);
    let resp = responses_stream(200);
    let rounds = 2000;
    let decode = |input: &[u8], f: &mut dyn FnMut(&codex_gate_protocol::sse::SseEvent, &mut Vec<u8>)| -> usize {
        let mut d = SseDecoder::default();
        let mut evs = Vec::new();
        let mut out = Vec::new();
        // Feed in 1 KB chunks, as a socket would deliver them.
        for c in input.chunks(1024) {
            d.push(c, &mut evs).unwrap();
            for e in evs.drain(..) {
                f(&e, &mut out);
            }
        }
        out.len()
    };
    measure("sse decode only", &chat, rounds, |i| decode(i, &mut |_, _| {}));
    measure("chat -> responses", &chat, rounds, |i| {
        let mut m = ChatToResponses::new("resp_b", "m", 0, ToolMap::default(), true);
        decode(i, &mut |e, out| m.push(&e.data, out))
    });
    measure("responses -> chat", &resp, rounds, |i| {
        let mut m = ResponsesToChat::new("chatcmpl-b", "m", 0, true);
        decode(i, &mut |e, out| m.push(&e.data, out))
    });
    measure("responses repair (passthrough)", &resp, rounds, |i| {
        let mut m = ResponsesRepair::new(true, "resp_b");
        decode(i, &mut |e, out| m.push(e, out))
    });

    // The request path: reading model/stream out of a Codex-shaped 400 KB body.
    let items: Vec<serde_json::Value> = (0..2000)
        .map(|i| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": format!("turn {i} {}", "x".repeat(150))}]}))
        .collect();
    let body = json!({"model": "gpt-5.5", "stream": true, "input": items, "tools": [], "store": false}).to_string();
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(codex_gate_protocol::body::inspect(body.as_bytes()).unwrap());
    }
    let per = t.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "{:<32} {:>8.1} MB/s, {:>7.0} µs per {} KB body",
        "request inspect",
        body.len() as f64 / per / 1e6,
        per * 1e6,
        body.len() / 1000
    );
}
