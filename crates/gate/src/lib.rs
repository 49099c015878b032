//! codex-gate: one endpoint for Codex, OpenClaw and OpenAI-SDK clients in front of API-key
//! providers and pools of ChatGPT subscription accounts.
//!
//! Map of the crate:
//! - [`access`]: who is asking: the Host/Origin guard, client and admin keys, per-key limits.
//! - [`config`]: TOML → validated [`config::Config`]; errors name the file and the key.
//! - [`routing`]: requested model → ordered targets; [`codex_catalog`]: the models in Codex's shape.
//! - [`server`]: the router (`router(app)`) and `serve(listener, app, shutdown)`.
//! - [`routes`]: thin HTTP handlers, one file per API surface.
//! - [`egress`]: connecting to upstreams: happy eyeballs, proxies, TLS roots; transport error kinds.
//! - [`upstream`]: the shared HTTP client, request building, the relay with failover.
//! - [`tally`]: per-request accounting (metrics + one request-log record); [`cost`]: prices.
//! - [`ledger`]: the batched request-log writer; [`store`]: SQLite / PostgreSQL.
//! - [`pool`]: ChatGPT subscription accounts: tokens, selection, refresh, quota.
//! - [`cluster`]: optional Redis: shared limit counters, refresh locks, events between instances.
//! - [`secrets`]: sealing tokens at rest.
//! - [`metrics`]: Prometheus registry; [`telemetry`]: OpenTelemetry spans; [`error`]: the one error enum.
//! - [`dashboard`]: the browser dashboard: embedded assets, sign-in sessions, its read APIs.
//! - [`cli`], [`commands`]: the `codex-gate` command line; [`logsink`]: the buffered log writer.

pub mod access;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod codex_catalog;
pub mod commands;
pub mod config;
pub mod cost;
pub mod dashboard;
pub mod egress;
pub mod error;
pub mod ledger;
pub mod logsink;
pub mod metrics;
pub mod pool;
pub mod routes;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tally;
pub mod telemetry;
pub mod upstream;
pub mod ws_options;

pub use app::App;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
