//! Pools measured through the mock's open ChatGPT accounts: the accounts' tokens (made here,
//! taken by the mock because the accounts are open), codex-gate's pool store filled with them,
//! and the Codex `auth.json` files other pooling gateways import.

use anyhow::Context;
use codex_gate::pool::auth::{AuthDotJson, Tokens};
use std::path::Path;

/// The id of open account `i` (what `mock --open-accounts N` opens).
pub fn account_id(i: usize) -> String {
    format!("bench-{i:05}")
}

/// Account `i`'s tokens: an id_token naming it (a Pro plan, so every model is offered) and an
/// access token that does not expire during a run.
pub fn tokens(i: usize) -> Tokens {
    let id = account_id(i);
    Tokens {
        id_token: codex_gate_mock::chatgpt::id_token(&format!("user-{id}"), &id, &format!("{id}@bench.invalid"), "pro"),
        access_token: codex_gate_mock::chatgpt::access_token(&id, 0, 4_000_000_000),
        refresh_token: format!("rt-{id}-0"),
        account_id: Some(id),
    }
}

/// Account `i` as Codex's `auth.json` (what `codex login` writes and pools import), refreshed
/// now: a pool that refreshes tokens by age leaves it alone for the run.
pub fn auth_json(i: usize) -> AuthDotJson {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    AuthDotJson {
        auth_mode: Some("chatgpt".into()),
        openai_api_key: None,
        tokens: Some(tokens(i)),
        last_refresh: Some(codex_gate::commands::accounts::rfc3339(now_ms)),
    }
}

/// Log accounts 0..n into codex-gate's store at `store_url`, sealed with `key_file` (created if
/// missing), as `codex-gate accounts import` does.
pub async fn fill_store(store_url: &str, key_file: &Path, n: usize) -> anyhow::Result<()> {
    let store = codex_gate::store::Store::open(store_url).await?;
    let cipher = codex_gate::secrets::Cipher::load(key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in 0..n {
        codex_gate::pool::state::save_login(&store, &cipher, &tokens(i))
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("saving pool account {i}"))?;
    }
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_names_itself_in_its_tokens() {
        let t = tokens(42);
        let ident = codex_gate::pool::auth::Identity::from_id_token(&t.id_token).unwrap();
        assert_eq!(ident.chatgpt_account_id, "bench-00042");
        assert_eq!(t.account_id.as_deref(), Some("bench-00042"));
        assert_ne!(
            ident.account_key(),
            codex_gate::pool::auth::Identity::from_id_token(&tokens(43).id_token).unwrap().account_key()
        );
        let json = serde_json::to_value(auth_json(42)).unwrap();
        assert_eq!(json["tokens"]["refresh_token"], "rt-bench-00042-0");
    }
}
