//! Tests of the harness itself, against real curl/openssl and a stand-in gateway script
//! (the real gateway is tested by `crates/sluice/tests/it`). One binary, one module per area.

mod clients;
mod gateway;
mod origin;
mod pki;
mod util;
