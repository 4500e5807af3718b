//! Bytes from a peer, decoded as a WebTransport datagram by the relay
//! (`decode_client`) and by a client (`decode_relay`).
//!
//! Checks: nothing panics; only ephemeral signals (and presence, from a relay)
//! are accepted, and only when the first byte says so; whatever is accepted
//! re-encodes to a frame that is accepted again and decodes equal.
#![no_main]

use hush_protocol::codec;
use hush_protocol::datagram::{self, MAX_DATAGRAM_LEN};
use hush_protocol::frame::{ClientFrame, RelayFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = datagram::decode_client(data) {
        assert!(matches!(frame, ClientFrame::Ephemeral { .. }));
        assert!(datagram::is_client_datagram_kind(data) && data.len() <= MAX_DATAGRAM_LEN);
        let bytes = codec::encode(&frame).expect("a decoded frame encodes");
        assert_eq!(datagram::decode_client(&bytes).expect("re-encoded is accepted"), frame);
    }
    if let Ok(frame) = datagram::decode_relay(data) {
        assert!(matches!(frame, RelayFrame::Ephemeral { .. } | RelayFrame::Presence(_)));
        assert!(datagram::is_relay_datagram_kind(data) && data.len() <= MAX_DATAGRAM_LEN);
        let bytes = codec::encode(&frame).expect("a decoded frame encodes");
        assert_eq!(datagram::decode_relay(&bytes).expect("re-encoded is accepted"), frame);
    }
});
