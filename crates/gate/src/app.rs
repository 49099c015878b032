//! The shared application state every handler gets: config, model router, the one upstream
//! HTTP client, metrics and the request-log sender.

use crate::config::Config;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::routing::ModelRouter;
use crate::upstream::client::UpstreamClient;
use std::sync::Arc;

#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub router: ModelRouter,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub ledger: Ledger,
}

impl App {
    /// Assemble the state. `ledger` must have been started with the same `metrics`.
    pub fn new(config: Config, ledger: Ledger, metrics: Arc<Metrics>) -> Arc<App> {
        let router = ModelRouter::new(&config);
        let client = UpstreamClient::new(&config.providers);
        Arc::new(App { config, router, client, metrics, ledger })
    }
}
