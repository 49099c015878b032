//! Scripted mock upstreams over real HTTP, used by codex-gate's tests and benchmarks.
//!
//! [`MockUpstream::start`] binds an ephemeral port on 127.0.0.1 and speaks the OpenAI Responses
//! API (`POST …/responses`) and Chat Completions (`POST …/chat/completions`), streaming or not.
//! The behaviour of each request is chosen by its `model`, written `scenario[:key=value,…]`:
//!
//! | scenario | what the mock does |
//! |---|---|
//! | anything else (e.g. `gpt-5.5`) / `ok` | text answer in `deltas` pieces |
//! | `tool` | asks for the `exec_command` tool; answers text once the input holds its output |
//! | `view-image` | as `tool`, with Codex's `view_image` on `pixel.png` |
//! | `truncated` | a few deltas, then the connection is cut |
//! | `cut-mid-event` | (chat) a few deltas, half of the next event, then the cut |
//! | `garbage-mid-stream` | a few deltas, an HTML `data:` line, then the normal end |
//! | `no-terminal` | deltas, then a clean end without the terminal event |
//! | `failed` | `response.failed` (Responses) / an error chunk (Chat) after one delta |
//! | `429` | HTTP 429 `rate_limit_exceeded` with `retry-after` |
//! | `usage-limit` | HTTP 429 `usage_limit_reached` with `x-codex-primary-*` headers |
//! | `400` | HTTP 400 `invalid_request_error` |
//! | `500` | HTTP 500 |
//! | `html-200` / `garbage-200` / `html-as-sse` | HTTP 200 with an HTML page / non-JSON bytes / HTML labelled `text/event-stream` |
//! | `slow` | deltas `delay_ms` apart (default 200) |
//! | `reset` | connection closed before any response |
//! | `hang` | never answers (first-byte timeouts) |
//! | `stall` | sends the first event, then goes silent (idle timeouts) |
//! | `sloppy` | a Responses stream that breaks the grammar (for the repair) |
//! | `pings` | a normal stream with an SSE comment (`: keep-alive`) before every send |
//! | `ragged` | a normal stream cut into 13-byte pieces sent 1 ms apart (events split across reads) |
//! | `search` | (chat) calls the `web_search` function when offered, answers from its result after |
//!
//! The same server is a mock ChatGPT backend (`…/codex/responses` with per-account tokens, see
//! [`MockUpstream::add_chatgpt_account`]; `…/wham/usage`; `…/codex/models`, a catalog of
//! `gpt-5.5` for paid plans, `gpt-5.4-mini` for all and `gpt-5.5-pro` for Pro) and OAuth issuer
//! (`POST /oauth/token`), with the backend's Responses WebSocket on `…/codex/responses`
//! (`Upgrade: websocket`, see `ws.rs`), its image endpoints and any other `…/codex/*` path
//! (answered with what was asked), and a SearXNG search API (`GET /search?q=…&format=json`).
//! Open accounts ([`MockUpstream::open_chatgpt_accounts`]) take any token; an HTTPS mock
//! ([`MockUpstream::start_tls_on`]) counts its TLS handshakes, reported with the request count
//! by `GET /mock/stats`.
//!
//! Keys: `deltas`, `size` (bytes per delta), `delay_ms`, `ttft_ms`, `retry_after`, `code`.

pub mod chatgpt;
pub mod render;
mod server;
mod ws;

pub use server::{MockOptions, MockUpstream, RecordedRequest};

/// A parsed `scenario[:k=v,…]` model name.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub deltas: usize,
    pub size: usize,
    pub delay_ms: u64,
    pub ttft_ms: u64,
    pub retry_after: u64,
    pub code: Option<String>,
}

impl Scenario {
    /// Parse `model`, with defaults from `opts`.
    pub fn parse(model: &str, opts: &MockOptions) -> Scenario {
        let (name, params) = model.split_once(':').unwrap_or((model, ""));
        let mut s = Scenario {
            name: name.to_owned(),
            deltas: opts.deltas,
            size: opts.delta_bytes,
            delay_ms: if name == "slow" { 200 } else { opts.delay.as_millis() as u64 },
            ttft_ms: opts.ttft.as_millis() as u64,
            retry_after: 1,
            code: None,
        };
        for kv in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let n = v.parse::<u64>().ok();
            match (k, n) {
                ("deltas", Some(n)) => s.deltas = n as usize,
                ("size", Some(n)) => s.size = n as usize,
                ("delay_ms", Some(n)) => s.delay_ms = n,
                ("ttft_ms", Some(n)) => s.ttft_ms = n,
                ("retry_after", Some(n)) => s.retry_after = n,
                ("code", _) => s.code = Some(v.to_owned()),
                _ => {}
            }
        }
        s
    }
}
