//! The bare relay: the thinnest pass-through a Rust proxy can be — hyper server, one pooled
//! hyper client, method/path/headers/body forwarded and the answer streamed back frame by
//! frame. Nothing else, so it is the floor any relay on this machine can reach.

use bytes::Bytes;
use http::HeaderMap;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

struct Relay {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>,
    scheme: http::uri::Scheme,
    /// `http://host:port` of the upstream.
    authority: http::uri::Authority,
}

/// Drop the hop-by-hop headers (and `host`, which names the relay, not the upstream).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in
        ["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "proxy-connection"]
    {
        h.remove(name);
    }
}

async fn forward(r: Arc<Relay>, req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri =
        match Uri::builder().scheme(r.scheme.clone()).authority(r.authority.clone()).path_and_query(path).build() {
            Ok(u) => u,
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
        };
    strip_hop_by_hop(&mut parts.headers);
    match r.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(s: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *r.status_mut() = s;
    r
}

/// Serve on `listen`, relaying everything to `upstream` (`http[s]://host:port[/…]`; HTTPS
/// trusts only the CA certificates in `ca_file`, speaking HTTP/1.1 on pooled connections).
pub async fn run(listen: &str, upstream: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let uri: Uri = upstream.parse()?;
    let authority = uri.authority().cloned().ok_or_else(|| anyhow::anyhow!("upstream {upstream} has no host"))?;
    let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = match ca_file {
        Some(f) => crate::tls::client_config(f, &[])?, // hyper-rustls sets ALPN itself
        None => crate::tls::client_config_empty()?,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).build(https);
    let relay = Arc::new(Relay { client, scheme, authority });
    let listener = TcpListener::bind(listen).await?;
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let r = relay.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| forward(r.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
