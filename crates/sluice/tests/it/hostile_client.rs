//! Issue 12, the hostile-client review: what a client controls (record versions, a retried
//! ClientHello, the spelling of an address, the volume of what it makes the gateway remember)
//! never switches inspection off, reaches a blocked destination or degrades the gateway.
//! Case ids HC-nn are in docs/security.md.

use std::time::Duration;

use sluice_test_support::clients::rawch::RawHello;
use sluice_test_support::connect_tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{World, LOG_WAIT};

const BLOCK_POLICY: &str =
    "[[policy]]\nname = \"default\"\nblock = { domains = [\"blocked.test\"] }\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a tunnel to `target`, writes `bytes`, and reads what comes back until EOF or 5 s.
async fn exchange(w: &World, target: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tunnel = connect_tunnel(w.gw.proxy_addr(), target).await;
    let _ = tunnel.write_all(bytes).await;
    let mut back = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut back)).await;
    back
}

/// HC-02: a ClientHello whose record header carries an unusual version is still TLS: it is
/// decided on its SNI, so with `non_tls = "tunnel"` it cannot be relayed raw to a blocked host.
#[test]
fn a_hello_with_an_odd_record_version_is_decided_on_its_sni_hc02() {
    let w = World::with(&["a.test", "blocked.test"], Default::default(), |cfg| {
        cfg.set("proxy.non_tls", "tunnel").extra_toml(BLOCK_POLICY)
    });
    let rt = runtime();
    let target = format!("a.test:{}", w.origin.port());
    for (i, version) in [[0x03, 0x05], [0x03, 0xff], [0x02, 0x00], [0x7f, 0x01]]
        .into_iter()
        .enumerate()
    {
        let mut hello = RawHello::new().sni("blocked.test").wire();
        hello[1] = version[0];
        hello[2] = version[1];
        let back = rt.block_on(exchange(&w, &target, &hello));
        let recs = w.gw.wait_for_logs(
            |r| r["kind"] == "connect" && r["sni"] == "blocked.test" && r["decision"] == "block",
            i + 1,
            LOG_WAIT,
        );
        let rec = &recs[i];
        assert_ne!(rec["reason"], "non_tls_tunnel", "{version:?}: {rec}");
        // The gateway's own alert (access_denied), never the origin's ServerHello.
        assert!(back.first() != Some(&0x16), "{version:?}: {back:?}");
    }
    assert_eq!(w.origin.tls_handshakes(), 0);
    assert!(
        w.gw.access_log()
            .iter()
            .all(|r| r["reason"] != "non_tls_tunnel"),
        "no TLS was relayed as non-TLS"
    );
}

/// HC-02: a non-TLS tunnel is still decided on the CONNECT host: block lists apply.
#[test]
fn a_non_tls_tunnel_is_decided_on_the_connect_host_hc02() {
    let w = World::with(&["a.test", "blocked.test"], Default::default(), |cfg| {
        cfg.set("proxy.non_tls", "tunnel").extra_toml(BLOCK_POLICY)
    });
    let rt = runtime();
    let port = w.origin.port();
    // A blocked CONNECT host is refused before any tunnel exists.
    let (reply, _) = rt
        .block_on(sluice_test_support::clients::try_connect_tunnel(
            w.gw.proxy_addr(),
            &format!("blocked.test:{port}"),
            &[],
        ))
        .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.head);
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "blocked.test",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "block", "{rec}");
    assert_eq!(rec["reason"], "blocked:domain", "{rec}");
    // What the administrator allowed still tunnels.
    rt.block_on(exchange(
        &w,
        &format!("a.test:{port}"),
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ));
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "a.test",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass", "{rec}");
    assert_eq!(rec["reason"], "non_tls_tunnel", "{rec}");
}

/// HC-05: a bypass decided on the CONNECT host (the first ClientHello has no SNI) still checks
/// the second ClientHello after a HelloRetryRequest: absent means absent.
#[test]
fn a_hello_retry_cannot_add_an_sni_to_a_bypass_without_one_hc05() {
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let leaf = pki.leaf(&["bank.test"], sluice_test_support::LeafOpts::default());
    let rt = runtime();
    let origin = rt.block_on(crate::hostile::hrr_origin(&leaf));
    let cfg = sluice_test_support::GatewayConfig::for_pki(&pki)
        .hosts(&["bank.test", "blocked.test"])
        .connect_ports(&[origin.port()])
        .extra_toml(
            "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bank.test\"] }\n\
             block = { domains = [\"blocked.test\"] }\n",
        );
    let gw = sluice_test_support::TestGateway::start(crate::BIN, cfg);
    let target = format!("bank.test:{}", origin.port());
    for second in ["blocked.test", "bank.test"] {
        rt.block_on(async {
            let mut raw = connect_tunnel(gw.proxy_addr(), &target).await;
            raw.write_all(&crate::hostile::client_hello_with("bank.test", false))
                .await
                .unwrap();
            let mut hrr = [0u8; 43];
            raw.read_exact(&mut hrr).await.unwrap();
            assert_eq!(hrr[5], 0x02, "the server's HelloRetryRequest is relayed");
            raw.write_all(&crate::hostile::client_hello_with(second, true))
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await;
        });
        let want = if second == "blocked.test" { 1 } else { 2 };
        let recs = gw.wait_for_logs(
            |r| r["kind"] == "connect" && r["reason"] == "sni_changed_after_hrr",
            want,
            LOG_WAIT,
        );
        assert_eq!(recs.len(), want, "{second}");
        assert!(recs.iter().all(|r| r["decision"] == "block"), "{recs:?}");
    }
}

/// HC-03: with `allow_private = true`, no spelling of this host reaches the gateway's own
/// listeners — unspecified, IPv4-mapped, IPv4-compatible, SIIT, NAT64 and 6to4 forms are what
/// they embed — so bad tokens sent through the proxy cannot lock the administrator out.
#[test]
fn no_spelling_of_this_host_reaches_the_gateway_itself_hc03() {
    let w = World::with(&["a.test"], Default::default(), |cfg| {
        cfg.set("upstream.allow_private", true)
    });
    let admin = w.gw.admin_addr().port();
    let proxy = w.gw.proxy_addr().port();
    let mut spellings = Vec::new();
    for port in [admin, proxy] {
        for host in [
            "0.0.0.0",
            "0",
            "0.0.0.1",
            "[::]",
            "[::ffff:0.0.0.0]",
            "[::ffff:127.0.0.1]",
            "[::127.0.0.1]",
            "[::ffff:0:127.0.0.1]",
            "[64:ff9b::7f00:1]",
            "[2002:7f00:1::]",
            "127.1",
            "0x7f000001",
        ] {
            spellings.push(format!("http://{host}:{port}/api/pinning"));
        }
    }
    for url in &spellings {
        let res = sluice_test_support::curl_response_via(
            &w.gw,
            url,
            &["--globoff", "-H", "Authorization: Bearer not-the-token"],
        );
        assert_eq!(res.http_code, 403, "{url}: {}", res.body_str());
        assert_eq!(
            res.header("x-sluice-reason"),
            Some("destination_refused"),
            "{url}"
        );
    }
    // The real administrator is not locked out: none of those reached the admin listener.
    let status = crate::admin::admin(
        &w.gw,
        "/api/pinning",
        &[
            "-H",
            &format!("Authorization: Bearer {}", crate::admin::token(&w.gw)),
        ],
    )
    .http_code;
    assert_eq!(status, 200);
    // What allow_private allows still works.
    let res = sluice_test_support::curl_response_via(&w.gw, &w.url("a.test", "/"), &[]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
}

/// HC-12: honest certificate diagnostics. A leaf sent alone whose issuer nobody knows is an
/// unknown issuer, not a missing intermediate; a leaf of a known intermediate sent alone is the
/// missing intermediate.
#[test]
fn a_lone_leaf_of_an_unknown_issuer_is_not_called_an_incomplete_chain_hc12() {
    use sluice_test_support::{GatewayConfig, LeafIssuer, LeafOpts, TestGateway, TestOrigin};
    let dir = tempfile::tempdir().unwrap();
    let pki = sluice_test_support::TestPki::new(dir.path());
    let origin = |name: &str, opts: LeafOpts, leaf_only: bool| {
        let leaf = pki.leaf(&[name], opts);
        let b = TestOrigin::builder().tls(&leaf).name(name);
        if leaf_only { b.leaf_only() } else { b }.start_blocking()
    };
    let full = origin("full.test", LeafOpts::default(), false);
    let alone = origin("alone.test", LeafOpts::default(), true);
    let stranger = origin(
        "stranger.test",
        LeafOpts {
            issuer: LeafIssuer::Untrusted,
            ..Default::default()
        },
        false,
    );
    let cfg = GatewayConfig::for_pki(&pki)
        .hosts(&["full.test", "alone.test", "stranger.test"])
        .connect_ports(&[full.port(), alone.port(), stranger.port()]);
    let gw = TestGateway::start(crate::BIN, cfg);
    let reason = |o: &TestOrigin| {
        let res = sluice_test_support::curl_response_via(&gw, &o.url(o.name(), "/"), &[]);
        res.header("x-sluice-reason").unwrap_or_default().to_owned()
    };
    // Nothing verified yet: the intermediate is unknown, so a lone leaf is an unknown issuer.
    assert_eq!(reason(&stranger), "upstream_cert_unknown_issuer");
    assert_eq!(reason(&alone), "upstream_cert_unknown_issuer");
    // Once a chain through the intermediate verified, a lone leaf it issued is a missing
    // intermediate; the stranger stays an unknown issuer.
    let ok = sluice_test_support::curl_response_via(&gw, &full.url("full.test", "/"), &[]);
    assert_eq!(ok.http_code, 200, "{}", ok.output.stderr);
    assert_eq!(reason(&alone), "upstream_cert_incomplete_chain");
    assert_eq!(reason(&stranger), "upstream_cert_unknown_issuer");
}

/// HC-12: `upstream_cert.revocation` says `crl` only when a CRL from the leaf's own issuer was
/// consulted; a CRL of some other CA leaves the status unknown.
#[test]
fn revocation_is_crl_only_when_the_issuers_own_crl_was_consulted_hc12() {
    let other_ca_crl = crate::matrix::pki().join("int.crl.pem");
    let w = World::with(&["a.test"], Default::default(), |cfg| {
        cfg.extra_toml(&format!(
            "[upstream]\ncrls = [\"{}\"]\n",
            other_ca_crl.display()
        ))
    });
    let res = sluice_test_support::curl_response_via(&w.gw, &w.url("a.test", "/"), &[]);
    assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["host"] == "a.test",
        LOG_WAIT,
    );
    assert_eq!(rec["upstream_cert"]["revocation"], "unknown", "{rec}");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn observation(ts: i64, host: &str) -> sluice_store::Observation {
    sluice_store::Observation {
        ts,
        host: host.into(),
        app: None,
        client: "127.0.0.1".into(),
        user: None,
        policy: "default".into(),
        signal: "closed-after-handshake".into(),
        ja4: "t13d1516h2_8daaf6152771_02713d6af862".into(),
        rule: sluice_store::SuspectRule::default(),
        learn: None,
    }
}

/// HC-08: the observations table is bounded by `pinning.retention` and
/// `pinning.max_observations`, oldest pruned first, in the running gateway.
#[test]
fn observations_are_pruned_by_age_and_count_hc08() {
    let mut w = World::with(&["a.test"], Default::default(), |cfg| {
        cfg.set("pinning.retention", "7d")
            .set("pinning.max_observations", 1000)
    });
    let db = w.gw.data_dir().join("sluice.db");
    w.gw.terminate();
    {
        let store = sluice_store::Store::open(&db).unwrap();
        let now = unix_now();
        let mut batch: Vec<_> = (0..20)
            .map(|i| observation(now - 8 * 86_400 + i, "old.test"))
            .collect();
        batch.extend((0..1500).map(|i| observation(now - 1500 + i, "recent.test")));
        store.record(&batch).unwrap();
        assert_eq!(store.observations(None, 100_000).unwrap().len(), 1520);
    }
    w.gw.restart();
    let store = sluice_store::Store::open(&db).unwrap();
    let deadline = std::time::Instant::now() + LOG_WAIT;
    let kept = loop {
        let kept = store.observations(None, 100_000).unwrap();
        if kept.len() <= 1000 || std::time::Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(kept.len(), 1000);
    assert!(kept.iter().all(|o| o.host == "recent.test"));
    let newest = kept.iter().map(|o| o.ts).max().unwrap();
    let oldest = kept.iter().map(|o| o.ts).min().unwrap();
    assert_eq!(newest - oldest, 999, "the newest thousand are kept");
}

/// HC-08: recent decisions in memory are bounded: long URLs are shortened there (the access
/// log keeps them whole) and an API page stays small.
#[test]
fn recent_decisions_keep_long_urls_short_hc08() {
    let w = World::new(&["a.test"], "");
    let long = format!("/{}", "q".repeat(12_000));
    let n = 40;
    for _ in 0..n {
        let res = sluice_test_support::curl_response_via(&w.gw, &w.url("a.test", &long), &[]);
        assert_eq!(res.http_code, 200, "{}", res.output.stderr);
    }
    w.gw.wait_for_logs(
        |r| r["kind"] == "request" && r["url"].as_str().is_some_and(|u| u.len() > 12_000),
        n,
        LOG_WAIT,
    );
    let auth = format!("Authorization: Bearer {}", crate::admin::token(&w.gw));
    let res = crate::admin::admin(&w.gw, "/api/decisions?limit=2000", &["-H", &auth]);
    assert_eq!(res.http_code, 200);
    assert!(res.body.len() < 400_000, "{} bytes", res.body.len());
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let urls: Vec<&str> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "request")
        .filter_map(|r| r["url"].as_str())
        .collect();
    assert_eq!(urls.len(), n);
    assert!(urls
        .iter()
        .all(|u| u.len() < 2200 && u.ends_with("…[truncated]")));
}
