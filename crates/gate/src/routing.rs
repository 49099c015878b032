//! Model routing: a requested model name resolves to an ordered list of targets.
//!
//! Precedence: an explicit `[[routes]]` entry, then an `[aliases]` entry, then a
//! `provider/model` reference, then every provider whose `models` list has the name (in config
//! order, so the same model on two providers fails over between them), and last the pool's
//! catalog: a ChatGPT provider without a `models` list serves what its accounts' plans offer.
//! Everything except unlisted `provider/model` references and the catalog (which changes as
//! accounts come and go) is resolved once at startup.

use crate::config::{Config, Provider};
use std::collections::HashMap;
use std::sync::Arc;

/// One place a request can be sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The model name sent upstream.
    pub model: String,
    /// `provider/model`, for logs and metrics.
    pub label: Arc<str>,
}

/// A resolved route.
#[derive(Debug)]
pub struct Resolved {
    /// Route label for metrics and the request log.
    pub route: Arc<str>,
    pub targets: Vec<Target>,
    /// Try later targets on a retryable failure before the first byte.
    pub fallback: bool,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    pub owned_by: String,
}

#[derive(Debug)]
pub struct ModelRouter {
    table: HashMap<String, Arc<Resolved>>,
    providers: HashMap<String, Arc<Provider>>,
    listed: Vec<ListedModel>,
    /// The ChatGPT provider that serves the pool's catalog (one without a `models` list).
    pool: Option<Arc<Provider>>,
    /// Zero config: before the catalog is known, every unrouted name goes to the pool.
    implicit_pool: bool,
}

fn target(p: &Arc<Provider>, model: &str) -> Target {
    Target { provider: p.clone(), model: model.to_owned(), label: format!("{}/{}", p.name, model).into() }
}

impl ModelRouter {
    pub fn new(config: &Config) -> ModelRouter {
        let providers: HashMap<String, Arc<Provider>> =
            config.providers.iter().map(|p| (p.name.clone(), Arc::new(p.clone()))).collect();
        let ordered: Vec<Arc<Provider>> = config.providers.iter().map(|p| providers[&p.name].clone()).collect();
        let mut table: HashMap<String, Arc<Resolved>> = HashMap::new();
        let mut listed = Vec::new();
        let mut list = |id: &str, owner: &str| {
            if !listed.iter().any(|m: &ListedModel| m.id == id) {
                listed.push(ListedModel { id: id.to_owned(), owned_by: owner.to_owned() });
            }
        };

        // Lowest precedence first; later inserts overwrite.
        let mut by_model: Vec<(String, Vec<Target>)> = Vec::new();
        for p in &ordered {
            for m in &p.models {
                match by_model.iter_mut().find(|(name, _)| name == m) {
                    Some((_, ts)) => ts.push(target(p, m)),
                    None => by_model.push((m.clone(), vec![target(p, m)])),
                }
            }
        }
        for (m, targets) in by_model {
            let r = Resolved { route: m.as_str().into(), targets, fallback: true };
            table.insert(m, Arc::new(r));
        }
        for p in &ordered {
            for m in &p.models {
                let t = target(p, m);
                let r = Resolved { route: t.label.clone(), targets: vec![t.clone()], fallback: true };
                table.insert(t.label.to_string(), Arc::new(r));
            }
        }
        for route in &config.routes {
            let targets = route.targets.iter().map(|(p, m)| target(&providers[p], m)).collect();
            let r = Resolved { route: route.model.as_str().into(), targets, fallback: route.fallback };
            table.insert(route.model.clone(), Arc::new(r));
        }
        for route in &config.routes {
            list(&route.model, "codex-gate");
        }
        let pool =
            ordered.iter().find(|p| p.kind == crate::config::ProviderKind::Chatgpt && p.models.is_empty()).cloned();
        let router =
            ModelRouter { table, providers, listed: Vec::new(), pool: None, implicit_pool: config.implicit_pool };
        let mut aliased = Vec::new();
        for (alias, to) in &config.aliases {
            if let Some(r) = router.resolve(to) {
                aliased.push((alias.clone(), r));
            }
        }
        let ModelRouter { mut table, providers, implicit_pool, .. } = router;
        for (alias, r) in aliased {
            list(&alias, "codex-gate");
            let r = Resolved { route: alias.as_str().into(), targets: r.targets.clone(), fallback: r.fallback };
            table.insert(alias, Arc::new(r));
        }
        for p in &ordered {
            for m in &p.models {
                list(m, &p.name);
            }
        }
        for p in &ordered {
            for m in &p.models {
                list(&format!("{}/{}", p.name, m), &p.name);
            }
        }
        ModelRouter { table, providers, listed, pool, implicit_pool }
    }

    /// The targets for `model`, or `None` when nothing routes it.
    pub fn resolve(&self, model: &str) -> Option<Arc<Resolved>> {
        if let Some(r) = self.table.get(model) {
            return Some(r.clone());
        }
        // `provider/any-model`: providers usually serve more models than their config lists.
        let (p, m) = model.split_once('/')?;
        let provider = self.providers.get(p).filter(|_| !m.is_empty())?;
        Some(Arc::new(Resolved { route: format!("{p}/*").into(), targets: vec![target(provider, m)], fallback: true }))
    }

    /// As [`Self::resolve`], then the pool's catalog (`offers`: whether the pool offers a
    /// name, `None` while its catalog is unknown).
    pub fn resolve_or_pool(&self, model: &str, offers: impl Fn(&str) -> Option<bool>) -> Option<Arc<Resolved>> {
        self.resolve(model).or_else(|| {
            let p = self.pool.as_ref()?;
            offers(model)
                .unwrap_or(self.implicit_pool)
                .then(|| Arc::new(Resolved { route: model.into(), targets: vec![target(p, model)], fallback: true }))
        })
    }

    /// What clients can ask for, in the order `GET /v1/models` shows it (the pool's catalog
    /// comes after, see [`Self::pool_provider`]).
    pub fn listed(&self) -> &[ListedModel] {
        &self.listed
    }

    /// A route to the pool alone, named `route`: what serves requests that only a ChatGPT
    /// account can (the backend's other Codex paths), or that name no configured model.
    pub fn pool_route(&self, route: &str) -> Option<Arc<Resolved>> {
        let p = self.pool.as_ref()?;
        Some(Arc::new(Resolved { route: route.into(), targets: vec![target(p, route)], fallback: true }))
    }

    /// The provider that serves the pool's catalog, if one does.
    pub fn pool_provider(&self) -> Option<&Provider> {
        self.pool.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> ModelRouter {
        let cfg = Config::from_toml_str(
            r#"
            [[providers]]
            name = "a"
            kind = "chat"
            base_url = "http://a"
            models = ["m1", "shared"]
            [[providers]]
            name = "b"
            kind = "responses"
            base_url = "http://b"
            models = ["shared", "m1x"]
            [[routes]]
            model = "coder"
            targets = ["b/m1x", "a/m1"]
            fallback = false
            [[routes]]
            model = "m1"
            targets = ["b/override"]
            [aliases]
            fast = "coder"
            quick = "a/m1"
            "#,
            None,
            &|_| None,
        )
        .unwrap();
        ModelRouter::new(&cfg)
    }

    fn labels(r: &Resolved) -> Vec<&str> {
        r.targets.iter().map(|t| &*t.label).collect()
    }

    #[test]
    fn resolution_precedence() {
        let r = router();
        let coder = r.resolve("coder").unwrap();
        assert_eq!(labels(&coder), ["b/m1x", "a/m1"]);
        assert!(!coder.fallback);
        assert_eq!(labels(&r.resolve("m1").unwrap()), ["b/override"], "explicit route beats a model list");
        assert_eq!(labels(&r.resolve("shared").unwrap()), ["a/shared", "b/shared"], "model lists fail over in order");
        let fast = r.resolve("fast").unwrap();
        assert_eq!((&*fast.route, labels(&fast), fast.fallback), ("fast", vec!["b/m1x", "a/m1"], false));
        assert_eq!(labels(&r.resolve("quick").unwrap()), ["a/m1"]);
        let dynamic = r.resolve("a/unlisted-model").unwrap();
        assert_eq!((&*dynamic.route, labels(&dynamic)), ("a/*", vec!["a/unlisted-model"]));
        assert_eq!(dynamic.targets[0].model, "unlisted-model");
        assert!(r.resolve("nope").is_none());
        assert!(r.resolve("ghost/x").is_none());
        assert!(r.resolve("a/").is_none());
    }

    #[test]
    fn the_pool_serves_its_catalog_last_and_everything_in_zero_config() {
        let pooled = Config::from_toml_str(
            "[[providers]]\nname = \"api\"\nkind = \"chat\"\nbase_url = \"http://a\"\nmodels = [\"gpt-5.5\"]\n\
             [[providers]]\nname = \"subs\"\nkind = \"chatgpt\"\n",
            None,
            &|_| None,
        )
        .unwrap();
        let r = ModelRouter::new(&pooled);
        let offers = |m: &str| Some(m.starts_with("gpt-"));
        assert_eq!(labels(&r.resolve_or_pool("gpt-5.5", offers).unwrap()), ["api/gpt-5.5"], "a listed model wins");
        assert_eq!(labels(&r.resolve_or_pool("gpt-5.4", offers).unwrap()), ["subs/gpt-5.4"]);
        assert!(r.resolve_or_pool("nope", offers).is_none(), "not in the catalog");
        assert!(r.resolve_or_pool("gpt-5.4", |_| None).is_none(), "unknown catalog, providers configured");
        let zero = ModelRouter::new(&Config::from_toml_str("", None, &|_| None).unwrap());
        assert_eq!(labels(&zero.resolve_or_pool("anything", |_| None).unwrap()), ["chatgpt/anything"]);
        assert!(zero.resolve_or_pool("anything", |_| Some(false)).is_none(), "once known, the catalog decides");
        assert!(router().pool_provider().is_none(), "no chatgpt provider, no pool routing");
    }

    #[test]
    fn listing_has_routes_aliases_models_and_refs_once() {
        let r = router();
        let ids: Vec<&str> = r.listed().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["coder", "m1", "fast", "quick", "shared", "m1x", "a/m1", "a/shared", "b/shared", "b/m1x"]);
    }
}
