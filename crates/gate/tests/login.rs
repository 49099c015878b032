//! Logins against the mock OAuth issuer: browser PKCE (the callback driven by an HTTP client),
//! state verification, the callback listener's lifetime, the device-code flow, the pasted
//! callback URL, the admin API, and the `accounts` CLI (import, list, export, pause, remove).

mod common;

use codex_gate::pool::login::{query_params, BrowserLogin, DeviceLogin, LoginError};
use codex_gate::pool::refresh::OAuthConfig;
use codex_gate::upstream::client::UpstreamClient;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, send};
use common::{Gate, TempDir};
use std::process::Command;
use std::time::Duration;

fn oauth(m: &MockUpstream) -> OAuthConfig {
    OAuthConfig { issuer: m.issuer_url(), client_id: "app_EMoamEEZ73f0CkXaXp7hrann".into() }
}

fn param(url: &str, k: &str) -> String {
    query_params(url).into_iter().find(|(n, _)| n == k).map(|(_, v)| v).unwrap_or_default()
}

async fn callback(port: u16, query: &str) -> (u16, String) {
    let r = get(&format!("http://127.0.0.1:{port}/auth/callback?{query}")).await;
    (r.status.as_u16(), r.text())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn browser_login_verifies_state_and_closes_its_listener() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let client = UpstreamClient::new(&[]);
    let o = oauth(&m);
    let l = BrowserLogin::start(&o, 0, "codex_cli_rs", true).await.unwrap();
    let port = l.port().unwrap();
    let url = l.authorize_url.clone();
    assert!(url.starts_with(&format!("{}/oauth/authorize?", m.issuer_url())));
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
        ("code_challenge_method", "S256"),
        ("redirect_uri", &format!("http://localhost:{port}/auth/callback")),
        ("id_token_add_organizations", "true"),
        ("scope", "openid profile email offline_access api.connectors.read api.connectors.invoke"),
    ] {
        assert_eq!(param(&url, k), v, "{k}");
    }
    assert_eq!(param(&url, "code_challenge").len(), 43);
    // A callback with a forged state fails the login and closes the port.
    let waiter = tokio::spawn(async move { l.wait(&client, &o, Duration::from_secs(10)).await });
    m.add_login_code("code-1", "acc-new", "pro");
    let (status, page) = callback(port, "code=code-1&state=forged").await;
    assert_eq!(status, 400, "{page}");
    assert!(matches!(waiter.await.unwrap(), Err(LoginError::StateMismatch)));
    assert!(!port_open(port), "listener closed after failure");

    // The right state: tokens come back, listener closed after success.
    let client = UpstreamClient::new(&[]);
    let o = oauth(&m);
    let l = BrowserLogin::start(&o, 0, "codex_cli_rs", true).await.unwrap();
    let (port, state) = (l.port().unwrap(), param(&l.authorize_url, "state"));
    let waiter = tokio::spawn(async move { l.wait(&client, &o, Duration::from_secs(10)).await });
    let (status, _) = callback(port, &format!("code=code-1&state={state}")).await;
    assert_eq!(status, 200);
    let tokens = waiter.await.unwrap().unwrap();
    assert_eq!(
        codex_gate::pool::auth::Identity::from_id_token(&tokens.id_token).unwrap().chatgpt_account_id,
        "acc-new"
    );
    assert!(!port_open(port), "listener closed after success");
}

#[tokio::test]
async fn an_abandoned_login_closes_its_listener_and_a_busy_port_is_reported() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let l = BrowserLogin::start(&oauth(&m), 0, "codex_cli_rs", true).await.unwrap();
    let port = l.port().unwrap();
    assert!(port_open(port));
    let r = l.wait(&UpstreamClient::new(&[]), &oauth(&m), Duration::from_millis(200)).await;
    assert!(matches!(r, Err(LoginError::Timeout(_))));
    assert!(!port_open(port), "no listener left behind to hijack another login");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().port();
    assert!(
        matches!(BrowserLogin::start(&oauth(&m), taken, "x", true).await, Err(LoginError::PortBusy(p)) if p == taken)
    );
}

#[tokio::test]
async fn device_code_and_pasted_callback_logins() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let client = UpstreamClient::new(&[]);
    m.set_device_code("code-dev", 2);
    m.add_login_code("code-dev", "acc-dev", "plus");
    let d = DeviceLogin::start(&client, &oauth(&m)).await.unwrap();
    assert_eq!(
        (d.user_code.as_str(), d.verification_url.clone()),
        ("CODE-1234", format!("{}/codex/device", m.issuer_url()))
    );
    let t = d.wait(&client, &oauth(&m), Duration::from_secs(10)).await.unwrap();
    assert_eq!(codex_gate::pool::auth::Identity::from_id_token(&t.id_token).unwrap().chatgpt_account_id, "acc-dev");

    let l = BrowserLogin::start(&oauth(&m), 1455, "codex_cli_rs", false).await.unwrap();
    assert!(l.port().is_none(), "the paste flow opens no port");
    let state = param(&l.authorize_url, "state");
    m.add_login_code("code-paste", "acc-paste", "team");
    let bad = l.finish(&client, &oauth(&m), "http://localhost:1455/auth/callback?code=code-paste&state=nope").await;
    assert!(matches!(bad, Err(LoginError::StateMismatch)));
    let pasted = format!("http://localhost:1455/auth/callback?code=code-paste&state={state}");
    let t = l.finish(&client, &oauth(&m), &pasted).await.unwrap();
    assert!(t.refresh_token.starts_with("rt-acc-paste"));
}

#[tokio::test]
async fn admin_api_login_import_pause_resume_remove() {
    let m = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        m.issuer_url(),
        m.backend_url()
    );
    let gate = Gate::start(&cfg).await;
    let r = send(
        "POST",
        &gate.url("/api/accounts/login"),
        r#"{"mode":"browser","port":0}"#,
        &[("content-type", "application/json")],
    )
    .await;
    let v = r.json();
    assert_eq!(v["mode"], "browser", "{v}");
    let port = v["callback_port"].as_u64().unwrap() as u16;
    m.add_login_code("code-api", "acc-api", "pro");
    let (status, _) =
        callback(port, &format!("code=code-api&state={}", param(v["authorize_url"].as_str().unwrap(), "state"))).await;
    assert_eq!(status, 200);
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        listed = get(&gate.url("/api/accounts")).await.json();
        if listed["accounts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = listed["accounts"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["accounts"][0]["email"], "acc-api@example.com");
    assert!(!port_open(port));

    // Busy port: the API falls back to the device code.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let body = format!(r#"{{"mode":"browser","port":{}}}"#, busy.local_addr().unwrap().port());
    m.set_device_code("code-x", 1000);
    let v = send("POST", &gate.url("/api/accounts/login"), body, &[("content-type", "application/json")]).await.json();
    assert_eq!((v["mode"].as_str(), v["user_code"].as_str()), (Some("device"), Some("CODE-1234")));

    // Import an auth.json, pause, resume, remove.
    let (access, refresh) = m.add_chatgpt_account("acc-imp", false);
    let auth = serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "last_refresh": "2026-01-01T00:00:00Z", "tokens": {
        "id_token": codex_gate_mock::chatgpt::id_token("u-imp", "acc-imp", "imp@example.com", "plus"), "access_token": access, "refresh_token": refresh}});
    let r = send("POST", &gate.url("/api/accounts/import"), auth.to_string(), &[("content-type", "application/json")])
        .await;
    assert_eq!(r.json()["email"], "imp@example.com", "{}", r.text());
    let bad = send(
        "POST",
        &gate.url("/api/accounts/import"),
        r#"{"OPENAI_API_KEY":"sk-x"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(bad.status, 400);
    let r = send("POST", &gate.url(&format!("/api/accounts/{id}/pause")), "", &[]).await;
    assert_eq!(r.json()["status"], "paused");
    assert_eq!(
        send("POST", &gate.url(&format!("/api/accounts/{id}/resume")), "", &[]).await.json()["status"],
        "active"
    );
    assert_eq!(send("DELETE", &gate.url(&format!("/api/accounts/{id}")), "", &[]).await.json()["deleted"], true);
    assert_eq!(send("DELETE", &gate.url("/api/accounts/acct_nope"), "", &[]).await.status, 404);
    assert_eq!(get(&gate.url("/api/accounts")).await.json()["accounts"].as_array().unwrap().len(), 1);
}

#[test]
fn accounts_cli_import_list_export_pause_remove_and_wrong_key() {
    let dir = TempDir::new();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:9\"\n[store]\nurl = \"sqlite://{}\"\n[pool]\nkey_file = \"{}\"\n",
            dir.path().join("g.db").display(),
            dir.path().join("k.key").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_codex-gate"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("CODEX_GATE_ENCRYPTION_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let auth = dir.path().join("auth.json");
    let tokens = serde_json::json!({"id_token": codex_gate_mock::chatgpt::id_token("u1", "acc-1", "one@example.com", "pro"),
                                    "access_token": "at-canary-123", "refresh_token": "rt-canary-456", "account_id": "acc-1"});
    std::fs::write(&auth, serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": tokens, "last_refresh": "2026-01-01T00:00:00Z"}).to_string()).unwrap();
    let (code, out, err) = run(&["accounts", "import", auth.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("one@example.com") && out.contains("pro"), "{out}");
    let (_, list, _) = run(&["accounts", "list"]);
    assert!(list.contains("one@example.com") && list.contains("active"), "{list}");
    assert!(!list.contains("canary"), "no token in the listing");
    let db = std::fs::read(dir.path().join("g.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("canary"), "no token in plaintext in the database");
    let (_, exported, _) = run(&["accounts", "export", "one@example.com"]);
    let v: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(
        (v["tokens"]["refresh_token"].as_str(), v["tokens"]["account_id"].as_str()),
        (Some("rt-canary-456"), Some("acc-1"))
    );
    assert!(v.get("OPENAI_API_KEY").is_some());
    // An account's own proxy: validated, shown without its password, stored.
    let (code, _, err) = run(&["accounts", "proxy", "one@example.com", "ftp://nope"]);
    assert_eq!(code, Some(1), "a bad proxy URL is refused");
    assert!(err.contains("socks5"), "{err}");
    let (code, out, err) = run(&["accounts", "proxy", "one@example.com", "http://me:pw-canary@127.0.0.1:3128"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("http://***@127.0.0.1:3128") && !out.contains("pw-canary"), "{out}");
    let db = std::fs::read(dir.path().join("g.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("pw-canary"), "the proxy password is sealed at rest");
    let (_, out, _) = run(&["accounts", "pause", "one@example.com"]);
    assert!(out.contains("paused"));
    assert!(run(&["accounts", "list", "--json"]).1.contains("\"paused\""));
    // Another key cannot open this data: refused with a clear message, nothing changed.
    std::fs::write(dir.path().join("k.key"), base64_key()).unwrap();
    let (code, _, err) = run(&["accounts", "list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not the key this data was sealed with"), "{err}");
}

fn base64_key() -> String {
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()
}
