//! One ICAP request and its answer on one connection: OPTIONS (RFC 3507 §4.10), or REQMOD /
//! RESPMOD with preview (§4.5) and the `100 Continue` that asks for the rest.

use std::time::Duration;

use super::message::{self, Answer, RequestHead, ResponseHead};
use super::wire::{self, Conn, Fault, ResponseHead as IcapHead, Section};
use super::{Inner, ServerOptions, Verdict};

const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// Bytes of an answer's body read beyond the size of the body sent (block pages are small;
/// a copy of the message is the same size).
const ANSWER_SLACK: usize = 1024 * 1024;

/// What to ask.
pub(super) enum Request<'b> {
    /// The service's options.
    Options,
    /// REQMOD or RESPMOD of one message.
    Modify(Modify<'b>),
}

/// A REQMOD or RESPMOD request, its encapsulated heads already serialised.
pub(super) struct Modify<'b> {
    method: &'static str,
    heads: Vec<u8>,
    encapsulated: String,
    body: &'b [u8],
    /// RESPMOD: the status of the response sent.
    sent_status: Option<u16>,
}

/// What came back.
pub(super) enum Outcome {
    Options(ServerOptions),
    Verdict(Verdict),
}

// === impl Request ===

impl<'b> Request<'b> {
    /// RESPMOD (§4.9): request head, response head, response body.
    pub(super) fn respmod(req: &RequestHead<'_>, resp: &ResponseHead<'_>, body: &'b [u8]) -> Self {
        let req_head = req.encode();
        let res_head = resp.encode();
        let encapsulated = message::encapsulated(
            &[("req-hdr", req_head.len()), ("res-hdr", res_head.len())],
            "res-body",
            body.len(),
        );
        Self::Modify(Modify {
            method: "RESPMOD",
            heads: [req_head, res_head].concat(),
            encapsulated,
            body,
            sent_status: Some(resp.status.as_u16()),
        })
    }

    /// REQMOD (§4.8): request head, request body.
    pub(super) fn reqmod(req: &RequestHead<'_>, body: &'b [u8]) -> Self {
        let heads = req.encode();
        let encapsulated =
            message::encapsulated(&[("req-hdr", heads.len())], "req-body", body.len());
        Self::Modify(Modify {
            method: "REQMOD",
            heads,
            encapsulated,
            body,
            sent_status: None,
        })
    }
}

// === impl Outcome ===

impl Outcome {
    pub(super) fn into_verdict(self) -> Result<Verdict, Fault> {
        match self {
            Self::Verdict(v) => Ok(v),
            Self::Options(_) => Err(Fault::Protocol("OPTIONS answer to a scan".into())),
        }
    }

    pub(super) fn into_options(self) -> Result<ServerOptions, Fault> {
        match self {
            Self::Options(o) => Ok(o),
            Self::Verdict(_) => Err(Fault::Protocol("scan answer to OPTIONS".into())),
        }
    }
}

/// Sends `request` on `conn` and reads the answer; returns it and whether the connection can
/// carry another request.
pub(super) async fn run(
    conn: &mut Conn,
    request: &Request<'_>,
    options: &ServerOptions,
    inner: &Inner,
) -> Result<(Outcome, bool), Fault> {
    match request {
        Request::Options => ask_options(conn, inner).await,
        Request::Modify(m) => modify(conn, m, options, inner).await,
    }
}

async fn ask_options(conn: &mut Conn, inner: &Inner) -> Result<(Outcome, bool), Fault> {
    let head = format!(
        "OPTIONS {} ICAP/1.0\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nEncapsulated: null-body=0\r\n\r\n",
        inner.uri, inner.authority
    );
    conn.write(&[head.as_bytes()]).await?;
    let answer = read_final_head(conn).await?;
    if answer.status != 200 {
        return Err(status_fault(&answer));
    }
    // §4.10.2: an OPTIONS answer may carry an `opt-body`; read past it.
    if let Some(value) = answer.headers.get("Encapsulated") {
        let sections = wire::parse_encapsulated(value)?;
        if let Some(&(Section::OptBody, offset)) = sections.last() {
            conn.read_exact(offset).await?;
            conn.read_chunked(wire::MAX_HEAD).await?;
        }
    }
    let keep_alive = keep_alive(&answer);
    Ok((Outcome::Options(parse_options(&answer)), keep_alive))
}

async fn modify(
    conn: &mut Conn,
    m: &Modify<'_>,
    options: &ServerOptions,
    inner: &Inner,
) -> Result<(Outcome, bool), Fault> {
    let body = m.body;
    // §4.5: a preview only makes sense for a body.
    let preview = options.preview.filter(|_| !body.is_empty());
    let mut head = format!(
        "{} {} ICAP/1.0\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAllow: 204\r\n",
        m.method, inner.uri, inner.authority
    );
    if let Some(n) = preview {
        head.push_str(&format!("Preview: {n}\r\n"));
    }
    head.push_str(&format!("Encapsulated: {}\r\n\r\n", m.encapsulated));
    let head = [head.as_bytes(), &m.heads].concat();

    let answer = match preview {
        _ if body.is_empty() => {
            conn.write(&[&head]).await?;
            read_final_head(conn).await?
        }
        // The whole body fits in the preview: `ieof` tells the server there is no more, so it
        // answers at once and never with 100 Continue.
        Some(n) if body.len() <= n => {
            write_chunk(conn, &head, body, true).await?;
            read_final_head(conn).await?
        }
        Some(n) => {
            write_chunk(conn, &head, &body[..n], false).await?;
            let first = read_head(conn).await?;
            if first.status == 100 {
                write_chunk(conn, &[], &body[n..], false).await?;
                read_final_head(conn).await?
            } else {
                first
            }
        }
        None => {
            write_chunk(conn, &head, body, false).await?;
            read_final_head(conn).await?
        }
    };
    let keep_alive = keep_alive(&answer);
    let verdict = match answer.status {
        204 => Verdict::Clean,
        200 => {
            let read = read_answer(conn, answer, body.len() + ANSWER_SLACK).await?;
            match m.sent_status {
                Some(sent) => message::respmod_verdict(&read, sent, body),
                None => message::reqmod_verdict(&read, body),
            }
        }
        _ => return Err(status_fault(&answer)),
    };
    Ok((Outcome::Verdict(verdict), keep_alive))
}

/// Writes `prefix`, then `data` as one chunk (if any), then the last chunk.
async fn write_chunk(conn: &mut Conn, prefix: &[u8], data: &[u8], ieof: bool) -> Result<(), Fault> {
    if data.is_empty() {
        return conn.write(&[prefix, wire::last_chunk(ieof)]).await;
    }
    let size = wire::chunk_size_line(data.len());
    conn.write(&[prefix, &size, data, b"\r\n", wire::last_chunk(ieof)])
        .await
}

/// The encapsulated heads and body of a 200 answer (§4.4.1: the heads run up to the offset of
/// the body entry; the body is chunked).
async fn read_answer(conn: &mut Conn, answer: IcapHead, limit: usize) -> Result<Answer, Fault> {
    let value = answer
        .headers
        .get("Encapsulated")
        .ok_or_else(|| Fault::Protocol("200 answer without Encapsulated".into()))?;
    let sections = wire::parse_encapsulated(value)?;
    let Some(&(last, heads_len)) = sections.last().filter(|(s, _)| s.is_body()) else {
        return Err(Fault::Protocol(format!(
            "Encapsulated does not end in a body entry: {value:?}"
        )));
    };
    let heads = conn.read_exact(heads_len).await?;
    let (http_status, has_request) = message::split_heads(&sections[..sections.len() - 1], &heads)?;
    let has_body = matches!(last, Section::ReqBody | Section::ResBody);
    let body = if has_body {
        conn.read_chunked(limit).await?
    } else {
        None
    };
    Ok(Answer {
        headers: answer.headers,
        http_status,
        has_request,
        body,
        has_body,
    })
}

async fn read_head(conn: &mut Conn) -> Result<IcapHead, Fault> {
    let head = conn.read_head().await?;
    wire::parse_response_head(&head)
}

/// A head that must not be `100 Continue` (none was asked for).
async fn read_final_head(conn: &mut Conn) -> Result<IcapHead, Fault> {
    let head = read_head(conn).await?;
    if head.status == 100 {
        return Err(Fault::Protocol("unexpected 100 Continue".into()));
    }
    Ok(head)
}

fn status_fault(answer: &IcapHead) -> Fault {
    Fault::Status {
        status: answer.status,
        reason: answer.reason.clone(),
    }
}

/// ICAP connections persist unless a side says `Connection: close` (§4.1, as HTTP/1.1).
fn keep_alive(answer: &IcapHead) -> bool {
    !answer.headers.has_token("Connection", "close")
}

/// The fields of an OPTIONS answer (§4.10.2). Unparseable numbers count as absent.
fn parse_options(answer: &IcapHead) -> ServerOptions {
    let h = &answer.headers;
    let number = |name: &str| h.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    ServerOptions {
        methods: h
            .get("Methods")
            .map(|v| {
                v.split([',', ' ', '\n'])
                    .filter(|m| !m.is_empty())
                    .map(str::to_ascii_uppercase)
                    .collect()
            })
            .unwrap_or_default(),
        preview: number("Preview").and_then(|n| usize::try_from(n).ok()),
        allow_204: h.has_token("Allow", "204"),
        istag: h.get("ISTag").map(|v| v.trim_matches('"').to_string()),
        max_connections: number("Max-Connections").and_then(|n| usize::try_from(n).ok()),
        ttl: number("Options-TTL").map(Duration::from_secs),
        service: h.get("Service").map(str::to_string),
    }
}
