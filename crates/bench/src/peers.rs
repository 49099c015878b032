//! Other gateways in the same run (`--peers litellm,ds4codex`): each is installed from its
//! registry into a cache directory once (a Python venv per peer, pinned versions), started for
//! each scenario it can serve with a config that routes model `bench` to the mock, measured in the
//! same alternating rounds as direct / bare relay / codex-gate, and stopped. A peer runs with its
//! defaults plus what it needs to start offline, listed in [`Peer::settings`].

use crate::scenarios::{Api, BodyShape, Scenario, Target};
use anyhow::{bail, Context};
use http::{HeaderName, HeaderValue};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a peer may take to start (LiteLLM's proxy imports a lot).
const START_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub name: &'static str,
    package: &'static str,
    version: &'static str,
    exe: &'static str,
    /// What was changed from the peer's defaults, and why (printed with the results).
    pub settings: &'static str,
}

pub const PEERS: [Peer; 2] = [
    Peer {
        name: "litellm",
        package: "litellm[proxy]",
        version: "1.108.7",
        exe: "litellm",
        settings: "one worker (--num_workers 1, as the other targets get no more); a master key (it refuses \
                   to start without one); LITELLM_LOCAL_MODEL_COST_MAP=True (no price list fetched from the \
                   internet); model `bench` = openai/bench at the mock",
    },
    Peer {
        name: "ds4codex",
        package: "ds4codex",
        version: "0.1.6",
        exe: "ds4codex",
        settings: "--target-url the mock's /v1/chat/completions, --api-key, --log-level WARNING (its INFO \
                   line per request would be measured too), a throwaway HOME and config path",
    },
];

impl Peer {
    /// Whether the peer can serve `sc` as codex-gate does: LiteLLM relays chat and Responses to a
    /// provider of the same API; ds4codex turns Responses into Chat Completions, nothing else.
    pub fn serves(&self, sc: &Scenario) -> bool {
        if sc.cluster {
            return false;
        }
        let inbound = match sc.body {
            BodyShape::Responses(_) => Api::Responses,
            BodyShape::SmallChat | BodyShape::Chat(_) => Api::Chat,
        };
        let translated = inbound == Api::Responses && sc.upstream == Api::Chat;
        match self.name {
            "litellm" => inbound == sc.upstream,
            "ds4codex" => translated,
            _ => false,
        }
    }
}

pub fn by_names(list: &str) -> anyhow::Result<Vec<Peer>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match PEERS.iter().find(|p| p.name == name) {
            Some(p) => out.push(*p),
            None if name == "codex-lb" => eprintln!(
                "peers: codex-lb is not measured yet: it pools ChatGPT accounts, and the mock backend knows \
                 only the accounts registered inside this process"
            ),
            None => bail!("--peers: unknown peer {name:?} (known: litellm, ds4codex)"),
        }
    }
    Ok(out)
}

/// Install `p` into `dir/NAME` unless it is there; the path of its executable.
pub fn install(dir: &Path, p: &Peer) -> anyhow::Result<PathBuf> {
    let venv = dir.join(p.name);
    let exe = venv.join("bin").join(p.exe);
    let marker = venv.join(format!(".installed-{}", p.version));
    if exe.exists() && marker.exists() {
        return Ok(exe);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("peers: installing {}=={} into {}", p.package, p.version, venv.display());
    let python = std::env::var("CODEX_GATE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    let spec = format!("{}=={}", p.package, p.version);
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "--cache-dir"])
        .arg(dir.join("pip-cache"))
        .arg(&spec))?;
    std::fs::write(&marker, &spec)?;
    Ok(exe)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A started peer; stopped when dropped.
pub struct Running {
    child: Child,
    pub target: Target,
    home: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Start `p` (installed at `exe`) in front of the mock at `mock_addr`, logging to `log`.
pub async fn start(p: &Peer, exe: &Path, mock_addr: &str, log: &Path) -> anyhow::Result<Running> {
    let addr = crate::procs::free_addr()?;
    let (host, port) = addr.rsplit_once(':').context("a free address")?;
    let home = std::env::temp_dir().join(format!("codex-gate-peer-{}-{}", p.name, rand::random::<u32>()));
    std::fs::create_dir_all(&home)?;
    let key = format!("sk-bench-{:032x}", rand::random::<u128>());
    let mut cmd = Command::new(exe);
    cmd.env("HOME", &home).current_dir(&home);
    match p.name {
        "litellm" => {
            let config = home.join("config.yaml");
            std::fs::write(
                &config,
                format!(
                    "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n      \
                     api_base: http://{mock_addr}/v1\n      api_key: sk-bench\n"
                ),
            )?;
            cmd.args(["--config"]).arg(&config).args(["--host", host, "--port", port, "--num_workers", "1"]);
            cmd.env("LITELLM_MASTER_KEY", &key).env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
        }
        "ds4codex" => {
            cmd.args(["run", "--config-path"]).arg(home.join("config.toml"));
            cmd.args(["--host", host, "--port", port, "--log-level", "WARNING", "--api-key", "sk-bench"]);
            cmd.arg("--target-url").arg(format!("http://{mock_addr}/v1/chat/completions"));
        }
        other => bail!("no way to start {other}"),
    }
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(Stdio::from(file.try_clone()?)).stderr(Stdio::from(file));
    let child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id();
    let target = Target {
        name: p.name.into(),
        url: format!("http://{addr}/v1"),
        headers: vec![(HeaderName::from_static("authorization"), HeaderValue::from_str(&format!("Bearer {key}"))?)],
        pid: Some(pid),
    };
    let mut running = Running { child, target, home };
    let started = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!("{} exited ({status}) while starting; see {}", p.name, log.display());
        }
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            // Listening; LiteLLM answers its liveness probe only once its startup is done.
            let ready = p.name != "litellm"
                || crate::http_get(&format!("http://{addr}/health/liveliness"))
                    .await
                    .is_ok_and(|b| b.contains("alive"));
            if ready {
                return Ok(running);
            }
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("{} did not start within {:?}; see {}", p.name, START_TIMEOUT, log.display());
        }
        // `running` is dropped (the child killed) on every early return above.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_gets_the_scenarios_it_can_serve() {
        let all = crate::scenarios::all(false);
        let served = |name: &str| -> Vec<&str> {
            let p = PEERS.iter().find(|p| p.name == name).unwrap();
            all.iter().filter(|s| p.serves(s)).map(|s| s.id).collect()
        };
        let (litellm, ds4) = (served("litellm"), served("ds4codex"));
        assert!(litellm.contains(&"a") && litellm.contains(&"b") && !litellm.contains(&"c"), "{litellm:?}");
        assert!(ds4.contains(&"c") && !ds4.contains(&"a") && !ds4.contains(&"b"), "{ds4:?}");
        assert!(by_names("litellm,codex-lb").unwrap().len() == 1, "codex-lb is skipped, saying why");
        assert!(by_names("nginx").is_err());
    }
}
