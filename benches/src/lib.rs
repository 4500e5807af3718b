//! hush benchmarks and the tools they share.
//!
//! - [`browser`]: drives the plain-JavaScript browser client (`web/`) in a real
//!   headless Chromium, for the browser integration test and `browser_rtt`.
//! - [`relay`]: the release relay in its own process on a loopback port.

pub mod browser;
pub mod relay;
