//! The ICAP client against a real c-icap `virus_scan` service backed by ClamAV (`IcapLab`).

use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use sluice_inspect::icap::{IcapClient, Verdict};

use crate::support::IcapLab;

/// The name our lab database gives the EICAR signature; ClamAV marks signatures from
/// non-official databases `.UNOFFICIAL`.
const SIGNATURE: &str = "Eicar-Test-Signature.UNOFFICIAL";

fn download(path: &str) -> (Request<()>, Response<()>) {
    let req = Request::get(format!("https://files.example{path}"))
        .body(())
        .unwrap();
    let mut resp = Response::new(());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    (req, resp)
}

async fn scan_download(client: &IcapClient, body: &[u8]) -> Verdict {
    let (req, resp) = download("/file.bin");
    client.respmod(&req, &resp, body).await.unwrap()
}

/// Bytes that contain no signature, in a pattern ClamAV cannot mistake for anything.
fn clean_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn blocked() -> Verdict {
    Verdict::Blocked {
        signature: SIGNATURE.into(),
        status: 403,
    }
}

#[tokio::test]
async fn real_server_blocks_eicar_and_passes_clean_bodies() {
    let lab = IcapLab::start();
    let eicar = lab.eicar();
    let client = IcapClient::new(&lab.url, Duration::from_secs(30)).unwrap();

    let options = client.options().await.unwrap();
    assert!(
        options.methods.iter().any(|m| m == "RESPMOD"),
        "{options:?}"
    );
    assert!(options.methods.iter().any(|m| m == "REQMOD"), "{options:?}");
    assert!(options.allow_204, "{options:?}");
    assert!(options.preview.is_some(), "{options:?}");
    assert!(options.istag.is_some(), "{options:?}");

    // EICAR download (fits in the preview: sent with `ieof`).
    assert_eq!(scan_download(&client, &eicar).await, blocked());

    // A clean 1 MiB download: preview, 100 Continue, the rest, then 204.
    let started = Instant::now();
    assert_eq!(
        scan_download(&client, &clean_body(1024 * 1024)).await,
        Verdict::Clean
    );
    eprintln!("clean 1 MiB RESPMOD took {:?}", started.elapsed());

    // EICAR far beyond the preview is still found.
    let mut late = clean_body(256 * 1024);
    late.extend_from_slice(&eicar);
    assert_eq!(scan_download(&client, &late).await, blocked());

    // Uploads: REQMOD.
    let upload = Request::post("https://upload.example/form")
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(())
        .unwrap();
    assert_eq!(client.reqmod(&upload, &eicar).await.unwrap(), blocked());
    assert_eq!(
        client
            .reqmod(&upload, &clean_body(64 * 1024))
            .await
            .unwrap(),
        Verdict::Clean
    );
    // No body at all.
    assert_eq!(client.reqmod(&upload, b"").await.unwrap(), Verdict::Clean);

    // Kept-alive connections carry many requests, also concurrently.
    for _ in 0..20 {
        assert_eq!(scan_download(&client, b"hello").await, Verdict::Clean);
    }
    let scans = (0..8).map(|i| {
        let client = client.clone();
        let body = if i % 2 == 0 {
            eicar.clone()
        } else {
            clean_body(100_000)
        };
        tokio::spawn(async move { (i, scan_download(&client, &body).await) })
    });
    for scan in scans {
        let (i, verdict) = scan.await.unwrap();
        let want = if i % 2 == 0 {
            blocked()
        } else {
            Verdict::Clean
        };
        assert_eq!(verdict, want, "concurrent scan {i}");
    }
}

#[tokio::test]
async fn real_server_failures_have_codes() {
    let mut lab = IcapLab::start();
    let eicar = lab.eicar();
    let client = IcapClient::new(&lab.url, Duration::from_secs(30)).unwrap();
    // Two scans at once leave (most likely) two idle connections in the pool.
    let (a, b) = tokio::join!(
        scan_download(&client, &eicar),
        scan_download(&client, b"clean")
    );
    assert_eq!((a, b), (blocked(), Verdict::Clean));

    // Scanner down behind c-icap: it answers 500 (and closes that connection).
    lab.stop_clamd();
    let (req, resp) = download("/file.bin");
    let err = client.respmod(&req, &resp, &eicar).await.unwrap_err();
    assert_eq!(err.code(), "icap_server_error", "{err}");

    // ICAP server down, its pooled connections dead: unreachable, at once.
    lab.stop_icap();
    let started = Instant::now();
    let err = client.respmod(&req, &resp, &eicar).await.unwrap_err();
    assert_eq!(err.code(), "icap_unreachable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
