//! The embedded DNS server (`[dns] kind = "embedded"`, the default for the
//! local provider): the clustersitter answers for the names it owns
//! itself, on UDP and TCP at one address, like Consul's DNS interface, so
//! `dig @127.0.0.1 -p 8600 0.local-a.ticker.cerebro.test` works with no
//! other DNS server around.
//!
//! The records live in memory (one lock; an apply swaps them all at once)
//! and in `records_file` (written to a temp file and renamed), so a
//! restarted clustersitter answers at once as before, even before its
//! first reconciler pass.
//!
//! Answers (RFC 1035 §4.3.2, RFC 2308): authoritative (AA) for every name
//! it serves; A, AAAA, TXT and ANY from the records; a name that exists
//! (or has names under it) without the asked type: NOERROR with no
//! answer; a name it does not hold: NXDOMAIN, with the zone's SOA in the
//! authority section when `[dns] zone` is set; a name outside that zone:
//! REFUSED. Over UDP an answer larger than 512 bytes (or the EDNS size the
//! query offers, RFC 6891 §6.2.5) comes back empty with TC set, so the
//! client retries over TCP.

use super::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use crate::config::dns::EmbeddedSettings;
use async_trait::async_trait;
use cerebro_types::dns::{is_in_zone, normalize_name};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// The UDP payload a query without EDNS may get (RFC 1035 §4.2.1).
const UDP_PLAIN_LIMIT: usize = 512;
/// The largest UDP payload answered whatever EDNS offers (DNS flag day
/// 2020's 1232 would do; 4096 is BIND's default and still one datagram
/// on loopback).
const UDP_EDNS_LIMIT: u16 = 4096;
/// How long a TCP connection may stay idle between queries (RFC 7766
/// §6.2.3 suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more wait in the accept queue.
const TCP_CONNECTIONS: usize = 64;
/// How many times a port-0 start tries another port when the OS gave UDP
/// a port TCP cannot have.
const BIND_ATTEMPTS: usize = 10;
/// TTL of the SOA and of negative answers (RFC 2308 §5), seconds.
const SOA_TTL: u32 = 60;

type Records = BTreeMap<(String, RecordType), RecordSet>;

/// The clustersitter's own DNS server: answers on UDP and TCP at
/// [`DnsProvider::listen_address`] until dropped.
pub struct EmbeddedDns {
    shared: Arc<Shared>,
    listen: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    /// `[dns] zone`, normalized.
    zone: Option<String>,
    state: RwLock<State>,
    records_file: PathBuf,
    /// Serializes applies, so the file always holds the last one.
    apply: tokio::sync::Mutex<()>,
}

struct State {
    records: Records,
    /// The SOA serial: bumped on every change.
    serial: u32,
}

impl EmbeddedDns {
    /// Loads the records saved in `records_file` (a missing file is no
    /// records; an unreadable one is a warning and no records), binds UDP
    /// and TCP on `settings.listen` (the same port for both; port 0: the
    /// OS picks one) and answers from then on until dropped.
    ///
    /// # Errors
    /// [`DnsError::Io`] when the address cannot be bound.
    pub async fn start(
        settings: &EmbeddedSettings,
        zone: Option<String>,
        records_file: PathBuf,
    ) -> Result<Arc<Self>, DnsError> {
        let records = load(&records_file);
        let (udp, tcp) = bind(settings.listen).await?;
        let listen = udp.local_addr()?;
        let shared = Arc::new(Shared {
            zone: zone.map(|z| normalize_name(&z)),
            state: RwLock::new(State {
                records,
                serial: initial_serial(),
            }),
            records_file,
            apply: tokio::sync::Mutex::new(()),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared.clone())),
        ];
        tracing::info!(%listen, "embedded DNS server answering on UDP and TCP");
        Ok(Arc::new(Self {
            shared,
            listen,
            tasks,
        }))
    }

    /// The bound address (UDP and TCP).
    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for EmbeddedDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl DnsProvider for EmbeddedDns {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        let basename = normalize_name(basename);
        let state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .records
            .values()
            .filter(|set| is_in_zone(&set.name, &basename))
            .cloned()
            .collect())
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let _turn = self.shared.apply.lock().await;
        let mut records = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .clone();
        for change in changes {
            let set = change.record_set();
            let key = (normalize_name(&set.name), set.rtype);
            if let Some(zone) = &self.shared.zone {
                if !is_in_zone(&key.0, zone) {
                    return Err(DnsError::Config(format!(
                        "{} is not in the zone {zone}",
                        set.name
                    )));
                }
            }
            if let Change::Upsert(set) = change {
                if let Some(bad) = set
                    .values
                    .iter()
                    .find(|v| super::rfc2136::rdata(set.rtype, v).is_none())
                {
                    return Err(DnsError::Config(format!(
                        "{} {}: {bad:?} is not a valid value",
                        set.name, set.rtype
                    )));
                }
            }
            match change {
                Change::Upsert(set) if !set.values.is_empty() => {
                    let set = RecordSet {
                        name: key.0.clone(),
                        ..set.clone()
                    };
                    records.insert(key, set);
                }
                Change::Upsert(_) | Change::Delete(_) => {
                    records.remove(&key);
                }
            }
        }
        // Saved before it is answered: what a restarted clustersitter
        // answers is never older than what was answered.
        let file = self.shared.records_file.clone();
        let snapshot: Vec<RecordSet> = records.values().cloned().collect();
        tokio::task::spawn_blocking(move || save(&file, &snapshot))
            .await
            .map_err(|e| DnsError::Io(std::io::Error::other(e)))??;
        let mut state = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        state.records = records;
        state.serial = state.serial.wrapping_add(1).max(1);
        Ok(())
    }

    fn listen_address(&self) -> Option<SocketAddr> {
        Some(self.listen)
    }
}

/// Binds UDP on `listen`, then TCP on the port UDP got.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen).await?;
        let address = udp.local_addr()?;
        match TcpListener::bind(address).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS =>
            {
                continue;
            }
            Err(e) => {
                return Err(DnsError::Io(std::io::Error::new(
                    e.kind(),
                    format!("bind TCP {address}: {e}"),
                )));
            }
        }
    }
}

fn load(file: &Path) -> Records {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Records::new(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read the embedded DNS records; starting with none");
            return Records::new();
        }
    };
    match serde_json::from_str::<Vec<RecordSet>>(&text) {
        Ok(sets) => sets
            .into_iter()
            .filter(|set| !set.values.is_empty())
            .map(|set| {
                let name = normalize_name(&set.name);
                ((name.clone(), set.rtype), RecordSet { name, ..set })
            })
            .collect(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "the embedded DNS records file is not valid; starting with none");
            Records::new()
        }
    }
}

/// Writes `sets` to a temp file beside `file`, then renames it over
/// `file`: a crash leaves the old file or the new one, never half.
fn save(file: &Path, sets: &[RecordSet]) -> Result<(), DnsError> {
    use std::io::Write;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temp = file.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let json = serde_json::to_vec_pretty(sets).map_err(std::io::Error::other)?;
    let mut out = std::fs::File::create(&temp)?;
    out.write_all(&json)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temp, file)?;
    Ok(())
}

fn initial_serial() -> u32 {
    // Seconds since the epoch, as many zones number their serials: a
    // restarted server's serial does not go back.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buffer = vec![0u8; 65535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some
                // systems; the socket itself is fine.
                tracing::debug!(error = %e, "embedded DNS: UDP receive");
                continue;
            }
        };
        if let Some(answer) = shared.handle(&buffer[..len], true) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped (and so aborted) with this task.
    let mut connections = JoinSet::new();
    // Oldest first: at the limit, a new connection closes the oldest
    // (RFC 7766 §6.2.3 lets a server close connections under pressure),
    // so clients holding connections open never lock the others out.
    let mut order: std::collections::VecDeque<tokio::task::AbortHandle> =
        std::collections::VecDeque::new();
    loop {
        while connections.try_join_next().is_some() {}
        order.retain(|handle| !handle.is_finished());
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "embedded DNS: TCP accept");
                continue;
            }
        };
        order.retain(|handle| !handle.is_finished());
        while order.len() >= TCP_CONNECTIONS {
            if let Some(oldest) = order.pop_front() {
                oldest.abort();
            }
        }
        order.push_back(connections.spawn(serve_connection(stream, shared.clone())));
    }
}

/// Answers queries on one TCP connection (RFC 7766: several per
/// connection, each with a 2-byte length) until the client closes it or
/// is idle for [`TCP_IDLE`].
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        let Ok(Ok(message)) = tokio::time::timeout(TCP_IDLE, read).await else {
            return;
        };
        let Some(answer) = shared.handle(&message, false) else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        if tokio::time::timeout(TCP_IDLE, stream.write_all(&framed))
            .await
            .map_or(true, |r| r.is_err())
        {
            return;
        }
    }
}

impl Shared {
    /// The encoded answer to the message in `packet`, or `None` when it
    /// gets none (too short to have an id, or itself an answer).
    fn handle(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(_) => {
                // A header at least: tell the sender, as RFC 1035 asks.
                if packet.len() < 12 || packet[2] & 0x80 != 0 {
                    return None;
                }
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let answer = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return answer.to_vec().ok();
            }
        };
        if request.metadata.message_type == MessageType::Response {
            return None;
        }
        let answer = self.answer(&request);
        let bytes = answer.to_vec().ok()?;
        let limit = if !udp {
            usize::from(u16::MAX)
        } else {
            match &request.edns {
                Some(edns) => usize::from(edns.max_payload().clamp(512, UDP_EDNS_LIMIT)),
                None => UDP_PLAIN_LIMIT,
            }
        };
        if bytes.len() <= limit {
            return Some(bytes);
        }
        // RFC 2181 §9: a partial RRset is worse than none; the client
        // retries over TCP.
        let mut truncated = answer;
        truncated.answers.clear();
        truncated.authorities.clear();
        truncated.additionals.clear();
        truncated.metadata.truncation = true;
        truncated.to_vec().ok()
    }

    /// The answer to a decoded query.
    fn answer(&self, request: &Message) -> Message {
        let mut answer = Message::response(request.metadata.id, request.metadata.op_code);
        answer.metadata.recursion_desired = request.metadata.recursion_desired;
        answer.queries = request.queries.clone();
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_EDNS_LIMIT).set_version(0);
            answer.edns = Some(edns);
        }
        if request.metadata.op_code != OpCode::Query {
            answer.metadata.response_code = ResponseCode::NotImp;
            return answer;
        }
        let [query] = request.queries.as_slice() else {
            answer.metadata.response_code = ResponseCode::FormErr;
            return answer;
        };
        // Zone transfers are not served: the names are Cerebro's to list
        // (GET /api/v1/dns), not a secondary's to copy.
        let transfer = matches!(
            query.query_type(),
            hickory_proto::rr::RecordType::AXFR | hickory_proto::rr::RecordType::IXFR
        );
        if transfer || !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            answer.metadata.response_code = ResponseCode::Refused;
            return answer;
        }
        let name = normalize_name(&query.name().to_ascii());
        if self
            .zone
            .as_ref()
            .is_some_and(|zone| !is_in_zone(&name, zone))
        {
            answer.metadata.response_code = ResponseCode::Refused;
            return answer;
        }
        answer.metadata.authoritative = true;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let qname = query.name().clone();
        let qtype = query.query_type();
        let is_apex = self.zone.as_deref() == Some(name.as_str());
        let mut exists = is_apex;
        for set in state.records.values() {
            if set.name == name {
                exists = true;
                let matches = match qtype {
                    hickory_proto::rr::RecordType::ANY => true,
                    other => hickory_type(set.rtype) == other,
                };
                if matches {
                    for value in &set.values {
                        if let Some(data) = super::rfc2136::rdata(set.rtype, value) {
                            answer.add_answer(Record::from_rdata(qname.clone(), set.ttl, data));
                        }
                    }
                }
            } else if !exists && is_in_zone(&set.name, &name) {
                // An empty non-terminal (RFC 8020): it exists, with no data.
                exists = true;
            }
        }
        if is_apex
            && matches!(
                qtype,
                hickory_proto::rr::RecordType::SOA | hickory_proto::rr::RecordType::ANY
            )
        {
            answer.add_answers(self.soa(state.serial));
        }
        if !exists {
            answer.metadata.response_code = ResponseCode::NXDomain;
        }
        if answer.answers.is_empty() {
            answer.add_authorities(self.soa(state.serial));
        }
        answer
    }

    /// The zone's SOA record, when a zone is configured.
    fn soa(&self, serial: u32) -> Option<Record> {
        let zone = Name::from_ascii(format!("{}.", self.zone.as_ref()?)).ok()?;
        let mname = zone.prepend_label("ns").ok()?;
        let rname = zone.prepend_label("hostmaster").ok()?;
        let soa = SOA::new(mname, rname, serial, 3600, 600, 86400, SOA_TTL);
        Some(Record::from_rdata(zone, SOA_TTL, RData::SOA(soa)))
    }
}

fn hickory_type(rtype: RecordType) -> hickory_proto::rr::RecordType {
    match rtype {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
        RecordType::Txt => hickory_proto::rr::RecordType::TXT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn shared(zone: Option<&str>, sets: Vec<RecordSet>) -> Shared {
        Shared {
            zone: zone.map(str::to_string),
            state: RwLock::new(State {
                records: sets
                    .into_iter()
                    .map(|s| ((s.name.clone(), s.rtype), s))
                    .collect(),
                serial: 7,
            }),
            records_file: PathBuf::from("/nonexistent/records.json"),
            apply: tokio::sync::Mutex::new(()),
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

    fn ask(server: &Shared, name: &str, qtype: hickory_proto::rr::RecordType) -> Message {
        let mut request = Message::query();
        request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let bytes = server.handle(&request.to_vec().unwrap(), true).unwrap();
        let answer = Message::from_vec(&bytes).unwrap();
        assert_eq!(answer.metadata.id, request.metadata.id);
        answer
    }

    fn values(answer: &Message) -> Vec<String> {
        answer
            .answers
            .iter()
            .filter_map(|r| super::super::rfc2136::presentation(&r.data))
            .collect()
    }

    use hickory_proto::rr::RecordType as T;

    #[test]
    fn answers_follow_the_zone() {
        let server = shared(
            Some("cerebro.test"),
            vec![
                set("0.z.web.cerebro.test", RecordType::A, &["10.0.0.1"]),
                set("0.z.web.cerebro.test", RecordType::Txt, &["owner"]),
            ],
        );
        let a = ask(&server, "0.Z.web.cerebro.test.", T::A);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(values(&a), vec!["10.0.0.1"]);

        let nodata = ask(&server, "0.z.web.cerebro.test.", T::AAAA);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities.len(), 1, "the SOA");

        let any = ask(&server, "0.z.web.cerebro.test.", T::ANY);
        assert_eq!(any.answers.len(), 2);

        // An empty non-terminal exists.
        let ent = ask(&server, "z.web.cerebro.test.", T::A);
        assert_eq!(ent.metadata.response_code, ResponseCode::NoError);

        let nx = ask(&server, "1.z.web.cerebro.test.", T::A);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.metadata.authoritative);
        assert_eq!(nx.authorities[0].record_type(), T::SOA);

        let soa = ask(&server, "cerebro.test.", T::SOA);
        assert_eq!(soa.answers[0].record_type(), T::SOA);

        let refused = ask(&server, "example.com.", T::A);
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        assert!(!refused.metadata.authoritative);

        let transfer = ask(&server, "cerebro.test.", T::AXFR);
        assert_eq!(transfer.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn without_a_zone_unknown_names_are_nxdomain() {
        let server = shared(None, vec![set("a.b", RecordType::A, &["10.0.0.1"])]);
        let nx = ask(&server, "example.com.", T::A);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.authorities.is_empty());
        assert_eq!(values(&ask(&server, "a.b.", T::A)), vec!["10.0.0.1"]);
    }

    #[test]
    fn large_udp_answers_are_truncated_and_tcp_ones_are_not() {
        let many: Vec<String> = (0..100)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let server = shared(
            Some("cerebro.test"),
            vec![set("m.cerebro.test", RecordType::A, &many)],
        );
        let answer = ask(&server, "m.cerebro.test.", T::A);
        assert!(answer.metadata.truncation);
        assert!(answer.answers.is_empty());
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii("m.cerebro.test.").unwrap(),
            T::A,
        ));
        let tcp = server.handle(&request.to_vec().unwrap(), false).unwrap();
        let tcp = Message::from_vec(&tcp).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 100);
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        let server = shared(Some("cerebro.test"), vec![]);
        assert!(server.handle(&[1, 2, 3], true).is_none());
        let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
        garbage.extend_from_slice(&[0xff; 20]);
        let answer = Message::from_vec(&server.handle(&garbage, true).unwrap()).unwrap();
        assert_eq!(answer.metadata.id, 0xabcd);
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        // Answers are never answered.
        let mut response = Message::response(1, OpCode::Query);
        response.add_query(Query::query(
            Name::from_ascii("a.cerebro.test.").unwrap(),
            T::A,
        ));
        assert!(server.handle(&response.to_vec().unwrap(), true).is_none());
    }

    #[tokio::test]
    async fn applies_outside_the_zone_or_with_bad_values_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let settings = EmbeddedSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            configured: true,
        };
        let file = dir.path().join("records.json");
        let dns = EmbeddedDns::start(&settings, Some("cerebro.test".into()), file.clone())
            .await
            .unwrap();
        let good = Change::Upsert(set("a.cerebro.test", RecordType::A, &["10.0.0.1"]));
        for bad in [
            Change::Upsert(set("a.example.com", RecordType::A, &["10.0.0.1"])),
            Change::Upsert(set("b.cerebro.test", RecordType::A, &["::1"])),
        ] {
            let error = dns.apply(&[good.clone(), bad]).await.unwrap_err();
            assert!(matches!(error, DnsError::Config(_)), "{error}");
        }
        assert!(dns.list("cerebro.test").await.unwrap().is_empty());
        assert!(!file.exists());
        dns.apply(&[good]).await.unwrap();
        assert_eq!(dns.list("cerebro.test").await.unwrap().len(), 1);
        assert!(file.exists());
    }

    #[test]
    fn missing_and_unreadable_files_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("missing.json")).is_empty());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert!(load(&bad).is_empty());
        let good = dir.path().join("good.json");
        save(&good, &[set("A.b", RecordType::A, &["10.0.0.1"])]).unwrap();
        let loaded = load(&good);
        assert_eq!(loaded.len(), 1);
        assert!(loaded.contains_key(&("a.b".to_string(), RecordType::A)));
    }
}
