//! An enterprise intermediate as the gateway's CA (issue 12 item 10, security matrix HC-10):
//! `[ca] cert` is a chain file (the issuing intermediate, then the enterprise root), and a
//! client that trusts only the enterprise root — what managed devices have — must verify the
//! leaves the gateway mints. RFC 8446 §4.4.2: the server sends its certificate first, then the
//! certificates that certify it; the root may be omitted (the client has it). So a minted leaf
//! goes out as leaf + intermediate, and `/ca.pem`, `/ca.der` and `sluice ca export` hand out
//! what devices must trust: the root, not the intermediate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sluice_test_support::{curl_response, openssl_s_client, IssuingCa, KeyType, LeafOpts, TestPki};

use crate::admin::admin;
use crate::World;

/// An enterprise PKI (its own root, unrelated to the origins' test root) and a gateway that
/// mints with its intermediate.
struct Enterprise {
    _dir: tempfile::TempDir,
    pki: TestPki,
    ca: IssuingCa,
    w: World,
}

impl Enterprise {
    fn new(key: KeyType) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        let ca = pki.issuing_ca("enterprise", key);
        let (cert, key) = (
            ca.chain_pem_path.to_str().unwrap().to_owned(),
            ca.key_pem_path.to_str().unwrap().to_owned(),
        );
        let w = World::with(&["origin.test"], LeafOpts::default(), |cfg| {
            cfg.set("ca.cert", cert).set("ca.key", key)
        });
        Self {
            _dir: dir,
            pki,
            ca,
            w,
        }
    }

    fn root_der(&self) -> Vec<u8> {
        self.pki.root_der().to_vec()
    }

    /// curl through the proxy trusting only the enterprise root.
    fn curl_trusting_root(&self) -> sluice_test_support::CurlResponse {
        curl_response(&[
            "--proxy",
            &self.w.gw.proxy_url(),
            "--cacert",
            self.pki.root_pem_path().to_str().unwrap(),
            &self.w.url("origin.test", "/"),
        ])
    }
}

fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn check_chain_is_served_and_root_exported(e: &Enterprise) {
    let r = e.curl_trusting_root();
    assert_eq!(
        r.http_code, 200,
        "a client trusting only the enterprise root must verify the minted leaf: {}",
        r.output.stderr
    );
    assert_eq!(r.body_str(), "hello from origin.test");

    // What goes on the wire: leaf, then the intermediate; the self-signed root is left out.
    let port = e.w.origin.port();
    let out = openssl_s_client(
        e.w.gw.proxy_addr(),
        &format!("origin.test:{port}"),
        &[
            "-showcerts",
            "-CAfile",
            e.pki.root_pem_path().to_str().unwrap(),
        ],
        b"",
    );
    let sent = ders(&out.stdout);
    let intermediate = ders(&std::fs::read(&e.ca.cert_pem_path).unwrap());
    assert_eq!(sent.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        sent[1], intermediate[0],
        "the second certificate is the intermediate"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");

    // The downloads and the CLI give devices the root.
    let pem = admin(&e.w.gw, "/ca.pem", &[]);
    assert_eq!(pem.http_code, 200);
    assert_eq!(ders(&pem.body), vec![e.root_der()], "/ca.pem is the root");
    let der = admin(&e.w.gw, "/ca.der", &[]);
    assert_eq!(der.body, e.root_der(), "/ca.der is the root");
    let out = e.w.gw.run_cli(&["ca", "export"]);
    assert!(out.status.success());
    assert_eq!(
        ders(&out.stdout),
        vec![e.root_der()],
        "ca export is the root"
    );
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("root"),
        "ca export says what it prints: {note}"
    );
    let out = e.w.gw.run_cli(&["ca", "export", "--der"]);
    assert_eq!(out.stdout, e.root_der());
}

#[test]
fn ecdsa_intermediate_chain_is_sent_and_the_root_exported_hc10() {
    check_chain_is_served_and_root_exported(&Enterprise::new(KeyType::EcdsaP256));
}

#[test]
fn rsa_intermediate_chain_is_sent_and_the_root_exported_hc10() {
    check_chain_is_served_and_root_exported(&Enterprise::new(KeyType::Rsa2048));
}

#[test]
fn a_generated_ca_is_unchanged_root_only_and_no_chain() {
    let w = World::new(&["origin.test"], "");
    let pem = admin(&w.gw, "/ca.pem", &[]).body_str();
    assert_eq!(pem, std::fs::read_to_string(w.gw.ca_pem_path()).unwrap());
    let port = w.origin.port();
    let out = openssl_s_client(
        w.gw.proxy_addr(),
        &format!("origin.test:{port}"),
        &["-showcerts"],
        b"",
    );
    assert_eq!(ders(&out.stdout).len(), 1, "a self-signed CA is never sent");
    let out = w.gw.run_cli(&["ca", "export"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), pem);
}
