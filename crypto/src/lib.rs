//! hush MLS layer.
