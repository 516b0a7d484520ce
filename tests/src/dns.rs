//! DNS queries for the tests, through hickory-net: what a name server
//! (BIND from [`crate::bind`], the clustersitter's embedded server)
//! answers for one name and type, over UDP or TCP, as plain values the
//! tests compare with `cerebro_types::dns::RecordSet::values`.

use cerebro_types::dns::RecordType;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::NetError;
use hickory_proto::op::{DnsResponse, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one query may take before [`query`] gives up.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The transport a query goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram each way (RFC 1035 §4.2.1); a large answer comes back
    /// truncated (TC set).
    Udp,
    /// A TCP connection with 2-byte length framing (RFC 1035 §4.2.2).
    Tcp,
}

/// What a server answered for one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The RCODE's mnemonic: `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub rcode: String,
    /// The answer section's records of the asked type, in presentation
    /// form as `RecordSet::values` has them: addresses as `IpAddr` prints
    /// them, TXT as its character-strings concatenated, unquoted.
    pub values: BTreeSet<String>,
    /// The AA bit.
    pub authoritative: bool,
    /// The TC bit (the answer did not fit in a UDP datagram).
    pub truncated: bool,
    /// Whether the authority section holds an SOA (as a negative answer
    /// from an authoritative server does, RFC 2308 §3).
    pub soa_in_authority: bool,
}

/// Asks `server` over UDP for the `rtype` records at `name` (absolute,
/// with or without the trailing dot).
///
/// # Errors
/// A message when the name is not a DNS name, the server does not answer
/// within [`QUERY_TIMEOUT`], or the answer cannot be read.
pub async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<Answer, String> {
    query_over(Transport::Udp, server, name, rtype).await
}

/// [`query`] over TCP.
///
/// # Errors
/// As [`query`].
pub async fn query_tcp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Answer, String> {
    query_over(Transport::Tcp, server, name, rtype).await
}

/// [`query`] over the given transport.
///
/// # Errors
/// As [`query`].
pub async fn query_over(
    transport: Transport,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Answer, String> {
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("{name}: not a DNS name: {e}"))?;
    let qtype = hickory_type(rtype);
    let provider = TokioRuntimeProvider::default();
    let response = match transport {
        Transport::Udp => {
            let stream = UdpClientStream::builder(server, provider)
                .with_timeout(Some(QUERY_TIMEOUT))
                .build();
            let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            let background = tokio::spawn(background);
            let response = client.query(fqdn, DNSClass::IN, qtype).await;
            background.abort();
            response
        }
        Transport::Tcp => {
            let (connect, sender) =
                TcpClientStream::new(server, None, Some(QUERY_TIMEOUT), provider);
            let stream = connect
                .await
                .map_err(|e| format!("connect to {server} over TCP: {e}"))?;
            let (mut client, background) =
                Client::<TokioRuntimeProvider>::with_timeout(stream, sender, QUERY_TIMEOUT);
            let background = tokio::spawn(background);
            let response = client.query(fqdn, DNSClass::IN, qtype).await;
            background.abort();
            response
        }
    };
    let response = response.map_err(|e: NetError| {
        format!("query {name} {rtype} at {server} over {transport:?}: {e}")
    })?;
    Ok(answer_of(&response, qtype))
}

/// Polls [`query`] until `accept` takes its answer (a server applies an
/// update before it answers the UPDATE, but a test may wait for a
/// daemon's reconciler): for [`crate::wait_for_async`] users who want
/// one call.
pub async fn wait_for_answer(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    what: &str,
    accept: impl Fn(&Answer) -> bool,
) -> Answer {
    let accept = &accept;
    crate::wait_for_async(what, move || async move {
        match query(server, name, rtype).await {
            Ok(answer) if accept(&answer) => Some(answer),
            _ => None,
        }
    })
    .await
}

fn hickory_type(rtype: RecordType) -> hickory_proto::rr::RecordType {
    match rtype {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
        RecordType::Txt => hickory_proto::rr::RecordType::TXT,
    }
}

fn answer_of(response: &DnsResponse, qtype: hickory_proto::rr::RecordType) -> Answer {
    let values = response
        .answers
        .iter()
        .filter(|r| r.record_type() == qtype)
        .filter_map(|r| presentation(&r.data))
        .collect();
    Answer {
        rcode: rcode_name(response.response_code),
        values,
        authoritative: response.authoritative,
        truncated: response.truncation,
        soa_in_authority: response
            .authorities
            .iter()
            .any(|r| r.record_type() == hickory_proto::rr::RecordType::SOA),
    }
}

/// An A, AAAA or TXT record's data as `RecordSet::values` holds it.
pub fn presentation(data: &RData) -> Option<String> {
    match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect(),
        ),
        _ => None,
    }
}

/// An RCODE's mnemonic as dig prints it (RFC 6895 §2.3).
pub fn rcode_name(code: ResponseCode) -> String {
    let name = match u16::from(code) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        other => return format!("RCODE{other}"),
    };
    name.to_string()
}

/// TXT data in presentation form (`"a" "b"`, with `\"` and `\\`
/// escapes), as dig prints it and Route 53 holds it, unquoted and joined
/// into one string (how `RecordSet` keeps TXT values).
pub fn unquote_txt(data: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => out.extend(chars.next()),
            c if quoted => out.push(c),
            _ => {}
        }
    }
    out
}
