//! QUIC datagrams of a WebTransport session: one bare encoded frame per
//! datagram (no length prefix), and only ephemeral signals.
//!
//! - client → relay: `ClientFrame::Ephemeral` only;
//! - relay → client: `RelayFrame::Ephemeral` and `RelayFrame::Presence`.
//!
//! Senders pick frames by their first byte, the enum variant index (every index
//! is below 251, so its varint is that one byte): [`is_relay_datagram_kind`],
//! [`is_client_datagram_kind`]. Receivers decode with [`decode_client`] /
//! [`decode_relay`], which refuse anything else.

use crate::codec::{self, CodecError};
use crate::frame::{ClientFrame, RelayFrame};

/// Largest datagram payload accepted: an ephemeral frame with the largest
/// group id and payload is about 1,300 bytes; QUIC datagrams are smaller than
/// the path MTU anyway.
pub const MAX_DATAGRAM_LEN: usize = 2048;

/// First byte of `ClientFrame::Ephemeral`.
pub const CLIENT_EPHEMERAL: u8 = 5;
/// First byte of `RelayFrame::Ready` (datagrams count from it on).
pub const RELAY_READY: u8 = 1;
/// First byte of `RelayFrame::Ephemeral`.
pub const RELAY_EPHEMERAL: u8 = 5;
/// First byte of `RelayFrame::Presence`.
pub const RELAY_PRESENCE: u8 = 6;

/// Why a datagram was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// It does not decode (or is too long).
    #[error("datagram: {0}")]
    Codec(#[from] CodecError),
    /// It decodes, but to a frame that does not travel by datagram.
    #[error("datagram holds a frame that is not an ephemeral signal")]
    NotEphemeral,
}

/// Whether an encoded client frame is of a kind sent by datagram.
pub fn is_client_datagram_kind(encoded: &[u8]) -> bool {
    encoded.first() == Some(&CLIENT_EPHEMERAL)
}

/// Whether an encoded relay frame is of a kind sent by datagram.
pub fn is_relay_datagram_kind(encoded: &[u8]) -> bool {
    matches!(encoded.first(), Some(&(RELAY_EPHEMERAL | RELAY_PRESENCE)))
}

/// Decodes a datagram a client sent: exactly one `ClientFrame::Ephemeral`.
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame, DatagramError> {
    if !is_client_datagram_kind(bytes) {
        // Refused before decoding: nothing else may arrive this way.
        return Err(DatagramError::NotEphemeral);
    }
    let frame = codec::decode_with_limit::<ClientFrame>(bytes, MAX_DATAGRAM_LEN)?;
    match frame {
        ClientFrame::Ephemeral { .. } => Ok(frame),
        _ => Err(DatagramError::NotEphemeral),
    }
}

/// Decodes a datagram a relay sent: `RelayFrame::Ephemeral` or `Presence`.
pub fn decode_relay(bytes: &[u8]) -> Result<RelayFrame, DatagramError> {
    if !is_relay_datagram_kind(bytes) {
        return Err(DatagramError::NotEphemeral);
    }
    let frame = codec::decode_with_limit::<RelayFrame>(bytes, MAX_DATAGRAM_LEN)?;
    match frame {
        RelayFrame::Ephemeral { .. } | RelayFrame::Presence(_) => Ok(frame),
        _ => Err(DatagramError::NotEphemeral),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::frame::{PresenceUpdate, Ready};
    use crate::{DeviceId, GroupId, UserId};
    use bytes::Bytes;

    #[test]
    fn first_bytes_are_the_variant_indexes() {
        let g = GroupId(vec![1]);
        let eph = codec::encode(&ClientFrame::Ephemeral {
            group: g.clone(),
            payload: Bytes::from_static(b"t"),
        })
        .unwrap();
        assert_eq!(eph[0], CLIENT_EPHEMERAL);
        assert!(matches!(decode_client(&eph), Ok(ClientFrame::Ephemeral { .. })));
        let reph = codec::encode(&RelayFrame::Ephemeral {
            group: g,
            sender: DeviceId([3; 16]),
            payload: Bytes::from_static(b"t"),
        })
        .unwrap();
        assert_eq!(reph[0], RELAY_EPHEMERAL);
        assert!(decode_relay(&reph).is_ok());
        let presence = codec::encode(&RelayFrame::Presence(PresenceUpdate {
            device: DeviceId([3; 16]),
            user: UserId("u".into()),
            online: true,
            last_seen_ms: 5,
        }))
        .unwrap();
        assert_eq!(presence[0], RELAY_PRESENCE);
        assert!(decode_relay(&presence).is_ok());
        let ready = codec::encode(&RelayFrame::Ready(Ready {
            device: DeviceId([0; 16]),
            registered: false,
            groups: vec![],
            inbox_acked: 0,
        }))
        .unwrap();
        assert_eq!(ready[0], RELAY_READY);
        assert_eq!(decode_relay(&ready), Err(DatagramError::NotEphemeral));
    }

    #[test]
    fn other_frames_and_garbage_are_refused() {
        let ping = codec::encode(&ClientFrame::Ping { nonce: 1 }).unwrap();
        assert_eq!(decode_client(&ping), Err(DatagramError::NotEphemeral));
        assert!(matches!(decode_client(&[5, 40, 1]), Err(DatagramError::Codec(_))));
        assert!(matches!(decode_client(&[]), Err(DatagramError::NotEphemeral)));
        let mut long = vec![5u8, 1, 1, 0xfb, 0x00, 0x10];
        long.resize(MAX_DATAGRAM_LEN + 1, 0);
        assert!(matches!(
            decode_client(&long),
            Err(DatagramError::Codec(CodecError::FrameTooLarge { .. }))
        ));
    }
}
