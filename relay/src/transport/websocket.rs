//! WebSocket over TLS (`wss://host:port/ws`): one protocol frame per binary message.
//!
//! Buffers are set explicitly: tungstenite's defaults reserve 128 KiB read and
//! write buffers per connection, which is most of an idle connection's cost.
//! Messages over the frame limit are refused by tungstenite while reading the
//! header, before the payload is buffered. TCP_NODELAY is on: frames are small
//! and latency matters more than packet count.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hush_protocol::frame::CloseReason;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use super::{Connection, FrameReader, FrameWriter, OriginPolicy, TransportError};

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
}

/// Buffered bytes above which a write first drains to TLS (so a burst never
/// holds more than about this much besides one frame).
const BURST_MAX: usize = 256 << 10;

impl<S> Burst<S> {
    fn new(inner: S) -> Self {
        Burst {
            inner,
            buf: Vec::new(),
            done: 0,
        }
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
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
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
    max_frame_len: usize,
    origins: Arc<OriginPolicy>,
) -> Result<Connection, TransportError> {
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
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        Burst::new(tls_stream),
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
        writer: Box::new(WsWriter { sink }),
        peer,
        transport: "websocket",
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
                Some(Err(e)) => return Err(TransportError::Io(e.to_string())),
            }
        }
    }
}

struct WsWriter {
    sink: SplitSink<Ws, Message>,
}

fn io(e: WsError) -> TransportError {
    TransportError::Io(e.to_string())
}

#[async_trait]
impl FrameWriter for WsWriter {
    async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
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
