//! hush MLS layer: device identities, key packages, groups, persistent state,
//! and the relay-side reader of MLS headers.
#![forbid(unsafe_code)]

pub mod inspect;
