//! `codex-gate service install|uninstall|status`: keep the gateway running across logins and
//! reboots — a systemd user unit on Linux, a LaunchAgent on macOS — with the binary, the config
//! and the log paths written out in full, so what runs is what `serve` here would run.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// A systemd user unit
    Linux,
    /// A launchd LaunchAgent
    Macos,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCmd {
    /// Write the unit (or LaunchAgent) and start it
    Install(ServiceArgs),
    /// Stop it and remove the file
    Uninstall(ServiceArgs),
    /// Whether it is installed and running
    Status(ServiceArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// Which service manager [default: this machine's]
    #[arg(long, value_enum)]
    pub platform: Option<Platform>,
    /// Only write (or remove) the file and print the commands that load it
    #[arg(long)]
    pub no_start: bool,
}

const LABEL: &str = "dev.codex-gate";
const UNIT: &str = "codex-gate.service";

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).context("HOME is not set")
}

/// Where the service file goes on `platform`.
fn service_file(platform: Platform) -> anyhow::Result<PathBuf> {
    Ok(match platform {
        Platform::Linux => std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or(home()?.join(".config"))
            .join("systemd/user")
            .join(UNIT),
        Platform::Macos => home()?.join("Library/LaunchAgents").join(format!("{LABEL}.plist")),
    })
}

fn log_file() -> anyhow::Result<PathBuf> {
    Ok(home()?.join("Library/Logs/codex-gate.log"))
}

/// The command line the service runs: this binary, the config (when there is one), `serve`.
fn argv(config: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut v = vec![exe.display().to_string()];
    let config =
        config.map(Path::to_path_buf).or_else(|| Some(crate::config::default_config_path()).filter(|p| p.exists()));
    if let Some(c) = config {
        let abs = std::fs::canonicalize(&c).with_context(|| format!("the config {} does not exist", c.display()))?;
        v.extend(["--config".to_owned(), abs.display().to_string()]);
    }
    v.push("serve".to_owned());
    Ok(v)
}

fn systemd_unit(argv: &[String]) -> String {
    // systemd's own quoting: double quotes around words with spaces, `\\` before `"` and `\\`,
    // and `%%` for a literal `%` (a specifier otherwise).
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| {
            let mut e = String::new();
            for c in a.chars() {
                match c {
                    '"' | '\\' => {
                        e.push('\\');
                        e.push(c);
                    }
                    '%' => e.push_str("%%"),
                    _ => e.push(c),
                }
            }
            if a.contains([' ', '"', '\\', '\'']) {
                format!("\"{e}\"")
            } else {
                e
            }
        })
        .collect();
    format!(
        "# Written by `codex-gate service install`; remove with `codex-gate service uninstall`.\n\
         [Unit]\nDescription=codex-gate: one endpoint for Codex, OpenClaw and OpenAI-SDK clients\n\
         After=network-online.target\nWants=network-online.target\n\n\
         [Service]\nExecStart={}\nRestart=on-failure\nRestartSec=2\n\
         # Logs: journalctl --user -u codex-gate\n\n\
         [Install]\nWantedBy=default.target\n",
        quoted.join(" ")
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn launch_agent(argv: &[String], log: &Path) -> String {
    let args: String = argv.iter().map(|a| format!("    <string>{}</string>\n", xml_escape(a))).collect();
    let log = xml_escape(&log.display().to_string());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `codex-gate service install`; remove with `codex-gate service uninstall`. -->\n\
         <plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>{LABEL}</string>\n\
         \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         \x20 <key>RunAtLoad</key>\n  <true/>\n  <key>KeepAlive</key>\n  <true/>\n\
         \x20 <key>StandardOutPath</key>\n  <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n  <string>{log}</string>\n</dict>\n</plist>\n"
    )
}

/// The commands that load, unload and query the service.
fn commands(platform: Platform, file: &Path) -> [Vec<String>; 3] {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match platform {
        Platform::Linux => [
            s(&["systemctl", "--user", "daemon-reload"]),
            s(&["systemctl", "--user", "enable", "--now", UNIT]),
            s(&["systemctl", "--user", "disable", "--now", UNIT]),
        ],
        Platform::Macos => {
            let domain = format!("gui/{}", uid());
            [
                vec!["launchctl".into(), "bootout".into(), format!("{domain}/{LABEL}")],
                vec!["launchctl".into(), "bootstrap".into(), domain.clone(), file.display().to_string()],
                vec!["launchctl".into(), "bootout".into(), format!("{domain}/{LABEL}")],
            ]
        }
    }
}

fn uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "501".into())
}

fn run_cmd(cmd: &[String]) -> bool {
    Command::new(&cmd[0]).args(&cmd[1..]).status().is_ok_and(|s| s.success())
}

pub fn run(config: Option<&Path>, cmd: ServiceCmd) -> anyhow::Result<()> {
    let this = if cfg!(target_os = "macos") { Platform::Macos } else { Platform::Linux };
    match cmd {
        ServiceCmd::Install(a) => {
            let platform = a.platform.unwrap_or(this);
            let file = service_file(platform)?;
            let argv = argv(config)?;
            let text = match platform {
                Platform::Linux => systemd_unit(&argv),
                Platform::Macos => launch_agent(&argv, &log_file()?),
            };
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
            println!("wrote {}", file.display());
            println!("runs: {}", argv.join(" "));
            match platform {
                Platform::Linux => println!("logs: journalctl --user -u codex-gate"),
                Platform::Macos => println!("logs: {}", log_file()?.display()),
            }
            let [first, load, _] = commands(platform, &file);
            if a.no_start || platform != this {
                println!("load it with:\n  {}\n  {}", first.join(" "), load.join(" "));
                return Ok(());
            }
            // `bootout` of a service not loaded yet fails, and that is fine.
            let reloaded = run_cmd(&first) || platform == Platform::Macos;
            if !(reloaded && run_cmd(&load)) {
                bail!("the file is written, but starting it failed; run:\n  {}\n  {}", first.join(" "), load.join(" "));
            }
            println!("started; `codex-gate status` shows it");
        }
        ServiceCmd::Uninstall(a) => {
            let platform = a.platform.unwrap_or(this);
            let file = service_file(platform)?;
            let [_, _, unload] = commands(platform, &file);
            if !a.no_start && platform == this && file.exists() && !run_cmd(&unload) {
                eprintln!("stopping it failed ({}); removing the file anyway", unload.join(" "));
            }
            match std::fs::remove_file(&file) {
                Ok(()) => println!("removed {}", file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not installed ({})", file.display()),
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
            }
        }
        ServiceCmd::Status(a) => {
            let platform = a.platform.unwrap_or(this);
            let file = service_file(platform)?;
            if !file.exists() {
                println!("not installed (no {})", file.display());
                return Ok(());
            }
            println!("installed: {}", file.display());
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("ExecStart=")) {
                println!("runs: {}", line.trim_start_matches("ExecStart="));
            }
            if platform == this && !a.no_start {
                let active = match platform {
                    Platform::Linux => run_cmd(&[
                        "systemctl".into(),
                        "--user".into(),
                        "is-active".into(),
                        "--quiet".into(),
                        UNIT.into(),
                    ]),
                    Platform::Macos => run_cmd(&["launchctl".into(), "print".into(), format!("gui/{}/{LABEL}", uid())]),
                };
                println!("{}", if active { "running" } else { "not running" });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_and_agent_quote_and_escape_their_arguments() {
        let argv =
            vec!["/opt/codex gate/codex-gate".to_owned(), "--config".into(), "/etc/a&b.toml".into(), "serve".into()];
        let unit = systemd_unit(&argv);
        assert!(unit.contains("ExecStart=\"/opt/codex gate/codex-gate\" --config /etc/a&b.toml serve"), "{unit}");
        let plist = launch_agent(&argv, Path::new("/Users/u/Library/Logs/codex-gate.log"));
        assert!(plist.contains("<string>/etc/a&amp;b.toml</string>"), "{plist}");
        assert!(plist.contains("<key>KeepAlive</key>\n  <true/>"), "{plist}");
    }
}
