//! `hush-protocol`: the wire contract between hush clients and relays.
//!
//! ```text
//!   client                                   relay
//!     | -- Hello {min,max version} -----------> |
//!     | <---------- Challenge {version, nonce} - |
//!     | -- Authenticate {key, sig(nonce)} -----> |
//!     | <------------------ Ready {groups...} -- |
//!     | -- Request {id, op} -------------------> |
//!     | <------------- Response {id, result} --- |
//!     | <------------------- Deliver {entry} --- |   (live and replayed log entries)
//!     | -- Ack {group, seq} -------------------> |
//! ```
//!
//! This crate holds the frame types ([`frame`]), the one codec module that turns
//! them into bytes ([`codec`]), the rules of WebTransport datagrams ([`datagram`]), identifiers ([`ids`]), error codes ([`error`]),
//! limits ([`limits`]), the signed authentication transcripts ([`auth`]) and the
//! handshake state machine both sides run ([`session`]). It performs no I/O and
//! depends on no async runtime: transports feed it bytes and drain bytes.
//!
//! ```
//! use hush_protocol::{codec, frame::{ClientFrame, Hello}, PROTOCOL_VERSION};
//! let hello = ClientFrame::Hello(Hello { min_version: PROTOCOL_VERSION, max_version: PROTOCOL_VERSION, client: "doc".into() });
//! let bytes = codec::encode(&hello).unwrap();
//! let back: ClientFrame = codec::decode(&bytes).unwrap();
//! assert_eq!(back, hello);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod codec;
pub mod datagram;
pub mod ephemeral;
pub mod error;
pub mod frame;
pub mod ids;
pub mod limits;
pub mod roster;
pub mod session;

/// The newest protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

pub use error::{ErrorCode, ErrorDetail, WireError};
pub use ids::{ClientMsgId, DeviceId, GroupId, UserId};
