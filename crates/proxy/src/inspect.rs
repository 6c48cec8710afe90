//! Inspection of what is decrypted (and of plain HTTP): URL rules per request, and for bodies
//! the file-type rules (content first, then name), SHA-256 blocklists and an ICAP malware scan.
//! A body that a rule might judge is held (hold-and-scan, up to `inspect.max_scan_size`) before
//! the client gets its first byte; a body nobody would judge streams through untouched, so
//! inspection costs nothing where it does not apply. Bypassed traffic is never inspected.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Response, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use sluice_inspect::filetype::{detect, extension, FileTypeRule, SNIFF_LEN};
use sluice_inspect::hashes::{Digest, HashList};
use sluice_inspect::icap::{IcapClient, RequestHead, ResponseHead, Verdict};
use sluice_inspect::urls::UrlRules;
use sluice_policy::config::{Config, FailMode, InspectConfig};
use sluice_policy::name::Host;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The checks of one policy.
struct PolicyChecks {
    urls: UrlRules<String>,
    file_types: Vec<(FileTypeRule, String)>,
    hashes: HashList,
}

/// Compiled inspection of one configuration snapshot.
pub struct Inspector {
    policies: HashMap<String, PolicyChecks>,
    icap: Option<IcapClient>,
    cfg: InspectConfig,
    /// Memory held for scanning across all connections, in [`BUDGET_UNIT`]s: concurrent
    /// downloads wait for room instead of growing the gateway without bound.
    budget: Arc<Semaphore>,
}

/// Granularity of the hold budget.
const BUDGET_UNIT: usize = 64 * 1024;
/// Bytes all held bodies together may occupy (256 MiB).
const BUDGET_BYTES: usize = 256 << 20;

/// Why a message was stopped.
#[derive(Debug, Clone)]
pub struct Stop {
    /// Status for the client.
    pub status: u16,
    /// Reason code (`blocked:url`, `blocked:file_type`, `blocked:hash`, `blocked:malware`,
    /// `blocked:oversize`, `blocked:scan_failed`).
    pub reason: &'static str,
    /// What the block page says.
    pub detail: String,
    /// The `inspection` log value.
    pub inspection: String,
}

/// Body of a decrypted or forwarded message: relayed, held (scanned), or resumed after a
/// partial read.
pub type InnerBody = Either<Incoming, Either<Full<Bytes>, Resumed>>;

/// What inspection needs of a request after it has been sent on: its method, target and head.
pub type Seen = (Method, Uri, HeaderMap);

/// A body after inspection: held and scanned (whole), or passed through.
pub enum Scanned {
    /// Held in memory and judged clean.
    Held(Bytes),
    /// Not held: streamed (`prefix` already read, then the rest).
    Streamed(Resumed),
}

impl Scanned {
    /// As a message body.
    pub fn into_body(self) -> InnerBody {
        match self {
            Self::Held(b) => Either::Right(Either::Left(Full::new(b))),
            Self::Streamed(r) => Either::Right(Either::Right(r)),
        }
    }
}

/// A body whose first bytes were already read: those, then the rest of the stream.
pub struct Resumed {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + extra);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

impl Inspector {
    /// Compiles the checks of every policy; every unusable rule is reported.
    pub fn build(config: &Config) -> Result<Self, String> {
        let mut errors = Vec::new();
        let mut policies = HashMap::new();
        for p in &config.policies {
            let b = &p.block;
            let rules = b
                .urls
                .iter()
                .map(|e| (e.text.clone(), format!("{} ({})", e.text, e.origin)))
                .collect();
            let urls = UrlRules::build(rules).unwrap_or_else(|errs| {
                errors.extend(
                    errs.into_iter()
                        .map(|(i, m)| format!("{}: block.urls: {m}", b.urls[i].origin)),
                );
                UrlRules::build(Vec::new()).unwrap_or_else(|_| unreachable!("no rules, no errors"))
            });
            let mut file_types = Vec::new();
            for e in &b.file_types {
                match FileTypeRule::parse(&e.value) {
                    Ok(rule) => file_types.push((rule, e.text.clone())),
                    Err(err) => errors.push(format!("{}: block.file_types: {err}", e.origin)),
                }
            }
            let paths: Vec<_> = b.hashes.iter().map(|e| e.value.clone()).collect();
            let hashes = HashList::load(&paths).unwrap_or_else(|err| {
                errors.push(format!("policy `{}`: block.hashes: {err}", p.name));
                HashList::default()
            });
            policies.insert(
                p.name.clone(),
                PolicyChecks {
                    urls,
                    file_types,
                    hashes,
                },
            );
        }
        let icap = match &config.inspect.icap {
            None => None,
            Some(url) => match IcapClient::new(url, config.inspect.icap_timeout) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(format!("inspect.icap: {e}"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let units = BUDGET_BYTES / BUDGET_UNIT;
        let budget = Arc::new(Semaphore::new(units));
        Ok(Self {
            policies,
            icap,
            cfg: config.inspect.clone(),
            budget,
        })
    }

    /// The URL rule blocking this request, if any.
    pub fn url_block(&self, policy: &str, host: &Host, uri: &Uri) -> Option<Stop> {
        let checks = self.policies.get(policy)?;
        let domain = host.as_domain()?;
        let rule = checks.urls.find(domain, uri.path())?;
        Some(Stop {
            status: 403,
            reason: "blocked:url",
            detail: format!("This address is blocked by the URL rule {rule}."),
            inspection: format!("blocked:url {rule}"),
        })
    }

    /// Whether bodies under this policy need holding (some rule could judge them).
    pub fn wants_bodies(&self, policy: &str) -> bool {
        self.icap.is_some()
            || self
                .policies
                .get(policy)
                .is_some_and(|c| !c.file_types.is_empty() || !c.hashes.is_empty())
    }

    /// Holds and judges a body (a download when `response` is set, else an upload).
    pub async fn body(
        &self,
        policy: &str,
        request: (&Method, &Uri, &HeaderMap),
        response: Option<(http::StatusCode, &HeaderMap)>,
        body: Incoming,
    ) -> Result<(Scanned, String), Stop> {
        let headers = response.map_or(request.2, |r| r.1);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.cfg.max_scan_size as u64) {
            return self.oversize(Resumed {
                prefix: None,
                rest: body,
            });
        }
        let (held, rest) = match collect(body, self.cfg.max_scan_size, &self.budget).await {
            Ok(Collected::Whole(b)) => (b, None),
            Ok(Collected::Partial(prefix, rest)) => (prefix, Some(rest)),
            Err(CollectError::Budget) => {
                return Err(stop(
                    503,
                    "blocked:scan_failed",
                    "The gateway is busy scanning other files; try again.",
                    "error:scan_budget".into(),
                ))
            }
            Err(CollectError::Read(e)) => {
                let note = format!("error:read {e}");
                return Err(stop(
                    502,
                    "blocked:scan_failed",
                    "The body could not be read.",
                    note,
                ));
            }
        };
        if let Some(rest) = rest {
            return self.oversize(Resumed {
                prefix: Some(held.bytes),
                rest,
            });
        }
        let note = self.judge(policy, request, response, &held.bytes).await?;
        let held = held.bytes;
        Ok((Scanned::Held(held), note.unwrap_or_else(|| "clean".into())))
    }

    /// The request's upload, held and judged when a rule could apply (`seen` is set only
    /// then), else passed through. `verdict` receives the inspection log value.
    pub async fn upload(
        &self,
        policy: &str,
        seen: Option<&Seen>,
        body: Incoming,
        verdict: &mut Option<String>,
    ) -> Result<InnerBody, Stop> {
        let Some((method, uri, headers)) =
            seen.filter(|(m, _, h)| crate::intercept::has_body(m, h))
        else {
            return Ok(Either::Left(body));
        };
        let (scanned, note) = self
            .body(policy, (method, uri, headers), None, body)
            .await?;
        *verdict = Some(note);
        Ok(scanned.into_body())
    }

    /// The response's download, held and judged when a rule could apply, else passed through.
    pub async fn download(
        &self,
        policy: &str,
        seen: Option<Seen>,
        resp: Response<Incoming>,
        verdict: &mut Option<String>,
    ) -> Result<Response<InnerBody>, Stop> {
        let judged = seen
            .filter(|(m, _, _)| m != Method::HEAD && crate::intercept::response_has_body(&resp));
        let Some((method, uri, headers)) = judged else {
            return Ok(resp.map(Either::Left));
        };
        let (mut parts, body) = resp.into_parts();
        let (scanned, note) = self
            .body(
                policy,
                (&method, &uri, &headers),
                Some((parts.status, &parts.headers)),
                body,
            )
            .await?;
        *verdict = Some(note);
        if let Scanned::Held(b) = &scanned {
            // The held body goes out with its exact length.
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        Ok(Response::from_parts(parts, scanned.into_body()))
    }

    fn oversize(&self, body: Resumed) -> Result<(Scanned, String), Stop> {
        match self.cfg.oversize {
            FailMode::Open => Ok((Scanned::Streamed(body), "skipped:oversize".into())),
            FailMode::Closed => Err(stop(
                403,
                "blocked:oversize",
                "This file is larger than the gateway can scan.",
                "blocked:oversize".into(),
            )),
        }
    }

    async fn judge(
        &self,
        policy: &str,
        (method, uri, req_headers): (&Method, &Uri, &HeaderMap),
        response: Option<(http::StatusCode, &HeaderMap)>,
        body: &[u8],
    ) -> Result<Option<String>, Stop> {
        if let Some(checks) = self.policies.get(policy) {
            let headers = response.map_or(req_headers, |r| r.1);
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let detected = detect(
                &body[..body.len().min(SNIFF_LEN)],
                extension(uri.path()),
                content_type,
            );
            if let Some((_, text)) = checks
                .file_types
                .iter()
                .find(|(rule, _)| rule.matches(&detected))
            {
                let what = detected
                    .by_content
                    .or(detected.by_name)
                    .map_or("blocked", |t| t.name());
                return Err(stop(
                    403,
                    "blocked:file_type",
                    &format!("Files of type `{what}` are blocked (rule `{text}`)."),
                    format!("blocked:file_type {text}"),
                ));
            }
            if !checks.hashes.is_empty() {
                let digest = Digest::of(body);
                if let Some(source) = checks.hashes.find(&digest) {
                    return Err(stop(
                        403,
                        "blocked:hash",
                        "This file is on a blocklist.",
                        format!("blocked:hash {source}"),
                    ));
                }
            }
        }
        let Some(icap) = &self.icap else {
            return Ok(None);
        };
        let req = RequestHead {
            method,
            uri,
            headers: req_headers,
        };
        let verdict = match response {
            Some((status, headers)) => {
                icap.respmod(req, ResponseHead { status, headers }, body)
                    .await
            }
            None => icap.reqmod(req, body).await,
        };
        match verdict {
            Ok(Verdict::Clean) => Ok(None),
            // An antivirus service that changes a message has found something in it (c-icap
            // outside simple mode cuts an infected body short): deliver nothing.
            Ok(Verdict::Modified) => Err(stop(403, "blocked:malware", "The virus scanner changed this content.", "blocked:malware modified-by-scanner".into())),
            Ok(Verdict::Blocked { signature, .. }) => {
                let name = if signature.is_empty() { "malware".to_string() } else { signature };
                Err(stop(403, "blocked:malware", &format!("The virus scanner found {name}."), format!("blocked:malware {name}")))
            }
            Err(e) if self.cfg.fail == FailMode::Closed => Err(stop(
                403,
                "blocked:scan_failed",
                "This file could not be scanned for malware, so it was blocked (inspect.fail = \"closed\").",
                format!("error:{}", e.code()),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "ICAP scan failed; delivering (inspect.fail = \"open\")");
                Ok(Some(format!("error:{}", e.code())))
            }
        }
    }
}

fn stop(status: u16, reason: &'static str, detail: &str, inspection: String) -> Stop {
    Stop {
        status,
        reason,
        detail: detail.to_string(),
        inspection,
    }
}

/// A held body and its share of the hold budget (returned when dropped).
struct Held {
    bytes: Bytes,
    _permits: Vec<OwnedSemaphorePermit>,
}

enum Collected {
    Whole(Held),
    Partial(Held, Incoming),
}

enum CollectError {
    Read(hyper::Error),
    Budget,
}

/// How long a body may wait for room in the hold budget.
const BUDGET_WAIT: Duration = Duration::from_secs(30);

/// Reads a body up to `limit` bytes, taking budget as it grows; past `limit`, returns what was
/// read and the rest unread.
async fn collect(
    mut body: Incoming,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<Collected, CollectError> {
    let mut buf = BytesMut::new();
    let mut permits = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(CollectError::Read)?.into_data() {
            buf.extend_from_slice(&data);
            while permits.len() * BUDGET_UNIT < buf.len() {
                let permit =
                    tokio::time::timeout(BUDGET_WAIT, budget.clone().acquire_owned()).await;
                match permit {
                    Ok(Ok(p)) => permits.push(p),
                    _ => return Err(CollectError::Budget),
                }
            }
            if buf.len() > limit {
                return Ok(Collected::Partial(
                    Held {
                        bytes: buf.freeze(),
                        _permits: permits,
                    },
                    body,
                ));
            }
        }
    }
    Ok(Collected::Whole(Held {
        bytes: buf.freeze(),
        _permits: permits,
    }))
}
