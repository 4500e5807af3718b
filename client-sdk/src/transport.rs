//! Choosing a transport and opening a connection.
//!
//! WebTransport (HTTP/3 over QUIC) is preferred; WebSocket over TLS is the
//! fallback for networks that block or mangle UDP. A connection attempt:
//!
//! 1. If the transport that worked last time (saved in the data directory as
//!    the setting `transport`) was WebSocket because QUIC failed, WebSocket is
//!    tried alone first, and WebTransport is probed again every
//!    [`TransportConfig::reprobe_every`] connections.
//! 2. Otherwise WebTransport starts first; if it has not connected within
//!    [`TransportConfig::race_window`] (or failed sooner), WebSocket starts
//!    too, and the first to complete its handshake wins (the other attempt is
//!    dropped).
//! 3. The winner is saved for next time.
//!
//! The WebTransport URL is derived from the relay's WebSocket URL
//! (`wss://host:port/ws` → `https://host:port/wt`: the relay serves both on
//! one port number, QUIC on UDP and TLS on TCP), unless set explicitly.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hush_protocol::frame::Resume;

use crate::client::Inner;
use crate::error::Error;
use crate::store::key;
use crate::wire::{ConnectOptions, WebTransportEndpoint, WireClient};

/// Transport selection.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// How long WebTransport may take to connect before WebSocket is tried
    /// beside it. Default 1 s.
    pub race_window: Duration,
    /// Deadline of one whole connection attempt (QUIC or TCP, TLS, handshake).
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// The WebTransport URL. Default: derived from the relay URL. `Some("")`
    /// disables WebTransport.
    pub webtransport_url: Option<String>,
    /// After falling back to WebSocket, try WebTransport first again every
    /// this many connections. Default 10.
    pub reprobe_every: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            race_window: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            webtransport_url: None,
            reprobe_every: 10,
        }
    }
}

/// Per-client transport state.
#[derive(Default)]
pub(crate) struct TransportState {
    endpoint: std::sync::Mutex<Option<WebTransportEndpoint>>,
    since_probe: AtomicU32,
}

/// `wss://host:port/ws` → `https://host:port/wt`.
fn derive_wt(relay: &str) -> Option<String> {
    let rest = relay.strip_prefix("wss://")?;
    let authority = rest.split('/').next()?;
    Some(format!("https://{authority}/wt"))
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
    let mut ws_opts = ConnectOptions::new(inner.relay.clone(), inner.trust.clone());
    ws_opts.registration = inner.registration.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ws_opts.resume = resume;
    ws_opts.timeout = inner.transport.connect_timeout;
    ws_opts.request_timeout = inner.timing.request_timeout;

    let wt_url = match &inner.transport.webtransport_url {
        Some(u) if u.is_empty() => None,
        Some(u) => Some(u.clone()),
        None => derive_wt(&inner.relay),
    };
    let Some(wt_url) = wt_url else {
        let w = WireClient::connect(&inner.identity, ws_opts).await?;
        return Ok((w, "websocket"));
    };
    let mut wt_opts = ws_opts.clone();
    wt_opts.url = wt_url;

    let last: Option<String> = inner.local.get(&key::setting("transport"))?;
    // Connections made by this client so far, counting this one: the first
    // connection after a restart uses the remembered choice; every
    // `reprobe_every`-th one tries WebTransport first again.
    let attempt = inner.transport_state.since_probe.fetch_add(1, Ordering::Relaxed) + 1;
    let ws_first =
        last.as_deref() == Some("websocket") && !attempt.is_multiple_of(inner.transport.reprobe_every.max(1));
    let (wire, name) = if ws_first {
        match WireClient::connect(&inner.identity, ws_opts).await {
            Ok(w) => (w, "websocket"),
            Err(_) => {
                let endpoint = endpoint(inner)?;
                (
                    WireClient::connect_with(&inner.identity, wt_opts, &endpoint).await?,
                    "webtransport",
                )
            }
        }
    } else {
        race(inner, wt_opts, ws_opts).await?
    };
    if last.as_deref() != Some(name) {
        let _ = inner.local.put(key::setting("transport"), &name);
    }
    Ok((wire, name))
}

fn endpoint(inner: &Inner) -> Result<WebTransportEndpoint, Error> {
    let mut slot = inner.transport_state.endpoint.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = &*slot {
        return Ok(e.clone());
    }
    let e = WebTransportEndpoint::new(&inner.trust)?;
    *slot = Some(e.clone());
    Ok(e)
}

/// WebTransport first; WebSocket too once the race window passes or
/// WebTransport fails; the first connected wins.
async fn race(
    inner: &Inner,
    wt_opts: ConnectOptions,
    ws_opts: ConnectOptions,
) -> Result<(WireClient, &'static str), Error> {
    let endpoint = endpoint(inner)?;
    let wt = WireClient::connect_with(&inner.identity, wt_opts, &endpoint);
    tokio::pin!(wt);
    let window = tokio::time::sleep(inner.transport.race_window);
    tokio::pin!(window);
    let wt_error = tokio::select! {
        r = &mut wt => match r {
            Ok(w) => return Ok((w, "webtransport")),
            Err(e) => Some(e),
        },
        _ = &mut window => None,
    };
    let ws = WireClient::connect(&inner.identity, ws_opts);
    tokio::pin!(ws);
    if let Some(e) = wt_error {
        tracing::debug!(error = %e, "WebTransport failed; using WebSocket");
        return Ok((ws.await?, "websocket"));
    }
    tokio::select! {
        biased;
        r = &mut wt => match r {
            Ok(w) => Ok((w, "webtransport")),
            Err(e) => {
                tracing::debug!(error = %e, "WebTransport failed; using WebSocket");
                Ok((ws.await?, "websocket"))
            }
        },
        r = &mut ws => match r {
            Ok(w) => Ok((w, "websocket")),
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket failed; waiting for WebTransport");
                Ok((wt.await?, "webtransport"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn webtransport_url_is_derived_from_the_websocket_url() {
        assert_eq!(
            super::derive_wt("wss://127.0.0.1:7443/ws").as_deref(),
            Some("https://127.0.0.1:7443/wt")
        );
        assert_eq!(super::derive_wt("ws://x/ws"), None);
    }
}
