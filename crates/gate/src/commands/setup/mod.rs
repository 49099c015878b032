//! `codex-gate setup <client>`: point a client's own config at the gateway. Every file it
//! changes is backed up once, before the first change, so `--undo` restores the exact bytes
//! the user had (or removes a file that was not there).

pub mod client_key;
pub mod codex;
pub mod openclaw;

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum SetupCmd {
    /// Write a Codex profile (or, with --default, edit ~/.codex/config.toml) for the gateway
    Codex(codex::CodexArgs),
    /// Merge the gateway as a provider into OpenClaw's openclaw.json (comments kept)
    Openclaw(openclaw::OpenClawArgs),
}

pub async fn run(config: Option<&Path>, cmd: SetupCmd) -> anyhow::Result<()> {
    match cmd {
        SetupCmd::Codex(args) => codex::run(config, args).await,
        SetupCmd::Openclaw(args) => openclaw::run(config, args).await,
    }
}

/// The backup of `file`: its bytes before codex-gate first changed it.
fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".codex-gate.bak");
    file.with_file_name(name)
}

/// The marker that `file` did not exist before codex-gate wrote it.
fn absent_marker(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".codex-gate.absent");
    file.with_file_name(name)
}

/// Write `text` to `file`, first keeping what was there (once: a second setup keeps the
/// first backup, so undo still returns to the user's own version).
pub(crate) fn write_with_backup(file: &Path, text: &[u8]) -> anyhow::Result<()> {
    let (bak, absent) = (backup_path(file), absent_marker(file));
    if !bak.exists() && !absent.exists() {
        match std::fs::read(file) {
            Ok(old) => write_private(&bak, &old)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_private(&absent, b"")?,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        }
    }
    write_keeping_mode(file, text)
}

/// Put back what `write_with_backup` kept; says what it did, or `None` when there was nothing
/// to undo.
pub(crate) fn restore(file: &Path) -> anyhow::Result<Option<String>> {
    let (bak, absent) = (backup_path(file), absent_marker(file));
    if bak.exists() {
        let old = std::fs::read(&bak).with_context(|| format!("cannot read {}", bak.display()))?;
        write_keeping_mode(file, &old)?;
        std::fs::remove_file(&bak)?;
        return Ok(Some(format!("restored {}", file.display())));
    }
    if absent.exists() {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
        std::fs::remove_file(&absent)?;
        return Ok(Some(format!("removed {}", file.display())));
    }
    Ok(None)
}

/// Replace `file`'s content atomically (a temporary file renamed over it), keeping its mode.
fn write_keeping_mode(file: &Path, text: &[u8]) -> anyhow::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = file.with_extension("codex-gate.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A client's config may hold other providers' keys: never wider than it was, 0600 when new.
        let mode = std::fs::metadata(file).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))
}

fn write_private(file: &Path, text: &[u8]) -> anyhow::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    std::io::Write::write_all(&mut o.open(file).with_context(|| format!("cannot write {}", file.display()))?, text)?;
    Ok(())
}

/// The gateway's `/v1` base for clients: `--url` (with `/v1` added when missing), else the
/// configured listen address (a wildcard address is reached on loopback).
pub(crate) fn client_base_url(url: Option<&str>, listen: std::net::SocketAddr) -> anyhow::Result<(String, bool)> {
    match url {
        Some(u) => {
            let u = u.trim_end_matches('/');
            let parsed: http::Uri = u.parse().with_context(|| format!("--url {u:?} is not a URL"))?;
            if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
                bail!("--url {u:?} must be http://host:port/v1 or https://…");
            }
            // Without /v1 Codex asks for /responses and gets a 404 ("stream disconnected").
            Ok(if u.ends_with("/v1") { (u.to_owned(), false) } else { (format!("{u}/v1"), true) })
        }
        None => {
            let ip = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
            Ok((format!("http://{host}:{}/v1", listen.port()), false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_once_and_restore_the_exact_bytes() {
        let dir = std::env::temp_dir().join(format!("cg-setup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let f = dir.join("config.toml");
        write_private(&f, b"# mine\nmodel = \"o3\"\n").unwrap();
        write_with_backup(&f, b"first").unwrap();
        write_with_backup(&f, b"second").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"second");
        assert!(restore(&f).unwrap().is_some());
        assert_eq!(std::fs::read(&f).unwrap(), b"# mine\nmodel = \"o3\"\n", "the user's own version");
        assert!(restore(&f).unwrap().is_none(), "nothing left to undo");
        let new = dir.join("new.toml");
        write_with_backup(&new, b"x").unwrap();
        restore(&new).unwrap();
        assert!(!new.exists(), "a file that was not there is removed again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn base_urls_end_in_v1() {
        let listen: std::net::SocketAddr = "0.0.0.0:2455".parse().unwrap();
        assert_eq!(client_base_url(None, listen).unwrap(), ("http://127.0.0.1:2455/v1".into(), false));
        assert_eq!(client_base_url(Some("http://h:1/"), listen).unwrap(), ("http://h:1/v1".into(), true));
        assert_eq!(client_base_url(Some("http://h:1/v1"), listen).unwrap(), ("http://h:1/v1".into(), false));
        assert!(client_base_url(Some("ftp://h"), listen).is_err());
    }
}
