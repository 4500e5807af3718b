//! WebSocket over TLS (`wss://host:port/ws`): one protocol frame per binary message.
//!
//! Buffers are set explicitly: tungstenite's defaults reserve 128 KiB read and
//! write buffers per connection, which is most of an idle connection's cost.
//! Messages over the frame limit are refused by tungstenite while reading the
//! header, before the payload is buffered. TCP_NODELAY is on: frames are small
//! and latency matters more than packet count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hush_protocol::datagram::RELAY_READY;
use hush_protocol::frame::CloseReason;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use super::{Connection, FrameLimits, FrameReader, FrameWriter, OriginPolicy, TransportError};

/// Collects what tungstenite writes until it flushes, then hands it to TLS in
/// one write: a burst of frames becomes a few TLS records and one system call
/// instead of one of each per frame. The buffer is released after each flush,
/// so an idle connection holds none of it. tungstenite writes every message
/// straight through (its own write buffer is 0); the session flushes once per
/// burst.
pub struct Burst<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    done: usize,
    /// Checks the client's frame headers until `Ready`.
    gate: Option<FrameGate>,
}

/// Buffered bytes above which a write first drains to TLS (so a burst never
/// holds more than about this much besides one frame).
const BURST_MAX: usize = 256 << 10;

impl<S> Burst<S> {
    fn new(inner: S, gate: FrameGate) -> Self {
        Burst {
            inner,
            buf: Vec::new(),
            done: 0,
            gate: Some(gate),
        }
    }
}

/// A frame header declared more than the limit before `Ready`.
#[derive(Debug, thiserror::Error)]
#[error("a frame of {len} bytes before Ready (limit {limit})")]
pub struct TooLargeBeforeReady {
    /// Declared length.
    pub len: u64,
    /// The limit before `Ready`.
    pub limit: usize,
}

/// Reads the client's bytes below tungstenite until the session is `Ready`,
/// and refuses a WebSocket frame whose header declares more than the
/// handshake limit. tungstenite reserves (and zeroes) room for a frame as
/// soon as it has read its header, so without this a client that has not
/// authenticated could make the relay hold a whole maximum-size frame per
/// connection by sending 10 bytes.
#[derive(Debug)]
pub struct FrameGate {
    limit: usize,
    ready: Arc<AtomicBool>,
    state: Gate,
}

#[derive(Debug)]
enum Gate {
    /// The HTTP upgrade request: the last bytes seen, looking for its end.
    Http(u32),
    /// A frame header: the bytes read of it so far.
    Header([u8; 14], usize),
    /// A frame's payload: bytes still to pass.
    Payload(u64),
}

impl FrameGate {
    /// A gate refusing frames over `limit` bytes until `ready` is set.
    pub fn new(limit: usize, ready: Arc<AtomicBool>) -> Self {
        FrameGate {
            limit,
            ready,
            state: Gate::Http(0),
        }
    }

    /// Looks at bytes the client sent, in order. `Ok(true)`: `Ready` was
    /// sent, nothing more needs checking.
    pub fn input(&mut self, mut bytes: &[u8]) -> Result<bool, TooLargeBeforeReady> {
        while !bytes.is_empty() {
            match &mut self.state {
                Gate::Http(last) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    *last = (*last << 8) | u32::from(b);
                    if *last == u32::from_be_bytes(*b"\r\n\r\n") {
                        self.state = Gate::Header([0; 14], 0);
                    }
                }
                Gate::Header(h, have) => {
                    if *have == 0 && self.ready.load(Ordering::Acquire) {
                        return Ok(true);
                    }
                    h[*have] = bytes[0];
                    bytes = &bytes[1..];
                    *have += 1;
                    if *have < 2 {
                        continue;
                    }
                    let ext = match h[1] & 0x7f {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
                    if *have < 2 + ext + mask {
                        continue;
                    }
                    let len = match ext {
                        2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                        8 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                        _ => u64::from(h[1] & 0x7f),
                    };
                    if len > self.limit as u64 && !self.ready.load(Ordering::Acquire) {
                        return Err(TooLargeBeforeReady { len, limit: self.limit });
                    }
                    self.state = if len == 0 {
                        Gate::Header([0; 14], 0)
                    } else {
                        Gate::Payload(len)
                    };
                }
                Gate::Payload(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    *left -= n;
                    if *left == 0 {
                        self.state = Gate::Header([0; 14], 0);
                    }
                }
            }
        }
        Ok(false)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> Burst<S> {
    fn poll_drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.done < self.buf.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.buf = Vec::new();
        self.done = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Burst<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(())), Some(gate)) = (&polled, self.gate.as_mut()) {
            match gate.input(&buf.filled()[before..]) {
                Ok(false) => {}
                Ok(true) => self.gate = None,
                Err(e) => {
                    return std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
                }
            }
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Burst<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buf.len() >= BURST_MAX {
            std::task::ready!(self.poll_drain(cx))?;
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Ws = WebSocketStream<Burst<TlsStream<TcpStream>>>;

/// The path WebSocket clients connect to.
pub const PATH: &str = "/ws";

/// tungstenite's initial read buffer. It only has to hold a frame header:
/// once the header is read, tungstenite reserves room for the whole payload.
/// rustls keeps its own 4 KiB record buffer below it, so a small buffer here
/// costs extra copies out of rustls, not system calls; an idle connection
/// keeps what is left of it.
const READ_BUFFER: usize = 256;

/// WebSocket settings for a frame limit.
pub fn ws_config(max_frame_len: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max_frame_len * 2 + 4096)
        .max_message_size(Some(max_frame_len))
        .max_frame_size(Some(max_frame_len))
}

/// Completes TLS and the WebSocket upgrade on an accepted TCP stream.
pub async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<TlsAcceptor>,
    limits: FrameLimits,
    origins: Arc<OriginPolicy>,
) -> Result<Connection, TransportError> {
    let max_frame_len = limits.max_frame_len;
    tcp.set_nodelay(true).map_err(|e| TransportError::Io(e.to_string()))?;
    let tls_stream = tls
        .accept(tcp)
        .await
        .map_err(|e| TransportError::Io(format!("TLS: {e}")))?;
    // The callback's signature is fixed by the WebSocket library.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        use tokio_tungstenite::tungstenite::http::StatusCode;
        let origin = req.headers().get("origin").map(|o| o.to_str().unwrap_or("(not text)"));
        let (status, body) = if req.uri().path() != PATH {
            (StatusCode::NOT_FOUND, format!("hush speaks WebSocket at {PATH}\n"))
        } else if !origins.allows(origin) {
            let origin = origin.unwrap_or_default();
            (
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed (allowed_origins in the relay's configuration)\n"),
            )
        } else {
            return Ok(resp);
        };
        let mut err = ErrorResponse::new(Some(body));
        *err.status_mut() = status;
        Err(err)
    };
    let binding = tls_stream
        .get_ref()
        .1
        .export_keying_material([0u8; 32], hush_protocol::auth::BINDING_EXPORTER_LABEL, None)
        .ok();
    let ready = Arc::new(AtomicBool::new(false));
    let gate = FrameGate::new(limits.handshake_frame_len, ready.clone());
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        Burst::new(tls_stream, gate),
        check_path,
        Some(ws_config(max_frame_len)),
    )
    .await
    .map_err(|e| TransportError::Protocol(format!("WebSocket upgrade: {e}")))?;
    let (sink, stream) = ws.split();
    Ok(Connection {
        reader: Box::new(WsReader {
            stream,
            max: max_frame_len,
        }),
        writer: Box::new(WsWriter { sink, ready }),
        peer,
        transport: "websocket",
        binding,
    })
}

struct WsReader {
    stream: SplitStream<Ws>,
    max: usize,
}

#[async_trait]
impl FrameReader for WsReader {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Close(_))) => return Ok(None),
                // Control frames are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(TransportError::Protocol(
                        "text messages are not part of the protocol; send binary frames".into(),
                    ));
                }
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    return Err(TransportError::TooLarge {
                        len: size,
                        max: max_size,
                    });
                }
                Some(Err(WsError::Capacity(_))) => return Err(TransportError::TooLarge { len: 0, max: self.max }),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(WsError::Io(e))) if e.get_ref().is_some_and(|i| i.is::<TooLargeBeforeReady>()) => {
                    let (len, max) = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<TooLargeBeforeReady>())
                        .map_or((0, 0), |t| (t.len as usize, t.limit));
                    return Err(TransportError::TooLarge { len, max });
                }
                Some(Err(e)) => return Err(TransportError::Io(e.to_string())),
            }
        }
    }
}

struct WsWriter {
    sink: SplitSink<Ws, Message>,
    /// Set once `Ready` is on its way: the reader's [`FrameGate`] stops.
    ready: Arc<AtomicBool>,
}

fn io(e: WsError) -> TransportError {
    TransportError::Io(e.to_string())
}

#[async_trait]
impl FrameWriter for WsWriter {
    async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
        if frame.first() == Some(&RELAY_READY) {
            self.ready.store(true, Ordering::Release);
        }
        self.sink.feed(Message::Binary(frame)).await.map_err(io)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.sink.flush().await.map_err(io)
    }

    async fn close(&mut self, reason: CloseReason, message: &str) {
        let code = match reason {
            CloseReason::GoingAway => CloseCode::Away,
            CloseReason::SlowConsumer | CloseReason::ServerBusy => CloseCode::Again,
            CloseReason::IdleTimeout | CloseReason::HandshakeTimeout => CloseCode::Normal,
            CloseReason::ProtocolError => CloseCode::Protocol,
            CloseReason::AuthFailed => CloseCode::Policy,
        };
        let reason: String = message.chars().take(100).collect();
        let _ = self
            .sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        let _ = self.sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65_535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn the_gate_refuses_a_large_header_before_ready_wherever_reads_split() {
        let mut bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        for len in [0u64, 5, 200, 1000] {
            bytes.extend_from_slice(&frame_header(len));
            bytes.extend(std::iter::repeat_n(0u8, len as usize));
        }
        let big = bytes.len();
        bytes.extend_from_slice(&frame_header(70_000));
        for cut in 0..bytes.len() {
            let mut gate = FrameGate::new(65_536, Arc::new(AtomicBool::new(false)));
            let first = gate.input(&bytes[..cut]);
            let result = first.and_then(|_| gate.input(&bytes[cut..]));
            let err = result.expect_err("the 70,000-byte frame is refused");
            assert_eq!((err.len, err.limit), (70_000, 65_536), "cut {cut}");
            if cut < big {
                // Everything before it passed.
                let mut gate = FrameGate::new(65_536, Arc::new(AtomicBool::new(false)));
                assert_eq!(gate.input(&bytes[..cut]).ok(), Some(false), "cut {cut}");
            }
        }
    }

    #[test]
    fn after_ready_the_gate_steps_aside() {
        let ready = Arc::new(AtomicBool::new(false));
        let mut gate = FrameGate::new(100, ready.clone());
        assert_eq!(gate.input(b"GET / HTTP/1.1\r\n\r\n").ok(), Some(false));
        ready.store(true, Ordering::Release);
        assert_eq!(gate.input(&frame_header(1 << 20)).ok(), Some(true));
    }
}
