//! TLS material: certificate files for production, generated certificates for
//! development, and the [`CertStore`] that serves whichever is current to both
//! transports.
//!
//! One [`CertStore`] is the certificate resolver of both the WSS acceptor and the
//! QUIC endpoint, so replacing its certificate (SIGHUP reload of PEM files,
//! development rotation) changes what new handshakes see on both, while
//! connections already open are untouched.
//!
//! Development certificates ([`DevCerts`]) are self-signed ECDSA P-256, valid for
//! 13 days by default (browsers accept at most 14 days through
//! `serverCertificateHashes`), kept in the data directory as `dev-cert.pem` /
//! `dev-key.pem` with the SHA-256 in `dev-cert.sha256`. Rotation has two steps
//! so that pages can pin the next certificate before it is served:
//!
//! 1. when the serving certificate has less than `renew_before` left, a successor
//!    is generated (`dev-next-cert.pem`) and its hash published beside the
//!    current one;
//! 2. when less than half of `renew_before` is left, the successor becomes the
//!    served certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

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
    /// End of validity (Unix seconds), known for development certificates.
    pub not_after: Option<i64>,
}

impl TlsMaterial {
    /// Builds a rustls server config serving only this certificate (TLS 1.3 and
    /// 1.2, ALPN `http/1.1`).
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let store = CertStore::new(self)?;
        store.tcp_config()
    }

    /// Hex of the leaf's SHA-256.
    pub fn leaf_sha256_hex(&self) -> String {
        hex::encode(self.leaf_sha256)
    }

    fn certified_key(&self) -> anyhow::Result<Arc<CertifiedKey>> {
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider)
            .context("certificate and key do not match")?;
        Ok(Arc::new(key))
    }
}

/// A certificate hash a client may pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedHash {
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
    /// End of validity, Unix seconds (0 if unknown).
    pub not_after: i64,
    /// Whether the relay serves this certificate now (the other one is next).
    pub serving: bool,
}

/// The certificate both transports serve, replaceable at run time.
#[derive(Debug)]
pub struct CertStore {
    key: RwLock<Arc<CertifiedKey>>,
    material: RwLock<TlsMaterial>,
    published: RwLock<Vec<PublishedHash>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl CertStore {
    /// A store serving `material`.
    pub fn new(material: &TlsMaterial) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(CertStore {
            key: RwLock::new(material.certified_key()?),
            published: RwLock::new(vec![PublishedHash {
                sha256: material.leaf_sha256,
                not_after: material.not_after.unwrap_or(0),
                serving: true,
            }]),
            material: RwLock::new(material.clone()),
        }))
    }

    /// Serves `material` to new handshakes from now on and publishes `published`
    /// (the hashes pages may pin). Open connections are not affected.
    pub fn replace(&self, material: TlsMaterial, published: Vec<PublishedHash>) -> anyhow::Result<()> {
        let key = material.certified_key()?;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = key;
        *self.material.write().unwrap_or_else(|p| p.into_inner()) = material;
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = published;
        Ok(())
    }

    /// The certificate served now.
    pub fn current(&self) -> TlsMaterial {
        read(&self.material)
    }

    /// Hashes a client may pin: the served certificate first, then its
    /// successor if one is already published.
    pub fn published(&self) -> Vec<PublishedHash> {
        read(&self.published)
    }

    /// The `/cert-hash` document: JSON with the served certificate's hash and
    /// every hash currently worth pinning, in hex and base64.
    pub fn published_json(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let current = self.current();
        let hashes: Vec<serde_json::Value> = self
            .published()
            .iter()
            .map(|h| {
                serde_json::json!({
                    "hex": hex::encode(h.sha256),
                    "base64": b64.encode(h.sha256),
                    "not_after": h.not_after,
                    "serving": h.serving,
                })
            })
            .collect();
        serde_json::json!({
            "algorithm": "sha-256",
            "dev": current.dev,
            "hex": current.leaf_sha256_hex(),
            "base64": b64.encode(current.leaf_sha256),
            "hashes": hashes,
        })
        .to_string()
    }

    /// rustls configuration for WebSocket over TLS (TLS 1.3 and 1.2, ALPN
    /// `http/1.1`), resolving the certificate through this store.
    pub fn tcp_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// rustls configuration for QUIC (TLS 1.3 only, ALPN `h3`), resolving the
    /// certificate through this store.
    pub fn quic_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h3".to_vec()];
        // 0-RTT data can be replayed; the protocol's first frames are not idempotent.
        cfg.max_early_data_size = 0;
        Ok(cfg)
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
        not_after: None,
    })
}

/// Development certificates in a data directory, with rotation.
#[derive(Clone, Debug)]
pub struct DevCerts {
    /// The data directory.
    pub dir: PathBuf,
    /// Subject alternative names.
    pub names: Vec<String>,
    /// Validity of each certificate (at most 14 days).
    pub validity: Duration,
    /// A successor is made when less than this is left.
    pub renew_before: Duration,
}

/// The development certificate served now and its successor, if made.
#[derive(Clone, Debug)]
pub struct DevState {
    /// Served now.
    pub serving: TlsMaterial,
    /// Published, served from the switch on.
    pub next: Option<TlsMaterial>,
}

impl DevState {
    /// The hashes to publish: serving first, then the successor.
    pub fn published(&self) -> Vec<PublishedHash> {
        let mut out = vec![published(&self.serving, true)];
        if let Some(n) = &self.next {
            out.push(published(n, false));
        }
        out
    }
}

fn published(m: &TlsMaterial, serving: bool) -> PublishedHash {
    PublishedHash {
        sha256: m.leaf_sha256,
        not_after: m.not_after.unwrap_or(0),
        serving,
    }
}

const SERVING: &str = "dev";
const NEXT: &str = "dev-next";

impl DevCerts {
    /// The serving certificate and its successor as found in the directory,
    /// made or switched as `now` requires.
    pub fn load(&self, now: OffsetDateTime) -> anyhow::Result<DevState> {
        let serving = self.read(SERVING).filter(|m| self.left(m, now) > self.renew_before / 2);
        let next = self.read(NEXT).filter(|m| self.left(m, now) > self.renew_before);
        let mut state = match (serving, next) {
            (Some(serving), next) => DevState { serving, next },
            (None, Some(next)) => {
                self.promote()?;
                DevState {
                    serving: self.read(SERVING).unwrap_or(next),
                    next: None,
                }
            }
            (None, None) => DevState {
                serving: self.generate(SERVING, now)?,
                next: None,
            },
        };
        self.rotate(&mut state, now)?;
        self.write_hashes(&state)?;
        Ok(state)
    }

    /// Advances rotation to `now`; returns whether the served certificate or
    /// the published hashes changed.
    pub fn rotate(&self, state: &mut DevState, now: OffsetDateTime) -> anyhow::Result<bool> {
        let left = self.left(&state.serving, now);
        let mut changed = false;
        if left <= self.renew_before / 2 {
            match state.next.take() {
                Some(next) if self.left(&next, now) > self.renew_before / 2 => {
                    self.promote()?;
                    state.serving = TlsMaterial {
                        cert_path: Some(self.dir.join(format!("{SERVING}-cert.pem"))),
                        ..next
                    };
                }
                _ => state.serving = self.generate(SERVING, now)?,
            }
            changed = true;
        }
        if state.next.is_none() && self.left(&state.serving, now) <= self.renew_before {
            state.next = Some(self.generate(NEXT, now)?);
            changed = true;
        }
        if changed {
            self.write_hashes(state)?;
        }
        Ok(changed)
    }

    fn left(&self, m: &TlsMaterial, now: OffsetDateTime) -> Duration {
        let secs = m.not_after.unwrap_or(0) - now.unix_timestamp();
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    fn paths(&self, which: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join(format!("{which}-cert.pem")),
            self.dir.join(format!("{which}-key.pem")),
            self.dir.join(format!("{which}-cert.expires")),
        )
    }

    fn read(&self, which: &str) -> Option<TlsMaterial> {
        let (cert, key, expires) = self.paths(which);
        let not_after = std::fs::read_to_string(expires).ok()?.trim().parse::<i64>().ok()?;
        let mut m = load_pem(&cert, &key).ok()?;
        m.dev = true;
        m.not_after = Some(not_after);
        Some(m)
    }

    /// Moves the successor's files over the serving ones.
    fn promote(&self) -> anyhow::Result<()> {
        let (c, k, e) = self.paths(NEXT);
        let (c2, k2, e2) = self.paths(SERVING);
        for (from, to) in [(k, k2), (c, c2), (e, e2)] {
            std::fs::rename(&from, &to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }

    fn generate(&self, which: &str, now: OffsetDateTime) -> anyhow::Result<TlsMaterial> {
        let (cert_path, key_path, expiry_path) = self.paths(which);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating P-256 key")?;
        let mut params = rcgen::CertificateParams::new(self.names.clone()).context("certificate names")?;
        // Browsers count the whole span from not_before: keep it within validity.
        params.not_before = now - time::Duration::minutes(5);
        let not_after = now + time::Duration::try_from(self.validity).context("validity")? - time::Duration::minutes(5);
        params.not_after = not_after;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hush-relay development certificate");
        let cert = params.self_signed(&key).context("self-signing certificate")?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
        std::fs::write(&expiry_path, not_after.unix_timestamp().to_string())?;
        let der = cert.der().clone();
        Ok(TlsMaterial {
            leaf_sha256: Sha256::digest(der.as_ref()).into(),
            chain: vec![der],
            key: Arc::new(PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("{e}"))?),
            cert_path: Some(cert_path),
            dev: true,
            not_after: Some(not_after.unix_timestamp()),
        })
    }

    /// `dev-cert.sha256`: the served certificate's hash (one line of hex);
    /// `dev-cert-hashes.txt`: every published hash, one per line, served first.
    fn write_hashes(&self, state: &DevState) -> anyhow::Result<()> {
        std::fs::write(
            self.dir.join("dev-cert.sha256"),
            format!("{}\n", state.serving.leaf_sha256_hex()),
        )
        .context("writing certificate hash")?;
        let all: String = state
            .published()
            .iter()
            .map(|h| format!("{}\n", hex::encode(h.sha256)))
            .collect();
        std::fs::write(self.dir.join("dev-cert-hashes.txt"), all).context("writing certificate hashes")
    }
}

/// Loads the development certificate from `dir` (13 days, renewed 2 days
/// before expiry), generating one if needed.
#[cfg(test)]
pub fn dev_certificate(dir: &Path, names: &[String]) -> anyhow::Result<TlsMaterial> {
    let certs = DevCerts {
        dir: dir.to_owned(),
        names: names.to_vec(),
        validity: Duration::from_secs(13 * 24 * 3600),
        renew_before: Duration::from_secs(2 * 24 * 3600),
    };
    Ok(certs.load(OffsetDateTime::now_utc())?.serving)
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

/// The relay's certificate: what both transports serve, and how it is replaced.
#[derive(Clone)]
pub struct CertHandle {
    pub(crate) store: Arc<CertStore>,
    pub(crate) source: Arc<tokio::sync::Mutex<CertSource>>,
}

/// Where the served certificate comes from.
pub(crate) enum CertSource {
    Pem {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    Dev {
        certs: DevCerts,
        state: Box<DevState>,
    },
}

impl CertHandle {
    /// The store both transports resolve certificates through.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Reads the PEM files again and serves them to new connections (SIGHUP).
    /// Open connections keep going. A development relay has no files to
    /// read: this is a no-op there.
    pub async fn reload(&self) -> crate::RelayResult<()> {
        self.reload_pem().await.map_err(crate::RelayError::tls)
    }

    async fn reload_pem(&self) -> anyhow::Result<()> {
        let source = self.source.lock().await;
        if let CertSource::Pem { cert, key } = &*source {
            let m = load_pem(cert, key)?;
            let published = vec![PublishedHash {
                sha256: m.leaf_sha256,
                not_after: 0,
                serving: true,
            }];
            self.store.replace(m, published)?;
            tracing::info!(sha256 = %self.store.current().leaf_sha256_hex(), "certificate reloaded");
        }
        Ok(())
    }

    /// Advances development-certificate rotation to `now` (the relay calls it
    /// periodically with the wall clock; tests pass a later time). Returns
    /// whether anything changed.
    pub async fn rotate_dev(&self, now: time::OffsetDateTime) -> crate::RelayResult<bool> {
        self.rotate_dev_inner(now).await.map_err(crate::RelayError::tls)
    }

    async fn rotate_dev_inner(&self, now: time::OffsetDateTime) -> anyhow::Result<bool> {
        let mut source = self.source.lock().await;
        let CertSource::Dev { certs, state } = &mut *source else {
            return Ok(false);
        };
        let changed = certs.rotate(state, now)?;
        if changed {
            self.store.replace(state.serving.clone(), state.published())?;
            tracing::info!(
                serving = %state.serving.leaf_sha256_hex(),
                next = %state.next.as_ref().map_or(String::new(), |n| n.leaf_sha256_hex()),
                "development certificate rotated"
            );
        }
        Ok(changed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn certs(dir: &Path) -> DevCerts {
        DevCerts {
            dir: dir.to_owned(),
            names: vec!["localhost".into()],
            validity: Duration::from_secs(13 * DAY),
            renew_before: Duration::from_secs(2 * DAY),
        }
    }

    #[test]
    fn dev_certificate_is_reused_until_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_certificate(dir.path(), &["localhost".into()]).unwrap();
        let b = dev_certificate(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(a.leaf_sha256, b.leaf_sha256);
        assert!(a.server_config().is_ok());
        let span = a.not_after.unwrap() - OffsetDateTime::now_utc().unix_timestamp();
        assert!(span <= 13 * DAY as i64 && span > 12 * DAY as i64);
        let published = std::fs::read_to_string(dir.path().join("dev-cert.sha256")).unwrap();
        assert_eq!(published.trim(), a.leaf_sha256_hex());
    }

    #[test]
    fn rotation_publishes_the_successor_first_then_serves_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = certs(dir.path());
        let t0 = OffsetDateTime::now_utc();
        let mut state = c.load(t0).unwrap();
        let first = state.serving.leaf_sha256;
        assert!(state.next.is_none());
        assert!(!c.rotate(&mut state, t0 + time::Duration::days(5)).unwrap());

        // 11.5 days on: under 2 days left, a successor is published, not served.
        let t1 = t0 + time::Duration::hours(11 * 24 + 12);
        assert!(c.rotate(&mut state, t1).unwrap());
        assert_eq!(state.serving.leaf_sha256, first);
        let next = state.next.as_ref().unwrap().leaf_sha256;
        assert_eq!(
            state.published().iter().map(|h| h.sha256).collect::<Vec<_>>(),
            vec![first, next]
        );
        let listed = std::fs::read_to_string(dir.path().join("dev-cert-hashes.txt")).unwrap();
        assert_eq!(listed, format!("{}\n{}\n", hex::encode(first), hex::encode(next)));
        // A restart at this point finds both.
        let reloaded = c.load(t1).unwrap();
        assert_eq!(reloaded.serving.leaf_sha256, first);
        assert_eq!(reloaded.next.unwrap().leaf_sha256, next);

        // 12.5 days on: under 1 day left, the successor is served.
        let t2 = t0 + time::Duration::hours(12 * 24 + 12);
        assert!(c.rotate(&mut state, t2).unwrap());
        assert_eq!(state.serving.leaf_sha256, next);
        assert!(state.next.is_none());
        assert_eq!(c.load(t2).unwrap().serving.leaf_sha256, next);
        let published = std::fs::read_to_string(dir.path().join("dev-cert.sha256")).unwrap();
        assert_eq!(published.trim(), hex::encode(next));

        // Long after (relay was off): a fresh certificate at once.
        let t3 = t0 + time::Duration::days(40);
        let late = c.load(t3).unwrap();
        assert_ne!(late.serving.leaf_sha256, next);
        assert!(late.next.is_none());
    }

    #[test]
    fn the_store_serves_the_replacement_to_new_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let c = certs(dir.path());
        let t0 = OffsetDateTime::now_utc();
        let state = c.load(t0).unwrap();
        let store = CertStore::new(&state.serving).unwrap();
        let other = c.generate(NEXT, t0).unwrap();
        store.replace(other.clone(), vec![published(&other, true)]).unwrap();
        assert_eq!(store.current().leaf_sha256, other.leaf_sha256);
        let json: serde_json::Value = serde_json::from_str(&store.published_json()).unwrap();
        assert_eq!(json["hex"], hex::encode(other.leaf_sha256));
        assert_eq!(json["hashes"].as_array().unwrap().len(), 1);
        assert!(store.quic_config().is_ok() && store.tcp_config().is_ok());
    }
}
