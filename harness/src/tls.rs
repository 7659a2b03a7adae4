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

/// Makes a new CA named `name` and a member certificate under `dir` (created
/// if needed); the CA's key is not kept.
pub fn make_ca(dir: &Path, name: &str) -> anyhow::Result<TlsFiles> {
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut member = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    member
        .distinguished_name
        .push(DnType::CommonName, format!("{name} member"));
    member.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    member.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = member.signed_by(&key, &ca)?;

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("member.pem"),
        key: dir.join("member-key.pem"),
    };
    std::fs::write(&files.ca, ca.pem())?;
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}
