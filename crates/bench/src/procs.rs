//! The processes under test: start them (mock, bare relay, codex-gate — each its own process,
//! so each one's CPU time and memory can be read from /proc), wait until they listen, stop them.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    pub addr: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free 127.0.0.1 port (bound, then released for the child to take).
pub fn free_addr() -> anyhow::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

impl Proc {
    /// Run this executable again with `args` (a hidden subcommand) and wait until `addr` accepts.
    pub fn spawn_self(name: &str, addr: &str, args: &[String], log: &Path) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the benchmark's own executable")?;
        let log = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let mut p = Proc { name: name.into(), addr: addr.into(), child };
        p.wait_listening()?;
        Ok(p)
    }

    /// codex-gate itself (the hidden `gate` subcommand) serving `config`, listening on `addr`.
    pub fn spawn_gate(name: &str, addr: &str, config: &Path, log: &Path) -> anyhow::Result<Proc> {
        let args = ["gate".into(), "--config".into(), config.display().to_string(), "serve".into()];
        Proc::spawn_self(name, addr, &args, log)
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait()? {
                bail!("the {} exited at start ({status}); see its log in the output directory", self.name);
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the {} did not listen on {} within 30 s", self.name, self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds so far (all threads, including ones that have exited).
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid()).unwrap_or(0.0)
    }
}

/// Resident memory of process `pid`, in bytes (0 if it is gone).
pub fn rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0) * 1024
}

/// CPU seconds of process `pid` from `/proc/PID/stat` (utime + stime).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // USER_HZ is 100 on every Linux architecture this runs on; `getconf` confirms when present.
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The machine, for the report.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':']));
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned()))
        })
        .and_then(|v| v.parse::<u64>().ok());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc").arg("-V").output().ok().and_then(|o| String::from_utf8(o.stdout).ok());
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok());
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model.unwrap_or("unknown"),
        "memory_gib": mem_kb.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "kernel": kernel.trim(),
        "rustc": rustc.as_deref().map(str::trim),
        "commit": git.as_deref().map(str::trim),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
