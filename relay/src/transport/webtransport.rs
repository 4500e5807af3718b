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
//! The adapter recognises those frames by their first byte, the enum variant
//! index (`hush_protocol::datagram`); incoming datagrams are checked with
//! [`datagram::decode_client`] before the session sees them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use hush_protocol::codec::{self, CodecError, LENGTH_PREFIX_LEN};
use hush_protocol::datagram::{self, RELAY_READY};
use hush_protocol::frame::CloseReason;
use wtransport::endpoint::IncomingSession;
use wtransport::quinn;

use super::{Connection, FrameReader, FrameWriter, TransportError};

/// The path of the WebTransport session (`https://host:port/wt`).
pub const PATH: &str = "/wt";

/// URL query that asks the relay to send ephemeral signals and presence as
/// datagrams (`/wt?datagrams=1`).
pub const DATAGRAMS_QUERY: &str = "datagrams=1";

/// QUIC application error code the relay closes connections with after its
/// `Closing` frame (the frame says why; the code is always 0).
pub const CLOSE_CODE: u32 = 0;

/// How much of a stream to take per read; bounds a read's allocation.
const READ_CHUNK: usize = 64 * 1024;

/// Accepts one WebTransport session: QUIC handshake, the HTTP/3 CONNECT at
/// [`PATH`], and the client's bidirectional stream. The caller bounds the whole
/// of it with the handshake deadline; dropping this future mid-way closes the
/// QUIC connection and frees its state.
pub async fn accept(incoming: IncomingSession, max_frame_len: usize) -> Result<Connection, TransportError> {
    let request = incoming
        .await
        .map_err(|e| TransportError::Io(format!("QUIC/HTTP3 setup: {e}")))?;
    let full_path = request.path().to_owned();
    let (path, query) = full_path.split_once('?').unwrap_or((&full_path, ""));
    if path != PATH {
        request.not_found().await;
        return Err(TransportError::Protocol(format!(
            "WebTransport path {path} is not {PATH}"
        )));
    }
    let send_datagrams = query.split('&').any(|kv| kv == DATAGRAMS_QUERY);
    let session = request
        .accept()
        .await
        .map_err(|e| TransportError::Io(format!("WebTransport accept: {e}")))?;
    let (send, recv) = session
        .accept_bi()
        .await
        .map_err(|e| TransportError::Io(format!("waiting for the stream: {e}")))?;
    let peer = session.remote_address();
    let ready = Arc::new(AtomicBool::new(false));
    Ok(Connection {
        reader: Box::new(WtReader {
            session: session.clone(),
            recv,
            buf: BytesMut::new(),
            max: max_frame_len,
            ready: ready.clone(),
        }),
        writer: Box::new(WtWriter {
            session,
            send,
            send_datagrams,
            ready,
        }),
        peer,
        transport: "webtransport",
    })
}

struct WtReader {
    session: wtransport::Connection,
    recv: wtransport::RecvStream,
    buf: BytesMut,
    max: usize,
    /// Set by the writer once `Ready` is on its way: datagrams count from then.
    ready: Arc<AtomicBool>,
}

impl WtReader {
    /// A whole frame from the buffer, if there is one.
    fn take_frame(&mut self) -> Result<Option<Bytes>, TransportError> {
        match codec::split_frame(&self.buf, self.max) {
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
            tokio::select! {
                chunk = self.recv.quic_stream_mut().read_chunk(READ_CHUNK, true) => match chunk {
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
                datagram = self.session.receive_datagram() => match datagram {
                    Ok(d) => {
                        if !self.ready.load(Ordering::Acquire) {
                            tracing::debug!("datagram before Ready dropped");
                            continue;
                        }
                        let payload = d.payload();
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
            }
        }
    }
}

struct WtWriter {
    session: wtransport::Connection,
    send: wtransport::SendStream,
    /// The client asked for datagrams (`?datagrams=1`).
    send_datagrams: bool,
    ready: Arc<AtomicBool>,
}

#[async_trait]
impl FrameWriter for WtWriter {
    async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
        if frame.first() == Some(&RELAY_READY) {
            self.ready.store(true, Ordering::Release);
        }
        if self.send_datagrams
            && datagram::is_relay_datagram_kind(&frame)
            && self.session.max_datagram_size().is_some_and(|max| frame.len() <= max)
            && self.session.send_datagram(&frame).is_ok()
        {
            return Ok(());
        }
        let len = u32::try_from(frame.len()).map_err(|_| TransportError::TooLarge {
            len: frame.len(),
            max: u32::MAX as usize,
        })?;
        let mut chunks = [Bytes::copy_from_slice(&len.to_be_bytes()), frame];
        self.send
            .quic_stream_mut()
            .write_all_chunks(&mut chunks)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // quinn sends what was written as soon as congestion control allows.
        Ok(())
    }

    async fn close(&mut self, _reason: CloseReason, message: &str) {
        // Closing the QUIC connection at once would discard unsent stream data
        // (the `Closing` frame): finish the stream and wait until the peer has
        // acknowledged it, briefly.
        let stream = self.send.quic_stream_mut();
        if stream.finish().is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), stream.stopped()).await;
        }
        let reason: String = message.chars().take(100).collect();
        self.session
            .close(wtransport::VarInt::from_u32(CLOSE_CODE), reason.as_bytes());
    }
}
