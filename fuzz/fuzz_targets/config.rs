//! `Config::from_toml` on arbitrary UTF-8: never panics, whatever the TOML says.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_policy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(issues) = Config::from_toml(text, "fuzz.toml", Path::new("/")) {
        // Rendering every issue is part of the contract (`sluice config check` prints them).
        for issue in issues {
            let _ = issue.to_string();
        }
    }
});
