//! Feeds arbitrary bytes to the relay's MLS header reader: it must return
//! `Ok` or `Err`, never panic, and agree with itself.
#![no_main]

use hush_crypto::inspect::{Inspected, inspect, inspect_any};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A credential identity (v1, or v2 with a certificate) names a valid
    // user, and reads the same after its certificate is cut out.
    if let Some((device, user)) = hush_crypto::inspect::credential_identity(data) {
        assert!(user.is_valid());
        if data[0] == 2 {
            let v1 = [&[1u8][..], &data[1..17], &data[81..]].concat();
            assert_eq!(hush_crypto::inspect::credential_identity(&v1), Some((device, user)));
        }
    }
    let any = inspect_any(data);
    let header = inspect(data);
    match (&any, &header) {
        (Ok(Inspected::Message(a)), Ok(b)) => assert_eq!(a, b),
        (Ok(Inspected::Message(_)), Err(_)) | (Err(_), Ok(_)) => panic!("inspect and inspect_any disagree"),
        _ => {}
    }
});
