//! Client keys: minting (`cg-` + 32 random bytes, URL-safe base64), the policy each carries,
//! and the in-memory set the request path looks keys up in.
//!
//! Keys are stored as SHA-256 hashes, not with a password hash: a key holds 256 random bits,
//! so nothing can be guessed from its hash, and a slow hash would cost milliseconds on every
//! request. The set is replaced whole when the store's `keys_version` changes (polled every
//! 500 ms off the request path), so a key created, changed or revoked anywhere is honoured
//! within a second; each key's live counters survive a reload unless its policy changed.

use super::limits::KeyLimits;
use crate::store::{KeyRow, Store, StoreError};
use base64::Engine;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Which targets a key's traffic may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    #[default]
    Any,
    /// Subscription accounts only: this key never bills an API key.
    Pool,
    /// API-key providers only: this key never spends subscription quota.
    Providers,
}

/// What happens to a request asking for `service_tier: "priority"` (billed at a premium).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TierRule {
    #[default]
    Allow,
    /// Remove the field and serve at the default tier.
    Strip,
    /// Refuse the request (400).
    Refuse,
}

/// The calendar period a budget covers (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    #[default]
    Month,
}

/// A key's limits and rules; every field is optional (absent: no limit).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Exact model names and `prefix*` patterns (empty: every model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Input + output tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub budget_period: Period,
    /// Percent of the pool's 5-hour and weekly windows this key may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_share: Option<f64>,
    #[serde(default)]
    pub targets: Targets,
    #[serde(default)]
    pub service_tier: TierRule,
    /// The pool strategy for this key's traffic (else the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_strategy: Option<String>,
    /// The pool accounts (ids or emails) this key may use (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_accounts: Vec<String>,
}

impl Policy {
    /// Refuse values that cannot work, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.rpm == Some(0) || self.tpm == Some(0) || self.concurrency == Some(0) {
            return Err("--rpm, --tpm and --concurrency must be at least 1 (leave one out for no limit)".into());
        }
        if self.budget_usd.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return Err("--budget-usd must be a non-negative number".into());
        }
        if self.pool_share.is_some_and(|s| !(s > 0.0 && s <= 100.0)) {
            return Err("--pool-share must be a percentage above 0 and at most 100".into());
        }
        if let Some(s) = &self.pool_strategy {
            if crate::pool::select::Strategy::parse(s).is_none() {
                return Err(format!("--pool-strategy {s:?} is not one of usage_aware, round_robin, primary_first, priority_order, fill_first"));
            }
        }
        for m in &self.models {
            if m.is_empty() || m.len() > 256 || m[..m.len() - 1].contains('*') {
                return Err(format!("--models {m:?}: a model name, or a prefix followed by one '*'"));
            }
        }
        Ok(())
    }

    /// May this key use `model` (a route, alias or `provider/model` name)?
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty()
            || self.models.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => p == model,
            })
    }
}

/// A key as the request path sees it.
#[derive(Debug)]
pub struct ClientKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub admin: bool,
    pub policy: Policy,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    /// When its row last changed (a change re-seeds its counters).
    pub updated_ms: i64,
    pub limits: Arc<KeyLimits>,
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
    Revoked,
    Expired,
}

/// Every key, indexed by hash.
#[derive(Debug, Default)]
pub struct KeySet {
    by_hash: HashMap<[u8; 32], Arc<ClientKey>>,
    by_id: HashMap<String, Arc<ClientKey>>,
    /// Some key row exists (even revoked): from then on every request needs a key.
    pub any: bool,
    /// A usable admin key exists: the admin API then needs one, from loopback too.
    pub admin_exists: bool,
    version: Option<String>,
}

impl KeySet {
    /// The key `presented`, if it is one of ours and usable now.
    pub fn check(&self, presented: Option<&str>, now_ms: i64) -> Result<Arc<ClientKey>, Refusal> {
        let presented = presented.ok_or(Refusal::Missing)?;
        let k = self.by_hash.get(&digest(presented)).ok_or(Refusal::Invalid)?;
        if k.revoked {
            return Err(Refusal::Revoked);
        }
        if k.expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(Refusal::Expired);
        }
        Ok(k.clone())
    }

    pub fn get(&self, id: &str) -> Option<Arc<ClientKey>> {
        self.by_id.get(id).cloned()
    }
}

/// The live key set, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Keys {
    set: RwLock<Arc<KeySet>>,
    /// With `[cluster]`, keys' counters are shared through it.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Keys {
    pub fn current(&self) -> Arc<KeySet> {
        self.set.read().clone()
    }

    /// Share keys' counters through `cluster` (before the first sync).
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Reload from the store when its key version changed (or `force`). Counters of keys whose
    /// row is unchanged carry over; a new or changed key starts from the usage the store has
    /// already recorded in its current windows. Returns whether anything was reloaded.
    pub async fn sync(&self, store: &Store, force: bool) -> Result<bool, StoreError> {
        let version = store.keys_version().await?;
        let old = self.current();
        if !force && version == old.version {
            return Ok(false);
        }
        let rows = store.list_keys().await?;
        let now = crate::now_ms();
        let mut set = KeySet { version, any: !rows.is_empty(), ..Default::default() };
        for row in rows {
            let Some(hash) = hex32(&row.hash) else {
                tracing::warn!(key = %row.id, "client key has a malformed hash; skipped");
                continue;
            };
            let policy: Policy = match serde_json::from_str(&row.policy) {
                Ok(p) => p,
                Err(e) => {
                    // Fail closed: a key whose rules cannot be read is not served.
                    tracing::warn!(key = %row.id, error = %e, "client key policy unreadable; the key is refused");
                    continue;
                }
            };
            let revoked = row.revoked_ms.is_some();
            let reuse = old.by_hash.get(&hash).filter(|k| k.updated_ms == row.updated_ms).map(|k| k.limits.clone());
            let limits = match reuse {
                Some(l) => l,
                None => Arc::new(KeyLimits::seeded(&policy, &row.id, store, now, self.cluster.get()).await),
            };
            if row.admin && !revoked && row.expires_ms.is_none_or(|e| e > now) {
                set.admin_exists = true;
            }
            let key = ClientKey {
                id: row.id,
                name: row.name,
                prefix: row.prefix,
                admin: row.admin,
                policy,
                expires_ms: row.expires_ms,
                revoked,
                updated_ms: row.updated_ms,
                limits,
            };
            let key = Arc::new(key);
            set.by_id.insert(key.id.clone(), key.clone());
            set.by_hash.insert(hash, key);
        }
        *self.set.write() = Arc::new(set);
        Ok(true)
    }
}

/// SHA-256 of a presented key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key: (the key, shown once; its display prefix; its stored hash).
pub fn mint() -> (String, String, String) {
    let raw: [u8; 32] = rand::random();
    let key = format!("cg-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let prefix = format!("{}…", &key[..9]);
    let hash = hex(&digest(&key));
    (key, prefix, hash)
}

/// A new row for a key named `name` (the key itself is returned separately, once).
pub fn new_row(name: &str, admin: bool, policy: &Policy, expires_ms: Option<i64>) -> (String, KeyRow) {
    let (key, prefix, hash) = mint();
    let now = crate::now_ms();
    let row = KeyRow {
        id: format!("key_{:012x}", rand::random::<u64>() >> 16),
        name: name.to_owned(),
        prefix,
        hash,
        admin,
        policy: serde_json::to_string(policy).unwrap_or_else(|_| "{}".into()),
        expires_ms,
        revoked_ms: None,
        created_ms: now,
        updated_ms: now,
    };
    (key, row)
}

/// The key a request presents: `Authorization: Bearer …` (Codex `env_key`, OpenClaw `apiKey`,
/// the SDKs' `api_key`) or `x-api-key`.
pub fn presented(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim());
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            return Some(t);
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_are_long_url_safe_and_hash_to_their_row() {
        let (a, prefix, hash) = mint();
        let (b, ..) = mint();
        assert_ne!(a, b);
        assert!(a.starts_with("cg-") && a.len() == 46, "{a}");
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(prefix.starts_with(&a[..9]) && !prefix.contains(&a[9..]));
        assert_eq!(hex32(&hash), Some(digest(&a)));
    }

    #[test]
    fn model_patterns() {
        let p = Policy { models: vec!["gpt-5*".into(), "deepseek/deepseek-chat".into()], ..Default::default() };
        for ok in ["gpt-5", "gpt-5.5", "gpt-5-codex", "deepseek/deepseek-chat"] {
            assert!(p.allows_model(ok), "{ok}");
        }
        for no in ["gpt-4o", "deepseek/deepseek-reasoner", "deepseek-chat", "xgpt-5"] {
            assert!(!p.allows_model(no), "{no}");
        }
        assert!(Policy::default().allows_model("anything"));
        let bad = Policy { models: vec!["a*b".into()], ..Default::default() };
        assert!(bad.validate().is_err());
        assert!(Policy { pool_share: Some(0.0), ..Default::default() }.validate().is_err());
        assert!(Policy { rpm: Some(0), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("x-api-key", "cg-x".parse().unwrap());
        assert_eq!(presented(&h), Some("cg-x"));
        h.insert(http::header::AUTHORIZATION, "bearer  cg-y ".parse().unwrap());
        assert_eq!(presented(&h), Some("cg-y"));
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented(&h), Some("cg-x"));
    }

    #[test]
    fn policies_round_trip_and_refuse_unknown_fields() {
        let p = Policy { rpm: Some(5), targets: Targets::Pool, ..Default::default() };
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&s).unwrap(), p);
        assert!(serde_json::from_str::<Policy>(r#"{"rpn":5}"#).is_err());
    }
}
