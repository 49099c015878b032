//! The client key a setup gives its client, once the gateway uses keys: created in the store
//! (or the one an earlier setup made, while it still works), and for Codex kept in an env file
//! (0600) beside its config with the step that puts it in the environment of shells (a
//! profile line) and of GUI apps (macOS: `launchctl setenv`, and a LaunchAgent for later logins).

use crate::access::manage;
use crate::config::Config;
use crate::store::Store;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The store, when it exists and uses keys (or `require_keys`); `None`: no key is needed.
pub async fn keyed_store(config: &Config) -> anyhow::Result<Option<Store>> {
    let url = &config.store.url;
    // Never create a store just to look: a gateway that never ran has no keys.
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !config.server.require_keys && !Path::new(path.split('?').next().unwrap_or(path)).exists() {
            return Ok(None);
        }
    }
    let store = Store::open(url).await?;
    if config.server.require_keys || !store.list_keys().await?.is_empty() {
        return Ok(Some(store));
    }
    store.close().await;
    Ok(None)
}

/// An env file written by setup: its key and the key's id.
#[derive(Debug)]
pub struct EnvFile {
    pub key: String,
    pub id: String,
}

/// The env file's text: a marker line with the key's id (so `--undo` can revoke it) and the
/// export line.
pub fn env_file_text(var: &str, key: &str, id: &str) -> String {
    format!(
        "# Written by codex-gate setup: the client key for the gateway (key id: {id}).\n\
         # Revoke with `codex-gate keys revoke {id}`; undo the setup to revoke it and remove this file.\n\
         export {var}='{key}'\n"
    )
}

pub fn read_env_file(path: &Path) -> Option<EnvFile> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.split("(key id: ").nth(1)?.split(')').next()?.to_owned();
    let key = text.lines().find_map(|l| l.strip_prefix("export "))?.split_once('=')?.1.trim_matches('\'').to_owned();
    Some(EnvFile { key, id })
}

/// The key for a client named `label`: `existing` (what an earlier setup wrote) if it still
/// works, else a new one. Returns (key, id, created).
pub async fn provision(store: &Store, label: &str, existing: Option<&str>) -> anyhow::Result<(String, String, bool)> {
    if let Some(old) = existing {
        let set = crate::access::keys::Keys::default();
        set.sync(store, true).await?;
        if let Ok(k) = set.current().check(Some(old), crate::now_ms()) {
            return Ok((old.to_owned(), k.id.clone(), false));
        }
    }
    let spec = json!({"name": label});
    let (key, row) = manage::create(store, spec.as_object().expect("an object")).await?;
    Ok((key, row.id, true))
}

/// After creating a key: wait (up to 2 s) until a running gateway at `base_url` accepts it, as
/// it does within a second of the change; `false` when none answers for it.
pub async fn wait_accepted(base_url: &str, key: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let url = format!("{base_url}/models");
        if crate::commands::get_json(&url, std::time::Duration::from_millis(500), Some(key)).await.is_some() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Revoke `key` (undo of a setup that created it), if it is one of the store's keys.
pub async fn revoke_key(config: &Config, key: &str) -> Option<String> {
    let store = Store::open(&config.store.url).await.ok()?;
    let set = crate::access::keys::Keys::default();
    set.sync(&store, true).await.ok()?;
    let id = set.current().check(Some(key), crate::now_ms()).ok()?.id.clone();
    let row = manage::revoke(&store, &id).await.ok()?;
    store.close().await;
    Some(format!("revoked client key {} ({})", row.id, row.prefix))
}

/// The LaunchAgent that sets `var` for GUI apps at every login (macOS).
pub fn launch_agent(label: &str, var: &str, env_file: &Path) -> String {
    let script = format!(". '{}' && launchctl setenv {var} \"${var}\"", env_file.display());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n  <key>Label</key><string>{label}</string>\n  \
         <key>ProgramArguments</key>\n  <array><string>/bin/sh</string><string>-c</string><string>{}</string></array>\n  \
         <key>RunAtLoad</key><true/>\n</dict>\n</plist>\n",
        xml_escape(&script)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn launch_agent_path(label: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join("Library/LaunchAgents").join(format!("{label}.plist")))
}

/// What the user runs so that `var` is set where Codex starts: shells everywhere, GUI apps on
/// macOS too.
pub fn env_steps(macos: bool, var: &str, env_file: &Path, agent: Option<&Path>) -> Vec<String> {
    let f = env_file.display();
    let mut steps = vec![format!("shells: add to ~/.zshrc or ~/.bashrc:  [ -f '{f}' ] && . '{f}'")];
    if macos {
        steps.push(format!(
            "Codex Desktop (GUI apps do not read shell profiles): . '{f}' && launchctl setenv {var} \"${var}\""
        ));
        if let Some(a) = agent {
            steps.push(format!(
                "at every login: the LaunchAgent {} does the same (load it: launchctl load '{}')",
                a.display(),
                a.display()
            ));
        }
        steps.push("then quit Codex Desktop completely and start it again".into());
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_round_trip_and_steps_name_the_file() {
        let dir = std::env::temp_dir().join(format!("cg-env-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("codex-gate.env");
        std::fs::write(&f, env_file_text("CODEX_GATE_API_KEY", "cg-abc_-1", "key_0123")).unwrap();
        let e = read_env_file(&f).unwrap();
        assert_eq!((e.key.as_str(), e.id.as_str()), ("cg-abc_-1", "key_0123"));
        let linux = env_steps(false, "CODEX_GATE_API_KEY", &f, None);
        assert_eq!(linux.len(), 1);
        assert!(linux[0].contains(&format!(". '{}'", f.display())));
        let agent = PathBuf::from("/Users/u/Library/LaunchAgents/dev.codex-gate.env.plist");
        let mac = env_steps(true, "CODEX_GATE_API_KEY", &f, Some(&agent));
        assert!(mac[1].contains("launchctl setenv CODEX_GATE_API_KEY \"$CODEX_GATE_API_KEY\""), "{mac:?}");
        assert!(mac[2].contains("launchctl load"));
        let plist = launch_agent("dev.codex-gate.env", "CODEX_GATE_API_KEY", &f);
        assert!(plist.contains("<key>RunAtLoad</key><true/>") && plist.contains("launchctl setenv CODEX_GATE_API_KEY"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
