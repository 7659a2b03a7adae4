//! TLS of Sluice's gRPC connections. Every process of a cluster is given the
//! cluster's CA certificate and, to serve or to prove it is a member, its own
//! certificate and key, all PEM files. Clients verify servers with the CA;
//! members (coordinators and workers) also show their certificate, which the
//! server verifies with the same CA. Servers and clients both use the
//! certificate and key last read from their files (see [`ReloadingCert`]).

use crate::dialer::{Dialer, TlsDial};
use crate::reloading_cert::ReloadingCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::codegen::http;
use tonic::transport::Endpoint;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a PEM file")]
    NotPem(PathBuf),
    #[error("--tls-cert and --tls-key go together: {0} is missing")]
    Half(&'static str),
    #[error("cannot read the {what} in {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot serve HTTPS with {cert} and its key: {source}")]
    Https {
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the CA certificate cannot verify clients: {0}")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    #[error("cannot verify servers with the CA certificate {ca}: {source}")]
    Ca {
        ca: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("`{address}` is not a valid address: {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("`{name}` is not a valid server name: {source}")]
    ServerName {
        name: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// The TLS material of one process: the CA that signs the cluster's
/// certificates, and this process's certificate and key when it has them.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA certificate file and its PEM text.
    ca: (PathBuf, Vec<u8>),
    /// This process's certificate and key files.
    identity_files: Option<(PathBuf, PathBuf)>,
    /// The configuration of every client connection, showing `cert`.
    client: Arc<rustls::ClientConfig>,
    /// This process's certificate and key as its servers and clients
    /// show them, read from `identity_files`.
    cert: Option<Arc<ReloadingCert>>,
    /// Whether `cert` follows its files yet: one task, started by the
    /// first server or connection (within a Tokio runtime), for all clones.
    cert_watched: Arc<AtomicBool>,
}

pub(crate) fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem(path.to_path_buf()));
    }
    Ok(bytes)
}

impl Tls {
    /// Reads the PEM files (blocking reads, at start): `ca` the CA
    /// certificate, `cert` and `key` this process's own, both or neither.
    pub fn load(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, TlsError> {
        let ca = (ca.to_path_buf(), read_pem("CA certificate", ca)?);
        let identity_files = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert.to_path_buf(), key.to_path_buf())),
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::Half("--tls-key")),
            (None, Some(_)) => return Err(TlsError::Half("--tls-cert")),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = identity_files
            .as_ref()
            .map(|(cert, key)| ReloadingCert::load(cert, key, provider.clone()).map(Arc::new))
            .transpose()?;
        let ca_error = |source| TlsError::Ca {
            ca: ca.0.clone(),
            source,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ca_error)?
            .with_root_certificates(roots(&ca)?);
        let mut client = match &cert {
            Some(cert) => builder.with_client_cert_resolver(cert.clone()),
            None => builder.with_no_client_auth(),
        };
        client.alpn_protocols = vec![b"h2".to_vec()];
        // A resumed TLS session carries the certificate of the connection
        // that made it: every new connection shows the one in force instead.
        // Connections are long-lived, so full handshakes cost little.
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            ca,
            identity_files,
            client: Arc::new(client),
            cert,
            cert_watched: Arc::new(AtomicBool::new(false)),
        })
    }

    /// [`Tls::load`] from optional flags: `None` when no CA is given (TLS
    /// off); a certificate or key without a CA is an error.
    pub fn from_flags(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Self>, TlsError> {
        match ca {
            Some(ca) => Self::load(ca, cert, key).map(Some),
            None if cert.is_some() || key.is_some() => Err(TlsError::Half("--tls-ca")),
            None => Ok(None),
        }
    }

    /// Whether this process has its own certificate to serve and to show.
    pub fn has_identity(&self) -> bool {
        self.identity_files.is_some()
    }

    /// The configuration of an HTTPS server (the HTTP API, metrics) with
    /// this process's certificate and key as [`Tls::load`] read them, and
    /// again whenever their files change (call it within a Tokio runtime,
    /// whose task looks at them); `None` without them. Clients show no
    /// certificate: HTTP callers authenticate with tokens.
    pub fn https_server(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        self.rustls_server(None, b"http/1.1")
    }

    /// A gRPC server's configuration. With `members_only`, a client must
    /// show a certificate the CA signed or the handshake fails; otherwise a
    /// client may show none (then [`member_certificate`] tells the calls
    /// apart), but one it shows must verify. The certificate and key follow
    /// their files as [`Tls::https_server`]'s do; for a gRPC server
    /// over `sluice_common::https::accept_tls` connections (tonic then
    /// hands [`member_certificate`] the client's certificate).
    pub fn grpc_server(
        &self,
        members_only: bool,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        self.rustls_server(Some(members_only), b"h2")
    }

    /// A server configuration with the reloading certificate, speaking
    /// `protocol`; with `client_auth`, clients' certificates are verified
    /// with the CA, and required when it is `Some(true)`.
    fn rustls_server(
        &self,
        client_auth: Option<bool>,
        protocol: &[u8],
    ) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let (Some((cert, _)), Some(resolver)) = (&self.identity_files, &self.cert) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = |source| TlsError::Https {
            cert: cert.clone(),
            source,
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(https)?;
        let builder = match client_auth {
            None => builder.with_no_client_auth(),
            Some(members_only) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(&self.ca)?),
                    provider,
                );
                let verifier = if members_only {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder
                    .with_client_cert_verifier(verifier.build().map_err(TlsError::ClientVerifier)?)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![protocol.to_vec()];
        self.watch_cert();
        Ok(Some(Arc::new(config)))
    }

    /// Starts the task that reads this process's certificate and key again
    /// when their files change, unless one runs or there is no runtime.
    fn watch_cert(&self) {
        if let Some(cert) = &self.cert
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.cert_watched.swap(true, Ordering::AcqRel)
        {
            runtime.spawn(cert.clone().watch());
        }
    }

    /// What a client's connections are made with: servers verified with
    /// the CA as `server_name`, else as the host they are reached at, and
    /// this process's certificate shown when it has one, as last read from
    /// its files (looked at every second from the first call on, within a
    /// Tokio runtime).
    fn dial(&self, server_name: Option<&str>) -> Result<TlsDial, TlsError> {
        self.watch_cert();
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string()).map_err(|source| TlsError::ServerName {
                    name: name.to_string(),
                    source,
                })
            })
            .transpose()?;
        Ok(TlsDial::new(self.client.clone(), server_name))
    }
}

/// The certificates of the CA file `ca` (its path and PEM text), as trust
/// roots.
fn roots((path, pem): &(PathBuf, Vec<u8>)) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pem) {
        let ca = ca.map_err(|source| TlsError::Pem {
            what: "CA certificate",
            path: path.clone(),
            source,
        })?;
        roots.add(ca).map_err(|source| TlsError::Ca {
            ca: path.clone(),
            source,
        })?;
    }
    Ok(roots)
}

/// Where a client connects to `address` (`host:port` or a URL): over
/// TLS with `tls` (see [`Dialer`]), else plain `http`.
pub fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Dialer, TlsError> {
    endpoint_named(address, tls, None)
}

/// [`endpoint`] whose server certificate is verified against `server_name`
/// instead of the address's host, when given: for servers at addresses no
/// certificate can name in advance, such as pod IPs.
pub fn endpoint_named(
    address: &str,
    tls: Option<&Tls>,
    server_name: Option<&str>,
) -> Result<Dialer, TlsError> {
    let url = sluice_common::http_url(address);
    // With TLS the connections are made by the dialer, so tonic is given
    // the address as plain `http`: its own TLS would wrap them again.
    let url = match (tls, url.strip_prefix("https://")) {
        (Some(_), Some(rest)) => format!("http://{rest}"),
        _ => url,
    };
    let endpoint = Endpoint::from_shared(url).map_err(|source| TlsError::Address {
        address: address.to_string(),
        source,
    })?;
    let dial = tls.map(|tls| tls.dial(server_name)).transpose()?;
    Ok(Dialer::new(endpoint, dial))
}

/// Whether the connection `request` came on showed a certificate that the
/// CA signed (the TLS handshake verified any certificate shown).
pub fn member_certificate<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs: Arc<Vec<_>>| !certs.is_empty())
}
