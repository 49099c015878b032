//! The `codex-gate` command line (clap derive). Each subcommand lives in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One endpoint for Codex, OpenClaw and OpenAI-SDK clients in front of your model providers.
///
/// Clients point `base_url` at http://127.0.0.1:2455/v1. codex-gate routes each request to the
/// providers in your config, fails over before the first byte, relays streams as they arrive,
/// and records every request.
#[derive(Debug, Parser)]
#[command(name = "codex-gate", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Config file [default: $XDG_CONFIG_HOME/codex-gate/config.toml, if it exists]
    #[arg(long, global = true, env = "CODEX_GATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log line format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `codex_gate=debug` (env CODEX_GATE_LOG also works)
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway
    Serve(ServeArgs),
    /// Check the config file and print what it resolves to, without starting anything
    Check,
    /// Manage the pool of ChatGPT subscription accounts
    Accounts {
        #[command(subcommand)]
        cmd: crate::commands::accounts::AccountsCmd,
    },
    /// Client keys: create, list, show, update, revoke, rotate
    Keys {
        // Boxed: its flags make it far larger than the other commands.
        #[command(subcommand)]
        cmd: Box<crate::commands::keys::KeysCmd>,
    },
    /// Requests, tokens and cost by key, model, account or target
    Usage(crate::commands::usage::UsageArgs),
    /// Is the gateway up; accounts with their windows and cooldowns; the last hour's traffic
    Status {
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// What clients can ask for (from the running gateway, else from the config)
    Models {
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check the gateway and the clients pointed at it; --fix repairs what is safe
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Keep the gateway running: a systemd user unit (Linux) or a LaunchAgent (macOS)
    Service {
        #[command(subcommand)]
        cmd: crate::commands::service::ServiceCmd,
    },
    /// Read a dashboard password from stdin and print its `[dashboard] password_hash` line
    HashPassword,
    /// Point a client's own config at the gateway (backed up; --undo restores it)
    Setup {
        #[command(subcommand)]
        cmd: crate::commands::setup::SetupCmd,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address (overrides server.listen)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Store URL, sqlite://PATH or postgres://… (overrides store.url)
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}
