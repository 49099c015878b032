//! The live pool: every account's tokens, status, quota, cooldown and in-flight count in
//! memory; selection under a read lock with no I/O; single-flight token refresh; failover
//! bookkeeping; and the recent routing decisions for `/api/pool`.

use super::auth::{jwt_expiry_ms, Identity};
use super::quota::Quota;
use super::refresh::{refresh, OAuthConfig, RefreshError};
use super::select::{plan_capacity, select, Candidate, Strategy};
use crate::secrets::{place, Cipher};
use crate::store::{AccountRow, Store};
use crate::upstream::client::UpstreamClient;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Active,
    Paused,
    ReauthRequired(String),
}

impl Status {
    pub fn as_str(&self) -> &str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::ReauthRequired(_) => "reauth_required",
        }
    }
}

#[derive(Clone)]
pub struct LiveTokens {
    pub access: String,
    pub refresh: String,
    pub id_token: String,
    pub expires_ms: Option<i64>,
}

/// One account, live.
pub struct AccountState {
    pub id: String,
    pub chatgpt_account_id: String,
    pub email: Option<String>,
    pub plan_type: Option<String>,
    pub priority: i64,
    pub weight: f64,
    pub status: RwLock<Status>,
    pub tokens: RwLock<LiveTokens>,
    refresh_gate: tokio::sync::Mutex<()>,
    pub quota: RwLock<Quota>,
    pub cooldown_until_ms: AtomicI64,
    pub in_flight: AtomicU32,
    /// Requests sent in the last minute (for `[pool] account_rpm`).
    pub rate: super::rate::MinuteRate,
    failures: AtomicU32,
    /// The newest failure (unix ms, error code): the dashboard shows it, and as the cooldown's
    /// reason while one runs.
    pub last_error: Mutex<Option<(i64, String)>>,
    pub refreshes: AtomicU64,
    /// This account's own egress route (`accounts proxy`); `None`: the provider's.
    pub proxy: RwLock<Option<crate::egress::Route>>,
}

impl std::fmt::Debug for AccountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountState").field("id", &self.id).finish()
    }
}

/// Holds one in-flight slot on an account; released on drop. `.1`: why it was picked.
#[derive(Debug)]
pub struct InFlight(pub Arc<AccountState>, pub Picked);

/// Why selection chose an account, and out of how many (the request log's attempt trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    pub why: &'static str,
    /// Accounts that could serve (active, not cooling down, not yet tried) of those the caller may use.
    pub usable: usize,
    pub of: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A caller's own pool routing (a key's override): its strategy, and the accounts (ids or
/// emails) it may use; empty and `None` mean the pool's own.
#[derive(Debug, Clone, Default)]
pub struct PickRules {
    pub strategy: Option<Strategy>,
    pub accounts: Vec<String>,
    /// The account to keep when it can serve (the turn state's): it beats session affinity.
    pub prefer: Option<String>,
}

impl PickRules {
    fn allows(&self, a: &AccountState) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|x| *x == a.id || a.email.as_deref() == Some(x.as_str()))
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub strategy: Strategy,
    /// Per-account concurrent requests before spilling to others (0: no cap).
    pub account_concurrency: u32,
    /// Per-account requests per minute before spilling to others (0: no cap).
    pub account_rpm: u32,
    pub affinity_ttl: Duration,
    /// A sticky session moves at a turn boundary once its account passes this used percent.
    pub switch_threshold: f64,
    /// Accounts tried per request.
    pub max_attempts: u32,
    pub oauth: OAuthConfig,
    /// `originator` on the pool's own calls to the backend (usage, catalog).
    pub originator: String,
}

/// A routing decision, for `/api/pool`.
#[derive(Debug, Clone)]
pub struct Decision {
    pub ts_ms: i64,
    pub account: String,
    pub reason: String,
}

/// Why no account could be picked.
#[derive(Debug, Clone, PartialEq)]
pub enum NoAccount {
    Empty,
    /// Every usable account is limited or cooling down; the soonest becomes usable at `resets_at` (unix s).
    Exhausted {
        resets_at: i64,
        plan_type: String,
        accounts: usize,
    },
    /// Every account needs a new login.
    ReauthRequired {
        accounts: usize,
    },
}

/// Session → account, with expiry. Clients choose session ids, so the map is bounded: keys are
/// at most [`MAX_SESSION_KEY`] bytes (longer ones are hashed), expired entries are swept as
/// new ones arrive, and past [`MAX_SESSIONS`] live entries new sessions go without affinity.
#[derive(Debug, Default)]
pub struct Affinity {
    map: HashMap<String, (String, Instant)>,
    last_sweep: Option<Instant>,
}

const MAX_SESSION_KEY: usize = 128;
const MAX_SESSIONS: usize = 100_000;

fn affinity_key(session: &str) -> std::borrow::Cow<'_, str> {
    if session.len() <= MAX_SESSION_KEY {
        return std::borrow::Cow::Borrowed(session);
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(session.as_bytes());
    std::borrow::Cow::Owned(h.iter().map(|b| format!("{b:02x}")).collect())
}

impl Affinity {
    fn insert(&mut self, key: String, account: String, ttl: Duration) {
        let now = Instant::now();
        let sweep_due = self.last_sweep.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60));
        if sweep_due || self.map.len() >= MAX_SESSIONS {
            self.last_sweep = Some(now);
            self.map.retain(|_, (_, exp)| *exp > now);
        }
        if self.map.len() < MAX_SESSIONS || self.map.contains_key(&key) {
            self.map.insert(key, (account, now + ttl));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub struct Pool {
    pub(super) accounts: RwLock<Vec<Arc<AccountState>>>,
    pub settings: PoolSettings,
    affinity: Mutex<Affinity>,
    rr: AtomicU64,
    decisions: Mutex<VecDeque<Decision>>,
    store: Store,
    cipher: Cipher,
    client: UpstreamClient,
    /// What the accounts' plans offer (see [`super::catalog`]).
    pub catalog: super::catalog::Catalog,
    /// Other instances, with `[cluster]` (see [`super::shared`]).
    pub(super) cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Bumped whenever what [`Pool::pooled_usage`] reads changes (accounts, status, quota,
    /// cooldown), so the pooled view is computed once per change and second, not per turn.
    pub(super) usage_gen: AtomicU64,
    pub(super) usage_cache: Mutex<Option<((u64, i64), super::usage::PooledUsage)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} accounts)", self.accounts.read().len())
    }
}

/// The exponential backoff for the n-th consecutive failure: 5 s, 10 s, … up to 5 min.
fn backoff(n: u32) -> Duration {
    Duration::from_secs((5u64 << n.min(6)).min(300))
}

impl Pool {
    pub fn new(settings: PoolSettings, store: Store, cipher: Cipher, client: UpstreamClient) -> Pool {
        Pool {
            accounts: RwLock::new(Vec::new()),
            settings,
            affinity: Mutex::new(Affinity::default()),
            rr: AtomicU64::new(0),
            decisions: Mutex::new(VecDeque::new()),
            store,
            cipher,
            client,
            catalog: Default::default(),
            cluster: Default::default(),
            usage_gen: AtomicU64::new(0),
            usage_cache: Mutex::new(None),
        }
    }

    /// (Re)load every account from the store. Tokens that cannot be opened mark the account
    /// `reauth_required` instead of failing the start.
    pub async fn load(&self) -> Result<usize, crate::store::StoreError> {
        let rows = self.store.list_accounts().await?;
        let mut live = Vec::with_capacity(rows.len());
        for r in rows {
            let open = |s: &str, column: &str| self.cipher.open(s, &place("accounts", &r.id, column));
            let opened = (
                open(&r.access_token, "access_token"),
                open(&r.refresh_token, "refresh_token"),
                open(&r.id_token, "id_token"),
            );
            let (tokens, mut status) = match opened {
                (Ok((access, l1)), Ok((refresh, l2)), Ok((id_token, l3))) => {
                    let tokens = LiveTokens { access, refresh, id_token, expires_ms: r.access_expires_ms };
                    if l1 || l2 || l3 {
                        // Sealed in the first format (no associated data): seal again, bound to
                        // this row and column.
                        let row = sealed_row(&self.cipher, &r.id, &tokens, r.last_refresh_ms);
                        if let Err(e) = self.store.update_tokens(&row).await {
                            tracing::warn!(account = %r.id, error = %e, "could not reseal stored tokens");
                        }
                    }
                    (tokens, None)
                }
                _ => (
                    LiveTokens {
                        access: String::new(),
                        refresh: String::new(),
                        id_token: String::new(),
                        expires_ms: None,
                    },
                    Some(Status::ReauthRequired("stored tokens cannot be opened with this key".into())),
                ),
            };
            if status.is_none() {
                status = Some(match r.status.as_str() {
                    "paused" => Status::Paused,
                    "reauth_required" => Status::ReauthRequired(r.status_reason.clone().unwrap_or_default()),
                    _ => Status::Active,
                });
            }
            // Sealed like the tokens (a proxy URL may carry a password).
            let proxy_url = r.proxy.as_deref().map(|s| self.cipher.open(s, &place("accounts", &r.id, "proxy")));
            let proxy = match proxy_url.as_ref().map(|r| r.as_ref().map(|(u, _)| u.as_str())) {
                None | Some(Ok("")) => None,
                Some(Ok("direct")) => Some(crate::egress::Route::Direct),
                Some(Err(_)) => {
                    tracing::warn!(account = %r.id, "account proxy cannot be opened with this key; the account is paused");
                    status = Some(Status::Paused);
                    None
                }
                Some(Ok(u)) => match crate::egress::parse_proxy(u) {
                    Ok(p) => Some(crate::egress::Route::Proxy(p)),
                    Err(e) => {
                        // Never fall back to a direct connection the operator routed away from.
                        tracing::warn!(account = %r.id, error = %e, "account proxy is invalid; the account is paused");
                        status = Some(Status::Paused);
                        None
                    }
                },
            };
            live.push(Arc::new(AccountState {
                proxy: RwLock::new(proxy),
                id: r.id,
                chatgpt_account_id: r.chatgpt_account_id,
                email: r.email,
                plan_type: r.plan_type,
                priority: r.priority,
                weight: r.weight,
                status: RwLock::new(status.unwrap_or(Status::Active)),
                tokens: RwLock::new(tokens),
                refresh_gate: tokio::sync::Mutex::new(()),
                quota: RwLock::new(Quota::default()),
                cooldown_until_ms: AtomicI64::new(r.cooldown_until_ms),
                in_flight: AtomicU32::new(0),
                last_error: Mutex::new(None),
                rate: Default::default(),
                failures: AtomicU32::new(0),
                refreshes: AtomicU64::new(0),
            }));
        }
        // Accounts already live keep their in-flight slots, quota and cooldowns; only their
        // tokens and status are taken from the store.
        let mut current = self.accounts.write();
        let merged: Vec<Arc<AccountState>> = live
            .into_iter()
            .map(|new| match current.iter().find(|old| old.id == new.id) {
                Some(old) => {
                    *old.tokens.write() = new.tokens.read().clone();
                    *old.status.write() = new.status.read().clone();
                    *old.proxy.write() = new.proxy.read().clone();
                    old.cooldown_until_ms.fetch_max(new.cooldown_until_ms.load(Relaxed), Relaxed);
                    old.clone()
                }
                None => new,
            })
            .collect();
        let n = merged.len();
        *current = merged;
        self.usage_changed();
        Ok(n)
    }

    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    pub fn accounts(&self) -> Vec<Arc<AccountState>> {
        self.accounts.read().clone()
    }

    fn candidates(&self, accounts: &[Arc<AccountState>], now_ms: i64) -> Vec<Candidate> {
        let now_s = now_ms / 1000;
        accounts
            .iter()
            .map(|a| {
                let q = a.quota.read();
                Candidate {
                    available: *a.status.read() == Status::Active && a.cooldown_until_ms.load(Relaxed) <= now_ms,
                    in_flight: a.in_flight.load(Relaxed),
                    cap: self.settings.account_concurrency,
                    rate_full: self.settings.account_rpm > 0
                        && a.rate.used(now_ms) >= f64::from(self.settings.account_rpm),
                    primary_used: Quota::used(q.primary.as_ref(), now_s),
                    secondary_used: Quota::used(q.secondary.as_ref(), now_s),
                    primary_reset_in: q.primary.and_then(|w| w.reset_at).map(|r| (r - now_s).max(0) as f64),
                    capacity: plan_capacity(a.plan_type.as_deref()) * a.weight,
                    priority: a.priority,
                }
            })
            .collect()
    }

    /// Pick an account for a request with session key `session` (if any), skipping `tried`,
    /// under the caller's `rules`. Holds no lock across I/O; takes an in-flight slot on the
    /// account.
    pub fn pick(&self, session: Option<&str>, tried: &[String], rules: &PickRules) -> Result<InFlight, NoAccount> {
        self.pick_at(session, tried, rules, crate::now_ms())
    }

    /// Live session-affinity entries.
    pub fn affinity_len(&self) -> usize {
        self.affinity.lock().len()
    }

    /// The account a session is kept on, if the affinity holds one that has not expired.
    pub fn affinity_of(&self, session: &str) -> Option<String> {
        let aff = self.affinity.lock();
        let (id, exp) = aff.map.get(affinity_key(session).as_ref())?;
        (*exp > Instant::now()).then(|| id.clone())
    }

    /// [`Pool::pick`] at a given time (cooldowns and window resets are judged against it).
    pub fn pick_at(
        &self,
        session: Option<&str>,
        tried: &[String],
        rules: &PickRules,
        now_ms: i64,
    ) -> Result<InFlight, NoAccount> {
        let all = self.accounts.read();
        // A key limited to some accounts sees only those, as if the pool had no others.
        let subset: Vec<Arc<AccountState>>;
        let accounts: &[Arc<AccountState>] = if rules.accounts.is_empty() {
            &all
        } else {
            subset = all.iter().filter(|a| rules.allows(a)).cloned().collect();
            &subset
        };
        if accounts.is_empty() {
            return Err(NoAccount::Empty);
        }
        let mut cands = self.candidates(accounts, now_ms);
        for (c, a) in cands.iter_mut().zip(accounts.iter()) {
            if tried.contains(&a.id) {
                c.available = false;
            }
        }
        let pinned = rules.prefer.as_deref().and_then(|id| accounts.iter().position(|a| a.id == id));
        let sticky = pinned.filter(|&i| cands[i].available).or_else(|| {
            session.and_then(|s| {
                let aff = self.affinity.lock();
                let (id, exp) = aff.map.get(affinity_key(s).as_ref())?;
                (*exp > Instant::now()).then(|| accounts.iter().position(|a| &a.id == id)).flatten()
            })
        });
        let rr = self.rr.fetch_add(1, Relaxed);
        let strategy = rules.strategy.unwrap_or(self.settings.strategy);
        let Some((i, reason)) = select(&cands, strategy, rr, sticky, self.settings.switch_threshold) else {
            return Err(self.why_none(accounts, now_ms));
        };
        let a = accounts[i].clone();
        a.in_flight.fetch_add(1, Relaxed);
        a.rate.count(now_ms);
        if let Some(s) = session {
            let key = affinity_key(s).into_owned();
            if sticky != Some(i) {
                // A new or moved session: the other instances keep it on the same account.
                self.publish_affinity(&key, &a.id);
            }
            self.affinity.lock().insert(key, a.id.clone(), self.settings.affinity_ttl);
        }
        self.decide(&a.id, reason.to_owned());
        let usable = cands.iter().filter(|c| c.available).count();
        Ok(InFlight(a, Picked { why: reason, usable, of: accounts.len() }))
    }

    fn why_none(&self, accounts: &[Arc<AccountState>], now_ms: i64) -> NoAccount {
        let reauth = accounts.iter().filter(|a| matches!(*a.status.read(), Status::ReauthRequired(_))).count();
        if reauth == accounts.len() {
            return NoAccount::ReauthRequired { accounts: reauth };
        }
        let now_s = now_ms / 1000;
        let usable_at = |a: &AccountState| {
            let q = a.quota.read();
            let mut t = a.cooldown_until_ms.load(Relaxed) / 1000;
            for w in [q.primary, q.secondary].into_iter().flatten() {
                if Quota::used(Some(&w), now_s) >= 100.0 {
                    t = t.max(w.reset_at.unwrap_or(now_s + 300));
                }
            }
            t.max(now_s)
        };
        let soonest = accounts.iter().filter(|a| *a.status.read() == Status::Active).min_by_key(|a| usable_at(a));
        NoAccount::Exhausted {
            resets_at: soonest.map_or(now_s + 300, |a| usable_at(a)),
            plan_type: soonest.and_then(|a| a.plan_type.clone()).unwrap_or_else(|| "plus".into()),
            accounts: accounts.len(),
        }
    }

    fn decide(&self, account: &str, reason: String) {
        let mut d = self.decisions.lock();
        if d.len() >= 200 {
            d.pop_front();
        }
        d.push_back(Decision { ts_ms: crate::now_ms(), account: account.to_owned(), reason });
    }

    /// A usable access token: refreshed first when it expires within 5 minutes, or when
    /// `rejected` (the token an upstream just answered 401 to) is still the current one.
    /// At most one refresh per account runs at a time; waiters reuse its result.
    pub async fn access_token(&self, a: &AccountState, rejected: Option<&str>) -> Result<String, RefreshError> {
        let fresh = |t: &LiveTokens| t.expires_ms.is_none_or(|e| e - 300_000 > crate::now_ms());
        {
            let t = a.tokens.read();
            if rejected.is_none() && fresh(&t) {
                return Ok(t.access.clone());
            }
        }
        let _gate = a.refresh_gate.lock().await;
        let current = a.tokens.read().clone();
        match rejected {
            Some(r) if r != current.access => return Ok(current.access), // refreshed meanwhile
            None if fresh(&current) => return Ok(current.access),
            _ => {}
        }
        // With other instances, one refreshes and the rest use its tokens.
        let lock = match self.refresh_turn(a, &current).await? {
            super::shared::Turn::Adopted(access) => return Ok(access),
            super::shared::Turn::Mine(lock) => Some(lock),
            super::shared::Turn::Alone => None,
        };
        let result = self.refresh_now(a, current).await;
        if let Some(lock) = lock {
            if result.is_ok() {
                self.publish_tokens(a);
            }
            lock.release().await;
        }
        result
    }

    /// Refresh `a`'s tokens at the issuer now (the caller holds its refresh turn).
    async fn refresh_now(&self, a: &AccountState, current: LiveTokens) -> Result<String, RefreshError> {
        a.refreshes.fetch_add(1, Relaxed);
        match refresh(&self.client, &self.settings.oauth, &current.refresh).await {
            Ok(ans) => {
                let next = LiveTokens {
                    expires_ms: ans.access_token.as_deref().and_then(jwt_expiry_ms).or(current.expires_ms),
                    access: ans.access_token.unwrap_or(current.access),
                    refresh: ans.refresh_token.unwrap_or(current.refresh),
                    id_token: ans.id_token.unwrap_or(current.id_token),
                };
                // Refresh tokens are single-use: persist the rotated one before using the new
                // access token, so a crash now cannot leave only a dead token on disk.
                let row = sealed_row(&self.cipher, &a.id, &next, Some(crate::now_ms()));
                if let Err(e) = self.store.update_tokens(&row).await {
                    tracing::error!(account = %a.id, error = %e, "could not persist refreshed tokens");
                }
                let access = next.access.clone();
                *a.tokens.write() = next;
                a.failures.store(0, Relaxed);
                tracing::info!(account = %a.id, "access token refreshed");
                Ok(access)
            }
            Err(RefreshError::Permanent(reason)) => {
                tracing::warn!(account = %a.id, %reason, "refresh token is dead; the account needs a new login");
                self.set_status(a, Status::ReauthRequired(reason.clone())).await;
                Err(RefreshError::Permanent(reason))
            }
            Err(RefreshError::Transient(e)) => {
                tracing::warn!(account = %a.id, error = %e, "token refresh failed; backing off");
                self.cool_down(a, None);
                Err(RefreshError::Transient(e))
            }
        }
    }

    pub async fn set_status(&self, a: &AccountState, status: Status) {
        let reason = match &status {
            Status::ReauthRequired(r) => Some(r.clone()),
            _ => None,
        };
        let name = status.as_str().to_owned();
        *a.status.write() = status;
        self.usage_changed();
        if let Err(e) = self.store.set_account_status(&a.id, &name, reason.as_deref()).await {
            tracing::warn!(account = %a.id, error = %e, "could not persist account status");
        }
    }

    /// Cool an account down until `until_s` (unix s), or by exponential backoff. Persisted in
    /// the background so it survives a restart without blocking the request.
    pub fn cool_down(&self, a: &AccountState, until_s: Option<i64>) {
        let n = a.failures.fetch_add(1, Relaxed);
        let until_ms = match until_s {
            Some(s) => s * 1000,
            None => crate::now_ms() + backoff(n).as_millis() as i64,
        };
        a.cooldown_until_ms.fetch_max(until_ms, Relaxed);
        self.usage_changed();
        let (store, id, at) = (self.store.clone(), a.id.clone(), a.cooldown_until_ms.load(Relaxed));
        tokio::spawn(async move {
            if let Err(e) = store.set_cooldown(&id, at).await {
                tracing::warn!(account = %id, error = %e, "could not persist cooldown");
            }
        });
        self.decide(&a.id, format!("cooldown until {}", until_ms / 1000));
        self.publish_cooldown(a);
    }

    /// A session's account, as another instance chose it.
    pub(super) fn remember_session(&self, key: &str, account: &str) {
        self.affinity.lock().insert(key.to_owned(), account.to_owned(), self.settings.affinity_ttl);
    }

    /// The account's tokens as the store has them now (another instance may have refreshed).
    pub(super) async fn stored_tokens(&self, id: &str) -> Option<LiveTokens> {
        let r = self.store.get_account(id).await.ok()??;
        let open = |s: &str, column: &str| self.cipher.open(s, &place("accounts", id, column)).ok().map(|(v, _)| v);
        Some(LiveTokens {
            access: open(&r.access_token, "access_token")?,
            refresh: open(&r.refresh_token, "refresh_token")?,
            id_token: open(&r.id_token, "id_token")?,
            expires_ms: r.access_expires_ms,
        })
    }

    pub fn succeeded(&self, a: &AccountState) {
        a.failures.store(0, Relaxed);
    }

    /// Remember why a request on `a` failed.
    pub fn failed(&self, a: &AccountState, code: &str) {
        *a.last_error.lock() = Some((crate::now_ms(), code.to_owned()));
    }

    /// Learn account `a`'s quota. Returns how much of the whole pool's 5-hour and weekly
    /// capacity the change used, in percent (the account's rise, scaled by its share of the
    /// pool's capacity), which a key's pool share is counted in.
    pub fn update_quota(&self, a: &AccountState, q: Quota) -> (f64, f64) {
        let now_s = q.updated_ms / 1000;
        let before = {
            let cur = a.quota.read();
            (Quota::used(cur.primary.as_ref(), now_s), Quota::used(cur.secondary.as_ref(), now_s))
        };
        self.merge_quota(a, q);
        let after = {
            let cur = a.quota.read();
            (Quota::used(cur.primary.as_ref(), now_s), Quota::used(cur.secondary.as_ref(), now_s))
        };
        if after != before {
            let q = a.quota.read().clone();
            self.publish_quota(a, &q);
        }
        let rise = ((after.0 - before.0).max(0.0), (after.1 - before.1).max(0.0));
        if rise == (0.0, 0.0) {
            return rise;
        }
        let cap = |x: &AccountState| plan_capacity(x.plan_type.as_deref()) * x.weight;
        let total: f64 =
            self.accounts.read().iter().filter(|x| *x.status.read() == Status::Active).map(|x| cap(x)).sum();
        let share = if total > 0.0 { cap(a) / total } else { 1.0 };
        (rise.0 * share, rise.1 * share)
    }

    /// What the pooled usage view reads has changed.
    pub(super) fn usage_changed(&self) {
        self.usage_gen.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    pub(super) fn merge_quota(&self, a: &AccountState, q: Quota) {
        let mut cur = a.quota.write();
        let merged = Quota {
            primary: q.primary.or(cur.primary),
            secondary: q.secondary.or(cur.secondary),
            credits_has: q.credits_has.or(cur.credits_has),
            credits_unlimited: q.credits_unlimited.or(cur.credits_unlimited),
            credits_balance: q.credits_balance.or(cur.credits_balance.clone()),
            updated_ms: cur.updated_ms,
        };
        // Most turns report what is already known: only a change recomputes the pooled view
        // (after the write, so a view computed meanwhile is not kept).
        let changed = merged != *cur;
        *cur = Quota { updated_ms: q.updated_ms, ..merged };
        drop(cur);
        if changed {
            self.usage_changed();
        }
    }

    /// Ask `{base_url}/wham/usage` for every active account's windows (the third quota signal,
    /// next to response headers and `codex.rate_limits` events). Returns accounts updated.
    pub async fn poll_usage(&self, base_url: &str) -> usize {
        let mut updated = 0;
        for a in self.accounts() {
            if *a.status.read() != Status::Active {
                continue;
            }
            let fetched = self.get_json(&a, &format!("{base_url}/wham/usage")).await;
            if let Some(q) = fetched.and_then(|v| Quota::from_usage(&v, crate::now_ms())) {
                self.merge_quota(&a, q);
                updated += 1;
            }
        }
        updated
    }

    /// `GET url` as account `a` (its token and account id), the JSON answer of a 2xx within 10 s.
    pub(super) async fn get_json(&self, a: &AccountState, url: &str) -> Option<Value> {
        let token = self.access_token(a, None).await.ok()?;
        let req = http::Request::get(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header("chatgpt-account-id", &a.chatgpt_account_id)
            .header(http::header::ACCEPT, "application/json")
            .header("originator", &self.settings.originator)
            .body(bytes::Bytes::new())
            .ok()?;
        let fetch = async {
            let resp = self.client.request(req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
            serde_json::from_slice::<Value>(&body).ok()
        };
        tokio::time::timeout(Duration::from_secs(10), fetch).await.ok().flatten()
    }

    pub fn find(&self, id: &str) -> Option<Arc<AccountState>> {
        self.accounts.read().iter().find(|a| a.id == id).cloned()
    }

    /// `/api/pool`: accounts, windows, cooldowns, in-flight, and recent decisions.
    pub fn snapshot(&self) -> Value {
        let now_ms = crate::now_ms();
        let accounts: Vec<Value> = self
            .accounts
            .read()
            .iter()
            .map(|a| {
                let status = a.status.read().clone();
                let reason = match &status {
                    Status::ReauthRequired(r) => Some(r.clone()),
                    _ => None,
                };
                let cd = a.cooldown_until_ms.load(Relaxed);
                let last_error = a.last_error.lock().clone();
                let cooling = cd > now_ms;
                json!({"id": a.id, "email": a.email, "plan_type": a.plan_type, "status": status.as_str(), "status_reason": reason,
                       "priority": a.priority, "weight": a.weight, "in_flight": a.in_flight.load(Relaxed),
                       "cooldown_until": cooling.then_some(cd / 1000),
                       "cooldown_reason": last_error.as_ref().filter(|_| cooling).map(|e| e.1.clone()),
                       "last_error": last_error.map(|(ts_ms, code)| json!({"ts_ms": ts_ms, "code": code})),
                       "refreshes": a.refreshes.load(Relaxed),
                       "rate_limit": a.quota.read().usage_json(now_ms / 1000)})
            })
            .collect();
        let decisions: Vec<Value> = self
            .decisions
            .lock()
            .iter()
            .rev()
            .map(|d| json!({"ts_ms": d.ts_ms, "account": d.account, "reason": d.reason}))
            .collect();
        json!({"strategy": format!("{:?}", self.settings.strategy), "accounts": accounts, "decisions": decisions})
    }
}

/// Seal and store a new login (from import or OAuth); returns the account id.
pub async fn save_login(
    store: &Store,
    cipher: &Cipher,
    tokens: &super::auth::Tokens,
) -> Result<(String, Identity), String> {
    let ident = Identity::from_id_token(&tokens.id_token)?;
    let id = ident.account_key();
    let row = AccountRow {
        id: id.clone(),
        chatgpt_user_id: ident.chatgpt_user_id.clone(),
        chatgpt_account_id: ident.chatgpt_account_id.clone(),
        email: ident.email.clone(),
        plan_type: ident.plan_type.clone(),
        status: "active".into(),
        status_reason: None,
        priority: 0,
        weight: 1.0,
        access_token: cipher.seal(&tokens.access_token, &place("accounts", &id, "access_token")),
        refresh_token: cipher.seal(&tokens.refresh_token, &place("accounts", &id, "refresh_token")),
        id_token: cipher.seal(&tokens.id_token, &place("accounts", &id, "id_token")),
        access_expires_ms: jwt_expiry_ms(&tokens.access_token),
        last_refresh_ms: Some(crate::now_ms()),
        cooldown_until_ms: 0,
        proxy: None,
    };
    let id = store.upsert_account(&row).await.map_err(|e| e.to_string())?;
    Ok((id, ident))
}

/// The token columns of account `id`, sealed for their places, for `update_tokens`.
fn sealed_row(cipher: &Cipher, id: &str, t: &LiveTokens, last_refresh_ms: Option<i64>) -> AccountRow {
    AccountRow {
        id: id.to_owned(),
        access_token: cipher.seal(&t.access, &place("accounts", id, "access_token")),
        refresh_token: cipher.seal(&t.refresh, &place("accounts", id, "refresh_token")),
        id_token: cipher.seal(&t.id_token, &place("accounts", id, "id_token")),
        access_expires_ms: t.expires_ms,
        last_refresh_ms,
        ..Default::default()
    }
}

/// Refuse to start with a key other than the one the data was sealed with.
pub async fn check_key(store: &Store, cipher: &Cipher) -> anyhow::Result<()> {
    match store.get_setting("key_fingerprint").await? {
        None => store.set_setting("key_fingerprint", cipher.fingerprint()).await?,
        Some(f) if f == cipher.fingerprint() => {}
        Some(f) => anyhow::bail!(
            "the encryption key (fingerprint {}) is not the key this data was sealed with (fingerprint {f}); \
             set CODEX_GATE_ENCRYPTION_KEY to the original key or restore the original key file",
            cipher.fingerprint()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_stays_bounded_however_many_sessions_clients_invent() {
        let mut a = Affinity::default();
        for i in 0..(MAX_SESSIONS + 50_000) {
            a.insert(affinity_key(&format!("s{i}")).into_owned(), "acct".into(), Duration::ZERO);
        }
        assert!(a.len() <= MAX_SESSIONS, "{}", a.len());
        // Expired entries are swept by the next insert once the map is full or a minute passed.
        a.last_sweep = Some(Instant::now() - Duration::from_secs(61));
        a.insert("fresh".into(), "acct".into(), Duration::from_secs(60));
        assert_eq!(a.len(), 1, "expired entries were swept");
        let long = "k".repeat(1 << 20);
        let key = affinity_key(&long);
        assert_eq!(key.len(), 64);
        assert_eq!(key, affinity_key(&long), "the same session maps to the same key");
    }
}
