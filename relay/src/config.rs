//! Relay configuration: defaults, then a TOML file, then environment and flags.
//!
//! `hush-relay` with no arguments runs a single-node development relay: loopback
//! on port 7443 (WebSocket on TCP, WebTransport on UDP), a plain-HTTP dev
//! listener on 127.0.0.1:7480 (certificate hash, demo page), a `hush-data`
//! directory, a generated certificate, and open registration (any device may
//! register without a token).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the relay can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on: TCP for WebSocket over TLS and UDP for WebTransport,
    /// same port number. Port 0 picks a port free for both. Default `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// Where the store and the dev certificate live. Default `hush-data`.
    pub data_dir: PathBuf,
    /// Identifies this relay in logs and auth transcripts (a device's
    /// signature names it, so one made for one relay does not verify at
    /// another). Default: empty, meaning generated once per data directory
    /// (`relay-<16 hex digits>`, kept in `<data_dir>/relay-id`).
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
    /// QUIC (WebTransport) settings.
    pub quic: QuicConfig,
    /// The plain-HTTP development listener.
    pub dev_http: DevHttpConfig,
    /// Web origins (`https://chat.example`, or `*` for any) whose pages may
    /// open sessions; browsers send their page's origin, other clients none
    /// (they are not affected). The development setup also allows pages from
    /// `localhost` and loopback addresses. Default: empty.
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("hush-data"),
            relay_id: String::new(),
            region: "local".into(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            retention: RetentionConfig::default(),
            quic: QuicConfig::default(),
            dev_http: DevHttpConfig::default(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Certificate files; when both are empty a development certificate is generated.
///
/// PEM files are read again on SIGHUP (the binary) or
/// [`crate::tls::CertHandle::reload`]; connections already open keep going.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Validity of a generated development certificate, seconds. Browsers accept
    /// at most 14 days with `serverCertificateHashes`. Default 13 days.
    pub dev_validity_secs: u64,
    /// A successor development certificate is made (and its hash published)
    /// when the current one has less than this left. Default 2 days.
    pub dev_renew_before_secs: u64,
    /// How often the relay checks whether the development certificate is due
    /// for renewal, seconds. Default 3600.
    pub dev_check_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            dev_validity_secs: 13 * 24 * 3600,
            dev_renew_before_secs: 2 * 24 * 3600,
            dev_check_interval_secs: 3600,
        }
    }
}

/// QUIC transport settings for WebTransport (see `ARCHITECTURE.md`, "QUIC
/// settings", for why each value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Serve WebTransport on UDP. Default true.
    pub enabled: bool,
    /// Bytes a client may have in flight on one stream. Default 128 KiB.
    pub stream_receive_window: u32,
    /// Bytes a client may have in flight on the whole connection. Default 192 KiB.
    pub receive_window: u32,
    /// Unacknowledged bytes the relay buffers per connection. Default 1 MiB + 64 KiB
    /// (one largest frame and some).
    pub send_window: u64,
    /// Relay-sent QUIC keep-alives; none by default (clients ping every heartbeat).
    pub keep_alive_ms: Option<u64>,
    /// Incoming datagram bytes buffered per connection before the oldest are
    /// dropped. Default 16 KiB.
    pub datagram_receive_buffer: usize,
    /// Outgoing datagram bytes buffered per connection. Default 16 KiB.
    pub datagram_send_buffer: usize,
    /// Run with quinn's default transport settings instead (for measurements).
    /// Default false.
    pub quinn_defaults: bool,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            enabled: true,
            stream_receive_window: 128 * 1024,
            receive_window: 192 * 1024,
            send_window: (1024 + 64) * 1024,
            keep_alive_ms: None,
            datagram_receive_buffer: 16 * 1024,
            datagram_send_buffer: 16 * 1024,
            quinn_defaults: false,
        }
    }
}

/// A plain-HTTP listener for development: `GET /cert-hash` (the development
/// certificate's SHA-256) and the demo page's static files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevHttpConfig {
    /// Whether to run it. Default: on with a development certificate, off with
    /// PEM files.
    pub enabled: Option<bool>,
    /// Where. Default `127.0.0.1:7480` (a free port when `listen` has port 0).
    pub listen: SocketAddr,
    /// Directory of static files to serve (the demo page). Default `web`, if it
    /// exists.
    pub static_dir: Option<PathBuf>,
}

impl Default for DevHttpConfig {
    fn default() -> Self {
        DevHttpConfig {
            enabled: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            static_dir: Some(PathBuf::from("web")),
        }
    }
}

/// Device registration rules.
///
/// Open registration (a new device registers with no token) is something a
/// person asks for: it is the default only for the development setup (a
/// loopback listen address and a generated certificate). Anywhere else it is
/// refused at startup unless `force_open` is also set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Open registration. Unset (the default): open for the development
    /// setup, closed otherwise. `true` outside the development setup also
    /// needs `force_open`.
    pub open: Option<bool>,
    /// Allows `open = true` outside the development setup (any device of
    /// anyone on the network may register as any user). Default false.
    pub force_open: bool,
    /// Shared secret for HS256 registration tokens, at least 32 bytes. Prefer
    /// `jwt_hs256_secret_file` or the `HUSH_JWT_HS256_SECRET` environment
    /// variable over writing it here.
    pub jwt_hs256_secret: Option<String>,
    /// A file holding the HS256 secret (surrounding whitespace is ignored).
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// Ed25519 public key (32 bytes, hex or standard base64) for EdDSA registration tokens.
    pub jwt_ed25519_public_key: Option<String>,
    /// Required `iss` claim, if set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub jwt_audience: Option<String>,
    /// Longest token lifetime accepted, seconds: a token whose `exp` is
    /// further than this from now (or from its `iat`) is refused. Default
    /// 86 400 (one day).
    pub max_token_lifetime_secs: u64,
    /// Every token must carry a `device_id` claim naming the device it
    /// registers (32 hex digits); a token that carries one is always checked
    /// against the registering device. Default false.
    pub require_device_binding: bool,
    /// Accept only device signatures bound to the TLS connection
    /// (`hush-auth-v2`, PROTOCOL.md 6.2). Clients that cannot read their
    /// connection's TLS exporter (browsers) sign the unbound transcript and
    /// are then refused. Default false.
    pub require_channel_binding: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            open: None,
            force_open: false,
            jwt_hs256_secret: None,
            jwt_hs256_secret_file: None,
            jwt_ed25519_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            max_token_lifetime_secs: 24 * 3600,
            require_device_binding: false,
            require_channel_binding: false,
        }
    }
}

/// Shortest HS256 secret accepted, bytes (RFC 7518 3.2: at least the hash size).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// Secrets copied from examples and tutorials; refused whatever their length.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "your-secret",
    "your-256-bit-secret",
    "password",
    "replace-me",
    "example",
    "test",
];

impl AuthConfig {
    /// The HS256 secret, from `jwt_hs256_secret` or `jwt_hs256_secret_file`,
    /// checked: at least [`MIN_HS256_SECRET_LEN`] bytes, not a placeholder,
    /// not one repeated character.
    pub fn hs256_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let secret = match (&self.jwt_hs256_secret, &self.jwt_hs256_secret_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("auth.jwt_hs256_secret and auth.jwt_hs256_secret_file: set one, not both")
            }
            (Some(s), None) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("auth.jwt_hs256_secret_file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        let lower = secret.to_ascii_lowercase();
        anyhow::ensure!(
            !PLACEHOLDER_SECRETS
                .iter()
                .any(|p| lower.contains(p) && lower.len() < p.len() + 8),
            "the HS256 registration secret is a placeholder from an example; generate one, e.g. `openssl rand -hex 32`"
        );
        anyhow::ensure!(
            secret.len() >= MIN_HS256_SECRET_LEN,
            "the HS256 registration secret is {} bytes; at least {MIN_HS256_SECRET_LEN} are needed (e.g. `openssl rand -hex 32`)",
            secret.len()
        );
        let first = secret.as_bytes()[0];
        anyhow::ensure!(
            secret.bytes().any(|b| b != first),
            "the HS256 registration secret is one repeated character"
        );
        Ok(Some(secret.into_bytes()))
    }
}

/// Limits that protect the relay and its other users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most simultaneous connections; more are told `ServerBusy` and closed. Default 10 000.
    pub max_connections: usize,
    /// Most transport setups (TCP+TLS+WebSocket upgrade, or QUIC handshake +
    /// HTTP/3 CONNECT) in progress at once; a connection arriving beyond it is
    /// closed at accept, before any TLS work. Default 1,024.
    pub max_setups: usize,
    /// Most setups and connections from one client address (IPv4 address, or
    /// IPv6 /64) at once; beyond it new ones are closed at accept. Default 1,000.
    pub max_per_address: usize,
    /// While at least this many setups are in progress, a QUIC client whose
    /// address is not yet validated is sent a Retry (one more round trip, and
    /// the relay spends nothing on a spoofed address). 0: always. Default 64.
    pub quic_retry_above: usize,
    /// Largest frame accepted, bytes (at most the protocol's 1 MiB). Default 1 MiB.
    pub max_frame_len: usize,
    /// Largest frame accepted before `Ready` (`Hello`, `Authenticate` with
    /// its resume hints, `Rendezvous`), bytes; a larger one is refused with
    /// `FrameTooLarge` as soon as its length is read. Default 320 KiB (room
    /// for 10,000 resume hints of 16-byte group ids).
    pub handshake_frame_len: usize,
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
    /// Directory lookups per minute per device (token bucket refill): a
    /// `ListDevices` of another user takes one token, a `ClaimKeyPackages`
    /// of another user one per device it would claim (at least one, also
    /// when the user does not exist). Over it the request is refused with
    /// `RateLimited`. Bounds how fast one device can enumerate users and
    /// claim packages. Default 120.
    pub lookups_per_minute: f64,
    /// Directory lookup bucket size. Default 1,000 (one commit adds at most
    /// 1,000 devices).
    pub lookups_burst: f64,
    /// One-time key packages of one device handed out per hour, to all
    /// claimers together (a token bucket of this size, refilled over an
    /// hour); beyond it claims get the device's last-resort package instead.
    /// Kept in memory: a restart forgets it. Default 30.
    pub one_time_claims_per_hour: f64,
    /// Requests queued per connection before the relay stops reading it, and
    /// sends per connection waiting for durability at once. Default 64.
    pub request_queue: usize,
    /// Bytes of requests (as encoded on the wire) a connection may have
    /// queued or in progress before the relay stops reading it. Default 4 MiB;
    /// at least one largest frame.
    pub request_bytes: usize,
    /// Longest a device-linking rendezvous waits for its second side, ms.
    /// Default 300,000 (5 minutes to type a link code).
    pub rendezvous_wait_ms: u64,
    /// A paired rendezvous in which neither side sent anything (a payload
    /// or a `Ping`) for this long is closed, ms. Default 120,000.
    pub rendezvous_idle_ms: u64,
    /// Most rendezvous waiting for their second side from one client
    /// address. Default 4.
    pub rendezvous_per_address: usize,
    /// Most unacknowledged entries a device's inbox may hold before
    /// `SendToDevice` to it is refused with `QuotaExceeded` (Welcomes of
    /// commits are always delivered). Default 1,000.
    pub inbox_max_pending: usize,
    /// Most groups a device may be an active member of before `CreateGroup`
    /// is refused with `QuotaExceeded`. Default 10,000.
    pub max_groups_per_device: usize,
    /// Most one-time key packages a device may hold in its pool; an upload
    /// that would go over it is refused with `QuotaExceeded`. Default 1,000.
    pub max_key_packages_per_device: usize,
    /// Most devices (registered, not revoked) a user may have; registering
    /// one more is refused with `QuotaExceeded`. Default 100.
    pub max_devices_per_user: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_setups: 1024,
            max_per_address: 1000,
            quic_retry_above: 64,
            max_frame_len: hush_protocol::limits::MAX_FRAME_LEN,
            handshake_frame_len: 320 << 10,
            handshake_timeout_ms: 10_000,
            heartbeat_ms: 15_000,
            send_queue: 256,
            slow_consumer_timeout_ms: 10_000,
            rate_per_second: 50.0,
            rate_burst: 200.0,
            lookups_per_minute: 120.0,
            lookups_burst: 1000.0,
            one_time_claims_per_hour: 30.0,
            request_queue: 64,
            request_bytes: 4 << 20,
            rendezvous_wait_ms: 300_000,
            rendezvous_idle_ms: 120_000,
            rendezvous_per_address: 4,
            inbox_max_pending: 1000,
            max_groups_per_device: 10_000,
            max_key_packages_per_device: 1000,
            max_devices_per_user: 100,
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
    pub fn from_file(path: &Path) -> Result<Self, crate::RelayError> {
        let fail = |reason: String| crate::RelayError::ConfigFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        toml::from_str(&text).map_err(|e| fail(e.to_string()))
    }

    /// The development setup: a loopback listen address and a generated
    /// certificate. Only there is registration open by default.
    pub fn is_dev_setup(&self) -> bool {
        self.listen.ip().is_loopback() && self.tls.cert.is_none()
    }

    /// Whether a new device may register with no token: `auth.open` if set,
    /// otherwise only in the development setup.
    pub fn registration_open(&self) -> bool {
        self.auth.open.unwrap_or_else(|| self.is_dev_setup())
    }

    /// Checks values that would make the relay misbehave.
    pub fn validate(&self) -> Result<(), crate::RelayError> {
        self.check().map_err(|e| crate::RelayError::Config(e.to_string()))
    }

    fn check(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(l.max_connections > 0, "limits.max_connections must be > 0");
        anyhow::ensure!(
            l.max_setups > 0 && l.max_per_address > 0,
            "limits.max_setups and limits.max_per_address must be > 0"
        );
        anyhow::ensure!(
            (64..=hush_protocol::limits::MAX_FRAME_LEN).contains(&l.max_frame_len),
            "limits.max_frame_len must be between 64 and {}",
            hush_protocol::limits::MAX_FRAME_LEN
        );
        anyhow::ensure!(
            l.handshake_frame_len >= 4096,
            "limits.handshake_frame_len must be at least 4096"
        );
        anyhow::ensure!(l.send_queue > 0 && l.request_queue > 0, "queue sizes must be > 0");
        anyhow::ensure!(
            l.rate_per_second > 0.0 && l.rate_burst >= 1.0,
            "rate limits must be positive"
        );
        anyhow::ensure!(
            l.lookups_per_minute > 0.0 && l.lookups_burst >= 1.0,
            "limits.lookups_per_minute must be > 0 and limits.lookups_burst >= 1"
        );
        anyhow::ensure!(
            l.one_time_claims_per_hour >= 1.0,
            "limits.one_time_claims_per_hour must be >= 1"
        );
        anyhow::ensure!(l.heartbeat_ms >= 100, "limits.heartbeat_ms must be >= 100");
        anyhow::ensure!(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "tls.cert and tls.key go together"
        );
        let has_key = self.auth.hs256_secret()?.is_some() || self.auth.jwt_ed25519_public_key.is_some();
        if self.registration_open() {
            anyhow::ensure!(
                self.is_dev_setup() || self.auth.force_open,
                "open registration lets anyone register a device as any user; it is the default only for \
                 the development setup (a loopback listen address and a generated certificate). Configure \
                 a token key (auth.jwt_ed25519_public_key, auth.jwt_hs256_secret_file or HUSH_JWT_HS256_SECRET), \
                 or insist with auth.force_open = true (--force-open-registration)"
            );
        } else {
            anyhow::ensure!(
                has_key,
                "registration is closed but no token key is configured (auth.jwt_ed25519_public_key, \
                 auth.jwt_hs256_secret_file or HUSH_JWT_HS256_SECRET): no first device of a user could ever register"
            );
        }
        anyhow::ensure!(
            self.auth.max_token_lifetime_secs > 0,
            "auth.max_token_lifetime_secs must be > 0"
        );
        anyhow::ensure!(self.retention.interval_secs > 0, "retention.interval_secs must be > 0");
        let t = &self.tls;
        anyhow::ensure!(
            (60..=14 * 24 * 3600).contains(&t.dev_validity_secs),
            "tls.dev_validity_secs must be between 60 and 14 days (browsers refuse longer)"
        );
        anyhow::ensure!(
            t.dev_renew_before_secs < t.dev_validity_secs && t.dev_check_interval_secs > 0,
            "tls.dev_renew_before_secs must be below tls.dev_validity_secs, and the check interval > 0"
        );
        let q = &self.quic;
        anyhow::ensure!(
            q.stream_receive_window >= 4096 && q.receive_window >= q.stream_receive_window,
            "quic.stream_receive_window must be >= 4096 and quic.receive_window >= it"
        );
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
        let secret = std::env::temp_dir().join(format!("hush-example-secret-{}", std::process::id()));
        std::fs::write(&secret, "4f1c0d8e9b2a7c6d5e4f3a2b1c0d9e8f\n").unwrap();
        let mut c = Config::from_file(&path).unwrap();
        c.auth.jwt_hs256_secret_file = Some(secret.clone());
        c.validate().unwrap();
        assert!(!c.registration_open());
        std::fs::remove_file(secret).unwrap();
    }

    #[test]
    fn closed_registration_needs_a_key() {
        let mut c = Config::default();
        c.auth.open = Some(false);
        assert!(c.validate().is_err());
        c.auth.jwt_hs256_secret = Some("0123456789abcdef0123456789abcdef".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn registration_is_open_by_default_only_for_the_development_setup() {
        let dev = Config::default();
        assert!(dev.is_dev_setup() && dev.registration_open());
        dev.validate().unwrap();

        // Any non-loopback address: closed, and with no key the relay refuses to start.
        let mut public = Config {
            listen: "0.0.0.0:7443".parse().unwrap(),
            ..Config::default()
        };
        assert!(!public.registration_open());
        let e = public.validate().unwrap_err().to_string();
        assert!(e.contains("no token key"), "{e}");

        // Asking for open registration there is refused unless forced.
        public.auth.open = Some(true);
        let e = public.validate().unwrap_err().to_string();
        assert!(e.contains("force_open"), "{e}");
        public.auth.force_open = true;
        public.validate().unwrap();

        // Real certificate files on loopback: not the development setup either.
        let mut pem = Config::default();
        pem.tls.cert = Some("cert.pem".into());
        pem.tls.key = Some("key.pem".into());
        assert!(!pem.registration_open());
        pem.auth.open = Some(true);
        assert!(pem.validate().is_err());
    }

    #[test]
    fn weak_and_placeholder_secrets_are_refused() {
        let with = |s: &str| {
            let mut c = Config::default();
            c.auth.open = Some(false);
            c.auth.jwt_hs256_secret = Some(s.into());
            c.validate().map_err(|e| e.to_string())
        };
        assert!(with("change-me").unwrap_err().contains("placeholder"));
        assert!(with("secret").unwrap_err().contains("placeholder"));
        assert!(with("short-but-random-9f8e").unwrap_err().contains("at least 32"));
        assert!(with(&"a".repeat(40)).unwrap_err().contains("repeated"));
        with("9c1f0e7d6b5a49382716f5e4d3c2b1a0").unwrap();
        // Both the inline secret and a file: ambiguous.
        let mut c = Config::default();
        c.auth.jwt_hs256_secret = Some("9c1f0e7d6b5a49382716f5e4d3c2b1a0".into());
        c.auth.jwt_hs256_secret_file = Some("x".into());
        assert!(c.validate().is_err());
    }
}
