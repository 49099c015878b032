//! The one TLS client configuration: webpki's roots, the OS trust store (corporate roots live
//! there), and `[egress] ca_file` for private upstreams and tests.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, errors = native.errors.len(), "OS trust store loaded");
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("egress.ca_file: cannot read {shown}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("egress.ca_file: {shown} is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("egress.ca_file: {shown} holds no certificates"));
        }
        let (ok, bad) = roots.add_parsable_certificates(certs);
        if ok == 0 {
            return Err(format!("egress.ca_file: none of the {bad} certificates in {shown} could be used"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/2 where the upstream offers it (one connection carries many streams), else 1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
