//! hush relay.
