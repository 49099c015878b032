//! The config file as written: serde types that refuse unknown keys and wrong types.
//! Validation of values (addresses, URLs, references) happens in `super::validate`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub egress: RawEgress,
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub dashboard: RawDashboard,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub web_search: RawWebSearch,
}

/// `[web_search]`: searches for chat models (off unless `provider` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSearch {
    pub provider: Option<String>,
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub max_results: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub max_rounds: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    /// An argon2 PHC string (`codex-gate hash-password` prints one).
    pub password_hash: Option<String>,
    pub session_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis_url: Option<String>,
}

/// `[prices."model"]`: USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: f64,
    pub cached_input: Option<f64>,
    pub output: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    pub proxy: Option<String>,
    pub env_proxy: Option<bool>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub strategy: Option<String>,
    pub account_concurrency: Option<u32>,
    pub account_rpm: Option<u32>,
    pub affinity_ttl_secs: Option<u64>,
    pub switch_threshold_percent: Option<f64>,
    pub max_attempts: Option<u32>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub originator: Option<String>,
    pub user_agent: Option<String>,
    pub key_file: Option<String>,
    pub usage_poll_secs: Option<u64>,
    pub base_url: Option<String>,
    pub rate_limit_headers: Option<String>,
    pub login_callback_port: Option<u16>,
    pub websocket: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    pub keepalive_secs: Option<u64>,
    pub allowed_hosts: Option<Vec<String>>,
    pub header_read_timeout_secs: Option<u64>,
    pub body_read_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub require_keys: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub request_log_retention_days: Option<u64>,
    pub request_log_max_rows: Option<u64>,
    pub writer_queue: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    Chat,
    Responses,
    Chatgpt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: RawKind,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub reasoning_effort: Option<bool>,
    pub reasoning_history: Option<bool>,
    pub max_tokens_field: Option<String>,
    pub recover_tool_calls: Option<bool>,
    pub forward_codex_headers: Option<bool>,
    pub proxy: Option<String>,
    pub context_window: Option<u64>,
    pub websocket: Option<bool>,
}

impl RawProvider {
    /// A ChatGPT pool provider with every setting at its default.
    pub fn pool(name: &str) -> RawProvider {
        RawProvider {
            name: name.to_owned(),
            kind: RawKind::Chatgpt,
            base_url: None,
            api_key: None,
            headers: BTreeMap::new(),
            models: Vec::new(),
            connect_timeout_ms: None,
            first_byte_timeout_ms: None,
            idle_timeout_ms: None,
            reasoning_effort: None,
            reasoning_history: None,
            max_tokens_field: None,
            recover_tool_calls: None,
            forward_codex_headers: None,
            proxy: None,
            context_window: None,
            websocket: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub model: String,
    pub targets: Vec<String>,
    pub fallback: Option<bool>,
}
