//! Client keys at rest: only a SHA-256 hash and a display prefix of each key are stored, with
//! its policy as JSON. Every change also bumps the `keys_version` setting, which running
//! gateways poll (one tiny read every half second) to pick up keys created, changed or revoked
//! by the CLI or by another instance.

use super::{Store, StoreError};
use sqlx::Row;

/// One stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    /// What lists show: `cg-` and the first characters.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    pub admin: bool,
    /// The key's limits and rules, as JSON (see `crate::access::keys::Policy`).
    pub policy: String,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

const COLS: &str = "id, name, prefix, hash, admin, policy, expires_ms, revoked_ms, created_ms, updated_ms";

macro_rules! read_key {
    ($r:expr) => {{
        let r = $r;
        KeyRow {
            id: r.get("id"),
            name: r.get("name"),
            prefix: r.get("prefix"),
            hash: r.get("hash"),
            admin: r.get("admin"),
            policy: r.get("policy"),
            expires_ms: r.get("expires_ms"),
            revoked_ms: r.get("revoked_ms"),
            created_ms: r.get("created_ms"),
            updated_ms: r.get("updated_ms"),
        }
    }};
}

macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store {
            Store::Sqlite($p) => $body,
            Store::Postgres($p) => $body,
        }
    };
}

/// The setting that changes with every key change.
const VERSION: &str = "keys_version";

impl Store {
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        let q = format!("INSERT INTO client_keys ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        on_pool!(self, p => sqlx::query(&q).bind(&k.id).bind(&k.name).bind(&k.prefix).bind(&k.hash).bind(k.admin)
            .bind(&k.policy).bind(k.expires_ms).bind(k.revoked_ms).bind(k.created_ms).bind(k.updated_ms)
            .execute(p).await?.rows_affected());
        self.bump_keys_version().await
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let q = format!("SELECT {COLS} FROM client_keys ORDER BY created_ms, id");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(&q).fetch_all(p).await?.iter().map(|r| read_key!(r)).collect(),
            Store::Postgres(p) => sqlx::query(&q).fetch_all(p).await?.iter().map(|r| read_key!(r)).collect(),
        })
    }

    /// Write a key's name, policy, admin flag, expiry and revocation; true if it exists.
    pub async fn update_key(&self, k: &KeyRow) -> Result<bool, StoreError> {
        let q = "UPDATE client_keys SET name = $2, policy = $3, admin = $4, expires_ms = $5, revoked_ms = $6, \
                 prefix = $7, hash = $8, updated_ms = $9 WHERE id = $1";
        let n = on_pool!(self, p => sqlx::query(q).bind(&k.id).bind(&k.name).bind(&k.policy).bind(k.admin)
            .bind(k.expires_ms).bind(k.revoked_ms).bind(&k.prefix).bind(&k.hash).bind(crate::now_ms())
            .execute(p).await?.rows_affected());
        self.bump_keys_version().await?;
        Ok(n > 0)
    }

    /// Tells every gateway on this store to reload its keys.
    async fn bump_keys_version(&self) -> Result<(), StoreError> {
        let v = format!("{}-{:016x}", crate::now_ms(), rand::random::<u64>());
        self.set_setting(VERSION, &v).await
    }

    /// The current key version (`None`: no key was ever written).
    pub async fn keys_version(&self) -> Result<Option<String>, StoreError> {
        self.get_setting(VERSION).await
    }
}
