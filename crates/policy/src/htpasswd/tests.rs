use proptest::prelude::*;

use super::*;

/// Test vectors: (user, password, hash), every hash made by a real tool, never by this module.
///
/// - `htpasswd` from Debian 12 `apache2-utils` 2.4.67-1~deb12u2, as `htpasswd -nb<FLAG> [-C cost]
///   [-r rounds] USER PASSWORD` with the flag in the comment.
/// - `$2a$`, `$2b$`, `$1$` and the `$5$`/`$6$` with a chosen salt: `crypt(3)` of libxcrypt
///   4.4.33 (Debian 12 `libcrypt1`), called as `perl -e 'print crypt(PASSWORD, SETTING)'`.
///   `openssl passwd -1 -salt abcdefgh` (OpenSSL 3.0.19) gives the same `$1$` hash, and
///   `openssl passwd -apr1 -salt hXO78XBA` the same `$apr1$` hash as htpasswd's for alice.
const VECTORS: &[(&str, &str, &str)] = &[
    // -B (bcrypt, default cost 5)
    ("alice-bcrypt", "correct horse", "$2y$05$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFwO"),
    // -B -C 4, a colon in the password
    ("bob", "p@ss:word", "$2y$04$TyP4G7HulT9/AeH5TnRlgOnfRcm3ssise6D0S7EctP/X0B6VyMDqu"),
    // -B -C 4, UTF-8 password
    ("grace", "pässwörd", "$2y$04$8QP26GWVrJPPqIusuVFqzu5NKf1/iNwJkTbx1lxk5JWZYhn6VV.Gm"),
    // -B -C 4, a user name with `@` and `.`
    ("kim@example.com", "correct horse", "$2y$04$hyVeKYxlfSeLwVTEee7O..1YgKvupu9qL4gAuiQHbQmfvFx38gBky"),
    // libxcrypt `$2a$05$LhayLxezLhK1LhWvKxCyLO`
    ("alice-2a", "correct horse", "$2a$05$LhayLxezLhK1LhWvKxCyLODEesI7J6ykkj5QQ/URjnK0D0QAc6PGK"),
    // libxcrypt `$2b$05$XPBoVTnL2Qs0BcQTgEU9Ie`
    ("alice-2b", "correct horse", "$2b$05$XPBoVTnL2Qs0BcQTgEU9Ieab/ef9e.pOYUKvZVIy.REVjmqSaZRf2"),
    // -m (Apache MD5, htpasswd's default); openssl passwd -apr1 agrees
    ("alice-apr1", "correct horse", "$apr1$hXO78XBA$GOgUgduPe/wJOwwkcpKiB0"),
    // -m
    ("erin", "a much longer password with spaces and $pecial chars", "$apr1$gJb0ymeM$58wdw2q0rFDY/nVBExRBX0"),
    // -m, UTF-8 password
    ("henry", "pässwörd", "$apr1$tB4MmVYH$8JiIAglyx9AZovrfw.nPO1"),
    // -m, empty password
    ("judy", "", "$apr1$dZ/e7C5c$dHAiOVY4.rVM8WgMZvr/M."),
    // libxcrypt and openssl passwd -1, salt abcdefgh
    ("alice-md5", "correct horse", "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80"),
    // -s (unsalted SHA-1)
    ("alice-sha1", "correct horse", "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A="),
    // -s
    ("frank", "sha1pass", "{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18="),
    // -s, empty password
    ("ivy", "", "{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
    // -2 (SHA-256-crypt, default 5000 rounds)
    ("alice-sha256", "correct horse", "$5$EyvX8ftOoYBWRd4q$qHfiRFX8baVdTZL0GPeZ.rn6hn16zwzlPdLepEIqRI5"),
    // -2 -r 1000, UTF-8 password
    ("carol", "ünïcødé", "$5$rounds=1000$r/gPBcm6gLU3JKvK$bB0lXjUOi42YmuQCtusOjLdZ26bB3qVSGcoePOafQY/"),
    // libxcrypt `$5$rounds=1000$saltsaltsaltsalt`
    ("sha256-xcrypt", "correct horse", "$5$rounds=1000$saltsaltsaltsalt$nxvy/aZxmMcHLq9pGRuSwLR..D/0Hr4eL305uyyfXLA"),
    // -5 (SHA-512-crypt, default 5000 rounds)
    ("alice-sha512", "correct horse", "$6$CJ5GxPE0Wt2SZrfi$3eE/zMajb4KygdQc5V/pCd3iePE8kWDS5w81tSlopqdJbY7djzXhf.RO.8iPCzpPmM/5jEhRw8D1N5hsfuU9v1"),
    // -5 -r 12345, empty password
    ("dave", "", "$6$rounds=12345$cm.Y5hDctWjhmGIJ$pe24QWGIvRcWD/fGlLmnHghl1prY6Nc3ylN7yrQZnVEaZol.NHw2t1hcHaW2LVxopip/tEp/w3P/4nb3bZRVm/"),
    // libxcrypt `$6$rounds=5000$saltsalt`: an explicit default round count
    ("sha512-explicit", "correct horse", "$6$rounds=5000$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0"),
    // openssl passwd -6 -salt saltsalt: the same digest without `rounds=`
    ("sha512-implicit", "correct horse", "$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0"),
];

/// htpasswd -nbB -C 4 long PASSWORD, where PASSWORD is 72 `x` and then `YYYYYYYY`.
const LONG_BCRYPT: &str = "long:$2y$04$1Rtv6Qadh5Kf1xvuaw8qw.Mb3TcJV1HP9r.4SPmI3FEKrxhNoOWjC";
/// htpasswd -nbm max PASSWORD, where PASSWORD is 255 `z` (the longest htpasswd takes).
const MAX_APR1: &str = "max:$apr1$/R/fNrdx$BwnV.YG3mfiXmN81kWP2V.";
/// `{SHA}` of 1024 and 1025 `z`: `openssl sha1 -binary | base64`.
const SHA1_1024: &str = "z1024:{SHA}nshPd0ik3NxJjZUHs7l8FCw6AkA=";
const SHA1_1025: &str = "z1025:{SHA}WcD37Gtvo+WrAVKVzBrS/BO1at0=";
/// htpasswd -nbd alice 'correct horse' (DES crypt; htpasswd warns it keeps 8 characters).
const DES_CRYPT: &str = "alice:I6YmlGNBHscOo";

fn vectors_file() -> String {
    VECTORS
        .iter()
        .map(|(user, _, hash)| format!("{user}:{hash}\n"))
        .collect()
}

fn parse_ok(text: &str) -> Htpasswd {
    match Htpasswd::parse(text, "users.htpasswd") {
        Ok(file) => file,
        Err(issues) => panic!("unexpected issues: {issues:?}"),
    }
}

fn parse_issues(text: &str) -> Vec<HtpasswdIssue> {
    match Htpasswd::parse(text, "users.htpasswd") {
        Ok(file) => panic!("expected issues, parsed {file:?}"),
        Err(issues) => issues,
    }
}

/// (line, user, kind) of each issue.
fn summary(issues: &[HtpasswdIssue]) -> Vec<(usize, Option<&str>, EntryError)> {
    issues
        .iter()
        .map(|i| (i.line, i.user.as_deref(), i.kind.clone()))
        .collect()
}

fn malformed(scheme: &'static str, reason: &'static str) -> EntryError {
    EntryError::Malformed { scheme, reason }
}

// === verification ===

#[test]
fn every_vector_verifies_its_password_only() {
    let file = parse_ok(&vectors_file());
    assert_eq!(file.len(), VECTORS.len());
    for &(user, password, _) in VECTORS {
        assert!(
            file.verify(user, password),
            "{user}: right password refused"
        );
        let wrong = format!("{password}x");
        assert!(
            !file.verify(user, &wrong),
            "{user}: wrong password accepted"
        );
        assert!(!file.verify(user, "Correct horse"), "{user}: case ignored");
        assert!(
            !file.verify("nobody", password),
            "{user}: unknown user accepted"
        );
    }
}

#[test]
fn schemes_are_recognised() {
    let file = parse_ok(&vectors_file());
    let cases = [
        ("alice-bcrypt", HashScheme::Bcrypt),
        ("alice-2a", HashScheme::Bcrypt),
        ("alice-2b", HashScheme::Bcrypt),
        ("alice-apr1", HashScheme::Apr1),
        ("alice-md5", HashScheme::Md5Crypt),
        ("alice-sha1", HashScheme::Sha1),
        ("alice-sha256", HashScheme::Sha256Crypt),
        ("alice-sha512", HashScheme::Sha512Crypt),
    ];
    for (user, scheme) in cases {
        assert_eq!(file.scheme(user), Some(scheme), "{user}");
    }
    assert_eq!(file.scheme("nobody"), None);
}

#[test]
fn md5_crypt_matches_the_tools_digests() {
    // Direct check of the algorithm, independent of parsing.
    assert_eq!(
        md5_crypt(b"correct horse", "$apr1$", b"hXO78XBA"),
        "GOgUgduPe/wJOwwkcpKiB0"
    );
    assert_eq!(
        md5_crypt(b"correct horse", "$1$", b"abcdefgh"),
        "y6iHhJNbuC0xpbk0w9pm80"
    );
    assert_eq!(
        md5_crypt(b"", "$apr1$", b"dZ/e7C5c"),
        "dHAiOVY4.rVM8WgMZvr/M."
    );
}

#[test]
fn bcrypt_uses_the_first_72_bytes_as_apache_does() {
    let file = parse_ok(LONG_BCRYPT);
    let first_72 = "x".repeat(72);
    assert!(file.verify("long", &format!("{first_72}YYYYYYYY")));
    assert!(file.verify("long", &format!("{first_72}anything else")));
    assert!(!file.verify("long", &"x".repeat(71)));
}

#[test]
fn password_length_is_capped() {
    let file = parse_ok(&format!("{MAX_APR1}\n{SHA1_1024}\n{SHA1_1025}\n"));
    assert!(file.verify("max", &"z".repeat(255)));
    assert!(file.verify("z1024", &"z".repeat(MAX_PASSWORD_LEN)));
    assert!(!file.verify("z1025", &"z".repeat(MAX_PASSWORD_LEN + 1)));
}

#[test]
fn passwords_with_nul_are_refused() {
    // htpasswd -nbB -C 4 long PASSWORD: bcrypt here would otherwise accept what follows the NUL.
    let file = parse_ok(LONG_BCRYPT);
    let first_72 = "x".repeat(72);
    assert!(!file.verify("long", &format!("{first_72}\0")));
    let file = parse_ok("frank:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=");
    assert!(!file.verify("frank", "sha1pass\0"));
}

#[test]
fn unknown_user_with_an_empty_file_is_refused() {
    let file = parse_ok("# nobody yet\n");
    assert!(file.is_empty());
    assert!(!file.verify("alice", ""));
}

// === parsing ===

#[test]
fn comments_blank_lines_crlf_and_whitespace_are_accepted() {
    let text = "\u{feff}# users\r\n\r\n  alice:$apr1$hXO78XBA$GOgUgduPe/wJOwwkcpKiB0  \r\n\
                \t# indented comment\r\nfrank:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\r\n   \r\n";
    let file = parse_ok(text);
    assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "frank"]);
    assert!(file.verify("alice", "correct horse"));
    assert!(file.verify("frank", "sha1pass"));
}

#[test]
fn fields_after_the_hash_are_ignored_as_apache_does() {
    let file = parse_ok("frank:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=:Frank Example:extra\n");
    assert!(file.verify("frank", "sha1pass"));
}

#[test]
fn users_are_sorted() {
    let file = parse_ok(&vectors_file());
    let users: Vec<_> = file.users().collect();
    let mut sorted = users.clone();
    sorted.sort_unstable();
    assert_eq!(users, sorted);
}

#[test]
fn bad_lines_are_all_reported_with_line_numbers() {
    let text = "# header\n\
                alice:$apr1$hXO78XBA$GOgUgduPe/wJOwwkcpKiB0\n\
                no colon here\n\
                :{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\n\
                alice:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\n\
                bob:\n\
                carol:hunter2\n\
                \n\
                dave:$2x$05$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFwO\n";
    let issues = parse_issues(text);
    assert_eq!(
        summary(&issues),
        [
            (3, None, EntryError::MissingColon),
            (4, None, EntryError::EmptyUser),
            (
                5,
                Some("alice"),
                EntryError::DuplicateUser { first_line: 2 }
            ),
            (6, Some("bob"), EntryError::EmptyHash),
            (7, Some("carol"), EntryError::PlainText),
            (9, Some("dave"), EntryError::UnsupportedScheme),
        ]
    );
    assert!(issues.iter().all(|i| i.file == "users.htpasswd"));
}

#[test]
fn legacy_des_crypt_is_refused() {
    let issues = parse_issues(DES_CRYPT);
    assert_eq!(
        summary(&issues),
        [(1, Some("alice"), EntryError::LegacyCrypt)]
    );
    assert!(issues[0].to_string().contains("htpasswd -B"));
}

#[test]
fn malformed_hashes_are_refused() {
    let cases = [
        // bcrypt: short, cost not digits, cost too low, bad character
        (
            "$2y$05$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFw",
            malformed("bcrypt", "expected `$2y$NN$` and 53 characters"),
        ),
        (
            "$2y$x5$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFwO",
            malformed("bcrypt", "the cost is not two digits"),
        ),
        (
            "$2y$03$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFwO",
            malformed("bcrypt", "the cost is below 4"),
        ),
        (
            "$2y$05$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFw!",
            malformed(
                "bcrypt",
                "salt or digest has a character outside `./A-Za-z0-9`",
            ),
        ),
        // MD5-crypt: no `$`, long salt, short digest
        ("$apr1$hXO78XBA", malformed("apr1", "no `$` after the salt")),
        (
            "$apr1$hXO78XBAx$GOgUgduPe/wJOwwkcpKiB0",
            malformed("apr1", "the salt is longer than 8 characters"),
        ),
        (
            "$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm8",
            malformed(
                "md5-crypt",
                "the digest is not 22 characters of `./A-Za-z0-9`",
            ),
        ),
        // SHA-crypt: rounds not a number, too few rounds, long salt, wrong digest length
        (
            "$5$rounds=1e3$saltsaltsaltsalt$nxvy/aZxmMcHLq9pGRuSwLR..D/0Hr4eL305uyyfXLA",
            malformed("sha256-crypt", "`rounds=` is not a number"),
        ),
        (
            "$5$rounds=999$saltsaltsaltsalt$nxvy/aZxmMcHLq9pGRuSwLR..D/0Hr4eL305uyyfXLA",
            malformed("sha256-crypt", "`rounds=` is below 1000"),
        ),
        (
            "$5$saltsaltsaltsaltX$nxvy/aZxmMcHLq9pGRuSwLR..D/0Hr4eL305uyyfXLA",
            malformed("sha256-crypt", "the salt is longer than 16 characters"),
        ),
        (
            "$6$saltsalt$nxvy/aZxmMcHLq9pGRuSwLR..D/0Hr4eL305uyyfXLA",
            malformed(
                "sha512-crypt",
                "the digest has the wrong length or characters",
            ),
        ),
        // {SHA}: not base64, wrong length
        ("{SHA}not base64!", malformed("sha1", "not base64")),
        ("{SHA}AAAA", malformed("sha1", "not a 20-byte SHA-1 digest")),
    ];
    for (hash, expected) in cases {
        let issues = parse_issues(&format!("user:{hash}"));
        assert_eq!(summary(&issues), [(1, Some("user"), expected)], "{hash}");
    }
}

#[test]
fn costs_that_would_stall_a_worker_are_refused() {
    let bcrypt = "u:$2y$18$.t3KY6Kb5twZVG2R/.eGaeduN9eaYELU8VcHnCvawi0UvHEOHQFwO";
    let expected = EntryError::TooSlow {
        scheme: "bcrypt",
        cost: 18,
        max: 17,
    };
    assert_eq!(summary(&parse_issues(bcrypt)), [(1, Some("u"), expected)]);
    let sha = "u:$6$rounds=10000001$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0";
    let expected = EntryError::TooSlow {
        scheme: "sha512-crypt",
        cost: 10_000_001,
        max: 10_000_000,
    };
    assert_eq!(summary(&parse_issues(sha)), [(1, Some("u"), expected)]);
}

#[test]
fn issues_never_echo_hashes_or_passwords() {
    let text = "carol:hunter2-secret\n\
                alice:I6YmlGNBHscOo\n\
                dave:$2y$05$SECRETSECRET\n\
                secret-line-without-colon\n\
                ev\u{7}il:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\n";
    for issue in parse_issues(text) {
        let shown = format!("{issue} {issue:?}");
        for secret in ["hunter2", "I6Ym", "SECRET", "secret-line", "s3lY8"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.starts_with("users.htpasswd:"), "{shown}");
    }
}

#[test]
fn issue_display_names_file_line_and_user() {
    let issues = parse_issues("a:{SHA}x\nbob:plain\n");
    assert_eq!(
        issues[1].to_string(),
        "users.htpasswd:2: user \"bob\": not a password hash; plain-text passwords are refused \
         (create the entry with `htpasswd -B`)"
    );
}

#[test]
fn debug_shows_users_but_no_hash() {
    let file = parse_ok(&vectors_file());
    let shown = format!("{file:?}");
    assert!(shown.contains("alice-apr1"));
    assert!(!shown.contains("GOgUgduPe"));
    assert!(!shown.contains('$'));
}

// === Basic authentication ===

#[test]
fn basic_credentials_are_parsed() {
    type Case = (&'static [u8], Option<(&'static str, &'static str)>);
    let cases: &[Case] = &[
        // RFC 7617 §2's example.
        (
            b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            Some(("Aladdin", "open sesame")),
        ),
        (
            b"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            Some(("Aladdin", "open sesame")),
        ),
        (
            b"  BASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ  ",
            Some(("Aladdin", "open sesame")),
        ),
        // "bob:p@ss:word": the password keeps its colon.
        (b"Basic Ym9iOnBAc3M6d29yZA==", Some(("bob", "p@ss:word"))),
        // "bob:" — an empty password is still a pair.
        (b"Basic Ym9iOg==", Some(("bob", ""))),
        // "ünïcødé:pässwörd" in UTF-8 (RFC 7617 §2.1 charset).
        (
            b"Basic w7xuw69jw7hkw6k6cMOkc3N3w7ZyZA==",
            Some(("ünïcødé", "pässwörd")),
        ),
        // ":pw" — no user.
        (b"Basic OnB3", None),
        // "nocolon"
        (b"Basic bm9jb2xvbg==", None),
        // "a\x01:b" — a control character.
        (b"Basic YQE6Yg==", None),
        // invalid UTF-8: 0xff ':' 'b'
        (b"Basic /zpi", None),
        (b"Basic !!!", None),
        (b"Basic", None),
        (b"Basic ", None),
        (b"BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==", None),
        (b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==", None),
        (b"Basi", None),
        (b"", None),
        (b"\xff\xfe", None),
    ];
    for &(header, expected) in cases {
        let got = parse_basic(header);
        let expected = expected.map(|(u, p)| (u.to_owned(), p.to_owned()));
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(header));
    }
}

#[test]
fn oversized_basic_header_is_refused() {
    let mut header = b"Basic ".to_vec();
    header.extend(std::iter::repeat_n(b'A', MAX_BASIC_HEADER_LEN));
    assert_eq!(parse_basic(&header), None);
}

// === VerifiedCache ===

#[test]
fn cache_remembers_outcomes() {
    let file = parse_ok(&vectors_file());
    let cache = VerifiedCache::new(16, [7; 32]);
    assert!(cache.is_empty());
    for _ in 0..3 {
        assert!(cache.verify(&file, "alice-bcrypt", "correct horse"));
        assert!(!cache.verify(&file, "alice-bcrypt", "wrong"));
        assert!(!cache.verify(&file, "nobody", "correct horse"));
    }
    assert_eq!(cache.len(), 3);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn cache_does_not_outlive_a_changed_hash() {
    let before = parse_ok("alice:{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=\n");
    let cache = VerifiedCache::new(16, [1; 32]);
    assert!(cache.verify(&before, "alice", "correct horse"));
    // The reloaded file gives alice another password; the cached success must not apply.
    let after = parse_ok("alice:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\n");
    assert!(!cache.verify(&after, "alice", "correct horse"));
    assert!(cache.verify(&after, "alice", "sha1pass"));
    // A user removed by the reload is refused even with a cached success.
    let removed = parse_ok("frank:{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=\n");
    assert!(!cache.verify(&removed, "alice", "sha1pass"));
}

#[test]
fn cache_evicts_failures_before_successes() {
    let file = parse_ok(&vectors_file());
    let cache = VerifiedCache::new(4, [2; 32]);
    assert!(cache.verify(&file, "alice-sha1", "correct horse"));
    assert!(cache.verify(&file, "frank", "sha1pass"));
    for attempt in 0..20 {
        assert!(!cache.verify(&file, "alice-sha1", &format!("guess {attempt}")));
        assert!(cache.len() <= 4);
    }
    // Both successes survived the flood: two of the four slots are theirs.
    let successes_and_one_failure = 3;
    assert!(cache.len() >= successes_and_one_failure);
    let key = cache.outcome_key("frank", "{SHA}s3lY8hvguXyCP2PMxFsSNoI1V18=", "sha1pass");
    assert_eq!(cache.lock().get(&key), Some(&true));
}

#[test]
fn cache_of_capacity_zero_stores_nothing() {
    let file = parse_ok(&vectors_file());
    let cache = VerifiedCache::new(0, [0; 32]);
    assert!(cache.verify(&file, "frank", "sha1pass"));
    assert!(cache.is_empty());
}

#[test]
fn cache_refuses_overlong_passwords_without_hashing() {
    let file = parse_ok(SHA1_1025);
    let cache = VerifiedCache::new(4, [0; 32]);
    assert!(!cache.verify(&file, "z1025", &"z".repeat(MAX_PASSWORD_LEN + 1)));
    assert!(cache.is_empty());
}

#[test]
fn cache_debug_hides_the_key() {
    let cache = VerifiedCache::new(4, [0xab; 32]);
    let shown = format!("{cache:?}");
    assert!(shown.contains("capacity: 4"));
    assert!(!shown.contains("171"));
}

// === properties ===

proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC*(\r?\n\\PC*){0,4}") {
        let _ = Htpasswd::parse(&text, "prop");
    }

    #[test]
    fn basic_round_trips(user in "[^:\\p{Cc}]{1,40}", password in "[^\\p{Cc}]{0,40}") {
        let header = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        prop_assert_eq!(parse_basic(header.as_bytes()), Some((user, password)));
    }

    #[test]
    fn basic_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut header = b"Basic ".to_vec();
        header.extend(bytes);
        let _ = parse_basic(&header);
    }
}
