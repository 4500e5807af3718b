//! Bytes from a relay, decoded as a client decodes them, then fed to the
//! client's side of the handshake.
//!
//! Checks: decoding never panics; whatever decodes re-encodes to a frame that
//! decodes back equal; answering a challenge never panics.
#![no_main]

use hush_protocol::codec;
use hush_protocol::frame::{Registration, RelayFrame, Signature};
use hush_protocol::ids::UserId;
use hush_protocol::session::ClientHandshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = codec::decode::<RelayFrame>(data) else {
        return;
    };
    let bytes = codec::encode(&frame).expect("a decoded frame encodes");
    let back: RelayFrame = codec::decode(&bytes).expect("a re-encoded frame decodes");
    assert_eq!(back, frame);

    let client = ClientHandshake::new(UserId::from("fuzz"), [3; 32]);
    let _ = client.on_challenge(frame, |_| Signature([0; 64]), Registration::None, Vec::new());
});
