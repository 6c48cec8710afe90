//! htpasswd files and `Proxy-Authorization: Basic` values from arbitrary bytes.
//!
//! Invariants: no panic; a parsed file verifies its users without panicking (cheap schemes only:
//! bcrypt and SHA-crypt are slow by design and would stall the fuzzer); a decoded user is
//! never empty and never contains `:`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_policy::htpasswd::{parse_basic, HashScheme, Htpasswd};

/// Users verified per input: enough to reach every scheme's code, few enough to stay fast.
const MAX_VERIFIED: usize = 4;

fuzz_target!(|data: &[u8]| {
    check_basic(data);
    let mut prefixed = b"Basic ".to_vec();
    prefixed.extend_from_slice(data);
    check_basic(&prefixed);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Htpasswd::parse(text, "fuzz.htpasswd") {
        Ok(file) => {
            assert_eq!(file.users().count(), file.len());
            for user in file.users().take(MAX_VERIFIED) {
                let cheap = matches!(
                    file.scheme(user),
                    Some(HashScheme::Sha1 | HashScheme::Apr1 | HashScheme::Md5Crypt)
                );
                if cheap {
                    let _ = file.verify(user, text);
                }
            }
        }
        Err(issues) => {
            assert!(!issues.is_empty());
            for issue in issues {
                let _ = issue.to_string();
            }
        }
    }
});

fn check_basic(value: &[u8]) {
    if let Some((user, _password)) = parse_basic(value) {
        assert!(!user.is_empty() && !user.contains(':'), "bad user {user:?}");
    }
}
