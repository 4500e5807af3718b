//! Relay configuration: defaults, then a TOML file, then environment and flags.
//!
//! `hush-relay` with no arguments runs a single-node development relay: loopback
//! on port 7443, a `hush-data` directory, a generated certificate, and open
//! registration (any device may register without a token).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything the relay can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (TCP for WebSocket over TLS). Default `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// Where the store and the dev certificate live. Default `hush-data`.
    pub data_dir: PathBuf,
    /// Identifies this relay in logs and auth transcripts. Default `local-1`.
    pub relay_id: String,
    /// The region this relay belongs to (groups created here are homed here).
    /// Default `local`.
    pub region: String,
    /// TLS certificate source.
    pub tls: TlsConfig,
    /// Who may register devices.
    pub auth: AuthConfig,
    /// Connection and traffic limits.
    pub limits: LimitsConfig,
    /// How long the log keeps entries.
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("hush-data"),
            relay_id: "local-1".into(),
            region: "local".into(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Certificate files; when both are empty a development certificate is generated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// Device registration rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Open (development) mode: a new device may register with no token.
    /// Default true, so a fresh relay works with no setup; production sets a key
    /// below and `open = false`.
    pub open: bool,
    /// Shared secret for HS256 registration tokens.
    pub jwt_hs256_secret: Option<String>,
    /// Ed25519 public key (32 bytes, hex or standard base64) for EdDSA registration tokens.
    pub jwt_ed25519_public_key: Option<String>,
    /// Required `iss` claim, if set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub jwt_audience: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            open: true,
            jwt_hs256_secret: None,
            jwt_ed25519_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
        }
    }
}

/// Limits that protect the relay and its other users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most simultaneous connections; more are told `ServerBusy` and closed. Default 10 000.
    pub max_connections: usize,
    /// Largest frame accepted, bytes (at most the protocol's 1 MiB). Default 1 MiB.
    pub max_frame_len: usize,
    /// TLS + upgrade + Hello + Authenticate must finish within this. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// Clients ping at least this often; silence for three intervals closes. Default 15 s.
    pub heartbeat_ms: u64,
    /// Frames queued to one connection before the sender waits. Default 256.
    pub send_queue: usize,
    /// A connection whose queue stays full this long is a slow consumer and is
    /// closed (it resumes from its cursor later). Default 10 s.
    pub slow_consumer_timeout_ms: u64,
    /// Requests and signals per second per device (token bucket refill). Default 50.
    pub rate_per_second: f64,
    /// Token bucket size. Default 200.
    pub rate_burst: f64,
    /// Requests queued per connection before the relay stops reading it. Default 64.
    pub request_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_frame_len: hush_protocol::limits::MAX_FRAME_LEN,
            handshake_timeout_ms: 10_000,
            heartbeat_ms: 15_000,
            send_queue: 256,
            slow_consumer_timeout_ms: 10_000,
            rate_per_second: 50.0,
            rate_burst: 200.0,
            request_queue: 64,
        }
    }
}

impl LimitsConfig {
    /// Handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    /// Silence after which a connection is closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.saturating_mul(3))
    }
    /// Slow-consumer deadline.
    pub fn slow_consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_consumer_timeout_ms)
    }
}

/// Retention of log entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Entries older than this are deleted. Default 30 days.
    pub max_age_secs: u64,
    /// Delete entries as soon as every roster device acknowledged them. Default true:
    /// the relay keeps as little ciphertext as it can.
    pub delete_acknowledged: bool,
    /// How often retention runs. Default 60 s.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_secs: 30 * 24 * 3600,
            delete_acknowledged: true,
            interval_secs: 60,
        }
    }
}

impl Config {
    /// Reads a TOML file (unknown keys are an error).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// Checks values that would make the relay misbehave.
    pub fn validate(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(l.max_connections > 0, "limits.max_connections must be > 0");
        anyhow::ensure!(
            (64..=hush_protocol::limits::MAX_FRAME_LEN).contains(&l.max_frame_len),
            "limits.max_frame_len must be between 64 and {}",
            hush_protocol::limits::MAX_FRAME_LEN
        );
        anyhow::ensure!(l.send_queue > 0 && l.request_queue > 0, "queue sizes must be > 0");
        anyhow::ensure!(
            l.rate_per_second > 0.0 && l.rate_burst >= 1.0,
            "rate limits must be positive"
        );
        anyhow::ensure!(l.heartbeat_ms >= 100, "limits.heartbeat_ms must be >= 100");
        anyhow::ensure!(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "tls.cert and tls.key go together"
        );
        anyhow::ensure!(
            self.auth.open || self.auth.jwt_hs256_secret.is_some() || self.auth.jwt_ed25519_public_key.is_some(),
            "auth.open = false needs a token key (auth.jwt_hs256_secret or auth.jwt_ed25519_public_key); \
             otherwise no device could ever register"
        );
        anyhow::ensure!(self.retention.interval_secs > 0, "retention.interval_secs must be > 0");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nbogus = 1").is_err());
        let c: Config = toml::from_str("[limits]\nsend_queue = 4").unwrap();
        assert_eq!(c.limits.send_queue, 4);
        assert_eq!(c.limits.max_connections, 10_000);
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay.example.toml");
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert!(!c.auth.open);
    }

    #[test]
    fn closed_registration_needs_a_key() {
        let mut c = Config::default();
        c.auth.open = false;
        assert!(c.validate().is_err());
        c.auth.jwt_hs256_secret = Some("s".into());
        assert!(c.validate().is_ok());
    }
}
