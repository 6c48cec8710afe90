//! The server-rendered pages: content, escaping, and the pinning forms.

use axum::http::{Method, StatusCode};

use super::{login, record, req, Fixture};

#[tokio::test]
async fn dashboard_counts_the_last_hour_and_escapes_what_clients_sent() {
    let f = Fixture::new();
    let mut hostile = record(
        "connect",
        "<script>alert(1)</script>.test",
        "block",
        "blocked:app",
    );
    hostile.app = Some("tiktok\"><img src=x>".into());
    f.emit(vec![
        record("connect", "zoom.us", "bypass", "global"),
        record("connect", "dropbox.com", "bypass", "policy"),
        record("connect", "zoom.us", "bypass", "global"),
        record("connect", "www.example.com", "decrypt", "default"),
        // A request inside a decrypted tunnel shares its connection's decision.
        {
            let mut r = record("request", "www.example.com", "decrypt", "default");
            r.url = Some("https://www.example.com/".into());
            r
        },
        hostile,
    ]);
    f.make_suspect("pinned.test");
    let r = f.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.body;
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img src=x>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.test"));
    assert!(
        html.contains("id=\"count-bypass\"><b class=\"bypass\">3</b>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"count-decrypt\"><b class=\"decrypt\">1</b>"),
        "{html}"
    );
    assert!(html.contains("id=\"count-block\"><b class=\"block\">1</b>"));
    assert!(html.contains("<svg id=\"chart\""));
    assert!(
        html.contains("<td>global</td><td class=\"n\">2</td>"),
        "top bypass reasons"
    );
    assert!(
        html.contains("tiktok&quot;&gt;&lt;img src=x&gt;"),
        "top blocked apps"
    );
    assert!(html.contains("id=\"suspects\"><b>1</b>"));
}

#[test]
fn chart_buckets_by_age() {
    let now = std::time::SystemTime::now();
    let at = |mins: u64| {
        let mut r =
            serde_json::to_value(record("connect", "a.test", "decrypt", "default")).unwrap();
        r["ts"] =
            sluice_proxy::log::timestamp(now - std::time::Duration::from_secs(mins * 60)).into();
        r
    };
    let sum = crate::ui::dashboard::summarize(&[at(0), at(1), at(7), at(59), at(61)], now);
    assert_eq!(sum.totals, [4, 0, 0]);
    assert_eq!(sum.buckets[11], [2, 0, 0]);
    assert_eq!(sum.buckets[10], [1, 0, 0]);
    assert_eq!(sum.buckets[0], [1, 0, 0]);
}

#[tokio::test]
async fn pinning_page_shows_evidence_and_the_forms_work() {
    let f = Fixture::new();
    f.make_suspect("pinned.test");
    let (cookie, csrf) = login(&f).await;
    let r = f
        .send(
            req(Method::GET, "/pinning")
                .header("cookie", &cookie)
                .build(),
        )
        .await;
    let html = &r.body;
    assert!(
        html.contains("<tr class=\"suspect\" data-host=\"pinned.test\">"),
        "{html}"
    );
    assert!(html.contains("closed-after-handshake&nbsp;×3"));
    assert!(html.contains("t13d0000h2_000000000000_000000000000"));
    assert!(html.contains("<form class=\"inline approve\""));
    assert!(html.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));
    let r = f
        .send(
            req(Method::POST, "/pinning/approve")
                .header("cookie", &cookie)
                .form(&format!(
                    "csrf={csrf}&host=pinned.test&ja4=t13d0000h2_000000000000_000000000000&scope=fingerprint&note=ok"
                ))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), Some("/pinning?approved=pinned.test"));
    let approvals = f.store().approvals().unwrap();
    assert_eq!(approvals[0].actor, "admin-ui");
    let r = f
        .send(
            req(Method::GET, "/pinning?approved=%3Cb%3Ex")
                .header("cookie", &cookie)
                .build(),
        )
        .await;
    assert!(r.body.contains("Approved <b>&lt;b&gt;x</b>"));
    assert!(r.body.contains("<td class=\"status\">approved</td>"));
    // A failed action re-renders the page with the error.
    let r = f
        .send(
            req(Method::POST, "/pinning/approve")
                .header("cookie", &cookie)
                .form(&format!("csrf={csrf}&host=not..valid"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("class=\"err\""));
}

#[tokio::test]
async fn tester_catalog_and_ca_pages() {
    let f = Fixture::new();
    let r = f.get("/tester?host=zoom.us&client=&user=&sni=").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains("<h2 id=\"verdict\"><b class=\"bypass\">bypass</b> <small>(global)</small>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<table id=\"trace\">"));
    let r = f.get("/tester?host=%3Cx%3E").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("value=\"&lt;x&gt;\""));
    assert!(!r.body.contains("<x>"));
    let r = f.get("/tester").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("verdict"));

    let r = f.get("/catalog").await;
    assert!(r.body.contains("Zoom"));
    assert!(r.body.contains("<b>global bypass</b>"));
    assert!(r.body.contains("available for exceptions"));
    let rows = r.body.matches("<tr><td>").count();
    assert_eq!(rows, f.state.catalog.apps().len());

    let r = f.get("/ca").await;
    assert!(r.body.contains("href=\"/ca.pem\""));
    assert!(r.body.contains(f.state.rt.minter.ca().fingerprint()));
    for os in [
        "Windows",
        "macOS",
        "Linux",
        "Firefox",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
    ] {
        assert!(r.body.contains(os), "{os}");
    }
}

#[tokio::test]
async fn unauthenticated_pages_point_to_the_login_form() {
    let f = Fixture::new();
    let r = f.send(req(Method::GET, "/catalog").build()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("action=\"/login\""));
}
