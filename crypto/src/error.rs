//! Errors of MLS operations on a [`Device`](crate::Device).

use hush_protocol::{DeviceId, GroupId};

use crate::content::ContentError;
use crate::identity::CredentialError;
use crate::inspect::InspectError;
use crate::store::StoreError;

/// Why an MLS operation failed. After any error the device's durable state is
/// what it was before the call: the operation's writes were rolled back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The persistent store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A credential (of a key package, a sender, a new member) is not a valid
    /// hush credential for its key.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The bytes are not a well-formed MLS message.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Decrypted application bytes are not a payload.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The store holds no device identity yet: use `Device::create`.
    #[error("no device identity in this store")]
    NotInitialised,
    /// The store already holds a device identity: use `Device::open`.
    #[error("this store already holds a device identity")]
    AlreadyInitialised,
    /// This device has no state for the group.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// A group with this id already exists on this device.
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    /// The device is not a member of the group.
    #[error("device {0} is not in the group")]
    NotAMember(DeviceId),
    /// The message is not of the wire format this call expects.
    #[error("expected {expected}, got another MLS wire format")]
    UnexpectedMessage {
        /// What was expected.
        expected: &'static str,
    },
    /// A handshake message (commit or proposal) of an epoch the group has left.
    /// For a commit the relay refused, this is the normal outcome of a race.
    #[error("handshake message for epoch {message}, group is at {group}")]
    StaleEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// A commit whose roster binding (its `authenticated_data`, see
    /// `hush_protocol::roster`) is missing or names other devices than the
    /// ones MLS adds and removes: the relay would apply a different roster
    /// than the group's, so the commit is rejected and not merged.
    #[error("the commit's roster binding does not match what it changes: {0}")]
    RosterBinding(String),
    /// A message of an epoch the group has not reached: commits were missed
    /// and must be processed first.
    #[error("message for epoch {message}, group is only at {group}")]
    FutureEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// A message this device sent itself, echoed back: nothing to do.
    #[error("own message")]
    OwnMessage,
    /// The group has a commit waiting for the relay's answer: merge or
    /// discard it before anything else changes the group or is sent in it.
    #[error("group has a pending commit")]
    PendingCommit,
    /// There is no pending commit to merge or discard.
    #[error("group has no pending commit")]
    NoPendingCommit,
    /// The MLS library refused the operation or message (bad signature,
    /// failed decryption, invalid commit, unsupported proposal, ...).
    #[error("MLS: {0}")]
    Mls(String),
    /// An ephemeral signal that is not a valid envelope for this group and
    /// epoch, does not decrypt, or is not signed by the member it names.
    #[error("ephemeral signal: {0}")]
    Ephemeral(String),
}

impl Error {
    pub(crate) fn mls(e: impl std::fmt::Debug) -> Self {
        Error::Mls(format!("{e:?}"))
    }
}
