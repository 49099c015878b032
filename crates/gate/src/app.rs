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
            affinity_ttl: p.affinity_ttl,
            switch_threshold: p.switch_threshold,
            max_attempts: p.max_attempts,
            oauth: crate::pool::refresh::OAuthConfig { issuer: p.issuer.clone(), client_id: p.client_id.clone() },
            originator: p.originator.clone(),
        };
        let pool = Pool::new(settings, store.clone(), cipher, client.clone());
        Arc::new(App { config, router, client, metrics, ledger, pool, store, lifecycle: Lifecycle::default() })
    }
}

impl App {
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
