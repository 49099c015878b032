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
    exec(bin, &provider_config(base_url, model, false, retries), &[("GW_API_KEY", key)], &[], "Say PONG").await
}

/// A `config.toml` whose provider `gw` is the gateway at `base_url` (…/v1), its key in
/// `GW_API_KEY`, `model` first, over its Responses WebSocket when `websocket`, with Codex's own
/// retries off (a test sees every failure).
pub fn config(base_url: &str, model: &str, websocket: bool) -> String {
    provider_config(base_url, model, websocket, false)
}

fn provider_config(base_url: &str, model: &str, websocket: bool, retries: bool) -> String {
    let retry = if retries { "" } else { "request_max_retries = 0\nstream_max_retries = 0\n" };
    format!(
        "model = \"{model}\"\nmodel_provider = \"gw\"\napproval_policy = \"never\"\nsandbox_mode = \"read-only\"\n\
         [model_providers.gw]\nname = \"codex-gate\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"GW_API_KEY\"\n\
         requires_openai_auth = false\nsupports_websockets = {websocket}\n{retry}"
    )
}

/// `codex exec --json PROMPT` with `config` as its config.toml, `files` written to its home
/// (e.g. `auth.json`), and `env` set; offline flags of codex-protocol §13.
pub async fn exec(bin: &str, config: &str, env: &[(&str, &str)], files: &[(&str, &str)], prompt: &str) -> Run {
    Session::new(config, files).exec(bin, env, &[prompt]).await
}

/// A Codex home and workspace kept across runs, so a later run can `resume` the session.
pub struct Session {
    home: TempDir,
    work: TempDir,
}

impl Session {
    pub fn new(config: &str, files: &[(&str, &str)]) -> Session {
        let (home, work) = (TempDir::new(), TempDir::new());
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        for (name, contents) in files {
            std::fs::write(home.path().join(name), contents).unwrap();
        }
        Session { home, work }
    }

    /// The workspace Codex runs in.
    pub fn work(&self) -> &std::path::Path {
        self.work.path()
    }

    /// `codex exec … --json ARGS` (e.g. `["first prompt"]` or `["resume", "--last", "next"]`).
    pub async fn exec(&self, bin: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
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
                "--json",
            ])
            .args(args)
            .current_dir(self.work.path())
            .env("CODEX_HOME", self.home.path())
            .env("HOME", self.home.path())
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let limit = std::env::var("CODEX_GATE_CODEX_TIMEOUT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(180);
        let Ok(out) = tokio::time::timeout(std::time::Duration::from_secs(limit), out).await else {
            return Run { code: None, events: Vec::new(), stderr: format!("codex exec timed out after {limit} s") };
        };
        let out = out.unwrap();
        let events =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Run { code: out.status.code(), events, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }
}
