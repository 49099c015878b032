//! `codex-gate service`: the systemd user unit and the LaunchAgent it writes (snapshots, with
//! the binary, the config and the log path in full), `status`, and `uninstall` removing them.
//! `--no-start` keeps the machine's own service manager out of the test.

mod common;

use common::TempDir;
use std::process::Command;

fn service(home: &std::path::Path, cfg: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", cfg.to_str().unwrap(), "service"])
        .args(args)
        .args(["--no-start"])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_status_and_uninstall_on_both_platforms() {
    let home = TempDir::new();
    let home = std::fs::canonicalize(home.path()).unwrap();
    let cfg = home.join("gate.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:2455\"\n").unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_codex-gate")).unwrap();
    let stable = |s: &str| s.replace(exe.to_str().unwrap(), "$EXE").replace(home.to_str().unwrap(), "$HOME");

    let said = service(&home, &cfg, &["install", "--platform", "linux"]);
    assert!(said.contains("systemctl --user enable --now codex-gate.service"), "{said}");
    let unit = home.join(".config/systemd/user/codex-gate.service");
    insta::assert_snapshot!("systemd_unit", stable(&std::fs::read_to_string(&unit).unwrap()));
    let said = service(&home, &cfg, &["status", "--platform", "linux"]);
    assert!(said.contains("installed:") && said.contains("--config"), "{said}");

    service(&home, &cfg, &["install", "--platform", "macos"]);
    let plist = home.join("Library/LaunchAgents/dev.codex-gate.plist");
    insta::assert_snapshot!("launch_agent", stable(&std::fs::read_to_string(&plist).unwrap()));

    for p in ["linux", "macos"] {
        let said = service(&home, &cfg, &["uninstall", "--platform", p]);
        assert!(said.starts_with("removed "), "{said}");
        let said = service(&home, &cfg, &["status", "--platform", p]);
        assert!(said.starts_with("not installed"), "{said}");
    }
    assert!(!unit.exists() && !plist.exists());
}
