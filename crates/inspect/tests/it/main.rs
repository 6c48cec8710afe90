//! Integration tests of `sluice-inspect` against real components.

// Helpers outside #[test] functions are test code too; clippy's allow-unwrap-in-tests does
// not see that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod icap;
mod support;
