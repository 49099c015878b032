//! Web search for models that have none: the `web_search` function a chat model is offered in
//! place of OpenAI's hosted tool, and what the model reads back — the results of a search the
//! gateway ran, as the text of a tool message. The stream side (a `web_search_call` item for
//! the client instead of the function call) is in [`crate::translate::chat_stream`].

use serde_json::{json, Value};

/// The function's name as the chat model sees it.
pub const TOOL: &str = "web_search";
/// Longest snippet of one result the model reads.
const MAX_SNIPPET: usize = 600;
/// Most results of one search the model reads.
pub const MAX_RESULTS: usize = 10;

/// The chat function offered to the model.
pub fn function_tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name,
        "description": "Search the web. Use it for anything recent or that you are not sure of: the results \
                        (titles, URLs and snippets) come back as this tool's output. Cite the URLs you use.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "What to search for, as you would type it into a search engine."}},
            "required": ["query"], "additionalProperties": false}}})
}

/// The query of a `web_search` call's arguments (`{"query": …}`; a bare string is taken as it is).
pub fn query_of(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) => o.get("query").and_then(Value::as_str).unwrap_or_default().trim().to_owned(),
        Ok(Value::String(s)) => s.trim().to_owned(),
        _ => arguments.trim().to_owned(),
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the model reads after a search: its results, numbered, or why there are none. A failed
/// search is a result too (the model answers without it), never a failed turn.
pub fn results_text(query: &str, outcome: &Result<Vec<Hit>, String>) -> String {
    match outcome {
        Err(why) => format!(
            "The web search for {query:?} failed ({why}). Answer from what you know, and say that the search failed."
        ),
        Ok(hits) if hits.is_empty() => format!("The web search for {query:?} found nothing."),
        Ok(hits) => {
            let mut out = format!("Web search results for {query:?}:\n");
            for (i, h) in hits.iter().take(MAX_RESULTS).enumerate() {
                let snippet = clip(h.snippet.trim(), MAX_SNIPPET);
                out.push_str(&format!("\n[{}] {}\n{}\n{}\n", i + 1, h.title.trim(), h.url.trim(), snippet));
            }
            out
        }
    }
}

/// What the model reads for a search of an earlier turn (the client keeps only its query).
pub fn earlier_results(query: &str) -> String {
    format!(
        "You searched the web for {query:?} earlier in this conversation; those results are not kept between \
         turns. Search again if you need them."
    )
}

/// The tool message that answers the model's search call `call_id`.
pub fn tool_message(call_id: &str, text: &str) -> Value {
    json!({"role": "tool", "tool_call_id": call_id, "content": text})
}

/// The `web_search_call` item the client sees for one search.
pub fn call_item(id: &str, query: &str, status: &str) -> Value {
    json!({"type": "web_search_call", "id": id, "status": status,
           "action": {"type": "search", "query": query, "queries": [query]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_results() {
        assert_eq!(query_of(r#"{"query":" rust 2027 "}"#), "rust 2027");
        assert_eq!(query_of(r#""plain""#), "plain");
        assert_eq!(query_of("not json"), "not json");
        assert_eq!(query_of("{}"), "");
        let hits = vec![Hit { title: "A".into(), url: "https://a.example".into(), snippet: "é".repeat(400) }];
        let text = results_text("q", &Ok(hits));
        assert!(text.contains("[1] A\nhttps://a.example\n"), "{text}");
        assert!(text.len() < 700, "snippets are clipped on a char boundary: {}", text.len());
        assert!(results_text("q", &Err("timed out".into())).contains("failed (timed out)"));
        assert!(results_text("q", &Ok(vec![])).contains("found nothing"));
        let many: Vec<Hit> =
            (0..30).map(|i| Hit { title: format!("t{i}"), url: String::new(), snippet: String::new() }).collect();
        assert!(!results_text("q", &Ok(many)).contains("[11]"));
    }
}
