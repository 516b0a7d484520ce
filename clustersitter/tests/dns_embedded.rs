//! The embedded DNS server over real UDP and TCP, queried the way dig
//! would (through hickory-net, as cerebro_tests::dns does).

use cerebro_tests::dns::{query, query_tcp};
use cerebro_types::dns::{RecordSet, RecordType};
use clustersitter::config::dns::EmbeddedSettings;
use clustersitter::dns::embedded::EmbeddedDns;
use clustersitter::dns::{Change, DnsProvider};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::Name;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

const OWNER: &str = "heritage=cerebro,cerebro/owner=test";

fn settings() -> EmbeddedSettings {
    EmbeddedSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        configured: true,
    }
}

fn set(name: &str, rtype: RecordType, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.into(),
        rtype,
        ttl: 60,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn values(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

async fn start(zone: Option<&str>, file: PathBuf) -> Arc<EmbeddedDns> {
    EmbeddedDns::start(&settings(), zone.map(str::to_string), file)
        .await
        .expect("the embedded server starts")
}

#[tokio::test]
async fn answers_over_udp_and_tcp_from_what_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let dns = start(Some("cerebro.test"), dir.path().join("records.json")).await;
    let server = dns.listen_address();
    assert_ne!(server.port(), 0);
    let name = "0.local-a.ticker.cerebro.test";
    dns.apply(&[
        Change::Upsert(set(name, RecordType::Txt, &[OWNER])),
        Change::Upsert(set(name, RecordType::A, &["127.0.0.11"])),
        Change::Upsert(set(name, RecordType::Aaaa, &["::1"])),
    ])
    .await
    .unwrap();

    for answer in [
        query(server, name, RecordType::A).await.unwrap(),
        query_tcp(server, name, RecordType::A).await.unwrap(),
    ] {
        assert_eq!(answer.rcode, "NOERROR");
        assert!(answer.authoritative);
        assert_eq!(answer.values, values(&["127.0.0.11"]));
    }
    let aaaa = query(server, name, RecordType::Aaaa).await.unwrap();
    assert_eq!(aaaa.values, values(&["::1"]));
    let txt = query_tcp(server, name, RecordType::Txt).await.unwrap();
    assert_eq!(txt.values, values(&[OWNER]));

    let nx = query(server, "9.local-a.ticker.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(nx.rcode, "NXDOMAIN");
    assert!(nx.authoritative && nx.soa_in_authority, "{nx:?}");

    let refused = query(server, "example.com", RecordType::A).await.unwrap();
    assert_eq!(refused.rcode, "REFUSED");

    // Deleted: gone at once.
    dns.apply(&[Change::Delete(set(name, RecordType::A, &["127.0.0.11"]))])
        .await
        .unwrap();
    let nodata = query(server, name, RecordType::A).await.unwrap();
    assert_eq!((nodata.rcode.as_str(), nodata.values.len()), ("NOERROR", 0));
    assert_eq!(
        dns.list("ticker.cerebro.test").await.unwrap(),
        vec![
            set(name, RecordType::Aaaa, &["::1"]),
            set(name, RecordType::Txt, &[OWNER])
        ]
    );
}

#[tokio::test]
async fn a_restarted_server_answers_at_once_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state").join("dns-embedded.json");
    let name = "local-a.ticker.cerebro.test";
    let first = start(Some("cerebro.test"), file.clone()).await;
    first
        .apply(&[Change::Upsert(set(
            name,
            RecordType::A,
            &["127.0.0.2", "127.0.0.3"],
        ))])
        .await
        .unwrap();
    let old = first.listen_address();
    drop(first);
    // Dropped: it no longer answers on TCP.
    assert!(query_tcp(old, name, RecordType::A).await.is_err());

    let second = start(Some("cerebro.test"), file).await;
    let answer = query(second.listen_address(), name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.values, values(&["127.0.0.2", "127.0.0.3"]));
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let dns = start(None, dir.path().join("records.json")).await;
    let many: Vec<String> = (1..=200)
        .map(|i| format!("10.1.{}.{}", i / 200, i % 200))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    dns.apply(&[Change::Upsert(set(
        "big.cerebro.test",
        RecordType::A,
        &many,
    ))])
    .await
    .unwrap();
    let udp = query(dns.listen_address(), "big.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert!(udp.truncated, "{udp:?}");
    assert!(udp.values.is_empty());
    let tcp = query_tcp(dns.listen_address(), "big.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert!(!tcp.truncated);
    assert_eq!(tcp.values.len(), 200);
    // Without a zone, names it does not hold are NXDOMAIN, never REFUSED.
    let nx = query(dns.listen_address(), "example.com", RecordType::A)
        .await
        .unwrap();
    assert_eq!(nx.rcode, "NXDOMAIN");
}

#[tokio::test]
async fn one_tcp_connection_carries_several_queries_and_garbage_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let dns = start(Some("cerebro.test"), dir.path().join("records.json")).await;
    dns.apply(&[Change::Upsert(set(
        "a.cerebro.test",
        RecordType::A,
        &["10.0.0.1"],
    ))])
    .await
    .unwrap();
    let server = dns.listen_address();
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(server).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut answers = Vec::new();
        for name in ["a.cerebro.test.", "b.cerebro.test."] {
            let mut request = Message::query();
            request.add_query(Query::query(
                Name::from_ascii(name).unwrap(),
                hickory_proto::rr::RecordType::A,
            ));
            let bytes = request.to_vec().unwrap();
            stream
                .write_all(&(bytes.len() as u16).to_be_bytes())
                .unwrap();
            stream.write_all(&bytes).unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut answer).unwrap();
            answers.push(Message::from_vec(&answer).unwrap());
        }
        answers
    })
    .await
    .unwrap();
    assert_eq!(answers[0].answers.len(), 1);
    assert_eq!(
        answers[1].metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );

    // Garbage over UDP gets FORMERR or nothing; the server goes on.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&[0xff; 3], server).unwrap();
    socket.send_to(&[0x12; 40], server).unwrap();
    let answer = query(server, "a.cerebro.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.values, values(&["10.0.0.1"]));
}

/// Clients holding many idle TCP connections (more than the server keeps)
/// never lock a new one out: the oldest are closed to make room.
#[tokio::test]
async fn idle_tcp_connections_do_not_lock_out_a_new_query() {
    let dir = tempfile::tempdir().unwrap();
    let dns = start(Some("cerebro.test"), dir.path().join("records.json")).await;
    dns.apply(&[Change::Upsert(set(
        "a.cerebro.test",
        RecordType::A,
        &["10.0.0.1"],
    ))])
    .await
    .unwrap();
    let server = dns.listen_address();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(server).await.unwrap());
    }
    let answer = query_tcp(server, "a.cerebro.test", RecordType::A)
        .await
        .expect("a TCP query is answered beside 200 idle connections");
    assert_eq!(answer.values, values(&["10.0.0.1"]));
    drop(idle);
}
