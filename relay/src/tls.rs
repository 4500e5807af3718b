//! TLS material: certificate files for production, a generated certificate for
//! development.
//!
//! The development certificate is self-signed ECDSA P-256, valid for 13 days
//! (browsers accept at most 14 days through `serverCertificateHashes`). It is
//! written to the data directory as `dev-cert.pem` / `dev-key.pem` with its
//! SHA-256 in `dev-cert.sha256`, and reused across restarts while it has more
//! than 2 days left.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A server certificate ready to serve.
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// SHA-256 of the leaf certificate (DER).
    pub leaf_sha256: [u8; 32],
    /// Where the leaf certificate PEM is, if on disk.
    pub cert_path: Option<PathBuf>,
    /// Whether this is a generated development certificate.
    pub dev: bool,
}

impl TlsMaterial {
    /// Builds a rustls server config (TLS 1.3 and 1.2, ALPN `http/1.1`).
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("certificate and key do not match")?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// Hex of the leaf's SHA-256.
    pub fn leaf_sha256_hex(&self) -> String {
        hex::encode(self.leaf_sha256)
    }
}

/// Loads PEM files.
pub fn load_pem(cert: &Path, key: &Path) -> anyhow::Result<TlsMaterial> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key_der = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading private key from {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let leaf_sha256 = Sha256::digest(chain[0].as_ref()).into();
    Ok(TlsMaterial {
        chain,
        key: Arc::new(key_der),
        leaf_sha256,
        cert_path: Some(cert.to_owned()),
        dev: false,
    })
}

const DEV_VALIDITY_DAYS: i64 = 13;
const DEV_RENEW_BEFORE_DAYS: i64 = 2;

/// Loads the development certificate from `dir`, generating a new one if it is
/// missing or expires within two days.
pub fn dev_certificate(dir: &Path, names: &[String]) -> anyhow::Result<TlsMaterial> {
    let cert_path = dir.join("dev-cert.pem");
    let key_path = dir.join("dev-key.pem");
    let expiry_path = dir.join("dev-cert.expires");
    let now = time::OffsetDateTime::now_utc();
    let fresh_enough = std::fs::read_to_string(&expiry_path)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .is_some_and(|exp| exp > (now + time::Duration::days(DEV_RENEW_BEFORE_DAYS)).unix_timestamp());
    if fresh_enough
        && cert_path.exists()
        && key_path.exists()
        && let Ok(mut m) = load_pem(&cert_path, &key_path)
    {
        m.dev = true;
        write_hash(dir, &m)?;
        return Ok(m);
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating P-256 key")?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).context("certificate names")?;
    params.not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(DEV_VALIDITY_DAYS);
    params.not_after = not_after;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hush-relay development certificate");
    let cert = params.self_signed(&key).context("self-signing certificate")?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    std::fs::write(&expiry_path, not_after.unix_timestamp().to_string())?;
    let der = cert.der().clone();
    let m = TlsMaterial {
        leaf_sha256: Sha256::digest(der.as_ref()).into(),
        chain: vec![der],
        key: Arc::new(PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("{e}"))?),
        cert_path: Some(cert_path),
        dev: true,
    };
    write_hash(dir, &m)?;
    Ok(m)
}

fn write_hash(dir: &Path, m: &TlsMaterial) -> anyhow::Result<()> {
    std::fs::write(dir.join("dev-cert.sha256"), format!("{}\n", m.leaf_sha256_hex()))
        .context("writing certificate hash")
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_reused_until_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_certificate(dir.path(), &["localhost".into()]).unwrap();
        let b = dev_certificate(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(a.leaf_sha256, b.leaf_sha256);
        assert!(a.server_config().is_ok());
        // Pretend it expires tomorrow: a new one is made.
        let soon = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        std::fs::write(dir.path().join("dev-cert.expires"), soon.unix_timestamp().to_string()).unwrap();
        let c = dev_certificate(dir.path(), &["localhost".into()]).unwrap();
        assert_ne!(a.leaf_sha256, c.leaf_sha256);
        let published = std::fs::read_to_string(dir.path().join("dev-cert.sha256")).unwrap();
        assert_eq!(published.trim(), c.leaf_sha256_hex());
    }
}
