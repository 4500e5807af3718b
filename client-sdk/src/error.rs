//! Errors of the SDK.

use std::time::Duration;

use hush_protocol::{ErrorCode, ErrorDetail, WireError};

use crate::wire::ClientError;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call needs a connection to the relay and there is none right now
    /// (group changes and queries; sending messages does not: they wait in
    /// the outbox).
    #[error("not connected to the relay")]
    Offline,
    /// The relay refused the request.
    #[error("relay refused: {0}")]
    Relay(WireError),
    /// The relay refused the request for its rate limits (directory lookups,
    /// PROTOCOL.md 11.1: `ListDevices` and `ClaimKeyPackages` of other
    /// users; or the per-device request rate). Nothing was looked up or
    /// changed, here or at the relay: call again after `retry_after` (the
    /// relay's hint).
    #[error("rate limited by the relay: try again in {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long the relay asked to wait.
        retry_after: Duration,
    },
    /// The connection failed during the call.
    #[error("connection: {0}")]
    Connection(String),
    /// The relay did not answer a request in time; the connection is
    /// replaced (what was in flight is sent again on the next one).
    #[error("the relay did not answer in time")]
    Timeout,
    /// An MLS operation failed.
    #[error("MLS: {0}")]
    Crypto(#[from] hush_crypto::Error),
    /// The local database failed.
    #[error("local state: {0}")]
    Local(String),
    /// The builder's settings are missing or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// No such group on this device.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// No such message in this group's history.
    #[error("unknown message {0}")]
    UnknownMessage(String),
    /// No device of this user has this id (or it was revoked and is in no
    /// group).
    #[error("no device {0} of yours")]
    UnknownDevice(String),
    /// A name matches more than one group: say which (by id prefix).
    #[error("{name} names more than one conversation: {}", candidates.join(", "))]
    AmbiguousGroup {
        /// The name given.
        name: String,
        /// The matching groups: hex id prefix and label.
        candidates: Vec<String>,
    },
    /// Only the user who sent a message may edit or delete it (or it is
    /// deleted already).
    #[error("message {0} is not yours to change")]
    NotYourMessage(String),
    /// The user has no device with a key package (never registered, or all
    /// packages claimed and no last-resort one).
    #[error("user {0} has no device to add")]
    NoDevices(String),
    /// The safety number given is not the one with this user now.
    #[error("that is not the safety number with {0} (their devices may have changed): compare again")]
    SafetyNumberMismatch(String),
    /// A device link was refused or did not complete.
    #[error("device link: {0}")]
    Link(String),
    /// The client was shut down.
    #[error("client closed")]
    Closed,
    /// Another device of this user revoked this one: the relay refuses it
    /// for good, and nothing it sends is accepted.
    #[error(
        "this device was revoked by another device of its user: it can no longer connect or send (make a new device with `hush init --link`)"
    )]
    Revoked,
}

impl Error {
    /// The relay's error code, if the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Relay(e) => Some(e.code),
            Error::RateLimited { .. } => Some(ErrorCode::RateLimited),
            _ => None,
        }
    }

    /// The relay's refusal as an error: [`Error::RateLimited`] with its
    /// hint for a rate limit, [`Error::Relay`] otherwise.
    pub(crate) fn from_wire(e: WireError) -> Self {
        match e.code {
            ErrorCode::RateLimited => Error::RateLimited {
                retry_after: retry_after(&e),
            },
            _ => Error::Relay(e),
        }
    }
}

/// The wait a refusal asks for: its `RetryAfterMs` hint, else
/// [`DEFAULT_RETRY_AFTER`].
pub(crate) fn retry_after(e: &WireError) -> Duration {
    match e.detail {
        ErrorDetail::RetryAfterMs(ms) => Duration::from_millis(u64::from(ms)),
        _ => DEFAULT_RETRY_AFTER,
    }
}

/// The wait assumed when the relay refuses for a rate limit without a hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(500);

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Relay(w) => Error::from_wire(w),
            ClientError::Config(c) => Error::Config(c),
            ClientError::Timeout => Error::Timeout,
            other => Error::Connection(other.to_string()),
        }
    }
}
