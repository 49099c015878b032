//! Test harness: a real gateway on an ephemeral port with a private SQLite store, mock upstreams,
//! a small HTTP client that records when each chunk arrives, and the skip policy for optional
//! components (skips are loud, and fatal under CODEX_GATE_TEST_REQUIRE_ALL=1).
#![allow(dead_code)]

pub mod codex;
pub mod http;

use codex_gate::config::Config;
use codex_gate::ledger::{Ledger, Retention};
use codex_gate::metrics::Metrics;
use codex_gate::store::{RequestRecord, Store};
use codex_gate::App;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("codex-gate-test-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn require_all() -> bool {
    std::env::var("CODEX_GATE_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Skip a test because `what` is missing: loud on a laptop, a failure in CI.
pub fn skip(what: &str) {
    if require_all() {
        panic!("CODEX_GATE_TEST_REQUIRE_ALL=1 but {what}");
    }
    eprintln!("\n*** SKIPPED: {what} ***\n");
}

/// The PostgreSQL tests use: CODEX_GATE_TEST_PG_URL, else the local `test` database.
pub fn pg_url() -> String {
    std::env::var("CODEX_GATE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema named `{prefix}_<random>` and an admin pool on the database, or `None` after a
/// loud skip when PostgreSQL is not reachable.
pub async fn pg_schema(prefix: &str) -> Option<(sqlx::PgPool, String)> {
    let url = pg_url();
    let admin = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&url)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            skip(&format!("PostgreSQL is not reachable at {url}: {e}"));
            return None;
        }
    };
    let schema = format!("{prefix}_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.unwrap();
    Some((admin, schema))
}

/// Connect options for `schema` (as its search path).
pub fn pg_options(schema: &str) -> sqlx::postgres::PgConnectOptions {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(&pg_url()).unwrap().options([("search_path", schema)])
}

/// The sealing key every test gateway uses.
pub const TEST_KEY: [u8; 32] = [42; 32];

/// A running gateway.
pub struct Gate {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub store: Store,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

impl Gate {
    /// Start a gateway with `toml` config on 127.0.0.1:0 and a fresh SQLite file.
    pub async fn start(toml: &str) -> Gate {
        let dir = TempDir::new();
        let url = format!("sqlite://{}", dir.path().join("gate.db").display());
        let store = Store::open(&url).await.unwrap();
        Self::start_with(toml, store, dir).await
    }

    pub async fn start_with(toml: &str, store: Store, dir: TempDir) -> Gate {
        let config = Config::from_toml_str(toml, None, &|k| std::env::var(k).ok()).expect("test config");
        let metrics = Arc::new(Metrics::default());
        let retention =
            Retention { max_age: Duration::from_secs(86_400), max_rows: 100_000, every: Duration::from_secs(3600) };
        let (ledger, _writer) = Ledger::start(store.clone(), 1000, retention, metrics.clone());
        let cipher = codex_gate::secrets::Cipher::from_key(TEST_KEY);
        let app = App::new(config, ledger, metrics, store.clone(), cipher);
        app.pool.load().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let a = app.clone();
        tokio::spawn(async move {
            let _ = codex_gate::server::serve(listener, a, async {
                let _ = rx.await;
            })
            .await;
        });
        Gate { addr, app, store, shutdown: Some(tx), _dir: dir }
    }

    /// Log an account in (as `accounts import` would) with the mock's current tokens.
    pub async fn add_account(&self, mock: &codex_gate_mock::MockUpstream, account: &str, plan: &str) -> String {
        let (access, refresh) = mock.chatgpt_tokens(account).expect("mock account");
        let tokens = codex_gate::pool::auth::Tokens {
            id_token: codex_gate_mock::chatgpt::id_token(
                &format!("user-{account}"),
                account,
                &format!("{account}@example.com"),
                plan,
            ),
            access_token: access,
            refresh_token: refresh,
            account_id: Some(account.to_owned()),
        };
        let (id, _) = codex_gate::pool::state::save_login(&self.store, self.app.pool.cipher(), &tokens).await.unwrap();
        self.app.pool.load().await.unwrap();
        id
    }

    /// Begin shutdown (as SIGTERM does) while the test keeps its handles.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The SQLite file of this gateway.
    pub fn store_path(&self) -> String {
        self._dir.path().join("gate.db").display().to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait until the request log holds at least `n` rows; newest first.
    pub async fn records(&self, n: usize) -> Vec<RequestRecord> {
        self.records_where(n, "rows", |_| true).await
    }

    /// Wait until the request log holds `n` rows that `pred` accepts (`what` they are, for the
    /// failure); those rows, newest first.
    pub async fn records_where(
        &self,
        n: usize,
        what: &str,
        pred: impl Fn(&RequestRecord) -> bool,
    ) -> Vec<RequestRecord> {
        for _ in 0..200 {
            let rows: Vec<_> =
                self.store.recent_requests(1000).await.unwrap().into_iter().filter(|r| pred(r)).collect();
            if rows.len() >= n {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the request log never held {n} of {what}");
    }

    /// Wait until the request log holds a row that `pred` accepts; that row.
    pub async fn record_where(&self, what: &str, pred: impl Fn(&RequestRecord) -> bool) -> RequestRecord {
        self.records_where(1, what, pred).await.swap_remove(0)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A gateway in front of every upstream kind of `mock`: the pool (account `acc-1`), a chat
/// provider `chat` and a Responses provider `resp`.
#[allow(dead_code)]
pub async fn every_kind(mock: &codex_gate_mock::MockUpstream) -> Gate {
    mock.add_chatgpt_account("acc-1", false);
    let cfg = format!(
        "{}{}{}",
        pool(mock, ""),
        provider("chat", "chat", &mock.url(), ""),
        provider("resp", "responses", &mock.url(), ""),
    );
    let gate = Gate::start(&cfg).await;
    gate.add_account(mock, "acc-1", "plus").await;
    gate
}

/// The `[pool]` section (with `extra` lines in it) and the pool's provider, on `mock`'s ChatGPT
/// backend.
pub fn pool(mock: &codex_gate_mock::MockUpstream, extra: &str) -> String {
    format!(
        "[pool]\nissuer = \"{}\"\n{extra}[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        mock.issuer_url(),
        mock.backend_url()
    )
}

/// A provider block pointing at `url`.
pub fn provider(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!("[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key = \"sk-provider-{name}\"\n{extra}\n")
}

/// The real Codex CLI: CODEX_GATE_CODEX_BIN (set by `.ci/run`), else `codex` on PATH.
#[allow(dead_code)]
pub fn codex_bin() -> Option<String> {
    [std::env::var("CODEX_GATE_CODEX_BIN").ok(), Some("codex".to_owned())]
        .into_iter()
        .flatten()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Python with the `openai` package: CODEX_GATE_PYTHON, else the workspace's `.venv` (made by
/// `.ci/run`), else `python3` if it can import openai.
#[allow(dead_code)]
pub fn python() -> Option<String> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        std::env::var("CODEX_GATE_PYTHON").ok(),
        Some(root.join(".venv/bin/python").display().to_string()),
        Some("python3".to_owned()),
    ]
    .into_iter()
    .flatten()
    .find(|py| std::process::Command::new(py).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success()))
}

/// Seed 003's OpenClaw config for Codex-LB, byte for byte.
#[allow(dead_code)]
pub const SEED_003: &str = r#"{
  "agents": {
    "defaults": {
      "model": { "primary": "codex-lb/gpt-5.3-codex" }
    }
  },
  "models": {
    "mode": "merge",
    "providers": {
      "codex-lb": {
        "baseUrl": "http://127.0.0.1:2455/v1",
        "apiKey": "dummy",   // any value works when auth is disabled
        "api": "openai-completions",
        "models": [
          { "id": "gpt-5.3-codex", "name": "GPT-5.3 Codex" },
          { "id": "gpt-5.3-codex-spark", "name": "GPT-5.3 Codex Spark" }
        ]
      }
    }
  }
}
"#;

/// A raw-socket upstream that answers every connection with `reply` after its first read (then
/// holds the connection 30 s or closes it); its `http://` URL.
pub async fn hostile(reply: &'static [u8], then_hold: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                if then_hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    url
}
