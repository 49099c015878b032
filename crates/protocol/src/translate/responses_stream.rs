//! [`ResponsesToChat`]: Responses API events in, Chat Completions chunks out, as they arrive.
//!
//! Role on the first chunk; text as `content` deltas; reasoning summary (or raw reasoning) text
//! as `reasoning_content` deltas so chat clients can show thinking; function calls as
//! `tool_calls` deltas with a stable `index` and the upstream `call_id` as `id`; then
//! `finish_reason` (`stop`, `tool_calls`, `length`, `content_filter`), a usage chunk when the
//! client asked for `stream_options.include_usage`, and `[DONE]`. A failure becomes an error
//! chunk and the end of the stream.

use crate::observe::ResponsesHead;
use crate::sse::encode;
use serde::Serialize;
use serde_json::{json, Value};

/// A text or reasoning chunk, written straight to the wire (nearly every chunk of a stream).
#[derive(Serialize)]
struct TextChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [TextChoice<'a>; 1],
}

#[derive(Serialize)]
struct TextChoice<'a> {
    index: u32,
    delta: TextDelta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

#[derive(Debug)]
struct Call {
    item_id: String,
    index: u32,
    /// Argument bytes already sent as deltas.
    sent: String,
}

#[derive(Debug)]
pub struct ResponsesToChat {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: bool,
    calls: Vec<Call>,
    finished: bool,
}

/// Responses usage → chat usage.
pub fn usage_to_chat(u: &Value) -> Option<Value> {
    let input = u.get("input_tokens")?.as_u64()?;
    let output = u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    Some(json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
        "prompt_tokens_details": {"cached_tokens": u.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "completion_tokens_details": {"reasoning_tokens": u.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0)},
    }))
}

fn finish_reason_for(resp: &Value, saw_tool: bool) -> &'static str {
    match resp.get("status").and_then(Value::as_str) {
        Some("incomplete") => match resp.pointer("/incomplete_details/reason").and_then(Value::as_str) {
            Some("content_filter") => "content_filter",
            _ => "length",
        },
        _ if saw_tool => "tool_calls",
        _ => "stop",
    }
}

impl ResponsesToChat {
    /// `id` is the chunk id (`chatcmpl-…`), `model` the model name the client asked for.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: u64, include_usage: bool) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            role_sent: false,
            calls: Vec::new(),
            finished: false,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn chunk(&mut self, out: &mut Vec<u8>, mut delta: Value, finish: Option<&str>) {
        if !self.role_sent {
            self.role_sent = true;
            delta["role"] = json!("assistant");
        }
        let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        encode(None, &v.to_string(), out);
    }

    /// A `content` or `reasoning_content` chunk, without a `Value` in between.
    fn text_chunk(&mut self, content: Option<&str>, reasoning_content: Option<&str>, out: &mut Vec<u8>) {
        let role = (!self.role_sent).then_some("assistant");
        self.role_sent = true;
        let chunk = TextChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [TextChoice {
                index: 0,
                delta: TextDelta { role, content, reasoning_content },
                finish_reason: None,
            }],
        };
        out.extend_from_slice(b"data: ");
        // Plain strings and numbers: serializing cannot fail, and JSON text has no raw newline.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }

    /// One event's `data`.
    pub fn push(&mut self, data: &str, out: &mut Vec<u8>) {
        self.push_head(ResponsesHead::parse(data).as_ref(), data, out);
    }

    /// One event whose head is already parsed (`None`: its data is not a JSON event).
    pub fn push_head(&mut self, head: Option<&ResponsesHead<'_>>, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let Some(head) = head else { return };
        match head.kind.as_ref() {
            "response.created" => self.text_chunk(Some(""), None, out),
            "response.output_text.delta" => self.text_chunk(Some(&head.delta_text()), None, out),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.text_chunk(None, Some(&head.delta_text()), out)
            }
            _ => self.push_other(data, out),
        }
    }

    /// The rarer events, read as a whole `Value`.
    fn push_other(&mut self, data: &str, out: &mut Vec<u8>) {
        let Ok(ev) = serde_json::from_str::<Value>(data) else { return };
        let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "response.output_item.added" => {
                let item = &ev["item"];
                if matches!(item["type"].as_str(), Some("function_call" | "custom_tool_call")) {
                    self.start_call(item, out);
                }
            }
            "response.function_call_arguments.delta" => {
                let item_id = s("item_id");
                let delta = s("delta").to_owned();
                if let Some(i) = self.calls.iter().position(|c| c.item_id == item_id) {
                    self.calls[i].sent.push_str(&delta);
                    let index = self.calls[i].index;
                    self.chunk(out, json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}), None);
                }
            }
            "response.output_item.done" => {
                let item = &ev["item"];
                if matches!(item["type"].as_str(), Some("function_call" | "custom_tool_call")) {
                    self.end_call(item, out);
                }
            }
            "response.completed" | "response.incomplete" => {
                let resp = ev.get("response").cloned().unwrap_or(Value::Null);
                self.finish_with(&resp, out);
            }
            "response.failed" => {
                let err = ev.pointer("/response/error").cloned().unwrap_or(Value::Null);
                self.fail_with(&err, out);
            }
            "error" => {
                let err = ev.get("error").cloned().unwrap_or_else(|| ev.clone());
                self.fail_with(&err, out);
            }
            _ => {}
        }
    }

    fn item_id(item: &Value) -> String {
        item.get("id").or_else(|| item.get("call_id")).and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    fn start_call(&mut self, item: &Value, out: &mut Vec<u8>) -> usize {
        let index = self.calls.len() as u32;
        self.calls.push(Call { item_id: Self::item_id(item), index, sent: String::new() });
        let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or_default();
        let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
        self.chunk(
            out,
            json!({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                               "function": {"name": name, "arguments": ""}}]}),
            None,
        );
        self.calls.len() - 1
    }

    fn end_call(&mut self, item: &Value, out: &mut Vec<u8>) {
        let id = Self::item_id(item);
        let i = match self.calls.iter().position(|c| c.item_id == id) {
            Some(i) => i,
            None => self.start_call(item, out),
        };
        let full = match item["type"].as_str() {
            Some("custom_tool_call") => {
                json!({"input": item.get("input").and_then(Value::as_str).unwrap_or_default()}).to_string()
            }
            _ => item.get("arguments").and_then(Value::as_str).unwrap_or_default().to_owned(),
        };
        // Upstreams that only send the arguments on `done` (or send fewer deltas) still deliver
        // every byte of them.
        let rest = full.strip_prefix(self.calls[i].sent.as_str()).unwrap_or(&full).to_owned();
        if !rest.is_empty() {
            self.calls[i].sent.push_str(&rest);
            let index = self.calls[i].index;
            self.chunk(out, json!({"tool_calls": [{"index": index, "function": {"arguments": rest}}]}), None);
        }
    }

    fn finish_with(&mut self, resp: &Value, out: &mut Vec<u8>) {
        let reason = finish_reason_for(resp, !self.calls.is_empty());
        self.chunk(out, json!({}), Some(reason));
        if self.include_usage {
            if let Some(u) = resp.get("usage").and_then(usage_to_chat) {
                let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                               "choices": [], "usage": u});
                encode(None, &v.to_string(), out);
            }
        }
        encode(None, "[DONE]", out);
        self.finished = true;
    }

    fn fail_with(&mut self, err: &Value, out: &mut Vec<u8>) {
        let message = err.get("message").and_then(Value::as_str).unwrap_or("upstream error");
        let code = err
            .get("code")
            .and_then(Value::as_str)
            .or_else(|| err.get("type").and_then(Value::as_str))
            .unwrap_or("upstream_error");
        self.fail(code, message, out);
    }

    /// One final error chunk.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        out.extend_from_slice(&crate::synth::chat_error(code, message));
        self.finished = true;
    }
}

/// A whole Responses object → a chat completion.
pub fn response_to_completion(resp: &Value, id: &str, model: &str, created: u64) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in resp.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                for p in item["content"].as_array().into_iter().flatten() {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
            Some("reasoning") => {
                for p in item["summary"].as_array().into_iter().flatten() {
                    reasoning.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default());
                }
            }
            Some("function_call") => calls.push(json!({"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}})),
            Some("custom_tool_call") => calls.push(json!({"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": json!({"input": item["input"]}).to_string()}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let saw_tool = !calls.is_empty();
    if saw_tool {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut v = json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                       "choices": [{"index": 0, "message": message, "finish_reason": finish_reason_for(resp, saw_tool)}]});
    if let Some(u) = resp.get("usage").and_then(usage_to_chat) {
        v["usage"] = u;
    }
    v
}
