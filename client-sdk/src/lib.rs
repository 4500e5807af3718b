//! `hush-sdk`: the hush client SDK.
//!
//! [`wire`] is the low-level protocol client: connect over WebSocket (TLS),
//! authenticate a device, send requests, receive deliveries. Higher layers
//! (MLS, outbox, reconnect) build on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hush_sdk::wire::ClientError> {
//! use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
//! let me = Identity::generate("alice");
//! let opts = ConnectOptions::new("wss://127.0.0.1:7443/ws", Trust::CertSha256([0; 32]));
//! let mut client = WireClient::connect(&me, opts).await?;
//! println!("device {}", client.ready().device);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod wire;
