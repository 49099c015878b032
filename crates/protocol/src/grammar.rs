//! Checkers for what codex-gate emits, written from codex-protocol §3 (Responses) and §10.2
//! (Chat): the tests run every translated stream through them.

use serde_json::Value;
use std::collections::HashMap;

/// Check a Responses event stream (the parsed `data` of each event, in order).
///
/// Rules: `response.created` first; every delta refers to an item that was added and is not
/// done yet; every added item is done exactly once; exactly one terminal event, and it is last;
/// `response.completed` has a string `response.id`, an `output` holding every done item (in
/// `output_index` order), and
/// `usage` either absent or with integer `input_tokens`, `output_tokens`, `total_tokens`.
pub fn check_responses(events: &[Value]) -> Result<(), String> {
    let ty = |e: &Value| e.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    if events.first().map(ty).as_deref() != Some("response.created") {
        return Err(format!("first event is {:?}, not response.created", events.first().map(ty)));
    }
    let mut open: HashMap<String, String> = HashMap::new();
    let mut done_items = Vec::new();
    let mut terminal = None;
    for (i, e) in events.iter().enumerate() {
        let t = ty(e);
        if terminal.is_some() {
            return Err(format!("event {i} ({t}) after the terminal event"));
        }
        let item_id = e.get("item_id").and_then(Value::as_str);
        match t.as_str() {
            "response.output_item.added" => {
                let item = &e["item"];
                let id = item.get("id").and_then(Value::as_str).ok_or(format!("event {i}: added item without id"))?;
                if item.get("type").and_then(Value::as_str).is_none() {
                    return Err(format!("event {i}: added item without type"));
                }
                if open.insert(id.to_owned(), item["type"].as_str().unwrap_or("").to_owned()).is_some() {
                    return Err(format!("event {i}: item {id} added twice"));
                }
            }
            "response.output_text.delta"
            | "response.reasoning_summary_text.delta"
            | "response.reasoning_summary_part.added"
            | "response.reasoning_text.delta"
            | "response.function_call_arguments.delta"
            | "response.content_part.added" => {
                let id = item_id.ok_or(format!("event {i} ({t}) without item_id"))?;
                if !open.contains_key(id) {
                    return Err(format!("event {i} ({t}) for item {id}, which is not open"));
                }
                if t.ends_with(".delta") && !e.get("delta").is_some_and(Value::is_string) {
                    return Err(format!("event {i} ({t}) without a string delta"));
                }
            }
            "response.output_item.done" => {
                let item = &e["item"];
                let id = item.get("id").and_then(Value::as_str).ok_or(format!("event {i}: done item without id"))?;
                if open.remove(id).is_none() {
                    return Err(format!("event {i}: item {id} done but not open"));
                }
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        let args = item
                            .get("arguments")
                            .and_then(Value::as_str)
                            .ok_or(format!("event {i}: call without arguments"))?;
                        serde_json::from_str::<Value>(args)
                            .map_err(|_| format!("event {i}: arguments are not JSON: {args:?}"))?;
                        if item.get("call_id").and_then(Value::as_str).is_none_or(str::is_empty) {
                            return Err(format!("event {i}: call without call_id"));
                        }
                    }
                    Some("custom_tool_call") if !item.get("input").is_some_and(Value::is_string) => {
                        return Err(format!("event {i}: custom call without input"));
                    }
                    Some(_) => {}
                    None => return Err(format!("event {i}: done item without type")),
                }
                let at = e.get("output_index").and_then(Value::as_u64).unwrap_or(done_items.len() as u64);
                done_items.push((at, item.clone()));
            }
            "response.created" if i > 0 => return Err(format!("event {i}: a second response.created")),
            "response.completed" | "response.incomplete" | "response.failed" => terminal = Some((i, e)),
            _ => {}
        }
    }
    let (_, e) = terminal.ok_or("no terminal event")?;
    let resp = &e["response"];
    if !resp.get("id").is_some_and(Value::is_string) {
        return Err("terminal event without a string response.id".into());
    }
    if e["type"] == "response.failed" {
        return Ok(());
    }
    if !open.is_empty() {
        return Err(format!("items never done: {:?}", open.keys().collect::<Vec<_>>()));
    }
    if let Some(u) = resp.get("usage").filter(|u| !u.is_null()) {
        for k in ["input_tokens", "output_tokens", "total_tokens"] {
            if !u.get(k).is_some_and(Value::is_u64) {
                return Err(format!("usage without integer {k}: {u}"));
            }
        }
    }
    let output = resp.get("output").and_then(Value::as_array).ok_or("terminal response without output")?;
    done_items.sort_by_key(|(at, _)| *at);
    let done_items: Vec<Value> = done_items.into_iter().map(|(_, item)| item).collect();
    if output != &done_items {
        return Err(format!(
            "response.output ({} items) differs from the done items ({})",
            output.len(),
            done_items.len()
        ));
    }
    Ok(())
}

/// Check a Chat Completions chunk stream (`data` payloads, `[DONE]` as a string).
///
/// Rules: every chunk is a `chat.completion.chunk` with an id that is the same throughout; the
/// first carries `role`; tool-call deltas name an `index`, and the first delta of each index has
/// `id` and `function.name`; exactly one `finish_reason`; usage (if any) after it; `[DONE]` last
/// — or an error chunk last.
pub fn check_chat(events: &[Value]) -> Result<(), String> {
    let mut id = None;
    let mut seen_tools: HashMap<u64, ()> = HashMap::new();
    let mut finished = false;
    for (i, e) in events.iter().enumerate() {
        if e == "[DONE]" {
            return if i + 1 == events.len() && finished { Ok(()) } else { Err(format!("[DONE] at {i} misplaced")) };
        }
        if e.get("error").is_some() {
            return if i + 1 == events.len() { Ok(()) } else { Err(format!("error chunk at {i} is not last")) };
        }
        if e["object"] != "chat.completion.chunk" {
            return Err(format!("chunk {i} is not a chat.completion.chunk"));
        }
        let cid = e["id"].as_str().ok_or(format!("chunk {i} without id"))?;
        if *id.get_or_insert(cid.to_owned()) != cid {
            return Err(format!("chunk {i} changes the id"));
        }
        let choices = e["choices"].as_array().ok_or(format!("chunk {i} without choices"))?;
        if i == 0 && choices.first().and_then(|c| c["delta"].get("role")).is_none() {
            return Err("first chunk without role".into());
        }
        for c in choices {
            for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let idx = tc["index"].as_u64().ok_or(format!("chunk {i}: tool call without index"))?;
                if seen_tools.insert(idx, ()).is_none()
                    && (tc["id"].as_str().is_none() || tc["function"]["name"].as_str().is_none())
                {
                    return Err(format!("chunk {i}: first delta of tool call {idx} lacks id or name"));
                }
            }
            if c["finish_reason"].is_string() {
                if finished {
                    return Err(format!("chunk {i}: second finish_reason"));
                }
                finished = true;
            }
        }
        if choices.is_empty() && !finished {
            return Err(format!("usage chunk {i} before finish_reason"));
        }
    }
    Err("stream ended without [DONE] or an error chunk".into())
}
