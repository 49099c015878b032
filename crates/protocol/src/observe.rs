//! Stream observers: they read the events of a relayed stream (usage, terminal event, errors)
//! without changing a byte of it. The relay feeds them decoded SSE events as chunks pass by.

use crate::sse::SseEvent;
use crate::usage::Usage;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// How a response ended, as far as the observer saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    /// No terminal event (yet).
    #[default]
    Unfinished,
    /// `response.completed`, or a chat stream's `finish_reason` / `[DONE]`.
    Completed,
    /// `response.incomplete` or chat `finish_reason: length`, with the reason.
    Incomplete(String),
    /// `response.failed` or an error object in the stream.
    Failed { code: Option<String>, message: String },
}

impl Outcome {
    /// A terminal event was seen.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Outcome::Unfinished)
    }

    /// The error code recorded for this outcome (for the request log), if it is not a success.
    pub fn error_code(&self) -> Option<String> {
        match self {
            Outcome::Unfinished => Some("stream_incomplete".into()),
            Outcome::Completed => None,
            Outcome::Incomplete(r) => Some(format!("incomplete:{r}")),
            Outcome::Failed { code, .. } => Some(code.clone().unwrap_or_else(|| "response_failed".into())),
        }
    }
}

/// The fields of a Responses event the gateway routes on, borrowed from its `data`. The relay
/// parses each event into this once and hands it to both the observer and the repair.
#[derive(Debug, Deserialize)]
pub struct ResponsesHead<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub response: Option<&'a RawValue>,
    /// Kept raw: only a translator needs it decoded, and only for `*.delta` events.
    #[serde(borrow, default)]
    pub delta: Option<&'a RawValue>,
    #[serde(default)]
    pub sequence_number: Option<u64>,
}

impl<'a> ResponsesHead<'a> {
    /// `None` when `data` is not a JSON object with a string `type`.
    pub fn parse(data: &'a str) -> Option<Self> {
        serde_json::from_str(data).ok()
    }

    /// `delta` as text (`""` when absent or not a string).
    pub fn delta_text(&self) -> Cow<'a, str> {
        self.delta.and_then(|d| serde_json::from_str::<Cow<'a, str>>(d.get()).ok()).unwrap_or_default()
    }
}

/// What a terminal event's response says about the outcome; `output`, the big part, is
/// skipped, not built.
#[derive(Default, Deserialize)]
struct Terminal {
    #[serde(default)]
    status: Value,
    #[serde(default)]
    usage: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    incomplete_details: Value,
}

impl Terminal {
    fn parse(json: &str) -> Terminal {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// Observer of a Responses API event stream.
#[derive(Debug, Default)]
pub struct ResponsesObserver {
    pub outcome: Outcome,
    pub usage: Option<Usage>,
    /// `response.created` was seen.
    pub created: bool,
    /// The upstream's response id, model and creation time, from `response.created`.
    pub response_id: Option<String>,
    pub model: Option<String>,
    pub created_at: Option<u64>,
    /// The last `sequence_number` seen.
    pub last_sequence: Option<u64>,
    /// The last `codex.rate_limits` event (ChatGPT backend quota snapshot).
    pub rate_limits: Option<Value>,
    /// Events seen, including ones that were not JSON.
    pub events: u64,
}

impl ResponsesObserver {
    /// Look at one event.
    pub fn observe(&mut self, ev: &SseEvent) {
        self.observe_head(ResponsesHead::parse(&ev.data).as_ref(), &ev.data);
    }

    /// Look at one event whose head is already parsed (`None`: its data is not a JSON event).
    pub fn observe_head(&mut self, head: Option<&ResponsesHead<'_>>, data: &str) {
        self.events += 1;
        let Some(head) = head else { return };
        if head.sequence_number.is_some() {
            self.last_sequence = head.sequence_number;
        }
        match head.kind.as_ref() {
            "response.created" => {
                self.created = true;
                #[derive(Deserialize)]
                struct Created {
                    id: Option<String>,
                    model: Option<String>,
                    created_at: Option<u64>,
                }
                if let Some(c) = head.response.and_then(|r| serde_json::from_str::<Created>(r.get()).ok()) {
                    (self.response_id, self.model, self.created_at) = (c.id, c.model, c.created_at);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" | "response.done" => {
                let t = head.response.map(|r| Terminal::parse(r.get())).unwrap_or_default();
                self.read_terminal(&head.kind, t);
            }
            "codex.rate_limits" => self.rate_limits = serde_json::from_str(data).ok(),
            "error" => {
                // Wrapped error frames carry the error at the top level.
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                self.outcome = failed_from(v.get("error").unwrap_or(&v));
            }
            _ => {}
        }
    }

    fn read_terminal(&mut self, kind: &str, t: Terminal) {
        if let Some(u) = Usage::from_responses(&t.usage) {
            self.usage = Some(u);
        }
        self.outcome = match kind {
            "response.failed" => failed_from(&t.error),
            "response.incomplete" => Outcome::Incomplete(
                t.incomplete_details.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
            ),
            _ => match t.status.as_str() {
                Some("failed") => failed_from(&t.error),
                _ => Outcome::Completed,
            },
        };
    }

    /// Read a non-streaming Responses object.
    pub fn observe_body(&mut self, body: &[u8]) {
        let t: Terminal = serde_json::from_slice(body).unwrap_or_default();
        let kind = match t.status.as_str() {
            Some("failed") => "response.failed",
            Some("incomplete") => "response.incomplete",
            _ => "response.completed",
        };
        self.read_terminal(kind, t);
    }
}

fn failed_from(err: &Value) -> Outcome {
    let s = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
    Outcome::Failed {
        code: s("code").or_else(|| s("type")),
        message: s("message").unwrap_or_else(|| "response failed".into()),
    }
}

/// The parts of a chat chunk (or completion) the gateway routes on, borrowed from its text.
/// The relay parses each chunk into this once for both the observer and the translator.
#[derive(Debug, Deserialize)]
pub struct ChatHead<'a> {
    #[serde(borrow, default)]
    pub usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<ChatChoiceHead<'a>>>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct ChatChoiceHead<'a> {
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub message: Option<&'a RawValue>,
}

impl<'a> ChatHead<'a> {
    /// `None` when `data` is not a JSON chunk object (e.g. `[DONE]`).
    pub fn parse(data: &'a str) -> Option<Self> {
        serde_json::from_str(data).ok()
    }
}

/// Observer of a Chat Completions chunk stream.
#[derive(Debug, Default)]
pub struct ChatObserver {
    pub outcome: Outcome,
    pub usage: Option<Usage>,
    /// The `[DONE]` sentinel was seen.
    pub done: bool,
    pub events: u64,
}

impl ChatObserver {
    /// Look at one event.
    pub fn observe(&mut self, ev: &SseEvent) {
        self.observe_head(ChatHead::parse(&ev.data).as_ref(), &ev.data);
    }

    /// Look at one event whose head is already parsed (`None`: not a JSON chunk).
    pub fn observe_head(&mut self, head: Option<&ChatHead<'_>>, data: &str) {
        self.events += 1;
        if data.trim() == "[DONE]" {
            self.done = true;
            if !self.outcome.is_terminal() {
                self.outcome = Outcome::Completed;
            }
            return;
        }
        if let Some(chunk) = head {
            self.read_chunk(chunk);
        }
    }

    fn read_chunk(&mut self, chunk: &ChatHead<'_>) {
        if let Some(u) = chunk.usage.and_then(|r| Usage::from_chat(r.get())) {
            self.usage = Some(u);
        }
        if let Some(err) = chunk.error.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) {
            if !err.is_null() {
                self.outcome = failed_from(&err);
                return;
            }
        }
        for c in chunk.choices.iter().flatten() {
            match c.finish_reason.as_deref() {
                None => {}
                Some("length") => self.outcome = Outcome::Incomplete("max_output_tokens".into()),
                Some("content_filter") => self.outcome = Outcome::Incomplete("content_filter".into()),
                Some(_) => self.outcome = Outcome::Completed,
            }
        }
    }

    /// Read a non-streaming chat completion.
    pub fn observe_body(&mut self, body: &[u8]) {
        if let Ok(chunk) = serde_json::from_slice::<ChatHead>(body) {
            self.read_chunk(&chunk);
        }
        if !self.outcome.is_terminal() {
            self.outcome = Outcome::Completed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent { event: None, data: data.into() }
    }

    #[test]
    fn responses_completed_with_usage() {
        let mut o = ResponsesObserver::default();
        o.observe(&ev(r#"{"type":"response.created","response":{"id":"r"}}"#));
        o.observe(&ev(r#"{"type":"response.output_text.delta","delta":"hi"}"#));
        o.observe(&ev("not json"));
        assert_eq!(o.outcome, Outcome::Unfinished);
        o.observe(&ev(
            r#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}}"#,
        ));
        assert!(o.created);
        assert_eq!(o.response_id.as_deref(), Some("r"));
        assert_eq!(o.outcome, Outcome::Completed);
        assert_eq!(o.usage.unwrap().total_tokens, 5);
        assert_eq!(o.events, 4);
    }

    #[test]
    fn responses_failed_and_incomplete() {
        let mut o = ResponsesObserver::default();
        o.observe(&ev(
            r#"{"type":"response.failed","response":{"id":"r","error":{"code":"rate_limit_exceeded","message":"try again in 1s"}}}"#,
        ));
        assert_eq!(
            o.outcome,
            Outcome::Failed { code: Some("rate_limit_exceeded".into()), message: "try again in 1s".into() }
        );
        o.observe(&ev(
            r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}"#,
        ));
        assert_eq!(o.outcome.error_code().as_deref(), Some("incomplete:max_output_tokens"));
    }

    #[test]
    fn chat_stream_usage_finish_and_done() {
        let mut o = ChatObserver::default();
        o.observe(&ev(
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#,
        ));
        assert_eq!(o.outcome, Outcome::Unfinished);
        o.observe(&ev(r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#));
        o.observe(&ev(r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}"#));
        o.observe(&ev("[DONE]"));
        assert!(o.done);
        assert_eq!(o.outcome, Outcome::Incomplete("max_output_tokens".into()));
        assert_eq!(o.usage.unwrap().input_tokens, 7);
    }

    #[test]
    fn chat_error_chunk_and_bodies() {
        let mut o = ChatObserver::default();
        o.observe(&ev(r#"{"error":{"message":"boom","type":"server_error","code":"overloaded"}}"#));
        assert_eq!(o.outcome.error_code().as_deref(), Some("overloaded"));
        let mut o = ChatObserver::default();
        o.observe_body(br#"{"choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#);
        assert_eq!((o.outcome.clone(), o.usage.unwrap().total_tokens), (Outcome::Completed, 3));
        let mut r = ResponsesObserver::default();
        r.observe_body(
            br#"{"id":"r","status":"completed","usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}"#,
        );
        assert_eq!(r.outcome, Outcome::Completed);
    }
}
