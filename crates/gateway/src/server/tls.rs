//! HTTPS with rustls: the certificate chain and key from `tls_cert` / `tls_key` (PEM), read
//! again on SIGHUP so a renewed certificate (certbot, ACME) takes effect without a restart.
//!
//! Invariants:
//! - the listener and open connections are untouched by a reload; each new handshake gets the
//!   newest certificate that loaded;
//! - a reload that fails (missing file, a key that does not match the certificate) keeps the
//!   certificate in use and logs why; only at start is a bad certificate fatal;
//! - the gateway speaks HTTP/1.1 (ALPN `http/1.1`) and TLS 1.2 or 1.3 with rustls' safe
//!   defaults, ring as the provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Accepts TLS connections with the current certificate.
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<CurrentCertificate>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("certificate", &self.certificate)
            .finish()
    }
}

impl TlsAcceptor {
    /// Loads the certificate and key; an error says which file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
        let certificate = Arc::new(CurrentCertificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(load_certified_key(cert, key)?),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS: the ring provider supports no safe protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let loaded = load_certified_key(&self.certificate.cert, &self.certificate.key)?;
        *self
            .certificate
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    pub fn accept<IO>(&self, io: IO) -> tokio_rustls::Accept<IO>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io)
    }
}

/// The certificate new handshakes get.
struct CurrentCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCertificate")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "tls_cert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| {
        anyhow::anyhow!(
            "tls_key {}: {e} (use an RSA, ECDSA P-256/P-384 or Ed25519 key)",
            key.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "tls_key {} does not belong to the certificate in {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_wrong_files_are_named() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let error = TlsAcceptor::load(&cert, &key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("tls_cert"), "{error}");
        assert!(std::fs::write(&cert, "not a certificate").is_ok());
        let error = TlsAcceptor::load(&cert, &key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("no PEM certificate"), "{error}");
    }
}
