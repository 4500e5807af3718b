//! What a device signs, and signature checks.
//!
//! Every signed byte string starts with a distinct domain label so a signature
//! made for one purpose can never be replayed for another.

use ed25519_dalek::{Signature as DalekSignature, Verifier, VerifyingKey};

use crate::frame::Signature;
use crate::ids::UserId;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes a device signs to authenticate:
/// `"hush-auth-v1\0" || nonce(32) || u16be len || relay_id || u16be len || user || device_key(32)`.
pub fn auth_transcript(nonce: &[u8; 32], relay_id: &str, user: &UserId, device_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + 32 + 4 + relay_id.len() + user.0.len() + 32);
    out.extend_from_slice(b"hush-auth-v1\0");
    out.extend_from_slice(nonce);
    put_str(&mut out, relay_id);
    put_str(&mut out, &user.0);
    out.extend_from_slice(device_key);
    out
}

/// The TLS exporter label of the channel binding (RFC 5705, RFC 8446 7.5):
/// each side exports 32 bytes with this label and an empty context from the
/// TLS (or QUIC) connection the handshake runs on.
pub const BINDING_EXPORTER_LABEL: &[u8] = b"EXPORTER-hush-auth-v2";

/// The auth transcript bound to the TLS connection:
/// `"hush-auth-v2\0" || nonce(32) || u16be len || relay_id || u16be len ||
/// user || device_key(32) || binding(32)`, where `binding` is the connection's
/// exporter value under [`BINDING_EXPORTER_LABEL`]. A signature over it is
/// good only on the connection it was made for: a party in the middle (which
/// has two TLS connections) cannot pass it on.
pub fn bound_auth_transcript(
    nonce: &[u8; 32],
    relay_id: &str,
    user: &UserId,
    device_key: &[u8; 32],
    binding: &[u8; 32],
) -> Vec<u8> {
    let mut out = auth_transcript(nonce, relay_id, user, device_key);
    out[..13].copy_from_slice(b"hush-auth-v2\0");
    out.extend_from_slice(binding);
    out
}

/// The bytes an existing device signs to approve a new device of the same user:
/// `"hush-link-v1\0" || u16be len || user || new_device_key(32)`.
pub fn link_transcript(user: &UserId, new_device_key: &[u8; 32]) -> Vec<u8> {
    user_key_transcript(b"hush-link-v1\0", user, new_device_key)
}

/// The bytes an existing device signs to approve a new device of the same user
/// until `expires_ms`: `"hush-link-v2\0" || u16be len || user ||
/// new_device_key(32) || expires_ms (u64 BE)`.
pub fn link_transcript_until(user: &UserId, new_device_key: &[u8; 32], expires_ms: u64) -> Vec<u8> {
    let mut out = user_key_transcript(b"hush-link-v2\0", user, new_device_key);
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out
}

/// The bytes a device signs to revoke another device of its user (or itself):
/// `"hush-revoke-v1\0" || u16be len || user || revoked_device_key(32)`.
pub fn revoke_transcript(user: &UserId, revoked_device_key: &[u8; 32]) -> Vec<u8> {
    user_key_transcript(b"hush-revoke-v1\0", user, revoked_device_key)
}

/// The bytes an identity authority signs to certify that a device key is a
/// device of `user` (carried in the device's MLS credential):
/// `"hush-identity-v1\0" || u16be len || user || device_key(32)`.
pub fn identity_transcript(user: &UserId, device_key: &[u8; 32]) -> Vec<u8> {
    user_key_transcript(b"hush-identity-v1\0", user, device_key)
}

/// `label || u16be len || user || key(32)`.
fn user_key_transcript(label: &[u8], user: &UserId, key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 2 + user.0.len() + 32);
    out.extend_from_slice(label);
    put_str(&mut out, &user.0);
    out.extend_from_slice(key);
    out
}

/// Checks an Ed25519 signature (strict verification: no malleable signatures,
/// no small-order keys).
pub fn verify(key: &[u8; 32], message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    let sig = DalekSignature::from_bytes(&signature.0);
    key.verify_strict(message, &sig).is_ok() && key.verify(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn sign_and_verify_round_trip_and_domain_separation() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key().to_bytes();
        let user = UserId::from("alice");
        let msg = auth_transcript(&[1; 32], "relay", &user, &public);
        let sig = Signature(key.sign(&msg).to_bytes());
        assert!(verify(&public, &msg, &sig));
        assert!(!verify(
            &public,
            &auth_transcript(&[2; 32], "relay", &user, &public),
            &sig
        ));
        assert!(!verify(&public, &link_transcript(&user, &public), &sig));
    }
}
