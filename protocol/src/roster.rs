//! The roster binding: what a commit claims to change, inside the commit.
//!
//! Every commit carries, in its MLS `authenticated_data` (sent in clear,
//! covered by the sender's signature and the AEAD), the devices its roster
//! change adds and removes:
//!
//! ```text
//!   "HR" 0x01 | u16 BE n | n × device_id (16) | u16 BE m | m × device_id (16)
//!             (added, in envelope order)       (removed, in envelope order)
//! ```
//!
//! The relay refuses a commit whose binding is not the envelope's roster
//! change, so the roster it applies is the one the committer signed; every
//! member checks the binding against the adds and removes MLS actually made,
//! so the relay's roster and the MLS group cannot drift apart without every
//! member noticing: a commit whose binding does not match is not merged.

use crate::DeviceId;

/// First bytes of a roster binding (magic and version).
pub const ROSTER_BINDING_MAGIC: [u8; 3] = *b"HR\x01";

/// The binding of a commit that adds `add` and removes `remove`.
///
/// ```
/// use hush_protocol::{DeviceId, roster::{binding, parse_binding}};
/// let a = DeviceId([1; 16]);
/// let b = binding(&[a], &[]);
/// assert_eq!(b.len(), 3 + 2 + 16 + 2);
/// assert_eq!(parse_binding(&b), Some((vec![a], vec![])));
/// ```
pub fn binding(add: &[DeviceId], remove: &[DeviceId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + 4 + 16 * (add.len() + remove.len()));
    out.extend_from_slice(&ROSTER_BINDING_MAGIC);
    for list in [add, remove] {
        let n = u16::try_from(list.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for d in list.iter().take(usize::from(n)) {
            out.extend_from_slice(&d.0);
        }
    }
    out
}

/// Reads a binding: `(added, removed)`, or `None` when `bytes` is not one.
pub fn parse_binding(bytes: &[u8]) -> Option<(Vec<DeviceId>, Vec<DeviceId>)> {
    let mut rest = bytes.strip_prefix(&ROSTER_BINDING_MAGIC[..])?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let (n, tail) = rest.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_be_bytes(*n));
        if tail.len() < n * 16 {
            return None;
        }
        let (ids, tail) = tail.split_at(n * 16);
        list.extend(ids.chunks_exact(16).map(|c| DeviceId(c.try_into().unwrap_or([0; 16]))));
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    let [add, remove] = lists;
    Some((add, remove))
}

/// Whether two device lists name the same devices (order does not matter).
pub fn same_devices(a: &[DeviceId], b: &[DeviceId]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_round_trip_and_refuse_trailing_or_short_bytes() {
        let (a, b, c) = (DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16]));
        let bytes = binding(&[a, b], &[c]);
        assert_eq!(parse_binding(&bytes), Some((vec![a, b], vec![c])));
        assert_eq!(parse_binding(&binding(&[], &[])), Some((vec![], vec![])));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(parse_binding(&long), None);
        assert_eq!(parse_binding(&bytes[..bytes.len() - 1]), None);
        assert_eq!(parse_binding(b""), None);
        assert_eq!(parse_binding(b"HR\x02\0\0\0\0"), None);
        assert!(same_devices(&[a, b], &[b, a]));
        assert!(!same_devices(&[a], &[a, a]));
    }
}
