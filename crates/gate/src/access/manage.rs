//! Key administration shared by `codex-gate keys …` and `/api/keys…`: create, change (a JSON
//! merge patch over the key's settings, `null` clearing one), revoke, rotate, and the view of a
//! key that lists and APIs show (never the key, only its prefix).

use super::keys::{new_row, Policy};
use crate::store::{KeyRow, Store, StoreError};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings that are not part of the policy.
const OWN_FIELDS: [&str; 3] = ["name", "admin", "expires"];

/// `expires` as Unix ms: `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM[:SS]Z`, a duration
/// from now (`90d`, `12h`, `30m`), or Unix ms as a number.
pub fn parse_expiry(v: &Value, now_ms: i64) -> Result<Option<i64>, String> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => return n.as_i64().map(Some).ok_or_else(|| "expires: not a Unix time in ms".to_owned()),
        Value::String(s) => s.trim(),
        _ => return Err("expires: a date (2027-01-31), a time (2027-01-31T12:00Z) or a duration (90d)".into()),
    };
    let bad = || format!("expires {s:?}: use a date (2027-01-31), a time (2027-01-31T12:00Z) or a duration (90d, 12h)");
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm')) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let ms = match unit {
                'd' => 86_400_000,
                'h' => 3_600_000,
                _ => 60_000,
            };
            return if n > 0 { Ok(Some(now_ms + n * ms)) } else { Err(bad()) };
        }
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (Some(Some(y)), Some(Some(m)), Some(Some(day)), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut ms = super::limits::days_from_civil(y, m as u32, day as u32) * 86_400_000;
    if let Some(t) = time {
        let parts: Vec<Option<i64>> = t.split(':').map(|p| p.parse().ok()).collect();
        let (h, min, sec) = match parts.as_slice() {
            [Some(h), Some(m)] => (*h, *m, 0),
            [Some(h), Some(m), Some(s)] => (*h, *m, *s),
            _ => return Err(bad()),
        };
        if h > 23 || min > 59 || sec > 59 {
            return Err(bad());
        }
        ms += ((h * 60 + min) * 60 + sec) * 1000;
    }
    Ok(Some(ms))
}

/// Apply `patch` (a merge patch of `name`, `admin`, `expires` and policy fields) to `row`.
fn apply(row: &mut KeyRow, patch: &Map<String, Value>, now_ms: i64) -> Result<(), ManageError> {
    let invalid = ManageError::Invalid;
    if let Some(v) = patch.get("name") {
        let name = v.as_str().map(str::trim).unwrap_or("");
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(invalid("name: 1 to 128 characters, no control characters".into()));
        }
        row.name = name.to_owned();
    }
    if let Some(v) = patch.get("admin") {
        row.admin = v.as_bool().ok_or_else(|| invalid("admin: true or false".into()))?;
    }
    if let Some(v) = patch.get("expires") {
        row.expires_ms = parse_expiry(v, now_ms).map_err(invalid)?;
    }
    let mut policy: Value = serde_json::from_str(&row.policy).unwrap_or_else(|_| json!({}));
    let obj = policy.as_object_mut().ok_or_else(|| invalid("stored policy is not an object".into()))?;
    for (k, v) in patch.iter().filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str())) {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    let p: Policy = serde_json::from_value(policy).map_err(|e| invalid(format!("key settings: {e}")))?;
    p.validate().map_err(invalid)?;
    row.policy = serde_json::to_string(&p).unwrap_or_else(|_| "{}".into());
    Ok(())
}

/// Create a key from `spec` (needs `name`). Returns the key (to show once) and its row.
pub async fn create(store: &Store, spec: &Map<String, Value>) -> Result<(String, KeyRow), ManageError> {
    if !spec.get("name").is_some_and(Value::is_string) {
        return Err(ManageError::Invalid("name is required".into()));
    }
    let (key, mut row) = new_row("", false, &Policy::default(), None);
    apply(&mut row, spec, crate::now_ms())?;
    store.insert_key(&row).await?;
    Ok((key, row))
}

/// The key with this id, name or prefix (`cg-abcd12`).
pub async fn find(store: &Store, who: &str) -> Result<KeyRow, ManageError> {
    let rows = store.list_keys().await?;
    let who = who.trim_end_matches('…');
    let hits: Vec<KeyRow> = match rows.iter().find(|r| r.id == who) {
        Some(r) => vec![r.clone()],
        None => rows
            .into_iter()
            .filter(|r| r.name == who || (who.len() >= 6 && r.prefix.trim_end_matches('…').starts_with(who)))
            .collect(),
    };
    match hits.len() {
        1 => Ok(hits.into_iter().next().expect("one hit")),
        0 => Err(ManageError::NotFound(format!("no key {who:?}; see `codex-gate keys list`"))),
        n => Err(ManageError::Invalid(format!("{who:?} matches {n} keys; use the key id from `codex-gate keys list`"))),
    }
}

pub async fn update(store: &Store, who: &str, patch: &Map<String, Value>) -> Result<KeyRow, ManageError> {
    let mut row = find(store, who).await?;
    apply(&mut row, patch, crate::now_ms())?;
    store.update_key(&row).await?;
    Ok(row)
}

pub async fn revoke(store: &Store, who: &str) -> Result<KeyRow, ManageError> {
    let mut row = find(store, who).await?;
    row.revoked_ms.get_or_insert_with(crate::now_ms);
    store.update_key(&row).await?;
    Ok(row)
}

/// A new secret for the same key (same id, name, limits and counters' history); the old one
/// stops working at once.
pub async fn rotate(store: &Store, who: &str) -> Result<(String, KeyRow), ManageError> {
    let mut row = find(store, who).await?;
    if row.revoked_ms.is_some() {
        return Err(ManageError::Invalid(format!("key {} is revoked; create a new one", row.id)));
    }
    let (key, prefix, hash) = super::keys::mint();
    row.prefix = prefix;
    row.hash = hash;
    store.update_key(&row).await?;
    Ok((key, row))
}

/// What lists show of a key.
pub fn view(row: &KeyRow, now_ms: i64) -> Value {
    let policy: Value = serde_json::from_str(&row.policy).unwrap_or_else(|_| json!({}));
    let state = match (row.revoked_ms, row.expires_ms) {
        (Some(_), _) => "revoked",
        (None, Some(e)) if e <= now_ms => "expired",
        _ => "active",
    };
    json!({
        "id": row.id, "name": row.name, "prefix": row.prefix, "admin": row.admin, "state": state,
        "policy": policy, "expires_ms": row.expires_ms, "revoked_ms": row.revoked_ms,
        "created_ms": row.created_ms, "updated_ms": row.updated_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        let now = 1_000_000;
        let v = |s: &str| parse_expiry(&json!(s), now);
        assert_eq!(v("2027-01-31"), Ok(Some(super::super::limits::days_from_civil(2027, 1, 31) * 86_400_000)));
        assert_eq!(v("1970-01-02T01:02:03Z"), Ok(Some(86_400_000 + 3_723_000)));
        assert_eq!(v("1970-01-01T00:01Z"), Ok(Some(60_000)));
        assert_eq!(v("90d"), Ok(Some(now + 90 * 86_400_000)));
        assert_eq!(v("2h"), Ok(Some(now + 7_200_000)));
        assert_eq!(parse_expiry(&Value::Null, now), Ok(None));
        for bad in ["tomorrow", "2027-13-01", "2027-01-01T25:00Z", "2027-01-01T10:00", "0d", "-5d", "2027-1"] {
            assert!(v(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_merge_into_the_policy_and_null_clears() {
        let (_, mut row) = new_row("a", false, &Policy::default(), None);
        let patch = |v: Value| v.as_object().unwrap().clone();
        apply(&mut row, &patch(json!({"rpm": 5, "models": ["gpt-5*"], "targets": "pool"})), 0).unwrap();
        apply(&mut row, &patch(json!({"tpm": 100, "rpm": null, "name": "b"})), 0).unwrap();
        let p: Policy = serde_json::from_str(&row.policy).unwrap();
        assert_eq!((p.rpm, p.tpm, p.models.len(), p.targets), (None, Some(100), 1, super::super::keys::Targets::Pool));
        assert_eq!(row.name, "b");
        for bad in
            [json!({"rpm": 0}), json!({"rpn": 1}), json!({"rpm": "x"}), json!({"name": ""}), json!({"targets": "all"})]
        {
            let mut r = row.clone();
            assert!(apply(&mut r, &patch(bad.clone()), 0).is_err(), "{bad}");
        }
    }
}
