//! Error codes carried on the wire.
//!
//! Every refusal a relay sends is a [`WireError`]: a numeric [`ErrorCode`] (stable,
//! listed in `PROTOCOL.md`), a human-readable message, and an [`ErrorDetail`] with
//! the data a client needs to react (the current epoch after a stale commit, how
//! long to wait after a rate limit, ...).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, )*) => {
        /// A stable numeric error code. Unknown codes from a newer peer decode as
        /// [`ErrorCode::Unknown`] rather than failing.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $name, )*
            /// A code this version does not know.
            Unknown(u16),
        }

        impl ErrorCode {
            /// The number sent on the wire.
            pub fn as_u16(self) -> u16 {
                match self {
                    $( ErrorCode::$name => $num, )*
                    ErrorCode::Unknown(n) => n,
                }
            }

            /// The code for a wire number.
            pub fn from_u16(n: u16) -> Self {
                match n {
                    $( $num => ErrorCode::$name, )*
                    other => ErrorCode::Unknown(other),
                }
            }
        }
    };
}

error_codes! {
    /// The frame could not be decoded.
    Malformed = 1,
    /// The frame exceeds the maximum frame length.
    FrameTooLarge = 2,
    /// No protocol version in common; detail carries the relay's range.
    UnsupportedVersion = 3,
    /// A request arrived before authentication completed.
    Unauthenticated = 4,
    /// The authentication signature or key was rejected.
    AuthFailed = 5,
    /// This device is not registered and no valid registration proof was given.
    RegistrationRequired = 6,
    /// The registration token was invalid or expired.
    InvalidToken = 7,
    /// A frame arrived that is not allowed in the current session state.
    UnexpectedFrame = 8,
    /// A field is out of bounds or inconsistent.
    InvalidRequest = 9,
    /// The group, device or user does not exist.
    NotFound = 10,
    /// The group already exists.
    AlreadyExists = 11,
    /// The device is not on the group's roster.
    NotMember = 12,
    /// The group's policy does not allow this device to do this.
    Forbidden = 13,
    /// A commit was for an epoch the group is no longer at; detail carries the current epoch.
    StaleEpoch = 14,
    /// Too many requests; detail carries how long to wait.
    RateLimited = 15,
    /// The requested entries are no longer retained; detail carries the first available seq.
    Truncated = 16,
    /// No key package is available for the device.
    NoKeyPackage = 17,
    /// The relay is at capacity or shutting down, or its storage is busy or
    /// down; retry (after the `RetryAfterMs` detail when given).
    Unavailable = 18,
    /// The relay failed internally; the request may be retried.
    Internal = 19,
    /// A client message id was reused for different content.
    IdempotencyConflict = 20,
    /// The payload is not a well-formed MLS message of a wire format accepted there.
    InvalidMls = 21,
    /// The MLS header disagrees with the envelope's group, epoch or kind.
    MlsMismatch = 22,
    /// This device was revoked by a device of its user: it can no longer
    /// connect.
    Revoked = 23,
    /// A quota of the relay was reached (the recipient's inbox, the caller's
    /// groups); the message says which.
    QuotaExceeded = 24,
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.as_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_u16)
    }
}

/// Machine-readable data attached to an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// Nothing more to say.
    None,
    /// The group's current epoch (with [`ErrorCode::StaleEpoch`]).
    CurrentEpoch(u64),
    /// Wait this many milliseconds before retrying (with [`ErrorCode::RateLimited`]
    /// or [`ErrorCode::Unavailable`]).
    RetryAfterMs(u32),
    /// The relay's supported version range (with [`ErrorCode::UnsupportedVersion`]).
    Versions {
        /// Oldest supported version.
        min: u16,
        /// Newest supported version.
        max: u16,
    },
    /// The first seq still retained (with [`ErrorCode::Truncated`]).
    FirstAvailable(u64),
    /// The seq an idempotent retry maps to (with [`ErrorCode::IdempotencyConflict`]).
    OriginalSeq(u64),
}

/// An error as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct WireError {
    /// What went wrong.
    pub code: ErrorCode,
    /// For humans; never parse it.
    pub message: String,
    /// For programs.
    pub detail: ErrorDetail,
}

impl WireError {
    /// An error with no detail.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            detail: ErrorDetail::None,
        }
    }

    /// An error with detail.
    pub fn with_detail(code: ErrorCode, message: impl Into<String>, detail: ErrorDetail) -> Self {
        WireError {
            code,
            message: message.into(),
            detail,
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({}): {}", self.code, self.code.as_u16(), self.message)?;
        match &self.detail {
            ErrorDetail::None => Ok(()),
            d => write!(f, " [{d:?}]"),
        }
    }
}
