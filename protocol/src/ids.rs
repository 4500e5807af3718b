//! Identifiers carried on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{MAX_GROUP_ID_LEN, MAX_USER_ID_LEN};

/// A device: the first 16 bytes of `SHA-256("hush-device-id-v1" || ed25519 public key)`.
///
/// Deriving the id from the key means no one can claim another device's id, and a
/// relay checks the derivation at authentication.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// Derives the device id of an Ed25519 public key.
    pub fn from_public_key(key: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"hush-device-id-v1");
        h.update(key);
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DeviceId(id)
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            id[i] = (hi * 16 + lo) as u8;
        }
        Some(DeviceId(id))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.to_hex())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A group: the MLS group id, opaque bytes chosen by the creating client (1..=255 bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl GroupId {
    /// Whether the id is within the protocol's length bounds.
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= MAX_GROUP_ID_LEN
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_hex())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<&[u8]> for GroupId {
    fn from(b: &[u8]) -> Self {
        GroupId(b.to_vec())
    }
}

/// A user, as named by the app's backend (the `sub` of its registration token).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct UserId(pub String);

impl UserId {
    /// Whether the id is within bounds: 1..=128 bytes, and no control,
    /// white-space or separator, or format characters (bidi overrides,
    /// zero-width characters, tags: what would let two ids look alike or
    /// an id reorder the text around it).
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty()
            && self.0.len() <= MAX_USER_ID_LEN
            && !self
                .0
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || is_format(c))
    }
}

/// Unicode general category Cf (format characters).
fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for UserId {
    fn from(s: &str) -> Self {
        UserId(s.to_owned())
    }
}

/// A sender-chosen message id; `(group, sender device, client message id)` is the
/// idempotency key of a send.
pub type ClientMsgId = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_refuse_characters_that_disguise_them() {
        for ok in ["alice", "Zoë", "李雷", "bob-2", "a.b_c"] {
            assert!(UserId::from(ok).is_valid(), "{ok:?}");
        }
        for bad in [
            "",
            "ali\u{202E}ecb",
            "bo\u{200B}b",
            "\u{FEFF}alice",
            "alice bob",
            "alice\u{2028}",
            "al\u{00A0}ice",
            "tag\u{E0041}",
            "ctl\u{7}",
        ] {
            assert!(!UserId::from(bad).is_valid(), "{bad:?}");
        }
        assert!(!UserId("x".repeat(129)).is_valid());
    }
}
