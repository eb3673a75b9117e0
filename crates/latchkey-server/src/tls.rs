//! TLS for the public listener: a certificate store whose key pair can be swapped while
//! serving, loading from PEM, and a watcher that reloads changed files.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{Metrics, ServerError};

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Parse a PEM certificate chain and private key, checking that they belong together.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, ServerError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(ServerError::Tls(
            "no certificate in the certificate PEM".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| ServerError::Tls(format!("key PEM: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| ServerError::Tls(format!("certificate and key: {e}")))
}

/// The serving certificate of this moment; swapped whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: ArcSwap::from_pointee(key),
        })
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server configuration over the store, offering HTTP/2 and HTTP/1.1.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, ServerError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What identifies a file's version: modification time and length (also across the symlink
/// swaps of mounted Kubernetes Secrets, which `metadata` follows).
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Load a certificate and key from files.
pub fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, ServerError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ServerError::Io {
            what: p.display().to_string(),
            source,
        })
    };
    certified_key_from_pem(&read(cert)?, &read(key)?)
}

/// Reload the store whenever the files change, until `shutdown` fires. A bad pair is logged
/// and the previous certificate keeps serving.
pub async fn watch_files(
    store: Arc<CertStore>,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = (fingerprint(&cert), fingerprint(&key));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = (fingerprint(&cert), fingerprint(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match load_files(&cert, &key) {
            Ok(k) => {
                store.replace(k);
                metrics.observe_reload("tls", true);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                metrics.observe_reload("tls", false);
                tracing::warn!(cert = %cert.display(), error = %e, "TLS certificate not reloaded; the previous one keeps serving");
            }
        }
    }
}
