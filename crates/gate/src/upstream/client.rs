//! The one shared upstream HTTP client (connection pool, TLS context, HTTP/1.1 + HTTP/2 by
//! ALPN), with per-provider connect timeouts applied by host in the connector.

use crate::config::Provider;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An [`HttpConnector`] whose connect timeout depends on the destination `host:port`, so one
/// pooled client can honour every provider's `connect_timeout_ms`.
#[derive(Clone, Debug)]
pub struct TimedConnector {
    inner: HttpConnector,
    by_authority: Arc<HashMap<String, Duration>>,
    default: Duration,
}

fn authority_key(uri: &http::Uri) -> String {
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    format!("{}:{port}", uri.host().unwrap_or_default())
}

impl tower::Service<http::Uri> for TimedConnector {
    type Response = <HttpConnector as tower::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let t = self.by_authority.get(&authority_key(&uri)).copied().unwrap_or(self.default);
        let fut = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(t, fut).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!("connect timeout after {} ms", t.as_millis()).into()),
            }
        })
    }
}

/// The shared client.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<hyper_rustls::HttpsConnector<TimedConnector>, Full<Bytes>>,
}

impl UpstreamClient {
    pub fn new(providers: &[Provider]) -> UpstreamClient {
        let mut by_authority = HashMap::new();
        for p in providers {
            if let Ok(uri) = p.base_url.parse::<http::Uri>() {
                // Two providers on one host: the longer timeout wins.
                let e = by_authority.entry(authority_key(&uri)).or_insert(p.timeouts.connect);
                *e = (*e).max(p.timeouts.connect);
            }
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let timed =
            TimedConnector { inner: http, by_authority: Arc::new(by_authority), default: Duration::from_secs(10) };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(timed);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .build(https);
        UpstreamClient { client }
    }

    /// Send a request; resolves when the response head arrives.
    pub fn request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, hyper_util::client::legacy::Error>> + Send + 'static
    {
        self.client.request(req)
    }
}
