//! Feeds arbitrary bytes to the relay's MLS header reader: it must return
//! `Ok` or `Err`, never panic, and agree with itself.
#![no_main]

use hush_crypto::inspect::{Inspected, inspect, inspect_any};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let any = inspect_any(data);
    let header = inspect(data);
    match (&any, &header) {
        (Ok(Inspected::Message(a)), Ok(b)) => assert_eq!(a, b),
        (Ok(Inspected::Message(_)), Err(_)) | (Err(_), Ok(_)) => panic!("inspect and inspect_any disagree"),
        _ => {}
    }
});
