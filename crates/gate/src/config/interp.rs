//! `${ENV_VAR}` interpolation in config string values, and the XDG default paths.

use std::path::PathBuf;

/// Expand `${NAME}` and `${NAME:-default}` in `s`; `$$` is a literal `$`.
/// `lookup` returns a variable's value. An unset variable without a default is an error naming it.
pub fn interpolate(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("unterminated '${{' in {s:?}"))?;
            let expr = &r[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `~`, `~/…`, `$HOME` and `$HOME/…` → under the home directory (other paths unchanged;
/// `${HOME}` is expanded earlier, with every other variable).
pub fn expand_home(path: &str) -> PathBuf {
    let rest = ["~", "$HOME"].iter().find_map(|p| match path.strip_prefix(p) {
        Some("") => Some(""),
        Some(r) => r.strip_prefix('/'),
        None => None,
    });
    match (rest, home()) {
        (Some(""), Some(h)) => h,
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(path),
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("codex-gate")
}

/// `$XDG_CONFIG_HOME/codex-gate/config.toml` (default `~/.config/codex-gate/config.toml`).
pub fn default_config_path() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("config.toml")
}

/// `$XDG_DATA_HOME/codex-gate` (default `~/.local/share/codex-gate`).
pub fn default_data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(interpolate("Bearer ${KEY}", &env).unwrap(), "Bearer sk-1");
        assert_eq!(interpolate("${NOPE:-fallback}/x", &env).unwrap(), "fallback/x");
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("a$$b $x", &env).unwrap(), "a$b $x");
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn refuses_unset_and_malformed() {
        assert_eq!(interpolate("${NOPE}", &env).unwrap_err(), "environment variable NOPE is not set");
        assert!(interpolate("${KEY", &env).unwrap_err().contains("unterminated"));
        assert!(interpolate("${A-B}", &env).unwrap_err().contains("invalid"));
    }
}
