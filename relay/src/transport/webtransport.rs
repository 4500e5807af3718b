//! WebTransport (HTTP/3 over QUIC, `https://host:port/wt`): one client-opened
//! bidirectional stream of length-prefixed frames, plus QUIC datagrams for
//! ephemeral signals.
//!
//! The session logic never sees the difference from WebSocket: this adapter
//! turns the stream and the datagrams into the same [`FrameReader`] /
//! [`FrameWriter`] halves.
//!
//! - **Stream.** Each frame is a 4-byte big-endian length and the encoded frame
//!   ([`codec::split_frame`]). A declared length over the limit is refused as soon
//!   as the prefix is read, before the body is buffered.
//! - **Datagrams in.** One bare `ClientFrame::Ephemeral` per datagram, accepted
//!   only after `Ready` (datagrams before it are dropped). A datagram holding
//!   anything else is a [`TransportError::BadDatagram`]: the session answers
//!   `Error{Malformed}` and goes on (it closes after repeated bad input).
//! - **Datagrams out.** Only if the client asked for them (`?datagrams=1` in the
//!   URL) and the peer supports them: `RelayFrame::Ephemeral` and
//!   `RelayFrame::Presence` go as one bare frame per datagram when they fit the
//!   connection's current maximum datagram size, on the stream otherwise.
//!
//! - **Closing.** After its `Closing` frame the relay finishes the stream,
//!   waits briefly for the client to acknowledge it, sends a
//!   CLOSE_WEBTRANSPORT_SESSION capsule on the CONNECT stream (the
//!   application code is the one the WebSocket close would carry, see
//!   [`close_code`]), finishes that stream too and closes the QUIC connection
//!   with `H3_NO_ERROR`. A client that closes the session the same way, or
//!   finishes its CONNECT stream, ends the session.
//!
//! The adapter recognises those frames by their first byte, the enum variant
//! index (`hush_protocol::datagram`); incoming datagrams are checked with
//! [`datagram::decode_client`] before the session sees them.
//!
//! HTTP/3 itself (SETTINGS, the CONNECT request, capsules, datagram prefixes)
//! is in [`super::h3`]: a small implementation on quinn with no task or
//! channel of its own, because a general HTTP/3 library cost an idle session
//! more than everything else together (`BENCHMARKS.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use hush_protocol::codec::{self, CodecError, LENGTH_PREFIX_LEN};
use hush_protocol::datagram::{self, RELAY_READY};
use hush_protocol::frame::CloseReason;
use wtransport::quinn::{self, VarInt};

use super::h3::{self, H3Conn, SessionEnd};
use super::{Connection, FrameReader, FrameWriter, TransportError};
use super::{FrameLimits, OriginPolicy};

/// The path of the WebTransport session (`https://host:port/wt`).
pub const PATH: &str = "/wt";

/// URL query that asks the relay to send ephemeral signals and presence as
/// datagrams (`/wt?datagrams=1`).
pub const DATAGRAMS_QUERY: &str = "datagrams=1";

/// QUIC application error code the relay closes connections with: HTTP/3's
/// `H3_NO_ERROR`. Why a session ended is in the `Closing` frame and in the
/// CLOSE_WEBTRANSPORT_SESSION capsule before it.
pub const CLOSE_CODE: u32 = h3::code::NO_ERROR;

/// How much of a stream to take per read; bounds a read's allocation.
const READ_CHUNK: usize = 64 * 1024;

/// How long the relay waits for the client to acknowledge the end of the
/// stream, and then the capsule, before closing the connection.
const CLOSE_ACK_WAIT: Duration = Duration::from_millis(400);

/// The WebTransport session error code (in the CLOSE_WEBTRANSPORT_SESSION
/// capsule) for each reason: the same numbers as the WebSocket close codes.
pub fn close_code(reason: CloseReason) -> u32 {
    match reason {
        CloseReason::GoingAway => 1001,
        CloseReason::SlowConsumer | CloseReason::ServerBusy => 1013,
        CloseReason::IdleTimeout | CloseReason::HandshakeTimeout => 1000,
        CloseReason::ProtocolError => 1002,
        CloseReason::AuthFailed => 1008,
    }
}

/// Accepts one WebTransport session: QUIC handshake, HTTP/3 SETTINGS, the
/// extended CONNECT at [`PATH`], and the client's bidirectional stream. The
/// caller bounds the whole of it with the handshake deadline; dropping this
/// future mid-way drops the QUIC connection, which closes it and frees its
/// state.
pub async fn accept(
    incoming: quinn::Incoming,
    limits: FrameLimits,
    origins: Arc<OriginPolicy>,
) -> Result<Connection, TransportError> {
    let conn = incoming
        .accept()
        .map_err(|e| TransportError::Io(format!("QUIC: {e}")))?
        .await
        .map_err(|e| TransportError::Io(format!("QUIC handshake: {e}")))?;
    let (mut h3, control) = H3Conn::start(&conn).await?;
    let mut request = h3.connect().await?;
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let refusal = if path != PATH {
        Some((404, format!("WebTransport path {path} is not {PATH}")))
    } else if !origins.allows(request.origin.as_deref()) {
        let origin = request.origin.as_deref().unwrap_or_default();
        Some((
            403,
            format!("origin {origin} is not allowed (allowed_origins in the relay's configuration)"),
        ))
    } else {
        None
    };
    if let Some((status, why)) = refusal {
        let _ = request.respond(status).await;
        let _ = request.send.finish();
        let _ = tokio::time::timeout(CLOSE_ACK_WAIT, request.send.stopped()).await;
        conn.close(
            VarInt::from_u32(CLOSE_CODE),
            if status == 404 { b"not found" } else { b"forbidden" },
        );
        return Err(TransportError::Protocol(why));
    }
    // RFC 9297: no datagrams to a peer that did not say it takes them.
    let send_datagrams = query.split('&').any(|kv| kv == DATAGRAMS_QUERY) && h3.peer_settings().h3_datagram;
    request.respond(200).await?;
    let session_id = request.session_id();
    let stream = h3.session_stream(&mut request).await?;
    let peer = conn.remote_address();
    let mut binding = [0u8; 32];
    let binding = conn
        .export_keying_material(&mut binding, hush_protocol::auth::BINDING_EXPORTER_LABEL, &[])
        .ok()
        .map(|()| binding);
    let ready = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(Mutex::new(None));
    let goaway = h3.goaway_id();
    Ok(Connection {
        reader: Box::new(WtReader {
            conn: conn.clone(),
            recv: stream.recv,
            buf: BytesMut::from(&stream.first[..]),
            max: limits.max_frame_len,
            max_before_ready: limits.handshake_frame_len.min(limits.max_frame_len),
            ready: ready.clone(),
            session_id,
            h3: Some(h3),
            parked: parked.clone(),
        }),
        writer: Box::new(WtWriter {
            conn,
            send: stream.send,
            session_id,
            send_datagrams,
            ready,
            connect_send: request.send,
            control,
            goaway,
            _parked: parked,
        }),
        peer,
        transport: "webtransport",
        binding,
    })
}

struct WtReader {
    conn: quinn::Connection,
    /// The protocol's stream.
    recv: quinn::RecvStream,
    buf: BytesMut,
    max: usize,
    /// The frame limit until `Ready`.
    max_before_ready: usize,
    /// Set by the writer once `Ready` is on its way: datagrams count from then.
    ready: Arc<AtomicBool>,
    session_id: u64,
    /// The connection's HTTP/3 state: always `Some` until dropped.
    h3: Option<H3Conn>,
    /// Where the HTTP/3 state goes when the reader is dropped.
    parked: Arc<Mutex<Option<H3Conn>>>,
}

// Dropping a quinn receive stream asks the peer to stop sending on it
// (STOP_SENDING), and a stopped control stream is an HTTP/3 connection
// error: the client would close the connection before reading the relay's
// `Closing` frame. The session drops its reader before the writer has
// closed, so the reader parks its HTTP/3 state (which holds the client's
// streams) in the writer, which drops it only after the connection is closed.
impl Drop for WtReader {
    fn drop(&mut self) {
        if let Some(p) = self.h3.take() {
            *self.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
        }
    }
}

impl WtReader {
    /// A whole frame from the buffer, if there is one.
    fn take_frame(&mut self) -> Result<Option<Bytes>, TransportError> {
        let max = if self.ready.load(Ordering::Acquire) {
            self.max
        } else {
            self.max_before_ready
        };
        match codec::split_frame(&self.buf, max) {
            Ok(Some(total)) => {
                let mut frame = self.buf.split_to(total);
                let body = frame.split_off(LENGTH_PREFIX_LEN).freeze();
                if self.buf.is_empty() {
                    // An idle session keeps no read buffer.
                    self.buf = BytesMut::new();
                }
                Ok(Some(body))
            }
            Ok(None) => Ok(None),
            Err(CodecError::FrameTooLarge { len, max }) => Err(TransportError::TooLarge { len, max }),
            Err(e) => Err(TransportError::Protocol(e.to_string())),
        }
    }
}

#[async_trait]
impl FrameReader for WtReader {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            let Some(h3) = self.h3.as_mut() else {
                return Ok(None);
            };
            tokio::select! {
                chunk = self.recv.read_chunk(READ_CHUNK, true) => match chunk {
                    Ok(Some(chunk)) => {
                        if self.buf.is_empty() {
                            self.buf = BytesMut::from(&chunk.bytes[..]);
                        } else {
                            self.buf.extend_from_slice(&chunk.bytes);
                        }
                    }
                    Ok(None) => return Ok(None),
                    Err(quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_)) => return Ok(None),
                    Err(e) => return Err(TransportError::Io(e.to_string())),
                },
                d = self.conn.read_datagram() => match d {
                    Ok(d) => {
                        let payload = match h3::datagram_payload(d, self.session_id) {
                            Ok(Some(p)) => p,
                            Ok(None) => {
                                tracing::debug!("datagram of another session dropped");
                                continue;
                            }
                            Err(e) => {
                                self.conn.close(VarInt::from_u32(e.code), e.reason.as_bytes());
                                return Err(TransportError::Protocol(format!("HTTP/3: {e}")));
                            }
                        };
                        if !self.ready.load(Ordering::Acquire) {
                            tracing::debug!("datagram before Ready dropped");
                            continue;
                        }
                        // The session decodes it again; the check here keeps
                        // anything but an ephemeral signal off this path.
                        if let Err(e) = datagram::decode_client(&payload) {
                            return Err(TransportError::BadDatagram(format!(
                                "{e} (a datagram carries exactly one ClientFrame::Ephemeral)"
                            )));
                        }
                        return Ok(Some(payload));
                    }
                    Err(_) => return Ok(None),
                },
                end = h3.serve() => match end {
                    SessionEnd::Closed => return Ok(None),
                    SessionEnd::Error(e) => return Err(e),
                },
            }
        }
    }
}

struct WtWriter {
    conn: quinn::Connection,
    /// The protocol's stream.
    send: quinn::SendStream,
    session_id: u64,
    /// The client asked for datagrams (`?datagrams=1`).
    send_datagrams: bool,
    ready: Arc<AtomicBool>,
    /// The CONNECT stream: the relay's CLOSE_WEBTRANSPORT_SESSION goes here.
    connect_send: quinn::SendStream,
    /// The relay's HTTP/3 control stream, held open for the connection's
    /// life; the GOAWAY before a close goes here.
    control: quinn::SendStream,
    /// The GOAWAY id: the lowest client bidirectional stream id not seen.
    goaway: Arc<AtomicU64>,
    /// The reader's HTTP/3 state once it is gone.
    _parked: Arc<Mutex<Option<H3Conn>>>,
}

impl Drop for WtWriter {
    fn drop(&mut self) {
        // Close before the fields go: dropping the control stream first would
        // finish it, which the client takes as an HTTP/3 error. A no-op if
        // `close` already ran.
        self.conn.close(VarInt::from_u32(CLOSE_CODE), b"");
    }
}

#[async_trait]
impl FrameWriter for WtWriter {
    async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
        if frame.first() == Some(&RELAY_READY) {
            self.ready.store(true, Ordering::Release);
        }
        if self.send_datagrams
            && datagram::is_relay_datagram_kind(&frame)
            && self
                .conn
                .max_datagram_size()
                .is_some_and(|max| frame.len() + h3::datagram_overhead(self.session_id) <= max)
            && self.conn.send_datagram(h3::datagram(self.session_id, &frame)).is_ok()
        {
            return Ok(());
        }
        let len = u32::try_from(frame.len()).map_err(|_| TransportError::TooLarge {
            len: frame.len(),
            max: u32::MAX as usize,
        })?;
        let mut chunks = [Bytes::copy_from_slice(&len.to_be_bytes()), frame];
        self.send
            .write_all_chunks(&mut chunks)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // quinn sends what was written as soon as congestion control allows.
        Ok(())
    }

    async fn close(&mut self, reason: CloseReason, message: &str) {
        // Closing the QUIC connection at once would discard unsent stream data
        // (the `Closing` frame): finish the stream and wait until the peer has
        // acknowledged it, briefly. Then close the session the WebTransport way,
        // so a browser sees the code and reason, and the connection.
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(CLOSE_ACK_WAIT, self.send.stopped()).await;
        }
        // GOAWAY first (RFC 9114 5.2: no new requests on this connection),
        // and for a shutdown a DRAIN_WEBTRANSPORT_SESSION before the close.
        let goaway = h3::goaway_frame(self.goaway.load(Ordering::Relaxed));
        let mut capsule = Vec::new();
        if reason == CloseReason::GoingAway {
            capsule.extend_from_slice(&h3::drain_session_capsule());
        }
        capsule.extend_from_slice(&h3::close_session_capsule(close_code(reason), message));
        let _ = tokio::time::timeout(CLOSE_ACK_WAIT, async {
            let _ = self.control.write_all(&goaway).await;
            if self.connect_send.write_all(&capsule).await.is_ok() && self.connect_send.finish().is_ok() {
                let _ = self.connect_send.stopped().await;
            }
        })
        .await;
        let reason: String = message.chars().take(100).collect();
        self.conn.close(VarInt::from_u32(CLOSE_CODE), reason.as_bytes());
    }
}
