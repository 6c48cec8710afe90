//! TLS for sluice: the gateway CA, minting leaf certificates (with a cache), the admin
//! listener's one certificate (`fixed`), the upstream certificate verifier, and ClientHello
//! handling — a pure parser (`hello`), the JA4 fingerprint (`ja4`) and the async peek that
//! buffers the ClientHello without consuming it (`peek`).
#![warn(missing_docs)]

pub mod ca;
pub mod fixed;
pub mod hello;
pub mod ja4;
pub mod mint;
pub mod peek;
pub mod verify;
