//! The model catalog in Codex's own shape, `{"models":[ModelInfo…]}` (codex-protocol §7): the
//! pool's entries exactly as the ChatGPT backend gave them, then one entry per route, alias and
//! provider model, built here. Served at `GET /v1/models?client_version=…` (what Codex asks with
//! ChatGPT auth) and written to disk by `setup codex` as `model_catalog_json` (what it reads
//! with an API key). Codex 0.169 refuses a whole catalog over one entry without instructions,
//! so every built entry carries them.

use crate::config::{Provider, ProviderKind};
use crate::pool::catalog::Models;
use crate::routing::ModelRouter;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Instructions for models the gateway routes to other providers. Codex uses them as the
/// system prompt when the entry is the one it picked.
const BASE_INSTRUCTIONS: &str = "\
You are a coding agent working in the user's repository through Codex, with the tools Codex \
provides (shell commands, file edits with apply_patch, and any others listed).

- Read before you change: look at the relevant files and how the project builds and tests.
- Keep changes minimal and in the project's style; do not rewrite what you were not asked to.
- Run the project's checks when you can, and say plainly what you ran and what you could not.
- Ask only when a choice would change the outcome; otherwise make a sensible assumption and say so.
- End with a short summary of what changed and anything the user should look at.";

/// Context window assumed for a provider model when the config gives none.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

/// The catalog and its validator.
#[derive(Debug, Clone)]
pub struct CodexCatalog {
    pub body: Value,
    pub etag: String,
}

/// Build the catalog from the router's listing and the pool's catalog (if one was read).
pub fn build(router: &ModelRouter, pool: Option<&Models>) -> CodexCatalog {
    let mut models: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(pool) = pool {
        for m in &pool.entries {
            if let Some(slug) = m.get("slug").and_then(Value::as_str) {
                seen.insert(slug.to_owned());
                models.push(m.clone());
            }
        }
    }
    for (i, listed) in router.listed().iter().enumerate() {
        if !seen.insert(listed.id.clone()) {
            continue;
        }
        let Some(target) = router.resolve(&listed.id).and_then(|r| r.targets.first().cloned()) else { continue };
        // An alias or route onto a pool model takes the pool model's entry, under its own name.
        let pooled = pool.and_then(|p| {
            p.entries.iter().find(|e| e.get("slug").and_then(Value::as_str) == Some(target.model.as_str()))
        });
        let entry = match pooled {
            Some(e) if target.provider.kind == ProviderKind::Chatgpt => {
                let mut e = e.clone();
                e["slug"] = json!(listed.id);
                e
            }
            _ => entry(&listed.id, &target.provider, &target.model, i),
        };
        models.push(entry);
    }
    let body = json!({ "models": models });
    CodexCatalog { etag: etag_of(&body), body }
}

fn etag_of(body: &Value) -> String {
    let hex = format!("{:x}", Sha256::digest(body.to_string().as_bytes()));
    format!("\"{}\"", &hex[..16])
}

impl CodexCatalog {
    /// Keep only the models `keep` accepts (by slug); the ETag follows the content.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        if let Some(models) = self.body.get_mut("models").and_then(Value::as_array_mut) {
            let before = models.len();
            models.retain(|m| m.get("slug").and_then(Value::as_str).is_some_and(&keep));
            if models.len() != before {
                self.etag = etag_of(&self.body);
            }
        }
    }
}

/// A `ModelInfo` for `id`, served by `model` on `provider`.
fn entry(id: &str, provider: &Provider, model: &str, order: usize) -> Value {
    let reasons = match provider.kind {
        ProviderKind::Chat => provider.dialect.reasoning_effort,
        ProviderKind::Responses | ProviderKind::Chatgpt => true,
    };
    let levels: Vec<Value> = if reasons {
        [("low", "Quicker answers, lighter reasoning"), ("medium", "The default balance"), ("high", "Deeper reasoning")]
            .iter()
            .map(|(e, d)| json!({"effort": e, "description": d}))
            .collect()
    } else {
        Vec::new()
    };
    let images = provider.kind != ProviderKind::Chat;
    let window = provider.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW);
    // `provider/model` references stay usable but out of the picker.
    let visibility = if id.contains('/') { "hide" } else { "list" };
    let mut e = json!({
        "slug": id,
        "display_name": id,
        "description": format!("{}/{} through codex-gate", provider.name, model),
        "supported_reasoning_levels": levels,
        "shell_type": "shell_command",
        "visibility": visibility,
        "supported_in_api": true,
        "priority": 100 + order,
        "availability_nux": null,
        "upgrade": null,
        "base_instructions": BASE_INSTRUCTIONS,
        "supports_reasoning_summaries": false,
        "support_verbosity": false,
        "default_verbosity": null,
        "apply_patch_tool_type": "freeform",
        "truncation_policy": {"mode": "tokens", "limit": 10_000},
        "supports_parallel_tool_calls": provider.kind != ProviderKind::Chat,
        "context_window": window,
        "max_context_window": window,
        "effective_context_window_percent": 95,
        "experimental_supported_tools": [],
        "input_modalities": if images { json!(["text", "image"]) } else { json!(["text"]) },
    });
    if reasons {
        e["default_reasoning_level"] = json!("medium");
    }
    e
}
