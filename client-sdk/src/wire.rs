//! The low-level protocol client.
//!
//! One [`WireClient`] is one authenticated connection, over WebTransport
//! (`https://host:port/wt`, see [`webtransport`]) or WebSocket
//! (`wss://host:port/ws`): the URL's scheme picks the transport. Requests are matched to
//! responses by id, so many can be outstanding; everything else the relay sends
//! (deliveries, inbox entries, signals, notices, errors, closing) arrives in
//! order from [`WireClient::next_event`]. Events are buffered in a bounded queue:
//! a caller that stops reading events stops the client reading its socket, which
//! the relay sees as a slow consumer — as it should.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hush_protocol::frame::{
    Challenge, ClientFrame, Ready, Registration, RelayFrame, Reply, Request, Resume, Signature,
};
use hush_protocol::session::ClientHandshake;
use hush_protocol::{DeviceId, ErrorCode, GroupId, UserId, WireError, codec};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub mod webtransport;

pub use webtransport::WebTransportEndpoint;

/// A WebSocket over TLS to a relay.
pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// A device's identity: its user and Ed25519 signing key.
#[derive(Clone)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, {})", self.user, self.device())
    }
}

impl Identity {
    /// A new random device key for `user`.
    pub fn generate(user: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
        Self::from_seed(user, seed)
    }

    /// A device key from a 32-byte seed.
    pub fn from_seed(user: &str, seed: [u8; 32]) -> Self {
        Identity {
            user: UserId(user.to_owned()),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The key's seed (keep it secret).
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The device id the relay derives from the key.
    pub fn device(&self) -> DeviceId {
        DeviceId::from_public_key(&self.public_key())
    }

    /// Signs bytes.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.key.sign(msg).to_bytes())
    }

    /// Approves `new_device_key` as another device of the same user, for
    /// the next [`LINK_APPROVAL_VALIDITY`].
    pub fn approve_link(&self, new_device_key: &[u8; 32]) -> Registration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.approve_link_until(new_device_key, now + LINK_APPROVAL_VALIDITY.as_millis() as u64)
    }

    /// Approves `new_device_key` until `expires_ms` (ms since the Unix epoch;
    /// relays accept at most 15 minutes ahead).
    pub fn approve_link_until(&self, new_device_key: &[u8; 32], expires_ms: u64) -> Registration {
        let t = hush_protocol::auth::link_transcript_until(&self.user, new_device_key, expires_ms);
        Registration::LinkedUntil {
            by: self.device(),
            expires_ms,
            signature: self.sign(&t),
        }
    }
}

/// How long a link approval made by [`Identity::approve_link`] is valid.
pub const LINK_APPROVAL_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// How to trust the relay's certificate.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 (development relays).
    CertSha256([u8; 32]),
    /// Accept certificates signed by these PEM-encoded roots.
    RootsPem(Vec<u8>),
}

/// Connection options.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `https://host:port/wt` for WebTransport, `wss://host:port/ws` for
    /// WebSocket.
    pub url: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Registration proof (for a device the relay has not seen).
    pub registration: Registration,
    /// Resume points.
    pub resume: Vec<Resume>,
    /// Client name sent in `Hello`.
    pub client_name: String,
    /// Events buffered before the client stops reading its socket.
    pub event_buffer: usize,
    /// Connect + handshake deadline.
    pub timeout: Duration,
    /// How long [`WireClient::request`] waits for a response.
    pub request_timeout: Duration,
}

impl ConnectOptions {
    /// Options with defaults: no registration proof, no resume hints.
    pub fn new(url: impl Into<String>, trust: Trust) -> Self {
        ConnectOptions {
            url: url.into(),
            trust,
            registration: Registration::None,
            resume: Vec::new(),
            client_name: concat!("hush-sdk/", env!("CARGO_PKG_VERSION")).into(),
            event_buffer: 4096,
            timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay refused.
    #[error("relay refused: {0}")]
    Relay(WireError),
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Connection(String),
    /// The URL or TLS settings are wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// Timed out.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// The relay's error code, if the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Relay(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Requests waiting for their response. `closed` once the connection's reader
/// has stopped: a request made then fails at once, rather than waiting out its
/// timeout for an answer nothing would give.
#[derive(Default)]
struct Waiting {
    requests: HashMap<u32, oneshot::Sender<Result<Reply, WireError>>>,
    closed: bool,
}

type Pending = Arc<Mutex<Waiting>>;

/// Fails every outstanding request and every later one (the reader stopped).
fn close_pending(pending: &Pending) {
    let mut waiting = pending.lock().unwrap_or_else(|p| p.into_inner());
    waiting.closed = true;
    waiting.requests.clear();
}

/// Which transport a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// WebTransport over QUIC (`https://`).
    WebTransport,
    /// WebSocket over TLS (`wss://`).
    WebSocket,
}

/// What the writer task sends.
#[derive(Debug)]
enum Outgoing {
    /// An encoded frame, framed as the transport frames it.
    Frame(Bytes),
    /// An ephemeral frame: a datagram on WebTransport when it fits, else a frame.
    Datagram(Bytes),
    /// Bytes written as they are: one binary message (WebSocket) or raw stream
    /// bytes with no length prefix (WebTransport). For tests of bad input.
    Raw(Bytes),
    /// Bytes sent as one datagram as they are (WebTransport only).
    RawDatagram(Bytes),
}

/// Datagram counts of a connection (WebTransport; always zero on WebSocket).
#[derive(Debug, Default)]
pub struct DatagramCounts {
    sent: AtomicU64,
    received: AtomicU64,
}

impl DatagramCounts {
    /// Frames this client sent as datagrams.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Frames this client received as datagrams.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// One authenticated connection to a relay.
pub struct WireClient {
    out: mpsc::Sender<Outgoing>,
    pending: Pending,
    next_id: AtomicU32,
    events: mpsc::Receiver<RelayFrame>,
    ready: Ready,
    challenge: Challenge,
    transport: Transport,
    datagrams: Arc<DatagramCounts>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    request_timeout: Duration,
}

impl std::fmt::Debug for WireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireClient({}, {:?})", self.ready.device, self.transport)
    }
}

impl Drop for WireClient {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

fn conn_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Connection(e.to_string())
}

/// The TLS client configuration the SDK uses for `trust` (TLS 1.3 and 1.2,
/// no ALPN): for an app's own HTTPS requests to a relay it pins.
pub fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, ClientError> {
    tls_client_config(trust, false)
}

/// A rustls client configuration for `trust` (TLS 1.3 and 1.2 unless
/// `tls13_only`), without ALPN.
fn tls_client_config(trust: &Trust, tls13_only: bool) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone());
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| ClientError::Config(e.to_string()))?;
    Ok(match trust {
        Trust::CertSha256(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(danger::PinnedCert {
                sha256: *hash,
                provider,
            }))
            .with_no_client_auth(),
        Trust::RootsPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                roots
                    .add(c.map_err(|e| ClientError::Config(e.to_string()))?)
                    .map_err(|e| ClientError::Config(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

/// Opens TLS + WebSocket to `url` (no protocol frames yet). Exposed for tests
/// that need to send raw bytes.
pub async fn open_websocket(url: &str, trust: &Trust) -> Result<Ws, ClientError> {
    let rest = url
        .strip_prefix("wss://")
        .ok_or_else(|| ClientError::Config("URL must start with wss://".into()))?;
    let (authority, _path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let tcp = TcpStream::connect(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    })
    .await
    .map_err(conn_err)?;
    tcp.set_nodelay(true).map_err(conn_err)?;
    let config = tls_client_config(trust, false)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| ClientError::Config(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(conn_err)?;
    let (ws, _) = tokio_tungstenite::client_async(url, tls).await.map_err(conn_err)?;
    Ok(ws)
}

async fn recv_frame(stream: &mut SplitStream<Ws>) -> Result<RelayFrame, ClientError> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => return codec::decode(&b).map_err(conn_err),
            Some(Ok(Message::Close(c))) => return Err(ClientError::Connection(format!("closed: {c:?}"))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(conn_err(e)),
            None => return Err(ClientError::Connection("closed".into())),
        }
    }
}

/// Frame I/O during the handshake, before the reader and writer tasks start.
trait HandshakeIo {
    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ClientError>;
    async fn recv_frame(&mut self) -> Result<RelayFrame, ClientError>;
}

struct WsHandshake<'a> {
    sink: &'a mut SplitSink<Ws, Message>,
    stream: &'a mut SplitStream<Ws>,
}

impl HandshakeIo for WsHandshake<'_> {
    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(frame.into())).await.map_err(conn_err)
    }
    async fn recv_frame(&mut self) -> Result<RelayFrame, ClientError> {
        recv_frame(self.stream).await
    }
}

/// Hello → Challenge → Authenticate → Ready.
async fn handshake(
    io: &mut impl HandshakeIo,
    identity: &Identity,
    opts: &ConnectOptions,
    binding: Option<[u8; 32]>,
) -> Result<(Challenge, Ready), ClientError> {
    let mut hs = ClientHandshake::new(identity.user.clone(), identity.public_key());
    // Bound to this TLS connection (hush-auth-v2): a party in the middle
    // cannot pass the signature on to the relay.
    if let Some(b) = binding {
        hs = hs.with_binding(b);
    }
    io.send_frame(codec::encode(&hs.hello(&opts.client_name)).map_err(conn_err)?)
        .await?;
    let first = io.recv_frame().await?;
    let (challenge, auth) = hs
        .on_challenge(
            first,
            |m| identity.sign(m),
            opts.registration.clone(),
            opts.resume.clone(),
        )
        .map_err(ClientError::Relay)?;
    io.send_frame(codec::encode(&auth).map_err(conn_err)?).await?;
    let ready = match io.recv_frame().await? {
        RelayFrame::Ready(r) => r,
        RelayFrame::Error(e) => return Err(ClientError::Relay(e)),
        other => return Err(ClientError::Connection(format!("expected Ready, got {other:?}"))),
    };
    Ok((challenge, ready))
}

/// Hands a received frame to its request or to the event queue; false once
/// nobody listens any more. A response to a request not made through
/// [`WireClient::request`] (one sent with [`WireClient::send`] by a caller
/// that matches responses itself) goes to the event queue.
async fn dispatch(frame: RelayFrame, pending: &Pending, events: &mpsc::Sender<RelayFrame>) -> bool {
    match frame {
        RelayFrame::Response { id, result } => {
            let tx = pending.lock().unwrap_or_else(|p| p.into_inner()).requests.remove(&id);
            match tx {
                Some(tx) => {
                    let _ = tx.send(result);
                    true
                }
                None => events.send(RelayFrame::Response { id, result }).await.is_ok(),
            }
        }
        other => events.send(other).await.is_ok(),
    }
}

/// What a transport hands to [`WireClient::assemble`] after the handshake.
struct Established {
    challenge: Challenge,
    ready: Ready,
    transport: Transport,
    datagrams: Arc<DatagramCounts>,
    out: mpsc::Sender<Outgoing>,
    events: mpsc::Receiver<RelayFrame>,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl WireClient {
    /// Connects, negotiates the version and authenticates `identity`. The URL's
    /// scheme picks the transport: `https://` WebTransport (on a QUIC endpoint
    /// of its own; see [`WireClient::connect_with`] to share one), `wss://`
    /// WebSocket.
    pub async fn connect(identity: &Identity, opts: ConnectOptions) -> Result<Self, ClientError> {
        tokio::time::timeout(opts.timeout, async {
            if opts.url.starts_with("https://") {
                let endpoint = WebTransportEndpoint::new(&opts.trust)?;
                webtransport::connect(identity, &opts, &endpoint).await
            } else {
                Self::connect_websocket(identity, &opts).await
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)?
        .map(|e| Self::assemble(e, opts.request_timeout))
    }

    /// Connects over WebTransport through `endpoint`, so that many connections
    /// share one UDP socket. `opts.url` must be `https://host:port/wt`, and
    /// `opts.trust` is ignored (the endpoint's trust applies).
    pub async fn connect_with(
        identity: &Identity,
        opts: ConnectOptions,
        endpoint: &WebTransportEndpoint,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(opts.timeout, webtransport::connect(identity, &opts, endpoint))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map(|e| Self::assemble(e, opts.request_timeout))
    }

    fn assemble(e: Established, request_timeout: Duration) -> Self {
        WireClient {
            request_timeout,
            out: e.out,
            pending: e.pending,
            next_id: AtomicU32::new(1),
            events: e.events,
            ready: e.ready,
            challenge: e.challenge,
            transport: e.transport,
            datagrams: e.datagrams,
            reader: e.reader,
            writer: e.writer,
        }
    }

    async fn connect_websocket(identity: &Identity, opts: &ConnectOptions) -> Result<Established, ClientError> {
        let ws = open_websocket(&opts.url, &opts.trust).await?;
        let binding = ws
            .get_ref()
            .get_ref()
            .1
            .export_keying_material([0u8; 32], hush_protocol::auth::BINDING_EXPORTER_LABEL, None)
            .ok();
        let (mut sink, mut stream): (SplitSink<Ws, Message>, SplitStream<Ws>) = ws.split();
        let (challenge, ready) = handshake(
            &mut WsHandshake {
                sink: &mut sink,
                stream: &mut stream,
            },
            identity,
            opts,
            binding,
        )
        .await?;
        let pending: Pending = Arc::default();
        let (events_tx, events) = mpsc::channel(opts.event_buffer);
        let (out, mut out_rx) = mpsc::channel::<Outgoing>(1024);
        let writer = tokio::spawn(async move {
            let msg = |o: Outgoing| match o {
                Outgoing::Frame(b) | Outgoing::Datagram(b) | Outgoing::Raw(b) | Outgoing::RawDatagram(b) => {
                    Message::Binary(b)
                }
            };
            while let Some(m) = out_rx.recv().await {
                if sink.feed(msg(m)).await.is_err() {
                    return;
                }
                while let Ok(m) = out_rx.try_recv() {
                    if sink.feed(msg(m)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let pending2 = pending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(frame) = recv_frame(&mut stream).await {
                if !dispatch(frame, &pending2, &events_tx).await {
                    break;
                }
            }
            // Fail outstanding requests.
            close_pending(&pending2);
        });
        Ok(Established {
            challenge,
            ready,
            transport: Transport::WebSocket,
            datagrams: Arc::default(),
            out,
            events,
            pending,
            reader,
            writer,
        })
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Datagram counts (WebTransport).
    pub fn datagrams(&self) -> &DatagramCounts {
        &self.datagrams
    }

    /// Sends everything queued, then closes the connection cleanly.
    pub async fn close(mut self) {
        let (dummy, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.out, dummy));
        let writer = std::mem::replace(&mut self.writer, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }

    /// The relay's `Ready`.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The relay's `Challenge` (negotiated version, limits).
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Sends a request and waits for its response, at most the connection's
    /// [`ConnectOptions::request_timeout`] ([`ClientError::Timeout`] then).
    /// Ids are allocated from 1 upward; a caller that sends requests of its
    /// own with [`WireClient::send`] should use ids from `0x8000_0000`, whose
    /// responses arrive through [`WireClient::next_event`].
    pub async fn request(&self, op: Request) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.closed {
                return Err(ClientError::Connection("closed".into()));
            }
            waiting.requests.insert(id, tx);
        }
        let sent = async {
            self.send(&ClientFrame::Request { id, op }).await?;
            match rx.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(ClientError::Relay(e)),
                Err(_) => Err(ClientError::Connection("connection closed before the response".into())),
            }
        };
        let r = tokio::time::timeout(self.request_timeout, sent).await;
        if r.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .requests
                .remove(&id);
        }
        r.map_err(|_| ClientError::Timeout)?
    }

    /// Sends a frame that has no response (Ack, Ephemeral, Ping). Over
    /// WebTransport an `Ephemeral` frame goes as a datagram when it fits.
    pub async fn send(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let bytes = Bytes::from(codec::encode(frame).map_err(conn_err)?);
        let out = match frame {
            ClientFrame::Ephemeral { .. } => Outgoing::Datagram(bytes),
            _ => Outgoing::Frame(bytes),
        };
        self.push(out).await
    }

    /// Sends raw bytes (for tests of malformed input): one binary message on
    /// WebSocket; on WebTransport, bytes written to the stream as they are,
    /// with no length prefix added.
    pub async fn send_raw(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.push(Outgoing::Raw(bytes)).await
    }

    /// Sends raw bytes as one datagram (WebTransport; for tests of malformed
    /// input). On WebSocket it is one binary message.
    pub async fn send_raw_datagram(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.push(Outgoing::RawDatagram(bytes)).await
    }

    async fn push(&self, out: Outgoing) -> Result<(), ClientError> {
        self.out
            .send(out)
            .await
            .map_err(|_| ClientError::Connection("closed".into()))
    }

    /// Acknowledges a group's entries up to `seq`.
    pub async fn ack(&self, group: &GroupId, seq: u64) -> Result<(), ClientError> {
        self.send(&ClientFrame::Ack {
            group: group.clone(),
            seq,
        })
        .await
    }

    /// The next event (anything but a response); `None` once the connection is gone.
    pub async fn next_event(&mut self) -> Option<RelayFrame> {
        self.events.recv().await
    }

    /// The next event within `timeout`.
    pub async fn next_event_timeout(&mut self, timeout: Duration) -> Result<Option<RelayFrame>, ClientError> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .map_err(|_| ClientError::Timeout)
    }

    /// Moves the event queue out, so one task can read events while others
    /// make requests through a shared `WireClient`. Afterwards
    /// [`WireClient::next_event`] returns `None`.
    pub fn take_events(&mut self) -> mpsc::Receiver<RelayFrame> {
        let (_, closed) = mpsc::channel(1);
        std::mem::replace(&mut self.events, closed)
    }

    /// An event already received, if any, without waiting.
    pub fn try_next_event(&mut self) -> Option<RelayFrame> {
        self.events.try_recv().ok()
    }
}

/// Certificate checks that are not the WebPKI default.
pub mod danger {
    use super::*;
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, UnixTime};

    /// Accepts exactly one certificate, by SHA-256 of its DER: the model of
    /// browsers' `serverCertificateHashes`, for development relays.
    #[derive(Debug)]
    pub struct PinnedCert {
        /// Expected hash.
        pub sha256: [u8; 32],
        /// For handshake signature checks.
        pub provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for PinnedCert {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
            if got == self.sha256 {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(format!(
                    "certificate hash {} is not the pinned one",
                    hex::encode(got)
                )))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }
}
