//! Egress: how the gateway reaches an upstream. DNS and TCP with happy eyeballs (hyper-util's
//! `HttpConnector`), HTTP CONNECT and SOCKS5 proxies (hyper-util's proxy connectors; chosen per
//! provider, else `[egress] proxy`, else `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY`), and TLS
//! trusting webpki's roots, the OS store and `[egress] ca_file`. Every failure is typed by
//! [`TransportKind`], which becomes the error code, the request-log field and the metric label.

mod kind;
mod tls;

pub use kind::{chain, redact_proxy, ClientError, TransportKind};

use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tower::{Service, ServiceExt};

/// `[egress]`, validated.
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// Proxy for every upstream without its own (`http://…`, `socks5://…`, `socks5h://…`).
    pub proxy: Option<http::Uri>,
    /// Read `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` when no proxy is configured.
    pub env_proxy: bool,
    /// Extra trusted certificate authorities (PEM).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where a request's connection goes through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    Direct,
    Proxy(http::Uri),
}

/// A per-request proxy choice, carried in the request's extensions: `Some(Route::Direct)` turns
/// a default or environment proxy off; absent means "use the defaults".
#[derive(Debug, Clone)]
pub struct ProxyChoice(pub Route);

/// Name resolution whose failures are recognisably DNS failures.
#[derive(Clone, Debug, Default)]
struct Resolver;

#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub(crate) struct DnsError(std::io::Error);

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DnsError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await.map_err(DnsError)?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}

/// The connector every upstream connection is made with.
#[derive(Clone)]
pub struct Egress {
    tcp: HttpConnector<Resolver>,
    tls: Arc<rustls::ClientConfig>,
    default_proxy: Option<http::Uri>,
    env: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("default_proxy", &self.default_proxy.is_some()).finish_non_exhaustive()
    }
}

impl Egress {
    /// Build from the config; an unreadable or empty `ca_file` is an error naming it.
    pub fn new(cfg: &EgressConfig) -> Result<Egress, String> {
        let mut tcp = HttpConnector::new_with_resolver(Resolver);
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        // Keep-alive probes keep long quiet streams alive through NATs.
        tcp.set_keepalive(Some(Duration::from_secs(60)));
        // RFC 8305's recommended delay before trying the other address family.
        tcp.set_happy_eyeballs_timeout(Some(Duration::from_millis(250)));
        let tls = tls::client_config(cfg.ca_file.as_deref())?;
        // Without any proxy variable set, no request pays for asking the matcher.
        let proxy_vars = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
        let any_set = proxy_vars.iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        let env = (cfg.env_proxy && any_set).then(|| Arc::new(Matcher::from_env()));
        Ok(Egress { tcp, tls, default_proxy: cfg.proxy.clone(), env })
    }

    /// The route for a request to `dst`, given its own choice.
    pub fn route(&self, dst: &http::Uri, choice: Option<&ProxyChoice>) -> Route {
        if let Some(ProxyChoice(r)) = choice {
            return r.clone();
        }
        if let Some(p) = &self.default_proxy {
            return Route::Proxy(p.clone());
        }
        match self.env.as_ref().and_then(|m| m.intercept(dst)) {
            Some(i) => Route::Proxy(i.uri().clone()),
            None => Route::Direct,
        }
    }

    /// A TCP (or tunnelled) connection to `host:port` by `route`.
    pub async fn tcp(&self, host: &str, port: u16, route: &Route) -> Result<TcpStream, ClientError> {
        let dst: http::Uri = format!("http://{}:{port}", bracket(host))
            .parse()
            .map_err(|_| ClientError::new(TransportKind::Connect, format!("`{host}` is not a valid host")))?;
        match route {
            Route::Direct => {
                let io = self.tcp.clone().oneshot(dst).await.map_err(|e| kind::from_connect(&e, host, port))?;
                Ok(io.into_inner())
            }
            Route::Proxy(proxy) => {
                let shown = kind::redact_proxy(proxy);
                let fail = |e: &dyn std::error::Error| {
                    ClientError::new(TransportKind::Proxy, format!("via proxy {shown}: {}", kind::chain(e)))
                };
                let io = match proxy.scheme_str() {
                    Some("socks5" | "socks5h") => {
                        let mut socks = SocksV5::new(proxy.clone(), self.tcp.clone())
                            .local_dns(proxy.scheme_str() == Some("socks5"));
                        if let Some((user, pass)) = kind::userinfo(proxy) {
                            socks = socks.with_auth(user, pass);
                        }
                        socks.oneshot(dst).await.map_err(|e| fail(&e))?
                    }
                    _ => {
                        // An `http://` proxy is asked to CONNECT for every destination, so the
                        // gateway's own TLS runs end to end.
                        let target = proxy_authority_uri(proxy);
                        let mut tunnel = Tunnel::new(target, self.tcp.clone());
                        if let Some(auth) = kind::basic_auth(proxy) {
                            tunnel = tunnel.with_auth(auth);
                        }
                        tunnel.oneshot(dst).await.map_err(|e| fail(&e))?
                    }
                };
                Ok(io.into_inner())
            }
        }
    }

    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The proxy's own address without credentials (they go in headers, not in the connect URI).
fn proxy_authority_uri(proxy: &http::Uri) -> http::Uri {
    let host = proxy.host().unwrap_or_default();
    let port = proxy.port_u16().unwrap_or(if proxy.scheme_str() == Some("https") { 443 } else { 80 });
    format!("http://{}:{port}", bracket(host.trim_start_matches('[').trim_end_matches(']')))
        .parse()
        .unwrap_or_else(|_| proxy.clone())
}

/// Validate a proxy URL from the config.
pub fn parse_proxy(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "socks5" | "socks5h"), Some(h)) if !h.is_empty() => Ok(uri),
        _ => Err(format!(
            "{:?} must be http://host:port, socks5://host:port or socks5h://host:port",
            kind::redact_proxy(&uri)
        )),
    }
}
