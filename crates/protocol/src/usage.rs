//! Token usage, normalized across the two APIs, and read from either API's JSON.

use serde_json::Value;

/// Token counts of one request. `cached_input_tokens` is part of `input_tokens`, and
/// `reasoning_tokens` part of `output_tokens`, as in both OpenAI APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
}

fn num(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

impl Usage {
    /// From a Responses API `usage` object. `None` unless the three required integers are there.
    pub fn from_responses(v: &Value) -> Option<Usage> {
        let input_tokens = num(v, &["input_tokens"])?;
        let output_tokens = num(v, &["output_tokens"])?;
        Some(Usage {
            input_tokens,
            output_tokens,
            total_tokens: num(v, &["total_tokens"]).unwrap_or(input_tokens + output_tokens),
            cached_input_tokens: num(v, &["input_tokens_details", "cached_tokens"]).unwrap_or(0),
            reasoning_tokens: num(v, &["output_tokens_details", "reasoning_tokens"]).unwrap_or(0),
        })
    }

    /// From a Chat Completions `usage` object.
    pub fn from_chat(v: &Value) -> Option<Usage> {
        let input_tokens = num(v, &["prompt_tokens"])?;
        let output_tokens = num(v, &["completion_tokens"]).unwrap_or(0);
        Some(Usage {
            input_tokens,
            output_tokens,
            total_tokens: num(v, &["total_tokens"]).unwrap_or(input_tokens + output_tokens),
            cached_input_tokens: num(v, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0),
            reasoning_tokens: num(v, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_usage() {
        let u = Usage::from_responses(&json!({"input_tokens":10,"input_tokens_details":{"cached_tokens":4},
            "output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":15}))
        .unwrap();
        assert_eq!(
            u,
            Usage { input_tokens: 10, cached_input_tokens: 4, output_tokens: 5, reasoning_tokens: 2, total_tokens: 15 }
        );
        assert_eq!(Usage::from_responses(&json!({})), None);
        assert_eq!(Usage::from_responses(&json!({"input_tokens":1,"output_tokens":2})).unwrap().total_tokens, 3);
    }

    #[test]
    fn chat_usage() {
        let u = Usage::from_chat(&json!({"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,
            "prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":128}}))
        .unwrap();
        assert_eq!((u.cached_input_tokens, u.reasoning_tokens, u.total_tokens), (1024, 128, 1500));
        assert_eq!(Usage::from_chat(&Value::Null), None);
    }
}
