//! sluice's pure core: host names, domain patterns, the application catalog, categories,
//! policies and identities, and `decide()` — the decision and its explanation.
//!
//! Nothing in this crate does network I/O, reads a clock or spawns tasks: the data path
//! (`sluice-proxy`) and the CLI pass in what they know and get back a value that says what to do
//! and why. That keeps every rule testable with plain tables.
#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod domain;
pub mod engine;
pub mod exceptions;
pub mod htpasswd;
pub mod name;
