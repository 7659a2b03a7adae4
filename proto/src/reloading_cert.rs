//! A certificate that follows its files: the TLS servers of a process
//! (gRPC, HTTP API, metrics) answer each new connection with the
//! certificate and key last read from `--tls-cert` and `--tls-key`, and its
//! gRPC clients show them on each new connection, read again when either
//! file changes, so a renewed certificate is used without a restart.

use crate::tls::TlsError;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the files' modification times are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The certificate chain and key of `cert` and `key` (PEM files), as last
/// read; see [`ReloadingCert::watch`].
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times and sizes just before `load` read them.
    loaded: [Option<(SystemTime, u64)>; 2],
}

impl ReloadingCert {
    /// Reads both files (blocking reads, at start); an unreadable file, one
    /// that is not PEM, or a key that does not match the certificate is an
    /// error.
    pub fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        // Looked at before reading: a change in between is read again by
        // `watch` rather than missed.
        let loaded = [stamp_now(cert), stamp_now(key)];
        let current = read(cert, key, &provider)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
            loaded,
        })
    }

    /// Reads the files again whenever the modification time or size of
    /// either changes from what `load` saw (looked at every second),
    /// forever; one such task per certificate is enough. Files that cannot
    /// be used, such as a certificate whose new key is not written yet, are
    /// logged and the certificate in force stays until they can.
    pub async fn watch(self: Arc<Self>) {
        let mut seen = self.loaded;
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let now = self.stamp().await;
            if now == seen {
                continue;
            }
            seen = now;
            let this = self.clone();
            let loaded =
                tokio::task::spawn_blocking(move || read(&this.cert, &this.key, &this.provider))
                    .await;
            match loaded {
                Ok(Ok(certified)) => {
                    let certified = Arc::new(certified);
                    match self.current.write() {
                        Ok(mut c) => *c = certified,
                        Err(poisoned) => *poisoned.into_inner() = certified,
                    }
                    tracing::info!(cert = %self.cert.display(), "TLS certificate read again");
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "TLS certificate not applied; the one in force stays")
                }
                Err(error) => tracing::error!(%error, "reading the TLS certificate failed"),
            }
        }
    }

    /// Both files' modification times and sizes, `None` for one that
    /// cannot be read.
    async fn stamp(&self) -> [Option<(SystemTime, u64)>; 2] {
        [stamp(&self.cert).await, stamp(&self.key).await]
    }

    /// The certificate and key as last read.
    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A client shows the certificate whatever CAs the server names: members
/// have one certificate, of the cluster's CA.
impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// [`stamp`] with a blocking call, for `load`.
fn stamp_now(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

async fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The chain of `cert` and the key of `key`, checked to belong together.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    fn pem(
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { what, path, source }
    }
    let chain = CertificateDer::pem_slice_iter(&crate::tls::read_pem("certificate", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("certificates", cert))?;
    let private_key = PrivateKeyDer::from_pem_slice(&crate::tls::read_pem("key", key)?)
        .map_err(pem("private key", key))?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|source| TlsError::Https {
        cert: cert.to_path_buf(),
        source,
    })
}
