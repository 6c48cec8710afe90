//! The PKI's chains as `openssl verify` sees them (security matrix Appendix A error numbers).

use sluice_test_support::pki::{KeyType, LeafIssuer, LeafOpts, Validity, INTERMEDIATE_CN, ROOT_CN};

use crate::util::{leaf, openssl, pki, s};

/// `openssl verify -CAfile root.pem -untrusted int.pem -purpose sslserver [extra] leaf.pem`;
/// returns (exit ok, combined output).
fn verify(
    pki: &sluice_test_support::TestPki,
    leaf_pem: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec![
        "verify",
        "-CAfile",
        s(pki.root_pem_path()),
        "-untrusted",
        s(pki.intermediate_pem_path()),
        "-purpose",
        "sslserver",
    ];
    args.extend_from_slice(extra);
    args.push(s(leaf_pem));
    let out = openssl(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn valid_leaf_verifies_with_hostname() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["ok.test", "www.ok.test"]);
    let (ok, out) = verify(
        &pki,
        &leaf.cert_pem_path,
        &["-verify_hostname", "www.ok.test"],
    );
    assert!(ok, "{out}");
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn wrong_name_is_rejected() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["other.test"]);
    let (ok, out) = verify(
        &pki,
        &leaf.cert_pem_path,
        &["-verify_hostname", "wrong-host.test"],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("error 62"), "{out}");
}

#[test]
fn expired_and_not_yet_valid_are_rejected() {
    let (_d, pki) = pki();
    let expired = pki.leaf(
        &["expired.test"],
        LeafOpts {
            validity: Validity::Expired,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(&pki, &expired.cert_pem_path, &[]);
    assert!(!ok && out.contains("error 10"), "{out}");
    let notyet = pki.leaf(
        &["notyet.test"],
        LeafOpts {
            validity: Validity::NotYetValid,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(&pki, &notyet.cert_pem_path, &[]);
    assert!(!ok && out.contains("error 9"), "{out}");
}

#[test]
fn self_signed_and_untrusted_are_rejected() {
    let (_d, pki) = pki();
    let own = pki.leaf(
        &["self.test"],
        LeafOpts {
            issuer: LeafIssuer::SelfSigned,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(&pki, &own.cert_pem_path, &[]);
    assert!(!ok && out.contains("error 18"), "{out}");
    assert_eq!(own.chain_der.len(), 1);
    let untrusted = pki.leaf(
        &["untrusted.test"],
        LeafOpts {
            issuer: LeafIssuer::Untrusted,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(&pki, &untrusted.cert_pem_path, &[]);
    assert!(!ok && out.contains("error 20"), "{out}");
}

#[test]
fn root_issued_ip_san_and_rsa_leaves_verify() {
    let (_d, pki) = pki();
    let by_root = pki.leaf(
        &["root.test"],
        LeafOpts {
            issuer: LeafIssuer::Root,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(
        &pki,
        &by_root.cert_pem_path,
        &["-verify_hostname", "root.test"],
    );
    assert!(ok, "{out}");
    let ip = leaf(&pki, &["127.0.1.30"]);
    let (ok, out) = verify(&pki, &ip.cert_pem_path, &["-verify_ip", "127.0.1.30"]);
    assert!(ok, "{out}");
    let rsa = pki.leaf(
        &["rsa.test"],
        LeafOpts {
            key: KeyType::Rsa2048,
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(&pki, &rsa.cert_pem_path, &["-verify_hostname", "rsa.test"]);
    assert!(ok, "{out}");
    let text = openssl(&["x509", "-noout", "-text", "-in", s(&rsa.cert_pem_path)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("rsaEncryption"));
}

#[test]
fn chain_file_is_leaf_then_intermediate_and_names_are_stable() {
    let (_d, pki) = pki();
    let a = leaf(&pki, &["a.test"]);
    let again = leaf(&pki, &["a.test"]);
    assert_ne!(
        a.cert_pem_path, again.cert_pem_path,
        "second leaf must not overwrite the first"
    );
    let chain = std::fs::read_to_string(&a.chain_pem_path).expect("chain file");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let issuer = openssl(&["x509", "-noout", "-issuer", "-in", s(&a.cert_pem_path)]);
    assert!(String::from_utf8_lossy(&issuer.stdout).contains(INTERMEDIATE_CN));
    let root = openssl(&["x509", "-noout", "-subject", "-in", s(pki.root_pem_path())]);
    assert!(String::from_utf8_lossy(&root.stdout).contains(ROOT_CN));
    let key = openssl(&["pkey", "-noout", "-in", s(&a.key_pem_path)]);
    assert!(key.status.success(), "key PEM parses");
}

#[test]
fn external_issuer_signs_with_any_ca_files() {
    let (_d, pki) = pki();
    let int_key = pki.dir().join("int.key");
    let leaf = pki.leaf(
        &["owned.test"],
        LeafOpts {
            issuer: LeafIssuer::External {
                cert_pem: pki.intermediate_pem_path().to_path_buf(),
                key_pem: int_key,
            },
            ..LeafOpts::default()
        },
    );
    let (ok, out) = verify(
        &pki,
        &leaf.cert_pem_path,
        &["-verify_hostname", "owned.test"],
    );
    assert!(ok, "{out}");
}

#[test]
fn spki_pin_matches_openssl() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["pin.test"]);
    // openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256 | base64, by hand.
    let pubkey = openssl(&["x509", "-noout", "-pubkey", "-in", s(&leaf.cert_pem_path)]);
    let pem = String::from_utf8_lossy(&pubkey.stdout).into_owned();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    use sha2::Digest as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("pubkey base64");
    let want = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der));
    assert_eq!(leaf.spki_sha256_b64, want);
}

#[test]
fn rustls_forms_of_the_leaf() {
    let (_d, pki) = pki();
    let leaf = leaf(&pki, &["ok.test"]);
    let certified = leaf.certified_key();
    assert_eq!(certified.cert.len(), 2, "leaf + intermediate");
    assert_eq!(certified.cert[0], leaf.cert_der);
    let config = leaf.server_config(&["h2"]);
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    assert_eq!(
        sluice_test_support::clients::cert_issuer_cn(&leaf.cert_der),
        INTERMEDIATE_CN
    );
    assert_eq!(
        sluice_test_support::clients::cert_subject_cn(&leaf.cert_der),
        "ok.test"
    );
}
