//! Safety numbers: what two people compare, out of band, to know that the
//! keys their apps use are really each other's devices and no one else's.
//!
//! A user's [`Fingerprint`] covers the user id and the set of all their
//! device keys (order does not matter; adding or removing a device changes
//! it). Two users' fingerprints combine into one [`SafetyNumber`] that both
//! sides compute identically. The digits are derived like Signal's: an
//! iterated SHA-512 (5200 rounds, to make grinding a key whose number
//! collides costly), then 30 digits per user in groups of five.

use std::fmt;

use hush_protocol::UserId;
use sha2::{Digest, Sha512};

const ROUNDS: usize = 5200;
const LABEL: &[u8] = b"hush-fingerprint-v1";

/// Thirty digits standing for one user and their set of device keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u32; 6]);

impl Fingerprint {
    /// The fingerprint of `user` with these Ed25519 device keys (any order;
    /// duplicates count once).
    pub fn of_user(user: &UserId, device_keys: &[[u8; 32]]) -> Self {
        let mut keys = device_keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut input = Vec::with_capacity(LABEL.len() + 2 + user.0.len() + 4 + keys.len() * 32);
        input.extend_from_slice(LABEL);
        input.extend_from_slice(&(user.0.len() as u16).to_be_bytes());
        input.extend_from_slice(user.0.as_bytes());
        input.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        for k in &keys {
            input.extend_from_slice(k);
        }
        let mut digest = Sha512::digest(&input);
        for _ in 1..ROUNDS {
            let mut h = Sha512::new();
            h.update(digest);
            h.update(&input);
            digest = h.finalize();
        }
        let mut groups = [0u32; 6];
        for (i, g) in groups.iter_mut().enumerate() {
            let chunk = &digest[i * 5..i * 5 + 5];
            let n = chunk.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            *g = (n % 100_000) as u32;
        }
        Fingerprint(groups)
    }
}

impl fmt::Display for Fingerprint {
    /// Six groups of five digits separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Sixty digits two users compare: both fingerprints, the smaller first, so
/// both sides see the same number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyNumber([Fingerprint; 2]);

impl SafetyNumber {
    /// Combines two users' fingerprints (in either order).
    pub fn new(a: Fingerprint, b: Fingerprint) -> Self {
        if a <= b {
            SafetyNumber([a, b])
        } else {
            SafetyNumber([b, a])
        }
    }
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0[0], self.0[1])
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stable_order_independent_and_sensitive_to_the_device_set() {
        let alice = UserId::from("alice");
        let a = Fingerprint::of_user(&alice, &[[1; 32], [2; 32]]);
        assert_eq!(a, Fingerprint::of_user(&alice, &[[2; 32], [1; 32], [1; 32]]));
        assert_ne!(a, Fingerprint::of_user(&alice, &[[1; 32]]));
        assert_ne!(a, Fingerprint::of_user(&UserId::from("alicf"), &[[1; 32], [2; 32]]));
        let text = a.to_string();
        assert_eq!(text.len(), 6 * 5 + 5);
        assert!(
            text.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );

        let b = Fingerprint::of_user(&UserId::from("bob"), &[[9; 32]]);
        assert_eq!(SafetyNumber::new(a, b), SafetyNumber::new(b, a));
        assert_eq!(SafetyNumber::new(a, b).to_string().len(), 12 * 5 + 11);
    }
}
