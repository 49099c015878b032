//! Cheap, byte-exact handling of request bodies on the passthrough path.
//!
//! A Codex request body is 40–400 KB of JSON. To relay it the gateway only needs `model` and
//! `stream`, and at most a new `model`; so the body is validated in one pass into borrowed raw
//! values, and the model is rewritten by splicing bytes, leaving every other byte (unknown
//! fields, key order, whitespace) exactly as the client sent it.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What the gateway needs to know about a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The requested model, unescaped.
    pub model: String,
    /// Byte range of the model's JSON string literal (quotes included) inside the body.
    pub model_span: Range<usize>,
    /// `stream: true` was requested.
    pub stream: bool,
    /// `stream_options.include_usage: true` was requested (Chat Completions).
    pub include_usage: bool,
    /// The body has a `stream_options` object at all.
    pub has_stream_options: bool,
    /// The requested `service_tier` (`auto`, `default`, `flex`, `priority`), when a string.
    pub service_tier: Option<String>,
}

/// Why a body was refused; the message is written for the API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// The offending field, when known (becomes the error's `param`).
    pub param: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(borrow, default)]
    service_tier: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Validate `body` as a JSON object and read its head.
pub fn inspect(body: &[u8]) -> Result<RequestHead, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError { param: None, message: "request body is empty; expected a JSON object".into() });
    }
    // JSON is UTF-8. serde_json skips over strings it ignores without checking them, so a body
    // with invalid bytes in some other field would otherwise pass and reach the upstream.
    if let Err(e) = std::str::from_utf8(body) {
        let message = format!("request body is not valid UTF-8 (byte {})", e.valid_up_to());
        return Err(BodyError { param: None, message });
    }
    // serde's derived structs also accept arrays; a request body must be an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let message = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => "request body must be a JSON object".to_owned(),
            Err(e) => format!("request body is not valid JSON: {e}"),
        };
        return Err(BodyError { param: None, message });
    }
    // The plain parse is the hot path; the path-tracking parser, which allocates for every key
    // it passes, only runs again to name the offending field of a body already refused.
    let head: Head = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(_) => return Err(explain(body)),
    };
    let raw = head.model.ok_or_else(|| BodyError {
        param: Some("model".into()),
        message: "missing required parameter: 'model'".into(),
    })?;
    let model: String = serde_json::from_str(raw.get())
        .map_err(|_| BodyError { param: Some("model".into()), message: "'model' must be a string".into() })?;
    if model.is_empty() {
        return Err(BodyError { param: Some("model".into()), message: "'model' must not be empty".into() });
    }
    // Model names become map keys, log fields and metric labels: bound them where they enter.
    if model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(BodyError {
            param: Some("model".into()),
            message: format!("'model' must be at most {MAX_MODEL_LEN} bytes without control characters"),
        });
    }
    // RawValue borrows from `body`, so its position inside `body` is a pointer difference.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    Ok(RequestHead {
        model,
        model_span: start..start + raw.get().len(),
        stream: head.stream.unwrap_or(false),
        has_stream_options: head.stream_options.is_some(),
        include_usage: head.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        service_tier: head.service_tier.and_then(|v| serde_json::from_str::<String>(v.get()).ok()),
    })
}

/// Why `body` does not deserialize into [`Head`], naming the field when there is one.
fn explain(body: &[u8]) -> BodyError {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let Err(e) = serde_path_to_error::deserialize::<_, Head>(de) else {
        return BodyError { param: None, message: "request body could not be read".into() };
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return BodyError { param: None, message: format!("request body is not valid JSON: {inner}") };
    }
    let param = (!matches!(path.as_str(), "." | "?" | "")).then_some(path);
    let message = match &param {
        Some(p) => format!("invalid value for '{p}': {inner}"),
        None => format!("request body must be a JSON object: {inner}"),
    };
    BodyError { param, message }
}

/// Longest model name accepted (real ones, `provider/vendor/model:tag`, are under 100 bytes).
pub const MAX_MODEL_LEN: usize = 256;

/// `body` with its model literal (at `span`) replaced by `model`.
pub fn rewrite_model(body: &[u8], span: Range<usize>, model: &str) -> Vec<u8> {
    let lit = serde_json::to_string(model).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + lit.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(lit.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    out
}

/// A chat request body that asks for the usage chunk at the end of its stream. A body without
/// `stream_options` gets the field spliced in after its opening brace (every other byte kept);
/// one with other stream options is re-serialized with `include_usage` added.
pub fn with_include_usage(body: &[u8], head: &RequestHead) -> Option<Vec<u8>> {
    if head.include_usage {
        return None;
    }
    if !head.has_stream_options {
        let open = body.iter().position(|b| *b == b'{')?;
        let rest = &body[open + 1..];
        let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        return Some(out);
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let opts = v.get_mut("stream_options")?.as_object_mut()?;
    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&v).ok()
}

/// `body` without its top-level `field` (re-serialized; only for the rare request that needs it).
pub fn without_field(body: &[u8], field: &str) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.remove(field);
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_requested_byte_exactly_or_merged_into_other_options() {
        let body = br#" {"model":"m","stream":true,"messages":[]}"#;
        let out = with_include_usage(body, &inspect(body).unwrap()).unwrap();
        assert_eq!(out, br#" {"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#);
        assert!(inspect(&out).unwrap().include_usage);
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}"#;
        let out = with_include_usage(body, &inspect(body).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"], serde_json::json!({"include_obfuscation": false, "include_usage": true}));
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        assert!(with_include_usage(body, &inspect(body).unwrap()).is_none());
        let body = br#"{"model":"m","service_tier":"priority"}"#;
        assert_eq!(inspect(body).unwrap().service_tier.as_deref(), Some("priority"));
        assert_eq!(without_field(body, "service_tier").unwrap(), br#"{"model":"m"}"#);
    }

    #[test]
    fn reads_head_and_rewrites_model_byte_exactly() {
        let body = br#"{ "input": [{"x": "model"}], "model" : "a\"b", "stream": true, "zz": {"unknown": 1} }"#;
        let h = inspect(body).unwrap();
        assert_eq!(h.model, "a\"b");
        assert!(h.stream);
        assert_eq!(&body[h.model_span.clone()], br#""a\"b""#);
        let out = rewrite_model(body, h.model_span, "deepseek-chat");
        assert_eq!(
            out,
            br#"{ "input": [{"x": "model"}], "model" : "deepseek-chat", "stream": true, "zz": {"unknown": 1} }"#
        );
    }

    #[test]
    fn include_usage_is_read() {
        let h = inspect(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(h.include_usage);
        assert!(!inspect(br#"{"model":"m"}"#).unwrap().include_usage);
    }

    #[test]
    fn refuses_bad_bodies_with_the_field_named() {
        let e = inspect(br#"{"model":"m","stream":"yes"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream"));
        assert!(e.message.contains("stream"), "{}", e.message);
        let long = format!(r#"{{"model":"rs/{}"}}"#, "x".repeat(MAX_MODEL_LEN));
        assert_eq!(inspect(long.as_bytes()).unwrap_err().param.as_deref(), Some("model"));
        assert_eq!(inspect(br#"{"model":"a\u0000b"}"#).unwrap_err().param.as_deref(), Some("model"));
        // Found by fuzzing: invalid UTF-8 inside a field the head does not read.
        let e = inspect(b"{\"model\":\"m\",\"input\":\"\xff\xfe\"}").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        let e = inspect(br#"{"model": 3}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = inspect(br#"{"stream": true}"#).unwrap_err();
        assert!(e.message.contains("missing required parameter"));
        let e = inspect(b"{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = inspect(b"[1,2]").unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        assert!(inspect(b"").unwrap_err().message.contains("empty"));
        assert!(inspect(br#"{"model":""}"#).is_err());
    }
}
