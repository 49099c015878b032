//! The pool's model catalog: what the accounts' plans offer, read from the ChatGPT backend's own
//! `GET {base}/codex/models?client_version=…` (the call Codex makes with ChatGPT auth), one
//! account per plan, merged. The entries are kept as the backend's `ModelInfo` objects, so a
//! Codex that reads the catalog through the gateway gets what it would have got from ChatGPT.

use parking_lot::RwLock;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// The Codex version the gateway asks the catalog as (the backend shapes its answer by it).
pub const CLIENT_VERSION: &str = "0.171.0";
/// Most models kept from one answer: the catalog is upstream input, so it is bounded.
const MAX_MODELS: usize = 256;

/// A merged catalog.
#[derive(Debug)]
pub struct Models {
    /// `ModelInfo` objects, in the backend's order, one per slug.
    pub entries: Vec<Value>,
    slugs: HashSet<String>,
}

impl Models {
    /// Merge the answers of the plans' accounts: `(plan, body)` pairs. A model with an
    /// `available_in_plans` list is kept only for the plans it names.
    pub fn merge(answers: &[(Option<String>, Value)]) -> Models {
        let mut entries = Vec::new();
        let mut slugs = HashSet::new();
        for (plan, body) in answers {
            let Some(list) = body.get("models").and_then(Value::as_array) else { continue };
            for m in list {
                let Some(slug) = m.get("slug").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 256)
                else {
                    continue;
                };
                let offered = match (plan, m.get("available_in_plans").and_then(Value::as_array)) {
                    (Some(p), Some(plans)) => plans.iter().any(|x| x.as_str() == Some(p)),
                    _ => true,
                };
                if offered && entries.len() < MAX_MODELS && slugs.insert(slug.to_owned()) {
                    entries.push(m.clone());
                }
            }
        }
        Models { entries, slugs }
    }

    pub fn offers(&self, slug: &str) -> bool {
        self.slugs.contains(slug)
    }

    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|m| m.get("slug").and_then(Value::as_str))
    }
}

/// The current catalog; `None` until one answer arrived.
#[derive(Debug, Default)]
pub struct Catalog {
    current: RwLock<Option<Arc<Models>>>,
}

impl Catalog {
    pub fn get(&self) -> Option<Arc<Models>> {
        self.current.read().clone()
    }

    /// Whether the pool offers `slug`: `None` while no catalog has been read.
    pub fn offers(&self, slug: &str) -> Option<bool> {
        self.current.read().as_ref().map(|m| m.offers(slug))
    }

    pub fn set(&self, m: Models) {
        *self.current.write() = Some(Arc::new(m));
    }
}

impl super::Pool {
    /// Read the catalog from `{base_url}/codex/models` with one active account per plan. When
    /// every read fails (or offers nothing) the previous catalog stays. Returns how many models
    /// it now holds.
    pub async fn refresh_catalog(&self, base_url: &str) -> Option<usize> {
        let mut plans: Vec<Option<String>> = Vec::new();
        let mut answers = Vec::new();
        for a in self.accounts() {
            if *a.status.read() != super::Status::Active || plans.contains(&a.plan_type) {
                continue;
            }
            let url = format!("{base_url}/codex/models?client_version={CLIENT_VERSION}");
            // An answer without a `models` list is not a catalog (an older backend's 404 page).
            let body = self.get_json(&a, &url).await.filter(|b| b.get("models").is_some_and(Value::is_array));
            if let Some(body) = body {
                plans.push(a.plan_type.clone());
                answers.push((a.plan_type.clone(), body));
            }
        }
        if answers.is_empty() {
            return None;
        }
        let models = Models::merge(&answers);
        let n = models.entries.len();
        if n == 0 {
            return None;
        }
        tracing::debug!(models = n, plans = answers.len(), "pool model catalog read");
        self.catalog.set(models);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_plans_and_filters_by_availability() {
        let body = json!({"models": [
            {"slug": "big", "available_in_plans": ["pro"]},
            {"slug": "mid", "available_in_plans": ["plus", "pro"]},
            {"slug": "any"},
            {"slug": ""},
            {"no_slug": true},
        ]});
        let plus = Models::merge(&[(Some("plus".into()), body.clone())]);
        assert_eq!(plus.slugs().collect::<Vec<_>>(), ["mid", "any"]);
        let both = Models::merge(&[(Some("plus".into()), body.clone()), (Some("pro".into()), body)]);
        assert_eq!(both.slugs().collect::<Vec<_>>(), ["mid", "any", "big"]);
        assert!(both.offers("big") && !plus.offers("big"));
    }
}
