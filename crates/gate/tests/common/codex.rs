//! The real Codex CLI as a test client: one `codex exec --json` turn against a gateway.

use super::TempDir;
use serde_json::Value;

pub struct Run {
    pub code: Option<i32>,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Run {
    pub fn items(&self, kind: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
            .map(|e| &e["item"])
            .collect()
    }
    pub fn dump(&self) -> String {
        format!(
            "exit {:?}\n{}\n{}",
            self.code,
            self.events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
            self.stderr
        )
    }
    /// Every error message Codex reported (events and stderr).
    pub fn errors(&self) -> String {
        let mut s: String = self
            .events
            .iter()
            .filter(|e| e["type"] == "error" || e["type"] == "turn.failed")
            .map(|e| format!("{e}\n"))
            .collect();
        s.push_str(&self.stderr);
        s
    }
}

/// One `codex exec` turn with `model` against the gateway at `base_url` (…/v1), sending `key`
/// through `env_key`. `retries`: keep Codex's default retry settings (true) or set both to 0.
pub async fn turn(bin: &str, base_url: &str, model: &str, retries: bool, key: &str) -> Run {
    let home = TempDir::new();
    let work = TempDir::new();
    let retry = if retries { "" } else { "request_max_retries = 0\nstream_max_retries = 0\n" };
    let config = format!(
        "model = \"{model}\"\nmodel_provider = \"gw\"\napproval_policy = \"never\"\nsandbox_mode = \"read-only\"\n\
         [model_providers.gw]\nname = \"codex-gate\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"GW_API_KEY\"\n\
         requires_openai_auth = false\n{retry}"
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let out = tokio::process::Command::new(bin)
        .args([
            "exec",
            "--skip-git-repo-check",
            "-s",
            "read-only",
            "-c",
            "analytics.enabled=false",
            "-c",
            "features.plugins=false",
        ])
        .args(["--json", "Say PONG"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("HOME", home.path())
        .env("GW_API_KEY", key)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(180), out).await.expect("codex exec timed out").unwrap();
    let events = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    Run { code: out.status.code(), events, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}
