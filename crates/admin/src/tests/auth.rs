//! Authentication, sessions, CSRF, Origin and Host checks, headers and limits (security matrix
//! AD-01, AD-03, AD-04, AD-05).

use axum::http::{Method, StatusCode};

use super::{login, req, Fixture, TOKEN};

const PROTECTED: &[&str] = &[
    "/",
    "/metrics",
    "/api/decisions",
    "/api/check?host=zoom.us",
    "/api/apps",
    "/api/pinning",
    "/api/config",
    "/api/openapi.json",
    "/pinning",
    "/tester",
    "/catalog",
    "/ca",
    "/api/policy",
    "/no/such/path",
];

#[tokio::test]
async fn public_routes_need_no_token() {
    let f = Fixture::new();
    for path in [
        "/live",
        "/ready",
        "/ca.pem",
        "/ca.der",
        "/proxy.pac",
        "/login",
    ] {
        let r = f.send(req(Method::GET, path).build()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let r = f.send(req(Method::HEAD, "/ca.pem").build()).await;
    assert_eq!(r.status, StatusCode::OK);
    // Public even under a name that is not allowed for the UI: devices fetch these by name.
    let r = f
        .send(
            req(Method::GET, "/proxy.pac")
                .header("host", "gw.corp.example:9128")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn no_token_is_401_everywhere_else() {
    let f = Fixture::new();
    for path in PROTECTED {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::POST,
            Method::DELETE,
        ] {
            let r = f.send(req(method.clone(), path).build()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(r
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
    }
    // Public paths with other methods are not public.
    let r = f.send(req(Method::OPTIONS, "/ca.pem").build()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.send(req(Method::POST, "/live").build()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.send(req(Method::OPTIONS, "/login").build()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.send(req(Method::GET, "/api/apps").build()).await.json()["error"]
            .as_str()
            .map(|e| e.starts_with("authentication required")),
        Some(true)
    );
}

#[tokio::test]
async fn wrong_token_is_401_right_token_is_200() {
    let f = Fixture::new();
    for bad in [
        "Bearer nope".to_string(),
        format!("Bearer {TOKEN}x"),
        format!("Basic {TOKEN}"),
        format!("bearer {}", &TOKEN[..10]),
        "Bearer".to_string(),
    ] {
        let r = f
            .send(
                req(Method::GET, "/api/apps")
                    .header("authorization", &bad)
                    .build(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    for path in PROTECTED
        .iter()
        .filter(|p| !p.contains("policy") && !p.contains("no/such"))
    {
        let r = f.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let r = f.get("/no/such/path").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f
        .send(
            req(Method::GET, "/api/apps")
                .header("authorization", &format!("bEaReR {TOKEN}"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "the scheme is case-insensitive");
}

#[tokio::test]
async fn failed_attempts_are_audited_and_rate_limited() {
    let f = Fixture::new();
    for _ in 0..crate::auth::MAX_FAILURES {
        let r = f
            .send(
                req(Method::GET, "/api/apps")
                    .header("authorization", "Bearer guess")
                    .build(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = f
        .send(
            req(Method::GET, "/api/apps")
                .header("authorization", "Bearer guess")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = f.get("/api/apps").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token, for a while"
    );
    let r = f
        .send(
            req(Method::POST, "/login")
                .form(&format!("token={TOKEN}"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Audited (written from a blocking task: give it a moment), without what was presented.
    for _ in 0..100 {
        if f.audit_lines().len() >= crate::auth::MAX_FAILURES as usize {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines = f.audit_lines();
    assert_eq!(lines.len(), crate::auth::MAX_FAILURES as usize, "{lines:?}");
    assert!(lines.iter().all(|l| l["action"] == "auth.failed"));
    let text = std::fs::read_to_string(f.dir.path().join(crate::audit::AUDIT_FILE)).unwrap();
    assert!(!text.contains("guess") && !text.contains(TOKEN));
    let m = f.state.shared.auth_failures.get();
    assert_eq!(
        m,
        u64::from(crate::auth::MAX_FAILURES),
        "refused attempts are not counted again"
    );
}

#[tokio::test]
async fn host_allow_list_refuses_rebound_names() {
    let f = Fixture::new();
    for host in [
        "evil.test",
        "evil.test:9128",
        "127.0.0.1.evil.test",
        "localhost.evil.test",
    ] {
        let r = f
            .send(
                req(Method::GET, "/api/apps")
                    .bearer()
                    .header("host", host)
                    .build(),
            )
            .await;
        assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        let r = f
            .send(req(Method::GET, "/").header("host", host).build())
            .await;
        assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    for host in [
        "127.0.0.1:9128",
        "localhost:9128",
        "LOCALHOST",
        "[::1]:9128",
        "10.0.0.5:9128",
    ] {
        let r = f
            .send(
                req(Method::GET, "/api/apps")
                    .bearer()
                    .header("host", host)
                    .build(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn foreign_origin_and_cross_site_fetches_are_refused() {
    let f = Fixture::new();
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .bearer()
                .header("origin", "http://evil.test")
                .header("content-type", "text/plain")
                .body("{}")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = f
        .send(
            req(Method::GET, "/api/apps")
                .bearer()
                .header("origin", "http://127.0.0.1:8080")
                .build(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "another port is another origin"
    );
    let r = f
        .send(
            req(Method::GET, "/api/apps")
                .bearer()
                .header("sec-fetch-site", "cross-site")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .send(
            req(Method::GET, "/api/apps")
                .bearer()
                .header("origin", "http://127.0.0.1:9128")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "same origin");
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn session_cookie_needs_csrf_for_changes() {
    let f = Fixture::new();
    let r = f
        .send(req(Method::POST, "/login").form("token=wrong").build())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("set-cookie").is_none());
    let r = f
        .send(
            req(Method::POST, "/login")
                .form(&format!("token={TOKEN}"))
                .build(),
        )
        .await;
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(TOKEN), "the cookie is not the token");
    let (cookie, csrf) = login(&f).await;
    let r = f
        .send(
            req(Method::GET, "/api/pinning")
                .header("cookie", &cookie)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "reads need no CSRF token");

    let body = r#"{"host":"pinned.test","note":"x"}"#;
    // Cookie only (what a cross-site form or text/plain fetch could send): refused.
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .header("cookie", &cookie)
                .header("content-type", "text/plain")
                .body(body)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .header("cookie", &cookie)
                .json(body)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .header("cookie", &cookie)
                .header("x-csrf-token", "0000")
                .json(body)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .send(
            req(Method::POST, "/pinning/reject")
                .header("cookie", &cookie)
                .form("host=pinned.test&note=x&csrf=wrong")
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // With the token: accepted.
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .header("cookie", &cookie)
                .header("x-csrf-token", &csrf)
                .json(body)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["actor"], "admin-ui");
    let r = f
        .send(
            req(Method::POST, "/pinning/reject")
                .header("cookie", &cookie)
                .form(&format!("host=pinned.test&note=again&csrf={csrf}"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Logout ends the session.
    let r = f
        .send(
            req(Method::POST, "/logout")
                .header("cookie", &cookie)
                .form(&format!("csrf={csrf}"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = f
        .send(
            req(Method::GET, "/api/pinning")
                .header("cookie", &cookie)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let f = Fixture::new();
    for r in [
        f.get("/").await,
        f.send(req(Method::GET, "/ca.pem").build()).await,
        f.send(req(Method::GET, "/api/apps").build()).await,
    ] {
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control")));
    }
}

#[tokio::test]
async fn bodies_are_limited_and_parsed_strictly() {
    let f = Fixture::new();
    let big = format!(r#"{{"host":"a.test","note":"{}"}}"#, "x".repeat(100 * 1024));
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .bearer()
                .json(&big)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.json()["error"].is_string());
    for (body, status) in [
        ("{", StatusCode::BAD_REQUEST),
        (r#"{"host":"a.test","evil":1}"#, StatusCode::BAD_REQUEST),
        (r#"{"host":"*.a.test"}"#, StatusCode::BAD_REQUEST),
        (r#"{"host":""}"#, StatusCode::BAD_REQUEST),
        (
            r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = f
            .send(
                req(Method::POST, "/api/pinning/reject")
                    .bearer()
                    .json(body)
                    .build(),
            )
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{body}");
    }
    let r = f
        .send(
            req(Method::POST, "/api/pinning/reject")
                .bearer()
                .header("content-type", "text/plain")
                .body(r#"{"host":"a.test"}"#)
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = f.get("/api/decisions?decision=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f.get("/api/decisions?bogus=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].is_string());
}
