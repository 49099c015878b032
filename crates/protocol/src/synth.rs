//! Events the gateway writes into a stream itself: once the first byte has reached the client
//! a failure can no longer change the HTTP status, so it becomes a final event instead.

use crate::sse::encode;
use serde_json::json;

/// What a synthesized `response.failed` says about the response it ends (from the stream's
/// `response.created` and its last event).
#[derive(Debug, Clone, Default)]
pub struct StreamSoFar<'a> {
    pub response_id: &'a str,
    pub model: Option<&'a str>,
    pub created_at: Option<u64>,
    /// The last `sequence_number` the stream carried.
    pub last_sequence: Option<u64>,
}

/// A final `response.failed` event for a Responses stream, shaped like the API's own (sequence
/// number, created_at, model, empty output, null usage). Codex shows `message` verbatim and
/// decides whether to retry from `code` (codex-protocol §3.4): the gateway uses the API's own
/// codes (`server_error`: retried) and puts its detail in the message.
pub fn responses_failed(so_far: &StreamSoFar<'_>, code: &str, message: &str) -> Vec<u8> {
    let v = json!({"type": "response.failed", "sequence_number": so_far.last_sequence.map_or(0, |s| s + 1), "response": {
        "id": so_far.response_id, "object": "response", "created_at": so_far.created_at, "status": "failed",
        "model": so_far.model, "output": [], "usage": null,
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
        let so_far =
            StreamSoFar { response_id: "resp_1", model: Some("m"), created_at: Some(7), last_sequence: Some(4) };
        d.push(&responses_failed(&so_far, "upstream_idle_timeout", "no data for 240 s"), &mut evs).unwrap();
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
        let v: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
        assert_eq!(v["sequence_number"], 5);
        assert_eq!((v["response"]["model"].as_str(), v["response"]["created_at"].as_u64()), (Some("m"), Some(7)));
        assert_eq!(v["response"]["output"], serde_json::json!([]));
    }
}
