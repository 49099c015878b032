//! `codex-gate models`: what clients can ask for — from the running gateway (which knows the
//! pool's catalog), else from the config alone.

use crate::config::Config;
use std::path::Path;

pub async fn run(path: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let (list, live) = match super::gateway_get(config.server.listen, "/v1/models").await {
        Some(v) => (v, true),
        None => {
            let router = crate::routing::ModelRouter::new(&config);
            let data: Vec<serde_json::Value> =
                router.listed().iter().map(|m| serde_json::json!({"id": m.id, "owned_by": m.owned_by})).collect();
            (serde_json::json!({"object": "list", "data": data}), false)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let data = list["data"].as_array().cloned().unwrap_or_default();
    if !live {
        println!("(the gateway is not running: the config's models only; pool models appear once it runs)");
    }
    if data.is_empty() {
        println!("nothing is routable yet: add an account (`codex-gate accounts import`) or a provider");
    }
    for m in data {
        println!("{:<40} {}", m["id"].as_str().unwrap_or("?"), m["owned_by"].as_str().unwrap_or(""));
    }
    Ok(())
}
