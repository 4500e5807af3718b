//! The low-level protocol client.
//!
//! One [`WireClient`] is one authenticated connection. Requests are matched to
//! responses by id, so many can be outstanding; everything else the relay sends
//! (deliveries, inbox entries, signals, notices, errors, closing) arrives in
//! order from [`WireClient::next_event`]. Events are buffered in a bounded queue:
//! a caller that stops reading events stops the client reading its socket, which
//! the relay sees as a slow consumer — as it should.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
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

type Ws = WebSocketStream<TlsStream<TcpStream>>;

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

    /// Approves `new_device_key` as another device of the same user.
    pub fn approve_link(&self, new_device_key: &[u8; 32]) -> Registration {
        let t = hush_protocol::auth::link_transcript(&self.user, new_device_key);
        Registration::Linked {
            by: self.device(),
            signature: self.sign(&t),
        }
    }
}

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
    /// `wss://host:port/ws`.
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

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<Reply, WireError>>>>>;

/// One authenticated connection to a relay.
pub struct WireClient {
    out: mpsc::Sender<Message>,
    pending: Pending,
    next_id: AtomicU32,
    events: mpsc::Receiver<RelayFrame>,
    ready: Ready,
    challenge: Challenge,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireClient({})", self.ready.device)
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let config = match trust {
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
    };
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

impl WireClient {
    /// Connects, negotiates the version and authenticates `identity`.
    pub async fn connect(identity: &Identity, opts: ConnectOptions) -> Result<Self, ClientError> {
        tokio::time::timeout(opts.timeout, Self::connect_inner(identity, opts))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn connect_inner(identity: &Identity, opts: ConnectOptions) -> Result<Self, ClientError> {
        let ws = open_websocket(&opts.url, &opts.trust).await?;
        let (mut sink, mut stream): (SplitSink<Ws, Message>, SplitStream<Ws>) = ws.split();
        let hs = ClientHandshake::new(identity.user.clone(), identity.public_key());
        let hello = codec::encode(&hs.hello(&opts.client_name)).map_err(conn_err)?;
        sink.send(Message::Binary(hello.into())).await.map_err(conn_err)?;
        let first = recv_frame(&mut stream).await?;
        let (challenge, auth) = hs
            .on_challenge(first, |m| identity.sign(m), opts.registration, opts.resume)
            .map_err(ClientError::Relay)?;
        sink.send(Message::Binary(codec::encode(&auth).map_err(conn_err)?.into()))
            .await
            .map_err(conn_err)?;
        let ready = match recv_frame(&mut stream).await? {
            RelayFrame::Ready(r) => r,
            RelayFrame::Error(e) => return Err(ClientError::Relay(e)),
            other => return Err(ClientError::Connection(format!("expected Ready, got {other:?}"))),
        };
        let pending: Pending = Arc::default();
        let (events_tx, events) = mpsc::channel(opts.event_buffer);
        let (out, mut out_rx) = mpsc::channel::<Message>(1024);
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.feed(m).await.is_err() {
                    return;
                }
                while let Ok(m) = out_rx.try_recv() {
                    if sink.feed(m).await.is_err() {
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
            loop {
                let frame = match recv_frame(&mut stream).await {
                    Ok(f) => f,
                    Err(_) => break,
                };
                match frame {
                    RelayFrame::Response { id, result } => {
                        let tx = pending2.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        if let Some(tx) = tx {
                            let _ = tx.send(result);
                        }
                    }
                    other => {
                        if events_tx.send(other).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Fail outstanding requests.
            pending2.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        Ok(WireClient {
            out,
            pending,
            next_id: AtomicU32::new(1),
            events,
            ready,
            challenge,
            reader,
            writer,
        })
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

    /// Sends a request and waits for its response.
    pub async fn request(&self, op: Request) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        self.send(&ClientFrame::Request { id, op }).await?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ClientError::Relay(e)),
            Err(_) => Err(ClientError::Connection("connection closed before the response".into())),
        }
    }

    /// Sends a frame that has no response (Ack, Ephemeral, Ping).
    pub async fn send(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let bytes = codec::encode(frame).map_err(conn_err)?;
        self.send_raw(bytes.into()).await
    }

    /// Sends raw bytes as one binary message (for tests of malformed input).
    pub async fn send_raw(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.out
            .send(Message::Binary(bytes))
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
