//! `codex-gate doctor [--fix] [--json]`: checks the gateway and the clients pointed at it
//! (Codex, OpenClaw), and with `--fix` repairs what is safe to repair (file modes, a `base_url`
//! without `/v1`, a stale port, `wire_api`, OpenClaw's `api`). Each finding says what is wrong, why it matters and the exact fix;
//! the exit code is non-zero while anything is broken.

mod codex;
mod openclaw;

use crate::config::Config;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Broken,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    pub what: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    /// `--fix` repaired it.
    pub fixed: bool,
}

impl Finding {
    fn ok(check: &str, what: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            level: Level::Ok,
            what: what.into(),
            why: String::new(),
            fix: String::new(),
            fixed: false,
        }
    }
    fn bad(check: &str, level: Level, what: impl Into<String>, why: &str, fix: impl Into<String>) -> Finding {
        Finding { check: check.into(), level, what: what.into(), why: why.into(), fix: fix.into(), fixed: false }
    }
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Repair what is safe to repair (each changed file is backed up once; `setup codex --undo`
    /// restores Codex's)
    #[arg(long)]
    pub fix: bool,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Codex's home [default: $CODEX_HOME, else ~/.codex]
    #[arg(long, value_name = "DIR")]
    pub codex_home: Option<std::path::PathBuf>,
    /// OpenClaw's config [default: $OPENCLAW_CONFIG_PATH, else ~/.openclaw/openclaw.json]
    #[arg(long, value_name = "FILE")]
    pub openclaw_config: Option<std::path::PathBuf>,
}

pub async fn run(path: Option<&Path>, args: DoctorArgs) -> anyhow::Result<bool> {
    let mut found = Vec::new();
    let config = match Config::load(path) {
        Ok(c) => {
            let from =
                c.source.as_ref().map_or("built-in defaults (no config file)".to_owned(), |p| p.display().to_string());
            found.push(Finding::ok("config", format!("valid: {from}")));
            Some(c)
        }
        Err(e) => {
            found.push(Finding::bad(
                "config",
                Level::Broken,
                e.to_string(),
                "the gateway refuses to start with it",
                format!("edit {} at `{}`", e.file, e.key),
            ));
            None
        }
    };
    let mut models = None;
    if let Some(c) = &config {
        gateway(c, &mut found, &mut models).await;
        store(c, args.fix, &mut found).await;
        clock(c, &mut found).await;
        let (base, _) = super::setup::client_base_url(None, c.server.listen)?;
        // Does the running gateway ask for client keys (a keyless request refused)?
        let keyed = matches!(super::status_of(&format!("{base}/models"), None).await, Some(400 | 401));
        if let Some(home) = super::setup::codex::codex_home(args.codex_home.as_deref()) {
            let env_keys = codex::check(&home, &base, models.as_deref(), keyed, args.fix, &mut found);
            if keyed {
                codex_keys(&base, env_keys, &mut found).await;
            }
        }
        if let Some(file) = super::setup::openclaw::openclaw_config(args.openclaw_config.as_deref()) {
            openclaw::check(&file, &base, models.as_deref(), args.fix, &mut found);
        }
    }
    let broken = found.iter().any(|f| f.level == Level::Broken && !f.fixed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"ok": !broken, "findings": found}))?);
    } else {
        for f in &found {
            let mark = match (f.level, f.fixed) {
                (_, true) => "fixed ",
                (Level::Ok, _) => "ok    ",
                (Level::Warn, _) => "warn  ",
                (Level::Broken, _) => "BROKEN",
            };
            println!("{mark} {:<8} {}", f.check, f.what);
            if f.level != Level::Ok {
                if !f.why.is_empty() {
                    println!("         why: {}", f.why);
                }
                if !f.fix.is_empty() {
                    println!("         fix: {}", f.fix);
                }
            }
        }
        if broken && !args.fix {
            println!("\n`codex-gate doctor --fix` repairs what is marked safe to repair.");
        }
    }
    Ok(!broken)
}

/// Whether the gateway accepts the key each Codex provider sends (`(where, variable)` pairs).
async fn codex_keys(base: &str, env_keys: Vec<(String, String)>, found: &mut Vec<Finding>) {
    for (at, var) in env_keys {
        let Some(key) = std::env::var(&var).ok().filter(|v| !v.is_empty()) else { continue };
        match super::status_of(&format!("{base}/models"), Some(&key)).await {
            Some(200..=299) => found.push(Finding::ok("codex", format!("{at}: the gateway accepts the key in {var}"))),
            Some(400 | 401) => found.push(Finding::bad(
                "codex",
                Level::Broken,
                format!("{at}: the gateway refuses the key in {var}"),
                "it is unknown, revoked or expired: Codex stops at the first turn with \"Incorrect API key provided\"",
                "`codex-gate keys list` shows its state; `codex-gate setup codex` gives Codex a working one",
            )),
            _ => {}
        }
    }
}

/// Reachable, same version, and which models it routes (for the client checks).
async fn gateway(c: &Config, found: &mut Vec<Finding>, models: &mut Option<Vec<String>>) {
    let (base, _) = super::setup::client_base_url(None, c.server.listen).unwrap_or_default();
    match super::gateway_get(c.server.listen, "/health").await {
        Some(h) => {
            let v = h["version"].as_str().unwrap_or("?");
            if v == env!("CARGO_PKG_VERSION") {
                found.push(Finding::ok("gateway", format!("up at {base}, version {v}")));
            } else {
                found.push(Finding::bad(
                    "gateway",
                    Level::Warn,
                    format!("up at {base}, but version {v} (this binary is {})", env!("CARGO_PKG_VERSION")),
                    "an older gateway lacks fixes this one has",
                    "restart it (`codex-gate service install` keeps it on this binary)",
                ));
            }
            *models = super::gateway_get(c.server.listen, "/v1/models").await.map(|m| {
                m["data"].as_array().into_iter().flatten().filter_map(|x| x["id"].as_str().map(str::to_owned)).collect()
            });
            if let Some(p) = super::gateway_get(c.server.listen, "/api/pool").await {
                for a in p["accounts"].as_array().into_iter().flatten() {
                    let who = a["email"].as_str().or(a["id"].as_str()).unwrap_or("?");
                    if a["status"] == "reauth_required" {
                        found.push(Finding::bad(
                            "account",
                            Level::Broken,
                            format!("{who} needs a new login ({})", a["status_reason"].as_str().unwrap_or("refused")),
                            "the pool cannot use it until then",
                            format!(
                                "codex-gate accounts login   (then remove the old one: codex-gate accounts remove {})",
                                a["id"].as_str().unwrap_or("?")
                            ),
                        ));
                    } else if a["cooldown_until"].is_i64() {
                        found.push(Finding::bad(
                            "account",
                            Level::Warn,
                            format!("{who} is cooling down"),
                            "it hit a limit or failed; the pool uses the others until then",
                            "none needed; `codex-gate status` shows when it returns",
                        ));
                    }
                }
            }
        }
        None => found.push(Finding::bad(
            "gateway",
            Level::Broken,
            format!("nothing answers at {base}"),
            "every client pointed at it fails (Codex: \"stream disconnected before completion\")",
            "codex-gate serve   (or `codex-gate service install` to keep it running)",
        )),
    }
}

/// The store opens and migrates; the key file exists and only its owner can read it.
async fn store(c: &Config, fix: bool, found: &mut Vec<Finding>) {
    match crate::store::Store::open(&c.store.url).await {
        Ok(s) => {
            match s.schema_version().await {
                Ok(v) => found.push(Finding::ok("store", format!("{} (schema {v})", super::redact_url(&c.store.url)))),
                Err(e) => found.push(Finding::bad(
                    "store",
                    Level::Broken,
                    e.to_string(),
                    "requests cannot be logged",
                    "check the database",
                )),
            }
            s.close().await;
        }
        Err(e) => found.push(Finding::bad(
            "store",
            Level::Broken,
            format!("cannot open {}: {e}", super::redact_url(&c.store.url)),
            "the gateway will not start",
            "fix store.url or the directory's permissions",
        )),
    }
    let key = &c.pool.key_file;
    if std::env::var_os("CODEX_GATE_ENCRYPTION_KEY").is_some() {
        found.push(Finding::ok("key", "from CODEX_GATE_ENCRYPTION_KEY"));
        return;
    }
    match std::fs::metadata(key) {
        Err(_) => found.push(Finding::ok("key", format!("{} is created on first use", key.display()))),
        #[cfg(unix)]
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                found.push(Finding::ok("key", format!("{} (mode {mode:o})", key.display())));
            } else {
                let mut f = Finding::bad(
                    "key",
                    Level::Broken,
                    format!("{} is mode {mode:o}", key.display()),
                    "it unseals every account's tokens; other users on this machine can read it",
                    format!("chmod 600 {}", key.display()),
                );
                if fix {
                    f.fixed = std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).is_ok();
                }
                found.push(f);
            }
        }
        #[cfg(not(unix))]
        Ok(_) => found.push(Finding::ok("key", key.display().to_string())),
    }
}

/// This machine's clock against an upstream's `Date`: token expiry and reset countdowns are
/// computed from it.
async fn clock(c: &Config, found: &mut Vec<Finding>) {
    let Some(p) = c.providers.first() else { return };
    let client = crate::upstream::client::UpstreamClient::new(&[]);
    let Ok(req) = http::Request::get(format!("{}/", p.base_url)).body(bytes::Bytes::new()) else { return };
    let Ok(Ok(resp)) = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(req)).await else {
        found.push(Finding::bad(
            "clock",
            Level::Warn,
            format!("{} did not answer; the clock was not compared", p.base_url),
            "",
            "",
        ));
        return;
    };
    let date = resp
        .headers()
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok());
    let Some(their) = date else { return };
    let their = their.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let skew = crate::now_ms() / 1000 - their;
    if skew.abs() > 60 {
        found.push(Finding::bad(
            "clock",
            Level::Warn,
            format!("this machine's clock is {skew} s off {}'s", p.name),
            "tokens look expired or fresh when they are not, and reset countdowns are wrong",
            "turn on time synchronisation (timedatectl set-ntp true; on macOS: System Settings > Date & Time)",
        ));
    } else {
        found.push(Finding::ok("clock", format!("within a minute of {}", p.name)));
    }
}
