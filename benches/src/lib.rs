//! hush benchmarks.
