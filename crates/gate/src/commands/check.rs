//! `codex-gate check`: validate the config and print the resolved routes.

use crate::config::Config;
use crate::routing::ModelRouter;
use std::path::Path;

pub fn run(path: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let source = config.source.as_ref().map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    println!("config: {source} (ok)");
    println!("listen: {}", config.server.listen);
    println!("store:  {}", super::redact_url(&config.store.url));
    for p in &config.providers {
        let kind = p.kind.api().as_str();
        let key = if p.api_key.is_some() { "api key set" } else { "no api key" };
        println!("provider {} ({kind}, {key}): {} [{}]", p.name, p.base_url, p.models.join(", "));
    }
    let router = ModelRouter::new(&config);
    for m in router.listed() {
        if let Some(r) = router.resolve(&m.id) {
            let targets: Vec<&str> = r.targets.iter().map(|t| &*t.label).collect();
            let mode = if r.fallback { "fallback" } else { "fail-closed" };
            println!("model {} -> {} ({mode})", m.id, targets.join(" -> "));
        }
    }
    Ok(())
}
