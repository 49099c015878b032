//! Doctor's OpenClaw checks on `openclaw.json` (JSON5): syntax with line and column, and each
//! provider that points at this gateway — `baseUrl` with `/v1` and the gateway's own port, an
//! `api` OpenClaw can speak to it with, a models list the gateway routes — and an agents'
//! default model naming a provider the file does not define. Fixes go through the CST, so
//! comments stay.

use super::{Finding, Level};
use crate::commands::setup::write_with_backup;
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use jsonc_parser::ParseOptions;
use std::path::Path;

const APIS: &[&str] = &["openai-responses", "openai-completions"];

pub fn check(file: &Path, ours: &str, models: Option<&[String]>, fix: bool, found: &mut Vec<Finding>) {
    let Ok(text) = std::fs::read_to_string(file) else { return };
    let shown = file.display().to_string();
    let root = match CstRootNode::parse(&text, &ParseOptions::default()) {
        Ok(r) => r,
        Err(e) => {
            found.push(Finding::bad(
                "openclaw",
                Level::Broken,
                format!("{shown}: {e}"),
                "OpenClaw refuses the file (smart quotes and unclosed braces are the usual cause)",
                format!("edit {shown} where shown"),
            ));
            return;
        }
    };
    // Read through serde, write through the CST.
    let Ok(value) = jsonc_parser::parse_to_serde_value::<serde_json::Value>(&text, &ParseOptions::default()) else {
        return;
    };
    let our_port = ours.parse::<http::Uri>().ok().and_then(|u| u.port_u16());
    let Some(obj) = root.object_value() else { return };
    let providers = obj.object_value("models").and_then(|m| m.object_value("providers"));
    let mut names = Vec::new();
    let mut changed = false;
    let mut pointed = false;
    for prop in providers.map(|p| p.properties()).unwrap_or_default() {
        let Some(name) = prop.name().and_then(|n| n.decoded_value().ok()) else { continue };
        names.push(name.clone());
        let Some(p) = prop.object_value() else { continue };
        let entry = &value["models"]["providers"][&name];
        let value = |k: &str| entry.get(k).cloned();
        let Some(url) = value("baseUrl").and_then(|v| v.as_str().map(str::to_owned)) else { continue };
        let Ok(uri) = url.parse::<http::Uri>() else { continue };
        let loopback =
            matches!(uri.host().unwrap_or_default().trim_matches(['[', ']']), "127.0.0.1" | "localhost" | "::1");
        let same_port = loopback && uri.port_u16() == our_port;
        if !(same_port || (loopback && (name.contains("codex-gate") || name.contains("codex-lb")))) {
            continue;
        }
        pointed = true;
        let at = format!("{shown} models.providers.{name}");
        let mut issues: Vec<(Finding, Option<(&str, &str)>)> = Vec::new();
        if !same_port || uri.path().trim_end_matches('/') != "/v1" {
            let what = if same_port { "does not end in /v1" } else { "is not where the gateway listens" };
            issues.push((
                Finding::bad(
                    "openclaw",
                    Level::Broken,
                    format!("{at}: baseUrl {url} {what} ({ours})"),
                    "every OpenClaw turn through it fails",
                    format!("\"baseUrl\": \"{ours}\""),
                ),
                Some(("baseUrl", ours)),
            ));
        }
        let api = value("api").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        if !APIS.contains(&api.as_str()) {
            issues.push((
                Finding::bad(
                    "openclaw",
                    Level::Broken,
                    format!("{at}: api {api:?}"),
                    "the gateway speaks OpenAI's Responses and Chat Completions APIs",
                    "\"api\": \"openai-responses\" (or \"openai-completions\")",
                ),
                Some(("api", "openai-responses")),
            ));
        }
        let listed: Vec<String> = value("models")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        if listed.is_empty() {
            issues.push((
                Finding::bad(
                    "openclaw",
                    Level::Broken,
                    format!("{at}: no models"),
                    "OpenClaw needs the models listed to use the provider",
                    "codex-gate setup openclaw (writes the gateway's models)",
                ),
                None,
            ));
        } else if let Some(routed) = models {
            let missing: Vec<&String> = listed.iter().filter(|m| !routed.contains(m)).collect();
            if !missing.is_empty() {
                found.push(Finding::bad(
                    "openclaw",
                    Level::Warn,
                    format!("{at}: the gateway does not route {missing:?}"),
                    "turns with those models get model_not_found",
                    "codex-gate setup openclaw (lists what it routes), or `codex-gate models`",
                ));
            }
        }
        for (mut f, repair) in issues {
            if let (true, Some((k, v))) = (fix, repair) {
                if let Some(prop) = p.get(k) {
                    prop.set_value(CstInputValue::from(v));
                    f.fixed = true;
                    changed = true;
                }
            }
            found.push(f);
        }
    }
    let primary = value["agents"]["defaults"]["model"]["primary"].as_str().map(str::to_owned);
    if let Some((provider, _)) = primary.as_deref().and_then(|p| p.split_once('/')) {
        let built_in = ["openai", "anthropic", "openai-codex", "google", "openrouter"].contains(&provider);
        if !built_in && !names.iter().any(|n| n == provider) {
            found.push(Finding::bad(
                "openclaw",
                Level::Warn,
                format!("{shown}: agents.defaults.model.primary names provider {provider:?}, which the file does not define"),
                "a reference left from an earlier setup: OpenClaw cannot resolve the default model",
                "codex-gate setup openclaw --primary",
            ));
        }
    }
    if changed {
        if let Err(e) = write_with_backup(file, root.to_string().as_bytes()) {
            found.push(Finding::bad("openclaw", Level::Broken, format!("cannot write {shown}: {e}"), "", ""));
        }
    }
    if pointed && !found.iter().any(|f| f.check == "openclaw" && f.level != Level::Ok) {
        found.push(Finding::ok("openclaw", format!("{shown} points at the gateway correctly")));
    }
}
