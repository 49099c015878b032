//! [`ResponsesRepair`]: makes any Responses stream that codex-gate relays follow the grammar
//! Codex relies on (codex-protocol §3), touching only what is wrong:
//! - `response.created` comes first (synthesized if the upstream skipped it);
//! - text and reasoning deltas come after an `output_item.added` for their item (synthesized);
//! - an empty `response.completed.output` is backfilled from the `output_item.done` items
//!   (the ChatGPT backend has been seen to send it empty);
//! - `usage` is complete (`total_tokens` derived) or removed — never `{}`;
//! - `codex.*` vendor events reach Codex clients only;
//! - the served model an event's `headers` name is reported by the client's name
//!   ([`crate::served_model`]), when the client named the model otherwise.
//!
//! Events that need no change are kept as they came ([`Verdict::Keep`]), so a relay can pass
//! their bytes on untouched.

use crate::observe::ResponsesHead;
use crate::sse::{encode, SseEvent};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

/// What became of one upstream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Unchanged: the caller sends the event as it came, after whatever was synthesized
    /// before it (already in `out`).
    Keep,
    /// Rewritten or dropped: `out` holds everything that replaces it.
    Replaced,
}

/// The parts of a terminal event that decide whether it needs repair; `output` is counted,
/// not built.
#[derive(Deserialize)]
struct TerminalPeek {
    response: Option<ResponsePeek>,
}

#[derive(Deserialize)]
struct ResponsePeek {
    #[serde(default)]
    output: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Value,
    #[serde(default)]
    id: Value,
}

#[derive(Debug)]
pub struct ResponsesRepair {
    codex_client: bool,
    fallback_id: String,
    created: bool,
    open: HashSet<String>,
    done: Vec<(u64, Value)>,
    /// (the model the upstream was asked for, the model the client asked for), when they differ.
    names: Option<(String, String)>,
    /// Repairs made, for a debug log and tests.
    pub repairs: Vec<&'static str>,
}

impl ResponsesRepair {
    /// `fallback_id` is used if the upstream never names its response.
    pub fn new(codex_client: bool, fallback_id: impl Into<String>) -> Self {
        Self {
            codex_client,
            fallback_id: fallback_id.into(),
            created: false,
            open: HashSet::new(),
            done: Vec::new(),
            names: None,
            repairs: Vec::new(),
        }
    }

    /// Report the served model by the client's name (`client`) where an event's headers name
    /// the model the upstream was asked for (`asked`). Nothing to do when they are the same.
    pub fn with_model_names(mut self, asked: &str, client: &str) -> Self {
        self.names = (asked != client).then(|| (asked.to_owned(), client.to_owned()));
        self
    }

    fn synth(&mut self, out: &mut Vec<u8>, ty: &str, v: Value, why: &'static str) {
        self.repairs.push(why);
        encode(Some(ty), &v.to_string(), out);
    }

    /// One upstream event in, the client's bytes out (kept events re-encoded as they came).
    pub fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        let head = ResponsesHead::parse(&ev.data);
        if self.push_head(head.as_ref(), ev, out) == Verdict::Keep {
            encode(ev.event.as_deref(), &ev.data, out);
        }
    }

    /// One upstream event whose head is already parsed (`None`: its data is not a JSON event).
    /// Whatever must come before the event is written to `out`; a kept event is not.
    pub fn push_head(&mut self, head: Option<&ResponsesHead<'_>>, ev: &SseEvent, out: &mut Vec<u8>) -> Verdict {
        // Not JSON (e.g. a stray `[DONE]`): Codex skips it, so pass it on.
        let Some(head) = head else { return Verdict::Keep };
        let kind = head.kind.as_ref();
        if kind.starts_with("codex.") && !self.codex_client {
            self.repairs.push("dropped codex.* event for a non-Codex client");
            return Verdict::Replaced;
        }
        // Deltas carry no headers; other events are searched once for a model header.
        if let Some((asked, client)) = self.names.as_ref().filter(|_| !kind.ends_with(".delta")) {
            if let Some(data) = crate::served_model::rename_in_event(&ev.data, asked, client) {
                let renamed = SseEvent { event: ev.event.clone(), data };
                let names = self.names.take();
                let head = ResponsesHead::parse(&renamed.data);
                if self.push_head(head.as_ref(), &renamed, out) == Verdict::Keep {
                    encode(renamed.event.as_deref(), &renamed.data, out);
                }
                self.names = names;
                self.repairs.push("reported the served model by the client's name");
                return Verdict::Replaced;
            }
        }
        if !self.created && kind != "response.created" {
            let r = json!({"type": "response.created", "response": {"id": self.fallback_id, "object": "response", "status": "in_progress", "output": []}});
            self.synth(out, "response.created", r, "synthesized response.created");
            self.created = true;
        }
        match kind {
            "response.created" => self.created = true,
            "response.output_text.delta"
            | "response.content_part.added"
            | "response.reasoning_summary_text.delta"
            | "response.reasoning_summary_part.added"
            | "response.reasoning_text.delta" => {
                if let Some(id) = head.item_id.as_deref().filter(|id| !self.open.contains(*id)) {
                    let item = if kind.contains("reasoning") {
                        json!({"type": "reasoning", "id": id, "summary": []})
                    } else {
                        json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []})
                    };
                    let id = id.to_owned();
                    self.synth(
                        out,
                        "response.output_item.added",
                        json!({"type": "response.output_item.added", "item": item}),
                        "synthesized output_item.added",
                    );
                    self.open.insert(id);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                if let Some(id) = v.pointer("/item/id").and_then(Value::as_str) {
                    if kind.ends_with("added") {
                        self.open.insert(id.to_owned());
                    } else {
                        self.open.remove(id);
                    }
                }
                if kind.ends_with("done") {
                    let at = v.get("output_index").and_then(Value::as_u64).unwrap_or(self.done.len() as u64);
                    self.done.push((at, v["item"].clone()));
                }
            }
            "response.completed" | "response.incomplete" => {
                if let Some(fixed) = self.fix_terminal(&ev.data) {
                    encode(Some(kind), &fixed, out);
                    return Verdict::Replaced;
                }
            }
            _ => {}
        }
        Verdict::Keep
    }

    /// Whether a terminal event needs any repair, read without building its `output`.
    fn needs_fix(&self, data: &str) -> bool {
        let Ok(TerminalPeek { response: Some(r) }) = serde_json::from_str::<TerminalPeek>(data) else {
            // Not the expected shape: the full parse below decides (and leaves it alone).
            return true;
        };
        let empty = r.output.as_ref().is_none_or(Vec::is_empty);
        let usage_ok = r.usage.is_null()
            || ["input_tokens", "output_tokens", "total_tokens"]
                .iter()
                .all(|k| r.usage.get(k).is_some_and(Value::is_u64));
        (empty && !self.done.is_empty()) || !usage_ok || !r.id.is_string()
    }

    /// The repaired terminal event, or `None` when it is fine as it is.
    fn fix_terminal(&mut self, data: &str) -> Option<String> {
        if !self.needs_fix(data) {
            return None;
        }
        let mut v: Value = serde_json::from_str(data).ok()?;
        let resp = v.get_mut("response")?.as_object_mut()?;
        let mut changed = false;
        let empty = resp.get("output").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if empty && !self.done.is_empty() {
            let mut done = self.done.clone();
            done.sort_by_key(|(at, _)| *at);
            resp.insert("output".into(), Value::Array(done.into_iter().map(|(_, i)| i).collect()));
            self.repairs.push("backfilled response.output");
            changed = true;
        }
        if let Some(u) = resp.get_mut("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            match (n("input_tokens"), n("output_tokens"), n("total_tokens")) {
                (Some(_), Some(_), Some(_)) => {}
                (Some(i), Some(o), None) => {
                    u["total_tokens"] = json!(i + o);
                    self.repairs.push("completed usage.total_tokens");
                    changed = true;
                }
                _ => {
                    resp.remove("usage");
                    self.repairs.push("removed incomplete usage");
                    changed = true;
                }
            }
        }
        if !resp.get("id").is_some_and(Value::is_string) {
            resp.insert("id".into(), json!(self.fallback_id));
            changed = true;
        }
        changed.then(|| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::check_responses;
    use crate::sse::SseDecoder;

    fn run(codex: bool, events: &[Value]) -> (Vec<Value>, Vec<&'static str>) {
        let mut r = ResponsesRepair::new(codex, "resp_fallback");
        let mut out = Vec::new();
        for e in events {
            r.push(&SseEvent { event: None, data: e.to_string() }, &mut out);
        }
        let mut d = SseDecoder::default();
        let mut evs = Vec::new();
        d.push(&out, &mut evs).unwrap();
        (evs.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect(), r.repairs)
    }

    #[test]
    fn broken_stream_is_repaired_into_the_grammar() {
        let item = json!({"type": "message", "id": "m1", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]});
        let (evs, repairs) = run(
            false,
            &[
                json!({"type": "response.output_text.delta", "item_id": "m1", "delta": "hi"}),
                json!({"type": "codex.rate_limits", "rate_limits": {}}),
                json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
                json!({"type": "response.completed", "response": {"id": "r", "output": [], "usage": {"input_tokens": 2, "output_tokens": 3}}}),
            ],
        );
        check_responses(&evs).unwrap();
        assert_eq!(evs.last().unwrap()["response"]["output"][0], item);
        assert_eq!(evs.last().unwrap()["response"]["usage"]["total_tokens"], 5);
        assert!(!evs.iter().any(|e| e["type"] == "codex.rate_limits"));
        assert_eq!(repairs.len(), 5, "{repairs:?}");
    }

    #[test]
    fn empty_usage_is_removed_and_codex_events_kept_for_codex() {
        let (evs, _) = run(
            true,
            &[
                json!({"type": "response.created", "response": {"id": "r"}}),
                json!({"type": "codex.rate_limits", "rate_limits": {}}),
                json!({"type": "response.completed", "response": {"id": "r", "output": [], "usage": {}}}),
            ],
        );
        assert!(evs.iter().any(|e| e["type"] == "codex.rate_limits"));
        assert!(evs.last().unwrap()["response"].get("usage").is_none());
    }

    #[test]
    fn a_good_stream_is_left_alone() {
        let (_, repairs) = run(
            false,
            &[
                json!({"type": "response.created", "response": {"id": "r"}}),
                json!({"type": "response.output_item.added", "item": {"type": "message", "id": "m"}}),
                json!({"type": "response.output_text.delta", "item_id": "m", "delta": "x"}),
                json!({"type": "response.output_item.done", "item": {"type": "message", "id": "m"}}),
                json!({"type": "response.completed", "response": {"id": "r", "output": [{"type": "message", "id": "m"}], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}}),
            ],
        );
        assert!(repairs.is_empty(), "{repairs:?}");
    }

    #[test]
    fn the_served_model_in_event_headers_is_reported_by_the_clients_name() {
        let mut r = ResponsesRepair::new(true, "resp_fallback").with_model_names("gpt-5.5", "fast");
        let mut out = Vec::new();
        for e in [
            json!({"type": "response.created", "response": {"id": "r"}}),
            json!({"type": "response.metadata", "headers": {"openai-model": "gpt-5.5"}}),
            json!({"type": "response.output_text.delta", "item_id": "m", "delta": "x"}),
        ] {
            r.push(&SseEvent { event: None, data: e.to_string() }, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""openai-model":"fast""#) && !text.contains("gpt-5.5"), "{text}");
        assert!(text.contains("output_item.added"), "the other repairs still run: {text}");
        assert!(r.repairs.contains(&"reported the served model by the client's name"));
        // The same names: nothing to rename.
        let same = ResponsesRepair::new(true, "x").with_model_names("gpt-5.5", "gpt-5.5");
        assert!(same.names.is_none());
    }

    #[test]
    fn verdicts_say_which_events_pass_untouched() {
        let mut r = ResponsesRepair::new(false, "resp_fallback");
        let mut verdict = |data: Value, out: &mut Vec<u8>| {
            let ev = SseEvent { event: None, data: data.to_string() };
            r.push_head(ResponsesHead::parse(&ev.data).as_ref(), &ev, out)
        };
        let mut out = Vec::new();
        // A delta first: response.created and output_item.added are synthesized before it, and
        // the delta itself is kept.
        let v = verdict(json!({"type": "response.output_text.delta", "item_id": "m", "delta": "x"}), &mut out);
        assert_eq!(v, Verdict::Keep);
        let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
        assert!(text.contains("response.created") && text.contains("output_item.added"), "{text}");
        assert!(!text.contains("output_text.delta"), "a kept event is not written: {text}");
        // The next delta of the same item needs nothing.
        assert_eq!(
            verdict(json!({"type": "response.output_text.delta", "item_id": "m", "delta": "y"}), &mut out),
            Verdict::Keep
        );
        assert!(out.is_empty());
        // Vendor events are dropped for a non-Codex client.
        assert_eq!(verdict(json!({"type": "codex.rate_limits"}), &mut out), Verdict::Replaced);
        assert!(out.is_empty());
        // A complete terminal event is kept; one with partial usage is replaced.
        let done = json!({"type": "response.completed", "response": {"id": "r", "output": [{"type": "message"}],
                          "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}});
        assert_eq!(verdict(done, &mut out), Verdict::Keep);
        let partial = json!({"type": "response.completed", "response": {"id": "r", "output": [{"type": "message"}],
                             "usage": {"input_tokens": 1, "output_tokens": 1}}});
        assert_eq!(verdict(partial, &mut out), Verdict::Replaced);
        assert!(String::from_utf8(out).unwrap().contains("\"total_tokens\":2"));
    }
}
