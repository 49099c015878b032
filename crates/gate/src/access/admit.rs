//! Admission: what a keyed request may do, decided in memory before any upstream is asked —
//! its model allow-list, which targets it may reach, the service tier, its pool routing, and a
//! reservation against its limits (settled by the tally when the request ends).

use super::keys::{ClientKey, Targets, TierRule};
use super::limits::Reservation;
use super::Caller;
use crate::app::App;
use crate::config::ProviderKind;
use crate::error::GateError;
use crate::pool::PickRules;
use crate::routing::Resolved;
use codex_gate_protocol::body::RequestHead;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What admission decided.
#[derive(Debug)]
pub struct Admitted {
    /// The route's targets this caller may use.
    pub resolved: Arc<Resolved>,
    pub reservation: Option<Reservation>,
    pub pool_rules: PickRules,
    /// Remove `service_tier` from the body before it is sent.
    pub strip_tier: bool,
    pub key_id: Option<String>,
}

/// Bytes of request JSON per token, for the tokens-per-minute estimate made before the
/// upstream counts them (the reservation is corrected by the real count at the end).
const BYTES_PER_TOKEN: usize = 4;

pub async fn admit(
    app: &App,
    caller: Option<&Caller>,
    head: &RequestHead,
    body_len: usize,
    resolved: Arc<Resolved>,
) -> Result<Admitted, GateError> {
    let Some(key) = caller.and_then(Caller::key) else {
        return Ok(Admitted {
            resolved,
            reservation: None,
            pool_rules: PickRules::default(),
            strip_tier: false,
            key_id: None,
        });
    };
    // With `[cluster]`: a request lease from Redis when this instance has none left.
    key.limits.prepare(crate::now_ms()).await;
    admit_key(app, key, head, body_len, resolved, true)
}

/// Admission for a request relayed as it is (images, the backend's other Codex paths), which
/// names a model only sometimes: a named model must be on the key's allow-list; either way the
/// key must be allowed to reach the targets, and the request holds a place in its limits.
pub async fn admit_relayed(
    app: &App,
    caller: Option<&Caller>,
    model: Option<&str>,
    body_len: usize,
    resolved: Arc<Resolved>,
) -> Result<Admitted, GateError> {
    let head = RequestHead {
        model: model.unwrap_or("").to_owned(),
        model_span: 0..0,
        stream: false,
        include_usage: false,
        has_stream_options: false,
        service_tier: None,
    };
    match caller.and_then(Caller::key) {
        Some(key) => {
            key.limits.prepare(crate::now_ms()).await;
            admit_key(app, key, &head, body_len, resolved, model.is_some())
        }
        None => admit(app, caller, &head, body_len, resolved).await,
    }
}

/// Could `key` use model `id`, which resolves to `r` (its allow-list, and a target its
/// target rule lets it reach)?
pub fn may_use(key: &ClientKey, id: &str, r: &Resolved) -> bool {
    key.policy.allows_model(id) && r.targets.iter().any(|t| reachable(key.policy.targets, t.provider.kind))
}

/// May a key with target rule `rule` reach a provider of `kind`?
fn reachable(rule: Targets, kind: ProviderKind) -> bool {
    match rule {
        Targets::Any => true,
        Targets::Pool => kind == ProviderKind::Chatgpt,
        Targets::Providers => kind != ProviderKind::Chatgpt,
    }
}

fn admit_key(
    app: &App,
    key: &Arc<ClientKey>,
    head: &RequestHead,
    body_len: usize,
    resolved: Arc<Resolved>,
    check_model: bool,
) -> Result<Admitted, GateError> {
    let p = &key.policy;
    // A model the key may not use looks like one that does not exist (as OpenAI answers).
    if check_model && !p.allows_model(&head.model) {
        return Err(GateError::ModelNotFound(head.model.clone()));
    }
    let is_pool = |kind: ProviderKind| kind == ProviderKind::Chatgpt;
    let now = crate::now_ms();
    let mut keep: Vec<bool> = resolved.targets.iter().map(|t| reachable(p.targets, t.provider.kind)).collect();
    // A key past its pool share goes to the route's API providers when it has some.
    let any_pool = resolved.targets.iter().zip(&keep).any(|(t, k)| *k && is_pool(t.provider.kind));
    let any_other = resolved.targets.iter().zip(&keep).any(|(t, k)| *k && !is_pool(t.provider.kind));
    if any_pool && any_other && key.limits.pool_share_used(now) {
        for (k, t) in keep.iter_mut().zip(&resolved.targets) {
            *k &= !is_pool(t.provider.kind);
        }
    }
    if keep.iter().all(|k| !k) {
        if !check_model {
            let message = "this key may not use the ChatGPT pool accounts, which serve this path".into();
            return Err(GateError::Forbidden { code: "pool_not_allowed", message });
        }
        return Err(GateError::ModelNotFound(head.model.clone()));
    }
    let pool_only = resolved.targets.iter().zip(&keep).all(|(t, k)| !*k || is_pool(t.provider.kind));
    let resolved = if keep.iter().all(|k| *k) {
        resolved
    } else {
        let targets = resolved.targets.iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| t.clone()).collect();
        Arc::new(Resolved { route: resolved.route.clone(), targets, fallback: resolved.fallback })
    };
    let strip_tier = match (head.service_tier.as_deref(), p.service_tier) {
        (Some("priority"), TierRule::Refuse) => {
            return Err(GateError::BadRequest {
                message: "this key may not ask for service_tier \"priority\"; leave it out or use \"auto\"".into(),
                param: Some("service_tier".into()),
                code: "service_tier_not_allowed",
            })
        }
        (Some("priority"), TierRule::Strip) => true,
        _ => false,
    };
    let reservation = key.limits.reserve(now, (body_len / BYTES_PER_TOKEN) as u64, pool_only).map_err(|l| {
        app.metrics.limited.fetch_add(1, Relaxed);
        GateError::Limited(l)
    })?;
    let pool_rules = PickRules {
        strategy: p.pool_strategy.as_deref().and_then(crate::pool::select::Strategy::parse),
        accounts: p.pool_accounts.clone(),
        prefer: None,
    };
    Ok(Admitted { resolved, reservation: Some(reservation), pool_rules, strip_tier, key_id: Some(key.id.clone()) })
}
