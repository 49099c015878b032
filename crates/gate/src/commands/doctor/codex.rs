//! Doctor's Codex checks: `config.toml`, every `<name>.config.toml` profile and `auth.json` in
//! Codex's home — syntax (with line and column), smart quotes, and each provider that points at
//! this gateway: `base_url` with `/v1`, the gateway's own port, `wire_api`, its key variable,
//! and a model the gateway routes. Fixes go through `toml_edit`, keeping the rest of the file.

use super::{Finding, Level};
use crate::commands::setup::codex::set_keeping_decor;
use crate::commands::setup::write_with_backup;
use std::path::Path;
use toml_edit::{DocumentMut, Item};

/// The TOML files Codex reads from `home`: the base config, then the profiles.
fn codex_files(home: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![home.join("config.toml")];
    let mut profiles: Vec<_> = std::fs::read_dir(home)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".config.toml")))
        .collect();
    profiles.sort();
    files.extend(profiles);
    files
}

/// `line:column` (1-based) of byte `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Check every Codex config in `home` against the gateway at `ours`. `keyed`: the gateway asks
/// every client for a key. Returns the `env_key` variables of the providers pointed at the
/// gateway, with where each is set, for the caller to try against the gateway.
pub fn check(
    home: &Path,
    ours: &str,
    models: Option<&[String]>,
    keyed: bool,
    fix: bool,
    found: &mut Vec<Finding>,
) -> Vec<(String, String)> {
    let mut env_keys = Vec::new();
    let ours_uri: Option<http::Uri> = ours.parse().ok();
    let our_port = ours_uri.as_ref().and_then(http::Uri::port_u16);
    let mut pointed = false;
    for file in codex_files(home) {
        let Ok(mut text) = std::fs::read_to_string(&file) else { continue };
        let shown = file.display().to_string();
        if let Some(at) = text.find(['\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']) {
            let (l, c) = position(&text, at);
            let mut f = Finding::bad(
                "codex",
                Level::Broken,
                format!("{shown}:{l}:{c}: a typographic quote (“ ” ‘ ’), as word processors and chat apps insert"),
                "TOML needs straight quotes; Codex refuses the whole file",
                "replace them with \" and '",
            );
            let fixed = fix && {
                let straight = text.replace(['\u{201c}', '\u{201d}'], "\"").replace(['\u{2018}', '\u{2019}'], "'");
                let ok = write_with_backup(&file, straight.as_bytes()).is_ok();
                if ok {
                    text = straight;
                }
                ok
            };
            f.fixed = fixed;
            found.push(f);
            if !fixed {
                // The parse error it causes would say the same thing again.
                continue;
            }
        }
        let mut doc: DocumentMut = match text.parse() {
            Ok(d) => d,
            Err(e) => {
                let msg = e.to_string().replace('\n', " ").split_whitespace().collect::<Vec<_>>().join(" ");
                found.push(Finding::bad(
                    "codex",
                    Level::Broken,
                    format!("{shown}: {msg}"),
                    "Codex refuses to start with it",
                    format!("edit {shown} where shown"),
                ));
                continue;
            }
        };
        let mut changed = false;
        let selected = doc.get("model_provider").and_then(Item::as_str).map(str::to_owned);
        let model = doc.get("model").and_then(Item::as_str).map(str::to_owned);
        let names: Vec<String> = doc
            .get("model_providers")
            .and_then(Item::as_table_like)
            .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default();
        for name in names {
            let Some(p) = doc["model_providers"].get_mut(&name).and_then(Item::as_table_like_mut) else { continue };
            let Some(url) = p.get("base_url").and_then(Item::as_str).map(str::to_owned) else { continue };
            let Ok(uri) = url.parse::<http::Uri>() else { continue };
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0");
            let labelled = name.contains("codex-gate")
                || p.get("name").and_then(Item::as_str).is_some_and(|n| n.contains("codex-gate"));
            let same_port = loopback && uri.port_u16() == our_port;
            if !(same_port || (loopback && labelled)) {
                continue;
            }
            pointed = true;
            let at = format!("{shown} [model_providers.{name}]");
            // Findings with the key and value that repair them.
            let mut issues: Vec<(Finding, Option<(&str, String)>)> = Vec::new();
            let wrong = if !same_port {
                Some(("is not where the gateway listens", "an old port or URL: every turn fails to connect"))
            } else if uri.path().trim_end_matches('/') != "/v1" {
                Some((
                    "does not end in /v1",
                    "Codex appends /responses to it and gets a 404: \"stream disconnected before completion\"",
                ))
            } else {
                None
            };
            if let Some((what, why)) = wrong {
                issues.push((
                    Finding::bad(
                        "codex",
                        Level::Broken,
                        format!("{at}: base_url {url} {what} ({ours})"),
                        why,
                        format!("base_url = \"{ours}\""),
                    ),
                    Some(("base_url", ours.to_owned())),
                ));
            }
            if let Some(w) = p.get("wire_api").and_then(Item::as_str).filter(|w| *w != "responses") {
                issues.push((
                    Finding::bad(
                        "codex",
                        Level::Broken,
                        format!("{at}: wire_api = \"{w}\""),
                        "Codex speaks only the Responses API and stops at start on other values (the gateway translates for chat-only models)",
                        "wire_api = \"responses\"",
                    ),
                    Some(("wire_api", "responses".to_owned())),
                ));
            }
            for (mut f, repair) in issues {
                if let (true, Some((k, v))) = (fix, repair) {
                    set_keeping_decor(p, k, &v);
                    f.fixed = true;
                    changed = true;
                }
                found.push(f);
            }
            if keyed && p.get("env_key").is_none() && p.get("experimental_bearer_token").is_none() {
                found.push(Finding::bad(
                    "codex",
                    Level::Broken,
                    format!("{at}: sends no client key (no env_key), and the gateway asks every client for one"),
                    "every turn is refused with \"Incorrect API key provided\"",
                    "codex-gate setup codex   (it creates a key for Codex and sets env_key)",
                ));
            }
            if let Some(var) = p.get("env_key").and_then(Item::as_str) {
                env_keys.push((at.clone(), var.to_owned()));
                if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
                    found.push(Finding::bad(
                        "codex",
                        Level::Broken,
                        format!("{at}: env_key {var} is not set in this shell"),
                        "Codex stops before the first turn when the variable is missing (GUI apps see only the login environment)",
                        format!(
                            "export {var}=… in your shell profile; for Codex Desktop on macOS also: launchctl setenv {var} …"
                        ),
                    ));
                }
                // Codex Desktop is started by launchd and sees its environment, not the shell's.
                if cfg!(target_os = "macos") {
                    if let Some(f) = gui_env_finding(&at, var, launchctl_getenv(var).as_deref()) {
                        found.push(f);
                    }
                }
            }
            if selected.as_deref() == Some(name.as_str()) {
                if let (Some(m), Some(list)) = (&model, models) {
                    if !list.iter().any(|x| x == m) {
                        found.push(Finding::bad(
                            "codex",
                            Level::Warn,
                            format!("{shown}: model \"{m}\" is not routed by the gateway"),
                            "every turn gets model_not_found",
                            "pick one of `codex-gate models` (codex-gate setup codex --model NAME)",
                        ));
                    }
                }
            }
        }
        if changed {
            if let Err(e) = write_with_backup(&file, doc.to_string().as_bytes()) {
                found.push(Finding::bad("codex", Level::Broken, format!("cannot write {shown}: {e}"), "", ""));
            }
        }
    }
    if !pointed {
        found.push(Finding::bad(
            "codex",
            Level::Warn,
            format!("no Codex config in {} points at the gateway", home.display()),
            "Codex talks to OpenAI directly",
            "codex-gate setup codex",
        ));
    } else if !found.iter().any(|f| f.check == "codex" && f.level != Level::Ok) {
        found.push(Finding::ok("codex", format!("{} points at the gateway correctly", home.display())));
    }
    let auth = home.join("auth.json");
    if let Ok(text) = std::fs::read_to_string(&auth) {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            found.push(Finding::bad(
                "codex",
                Level::Broken,
                format!("{}: {e}", auth.display()),
                "Codex cannot read its login (a trailing comma or a smart quote is the usual cause)",
                format!("fix {} at that line, or log in again: codex login", auth.display()),
            ));
        }
    }
    env_keys
}

/// `launchctl getenv VAR` (macOS): the value GUI apps get; `None` when it cannot be asked.
fn launchctl_getenv(var: &str) -> Option<String> {
    let out = std::process::Command::new("launchctl").args(["getenv", var]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A finding when `var` is not in the GUI environment (`gui`: what `launchctl getenv` said).
fn gui_env_finding(at: &str, var: &str, gui: Option<&str>) -> Option<Finding> {
    match gui {
        Some(v) if !v.is_empty() => None,
        _ => Some(Finding::bad(
            "codex",
            Level::Warn,
            format!("{at}: env_key {var} is not in the GUI environment"),
            "Codex Desktop is started by launchd and does not read shell profiles: it would stop before the first turn",
            format!("launchctl setenv {var} \"${var}\"  (`codex-gate setup codex` writes a LaunchAgent that does it at login), then restart Codex Desktop"),
        )),
    }
}

#[cfg(test)]
mod gui_env_tests {
    #[test]
    fn the_gui_environment_is_checked_by_its_own_value() {
        assert!(super::gui_env_finding("p", "CODEX_GATE_API_KEY", Some("cg-x")).is_none());
        for missing in [None, Some("")] {
            let f = super::gui_env_finding("p", "CODEX_GATE_API_KEY", missing).unwrap();
            assert!(f.fix.contains("launchctl setenv CODEX_GATE_API_KEY"), "{}", f.fix);
        }
    }
}
