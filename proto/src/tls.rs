//! TLS of Sluice's gRPC connections. Every process of a cluster is given the
//! cluster's CA certificate and, to serve or to prove it is a member, its own
//! certificate and key, all PEM files. Clients verify servers with the CA;
//! members (coordinators and workers) also show their certificate, which the
//! server verifies with the same CA.

use crate::reloading_cert::ReloadingCert;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

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
    #[error("`{address}` is not a valid address: {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The TLS material of one process: the CA that signs the cluster's
/// certificates, and this process's certificate and key when it has them.
#[derive(Clone, Debug)]
pub struct Tls {
    ca: Certificate,
    identity: Option<Identity>,
    /// The certificate and key files behind `identity`, for HTTPS.
    identity_files: Option<(PathBuf, PathBuf)>,
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
        let ca = Certificate::from_pem(read_pem("CA certificate", ca)?);
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read_pem("certificate", cert)?,
                read_pem("key", key)?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::Half("--tls-key")),
            (None, Some(_)) => return Err(TlsError::Half("--tls-cert")),
        };
        let identity_files = cert
            .zip(key)
            .map(|(c, k)| (c.to_path_buf(), k.to_path_buf()));
        Ok(Self {
            ca,
            identity,
            identity_files,
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
        self.identity.is_some()
    }

    /// The configuration of an HTTPS server (the HTTP API, metrics) with
    /// this process's certificate and key, read at once (blocking reads)
    /// and again whenever their files change, by a task this spawns (call
    /// it within a Tokio runtime); `None` without them. Clients show no
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
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let Some((cert, key)) = &self.identity_files else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(ReloadingCert::load(cert, key, provider.clone())?);
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
                let mut roots = rustls::RootCertStore::empty();
                for ca in CertificateDer::pem_slice_iter(self.ca.get_ref()) {
                    let ca = ca.map_err(|source| TlsError::Pem {
                        what: "CA certificate",
                        path: PathBuf::from("--tls-ca"),
                        source,
                    })?;
                    roots.add(ca).map_err(https)?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
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
        tokio::spawn(resolver.watch());
        Ok(Some(Arc::new(config)))
    }

    /// A client's configuration: servers verified with the CA, and this
    /// process's certificate shown when it has one.
    pub fn client(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
    }
}

/// An endpoint for `address` (`host:port` or a URL): `https` with `tls`'s
/// client configuration, else plain `http`.
pub fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Endpoint, TlsError> {
    endpoint_named(address, tls, None)
}

/// [`endpoint`] whose server certificate is verified against `server_name`
/// instead of the address's host, when given: for servers at addresses no
/// certificate can name in advance, such as pod IPs.
pub fn endpoint_named(
    address: &str,
    tls: Option<&Tls>,
    server_name: Option<&str>,
) -> Result<Endpoint, TlsError> {
    let url = sluice_common::http_url(address);
    let invalid = |source| TlsError::Address {
        address: address.to_string(),
        source,
    };
    match tls {
        None => Endpoint::from_shared(url).map_err(invalid),
        Some(tls) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url,
            };
            let config = match server_name {
                Some(name) => tls.client().domain_name(name),
                None => tls.client(),
            };
            Endpoint::from_shared(url)
                .and_then(|e| e.tls_config(config))
                .map_err(invalid)
        }
    }
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
