//! WebTransport for [`WireClient`](super::WireClient): `https://host:port/wt`.
//!
//! The client opens a WebTransport session at `/wt?datagrams=1` (asking the
//! relay to send ephemeral signals and presence as datagrams), then one
//! bidirectional stream that carries every other frame with a 4-byte
//! big-endian length prefix (`PROTOCOL.md`, section 2.2). `Ephemeral` frames go
//! out as one bare frame per datagram when they fit the connection's current
//! datagram size, on the stream otherwise.
//!
//! A [`WebTransportEndpoint`] is one UDP socket; many connections can share it
//! ([`WireClient::connect_with`](super::WireClient::connect_with)), QUIC
//! multiplexes them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hush_protocol::codec::{self, LENGTH_PREFIX_LEN};
use hush_protocol::frame::RelayFrame;
use hush_protocol::limits::MAX_FRAME_LEN;
use tokio::sync::mpsc;
use wtransport::endpoint::endpoint_side::Client;
use wtransport::quinn::{self, VarInt};

use super::{
    ClientError, ConnectOptions, DatagramCounts, Established, HandshakeIo, Identity, Outgoing, Pending, Transport,
    conn_err, dispatch, handshake, tls_client_config,
};

/// The query a client adds to the URL to receive datagrams.
const DATAGRAMS_QUERY: &str = "datagrams=1";

/// A client QUIC endpoint (one UDP socket) with a certificate trust setting.
/// Cheap to clone; connections made through clones share the socket.
#[derive(Clone)]
pub struct WebTransportEndpoint {
    endpoint: Arc<wtransport::Endpoint<Client>>,
}

impl std::fmt::Debug for WebTransportEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebTransportEndpoint({:?})", self.endpoint.local_addr().ok())
    }
}

/// The client's QUIC transport settings: one stream each way is all the
/// protocol uses; keep-alives every 10 s keep NAT bindings and the QUIC idle
/// timer fresh between heartbeats.
fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(8))
        .stream_receive_window(VarInt::from_u32(2 * MAX_FRAME_LEN as u32))
        .receive_window(VarInt::from_u32(4 * MAX_FRAME_LEN as u32))
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .datagram_receive_buffer_size(Some(64 * 1024))
        .datagram_send_buffer_size(64 * 1024);
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(60)) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

impl WebTransportEndpoint {
    /// A new endpoint on an ephemeral UDP port of the unspecified IPv4 address,
    /// trusting the relay's certificate as `trust` says. Needs a Tokio runtime.
    pub fn new(trust: &super::Trust) -> Result<Self, ClientError> {
        Self::bind(trust, "0.0.0.0:0".parse().map_err(conn_err)?)
    }

    /// Like [`WebTransportEndpoint::new`], on a chosen local address.
    pub fn bind(trust: &super::Trust, local: std::net::SocketAddr) -> Result<Self, ClientError> {
        let mut tls = tls_client_config(trust, true)?;
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let config = wtransport::ClientConfig::builder()
            .with_bind_address(local)
            .with_custom_tls_and_transport(tls, transport_config())
            .build();
        let endpoint = wtransport::Endpoint::client(config).map_err(conn_err)?;
        Ok(WebTransportEndpoint {
            endpoint: Arc::new(endpoint),
        })
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Connections currently open on this endpoint.
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    /// Opens a WebTransport session and its stream, with no protocol frames
    /// yet. Exposed for tests that send raw bytes.
    pub async fn open(&self, url: &str) -> Result<RawSession, ClientError> {
        let url = if url.contains('?') {
            format!("{url}&{DATAGRAMS_QUERY}")
        } else {
            format!("{url}?{DATAGRAMS_QUERY}")
        };
        let session = self.endpoint.connect(url.as_str()).await.map_err(conn_err)?;
        let opening = session.open_bi().await.map_err(conn_err)?;
        let (send, recv) = opening.await.map_err(conn_err)?;
        Ok(RawSession {
            session,
            send,
            recv,
            buf: BytesMut::new(),
        })
    }
}

/// An open WebTransport session and its stream, before or without the
/// protocol client on top.
pub struct RawSession {
    /// The session.
    pub session: wtransport::Connection,
    /// The sending half of the stream.
    pub send: wtransport::SendStream,
    /// The receiving half of the stream.
    pub recv: wtransport::RecvStream,
    buf: BytesMut,
}

impl RawSession {
    /// Writes bytes to the stream as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send.write_all(bytes).await.map_err(conn_err)
    }

    /// Writes one frame with its length prefix.
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        self.write_raw(&codec::prefix(frame)).await
    }

    /// The next frame body from the stream; `Ok(None)` when it ended.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        read_frame(&mut self.recv, &mut self.buf).await
    }

    /// The next relay frame from the stream (an error if it ended).
    pub async fn read_relay_frame(&mut self) -> Result<RelayFrame, ClientError> {
        match self.read_frame().await? {
            Some(b) => codec::decode(&b).map_err(conn_err),
            None => Err(ClientError::Connection("stream ended".into())),
        }
    }
}

async fn read_frame(recv: &mut wtransport::RecvStream, buf: &mut BytesMut) -> Result<Option<Bytes>, ClientError> {
    loop {
        match codec::split_frame(buf, MAX_FRAME_LEN) {
            Ok(Some(total)) => {
                let mut frame = buf.split_to(total);
                return Ok(Some(frame.split_off(LENGTH_PREFIX_LEN).freeze()));
            }
            Ok(None) => {}
            Err(e) => return Err(conn_err(e)),
        }
        match recv.quic_stream_mut().read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => return Ok(None),
            Err(e) => return Err(conn_err(e)),
        }
    }
}

impl HandshakeIo for RawSession {
    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.write_frame(&frame).await
    }
    async fn recv_frame(&mut self) -> Result<RelayFrame, ClientError> {
        self.read_relay_frame().await
    }
}

/// Connects and authenticates over WebTransport, then starts the reader and
/// writer tasks.
pub(super) async fn connect(
    identity: &Identity,
    opts: &ConnectOptions,
    endpoint: &WebTransportEndpoint,
) -> Result<Established, ClientError> {
    if !opts.url.starts_with("https://") {
        return Err(ClientError::Config("a WebTransport URL starts with https://".into()));
    }
    let mut raw = endpoint.open(&opts.url).await?;
    let mut binding = [0u8; 32];
    let binding = raw
        .session
        .export_keying_material(&mut binding, hush_protocol::auth::BINDING_EXPORTER_LABEL, &[])
        .ok()
        .map(|()| binding);
    let (challenge, ready) = handshake(&mut raw, identity, opts, binding).await?;
    let RawSession {
        session,
        mut send,
        mut recv,
        mut buf,
    } = raw;
    let pending: Pending = Arc::default();
    let datagrams = Arc::new(DatagramCounts::default());
    let (events_tx, events) = mpsc::channel(opts.event_buffer);
    let (out, mut out_rx) = mpsc::channel::<Outgoing>(1024);

    let writer_session = session.clone();
    let counts = datagrams.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let bytes = match o {
                Outgoing::Datagram(b) => {
                    if writer_session.max_datagram_size().is_some_and(|max| b.len() <= max)
                        && writer_session.send_datagram(&b).is_ok()
                    {
                        counts.sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    codec::prefix(&b)
                }
                Outgoing::Frame(b) => codec::prefix(&b),
                Outgoing::Raw(b) => b,
                Outgoing::RawDatagram(b) => {
                    let _ = writer_session.send_datagram(&b);
                    continue;
                }
            };
            if send.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // Closed by the caller: finish the stream, let the relay read it, and
        // close the session.
        let _ = send.quic_stream_mut().finish();
        let _ = tokio::time::timeout(Duration::from_secs(1), send.quic_stream_mut().stopped()).await;
        writer_session.close(wtransport::VarInt::from_u32(0), b"client closed");
    });

    let pending2 = pending.clone();
    let counts = datagrams.clone();
    let reader = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut recv, &mut buf) => match f {
                    Ok(Some(b)) => codec::decode::<RelayFrame>(&b),
                    _ => break,
                },
                d = session.receive_datagram() => match d {
                    Ok(d) => {
                        counts.received.fetch_add(1, Ordering::Relaxed);
                        match hush_protocol::datagram::decode_relay(&d.payload()) {
                            Ok(f) => Ok(f),
                            // A datagram that does not decode is dropped: it may
                            // be from a newer relay, and losing it is allowed.
                            Err(_) => continue,
                        }
                    }
                    Err(_) => break,
                },
            };
            let Ok(frame) = frame else { break };
            if !dispatch(frame, &pending2, &events_tx).await {
                break;
            }
        }
        super::close_pending(&pending2);
    });
    Ok(Established {
        challenge,
        ready,
        transport: Transport::WebTransport,
        datagrams,
        out,
        events,
        pending,
        reader,
        writer,
    })
}
