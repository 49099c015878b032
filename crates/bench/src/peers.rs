//! Other gateways in the same run (`--peers litellm,ds4codex`): each is installed from its
//! registry into a cache directory once (a Python venv per peer, pinned versions), started for
//! each scenario it can serve with a config that routes model `bench` to the mock, measured in the
//! same alternating rounds as direct / bare relay / codex-gate, and stopped. A peer runs with its
//! defaults plus what it needs to start offline, listed in [`Peer::settings`]. A pooling peer
//! (codex-lb) imports the mock's open ChatGPT accounts as Codex `auth.json` files, the way its
//! users add theirs, and is measured through its pool.

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
    /// The oldest Python it installs on (major, minor).
    python: (u32, u32),
    /// What was changed from the peer's defaults, and why (printed with the results).
    pub settings: &'static str,
}

pub const PEERS: [Peer; 3] = [
    Peer {
        name: "litellm",
        package: "litellm[proxy]",
        version: "1.108.7",
        exe: "litellm",
        python: (3, 9),
        settings: "one worker (--num_workers 1, as the other targets get no more); a master key (it refuses \
                   to start without one); LITELLM_LOCAL_MODEL_COST_MAP=True (no price list fetched from the \
                   internet); model `bench` = openai/bench at the mock",
    },
    Peer {
        name: "ds4codex",
        package: "ds4codex",
        version: "0.1.6",
        exe: "ds4codex",
        python: (3, 10),
        settings: "--target-url the mock's /v1/chat/completions, --api-key, --log-level WARNING (its INFO \
                   line per request would be measured too), a throwaway HOME and config path",
    },
    Peer {
        name: "codex-lb",
        package: "codex-lb",
        version: "1.24.0",
        exe: "codex-lb",
        python: (3, 13),
        settings: "CODEX_LB_UPSTREAM_BASE_URL = the mock's ChatGPT backend; CODEX_LB_TELEMETRY_ENABLED=false (it \
                   would send anonymous telemetry to the internet); a throwaway data dir; the scenario's pool \
                   accounts imported as auth.json files over its dashboard API (POST /api/accounts/import)",
    },
];

impl Peer {
    /// Whether the peer can serve `sc` as codex-gate does: LiteLLM relays chat and Responses to a
    /// provider of the same API; ds4codex turns Responses into Chat Completions, nothing else.
    pub fn serves(&self, sc: &Scenario) -> bool {
        // Peers are pointed at the plain-HTTP mock; the TLS scenarios measure codex-gate's own
        // upstream TLS against the bare relay's.
        if sc.cluster || sc.tls {
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
            // A pool of ChatGPT accounts serves Responses clients, and only where the scenario
            // measures pools (the mock opens accounts for it).
            "codex-lb" => inbound == Api::Responses && sc.pool_accounts > 0,
            _ => false,
        }
    }
}

pub fn by_names(list: &str) -> anyhow::Result<Vec<Peer>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match PEERS.iter().find(|p| p.name == name) {
            Some(p) => out.push(*p),
            None => bail!("--peers: unknown peer {name:?} (known: litellm, ds4codex, codex-lb)"),
        }
    }
    Ok(out)
}

/// A Python interpreter at least `min`: `CODEX_GATE_BENCH_PYTHON`, else the first of
/// python3, python3.13, python3.14 on PATH that is new enough.
fn python(min: (u32, u32)) -> Option<String> {
    let new_enough = |exe: &str| {
        let probe = format!("import sys; sys.exit(0 if sys.version_info[:2] >= ({}, {}) else 1)", min.0, min.1);
        Command::new(exe).args(["-c", &probe]).output().is_ok_and(|o| o.status.success())
    };
    let wanted = std::env::var("CODEX_GATE_BENCH_PYTHON").ok();
    let candidates = wanted.into_iter().chain(["python3", "python3.13", "python3.14"].map(String::from));
    candidates.into_iter().find(|exe| new_enough(exe))
}

/// Install `p` into `dir/NAME` unless it is there; the path of its executable, or `None` (said
/// why) when this machine has no Python it installs on.
pub fn install(dir: &Path, p: &Peer) -> anyhow::Result<Option<PathBuf>> {
    let venv = dir.join(p.name);
    let exe = venv.join("bin").join(p.exe);
    let marker = venv.join(format!(".installed-{}", p.version));
    if exe.exists() && marker.exists() {
        return Ok(Some(exe));
    }
    let Some(python) = python(p.python) else {
        eprintln!(
            "peers: skipping {}: it needs Python >= {}.{} and none was found (set CODEX_GATE_BENCH_PYTHON)",
            p.name, p.python.0, p.python.1
        );
        return Ok(None);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("peers: installing {}=={} into {} with {python}", p.package, p.version, venv.display());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    let spec = format!("{}=={}", p.package, p.version);
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "--cache-dir"])
        .arg(dir.join("pip-cache"))
        .arg(&spec))?;
    std::fs::write(&marker, &spec)?;
    Ok(Some(exe))
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

/// Start `p` (installed at `exe`) in front of the mock at `mock_addr` for `sc`, logging to `log`.
pub async fn start(p: &Peer, exe: &Path, sc: &Scenario, mock_addr: &str, log: &Path) -> anyhow::Result<Running> {
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
        "codex-lb" => {
            cmd.args(["--host", host, "--port", port]);
            cmd.env("CODEX_LB_DATA_DIR", home.join("data"))
                .env("CODEX_LB_UPSTREAM_BASE_URL", format!("http://{mock_addr}/backend-api"))
                .env("CODEX_LB_TELEMETRY_ENABLED", "false");
        }
        other => bail!("no way to start {other}"),
    }
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(Stdio::from(file.try_clone()?)).stderr(Stdio::from(file));
    let child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id();
    // codex-lb asks no key of local clients by default.
    let headers = if p.name == "codex-lb" {
        vec![]
    } else {
        vec![(HeaderName::from_static("authorization"), HeaderValue::from_str(&format!("Bearer {key}"))?)]
    };
    let target = Target { name: p.name.into(), url: format!("http://{addr}/v1"), headers, pid: Some(pid), tls: None };
    let mut running = Running { child, target, home };
    let started = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!("{} exited ({status}) while starting; see {}", p.name, log.display());
        }
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            // Listening; LiteLLM and codex-lb answer their health probes once startup is done.
            let ready = match p.name {
                "litellm" => crate::http_get(&format!("http://{addr}/health/liveliness"))
                    .await
                    .is_ok_and(|b| b.contains("alive")),
                "codex-lb" => crate::http_get(&format!("http://{addr}/health")).await.is_ok_and(|b| b.contains("ok")),
                _ => true,
            };
            if ready {
                if p.name == "codex-lb" {
                    for i in 0..sc.pool_accounts {
                        import_auth_json(&addr, i).await.with_context(|| format!("codex-lb: importing account {i}"))?;
                    }
                }
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

/// POST pool account `i` as an `auth.json` upload to codex-lb's import endpoint.
async fn import_auth_json(addr: &str, i: usize) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let boundary = format!("codex-gate-bench-{:016x}", rand::random::<u64>());
    let file = serde_json::to_string(&crate::pool::auth_json(i))?;
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"auth_json\"; filename=\"auth.json\"\r\n\
         Content-Type: application/json\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let mut send = crate::load::connect(addr).await.map_err(anyhow::Error::msg)?;
    let req = http::Request::post("/api/accounts/import")
        .header(http::header::HOST, addr)
        .header(http::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let text = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&text));
    }
    Ok(())
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
        let (litellm, ds4, lb) = (served("litellm"), served("ds4codex"), served("codex-lb"));
        assert!(litellm.contains(&"a") && litellm.contains(&"b") && !litellm.contains(&"c"), "{litellm:?}");
        assert!(ds4.contains(&"c") && !ds4.contains(&"a") && !ds4.contains(&"b"), "{ds4:?}");
        assert_eq!(lb, ["b"], "codex-lb serves where pools are measured");
        assert!(!litellm.contains(&"j") && !litellm.contains(&"k"), "no peer in the TLS scenarios");
        assert_eq!(by_names("litellm, codex-lb").unwrap().len(), 2);
        assert!(by_names("nginx").is_err());
    }
}
