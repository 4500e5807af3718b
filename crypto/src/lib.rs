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
//! # Decisions
//!
//! * **Wire format**: every group message hush sends (application, proposal,
//!   commit) is a `PrivateMessage`; the relay still reads group id, epoch and
//!   content type, which RFC 9420 leaves in clear. Only standard RFC 9420
//!   structures and extensions are used (basic credentials, `last_resort`,
//!   `ratchet_tree`), so another implementation can join.
//! * **Credential**: a basic credential whose identity is
//!   `0x01 || device_id (16) || user_id (UTF-8)`, and whose leaf signature key
//!   is the device's Ed25519 key; every credential a device accepts (key
//!   packages, Welcome trees, commits) must have the device id derived from
//!   that key ([`DeviceCredential::from_leaf`]).
//! * **Ratchet tree**: inside the Welcome by default; sizes in `BENCHMARKS.md`
//!   and reasons in [`DeviceConfig::ratchet_tree_in_welcome`].
//! * **Past epochs**: 2 by default; the forward-secrecy trade-off is in
//!   [`DeviceConfig::past_epochs`].
//! * **Persistence**: redb, one transaction per operation; why, in the
//!   [`MlsStore`] docs.
//! * **Relay dependency**: the relay depends with `default-features = false`
//!   and gets [`inspect`] without openmls (see Features).
//!
//! # Ordering, with the relay
//!
//! A commit is made at epoch `E` ([`Commit::epoch`]) and is pending until the
//! relay answers. Accepted: [`Device::merge_pending_commit`]. Refused as stale
//! (another commit took `E`): [`Device::discard_pending_commit`], process the
//! log up to the current epoch with [`Device::process`], then make the change
//! again. If the answer was lost (a crash), the device's own commit in the log
//! is recognised by [`Device::process`], which merges it
//! ([`Processed::OwnCommitMerged`]). The SDK skips the log entries it sent
//! itself otherwise (it knows their sequence numbers from the relay's
//! acknowledgements).
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
pub use identity::{CERTIFICATE_LEN, CredentialError, DeviceCredential, DeviceIdentity, certify};
#[cfg(feature = "mls")]
pub use store::{MlsStore, SideWrites, StoreError};
