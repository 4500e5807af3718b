//! Interoperability of `hush-crypto` with an independent implementation of
//! MLS (RFC 9420), [mls-rs](https://github.com/awslabs/mls-rs), both ways.
//! There is no library code here: the tests in `tests/` are the point, and
//! keep mls-rs out of every crate that ships.
//!
//! After every step the tests check that both sides see the same group: the
//! same epoch, the same members at the same leaves (keys and credentials),
//! and the same exporter secret (an ephemeral signal sealed with the key one
//! side exports opens with the key the other side exports, both ways), and
//! application messages go both ways.
//!
//! `tests/mls_rs.rs`, mls-rs in a hush group: an mls-rs member publishes a
//! KeyPackage, a hush device adds it (commit and Welcome with the ratchet
//! tree inside, as hush sends them), the mls-rs member joins from the
//! Welcome, and it processes later hush commits (an add, an update).
//!
//! `tests/mls_rs_group.rs`, hush in an mls-rs group:
//!
//! * an mls-rs member creates the group and adds a hush device from its
//!   KeyPackage; the device joins from the mls-rs Welcome, with the ratchet
//!   tree inside it or beside it;
//! * hush processes mls-rs commits: two members added at once (a hush device
//!   from a last-resort KeyPackage, an mls-rs member; one Welcome for both),
//!   a removal, an empty commit, the removal of a hush device (whose state
//!   for the group goes), and refuses one whose roster binding hides a
//!   removal; an application message sent just before a commit still
//!   decrypts after it;
//! * proposals committed by reference across implementations: mls-rs Update,
//!   Remove and Add proposals committed by hush (the added device joins from
//!   hush's Welcome), an mls-rs Update committed by another mls-rs member and
//!   processed by hush, and a hush device's request to leave committed by
//!   mls-rs.
//!
//! `tests/common/mod.rs` holds what they share. The mls-rs members are
//! configured as hush requires of any member: hush credentials (`0x01 ||
//! device id || user`, the device id derived from the leaf's Ed25519 key),
//! every group message a `PrivateMessage`, and every commit carrying the
//! roster binding (`hush_protocol::roster`) as its authenticated data.
