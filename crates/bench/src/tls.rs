//! The TLS scenarios' test PKI: a CA and a leaf for 127.0.0.1 / localhost written as PEM files
//! (the mock serves the leaf, codex-gate trusts the CA through `[egress] ca_file`), and client
//! configs trusting that CA for the load generator and the bare relay.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::{self, pki_types};

pub struct Pki {
    /// The CA certificate (what `[egress] ca_file` names).
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A fresh CA and leaf in `dir`.
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "codex-gate bench CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate()?;
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
            .signed_by(&key, &issuer)?;
        let pki = Pki { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("cert.pem"), key_pem: dir.join("key.pem") };
        std::fs::write(&pki.ca_pem, ca_cert.pem())?;
        std::fs::write(&pki.cert_pem, leaf.pem())?;
        std::fs::write(&pki.key_pem, key.serialize_pem())?;
        Ok(pki)
    }

    /// A client trusting only this CA, offering `alpn` (e.g. `http/1.1`).
    pub fn client(&self, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        client_config(&self.ca_pem, alpn)
    }
}

/// A client trusting only the CA certificates in `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &Path, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        pki_types::CertificateDer::pem_file_iter(ca_pem).with_context(|| format!("cannot read {}", ca_pem.display()))?
    {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client that trusts nothing (the relay's, for plain-HTTP upstreams).
pub fn client_config_empty() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The mock's server config from PEM files, offering HTTP/2 and HTTP/1.1 as OpenAI's API does.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use pki_types::pem::PemObject;
    let certs = pki_types::CertificateDer::pem_file_iter(cert_pem)
        .with_context(|| format!("cannot read {}", cert_pem.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = pki_types::PrivateKeyDer::from_pem_file(key_pem)
        .with_context(|| format!("cannot read {}", key_pem.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
