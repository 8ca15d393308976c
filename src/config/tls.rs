//! TLS on a listener (issue 22 items 1 and 2): the files a listener's
//! certificate, key and (for mutual TLS) client CA bundle are read from,
//! and the rustls server configuration built from them.
//!
//! The paths are configuration (`listen.router_tls`, `listen.admin_tls`:
//! restart-only, like the addresses); the files' contents are read when
//! the configuration is loaded (so `check-config` and start fail on a bad
//! file, naming it and its key, before anything binds) and again on every
//! SIGHUP by the listener (`router::tls`), which swaps the new server
//! configuration in for new connections and keeps the old one if the new
//! files do not load.
//!
//! Defaults are rustls's with the ring provider: TLS 1.2 and 1.3, its
//! safe cipher suites, no session tickets beyond rustls's defaults. ALPN
//! offers `http/1.1` only (the servers speak HTTP/1.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// A listener's TLS files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    /// PEM certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: PathBuf,
    /// PEM bundle of the CAs a client certificate must chain to: when
    /// set, every client must present one (mutual TLS, issue 22 item 2).
    pub client_ca: Option<PathBuf>,
}

/// Why a listener's TLS files do not make a server configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TlsFileError {
    /// Which of [`TlsFiles`]' keys: `cert`, `key` or `client_ca`.
    pub which: &'static str,
    pub path: PathBuf,
    pub message: String,
}

impl TlsFiles {
    /// Read the files and build the server configuration they describe.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsFileError> {
        let certs = read_certs("cert", &self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsFileError {
            which: "key",
            path: self.key.clone(),
            message: pem_message(e, "private key"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError {
                which: "cert",
                path: self.cert.clone(),
                message: e.to_string(),
            })?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs("client_ca", ca)? {
                    roots.add(c).map_err(|e| TlsFileError {
                        which: "client_ca",
                        path: ca.clone(),
                        message: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsFileError {
                    which: "client_ca",
                    path: ca.clone(),
                    message: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsFileError {
                which: "key",
                path: self.key.clone(),
                message: format!(
                    "does not go with the certificate in {}: {e}",
                    self.cert.display()
                ),
            })?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// Every certificate in the PEM file `path` (at least one).
fn read_certs(
    which: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let fail = |message: String| TlsFileError {
        which,
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_message(e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_message(e, "certificate")))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn pem_message(e: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read: {e}"),
        Error::NoItemsFound => format!("holds no PEM {what}"),
        other => format!("not a PEM {what}: {other:?}"),
    }
}
