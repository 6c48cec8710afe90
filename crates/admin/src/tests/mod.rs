//! Router tests with `tower::ServiceExt::oneshot`: a real runtime (config, engine, CA, access
//! log, event store in a temp dir), no sockets.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sluice_policy::catalog::Catalog;
use sluice_policy::config::{Config, POLICY_FILE};
use sluice_policy::engine::Engine;
use sluice_proxy::log::{AccessLog, AccessRecord};
use sluice_proxy::pinning::Pinning;
use sluice_proxy::resolve::Dialer;
use sluice_proxy::{Runtime, Snapshot};
use sluice_store::{Observation, Store, SuspectRule, WriterHandle};
use sluice_tls::ca::Ca;
use sluice_tls::mint::Minter;
use sluice_tls::verify::UpstreamTls;
use tower::ServiceExt;

use crate::policy::{BuildError, PolicyBackend, PolicyUpdates};
use crate::{router, AdminState, Settings, Token, TokenSource};

mod api;
mod auth;
mod policy;
mod ui;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";
pub(crate) const HOST: &str = "127.0.0.1:9128";

/// The binary's reload path in miniature: the config text, with a policy document applied the
/// same way (`Config::apply_policy_json`), compiled into a snapshot.
pub(crate) struct TestBackend {
    toml: String,
    dir: PathBuf,
}

impl PolicyBackend for TestBackend {
    fn build(&self, document: Option<&str>) -> Result<Snapshot, BuildError> {
        let mut config = Config::from_toml(&self.toml, "test.toml", &self.dir)
            .map_err(|e| BuildError::Unavailable(format!("{e:?}")))?;
        if let Some(doc) = document {
            config
                .apply_policy_json(doc, &self.dir.join(POLICY_FILE))
                .map_err(|issues| {
                    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
                    BuildError::Invalid(lines.join("; "))
                })?;
        }
        let catalog = Catalog::builtin().unwrap();
        let engine = Engine::new(&config, &catalog);
        let dialer = Dialer::new(
            HashMap::new(),
            config.upstream.allow_private.clone(),
            Vec::new(),
            Duration::from_secs(1),
        );
        let upstream = UpstreamTls::new(&[], &[]).unwrap();
        let inspector = sluice_proxy::inspect::Inspector::build(&config).unwrap();
        Ok(Snapshot::new(
            Arc::new(config),
            Arc::new(engine),
            Arc::new(dialer),
            Arc::new(upstream),
            None,
            inspector,
        ))
    }
}

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) state: AdminState,
    _writer: WriterHandle,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with_config("")
    }

    pub(crate) fn with_config(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(TestBackend {
            toml: toml.to_owned(),
            dir: dir.path().to_path_buf(),
        });
        let snapshot = backend.build(None).unwrap();
        let ca = Arc::new(Ca::load_or_create(dir.path()).unwrap());
        let minter = Arc::new(Minter::new(ca, 64));
        let log = AccessLog::start(Some(&dir.path().join("access.log"))).unwrap();
        let store = Store::open(&dir.path().join("sluice.db")).unwrap();
        let (sink, writer) = store.writer(16).unwrap();
        let pinning = Pinning {
            store: Arc::new(store),
            sink,
            retention: Arc::new(sluice_store::Retention::keep_all()),
        };
        let rt = Runtime::new(snapshot, minter, log, Some(pinning));
        let settings = Settings {
            token: Token::new(TOKEN),
            token_source: TokenSource::Generated,
            proxy_addrs: vec!["127.0.0.1:3128".parse().unwrap()],
            admin_addr: Some(HOST.parse().unwrap()),
            audit_file: Some(dir.path().join(crate::audit::AUDIT_FILE)),
            data_dir: Some(dir.path().to_path_buf()),
            tls_hosts: vec!["admin.example".into()],
            audit_mode: 0o600,
            policy: Some(PolicyUpdates {
                file: dir.path().join(POLICY_FILE),
                backend,
                lock: Arc::default(),
            }),
        };
        let state = AdminState::new(rt, Arc::new(Catalog::builtin().unwrap()), settings);
        Self {
            dir,
            state,
            _writer: writer,
        }
    }

    pub(crate) fn router(&self) -> Router {
        router(self.state.clone())
    }

    pub(crate) fn store(&self) -> Arc<Store> {
        self.state.rt.pinning.as_ref().unwrap().store.clone()
    }

    /// Three observations of `host` with one fingerprint: a suspect.
    pub(crate) fn make_suspect(&self, host: &str) {
        let now = crate::check::unix_now();
        let obs: Vec<Observation> = (0..3)
            .map(|i| Observation {
                ts: now - 10 + i,
                host: host.into(),
                app: None,
                client: "127.0.0.1".into(),
                user: None,
                policy: "default".into(),
                signal: "closed-after-handshake".into(),
                ja4: "t13d0000h2_000000000000_000000000000".into(),
                rule: SuspectRule::default(),
                learn: None,
            })
            .collect();
        self.store().record(&obs).unwrap();
    }

    /// Emits access-log records and waits until the recent buffer has them all.
    pub(crate) fn emit(&self, records: Vec<AccessRecord>) {
        let before = self.state.rt.log.recent().len();
        let n = records.len();
        for r in records {
            self.state.rt.log.emit(r);
        }
        for _ in 0..500 {
            if self.state.rt.log.recent().len() >= before + n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("access log did not record {n} records");
    }

    pub(crate) fn audit_lines(&self) -> Vec<Value> {
        let path = self.dir.path().join(crate::audit::AUDIT_FILE);
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        send(self.router(), req).await
    }

    /// `GET path` with the bearer token.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(req(Method::GET, path).bearer().build()).await
    }
}

pub(crate) async fn send(router: Router, req: Request<Body>) -> Reply {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request builder with the admin Host header already set.
pub(crate) struct Req {
    builder: axum::http::request::Builder,
    body: Body,
}

pub(crate) fn req(method: Method, path: &str) -> Req {
    Req {
        builder: Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST),
        body: Body::empty(),
    }
}

impl Req {
    pub(crate) fn bearer(self) -> Self {
        self.header("authorization", &format!("Bearer {TOKEN}"))
    }

    /// Sets (replaces) a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        let headers = self.builder.headers_mut().unwrap();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub(crate) fn json(self, body: &str) -> Self {
        let mut r = self.header("content-type", "application/json");
        r.body = Body::from(body.to_owned());
        r
    }

    pub(crate) fn form(self, body: &str) -> Self {
        let mut r = self.header("content-type", "application/x-www-form-urlencoded");
        r.body = Body::from(body.to_owned());
        r
    }

    pub(crate) fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn build(self) -> Request<Body> {
        self.builder.body(self.body).unwrap()
    }
}

/// Logs in through the form; returns the cookie header value and the CSRF token of the page.
pub(crate) async fn login(f: &Fixture) -> (String, String) {
    let r = f
        .send(
            req(Method::POST, "/login")
                .form(&format!("token={TOKEN}"))
                .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = f
        .send(
            req(Method::GET, "/pinning")
                .header("cookie", &cookie)
                .build(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

pub(crate) fn record(
    kind: &'static str,
    host: &str,
    decision: &'static str,
    reason: &str,
) -> AccessRecord {
    AccessRecord {
        ts: sluice_proxy::log::timestamp(std::time::SystemTime::now()),
        kind,
        client: "127.0.0.1".into(),
        host: Some(host.into()),
        decision: Some(decision),
        reason: Some(reason.into()),
        ..AccessRecord::default()
    }
}
