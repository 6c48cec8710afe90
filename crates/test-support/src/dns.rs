//! A stub DNS server for tests (security matrix recipe R-FT03): UDP on 127.0.0.1 port 0, one
//! fixed behaviour per name, and a count of the queries each name received so tests can assert
//! "no retry storm" and "the negative cache held".
//!
//! | name | A | AAAA |
//! |---|---|---|
//! | `nx.test` (and any unknown name) | NXDOMAIN, SOA minimum [`NEGATIVE_TTL`] | same |
//! | `sf.test` | SERVFAIL | SERVFAIL |
//! | `to.test` | no reply at all | no reply |
//! | `garbage.test` | the query id then random bytes (never a parsable message) | same |
//! | `v6.test` | no record (NOERROR, empty) | `::1` |
//! | `ok.test` | the configured address (127.0.0.1 by default) | no record |
//! | `rebind.test` | 127.0.1.1, then 127.0.0.1, alternating, TTL 0 | no record |
//!
//! Extra names can map to an address with [`StubDnsBuilder::name`]. Messages are built with
//! hickory-proto; the server is a plain thread with a blocking socket (stopped on drop), so it
//! works under `#[test]` and `#[tokio::test]` alike. Not a real DNS server: no TCP, no EDNS.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The SOA minimum (and TTL) on negative answers: how long a resolver may cache them.
pub const NEGATIVE_TTL: u32 = 30;
/// The TTL of positive answers other than `rebind.test`'s.
pub const POSITIVE_TTL: u32 = 5;

/// A running stub server.
pub struct StubDns {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Configures a [`StubDns`].
#[derive(Debug, Default)]
pub struct StubDnsBuilder {
    names: HashMap<String, IpAddr>,
}

#[derive(Default)]
struct State {
    /// Queries per lower-case name without the trailing dot, all types together.
    counts: Mutex<HashMap<String, usize>>,
    /// Queries per (name, type).
    typed: Mutex<HashMap<(String, RecordType), usize>>,
    names: HashMap<String, IpAddr>,
    rebind_flip: AtomicBool,
}

/// What the stub does with one query.
enum Answer {
    Code(ResponseCode),
    Records(Vec<RData>, u32),
    Silence,
    Garbage,
}

// === impl StubDnsBuilder ===

impl StubDnsBuilder {
    /// Answer A (or AAAA) queries for `name` with `ip`, TTL [`POSITIVE_TTL`]; overrides the
    /// table above (`ok.test` included). Keep `ip` in 127.0.0.0/8 or ::1.
    pub fn name(mut self, name: &str, ip: IpAddr) -> Self {
        self.names.insert(name.to_ascii_lowercase(), ip);
        self
    }

    /// Binds 127.0.0.1:0 and starts answering.
    pub fn start(mut self) -> StubDns {
        self.names
            .entry("ok.test".into())
            .or_insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("stub DNS: bind 127.0.0.1:0");
        // The read timeout only lets the thread notice `stop`; it is not a synchronisation.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("stub DNS: set read timeout");
        let addr = socket.local_addr().expect("stub DNS: local addr");
        let state = Arc::new(State {
            names: self.names,
            ..State::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stub-dns".into())
                .spawn(move || serve(&socket, &state, &stop))
                .expect("stub DNS: spawn thread")
        };
        StubDns {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }
}

// === impl StubDns ===

impl StubDns {
    /// A builder for extra names.
    pub fn builder() -> StubDnsBuilder {
        StubDnsBuilder::default()
    }

    /// The default table, started.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The bound address (127.0.0.1, an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for `upstream.dns_servers`: `"127.0.0.1:PORT"`.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// Queries received for `name` (any type), so far.
    pub fn queries(&self, name: &str) -> usize {
        let counts = self.state.counts.lock().expect("stub DNS counts lock");
        counts.get(&normalize(name)).copied().unwrap_or(0)
    }

    /// Queries received for `name` of type `rtype` (`"A"`, `"AAAA"`), so far.
    pub fn queries_of(&self, name: &str, rtype: &str) -> usize {
        let rtype: RecordType = rtype.parse().expect("a record type such as \"A\"");
        let typed = self.state.typed.lock().expect("stub DNS counts lock");
        typed.get(&(normalize(name), rtype)).copied().unwrap_or(0)
    }

    /// Queries received for all names.
    pub fn total_queries(&self) -> usize {
        let counts = self.state.counts.lock().expect("stub DNS counts lock");
        counts.values().sum()
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// === the server ===

fn serve(socket: &UdpSocket, state: &State, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = respond(state, &buf[..n]) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

/// The reply bytes for one datagram, or None to stay silent.
fn respond(state: &State, datagram: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(datagram).ok()?;
    let question = query.queries().first()?.clone();
    let name = normalize(&question.name().to_ascii());
    let rtype = question.query_type();
    *state
        .counts
        .lock()
        .expect("stub DNS counts lock")
        .entry(name.clone())
        .or_default() += 1;
    *state
        .typed
        .lock()
        .expect("stub DNS counts lock")
        .entry((name.clone(), rtype))
        .or_default() += 1;
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    let soa = || {
        let zone = Name::from_ascii("test.").expect("zone name");
        let soa = SOA::new(
            zone.clone(),
            Name::from_ascii("hostmaster.test.").expect("rname"),
            1,
            3600,
            600,
            86_400,
            NEGATIVE_TTL,
        );
        Record::from_rdata(zone, NEGATIVE_TTL, RData::SOA(soa))
    };
    match answer(state, &name, rtype) {
        Answer::Silence => return None,
        Answer::Garbage => {
            // Keep the id so a resolver knows this is the reply to its query, then bytes that
            // can never parse: shorter than the 12-byte header.
            let mut bytes = query.id().to_be_bytes().to_vec();
            bytes.extend((0..7).map(|_| rand::random::<u8>()));
            return Some(bytes);
        }
        Answer::Code(code) => {
            reply.set_response_code(code);
            if code == ResponseCode::NXDomain {
                reply.add_name_server(soa());
            }
        }
        Answer::Records(data, ttl) => {
            if data.is_empty() {
                reply.add_name_server(soa());
            }
            for d in data {
                reply.add_answer(Record::from_rdata(question.name().clone(), ttl, d));
            }
        }
    }
    reply.to_vec().ok()
}

fn answer(state: &State, name: &str, rtype: RecordType) -> Answer {
    let records = |ip: Option<IpAddr>, ttl| {
        let data = match (ip, rtype) {
            (Some(IpAddr::V4(v4)), RecordType::A) => vec![RData::A(A(v4))],
            (Some(IpAddr::V6(v6)), RecordType::AAAA) => vec![RData::AAAA(AAAA(v6))],
            _ => vec![],
        };
        Answer::Records(data, ttl)
    };
    if let Some(ip) = state.names.get(name) {
        return records(Some(*ip), POSITIVE_TTL);
    }
    match name {
        "sf.test" => Answer::Code(ResponseCode::ServFail),
        "to.test" => Answer::Silence,
        "garbage.test" => Answer::Garbage,
        "v6.test" => records(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), POSITIVE_TTL),
        "rebind.test" => {
            let ip = if rtype != RecordType::A {
                None
            } else if state.rebind_flip.fetch_xor(true, Ordering::SeqCst) {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)))
            };
            records(ip, 0)
        }
        _ => Answer::Code(ResponseCode::NXDomain),
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
