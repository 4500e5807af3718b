//! Bytes from a peer read as an ephemeral envelope's header, as the relay
//! reads every `Ephemeral` payload (`ephemeral::header`).
//!
//! Checks: nothing panics; bytes starting like an MLS message are never
//! accepted; what is accepted has the magic, version and minimum length, and
//! its header re-encodes to the same bytes.
#![no_main]

use hush_protocol::ephemeral::{self, HEADER_LEN, MIN_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ephemeral::header(data) {
        assert!(!data.starts_with(&[0, 1]));
        assert!(data.len() >= MIN_LEN);
        assert_eq!(&ephemeral::encode_header(h.epoch, &h.nonce)[..], &data[..HEADER_LEN]);
    }
});
