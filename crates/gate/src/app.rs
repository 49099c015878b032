//! The shared application state every handler gets: config, model router, the one upstream
//! HTTP client, metrics and the request-log sender.

use crate::config::Config;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolSettings};
use crate::routing::ModelRouter;
use crate::secrets::Cipher;
use crate::store::Store;
use crate::upstream::client::UpstreamClient;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub router: ModelRouter,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub ledger: Ledger,
    pub pool: Pool,
    pub store: Store,
    pub lifecycle: Lifecycle,
    /// Client keys, reloaded when the store says they changed.
    pub keys: crate::access::keys::Keys,
    /// `[cluster]`: the shared Redis.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `[telemetry]`: the OpenTelemetry exporter (`None`: off).
    pub telemetry: Option<crate::telemetry::Telemetry>,
    /// Dashboard sign-in sessions and their CSRF tokens.
    pub sessions: crate::dashboard::session::Sessions,
    /// Account logins started from the admin API, for the dashboard to follow.
    pub logins: crate::pool::login::Logins,
    /// Upstreams that refused a WebSocket upgrade lately (their turns go over HTTP).
    pub ws_refusals: crate::upstream::socket::Refusals,
}

/// Shutdown, in two steps: `stopping` when the server stops accepting (background tasks end),
/// `cut` when the drain deadline passes (open streams end with their final failure event).
#[derive(Debug, Default, Clone)]
pub struct Lifecycle {
    pub stopping: CancellationToken,
    pub cut: CancellationToken,
}

impl App {
    /// Assemble the state. `ledger` must have been started with the same `metrics`; call
    /// `app.pool.load()` to bring the accounts in.
    pub fn new(config: Config, ledger: Ledger, metrics: Arc<Metrics>, store: Store, cipher: Cipher) -> Arc<App> {
        let router = ModelRouter::new(&config);
        let egress = crate::egress::Egress::new(&config.egress).unwrap_or_else(|e| {
            // Config validation read the CA file already; it can only have changed since.
            tracing::error!(error = %e, "egress setup failed; using the default trust roots");
            crate::egress::Egress::new(&crate::egress::EgressConfig::default()).expect("default TLS setup")
        });
        let client = UpstreamClient::with_egress(&config.providers, egress);
        let p = &config.pool;
        let settings = PoolSettings {
            strategy: p.strategy,
            account_concurrency: p.account_concurrency,
            account_rpm: p.account_rpm,
            affinity_ttl: p.affinity_ttl,
            switch_threshold: p.switch_threshold,
            max_attempts: p.max_attempts,
            oauth: crate::pool::refresh::OAuthConfig { issuer: p.issuer.clone(), client_id: p.client_id.clone() },
            originator: p.originator.clone(),
        };
        let pool = Pool::new(settings, store.clone(), cipher, client.clone());
        let keys = crate::access::keys::Keys::default();
        // The URL was checked with the config.
        let cluster = config.redis_url.as_deref().and_then(|u| crate::cluster::Cluster::new(u).ok());
        if let Some(c) = &cluster {
            keys.set_cluster(c.clone());
            pool.set_cluster(c.clone());
        }
        let systems = config
            .providers
            .iter()
            .map(|p| {
                let system = if p.kind == crate::config::ProviderKind::Chatgpt { "openai" } else { p.name.as_str() };
                (p.name.clone(), system.to_owned())
            })
            .collect();
        let telemetry = crate::telemetry::Telemetry::start(&config.telemetry, client.clone(), metrics.clone(), systems);
        Arc::new(App {
            telemetry,
            sessions: crate::dashboard::session::Sessions::default(),
            logins: crate::pool::login::Logins::default(),
            ws_refusals: Default::default(),
            config,
            router,
            client,
            metrics,
            ledger,
            pool,
            store,
            lifecycle: Lifecycle::default(),
            keys,
            cluster,
        })
    }
}

impl App {
    /// Bring the client keys up to date now, then every 500 ms until the server stops (a key
    /// created, changed or revoked by the CLI or another instance applies within a second).
    pub async fn watch_keys(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        self.keys.sync(&self.store, true).await?;
        let app = self.clone();
        let stopping = self.lifecycle.stopping.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopping.cancelled() => break,
                }
                match app.keys.sync(&app.store, false).await {
                    Ok(changed) => {
                        if changed {
                            app.metrics.key_reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!("client keys reloaded");
                        }
                        if failing {
                            tracing::info!("client keys readable again");
                        }
                        failing = false;
                    }
                    // The last good set stays in force.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read client keys; keeping the ones loaded");
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(())
    }

    /// With `[cluster]`: publish, listen and sync counters until the server stops.
    pub fn start_cluster(self: &Arc<Self>) {
        let Some(c) = self.cluster.clone() else { return };
        let stop = self.lifecycle.stopping.clone();
        // Connect now, so `/metrics` and the log tell at once whether Redis is there.
        let first = c.clone();
        tokio::spawn(async move {
            let _: Option<String> =
                first.call(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await }).await;
        });
        tokio::spawn(crate::cluster::events::publish_loop(c.clone(), stop.clone()));
        tokio::spawn(crate::cluster::counters::run(c.clone(), stop.clone()));
        let app = self.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<serde_json::Value>(1024);
        tokio::spawn(crate::cluster::events::listen(c, stop.clone(), move |v| {
            let _ = tx.try_send(v);
        }));
        tokio::spawn(async move {
            loop {
                let v = tokio::select! {
                    v = rx.recv() => match v { Some(v) => v, None => break },
                    () = stop.cancelled() => break,
                };
                app.pool.apply_event(&v).await;
            }
        });
    }

    /// Load the accounts from the store again, then read the pool's model catalog in the
    /// background (a new account may bring a plan with other models).
    pub async fn reload_pool(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let n = self.pool.load().await?;
        self.refresh_catalog_soon();
        Ok(n)
    }

    /// Read the pool's catalog in a task of its own (see [`crate::pool::catalog`]).
    pub fn refresh_catalog_soon(self: &Arc<Self>) {
        let Some(base) = self.router.pool_provider().map(|p| p.base_url.clone()) else { return };
        let app = self.clone();
        let stopping = self.lifecycle.stopping.clone();
        // Ends with the server, so no App outlives it.
        tokio::spawn(async move {
            tokio::select! {
                _ = app.pool.refresh_catalog(&base) => {}
                () = stopping.cancelled() => {}
            }
        });
    }
}
