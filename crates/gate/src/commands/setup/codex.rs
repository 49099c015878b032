//! `codex-gate setup codex`: a Codex profile (`$CODEX_HOME/<name>.config.toml`, used as
//! `codex --profile <name>`; the base config and the user's ChatGPT default stay as they are),
//! or with `--default` the base `config.toml` itself, edited with `toml_edit` so the user's
//! comments and order survive. Beside it goes the model catalog Codex reads with an API key
//! (`model_catalog_json`), generated from the gateway's models.

use super::{client_base_url, restore, write_with_backup};
use crate::config::Config;
use crate::pool::catalog::CLIENT_VERSION;
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use toml_edit::{value, DocumentMut, Item, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, clap::Args)]
pub struct CodexArgs {
    /// The provider and profile name
    #[arg(long, default_value = "codex-gate")]
    pub name: String,
    /// Edit $CODEX_HOME/config.toml itself, making the gateway Codex's default
    #[arg(long)]
    pub default: bool,
    /// Show the gateway's models in the Codex Desktop picker (edits the base config: the
    /// picker only lists custom models whose provider has requires_openai_auth); off undoes it
    #[arg(long, value_enum)]
    pub desktop: Option<OnOff>,
    /// Put back what an earlier setup changed, byte for byte
    #[arg(long)]
    pub undo: bool,
    /// The gateway's base URL for clients [default: from server.listen]
    #[arg(long)]
    pub url: Option<String>,
    /// The model Codex starts with [default: the gateway's first listed model]
    #[arg(long)]
    pub model: Option<String>,
    /// Codex's home [default: $CODEX_HOME, else ~/.codex]
    #[arg(long, value_name = "DIR")]
    pub codex_home: Option<PathBuf>,
    /// The environment variable Codex reads the client key from (env_key), when the gateway
    /// uses keys
    #[arg(long, default_value = "CODEX_GATE_API_KEY", value_name = "VAR")]
    pub key_env: String,
    /// Do not create a client key or set env_key, even when the gateway uses keys
    #[arg(long)]
    pub no_key: bool,
}

/// Where everything goes.
struct Paths {
    profile: PathBuf,
    base: PathBuf,
    catalog: PathBuf,
    /// The client key, as an `export` line (0600).
    env: PathBuf,
}

fn paths(home: &Path, name: &str) -> Paths {
    Paths {
        profile: home.join(format!("{name}.config.toml")),
        base: home.join("config.toml"),
        catalog: home.join(format!("{name}-models.json")),
        env: home.join(format!("{name}.env")),
    }
}

/// The LaunchAgent label for profile `name` (macOS).
fn agent_label(name: &str) -> String {
    format!("dev.codex-gate.{name}.env")
}

pub fn codex_home(arg: Option<&Path>) -> Option<PathBuf> {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".codex")))
}

pub async fn run(config_path: Option<&Path>, args: CodexArgs) -> anyhow::Result<()> {
    let name = &args.name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("--name {name:?}: use letters, digits, '-' and '_'");
    }
    if ["openai", "ollama", "lmstudio"].contains(&name.as_str()) {
        bail!("--name {name:?} is one of Codex's own providers; choose another name");
    }
    let home = codex_home(args.codex_home.as_deref()).context("no Codex home: set CODEX_HOME or HOME")?;
    let p = paths(&home, name);
    let edit_base = args.default || args.desktop.is_some();
    if args.undo || args.desktop == Some(OnOff::Off) {
        let mut done = Vec::new();
        let files: &[&Path] = if edit_base { &[&p.base, &p.catalog] } else { &[&p.profile, &p.catalog] };
        for f in files {
            done.extend(restore(f)?);
        }
        if args.undo {
            // The key this setup made goes with it.
            if let (Ok(config), Some(old)) = (Config::load(config_path), super::client_key::read_env_file(&p.env)) {
                done.extend(super::client_key::revoke_key(&config, &old.key).await);
            }
            done.extend(restore(&p.env)?);
            if let Some(agent) = super::client_key::launch_agent_path(&agent_label(name)) {
                done.extend(restore(&agent)?);
            }
        }
        if done.is_empty() {
            println!("nothing to undo in {}", home.display());
        }
        for d in done {
            println!("{d}");
        }
        return Ok(());
    }
    let config = Config::load(config_path)?;
    let (base_url, added_v1) = client_base_url(args.url.as_deref(), config.server.listen)?;
    let mut out = Vec::new();
    // A client key, once the gateway uses them: Codex reads it from `env_key`.
    let mut env_steps = Vec::new();
    let keyed = if args.no_key { None } else { super::client_key::keyed_store(&config).await? };
    let env_key = match keyed {
        None => None,
        Some(store) => {
            let var = &args.key_env;
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("--key-env {var:?}: an environment variable name (letters, digits, '_')");
            }
            let old = super::client_key::read_env_file(&p.env).map(|e| e.key);
            let (key, id, created) =
                super::client_key::provision(&store, &format!("codex ({name} profile)"), old.as_deref()).await?;
            store.close().await;
            if created {
                super::client_key::wait_accepted(&base_url, &key).await;
            }
            write_with_backup(&p.env, super::client_key::env_file_text(var, &key, &id).as_bytes())?;
            out.push(format!(
                "{} client key {id}; it is in {} (mode 0600)",
                if created { "created" } else { "kept" },
                p.env.display()
            ));
            let agent = if cfg!(target_os = "macos") {
                let label = agent_label(name);
                let path = super::client_key::launch_agent_path(&label);
                if let Some(a) = &path {
                    write_with_backup(a, super::client_key::launch_agent(&label, var, &p.env).as_bytes())?;
                    out.push(format!("wrote {} (sets {var} for GUI apps at login)", a.display()));
                }
                path
            } else {
                None
            };
            env_steps = super::client_key::env_steps(cfg!(target_os = "macos"), var, &p.env, agent.as_deref());
            Some((var.clone(), key))
        }
    };
    // With a key the gateway's catalog shows what this key may use.
    let (catalog, from) = catalog(&config, &base_url, env_key.as_ref().map(|(_, k)| k.as_str())).await;
    let models: Vec<&str> = catalog["models"]
        .as_array()
        .map(|m| m.iter().filter(|e| e["visibility"] == "list").filter_map(|e| e["slug"].as_str()).collect())
        .unwrap_or_default();
    let model = args.model.clone().or_else(|| models.first().map(|m| (*m).to_owned()));
    let desktop = args.desktop == Some(OnOff::On);
    // Codex refuses an empty catalog, so with no models there is none (and no key naming it).
    let has_catalog = catalog["models"].as_array().is_some_and(|m| !m.is_empty());
    if has_catalog {
        let text = serde_json::to_vec_pretty(&catalog)?;
        write_with_backup(&p.catalog, &text)?;
        out.push(format!("wrote {} ({} models from {from})", p.catalog.display(), models.len()));
    } else {
        out.push(format!("no model catalog: {from} lists no models yet (run setup again once it does)"));
    }
    let instructions = format!("run: . '{}'   (written by codex-gate setup codex)", p.env.display());
    let plan = Plan {
        name,
        base_url: &base_url,
        model: model.as_deref(),
        catalog: has_catalog.then_some(p.catalog.as_path()),
        desktop,
        env_key: env_key.as_ref().map(|(v, _)| (v.as_str(), instructions.as_str())),
    };
    if edit_base {
        let old = match std::fs::read_to_string(&p.base) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.base.display())),
        };
        let text = edit_base_config(&old, &plan).with_context(|| format!("{} is not valid TOML", p.base.display()))?;
        write_with_backup(&p.base, text.as_bytes())?;
        out.push(format!("edited {} (Codex's default is now the gateway; undo: --undo --default)", p.base.display()));
    } else {
        write_with_backup(&p.profile, profile(&plan).as_bytes())?;
        out.push(format!(
            "wrote {} (use it as `codex --profile {name}`; your base config is untouched)",
            p.profile.display()
        ));
    }
    for line in out {
        println!("{line}");
    }
    println!("{}", explain(&plan, added_v1));
    if !env_steps.is_empty() {
        println!("put the key in Codex's environment:");
        for s in env_steps {
            println!("  {s}");
        }
    }
    Ok(())
}

/// What to write.
struct Plan<'a> {
    name: &'a str,
    base_url: &'a str,
    model: Option<&'a str>,
    catalog: Option<&'a Path>,
    desktop: bool,
    /// (variable, how to set it): the client key Codex sends.
    env_key: Option<(&'a str, &'a str)>,
}

/// The gateway's catalog: from the running gateway (it knows the pool's models), else built
/// from the config alone. Returns it and where it came from.
async fn catalog(config: &Config, base_url: &str, key: Option<&str>) -> (Value, String) {
    let url = format!("{base_url}/models?client_version={CLIENT_VERSION}");
    let fetched = crate::commands::get_json(&url, std::time::Duration::from_secs(5), key)
        .await
        .filter(|v| v["models"].is_array());
    match fetched {
        Some(v) => (v, base_url.to_owned()),
        None => {
            let router = crate::routing::ModelRouter::new(config);
            let built = crate::codex_catalog::build(&router, None);
            (built.body, "the config (the gateway was not reachable, so pool models are missing)".to_owned())
        }
    }
}

/// The provider table Codex reads (its fields are `deny_unknown_fields`: only known keys).
fn provider_table(plan: &Plan<'_>) -> Table {
    let mut t = Table::new();
    t["name"] = value(plan.name);
    t["base_url"] = value(plan.base_url);
    t["wire_api"] = value("responses");
    t["supports_websockets"] = value(true);
    if let Some((var, how)) = plan.env_key {
        t["env_key"] = value(var);
        t["env_key_instructions"] = value(how);
    }
    if plan.desktop {
        t["requires_openai_auth"] = value(true);
    }
    t
}

/// Set `key` in `t`, keeping the comment and spacing around a value already there.
pub(crate) fn set_keeping_decor(t: &mut dyn toml_edit::TableLike, key: &str, v: &str) {
    match t.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = toml_edit::Value::from(v);
            *old.decor_mut() = decor;
        }
        None => {
            t.insert(key, value(v));
        }
    }
}

/// The top-level keys: the model, the provider and the catalog.
fn set_top(doc: &mut DocumentMut, plan: &Plan<'_>) {
    let top = doc.as_table_mut();
    if let Some(m) = plan.model {
        set_keeping_decor(top, "model", m);
    }
    set_keeping_decor(top, "model_provider", plan.name);
    match plan.catalog {
        Some(c) => set_keeping_decor(top, "model_catalog_json", &c.display().to_string()),
        None => {
            doc.remove("model_catalog_json");
        }
    }
}

/// A whole profile file.
fn profile(plan: &Plan<'_>) -> String {
    let mut doc = DocumentMut::new();
    set_top(&mut doc, plan);
    let mut providers = Table::new();
    providers.set_implicit(true);
    providers[plan.name] = Item::Table(provider_table(plan));
    doc["model_providers"] = Item::Table(providers);
    format!(
        "# Written by `codex-gate setup codex`: Codex through codex-gate at {}.\n\
         # Use: codex --profile {}   (undo: codex-gate setup codex --undo)\n{}",
        plan.base_url, plan.name, doc
    )
}

/// The base config with the gateway as Codex's default, everything else kept as written.
fn edit_base_config(old: &str, plan: &Plan<'_>) -> Result<String, toml_edit::TomlError> {
    let mut doc: DocumentMut = old.parse()?;
    set_top(&mut doc, plan);
    let providers = doc.entry("model_providers").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if let Some(t) = providers.as_table_like_mut() {
        match t.get_mut(plan.name).and_then(Item::as_table_like_mut) {
            // Keep keys the user added to an earlier gateway table (headers, retries).
            Some(existing) => {
                for (k, v) in provider_table(plan).iter() {
                    existing.insert(k, v.clone());
                }
                if !plan.desktop {
                    existing.remove("requires_openai_auth");
                }
                if plan.env_key.is_none() {
                    existing.remove("env_key");
                    existing.remove("env_key_instructions");
                }
            }
            None => {
                t.insert(plan.name, Item::Table(provider_table(plan)));
            }
        }
    }
    Ok(doc.to_string())
}

/// Which settings were set and why, and which were left alone.
fn explain(plan: &Plan<'_>, added_v1: bool) -> String {
    let mut s = String::from("set:\n");
    let mut line = |k: &str, why: &str| s.push_str(&format!("  {k:<38} {why}\n"));
    line(&format!("model_provider = \"{}\"", plan.name), "every turn goes to the gateway");
    line(
        &format!("base_url = \"{}\"", plan.base_url),
        if added_v1 { "with /v1 added: Codex appends /responses to it" } else { "Codex appends /responses to it" },
    );
    line("wire_api = \"responses\"", "the only wire API Codex speaks");
    line("supports_websockets = true", "one connection per session; each turn sends only its new items");
    if plan.catalog.is_some() {
        line("model_catalog_json", "context windows and reasoning levels of the gateway's models");
    }
    if let Some(m) = plan.model {
        line(&format!("model = \"{m}\""), "what Codex starts with (--model to choose)");
    }
    if let Some((var, _)) = plan.env_key {
        line(
            &format!("env_key = \"{var}\""),
            "the gateway asks every client for a key: Codex sends it from this variable",
        );
    }
    if plan.desktop {
        line(
            "requires_openai_auth = true",
            "the Desktop picker lists custom models only then; Codex sends its ChatGPT token, which the gateway never forwards",
        );
    }
    s.push_str("left unset:\n");
    let mut unset = |k: &str, why: &str| s.push_str(&format!("  {k:<38} {why}\n"));
    unset("name = \"OpenAI\"", "Codex then compacts remotely (served too); with this name it compacts locally");
    if plan.env_key.is_none() {
        unset("env_key", "the gateway needs no client key (none are configured)");
    }
    if plan.desktop {
        s.push_str("Quit Codex Desktop completely and start it again to see the models.\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(catalog: &'a Path, desktop: bool) -> Plan<'a> {
        Plan {
            name: "codex-gate",
            base_url: "http://127.0.0.1:2455/v1",
            model: Some("gpt-5.5"),
            catalog: Some(catalog),
            desktop,
            env_key: None,
        }
    }

    #[test]
    fn the_base_config_keeps_comments_order_and_other_providers() {
        let old = "# my settings\nmodel = \"o3\" # the old default\napproval_policy = \"never\"\n\n\
                   [model_providers.other]\nname = \"Other\" # keep me\nbase_url = \"http://x/v1\"\n\n\
                   [profiles.fast]\nmodel = \"o4-mini\"\n";
        let cat = PathBuf::from("/h/.codex/codex-gate-models.json");
        let new = edit_base_config(old, &plan(&cat, false)).unwrap();
        for kept in ["# my settings", "approval_policy = \"never\"", "name = \"Other\" # keep me", "[profiles.fast]"] {
            assert!(new.contains(kept), "{kept} lost:\n{new}");
        }
        assert!(new.contains("model = \"gpt-5.5\" # the old default"), "{new}");
        let v: toml::Value = toml::from_str(&new).unwrap();
        assert_eq!(v["model_provider"].as_str(), Some("codex-gate"));
        assert_eq!(v["model_providers"]["codex-gate"]["base_url"].as_str(), Some("http://127.0.0.1:2455/v1"));
        assert_eq!(v["model_providers"]["other"]["base_url"].as_str(), Some("http://x/v1"));
        // A second run (desktop on, then off) changes only what it owns.
        let on = edit_base_config(&new, &plan(&cat, true)).unwrap();
        let v: toml::Value = toml::from_str(&on).unwrap();
        assert_eq!(v["model_providers"]["codex-gate"]["requires_openai_auth"].as_bool(), Some(true));
        let off = edit_base_config(&on, &plan(&cat, false)).unwrap();
        assert_eq!(off, new);
        assert!(edit_base_config("model = ", &plan(&cat, false)).is_err());
    }
}
