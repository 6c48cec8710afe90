//! The DNS client against the stub server of `sluice-test-support` (real UDP on loopback),
//! and the pure reply judgement.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::Record;
use sluice_test_support::StubDns;

use super::*;

const BUDGET: Duration = Duration::from_secs(2);

fn client(stub: &StubDns) -> DnsClient {
    DnsClient::new(vec![stub.addr()])
}

#[tokio::test]
async fn answers_and_failures_map_to_their_errors() {
    let stub = StubDns::start();
    let c = client(&stub);
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(c.lookup("ok.test", BUDGET).await, Ok(vec![v4]));
    assert_eq!(
        c.lookup("v6.test", BUDGET).await,
        Ok(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)])
    );
    assert_eq!(c.lookup("nx.test", BUDGET).await, Err(DnsError::NxDomain));
    assert_eq!(
        c.lookup("sf.test", BUDGET).await,
        Err(DnsError::ServerFailure(ResponseCode::ServFail))
    );
    assert_eq!(
        c.lookup("garbage.test", BUDGET).await,
        Err(DnsError::BadReply)
    );
    let started = Instant::now();
    let short = Duration::from_millis(300);
    assert_eq!(c.lookup("to.test", short).await, Err(DnsError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
    // One A and one AAAA query per lookup, no retries.
    for name in ["nx.test", "sf.test", "garbage.test", "to.test"] {
        assert_eq!(stub.queries(name), 2, "{name}");
    }
}

#[tokio::test]
async fn negative_and_positive_answers_are_cached_rebinding_ttl_zero_is_not() {
    let stub = StubDns::start();
    let c = client(&stub);
    for _ in 0..5 {
        assert_eq!(c.lookup("nx.test", BUDGET).await, Err(DnsError::NxDomain));
        c.lookup("ok.test", BUDGET).await.unwrap();
    }
    assert_eq!(stub.queries("nx.test"), 2);
    assert_eq!(stub.queries("ok.test"), 2);
    // SERVFAIL is not cached: every lookup asks again (still one query per type).
    for _ in 0..3 {
        c.lookup("sf.test", BUDGET).await.unwrap_err();
    }
    assert_eq!(stub.queries("sf.test"), 6);
    let first = c.lookup("rebind.test", BUDGET).await.unwrap();
    let second = c.lookup("rebind.test", BUDGET).await.unwrap();
    assert_eq!(first, vec![IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))]);
    assert_eq!(second, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
}

#[tokio::test]
async fn stray_garbage_from_the_server_is_a_bad_reply_at_the_deadline() {
    // A peer that answers every query with random bytes not carrying the query id.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((_, from)) = peer.recv_from(&mut buf) {
            let junk: Vec<u8> = (0..40).map(|_| rand::random::<u8>()).collect();
            let _ = peer.send_to(&junk, from);
        }
    });
    let c = DnsClient::new(vec![addr]);
    let result = c.lookup("x.test", Duration::from_millis(300)).await;
    assert_eq!(result, Err(DnsError::BadReply));
}

#[tokio::test]
async fn many_failing_names_at_once_cost_two_queries_each() {
    // RL-07 in small: unique NXDOMAIN names in parallel, through the in-flight bound.
    let stub = StubDns::start();
    let c = Arc::new(client(&stub));
    let lookups: Vec<_> = (0..300)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.lookup(&format!("n{i}.nx.test"), BUDGET).await })
        })
        .collect();
    for l in lookups {
        assert_eq!(l.await.unwrap(), Err(DnsError::NxDomain));
    }
    assert_eq!(stub.total_queries(), 600);
}

#[tokio::test]
async fn a_silent_first_server_leaves_time_for_the_second() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stub = StubDns::start();
    let c = DnsClient::new(vec![silent.local_addr().unwrap(), stub.addr()]);
    assert_eq!(
        c.lookup("ok.test", Duration::from_millis(600)).await,
        Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
    );
}

fn reply(code: ResponseCode, answers: Vec<Record>, soa_ttl: Option<u32>) -> Message {
    let name = Name::from_ascii("a.test.").unwrap();
    let mut msg = Message::new();
    msg.set_message_type(MessageType::Response)
        .set_response_code(code)
        .add_query(Query::query(name, RecordType::A));
    msg.add_answers(answers);
    if let Some(ttl) = soa_ttl {
        let zone = Name::from_ascii("test.").unwrap();
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, ttl);
        msg.add_name_server(Record::from_rdata(zone, 600, RData::SOA(soa)));
    }
    msg
}

#[test]
fn judge_reads_ttls_rcodes_and_mismatches() {
    let name = Name::from_ascii("a.test.").unwrap();
    let a =
        |ip: [u8; 4], ttl| Record::from_rdata(name.clone(), ttl, RData::A(A(Ipv4Addr::from(ip))));
    let ok = reply(
        ResponseCode::NoError,
        vec![a([192, 0, 2, 1], 60), a([192, 0, 2, 2], 30)],
        None,
    );
    assert_eq!(
        judge(&ok, &name, RecordType::A),
        Reply::Addresses(
            vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
            Duration::from_secs(30)
        )
    );
    // Negative TTL: min(SOA TTL, MINIMUM), floored.
    let nx = reply(ResponseCode::NXDomain, vec![], Some(120));
    assert_eq!(
        judge(&nx, &name, RecordType::A),
        Reply::Negative(DnsError::NxDomain, Duration::from_secs(120))
    );
    let nx_short = reply(ResponseCode::NXDomain, vec![], Some(1));
    assert_eq!(
        judge(&nx_short, &name, RecordType::A),
        Reply::Negative(DnsError::NxDomain, NEGATIVE_TTL_FLOOR)
    );
    let empty = reply(ResponseCode::NoError, vec![], None);
    assert_eq!(
        judge(&empty, &name, RecordType::A),
        Reply::Negative(DnsError::NoAddress, NEGATIVE_TTL_FLOOR)
    );
    let refused = reply(ResponseCode::Refused, vec![], None);
    assert_eq!(
        judge(&refused, &name, RecordType::A),
        Reply::Failure(DnsError::ServerFailure(ResponseCode::Refused))
    );
    // A reply to another question is not an answer to ours.
    let other = Name::from_ascii("b.test.").unwrap();
    assert_eq!(
        judge(&ok, &other, RecordType::A),
        Reply::Failure(DnsError::BadReply)
    );
    let mut truncated = ok.clone();
    truncated.set_truncated(true);
    assert_eq!(judge(&truncated, &name, RecordType::A), Reply::Truncated);
}

#[test]
fn combine_prefers_addresses_then_the_most_telling_error() {
    let ip: Arc<[IpAddr]> = Arc::from(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    assert_eq!(
        combine(Err(DnsError::NoAddress), Ok(ip.clone())),
        Ok(ip.to_vec())
    );
    assert_eq!(
        combine(Err(DnsError::Timeout), Err(DnsError::NxDomain)),
        Err(DnsError::NxDomain)
    );
    assert_eq!(
        combine(Ok(Arc::from(vec![])), Err(DnsError::NoAddress)),
        Err(DnsError::NoAddress)
    );
    assert_eq!(
        combine(Err(DnsError::NoAddress), Err(DnsError::Timeout)),
        Err(DnsError::Timeout)
    );
}
