//! hush client SDK.
