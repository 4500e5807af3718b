//! hush benchmarks and the tools they share.
//!
//! - [`browser`]: drives the plain-JavaScript browser client (`web/`) in a real
//!   headless Chromium, for the browser integration test and `browser_rtt`.

pub mod browser;
