//! Hello → Challenge → Authenticate, then registration rules.

use std::time::Instant;

use hush_protocol::auth::{link_transcript_until, verify};
use hush_protocol::codec;
use hush_protocol::frame::{ClientFrame, CloseReason, Registration, RelayFrame, Resume};
use hush_protocol::limits::MAX_LINK_APPROVAL_MS;
use hush_protocol::session::{ProvenDevice, RelayHandshake, RelayStep};
use hush_protocol::{ErrorCode, WireError};
use rand::RngCore;

use super::{Authenticated, Exit, encode};
use crate::state::{Shared, now_ms};
use crate::store::{DeviceRecord, RegisterOutcome};
use crate::transport::{FrameReader, FrameWriter, TransportError};

/// A device that completed the handshake.
pub struct Proven {
    /// Who it is.
    pub device: Authenticated,
    /// Where it wants delivery to resume.
    pub resume: Vec<Resume>,
}

/// How a handshake ended well.
pub enum Handshaken {
    /// A device proved its key (and is registered).
    Device(Proven),
    /// An unauthenticated device-linking rendezvous.
    Rendezvous {
        /// The slot.
        slot: [u8; 16],
        /// The first payload.
        payload: bytes::Bytes,
    },
}

/// Runs the handshake; on failure, the error has been sent and the returned exit
/// says how to close.
pub async fn run(
    shared: &Shared,
    reader: &mut dyn FrameReader,
    writer: &mut dyn FrameWriter,
    deadline: Instant,
    binding: Option<[u8; 32]>,
) -> Result<Handshaken, Exit> {
    let limits = &shared.config.limits;
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut hs = RelayHandshake::new(
        nonce,
        shared.config.relay_id.clone(),
        limits.max_frame_len as u32,
        limits.heartbeat_ms as u32,
    )
    .with_binding(binding, shared.config.auth.require_channel_binding);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bytes = match tokio::time::timeout(remaining, reader.recv()).await {
            Err(_) => {
                return Err(Exit::Close(
                    CloseReason::HandshakeTimeout,
                    "handshake did not complete in time".into(),
                ));
            }
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) | Ok(Err(TransportError::Io(_))) => return Err(Exit::Peer),
            Ok(Err(TransportError::TooLarge { len, max })) => {
                let e = WireError::new(ErrorCode::FrameTooLarge, format!("frame of {len} bytes exceeds {max}"));
                return Err(reject(writer, e, CloseReason::ProtocolError).await);
            }
            Ok(Err(e)) => {
                return Err(reject(
                    writer,
                    WireError::new(ErrorCode::Malformed, e.to_string()),
                    CloseReason::ProtocolError,
                )
                .await);
            }
        };
        let frame = match codec::decode_with_limit::<ClientFrame>(&bytes, limits.max_frame_len) {
            Ok(f) => f,
            Err(e) => return Err(reject(writer, e.into(), CloseReason::ProtocolError).await),
        };
        match hs.on_frame(frame) {
            RelayStep::Reply(f) => {
                if let Some(b) = encode(&f)
                    && (writer.feed(b).await.is_err() || writer.flush().await.is_err())
                {
                    return Err(Exit::Peer);
                }
            }
            RelayStep::Reject(e) => {
                let reason = if e.code == ErrorCode::AuthFailed {
                    CloseReason::AuthFailed
                } else {
                    CloseReason::ProtocolError
                };
                return Err(reject(writer, e, reason).await);
            }
            RelayStep::Rendezvous { slot, payload } => return Ok(Handshaken::Rendezvous { slot, payload }),
            RelayStep::Authenticated(p) => {
                return match register(shared, &p).await {
                    Ok(registered) => Ok(Handshaken::Device(Proven {
                        device: Authenticated {
                            device: p.device,
                            user: p.user.clone(),
                            registered,
                        },
                        resume: p.resume,
                    })),
                    Err(e) => Err(reject(writer, e, CloseReason::AuthFailed).await),
                };
            }
        }
    }
}

async fn reject(writer: &mut dyn FrameWriter, e: WireError, reason: CloseReason) -> Exit {
    let msg = e.message.clone();
    if let Some(b) = encode(&RelayFrame::Error(e)) {
        let _ = writer.feed(b).await;
    }
    Exit::Close(reason, msg)
}

/// Applies the registration rules; returns whether the device was newly registered.
async fn register(shared: &Shared, p: &ProvenDevice) -> Result<bool, WireError> {
    if shared.store.revocation(p.device).await?.is_some() {
        return Err(WireError::new(
            ErrorCode::Revoked,
            "this device was revoked by a device of its user",
        ));
    }
    if let Some(existing) = shared.store.device(p.device).await? {
        if existing.user != p.user {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                "this device is registered to another user",
            ));
        }
        return Ok(false);
    }
    match &p.registration {
        Registration::None if shared.config.registration_open() => {}
        Registration::None => {
            return Err(WireError::new(
                ErrorCode::RegistrationRequired,
                "new device: present a registration token from the app, or a link approval from another device of the user",
            ));
        }
        Registration::Token(token) => {
            if !shared.tokens.has_keys() {
                if !shared.config.registration_open() {
                    return Err(WireError::new(
                        ErrorCode::InvalidToken,
                        "this relay accepts no registration tokens",
                    ));
                }
            } else {
                let claims = shared
                    .tokens
                    .verify(token, now_ms() / 1000)
                    .map_err(|e| WireError::new(ErrorCode::InvalidToken, e.to_string()))?;
                if claims.sub != p.user.0 {
                    return Err(WireError::new(
                        ErrorCode::InvalidToken,
                        "token subject is not this user",
                    ));
                }
                if claims.device.is_some_and(|d| d != p.device.0) {
                    return Err(WireError::new(
                        ErrorCode::InvalidToken,
                        "token is bound to another device",
                    ));
                }
            }
        }
        Registration::Linked { .. } => {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                "link approvals without an expiry are not accepted: use LinkedUntil",
            ));
        }
        Registration::LinkedUntil {
            by,
            expires_ms,
            signature,
        } => {
            let now = now_ms();
            if *expires_ms < now || *expires_ms > now.saturating_add(MAX_LINK_APPROVAL_MS) {
                return Err(WireError::new(
                    ErrorCode::AuthFailed,
                    format!(
                        "link approval expired or valid for longer than {} minutes",
                        MAX_LINK_APPROVAL_MS / 60_000
                    ),
                ));
            }
            let approver = shared.store.device(*by).await?;
            let Some(approver) = approver.filter(|a| a.user == p.user) else {
                return Err(WireError::new(
                    ErrorCode::AuthFailed,
                    "approving device is not a device of this user",
                ));
            };
            // A revoked device's approvals are void, pending ones included.
            if shared.store.revocation(*by).await?.is_some() {
                return Err(WireError::new(
                    ErrorCode::AuthFailed,
                    "the approving device was revoked",
                ));
            }
            if !verify(
                &approver.key,
                &link_transcript_until(&p.user, &p.key, *expires_ms),
                signature,
            ) {
                return Err(WireError::new(
                    ErrorCode::AuthFailed,
                    "link approval signature does not verify",
                ));
            }
        }
    }
    let record = DeviceRecord {
        device: p.device,
        user: p.user.clone(),
        key: p.key,
        registered_ms: now_ms(),
    };
    // Registrations are rare (once per device): one at a time keeps the
    // count and the registration together.
    let _one = shared.registering.lock().await;
    let cap = shared.config.limits.max_devices_per_user;
    let mut active = 0;
    for d in shared.store.user_devices(&p.user).await? {
        if d.device != p.device && shared.store.revocation(d.device).await?.is_none() {
            active += 1;
        }
    }
    if active >= cap {
        return Err(WireError::new(
            ErrorCode::QuotaExceeded,
            format!("this user has {active} devices, the relay's limit; revoke one first"),
        ));
    }
    match shared.store.register_device(record).await? {
        RegisterOutcome::Registered => Ok(true),
        // Registered concurrently by another connection of the same key.
        RegisterOutcome::Existing(e) if e.user == p.user => Ok(false),
        RegisterOutcome::Existing(_) => Err(WireError::new(
            ErrorCode::AuthFailed,
            "this device is registered to another user",
        )),
    }
}
