//! Interoperability of `hush-crypto` with an independent implementation of
//! MLS (RFC 9420), [mls-rs](https://github.com/awslabs/mls-rs). There is no
//! library code here: the tests in `tests/` are the point, and keep mls-rs
//! out of every crate that ships.
//!
//! `tests/mls_rs.rs`: an mls-rs member publishes a KeyPackage, a hush device
//! adds it (commit and Welcome with the ratchet tree inside, as hush sends
//! them), the mls-rs member joins from the Welcome, application messages go
//! both ways, and mls-rs processes a later hush commit.
