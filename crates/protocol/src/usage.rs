//! Token usage, normalized across the two APIs, and read from either API's JSON.

use serde::Deserialize;
use serde_json::value::RawValue;
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

/// Usage of several upstream answers that made one response (a search, then the answer).
impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.total_tokens += o.total_tokens;
    }
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

    /// From a Chat Completions `usage` object's JSON text, read without building a `Value` (this
    /// runs for every chat answer and final stream chunk). Like [`Usage::from_responses`], a
    /// count that is not a non-negative integer is absent, and so is a `*_details` that is not an
    /// object.
    pub fn from_chat(json: &str) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Details<'a> {
            #[serde(borrow, default)]
            cached_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            reasoning_tokens: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Counts<'a> {
            #[serde(borrow, default)]
            prompt_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            completion_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            total_tokens: Option<&'a RawValue>,
            #[serde(borrow, default)]
            prompt_tokens_details: Option<&'a RawValue>,
            #[serde(borrow, default)]
            completion_tokens_details: Option<&'a RawValue>,
        }
        // An integer's text parses as u64 exactly when `Value::as_u64` would accept it.
        let int = |r: Option<&RawValue>| r.and_then(|r| r.get().parse::<u64>().ok());
        fn details(r: Option<&RawValue>) -> Option<Details<'_>> {
            serde_json::from_str(r?.get()).ok()
        }
        let c = serde_json::from_str::<Counts>(json).ok()?;
        let input_tokens = int(c.prompt_tokens)?;
        let output_tokens = int(c.completion_tokens).unwrap_or(0);
        Some(Usage {
            input_tokens,
            output_tokens,
            total_tokens: int(c.total_tokens).unwrap_or(input_tokens + output_tokens),
            cached_input_tokens: int(details(c.prompt_tokens_details).and_then(|d| d.cached_tokens)).unwrap_or(0),
            reasoning_tokens: int(details(c.completion_tokens_details).and_then(|d| d.reasoning_tokens)).unwrap_or(0),
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
        let u = Usage::from_chat(
            r#"{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,
            "prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":128}}"#,
        )
        .unwrap();
        assert_eq!((u.cached_input_tokens, u.reasoning_tokens, u.total_tokens), (1024, 128, 1500));
        assert_eq!(Usage::from_chat("null"), None);
    }

    #[test]
    fn chat_usage_from_text_reads_what_a_value_lookup_would() {
        // The reading by `Value` this replaced, kept as the reference for odd shapes.
        let by_value = |v: &Value| {
            let input_tokens = num(v, &["prompt_tokens"])?;
            let output_tokens = num(v, &["completion_tokens"]).unwrap_or(0);
            Some(Usage {
                input_tokens,
                output_tokens,
                total_tokens: num(v, &["total_tokens"]).unwrap_or(input_tokens + output_tokens),
                cached_input_tokens: num(v, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0),
                reasoning_tokens: num(v, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
            })
        };
        let cases = [
            r#"{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":1000},"completion_tokens_details":{"reasoning_tokens":200}}"#,
            r#"{"prompt_tokens":7}"#,
            r#"{"prompt_tokens":7,"completion_tokens":null,"prompt_tokens_details":null}"#,
            r#"{"prompt_tokens":1.5,"completion_tokens":3}"#,
            r#"{"prompt_tokens":"7","completion_tokens":3}"#,
            r#"{"prompt_tokens":-1,"completion_tokens":3}"#,
            r#"{"prompt_tokens":5,"completion_tokens":2e1}"#,
            r#"{"prompt_tokens":5,"prompt_tokens_details":"none","completion_tokens_details":[1]}"#,
            r#"{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":{"x":1}},"extra":[1,{"a":2}]}"#,
            r#"null"#,
            r#"[]"#,
            r#"not json"#,
        ];
        for c in cases {
            let want = serde_json::from_str::<Value>(c).ok().and_then(|v| by_value(&v));
            assert_eq!(Usage::from_chat(c), want, "{c}");
        }
        assert_eq!(Usage::from_chat(cases[0]).unwrap().cached_input_tokens, 1000);
    }
}
