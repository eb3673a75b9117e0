//! TLS for the public listener: a certificate store whose key pair can be swapped while
//! serving, loading from PEM, and a watcher that reloads changed files.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
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
///
/// Session resumption is by stateless tickets under this replica's own ticket keys (AEAD,
/// rotated by rustls every 6 hours, the previous key still accepted): a resumed handshake
/// skips the certificate signature and chain, and no session state is kept or locked per
/// connection. (Measured with `make bench`: with the default hybrid key exchange, which a
/// resumption repeats, a resumed handshake costs about what a full one does.) The keys are deliberately not shared between replicas: a
/// shared key would be one more long-lived secret in the cluster whose theft exposes the
/// resumption secrets of every replica's tickets, and it would buy little here, since gateways
/// hold their connections open (keep-alive) and a Service spreads new ones over replicas, so a
/// client resumes on the replica that issued its ticket often enough. TLS 1.3 resumption keeps
/// forward secrecy: rustls resumes with (EC)DHE (psk_dhe_ke).
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, ServerError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The largest certificate chain or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_pem(p: &Path) -> Result<Vec<u8>, ServerError> {
    let io = |source| ServerError::Io {
        what: p.display().to_string(),
        source,
    };
    crate::file_read::read_bounded(p, MAX_PEM_BYTES)
        .map_err(io)?
        .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))
}

/// What identifies the files' version: a digest of their content (also across the symlink
/// swaps of mounted Kubernetes Secrets, which reads follow); `None` when unreadable.
fn fingerprint(cert: &Path, key: &Path) -> Option<[u8; 32]> {
    let c = read_pem(cert).ok()?;
    let k = read_pem(key).ok()?;
    Some(crate::file_read::digest(&[&c, &k]))
}

/// Load a certificate and key from files; an error names the file at fault.
pub fn load_files(cert: &Path, key: &Path) -> Result<CertifiedKey, ServerError> {
    let (cert_pem, key_pem) = (read_pem(cert)?, read_pem(key)?);
    certified_key_from_pem(&cert_pem, &key_pem).map_err(|e| match e {
        ServerError::Tls(m) if m.starts_with("key PEM") => {
            ServerError::Tls(format!("{}: {m}", key.display()))
        }
        ServerError::Tls(m) if m.starts_with("certificate and key") => {
            ServerError::Tls(format!("{} and {}: {m}", cert.display(), key.display()))
        }
        ServerError::Tls(m) => ServerError::Tls(format!("{}: {m}", cert.display())),
        other => other,
    })
}

/// `f` on a blocking thread, so a slow file system never stalls the request workers.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// A certificate chain file and its key file.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reload the store whenever the files change, until `shutdown` fires. A bad pair is logged
/// and the previous certificate keeps serving.
pub async fn watch_files(
    store: Arc<CertStore>,
    files: TlsFiles,
    every: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let TlsFiles { cert, key } = files;
    let (c, k) = (cert.clone(), key.clone());
    let mut seen = off_runtime(move || fingerprint(&c, &k)).await.flatten();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (c, k) = (cert.clone(), key.clone());
        let now = off_runtime(move || fingerprint(&c, &k)).await.flatten();
        if now == seen {
            continue;
        }
        seen = now;
        let (c, k) = (cert.clone(), key.clone());
        let Some(loaded) = off_runtime(move || load_files(&c, &k)).await else {
            continue;
        };
        match loaded {
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
