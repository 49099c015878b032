//! Config loading tests: defaults, interpolation, and refusals that name file and key.

use super::*;

fn env(k: &str) -> Option<String> {
    (k == "DS_KEY").then(|| "sk-secret".to_owned())
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Some(Path::new("/etc/gate.toml")), &env)
}

const FULL: &str = r#"
[server]
listen = "127.0.0.1:3000"
[store]
url = "sqlite:///tmp/x.db"
request_log_retention_days = 7
[[providers]]
name = "deepseek"
kind = "chat"
base_url = "https://api.deepseek.com/v1/"
api_key = "${DS_KEY}"
headers = { "X-Team" = "core" }
models = ["deepseek-chat", "deepseek-reasoner"]
first_byte_timeout_ms = 5000
[[providers]]
name = "openai"
kind = "responses"
base_url = "https://api.openai.com/v1"
models = ["gpt-5.5"]
[[routes]]
model = "coder"
targets = ["deepseek/deepseek-chat", "openai/gpt-5.5"]
fallback = false
[aliases]
fast = "deepseek/deepseek-chat"
"#;

#[test]
fn defaults_without_a_file() {
    let c = Config::from_toml_str("", None, &env).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:2455");
    assert!(
        c.store.url.starts_with("sqlite://") && c.store.url.ends_with("codex-gate/codex-gate.db"),
        "{}",
        c.store.url
    );
    // No providers: only the implicit pool (see no_providers_means_the_pool_is_the_default_provider).
    assert!(c.implicit_pool && c.providers.len() == 1 && c.routes.is_empty());
}

#[test]
fn full_example_parses() {
    let c = load(FULL).unwrap();
    assert_eq!(c.server.listen.port(), 3000);
    let ds = &c.providers[0];
    assert_eq!(ds.base_url, "https://api.deepseek.com/v1");
    assert_eq!(ds.api_key.as_ref().unwrap().expose(), "sk-secret");
    assert_eq!(ds.kind, ProviderKind::Chat);
    assert_eq!(ds.timeouts.first_byte, Duration::from_millis(5000));
    assert_eq!(ds.headers[0].0.as_str(), "x-team");
    assert_eq!(c.routes[0].targets[1], ("openai".to_owned(), "gpt-5.5".to_owned()));
    assert!(!c.routes[0].fallback);
    assert_eq!(c.store.retention, Duration::from_secs(7 * 86_400));
    assert!(!format!("{c:?}").contains("sk-secret"), "Debug must not print secrets");
}

fn refused(text: &str) -> String {
    let e = load(text).unwrap_err().to_string();
    assert!(e.starts_with("config error in /etc/gate.toml: "), "{e}");
    e
}

#[test]
fn refusals_name_the_key() {
    let e = refused("[server]\nlisten = \"nope\"");
    assert!(e.contains("server.listen"), "{e}");
    let e = refused("[server]\nlisten = 5");
    assert!(e.contains("server.listen") && e.contains("invalid type"), "{e}");
    let e = refused("[server]\nlistn = \"x\"");
    assert!(e.contains("unknown field `listn`"), "{e}");
    let e = refused("[[providers]]\nname='a'\nkind='grpc'\nbase_url='http://x'");
    assert!(e.contains("providers[0].kind") && e.contains("unknown variant"), "{e}");
    let e = refused("[[providers]]\nname='a'\nkind='chat'\nbase_url='ftp://x'");
    assert!(e.contains("providers[0].base_url"), "{e}");
    let e = refused("[[providers]]\nname='a'\nkind='chat'\nbase_url='http://x'\napi_key='${MISSING_KEY}'");
    assert!(e.contains("providers[0].api_key") && e.contains("MISSING_KEY is not set"), "{e}");
    let e = refused("[[routes]]\nmodel='m'\ntargets=['ghost/x']");
    assert!(e.contains("routes[0].targets[0]") && e.contains("ghost"), "{e}");
    let e = refused("[[routes]]\nmodel='m'\ntargets=[]");
    assert!(e.contains("routes[0].targets"), "{e}");
    let e = refused("[aliases]\nx = 'nothing'");
    assert!(e.contains("aliases.x"), "{e}");
    let e = refused("[store]\nurl = 'mysql://x'");
    assert!(e.contains("store.url"), "{e}");
    let e = refused("[[providers]]\nname='a'\nkind='chat'\nbase_url='http://x'\nidle_timeout_ms=0");
    assert!(e.contains("providers[0].idle_timeout_ms"), "{e}");
    let e = refused("[[providers]]\nname='a'\nkind='chat'\nbase_url='http://x'\n[[providers]]\nname='a'\nkind='chat'\nbase_url='http://y'");
    assert!(e.contains("providers[1].name") && e.contains("twice"), "{e}");
    let e = refused("this is = = not toml");
    assert!(e.contains("invalid TOML"), "{e}");
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let e = Config::load(Some(Path::new("/nonexistent/gate.toml"))).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/gate.toml") && e.contains("cannot read"), "{e}");
}

#[test]
fn codex_headers_go_only_to_first_party_hosts_unless_a_provider_opts_in() {
    let cfg = Config::from_toml_str(
        r#"
        [[providers]]
        name = "openai"
        kind = "responses"
        base_url = "https://api.openai.com/v1"
        [[providers]]
        name = "ds"
        kind = "chat"
        base_url = "https://api.deepseek.com/v1"
        [[providers]]
        name = "evil"
        kind = "chat"
        base_url = "https://openai.com.evil.example/v1"
        [[providers]]
        name = "mine"
        kind = "responses"
        base_url = "http://127.0.0.1:9000/v1"
        forward_codex_headers = true
        [[providers]]
        name = "pool"
        kind = "chatgpt"
        "#,
        None,
        &|_| None,
    )
    .unwrap();
    let fwd: Vec<bool> = cfg.providers.iter().map(|p| p.forward_codex_headers).collect();
    assert_eq!(fwd, [true, false, false, true, true]);
}

#[test]
fn server_limits_are_validated_with_their_key() {
    let e = Config::from_toml_str("[server]\nallowed_hosts = [\"gate:2455\"]", None, &|_| None).unwrap_err();
    assert_eq!(e.key, "server.allowed_hosts[0]");
    let e = Config::from_toml_str("[server]\nheader_read_timeout_secs = 0", None, &|_| None).unwrap_err();
    assert_eq!(e.key, "server.header_read_timeout_secs");
    let e = Config::from_toml_str("[server]\nmax_connections = 3", None, &|_| None).unwrap_err();
    assert_eq!(e.key, "server.max_connections");
    let c = Config::from_toml_str("[server]\nallowed_hosts = [\"Gate.Example.com\"]", None, &|_| None).unwrap();
    assert_eq!(c.server.allowed_hosts, ["gate.example.com"]);
}

#[test]
fn no_providers_means_the_pool_is_the_default_provider() {
    let c = load("").unwrap();
    assert!(c.implicit_pool);
    assert_eq!(c.providers.len(), 1);
    assert_eq!((c.providers[0].name.as_str(), c.providers[0].kind), (IMPLICIT_POOL, ProviderKind::Chatgpt));
    assert_eq!(c.providers[0].base_url, "https://chatgpt.com/backend-api");
    assert!(!load(FULL).unwrap().implicit_pool, "configured providers: no implicit one");
}

#[test]
fn paths_expand_the_home_directory() {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from) else { return };
    let c = load("[store]\nurl = \"sqlite://~/gate/g.db\"\n[pool]\nkey_file = \"$HOME/gate/key\"\n").unwrap();
    assert_eq!(c.store.url, format!("sqlite://{}", home.join("gate/g.db").display()));
    assert_eq!(c.pool.key_file, home.join("gate/key"));
    assert_eq!(expand_home("~"), home);
    assert_eq!(expand_home("$HOME"), home);
    assert_eq!(expand_home("~other/x"), PathBuf::from("~other/x"), "another user's home is not guessed");
    assert_eq!(expand_home("/abs/$HOME"), PathBuf::from("/abs/$HOME"));
}
