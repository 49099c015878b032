//! Quota signals, kept per account: `x-codex-*` response headers, in-stream `codex.rate_limits`
//! events, and `GET …/wham/usage` (codex-protocol §5). All three land in one [`Quota`].

use http::HeaderMap;
use serde_json::{json, Value};

/// One rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    pub used_percent: f64,
    pub window_minutes: Option<i64>,
    /// Unix seconds.
    pub reset_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quota {
    /// The 5-hour window.
    pub primary: Option<Window>,
    /// The weekly window.
    pub secondary: Option<Window>,
    pub credits_has: Option<bool>,
    pub credits_unlimited: Option<bool>,
    pub credits_balance: Option<String>,
    /// Unix ms of the last update.
    pub updated_ms: i64,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

impl Quota {
    /// Read `x-codex-primary-*`, `x-codex-secondary-*`, `x-codex-credits-*`; `None` when absent.
    pub fn from_headers(h: &HeaderMap, now_ms: i64) -> Option<Quota> {
        let window = |which: &str| -> Option<Window> {
            let used = header(h, &format!("x-codex-{which}-used-percent"))?.parse::<f64>().ok()?;
            Some(Window {
                used_percent: used,
                window_minutes: header(h, &format!("x-codex-{which}-window-minutes")).and_then(|v| v.parse().ok()),
                reset_at: header(h, &format!("x-codex-{which}-reset-at")).and_then(|v| v.parse().ok()),
            })
        };
        let q = Quota {
            primary: window("primary"),
            secondary: window("secondary"),
            credits_has: header(h, "x-codex-credits-has-credits").and_then(flag),
            credits_unlimited: header(h, "x-codex-credits-unlimited").and_then(flag),
            credits_balance: header(h, "x-codex-credits-balance").map(str::to_owned),
            updated_ms: now_ms,
        };
        (q.primary.is_some() || q.secondary.is_some() || q.credits_has.is_some()).then_some(q)
    }

    /// A quota holding only the `credits` object of an event or a usage body.
    fn credits(c: Option<&Value>, now_ms: i64) -> Quota {
        let get = |k: &str| c.and_then(|c| c.get(k));
        Quota {
            credits_has: get("has_credits").and_then(Value::as_bool),
            credits_unlimited: get("unlimited").and_then(Value::as_bool),
            credits_balance: get("balance").and_then(Value::as_str).map(str::to_owned),
            updated_ms: now_ms,
            ..Quota::default()
        }
    }

    /// From a `codex.rate_limits` event.
    pub fn from_event(v: &Value, now_ms: i64) -> Option<Quota> {
        let rl = v.get("rate_limits")?;
        let w = |k: &str| {
            let w = rl.get(k).filter(|w| !w.is_null())?;
            Some(Window {
                used_percent: w.get("used_percent")?.as_f64()?,
                window_minutes: w.get("window_minutes").and_then(Value::as_i64),
                reset_at: w.get("reset_at").or_else(|| w.get("resets_at")).and_then(Value::as_i64),
            })
        };
        Some(Quota { primary: w("primary"), secondary: w("secondary"), ..Quota::credits(v.get("credits"), now_ms) })
    }

    /// From a `wham/usage` body.
    pub fn from_usage(v: &Value, now_ms: i64) -> Option<Quota> {
        let rl = v.get("rate_limit")?;
        let w = |k: &str| {
            let w = rl.get(k).filter(|w| !w.is_null())?;
            Some(Window {
                used_percent: w.get("used_percent")?.as_f64()?,
                window_minutes: w.get("limit_window_seconds").and_then(Value::as_i64).map(|s| (s + 59) / 60),
                reset_at: w.get("reset_at").and_then(Value::as_i64),
            })
        };
        Some(Quota {
            primary: w("primary_window"),
            secondary: w("secondary_window"),
            ..Quota::credits(v.get("credits"), now_ms)
        })
    }

    /// A window whose reset time has passed counts as unused.
    pub fn used(w: Option<&Window>, now_s: i64) -> f64 {
        match w {
            Some(w) if w.reset_at.is_none_or(|r| r > now_s) => w.used_percent,
            _ => 0.0,
        }
    }

    /// The `rate_limit` object of the `wham/usage` shape.
    pub fn usage_json(&self, now_s: i64) -> Value {
        let w = |w: &Option<Window>| match w {
            Some(w) => {
                json!({"used_percent": Quota::used(Some(w), now_s), "limit_window_seconds": w.window_minutes.map(|m| m * 60),
                              "reset_after_seconds": w.reset_at.map(|r| (r - now_s).max(0)), "reset_at": w.reset_at})
            }
            None => Value::Null,
        };
        let reached =
            Quota::used(self.primary.as_ref(), now_s) >= 100.0 || Quota::used(self.secondary.as_ref(), now_s) >= 100.0;
        json!({"allowed": !reached, "limit_reached": reached, "primary_window": w(&self.primary), "secondary_window": w(&self.secondary)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_three_signals() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-codex-primary-used-percent", "42.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1755012345"),
            ("x-codex-secondary-used-percent", "5"),
            ("x-codex-credits-has-credits", "true"),
            ("x-codex-credits-unlimited", "0"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let q = Quota::from_headers(&h, 1).unwrap();
        assert_eq!(
            q.primary,
            Some(Window { used_percent: 42.5, window_minutes: Some(300), reset_at: Some(1_755_012_345) })
        );
        assert_eq!(
            (q.secondary.unwrap().used_percent, q.credits_has, q.credits_unlimited),
            (5.0, Some(true), Some(false))
        );
        assert!(Quota::from_headers(&HeaderMap::new(), 1).is_none());
        let ev = json!({"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 12.0, "window_minutes": 300, "reset_at": 9},
                        "secondary": null}, "credits": {"has_credits": true, "unlimited": false, "balance": "9.99"}});
        let q = Quota::from_event(&ev, 1).unwrap();
        assert_eq!(
            (q.primary.unwrap().used_percent, q.secondary, q.credits_balance.as_deref()),
            (12.0, None, Some("9.99"))
        );
        let u = json!({"plan_type": "pro", "rate_limit": {"primary_window": {"used_percent": 42, "limit_window_seconds": 18000, "reset_at": 100},
                        "secondary_window": {"used_percent": 5, "limit_window_seconds": 604800, "reset_at": 200}}});
        let q = Quota::from_usage(&u, 1).unwrap();
        assert_eq!((q.primary.unwrap().window_minutes, q.secondary.unwrap().window_minutes), (Some(300), Some(10080)));
        assert_eq!(Quota::used(q.primary.as_ref(), 50), 42.0);
        assert_eq!(Quota::used(q.primary.as_ref(), 150), 0.0, "a reset window is unused");
        assert_eq!(q.usage_json(50)["primary_window"]["reset_after_seconds"], 50);
    }
}
