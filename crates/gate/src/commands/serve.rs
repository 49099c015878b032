//! `codex-gate serve`: open the store, start the request-log writer, bind, serve until a
//! signal, drain, flush.

use crate::app::App;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::ledger::{Ledger, Retention};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(path: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(path)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(url) = args.store {
        config.store.url = url;
    }
    let url = super::redact_url(&config.store.url);
    let store = Store::open(&config.store.url).await.with_context(|| format!("cannot open the store at {url}"))?;
    let metrics = Arc::new(Metrics::default());
    let retention = Retention {
        max_age: config.store.retention,
        max_rows: config.store.max_rows,
        every: Duration::from_secs(3600),
    };
    let (ledger, writer) = Ledger::start(store.clone(), config.store.writer_queue, retention, metrics.clone());
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    let cipher = crate::secrets::Cipher::load(&config.pool.key_file)?;
    crate::pool::state::check_key(&store, &cipher).await?;
    let ledger_handle = ledger.clone();
    let app = App::new(config, ledger, metrics, store.clone(), cipher);
    app.keys.sync(&store, true).await.context("cannot read the client keys")?;
    refuse_open_listener(&app)?;
    let accounts = app.reload_pool().await?;
    let backend = app
        .config
        .providers
        .iter()
        .find(|p| p.kind == crate::config::ProviderKind::Chatgpt)
        .map(|p| p.base_url.clone());
    if let (Some(every), Some(base)) = (app.config.pool.usage_poll, backend) {
        let a = app.clone();
        let stopping = app.lifecycle.stopping.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // Ends with the server, so it holds no App (and no request-log sender) at exit.
            let poll = async {
                loop {
                    tick.tick().await;
                    a.pool.poll_usage(&base).await;
                    // The catalog as Codex caches it: for five minutes.
                    if let Some(p) = a.router.pool_provider() {
                        a.pool.refresh_catalog(&p.base_url).await;
                    }
                }
            };
            tokio::select! {
                () = poll => {}
                () = stopping.cancelled() => {}
            }
        });
    }
    tracing::info!(
        listen = %listener.local_addr()?, store = %url, providers = app.config.providers.len(),
        routes = app.config.routes.len(), accounts, "codex-gate is serving; point clients at http://{}/v1", listen
    );
    if app.config.implicit_pool && accounts == 0 {
        // Through the log, so `--log-format json` stays one JSON object per line.
        tracing::warn!("{}", next_steps(&listener.local_addr()?));
    }
    crate::server::serve(listener, app.clone(), shutdown_signal()).await?;
    // Connections are closed and open streams have written their rows: flush and stop.
    ledger_handle.shutdown();
    if let Some(t) = &app.telemetry {
        t.flush().await;
    }
    if tokio::time::timeout(Duration::from_secs(10), writer).await.is_err() {
        tracing::warn!("request log writer did not finish in 10 s");
    }
    store.close().await;
    tracing::info!("codex-gate stopped");
    Ok(())
}

/// A listener other machines can reach, with no key to ask for: anyone on the network could
/// spend the operator's subscriptions and provider credit.
fn refuse_open_listener(app: &App) -> anyhow::Result<()> {
    let listen = app.config.server.listen;
    if listen.ip().is_loopback() || app.keys.current().any || app.config.server.require_keys {
        return Ok(());
    }
    anyhow::bail!(
        "server.listen = {listen} is reachable from other machines, and no client keys exist, so anyone who can \
         reach it could use your accounts and providers. Create a key first (`codex-gate keys create --name NAME`; \
         from then on every request needs one), or set [server] require_keys = true, or listen on 127.0.0.1"
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

/// What a first run with nothing to route should do next.
fn next_steps(addr: &std::net::SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let base = format!("http://{host}:{}/v1", addr.port());
    format!(
        "\ncodex-gate has nothing to route yet: no providers are configured and the pool has no accounts.\n\
         Add one, while this keeps running:\n\
         \x20 codex-gate accounts import ~/.codex/auth.json   # the ChatGPT login Codex already has\n\
         \x20 codex-gate accounts login                       # or log in to another ChatGPT account\n\
         \x20 or add an API provider under [[providers]] in the config file (see the README).\n\
         Then point clients at  base_url = {base}\n\
         \x20 codex-gate setup codex      # writes a Codex profile for it\n"
    )
}
