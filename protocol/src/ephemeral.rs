//! The sealed envelope of an ephemeral signal (typing): the payload of
//! `ClientFrame::Ephemeral` and `RelayFrame::Ephemeral`.
//!
//! Ephemeral signals never touch a group's MLS state: they are not MLS
//! messages, and they are not encrypted with the message ratchet (a signal
//! that overtook a backlog would otherwise use up the keys of the messages it
//! overtook). Members encrypt them with a key exported from the current
//! epoch, and sign them with their device key. The relay reads only the
//! header below: it refuses anything that is not such an envelope (an MLS
//! commit sent as a typing signal, say) or that is for another epoch.
//!
//! ```text
//! offset  bytes  field
//! 0       2      magic: 48 45 ("HE"; an MLS message starts 00 01)
//! 2       1      version: 01
//! 3       8      epoch the key was exported from, u64 big-endian
//! 11      12     nonce, random
//! 23      n      AEAD ciphertext and 16-byte tag of: Ed25519 signature (64) || plaintext
//! ```
//!
//! The key is the MLS exporter secret of that epoch with label
//! [`EXPORTER_LABEL`], context the group id, of the ciphersuite's AEAD key
//! length; the AEAD is the ciphersuite's. The associated data is
//! [`associated_data`]; the signature is over `SIGNATURE_LABEL ||
//! associated data || plaintext`, by the sending device's Ed25519 key.

use crate::ids::{DeviceId, GroupId};

/// First two bytes of every envelope.
pub const MAGIC: [u8; 2] = *b"HE";
/// The envelope version described here.
pub const VERSION: u8 = 1;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 2 + 1 + 8 + NONCE_LEN;
/// AEAD nonce length (every MLS ciphersuite's AEAD uses 12).
pub const NONCE_LEN: usize = 12;
/// AEAD tag length (every MLS ciphersuite's AEAD uses 16).
pub const TAG_LEN: usize = 16;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Shortest valid envelope: header, signature and tag, empty plaintext.
pub const MIN_LEN: usize = HEADER_LEN + SIGNATURE_LEN + TAG_LEN;
/// Label of the MLS exporter secret the key is derived from.
pub const EXPORTER_LABEL: &str = "hush ephemeral v1";
/// Label in front of what the sender signs.
pub const SIGNATURE_LABEL: &[u8] = b"hush-ephemeral-sig-v1";
/// Label in front of the associated data.
pub const AAD_LABEL: &[u8] = b"hush-ephemeral-v1";

/// What the relay can read of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The epoch whose exported key sealed it.
    pub epoch: u64,
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Why bytes are not an envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are an MLS message (they start with its version, `00 01`).
    #[error("an MLS message is not an ephemeral signal")]
    Mls,
    /// Wrong magic or version, or shorter than the smallest envelope.
    #[error("not an ephemeral envelope (magic 48 45, version 1, at least {MIN_LEN} bytes)")]
    Malformed,
}

/// Reads the header of an envelope, checking its magic, version and length.
pub fn header(bytes: &[u8]) -> Result<Header, EnvelopeError> {
    if bytes.starts_with(&[0x00, 0x01]) {
        return Err(EnvelopeError::Mls);
    }
    if bytes.len() < MIN_LEN || bytes[..2] != MAGIC || bytes[2] != VERSION {
        return Err(EnvelopeError::Malformed);
    }
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(&bytes[3..11]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[11..HEADER_LEN]);
    Ok(Header {
        epoch: u64::from_be_bytes(epoch),
        nonce,
    })
}

/// The header bytes of an envelope.
pub fn encode_header(epoch: u64, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3..11].copy_from_slice(&epoch.to_be_bytes());
    out[11..].copy_from_slice(nonce);
    out
}

/// The AEAD associated data: `AAD_LABEL || u8 group id length || group id ||
/// epoch (u64 BE) || sender device id (16)`. It binds a signal to its group,
/// epoch and sender: one replayed in another group or under another sender
/// fails to open.
pub fn associated_data(group: &GroupId, epoch: u64, sender: DeviceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + 1 + group.0.len() + 8 + 16);
    out.extend_from_slice(AAD_LABEL);
    // Group ids are at most 255 bytes (limits::MAX_GROUP_ID_LEN).
    out.push(u8::try_from(group.0.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&group.0);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&sender.0);
    out
}

/// What the sender signs: `SIGNATURE_LABEL || associated data || plaintext`.
pub fn signed_bytes(aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_LABEL.len() + aad.len() + plaintext.len());
    out.extend_from_slice(SIGNATURE_LABEL);
    out.extend_from_slice(aad);
    out.extend_from_slice(plaintext);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_mls_or_garbage_is_refused() {
        let mut env = encode_header(7, &[9; NONCE_LEN]).to_vec();
        env.extend_from_slice(&[0; SIGNATURE_LEN + TAG_LEN]);
        assert_eq!(
            header(&env),
            Ok(Header {
                epoch: 7,
                nonce: [9; NONCE_LEN]
            })
        );
        assert_eq!(header(&env[..MIN_LEN - 1]), Err(EnvelopeError::Malformed));
        let mut mls = env.clone();
        mls[..2].copy_from_slice(&[0, 1]);
        assert_eq!(header(&mls), Err(EnvelopeError::Mls));
        let mut v2 = env;
        v2[2] = 2;
        assert_eq!(header(&v2), Err(EnvelopeError::Malformed));
        assert_eq!(header(b"typing"), Err(EnvelopeError::Malformed));
    }
}
