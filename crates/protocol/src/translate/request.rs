//! Request mapping in both directions.
//!
//! Responses → Chat: `instructions` and system/developer messages become system messages;
//! `function_call`/`function_call_output` history becomes assistant `tool_calls` / `tool`
//! messages; `custom` tools become a function with one string parameter `input`; `namespace`
//! tools are flattened to unique names; hosted tools are dropped; images a tool returned follow
//! its tool message as a user message (chat tool messages are text only). The [`ToolMap`] returned
//! with the request undoes the renaming on the way back.

use crate::body::BodyError;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The smallest `max_output_tokens` the Responses API accepts.
pub const MIN_OUTPUT_TOKENS: u64 = 16;

/// How a chat upstream wants a few optional things said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatDialect {
    /// Send `reasoning.effort` as `reasoning_effort`.
    pub reasoning_effort: bool,
    /// Send earlier reasoning summaries as `reasoning_content` on the next assistant message.
    pub reasoning_history: bool,
    /// Name of the output-limit field: `max_tokens` or `max_completion_tokens`.
    pub max_tokens_field: &'static str,
    /// Recover tool calls that a model wrote as raw JSON text.
    pub recover_leaked_tool_calls: bool,
    /// Offer a `web_search` function in place of the hosted `web_search` tool: the gateway runs
    /// the searches the model asks for (see [`crate::websearch`]).
    pub web_search: bool,
}

impl Default for ChatDialect {
    fn default() -> Self {
        Self {
            reasoning_effort: false,
            reasoning_history: false,
            max_tokens_field: "max_tokens",
            recover_leaked_tool_calls: true,
            web_search: false,
        }
    }
}

/// How to turn a chat function name back into what the client offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    Function,
    /// A freeform tool: arguments `{"input": "..."}` become `custom_tool_call.input`.
    Custom {
        name: String,
    },
    /// A function inside a `namespace` tool.
    Namespaced {
        namespace: String,
        name: String,
    },
    /// The gateway's `web_search` function, standing in for the hosted tool: its calls are run
    /// by the gateway and shown as `web_search_call` items, never as function calls.
    WebSearch,
}

/// Chat function name → its origin in the Responses request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolMap {
    pub names: HashMap<String, ToolOrigin>,
}

impl ToolMap {
    pub fn origin(&self, chat_name: &str) -> ToolOrigin {
        self.names.get(chat_name).cloned().unwrap_or(ToolOrigin::Function)
    }

    /// The request offered any tool.
    pub fn has_tools(&self) -> bool {
        !self.names.is_empty()
    }

    /// The chat name of the gateway's web search function, when it was offered.
    pub fn web_search(&self) -> Option<&str> {
        self.names.iter().find(|(_, o)| **o == ToolOrigin::WebSearch).map(|(k, _)| k.as_str())
    }

    /// Chat name for a Responses `function_call` with an optional namespace, or a custom tool.
    fn chat_name_for(&self, name: &str, namespace: Option<&str>) -> String {
        self.names
            .iter()
            .find(|(_, o)| match (o, namespace) {
                (ToolOrigin::Namespaced { namespace: ns, name: n }, Some(want)) => ns == want && n == name,
                (ToolOrigin::Custom { name: n }, None) => n == name,
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| match namespace {
                Some(ns) => flat_name(ns, name),
                None => name.to_owned(),
            })
    }

    fn insert_unique(&mut self, wanted: String, origin: ToolOrigin) -> String {
        let mut name = wanted.clone();
        let mut n = 2;
        while self.names.contains_key(&name) {
            name = clamp(&format!("{wanted}_{n}"));
            n += 1;
        }
        self.names.insert(name.clone(), origin);
        name
    }
}

/// Chat function names: `[A-Za-z0-9_-]{1,64}`.
fn clamp(s: &str) -> String {
    let clean: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if clean.len() <= 64 {
        return clean;
    }
    let h = clean.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}_{:08x}", &clean[..55], h as u32)
}

fn flat_name(namespace: &str, name: &str) -> String {
    if namespace.ends_with('_') {
        clamp(&format!("{namespace}{name}"))
    } else {
        clamp(&format!("{namespace}__{name}"))
    }
}

/// A translated chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub body: Value,
    pub tools: ToolMap,
    /// Tools that were dropped (hosted tools a chat upstream cannot run), for a debug log.
    pub dropped_tools: Vec<String>,
}

fn bad(param: &str, message: impl Into<String>) -> BodyError {
    BodyError { param: Some(param.to_owned()), message: message.into() }
}

fn text_of_parts(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A Responses `input_image` part → a chat `image_url` part. Chat knows `low`, `high` and `auto`;
/// Responses' `original` (full resolution, no downscaling) is nearest to `high`.
fn image_part(p: &Value) -> Value {
    let url = p.get("image_url").and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)));
    let mut img = json!({"url": url.unwrap_or_default()});
    match p.get("detail").and_then(Value::as_str) {
        Some("original") => img["detail"] = json!("high"),
        Some(d @ ("low" | "high" | "auto")) => img["detail"] = json!(d),
        _ => {}
    }
    json!({"type": "image_url", "image_url": img})
}

/// Responses message content → chat content (a string when it is all text).
fn chat_content(content: &Value) -> Value {
    let Some(parts) = content.as_array() else {
        return Value::String(text_of_parts(content));
    };
    let mut out = Vec::new();
    let mut all_text = true;
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text" | "summary_text") => {
                out.push(json!({"type": "text", "text": p.get("text").cloned().unwrap_or_default()}))
            }
            Some("input_image") => {
                all_text = false;
                out.push(image_part(p));
            }
            Some("refusal") => out.push(json!({"type": "text", "text": p.get("refusal").cloned().unwrap_or_default()})),
            _ => {} // audio, files: nothing a chat upstream reads portably
        }
    }
    if all_text {
        Value::String(out.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""))
    } else {
        Value::Array(out)
    }
}

/// Responses request → Chat request for `model`.
pub fn responses_to_chat_request(req: &Value, model: &str, dialect: &ChatDialect) -> Result<ChatRequest, BodyError> {
    let obj = req.as_object().ok_or_else(|| bad("", "request body must be a JSON object"))?;
    let mut tools = ToolMap::default();
    let mut dropped_tools = Vec::new();
    let mut chat_tools = Vec::new();
    for t in obj.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => {
                let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                let chat_name = tools.insert_unique(clamp(name), ToolOrigin::Function);
                chat_tools.push(function_tool(&chat_name, t));
            }
            "custom" => {
                let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                let chat_name = tools.insert_unique(clamp(name), ToolOrigin::Custom { name: name.to_owned() });
                let desc = t.get("description").and_then(Value::as_str).unwrap_or_default();
                chat_tools.push(json!({"type": "function", "function": {
                    "name": chat_name,
                    "description": format!("{desc}\n\nThis tool takes freeform text: put the whole input, exactly as it should be given to the tool, in the `input` string."),
                    "parameters": {"type": "object", "properties": {"input": {"type": "string", "description": "The raw input for the tool."}},
                                   "required": ["input"], "additionalProperties": false}}}));
            }
            "namespace" => {
                let ns = t.get("name").and_then(Value::as_str).unwrap_or_default();
                for inner in t.get("tools").and_then(Value::as_array).into_iter().flatten() {
                    if inner.get("type").and_then(Value::as_str) != Some("function") {
                        dropped_tools
                            .push(format!("{ns}/{}", inner.get("type").and_then(Value::as_str).unwrap_or("?")));
                        continue;
                    }
                    let name = inner.get("name").and_then(Value::as_str).unwrap_or_default();
                    let origin = ToolOrigin::Namespaced { namespace: ns.to_owned(), name: name.to_owned() };
                    let chat_name = tools.insert_unique(flat_name(ns, name), origin);
                    chat_tools.push(function_tool(&chat_name, inner));
                }
            }
            "web_search" | "web_search_preview" if dialect.web_search && tools.web_search().is_none() => {
                let chat_name = tools.insert_unique(crate::websearch::TOOL.to_owned(), ToolOrigin::WebSearch);
                chat_tools.push(crate::websearch::function_tool(&chat_name));
            }
            other => dropped_tools.push(other.to_owned()),
        }
    }

    let mut messages: Vec<Value> = Vec::new();
    if let Some(instr) = obj.get("instructions").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": instr}));
    }
    match obj.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            let mut h = History { messages, reasoning: None, images: Vec::new() };
            for item in items {
                h.item(item, &tools, dialect);
            }
            h.flush_images();
            messages = h.messages;
        }
        Some(_) => return Err(bad("input", "'input' must be a string or an array of items")),
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !chat_tools.is_empty() {
        out.insert("tools".into(), Value::Array(chat_tools));
        if let Some(tc) = obj.get("tool_choice") {
            out.insert("tool_choice".into(), tool_choice_to_chat(tc, &tools));
        }
        if let Some(p) = obj.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    if let Some(fmt) = obj.get("text").and_then(|t| t.get("format")) {
        match fmt.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut js = Map::new();
                for k in ["name", "schema", "strict", "description"] {
                    if let Some(v) = fmt.get(k) {
                        js.insert(k.into(), v.clone());
                    }
                }
                out.insert("response_format".into(), json!({"type": "json_schema", "json_schema": js}));
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if dialect.reasoning_effort {
        if let Some(e) = obj.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str) {
            out.insert("reasoning_effort".into(), json!(e));
        }
    }
    if let Some(m) = obj.get("max_output_tokens").filter(|m| m.is_u64()) {
        out.insert(dialect.max_tokens_field.into(), m.clone());
    }
    for k in ["temperature", "top_p", "user", "seed", "stop", "presence_penalty", "frequency_penalty"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    // Not sent: store, include, prompt_cache_key, client_metadata, metadata, service_tier,
    // text.verbosity, truncation, background — OpenAI-only or meaningless to a chat upstream.
    Ok(ChatRequest { body: Value::Object(out), tools, dropped_tools })
}

fn function_tool(chat_name: &str, t: &Value) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), json!(chat_name));
    if let Some(d) = t.get("description") {
        f.insert("description".into(), d.clone());
    }
    f.insert(
        "parameters".into(),
        t.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(s) = t.get("strict").filter(|s| s.as_bool() == Some(true)) {
        f.insert("strict".into(), s.clone());
    }
    json!({"type": "function", "function": f})
}

fn tool_choice_to_chat(tc: &Value, tools: &ToolMap) -> Value {
    match tc {
        Value::String(_) => tc.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                let ns = o.get("namespace").and_then(Value::as_str);
                json!({"type": "function", "function": {"name": tools.chat_name_for(name, ns)}})
            }
            _ => json!("auto"),
        },
        _ => json!("auto"),
    }
}

fn last_assistant(messages: &mut [Value]) -> Option<&mut Map<String, Value>> {
    messages
        .last_mut()
        .and_then(Value::as_object_mut)
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
}

/// The chat history being built from Responses input items.
struct History {
    messages: Vec<Value>,
    /// A reasoning summary waiting for the next assistant message.
    reasoning: Option<String>,
    /// Images from tool outputs, waiting for the end of the run of tool messages: chat tool
    /// messages carry text only, and nothing may come between an assistant's tool calls and
    /// their tool messages, so they follow as one user message.
    images: Vec<Value>,
}

impl History {
    fn push(&mut self, m: Value) {
        self.flush_images();
        self.messages.push(m);
    }

    fn flush_images(&mut self) {
        if self.images.is_empty() {
            return;
        }
        let mut content = vec![json!({"type": "text", "text": "The images returned by the tool calls above:"})];
        content.append(&mut self.images);
        self.messages.push(json!({"role": "user", "content": content}));
    }

    /// Tool calls attach to the assistant message being built (its text, or earlier parallel
    /// calls); after a user or tool message they start a new one.
    fn push_tool_call(&mut self, call: Value) {
        if last_assistant(&mut self.messages).is_none() {
            let mut m = json!({"role": "assistant", "content": null});
            if let Some(r) = self.reasoning.take() {
                m["reasoning_content"] = json!(r);
            }
            self.push(m);
        }
        if let Some(calls) = last_assistant(&mut self.messages)
            .and_then(|m| m.entry("tool_calls").or_insert_with(|| json!([])).as_array_mut())
        {
            calls.push(call);
        }
    }

    /// A tool's output: its text as the tool message; its images (`view_image`) after the run.
    fn push_tool_output(&mut self, call_id: String, output: Option<&Value>) {
        let mut text = output.map(text_of_parts).unwrap_or_default();
        let images: Vec<Value> = output
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("input_image"))
            .map(image_part)
            .collect();
        if !images.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            let n = images.len();
            text.push_str(&format!(
                "[{n} image{} returned; attached in the next message]",
                if n == 1 { "" } else { "s" }
            ));
            self.images.extend(images);
        }
        self.messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": text}));
    }

    fn item(&mut self, item: &Value, tools: &ToolMap, dialect: &ChatDialect) {
        let kind =
            item.get("type").and_then(Value::as_str).unwrap_or(if item.get("role").is_some() { "message" } else { "" });
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind {
            "message" => {
                let role = match item.get("role").and_then(Value::as_str).unwrap_or("user") {
                    "developer" | "system" => "system",
                    "assistant" => "assistant",
                    _ => "user",
                };
                let content = chat_content(item.get("content").unwrap_or(&Value::Null));
                if role == "assistant" {
                    let text = text_of_parts(&content);
                    // Text and the tool calls that follow it are one chat assistant message.
                    let mut m = json!({"role": "assistant", "content": text});
                    if let Some(r) = self.reasoning.take() {
                        m["reasoning_content"] = json!(r);
                    }
                    self.push(m);
                } else {
                    self.push(json!({"role": role, "content": content}));
                }
            }
            "function_call" => {
                let ns = item.get("namespace").and_then(Value::as_str);
                let name = tools.chat_name_for(&s("name"), ns);
                self.push_tool_call(
                    json!({"id": s("call_id"), "type": "function", "function": {"name": name, "arguments": s("arguments")}}),
                );
            }
            "custom_tool_call" => {
                let name = tools.chat_name_for(&s("name"), None);
                let args = json!({"input": s("input")}).to_string();
                self.push_tool_call(
                    json!({"id": s("call_id"), "type": "function", "function": {"name": name, "arguments": args}}),
                );
            }
            "function_call_output" | "custom_tool_call_output" => {
                self.push_tool_output(s("call_id"), item.get("output"))
            }
            // A search the gateway ran in an earlier turn (Codex echoes the item, without its
            // id and results): the model sees that it searched, and may search again.
            "web_search_call" => {
                let Some(name) = tools.web_search() else { return };
                let query = item.pointer("/action/query").and_then(Value::as_str).unwrap_or_default();
                let n = self.messages.len();
                let call_id = format!("ws_earlier_{n}");
                let args = json!({"query": query}).to_string();
                self.push_tool_call(
                    json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}),
                );
                let note = crate::websearch::earlier_results(query);
                self.push_tool_output(call_id, Some(&Value::String(note)));
            }
            "reasoning" if dialect.reasoning_history => {
                let text: Vec<String> = ["summary", "content"]
                    .iter()
                    .flat_map(|k| item.get(*k).and_then(Value::as_array).into_iter().flatten())
                    .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                if !text.is_empty() {
                    self.reasoning = Some(text.join("\n"));
                }
            }
            // reasoning (encrypted, OpenAI-only), hosted-tool calls: nothing a chat upstream can use.
            _ => {}
        }
    }
}

pub fn chat_to_responses_request(req: &Value, model: &str) -> Result<Value, BodyError> {
    let obj = req.as_object().ok_or_else(|| bad("", "request body must be a JSON object"))?;
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad("n", "n > 1 is not supported by this model's upstream; request one choice"));
    }
    let msgs =
        obj.get("messages").and_then(Value::as_array).ok_or_else(|| bad("messages", "'messages' must be an array"))?;
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    let mut leading = true;
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" if leading => instructions.push(text_of_parts(content)),
            "system" | "developer" => input.push(json!({"type": "message", "role": "developer",
                                                         "content": [{"type": "input_text", "text": text_of_parts(content)}]})),
            "assistant" => {
                leading = false;
                let text = text_of_parts(content);
                if !text.is_empty() {
                    input.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}));
                }
                for tc in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let f = &tc["function"];
                    input.push(json!({"type": "function_call", "call_id": tc.get("id").cloned().unwrap_or_default(),
                                      "name": f.get("name").cloned().unwrap_or_default(),
                                      "arguments": f.get("arguments").cloned().unwrap_or(json!("{}"))}));
                }
            }
            "tool" | "function" => {
                leading = false;
                let call_id = m.get("tool_call_id").or_else(|| m.get("name")).cloned().unwrap_or_default();
                input.push(json!({"type": "function_call_output", "call_id": call_id, "output": text_of_parts(content)}));
            }
            _ => {
                leading = false;
                input.push(json!({"type": "message", "role": "user", "content": responses_user_content(content)}));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    if !instructions.is_empty() {
        out.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    out.insert("input".into(), Value::Array(input));
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let mapped: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str).unwrap_or("function") == "function")
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                let mut o = Map::new();
                o.insert("type".into(), json!("function"));
                for k in ["name", "description", "parameters", "strict"] {
                    if let Some(v) = f.get(k) {
                        o.insert(k.into(), v.clone());
                    }
                }
                Value::Object(o)
            })
            .collect();
        if !mapped.is_empty() {
            out.insert("tools".into(), Value::Array(mapped));
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        let mapped = match tc {
            Value::Object(o) => {
                json!({"type": "function", "name": o.get("function").and_then(|f| f.get("name")).cloned().unwrap_or_default()})
            }
            other => other.clone(),
        };
        out.insert("tool_choice".into(), mapped);
    }
    if let Some(rf) = obj.get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut f = Map::new();
                f.insert("type".into(), json!("json_schema"));
                for (k, v) in rf.get("json_schema").and_then(Value::as_object).into_iter().flatten() {
                    f.insert(k.clone(), v.clone());
                }
                out.insert("text".into(), json!({"format": f}));
            }
            Some("json_object") => {
                out.insert("text".into(), json!({"format": {"type": "json_object"}}));
            }
            _ => {}
        }
    }
    if let Some(m) = obj.get("max_completion_tokens").or_else(|| obj.get("max_tokens")).and_then(Value::as_u64) {
        // The Responses API refuses `max_output_tokens` below 16; chat clients probe with less
        // (OpenClaw's `models status --probe` asks for 8).
        out.insert("max_output_tokens".into(), m.max(MIN_OUTPUT_TOKENS).into());
    }
    if let Some(e) = obj.get("reasoning_effort").and_then(Value::as_str) {
        out.insert("reasoning".into(), json!({"effort": e, "summary": "auto"}));
    }
    for k in ["temperature", "top_p", "user", "parallel_tool_calls", "metadata", "service_tier"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert("stream".into(), json!(obj.get("stream").and_then(Value::as_bool).unwrap_or(false)));
    out.insert("store".into(), json!(false));
    Ok(Value::Object(out))
}

fn responses_user_content(content: &Value) -> Value {
    match content {
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        Some(json!({"type": "input_text", "text": p.get("text").cloned().unwrap_or_default()}))
                    }
                    Some("image_url") => {
                        let img = &p["image_url"];
                        let url = img.as_str().or_else(|| img.get("url").and_then(Value::as_str)).unwrap_or_default();
                        let detail = img.get("detail").and_then(Value::as_str).unwrap_or("auto");
                        Some(json!({"type": "input_image", "image_url": url, "detail": detail}))
                    }
                    _ => None,
                })
                .collect(),
        ),
        other => json!([{"type": "input_text", "text": text_of_parts(other)}]),
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
