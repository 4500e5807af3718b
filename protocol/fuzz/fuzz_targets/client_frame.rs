//! Bytes from a peer, decoded as the relay decodes them, then fed to the
//! relay's side of the handshake.
//!
//! Checks: decoding never panics; whatever decodes re-encodes to a frame that
//! decodes back equal; the handshake never panics on any decoded frame.
#![no_main]

use hush_protocol::codec;
use hush_protocol::frame::ClientFrame;
use hush_protocol::session::RelayHandshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = codec::decode::<ClientFrame>(data) else {
        return;
    };
    let bytes = codec::encode(&frame).expect("a decoded frame encodes");
    let back: ClientFrame = codec::decode(&bytes).expect("a re-encoded frame decodes");
    assert_eq!(back, frame);

    // Feed it as the first frame, and as the frame after a valid Hello.
    let mut first = RelayHandshake::new([7; 32], "fuzz", 1 << 20, 10_000);
    let _ = first.on_frame(frame.clone());
    let mut second = RelayHandshake::new([7; 32], "fuzz", 1 << 20, 10_000);
    let hello = ClientFrame::Hello(hush_protocol::frame::Hello {
        min_version: hush_protocol::MIN_PROTOCOL_VERSION,
        max_version: hush_protocol::PROTOCOL_VERSION,
        client: String::new(),
    });
    let _ = second.on_frame(hello);
    let _ = second.on_frame(frame);
});
