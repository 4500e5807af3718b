//! The connection handshake as a pair of state machines, one per side.
//!
//! Neither touches a socket or a clock: the transport feeds decoded frames in
//! and sends the frames they return. Order of calls:
//!
//! * relay: [`RelayHandshake::new`] → [`RelayHandshake::on_frame`] for each client
//!   frame until it returns [`RelayStep::Authenticated`] (then the session proper
//!   begins) or [`RelayStep::Reject`] (send the error, close).
//! * client: [`ClientHandshake::hello`] → send it → [`ClientHandshake::on_challenge`]
//!   with the relay's answer → send the returned `Authenticate` → wait for `Ready`.

use crate::auth::{auth_transcript, bound_auth_transcript, verify};
use crate::error::{ErrorCode, ErrorDetail, WireError};
use crate::frame::{Authenticate, Challenge, ClientFrame, Hello, Registration, RelayFrame, Resume, Signature};
use crate::ids::{DeviceId, UserId};
use crate::limits::{MAX_RESUME_HINTS, MAX_TOKEN_LEN};
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Picks the newest version both sides speak.
pub fn negotiate(client_min: u16, client_max: u16) -> Option<u16> {
    let hi = client_max.min(PROTOCOL_VERSION);
    let lo = client_min.max(MIN_PROTOCOL_VERSION);
    (lo <= hi).then_some(hi)
}

/// A device whose key possession has been proven; registration is still the
/// relay's to check.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvenDevice {
    /// The negotiated protocol version.
    pub version: u16,
    /// Claimed user.
    pub user: UserId,
    /// Derived from the key.
    pub device: DeviceId,
    /// The device's Ed25519 public key.
    pub key: [u8; 32],
    /// Registration proof, for devices the relay does not know.
    pub registration: Registration,
    /// Resume hints.
    pub resume: Vec<Resume>,
}

/// What the relay does next.
#[derive(Clone, Debug, PartialEq)]
pub enum RelayStep {
    /// Send this frame and wait for the next client frame.
    Reply(RelayFrame),
    /// The device proved its key; check registration, then send `Ready`.
    Authenticated(Box<ProvenDevice>),
    /// Send this error and close the connection.
    Reject(WireError),
    /// The client asked for a device-linking rendezvous instead of
    /// authenticating: pair the connection on `slot` and forward `payload`.
    Rendezvous {
        /// The slot named by the client.
        slot: [u8; 16],
        /// Its first payload.
        payload: bytes::Bytes,
    },
}

#[derive(Clone, Debug)]
enum RelayState {
    AwaitHello,
    AwaitAuth { version: u16 },
    Done,
}

/// The relay's side of the handshake.
#[derive(Clone, Debug)]
pub struct RelayHandshake {
    state: RelayState,
    nonce: [u8; 32],
    relay_id: String,
    max_frame_len: u32,
    heartbeat_ms: u32,
    /// The connection's exporter value, when the transport has one.
    binding: Option<[u8; 32]>,
    /// Refuse signatures over the unbound transcript.
    require_binding: bool,
}

impl RelayHandshake {
    /// Starts a handshake. `nonce` must be fresh random bytes.
    pub fn new(nonce: [u8; 32], relay_id: impl Into<String>, max_frame_len: u32, heartbeat_ms: u32) -> Self {
        RelayHandshake {
            state: RelayState::AwaitHello,
            nonce,
            relay_id: relay_id.into(),
            max_frame_len,
            heartbeat_ms,
            binding: None,
            require_binding: false,
        }
    }

    /// The connection's TLS exporter value (`auth::BINDING_EXPORTER_LABEL`):
    /// a signature over the bound transcript is accepted, and with `require`
    /// only that one.
    pub fn with_binding(mut self, binding: Option<[u8; 32]>, require: bool) -> Self {
        self.binding = binding;
        self.require_binding = require;
        self
    }

    /// Feeds one client frame.
    pub fn on_frame(&mut self, frame: ClientFrame) -> RelayStep {
        match (&self.state, frame) {
            (RelayState::AwaitHello, ClientFrame::Hello(hello)) => self.on_hello(hello),
            (RelayState::AwaitAuth { version }, ClientFrame::Authenticate(auth)) => {
                let version = *version;
                self.on_auth(version, auth)
            }
            (RelayState::AwaitAuth { .. }, ClientFrame::Rendezvous { slot, payload }) => {
                self.state = RelayState::Done;
                if payload.len() > crate::limits::MAX_RENDEZVOUS_PAYLOAD {
                    return RelayStep::Reject(WireError::new(
                        ErrorCode::InvalidRequest,
                        "rendezvous payload too large",
                    ));
                }
                RelayStep::Rendezvous { slot, payload }
            }
            (RelayState::Done, _) => {
                RelayStep::Reject(WireError::new(ErrorCode::UnexpectedFrame, "handshake already finished"))
            }
            (RelayState::AwaitHello, _) => {
                self.state = RelayState::Done;
                RelayStep::Reject(WireError::new(
                    ErrorCode::Unauthenticated,
                    "the first frame must be Hello",
                ))
            }
            (RelayState::AwaitAuth { .. }, _) => {
                self.state = RelayState::Done;
                RelayStep::Reject(WireError::new(
                    ErrorCode::Unauthenticated,
                    "authenticate before anything else",
                ))
            }
        }
    }

    fn on_hello(&mut self, hello: Hello) -> RelayStep {
        let Some(version) = negotiate(hello.min_version, hello.max_version) else {
            self.state = RelayState::Done;
            return RelayStep::Reject(WireError::with_detail(
                ErrorCode::UnsupportedVersion,
                format!(
                    "client speaks {}..={}, relay speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                    hello.min_version, hello.max_version
                ),
                ErrorDetail::Versions {
                    min: MIN_PROTOCOL_VERSION,
                    max: PROTOCOL_VERSION,
                },
            ));
        };
        self.state = RelayState::AwaitAuth { version };
        RelayStep::Reply(RelayFrame::Challenge(Challenge {
            version,
            nonce: self.nonce,
            relay_id: self.relay_id.clone(),
            max_frame_len: self.max_frame_len,
            heartbeat_ms: self.heartbeat_ms,
        }))
    }

    fn on_auth(&mut self, version: u16, auth: Authenticate) -> RelayStep {
        self.state = RelayState::Done;
        if !auth.user.is_valid() {
            return RelayStep::Reject(WireError::new(
                ErrorCode::InvalidRequest,
                "user id must be 1..=128 bytes without control characters",
            ));
        }
        if auth.resume.len() > MAX_RESUME_HINTS {
            return RelayStep::Reject(WireError::new(ErrorCode::InvalidRequest, "too many resume hints"));
        }
        if let Registration::Token(t) = &auth.registration
            && t.len() > MAX_TOKEN_LEN
        {
            return RelayStep::Reject(WireError::new(ErrorCode::InvalidToken, "registration token too long"));
        }
        let bound = self.binding.is_some_and(|b| {
            let t = bound_auth_transcript(&self.nonce, &self.relay_id, &auth.user, &auth.device_key, &b);
            verify(&auth.device_key, &t, &auth.signature)
        });
        if !bound {
            if self.require_binding {
                return RelayStep::Reject(WireError::new(
                    ErrorCode::AuthFailed,
                    "this relay accepts only signatures bound to the TLS connection (hush-auth-v2)",
                ));
            }
            let transcript = auth_transcript(&self.nonce, &self.relay_id, &auth.user, &auth.device_key);
            if !verify(&auth.device_key, &transcript, &auth.signature) {
                return RelayStep::Reject(WireError::new(ErrorCode::AuthFailed, "signature does not verify"));
            }
        }
        RelayStep::Authenticated(Box::new(ProvenDevice {
            version,
            user: auth.user,
            device: DeviceId::from_public_key(&auth.device_key),
            key: auth.device_key,
            registration: auth.registration,
            resume: auth.resume,
        }))
    }
}

/// The client's side of the handshake.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    user: UserId,
    device_key: [u8; 32],
    binding: Option<[u8; 32]>,
}

impl ClientHandshake {
    /// Starts a handshake for `user` with the device's public key.
    pub fn new(user: UserId, device_key: [u8; 32]) -> Self {
        ClientHandshake {
            user,
            device_key,
            binding: None,
        }
    }

    /// Signs the transcript bound to the connection (`hush-auth-v2`) with
    /// its TLS exporter value (`auth::BINDING_EXPORTER_LABEL`).
    pub fn with_binding(mut self, binding: [u8; 32]) -> Self {
        self.binding = Some(binding);
        self
    }

    /// The first frame to send.
    pub fn hello(&self, client: &str) -> ClientFrame {
        // The name is limited to 64 bytes (not characters); cut on a character boundary.
        let mut end = client.len().min(64);
        while !client.is_char_boundary(end) {
            end -= 1;
        }
        ClientFrame::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client: client[..end].to_owned(),
        })
    }

    /// Answers the relay's first frame. `sign` signs the auth transcript with the
    /// device key.
    pub fn on_challenge(
        &self,
        frame: RelayFrame,
        sign: impl FnOnce(&[u8]) -> Signature,
        registration: Registration,
        resume: Vec<Resume>,
    ) -> Result<(Challenge, ClientFrame), WireError> {
        match frame {
            RelayFrame::Challenge(ch) if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&ch.version) => {
                Err(WireError::with_detail(
                    ErrorCode::UnsupportedVersion,
                    format!("relay chose version {}, which this client does not speak", ch.version),
                    ErrorDetail::Versions {
                        min: MIN_PROTOCOL_VERSION,
                        max: PROTOCOL_VERSION,
                    },
                ))
            }
            RelayFrame::Challenge(ch) => {
                let transcript = match &self.binding {
                    Some(b) => bound_auth_transcript(&ch.nonce, &ch.relay_id, &self.user, &self.device_key, b),
                    None => auth_transcript(&ch.nonce, &ch.relay_id, &self.user, &self.device_key),
                };
                let auth = ClientFrame::Authenticate(Authenticate {
                    user: self.user.clone(),
                    device_key: self.device_key,
                    signature: sign(&transcript),
                    registration,
                    resume,
                });
                Ok((ch, auth))
            }
            RelayFrame::Error(e) => Err(e),
            other => Err(WireError::new(
                ErrorCode::UnexpectedFrame,
                format!("expected Challenge, got {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn run(key: &SigningKey, tamper: bool) -> RelayStep {
        let public = key.verifying_key().to_bytes();
        let client = ClientHandshake::new(UserId::from("alice"), public);
        let mut relay = RelayHandshake::new([9; 32], "r1", 1 << 20, 10_000);
        let RelayStep::Reply(challenge) = relay.on_frame(client.hello("test")) else {
            panic!("no challenge")
        };
        let (_, auth) = client
            .on_challenge(
                challenge,
                |m| {
                    let mut s = key.sign(m).to_bytes();
                    if tamper {
                        s[0] ^= 1;
                    }
                    Signature(s)
                },
                Registration::None,
                vec![],
            )
            .unwrap();
        relay.on_frame(auth)
    }

    /// A handshake where the client binds to `client_binding` (if any) and
    /// the relay sees `relay_binding`.
    fn bound(client_binding: Option<[u8; 32]>, relay_binding: Option<[u8; 32]>, require: bool) -> RelayStep {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut client = ClientHandshake::new(UserId::from("alice"), key.verifying_key().to_bytes());
        if let Some(b) = client_binding {
            client = client.with_binding(b);
        }
        let mut relay = RelayHandshake::new([9; 32], "r1", 1 << 20, 10_000).with_binding(relay_binding, require);
        let RelayStep::Reply(challenge) = relay.on_frame(client.hello("test")) else {
            panic!("no challenge")
        };
        let (_, auth) = client
            .on_challenge(
                challenge,
                |m| Signature(key.sign(m).to_bytes()),
                Registration::None,
                vec![],
            )
            .unwrap();
        relay.on_frame(auth)
    }

    #[test]
    fn bound_signatures_verify_only_on_their_connection() {
        let ok = |s: RelayStep| matches!(s, RelayStep::Authenticated(_));
        assert!(ok(bound(Some([1; 32]), Some([1; 32]), true)));
        assert!(!ok(bound(Some([1; 32]), Some([2; 32]), false)));
        assert!(!ok(bound(Some([1; 32]), None, false)));
        // Unbound: accepted unless the relay requires binding.
        assert!(ok(bound(None, Some([1; 32]), false)));
        assert!(!ok(bound(None, Some([1; 32]), true)));
    }

    #[test]
    fn good_signature_authenticates_and_derives_device_id() {
        let key = SigningKey::from_bytes(&[3; 32]);
        match run(&key, false) {
            RelayStep::Authenticated(p) => {
                assert_eq!(p.device, DeviceId::from_public_key(&key.verifying_key().to_bytes()));
                assert_eq!(p.version, PROTOCOL_VERSION);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hello_client_name_is_at_most_64_bytes() {
        let client = ClientHandshake::new(UserId::from("alice"), [0; 32]);
        let ClientFrame::Hello(hello) = client.hello(&"é".repeat(40)) else {
            panic!("not a hello")
        };
        assert_eq!(hello.client, "é".repeat(32));
    }

    #[test]
    fn challenge_with_a_version_the_client_does_not_speak_is_refused() {
        let client = ClientHandshake::new(UserId::from("alice"), [0; 32]);
        let challenge = RelayFrame::Challenge(Challenge {
            version: PROTOCOL_VERSION + 1,
            nonce: [0; 32],
            relay_id: "r1".into(),
            max_frame_len: 1 << 20,
            heartbeat_ms: 10_000,
        });
        let result = client.on_challenge(challenge, |_| Signature([0; 64]), Registration::None, vec![]);
        assert!(matches!(result, Err(e) if e.code == ErrorCode::UnsupportedVersion));
    }

    #[test]
    fn bad_signature_is_rejected() {
        let key = SigningKey::from_bytes(&[3; 32]);
        assert!(matches!(run(&key, true), RelayStep::Reject(e) if e.code == ErrorCode::AuthFailed));
    }

    #[test]
    fn request_before_auth_is_rejected() {
        let mut relay = RelayHandshake::new([9; 32], "r1", 1 << 20, 10_000);
        let step = relay.on_frame(ClientFrame::Ping { nonce: 1 });
        assert!(matches!(step, RelayStep::Reject(e) if e.code == ErrorCode::Unauthenticated));
    }

    #[test]
    fn version_mismatch_carries_supported_range() {
        let mut relay = RelayHandshake::new([9; 32], "r1", 1 << 20, 10_000);
        let step = relay.on_frame(ClientFrame::Hello(Hello {
            min_version: 7,
            max_version: 9,
            client: String::new(),
        }));
        match step {
            RelayStep::Reject(e) => {
                assert_eq!(e.code, ErrorCode::UnsupportedVersion);
                assert_eq!(
                    e.detail,
                    ErrorDetail::Versions {
                        min: MIN_PROTOCOL_VERSION,
                        max: PROTOCOL_VERSION
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
