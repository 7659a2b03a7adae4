//! Throwaway TLS material for local clusters (`devstack up --tls`, the TLS
//! tests): a fresh CA and one member certificate it signed, for `localhost`
//! and `127.0.0.1`, good for serving and for showing as a client.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

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

/// Makes a new CA named `name` under `dir` and a member certificate for
/// `localhost` and `127.0.0.1` (`member.pem`, `member-key.pem`).
pub fn make_ca(dir: &Path, name: &str) -> anyhow::Result<TlsFiles> {
    TestCa::new(dir, name)?.member("member", &["localhost", "127.0.0.1"])
}
