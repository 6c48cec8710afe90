//! Checks on what sluice can see inside decrypted and plain-HTTP traffic: URL rules, file types,
//! SHA-256 blocklists, and malware scanning through an ICAP server (RFC 3507).
//!
//! Each module is a building block that returns a value saying what matched; none of them
//! decides what the client sees (block page, status, log record) — the data path in
//! `sluice-proxy` does that. Only [`icap`] does I/O (a TCP client); the rest is pure.
#![warn(missing_docs)]

pub mod filetype;
pub mod hashes;
pub mod icap;
pub mod urls;
