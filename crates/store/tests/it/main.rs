//! Integration tests of `sluice-store` against real SQLite files in temporary directories.

// Helpers outside #[test] functions are test code too; clippy's allow-unwrap-in-tests does
// not see that.
#![allow(clippy::unwrap_used)]

mod decisions;
mod kill9;
mod migrations;
mod rules;
mod support;
mod writer;
