//! One module per subcommand. Commands return `anyhow::Result`; `main` maps it to an exit code.

pub mod accounts;
pub mod check;
pub mod doctor;
pub mod keys;
pub mod models;
pub mod serve;
pub mod service;
pub mod setup;
pub mod status;
pub mod usage;

use crate::cli::{Cli, Command, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The whole program behind `main`: logging, the runtime, the command, the exit code. Public so
/// the benchmark harness runs exactly this code as its gateway process.
pub fn main(cli: Cli) -> ExitCode {
    let filter =
        cli.log_level.clone().or_else(|| std::env::var("CODEX_GATE_LOG").ok()).unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a log file or journal are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (sink, flush_guard) = crate::logsink::Sink::start();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(sink).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Buffered log lines first, so the final error (if any) is the last thing printed.
    drop(flush_guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(cli.config.as_deref(), args).await,
        Command::Check => check::run(cli.config.as_deref()),
        Command::HashPassword => hash_password(),
        Command::Accounts { cmd } => accounts::run(cli.config.as_deref(), cmd).await,
        Command::Keys { cmd } => keys::run(cli.config.as_deref(), *cmd).await,
        Command::Usage(args) => usage::run(cli.config.as_deref(), args).await,
        Command::Setup { cmd } => setup::run(cli.config.as_deref(), cmd).await,
        Command::Status { json } => status::run(cli.config.as_deref(), json).await,
        Command::Models { json } => models::run(cli.config.as_deref(), json).await,
        Command::Service { cmd } => service::run(cli.config.as_deref(), cmd),
        Command::Doctor(args) => {
            if !doctor::run(cli.config.as_deref(), args).await? {
                anyhow::bail!("doctor found something broken");
            }
            Ok(())
        }
    }
}

/// `GET path` on the gateway at `listen` (as a client on this machine reaches it): the JSON of
/// a 2xx within 2 s, or `None` when none answers. Once the gateway uses keys, the CLI's reads
/// send `CODEX_GATE_ADMIN_KEY` (admin paths) or `CODEX_GATE_API_KEY` (the others) when set.
pub async fn gateway_get(listen: std::net::SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (base, _) = setup::client_base_url(None, listen).ok()?;
    let var =
        if path.starts_with("/api/") || path == "/metrics" { "CODEX_GATE_ADMIN_KEY" } else { "CODEX_GATE_API_KEY" };
    let key = std::env::var(var).ok().filter(|k| !k.is_empty());
    get_json(&format!("{}{path}", base.trim_end_matches("/v1")), std::time::Duration::from_secs(2), key.as_deref())
        .await
}

/// `GET url` (with `key` as its bearer): the JSON of a 2xx within `limit`, else `None` (for
/// the CLI's own reads).
pub async fn get_json(url: &str, limit: std::time::Duration, key: Option<&str>) -> Option<serde_json::Value> {
    let client = crate::upstream::client::UpstreamClient::new(&[]);
    let mut req = http::Request::get(url);
    if let Some(k) = key {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req.body(bytes::Bytes::new()).ok()?;
    let fetch = async {
        let resp = client.request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(limit, fetch).await.ok().flatten()
}

/// The status `GET url` (with `key` as its bearer) answers within 2 s; `None` when nothing does.
pub async fn status_of(url: &str, key: Option<&str>) -> Option<u16> {
    let client = crate::upstream::client::UpstreamClient::new(&[]);
    let mut req = http::Request::get(url);
    if let Some(k) = key {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req.body(bytes::Bytes::new()).ok()?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(2), client.request(req)).await.ok()?.ok()?;
    Some(resp.status().as_u16())
}

/// `url` with any password replaced, for messages, logs and the dashboard. Only the authority
/// (between `://` and the first `/`, `?` or `#`) can hold credentials; an `@` in a path stays.
pub fn redact_url(url: &str) -> String {
    let Some(s) = url.find("://").map(|s| s + 3) else { return url.to_owned() };
    let authority = &url[s..url[s..].find(['/', '?', '#']).map_or(url.len(), |e| s + e)];
    match authority.rfind('@').and_then(|at| authority[..at].split_once(':').map(|(user, _)| (user, at))) {
        Some((user, at)) => format!("{}{user}:***{}", &url[..s], &url[s + at..]),
        None => url.to_owned(),
    }
}

/// `codex-gate hash-password`: argon2id (the crate's default parameters) with a random salt.
fn hash_password() -> anyhow::Result<()> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let mut line = String::new();
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Type the dashboard password and press Enter (it is shown as you type; pipe it in to avoid that):");
    }
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        anyhow::bail!("use a password of at least 8 characters");
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    println!("[dashboard]\npassword_hash = \"{hash}\"");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite:///a/b.db"), "sqlite:///a/b.db");
        assert_eq!(super::redact_url("https://u:p@h.example/v1"), "https://u:***@h.example/v1");
        // An `@` (and a colon) after the authority is a path, not credentials.
        assert_eq!(super::redact_url("sqlite:///tmp/u:x@y.db"), "sqlite:///tmp/u:x@y.db");
        assert_eq!(super::redact_url("http://h:1/a:b@c"), "http://h:1/a:b@c");
        assert_eq!(super::redact_url("http://h?u=a:b@c"), "http://h?u=a:b@c");
    }
}
