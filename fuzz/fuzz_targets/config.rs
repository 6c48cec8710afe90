//! `Config::from_toml` on arbitrary UTF-8: never panics, whatever the TOML says; a config that
//! parses also renders its policies as the admin API's JSON (`policies_to_json`, what
//! `GET /api/policy` returns and `policy.json` persists) without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_policy::config::{policies_to_json, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, "fuzz.toml", Path::new("/")) {
        // The parsed values flow on into the JSON rendering (dates back to text), which has
        // its own arithmetic.
        Ok(config) => {
            let _ = policies_to_json(&config.policies);
        }
        Err(issues) => {
            // Rendering every issue is part of the contract (`sluice config check` prints them).
            for issue in issues {
                let _ = issue.to_string();
            }
        }
    }
});
