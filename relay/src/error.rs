//! The relay library's error type: what went wrong, in categories an
//! embedder can act on (fix the configuration, free the port, check the data
//! directory, check the certificate files).

use std::path::PathBuf;

use crate::store::StoreError;

/// Why the relay could not start, reload or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A configuration value is unusable; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A configuration file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The data directory or the store in it could not be opened.
    #[error("data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listening socket could not be bound or set up (the message names the
    /// address).
    #[error("listening: {0}")]
    Listen(String),
    /// TLS material could not be loaded, generated or used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Shorthand.
pub type RelayResult<T> = Result<T, RelayError>;

impl RelayError {
    /// A TLS failure, with the whole chain of causes in the message.
    pub(crate) fn tls(e: anyhow::Error) -> Self {
        RelayError::Tls(format!("{e:#}"))
    }

    /// A listener failure, with the whole chain of causes in the message.
    pub(crate) fn listen(e: impl std::fmt::Display) -> Self {
        RelayError::Listen(e.to_string())
    }
}
