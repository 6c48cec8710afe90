use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};

use super::wire::{self, Section};
use super::*;

mod fake;

use fake::{Behaviour, FakeIcap, Respond};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// c-icap 0.5.10's answer to RESPMOD of the EICAR file, as captured (head only).
const C_ICAP_BLOCK_HEAD: &str = "ICAP/1.0 200 OK\r\nServer: C-ICAP/0.5.10\r\nConnection: keep-alive\r\nISTag: \"CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA\"\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature.UNOFFICIAL;\r\nX-Violations-Found: 1\r\n\t-\r\n\tEicar-Test-Signature.UNOFFICIAL\r\n\t0\r\n\t0\r\nEncapsulated: res-hdr=0, res-body=161\r\n\r\n";

fn behaviour(preview: Option<usize>, respond: Respond) -> Behaviour {
    Behaviour {
        preview,
        respond,
        close_after: false,
        drop_second: false,
    }
}

fn client(url: &str) -> IcapClient {
    IcapClient::new(url, Duration::from_secs(5)).unwrap()
}

fn download() -> (Request<()>, Response<()>) {
    let req = Request::get("https://files.example/eicar.com")
        .body(())
        .unwrap();
    let mut resp = Response::new(());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    (req, resp)
}

async fn scan(c: &IcapClient, body: &[u8]) -> Result<Verdict, IcapError> {
    let (req, resp) = download();
    c.respmod(&req, &resp, body).await
}

#[test]
fn parses_c_icap_block_answer_with_folded_headers() {
    let head = wire::parse_response_head(C_ICAP_BLOCK_HEAD.as_bytes()).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.reason, "OK");
    assert_eq!(
        message::threat_name(&head.headers).as_deref(),
        Some("Eicar-Test-Signature.UNOFFICIAL")
    );
    let violations = head.headers.get("x-violations-found").unwrap();
    assert_eq!(violations.lines().count(), 5);
    let sections = wire::parse_encapsulated(head.headers.get("Encapsulated").unwrap()).unwrap();
    assert_eq!(sections, [(Section::ResHdr, 0), (Section::ResBody, 161)]);
}

#[test]
fn threat_names_from_other_headers() {
    let cases = [
        (
            "X-Violations-Found: 1\r\n\tfile\r\n\tWin.Test\r\n\t0\r\n\t0\r\n",
            Some("Win.Test"),
        ),
        (
            "X-Virus-ID: EICAR Test String\r\n",
            Some("EICAR Test String"),
        ),
        (
            "X-Infection-Found: Type=0; Resolution=2;\r\nX-Virus-Name: X\r\n",
            Some("X"),
        ),
        ("Server: none\r\n", None),
    ];
    for (headers, want) in cases {
        let h = wire::parse_header_lines(headers.split("\r\n")).unwrap();
        assert_eq!(message::threat_name(&h).as_deref(), want, "{headers}");
    }
}

#[test]
fn refuses_malformed_heads() {
    for bad in [
        "HTTP/1.1 200 OK\r\n\r\n",
        "ICAP/1.0 2000 OK\r\n\r\n",
        "ICAP/1.0\r\n\r\n",
        "ICAP/1.0 200 OK\r\n\tfolded first\r\n\r\n",
        "ICAP/1.0 200 OK\r\nno colon\r\n\r\n",
    ] {
        assert!(
            wire::parse_response_head(bad.as_bytes()).is_err(),
            "{bad:?}"
        );
    }
    for bad in [
        "res-hdr=5, res-body=10",
        "res-hdr=0, res-body=0",
        "res-body=0, res-hdr=10",
        "req-hdr=0, bogus=4",
        "req-hdr=0 res-body=4",
        "null-body=99999999",
    ] {
        assert!(wire::parse_encapsulated(bad).is_err(), "{bad}");
    }
}

#[test]
fn builds_encapsulated_offsets() {
    assert_eq!(
        message::encapsulated(&[("req-hdr", 40), ("res-hdr", 60)], "res-body", 5),
        "req-hdr=0, res-hdr=40, res-body=100"
    );
    assert_eq!(
        message::encapsulated(&[("req-hdr", 40)], "req-body", 0),
        "req-hdr=0, null-body=40"
    );
    // h2 requests carry the host in the URI only; the encapsulated head gets a Host.
    let (req, _) = download();
    let head = String::from_utf8(RequestHead::from(&req).encode()).unwrap();
    assert_eq!(
        head,
        "GET https://files.example/eicar.com HTTP/1.1\r\nHost: files.example\r\n\r\n"
    );
}

#[test]
fn parses_urls() {
    let c = client("icap://127.0.0.1/avscan?allow204=on");
    assert_eq!(c.uri(), "icap://127.0.0.1:1344/avscan?allow204=on");
    let c = client("icap://[::1]:13440/srv_clamav");
    assert_eq!(c.uri(), "icap://[::1]:13440/srv_clamav");
    assert_eq!(c.inner.host, "::1");
    for (bad, want) in [
        ("http://127.0.0.1/avscan", "icap://"),
        ("icaps://127.0.0.1/avscan", "icaps"),
        ("icap://127.0.0.1", "names no service"),
        ("icap://127.0.0.1/", "names no service"),
        ("not a url", "invalid ICAP URL"),
    ] {
        let err = IcapClient::new(bad, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains(want), "{bad}: {err}");
    }
}

#[tokio::test]
async fn reads_options() {
    let fake = FakeIcap::start(behaviour(Some(1024), Respond::Scan)).await;
    let options = client(&fake.url).options().await.unwrap();
    assert_eq!(
        options,
        ServerOptions {
            methods: vec!["RESPMOD".into(), "REQMOD".into()],
            preview: Some(1024),
            allow_204: true,
            istag: Some("fake-1".into()),
            max_connections: Some(4),
            ttl: Some(Duration::from_secs(60)),
            service: Some("fake".into()),
        }
    );
}

#[tokio::test]
async fn clean_is_204_and_eicar_is_blocked_by_name() {
    let fake = FakeIcap::start(behaviour(None, Respond::Scan)).await;
    let c = client(&fake.url);
    assert_eq!(scan(&c, b"hello").await.unwrap(), Verdict::Clean);
    assert_eq!(
        scan(&c, EICAR).await.unwrap(),
        Verdict::Blocked {
            signature: "Fake.EICAR".into(),
            status: 403
        }
    );
    let upload = Request::post("http://up.example/form").body(()).unwrap();
    assert!(matches!(
        c.reqmod(&upload, EICAR).await.unwrap(),
        Verdict::Blocked { .. }
    ));
    assert_eq!(c.reqmod(&upload, b"fine").await.unwrap(), Verdict::Clean);
    let seen = fake.seen();
    assert_eq!(
        seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(),
        ["RESPMOD", "RESPMOD", "REQMOD", "REQMOD"]
    );
    assert!(seen[0].head.contains("Allow: 204\r\n"), "{}", seen[0].head);
    assert!(seen[0]
        .head
        .contains("\r\nHTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"));
}

#[tokio::test]
async fn previews_then_continues_or_ends_with_ieof() {
    let fake = FakeIcap::start(behaviour(Some(16), Respond::Scan)).await;
    let c = client(&fake.url);
    let big = vec![b'a'; 100_000];
    assert_eq!(scan(&c, &big).await.unwrap(), Verdict::Clean);
    assert_eq!(scan(&c, b"tiny").await.unwrap(), Verdict::Clean);
    // Decided on the preview: blocked without the rest being asked for.
    let prefixed = [b"EICAR-0123456789".as_slice(), &big].concat();
    assert!(matches!(
        scan(&c, &prefixed).await.unwrap(),
        Verdict::Blocked { .. }
    ));
    // An empty body is sent as null-body, without a preview.
    assert_eq!(scan(&c, b"").await.unwrap(), Verdict::Clean);

    let seen = fake.seen();
    assert_eq!(
        (seen[0].preview, seen[0].ieof, seen[0].continued),
        (Some(16), false, true)
    );
    assert_eq!(seen[0].body, big);
    assert_eq!(
        (seen[1].preview, seen[1].ieof, seen[1].continued),
        (Some(16), true, false)
    );
    assert_eq!(seen[1].body, b"tiny");
    assert_eq!(
        (seen[2].ieof, seen[2].continued, seen[2].body.len()),
        (false, false, 16)
    );
    assert_eq!(seen[3].preview, None);
    assert!(seen[3].head.contains("null-body="), "{}", seen[3].head);
}

#[tokio::test]
async fn unchanged_copy_is_clean_and_a_changed_one_modified() {
    let echo = FakeIcap::start(behaviour(Some(8), Respond::Echo)).await;
    let c = client(&echo.url);
    assert_eq!(scan(&c, b"some body bytes").await.unwrap(), Verdict::Clean);
    assert_eq!(scan(&c, b"").await.unwrap(), Verdict::Clean);
    let upload = Request::post("http://up.example/form").body(()).unwrap();
    assert_eq!(c.reqmod(&upload, b"form=1").await.unwrap(), Verdict::Clean);

    let rewrite = FakeIcap::start(behaviour(None, Respond::Rewrite)).await;
    assert_eq!(
        scan(&client(&rewrite.url), b"original").await.unwrap(),
        Verdict::Modified
    );
}

#[tokio::test]
async fn reuses_one_connection() {
    let fake = FakeIcap::start(behaviour(Some(4), Respond::Scan)).await;
    let c = client(&fake.url);
    for _ in 0..5 {
        assert_eq!(scan(&c, b"clean body").await.unwrap(), Verdict::Clean);
    }
    assert!(matches!(
        scan(&c, EICAR).await.unwrap(),
        Verdict::Blocked { .. }
    ));
    assert_eq!(scan(&c.clone(), b"clean").await.unwrap(), Verdict::Clean);
    assert_eq!(fake.accepted(), 1, "OPTIONS and 7 scans on one connection");
}

#[tokio::test]
async fn retries_once_when_the_server_closed_an_idle_connection() {
    let mut b = behaviour(None, Respond::Scan);
    b.close_after = true;
    let fake = FakeIcap::start(b).await;
    let c = client(&fake.url);
    for _ in 0..3 {
        assert_eq!(scan(&c, b"clean").await.unwrap(), Verdict::Clean);
        // Let the close reach the client, as an idle keep-alive timeout would.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.accepted(), 4);

    // The server reads the next request on a kept-alive connection, then hangs up: the
    // client resends it on a new connection.
    let mut b = behaviour(Some(4), Respond::Scan);
    b.drop_second = true;
    let fake = FakeIcap::start(b).await;
    let c = client(&fake.url);
    for _ in 0..3 {
        assert_eq!(scan(&c, b"clean body").await.unwrap(), Verdict::Clean);
    }
    assert_eq!(fake.accepted(), 4);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn error_statuses_and_garbage_have_codes() {
    let fake = FakeIcap::start(behaviour(None, Respond::Status(500))).await;
    let err = scan(&client(&fake.url), b"x").await.unwrap_err();
    assert_eq!(err.code(), "icap_server_error", "{err}");
    assert!(err.to_string().contains("500"), "{err}");

    let fake = FakeIcap::start(behaviour(None, Respond::Garbage)).await;
    let err = scan(&client(&fake.url), b"x").await.unwrap_err();
    assert_eq!(err.code(), "icap_protocol", "{err}");
}

#[tokio::test]
async fn unreachable_server_fails_fast() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = IcapClient::new(&format!("icap://{addr}/avscan"), Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let err = scan(&c, b"x").await.unwrap_err();
    assert_eq!(err.code(), "icap_unreachable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn stalled_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = IcapClient::new(&format!("icap://{addr}/avscan"), Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let err = scan(&c, b"x").await.unwrap_err();
    assert_eq!(err.code(), "icap_timeout", "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn verdict_and_status_codes_round_trip_through_parts() {
    let fake = FakeIcap::start(behaviour(None, Respond::Scan)).await;
    let c = client(&fake.url);
    let (req, resp) = download();
    let (req_parts, ()) = req.into_parts();
    let (mut resp_parts, ()) = resp.into_parts();
    resp_parts.status = StatusCode::PARTIAL_CONTENT;
    let v = c.respmod(&req_parts, &resp_parts, b"ok").await.unwrap();
    assert_eq!(v.as_str(), "clean");
    assert!(fake.seen()[0]
        .head
        .contains("HTTP/1.1 206 Partial Content\r\n"));
}
