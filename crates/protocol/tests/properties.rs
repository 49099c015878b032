//! Property tests: the SSE decoder is split-invariant; any well-formed chat stream translates
//! into a Responses stream that passes the grammar checker and keeps every byte of text and
//! arguments; any Responses stream translates into valid chat chunks.

use codex_gate_protocol::grammar::{check_chat, check_responses};
use codex_gate_protocol::sse::{encode, SseDecoder};
use codex_gate_protocol::translate::request::ToolOrigin;
use codex_gate_protocol::translate::{ChatToResponses, ResponsesToChat, ToolMap};
use proptest::prelude::*;
use serde_json::{json, Value};

fn decode_all(bytes: &[u8], cuts: &[usize]) -> Vec<(Option<String>, String)> {
    let mut d = SseDecoder::default();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts {
        let c = c.min(bytes.len()).max(last);
        d.push(&bytes[last..c], &mut out).unwrap();
        last = c;
    }
    d.push(&bytes[last..], &mut out).unwrap();
    d.finish(&mut out).unwrap();
    out.into_iter().map(|e| (e.event, e.data)).collect()
}

fn parsed(bytes: &[u8]) -> Vec<Value> {
    decode_all(bytes, &[]).into_iter().map(|(_, d)| serde_json::from_str(&d).unwrap_or(Value::String(d))).collect()
}

#[derive(Debug, Clone)]
enum Piece {
    Reasoning(String),
    Text(String),
    /// (call number, how many more argument bytes of that call to send)
    Call(u8, usize),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "[a-z .]{1,12}".prop_map(Piece::Reasoning),
        "[A-Za-z ,.!]{1,12}".prop_map(Piece::Text),
        (0u8..3, 0usize..8).prop_map(|(n, len)| Piece::Call(n, len)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sse_decoder_is_split_invariant(
        events in prop::collection::vec(("[a-z.]{0,8}", "[ -~]{0,40}"), 1..8),
        cuts in prop::collection::vec(0usize..400, 0..6),
        crlf in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        for (name, data) in &events {
            encode((!name.is_empty()).then_some(name.as_str()), data, &mut bytes);
        }
        if crlf {
            bytes = String::from_utf8(bytes).unwrap().replace('\n', "\r\n").into_bytes();
        }
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(decode_all(&bytes, &cuts), decode_all(&bytes, &[]));
        prop_assert_eq!(decode_all(&bytes, &[]).len(), events.len());
    }

    #[test]
    fn any_chat_stream_becomes_a_valid_responses_stream(
        pieces in prop::collection::vec(piece(), 0..12),
        call_args in prop::array::uniform3("[a-z0-9 ]{0,10}"),
        finish in prop::option::of(prop_oneof![Just("stop"), Just("tool_calls"), Just("length")]),
        usage in any::<bool>(),
        done in any::<bool>(),
    ) {
        let mut tools = ToolMap::default();
        tools.names.insert("f".into(), ToolOrigin::Function);
        let mut m = ChatToResponses::new("resp_p", "m", 0, tools, false);
        let mut out = Vec::new();
        let mut text = String::new();
        // Each call's arguments are real JSON, sent in fragments cut anywhere and interleaved.
        let full: Vec<String> = call_args.iter().map(|a| json!({"k": a}).to_string()).collect();
        let mut sent = [0usize; 3];
        let mut order: Vec<usize> = Vec::new();
        let push = |m: &mut ChatToResponses, out: &mut Vec<u8>, delta: Value| {
            m.push(&json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]}).to_string(), out);
        };
        let call_delta = |n: usize, len: usize, order: &mut Vec<usize>, sent: &mut [usize; 3]| {
            let frag = &full[n][sent[n]..(sent[n] + len).min(full[n].len())];
            let first = !order.contains(&n);
            if first { order.push(n); }
            let idx = order.iter().position(|&x| x == n).unwrap();
            sent[n] += frag.len();
            if first {
                json!({"tool_calls": [{"index": idx, "id": format!("call_{n}"), "type": "function", "function": {"name": "f", "arguments": frag}}]})
            } else {
                json!({"tool_calls": [{"index": idx, "function": {"arguments": frag}}]})
            }
        };
        for p in &pieces {
            let delta = match p {
                Piece::Reasoning(r) => json!({"reasoning_content": r}),
                Piece::Text(t) => { text.push_str(t); json!({"content": t}) }
                Piece::Call(n, len) => call_delta(*n as usize, *len, &mut order, &mut sent),
            };
            push(&mut m, &mut out, delta);
        }
        for n in order.clone() {
            let rest = full[n].len() - sent[n];
            if rest > 0 {
                let d = call_delta(n, rest, &mut order, &mut sent);
                push(&mut m, &mut out, d);
            }
        }
        if let Some(f) = finish {
            m.push(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": f}]}).to_string(), &mut out);
        }
        if usage {
            m.push(&json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).to_string(), &mut out);
        }
        if done { m.push("[DONE]", &mut out); } else { m.finish(&mut out); }
        let evs = parsed(&out);
        prop_assert!(check_responses(&evs).is_ok(), "{:?}\n{}", check_responses(&evs), String::from_utf8_lossy(&out));
        let resp = &evs.last().unwrap()["response"];
        let items = resp["output"].as_array().unwrap();
        let got_text: String = items.iter().filter(|i| i["type"] == "message")
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_owned()).collect();
        prop_assert_eq!(got_text, text);
        for n in &order {
            let call = items.iter().find(|i| i["call_id"] == format!("call_{n}"));
            prop_assert!(call.is_some());
            prop_assert_eq!(call.unwrap()["arguments"].as_str().unwrap(), full[*n].as_str());
        }
        prop_assert_eq!(resp.get("usage").is_some(), usage);
    }

    #[test]
    fn any_responses_stream_becomes_valid_chat_chunks(
        texts in prop::collection::vec("[a-z ]{1,8}", 0..6),
        call_frags in prop::collection::vec("[a-z0-9]{0,5}", 0..4),
        failed in any::<bool>(),
    ) {
        let mut evs = vec![json!({"type": "response.created", "response": {"id": "r"}})];
        if !texts.is_empty() {
            evs.push(json!({"type": "response.output_item.added", "item": {"type": "message", "id": "m"}}));
            for t in &texts { evs.push(json!({"type": "response.output_text.delta", "item_id": "m", "delta": t})); }
        }
        if !call_frags.is_empty() {
            evs.push(json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": "fc", "call_id": "c", "name": "f"}}));
            for f in &call_frags { evs.push(json!({"type": "response.function_call_arguments.delta", "item_id": "fc", "delta": f})); }
            evs.push(json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": call_frags.concat()}}));
        }
        if failed {
            evs.push(json!({"type": "response.failed", "response": {"id": "r", "error": {"code": "x", "message": "y"}}}));
        } else {
            evs.push(json!({"type": "response.completed", "response": {"id": "r", "status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}}));
        }
        let mut m = ResponsesToChat::new("chatcmpl-p", "m", 0, true);
        let mut out = Vec::new();
        for e in &evs { m.push(&e.to_string(), &mut out); }
        let chunks = parsed(&out);
        prop_assert!(check_chat(&chunks).is_ok(), "{:?}", check_chat(&chunks));
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        prop_assert_eq!(text, texts.concat());
        let args: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
        prop_assert_eq!(args, call_frags.concat());
    }
}
