//! The transport trait: the only thing session logic knows about a connection.
//!
//! A transport delivers whole frames (already de-framed: one WebSocket binary
//! message, or one length-prefixed frame of a stream) and sends whole frames.
//! The session code in [`crate::session`] is written once against these traits;
//! each transport is a small adapter (`websocket.rs`, `webtransport.rs`);
//! `quic.rs` holds the QUIC endpoint and its tuning, `h3.rs` the HTTP/3 a
//! WebTransport session needs.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use hush_protocol::frame::CloseReason;

pub mod h3;
pub mod quic;
pub mod websocket;
pub mod webtransport;

/// The frame limits a transport applies: a smaller one until the session is
/// `Ready` (no client that has not authenticated can make the relay buffer a
/// maximum-size frame), the relay's frame limit after.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// After `Ready` (`limits.max_frame_len`).
    pub max_frame_len: usize,
    /// Before `Ready` (`limits.handshake_frame_len`).
    pub handshake_frame_len: usize,
}

/// Which web pages may open sessions: browsers send the page's origin with
/// a WebSocket upgrade and a WebTransport CONNECT; other clients send none
/// and are not affected. A refused origin gets 403.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// `*` was listed: every origin.
    any: bool,
    /// Allowed origins (`scheme://host[:port]`), lower case.
    listed: Vec<String>,
    /// The development setup: also pages served from loopback.
    loopback: bool,
}

impl OriginPolicy {
    /// The policy for `allowed_origins`; `loopback` also allows pages from
    /// `localhost` and loopback addresses (the development setup).
    pub fn new(allowed: &[String], loopback: bool) -> Self {
        OriginPolicy {
            any: allowed.iter().any(|o| o == "*"),
            listed: allowed
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            loopback,
        }
    }

    /// Whether a request with this `Origin` may open a session.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.any || self.listed.contains(&origin) || (self.loopback && is_loopback_origin(&origin))
    }
}

/// `http(s)://localhost`, `127.x.x.x` or `[::1]`, any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or_default()
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a transport stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer sent a frame larger than allowed.
    #[error("frame too large ({len} bytes, limit {max})")]
    TooLarge {
        /// Declared or actual length, when known (0 if not).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer broke the transport's own rules (e.g. a text WebSocket message).
    #[error("transport protocol violation: {0}")]
    Protocol(String),
    /// A datagram that is not a single ephemeral frame. Not fatal: the session
    /// answers with an error and keeps the connection (until bad input repeats).
    #[error("bad datagram: {0}")]
    BadDatagram(String),
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(String),
}

/// The receiving half of a connection.
#[async_trait]
pub trait FrameReader: Send + 'static {
    /// The next frame; `Ok(None)` when the peer closed cleanly.
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError>;
}

/// The sending half of a connection.
#[async_trait]
pub trait FrameWriter: Send + 'static {
    /// Queues a frame without flushing (callers flush when their queue is empty,
    /// so bursts share system calls).
    async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError>;
    /// Sends everything queued.
    async fn flush(&mut self) -> Result<(), TransportError>;
    /// Closes the connection, telling the peer why where the transport can.
    async fn close(&mut self, reason: CloseReason, message: &str);
}

/// An accepted connection, split in halves.
pub struct Connection {
    /// Incoming frames.
    pub reader: Box<dyn FrameReader>,
    /// Outgoing frames.
    pub writer: Box<dyn FrameWriter>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Transport name for logs and metrics (`"websocket"`, `"webtransport"`).
    pub transport: &'static str,
    /// The TLS connection's exporter value under
    /// `hush_protocol::auth::BINDING_EXPORTER_LABEL`, which a client's
    /// signature may be bound to.
    pub binding: Option<[u8; 32]>,
}

#[cfg(test)]
mod tests {
    use super::OriginPolicy;

    #[test]
    fn origins_are_checked_only_when_sent() {
        let dev = OriginPolicy::new(&[], true);
        assert!(dev.allows(None));
        for ok in [
            "http://127.0.0.1:7480",
            "http://localhost:3000",
            "https://[::1]:8443",
            "http://127.9.9.9",
        ] {
            assert!(dev.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "http://localhost.evil",
        ] {
            assert!(!dev.allows(Some(bad)), "{bad}");
        }
        let prod = OriginPolicy::new(&["https://chat.example/".into()], false);
        assert!(prod.allows(Some("https://CHAT.example")));
        assert!(!prod.allows(Some("http://chat.example")));
        assert!(!prod.allows(Some("http://localhost:3000")));
        assert!(OriginPolicy::new(&["*".into()], false).allows(Some("https://any.example")));
    }
}
