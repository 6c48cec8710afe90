//! A real browser: Debian's headless Chromium driven over WebDriver (chromedriver +
//! fantoccini). It logs in to the admin UI with the token, sees a suspect that a real pinning
//! client produced, clicks Approve, and the next pinned connection goes through; and it browses
//! through the proxy with the sluice CA trusted in its NSS database.
//!
//! These tests never skip: without /usr/bin/chromium and /usr/bin/chromedriver they fail and
//! say so (`scripts/test` installs them). Screenshots of every page go to
//! `target/test-artifacts/`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::admin::{bundle, eventually, pinned_curl, produce_suspect, token};
use crate::{World, LOG_WAIT};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a loopback port, with a private HOME (so Chromium's NSS database,
/// `$HOME/.pki/nssdb`, is ours) and user-data dir. Dropping it ends the browser processes it
/// started (found by our unique user-data dir) and chromedriver itself.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    home: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Browser {
    pub(crate) fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (scripts/test does)"
            );
        }
        let home = tempfile::Builder::new()
            .prefix("sluice-browser-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(home.path().join(".pki/nssdb")).unwrap();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Self {
            driver,
            port,
            home,
            rt,
        }
    }

    /// Trusts a PEM CA certificate in Chromium's NSS database (`certutil`, libnss3-tools).
    pub(crate) fn trust(&self, nickname: &str, pem: &Path) {
        let db = format!("sql:{}", self.home.path().join(".pki/nssdb").display());
        if !self.home.path().join(".pki/nssdb/cert9.db").exists() {
            run(Command::new("certutil").args(["-d", &db, "-N", "--empty-password"]));
        }
        run(Command::new("certutil")
            .args(["-d", &db, "-A", "-t", "C,,", "-n", nickname, "-i"])
            .arg(pem));
    }

    /// A WebDriver session; `proxy` is `http://127.0.0.1:PORT` or `None` for direct.
    fn session(&self, proxy: Option<&str>) -> Client {
        self.session_with(proxy, &[])
    }

    /// [`Self::session`] with more Chromium flags (e.g. `--host-resolver-rules=...`).
    pub(crate) fn session_with(&self, proxy: Option<&str>, extra: &[String]) -> Client {
        let user_data = self.home.path().join("profile");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", user_data.display()),
        ];
        args.extend(extra.iter().cloned());
        match proxy {
            Some(p) => args.push(format!("--proxy-server={p}")),
            None => args.push("--no-proxy-server".into()),
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{}", self.port);
        self.rt.block_on(async {
            let client =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .expect("a WebDriver session with headless Chromium");
            client
                .update_timeouts(TimeoutConfiguration::new(
                    Some(Duration::from_secs(30)),
                    Some(Duration::from_secs(30)),
                    Some(Duration::ZERO),
                ))
                .await
                .unwrap();
            client
        })
    }

    pub(crate) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Saves a screenshot as `target/test-artifacts/<name>.png`.
    pub(crate) fn screenshot(&self, c: &Client, name: &str) {
        let png = self.block(c.screenshot()).unwrap();
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub(crate) fn text(&self, c: &Client, css: &str) -> String {
        self.block(async { c.find(Locator::Css(css)).await?.text().await })
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub(crate) fn goto(&self, c: &Client, url: &str) {
        self.block(c.goto(url))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    pub(crate) fn close(&self, c: Client) {
        let _ = self.block(c.close());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium processes we started carry our unique profile path on their command line.
        let marker = self.home.path().to_string_lossy().into_owned();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&marker) {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    l.local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (libnss3-tools installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-artifacts")
}

#[test]
fn browser_logs_in_reviews_a_suspect_and_approves_it() {
    let w = World::new(&["pinned.test"], "");
    let bundle = bundle(&w);
    produce_suspect(&w, &bundle);
    let b = Browser::start();
    let c = b.session(None);
    let admin = w.gw.admin_url();

    // Not logged in: the UI answers 401 with the login form.
    b.goto(&c, &format!("{admin}/pinning"));
    assert!(b.text(&c, "h1").contains("Log in"));
    b.goto(&c, &format!("{admin}/login"));
    b.screenshot(&c, "admin-login");
    b.block(async {
        c.find(Locator::Id("token"))
            .await?
            .send_keys(&token(&w.gw))
            .await?;
        c.find(Locator::Id("login")).await?.click().await
    })
    .unwrap();
    b.block(c.wait().for_element(Locator::Id("chart"))).unwrap();
    assert_eq!(b.text(&c, "#suspects b"), "1");
    b.screenshot(&c, "admin-dashboard");

    b.goto(&c, &format!("{admin}/pinning"));
    let row = b.text(&c, "tr.suspect[data-host=\"pinned.test\"]");
    assert!(row.contains("closed-after-handshake"), "{row}");
    assert!(row.contains("suspect"), "{row}");
    b.screenshot(&c, "admin-pinning");
    b.block(async {
        c.find(Locator::Css(
            "form.approve[data-host=\"pinned.test\"] input[name=\"note\"]",
        ))
        .await?
        .send_keys("approved from the browser test")
        .await?;
        c.find(Locator::Css(
            "form.approve[data-host=\"pinned.test\"] button",
        ))
        .await?
        .click()
        .await
    })
    .unwrap();
    b.block(c.wait().for_element(Locator::Id("flash"))).unwrap();
    assert!(b.text(&c, "#flash").contains("Approved pinned.test"));
    assert!(b
        .text(&c, "#approved")
        .contains("approved from the browser test"));
    b.screenshot(&c, "admin-pinning-approved");

    b.goto(&c, &format!("{admin}/tester?host=zoom.us"));
    assert!(b.text(&c, "#verdict").contains("bypass"));
    b.screenshot(&c, "admin-tester");
    b.goto(&c, &format!("{admin}/catalog"));
    assert!(b.text(&c, "#catalog").contains("Zoom"));
    b.screenshot(&c, "admin-catalog");
    b.goto(&c, &format!("{admin}/ca"));
    assert!(b.text(&c, "main").contains("certutil"));
    b.screenshot(&c, "admin-ca");
    b.close(c);

    // The approval reached the running gateway: the pinning client now gets through.
    let ok = eventually(Duration::from_secs(10), || {
        pinned_curl(&w, &bundle).http_code == 200
    });
    assert!(ok, "the pinned curl must succeed after Approve");
    let rec = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["reason"] == "approved",
        LOG_WAIT,
    );
    assert_eq!(rec["decision"], "bypass");
    let audit = std::fs::read_to_string(w.gw.data_dir().join("admin-audit.jsonl")).unwrap();
    assert!(audit.contains("\"actor\":\"admin-ui\""), "{audit}");
}

#[test]
fn chromium_through_the_proxy_loads_decrypted_and_bypassed_pages_without_observations() {
    let w = World::new(
        &["decrypt.test", "bypass.test"],
        "[[policy]]\nname = \"default\"\nbypass = { domains = [\"bypass.test\"] }\n",
    );
    let b = Browser::start();
    // The sluice CA for decrypted sites; the test root for the origin's own certificate,
    // which a bypassed connection shows.
    b.trust("sluice", w.gw.ca_pem_path());
    b.trust("test-root", w.root());
    let c = b.session(Some(&w.gw.proxy_url()));

    b.goto(&c, &w.url("decrypt.test", "/"));
    assert_eq!(b.text(&c, "body"), "hello from decrypt.test");
    b.screenshot(&c, "proxy-decrypted");
    b.goto(&c, &w.url("bypass.test", "/"));
    assert_eq!(b.text(&c, "body"), "hello from decrypt.test");
    b.screenshot(&c, "proxy-bypassed");

    let decrypted = w.gw.wait_for_log(
        |r| r["kind"] == "request" && r["host"] == "decrypt.test",
        LOG_WAIT,
    );
    assert_eq!(decrypted["decision"], "decrypt", "{decrypted}");
    // Idle connections close when the browser quits; wait for their records too.
    b.close(c);
    let bypassed = w.gw.wait_for_log(
        |r| r["kind"] == "connect" && r["sni"] == "bypass.test",
        LOG_WAIT,
    );
    assert_eq!(bypassed["decision"], "bypass", "{bypassed}");
    assert_eq!(bypassed["reason"], "policy");
    // Let the quiet window (2 s) of every decrypted connection pass, then look.
    std::thread::sleep(Duration::from_secs(3));
    let db = sluice_store::Store::open(&w.gw.data_dir().join("sluice.db")).unwrap();
    let observations = db.observations(None, 100).unwrap();
    assert!(
        observations.is_empty(),
        "a browser that accepts the CA must never be a pinning observation: {observations:?}\n{}",
        w.gw.stdout_lines().join("\n")
    );
}
