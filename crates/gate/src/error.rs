//! The gateway's one error type. Every failure leaves as an OpenAI-shaped JSON error with the
//! right status; each variant also says which side failed and whether another target may help,
//! which is exactly the failover decision.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use codex_gate_protocol::error::{read_upstream_error, ErrorEnvelope};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something the gateway refuses.
    Downstream,
    /// The provider failed or refused.
    Upstream,
    /// The gateway itself.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{message}")]
    BadRequest { message: String, param: Option<String>, code: &'static str },
    #[error("the model `{0}` does not exist or is not routed by this gateway")]
    ModelNotFound(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported Content-Encoding `{0}`; send identity or zstd")]
    UnsupportedEncoding(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    #[error("this endpoint takes Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The upstream answered with an error status; its body is relayed in our envelope.
    #[error("upstream {target} answered {status}")]
    Upstream { target: String, status: StatusCode, headers: Box<HeaderMap>, body: Bytes },
    /// No usable answer from the upstream, typed by what broke (connect, DNS, TLS, reset,
    /// timeout, malformed answer, proxy).
    #[error("upstream {target}: {detail}")]
    Transport { target: String, kind: crate::egress::TransportKind, detail: String },
    /// The upstream could not be asked at all (its account needs a login, a token refresh failed).
    #[error("upstream {target} is unreachable: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("upstream {target} did not answer within {what} timeout of {ms} ms")]
    Timeout { target: String, what: &'static str, ms: u128 },
    /// Every account of the pool is at its usage limit or cooling down.
    #[error("all {accounts} accounts in the pool have reached their usage limits")]
    PoolExhausted { resets_at: i64, plan_type: String, accounts: usize },
    #[error("every account in the pool needs a new login: run `codex-gate accounts login`")]
    PoolReauth,
    #[error("the pool has no accounts: add one with `codex-gate accounts login` or `accounts import`")]
    PoolEmpty,
    /// No usable client key (missing, unknown, revoked, expired).
    #[error("{}", unauthorized_message(*.0))]
    Unauthorized(crate::access::keys::Refusal),
    /// A limit of the caller's key is reached.
    #[error("{}", limited_message(.0))]
    Limited(crate::access::limits::Limited),
    #[error("internal error: {0}")]
    Internal(String),
}

fn unauthorized_message(r: crate::access::keys::Refusal) -> &'static str {
    use crate::access::keys::Refusal;
    match r {
        Refusal::Missing => {
            "You didn't provide an API key. This gateway needs a codex-gate client key: send it as \
             `Authorization: Bearer cg-…` (create one with `codex-gate keys create --name NAME`)."
        }
        Refusal::Invalid => "Incorrect API key provided. Use a key from `codex-gate keys create`.",
        Refusal::Revoked => "This API key has been revoked. Ask the gateway's operator for a new one.",
        Refusal::Expired => "This API key has expired. Ask the gateway's operator for a new one.",
    }
}

fn limited_message(l: &crate::access::limits::Limited) -> String {
    use crate::access::limits::LimitKind;
    let wait = l.retry_after_s;
    match l.kind {
        LimitKind::Rpm => format!(
            "Rate limit reached for this key on requests per min (RPM): Limit {}. Please try again in {wait}s.",
            l.limit
        ),
        LimitKind::Tpm => format!(
            "Rate limit reached for this key on tokens per min (TPM): Limit {}, Remaining {}. Please try again in {wait}s.",
            l.limit, l.remaining
        ),
        LimitKind::Concurrency => format!(
            "This key already has {} requests in flight, its limit. Please try again in {wait}s.",
            l.limit
        ),
        LimitKind::Budget => format!(
            "This key has spent its budget of ${:.2} for the period; it renews in {}.",
            l.limit,
            human_secs(wait)
        ),
        LimitKind::PoolShare => format!(
            "This key has used its {}% share of the subscription pool; it frees up in {}.",
            l.limit,
            human_secs(wait)
        ),
    }
}

/// `3h 20m`, `45s`.
fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s.div_ceil(60)),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

impl GateError {
    pub fn bad_request(message: impl Into<String>, param: Option<String>) -> Self {
        GateError::BadRequest { message: message.into(), param, code: "invalid_request" }
    }

    pub fn side(&self) -> Side {
        match self {
            GateError::Upstream { .. }
            | GateError::Transport { .. }
            | GateError::Unreachable { .. }
            | GateError::Timeout { .. }
            | GateError::PoolExhausted { .. }
            | GateError::PoolReauth
            | GateError::PoolEmpty => Side::Upstream,
            GateError::Internal(_) => Side::Internal,
            _ => Side::Downstream,
        }
    }

    /// Another target may succeed where this one failed. Request-shaped refusals (400, 413,
    /// 422) would fail everywhere; anything else an upstream does is specific to that target.
    pub fn retryable(&self) -> bool {
        match self {
            GateError::Upstream { status, .. } => !matches!(status.as_u16(), 400 | 413 | 422),
            GateError::Transport { .. } | GateError::Unreachable { .. } | GateError::Timeout { .. } => true,
            // Another target (an API-key provider) may still serve.
            GateError::PoolExhausted { .. } | GateError::PoolReauth | GateError::PoolEmpty => true,
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GateError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GateError::ModelNotFound(_) | GateError::NotFound(_) => StatusCode::NOT_FOUND,
            GateError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GateError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GateError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GateError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GateError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GateError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            // The provider refusing the gateway's own credentials is not the client's fault.
            GateError::Upstream { status, .. } if matches!(status.as_u16(), 401 | 403 | 407) => StatusCode::BAD_GATEWAY,
            GateError::Upstream { status, .. } => *status,
            GateError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            GateError::Transport { kind: crate::egress::TransportKind::Timeout, .. } => StatusCode::GATEWAY_TIMEOUT,
            GateError::Transport { .. } => StatusCode::BAD_GATEWAY,
            GateError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GateError::PoolExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            GateError::PoolReauth | GateError::PoolEmpty => StatusCode::SERVICE_UNAVAILABLE,
            GateError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GateError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            GateError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code recorded in the request log and metrics.
    pub fn code(&self) -> String {
        match self {
            GateError::BadRequest { code, .. } => (*code).to_owned(),
            GateError::ModelNotFound(_) => "model_not_found".into(),
            GateError::PayloadTooLarge(_) => "payload_too_large".into(),
            GateError::UnsupportedEncoding(_) => "unsupported_encoding".into(),
            GateError::Forbidden { code, .. } => (*code).into(),
            GateError::UnsupportedMediaType => "unsupported_media_type".into(),
            GateError::RequestTimeout(_) => "request_timeout".into(),
            GateError::NotFound(_) => "not_found".into(),
            GateError::MethodNotAllowed => "method_not_allowed".into(),
            GateError::Upstream { status, body, .. } => {
                let (kind, code, _) = read_upstream_error(body);
                code.or(kind).unwrap_or_else(|| format!("upstream_{}", status.as_u16()))
            }
            GateError::Unreachable { .. } => "upstream_unreachable".into(),
            GateError::Transport { kind, .. } => kind.code().into(),
            GateError::Timeout { what, .. } => format!("upstream_{}_timeout", what.replace(' ', "_")),
            GateError::PoolExhausted { .. } => "usage_limit_reached".into(),
            GateError::PoolReauth => "pool_reauth_required".into(),
            GateError::PoolEmpty => "pool_empty".into(),
            GateError::Unauthorized(_) => "invalid_api_key".into(),
            GateError::Limited(l) => l.kind.code().into(),
            GateError::Internal(_) => "internal_error".into(),
        }
    }

    /// The OpenAI envelope for this error.
    pub fn envelope(&self) -> ErrorEnvelope {
        let kind = match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "invalid_request_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        match self {
            GateError::Upstream { target, status, body, .. } => {
                // Keep the upstream's own type/code (Codex keys on `usage_limit_reached`,
                // `insufficient_quota`, `context_length_exceeded`, …) and every extra field
                // (`plan_type`, `resets_at`).
                if let Ok(mut env) = serde_json::from_slice::<ErrorEnvelope>(body) {
                    if matches!(status.as_u16(), 401 | 403 | 407) {
                        env.error.message =
                            format!("upstream {target} rejected the gateway's credentials: {}", env.error.message);
                    }
                    return env;
                }
                let (t, code, msg) = read_upstream_error(body);
                let msg = if msg.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { msg };
                let code = code.unwrap_or_else(|| self.code());
                ErrorEnvelope::new(t.as_deref().unwrap_or(kind), Some(&code), format!("upstream {target}: {msg}"))
            }
            GateError::BadRequest { param, .. } => {
                let mut env = ErrorEnvelope::new(kind, Some(&self.code()), self.to_string());
                env.error.param.clone_from(param);
                env
            }
            // Codex reads `type`, `plan_type`, `resets_at` and then stops retrying (codex-protocol §5).
            GateError::PoolExhausted { resets_at, plan_type, .. } => {
                let mut env = ErrorEnvelope::new("usage_limit_reached", None, self.to_string());
                env.error.extra.insert("plan_type".into(), plan_type.clone().into());
                env.error.extra.insert("resets_at".into(), (*resets_at).into());
                env
            }
            // OpenAI's own shape for a bad key; Codex with `env_key` shows it and stops.
            GateError::Unauthorized(_) => {
                ErrorEnvelope::new("invalid_request_error", Some("invalid_api_key"), self.to_string())
            }
            GateError::Limited(l) => {
                use crate::access::limits::LimitKind;
                let (t, code) = match l.kind {
                    LimitKind::Rpm => ("requests", "rate_limit_exceeded"),
                    LimitKind::Tpm => ("tokens", "rate_limit_exceeded"),
                    LimitKind::Concurrency => ("concurrency", "rate_limit_exceeded"),
                    // Final for Codex ("Quota exceeded…") and the SDKs: no retry until it renews.
                    LimitKind::Budget => ("insufficient_quota", "budget_exceeded"),
                    // Codex's usage-limit error: it shows when the share frees up and stops.
                    LimitKind::PoolShare => ("usage_limit_reached", "pool_share_exceeded"),
                };
                let mut env = ErrorEnvelope::new(t, Some(code), self.to_string());
                if l.kind == LimitKind::PoolShare {
                    env.error
                        .extra
                        .insert("resets_at".into(), (crate::now_ms() / 1000 + l.retry_after_s as i64).into());
                }
                env
            }
            _ => ErrorEnvelope::new(kind, Some(&self.code()), self.to_string()),
        }
    }
}

/// Upstream response headers worth relaying with an error: retry hints and Codex's
/// rate-limit headers (so a usage-limit 429 keeps `x-codex-primary-*`).
pub fn relayable_error_header(name: &str) -> bool {
    name == "retry-after" || name.starts_with("x-codex-") || name.starts_with("x-ratelimit-") || name == "x-request-id"
}

impl IntoResponse for GateError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.envelope().to_json();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let GateError::PoolExhausted { resets_at, .. } = &self {
            let now = crate::now_ms() / 1000;
            for (k, v) in [
                ("x-codex-primary-used-percent", "100.0".to_owned()),
                ("x-codex-primary-window-minutes", "300".to_owned()),
                ("x-codex-primary-reset-at", resets_at.to_string()),
                ("x-codex-primary-reset-after-seconds", (resets_at - now).max(0).to_string()),
                ("x-codex-active-limit", "codex".to_owned()),
                ("x-codex-rate-limit-reached-type", "rate_limit_reached".to_owned()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
        }
        if let GateError::Limited(l) = &self {
            limit_headers(l, h);
        }
        if let GateError::Upstream { headers, .. } = &self {
            for (k, v) in headers.iter() {
                if relayable_error_header(k.as_str()) {
                    h.append(k.clone(), v.clone());
                }
            }
        }
        resp
    }
}

/// `retry-after` and OpenAI-style `x-ratelimit-*` headers for a refused request.
fn limit_headers(l: &crate::access::limits::Limited, h: &mut HeaderMap) {
    use crate::access::limits::LimitKind;
    let what = match l.kind {
        LimitKind::Rpm => "requests",
        LimitKind::Tpm => "tokens",
        LimitKind::Concurrency => "concurrency",
        LimitKind::Budget => "budget-usd",
        LimitKind::PoolShare => "pool-share-percent",
    };
    let num = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.4}") };
    for (k, v) in [
        ("retry-after".to_owned(), l.retry_after_s.to_string()),
        (format!("x-ratelimit-limit-{what}"), num(l.limit)),
        (format!("x-ratelimit-remaining-{what}"), num(l.remaining)),
        (format!("x-ratelimit-reset-{what}"), format!("{}s", l.retry_after_s)),
    ] {
        if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k), HeaderValue::from_str(&v)) {
            h.insert(k, v);
        }
    }
    // The OpenAI SDKs honour this over their own retry policy.
    if matches!(l.kind, LimitKind::Budget | LimitKind::PoolShare) {
        h.insert("x-should-retry", HeaderValue::from_static("false"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: u16, body: &str) -> GateError {
        GateError::Upstream {
            target: "p/m".into(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: Box::default(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn retryability_follows_the_failover_rules() {
        assert!(upstream(429, "{}").retryable());
        assert!(upstream(503, "").retryable());
        assert!(upstream(401, "").retryable());
        assert!(!upstream(400, "").retryable());
        assert!(!upstream(422, "").retryable());
        assert!(GateError::Unreachable { target: "x".into(), detail: "reset".into() }.retryable());
        assert!(!GateError::ModelNotFound("x".into()).retryable());
        assert_eq!(GateError::ModelNotFound("x".into()).side(), Side::Downstream);
    }

    #[test]
    fn upstream_envelopes_are_kept_and_others_wrapped() {
        let e =
            upstream(429, r#"{"error":{"type":"usage_limit_reached","message":"m","plan_type":"plus","resets_at":5}}"#);
        let env = e.envelope();
        assert_eq!(env.error.kind, "usage_limit_reached");
        assert_eq!(env.error.extra["resets_at"], 5);
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        let e = upstream(502, "<html>bad gateway</html>");
        let env = e.envelope();
        assert_eq!(env.error.kind, "server_error");
        assert!(env.error.message.contains("bad gateway"));
        assert_eq!(upstream(401, "{}").status(), StatusCode::BAD_GATEWAY);
    }
}
