//! The fault matrix: every upstream fault the mock can play × the client's API × the upstream's
//! API × streamed and whole. Whatever breaks, the client gets a clean answer in its own API
//! (an OpenAI-shaped 5xx before the first byte, or a stream ending in its terminal event), the
//! request-log row records the failure, and the gateway keeps serving. Then a hostile upstream
//! over raw sockets.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, post};
use common::{provider, Gate};
use serde_json::{json, Value};
use std::time::Duration;

const FAULTS: &[&str] = &[
    "reset",
    "hang",
    "500",
    "html-200",
    "garbage-200",
    "html-as-sse",
    "truncated",
    "stall",
    "no-terminal",
    "failed",
    "garbage-mid-stream",
];

/// Faults that happen before any byte of an answer: never a 200.
fn before_first_byte(fault: &str, stream: bool) -> bool {
    matches!(fault, "reset" | "hang" | "500" | "html-200" | "html-as-sse") || (!stream && fault == "garbage-200")
}

fn request(client_chat: bool, model: &str, stream: bool) -> (String, Value) {
    if client_chat {
        (
            "/v1/chat/completions".into(),
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]}),
        )
    } else {
        ("/v1/responses".into(), json!({"model": model, "stream": stream, "input": "x"}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gets_a_clean_answer_a_row_and_the_gateway_keeps_serving() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let timeouts = "first_byte_timeout_ms = 400\nidle_timeout_ms = 300";
    let cfg =
        format!("{}{}", provider("r", "responses", &m.url(), timeouts), provider("c", "chat", &m.url(), timeouts));
    let gate = Gate::start(&cfg).await;
    let mut cases = 0;
    for fault in FAULTS {
        for upstream in ["r", "c"] {
            for client_chat in [false, true] {
                for stream in [true, false] {
                    let label = format!("{fault} upstream={upstream} client_chat={client_chat} stream={stream}");
                    let (path, body) = request(client_chat, &format!("{upstream}/{fault}"), stream);
                    let before = gate.store.count_requests().await.unwrap();
                    let r = tokio::time::timeout(Duration::from_secs(10), post(&gate.url(&path), &body))
                        .await
                        .unwrap_or_else(|_| panic!("{label}: no answer within 10 s"));
                    cases += 1;
                    let status = r.status.as_u16();
                    assert!(status == 200 || status >= 500, "{label}: status {status}: {}", r.text());
                    if before_first_byte(fault, stream) {
                        assert!(status >= 500, "{label}: a fault before the first byte is not a success: {}", r.text());
                    }
                    let mut failed = status != 200;
                    if status >= 500 {
                        let e = r.json();
                        assert!(e["error"]["code"].is_string() && e["error"]["message"].is_string(), "{label}: {e}");
                    } else if stream {
                        let events = r.events();
                        let last = events.last().unwrap_or_else(|| panic!("{label}: empty stream"));
                        if client_chat {
                            // Chat streams end with [DONE] or an error chunk; no broken event.
                            assert!(
                                last == "[DONE]" || last["error"].is_object() || last["choices"].is_array(),
                                "{label}: {last}"
                            );
                            assert!(events.iter().all(|e| e.is_object() || e == "[DONE]"), "{label}: a broken event");
                            failed = last["error"].is_object();
                        } else {
                            let t = last["type"].as_str().unwrap_or("");
                            assert!(
                                matches!(t, "response.completed" | "response.failed" | "response.incomplete"),
                                "{label}: ends with {t:?}: {}",
                                r.text()
                            );
                            failed = t != "response.completed";
                        }
                    } else {
                        assert!(r.json().is_object(), "{label}");
                    }
                    // One row per request, recording the failure.
                    let mut rows = Vec::new();
                    for _ in 0..100 {
                        if gate.store.count_requests().await.unwrap() > before {
                            rows = gate.store.recent_requests(1).await.unwrap();
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let row = rows.first().unwrap_or_else(|| panic!("{label}: no request-log row"));
                    assert_eq!(row.status, status, "{label}");
                    if failed {
                        assert!(row.error_code.is_some(), "{label}: the row does not say it failed");
                    }
                    assert_eq!(get(&gate.url("/health")).await.status, 200, "{label}: gateway stopped serving");
                }
            }
        }
    }
    assert_eq!(cases, FAULTS.len() * 8);
}

#[tokio::test]
async fn garbage_spliced_into_a_stream_ends_it_as_a_bad_answer_without_relaying_the_garbage() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!("{}{}", provider("r", "responses", &m.url(), ""), provider("c", "chat", &m.url(), ""));
    let gate = Gate::start(&cfg).await;
    let mut n = 0;
    for upstream in ["r", "c"] {
        for client_chat in [false, true] {
            n += 1;
            let label = format!("upstream={upstream} client_chat={client_chat}");
            let (path, body) = request(client_chat, &format!("{upstream}/garbage-mid-stream"), true);
            let r = post(&gate.url(&path), &body).await;
            assert_eq!(r.status, 200, "{label}: the stream had begun");
            assert!(!r.text().contains("<html>") && !r.text().contains("Bad Gateway"), "{label}: {}", r.text());
            let events = r.events();
            assert!(events.iter().all(|e| e.is_object() || e == "[DONE]"), "{label}: a broken event: {}", r.text());
            // The deltas before the garbage arrived; the upstream's normal end after it did not.
            assert!(r.text().contains("delta"), "{label}: {}", r.text());
            let last = events.last().unwrap();
            if client_chat {
                assert!(last["error"]["message"].as_str().unwrap().contains("upstream_bad_answer"), "{label}: {last}");
            } else {
                assert_eq!(last["type"], "response.failed", "{label}: {}", r.text());
                let msg = last["response"]["error"]["message"].as_str().unwrap();
                assert!(msg.contains("upstream_bad_answer"), "{label}: {msg}");
            }
            // Newest first: this request's row.
            let rows = gate.records(n).await;
            assert_eq!(rows[0].error_code.as_deref(), Some("upstream_bad_answer"), "{label}");
        }
    }
}

#[tokio::test]
async fn a_hostile_upstream_over_raw_sockets_gets_clean_errors() {
    let huge_head: &'static [u8] = Box::leak(
        [&b"HTTP/1.1 200 OK\r\nx-pad: "[..], &vec![b'a'; 100 << 10], b"\r\n\r\n"].concat().into_boxed_slice(),
    );
    let long_line: &'static [u8] = Box::leak(
        [&b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: "[..], &vec![b'x'; 20 << 20]]
            .concat()
            .into_boxed_slice(),
    );
    let cases: Vec<(&str, &'static [u8], bool)> = vec![
        ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n", false),
        ("a head over 64 KB", huge_head, true),
        ("a chunk size of 2^60", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n1000000000000000\r\ndata: x\n\n", false),
        ("a bad chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\nzz\r\n", false),
        ("conflicting lengths", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello", false),
        ("a huge declared length, then silence", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000000000000\r\n\r\n{", true),
        ("an event line of 20 MB", long_line, false),
        ("a status line only, then silence", b"HTTP/1.1 200 OK\r\n", true),
        ("binary garbage", b"\x00\x01\x02\xff\xfe\r\n\r\n", false),
    ];
    for (name, reply, hold) in cases {
        let url = common::hostile(reply, hold).await;
        let cfg = provider("h", "responses", &url, "first_byte_timeout_ms = 500\nidle_timeout_ms = 500");
        let gate = Gate::start(&cfg).await;
        for stream in [true, false] {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                post(&gate.url("/v1/responses"), &json!({"model": "h/m", "input": "x", "stream": stream})),
            )
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer"));
            let ok = match r.status.as_u16() {
                s if s >= 500 => r.json()["error"]["code"].is_string(),
                200 if stream => r.event_types().last().is_some_and(|t| t == "response.failed"),
                _ => false,
            };
            assert!(ok, "{name} (stream {stream}): {} {}", r.status, &r.text()[..r.text().len().min(300)]);
        }
        assert_eq!(get(&gate.url("/health")).await.status, 200, "{name}");
    }
}
