//! Throwaway TLS material for local clusters (`devstack up --tls`, the TLS
//! tests): a fresh CA and one member certificate it signed, for `localhost`
//! and `127.0.0.1`, good for serving and for showing as a client.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// PEM files of a cluster's TLS, as the `--tls-ca`, `--tls-cert` and
/// `--tls-key` flags take them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The member certificate (`member.pem`), signed by the CA.
    pub cert: PathBuf,
    /// The member certificate's private key (`member-key.pem`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The `--tls-ca`, `--tls-cert`, `--tls-key` arguments of a process.
    pub fn args(&self) -> Vec<String> {
        [
            ("--tls-ca", &self.ca),
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
        .collect()
    }

    /// Loaded for an in-process client.
    pub fn load(&self) -> anyhow::Result<sluice_proto::tls::Tls> {
        Ok(sluice_proto::tls::Tls::load(
            &self.ca,
            Some(&self.cert),
            Some(&self.key),
        )?)
    }

    /// The CA alone, for an in-process client that shows no certificate.
    pub fn load_ca(&self) -> anyhow::Result<sluice_proto::tls::Tls> {
        Ok(sluice_proto::tls::Tls::load(&self.ca, None, None)?)
    }
}

/// A throwaway CA that signs member certificates; its key lives in memory
/// only.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    /// Makes a CA named `name`, its certificate written to `dir/ca.pem`
    /// (`dir` created if needed).
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem())?;
        Ok(Self {
            issuer,
            ca,
            dir: dir.to_path_buf(),
        })
    }

    /// A member certificate naming `names` (host names or IP addresses),
    /// for serving and for showing as a client, written to `dir/STEM.pem`
    /// and `dir/STEM-key.pem`.
    pub fn member(&self, stem: &str, names: &[&str]) -> anyhow::Result<TlsFiles> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = TlsFiles {
            ca: self.ca.clone(),
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// What test clusters run with when `SLUICE_TEST_TLS=1`: TLS on every
/// process and authentication on, the harness's clients and `jobctl` given
/// the CA and the operator token.
#[derive(Debug, Clone)]
pub struct TestSecurity {
    /// A throwaway CA's certificate and a member certificate for
    /// `localhost` and `127.0.0.1`, every process's.
    pub tls: TlsFiles,
    /// The one token of the coordinators' tokens file, an operator's.
    pub token: String,
}

impl TestSecurity {
    /// The coordinators' tokens file (`ROLE TOKEN` lines).
    pub fn tokens_file(&self) -> String {
        format!("operator {}\n", self.token)
    }
}

static TEST_SECURITY: OnceLock<Result<Option<TestSecurity>, String>> = OnceLock::new();

/// With `SLUICE_TEST_TLS=1`, the [`TestSecurity`] of this test binary (made
/// on first use, its files under the temporary directory); `None` without.
/// `SluiceCluster::start` applies it to clusters whose options turn on
/// neither TLS nor authentication themselves, and `testing::jobctl` gives
/// `jobctl` its CA and token.
pub fn test_security() -> anyhow::Result<Option<&'static TestSecurity>> {
    TEST_SECURITY
        .get_or_init(|| {
            if std::env::var("SLUICE_TEST_TLS").as_deref() != Ok("1") {
                return Ok(None);
            }
            let dir = std::env::temp_dir()
                .join("sluice-tests")
                .join(crate::testing::unique("test-tls"));
            let make = || -> anyhow::Result<TestSecurity> {
                Ok(TestSecurity {
                    tls: make_ca(&dir, "Sluice test CA")?,
                    token: crate::testing::unique("op"),
                })
            };
            make().map(Some).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map(Option::as_ref)
        .map_err(|e| anyhow::anyhow!("SLUICE_TEST_TLS=1: cannot make the test CA: {e}"))
}

/// Makes a new CA named `name` under `dir` and a member certificate for
/// `localhost` and `127.0.0.1` (`member.pem`, `member-key.pem`).
pub fn make_ca(dir: &Path, name: &str) -> anyhow::Result<TlsFiles> {
    TestCa::new(dir, name)?.member("member", &["localhost", "127.0.0.1"])
}

/// The first certificate of the PEM file `path`, as DER.
pub fn certificate_der(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path)
        .with_context(|| format!("no certificate in {}", path.display()))
}

/// The certificate the TLS server at `address` (`host:port`) shows a new
/// connection, verified with the CA certificate file `ca` against
/// `server_name`, as DER.
pub async fn served_certificate(
    address: &str,
    ca: &Path,
    server_name: &str,
) -> anyhow::Result<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate_der(ca)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(server_name.to_string())?, tcp)
        .await?;
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
        .context("the server showed no certificate")
}

/// A TLS server on `127.0.0.1` that shows `server`'s certificate and takes
/// only clients showing one its CA signed, for which certificate a client
/// shows on new connections: each client's certificate (DER) is sent on as
/// its handshake completes, and the connection dropped 200 ms later. Returns the
/// server's `host:port`; it serves until the receiver is dropped.
pub async fn client_certificates(
    server: &TlsFiles,
) -> anyhow::Result<(String, mpsc::UnboundedReceiver<CertificateDer<'static>>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate_der(&server.ca)?)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain = CertificateDer::pem_file_iter(&server.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&server.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let (tx, shown) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await
                    && let Some(cert) = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                {
                    let _ = tx.send(cert.clone().into_owned());
                    // Open a moment longer, so the client takes the session
                    // tickets sent after the handshake: one that resumed a
                    // session on its next connection would show the old
                    // certificate again.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    drop(stream);
                }
            });
        }
    });
    Ok((address, shown))
}
