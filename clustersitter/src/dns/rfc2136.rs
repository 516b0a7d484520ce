//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), for `[dns] kind =
//! "rfc2136"`: BIND, Knot, PowerDNS and any other primary that takes them.
//!
//! Every [`apply`](DnsProvider::apply) is ONE UPDATE message (RFC 2136
//! §2.5; several in order only past 60 kB): for an upsert, "delete the
//! RRset" then "add" each record; for a delete, "delete the RRset". The
//! server applies a message atomically and in order, and both operations are idempotent, so a repeated or
//! lost update converges. [`list`](DnsProvider::list) is an AXFR of the
//! zone (RFC 5936) over TCP, signed with the same key.
//!
//! Messages are built, signed and verified with hickory-proto 0.26; the
//! exchange itself is a few lines of tokio here rather than hickory-net's
//! client, because an answer the server could not sign (a wrong key gets
//! NOTAUTH with TSIG error BADSIG and no MAC) fails hickory-net's verifier
//! with an opaque error, and the reconciler must see the server's RCODE.

use super::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use crate::config::dns::Rfc2136Settings;
use async_trait::async_trait;
use cerebro_types::dns::{is_in_zone, normalize_name};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigVerifier, TSigner};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The TSIG fudge (RFC 8945 §5.2.3): how far apart the two clocks may be.
const FUDGE_SECONDS: u16 = 300;

/// The largest message sent over UDP without EDNS (RFC 1035 §4.2.1);
/// larger UPDATEs go over TCP.
const UDP_LIMIT: usize = 512;

/// About the largest UPDATE message before signing (estimated change by
/// change): TCP framing carries 65535 bytes, and the TSIG record and
/// differences in name compression need the rest.
const MESSAGE_LIMIT: usize = 60_000;

/// Updates an RFC 2136 server for one zone, signing with one TSIG key.
pub struct Rfc2136Provider {
    zone: String,
    zone_name: Name,
    server: SocketAddr,
    signer: TSigner,
    timeout: Duration,
}

impl Rfc2136Provider {
    /// For the DNS zone `zone` (normalized) at `settings.server`.
    ///
    /// # Errors
    /// [`DnsError::Config`] for a key hickory cannot sign with (an
    /// algorithm other than hmac-sha256/384/512, a key name that is not a
    /// DNS name) or a zone that is not a DNS name.
    pub fn new(zone: String, settings: Rfc2136Settings) -> Result<Self, DnsError> {
        let zone = normalize_name(&zone);
        let zone_name = fqdn(&zone)?;
        let algorithm = match settings.key_algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(DnsError::Config(format!(
                    "TSIG algorithm {other:?} is not supported (hmac-sha256, hmac-sha384, hmac-sha512)"
                )));
            }
        };
        let key_name = fqdn(&settings.key_name)?;
        let signer = TSigner::new(settings.key_secret.0, algorithm, key_name, FUDGE_SECONDS)
            .map_err(|e| DnsError::Config(format!("TSIG key {}: {e}", settings.key_name)))?;
        Ok(Self {
            zone,
            zone_name,
            server: settings.server,
            signer,
            timeout: settings.timeout,
        })
    }

    /// The UPDATE message for `changes` (unsigned).
    fn update_message(&self, changes: &[Change]) -> Result<Message, DnsError> {
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        let mut zone = Query::query(self.zone_name.clone(), hickory_proto::rr::RecordType::SOA);
        zone.set_query_class(DNSClass::IN);
        message.add_zone(zone);
        for change in changes {
            let set = change.record_set();
            if !is_in_zone(&set.name, &self.zone) {
                return Err(DnsError::Config(format!(
                    "{} is not in the zone {}",
                    set.name, self.zone
                )));
            }
            let name = fqdn(&set.name)?;
            // RFC 2136 §2.5.2: delete an RRset: class ANY, TTL 0, no rdata.
            let mut delete = Record::update0(name.clone(), 0, hickory_type(set.rtype));
            delete.dns_class = DNSClass::ANY;
            message.add_update(delete);
            if let Change::Upsert(set) = change {
                for value in &set.values {
                    let rdata = rdata(set.rtype, value).ok_or_else(|| {
                        DnsError::Config(format!(
                            "{} {}: {value:?} is not a valid value",
                            set.name, set.rtype
                        ))
                    })?;
                    message.add_update(Record::from_rdata(name.clone(), set.ttl, rdata));
                }
            }
        }
        Ok(message)
    }

    /// `changes` cut into runs that each fit in one UPDATE message (in
    /// order): one run unless they exceed what TCP framing carries.
    fn batches<'a>(&self, changes: &'a [Change]) -> Result<Vec<&'a [Change]>, DnsError> {
        let empty = self
            .update_message(&[])?
            .to_vec()
            .map_err(encode_error)?
            .len();
        let mut batches = Vec::new();
        let (mut start, mut size) = (0, empty);
        for (i, change) in changes.iter().enumerate() {
            let alone = self
                .update_message(std::slice::from_ref(change))?
                .to_vec()
                .map_err(encode_error)?
                .len()
                - empty;
            if size + alone > MESSAGE_LIMIT && i > start {
                batches.push(&changes[start..i]);
                (start, size) = (i, empty);
            }
            size += alone;
        }
        batches.push(&changes[start..]);
        Ok(batches)
    }

    /// Signs `message` and answers the signed bytes and the verifier of
    /// the answer.
    fn sign(&self, mut message: Message) -> Result<(Vec<u8>, Option<TSigVerifier>), DnsError> {
        let verifier = message
            .finalize(&self.signer, unix_now())
            .map_err(|e| DnsError::Config(format!("sign with the TSIG key: {e}")))?;
        let bytes = message.to_vec().map_err(encode_error)?;
        Ok((bytes, verifier))
    }

    async fn exchange_udp(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let local: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(self.server).await?;
        socket.send(request).await?;
        let mut buffer = vec![0u8; 65535];
        loop {
            let len = socket.recv(&mut buffer).await?;
            // Another id is a stray answer (or a spoof attempt): not ours.
            if len >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
                return Ok(buffer[..len].to_vec());
            }
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, DnsError> {
        Ok(TcpStream::connect(self.server).await?)
    }

    /// An I/O error (connection refused, reset) naming the server, as
    /// the other errors do: the event shows it to whoever is on call.
    fn at_server(&self, error: DnsError) -> DnsError {
        match error {
            DnsError::Io(e) => DnsError::Io(std::io::Error::new(
                e.kind(),
                format!("DNS server {}: {e}", self.server),
            )),
            other => other,
        }
    }

    fn timeout_error(&self, operation: &'static str) -> DnsError {
        DnsError::Server {
            operation,
            code: "timeout".into(),
            message: format!("{} did not answer within {:?}", self.server, self.timeout),
        }
    }

    async fn update(&self, changes: &[Change]) -> Result<(), DnsError> {
        let message = self.update_message(changes)?;
        let id = message.metadata.id;
        let (request, verifier) = self.sign(message)?;
        let mut answer = None;
        if request.len() <= UDP_LIMIT {
            let bytes = self.exchange_udp(&request, id).await?;
            let truncated = bytes.len() > 2 && bytes[2] & 0x02 != 0;
            if !truncated {
                answer = Some(bytes);
            }
        }
        let bytes = match answer {
            Some(bytes) => bytes,
            None => {
                let mut stream = self.connect_tcp().await?;
                write_framed(&mut stream, &request).await?;
                read_framed(&mut stream).await?
            }
        };
        check_answer("UPDATE", id, &bytes, verifier).map(|_| ())
    }

    async fn transfer(&self) -> Result<Vec<Record>, DnsError> {
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(
            self.zone_name.clone(),
            hickory_proto::rr::RecordType::AXFR,
        ));
        let id = message.metadata.id;
        let (request, mut verifier) = self.sign(message)?;
        let mut stream = tokio::time::timeout(self.timeout, async {
            let mut stream = self.connect_tcp().await?;
            write_framed(&mut stream, &request).await?;
            Ok::<_, DnsError>(stream)
        })
        .await
        .map_err(|_| self.timeout_error("AXFR"))??;
        let mut records: Vec<Record> = Vec::new();
        let mut soas = 0;
        while soas < 2 {
            let bytes = tokio::time::timeout(self.timeout, read_framed(&mut stream))
                .await
                .map_err(|_| self.timeout_error("AXFR"))??;
            let answer =
                check_answer("AXFR", id, &bytes, verifier.take()).map(|(answer, next)| {
                    verifier = next;
                    answer
                })?;
            if answer.answers.is_empty() {
                return Err(DnsError::Server {
                    operation: "AXFR",
                    code: "FORMERR".into(),
                    message: "an empty message in the zone transfer".into(),
                });
            }
            for record in answer.answers {
                if record.record_type() == hickory_proto::rr::RecordType::SOA {
                    soas += 1;
                }
                records.push(record);
            }
        }
        Ok(records)
    }
}

fn encode_error(e: hickory_proto::ProtoError) -> DnsError {
    DnsError::Config(format!("encode the message: {e}"))
}

/// Verifies an answer's TSIG and checks its RCODE; answers the message
/// and the verifier for the next message of the same exchange (AXFR).
fn check_answer(
    operation: &'static str,
    id: u16,
    bytes: &[u8],
    verifier: Option<TSigVerifier>,
) -> Result<(Message, Option<TSigVerifier>), DnsError> {
    let unverified = Message::from_vec(bytes).map_err(|e| DnsError::Server {
        operation,
        code: "FORMERR".into(),
        message: format!("the answer cannot be read: {e}"),
    })?;
    if unverified.metadata.id != id {
        return Err(DnsError::Server {
            operation,
            code: "FORMERR".into(),
            message: format!(
                "the answer is for message {}, not {id}",
                unverified.metadata.id
            ),
        });
    }
    let rcode = unverified.metadata.response_code;
    let tsig_error = unverified
        .signature
        .as_ref()
        .and_then(|tsig| tsig.data.error)
        .map(|e| format!("; TSIG error {}", tsig_error_name(u16::from(e))))
        .unwrap_or_default();
    let verified = match verifier {
        Some(mut verifier) => match verifier.verify(bytes) {
            Ok(_) => Ok(Some(verifier)),
            Err(e) => Err(e.to_string()),
        },
        None => Ok(None),
    };
    if rcode != ResponseCode::NoError {
        // An error answer need not be signed (a server that does not know
        // the key cannot sign); trusting its RCODE only ever fails the call.
        return Err(DnsError::Server {
            operation,
            code: rcode_name(rcode),
            message: format!("the server answered {rcode}{tsig_error}"),
        });
    }
    match verified {
        Ok(next) => Ok((unverified, next)),
        Err(e) => Err(DnsError::Server {
            operation,
            code: "tsig".into(),
            message: format!("the answer's TSIG does not verify: {e}{tsig_error}"),
        }),
    }
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> Result<(), DnsError> {
    let len = u16::try_from(message.len()).map_err(|_| DnsError::Server {
        operation: "UPDATE",
        code: "too_large".into(),
        message: format!(
            "a {} byte message does not fit in TCP framing",
            message.len()
        ),
    })?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await?;
    Ok(())
}

async fn read_framed(stream: &mut TcpStream) -> Result<Vec<u8>, DnsError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        let basename = normalize_name(basename);
        // Each step of the transfer has its own timeout: a large zone
        // may take many of them.
        let records = self.transfer().await.map_err(|e| self.at_server(e))?;
        Ok(group(&records, &basename))
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError> {
        if changes.is_empty() {
            return Ok(());
        }
        for batch in self.batches(changes)? {
            tokio::time::timeout(self.timeout, self.update(batch))
                .await
                .map_err(|_| self.timeout_error("UPDATE"))?
                .map_err(|e| self.at_server(e))?;
        }
        Ok(())
    }
}

/// The A, AAAA and TXT records at or under `basename`, as RRsets.
fn group(records: &[Record], basename: &str) -> Vec<RecordSet> {
    let mut sets = cerebro_types::dns::RecordSets::default();
    for record in records {
        let Some(rtype) = cerebro_type(record.record_type()) else {
            continue;
        };
        let name = normalize_name(&record.name.to_ascii());
        if !is_in_zone(&name, basename) {
            continue;
        }
        let Some(value) = presentation(&record.data) else {
            continue;
        };
        sets.add(&name, rtype, record.ttl, value);
    }
    sets.into_sets()
}

fn fqdn(name: &str) -> Result<Name, DnsError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| DnsError::Config(format!("{name:?} is not a DNS name: {e}")))
}

fn hickory_type(rtype: RecordType) -> hickory_proto::rr::RecordType {
    match rtype {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
        RecordType::Txt => hickory_proto::rr::RecordType::TXT,
    }
}

fn cerebro_type(rtype: hickory_proto::rr::RecordType) -> Option<RecordType> {
    match rtype {
        hickory_proto::rr::RecordType::A => Some(RecordType::A),
        hickory_proto::rr::RecordType::AAAA => Some(RecordType::Aaaa),
        hickory_proto::rr::RecordType::TXT => Some(RecordType::Txt),
        _ => None,
    }
}

/// A value in presentation form as record data; `None` when it is not
/// one (an A value that is no IPv4 address). A TXT text longer than a
/// character-string's 255 bytes is split into several (RFC 1035 §3.3).
pub(crate) fn rdata(rtype: RecordType, value: &str) -> Option<RData> {
    match rtype {
        RecordType::A => value.parse().ok().map(|ip| RData::A(A(ip))),
        RecordType::Aaaa => value.parse().ok().map(|ip| RData::AAAA(AAAA(ip))),
        RecordType::Txt => {
            let chunks: Vec<&[u8]> = if value.is_empty() {
                vec![b"".as_slice()]
            } else {
                value.as_bytes().chunks(255).collect()
            };
            Some(RData::TXT(TXT::from_bytes(chunks)))
        }
    }
}

/// Record data in presentation form as `RecordSet::values` holds it (TXT:
/// the character-strings concatenated, unquoted).
pub(crate) fn presentation(data: &RData) -> Option<String> {
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

/// An RCODE's mnemonic (RFC 6895 §2.3), as `DnsError::Server::code`.
pub(crate) fn rcode_name(code: ResponseCode) -> String {
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
        other => return format!("RCODE{other}"),
    };
    name.to_string()
}

fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        other => other.to_string(),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dns::Secret;

    fn provider() -> Rfc2136Provider {
        Rfc2136Provider::new(
            "Cerebro.Test.".into(),
            Rfc2136Settings {
                server: "127.0.0.1:53".parse().unwrap(),
                key_name: "k".into(),
                key_algorithm: "hmac-sha256".into(),
                key_secret: Secret(vec![7; 32]),
                timeout: Duration::from_secs(1),
            },
        )
        .unwrap()
    }

    fn set(name: &str, rtype: RecordType, values: &[&str]) -> RecordSet {
        RecordSet {
            name: name.into(),
            rtype,
            ttl: 60,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn one_update_deletes_each_rrset_before_adding_its_records() {
        let p = provider();
        let message = p
            .update_message(&[
                Change::Upsert(set("a.cerebro.test", RecordType::Txt, &["owner"])),
                Change::Upsert(set(
                    "a.cerebro.test",
                    RecordType::A,
                    &["10.0.0.1", "10.0.0.2"],
                )),
                Change::Delete(set("b.cerebro.test", RecordType::Aaaa, &["::1"])),
            ])
            .unwrap();
        assert_eq!(message.metadata.op_code, OpCode::Update);
        let updates: Vec<(String, DNSClass, String)> = message
            .authorities
            .iter()
            .map(|r| {
                (
                    r.name.to_ascii(),
                    r.dns_class,
                    presentation(&r.data).unwrap_or_else(|| r.record_type().to_string()),
                )
            })
            .collect();
        assert_eq!(
            updates,
            vec![
                ("a.cerebro.test.".into(), DNSClass::ANY, "TXT".into()),
                ("a.cerebro.test.".into(), DNSClass::IN, "owner".into()),
                ("a.cerebro.test.".into(), DNSClass::ANY, "A".into()),
                ("a.cerebro.test.".into(), DNSClass::IN, "10.0.0.1".into()),
                ("a.cerebro.test.".into(), DNSClass::IN, "10.0.0.2".into()),
                ("b.cerebro.test.".into(), DNSClass::ANY, "AAAA".into()),
            ]
        );
    }

    #[test]
    fn names_outside_the_zone_and_bad_values_are_refused_before_sending() {
        let p = provider();
        assert!(matches!(
            p.update_message(&[Change::Upsert(set("a.other", RecordType::A, &["10.0.0.1"]))]),
            Err(DnsError::Config(_))
        ));
        assert!(matches!(
            p.update_message(&[Change::Upsert(set(
                "a.cerebro.test",
                RecordType::A,
                &["::1"]
            ))]),
            Err(DnsError::Config(_))
        ));
    }

    #[test]
    fn changes_are_cut_into_messages_only_past_the_size_limit() {
        let p = provider();
        let small: Vec<Change> = (0..10)
            .map(|i| {
                Change::Upsert(set(
                    &format!("{i}.cerebro.test"),
                    RecordType::A,
                    &["10.0.0.1"],
                ))
            })
            .collect();
        assert_eq!(p.batches(&small).unwrap().len(), 1);
        let text = "t".repeat(1000);
        let large: Vec<Change> = (0..200)
            .map(|i| Change::Upsert(set(&format!("{i}.cerebro.test"), RecordType::Txt, &[&text])))
            .collect();
        let batches = p.batches(&large).unwrap();
        assert!(batches.len() >= 4, "{}", batches.len());
        assert_eq!(batches.concat(), large, "every change, in order");
        for batch in batches {
            let size = p.update_message(batch).unwrap().to_vec().unwrap().len();
            // The estimate is per change; what is left must hold the TSIG.
            assert!(size + 1024 <= usize::from(u16::MAX), "{size}");
        }
    }

    #[test]
    fn unsupported_algorithms_are_a_config_error() {
        let result = Rfc2136Provider::new(
            "cerebro.test".into(),
            Rfc2136Settings {
                server: "127.0.0.1:53".parse().unwrap(),
                key_name: "k".into(),
                key_algorithm: "hmac-md5".into(),
                key_secret: Secret(vec![7; 32]),
                timeout: Duration::from_secs(1),
            },
        );
        assert!(matches!(result, Err(DnsError::Config(_))));
    }

    #[test]
    fn long_txt_values_round_trip_through_character_strings() {
        let text = "x".repeat(600);
        let data = rdata(RecordType::Txt, &text).unwrap();
        assert_eq!(presentation(&data).unwrap(), text);
    }

    #[test]
    fn listing_groups_records_at_or_under_the_basename() {
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let records = vec![
            Record::from_rdata(
                name("B.cerebro.test."),
                60,
                rdata(RecordType::A, "10.0.0.1").unwrap(),
            ),
            Record::from_rdata(
                name("0.z.b.cerebro.test."),
                60,
                rdata(RecordType::A, "10.0.0.2").unwrap(),
            ),
            Record::from_rdata(
                name("0.z.b.cerebro.test."),
                60,
                rdata(RecordType::A, "10.0.0.3").unwrap(),
            ),
            Record::from_rdata(
                name("0.z.b.cerebro.test."),
                60,
                rdata(RecordType::Txt, "t").unwrap(),
            ),
            Record::from_rdata(
                name("xb.cerebro.test."),
                60,
                rdata(RecordType::A, "10.0.0.4").unwrap(),
            ),
        ];
        let sets = group(&records, "b.cerebro.test");
        assert_eq!(
            sets,
            vec![
                set(
                    "0.z.b.cerebro.test",
                    RecordType::A,
                    &["10.0.0.2", "10.0.0.3"]
                ),
                set("0.z.b.cerebro.test", RecordType::Txt, &["t"]),
                set("b.cerebro.test", RecordType::A, &["10.0.0.1"]),
            ]
        );
    }
}
