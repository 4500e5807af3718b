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
}
