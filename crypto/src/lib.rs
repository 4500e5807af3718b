//! hush's MLS layer (RFC 9420, through openmls): everything a client needs to
//! encrypt end to end, and the small keyless reader the relay uses to check
//! MLS headers. No network code, no async runtime, no clock.
//!
//! ```text
//!  client (hush-sdk)                                   relay (hush-relay)
//!  ┌──────────────────────────────┐                    ┌────────────────────────┐
//!  │ Device                       │  MLS wire bytes    │ inspect::inspect       │
//!  │  identity (Ed25519 key)      │ ─────────────────▶ │  group id, epoch, kind │
//!  │  key packages, groups        │                    │  (no keys, no openmls) │
//!  │  process / encrypt / commit  │ ◀───────────────── │ orders commits by epoch│
//!  │  MlsStore (redb, atomic)     │                    └────────────────────────┘
//!  └──────────────────────────────┘
//! ```
//!
//! * [`Device`]: one device's identity, key packages and groups, persisted in
//!   an [`MlsStore`] with one atomic write per operation.
//! * [`DeviceIdentity`], [`DeviceCredential`]: the device's Ed25519 key (the
//!   same key authenticates it to the relay and signs its MLS leaf) and the
//!   basic credential binding `(user id, device id)` to it.
//! * [`safety_number`]: fingerprints of a user's devices, for comparison.
//! * [`content`]: the versioned plaintext payload inside application messages.
//! * [`inspect`]: the relay's check of MLS headers.
//!
//! # Features
//!
//! `mls` (default) is everything above. Without it (`default-features =
//! false`) the crate is only [`inspect`], a hand-written parser that does not
//! pull in openmls: that is how the relay should depend on it.
//!
//! # Example
//!
//! ```
//! use hush_crypto::{Device, DeviceConfig, MlsStore, Processed};
//! use hush_protocol::{GroupId, UserId};
//!
//! # fn main() -> Result<(), hush_crypto::Error> {
//! let mut alice = Device::create(MlsStore::in_memory(), UserId::from("alice"), DeviceConfig::default())?;
//! let mut bob = Device::create(MlsStore::in_memory(), UserId::from("bob"), DeviceConfig::default())?;
//!
//! // Bob uploads key packages; Alice claims one and adds him.
//! let bob_packages = bob.generate_key_packages(1, 1)?;
//! let group = GroupId(b"team".to_vec());
//! alice.create_group(&group)?;
//! let commit = alice.add_members(&group, &[&bob_packages[0]])?;
//! // The relay checks the commit's header, accepts it at epoch 0...
//! let header = hush_crypto::inspect::inspect(&commit.message)?;
//! assert_eq!(header.epoch, 0);
//! // ...and Alice merges it; Bob joins from the Welcome.
//! alice.merge_pending_commit(&group)?;
//! bob.join(commit.welcome.as_deref().unwrap(), None)?;
//!
//! let ciphertext = alice.encrypt(&group, b"hello bob")?;
//! match bob.process(&ciphertext)? {
//!     Processed::Application { plaintext, sender, .. } => {
//!         assert_eq!(plaintext, b"hello bob");
//!         assert_eq!(sender.user, UserId::from("alice"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod inspect;

#[cfg(feature = "mls")]
mod config;
#[cfg(feature = "mls")]
pub mod content;
#[cfg(feature = "mls")]
mod device;
#[cfg(feature = "mls")]
mod error;
#[cfg(feature = "mls")]
mod identity;
#[cfg(feature = "mls")]
pub mod safety_number;
#[cfg(feature = "mls")]
mod store;

#[cfg(feature = "mls")]
pub use config::DeviceConfig;
#[cfg(feature = "mls")]
pub use device::{Commit, Device, GroupMember, Processed};
#[cfg(feature = "mls")]
pub use error::Error;
#[cfg(feature = "mls")]
pub use identity::{CredentialError, DeviceCredential, DeviceIdentity};
#[cfg(feature = "mls")]
pub use store::{MlsStore, StoreError};
