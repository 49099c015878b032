//! The model an upstream says served, in the client's own name. Codex compares the
//! `openai-model` it is told — a response header, or the `headers` an event carries
//! (`response.metadata`, or `response.headers`) — with the model it asked for, and any
//! difference reads to it as a safety reroute: it warns that the account "was flagged for
//! potentially high-risk cyber activity" and records a warning in the conversation. Through the
//! gateway Codex asks for a route (`fast`, `pool/gpt-5.5`) and the upstream names the model the
//! route sent it (`gpt-5.5`). When the upstream served exactly that model, the client is told its
//! own name; a model the upstream chose instead (a real reroute) is passed on as it is.

use serde_json::Value;

/// The header names Codex reads the served model from (case-insensitively).
pub const HEADERS: [&str; 2] = ["openai-model", "x-openai-model"];

/// What to report for `served`: the client's name (`client`) when the upstream served the model
/// it was asked for (`asked`), else `served` itself.
pub fn reported<'a>(served: &'a str, asked: &str, client: &'a str) -> &'a str {
    if served.trim().eq_ignore_ascii_case(asked) {
        client
    } else {
        served
    }
}

fn is_model_header(name: &str) -> bool {
    HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Rename the model headers of one `headers` object; whether any changed.
fn rename_in(headers: Option<&mut Value>, asked: &str, client: &str) -> bool {
    let Some(Value::Object(h)) = headers else { return false };
    let mut changed = false;
    for (name, value) in h.iter_mut() {
        if let Value::String(s) = value {
            if is_model_header(name) && reported(s, asked, client) != s.as_str() {
                *s = client.to_owned();
                changed = true;
            }
        }
    }
    changed
}

/// The event `data` with its served-model headers renamed for the client, or `None` when it has
/// none to rename. A substring check comes first, so events without such headers (nearly all)
/// cost one search and are never parsed.
pub fn rename_in_event(data: &str, asked: &str, client: &str) -> Option<String> {
    // Every model header name ends in `model"` (any case of its first letter).
    let finder = memchr::memmem::Finder::new(b"odel\"");
    let hit = finder.find_iter(data.as_bytes()).any(|at| {
        let name_end = at + 4;
        HEADERS.iter().any(|h| {
            name_end >= h.len() && data.as_bytes()[name_end - h.len()..name_end].eq_ignore_ascii_case(h.as_bytes())
        })
    });
    if !hit {
        return None;
    }
    let mut v: Value = serde_json::from_str(data).ok()?;
    let top = rename_in(v.get_mut("headers"), asked, client);
    let inner = rename_in(v.get_mut("response").and_then(|r| r.get_mut("headers")), asked, client);
    (top || inner).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_model_a_route_sent_is_reported_by_the_routes_name_and_a_reroute_is_not() {
        assert_eq!(reported("gpt-5.5", "gpt-5.5", "pool/gpt-5.5"), "pool/gpt-5.5");
        assert_eq!(reported("GPT-5.5 ", "gpt-5.5", "fast"), "fast", "compared as Codex does, without case");
        assert_eq!(reported("gpt-5.2", "gpt-5.5", "fast"), "gpt-5.2", "the upstream chose another model: say so");
    }

    #[test]
    fn event_headers_are_renamed_and_other_events_left_alone() {
        let meta =
            json!({"type": "response.metadata", "headers": {"OpenAI-Model": "gpt-5.5", "x-codex-turn-state": "t"}});
        let out: Value = serde_json::from_str(&rename_in_event(&meta.to_string(), "gpt-5.5", "fast").unwrap()).unwrap();
        assert_eq!(out["headers"], json!({"OpenAI-Model": "fast", "x-codex-turn-state": "t"}));
        let inner =
            json!({"type": "response.created", "response": {"id": "r", "headers": {"x-openai-model": "gpt-5.5"}}});
        let out: Value =
            serde_json::from_str(&rename_in_event(&inner.to_string(), "gpt-5.5", "fast").unwrap()).unwrap();
        assert_eq!(out["response"]["headers"]["x-openai-model"], "fast");
        for untouched in [
            json!({"type": "response.metadata", "headers": {"openai-model": "gpt-5.2"}}),
            json!({"type": "response.created", "response": {"id": "r", "model": "gpt-5.5"}}),
            json!({"type": "response.output_text.delta", "delta": "the openai-model\" header"}),
            json!({"type": "response.metadata", "headers": {"openai-model": 5}}),
        ] {
            assert_eq!(rename_in_event(&untouched.to_string(), "gpt-5.5", "fast"), None, "{untouched}");
        }
        assert_eq!(rename_in_event("not json, openai-model\"", "gpt-5.5", "fast"), None);
    }
}
