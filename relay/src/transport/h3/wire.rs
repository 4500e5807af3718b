//! The byte-level half of the relay's HTTP/3: parsers for everything a peer
//! can send (control stream, SETTINGS, QPACK streams, request headers, the
//! CONNECT stream's capsules, datagrams) and the few frames the relay writes.
//!
//! Nothing here does I/O, so every parser can be fed arbitrary bytes split
//! anywhere (the fuzz target `h3` does exactly that). A parser that returns
//! an [`H3Error`] has found a connection error: the caller closes the QUIC
//! connection with its code.

use std::borrow::Cow;
use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// HTTP/3 and QPACK error codes (RFC 9114 8.1, RFC 9204 6, RFC 9297 5,
/// WebTransport) the relay uses.
pub mod code {
    /// No error: the connection or stream closed normally.
    pub const NO_ERROR: u32 = 0x100;
    /// A stream type was not allowed here (a second control stream, a push
    /// stream from a client).
    pub const STREAM_CREATION_ERROR: u32 = 0x103;
    /// A critical stream (control, QPACK encoder or decoder) was closed.
    pub const CLOSED_CRITICAL_STREAM: u32 = 0x104;
    /// A frame was not allowed in this state or on this stream.
    pub const FRAME_UNEXPECTED: u32 = 0x105;
    /// A frame was malformed.
    pub const FRAME_ERROR: u32 = 0x106;
    /// The peer generated excessive load (a frame or capsule over the relay's
    /// limit).
    pub const EXCESSIVE_LOAD: u32 = 0x107;
    /// An identifier was used wrongly (GOAWAY or MAX_PUSH_ID going the wrong
    /// way, CANCEL_PUSH of a push that was never promised).
    pub const ID_ERROR: u32 = 0x108;
    /// SETTINGS were invalid (an HTTP/2 setting, a duplicate, a bad value).
    pub const SETTINGS_ERROR: u32 = 0x109;
    /// The peer's SETTINGS did not come first on its control stream.
    pub const MISSING_SETTINGS: u32 = 0x10a;
    /// The request was refused before any processing.
    pub const REQUEST_REJECTED: u32 = 0x10b;
    /// Malformed request (bad or missing pseudo-header fields).
    pub const MESSAGE_ERROR: u32 = 0x10e;
    /// A datagram that cannot be parsed (RFC 9297).
    pub const DATAGRAM_ERROR: u32 = 0x33;
    /// A field section the decoder cannot decode (RFC 9204).
    pub const QPACK_DECOMPRESSION_FAILED: u32 = 0x200;
    /// An error on the peer's QPACK encoder stream.
    pub const QPACK_ENCODER_STREAM_ERROR: u32 = 0x201;
    /// An error on the peer's QPACK decoder stream.
    pub const QPACK_DECODER_STREAM_ERROR: u32 = 0x202;
    /// WebTransport: a stream for a session that does not exist (or is not
    /// taken).
    pub const WT_BUFFERED_STREAM_REJECTED: u32 = 0x3994_bd84;
}

/// Unidirectional stream types (RFC 9114 6.2, RFC 9204 4.2).
pub mod stream_type {
    /// The control stream.
    pub const CONTROL: u64 = 0x00;
    /// A push stream (only servers may open one).
    pub const PUSH: u64 = 0x01;
    /// The QPACK encoder stream.
    pub const QPACK_ENCODER: u64 = 0x02;
    /// The QPACK decoder stream.
    pub const QPACK_DECODER: u64 = 0x03;
}

/// Frame types (RFC 9114 7.2, WebTransport).
pub mod frame_type {
    /// DATA.
    pub const DATA: u64 = 0x00;
    /// HEADERS.
    pub const HEADERS: u64 = 0x01;
    /// CANCEL_PUSH.
    pub const CANCEL_PUSH: u64 = 0x03;
    /// SETTINGS.
    pub const SETTINGS: u64 = 0x04;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u64 = 0x05;
    /// GOAWAY.
    pub const GOAWAY: u64 = 0x07;
    /// MAX_PUSH_ID.
    pub const MAX_PUSH_ID: u64 = 0x0d;
    /// HTTP/2 frame types that HTTP/3 reserves (PRIORITY, PING,
    /// WINDOW_UPDATE, CONTINUATION): an error wherever they appear.
    pub const HTTP2_ONLY: [u64; 4] = [0x02, 0x06, 0x08, 0x09];
    /// Signal at the start of a WebTransport bidirectional stream, followed
    /// by the session id (no length).
    pub const WEBTRANSPORT_STREAM: u64 = 0x41;
}

/// Setting identifiers (RFC 9114 7.2.4.1, RFC 9204 5, RFC 9220, RFC 9297,
/// WebTransport).
pub mod setting {
    /// SETTINGS_QPACK_MAX_TABLE_CAPACITY.
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    /// SETTINGS_QPACK_BLOCKED_STREAMS.
    pub const QPACK_BLOCKED_STREAMS: u64 = 0x07;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL.
    pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
    /// SETTINGS_H3_DATAGRAM.
    pub const H3_DATAGRAM: u64 = 0x33;
    /// SETTINGS_ENABLE_WEBTRANSPORT (earlier WebTransport drafts).
    pub const ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
    /// SETTINGS_WEBTRANSPORT_MAX_SESSIONS.
    pub const WEBTRANSPORT_MAX_SESSIONS: u64 = 0xc671_706a;
    /// HTTP/2 setting identifiers that HTTP/3 reserves: an error in SETTINGS.
    pub const HTTP2_ONLY: [u64; 4] = [0x02, 0x03, 0x04, 0x05];
}

/// Capsule types on the CONNECT stream (WebTransport).
pub mod capsule {
    /// CLOSE_WEBTRANSPORT_SESSION: a 32-bit code and a reason.
    pub const CLOSE_SESSION: u64 = 0x2843;
    /// DRAIN_WEBTRANSPORT_SESSION: no payload.
    pub const DRAIN_SESSION: u64 = 0x78ae;
}

/// Largest frame the relay buffers on the control stream, a request stream
/// or the CONNECT stream, and largest capsule: a WebTransport CONNECT is a
/// few hundred bytes. Frames of unknown types are skipped whatever their size.
pub const MAX_FRAME: u64 = 16 * 1024;

/// Largest reason a CLOSE_WEBTRANSPORT_SESSION capsule may carry.
pub const MAX_CLOSE_REASON: usize = 1024;

/// Quarter stream ids at or above this are invalid (RFC 9297 2.1: stream
/// ids are below 2^62).
pub const MAX_QUARTER_STREAM_ID: u64 = 1 << 60;

/// A connection error: the code to close the connection with and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H3Error {
    /// The HTTP/3 or QPACK error code.
    pub code: u32,
    /// What went wrong, sent as the close reason.
    pub reason: Cow<'static, str>,
}

impl H3Error {
    /// An error with a fixed reason.
    pub const fn new(code: u32, reason: &'static str) -> Self {
        H3Error {
            code,
            reason: Cow::Borrowed(reason),
        }
    }
}

impl std::fmt::Display for H3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {:#x})", self.reason, self.code)
    }
}

/// Appends a QUIC variable-length integer (RFC 9000 16). Values of 2^62 and
/// above do not occur here (types, lengths and ids are all smaller).
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

/// Reads a QUIC variable-length integer from the front of `buf`: `None` if
/// `buf` does not hold all of it yet (and then `buf` is left as it was).
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

/// A frame: type, length, payload.
pub fn frame_bytes(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    put_varint(&mut out, kind);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The relay's control stream preamble: the stream type and SETTINGS with no
/// QPACK dynamic table, extended CONNECT, HTTP/3 datagrams and WebTransport
/// with one session per connection (in the spellings of the drafts browsers
/// and libraries use).
pub fn control_preamble() -> Vec<u8> {
    let mut settings = Vec::new();
    for (id, value) in [
        (setting::QPACK_MAX_TABLE_CAPACITY, 0),
        (setting::QPACK_BLOCKED_STREAMS, 0),
        (setting::ENABLE_CONNECT_PROTOCOL, 1),
        (setting::H3_DATAGRAM, 1),
        (setting::ENABLE_WEBTRANSPORT, 1),
        (setting::WEBTRANSPORT_MAX_SESSIONS, 1),
    ] {
        put_varint(&mut settings, id);
        put_varint(&mut settings, value);
    }
    let mut out = Vec::new();
    put_varint(&mut out, stream_type::CONTROL);
    out.extend_from_slice(&frame_bytes(frame_type::SETTINGS, &settings));
    out
}

/// A GOAWAY frame: requests on bidirectional streams from `stream_id` on are
/// not processed.
pub fn goaway_frame(stream_id: u64) -> Vec<u8> {
    let mut id = Vec::new();
    put_varint(&mut id, stream_id);
    frame_bytes(frame_type::GOAWAY, &id)
}

/// A HEADERS frame holding only `:status`, QPACK-encoded from the static
/// table (RFC 9204 Appendix A) or as a literal for codes it lacks.
pub fn status_headers(status: u16) -> Vec<u8> {
    // Required Insert Count 0, Base 0.
    let mut section = vec![0x00, 0x00];
    let index = match status {
        200 => Some(25),
        404 => Some(27),
        503 => Some(28),
        400 => Some(67),
        403 => Some(68),
        _ => None,
    };
    match index {
        // Indexed field line, static table: 11xxxxxx (6-bit prefix).
        Some(i) => put_qpack_int(&mut section, 0xc0, 6, i),
        None => {
            // Literal with a static name reference (`:status` is 24):
            // 0101xxxx (4-bit prefix), then the value with a 7-bit length.
            put_qpack_int(&mut section, 0x50, 4, 24);
            let digits = status.to_string();
            put_qpack_int(&mut section, 0x00, 7, digits.len() as u64);
            section.extend_from_slice(digits.as_bytes());
        }
    }
    frame_bytes(frame_type::HEADERS, &section)
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
    let mut c = Vec::with_capacity(reason.len() + 12);
    put_varint(&mut c, capsule::CLOSE_SESSION);
    put_varint(&mut c, 4 + reason.len() as u64);
    c.put_u32(app_code);
    c.extend_from_slice(reason);
    frame_bytes(frame_type::DATA, &c)
}

/// A DATA frame holding a DRAIN_WEBTRANSPORT_SESSION capsule: the relay is
/// about to close the session.
pub fn drain_session_capsule() -> Vec<u8> {
    let mut c = Vec::new();
    put_varint(&mut c, capsule::DRAIN_SESSION);
    put_varint(&mut c, 0);
    frame_bytes(frame_type::DATA, &c)
}

/// What the relay needs from the peer's SETTINGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// SETTINGS_H3_DATAGRAM = 1: the peer accepts HTTP/3 datagrams.
    pub h3_datagram: bool,
}

/// Parses a SETTINGS payload (RFC 9114 7.2.4): pairs of varints; HTTP/2
/// identifiers, duplicates and values outside their range are
/// H3_SETTINGS_ERROR, a truncated pair H3_FRAME_ERROR.
pub fn parse_settings(mut payload: &[u8]) -> Result<PeerSettings, H3Error> {
    let mut seen = BTreeSet::new();
    let mut out = PeerSettings::default();
    while !payload.is_empty() {
        let (Some(id), Some(value)) = (get_varint(&mut payload), get_varint(&mut payload)) else {
            return Err(H3Error::new(code::FRAME_ERROR, "truncated SETTINGS"));
        };
        if setting::HTTP2_ONLY.contains(&id) {
            return Err(H3Error::new(code::SETTINGS_ERROR, "HTTP/2 setting in SETTINGS"));
        }
        if !seen.insert(id) {
            return Err(H3Error::new(code::SETTINGS_ERROR, "setting sent twice"));
        }
        let boolean = matches!(id, setting::ENABLE_CONNECT_PROTOCOL | setting::H3_DATAGRAM);
        if boolean && value > 1 {
            return Err(H3Error::new(code::SETTINGS_ERROR, "setting value out of range"));
        }
        if id == setting::H3_DATAGRAM {
            out.h3_datagram = value == 1;
        }
    }
    Ok(out)
}

/// Incremental frame splitter shared by the streams that carry frames:
/// buffers a known frame whole (at most [`MAX_FRAME`] bytes) and skips the
/// payload of a frame the caller does not want without buffering it.
#[derive(Debug, Default)]
struct Frames {
    buf: BytesMut,
    /// Bytes of an ignored frame's payload still to drop.
    skip: u64,
}

/// What [`Frames::next`] found.
enum Next {
    /// A whole frame.
    Frame(u64, Bytes),
    /// Need more bytes.
    More,
}

impl Frames {
    fn push(&mut self, mut chunk: &[u8]) {
        if self.skip > 0 {
            let n = (self.skip as usize).min(chunk.len());
            chunk = &chunk[n..];
            self.skip -= n as u64;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next frame whose type `keep` accepts; frames it refuses are
    /// skipped (they are unknown or reserved types, which HTTP/3 ignores).
    fn next(&mut self, keep: impl Fn(u64) -> bool) -> Result<Next, H3Error> {
        loop {
            if self.skip > 0 {
                let n = (self.skip as usize).min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(Next::More);
                }
            }
            let mut view = &self.buf[..];
            let (Some(kind), Some(len)) = (get_varint(&mut view), get_varint(&mut view)) else {
                return Ok(Next::More);
            };
            let header = self.buf.len() - view.len();
            if !keep(kind) {
                self.buf.advance(header);
                self.skip = len;
                continue;
            }
            if len > MAX_FRAME {
                return Err(H3Error::new(
                    code::EXCESSIVE_LOAD,
                    "frame over the relay's 16 KiB limit",
                ));
            }
            if (view.len() as u64) < len {
                return Ok(Next::More);
            }
            self.buf.advance(header);
            let payload = self.buf.split_to(len as usize).freeze();
            if self.buf.is_empty() {
                // An idle stream keeps no buffer.
                self.buf = BytesMut::new();
            }
            return Ok(Next::Frame(kind, payload));
        }
    }
}

/// Frame types that have a meaning on a control stream (everything else is
/// skipped, as HTTP/3 requires for unknown types).
fn control_known(kind: u64) -> bool {
    matches!(
        kind,
        frame_type::DATA
            | frame_type::HEADERS
            | frame_type::CANCEL_PUSH
            | frame_type::SETTINGS
            | frame_type::PUSH_PROMISE
            | frame_type::GOAWAY
            | frame_type::MAX_PUSH_ID
    ) || frame_type::HTTP2_ONLY.contains(&kind)
}

/// A payload that must be exactly one varint.
fn single_varint(payload: &[u8], what: &'static str) -> Result<u64, H3Error> {
    let mut view = payload;
    match get_varint(&mut view) {
        Some(v) if view.is_empty() => Ok(v),
        _ => Err(H3Error::new(code::FRAME_ERROR, what)),
    }
}

/// Something the peer's control stream said that the connection acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    /// The peer's SETTINGS (always the first event).
    Settings(PeerSettings),
    /// The peer is going away (it will start no new requests).
    GoAway(u64),
}

/// The peer's control stream, after its type byte (RFC 9114 6.2.1, 7.2).
#[derive(Debug, Default)]
pub struct ControlIn {
    frames: Frames,
    settings: bool,
    goaway: Option<u64>,
    max_push_id: Option<u64>,
}

impl ControlIn {
    /// Feeds bytes read from the stream (`None`: the stream ended, which is
    /// always an error). Returns what the frames completed by them said.
    pub fn input(&mut self, chunk: Option<&[u8]>) -> Result<Vec<ControlEvent>, H3Error> {
        let Some(chunk) = chunk else {
            return Err(H3Error::new(code::CLOSED_CRITICAL_STREAM, "control stream closed"));
        };
        self.frames.push(chunk);
        let mut events = Vec::new();
        loop {
            let have_settings = self.settings;
            let (kind, payload) = match self.frames.next(|k| !have_settings || control_known(k))? {
                Next::Frame(kind, payload) => (kind, payload),
                Next::More => return Ok(events),
            };
            if !self.settings {
                if kind != frame_type::SETTINGS {
                    return Err(H3Error::new(code::MISSING_SETTINGS, "SETTINGS must come first"));
                }
                self.settings = true;
                events.push(ControlEvent::Settings(parse_settings(&payload)?));
                continue;
            }
            match kind {
                frame_type::SETTINGS => {
                    return Err(H3Error::new(code::FRAME_UNEXPECTED, "second SETTINGS"));
                }
                frame_type::GOAWAY => {
                    let id = single_varint(&payload, "malformed GOAWAY")?;
                    if self.goaway.is_some_and(|before| id > before) {
                        return Err(H3Error::new(code::ID_ERROR, "GOAWAY id increased"));
                    }
                    self.goaway = Some(id);
                    events.push(ControlEvent::GoAway(id));
                }
                frame_type::MAX_PUSH_ID => {
                    let id = single_varint(&payload, "malformed MAX_PUSH_ID")?;
                    if self.max_push_id.is_some_and(|before| id < before) {
                        return Err(H3Error::new(code::ID_ERROR, "MAX_PUSH_ID decreased"));
                    }
                    self.max_push_id = Some(id);
                }
                frame_type::CANCEL_PUSH => {
                    single_varint(&payload, "malformed CANCEL_PUSH")?;
                    // The relay never promises a push, so no push id can be
                    // cancelled (RFC 9114 7.2.3).
                    return Err(H3Error::new(code::ID_ERROR, "CANCEL_PUSH of a push never promised"));
                }
                _ => {
                    return Err(H3Error::new(
                        code::FRAME_UNEXPECTED,
                        "frame not allowed on the control stream",
                    ));
                }
            }
        }
    }
}

/// A QPACK integer of 2^62 or more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntOverflow;

/// Reads a QPACK prefixed integer (RFC 9204 4.1.1, RFC 7541 5.1) with an
/// `n`-bit prefix from the front of `buf`: `Ok(None)` if incomplete.
pub fn qpack_int(buf: &[u8], n: u32) -> Result<Option<(u64, usize)>, IntOverflow> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let max = (1u64 << n) - 1;
    let mut v = u64::from(first) & max;
    if v < max {
        return Ok(Some((v, 1)));
    }
    let mut shift = 0u32;
    for (i, &b) in buf[1..].iter().enumerate() {
        if shift > 56 {
            return Err(IntOverflow);
        }
        v = v.checked_add(u64::from(b & 0x7f) << shift).ok_or(IntOverflow)?;
        if v >= 1 << 62 {
            return Err(IntOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(Some((v, i + 2)));
        }
        shift += 7;
    }
    Ok(None)
}

/// Appends a QPACK prefixed integer: `bits` holds the pattern above the
/// `n`-bit prefix.
pub fn put_qpack_int(out: &mut Vec<u8>, bits: u8, n: u32, v: u64) {
    let max = (1u64 << n) - 1;
    if v < max {
        out.push(bits | v as u8);
        return;
    }
    out.push(bits | max as u8);
    let mut rest = v - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Longest instruction prefix kept while waiting for the rest of it.
const MAX_INSTRUCTION: usize = 16;

/// The peer's QPACK encoder stream (RFC 9204 4.3), which talks to the
/// relay's decoder. The relay's table capacity is 0, so the only valid
/// instruction is Set Dynamic Table Capacity to 0; any insert or duplicate,
/// or a capacity above 0, is QPACK_ENCODER_STREAM_ERROR.
#[derive(Debug, Default)]
pub struct EncoderIn {
    buf: Vec<u8>,
}

impl EncoderIn {
    /// Feeds bytes read from the stream (`None`: it ended, an error).
    pub fn input(&mut self, chunk: Option<&[u8]>) -> Result<(), H3Error> {
        let Some(chunk) = chunk else {
            return Err(H3Error::new(
                code::CLOSED_CRITICAL_STREAM,
                "QPACK encoder stream closed",
            ));
        };
        self.buf.extend_from_slice(chunk);
        let err = |reason| H3Error::new(code::QPACK_ENCODER_STREAM_ERROR, reason);
        let mut at = 0;
        while at < self.buf.len() {
            let first = self.buf[at];
            if first & 0xe0 != 0x20 {
                return Err(err("insert into a dynamic table of capacity 0"));
            }
            match qpack_int(&self.buf[at..], 5) {
                Ok(Some((0, used))) => at += used,
                Ok(Some(_)) => return Err(err("dynamic table capacity above the advertised 0")),
                Ok(None) => break,
                Err(IntOverflow) => return Err(err("integer overflow")),
            }
        }
        self.buf.drain(..at);
        if self.buf.len() > MAX_INSTRUCTION {
            return Err(err("instruction too long"));
        }
        Ok(())
    }
}

/// The peer's QPACK decoder stream (RFC 9204 4.4), which talks to the
/// relay's encoder. The relay never references the dynamic table, so a
/// Section Acknowledgment or an Insert Count Increment is
/// QPACK_DECODER_STREAM_ERROR; Stream Cancellation is fine.
#[derive(Debug, Default)]
pub struct DecoderIn {
    buf: Vec<u8>,
}

impl DecoderIn {
    /// Feeds bytes read from the stream (`None`: it ended, an error).
    pub fn input(&mut self, chunk: Option<&[u8]>) -> Result<(), H3Error> {
        let Some(chunk) = chunk else {
            return Err(H3Error::new(
                code::CLOSED_CRITICAL_STREAM,
                "QPACK decoder stream closed",
            ));
        };
        self.buf.extend_from_slice(chunk);
        let err = |reason| H3Error::new(code::QPACK_DECODER_STREAM_ERROR, reason);
        let mut at = 0;
        while at < self.buf.len() {
            let first = self.buf[at];
            if first & 0x80 != 0 {
                return Err(err("Section Acknowledgment of a section that needs none"));
            }
            if first & 0x40 == 0 {
                return Err(err("Insert Count Increment with no inserts"));
            }
            match qpack_int(&self.buf[at..], 6) {
                Ok(Some((_, used))) => at += used,
                Ok(None) => break,
                Err(IntOverflow) => return Err(err("integer overflow")),
            }
        }
        self.buf.drain(..at);
        if self.buf.len() > MAX_INSTRUCTION {
            return Err(err("instruction too long"));
        }
        Ok(())
    }
}

/// The request fields the relay looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`.
    pub method: Option<String>,
    /// `:protocol` (extended CONNECT, RFC 9220).
    pub protocol: Option<String>,
    /// `:scheme`.
    pub scheme: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:path`, with the query.
    pub path: Option<String>,
    /// `origin`.
    pub origin: Option<String>,
}

/// What a request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// An extended CONNECT for WebTransport with every field it needs.
    WebTransport {
        /// `:path` with the query.
        path: String,
        /// `origin`, if sent.
        origin: Option<String>,
    },
    /// A well-formed request for something else: answered 404.
    Other,
    /// Malformed (RFC 9114 4.3.1, RFC 9220 3): a stream error
    /// H3_MESSAGE_ERROR.
    Malformed,
}

impl RequestHead {
    /// Classifies the request.
    pub fn kind(&self) -> RequestKind {
        let method = self.method.as_deref();
        match method {
            None => RequestKind::Malformed,
            Some("CONNECT") => match (&self.protocol, &self.authority, &self.scheme, &self.path) {
                (Some(p), Some(_), Some(s), Some(path)) => {
                    if p == "webtransport" && s == "https" {
                        RequestKind::WebTransport {
                            path: path.clone(),
                            origin: self.origin.clone(),
                        }
                    } else {
                        RequestKind::Other
                    }
                }
                // A plain CONNECT (a proxy request) has only `:authority`.
                (None, Some(_), None, None) => RequestKind::Other,
                _ => RequestKind::Malformed,
            },
            Some(_) => {
                if self.scheme.is_none() || self.path.as_deref().is_none_or(str::is_empty) || self.protocol.is_some() {
                    RequestKind::Malformed
                } else {
                    RequestKind::Other
                }
            }
        }
    }
}

/// Decodes a request's HEADERS payload (a QPACK field section). A Required
/// Insert Count above 0 references the dynamic table the relay does not
/// have, and a section that does not decode is QPACK_DECOMPRESSION_FAILED
/// (RFC 9204 2.2.3).
pub fn parse_request_headers(payload: &[u8]) -> Result<RequestHead, H3Error> {
    let fail = |reason| H3Error::new(code::QPACK_DECOMPRESSION_FAILED, reason);
    match qpack_int(payload, 8) {
        Ok(Some((0, _))) => {}
        Ok(Some(_)) => return Err(fail("Required Insert Count above 0 with no dynamic table")),
        Ok(None) | Err(IntOverflow) => return Err(fail("truncated field section prefix")),
    }
    check_field_section(payload)?;
    let frame = wtransport::proto::frame::Frame::new_headers(Cow::Borrowed(payload));
    let headers =
        wtransport::proto::headers::Headers::with_frame(&frame).map_err(|_| fail("undecodable field section"))?;
    let get = |k: &str| headers.get(k).map(str::to_owned);
    Ok(RequestHead {
        method: get(":method"),
        protocol: get(":protocol"),
        scheme: get(":scheme"),
        authority: get(":authority"),
        path: get(":path"),
        origin: get("origin"),
    })
}

/// Walks a field section's structure (RFC 9204 4.5) before it is decoded:
/// every integer must be below 2^32 and every string within the section.
/// The decoder the relay uses does not bound its integers (an overlong one
/// overflows a shift), so nothing reaches it unchecked.
fn check_field_section(p: &[u8]) -> Result<(), H3Error> {
    let fail = || H3Error::new(code::QPACK_DECOMPRESSION_FAILED, "malformed field section");
    let int = |at: &mut usize, n: u32| -> Result<u64, H3Error> {
        match qpack_int(&p[*at..], n) {
            Ok(Some((v, used))) if v < 1 << 32 => {
                *at += used;
                Ok(v)
            }
            _ => Err(fail()),
        }
    };
    // A string: Huffman flag and 7-bit length at `at` (or a 3-bit length for
    // a literal name), then that many bytes.
    let string = |at: &mut usize, n: u32| -> Result<(), H3Error> {
        let len = int(at, n)? as usize;
        *at = at.checked_add(len).filter(|end| *end <= p.len()).ok_or_else(fail)?;
        Ok(())
    };
    let mut at = 0;
    int(&mut at, 8)?; // Required Insert Count
    int(&mut at, 7)?; // sign and Delta Base
    while at < p.len() {
        let b = p[at];
        if b & 0x80 != 0 {
            int(&mut at, 6)?; // indexed
        } else if b & 0x40 != 0 {
            int(&mut at, 4)?; // literal, name reference
            string(&mut at, 7)?;
        } else if b & 0x20 != 0 {
            string(&mut at, 3)?; // literal, literal name
            string(&mut at, 7)?;
        } else if b & 0x10 != 0 {
            int(&mut at, 4)?; // indexed, post-base
        } else {
            int(&mut at, 3)?; // literal, post-base name reference
            string(&mut at, 7)?;
        }
    }
    Ok(())
}

/// What the start of a bidirectional stream from the peer is.
#[derive(Debug, PartialEq, Eq)]
pub enum BidiHead {
    /// A WebTransport stream of session `0`; the stream's data follows.
    WebTransport(u64),
    /// A request: its HEADERS payload.
    Request(Bytes),
}

/// Reads the start of a bidirectional stream the peer opened: a
/// WebTransport stream signal and session id, or a request's first HEADERS
/// (unknown frame types before it are skipped). `Ok(None)`: need more bytes.
/// `end` says the stream finished after `buf`.
pub fn bidi_head(buf: &[u8], end: bool) -> Result<Option<(BidiHead, usize)>, H3Error> {
    let mut at = 0;
    loop {
        let mut view = &buf[at..];
        let Some(kind) = get_varint(&mut view) else {
            return incomplete(end);
        };
        if kind == frame_type::WEBTRANSPORT_STREAM && at == 0 {
            let Some(session) = get_varint(&mut view) else {
                return incomplete(end);
            };
            return Ok(Some((BidiHead::WebTransport(session), buf.len() - view.len())));
        }
        let Some(len) = get_varint(&mut view) else {
            return incomplete(end);
        };
        let header = buf.len() - view.len() - at;
        match kind {
            frame_type::HEADERS => {
                if len > MAX_FRAME {
                    return Err(H3Error::new(code::EXCESSIVE_LOAD, "request headers over 16 KiB"));
                }
                if (view.len() as u64) < len {
                    return incomplete(end);
                }
                let start = at + header;
                let payload = Bytes::copy_from_slice(&buf[start..start + len as usize]);
                return Ok(Some((BidiHead::Request(payload), start + len as usize)));
            }
            frame_type::DATA => {
                return Err(H3Error::new(code::FRAME_UNEXPECTED, "DATA before HEADERS"));
            }
            k if control_known(k) || k == frame_type::WEBTRANSPORT_STREAM => {
                return Err(H3Error::new(
                    code::FRAME_UNEXPECTED,
                    "frame not allowed on a request stream",
                ));
            }
            _ => {
                // Unknown type: skip it (bounded, so a huge one is refused).
                if len > MAX_FRAME {
                    return Err(H3Error::new(
                        code::EXCESSIVE_LOAD,
                        "frame over the relay's 16 KiB limit",
                    ));
                }
                if (view.len() as u64) < len {
                    return incomplete(end);
                }
                at += header + len as usize;
            }
        }
    }
}

fn incomplete<T>(end: bool) -> Result<Option<T>, H3Error> {
    if end {
        Err(H3Error::new(code::MESSAGE_ERROR, "stream ended before its request"))
    } else {
        Ok(None)
    }
}

/// What the peer said on the CONNECT stream after the session started.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectEvent {
    /// Nothing decisive (a partial frame, a DRAIN or an unknown capsule).
    Nothing,
    /// The peer closed the session (CLOSE_WEBTRANSPORT_SESSION or FIN).
    Closed,
}

/// The CONNECT stream after the response: DATA frames carrying capsules
/// (RFC 9297 3.2); a capsule may span DATA frames. Other known frame types
/// are H3_FRAME_UNEXPECTED; a malformed close capsule is H3_MESSAGE_ERROR.
#[derive(Debug, Default)]
pub struct ConnectIn {
    frames: Frames,
    capsules: BytesMut,
    /// Bytes of an unknown capsule still to drop.
    skip: u64,
}

impl ConnectIn {
    /// Feeds bytes read from the stream (`None`: the peer finished it, which
    /// ends the session).
    pub fn input(&mut self, chunk: Option<&[u8]>) -> Result<ConnectEvent, H3Error> {
        let Some(chunk) = chunk else {
            return Ok(ConnectEvent::Closed);
        };
        self.frames.push(chunk);
        loop {
            match self.frames.next(control_known)? {
                Next::More => return Ok(ConnectEvent::Nothing),
                Next::Frame(frame_type::DATA, payload) => {
                    if self.capsule_bytes(&payload)? {
                        return Ok(ConnectEvent::Closed);
                    }
                }
                Next::Frame(..) => {
                    return Err(H3Error::new(
                        code::FRAME_UNEXPECTED,
                        "only DATA may follow the CONNECT response",
                    ));
                }
            }
        }
    }

    /// Takes capsule bytes; true once a close capsule is whole.
    fn capsule_bytes(&mut self, mut data: &[u8]) -> Result<bool, H3Error> {
        if self.skip > 0 {
            let n = (self.skip as usize).min(data.len());
            data = &data[n..];
            self.skip -= n as u64;
        }
        self.capsules.extend_from_slice(data);
        loop {
            let mut view = &self.capsules[..];
            let (Some(kind), Some(len)) = (get_varint(&mut view), get_varint(&mut view)) else {
                return Ok(false);
            };
            let header = self.capsules.len() - view.len();
            match kind {
                capsule::CLOSE_SESSION => {
                    if !(4..=4 + MAX_CLOSE_REASON as u64).contains(&len) {
                        return Err(H3Error::new(
                            code::MESSAGE_ERROR,
                            "malformed CLOSE_WEBTRANSPORT_SESSION",
                        ));
                    }
                    return Ok((view.len() as u64) >= len);
                }
                capsule::DRAIN_SESSION if len != 0 => {
                    return Err(H3Error::new(
                        code::MESSAGE_ERROR,
                        "malformed DRAIN_WEBTRANSPORT_SESSION",
                    ));
                }
                _ => {
                    // DRAIN (the relay closes its sessions itself) and
                    // unknown capsules are skipped without being buffered.
                    self.capsules.advance(header);
                    let n = (len as usize).min(self.capsules.len());
                    self.capsules.advance(n);
                    self.skip = len - n as u64;
                    if self.capsules.is_empty() {
                        self.capsules = BytesMut::new();
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// The quarter stream id that prefixes a WebTransport datagram of a session.
pub fn datagram_prefix(session_id: u64) -> u64 {
    session_id / 4
}

/// The payload of an incoming datagram if it belongs to `session_id`
/// (`Ok(None)`: another session's, dropped as RFC 9297 allows). A datagram
/// with no valid quarter stream id is H3_DATAGRAM_ERROR.
pub fn datagram_payload(datagram: Bytes, session_id: u64) -> Result<Option<Bytes>, H3Error> {
    let mut view = &datagram[..];
    let Some(q) = get_varint(&mut view) else {
        return Err(H3Error::new(
            code::DATAGRAM_ERROR,
            "datagram without a quarter stream id",
        ));
    };
    if q >= MAX_QUARTER_STREAM_ID {
        return Err(H3Error::new(code::DATAGRAM_ERROR, "quarter stream id of 2^60 or more"));
    }
    if q != datagram_prefix(session_id) {
        return Ok(None);
    }
    let start = datagram.len() - view.len();
    Ok(Some(datagram.slice(start..)))
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

    fn settings(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut p = Vec::new();
        for &(id, v) in pairs {
            put_varint(&mut p, id);
            put_varint(&mut p, v);
        }
        frame_bytes(frame_type::SETTINGS, &p)
    }

    fn control(bytes: &[u8]) -> Result<Vec<ControlEvent>, H3Error> {
        ControlIn::default().input(Some(bytes))
    }

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0u64, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, (1 << 62) - 1] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut view = &b[..];
            assert_eq!(get_varint(&mut view), Some(v));
            assert!(view.is_empty());
            if b.len() > 1 {
                let mut short = &b[..b.len() - 1];
                assert_eq!(get_varint(&mut short), None);
            }
        }
    }

    #[test]
    fn the_relays_own_settings_parse() {
        let pre = control_preamble();
        assert_eq!(pre[0], 0x00);
        let events = control(&pre[1..]).unwrap();
        assert_eq!(events, [ControlEvent::Settings(PeerSettings { h3_datagram: true })]);
    }

    #[test]
    fn settings_errors_have_their_codes() {
        let code_of = |b: &[u8]| control(b).unwrap_err().code;
        assert_eq!(code_of(&settings(&[(0x02, 0)])), code::SETTINGS_ERROR);
        assert_eq!(code_of(&settings(&[(0x06, 1), (0x06, 2)])), code::SETTINGS_ERROR);
        assert_eq!(code_of(&settings(&[(setting::H3_DATAGRAM, 2)])), code::SETTINGS_ERROR);
        assert_eq!(code_of(&frame_bytes(frame_type::SETTINGS, &[0x06])), code::FRAME_ERROR);
        assert_eq!(code_of(&frame_bytes(frame_type::GOAWAY, &[0])), code::MISSING_SETTINGS);
        // No datagram setting: the relay must not send datagrams.
        assert_eq!(
            control(&settings(&[(0x06, 1000)])).unwrap(),
            [ControlEvent::Settings(PeerSettings { h3_datagram: false })]
        );
    }

    #[test]
    fn control_frames_after_settings_are_checked() {
        let ok = settings(&[]);
        let after = |frame: Vec<u8>| {
            let mut c = ControlIn::default();
            c.input(Some(&ok)).unwrap();
            c.input(Some(&frame))
        };
        assert_eq!(after(settings(&[])).unwrap_err().code, code::FRAME_UNEXPECTED);
        assert_eq!(
            after(frame_bytes(frame_type::DATA, b"x")).unwrap_err().code,
            code::FRAME_UNEXPECTED
        );
        assert_eq!(
            after(frame_bytes(frame_type::HEADERS, &[0, 0])).unwrap_err().code,
            code::FRAME_UNEXPECTED
        );
        for h2 in frame_type::HTTP2_ONLY {
            assert_eq!(after(frame_bytes(h2, &[])).unwrap_err().code, code::FRAME_UNEXPECTED);
        }
        assert_eq!(
            after(frame_bytes(frame_type::CANCEL_PUSH, &[0])).unwrap_err().code,
            code::ID_ERROR
        );
        assert_eq!(
            after(frame_bytes(frame_type::GOAWAY, &[0, 0])).unwrap_err().code,
            code::FRAME_ERROR
        );
        assert_eq!(after(goaway_frame(8)).unwrap(), [ControlEvent::GoAway(8)]);
        // A GOAWAY may only go down.
        let mut c = ControlIn::default();
        c.input(Some(&ok)).unwrap();
        c.input(Some(&goaway_frame(4))).unwrap();
        assert_eq!(c.input(Some(&goaway_frame(8))).unwrap_err().code, code::ID_ERROR);
        assert_eq!(c.input(None).unwrap_err().code, code::CLOSED_CRITICAL_STREAM);
        // Unknown (reserved) types are skipped, whatever their size.
        let mut big = Vec::new();
        put_varint(&mut big, 0x21 + 0x1f * 3);
        put_varint(&mut big, 1 << 20);
        assert!(after(big).unwrap().is_empty());
    }

    #[test]
    fn control_input_split_anywhere_gives_the_same_events() {
        let mut all = settings(&[(setting::H3_DATAGRAM, 1)]);
        all.extend_from_slice(&frame_bytes(0x21, b"grease"));
        all.extend_from_slice(&goaway_frame(0));
        for cut in 0..all.len() {
            let mut c = ControlIn::default();
            let mut events = c.input(Some(&all[..cut])).unwrap();
            events.extend(c.input(Some(&all[cut..])).unwrap());
            assert_eq!(
                events,
                [
                    ControlEvent::Settings(PeerSettings { h3_datagram: true }),
                    ControlEvent::GoAway(0)
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn qpack_streams_allow_only_what_a_zero_table_allows() {
        let mut e = EncoderIn::default();
        e.input(Some(&[0x20])).unwrap(); // capacity 0
        assert_eq!(
            e.input(Some(&[0x21])).unwrap_err().code,
            code::QPACK_ENCODER_STREAM_ERROR
        );
        let mut e = EncoderIn::default();
        assert_eq!(
            e.input(Some(&[0xc0 | 17, 0x00])).unwrap_err().code,
            code::QPACK_ENCODER_STREAM_ERROR
        );
        assert_eq!(
            EncoderIn::default().input(None).unwrap_err().code,
            code::CLOSED_CRITICAL_STREAM
        );
        let mut d = DecoderIn::default();
        d.input(Some(&[0x44])).unwrap(); // stream cancellation
        assert_eq!(
            d.input(Some(&[0x01])).unwrap_err().code,
            code::QPACK_DECODER_STREAM_ERROR
        );
        assert_eq!(
            DecoderIn::default().input(Some(&[0x80])).unwrap_err().code,
            code::QPACK_DECODER_STREAM_ERROR
        );
        // A long integer split over reads is waited for.
        let mut d = DecoderIn::default();
        d.input(Some(&[0x7f, 0xff])).unwrap();
        d.input(Some(&[0x01])).unwrap();
    }

    #[test]
    fn request_headers_with_a_dynamic_table_reference_fail_decompression() {
        let err = parse_request_headers(&[0x01, 0x00, 0xd1]).unwrap_err();
        assert_eq!(err.code, code::QPACK_DECOMPRESSION_FAILED);
        // :method GET (17), :scheme https (23), :path / (1).
        let head = parse_request_headers(&[0x00, 0x00, 0xd1, 0xd7, 0xc1]).unwrap();
        assert_eq!(head.kind(), RequestKind::Other);
        // No :path: malformed.
        let head = parse_request_headers(&[0x00, 0x00, 0xd1, 0xd7]).unwrap();
        assert_eq!(head.kind(), RequestKind::Malformed);
    }

    #[test]
    fn overlong_integers_in_a_field_section_are_refused_before_decoding() {
        // Found by the fuzz target: a Delta Base whose continuation bytes run
        // past 64 bits made the decoder overflow a shift.
        let section = [
            0x00, 0xff, 0xff, 0x83, 0x83, 0x83, 0x83, 0x83, 0x83, 0x83, 0x83, 0x83, 0x00, 0x2b, 0x17, 0x32,
        ];
        assert_eq!(
            parse_request_headers(&section).unwrap_err().code,
            code::QPACK_DECOMPRESSION_FAILED
        );
        // A string longer than the section.
        let short = [0x00, 0x00, 0x51, 0x05, b'a'];
        assert_eq!(
            parse_request_headers(&short).unwrap_err().code,
            code::QPACK_DECOMPRESSION_FAILED
        );
        // What the relay's own client side sends still parses.
        parse_request_headers(&[0x00, 0x00, 0xd1, 0xd7, 0xc1]).unwrap();
    }

    #[test]
    fn status_headers_decode_back() {
        for status in [200u16, 400, 403, 404, 429] {
            let frame = status_headers(status);
            let mut view = &frame[..];
            assert_eq!(get_varint(&mut view), Some(frame_type::HEADERS));
            let len = get_varint(&mut view).unwrap();
            assert_eq!(len as usize, view.len());
            let f = wtransport::proto::frame::Frame::new_headers(Cow::Borrowed(view));
            let h = wtransport::proto::headers::Headers::with_frame(&f).unwrap();
            assert_eq!(h.get(":status"), Some(status.to_string().as_str()));
        }
    }

    #[test]
    fn bidi_heads_are_told_apart() {
        let mut wt = Vec::new();
        put_varint(&mut wt, frame_type::WEBTRANSPORT_STREAM);
        put_varint(&mut wt, 4);
        assert_eq!(bidi_head(&wt, false).unwrap(), Some((BidiHead::WebTransport(4), 3)));
        assert_eq!(bidi_head(&wt[..1], false).unwrap(), None);
        assert_eq!(bidi_head(&wt[..1], true).unwrap_err().code, code::MESSAGE_ERROR);
        let mut req = frame_bytes(0x21, b"grease");
        req.extend_from_slice(&frame_bytes(frame_type::HEADERS, &[0, 0]));
        let (head, used) = bidi_head(&req, false).unwrap().unwrap();
        assert_eq!(head, BidiHead::Request(Bytes::from_static(&[0, 0])));
        assert_eq!(used, req.len());
        assert_eq!(
            bidi_head(&frame_bytes(frame_type::DATA, b"x"), false).unwrap_err().code,
            code::FRAME_UNEXPECTED
        );
    }

    #[test]
    fn close_capsule_is_read_back_as_a_close_split_anywhere() {
        let bytes = close_session_capsule(7, "bye");
        // DATA frame, 10-byte payload: capsule type 0x2843, length 7, code, "bye".
        assert_eq!(bytes, [0x00, 0x0a, 0x68, 0x43, 0x07, 0, 0, 0, 7, b'b', b'y', b'e']);
        for cut in 0..bytes.len() {
            let mut c = ConnectIn::default();
            assert_eq!(c.input(Some(&bytes[..cut])).unwrap(), ConnectEvent::Nothing);
            assert_eq!(c.input(Some(&bytes[cut..])).unwrap(), ConnectEvent::Closed);
        }
        assert_eq!(ConnectIn::default().input(None).unwrap(), ConnectEvent::Closed);
    }

    #[test]
    fn a_capsule_may_span_data_frames_and_unknown_ones_are_skipped() {
        let mut c = ConnectIn::default();
        // An unknown capsule (0x21) of 3 bytes split over two DATA frames.
        assert_eq!(
            c.input(Some(&frame_bytes(frame_type::DATA, &[0x21, 0x03, 1]))).unwrap(),
            ConnectEvent::Nothing
        );
        assert_eq!(
            c.input(Some(&frame_bytes(frame_type::DATA, &[2, 3]))).unwrap(),
            ConnectEvent::Nothing
        );
        assert!(c.capsules.is_empty() && c.skip == 0);
        assert_eq!(c.input(Some(&drain_session_capsule())).unwrap(), ConnectEvent::Nothing);
        let headers = frame_bytes(frame_type::HEADERS, &[0, 0]);
        assert_eq!(c.input(Some(&headers)).unwrap_err().code, code::FRAME_UNEXPECTED);
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
        assert_eq!(datagram_payload(d.clone(), 4).unwrap().as_deref(), Some(&b"hi"[..]));
        assert_eq!(datagram_payload(d, 0).unwrap(), None);
        assert_eq!(datagram_overhead(0), 1);
        let mut huge = Vec::new();
        put_varint(&mut huge, 1 << 60);
        assert_eq!(
            datagram_payload(Bytes::from(huge), 0).unwrap_err().code,
            code::DATAGRAM_ERROR
        );
        assert_eq!(
            datagram_payload(Bytes::new(), 0).unwrap_err().code,
            code::DATAGRAM_ERROR
        );
    }
}
