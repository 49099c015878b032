//! `codex-gate accounts …`: log in, import, list, pause, resume, remove and export pool
//! accounts. Works on the store directly (so it needs no running server), then asks a server
//! on the configured address, if one runs, to reload its accounts.

use crate::config::Config;
use crate::pool::auth::{AuthDotJson, Tokens};
use crate::pool::login::{BrowserLogin, DeviceLogin, LoginError};
use crate::pool::refresh::OAuthConfig;
use crate::pool::state::{check_key, save_login};
use crate::secrets::place;
use crate::secrets::{write_private, Cipher};
use crate::store::{AccountRow, Store};
use crate::upstream::client::UpstreamClient;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Sign in with a ChatGPT account in the browser (device code when port 1455 is taken)
    Login {
        /// Use the device-code flow
        #[arg(long)]
        device: bool,
        /// No local listener: print the sign-in URL and paste the callback URL back
        #[arg(long, conflicts_with = "device")]
        paste: bool,
        /// Local callback port
        #[arg(long, default_value_t = 1455)]
        port: u16,
    },
    /// Import Codex auth.json files [default: $CODEX_HOME/auth.json, else ~/.codex/auth.json]
    Import { files: Vec<PathBuf> },
    /// List accounts (never tokens)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an account (by id or email)
    Remove { account: String },
    /// Stop routing to an account
    Pause { account: String },
    /// Route to a paused account again
    Resume { account: String },
    /// Send an account's traffic through its own proxy: `http://host:port`, `socks5://…`,
    /// `socks5h://…`, `direct` (no proxy, whatever the provider says) or `none` (the provider's)
    Proxy { account: String, proxy: String },
    /// Write an account as a Codex auth.json (stdout, or --out FILE created with mode 0600)
    Export {
        account: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

struct Ctx {
    config: Config,
    store: Store,
    cipher: Cipher,
}

async fn open(path: Option<&Path>) -> anyhow::Result<Ctx> {
    let config = Config::load(path)?;
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("cannot open the store at {}", super::redact_url(&config.store.url)))?;
    let cipher = Cipher::load(&config.pool.key_file)?;
    check_key(&store, &cipher).await?;
    Ok(Ctx { config, store, cipher })
}

async fn find(ctx: &Ctx, who: &str) -> anyhow::Result<AccountRow> {
    let rows = ctx.store.list_accounts().await?;
    let mut hits = rows.into_iter().filter(|r| r.id == who || r.email.as_deref() == Some(who));
    match (hits.next(), hits.next()) {
        (Some(r), None) => Ok(r),
        (Some(_), Some(_)) => {
            bail!("{who} matches several accounts (workspace seats); use the account id from `accounts list`")
        }
        (None, _) => bail!("no account {who}; see `codex-gate accounts list`"),
    }
}

/// Ask a running server to reload its accounts; silent when none runs.
async fn notify(config: &Config) {
    let url = format!("http://{}/api/accounts/reload", config.server.listen);
    let client = UpstreamClient::new(&[]);
    let Ok(req) = http::Request::post(url).body(bytes::Bytes::new()) else { return };
    if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
        if r.status().is_success() {
            println!("the running gateway reloaded its accounts");
        }
    }
}

fn default_auth_json() -> PathBuf {
    std::env::var_os("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".codex")))
        .unwrap_or_else(|| PathBuf::from(".codex"))
        .join("auth.json")
}

async fn added(ctx: &Ctx, tokens: &Tokens) -> anyhow::Result<()> {
    let (id, ident) = save_login(&ctx.store, &ctx.cipher, tokens).await.map_err(anyhow::Error::msg)?;
    println!(
        "added {id}: {} ({}, account {})",
        ident.email.as_deref().unwrap_or("?"),
        ident.plan_type.as_deref().unwrap_or("?"),
        ident.chatgpt_account_id
    );
    Ok(())
}

pub async fn run(path: Option<&Path>, cmd: AccountsCmd) -> anyhow::Result<()> {
    let ctx = open(path).await?;
    match cmd {
        AccountsCmd::Login { device, paste, port } => login(&ctx, device, paste, port).await?,
        AccountsCmd::Import { files } => {
            let files = if files.is_empty() { vec![default_auth_json()] } else { files };
            for f in &files {
                let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                let auth: AuthDotJson =
                    serde_json::from_str(&text).with_context(|| format!("{} is not a Codex auth.json", f.display()))?;
                let Some(tokens) = auth.tokens else {
                    bail!("{} holds no ChatGPT tokens (an API-key login cannot join the pool)", f.display())
                };
                added(&ctx, &tokens).await.with_context(|| format!("importing {}", f.display()))?;
            }
        }
        AccountsCmd::List { json } => {
            let rows = ctx.store.list_accounts().await?;
            if json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({"id": r.id, "email": r.email, "plan_type": r.plan_type,
                    "status": r.status, "status_reason": r.status_reason, "priority": r.priority, "weight": r.weight,
                    "chatgpt_account_id": r.chatgpt_account_id})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if rows.is_empty() {
                println!("no accounts; add one with `codex-gate accounts login` or `accounts import`");
            } else {
                println!("{:<18} {:<32} {:<10} {:<16} note", "id", "email", "plan", "status");
                for r in rows {
                    println!(
                        "{:<18} {:<32} {:<10} {:<16} {}",
                        r.id,
                        r.email.unwrap_or_default(),
                        r.plan_type.unwrap_or_default(),
                        r.status,
                        r.status_reason.unwrap_or_default()
                    );
                }
            }
            return Ok(());
        }
        AccountsCmd::Remove { account } => {
            let r = find(&ctx, &account).await?;
            ctx.store.delete_account(&r.id).await?;
            println!("removed {}", r.id);
        }
        AccountsCmd::Pause { account } => {
            let r = find(&ctx, &account).await?;
            ctx.store.set_account_status(&r.id, "paused", None).await?;
            println!("paused {}", r.id);
        }
        AccountsCmd::Resume { account } => {
            let r = find(&ctx, &account).await?;
            ctx.store.set_account_status(&r.id, "active", None).await?;
            println!("resumed {}", r.id);
        }
        AccountsCmd::Proxy { account, proxy } => {
            let r = find(&ctx, &account).await?;
            let value = match proxy.as_str() {
                "none" => None,
                "direct" => Some("direct"),
                url => {
                    crate::egress::parse_proxy(url).map_err(anyhow::Error::msg)?;
                    Some(url)
                }
            };
            // A proxy URL may carry a password: sealed like the tokens.
            let sealed = value.map(|v| ctx.cipher.seal(v, &place("accounts", &r.id, "proxy")));
            ctx.store.set_account_proxy(&r.id, sealed.as_deref()).await?;
            // The URL may carry credentials: print it without them.
            let shown = value.map_or("the provider's".to_owned(), |v| {
                v.parse::<http::Uri>().map_or(v.to_owned(), |u| crate::egress::redact_proxy(&u))
            });
            println!("{}: egress through {shown}", r.id);
            notify(&ctx.config).await;
        }
        AccountsCmd::Export { account, out } => {
            let r = find(&ctx, &account).await?;
            let tokens = Tokens {
                id_token: ctx.cipher.open(&r.id_token, &place("accounts", &r.id, "id_token"))?.0,
                access_token: ctx.cipher.open(&r.access_token, &place("accounts", &r.id, "access_token"))?.0,
                refresh_token: ctx.cipher.open(&r.refresh_token, &place("accounts", &r.id, "refresh_token"))?.0,
                account_id: Some(r.chatgpt_account_id.clone()),
            };
            let auth = AuthDotJson {
                auth_mode: Some("chatgpt".into()),
                openai_api_key: None,
                tokens: Some(tokens),
                last_refresh: Some(rfc3339(r.last_refresh_ms.unwrap_or_else(crate::now_ms))),
            };
            let text = serde_json::to_string_pretty(&auth)?;
            match out {
                Some(p) => {
                    write_private(&p, &text).with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("wrote {} (mode 0600). Note: a refresh token is single-use; if both Codex and codex-gate refresh it, one of them will be logged out.", p.display());
                }
                None => println!("{text}"),
            }
            return Ok(());
        }
    }
    notify(&ctx.config).await;
    Ok(())
}

async fn login(ctx: &Ctx, device: bool, paste: bool, port: u16) -> anyhow::Result<()> {
    let p = &ctx.config.pool;
    let oauth = OAuthConfig { issuer: p.issuer.clone(), client_id: p.client_id.clone() };
    // The sign-in reaches the issuer the way the gateway reaches upstreams ([egress]).
    let egress = crate::egress::Egress::new(&ctx.config.egress).map_err(anyhow::Error::msg)?;
    let client = UpstreamClient::with_egress(&[], egress);
    let timeout = Duration::from_secs(15 * 60);
    let tokens = if paste {
        let l = BrowserLogin::start(&oauth, port, &p.originator, false).await?;
        println!("Open this URL in any browser and sign in:\n\n  {}\n\nThen paste the URL the browser ends on (http://localhost:{port}/auth/callback?…):", l.authorize_url);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        l.finish(&client, &oauth, line.trim()).await?
    } else {
        let browser = if device {
            None
        } else {
            match BrowserLogin::start(&oauth, port, &p.originator, true).await {
                Ok(l) => Some(l),
                Err(LoginError::PortBusy(port)) => {
                    eprintln!("port {port} is taken (is Codex signing in?); using the device-code flow instead");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        match browser {
            Some(l) => {
                println!("Open this URL to sign in (waiting up to 15 minutes):\n\n  {}\n", l.authorize_url);
                l.wait(&client, &oauth, timeout).await?
            }
            None => {
                let d = DeviceLogin::start(&client, &oauth).await?;
                println!("Open {} and enter the code {} (it expires in 15 minutes).", d.verification_url, d.user_code);
                d.wait(&client, &oauth, timeout).await?
            }
        }
    };
    added(ctx, &tokens).await
}

/// Unix ms → RFC 3339 UTC (the `last_refresh` format of auth.json).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_755_520_496_000), "2025-08-18T12:34:56Z");
    }
}
