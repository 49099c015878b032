//! First run with no providers configured: the pool is the default provider, its catalog (read
//! from the mock ChatGPT backend per plan) decides what routes and what `/v1/models` lists, in
//! OpenAI's shape and, for `?client_version=`, in Codex's with an ETag. And the whole path a new
//! user takes, in processes of their own with no config file anywhere: `accounts import` of an
//! auth.json, `serve`, and the OpenAI Python SDK answered for `gpt-5.5`.

mod common;

use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::{get, post, send};
use common::{python, skip, Gate, TempDir};
use serde_json::{json, Value};
use std::time::Duration;

fn ids(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// `/v1/models` until it lists `id` (the catalog is read in the background).
async fn wait_listed(gate: &Gate, id: &str) -> Vec<String> {
    for _ in 0..100 {
        let listed = ids(&get(&gate.url("/v1/models")).await.json());
        if listed.iter().any(|m| m == id) {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{id} never listed");
}

#[tokio::test]
async fn with_no_providers_the_pool_serves_what_its_plans_offer() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-plus", false);
    mock.add_chatgpt_account("acc-pro", false);
    let cfg = format!("[pool]\nissuer = \"{}\"\nbase_url = \"{}\"\n", mock.issuer_url(), mock.backend_url());
    let gate = Gate::start(&cfg).await;
    assert!(gate.app.config.implicit_pool);
    assert!(ids(&get(&gate.url("/v1/models")).await.json()).is_empty(), "nothing before an account");

    gate.add_account(&mock, "acc-plus", "plus").await;
    gate.app.reload_pool().await.unwrap();
    let listed = wait_listed(&gate, "gpt-5.5").await;
    assert_eq!(listed, ["gpt-5.5", "gpt-5.4-mini"], "a Plus plan's models, not Pro's");
    let r = post(&gate.url("/v1/responses"), &json!({"model": "gpt-5.5", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "completed");
    let hit = mock.requests().into_iter().rfind(|q| q.path.ends_with("/codex/responses")).unwrap();
    assert_eq!(hit.header("chatgpt-account-id"), Some("acc-plus"), "served by the pool");
    let r = post(&gate.url("/v1/responses"), &json!({"model": "gpt-5.5-pro", "input": "hi"})).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found");

    // An account added while serving brings its plan's models at once.
    gate.add_account(&mock, "acc-pro", "pro").await;
    gate.app.reload_pool().await.unwrap();
    let listed = wait_listed(&gate, "gpt-5.5-pro").await;
    assert_eq!(listed, ["gpt-5.5", "gpt-5.4-mini", "gpt-5.5-pro"]);
    let r = post(&gate.url("/v1/responses"), &json!({"model": "gpt-5.5-pro", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn codex_gets_its_own_catalog_shape_with_an_etag() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    let api = MockUpstream::start(MockOptions::default()).await.unwrap();
    let cfg = format!(
        "[pool]\nissuer = \"{}\"\n{}[[providers]]\nname = \"subs\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n\
         [[routes]]\nmodel = \"coder\"\ntargets = [\"ds/deepseek-chat\"]\n[aliases]\nbig = \"subs/gpt-5.5\"\n",
        mock.issuer_url(),
        common::provider("ds", "chat", &api.url(), "models = [\"deepseek-chat\"]\ncontext_window = 64000"),
        mock.backend_url()
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(&mock, "acc-1", "plus").await;
    gate.app.reload_pool().await.unwrap();
    wait_listed(&gate, "gpt-5.5").await;

    let url = gate.url("/v1/models?client_version=0.171.0");
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    let etag = r.headers.get("etag").expect("an ETag").to_str().unwrap().to_owned();
    let v = r.json();
    let models = v["models"].as_array().unwrap();
    let slug = |s: &str| models.iter().find(|m| m["slug"] == s).unwrap_or_else(|| panic!("{s} in {v}"));
    // The pool's entries are the backend's, field for field.
    let backend = codex_gate_mock::render::codex_catalog();
    assert_eq!(slug("gpt-5.5"), &backend["models"][0]);
    // Others are built: instructions (Codex refuses a catalog without), the window from config.
    let coder = slug("coder");
    assert!(coder["base_instructions"].as_str().unwrap().len() > 100);
    assert_eq!(coder["context_window"], 64000);
    assert_eq!(coder["input_modalities"], json!(["text"]), "a chat provider takes no images here");
    assert_eq!(coder["visibility"], "list");
    assert_eq!(slug("ds/deepseek-chat")["visibility"], "hide");
    // An alias onto a pool model is that model's entry under the alias's name.
    let big = slug("big");
    assert_eq!(big["base_instructions"], backend["models"][0]["base_instructions"]);
    for m in models {
        for k in ["slug", "display_name", "supported_reasoning_levels", "shell_type", "visibility", "truncation_policy"]
        {
            assert!(!m[k].is_null(), "{k} missing in {m}");
        }
    }
    let r = send("GET", &url, String::new(), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    // Plain OpenAI clients still get OpenAI's list.
    let plain = get(&gate.url("/v1/models")).await.json();
    assert_eq!(plain["object"], "list");
    assert!(ids(&plain).contains(&"gpt-5.5".to_owned()) && ids(&plain).contains(&"coder".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_imports_a_login_serves_and_the_sdk_gets_an_answer_with_no_config_file() {
    let Some(py) = python() else {
        skip("no Python with the `openai` package (run .ci/run, or set CODEX_GATE_PYTHON)");
        return;
    };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let (access, refresh) = mock.add_chatgpt_account("acc-new", false);
    let home = TempDir::new();
    let codex_home = home.path().join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let auth = json!({"auth_mode": "chatgpt", "tokens": {
        "id_token": codex_gate_mock::chatgpt::id_token("u-new", "acc-new", "new@example.com", "plus"),
        "access_token": access, "refresh_token": refresh, "account_id": "acc-new"}});
    std::fs::write(codex_home.join("auth.json"), auth.to_string()).unwrap();
    let bin = env!("CARGO_BIN_EXE_codex-gate");
    let env = |c: &mut std::process::Command| {
        c.env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("CODEX_HOME")
            .env_remove("CODEX_GATE_ENCRYPTION_KEY")
            .env("CODEX_GATE_CHATGPT_BASE_URL", mock.backend_url())
            .env("CODEX_GATE_OAUTH_ISSUER", mock.issuer_url());
    };
    // `accounts import` with no argument reads ~/.codex/auth.json.
    let mut import = std::process::Command::new(bin);
    import.args(["accounts", "import"]);
    env(&mut import);
    let out = import.output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = std::process::Command::new(bin);
    serve.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    env(&mut serve);
    let mut child = serve.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}/v1");
    let mut listed = Vec::new();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            listed = ids(&get(&format!("{base}/models")).await.json());
            if listed.iter().any(|m| m == "gpt-5.5") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let script = "import sys, openai\nc = openai.OpenAI(base_url=sys.argv[1], api_key='anything')\n\
                  r = c.responses.create(model='gpt-5.5', input='hi')\nprint(r.output_text)\n";
    let out = tokio::process::Command::new(&py).args(["-c", script, &base]).output().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(listed.iter().any(|m| m == "gpt-5.5"), "/v1/models: {listed:?}");
    assert!(out.status.success(), "SDK: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "d0 d1 d2 d3 d4");
    assert!(!home.path().join(".config/codex-gate/config.toml").exists(), "no config file was written or needed");
}

#[tokio::test]
async fn a_pool_turn_reports_the_pool_s_rate_limits_unless_asked_for_the_account_s() {
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    for (id, used) in [("acc-a", 80.0), ("acc-b", 20.0)] {
        mock.add_chatgpt_account(id, false);
        mock.set_usage(id, used);
    }
    for (mode, pooled) in [("pool", true), ("account", false)] {
        let cfg = format!(
            "[pool]\nissuer = \"{}\"\nbase_url = \"{}\"\nrate_limit_headers = \"{mode}\"\n",
            mock.issuer_url(),
            mock.backend_url()
        );
        let gate = Gate::start(&cfg).await;
        for (id, used) in [("acc-a", 80.0), ("acc-b", 20.0)] {
            gate.add_account(&mock, id, "plus").await;
            let a = gate.app.pool.accounts().into_iter().find(|a| a.chatgpt_account_id == id).unwrap();
            let window = codex_gate::pool::quota::Window {
                used_percent: used,
                window_minutes: Some(300),
                reset_at: Some(1_900_000_000),
            };
            gate.app
                .pool
                .update_quota(&a, codex_gate::pool::quota::Quota { primary: Some(window), ..Default::default() });
        }
        let r = post(&gate.url("/v1/responses"), &json!({"model": "gpt-5.5", "input": "hi", "stream": true})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let served = mock.last_request().unwrap().header("chatgpt-account-id").unwrap().to_owned();
        let shown = r.headers["x-codex-primary-used-percent"].to_str().unwrap().to_owned();
        if pooled {
            assert_eq!(shown, "50", "the pool: (80 + 20) / 2, served by {served}");
            let u = get(&gate.url("/backend-api/wham/usage")).await.json();
            assert_eq!(u["rate_limit"]["primary_window"]["used_percent"], 50);
            assert_eq!(u["rate_limit"]["primary_window"]["reset_at"], 1_900_000_000);
        } else {
            let own = if served == "acc-a" { "80" } else { "20" };
            assert_eq!(shown, own, "the serving account's own numbers");
        }
        // Codex also reads the in-stream snapshot: it shows the same view as the headers.
        let body = json!({"model": "gpt-5.5", "input": "hi", "stream": true}).to_string();
        let r = send(
            "POST",
            &gate.url("/v1/responses"),
            body,
            &[("content-type", "application/json"), ("originator", "codex_cli_rs")],
        )
        .await;
        let served = mock.last_request().unwrap().header("chatgpt-account-id").unwrap().to_owned();
        let snap =
            r.events().into_iter().find(|e| e["type"] == "codex.rate_limits").expect("the snapshot reaches Codex");
        let used = snap["rate_limits"]["primary"]["used_percent"].as_f64().unwrap();
        if pooled {
            assert_eq!(used, 50.0, "{snap}");
        } else {
            assert_eq!(used, if served == "acc-a" { 80.0 } else { 20.0 }, "{snap}");
        }
        let check = get(&gate.url("/backend-api/wham/accounts/check")).await;
        assert_eq!(check.status, 200);
        assert_eq!(check.json()["accounts"]["codex-gate-pool"]["account"]["plan_type"], "plus");
        let credits = get(&gate.url("/backend-api/wham/rate-limit-reset-credits")).await.json();
        assert_eq!(credits, json!({"available_count": 0, "credits": []}));
    }
}
