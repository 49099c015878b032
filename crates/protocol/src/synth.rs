//! Events the gateway writes into a stream itself: once the first byte has reached the client
//! a failure can no longer change the HTTP status, so it becomes a final event instead.

use crate::sse::encode;
use serde_json::json;

/// A final `response.failed` event for a Responses stream. Codex shows `message` verbatim and
/// decides whether to retry from `code` (codex-protocol §3.4).
pub fn responses_failed(response_id: &str, code: &str, message: &str) -> Vec<u8> {
    let v = json!({"type": "response.failed", "response": {
        "id": response_id, "object": "response", "status": "failed",
        "error": {"code": code, "message": message}}});
    let mut out = Vec::with_capacity(256);
    encode(Some("response.failed"), &v.to_string(), &mut out);
    out
}

/// A final error chunk for a Chat Completions stream (the shape OpenAI SDKs raise on).
pub fn chat_error(code: &str, message: &str) -> Vec<u8> {
    let v = json!({"error": {"message": message, "type": "server_error", "code": code, "param": null}});
    let mut out = Vec::with_capacity(256);
    encode(None, &v.to_string(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{ChatObserver, Outcome, ResponsesObserver};
    use crate::sse::SseDecoder;

    #[test]
    fn synthesized_failures_are_read_back_as_failures() {
        let mut d = SseDecoder::default();
        let mut evs = Vec::new();
        d.push(&responses_failed("resp_1", "upstream_idle_timeout", "no data for 240 s"), &mut evs).unwrap();
        d.push(&chat_error("upstream_stream_error", "reset"), &mut evs).unwrap();
        assert_eq!(evs.len(), 2);
        let mut r = ResponsesObserver::default();
        r.observe(&evs[0]);
        assert_eq!(
            r.outcome,
            Outcome::Failed { code: Some("upstream_idle_timeout".into()), message: "no data for 240 s".into() }
        );
        let mut c = ChatObserver::default();
        c.observe(&evs[1]);
        assert_eq!(c.outcome.error_code().as_deref(), Some("upstream_stream_error"));
    }
}
