//! What a device linking another (or being linked) takes from outside: the
//! code a person types, the peer's SPAKE2 message, sealed link messages and
//! their JSON plaintext (`hush_sdk::link_fuzzing::link_input`).
//!
//! Checks: nothing panics; a code that parses normalises to itself; a link
//! message that decodes survives a seal and an open unchanged, and its
//! key or approval is read the way the link reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hush_sdk::link_fuzzing::link_input(data);
});
