//! `codex-gate setup openclaw`: merge the gateway as a provider into OpenClaw's
//! `openclaw.json` (JSON5). The file is edited through `jsonc-parser`'s concrete syntax tree,
//! so the user's comments, other providers, key order and quoting stay as written; only the
//! gateway's own entry (and, with `--primary`, the agents' default model) changes.

use super::{client_base_url, restore, write_with_backup};
use crate::config::Config;
use anyhow::{bail, Context};
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use jsonc_parser::ParseOptions;
use std::path::{Path, PathBuf};

/// Which of OpenClaw's OpenAI APIs it speaks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenClawApi {
    /// `openai-responses`: the Responses API (what Codex models speak natively)
    Responses,
    /// `openai-completions`: Chat Completions (the gateway translates for Responses models)
    Completions,
}

impl OpenClawApi {
    fn as_str(self) -> &'static str {
        match self {
            OpenClawApi::Responses => "openai-responses",
            OpenClawApi::Completions => "openai-completions",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct OpenClawArgs {
    /// The provider's name in OpenClaw (models are `<name>/<model>`)
    #[arg(long, default_value = "codex-gate")]
    pub name: String,
    /// The API OpenClaw uses
    #[arg(long, value_enum, default_value = "responses")]
    pub api: OpenClawApi,
    /// Also make `<name>/<model>` the agents' default model
    #[arg(long)]
    pub primary: bool,
    /// The model for --primary [default: the gateway's first]
    #[arg(long)]
    pub model: Option<String>,
    /// Put back what an earlier setup changed, byte for byte
    #[arg(long)]
    pub undo: bool,
    /// The gateway's base URL for clients [default: from server.listen]
    #[arg(long)]
    pub url: Option<String>,
    /// OpenClaw's config [default: $OPENCLAW_CONFIG_PATH, else ~/.openclaw/openclaw.json]
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

pub fn openclaw_config(arg: Option<&Path>) -> Option<PathBuf> {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("OPENCLAW_CONFIG_PATH").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".openclaw/openclaw.json"))
        })
}

pub async fn run(config_path: Option<&Path>, args: OpenClawArgs) -> anyhow::Result<()> {
    let file = openclaw_config(args.config_file.as_deref()).context("no OpenClaw config: set HOME or --config-file")?;
    if args.undo {
        // A key this setup created goes with it.
        let key = std::fs::read_to_string(&file).ok().and_then(|t| provider_key(&t, &args.name));
        if let (Some(k), Ok(config)) = (key.filter(|k| k.starts_with("cg-")), Config::load(config_path)) {
            if let Some(done) = super::client_key::revoke_key(&config, &k).await {
                println!("{done}");
            }
        }
        match restore(&file)? {
            Some(done) => println!("{done}"),
            None => println!("nothing to undo for {}", file.display()),
        }
        return Ok(());
    }
    if args.name.is_empty() || args.name.contains(['/', ' ']) {
        bail!("--name {:?}: no '/' or spaces (OpenClaw names models <provider>/<model>)", args.name);
    }
    let config = Config::load(config_path)?;
    let (base_url, _) = client_base_url(args.url.as_deref(), config.server.listen)?;
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    // Once the gateway uses keys, OpenClaw gets one of its own (kept across runs while it works).
    let key = match super::client_key::keyed_store(&config).await? {
        None => None,
        Some(store) => {
            let label = format!("openclaw ({})", args.name);
            let existing = provider_key(&old, &args.name);
            let (key, id, created) = super::client_key::provision(&store, &label, existing.as_deref()).await?;
            store.close().await;
            if created {
                super::client_key::wait_accepted(&base_url, &key).await;
            }
            println!("{} client key {id} for OpenClaw", if created { "created" } else { "kept" });
            Some(key)
        }
    };
    let models = models(&base_url, key.as_deref(), &config).await;
    if models.is_empty() {
        bail!("the gateway routes no models yet: add an account (`codex-gate accounts import`) or a provider first");
    }
    let primary = match (&args.model, args.primary) {
        (Some(m), _) if !models.contains(m) => bail!("--model {m:?} is not one of the gateway's models: {models:?}"),
        (Some(m), _) => Some(m.clone()),
        (None, true) => models.first().cloned(),
        (None, false) => None,
    };
    let plan = Plan {
        name: &args.name,
        base_url: &base_url,
        api: args.api,
        models: &models,
        primary: primary.as_deref(),
        api_key: key.as_deref().unwrap_or("dummy"),
    };
    let text = merge(&old, &plan).map_err(|e| anyhow::anyhow!("{} is not valid JSON5: {e}", file.display()))?;
    write_with_backup(&file, text.as_bytes())?;
    println!(
        "merged provider \"{}\" into {} ({} models, api {})",
        args.name,
        file.display(),
        models.len(),
        args.api.as_str()
    );
    println!("  baseUrl = {base_url}   (with /v1: OpenClaw appends /responses or /chat/completions)");
    if key.is_some() {
        println!("  apiKey = the client key above (the file keeps its mode; it is the key's only copy)");
    } else {
        println!("  apiKey = \"dummy\"      (OpenClaw requires one; the gateway needs no client key yet)");
    }
    println!("  mode = \"merge\"        (your other providers stay)");
    if let Some(m) = &primary {
        println!("  agents.defaults.model.primary = \"{}/{m}\"", args.name);
    }
    println!("undo: codex-gate setup openclaw --undo");
    Ok(())
}

/// The provider `name`'s `apiKey` in an OpenClaw config's text.
fn provider_key(text: &str, name: &str) -> Option<String> {
    let v = jsonc_parser::parse_to_serde_value::<serde_json::Value>(text, &ParseOptions::default()).ok()?;
    v["models"]["providers"][name]["apiKey"].as_str().map(str::to_owned)
}

/// The gateway's models (those `key` may use): live when it runs, else the config's.
/// References (`provider/model`) are left out; OpenClaw names a model `<provider>/<model>`.
async fn models(base_url: &str, key: Option<&str>, config: &Config) -> Vec<String> {
    let live = crate::commands::get_json(&format!("{base_url}/models"), std::time::Duration::from_secs(5), key).await;
    let ids: Vec<String> = match live {
        Some(v) => {
            v["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect()
        }
        None => crate::routing::ModelRouter::new(config).listed().iter().map(|m| m.id.clone()).collect(),
    };
    ids.into_iter().filter(|m| !m.contains('/')).collect()
}

struct Plan<'a> {
    name: &'a str,
    base_url: &'a str,
    api: OpenClawApi,
    models: &'a [String],
    primary: Option<&'a str>,
    api_key: &'a str,
}

/// `old` with the gateway's provider merged in.
fn merge(old: &str, plan: &Plan<'_>) -> Result<String, jsonc_parser::errors::ParseError> {
    let root = CstRootNode::parse(old, &ParseOptions::default())?;
    let obj = root.object_value_or_set();
    let models = obj.object_value_or_set("models");
    if models.get("mode").is_none() {
        models.append("mode", CstInputValue::from("merge"));
    }
    let providers = models.object_value_or_set("providers");
    let list = plan
        .models
        .iter()
        .map(|m| CstInputValue::Object(vec![("id".into(), m.as_str().into()), ("name".into(), m.as_str().into())]))
        .collect();
    let entry = CstInputValue::Object(vec![
        ("baseUrl".into(), plan.base_url.into()),
        ("apiKey".into(), plan.api_key.into()),
        ("api".into(), plan.api.as_str().into()),
        ("models".into(), CstInputValue::Array(list)),
    ]);
    match providers.get(plan.name) {
        Some(p) => p.set_value(entry),
        None => {
            providers.append(plan.name, entry);
        }
    }
    if let Some(m) = plan.primary {
        let model = obj.object_value_or_set("agents").object_value_or_set("defaults").object_value_or_set("model");
        let value = CstInputValue::from(format!("{}/{m}", plan.name));
        match model.get("primary") {
            Some(p) => p.set_value(value),
            None => {
                model.append("primary", value);
            }
        }
    }
    let mut text = root.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_comments_and_other_providers() {
        let old = "// my OpenClaw\n{\n  agents: { defaults: { model: { primary: 'codex-lb/gpt-5.3-codex' } } },\n  \"models\": {\n    \"mode\": \"merge\",\n    \"providers\": {\n      \"codex-lb\": {\n        \"baseUrl\": \"http://127.0.0.1:2455/v1\",\n        \"apiKey\": \"dummy\",   // any value works\n        \"api\": \"openai-completions\",\n        \"models\": [{ \"id\": \"gpt-5.3-codex\", \"name\": \"GPT-5.3 Codex\" },],\n      },\n    },\n  },\n}\n";
        let models = ["coder".to_owned(), "gpt-5.5".to_owned()];
        let plan = Plan {
            name: "codex-gate",
            base_url: "http://127.0.0.1:2455/v1",
            api: OpenClawApi::Responses,
            models: &models,
            primary: None,
            api_key: "dummy",
        };
        let new = merge(old, &plan).unwrap();
        for kept in ["// my OpenClaw", "// any value works", "primary: 'codex-lb/gpt-5.3-codex'", "\"codex-lb\""] {
            assert!(new.contains(kept), "{kept} lost:\n{new}");
        }
        let v = jsonc_parser::parse_to_serde_value::<serde_json::Value>(&new, &ParseOptions::default()).unwrap();
        let p = &v["models"]["providers"]["codex-gate"];
        assert_eq!(p["api"], "openai-responses");
        assert_eq!(p["models"][1]["id"], "gpt-5.5");
        assert_eq!(v["models"]["providers"]["codex-lb"]["api"], "openai-completions");
        // Again with --primary: the entry is replaced, not duplicated.
        let plan = Plan { primary: Some("gpt-5.5"), ..plan };
        let again = merge(&new, &plan).unwrap();
        let v = jsonc_parser::parse_to_serde_value::<serde_json::Value>(&again, &ParseOptions::default()).unwrap();
        assert_eq!(v["agents"]["defaults"]["model"]["primary"], "codex-gate/gpt-5.5");
        assert_eq!(again.matches("\"codex-gate\"").count(), 1, "{again}");
        let fresh = merge("", &plan).unwrap();
        let v = jsonc_parser::parse_to_serde_value::<serde_json::Value>(&fresh, &ParseOptions::default()).unwrap();
        assert_eq!(v["models"]["mode"], "merge");
        assert!(merge("{ \"models\": ", &plan).is_err());
    }
}
