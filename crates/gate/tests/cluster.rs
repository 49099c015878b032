//! Several gateway instances on one PostgreSQL database and one Redis behave as one: keys
//! revoked on A are refused by B within a second, a requests-per-minute limit holds across
//! both, a budget spent on A stops B, 100 concurrent requests over both instances on an expired
//! access token make exactly one token-endpoint call, an account cooled down on A is skipped by
//! B, and with Redis stopped both keep serving and then converge once it is back.
//!
//! Each test runs its own `redis-server` on a free port (so stopping it touches nothing else)
//! and its own PostgreSQL schema. Most instances are separate gateways in this process that share
//! nothing but those two; one test runs two `codex-gate serve` processes with the CLI making and
//! revoking the key. Without PostgreSQL or redis-server the tests skip loudly (CI fails).

mod common;

use codex_gate::access::manage;
use codex_gate::store::Store;
use codex_gate_mock::{MockOptions, MockUpstream};
use common::http::send;
use common::{skip, Gate, TempDir};
use serde_json::json;
use std::time::{Duration, Instant};

/// A private redis-server, stopped on drop.
struct Redis {
    port: u16,
    child: Option<std::process::Child>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut r = Redis { port, child: None };
        r.restart().then_some(r)
    }

    /// Start (again) on the same port; true once it answers.
    fn restart(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn get(&self, key: &str) -> Option<String> {
        let out =
            std::process::Command::new("redis-cli").args(["-p", &self.port.to_string(), "GET", key]).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!s.is_empty()).then_some(s)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One test at a time: they measure per-minute counters and 250 ms Redis deadlines, which the
/// other tests' load (100 concurrent requests) would blur.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Redis and a fresh PostgreSQL schema, or a loud skip.
async fn shared() -> Option<(Redis, String, tokio::sync::MutexGuard<'static, ()>)> {
    let serial = SERIAL.lock().await;
    let (_admin, schema) = common::pg_schema("c").await?;
    let Some(redis) = Redis::start() else {
        skip("redis-server is not installed (apt-get install redis-server)");
        return None;
    };
    Some((redis, schema, serial))
}

/// One gateway instance on the shared schema and Redis.
async fn instance(schema: &str, redis: &Redis, extra: &str) -> Gate {
    let store = Store::open_postgres(common::pg_options(schema)).await.unwrap();
    let toml = format!("[store]\nurl = \"{}\"\n[cluster]\nredis_url = \"{}\"\n{extra}", common::pg_url(), redis.url());
    let gate = Gate::start_with(&toml, store, TempDir::new()).await;
    // Pub/sub delivers only to subscribers: an instance hears other instances' events once it
    // is listening, so a test starts sending when it is.
    let cluster = gate.app.cluster.clone().unwrap();
    for _ in 0..250 {
        if cluster.subscribed.load(std::sync::atomic::Ordering::Relaxed) {
            return gate;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the instance never subscribed to the cluster's events");
}

async fn chat(gate: &Gate, model: &str, key: &str) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let auth = format!("Bearer {key}");
    send(
        "POST",
        &gate.url("/v1/chat/completions"),
        body,
        &[("content-type", "application/json"), ("authorization", &auth)],
    )
    .await
    .status
    .as_u16()
}

/// Not in the last 15 s of a minute (the shared request counters are per minute).
async fn early_in_a_minute() {
    while codex_gate::now_ms() % 60_000 > 45_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(gate: &Gate, name: &str) -> Option<f64> {
    let m = send("GET", &gate.url("/metrics"), "", &[]).await.text();
    m.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_limits_are_shared_by_every_instance() {
    let Some((redis, schema, _serial)) = shared().await else { return };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    // One `priced` request costs more than $1.
    let p = format!(
        "{}[prices.priced]\ninput = 100000.0\noutput = 100000.0\n",
        common::provider("p", "chat", &mock.url(), "models = [\"ok\", \"priced\"]")
    );
    let (a, b) = (instance(&schema, &redis, &p).await, instance(&schema, &redis, &p).await);

    // A key made and then revoked on A: B serves it, then refuses it, each within a second.
    early_in_a_minute().await;
    let (k, row) = manage::create(&a.store, json!({"name": "team", "rpm": 10}).as_object().unwrap()).await.unwrap();
    // Until B has the key it serves loopback without one; from then on it asks for a key.
    let t = Instant::now();
    while !(chat(&b, "ok", "cg-not-a-key").await == 401 && chat(&a, "ok", "cg-not-a-key").await == 401) {
        assert!(t.elapsed() < Duration::from_secs(1), "A's new key did not reach B within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat(&b, "ok", &k).await, 200);
    // Requests per minute across both: never more than 10 (a lease is 1 request: each instance
    // leaves at most one unused, so at least 10 - 2 are admitted).
    let mut ok = 1; // the request above
    for i in 0..30 {
        let g = if i % 2 == 0 { &a } else { &b };
        if chat(g, "ok", &k).await == 200 {
            ok += 1;
        }
    }
    assert!((8..=10).contains(&ok), "{ok} requests admitted by an rpm limit of 10 across two instances");

    manage::revoke(&a.store, &row.id).await.unwrap();
    let t = Instant::now();
    while chat(&b, "ok", &k).await != 401 {
        assert!(t.elapsed() < Duration::from_secs(1), "B served a key revoked on A after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A budget spent on A stops B (the spend reaches Redis within 200 ms).
    let (k, _) =
        manage::create(&a.store, json!({"name": "budget", "budget_usd": 1.0}).as_object().unwrap()).await.unwrap();
    a.app.keys.sync(&a.store, false).await.unwrap();
    b.app.keys.sync(&b.store, false).await.unwrap();
    assert_eq!(chat(&a, "priced", &k).await, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(chat(&b, "priced", &k).await, 429, "B knows what A spent");
    drop(schema);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_refresh_for_a_hundred_requests_over_two_instances_and_shared_cooldowns() {
    let Some((redis, schema, _serial)) = shared().await else { return };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    let pool = format!(
        "[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"gpt-5.5\"]\n[pool]\nissuer = \"{}\"\nstrategy = \"primary_first\"\n",
        mock.backend_url(),
        mock.issuer_url()
    );
    let a = instance(&schema, &redis, &pool).await;
    let id1 = a.add_account(&mock, "acc-1", "plus").await;
    // The stored access token has expired: every instance must refresh before using it.
    let Store::Postgres(pg) = &a.store else { unreachable!() };
    sqlx::query("UPDATE accounts SET access_expires_ms = 1").execute(pg).await.unwrap();
    a.app.pool.load().await.unwrap();
    let b = instance(&schema, &redis, &pool).await;
    b.app.pool.load().await.unwrap();
    mock.set_token_delay_ms(300);
    let calls = mock.token_calls();
    let body = json!({"model": "pool/gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = if i % 2 == 0 { a.url("/v1/chat/completions") } else { b.url("/v1/chat/completions") };
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            send("POST", &url, body, &[("content-type", "application/json")]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(mock.token_calls() - calls, 1, "one refresh for both instances");

    // acc-1 reaches its usage limit on A: B skips it without asking.
    b.add_account(&mock, "acc-2", "plus").await;
    a.app.pool.load().await.unwrap();
    mock.set_account_behavior("acc-1", Some("usage-limit"));
    let r = send("POST", &a.url("/v1/chat/completions"), body.clone(), &[("content-type", "application/json")]).await;
    assert_eq!(r.status, 200, "A failed over to acc-2: {}", r.text());
    let t = Instant::now();
    while b.app.pool.find(&id1).unwrap().cooldown_until_ms.load(std::sync::atomic::Ordering::Relaxed)
        <= codex_gate::now_ms()
    {
        assert!(t.elapsed() < Duration::from_secs(2), "B never heard of acc-1's cooldown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = mock.requests().iter().filter(|q| q.header("chatgpt-account-id") == Some("acc-1")).count();
    let r = send("POST", &b.url("/v1/chat/completions"), body, &[("content-type", "application/json")]).await;
    assert_eq!(r.status, 200);
    let after = mock.requests().iter().filter(|q| q.header("chatgpt-account-id") == Some("acc-1")).count();
    assert_eq!(after, before, "B did not try the account A cooled down");
    drop(schema);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_both_keep_serving_and_converge_when_it_returns() {
    let Some((mut redis, schema, _serial)) = shared().await else { return };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let p = common::provider("p", "chat", &mock.url(), "models = [\"ok\"]");
    let (a, b) = (instance(&schema, &redis, &p).await, instance(&schema, &redis, &p).await);
    // rpm 60: leases of 3, so requests keep needing Redis while it is gone.
    let (k, row) = manage::create(&a.store, json!({"name": "k", "rpm": 60}).as_object().unwrap()).await.unwrap();
    a.app.keys.sync(&a.store, false).await.unwrap();
    b.app.keys.sync(&b.store, false).await.unwrap();
    early_in_a_minute().await;
    assert_eq!(chat(&a, "ok", &k).await, 200);
    assert_eq!(metric(&a, "codex_gate_redis_up").await, Some(1.0));

    redis.stop();
    let errors = metric(&a, "codex_gate_redis_errors_total").await.unwrap_or(0.0);
    for _ in 0..10 {
        assert_eq!(chat(&a, "ok", &k).await, 200, "A serves on local counters");
        assert_eq!(chat(&b, "ok", &k).await, 200, "B serves on local counters");
    }
    // After a failure no call is tried for a second: the requests did not each wait on Redis.
    let tried = metric(&a, "codex_gate_redis_errors_total").await.unwrap_or(0.0) - errors;
    assert!(tried <= 3.0, "{tried} failed Redis calls for 10 requests");
    // The lease each held ran out or is refused now: they counted locally and say so.
    let t = Instant::now();
    while metric(&a, "codex_gate_redis_up").await != Some(0.0) {
        assert_eq!(chat(&a, "ok", &k).await, 200);
        assert!(t.elapsed() < Duration::from_secs(10), "A never noticed Redis was gone");
    }

    assert!(redis.restart(), "redis-server did not come back");
    let minute = codex_gate::now_ms() / 60_000 * 60_000;
    let t = Instant::now();
    loop {
        assert_eq!(chat(&a, "ok", &k).await, 200);
        assert_eq!(chat(&b, "ok", &k).await, 200);
        let up = metric(&a, "codex_gate_redis_up").await == Some(1.0)
            && metric(&b, "codex_gate_redis_up").await == Some(1.0);
        if up {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the instances did not reconnect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What they admitted while Redis was away is in its counter now.
    let counted: i64 =
        redis.get(&format!("codex-gate:rpm:{}:{minute}", row.id)).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(counted >= 20, "the outage's requests were added back: {counted}");
    drop(schema);
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_hand_out_exactly_the_limit_between_instances() {
    use codex_gate::cluster::counters::{Shared, Take};
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else {
        skip("redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let (ca, cb) = (
        codex_gate::cluster::Cluster::new(&redis.url()).unwrap(),
        codex_gate::cluster::Cluster::new(&redis.url()).unwrap(),
    );
    let period = codex_gate::access::keys::Period::Day;
    for (rpm, lease) in [(10u32, 1u32), (100, 5)] {
        let id = format!("key_{rpm}");
        let (a, b) = (Shared::new(&id, Some(rpm), None, None, period), Shared::new(&id, Some(rpm), None, None, period));
        early_in_a_minute().await;
        let mut taken = 0;
        for i in 0..(3 * rpm) {
            let (s, c) = if i % 2 == 0 { (&a, &ca) } else { (&b, &cb) };
            let now = codex_gate::now_ms();
            s.ensure_lease(c, now).await;
            match s.take(now, c.is_up()) {
                Take::Taken => taken += 1,
                Take::Exhausted => {}
                Take::Local => panic!("Redis is up, yet no lease"),
            }
        }
        // Each may hold up to one lease unused; never more than the limit.
        assert!(taken <= rpm && taken + 2 * lease >= rpm, "rpm {rpm}: {taken} taken");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_stays_on_its_account_across_instances() {
    let Some((redis, schema, _serial)) = shared().await else { return };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    let pool = format!(
        "[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\nmodels = [\"gpt-5.5\"]\n[pool]\nissuer = \"{}\"\nstrategy = \"round_robin\"\n",
        mock.backend_url(),
        mock.issuer_url()
    );
    let a = instance(&schema, &redis, &pool).await;
    a.add_account(&mock, "acc-1", "plus").await;
    a.add_account(&mock, "acc-2", "plus").await;
    let b = instance(&schema, &redis, &pool).await;
    b.app.pool.load().await.unwrap();
    // A conversation is told by its prompt_cache_key (Codex sends its session id there).
    let turn = |g: &Gate, session: &'static str| {
        let url = g.url("/v1/responses");
        let body = json!({"model": "pool/gpt-5.5", "input": "hi", "prompt_cache_key": session}).to_string();
        async move {
            assert_eq!(send("POST", &url, body, &[("content-type", "application/json")]).await.status, 200);
        }
    };
    let served = || mock.requests().into_iter().rfind(|q| q.path.ends_with("/codex/responses")).unwrap();
    // On A, sess-1 is the second new session, so round_robin gives it the second account —
    // not what B, which has served nothing yet, would pick for it on its own.
    turn(&a, "sess-0").await;
    turn(&a, "sess-1").await;
    let first = served().header("chatgpt-account-id").unwrap().to_owned();
    assert_eq!(first, "acc-2");
    // sess-1's event crosses (waited for, not slept on: under CI load it took longer than 300
    // ms). Waiting for any event let sess-0's satisfy the wait before sess-1's had arrived.
    let first_id = a.app.pool.affinity_of("sess-1").expect("A keeps sess-1");
    for _ in 0..100 {
        if b.app.pool.affinity_of("sess-1").as_deref() == Some(first_id.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        turn(&b, "sess-1").await;
        assert_eq!(served().header("chatgpt-account-id"), Some(first.as_str()), "B kept A's choice for the session");
    }
    // A session B has never seen alternates under round_robin, so the above was the event.
    let mut seen = std::collections::HashSet::new();
    for s in ["sess-2", "sess-3", "sess-4"] {
        turn(&b, s).await;
        seen.insert(served().header("chatgpt-account-id").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "round_robin spreads new sessions: {seen:?}");
    drop(schema);
}

/// A `codex-gate serve` process on the shared schema and Redis; killed on drop.
struct Serve {
    child: std::process::Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pg_url(schema: &str) -> String {
    format!("{}?options=-c%20search_path%3D{schema}", common::pg_url())
}

fn config_file(dir: &TempDir, schema: &str, redis: &Redis, mock: &MockUpstream, port: u16) -> std::path::PathBuf {
    let path = dir.path().join(format!("gate-{port}.toml"));
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"{}\"\n[cluster]\nredis_url = \"{}\"\n\
         [pool]\nkey_file = \"{}\"\n{}",
        pg_url(schema),
        redis.url(),
        dir.path().join("key").display(),
        common::provider("p", "chat", &mock.url(), "models = [\"ok\"]")
    );
    std::fs::write(&path, toml).unwrap();
    path
}

async fn serve(config: &std::path::Path, port: u16) -> Serve {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "serve on {port} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Serve { child, port }
}

async fn chat_at(port: u16, key: &str) -> u16 {
    let body = json!({"model": "ok", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let auth = format!("Bearer {key}");
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    send("POST", &url, body, &[("content-type", "application/json"), ("authorization", &auth)]).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_processes_share_keys_and_limits() {
    let Some((redis, schema, _serial)) = shared().await else { return };
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    let dir = TempDir::new();
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let configs: Vec<_> = ports.iter().map(|p| config_file(&dir, &schema, &redis, &mock, *p)).collect();
    let a = serve(&configs[0], ports[0]).await;
    let b = serve(&configs[1], ports[1]).await;
    early_in_a_minute().await;
    // A key made by the CLI against the shared database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", configs[0].to_str().unwrap(), "keys", "create", "--name", "team", "--rpm", "6", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let t = Instant::now();
    while !(chat_at(a.port, "cg-not-a-key").await == 401 && chat_at(b.port, "cg-not-a-key").await == 401) {
        assert!(t.elapsed() < Duration::from_secs(1), "the key did not reach both processes within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ok = 0;
    for i in 0..18 {
        if chat_at(if i % 2 == 0 { a.port } else { b.port }, &key).await == 200 {
            ok += 1;
        }
    }
    // Leases of one request: never over 6, at most one unused per process.
    assert!((4..=6).contains(&ok), "{ok} admitted by an rpm limit of 6 across two processes");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"))
        .args(["--config", configs[1].to_str().unwrap(), "keys", "revoke", "team"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Instant::now();
    while !(chat_at(a.port, &key).await == 401 && chat_at(b.port, &key).await == 401) {
        assert!(t.elapsed() < Duration::from_secs(1), "a revoked key was served after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The schema, not `public`, holds the data.
    let admin = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let n: i64 =
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}.client_keys")).fetch_one(&admin).await.unwrap();
    assert_eq!(n, 1);
}
