//! [`ChatToResponses`]: Chat Completions chunks in, Responses API events out, as they arrive.
//!
//! Grammar produced (codex-protocol §3): `response.created`, `response.in_progress`; per item
//! `output_item.added` before any of its deltas and `output_item.done` with the full item;
//! reasoning as a reasoning item with summary-text deltas; text as a message item with a content
//! part; tool calls as `function_call` (or `custom_tool_call`, or namespaced `function_call`,
//! restored through the [`ToolMap`]) with argument deltas; then exactly one terminal event —
//! `response.completed` with the whole `output` and complete `usage` (or none at all),
//! `response.incomplete` for `finish_reason: length`, or `response.failed`.

use super::request::{ToolMap, ToolOrigin};
use crate::observe::ChatHead;
use crate::sse::encode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::borrow::Cow;

/// The delta of the common chunk — text or reasoning text — read without building a `Value`.
/// Anything else (tool calls, content parts, reasoning objects) fails this shape or is refused
/// by [`ChatToResponses::push_plain`] and takes the general path.
#[derive(Deserialize)]
struct PlainDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    reasoning: Option<IgnoredAny>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// A `*.delta` event, written straight to the wire (these are nearly every event of a stream).
#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
}

impl DeltaEvent<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serializing these plain fields cannot fail, and JSON text has no raw newline.
        let _ = serde_json::to_writer(&mut *out, self);
        out.extend_from_slice(b"\n\n");
    }
}

#[derive(Debug, Clone)]
enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: Option<String>,
        name: String,
        args: String,
        added: bool,
        chat_index: u64,
    },
    /// A web search the gateway runs for the model, shown as a `web_search_call` item.
    Search {
        id: String,
        call_id: String,
        query: String,
        args: String,
        status: &'static str,
    },
    /// A web search call that is not run (next to other tool calls, or past the turn's
    /// rounds): nothing of it is shown.
    Dropped,
}

/// A search the model asked for, for the gateway to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSearch {
    pub call_id: String,
    pub query: String,
}

#[derive(Debug)]
pub struct ChatToResponses {
    id: String,
    model: String,
    created_at: u64,
    tools: ToolMap,
    recover_leaks: bool,
    seq: u64,
    started: bool,
    finished: bool,
    items: Vec<Item>,
    open: Vec<usize>,
    /// Text held back because it may be a tool call the model wrote as JSON.
    held: Option<String>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    /// The response object of the terminal event, once sent.
    terminal: Option<Value>,
    /// How many more times the model's answer may end in web searches that the gateway runs
    /// before it is asked again (0: web search calls are dropped).
    search_rounds: u8,
    /// The answer ended in web searches: no terminal event until [`Self::searched`].
    suspended: bool,
    /// The first item of the current upstream answer (later answers follow searches).
    leg_start: usize,
    /// Usage of the earlier answers of this response.
    prior_usage: Option<Value>,
}

/// Two Responses usage objects added up.
fn add_usage(a: Option<&Value>, b: Option<&Value>) -> Option<Value> {
    let (a, b) = match (a, b) {
        (None, None) => return None,
        (Some(x), None) | (None, Some(x)) => return Some(x.clone()),
        (Some(a), Some(b)) => (a, b),
    };
    let n = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let sum = |p: &str| n(a, p) + n(b, p);
    Some(
        json!({"input_tokens": sum("/input_tokens"), "input_tokens_details": {"cached_tokens": sum("/input_tokens_details/cached_tokens")},
                "output_tokens": sum("/output_tokens"), "output_tokens_details": {"reasoning_tokens": sum("/output_tokens_details/reasoning_tokens")},
                "total_tokens": sum("/total_tokens")}),
    )
}

/// Chat usage → Responses usage (all three required integers, plus details).
pub fn usage_to_responses(u: &Value) -> Option<Value> {
    let input = u.get("prompt_tokens")?.as_u64()?;
    let output = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    let total = u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output);
    let cached = u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
    let reasoning = u.pointer("/completion_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0);
    Some(json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": total}))
}

fn delta_text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("text").or_else(|| o.get("content")).and_then(Value::as_str),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

impl ChatToResponses {
    /// `id` is the response id to use (`resp_…`), `model` the model name to report.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created_at: u64,
        tools: ToolMap,
        recover_leaks: bool,
    ) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            created_at,
            tools,
            recover_leaks,
            seq: 0,
            started: false,
            finished: false,
            items: Vec::new(),
            open: Vec::new(),
            held: None,
            finish_reason: None,
            usage: None,
            terminal: None,
            search_rounds: 0,
            suspended: false,
            leg_start: 0,
            prior_usage: None,
        }
    }

    /// Let the model's answers end in web searches up to `rounds` times (the gateway runs them,
    /// see [`Self::is_suspended`]); the default, 0, drops its web search calls.
    pub fn with_search_rounds(mut self, rounds: u8) -> Self {
        self.search_rounds = rounds;
        self
    }

    /// The upstream's answer ended in web searches: run [`Self::searches`], then call
    /// [`Self::searched`] and feed the next answer's chunks.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// The searches to run, in order.
    pub fn searches(&self) -> Vec<PendingSearch> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Search { call_id, query, status: "in_progress", .. } => {
                    Some(PendingSearch { call_id: call_id.clone(), query: query.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// The chat messages that continue the conversation after the searches: the model's own
    /// answer (its text and the search calls), then one tool message per search with
    /// `results` (in the order of [`Self::searches`]).
    pub fn continuation(&self, results: &[String]) -> Vec<Value> {
        let mut text = String::new();
        let mut calls = Vec::new();
        let name = self.tools.web_search().unwrap_or(crate::websearch::TOOL);
        for item in &self.items[self.leg_start..] {
            match item {
                Item::Message { text: t, .. } => text.push_str(t),
                Item::Search { call_id, args, status: "in_progress", .. } => calls
                    .push(json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})),
                _ => {}
            }
        }
        let content = if text.is_empty() { Value::Null } else { Value::String(text) };
        let mut out = vec![json!({"role": "assistant", "content": content, "tool_calls": calls})];
        for (s, r) in self.searches().iter().zip(results) {
            out.push(crate::websearch::tool_message(&s.call_id, r));
        }
        out
    }

    /// The searches ran (`ok[i]`: search i found an answer, even an empty one): their items
    /// complete, and the next upstream answer continues this response.
    pub fn searched(&mut self, ok: &[bool], out: &mut Vec<u8>) {
        let pending: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches!(self.items[i], Item::Search { status: "in_progress", .. }))
            .collect();
        for (n, idx) in pending.into_iter().enumerate() {
            let good = ok.get(n).copied().unwrap_or(false);
            if let Item::Search { status, id, .. } = &mut self.items[idx] {
                *status = if good { "completed" } else { "failed" };
                let id = id.clone();
                if good {
                    self.emit(out, "response.web_search_call.completed", json!({"item_id": id, "output_index": idx}));
                }
            }
            self.emit(out, "response.output_item.done", json!({"output_index": idx, "item": self.done_item(idx)}));
        }
        self.suspended = false;
        self.finish_reason = None;
        self.held = None;
        self.leg_start = self.items.len();
        self.search_rounds = self.search_rounds.saturating_sub(1);
        self.prior_usage = add_usage(self.prior_usage.as_ref(), self.usage.take().as_ref());
    }

    fn is_search_call(&self, idx: usize) -> bool {
        matches!(&self.items[idx], Item::Call { name, .. } if self.tools.origin(name) == ToolOrigin::WebSearch)
    }

    /// A terminal event has been written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The response object of the terminal event (for non-streaming answers).
    pub fn terminal_response(&self) -> Option<&Value> {
        self.terminal.as_ref()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq - 1
    }

    fn emit(&mut self, out: &mut Vec<u8>, ty: &str, mut v: Value) {
        v["type"] = json!(ty);
        v["sequence_number"] = json!(self.next_seq());
        encode(Some(ty), &v.to_string(), out);
    }

    fn response(&self, status: &str) -> Value {
        json!({"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
               "model": self.model, "output": []})
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let r = self.response("in_progress");
            self.emit(out, "response.created", json!({"response": r}));
            self.emit(out, "response.in_progress", json!({"response": r}));
        }
    }

    /// One chunk's `data` (a JSON chat chunk, or `[DONE]`).
    pub fn push(&mut self, data: &str, out: &mut Vec<u8>) {
        self.push_head(ChatHead::parse(data).as_ref(), data, out);
    }

    /// One chunk whose head is already parsed (`None`: not a JSON chunk).
    pub fn push_head(&mut self, head: Option<&ChatHead<'_>>, data: &str, out: &mut Vec<u8>) {
        if self.finished || self.suspended {
            return;
        }
        if data.trim() == "[DONE]" {
            return self.finish(out);
        }
        if head.is_some_and(|h| self.push_plain(h, out)) {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { return };
        self.push_value(&chunk, out);
    }

    /// The common chunk, as [`push_value`](Self::push_value) would handle it; `false` (nothing
    /// done) when it is not that simple.
    fn push_plain(&mut self, chunk: &ChatHead<'_>, out: &mut Vec<u8>) -> bool {
        let Some([choice]) = chunk.choices.as_deref() else { return false };
        if chunk.usage.is_some() || chunk.error.is_some() || choice.message.is_some() {
            return false;
        }
        let delta = match choice.delta {
            None => None,
            Some(raw) => match serde_json::from_str::<PlainDelta>(raw.get()) {
                Ok(d) if d.reasoning.is_none() && d.tool_calls.is_none() => Some(d),
                _ => return false,
            },
        };
        self.start(out);
        if let Some(d) = delta {
            if let Some(r) = d.reasoning_content.filter(|r| !r.is_empty()) {
                self.reasoning_delta(&r, out);
            }
            if let Some(c) = d.content.filter(|c| !c.is_empty()) {
                self.text_delta(&c, out);
            }
        }
        if let Some(f) = &choice.finish_reason {
            self.finish_reason = Some(f.clone().into_owned());
        }
        true
    }

    /// One parsed chunk.
    pub fn push_value(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.finished || self.suspended {
            return;
        }
        self.start(out);
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let code = err
                .get("code")
                .and_then(|c| c.as_str().map(str::to_owned).or_else(|| c.as_u64().map(|n| n.to_string())));
            let code = code
                .or_else(|| err.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "upstream_error".into());
            let message = err.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_owned();
            return self.fail(&code, &message, out);
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()).and_then(usage_to_responses) {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else { return };
        let delta = choice.get("delta").or_else(|| choice.get("message"));
        if let Some(d) = delta {
            if let Some(r) = delta_text(d.get("reasoning_content")).or_else(|| delta_text(d.get("reasoning"))) {
                self.reasoning_delta(r, out);
            }
            match d.get("content") {
                Some(Value::String(s)) if !s.is_empty() => self.text_delta(s, out),
                Some(Value::Array(parts)) => {
                    let s: String = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
                    if !s.is_empty() {
                        self.text_delta(&s, out);
                    }
                }
                _ => {}
            }
            for (n, tc) in d.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
                self.tool_delta(tc, n as u64, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_owned());
        }
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}", self.id.trim_start_matches("resp_"), self.items.len())
    }

    fn open_of(&self, want: fn(&Item) -> bool) -> Option<usize> {
        self.open.iter().copied().find(|&i| want(&self.items[i]))
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        let idx = match self.open_of(|i| matches!(i, Item::Reasoning { .. })) {
            Some(i) => i,
            None => {
                self.close_non_calls(out);
                let id = self.next_id("rs");
                self.items.push(Item::Reasoning { id: id.clone(), text: String::new() });
                let idx = self.items.len() - 1;
                self.open.push(idx);
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": idx, "item": {"type": "reasoning", "id": id, "summary": []}}),
                );
                self.emit(out, "response.reasoning_summary_part.added", json!({"item_id": id, "output_index": idx, "summary_index": 0,
                                                                                  "part": {"type": "summary_text", "text": ""}}));
                idx
            }
        };
        let seq = self.next_seq();
        if let Item::Reasoning { id, text: t } = &mut self.items[idx] {
            t.push_str(text);
            DeltaEvent {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: seq,
                item_id: id,
                output_index: idx,
                content_index: None,
                summary_index: Some(0),
                delta: text,
            }
            .write(out);
        }
    }

    /// Could `text` (the answer so far) still turn out to be a tool call written as JSON? Decided
    /// from its first few characters — a fence's language, the first key, the tool's name — so
    /// prose, code and JSON that is not a call of a known tool stream at once instead of being
    /// held to the end.
    fn might_be_leaked_call(&self, text: &str) -> bool {
        if !(self.recover_leaks && self.tools.has_tools()) {
            return false;
        }
        let t = text.trim_start();
        let body = match t.strip_prefix("```") {
            Some(rest) => match rest.find('\n') {
                // Still inside the fence's info string: only `json` (or none) may follow.
                None => "json".starts_with(rest.trim().to_ascii_lowercase().as_str()),
                Some(i) if matches!(rest[..i].trim().to_ascii_lowercase().as_str(), "" | "json") => {
                    return self.might_be_call_object(rest[i + 1..].trim_start())
                }
                Some(_) => false,
            },
            None => return self.might_be_call_object(t),
        };
        body
    }

    /// Is `t` empty or the start of `{"name": "<a known tool>"…`, `{"tool": …`, `{"function": …`
    /// or `{"tool_calls": …`?
    fn might_be_call_object(&self, t: &str) -> bool {
        const KEYS: [&str; 4] = ["name", "tool", "function", "tool_calls"];
        let Some(after) = t.strip_prefix('{') else { return t.is_empty() };
        let after = after.trim_start();
        let Some(key_on) = after.strip_prefix('"') else { return after.is_empty() };
        let Some(end) = key_on.find('"') else { return KEYS.iter().any(|k| k.starts_with(key_on)) };
        let key = &key_on[..end];
        if !KEYS.contains(&key) {
            return false;
        }
        if key != "name" && key != "tool" {
            return true;
        }
        let rest = key_on[end + 1..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else { return rest.is_empty() };
        let rest = rest.trim_start();
        let Some(value) = rest.strip_prefix('"') else { return rest.is_empty() };
        match value.find('"') {
            Some(e) => self.tools.names.contains_key(&value[..e]),
            None => self.tools.names.keys().any(|n| n.starts_with(value)),
        }
    }

    fn text_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        if self.open_of(|i| matches!(i, Item::Message { .. })).is_none() {
            // Hold back text that may be a tool call written as JSON; release it as soon as it
            // clearly is something else.
            if let Some(mut h) = self.held.take() {
                h.push_str(text);
                if self.might_be_leaked_call(&h) {
                    self.held = Some(h);
                } else {
                    self.open_message(&h, out);
                }
                return;
            }
            if self.might_be_leaked_call(text) && !self.items.iter().any(|i| matches!(i, Item::Call { .. })) {
                self.held = Some(text.to_owned());
                return;
            }
            self.open_message(text, out);
            return;
        }
        self.message_delta(text, out);
    }

    fn open_message(&mut self, text: &str, out: &mut Vec<u8>) {
        self.close_non_calls(out);
        let id = self.next_id("msg");
        self.items.push(Item::Message { id: id.clone(), text: String::new() });
        let idx = self.items.len() - 1;
        self.open.push(idx);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": idx,
            "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}),
        );
        self.emit(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": idx, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        self.message_delta(text, out);
    }

    fn message_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        let Some(idx) = self.open_of(|i| matches!(i, Item::Message { .. })) else { return };
        let seq = self.next_seq();
        if let Item::Message { id, text: t } = &mut self.items[idx] {
            t.push_str(text);
            DeltaEvent {
                kind: "response.output_text.delta",
                sequence_number: seq,
                item_id: id,
                output_index: idx,
                content_index: Some(0),
                summary_index: None,
                delta: text,
            }
            .write(out);
        }
    }

    fn call_item_json(&self, idx: usize, done: bool) -> Value {
        let Item::Call { id, call_id, name, args, .. } = &self.items[idx] else { return Value::Null };
        let call_id = call_id.clone().unwrap_or_else(|| format!("call_{}", id.trim_start_matches("fc_")));
        let status = if done { "completed" } else { "in_progress" };
        match self.tools.origin(name) {
            ToolOrigin::Custom { name } => {
                let input = if done {
                    serde_json::from_str::<Value>(args)
                        .ok()
                        .and_then(|v| v.get("input").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| args.clone())
                } else {
                    String::new()
                };
                json!({"type": "custom_tool_call", "id": id, "status": status, "call_id": call_id, "name": name, "input": input})
            }
            origin => {
                let args = if !done {
                    String::new()
                } else if args.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    args.clone()
                };
                let mut v = json!({"type": "function_call", "id": id, "status": status, "call_id": call_id, "name": name, "arguments": args});
                if let ToolOrigin::Namespaced { namespace, name } = origin {
                    v["namespace"] = json!(namespace);
                    v["name"] = json!(name);
                }
                v
            }
        }
    }

    fn tool_delta(&mut self, tc: &Value, position: u64, out: &mut Vec<u8>) {
        let chat_index = tc.get("index").and_then(Value::as_u64);
        let tc_id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let found = self.open.iter().copied().find(|&i| match &self.items[i] {
            Item::Call { chat_index: ci, call_id, .. } => match (chat_index, tc_id) {
                (Some(want), _) => *ci == want,
                (None, Some(id)) => call_id.as_deref() == Some(id),
                (None, None) => *ci == position,
            },
            _ => false,
        });
        let idx = match found {
            Some(i) => i,
            None => {
                // Text before a real tool call was not a leaked call.
                if let Some(h) = self.held.take() {
                    self.open_message(&h, out);
                }
                self.close_non_calls(out);
                let id = self.next_id("fc");
                let n = self.items.len();
                self.items.push(Item::Call {
                    id,
                    call_id: tc_id.map(str::to_owned),
                    name: String::new(),
                    args: String::new(),
                    added: false,
                    chat_index: chat_index.unwrap_or(position),
                });
                self.open.push(n);
                n
            }
        };
        let f = tc.get("function");
        let name_part = f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
        let args_part = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or_default();
        let mut newly_added = false;
        if let Item::Call { name, args, added, call_id, .. } = &mut self.items[idx] {
            if name.is_empty() && !name_part.is_empty() {
                *name = name_part.to_owned();
            }
            if call_id.is_none() {
                *call_id = tc_id.map(str::to_owned);
            }
            args.push_str(args_part);
            if !*added && !name.is_empty() {
                *added = true;
                newly_added = true;
            }
        }
        let (custom, added) = match &self.items[idx] {
            // The gateway's web search: shown as a search once it runs, never as a call.
            Item::Call { name, .. } if self.tools.origin(name) == ToolOrigin::WebSearch => return,
            Item::Call { name, added, .. } => (matches!(self.tools.origin(name), ToolOrigin::Custom { .. }), *added),
            _ => return,
        };
        let send = if newly_added {
            let item = self.call_item_json(idx, false);
            self.emit(out, "response.output_item.added", json!({"output_index": idx, "item": item}));
            matches!(&self.items[idx], Item::Call { args, .. } if !args.is_empty())
        } else {
            added && !args_part.is_empty()
        };
        if send && !custom {
            let seq = self.next_seq();
            if let Item::Call { id, args, .. } = &self.items[idx] {
                DeltaEvent {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: seq,
                    item_id: id,
                    output_index: idx,
                    content_index: None,
                    summary_index: None,
                    // Arguments that came with (or before) the name are sent once it is known.
                    delta: if newly_added { args } else { args_part },
                }
                .write(out);
            }
        }
    }

    fn close_item(&mut self, idx: usize, out: &mut Vec<u8>) {
        self.open.retain(|&i| i != idx);
        if self.is_search_call(idx) {
            return; // decided at the end of the answer (see `finish`)
        }
        match self.items[idx].clone() {
            Item::Reasoning { id, text } => {
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0,
                    "part": {"type": "summary_text", "text": text}}),
                );
                self.emit(out, "response.output_item.done", json!({"output_index": idx, "item": self.done_item(idx)}));
            }
            Item::Message { id, text } => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
                self.emit(out, "response.output_item.done", json!({"output_index": idx, "item": self.done_item(idx)}));
            }
            Item::Call { id, added, .. } => {
                if !added {
                    if let Item::Call { added, .. } = &mut self.items[idx] {
                        *added = true;
                    }
                    let item = self.call_item_json(idx, false);
                    self.emit(out, "response.output_item.added", json!({"output_index": idx, "item": item}));
                }
                let item = self.done_item(idx);
                if item["type"] == "function_call" {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": idx, "arguments": item["arguments"]}),
                    );
                }
                self.emit(out, "response.output_item.done", json!({"output_index": idx, "item": item}));
            }
            Item::Search { .. } | Item::Dropped => {}
        }
    }

    fn done_item(&self, idx: usize) -> Value {
        match &self.items[idx] {
            Item::Reasoning { id, text } => {
                json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
            }
            Item::Message { id, text } => {
                json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
                                                 "content": [{"type": "output_text", "text": text, "annotations": []}]})
            }
            Item::Call { .. } if self.is_search_call(idx) => Value::Null,
            Item::Call { .. } => self.call_item_json(idx, true),
            Item::Search { id, query, status, .. } => crate::websearch::call_item(id, query, status),
            Item::Dropped => Value::Null,
        }
    }

    /// Close the open message or reasoning item. Tool calls stay open until the end: their
    /// argument fragments may still be coming, interleaved with anything else.
    fn close_non_calls(&mut self, out: &mut Vec<u8>) {
        let closing: Vec<usize> =
            self.open.iter().copied().filter(|&i| !matches!(self.items[i], Item::Call { .. })).collect();
        for i in closing {
            self.close_item(i, out);
        }
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        while let Some(&i) = self.open.first() {
            self.close_item(i, out);
        }
    }

    /// A tool call the model wrote as JSON text instead of a tool call, if `text` is one.
    fn leaked_calls(&self, text: &str) -> Option<Vec<(String, String)>> {
        let t = text.trim();
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .map_or(t, |s| s.trim_end().trim_end_matches("```"))
            .trim();
        let v: Value = serde_json::from_str(t).ok()?;
        let list: Vec<&Value> = match v.get("tool_calls").and_then(Value::as_array) {
            Some(calls) => calls.iter().collect(),
            None => vec![&v],
        };
        let mut calls = Vec::new();
        for c in list {
            let c = c.get("function").unwrap_or(c);
            let name = c.get("name").or_else(|| c.get("tool")).and_then(Value::as_str)?;
            if !self.tools.names.contains_key(name) {
                return None;
            }
            let args = c
                .get("arguments")
                .or_else(|| c.get("parameters"))
                .or_else(|| c.get("input"))
                .cloned()
                .unwrap_or(json!({}));
            let args = match args {
                Value::String(s) => s,
                other => other.to_string(),
            };
            calls.push((name.to_owned(), args));
        }
        (!calls.is_empty()).then_some(calls)
    }

    /// End of the upstream stream (`[DONE]` or a clean end): close every item, then the
    /// terminal event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished || self.suspended {
            return;
        }
        self.start(out);
        if let Some(h) = self.held.take() {
            match self.leaked_calls(&h) {
                Some(calls) => {
                    for (i, (name, args)) in calls.into_iter().enumerate() {
                        let tc = json!({"index": 10_000 + i, "function": {"name": name, "arguments": args}});
                        self.tool_delta(&tc, 10_000 + i as u64, out);
                    }
                    self.finish_reason = Some("tool_calls".into());
                }
                None if !h.trim().is_empty() => self.open_message(&h, out),
                None => {}
            }
        }
        if self.end_in_searches(out) {
            return;
        }
        self.close_all(out);
        let output: Vec<Value> = (0..self.items.len()).map(|i| self.done_item(i)).filter(|v| !v.is_null()).collect();
        let (ty, status) = match self.finish_reason.as_deref() {
            Some("length") => ("response.incomplete", "incomplete"),
            Some("content_filter") => ("response.incomplete", "incomplete"),
            _ => ("response.completed", "completed"),
        };
        let mut r = self.response(status);
        r["output"] = Value::Array(output);
        if let Some(u) = add_usage(self.prior_usage.as_ref(), self.usage.as_ref()) {
            r["usage"] = u;
        }
        if status == "incomplete" {
            let reason =
                if self.finish_reason.as_deref() == Some("length") { "max_output_tokens" } else { "content_filter" };
            r["incomplete_details"] = json!({"reason": reason});
        }
        self.emit(out, ty, json!({"response": r}));
        self.terminal = Some(r);
        self.finished = true;
    }

    /// At the end of an answer: when its only tool calls are web searches and rounds are left,
    /// they become `web_search_call` items in progress and the response waits for them
    /// (`true`); otherwise they are dropped (the other calls, or the text, end the turn).
    fn end_in_searches(&mut self, out: &mut Vec<u8>) -> bool {
        let leg = self.leg_start..self.items.len();
        let searches: Vec<usize> = leg.clone().filter(|&i| self.is_search_call(i)).collect();
        if searches.is_empty() {
            return false;
        }
        let others = leg.filter(|&i| matches!(self.items[i], Item::Call { .. })).count() > searches.len();
        if others || self.search_rounds == 0 {
            for i in searches {
                self.open.retain(|&o| o != i);
                self.items[i] = Item::Dropped;
            }
            return false;
        }
        self.close_all(out);
        for i in searches {
            let Item::Call { call_id, args, id, .. } = &self.items[i] else { continue };
            let call_id = call_id.clone().unwrap_or_else(|| format!("call_{id}"));
            let id = format!("ws_{}_{i}", self.id.trim_start_matches("resp_"));
            let query = crate::websearch::query_of(args);
            self.items[i] = Item::Search { id: id.clone(), call_id, query, args: args.clone(), status: "in_progress" };
            let item = self.done_item(i);
            self.emit(out, "response.output_item.added", json!({"output_index": i, "item": item}));
            self.emit(out, "response.web_search_call.in_progress", json!({"item_id": id, "output_index": i}));
            self.emit(out, "response.web_search_call.searching", json!({"item_id": id, "output_index": i}));
        }
        self.suspended = true;
        true
    }

    /// The upstream failed: one final `response.failed`.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(out);
        let mut r = self.response("failed");
        r["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": r}));
        self.terminal = Some(r);
        self.finished = true;
    }
}

/// A whole chat completion → a Responses object, by running it through the stream machine.
pub fn completion_to_response(
    completion: &Value,
    id: &str,
    model: &str,
    created_at: u64,
    tools: ToolMap,
    recover: bool,
) -> Value {
    let mut m = ChatToResponses::new(id, model, created_at, tools, recover);
    let mut sink = Vec::new();
    let mut chunk = completion.clone();
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices.iter_mut() {
            if let Some(calls) = c.pointer_mut("/message/tool_calls").and_then(Value::as_array_mut) {
                for (i, tc) in calls.iter_mut().enumerate() {
                    tc["index"] = json!(i);
                }
            }
        }
    }
    m.push_value(&chunk, &mut sink);
    m.finish(&mut sink);
    m.terminal.unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn events(bytes: &[u8]) -> Vec<Value> {
        let (mut d, mut evs) = (SseDecoder::default(), Vec::new());
        d.push(bytes, &mut evs).unwrap();
        evs.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect()
    }

    /// Feed `deltas` as content chunks with `exec_command` offered; the text deltas that reached
    /// the client after each chunk.
    fn streamed_text(deltas: &[&str]) -> Vec<String> {
        let mut tools = ToolMap::default();
        tools.names.insert("exec_command".into(), crate::translate::request::ToolOrigin::Function);
        let mut m = ChatToResponses::new("resp_1", "m", 1, tools, true);
        let mut seen = Vec::new();
        for d in deltas {
            let mut out = Vec::new();
            let c = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]});
            m.push(&c.to_string(), &mut out);
            let text: String = events(&out)
                .iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .filter_map(|e| e["delta"].as_str().map(str::to_owned))
                .collect();
            seen.push(text);
        }
        seen
    }

    #[test]
    fn with_tools_offered_text_streams_as_soon_as_it_cannot_be_a_leaked_call() {
        // JSON that is not a call: released as soon as its first key cannot be a call's.
        assert_eq!(streamed_text(&["{\"ans", "wer\": 4", "2}"]), ["{\"ans", "wer\": 4", "2}"]);
        assert_eq!(streamed_text(&["{\"na", "me2\": 1}"]), ["", "{\"name2\": 1}"]);
        // A fence for another language: released at the end of its info line.
        assert_eq!(streamed_text(&["```", "rust\nfn main", "() {}"]), ["", "```rust\nfn main", "() {}"]);
        assert_eq!(streamed_text(&["```ru", "st"]), ["```ru", "st"]);
        // A `name` that is no offered tool: released once the name rules it out.
        assert_eq!(streamed_text(&["{\"name\": \"ex", "it\"}"]), ["", "{\"name\": \"exit\"}"]);
        assert_eq!(streamed_text(&["{\"name\": \"Al", "ice\"}"]), ["{\"name\": \"Al", "ice\"}"]);
        // Prose is never held.
        assert_eq!(streamed_text(&["Sure, ", "here"]), ["Sure, ", "here"]);
        // What may still be a call of a known tool stays held (and is recovered at the end).
        assert_eq!(streamed_text(&["```json\n{\"name\": \"exec_", "command\", \"arguments\": {}}"]), ["", ""]);
    }

    #[test]
    fn plain_chunks_take_the_fast_path_and_match_the_general_one() {
        let chunks = [
            json!({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "think \"hard\""}, "finish_reason": null}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "héllo\n"}, "finish_reason": null}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "world"}, "logprobs": null}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}),
        ];
        for c in &chunks {
            let text = c.to_string();
            let head = ChatHead::parse(&text).unwrap();
            let mut m = ChatToResponses::new("resp_1", "m", 1, ToolMap::default(), false);
            assert!(m.push_plain(&head, &mut Vec::new()), "{c} is a plain chunk");
        }
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        let mut a = ChatToResponses::new("resp_1", "m", 1, ToolMap::default(), false);
        let mut b = ChatToResponses::new("resp_1", "m", 1, ToolMap::default(), false);
        for c in &chunks {
            a.push(&c.to_string(), &mut fast);
            b.push_value(c, &mut general);
        }
        a.finish(&mut fast);
        b.finish(&mut general);
        let (fast, general) = (events(&fast), events(&general));
        assert_eq!(fast, general);
        assert_eq!(fast.iter().filter(|e| e["type"] == "response.output_text.delta").count(), 2);
        assert_eq!(fast.last().unwrap()["response"]["output"][1]["content"][0]["text"], "héllo\nworld");
    }

    #[test]
    fn other_chunks_take_the_general_path() {
        for c in [
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f"}}]}}]}),
            json!({"choices": [{"delta": {"content": [{"type": "text", "text": "part"}]}}]}),
            json!({"choices": [{"delta": {"reasoning": {"text": "r"}}}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
            json!({"choices": [{"delta": {}}, {"delta": {}}]}),
            json!({"error": {"message": "boom"}}),
        ] {
            let text = c.to_string();
            let head = ChatHead::parse(&text).unwrap();
            let mut m = ChatToResponses::new("resp_1", "m", 1, ToolMap::default(), false);
            assert!(!m.push_plain(&head, &mut Vec::new()), "{c} is not plain");
        }
    }
}
