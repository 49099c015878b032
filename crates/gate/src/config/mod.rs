//! Configuration: load a TOML file (or none), interpolate `${ENV}`, refuse unknown keys, wrong
//! types and invalid values with an error that names the file and the key, and produce the
//! validated [`Config`] the rest of the gateway uses.

mod interp;
pub mod raw;

pub use interp::{default_config_path, default_data_dir, expand_home, interpolate};

use codex_gate_protocol::translate::ChatDialect;
use http::{HeaderName, HeaderValue};
use raw::{RawConfig, RawKind};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config error: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("config error in {file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// A secret string (API key): never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which API an upstream provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Chat,
    Responses,
    /// The pool of ChatGPT subscription accounts (Responses API at `{base_url}/codex/responses`).
    Chatgpt,
}

impl ProviderKind {
    pub fn api(self) -> codex_gate_protocol::Api {
        match self {
            ProviderKind::Chat => codex_gate_protocol::Api::Chat,
            ProviderKind::Responses | ProviderKind::Chatgpt => codex_gate_protocol::Api::Responses,
        }
    }
}

/// `[pool]`: how the ChatGPT account pool routes.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub strategy: crate::pool::select::Strategy,
    pub account_concurrency: u32,
    /// Requests per minute per account before spilling to the next (0: none).
    pub account_rpm: u32,
    pub affinity_ttl: Duration,
    pub switch_threshold: f64,
    pub max_attempts: u32,
    /// OAuth issuer, e.g. `https://auth.openai.com`.
    pub issuer: String,
    pub client_id: String,
    /// `originator` sent for non-Codex clients (Codex clients' own is passed through).
    pub originator: String,
    /// `User-Agent` sent for non-Codex clients.
    pub user_agent: String,
    /// Where the token-sealing key lives (unless CODEX_GATE_ENCRYPTION_KEY is set).
    pub key_file: PathBuf,
    /// A pool turn's `x-codex-*` rate-limit headers show the whole pool (`true`, the default)
    /// or the serving account (`[pool] rate_limit_headers = "account"`).
    pub pooled_rate_limit_headers: bool,
    /// A client's Responses WebSocket reaches the backend over a WebSocket of its own
    /// (`[pool] websocket`, default on); off: every pool turn goes over HTTP.
    pub websocket: bool,
    /// How often to poll `wham/usage` per account (`None`: never).
    pub usage_poll: Option<Duration>,
    /// Where browser logins started from the dashboard or admin API get their callback (1455,
    /// as Codex's own login; a port that is taken falls back to the device code).
    pub login_callback_port: u16,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From sending the request to the first byte of the response body.
    pub first_byte: Duration,
    /// Longest silence between two chunks of a streamed body.
    pub idle: Duration,
}

/// An API-key upstream.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash, e.g. `https://api.deepseek.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub models: Vec<String>,
    pub timeouts: Timeouts,
    /// How to talk to this provider when a request is translated for it (chat providers).
    pub dialect: ChatDialect,
    /// Codex's own headers (`x-codex-*`, `x-openai-subagent`: installation id, workspace path,
    /// git state) go to this provider. Default: only OpenAI's and ChatGPT's own hosts.
    pub forward_codex_headers: bool,
    /// This provider's own proxy route (`None`: `[egress]`'s default or the environment's).
    pub proxy: Option<crate::egress::Route>,
    /// Tokens its models take in (what Codex's catalog tells Codex; `None`: a default).
    pub context_window: Option<u64>,
    /// A Responses provider's turns from a client WebSocket try a WebSocket to it first
    /// (`websocket`, default on; a provider that refuses the upgrade gets HTTP).
    pub websocket: bool,
}

/// An explicit route: a client-facing model name and its ordered targets (`provider/model`).
#[derive(Debug, Clone)]
pub struct Route {
    pub model: String,
    pub targets: Vec<(String, String)>,
    /// Try the next target on a retryable failure before the first byte (false: fail closed).
    pub fallback: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body, after decompression.
    pub max_body_bytes: usize,
    /// How long shutdown waits for open streams.
    pub drain_timeout: Duration,
    /// Keep-alive to stream clients after this much upstream silence (`None`: off).
    pub keepalive: Option<Duration>,
    /// Host names (besides loopback names and IP literals) that requests may be addressed to;
    /// `*.example.com` matches subdomains. Guards against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// A client must send a whole request head within this time of connecting or of its
    /// previous answer ending (so it also bounds idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time.
    pub body_read_timeout: Duration,
    /// Open client connections at most; at the cap the longest-idle one makes room.
    pub max_connections: usize,
    /// Every API request needs a client key even before one exists (`keys create` makes the
    /// first); without it, keys are required once any key exists.
    pub require_keys: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    pub retention: Duration,
    pub max_rows: u64,
    /// Request-log records buffered between the request path and the writer.
    pub writer_queue: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (`None`: built-in defaults only).
    pub source: Option<PathBuf>,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub providers: Vec<Provider>,
    pub routes: Vec<Route>,
    pub aliases: BTreeMap<String, String>,
    pub pool: PoolConfig,
    pub egress: crate::egress::EgressConfig,
    /// `[prices]` over the built-in price table.
    pub prices: crate::cost::Prices,
    /// `[cluster] redis_url`: instances share limits, cooldowns and refreshes through it.
    pub redis_url: Option<String>,
    /// `[dashboard]`: how the browser dashboard signs people in.
    pub dashboard: DashboardConfig,
    /// `[telemetry]` (or the `OTEL_EXPORTER_OTLP_*` variables): OpenTelemetry traces.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// `[web_search]`: searches the gateway runs for chat models (`None`: off).
    pub web_search: Option<crate::upstream::websearch::WebSearchConfig>,
    /// No providers were configured: the pool is the default provider, named [`IMPLICIT_POOL`],
    /// and every model its accounts' plans offer routes to it.
    pub implicit_pool: bool,
}

/// `[dashboard]`.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// argon2 PHC string of the sign-in password (`None`: sign in with an admin key only).
    pub password_hash: Option<String>,
    pub session_ttl: Duration,
}

/// The name of the pool provider a config without providers gets.
pub const IMPLICIT_POOL: &str = "chatgpt";

impl Config {
    /// Load from `path` if given (it must exist), else from the default path if it exists,
    /// else built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        match path {
            Some(p) => Self::from_file(p, &env),
            None => {
                let p = default_config_path();
                if p.exists() {
                    Self::from_file(&p, &env)
                } else {
                    Self::from_toml_str("", None, &env)
                }
            }
        }
    }

    fn from_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_toml_str(&text, Some(path), env)
    }

    /// Parse and validate TOML text. `env` resolves `${VAR}` references.
    pub fn from_toml_str(
        text: &str,
        source: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = source.map_or_else(|| "<defaults>".to_owned(), |p| p.display().to_string());
        let err = |key: &str, message: String| ConfigError { file: file.clone(), key: key.to_owned(), message };
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| err("-", format!("invalid TOML: {}", e.to_string().trim_end())))?;
        interpolate_tree(&mut value, &mut String::new(), env).map_err(|(k, m)| err(&k, m))?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            err(if key == "." { "-" } else { &key }, e.into_inner().to_string())
        })?;
        validate(raw, source, env).map_err(|(k, m)| err(&k, m))
    }
}

type KeyError = (String, String);

fn interpolate_tree(
    v: &mut toml::Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), KeyError> {
    match v {
        toml::Value::String(s) => {
            *s = interpolate(s, env).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, env)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate_tree(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn ms(key: String, v: Option<u64>, default: u64) -> Result<Duration, KeyError> {
    match v.unwrap_or(default) {
        0 => Err((key, "must be greater than 0".into())),
        n => Ok(Duration::from_millis(n)),
    }
}

fn secs(key: &str, v: Option<u64>, default: u64) -> Result<Duration, KeyError> {
    match v.unwrap_or(default) {
        0 => Err((key.to_owned(), "must be greater than 0".into())),
        n => Ok(Duration::from_secs(n)),
    }
}

/// Host names as the Host check compares them: lower case, no port, `*.` only as a prefix.
fn validate_hosts(hosts: Vec<String>) -> Result<Vec<String>, KeyError> {
    let mut out = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.into_iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let name = h.strip_prefix("*.").unwrap_or(&h);
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err((
                format!("server.allowed_hosts[{i}]"),
                format!("{h:?} is not a host name (like \"gate.example.com\" or \"*.example.com\", without a port)"),
            ));
        }
        out.push(h);
    }
    Ok(out)
}

fn validate(raw: RawConfig, source: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, KeyError> {
    // The ChatGPT backend and the OAuth issuer; the environment can move both (a test's mock,
    // a mirror) for a gateway run without any config file.
    let backend = raw
        .pool
        .base_url
        .clone()
        .or_else(|| env("CODEX_GATE_CHATGPT_BASE_URL").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://chatgpt.com/backend-api".to_owned());
    let listen_s = raw.server.listen.unwrap_or_else(|| "127.0.0.1:2455".into());
    let listen = listen_s
        .parse::<SocketAddr>()
        .map_err(|_| ("server.listen".to_owned(), format!("{listen_s:?} is not an address like \"127.0.0.1:2455\"")))?;
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(32 << 20);
    if max_body_bytes < 1024 {
        return Err(("server.max_body_bytes".into(), "must be at least 1024".into()));
    }
    let server = ServerConfig {
        listen,
        max_body_bytes: max_body_bytes as usize,
        drain_timeout: Duration::from_secs(raw.server.drain_timeout_secs.unwrap_or(30)),
        keepalive: match raw.server.keepalive_secs.unwrap_or(15) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        },
        allowed_hosts: validate_hosts(raw.server.allowed_hosts.unwrap_or_default())?,
        header_read_timeout: secs("server.header_read_timeout_secs", raw.server.header_read_timeout_secs, 30)?,
        body_read_timeout: secs("server.body_read_timeout_secs", raw.server.body_read_timeout_secs, 120)?,
        max_connections: match raw.server.max_connections.unwrap_or(2048) {
            n @ 16..=1_000_000 => n as usize,
            _ => return Err(("server.max_connections".into(), "must be between 16 and 1000000".into())),
        },
        require_keys: raw.server.require_keys.unwrap_or(false),
    };

    let url = match raw.store.url {
        // `sqlite://~/…` and `sqlite://$HOME/…` as for every other path.
        Some(u) => match u.strip_prefix("sqlite://") {
            Some(path) => format!("sqlite://{}", expand_home(path).display()),
            None => u,
        },
        None => format!("sqlite://{}", default_data_dir().join("codex-gate.db").display()),
    };
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(("store.url".into(), format!("{url:?} must start with sqlite:// or postgres://")));
    }
    let store = StoreConfig {
        url,
        retention: Duration::from_secs(raw.store.request_log_retention_days.unwrap_or(30) * 86_400),
        max_rows: raw.store.request_log_max_rows.unwrap_or(1_000_000),
        writer_queue: raw.store.writer_queue.unwrap_or(10_000).max(1) as usize,
    };

    // No providers at all: the ChatGPT pool is the default provider (zero config).
    let implicit_pool = raw.providers.is_empty();
    let mut raw_providers = raw.providers;
    if implicit_pool {
        raw_providers.push(raw::RawProvider::pool(IMPLICIT_POOL));
    }
    let mut providers = Vec::with_capacity(raw_providers.len());
    let mut names = HashSet::new();
    for (i, p) in raw_providers.into_iter().enumerate() {
        let key = |k: &str| format!("providers[{i}].{k}");
        if p.name.is_empty() || p.name.contains('/') || p.name.chars().any(char::is_whitespace) {
            return Err((key("name"), format!("{:?} must be non-empty, without '/' or spaces", p.name)));
        }
        if !names.insert(p.name.clone()) {
            return Err((key("name"), format!("provider {:?} is defined twice", p.name)));
        }
        let base_url = match (&p.base_url, p.kind) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, RawKind::Chatgpt) => backend.trim_end_matches('/').to_owned(),
            (None, _) => return Err((key("base_url"), "is required for chat and responses providers".into())),
        };
        let uri = base_url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()));
        if uri.is_none() {
            return Err((key("base_url"), format!("{base_url:?} is not an http:// or https:// URL")));
        }
        let mut headers = Vec::new();
        for (k, v) in &p.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| (key(&format!("headers.{k}")), "is not a valid header name".to_owned()))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| (key(&format!("headers.{k}")), "is not a valid header value".to_owned()))?;
            headers.push((name, value));
        }
        if p.api_key.as_deref().is_some_and(|k| k.contains(['\r', '\n'])) {
            return Err((key("api_key"), "must not contain line breaks".into()));
        }
        let max_tokens_field = match p.max_tokens_field.as_deref() {
            None | Some("max_tokens") => "max_tokens",
            Some("max_completion_tokens") => "max_completion_tokens",
            Some(other) => {
                return Err((
                    key("max_tokens_field"),
                    format!("{other:?} must be \"max_tokens\" or \"max_completion_tokens\""),
                ))
            }
        };
        let dialect = ChatDialect {
            reasoning_effort: p.reasoning_effort.unwrap_or(false),
            reasoning_history: p.reasoning_history.unwrap_or(false),
            max_tokens_field,
            recover_leaked_tool_calls: p.recover_tool_calls.unwrap_or(true),
            web_search: false, // per request: on when `[web_search]` is set and the client streams
        };
        let first_party = matches!(p.kind, RawKind::Chatgpt)
            || uri.as_ref().and_then(|u| u.host()).is_some_and(|h| {
                let h = h.to_ascii_lowercase();
                ["openai.com", "chatgpt.com"].iter().any(|d| h == *d || h.ends_with(&format!(".{d}")))
            });
        let proxy = match p.proxy.as_deref() {
            None => None,
            Some("direct" | "none") => Some(crate::egress::Route::Direct),
            Some(u) => Some(crate::egress::Route::Proxy(crate::egress::parse_proxy(u).map_err(|m| (key("proxy"), m))?)),
        };
        providers.push(Provider {
            proxy,
            dialect,
            context_window: match p.context_window {
                None => None,
                Some(n @ 1_000..=100_000_000) => Some(n),
                Some(_) => return Err((key("context_window"), "must be between 1000 and 100000000 tokens".into())),
            },
            forward_codex_headers: p.forward_codex_headers.unwrap_or(first_party),
            websocket: p.websocket.unwrap_or(true),
            name: p.name,
            kind: match p.kind {
                RawKind::Chat => ProviderKind::Chat,
                RawKind::Responses => ProviderKind::Responses,
                RawKind::Chatgpt => ProviderKind::Chatgpt,
            },
            base_url,
            api_key: p.api_key.filter(|k| !k.is_empty()).map(Secret),
            headers,
            models: p.models,
            timeouts: Timeouts {
                connect: ms(key("connect_timeout_ms"), p.connect_timeout_ms, 10_000)?,
                first_byte: ms(key("first_byte_timeout_ms"), p.first_byte_timeout_ms, 120_000)?,
                idle: ms(key("idle_timeout_ms"), p.idle_timeout_ms, 240_000)?,
            },
        });
    }

    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut route_names = HashSet::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        if r.model.is_empty() {
            return Err((format!("routes[{i}].model"), "must not be empty".into()));
        }
        if !route_names.insert(r.model.clone()) {
            return Err((format!("routes[{i}].model"), format!("route {:?} is defined twice", r.model)));
        }
        if r.targets.is_empty() {
            return Err((format!("routes[{i}].targets"), "needs at least one target".into()));
        }
        let mut targets = Vec::new();
        for (j, t) in r.targets.iter().enumerate() {
            let k = format!("routes[{i}].targets[{j}]");
            targets.push(parse_target(t, &names).map_err(|m| (k, m))?);
        }
        routes.push(Route { model: r.model, targets, fallback: r.fallback.unwrap_or(true) });
    }

    for (alias, target) in &raw.aliases {
        let known = route_names.contains(target)
            || parse_target(target, &names).is_ok()
            || providers.iter().any(|p| p.models.contains(target));
        if !known {
            return Err((
                format!("aliases.{alias}"),
                format!("{target:?} is not a route, a provider/model reference or a listed model"),
            ));
        }
    }

    let rp = raw.pool;
    let strategy = rp.strategy.as_deref().unwrap_or("usage_aware");
    let pool = PoolConfig {
        strategy: crate::pool::select::Strategy::parse(strategy).ok_or_else(|| {
            (
                "pool.strategy".to_owned(),
                format!(
                    "{strategy:?} is not one of usage_aware, round_robin, primary_first, priority_order, fill_first"
                ),
            )
        })?,
        account_concurrency: rp.account_concurrency.unwrap_or(0),
        account_rpm: rp.account_rpm.unwrap_or(0),
        affinity_ttl: Duration::from_secs(rp.affinity_ttl_secs.unwrap_or(3600)),
        switch_threshold: match rp.switch_threshold_percent.unwrap_or(90.0) {
            t if (1.0..=100.0).contains(&t) => t,
            _ => return Err(("pool.switch_threshold_percent".into(), "must be between 1 and 100".into())),
        },
        max_attempts: rp.max_attempts.unwrap_or(3).max(1),
        issuer: rp
            .issuer
            .or_else(|| env("CODEX_GATE_OAUTH_ISSUER").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "https://auth.openai.com".into())
            .trim_end_matches('/')
            .to_owned(),
        client_id: rp.client_id.unwrap_or_else(|| crate::pool::refresh::CODEX_CLIENT_ID.into()),
        login_callback_port: rp.login_callback_port.unwrap_or(1455),
        originator: rp.originator.unwrap_or_else(|| "codex_cli_rs".into()),
        user_agent: rp.user_agent.unwrap_or_else(|| "codex_cli_rs/0.169.0 (codex-gate)".into()),
        key_file: rp.key_file.map(|f| expand_home(&f)).unwrap_or_else(|| default_data_dir().join("encryption.key")),
        websocket: rp.websocket.unwrap_or(true),
        pooled_rate_limit_headers: match rp.rate_limit_headers.as_deref().unwrap_or("pool") {
            "pool" => true,
            "account" => false,
            other => {
                return Err(("pool.rate_limit_headers".into(), format!("{other:?} must be \"pool\" or \"account\"")))
            }
        },
        usage_poll: match rp.usage_poll_secs.unwrap_or(300) {
            0 => None,
            n => Some(Duration::from_secs(n.max(30))),
        },
    };
    let re = raw.egress;
    let egress = crate::egress::EgressConfig {
        proxy: re
            .proxy
            .as_deref()
            .map(crate::egress::parse_proxy)
            .transpose()
            .map_err(|m| ("egress.proxy".to_owned(), m))?,
        env_proxy: re.env_proxy.unwrap_or(true),
        ca_file: re.ca_file.map(|f| interp::expand_home(&f)),
    };
    if egress.ca_file.is_some() {
        // Read now, so a bad file is refused at start with its key, not at the first request.
        crate::egress::Egress::new(&egress).map_err(|m| ("egress.ca_file".to_owned(), m))?;
    }
    let mut prices = std::collections::HashMap::new();
    for (model, p) in raw.prices {
        let key = |f: &str| format!("prices.{model}.{f}");
        let cached_input = p.cached_input.unwrap_or(p.input);
        for (f, v) in [("input", p.input), ("cached_input", cached_input), ("output", p.output)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((key(f), "must be a non-negative number of USD per million tokens".into()));
            }
        }
        prices.insert(model, crate::cost::Price { input: p.input, cached_input, output: p.output });
    }
    let redis_url = match raw.cluster.redis_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(u) if u.starts_with("redis://") => {
            if let Err(e) = crate::cluster::Cluster::new(&u) {
                return Err(("cluster.redis_url".into(), e));
            }
            if !url_is_postgres(&store.url) {
                return Err((
                    "cluster.redis_url".into(),
                    "several instances share one store: set [store] url to a postgres:// database as well".into(),
                ));
            }
            Some(u)
        }
        Some(u) => return Err(("cluster.redis_url".into(), format!("{u:?} must start with redis:// (TLS to Redis is not built in; use a local stunnel or a private network)"))),
    };
    let dashboard = DashboardConfig {
        password_hash: match raw.dashboard.password_hash.filter(|h| !h.is_empty()) {
            Some(h) => match argon2::PasswordHash::new(&h) {
                Ok(p) if p.algorithm.as_str().starts_with("argon2") => Some(h),
                _ => {
                    return Err((
                        "dashboard.password_hash".into(),
                        "must be an argon2 hash as `codex-gate hash-password` prints it ($argon2id$v=19$…)".into(),
                    ))
                }
            },
            None => None,
        },
        session_ttl: Duration::from_secs(3600 * raw.dashboard.session_hours.unwrap_or(12).clamp(1, 24 * 30)),
    };
    let telemetry = crate::telemetry::TelemetryConfig::from_raw(raw.telemetry, env)?;
    let web_search = crate::upstream::websearch::WebSearchConfig::from_raw(raw.web_search)?;
    Ok(Config {
        dashboard,
        telemetry,
        web_search,
        redis_url,
        prices: crate::cost::Prices::new(prices),
        source: source.map(Path::to_path_buf),
        server,
        store,
        providers,
        routes,
        aliases: raw.aliases,
        pool,
        egress,
        implicit_pool,
    })
}

fn url_is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn parse_target(t: &str, providers: &HashSet<String>) -> Result<(String, String), String> {
    let Some((p, m)) = t.split_once('/').filter(|(p, m)| !p.is_empty() && !m.is_empty()) else {
        return Err(format!("{t:?} must be written provider/model"));
    };
    if !providers.contains(p) {
        return Err(format!("{t:?} names provider {p:?}, which is not defined in [[providers]]"));
    }
    Ok((p.to_owned(), m.to_owned()))
}

#[cfg(test)]
mod tests;
