//! The QUIC endpoint behind WebTransport, and its tuning.
//!
//! quinn's defaults are made for bulk transfers over long fat links: 100
//! concurrent streams each way, a 1.25 MB stream window, an unlimited connection
//! window, a 10 MB send window and 1.25 MB of datagram buffer. A relay holds
//! thousands of mostly idle sessions that each use one stream of small frames, so
//! every limit is set explicitly here (the reasons are in `ARCHITECTURE.md`,
//! section "QUIC settings"). Windows are limits, not allocations: they bound
//! what one peer can make the relay buffer.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wtransport::quinn::{self, IdleTimeout, TransportConfig, VarInt};

use crate::config::{LimitsConfig, QuicConfig};

/// Bidirectional streams a client may have open at once: the HTTP/3 CONNECT
/// stream of the session and the protocol's one stream, plus one spare so a
/// client can open a new stream before the old one is fully gone.
pub const MAX_BIDI_STREAMS: u32 = 3;

/// Unidirectional streams a client may have open at once: HTTP/3 needs three
/// (control, QPACK encoder, QPACK decoder); browsers may add reserved
/// ("grease") stream types, so a little room is left.
pub const MAX_UNI_STREAMS: u32 = 6;

/// The transport settings the relay runs with, from its configuration.
pub fn transport_config(quic: &QuicConfig, limits: &LimitsConfig) -> anyhow::Result<TransportConfig> {
    let mut t = TransportConfig::default();
    if quic.quinn_defaults {
        // For measurements only (BENCHMARKS.md): quinn as it comes, with the idle
        // timeout the relay needs anyway.
        t.max_idle_timeout(Some(idle_timeout(limits)?));
        return Ok(t);
    }
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        .stream_receive_window(VarInt::from_u32(quic.stream_receive_window))
        .receive_window(VarInt::from_u32(quic.receive_window))
        .send_window(quic.send_window)
        .max_idle_timeout(Some(idle_timeout(limits)?))
        .keep_alive_interval(quic.keep_alive_ms.map(Duration::from_millis))
        .datagram_receive_buffer_size(Some(quic.datagram_receive_buffer))
        .datagram_send_buffer_size(quic.datagram_send_buffer)
        // The TLS handshake messages of a P-256 certificate are small.
        .crypto_buffer_size(8 * 1024);
    Ok(t)
}

/// QUIC's idle timeout: a little longer than the session's own (three missed
/// heartbeats), so the session closes first and says why.
fn idle_timeout(limits: &LimitsConfig) -> anyhow::Result<IdleTimeout> {
    IdleTimeout::try_from(limits.idle_timeout() + Duration::from_secs(5)).context("QUIC idle timeout")
}

/// Builds the QUIC server endpoint on an already bound UDP socket (HTTP/3 and
/// WebTransport run on its connections, `h3.rs`).
pub fn endpoint(
    socket: UdpSocket,
    tls: rustls::ServerConfig,
    transport: TransportConfig,
) -> anyhow::Result<quinn::Endpoint> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| anyhow::anyhow!("TLS configuration unusable for QUIC: {e}"))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    // Bound the handshake work an unvalidated address can cause.
    server.max_incoming(4096);
    let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime)
        .context("starting the QUIC endpoint")
}
