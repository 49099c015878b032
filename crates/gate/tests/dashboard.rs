//! The dashboard: driven in a real headless Chromium (tests/e2e/dashboard.mjs) against the mock
//! upstream and mock OAuth issuer; its guards (DNS rebinding, foreign origins, CSRF, sign-in
//! sessions, the argon2 password) over plain HTTP; and the request detail's attempt trail.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, post, send};
use common::{provider, skip, Gate};
use serde_json::{json, Value};
use std::path::PathBuf;

fn playwright_dir() -> Option<PathBuf> {
    let dir = std::env::var("CODEX_GATE_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/codex-gate-ci-cache/playwright"));
    dir.join("node_modules/playwright-core/package.json").exists().then_some(dir)
}

fn chromium() -> String {
    std::env::var("CODEX_GATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Screenshots land under the target dir (CI keeps it).
fn shots_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("dashboard-screenshots")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn pool_config(mock: &MockUpstream, extra: &str) -> String {
    format!(
        "[pool]\nissuer = \"{}\"\n{extra}\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n{}",
        mock.issuer_url(),
        mock.backend_url(),
        provider("api", "responses", &mock.url(), "models = [\"ok\"]"),
    )
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let Some(pw) = playwright_dir() else {
        return skip("playwright-core is not installed (set CODEX_GATE_PLAYWRIGHT_DIR; .ci/run installs it)");
    };
    if !std::path::Path::new(&chromium()).exists() {
        return skip("Chromium is not installed (apt-get install chromium)");
    }
    let Some(py) = common::python() else { return skip("no Python with the openai package") };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_login_code("code-browser", "acc-browser", "pro");
    // The device flow (the script's last step) is approved after two polls.
    mock.add_login_code("code-device", "acc-device", "plus");
    mock.set_device_code("code-device", 2);
    // ... and its turns fail, so the script can watch a cooldown start and end in the page.
    mock.set_account_behavior("acc-device", Some("500"));
    let (access, refresh) = mock.add_chatgpt_account("acc-two", false);
    let dir = common::TempDir::new();
    let auth = dir.path().join("auth.json");
    let id_token = codex_gate_mock::chatgpt::id_token("user-acc-two", "acc-two", "acc-two@example.com", "plus");
    let auth_json = json!({"OPENAI_API_KEY": null, "tokens": {"id_token": id_token, "access_token": access,
        "refresh_token": refresh, "account_id": "acc-two"}, "last_refresh": "2026-12-01T00:00:00Z"});
    std::fs::write(&auth, auth_json.to_string()).unwrap();
    let gate = Gate::start(&pool_config(&mock, &format!("login_callback_port = {}", free_port()))).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dashboard.mjs");
    let out = tokio::process::Command::new(std::env::var("CODEX_GATE_NODE").unwrap_or_else(|_| "node".into()))
        .arg(&script)
        .env("PLAYWRIGHT_DIR", &pw)
        .env("GATE", gate.url(""))
        .env("SHOTS", shots_dir())
        .env("PY", &py)
        .env("AUTH_JSON", &auth)
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(180), out).await.expect("browser run in 3 min").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser run failed:\n{stdout}\n{stderr}");
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON result line");
    let account = result["browserAccount"].as_str().unwrap().to_owned();
    // What the page did is in the store: the account logged in through the browser (tokens
    // sealed), the imported one, and the SDK's key with its request.
    let accounts = gate.store.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 3, "{accounts:?}");
    assert!(
        accounts.iter().any(|a| a.email.as_deref() == Some("acc-device@example.com")),
        "the device login's account"
    );
    let added = accounts.iter().find(|a| a.id == account).expect("the browser login's account");
    assert_eq!(added.email.as_deref(), Some("acc-browser@example.com"));
    assert!(!added.refresh_token.contains("rt-acc-browser"), "tokens are sealed at rest");
    assert_eq!(added.status, "active", "resumed from the signed-in page");
    let keys = gate.store.list_keys().await.unwrap();
    let sdk = keys.iter().find(|k| k.name == "sdk-key").expect("the key made in the page");
    let of_key = |r: &codex_gate::store::RequestRecord| r.key_id.as_deref() == Some(sdk.id.as_str());
    let sdk_row =
        gate.record_where("the SDK's request", |r| of_key(r) && r.api == "responses" && r.status == 200).await;
    assert_eq!(sdk_row.model, "pool/gpt-5.5");
    // The turn that failed on the device account (the cooldown step) is logged as failed there.
    let device = accounts.iter().find(|a| a.email.as_deref() == Some("acc-device@example.com")).unwrap();
    let failed = gate.record_where("the failed turn", |r| of_key(r) && r.status >= 500).await;
    let tried: Vec<_> =
        failed.trail.iter().map(|a| (a.account.as_deref(), a.pick.as_ref().map(|p| p.usable))).collect();
    assert_eq!(tried, [(Some(device.id.as_str()), Some(1))], "only the device account was usable: {failed:?}");
    for name in ["accounts", "keys", "requests", "request", "overview", "routes", "signed-in", "device-login"] {
        assert!(shots_dir().join(format!("{name}.png")).exists(), "screenshot {name}");
    }
}

#[tokio::test]
async fn pages_and_assets_are_served_with_a_strict_policy() {
    let gate = Gate::start("").await;
    let page = get(&gate.url("/")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/dashboard/assets/app.js"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let js = get(&gate.url("/dashboard/assets/app.js")).await;
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    let tag = js.header("etag").unwrap().to_owned();
    let again = send("GET", &gate.url("/dashboard/assets/app.js"), "", &[("if-none-match", &tag)]).await;
    assert_eq!(again.status, 304);
    assert_eq!(get(&gate.url("/dashboard/assets/nope.js")).await.status, 404);
    assert_eq!(get(&gate.url("/dashboard/")).await.status, 200);
}

#[tokio::test]
async fn rebinding_foreign_origins_and_missing_csrf_tokens_are_refused() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let gate = Gate::start(&pool_config(&mock, "")).await;
    mock.add_chatgpt_account("acc-1", false);
    let id = gate.add_account(&mock, "acc-1", "plus").await;
    let pause = gate.url(&format!("/api/accounts/{id}/pause"));
    let session = get(&gate.url("/dashboard/api/session")).await.json();
    assert_eq!((session["signed_in"].clone(), session["via"].clone()), (json!(true), json!("loopback")));
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    for path in ["/", "/api/pool", "/api/overview", "/dashboard/api/session", "/api/requests"] {
        let r = send("GET", &gate.url(path), "", &[("host", "evil.example:2455")]).await;
        assert_eq!((path, r.status.as_u16()), (path, 403), "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "host_not_allowed");
    }
    let foreign = send("POST", &pause, "", &[("origin", "http://evil.example")]).await;
    assert_eq!(foreign.json()["error"]["code"], "origin_not_allowed");
    // The page's own origin, without the token: refused; with it: done.
    let own = gate.url("");
    let no_token = send("POST", &pause, "", &[("origin", &own), ("sec-fetch-site", "same-origin")]).await;
    assert_eq!((no_token.status.as_u16(), no_token.json()["error"]["code"].clone()), (403, json!("csrf_failed")));
    let wrong = send("POST", &pause, "", &[("origin", &own), ("x-csrf-token", "nope")]).await;
    assert_eq!(wrong.status, 403);
    let ok = send("POST", &pause, "", &[("origin", &own), ("x-csrf-token", &csrf)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // The CLI (no browser headers) needs no token.
    assert_eq!(post(&gate.url(&format!("/api/accounts/{id}/resume")), &json!({})).await.status, 200);

    // An admin key closes loopback: a session is needed, and state changes need its token.
    let admin = post(&gate.url("/api/keys"), &json!({"name": "admin", "admin": true})).await.json();
    let admin_key = admin["key"].as_str().unwrap().to_owned();
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    assert!(get(&gate.url("/api/pool")).await.status.as_u16() >= 400);
    let s = get(&gate.url("/dashboard/api/session")).await.json();
    assert_eq!((s["signed_in"].clone(), s["csrf"].clone()), (json!(false), Value::Null));
    let bad = send(
        "POST",
        &gate.url("/dashboard/api/login"),
        r#"{"key":"cg-nope"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!((bad.status.as_u16(), bad.json()["error"]["code"].clone()), (403, json!("sign_in_failed")));
    let login = send(
        "POST",
        &gate.url("/dashboard/api/login"),
        json!({"key": admin_key}).to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let set_cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let token = login.json()["csrf"].as_str().unwrap().to_owned();
    assert_ne!(token, csrf, "each session has its own token");
    assert_eq!(send("GET", &gate.url("/api/pool"), "", &[("cookie", &cookie)]).await.status, 200);
    let no_csrf = send("POST", &pause, "", &[("cookie", &cookie)]).await;
    assert_eq!(no_csrf.json()["error"]["code"], "csrf_failed");
    let anon = send("POST", &pause, "", &[("cookie", &cookie), ("x-csrf-token", &csrf)]).await;
    assert_eq!(anon.status, 403, "the loopback token is not this session's");
    let with = send("POST", &pause, "", &[("cookie", &cookie), ("x-csrf-token", &token)]).await;
    assert_eq!(with.status, 200);
    // Revoking the admin key ends its sessions.
    let kid = admin["id"].as_str().unwrap();
    let revoke =
        send("DELETE", &gate.url(&format!("/api/keys/{kid}")), "", &[("cookie", &cookie), ("x-csrf-token", &token)])
            .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    gate.app.keys.sync(&gate.store, false).await.unwrap();
    let after = send("GET", &gate.url("/dashboard/api/session"), "", &[("cookie", &cookie)]).await.json();
    assert_eq!(after["via"], "loopback", "the session ended; with no admin key left, loopback is open again");
    let stale = send("POST", &pause, "", &[("cookie", &cookie), ("x-csrf-token", &token), ("origin", &own)]).await;
    assert_eq!(stale.json()["error"]["code"], "csrf_failed", "the ended session's token is void");
}

#[tokio::test]
async fn a_configured_password_signs_in_and_failures_are_limited() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"codex-gate-test!").unwrap();
    let hash = argon2::Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
    let bad_cfg =
        codex_gate::config::Config::from_toml_str("[dashboard]\npassword_hash = \"hunter2\"\n", None, &|_| None);
    assert_eq!(bad_cfg.unwrap_err().key, "dashboard.password_hash");
    let gate = Gate::start(&format!("[dashboard]\npassword_hash = \"{hash}\"\n")).await;
    let login = |pw: &str| {
        let (url, body) = (gate.url("/dashboard/api/login"), json!({"password": pw}).to_string());
        async move { send("POST", &url, body, &[("content-type", "application/json")]).await }
    };
    assert_eq!(get(&gate.url("/dashboard/api/session")).await.json()["password_login"], true);
    let ok = login("correct horse").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.header("set-cookie").unwrap().starts_with("cg_session="));
    for _ in 0..10 {
        assert_eq!(login("wrong").await.status, 403);
    }
    let limited = login("correct horse").await;
    assert_eq!((limited.status.as_u16(), limited.header("retry-after")), (429, Some("300")));
}

#[tokio::test]
async fn a_request_detail_shows_each_attempt_and_why() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "{}{}[[routes]]\nmodel = \"smart\"\ntargets = [\"a/500\", \"b/ok\", \"c/ok\"]\n",
        provider("a", "responses", &mock.url(), ""),
        provider("b", "chat", &mock.url(), ""),
    ) + &provider("c", "chat", &mock.url(), "");
    let gate = Gate::start(&cfg).await;
    let r = post(&gate.url("/v1/responses"), &json!({"model": "smart", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-codex-gate-request-id").unwrap().to_owned();
    gate.record_where("the request", |x| x.id == id).await;
    let d = get(&gate.url(&format!("/api/requests/{id}"))).await.json();
    let trail = d["request"]["trail"].as_array().unwrap();
    assert_eq!(trail.len(), 2, "{d}");
    assert_eq!(trail[0]["target"], "a/500");
    assert_eq!(trail[0]["why"], "first of the route's 3 targets");
    assert!(trail[0]["error"].is_string());
    assert_eq!(trail[1]["target"], "b/ok");
    assert!(trail[1]["why"].as_str().unwrap().starts_with("failover: the previous target failed"), "{}", trail[1]);
    assert!(trail[1].get("error").is_none());
    assert!(trail[1]["at_ms"].as_u64().unwrap() >= trail[0]["at_ms"].as_u64().unwrap());
    assert_eq!(d["skipped"], json!([{"target": "c/ok", "why": "not tried: an earlier target answered"}]));
    // The log filters by target and status, through their indexes.
    let page = get(&gate.url("/api/requests?target=b%2Fok&status=ok")).await.json();
    assert_eq!(page["requests"].as_array().unwrap().len(), 1);
    assert_eq!(get(&gate.url("/api/requests?status=error")).await.json()["requests"], json!([]));
    let bad = get(&gate.url("/api/requests?status=teapot")).await;
    assert_eq!((bad.status.as_u16(), bad.json()["error"]["param"].clone()), (400, json!("status")));
    let unknown = get(&gate.url("/api/requests?colour=red")).await;
    assert_eq!(unknown.status, 400);
    let routes = get(&gate.url("/api/routes")).await.json();
    let a = routes["targets"].as_array().unwrap().iter().find(|t| t["target"] == "a/500").unwrap().clone();
    assert!(a["failures"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(routes["failovers"], 1);
    let ov = get(&gate.url("/api/overview?window=1h")).await.json();
    assert_eq!(ov["totals"]["requests"], 1);
    assert_eq!(ov["top_models"][0]["group"], "smart");
    assert_eq!(get(&gate.url("/api/overview?window=2h")).await.status, 400);
}
