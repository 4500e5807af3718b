//! The client's bytes of a WebSocket connection (the upgrade request, then
//! frames) as the relay's frame gate reads them before `Ready`.
//!
//! Checks: no panic; the outcome (refused with which length, or not) is the
//! same whether the bytes come whole or cut in two anywhere.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hush_relay::fuzzing::FrameGate;
use libfuzzer_sys::fuzz_target;

fn outcome(chunks: &[&[u8]]) -> Option<(u64, usize)> {
    let mut gate = FrameGate::new(4096, Arc::new(AtomicBool::new(false)));
    for c in chunks {
        if let Err(e) = gate.input(c) {
            return Some((e.len, e.limit));
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * 17 % (data.len() + 1);
    assert_eq!(outcome(&[data]), outcome(&[&data[..cut], &data[cut..]]), "cut {cut}");
});
