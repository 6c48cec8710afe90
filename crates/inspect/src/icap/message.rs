//! What goes into an ICAP request (RFC 3507 §4.8, §4.9) and what an answer means.
//!
//! The encapsulated HTTP heads are serialised as HTTP/1.1 whatever version the client spoke
//! (an h2 request has no textual head of its own); a `Host` is added from the URI when the
//! request has none, as an h2 request carries it in `:authority`.

use http::{HeaderMap, Method, StatusCode, Uri};

use super::wire::{self, Fault, Headers, Section};
use super::Verdict;

/// The HTTP request an ICAP request carries: a borrowed view of `http::request::Parts` or an
/// `http::Request`.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target: absolute (`https://host/path`) or origin-form (`/path`).
    pub uri: &'a Uri,
    /// Request header fields.
    pub headers: &'a HeaderMap,
}

/// The HTTP response an ICAP RESPMOD request carries: a borrowed view of
/// `http::response::Parts` or an `http::Response`.
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead<'a> {
    /// Response status.
    pub status: StatusCode,
    /// Response header fields.
    pub headers: &'a HeaderMap,
}

/// The parts of a 200 answer (RFC 3507 §4.3.3) that the verdict needs.
pub(super) struct Answer {
    pub(super) headers: Headers,
    /// Status of the encapsulated HTTP response, if one came back.
    pub(super) http_status: Option<u16>,
    /// Whether an encapsulated HTTP request came back (REQMOD: the request, modified or not).
    pub(super) has_request: bool,
    /// The encapsulated body, `None` if absent or larger than the read limit.
    pub(super) body: Option<Vec<u8>>,
    pub(super) has_body: bool,
}

// === impl RequestHead ===

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(p: &'a http::request::Parts) -> Self {
        Self {
            method: &p.method,
            uri: &p.uri,
            headers: &p.headers,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestHead<'a> {
    fn from(r: &'a http::Request<B>) -> Self {
        Self {
            method: r.method(),
            uri: r.uri(),
            headers: r.headers(),
        }
    }
}

impl RequestHead<'_> {
    /// `GET /path HTTP/1.1` (or the absolute URI when the request had one) and its headers.
    pub(super) fn encode(&self) -> Vec<u8> {
        let target = if self.uri.scheme().is_some() && self.uri.authority().is_some() {
            self.uri.to_string()
        } else {
            self.uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), ToString::to_string)
        };
        let mut out = format!("{} {target} HTTP/1.1\r\n", self.method).into_bytes();
        if !self.headers.contains_key(http::header::HOST) {
            if let Some(authority) = self.uri.authority() {
                out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
            }
        }
        encode_headers(&mut out, self.headers);
        out
    }
}

// === impl ResponseHead ===

impl<'a> From<&'a http::response::Parts> for ResponseHead<'a> {
    fn from(p: &'a http::response::Parts) -> Self {
        Self {
            status: p.status,
            headers: &p.headers,
        }
    }
}

impl<'a, B> From<&'a http::Response<B>> for ResponseHead<'a> {
    fn from(r: &'a http::Response<B>) -> Self {
        Self {
            status: r.status(),
            headers: r.headers(),
        }
    }
}

impl ResponseHead<'_> {
    /// `HTTP/1.1 200 OK` and its headers.
    pub(super) fn encode(&self) -> Vec<u8> {
        let reason = self.status.canonical_reason().unwrap_or("");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status.as_u16()).into_bytes();
        encode_headers(&mut out, self.headers);
        out
    }
}

fn encode_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Encapsulated` value for heads of these lengths and a body of `body_len` bytes, whose
/// entry is `body_name` (`req-body` or `res-body`), or `null-body` when empty (§4.4.1).
pub(super) fn encapsulated(heads: &[(&str, usize)], body_name: &str, body_len: usize) -> String {
    let mut offset = 0;
    let mut parts = Vec::with_capacity(heads.len() + 1);
    for (name, len) in heads {
        parts.push(format!("{name}={offset}"));
        offset += len;
    }
    let body = if body_len == 0 {
        "null-body"
    } else {
        body_name
    };
    parts.push(format!("{body}={offset}"));
    parts.join(", ")
}

/// Splits the encapsulated part of a 200 answer: `heads` holds every byte before the body
/// entry's offset.
pub(super) fn split_heads(
    sections: &[(Section, usize)],
    heads: &[u8],
) -> Result<(Option<u16>, bool), Fault> {
    let mut http_status = None;
    let mut has_request = false;
    for (i, (section, start)) in sections.iter().enumerate() {
        let end = sections.get(i + 1).map_or(heads.len(), |(_, o)| *o);
        match section {
            Section::ResHdr => http_status = Some(wire::http_status(&heads[*start..end])?),
            Section::ReqHdr => has_request = true,
            _ => {}
        }
    }
    Ok((http_status, has_request))
}

/// The threat a virus-scanning server named: c-icap's `X-Infection-Found: Type=0;
/// Resolution=2; Threat=NAME;` (draft-stecher-icap-subid), else the second line of an
/// `X-Violations-Found` record (count, then file, threat, id, disposition per violation),
/// else `X-Virus-ID` / `X-Virus-Name` as other scanners send.
pub(super) fn threat_name(headers: &Headers) -> Option<String> {
    let from_infection = headers.get("X-Infection-Found").and_then(|v| {
        v.split(';').find_map(|part| {
            let (key, value) = part.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("Threat")
                .then(|| value.trim())
        })
    });
    let from_violations = || {
        headers
            .get("X-Violations-Found")
            .and_then(|v| v.lines().nth(2))
    };
    let plain = || {
        headers
            .get("X-Virus-ID")
            .or_else(|| headers.get("X-Virus-Name"))
    };
    from_infection
        .or_else(from_violations)
        .or_else(plain)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// What a 200 answer to RESPMOD means. A named threat is a block whatever the status; an
/// unchanged copy (a server that does not use 204) is clean; an error status without a name is
/// still a block; anything else was modified.
pub(super) fn respmod_verdict(answer: &Answer, sent_status: u16, sent_body: &[u8]) -> Verdict {
    let status = answer.http_status.unwrap_or(sent_status);
    if let Some(signature) = threat_name(&answer.headers) {
        return Verdict::Blocked { signature, status };
    }
    if answer.http_status.is_none_or(|s| s == sent_status) && unchanged(answer, sent_body) {
        return Verdict::Clean;
    }
    if status >= 400 {
        return Verdict::Blocked {
            signature: String::new(),
            status,
        };
    }
    Verdict::Modified
}

/// What a 200 answer to REQMOD means: an HTTP response instead of the request is a refusal
/// (§4.8.3: the server answered on the origin's behalf); a request back unchanged is clean.
pub(super) fn reqmod_verdict(answer: &Answer, sent_body: &[u8]) -> Verdict {
    let signature = threat_name(&answer.headers);
    if let Some(status) = answer.http_status {
        return Verdict::Blocked {
            signature: signature.unwrap_or_default(),
            status,
        };
    }
    if let Some(signature) = signature {
        return Verdict::Blocked {
            signature,
            status: StatusCode::FORBIDDEN.as_u16(),
        };
    }
    if answer.has_request && unchanged(answer, sent_body) {
        Verdict::Clean
    } else {
        Verdict::Modified
    }
}

fn unchanged(answer: &Answer, sent_body: &[u8]) -> bool {
    if answer.has_body {
        answer.body.as_deref() == Some(sent_body)
    } else {
        sent_body.is_empty()
    }
}
