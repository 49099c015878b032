//! Request bodies shaped like what Codex and chat clients really send: long instructions, a tool
//! list, and a history of reasoning, tool calls and their outputs, grown to a target size.

use serde_json::{json, Value};

/// Model name every benchmark request asks for (codex-gate routes it to the mock).
pub const MODEL: &str = "bench";

/// Deterministic filler text (a tiny LCG over a word list), so bodies are the same every run
/// but not one repeated word.
struct Words(u64);

impl Words {
    fn text(&mut self, bytes: usize) -> String {
        const W: &[&str] = &[
            "the",
            "patch",
            "applies",
            "cleanly",
            "to",
            "src/lib.rs",
            "function",
            "returns",
            "an",
            "error",
            "when",
            "config",
            "is",
            "missing",
            "tests",
            "cover",
            "stream",
            "relay",
            "fn",
            "main()",
            "let",
            "mut",
            "Result",
            "cargo",
            "build",
            "--release",
            "warning:",
            "unused",
            "import",
            "{",
            "}",
            "=>",
            "match",
            "Some(x)",
        ];
        let mut s = String::with_capacity(bytes + 16);
        while s.len() < bytes {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s.push_str(W[(self.0 >> 33) as usize % W.len()]);
            s.push(' ');
        }
        s
    }
}

fn codex_tools() -> Value {
    let f = |name: &str, desc: &str, props: Value, req: &[&str]| {
        json!({"type": "function", "name": name, "description": desc, "strict": false,
               "parameters": {"type": "object", "properties": props, "required": req, "additionalProperties": false}})
    };
    json!([
        f("exec_command", "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
          json!({"cmd": {"type": "string", "description": "Shell command to execute."},
                 "workdir": {"type": "string", "description": "Optional working directory."},
                 "yield_time_ms": {"type": "number", "description": "How long to wait for output."},
                 "max_output_tokens": {"type": "number", "description": "Maximum number of tokens to return."}}),
          &["cmd"]),
        f("write_stdin", "Writes characters to an existing unified exec session and returns recent output.",
          json!({"session_id": {"type": "number"}, "chars": {"type": "string"}}), &["session_id"]),
        f("update_plan", "Updates the task plan. Provide an optional explanation and a list of plan items.",
          json!({"explanation": {"type": "string"}, "plan": {"type": "array", "items": {"type": "object",
                 "properties": {"step": {"type": "string"}, "status": {"type": "string"}}}}}), &["plan"]),
        f("view_image", "Attach a local image (by filesystem path) to the thread context for this turn.",
          json!({"path": {"type": "string", "description": "Local filesystem path to an image file"}}), &["path"]),
        {"type": "custom", "name": "apply_patch", "description": "Use the `apply_patch` tool to edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}},
        {"type": "web_search", "external_web_access": false},
    ])
}

/// A Codex `/responses` body of at least `bytes` bytes: instructions, tools, and turns of
/// reasoning + `exec_command` call + output + a short assistant message.
pub fn responses_body(bytes: usize) -> Vec<u8> {
    let mut w = Words(7);
    let input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": w.text(1500)}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": w.text(600)}]}),
    ];
    let body = json!({
        "model": MODEL, "instructions": w.text(8000), "input": [], "tools": codex_tools(),
        "tool_choice": "auto", "parallel_tool_calls": true,
        "reasoning": {"effort": "medium", "summary": "auto"}, "store": false, "stream": true,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199a6a1-5b1c-7e52-bench-000000000001",
        "text": {"verbosity": "low"},
    });
    grow(body, "input", input, bytes, move |turn| {
        let call = format!("call_{turn:04}");
        vec![
            json!({"type": "reasoning", "id": format!("rs_{turn:04}"),
                "summary": [{"type": "summary_text", "text": w.text(200)}], "encrypted_content": w.text(700)}),
            json!({"type": "function_call", "name": "exec_command", "call_id": call,
                "arguments": json!({"cmd": w.text(40), "workdir": "/work/repo"}).to_string()}),
            json!({"type": "function_call_output", "call_id": call, "output": w.text(1800)}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": w.text(250)}]}),
        ]
    })
}

/// `body` with `history` under `key`, plus turns from `turn(1)`, `turn(2)`, … until it
/// serializes to at least `bytes` bytes.
fn grow(
    mut body: Value,
    key: &str,
    history: Vec<Value>,
    bytes: usize,
    mut turn: impl FnMut(usize) -> Vec<Value>,
) -> Vec<u8> {
    body[key] = Value::Array(history);
    let mut n = 0;
    loop {
        let out = serde_json::to_vec(&body).unwrap_or_default();
        if out.len() >= bytes {
            return out;
        }
        n += 1;
        if let Some(items) = body[key].as_array_mut() {
            items.extend(turn(n));
        }
    }
}

/// A streaming chat body of at least `bytes` bytes with the same kind of history.
pub fn chat_body(bytes: usize) -> Vec<u8> {
    let mut w = Words(11);
    let tools: Vec<Value> = codex_tools()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .map(|t| json!({"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]}}))
        .collect();
    let messages =
        vec![json!({"role": "system", "content": w.text(8000)}), json!({"role": "user", "content": w.text(600)})];
    let body = json!({"model": MODEL, "messages": [], "tools": tools, "stream": true,
                          "stream_options": {"include_usage": true}});
    grow(body, "messages", messages, bytes, move |turn| {
        let call = format!("call_{turn:04}");
        vec![
            json!({"role": "assistant", "content": w.text(250), "tool_calls": [{"id": call, "type": "function",
                "function": {"name": "exec_command", "arguments": json!({"cmd": w.text(40)}).to_string()}}]}),
            json!({"role": "tool", "tool_call_id": call, "content": w.text(1800)}),
        ]
    })
}

/// A small non-streaming chat body.
pub fn small_chat_body() -> Vec<u8> {
    serde_json::to_vec(&json!({"model": MODEL, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello in one short sentence."}]}))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_reach_their_size_and_parse() {
        for (b, min) in
            [(responses_body(40_000), 40_000), (responses_body(400_000), 400_000), (chat_body(40_000), 40_000)]
        {
            assert!(b.len() >= min && b.len() < min + 8_000, "{} for {min}", b.len());
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["model"], MODEL);
            assert_eq!(v["stream"], true);
        }
        assert_eq!(responses_body(40_000), responses_body(40_000), "deterministic");
    }
}
