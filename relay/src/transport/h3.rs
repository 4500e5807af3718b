//! The part of HTTP/3 a WebTransport server needs (RFC 9114, RFC 9220,
//! draft-ietf-webtrans-http3), written directly on quinn.
//!
//! A general HTTP/3 library keeps a driver task and several channels per
//! connection (about 35 KiB of an idle session's 75, measured, see
//! `BENCHMARKS.md`). A hush session needs much less: exchange SETTINGS,
//! answer one extended CONNECT, accept one bidirectional WebTransport stream,
//! carry datagrams, and close the session with a CLOSE_WEBTRANSPORT_SESSION
//! capsule. This module does that with no task of its own: the setup is one
//! future ([`accept_session`]) bounded by the relay's handshake deadline, and
//! afterwards the session's reader watches the control and CONNECT streams.
//!
//! Header blocks are QPACK-encoded and decoded with `wtransport-proto` (static
//! table and literals only: the relay advertises a dynamic table of 0, so a
//! peer cannot make it hold one).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use futures_util::stream::{FuturesUnordered, StreamExt};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use wtransport::proto::frame::Frame;
use wtransport::proto::headers::Headers;
use wtransport::proto::session::{SessionRequest, SessionResponse};
use wtransport::proto::settings::Settings;
use wtransport::quinn::{self, VarInt};

use super::TransportError;

/// HTTP/3 error codes (RFC 9114 section 8.1) the relay uses.
pub mod code {
    /// No error: the connection or stream closed normally.
    pub const NO_ERROR: u32 = 0x100;
    /// A stream type was not allowed here.
    pub const STREAM_CREATION_ERROR: u32 = 0x103;
    /// A critical stream (control) was closed.
    pub const CLOSED_CRITICAL_STREAM: u32 = 0x104;
    /// A frame was not allowed in this state or on this stream.
    pub const FRAME_UNEXPECTED: u32 = 0x105;
    /// A frame was malformed.
    pub const FRAME_ERROR: u32 = 0x106;
    /// The request was refused before any processing.
    pub const REQUEST_REJECTED: u32 = 0x10b;
    /// The peer's SETTINGS did not come first on its control stream.
    pub const MISSING_SETTINGS: u32 = 0x10a;
    /// Malformed request or response (bad headers).
    pub const MESSAGE_ERROR: u32 = 0x10e;
    /// WebTransport: a stream arrived for a session that does not exist.
    pub const WT_BUFFERED_STREAM_REJECTED: u32 = 0x3994_bd84;
}

/// Unidirectional stream types (RFC 9114 6.2, RFC 9204 4.2, WebTransport).
mod stream_type {
    pub const CONTROL: u64 = 0x00;
    pub const QPACK_ENCODER: u64 = 0x02;
    pub const QPACK_DECODER: u64 = 0x03;
}

/// Frame types (RFC 9114 7.2, WebTransport).
mod frame_type {
    pub const DATA: u64 = 0x00;
    pub const HEADERS: u64 = 0x01;
    pub const SETTINGS: u64 = 0x04;
    /// Signal at the start of a WebTransport bidirectional stream, followed
    /// by the session id (no length).
    pub const WEBTRANSPORT_STREAM: u64 = 0x41;
}

/// CLOSE_WEBTRANSPORT_SESSION capsule type.
const CLOSE_SESSION_CAPSULE: u64 = 0x2843;

/// Largest HEADERS or SETTINGS frame the relay reads. A WebTransport CONNECT
/// is a few hundred bytes; anything bigger is refused before it is buffered.
const MAX_CONTROL_FRAME: u64 = 16 * 1024;

/// Largest reason a CLOSE_WEBTRANSPORT_SESSION capsule may carry.
const MAX_CLOSE_REASON: usize = 1024;

/// Appends a QUIC variable-length integer (RFC 9000 16). Values above 2^62-1
/// do not occur here (types, lengths and ids are all smaller).
pub fn put_varint(buf: &mut impl BufMut, v: u64) {
    if v < 1 << 6 {
        buf.put_u8(v as u8);
    } else if v < 1 << 14 {
        buf.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        buf.put_u64(0xc000_0000_0000_0000 | (v & 0x3fff_ffff_ffff_ffff));
    }
}

/// Reads a QUIC variable-length integer from the front of `buf`: `Ok(None)`
/// if `buf` does not hold all of it yet.
pub fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    buf.advance(len);
    Some(v)
}

fn io(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(format!("{what}: {e}"))
}

fn protocol(conn: &quinn::Connection, h3_code: u32, what: &str) -> TransportError {
    conn.close(VarInt::from_u32(h3_code), what.as_bytes());
    TransportError::Protocol(format!("HTTP/3: {what}"))
}

/// Reads one varint from a stream, a byte at a time (only used for the few
/// bytes at the start of streams); `Ok(None)` if the stream ended first.
async fn read_varint(recv: &mut quinn::RecvStream) -> Result<Option<u64>, TransportError> {
    let mut first = [0u8; 1];
    match recv.read_exact(&mut first).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Ok(None),
        Err(e) => return Err(io("reading a stream header", e)),
    }
    let len = 1usize << (first[0] >> 6);
    let mut rest = [0u8; 8];
    recv.read_exact(&mut rest[..len - 1])
        .await
        .map_err(|e| io("reading a stream header", e))?;
    let mut v = u64::from(first[0] & 0x3f);
    for b in &rest[..len - 1] {
        v = (v << 8) | u64::from(*b);
    }
    Ok(Some(v))
}

/// Reads frames until one that is not a reserved ("grease") or unknown type,
/// which HTTP/3 says to ignore; returns its type and payload.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<(u64, Vec<u8>)>, TransportError> {
    loop {
        let Some(kind) = read_varint(recv).await? else {
            return Ok(None);
        };
        let Some(len) = read_varint(recv).await? else {
            return Ok(None);
        };
        if len > MAX_CONTROL_FRAME {
            return Err(TransportError::TooLarge {
                len: len as usize,
                max: MAX_CONTROL_FRAME as usize,
            });
        }
        let mut payload = vec![0u8; len as usize];
        recv.read_exact(&mut payload)
            .await
            .map_err(|e| io("reading an HTTP/3 frame", e))?;
        if matches!(kind, frame_type::DATA | frame_type::HEADERS | frame_type::SETTINGS) {
            return Ok(Some((kind, payload)));
        }
    }
}

fn frame_bytes(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    put_varint(&mut out, kind);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The relay's SETTINGS: no QPACK dynamic table, extended CONNECT, HTTP/3
/// datagrams, WebTransport with one session per connection (what a browser
/// and wtransport-based clients look for, in the draft's several spellings).
fn settings_frame() -> Vec<u8> {
    let settings = Settings::builder()
        .qpack_max_table_capacity(wtransport::VarInt::from_u32(0))
        .qpack_blocked_streams(wtransport::VarInt::from_u32(0))
        .enable_connect_protocol()
        .enable_webtransport()
        .enable_h3_datagrams()
        .webtransport_max_sessions(wtransport::VarInt::from_u32(1))
        .build();
    let mut out = Vec::new();
    put_varint(&mut out, stream_type::CONTROL);
    out.extend_from_slice(&frame_bytes(frame_type::SETTINGS, settings.generate_frame().payload()));
    out
}

/// The streams HTTP/3 needs for the life of a connection. Dropping them
/// would close critical streams, which the peer treats as a connection error.
pub struct H3Streams {
    /// The relay's control stream (SETTINGS sent).
    pub control: quinn::SendStream,
    /// The peer's control stream; read (and discarded) by the session so the
    /// relay notices it closing.
    pub peer_control: quinn::RecvStream,
    /// The peer's QPACK streams: held, never read (no dynamic table).
    pub qpack: Vec<quinn::RecvStream>,
    /// Streams the peer opened whose type had not arrived when the session
    /// started (a browser may open its QPACK streams then): held unread, for
    /// the same reason.
    pub untyped: FuturesUnordered<TypedUni>,
}

/// A peer's unidirectional stream, resolving to its type once that is read.
pub type TypedUni = Pin<Box<dyn Future<Output = Result<(Option<u64>, quinn::RecvStream), TransportError>> + Send>>;

/// A CONNECT request the relay has read but not yet answered.
pub struct Request {
    /// The CONNECT stream: its id is the session id.
    pub send: quinn::SendStream,
    /// The CONNECT stream's receiving half (capsules after the response).
    pub recv: quinn::RecvStream,
    /// The request's `:path` (with the query).
    pub path: String,
    /// Control and QPACK streams.
    pub streams: H3Streams,
}

impl Request {
    /// The session id: the CONNECT stream's id.
    pub fn session_id(&self) -> u64 {
        u64::from(self.send.id())
    }

    /// Answers with `status` (200 accepts the session).
    pub async fn respond(&mut self, status: u16) -> Result<(), TransportError> {
        let response = match status {
            200 => SessionResponse::ok(),
            404 => SessionResponse::not_found(),
            _ => SessionResponse::forbidden(),
        };
        let frame = frame_bytes(frame_type::HEADERS, response.headers().generate_frame().payload());
        self.send
            .write_all(&frame)
            .await
            .map_err(|e| io("writing the CONNECT response", e))
    }
}

/// One unidirectional stream the peer opened, after its type was read.
async fn typed_uni(mut recv: quinn::RecvStream) -> Result<(Option<u64>, quinn::RecvStream), TransportError> {
    let kind = read_varint(&mut recv).await?;
    Ok((kind, recv))
}

/// Runs the HTTP/3 side of a new QUIC connection until a WebTransport CONNECT
/// request has arrived: sends the relay's SETTINGS, reads the peer's, reads
/// the request. Streams of other types are refused; a request that is not an
/// extended CONNECT for WebTransport is refused and the next one awaited.
pub async fn accept_session(conn: &quinn::Connection) -> Result<Request, TransportError> {
    let mut control = conn.open_uni().await.map_err(|e| io("opening the control stream", e))?;
    control
        .write_all(&settings_frame())
        .await
        .map_err(|e| io("sending SETTINGS", e))?;

    let mut uni: FuturesUnordered<TypedUni> = FuturesUnordered::new();
    let mut peer_control: Option<quinn::RecvStream> = None;
    let mut qpack = Vec::new();
    let mut request: Option<(quinn::SendStream, quinn::RecvStream, String)> = None;
    loop {
        if let (Some(_), Some(_)) = (&peer_control, &request) {
            break;
        }
        tokio::select! {
            s = conn.accept_uni() => {
                let s = s.map_err(|e| io("accepting a stream", e))?;
                uni.push(Box::pin(typed_uni(s)));
            }
            Some(typed) = uni.next(), if !uni.is_empty() => {
                let (kind, mut s) = typed?;
                match kind {
                    Some(stream_type::CONTROL) if peer_control.is_none() => {
                        match read_frame(&mut s).await? {
                            Some((frame_type::SETTINGS, payload)) => {
                                if Settings::with_frame(&Frame::new_settings(Cow::Owned(payload))).is_err() {
                                    return Err(protocol(conn, code::FRAME_ERROR, "malformed SETTINGS"));
                                }
                            }
                            Some(_) => return Err(protocol(conn, code::MISSING_SETTINGS, "SETTINGS must come first")),
                            None => return Err(protocol(conn, code::CLOSED_CRITICAL_STREAM, "control stream closed")),
                        }
                        peer_control = Some(s);
                    }
                    Some(stream_type::CONTROL) => {
                        return Err(protocol(conn, code::STREAM_CREATION_ERROR, "second control stream"));
                    }
                    Some(stream_type::QPACK_ENCODER | stream_type::QPACK_DECODER) if qpack.len() < 2 => qpack.push(s),
                    // Push streams, WebTransport streams (the relay uses none),
                    // reserved and unknown types: not read.
                    _ => {
                        let _ = s.stop(VarInt::from_u32(code::STREAM_CREATION_ERROR));
                    }
                }
            }
            s = conn.accept_bi(), if request.is_none() => {
                let (mut send, mut recv) = s.map_err(|e| io("accepting a stream", e))?;
                match read_frame(&mut recv).await? {
                    Some((frame_type::HEADERS, payload)) => {
                        let headers = Headers::with_frame(&Frame::new_headers(Cow::Owned(payload)))
                            .map_err(|_| protocol(conn, code::MESSAGE_ERROR, "undecodable headers"))?;
                        match SessionRequest::try_from(headers) {
                            Ok(r) => request = Some((send, recv, r.path().to_owned())),
                            Err(_) => {
                                // Not a WebTransport CONNECT: refuse this request only.
                                let _ = recv.stop(VarInt::from_u32(code::REQUEST_REJECTED));
                                let _ = send.reset(VarInt::from_u32(code::REQUEST_REJECTED));
                            }
                        }
                    }
                    Some(_) => return Err(protocol(conn, code::FRAME_UNEXPECTED, "a request must start with HEADERS")),
                    None => {}
                }
            }
        }
    }
    let (send, recv, path) = request.ok_or_else(|| TransportError::Protocol("no request".into()))?;
    Ok(Request {
        send,
        recv,
        path,
        streams: H3Streams {
            control,
            peer_control: peer_control.ok_or_else(|| TransportError::Protocol("no control stream".into()))?,
            qpack,
            untyped: uni,
        },
    })
}

/// Accepts the client's bidirectional WebTransport stream of `session_id`.
/// Streams of other sessions (there are none with one session per
/// connection) are refused.
pub async fn accept_wt_stream(
    conn: &quinn::Connection,
    session_id: u64,
) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
    loop {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| io("waiting for the stream", e))?;
        let kind = read_varint(&mut recv).await?;
        let id = if kind == Some(frame_type::WEBTRANSPORT_STREAM) {
            read_varint(&mut recv).await?
        } else {
            None
        };
        if id == Some(session_id) {
            return Ok((send, recv));
        }
        let _ = recv.stop(VarInt::from_u32(code::WT_BUFFERED_STREAM_REJECTED));
        let _ = send.reset(VarInt::from_u32(code::WT_BUFFERED_STREAM_REJECTED));
    }
}

/// A DATA frame holding a CLOSE_WEBTRANSPORT_SESSION capsule: the
/// application's 32-bit code and a reason (truncated to 1,024 bytes at a
/// character boundary).
pub fn close_session_capsule(app_code: u32, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut capsule = Vec::with_capacity(reason.len() + 12);
    put_varint(&mut capsule, CLOSE_SESSION_CAPSULE);
    put_varint(&mut capsule, 4 + reason.len() as u64);
    capsule.put_u32(app_code);
    capsule.extend_from_slice(reason);
    frame_bytes(frame_type::DATA, &capsule)
}

/// What the peer sent on the CONNECT stream after the session started.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectStreamEvent {
    /// Nothing decisive yet (a partial frame, or capsules to ignore).
    Nothing,
    /// The peer closed the session (CLOSE_WEBTRANSPORT_SESSION or FIN).
    Closed,
    /// The peer broke the rules (an oversized or non-DATA frame).
    Error,
}

/// Parses what the peer sent on the CONNECT stream. `buf` keeps a partial
/// frame between calls (bounded: a frame over the limit is an error).
pub fn connect_stream_input(buf: &mut BytesMut, chunk: Option<Bytes>) -> ConnectStreamEvent {
    let Some(chunk) = chunk else {
        return ConnectStreamEvent::Closed;
    };
    buf.extend_from_slice(&chunk);
    loop {
        let mut view = &buf[..];
        let (Some(kind), Some(len)) = (get_varint(&mut view), get_varint(&mut view)) else {
            return ConnectStreamEvent::Nothing;
        };
        if len > MAX_CONTROL_FRAME || kind == frame_type::HEADERS || kind == frame_type::SETTINGS {
            return ConnectStreamEvent::Error;
        }
        if (view.len() as u64) < len {
            return ConnectStreamEvent::Nothing;
        }
        let mut payload = &view[..len as usize];
        if kind == frame_type::DATA && get_varint(&mut payload) == Some(CLOSE_SESSION_CAPSULE) {
            return ConnectStreamEvent::Closed;
        }
        let used = buf.len() - view.len() + len as usize;
        buf.advance(used);
        if buf.is_empty() {
            *buf = BytesMut::new();
            return ConnectStreamEvent::Nothing;
        }
    }
}

/// The quarter stream id that prefixes a WebTransport datagram of a session.
pub fn datagram_prefix(session_id: u64) -> u64 {
    session_id / 4
}

/// The payload of an incoming datagram, if it belongs to `session_id`.
pub fn datagram_payload(datagram: Bytes, session_id: u64) -> Option<Bytes> {
    let mut view = &datagram[..];
    let q = get_varint(&mut view)?;
    if q != datagram_prefix(session_id) {
        return None;
    }
    let start = datagram.len() - view.len();
    Some(datagram.slice(start..))
}

/// A datagram for the session: the prefix, then the payload.
pub fn datagram(session_id: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    put_varint(&mut out, datagram_prefix(session_id));
    out.extend_from_slice(payload);
    out.freeze()
}

/// Bytes a datagram of `session_id` adds before the payload.
pub fn datagram_overhead(session_id: u64) -> usize {
    let mut b = Vec::new();
    put_varint(&mut b, datagram_prefix(session_id));
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0u64, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, (1 << 62) - 1] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut view = &b[..];
            assert_eq!(get_varint(&mut view), Some(v));
            assert!(view.is_empty());
            // A truncated one is "need more bytes".
            let mut short = &b[..b.len() - 1];
            if !b.is_empty() && b.len() > 1 {
                assert_eq!(get_varint(&mut short), None);
            }
        }
    }

    #[test]
    fn close_capsule_is_read_back_as_a_close() {
        let bytes = close_session_capsule(7, "bye");
        // DATA frame, 10-byte payload: capsule type 0x2843, length 7, code, "bye".
        assert_eq!(bytes, [0x00, 0x0a, 0x68, 0x43, 0x07, 0, 0, 0, 7, b'b', b'y', b'e']);
        let mut buf = BytesMut::new();
        // Split anywhere, it is only decided once whole.
        assert_eq!(
            connect_stream_input(&mut buf, Some(Bytes::copy_from_slice(&bytes[..5]))),
            ConnectStreamEvent::Nothing
        );
        assert_eq!(
            connect_stream_input(&mut buf, Some(Bytes::copy_from_slice(&bytes[5..]))),
            ConnectStreamEvent::Closed
        );
        assert_eq!(
            connect_stream_input(&mut BytesMut::new(), None),
            ConnectStreamEvent::Closed
        );
    }

    #[test]
    fn other_capsules_are_ignored_and_headers_refused() {
        let mut buf = BytesMut::new();
        // A DATA frame with an unknown capsule (type 0x21, empty).
        let other = frame_bytes(frame_type::DATA, &[0x21, 0x00]);
        assert_eq!(
            connect_stream_input(&mut buf, Some(Bytes::from(other))),
            ConnectStreamEvent::Nothing
        );
        assert!(buf.is_empty());
        let headers = frame_bytes(frame_type::HEADERS, &[0, 0]);
        assert_eq!(
            connect_stream_input(&mut buf, Some(Bytes::from(headers))),
            ConnectStreamEvent::Error
        );
    }

    #[test]
    fn close_reason_is_truncated_at_a_character_boundary() {
        let long = "é".repeat(600); // 1,200 bytes
        let bytes = close_session_capsule(0, &long);
        // DATA type, 2-byte length, 2-byte capsule type, 2-byte length, code, reason.
        let reason_len = bytes.len() - (1 + 2 + 2 + 2 + 4);
        assert_eq!(reason_len, 1024);
    }

    #[test]
    fn datagrams_carry_the_quarter_stream_id() {
        let d = datagram(4, b"hi");
        assert_eq!(&d[..], &[1, b'h', b'i']);
        assert_eq!(datagram_payload(d.clone(), 4).as_deref(), Some(&b"hi"[..]));
        assert_eq!(datagram_payload(d, 0), None);
        assert_eq!(datagram_overhead(0), 1);
    }
}
