//! `hush-relay`: the hush relay as a library (the `hush-relay` binary is a thin
//! wrapper around it).
//!
//! A relay accepts devices over WebTransport (QUIC) and WebSocket (TLS), authenticates them by signature,
//! acts as the MLS delivery service for their groups (ordered, durable,
//! idempotent logs with epoch-checked commits), and fans entries out to every
//! connected member. See `ARCHITECTURE.md` at the repository root for the map.
//!
//! ```no_run
//! # async fn run() -> hush_relay::RelayResult<()> {
//! let relay = hush_relay::Relay::load(hush_relay::Config::default()).await?;
//! println!("listening on {}", relay.local_addr());
//! relay.run().await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod bus;
pub mod config;
mod devhttp;
mod error;
pub mod grouplog;
mod presence;
mod queue;
mod ratelimit;
mod server;
mod session;
mod shutdown;
mod state;
pub mod store;
mod tls;
pub mod token;
mod transport;

/// The HTTP/3 parsers and the WebSocket frame gate, for the fuzz targets in
/// `relay/fuzz`. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::transport::h3::wire as h3;
    pub use crate::transport::websocket::FrameGate;
}

pub use config::Config;
pub use error::{RelayError, RelayResult};
pub use server::{Relay, ShutdownHandle, Stats};
pub use state::now_ms;
pub use tls::{CertHandle, TlsMaterial};
