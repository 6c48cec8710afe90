//! A small stub resolver for `upstream.dns_servers`: A and AAAA over UDP (TCP when a reply is
//! truncated) to the configured servers only, with a bounded cache that honours record TTLs
//! and caches NXDOMAIN / empty answers (security matrix FT-03, RL-07).
//!
//! Wire format comes from `hickory-proto`; the exchange is ours rather than
//! `hickory-resolver`'s because the gateway needs to tell a server that answers garbage
//! (`dns_bad_reply`) from one that does not answer (`dns_timeout`), and hickory-resolver drops
//! unparsable datagrams and waits, so both would read as a timeout. The query budget is
//! explicit: per lookup at most one A and one AAAA query per server, no retries, so a failing
//! name cannot cause a retry storm; lookups that reach the network share a semaphore.
//!
//! Not here: the hosts file and the destination check (see `super`), search domains, DNSSEC.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use quick_cache::sync::Cache;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Lookups allowed on the network at once; more wait (within their deadline).
pub const MAX_IN_FLIGHT: usize = 256;
/// Cached answers (positive and negative, per name and record type).
pub const CACHE_ENTRIES: usize = 10_000;
/// Shortest time a negative answer is cached, whatever the SOA says (RFC 2308 §5 allows
/// caching; a floor keeps 5,000 requests for one failing name from reaching the server).
pub const NEGATIVE_TTL_FLOOR: Duration = Duration::from_secs(5);
/// Longest time anything is cached.
pub const TTL_CEILING: Duration = Duration::from_secs(3600);
/// Largest UDP reply read (EDNS is not offered, so 512 is what servers send; room to spare).
const UDP_BUFFER: usize = 4096;

/// Why a DNS lookup failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN).
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    /// The server failed or refused (SERVFAIL, REFUSED, ...).
    #[error("the DNS server answered {0}")]
    ServerFailure(ResponseCode),
    /// Replies could not be parsed, or did not match the query.
    #[error("the DNS server sent a reply that could not be parsed")]
    BadReply,
    /// The name exists but has no A or AAAA record.
    #[error("the name has no A or AAAA record")]
    NoAddress,
    /// No reply within the deadline.
    #[error("no reply from the DNS server in time")]
    Timeout,
    /// A socket error talking to the server.
    #[error("talking to the DNS server failed: {0}")]
    Io(String),
}

/// Resolves names with the configured servers.
#[derive(Debug)]
pub struct DnsClient {
    servers: Vec<SocketAddr>,
    cache: Cache<(Name, RecordType), Cached>,
    in_flight: Semaphore,
}

#[derive(Clone, Debug)]
struct Cached {
    answer: Result<Arc<[IpAddr]>, DnsError>,
    until: Instant,
}

/// What one reply says about the asked name and type.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Addresses(Vec<IpAddr>, Duration),
    Negative(DnsError, Duration),
    Failure(DnsError),
    Truncated,
}

// === impl DnsClient ===

impl DnsClient {
    /// A client asking `servers`, in order.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self {
            servers,
            cache: Cache::new(CACHE_ENTRIES),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// A and AAAA addresses of `name` (IPv4 first). The caller bounds the total time; `budget`
    /// is split between the servers so a silent first server leaves time for the next.
    pub async fn lookup(&self, name: &str, budget: Duration) -> Result<Vec<IpAddr>, DnsError> {
        let mut name = Name::from_ascii(name).map_err(|_| DnsError::NoAddress)?;
        // Absolute: no search domains, and replies echo the question in this form.
        name.set_fqdn(true);
        let (v4, v6) = tokio::join!(
            self.query(&name, RecordType::A, budget),
            self.query(&name, RecordType::AAAA, budget)
        );
        combine(v4, v6)
    }

    async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
        budget: Duration,
    ) -> Result<Arc<[IpAddr]>, DnsError> {
        let key = (name.clone(), rtype);
        if let Some(hit) = self.cache.get(&key).filter(|c| c.until > Instant::now()) {
            return hit.answer;
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| DnsError::Io("resolver closed".into()))?;
        let per_server = budget / u32::try_from(self.servers.len().max(1)).unwrap_or(1);
        let mut last = DnsError::Timeout;
        for server in &self.servers {
            let (answer, ttl) = match self.ask(*server, name, rtype, per_server).await {
                Reply::Addresses(addrs, ttl) => (Ok(Arc::from(addrs)), ttl),
                Reply::Negative(e, ttl) => (Err(e), ttl),
                // SERVFAIL, garbage, silence: another server may do better; nothing cached.
                Reply::Failure(e) => {
                    last = e;
                    continue;
                }
                Reply::Truncated => {
                    last = DnsError::BadReply;
                    continue;
                }
            };
            if !ttl.is_zero() {
                let until = Instant::now() + ttl.min(TTL_CEILING);
                self.cache.insert(
                    key,
                    Cached {
                        answer: answer.clone(),
                        until,
                    },
                );
            }
            return answer;
        }
        Err(last)
    }

    /// One exchange with one server: UDP, then TCP if the UDP reply was truncated.
    async fn ask(&self, server: SocketAddr, name: &Name, rtype: RecordType, t: Duration) -> Reply {
        let deadline = Instant::now() + t;
        let id: u16 = rand::random();
        let Ok(query) = query_message(id, name, rtype) else {
            return Reply::Failure(DnsError::BadReply);
        };
        let reply = match udp_exchange(server, &query, id, deadline).await {
            Ok(msg) => judge(&msg, name, rtype),
            Err(e) => return Reply::Failure(e),
        };
        if reply != Reply::Truncated {
            return reply;
        }
        match tokio::time::timeout_at(deadline, tcp_exchange(server, &query)).await {
            Ok(Ok(bytes)) => match Message::from_vec(&bytes) {
                Ok(msg) if msg.id() == id => judge(&msg, name, rtype),
                _ => Reply::Failure(DnsError::BadReply),
            },
            Ok(Err(e)) => Reply::Failure(DnsError::Io(e.to_string())),
            Err(_) => Reply::Failure(DnsError::Timeout),
        }
    }
}

/// The answer of a lookup from its A and AAAA halves: any address wins; otherwise the most
/// telling failure (a name that does not exist says more than a silent server).
fn combine(
    v4: Result<Arc<[IpAddr]>, DnsError>,
    v6: Result<Arc<[IpAddr]>, DnsError>,
) -> Result<Vec<IpAddr>, DnsError> {
    let mut addrs = Vec::new();
    for a in [&v4, &v6].into_iter().flatten() {
        addrs.extend_from_slice(a);
    }
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    let rank = |r: &Result<Arc<[IpAddr]>, DnsError>| match r {
        Err(DnsError::NxDomain) => 0,
        Err(DnsError::ServerFailure(_)) => 1,
        Err(DnsError::BadReply) => 2,
        Err(DnsError::Timeout) => 3,
        Err(DnsError::Io(_)) => 4,
        Err(DnsError::NoAddress) | Ok(_) => 5,
    };
    let worst = if rank(&v4) <= rank(&v6) { v4 } else { v6 };
    match worst {
        Err(e) => Err(e),
        Ok(_) => Err(DnsError::NoAddress),
    }
}

fn query_message(id: u16, name: &Name, rtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), rtype));
    msg.to_vec().map_err(|_| DnsError::BadReply)
}

/// Sends the query from a fresh socket (random source port, RFC 5452 §9.2) connected to the
/// server, so the kernel drops datagrams from anyone else. A datagram carrying our id that
/// does not parse is a bad reply at once; other stray datagrams are ignored (they may be
/// spoofed) but, if nothing valid comes before the deadline, make it a bad reply rather than
/// a timeout.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    deadline: Instant,
) -> Result<Message, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(e.to_string());
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut stray = false;
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            // ICMP port unreachable surfaces as ConnectionRefused on a connected socket.
            Ok(Err(e)) => return Err(io(e)),
            Err(_) if stray => return Err(DnsError::BadReply),
            Err(_) => return Err(DnsError::Timeout),
        };
        let datagram = &buf[..n];
        match Message::from_vec(datagram) {
            Ok(msg) if msg.id() == id && msg.message_type() == MessageType::Response => {
                return Ok(msg)
            }
            Ok(_) => stray = true,
            Err(_) if datagram.get(..2) == Some(&id.to_be_bytes()[..]) => {
                return Err(DnsError::BadReply)
            }
            Err(_) => stray = true,
        }
    }
}

/// DNS over TCP: two-byte length prefix each way (RFC 1035 §4.2.2).
async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// What a reply to (`name`, `rtype`) means. Pure, so every case is unit-tested.
fn judge(msg: &Message, name: &Name, rtype: RecordType) -> Reply {
    if msg
        .queries()
        .iter()
        .any(|q| q.name() != name || q.query_type() != rtype)
    {
        return Reply::Failure(DnsError::BadReply);
    }
    if msg.truncated() {
        return Reply::Truncated;
    }
    match msg.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Reply::Negative(DnsError::NxDomain, negative_ttl(msg)),
        code => return Reply::Failure(DnsError::ServerFailure(code)),
    }
    // Records of the asked type anywhere in the answer section: a CNAME chain puts the
    // target's records there too (RFC 1034 §3.6.2).
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for record in msg.answers() {
        let ip = match (record.data(), rtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        ttl = ttl.min(record.ttl());
        addrs.push(ip);
    }
    if addrs.is_empty() {
        Reply::Negative(DnsError::NoAddress, negative_ttl(msg))
    } else {
        Reply::Addresses(addrs, Duration::from_secs(u64::from(ttl)))
    }
}

/// RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM); without an SOA, and
/// never less than, the floor.
fn negative_ttl(msg: &Message) -> Duration {
    let soa = msg.name_servers().iter().find_map(|r| match r.data() {
        RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
        _ => None,
    });
    soa.map_or(NEGATIVE_TTL_FLOOR, |s| {
        Duration::from_secs(u64::from(s)).max(NEGATIVE_TTL_FLOOR)
    })
}

#[cfg(test)]
mod tests;
