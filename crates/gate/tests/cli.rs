//! The `codex-gate` binary: help, config refusals naming file and key, and `serve` answering on
//! its port with an embedded store and no config file at all.

mod common;

use common::TempDir;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_codex-gate"));
    c.env_remove("CODEX_GATE_CONFIG");
    c
}

#[test]
fn help_lists_the_commands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in ["serve", "check", "--config", "--log-format", "base_url"] {
        assert!(text.contains(s), "--help lacks {s}:\n{text}");
    }
}

#[test]
fn bad_config_is_refused_with_file_and_key() {
    let dir = TempDir::new();
    let path = dir.path().join("gate.toml");
    std::fs::write(&path, "[[providers]]\nname = \"x\"\nkind = \"chat\"\nbase_url = \"http://h\"\ntimeout = 5\n")
        .unwrap();
    for cmd in ["check", "serve"] {
        let out = bin().args(["--config", path.to_str().unwrap(), cmd]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(path.to_str().unwrap())
                && err.contains("providers[0]")
                && err.contains("unknown field `timeout`"),
            "{cmd}: {err}"
        );
    }
    let out = bin().args(["check"]).env("CODEX_GATE_CONFIG", path.to_str().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "CODEX_GATE_CONFIG is read");
}

#[test]
fn check_prints_the_resolved_routes() {
    let dir = TempDir::new();
    let path = dir.path().join("gate.toml");
    std::fs::write(
        &path,
        "[[providers]]\nname = \"ds\"\nkind = \"chat\"\nbase_url = \"http://h/v1\"\napi_key = \"${CG_TEST_KEY}\"\nmodels = [\"m\"]\n[[routes]]\nmodel = \"coder\"\ntargets = [\"ds/m\"]\nfallback = false\n",
    )
    .unwrap();
    let out = bin()
        .args(["--config", path.to_str().unwrap(), "check"])
        .env("CG_TEST_KEY", "sk-should-not-print")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("model coder -> ds/m (fail-closed)"), "{text}");
    assert!(text.contains("api key set") && !text.contains("sk-should-not-print"), "{text}");
}

#[test]
fn serve_starts_with_no_config_file_on_the_embedded_store() {
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = bin()
        .args(["--log-format", "json", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            ok = out.starts_with("HTTP/1.1 200") && out.contains("\"ok\"");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM: graceful shutdown.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(ok, "health check failed: {err}");
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{err}");
    assert!(dir.path().join("data/codex-gate/codex-gate.db").exists(), "SQLite file in the XDG data dir");
    assert!(err.contains("codex-gate stopped"), "{err}");
    let mut guided = false;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("--log-format json wrote a non-JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        // Nothing to route on a first run: the next steps and the exact base_url.
        let m = v["message"].as_str().unwrap();
        guided |= m.contains("accounts import ~/.codex/auth.json")
            && m.contains(&format!("base_url = http://127.0.0.1:{port}/v1"));
    }
    assert!(guided, "no first-run guidance: {err}");
}
