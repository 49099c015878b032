//! Accounts of the subscription pool and the small key/value settings table. Tokens arrive and
//! leave sealed (see `crate::secrets`): the store never sees a plaintext token.

use super::{Store, StoreError};
use sqlx::Row;

/// One account row. `*_token` fields are sealed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountRow {
    pub id: String,
    pub chatgpt_user_id: String,
    pub chatgpt_account_id: String,
    pub email: Option<String>,
    pub plan_type: Option<String>,
    /// `active`, `paused` or `reauth_required`.
    pub status: String,
    pub status_reason: Option<String>,
    pub priority: i64,
    pub weight: f64,
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
    pub access_expires_ms: Option<i64>,
    pub last_refresh_ms: Option<i64>,
    pub cooldown_until_ms: i64,
    /// This account's own egress proxy (`direct`, or a proxy URL), sealed; `None`: the provider's.
    pub proxy: Option<String>,
}

/// Run the same statement on whichever pool the store has.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store {
            Store::Sqlite($p) => $body,
            Store::Postgres($p) => $body,
        }
    };
}

const COLS: &str =
    "id, chatgpt_user_id, chatgpt_account_id, email, plan_type, status, status_reason, priority, weight, \
    access_token, refresh_token, id_token, access_expires_ms, last_refresh_ms, cooldown_until_ms";

macro_rules! read_account {
    ($r:expr) => {{
        let r = $r;
        AccountRow {
            id: r.get("id"),
            chatgpt_user_id: r.get("chatgpt_user_id"),
            chatgpt_account_id: r.get("chatgpt_account_id"),
            email: r.get("email"),
            plan_type: r.get("plan_type"),
            status: r.get("status"),
            status_reason: r.get("status_reason"),
            // INTEGER is 64-bit in SQLite and 32-bit in PostgreSQL.
            priority: r
                .try_get::<i64, _>("priority")
                .or_else(|_| r.try_get::<i32, _>("priority").map(i64::from))
                .unwrap_or(0),
            weight: r.get("weight"),
            access_token: r.get("access_token"),
            refresh_token: r.get("refresh_token"),
            id_token: r.get("id_token"),
            access_expires_ms: r.get("access_expires_ms"),
            last_refresh_ms: r.get("last_refresh_ms"),
            cooldown_until_ms: r.get("cooldown_until_ms"),
            proxy: r.get("proxy"),
        }
    }};
}

impl Store {
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let q = "SELECT value FROM settings WHERE key = $1";
        Ok(on_pool!(self, p => sqlx::query_scalar(q).bind(key).fetch_optional(p).await?))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let q =
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        on_pool!(self, p => sqlx::query(q).bind(key).bind(value).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Insert, or update the tokens and profile of the account with the same identity pair
    /// (keeping its priority, weight and id). Returns the stored id.
    pub async fn upsert_account(&self, a: &AccountRow) -> Result<String, StoreError> {
        let now = crate::now_ms();
        let q = format!(
            "INSERT INTO accounts ({COLS}, created_ms, updated_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$16) \
             ON CONFLICT (chatgpt_user_id, chatgpt_account_id) DO UPDATE SET email = excluded.email, plan_type = excluded.plan_type, \
             status = excluded.status, status_reason = excluded.status_reason, access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, id_token = excluded.id_token, access_expires_ms = excluded.access_expires_ms, \
             last_refresh_ms = excluded.last_refresh_ms, updated_ms = excluded.updated_ms RETURNING id"
        );
        macro_rules! run {
            ($p:expr) => {
                sqlx::query_scalar(&q)
                    .bind(&a.id)
                    .bind(&a.chatgpt_user_id)
                    .bind(&a.chatgpt_account_id)
                    .bind(&a.email)
                    .bind(&a.plan_type)
                    .bind(&a.status)
                    .bind(&a.status_reason)
                    .bind(a.priority)
                    .bind(a.weight)
                    .bind(&a.access_token)
                    .bind(&a.refresh_token)
                    .bind(&a.id_token)
                    .bind(a.access_expires_ms)
                    .bind(a.last_refresh_ms)
                    .bind(a.cooldown_until_ms)
                    .bind(now)
                    .fetch_one($p)
                    .await?
            };
        }
        Ok(on_pool!(self, p => run!(p)))
    }

    pub async fn list_accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let q = format!("SELECT {COLS}, proxy FROM accounts ORDER BY created_ms, id");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(&q).fetch_all(p).await?.iter().map(|r| read_account!(r)).collect(),
            Store::Postgres(p) => sqlx::query(&q).fetch_all(p).await?.iter().map(|r| read_account!(r)).collect(),
        })
    }

    /// One account by id.
    pub async fn get_account(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        let q = format!("SELECT {COLS}, proxy FROM accounts WHERE id = $1");
        Ok(match self {
            Store::Sqlite(p) => sqlx::query(&q).bind(id).fetch_optional(p).await?.map(|r| read_account!(&r)),
            Store::Postgres(p) => sqlx::query(&q).bind(id).fetch_optional(p).await?.map(|r| read_account!(&r)),
        })
    }

    /// Delete an account; true if it existed.
    pub async fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        let q = "DELETE FROM accounts WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query(q).bind(id).execute(p).await?.rows_affected()) > 0)
    }

    /// Set status (and reason); true if the account exists.
    pub async fn set_account_status(&self, id: &str, status: &str, reason: Option<&str>) -> Result<bool, StoreError> {
        let q = "UPDATE accounts SET status = $2, status_reason = $3, updated_ms = $4 WHERE id = $1";
        let now = crate::now_ms();
        Ok(
            on_pool!(self, p => sqlx::query(q).bind(id).bind(status).bind(reason).bind(now).execute(p).await?.rows_affected())
                > 0,
        )
    }

    /// Set (or with `None` clear) an account's sealed egress proxy; true if the account exists.
    pub async fn set_account_proxy(&self, id: &str, proxy: Option<&str>) -> Result<bool, StoreError> {
        let q = "UPDATE accounts SET proxy = $2, updated_ms = $3 WHERE id = $1";
        let now = crate::now_ms();
        Ok(on_pool!(self, p => sqlx::query(q).bind(id).bind(proxy).bind(now).execute(p).await?.rows_affected()) > 0)
    }

    pub async fn set_account_routing(&self, id: &str, priority: i64, weight: f64) -> Result<bool, StoreError> {
        let q = "UPDATE accounts SET priority = $2, weight = $3 WHERE id = $1";
        Ok(on_pool!(self, p => sqlx::query(q).bind(id).bind(priority).bind(weight).execute(p).await?.rows_affected())
            > 0)
    }

    /// Store refreshed (sealed) tokens.
    pub async fn update_tokens(&self, a: &AccountRow) -> Result<(), StoreError> {
        let q = "UPDATE accounts SET access_token = $2, refresh_token = $3, id_token = $4, access_expires_ms = $5, \
                 last_refresh_ms = $6, updated_ms = $6 WHERE id = $1";
        on_pool!(self, p => sqlx::query(q).bind(&a.id).bind(&a.access_token).bind(&a.refresh_token).bind(&a.id_token)
            .bind(a.access_expires_ms).bind(a.last_refresh_ms).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn set_cooldown(&self, id: &str, until_ms: i64) -> Result<(), StoreError> {
        let q = "UPDATE accounts SET cooldown_until_ms = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(q).bind(id).bind(until_ms).execute(p).await?.rows_affected());
        Ok(())
    }
}
