//! A scripted ICAP server on 127.0.0.1 port 0 for the client's unit tests: answers OPTIONS,
//! reads previews and asks for the rest with `100 Continue`, and records what it saw. The
//! real-server tests (c-icap + ClamAV) are in `tests/it/icap.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the fake answers scans.
#[derive(Clone, Copy, Debug)]
pub(super) enum Respond {
    /// 204, or a 403 block page with `X-Infection-Found` when the body holds `EICAR`
    /// (decided on the preview when it is there already).
    Scan,
    /// 200 with the message exactly as received.
    Echo,
    /// 200 with a different body.
    Rewrite,
    /// This ICAP status and nothing else.
    Status(u16),
    /// Bytes that are not ICAP.
    Garbage,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Behaviour {
    pub(super) preview: Option<usize>,
    pub(super) respond: Respond,
    /// Close the connection after each answer, without saying `Connection: close`.
    pub(super) close_after: bool,
    /// Read the second request of each connection, then close it without an answer (a
    /// keep-alive timeout racing the client's next request).
    pub(super) drop_second: bool,
}

/// One request as the fake saw it.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    pub(super) method: String,
    pub(super) head: String,
    pub(super) preview: Option<usize>,
    pub(super) ieof: bool,
    pub(super) continued: bool,
    pub(super) body: Vec<u8>,
}

pub(super) struct FakeIcap {
    pub(super) url: String,
    pub(super) seen: Arc<Mutex<Vec<Seen>>>,
    pub(super) accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIcap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIcap {
    pub(super) async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (seen.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour, s.clone()));
            }
        });
        Self {
            url: format!("icap://{addr}/avscan"),
            seen,
            accepted,
            task,
        }
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(super) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(stream: TcpStream, b: Behaviour, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut io = BufReader::new(stream);
    let mut count = 0;
    while let Some(head) = read_until(&mut io, b"\r\n\r\n").await {
        count += 1;
        if b.drop_second && count == 2 {
            return;
        }
        let head = String::from_utf8(head).unwrap();
        let method = head.split(' ').next().unwrap().to_string();
        if method == "OPTIONS" {
            let preview = b
                .preview
                .map(|n| format!("Preview: {n}\r\n"))
                .unwrap_or_default();
            let answer = format!(
                "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nService: fake\r\nISTag: \"fake-1\"\r\n{preview}Allow: 204\r\nMax-Connections: 4\r\nOptions-TTL: 60\r\nEncapsulated: null-body=0\r\n\r\n"
            );
            io.write_all(answer.as_bytes()).await.unwrap();
        } else {
            let Some(req) = read_request(&mut io, &head, b.respond).await else {
                return;
            };
            let answer = answer(&req, &head, b.respond);
            seen.lock().unwrap().push(req);
            if io.write_all(&answer).await.is_err() {
                return;
            }
        }
        if b.close_after {
            return;
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads the encapsulated heads and body, handling a preview as c-icap does.
async fn read_request(io: &mut BufReader<TcpStream>, head: &str, respond: Respond) -> Option<Seen> {
    let encapsulated = header(head, "Encapsulated").unwrap();
    let (last, offset) = encapsulated.rsplit(", ").next()?.split_once('=')?;
    let mut heads = vec![0; offset.parse().unwrap()];
    io.read_exact(&mut heads).await.ok()?;
    let mut seen = Seen {
        method: head.split(' ').next()?.to_string(),
        head: format!("{head}{}", String::from_utf8_lossy(&heads)),
        preview: header(head, "Preview").map(|v| v.parse().unwrap()),
        ..Seen::default()
    };
    if last == "null-body" {
        return Some(seen);
    }
    seen.ieof = read_chunks(io, &mut seen.body).await?;
    if seen.preview.is_some() && !seen.ieof {
        let decided = matches!(respond, Respond::Scan) && contains(&seen.body, b"EICAR");
        if !decided {
            io.write_all(b"ICAP/1.0 100 Continue\r\n\r\n").await.ok()?;
            seen.continued = true;
            read_chunks(io, &mut seen.body).await?;
        }
    }
    Some(seen)
}

/// Reads chunks up to the last one; returns whether it carried `ieof`.
async fn read_chunks(io: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Option<bool> {
    loop {
        let line = String::from_utf8(read_until(io, b"\r\n").await?).ok()?;
        let (size, ext) = line
            .trim_end()
            .split_once(';')
            .unwrap_or((line.trim_end(), ""));
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            read_until(io, b"\r\n").await?;
            return Some(ext.trim() == "ieof");
        }
        let mut data = vec![0; size + 2];
        io.read_exact(&mut data).await.ok()?;
        body.extend_from_slice(&data[..size]);
    }
}

fn answer(req: &Seen, head: &str, respond: Respond) -> Vec<u8> {
    match respond {
        Respond::Scan if contains(&req.body, b"EICAR") => {
            let page = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\n";
            let mut out = format!(
                "ICAP/1.0 200 OK\r\nISTag: \"fake-1\"\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Fake.EICAR;\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n",
                page.len()
            )
            .into_bytes();
            out.extend_from_slice(page);
            out.extend_from_slice(b"7\r\nblocked\r\n0\r\n\r\n");
            out
        }
        Respond::Scan => b"ICAP/1.0 204 No Content\r\nISTag: \"fake-1\"\r\n\r\n".to_vec(),
        Respond::Echo | Respond::Rewrite => {
            let encapsulated = header(head, "Encapsulated").unwrap();
            let heads = &req.head[head.len()..];
            let body: &[u8] = if matches!(respond, Respond::Echo) {
                &req.body
            } else {
                b"rewritten"
            };
            let mut out = format!(
                "ICAP/1.0 200 OK\r\nISTag: \"fake-1\"\r\nEncapsulated: {encapsulated}\r\n\r\n{heads}"
            )
            .into_bytes();
            if !body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n");
            }
            if !encapsulated.contains("null-body") {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            out
        }
        Respond::Status(code) => {
            format!("ICAP/1.0 {code} Something\r\nEncapsulated: null-body=0\r\n\r\n").into_bytes()
        }
        Respond::Garbage => b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
    }
}

async fn read_until(io: &mut BufReader<TcpStream>, end: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(end) {
        if io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        out.push(byte[0]);
    }
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
