//! The part of HTTP/3 a WebTransport server needs (RFC 9114, RFC 9204,
//! RFC 9220, RFC 9297, draft-ietf-webtrans-http3), written directly on quinn.
//!
//! A general HTTP/3 library keeps a driver task and several channels per
//! connection (about 35 KiB of an idle session's 75, measured, see
//! `BENCHMARKS.md`). A hush session needs much less: exchange SETTINGS,
//! answer one extended CONNECT, accept one bidirectional WebTransport stream,
//! carry datagrams, and close the session with a CLOSE_WEBTRANSPORT_SESSION
//! capsule. [`H3Conn`] does that with no task of its own: the session's
//! reader polls it ([`H3Conn::serve`]) beside its stream and datagrams, and
//! it keeps the connection conformant for the session's whole life:
//!
//! - the peer's control stream is parsed to the end (SETTINGS first and
//!   once, GOAWAY and MAX_PUSH_ID checked, frames that do not belong there
//!   refused, its end an error);
//! - the peer's QPACK encoder and decoder streams are read and held to what
//!   a dynamic table of capacity 0 allows;
//! - a push stream or a second control or QPACK stream is a connection
//!   error, other unidirectional streams are stopped;
//! - a second WebTransport CONNECT is reset with H3_REQUEST_REJECTED, other
//!   requests are answered 404, malformed ones reset with H3_MESSAGE_ERROR;
//! - the CONNECT stream's capsules are parsed (the peer closes the session
//!   there).
//!
//! The byte-level parsers are in [`wire`], free of I/O, and fuzzed.

pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use wtransport::quinn::{self, VarInt};

use wire::{
    BidiHead, ConnectEvent, ConnectIn, ControlEvent, ControlIn, DecoderIn, EncoderIn, RequestKind, stream_type,
};
pub use wire::{
    H3Error, PeerSettings, close_session_capsule, code, datagram, datagram_overhead, datagram_payload,
    drain_session_capsule, goaway_frame,
};

use super::TransportError;

/// Largest start of a bidirectional stream read before it says what it is.
const MAX_STREAM_HEAD: usize = 2 * wire::MAX_FRAME as usize + 64;

/// How long writing a refusal or a 404 may take before the stream is reset.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// A CONNECT request the relay has read but not yet answered.
pub struct Request {
    /// The CONNECT stream: its id is the session id.
    pub send: quinn::SendStream,
    /// The request's `:path` (with the query).
    pub path: String,
    /// The request's `origin`, if it sent one (browsers always do).
    pub origin: Option<String>,
    recv: Option<quinn::RecvStream>,
}

impl Request {
    /// The session id: the CONNECT stream's id.
    pub fn session_id(&self) -> u64 {
        u64::from(self.send.id())
    }

    /// Answers with `status` (200 accepts the session).
    pub async fn respond(&mut self, status: u16) -> Result<(), TransportError> {
        self.send
            .write_all(&wire::status_headers(status))
            .await
            .map_err(|e| io("writing the CONNECT response", e))
    }
}

/// The session's WebTransport stream, with what arrived after its header.
pub struct SessionStream {
    /// Relay to client.
    pub send: quinn::SendStream,
    /// Client to relay.
    pub recv: quinn::RecvStream,
    /// Bytes read after the stream header: the start of the protocol's data.
    pub first: Bytes,
}

/// Why [`H3Conn::serve`] returned.
#[derive(Debug)]
pub enum SessionEnd {
    /// The peer closed the session (a capsule or the end of its CONNECT
    /// stream) or the connection.
    Closed,
    /// The peer broke HTTP/3; the connection is closed with the error's code.
    Error(TransportError),
}

type Fut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A unidirectional stream with its type, once read (`None`: it ended first).
type TypedUni = Result<(Option<u64>, quinn::RecvStream), TransportError>;

/// A bidirectional stream once its start was read.
struct Bidi {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    head: BidiHead,
    rest: Bytes,
}

/// Why a step of the connection failed.
enum Fail {
    H3(H3Error),
    Io(TransportError),
}

impl From<H3Error> for Fail {
    fn from(e: H3Error) -> Self {
        Fail::H3(e)
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(format!("{what}: {e}"))
}

/// The HTTP/3 state of one QUIC connection (see the module docs).
pub struct H3Conn {
    conn: quinn::Connection,
    control: Option<(quinn::RecvStream, ControlIn)>,
    encoder: Option<(quinn::RecvStream, EncoderIn)>,
    decoder: Option<(quinn::RecvStream, DecoderIn)>,
    /// Unidirectional streams whose type has not arrived.
    uni: FuturesUnordered<Fut<TypedUni>>,
    /// Bidirectional streams whose start has not arrived.
    bidi: FuturesUnordered<Fut<Result<Bidi, Fail>>>,
    /// Refusals and 404s being written.
    answers: FuturesUnordered<Fut<()>>,
    settings: Option<PeerSettings>,
    /// The WebTransport CONNECT read and not yet taken by [`Self::connect`].
    request: Option<Request>,
    /// The session's id, once its CONNECT was read.
    session: Option<u64>,
    /// A WebTransport stream waiting for its session: the session's once it
    /// is known, or one that arrived before its CONNECT did.
    stream: Option<(u64, SessionStream)>,
    stream_taken: bool,
    /// The session's CONNECT stream, after the response.
    connect: Option<(quinn::RecvStream, ConnectIn)>,
    /// The lowest client bidirectional stream id not yet seen: the GOAWAY
    /// the relay sends before closing.
    next_bidi: Arc<AtomicU64>,
}

impl H3Conn {
    /// Starts HTTP/3 on a new connection: opens the relay's control stream
    /// and sends its SETTINGS, which the caller keeps open for the
    /// connection's life (dropping it would close a critical stream).
    pub async fn start(conn: &quinn::Connection) -> Result<(H3Conn, quinn::SendStream), TransportError> {
        let mut control = conn.open_uni().await.map_err(|e| io("opening the control stream", e))?;
        control
            .write_all(&wire::control_preamble())
            .await
            .map_err(|e| io("sending SETTINGS", e))?;
        let h3 = H3Conn {
            conn: conn.clone(),
            control: None,
            encoder: None,
            decoder: None,
            uni: FuturesUnordered::new(),
            bidi: FuturesUnordered::new(),
            answers: FuturesUnordered::new(),
            settings: None,
            request: None,
            session: None,
            stream: None,
            stream_taken: false,
            connect: None,
            next_bidi: Arc::new(AtomicU64::new(0)),
        };
        Ok((h3, control))
    }

    /// The peer's SETTINGS (known once [`Self::connect`] returned).
    pub fn peer_settings(&self) -> PeerSettings {
        self.settings.unwrap_or_default()
    }

    /// The GOAWAY id to send on closing, shared with the writer.
    pub fn goaway_id(&self) -> Arc<AtomicU64> {
        self.next_bidi.clone()
    }

    /// Runs the connection until a WebTransport CONNECT has arrived and the
    /// peer's SETTINGS with it.
    pub async fn connect(&mut self) -> Result<Request, TransportError> {
        loop {
            if self.settings.is_some()
                && let Some(r) = self.request.take()
            {
                return Ok(r);
            }
            self.step_or_close().await?;
        }
    }

    /// Runs the connection until the client opened the session's
    /// WebTransport stream; from then on the CONNECT stream is watched.
    pub async fn session_stream(&mut self, connect: &mut Request) -> Result<SessionStream, TransportError> {
        if let Some(recv) = connect.recv.take() {
            self.connect = Some((recv, ConnectIn::default()));
        }
        loop {
            if let Some((id, _)) = &self.stream
                && Some(*id) == self.session
                && let Some((_, s)) = self.stream.take()
            {
                self.stream_taken = true;
                return Ok(s);
            }
            self.step_or_close().await?;
        }
    }

    /// Keeps the connection conformant while the session runs; returns when
    /// the session ends. Cancel-safe: the session's reader polls it beside
    /// its stream.
    pub async fn serve(&mut self) -> SessionEnd {
        loop {
            match self.step().await {
                Ok(true) => {}
                Ok(false) => return SessionEnd::Closed,
                Err(Fail::Io(_)) => return SessionEnd::Closed,
                Err(Fail::H3(e)) => return SessionEnd::Error(self.close_with(e)),
            }
        }
    }

    async fn step_or_close(&mut self) -> Result<(), TransportError> {
        match self.step().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(TransportError::Io("the client closed the session".into())),
            Err(Fail::Io(e)) => Err(e),
            Err(Fail::H3(e)) => Err(self.close_with(e)),
        }
    }

    fn close_with(&self, e: H3Error) -> TransportError {
        self.conn.close(VarInt::from_u32(e.code), e.reason.as_bytes());
        TransportError::Protocol(format!("HTTP/3: {e}"))
    }

    /// Handles one thing that happened on the connection. `Ok(false)`: the
    /// peer closed the session. Every branch is cancel-safe and handles its
    /// input without awaiting.
    async fn step(&mut self) -> Result<bool, Fail> {
        let H3Conn {
            conn,
            control,
            encoder,
            decoder,
            uni,
            bidi,
            answers,
            connect,
            ..
        } = self;
        tokio::select! {
            s = conn.accept_uni() => {
                let s = s.map_err(|e| Fail::Io(io("accepting a stream", e)))?;
                uni.push(Box::pin(typed_uni(s)));
            }
            s = conn.accept_bi() => {
                let (send, recv) = s.map_err(|e| Fail::Io(io("accepting a stream", e)))?;
                let next = u64::from(send.id()) + 4;
                self.next_bidi.fetch_max(next, Ordering::Relaxed);
                bidi.push(Box::pin(read_bidi(send, recv)));
            }
            Some(typed) = uni.next(), if !uni.is_empty() => {
                if let Ok((kind, s)) = typed {
                    self.typed_uni(kind, s)?;
                }
            }
            Some(head) = bidi.next(), if !bidi.is_empty() => match head {
                Ok(b) => self.bidi_stream(b)?,
                Err(Fail::H3(e)) => return Err(Fail::H3(e)),
                // A stream reset before it said what it is: nothing to do.
                Err(Fail::Io(_)) => {}
            },
            Some(()) = answers.next(), if !answers.is_empty() => {}
            c = read_some(control) => {
                let c = c?;
                for event in control.as_mut().map_or(Ok(Vec::new()), |(_, p)| p.input(c.as_deref()))? {
                    match event {
                        ControlEvent::Settings(s) => self.settings = Some(s),
                        ControlEvent::GoAway(id) => tracing::debug!(id, "the client sent GOAWAY"),
                    }
                }
            }
            c = read_some(encoder) => {
                let c = c?;
                if let Some((_, p)) = encoder {
                    p.input(c.as_deref())?;
                }
            }
            c = read_some(decoder) => {
                let c = c?;
                if let Some((_, p)) = decoder {
                    p.input(c.as_deref())?;
                }
            }
            c = read_some(connect) => {
                let c = c?;
                if let Some((_, p)) = connect
                    && p.input(c.as_deref())? == ConnectEvent::Closed
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn typed_uni(&mut self, kind: Option<u64>, s: quinn::RecvStream) -> Result<(), H3Error> {
        let creation = |what| H3Error::new(code::STREAM_CREATION_ERROR, what);
        match kind {
            Some(stream_type::CONTROL) if self.control.is_none() => self.control = Some((s, ControlIn::default())),
            Some(stream_type::CONTROL) => return Err(creation("second control stream")),
            Some(stream_type::PUSH) => return Err(creation("a client may not open a push stream")),
            Some(stream_type::QPACK_ENCODER) if self.encoder.is_none() => {
                self.encoder = Some((s, EncoderIn::default()));
            }
            Some(stream_type::QPACK_DECODER) if self.decoder.is_none() => {
                self.decoder = Some((s, DecoderIn::default()));
            }
            Some(stream_type::QPACK_ENCODER | stream_type::QPACK_DECODER) => {
                return Err(creation("second QPACK stream of one type"));
            }
            // The stream ended before its type: nothing to do.
            None => {}
            // WebTransport streams (the relay uses none), reserved and
            // unknown types: not read.
            Some(_) => {
                let mut s = s;
                let _ = s.stop(VarInt::from_u32(code::STREAM_CREATION_ERROR));
            }
        }
        Ok(())
    }

    fn bidi_stream(&mut self, b: Bidi) -> Result<(), H3Error> {
        let Bidi {
            mut send,
            mut recv,
            head,
            rest,
        } = b;
        let stream_id = u64::from(send.id());
        match head {
            BidiHead::WebTransport(session) => {
                let wanted = !self.stream_taken && self.stream.is_none() && self.session.is_none_or(|s| s == session);
                if wanted {
                    self.stream = Some((
                        session,
                        SessionStream {
                            send,
                            recv,
                            first: rest,
                        },
                    ));
                } else {
                    refuse(&mut send, &mut recv, code::WT_BUFFERED_STREAM_REJECTED);
                }
            }
            BidiHead::Request(payload) => match wire::parse_request_headers(&payload)?.kind() {
                RequestKind::WebTransport { path, origin } if self.session.is_none() => {
                    self.session = Some(stream_id);
                    if self.stream.as_ref().is_some_and(|(id, _)| *id != stream_id)
                        && let Some((_, mut s)) = self.stream.take()
                    {
                        refuse(&mut s.send, &mut s.recv, code::WT_BUFFERED_STREAM_REJECTED);
                    }
                    self.request = Some(Request {
                        send,
                        path,
                        origin,
                        recv: Some(recv),
                    });
                }
                // One session per connection (SETTINGS_WEBTRANSPORT_MAX_SESSIONS = 1).
                RequestKind::WebTransport { .. } => refuse(&mut send, &mut recv, code::REQUEST_REJECTED),
                RequestKind::Malformed => refuse(&mut send, &mut recv, code::MESSAGE_ERROR),
                RequestKind::Other => {
                    let _ = recv.stop(VarInt::from_u32(code::NO_ERROR));
                    self.answers.push(Box::pin(answer(send, 404)));
                }
            },
        }
        Ok(())
    }
}

/// Refuses a stream both ways with `h3_code`.
fn refuse(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, h3_code: u32) {
    let _ = recv.stop(VarInt::from_u32(h3_code));
    let _ = send.reset(VarInt::from_u32(h3_code));
}

/// Answers a request with a bare status and finishes the stream.
async fn answer(mut send: quinn::SendStream, status: u16) {
    let written = tokio::time::timeout(ANSWER_WAIT, send.write_all(&wire::status_headers(status))).await;
    if matches!(written, Ok(Ok(()))) {
        let _ = send.finish();
    } else {
        let _ = send.reset(VarInt::from_u32(code::REQUEST_REJECTED));
    }
}

/// The next chunk of an optional stream (pending forever if there is none):
/// `Ok(None)` when it ended or was reset, which the stream's parser judges.
async fn read_some<P>(stream: &mut Option<(quinn::RecvStream, P)>) -> Result<Option<Bytes>, Fail> {
    let Some((s, _)) = stream else {
        return std::future::pending().await;
    };
    match s.read_chunk(4096, true).await {
        Ok(c) => Ok(c.map(|c| c.bytes)),
        Err(quinn::ReadError::Reset(_)) => Ok(None),
        Err(e) => Err(Fail::Io(io("reading a stream", e))),
    }
}

/// One unidirectional stream the peer opened, after its type was read.
async fn typed_uni(mut recv: quinn::RecvStream) -> TypedUni {
    let mut first = [0u8; 1];
    match recv.read_exact(&mut first).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Ok((None, recv)),
        Err(e) => return Err(io("reading a stream type", e)),
    }
    let len = 1usize << (first[0] >> 6);
    let mut rest = [0u8; 8];
    match recv.read_exact(&mut rest[..len - 1]).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Ok((None, recv)),
        Err(e) => return Err(io("reading a stream type", e)),
    }
    let mut v = u64::from(first[0] & 0x3f);
    for b in &rest[..len - 1] {
        v = (v << 8) | u64::from(*b);
    }
    Ok((Some(v), recv))
}

/// Reads the start of a bidirectional stream until it says what it is.
async fn read_bidi(send: quinn::SendStream, mut recv: quinn::RecvStream) -> Result<Bidi, Fail> {
    let mut buf = BytesMut::new();
    loop {
        let chunk = recv
            .read_chunk(4096, true)
            .await
            .map_err(|e| Fail::Io(io("reading a stream", e)))?;
        let end = chunk.is_none();
        if let Some(c) = chunk {
            buf.extend_from_slice(&c.bytes);
        }
        if let Some((head, used)) = wire::bidi_head(&buf, end)? {
            let rest = buf.split_off(used).freeze();
            return Ok(Bidi { send, recv, head, rest });
        }
        if buf.len() > MAX_STREAM_HEAD {
            return Err(Fail::H3(H3Error::new(
                code::EXCESSIVE_LOAD,
                "a stream's start is too long",
            )));
        }
    }
}
