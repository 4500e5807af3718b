//! Choosing a transport and opening a connection.
//!
//! The relay serves WebSocket over TLS (`wss://…/ws`) today. The connect path
//! is written as "try the preferred transport within a race window, fall back
//! to the next, remember what worked" so that WebTransport slots in first
//! once `wire` speaks it; the transport that last worked is saved in the data
//! directory (setting `transport`) and tried first next time.

use std::time::Duration;

use hush_protocol::frame::Resume;

use crate::client::Inner;
use crate::error::Error;
use crate::store::key;
use crate::wire::{ConnectOptions, WireClient};

/// Transport selection.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// How long the preferred transport may take to connect before the
    /// fallback is tried. Default 1.5 s.
    pub race_window: Duration,
    /// Deadline of one whole connection attempt (TCP/QUIC, TLS, handshake).
    /// Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            race_window: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens an authenticated connection; returns it and the transport's name.
pub(crate) async fn connect(inner: &Inner) -> Result<(WireClient, &'static str), Error> {
    let mut resume = Vec::new();
    let groups: Vec<(Vec<u8>, serde_json::Value)> = inner.local.scan(key::GROUPS, None, false, 10_000)?;
    for (k, _) in groups {
        // Key layout: b'g', length byte, group bytes.
        let group = hush_protocol::GroupId(k[2..].to_vec());
        let after_seq = inner.local.cursor(&group)?;
        if after_seq > 0 {
            resume.push(Resume { group, after_seq });
        }
    }
    let mut opts = ConnectOptions::new(inner.relay.clone(), inner.trust.clone());
    opts.registration = inner.registration.lock().unwrap_or_else(|p| p.into_inner()).clone();
    opts.resume = resume;
    opts.timeout = inner.transport.connect_timeout;
    let wire = WireClient::connect(&inner.identity, opts).await?;
    let name = "websocket";
    let _ = inner.local.put(key::setting("transport"), &name);
    Ok((wire, name))
}
