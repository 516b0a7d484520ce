//! The DNS scenario (`cerebro_tests::dns_scenario`, issue 14 "Tests")
//! against the embedded server, BIND 9 through RFC 2136, and the Dyn
//! contract server; Route 53 runs it in `providers/route53/tests/e2e.rs`.
//! This binary links no AWS crate.

use cerebro_tests::bind::BindServer;
use cerebro_tests::dns::{query_over, Answer, Transport};
use cerebro_tests::dns_scenario::{self, dns_section, under, DnsBackend, Lifecycle, FOREIGN, ZONE};
use cerebro_tests::dynect::{DynAuth, DynRequest, DynServer};
use cerebro_tests::Cluster;
use cerebro_types::dns::{RecordSet, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TYPES: [RecordType; 3] = [RecordType::A, RecordType::Aaaa, RecordType::Txt];

/// The embedded server, read by queries over UDP and TCP (the two must
/// agree). Queries tell no TTL. Its records can only be changed behind
/// the clustersitter's back while it is down: [`DnsBackend::seed`] edits
/// its records file between a `kill -9` and a boot, which is exactly
/// what a crash between two writes would leave.
struct Embedded {
    runtime: tokio::runtime::Runtime,
}

impl Embedded {
    fn records_file(cluster: &Cluster) -> PathBuf {
        cluster.path().join("state").join("dns-embedded.json")
    }

    fn saved(cluster: &Cluster) -> Vec<RecordSet> {
        match std::fs::read_to_string(Self::records_file(cluster)) {
            Ok(text) => serde_json::from_str(&text).expect("the embedded records file"),
            Err(_) => Vec::new(),
        }
    }

    fn ask(&self, transport: Transport, server: SocketAddr, name: &str) -> Vec<RecordSet> {
        TYPES
            .iter()
            .filter_map(|rtype| {
                let answer: Answer = self
                    .runtime
                    .block_on(query_over(transport, server, name, *rtype))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    answer.rcode == "NOERROR" || answer.rcode == "NXDOMAIN",
                    "{name} {rtype} over {transport:?}: {answer:?}"
                );
                assert!(answer.authoritative, "{name} {rtype}: {answer:?}");
                assert!(!answer.truncated, "{name} {rtype}: {answer:?}");
                (!answer.values.is_empty()).then(|| RecordSet {
                    name: name.to_string(),
                    rtype: *rtype,
                    ttl: 0,
                    values: answer.values,
                })
            })
            .collect()
    }
}

impl DnsBackend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn dns_section(&self) -> String {
        dns_section("embedded", "listen = \"127.0.0.1:0\"")
    }

    fn knows_ttl(&self) -> bool {
        false
    }

    fn list(&mut self, cluster: &Cluster, basename: &str) -> BTreeSet<RecordSet> {
        let status = cluster.dns_status();
        assert_eq!(status.kind, "embedded", "{status:?}");
        let server: SocketAddr = status
            .listen
            .as_deref()
            .expect("the embedded server's address in GET /api/v1/dns")
            .parse()
            .expect("a socket address");
        // Every name the server could hold: those it saved, those the
        // cluster wants, and those the scenario writes or could get wrong.
        let mut names: BTreeSet<String> = Self::saved(cluster)
            .into_iter()
            .chain(status.desired)
            .map(|s| s.name)
            .collect();
        names.insert(basename.to_string());
        names.insert(FOREIGN.to_string());
        for zone in ["zone-a", "zone-b"] {
            names.insert(format!("{zone}.{basename}"));
            for n in 0..8 {
                names.insert(format!("{n}.{zone}.{basename}"));
            }
        }
        let mut listed = BTreeSet::new();
        for name in names
            .iter()
            .filter(|n| cerebro_types::dns::is_in_zone(n, basename))
        {
            // One name takes several queries per transport: a pass applied
            // between them makes the two readings differ for a moment, so
            // they are read again until they agree.
            let agreed = cerebro_tests::poll_for(Duration::from_secs(10), || {
                let udp = self.ask(Transport::Udp, server, name);
                (udp == self.ask(Transport::Tcp, server, name)).then_some(udp)
            })
            .unwrap_or_else(|| panic!("{name}: UDP and TCP answers differ for 10 s"));
            listed.extend(agreed);
        }
        listed
    }

    fn seed(&mut self, cluster: &mut Cluster, set: &RecordSet) {
        let running = cluster.daemon.pid().is_some();
        if running {
            dns_scenario::kill9(self, cluster);
        }
        let mut sets: BTreeMap<(String, RecordType), RecordSet> = Self::saved(cluster)
            .into_iter()
            .map(|s| ((s.name.clone(), s.rtype), s))
            .collect();
        sets.insert((set.name.clone(), set.rtype), set.clone());
        let file = Self::records_file(cluster);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let sets: Vec<&RecordSet> = sets.values().collect();
        std::fs::write(&file, serde_json::to_vec_pretty(&sets).unwrap()).unwrap();
        if running {
            cluster.boot();
            self.lifecycle(cluster, Lifecycle::Booted);
        }
    }
}

#[test]
fn embedded() {
    let mut backend = Embedded {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    let problems = dns_scenario::run(&mut backend);
    dns_scenario::assert_no_problems(&problems);
}

/// BIND 9, read by a TSIG-signed zone transfer (`dig AXFR`), changed with
/// `nsupdate`; its SOA serial is the change counter.
struct Bind {
    server: BindServer,
}

/// One record of `dig +noall +answer`: name, TTL, type, data.
fn dig_line(line: &str) -> Option<(String, u32, String, String)> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?;
    let ttl = fields.next()?.parse().ok()?;
    let class = fields.next()?;
    if class != "IN" {
        return None;
    }
    let rtype = fields.next()?.to_string();
    let data = fields.collect::<Vec<_>>().join(" ");
    Some((cerebro_types::dns::normalize_name(name), ttl, rtype, data))
}

impl Bind {
    /// The zone by AXFR: every record line.
    fn transfer(&self) -> Vec<(String, u32, String, String)> {
        let output = Command::new("dig")
            .arg("-p")
            .arg(self.server.addr().port().to_string())
            .arg("@127.0.0.1")
            .arg("-k")
            .arg(self.server.key_file())
            .args([ZONE, "AXFR", "+noall", "+answer", "+time=5", "+tries=1"])
            .output()
            .expect("run dig (bind9-dnsutils)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && !text.contains("Transfer failed"),
            "dig AXFR {ZONE}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<_> = text
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(dig_line)
            .collect();
        assert!(
            lines.iter().any(|(_, _, t, _)| t == "SOA"),
            "no SOA in the transfer: {text}"
        );
        lines
    }
}

impl DnsBackend for Bind {
    fn name(&self) -> &'static str {
        "rfc2136"
    }

    fn dns_section(&self) -> String {
        dns_section(
            "rfc2136",
            &format!(
                "server = \"{}\"\nkey_file = \"{}\"",
                self.server.addr(),
                self.server.key_file().display()
            ),
        )
    }

    fn list(&mut self, _cluster: &Cluster, basename: &str) -> BTreeSet<RecordSet> {
        let mut sets = cerebro_types::dns::RecordSets::default();
        for (name, ttl, rtype, data) in self.transfer() {
            let (rtype, value) = match rtype.as_str() {
                "A" => (RecordType::A, data),
                "AAAA" => (RecordType::Aaaa, data),
                "TXT" => (RecordType::Txt, cerebro_tests::dns::unquote_txt(&data)),
                _ => continue,
            };
            sets.add(&name, rtype, ttl, value);
        }
        sets.into_sets()
            .into_iter()
            .filter(|s| under(s, basename))
            .collect()
    }

    fn seed(&mut self, _cluster: &mut Cluster, set: &RecordSet) {
        let lines: Vec<String> = set
            .values
            .iter()
            .map(|v| {
                let data = match set.rtype {
                    RecordType::Txt => format!("\"{v}\""),
                    _ => v.clone(),
                };
                format!("update add {}. {} {} {data}", set.name, set.ttl, set.rtype)
            })
            .collect();
        self.server
            .nsupdate(&lines.join("\n"))
            .unwrap_or_else(|e| panic!("seed {set:?}: {e}\n{}", self.server.log()));
    }

    fn changes(&mut self, _cluster: &Cluster) -> Option<u64> {
        let soa = self
            .transfer()
            .into_iter()
            .find(|(_, _, t, _)| t == "SOA")
            .expect("an SOA");
        let serial = soa.3.split_whitespace().nth(2).expect("a serial");
        Some(serial.parse().expect("a numeric serial"))
    }
}

#[test]
fn rfc2136() {
    let mut backend = Bind {
        server: BindServer::start(),
    };
    let problems = dns_scenario::run(&mut backend);
    dns_scenario::assert_no_problems(&problems);
}

const DYN_CUSTOMER: &str = "cerebro";
const DYN_USER: &str = "cluster";
const DYN_PASSWORD: &str = "dyn-e2e-password";

/// The Dyn contract server: its published zone, records seeded outside
/// any session, the zone serial (one per publish) as the change counter,
/// and the request log split at every kill and clean stop.
struct Dyn {
    server: DynServer,
    dir: tempfile::TempDir,
    /// Each kill or clean stop, with how many requests the server had then.
    ends: Vec<(Lifecycle, usize)>,
}

impl DnsBackend for Dyn {
    fn name(&self) -> &'static str {
        "dynect"
    }

    fn dns_section(&self) -> String {
        let password = self.dir.path().join("dyn-password");
        std::fs::write(&password, DYN_PASSWORD).unwrap();
        dns_section(
            "dynect",
            &format!(
                "api_url = \"{}\"\ncustomer = \"{DYN_CUSTOMER}\"\nuser = \"{DYN_USER}\"\npassword_file = \"{}\"",
                self.server.url(),
                password.display()
            ),
        )
    }

    fn list(&mut self, _cluster: &Cluster, basename: &str) -> BTreeSet<RecordSet> {
        self.server
            .published(ZONE)
            .into_iter()
            .filter(|s| under(s, basename))
            .collect()
    }

    fn seed(&mut self, _cluster: &mut Cluster, set: &RecordSet) {
        for value in &set.values {
            self.server.seed(ZONE, &set.name, set.rtype, value, set.ttl);
        }
    }

    fn changes(&mut self, _cluster: &Cluster) -> Option<u64> {
        Some(u64::from(self.server.serial(ZONE)))
    }

    fn lifecycle(&mut self, _cluster: &Cluster, event: Lifecycle) {
        if event != Lifecycle::Booted {
            self.ends.push((event, self.server.requests().len()));
        }
    }
}

fn is_record_write(request: &DynRequest) -> bool {
    (request.method == "PUT" || request.method == "DELETE")
        && ["/REST/ARecord/", "/REST/AAAARecord/", "/REST/TXTRecord/"]
            .iter()
            .any(|p| request.path.starts_with(p))
}

/// Checks one clustersitter life's requests: one login first, its token
/// on every later call, one publish closing each pass that wrote and none
/// in a pass that did not, and a logout last exactly when it stopped
/// cleanly. Answers (passes, passes that wrote).
fn check_session(life: &[DynRequest], end: Lifecycle, which: usize) -> (usize, usize) {
    let lines: Vec<String> = life.iter().map(DynRequest::line).collect();
    let context = format!("life {which} (ended by {end:?}): {lines:#?}");
    let (login, rest) = life.split_first().expect("requests in every life");
    assert_eq!(login.line(), "POST /REST/Session", "{context}");
    assert_eq!(login.auth, DynAuth::Missing, "{context}");
    assert_eq!(login.body["customer_name"], DYN_CUSTOMER, "{context}");
    assert_eq!(login.body["user_name"], DYN_USER, "{context}");
    assert_eq!(login.body["password"], DYN_PASSWORD, "{context}");
    let token = rest.first().and_then(|r| r.token.clone());
    assert!(token.is_some(), "{context}");
    for request in rest {
        assert_eq!(
            (request.auth, &request.token),
            (DynAuth::Live, &token),
            "every call after the login carries its token ({}): {context}",
            request.line()
        );
        assert_ne!(
            request.line(),
            "POST /REST/Session",
            "one login per life: {context}"
        );
    }
    let rest = match end {
        Lifecycle::Stopped => {
            let (logout, rest) = rest.split_last().expect("a logout");
            assert_eq!(
                logout.line(),
                "DELETE /REST/Session",
                "a clean stop logs out last: {context}"
            );
            rest
        }
        _ => rest,
    };
    assert!(
        rest.iter().all(|r| r.line() != "DELETE /REST/Session"),
        "no logout before the end, none after a kill: {context}"
    );
    assert!(
        rest.iter()
            .all(|r| !r.path.starts_with("/REST/ZoneChanges/")),
        "nothing discarded in a healthy run: {context}"
    );
    // Passes: each begins with its listing.
    let mut passes: Vec<Vec<&DynRequest>> = Vec::new();
    for request in rest {
        let listing = request.method == "GET" && request.path.starts_with("/REST/AllRecord/");
        match passes.last_mut() {
            Some(pass) if !listing => pass.push(request),
            _ => passes.push(vec![request]),
        }
    }
    let publish = format!("PUT /REST/Zone/{ZONE}");
    let mut wrote = 0;
    for (i, pass) in passes.iter().enumerate() {
        let pass_lines: Vec<String> = pass.iter().map(|r| r.line()).collect();
        assert!(
            pass[0].line().starts_with("GET /REST/AllRecord/"),
            "pass {i} begins with its listing: {pass_lines:#?}\n{context}"
        );
        let writes = pass.iter().filter(|r| is_record_write(r)).count();
        let publishes: Vec<usize> = pass
            .iter()
            .enumerate()
            .filter(|(_, r)| r.line() == publish)
            .map(|(at, _)| at)
            .collect();
        if writes == 0 {
            assert!(
                publishes.is_empty(),
                "pass {i} changed nothing and published: {pass_lines:#?}"
            );
        } else {
            wrote += 1;
            assert_eq!(
                publishes,
                vec![pass.len() - 1],
                "pass {i} wrote: one publish, last: {pass_lines:#?}"
            );
            assert_eq!(
                pass[pass.len() - 1].body["publish"],
                true,
                "{pass_lines:#?}"
            );
        }
    }
    (passes.len(), wrote)
}

#[test]
fn dynect() {
    let mut backend = Dyn {
        server: DynServer::start(DYN_CUSTOMER, DYN_USER, DYN_PASSWORD, &[ZONE]),
        dir: tempfile::tempdir().unwrap(),
        ends: Vec::new(),
    };
    let mut problems = dns_scenario::run(&mut backend);
    for problem in &problems {
        eprintln!("scenario problem: {problem}");
    }

    let requests = backend.server.requests();
    let ends = backend.ends.clone();
    assert_eq!(
        ends.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        [Lifecycle::Killed, Lifecycle::Stopped, Lifecycle::Stopped],
        "the scenario's restarts"
    );
    assert_eq!(
        ends.last().unwrap().1,
        requests.len(),
        "no request after the last stop"
    );
    let mut start = 0;
    let mut wrote = Vec::new();
    for (which, (end, at)) in ends.iter().enumerate() {
        let (passes, writing) = check_session(&requests[start..*at], *end, which);
        assert!(passes >= 2, "life {which}: {passes} passes");
        wrote.push(writing);
        start = *at;
    }
    // Steps 1-3 write in the first life; the second (after the kill -9)
    // writes nothing; the orphan (6), the stop (7) and the removal (8)
    // write in the last one.
    assert!(wrote[0] >= 1, "passes that wrote per life: {wrote:?}");
    assert!(wrote[2] >= 3, "passes that wrote per life: {wrote:?}");
    if wrote[1] != 0 {
        problems.push(format!(
            "[dynect] the life after the kill -9 restart wrote in {} passes (passes that wrote per life: {wrote:?})",
            wrote[1]
        ));
    }
    let publishes = requests
        .iter()
        .filter(|r| r.line() == format!("PUT /REST/Zone/{ZONE}"))
        .count();
    assert_eq!(publishes, wrote.iter().sum::<usize>());
    assert_eq!(
        backend.server.serial(ZONE) as usize,
        1 + publishes,
        "each publish bumped the serial once"
    );
    assert_eq!(
        backend.server.live_sessions(),
        1,
        "only the killed clustersitter's session was never logged out"
    );
    dns_scenario::assert_no_problems(&problems);
}

/// Job files whose basenames would share names refuse the start at a
/// `dns_basename` (FILE:LINE:COLUMN), and leave nothing behind: no
/// state, no job, no event.
#[test]
fn job_files_sharing_a_basename_refuse_the_start_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, basename: &str| {
        let path = dir.path().join(format!("{name}.conf"));
        std::fs::write(
            &path,
            format!(
                "{{\n    \"task_configuration\": {{\"name\": \"{name}\", \"command\": \"sleep 600\"}},\n    \"dns_basename\": \"{basename}\",\n    \"deployment_layout\": {{\"zone-a\": {{\"cpu\": 1, \"mem\": 16}}}},\n}}\n"
            ),
        )
        .unwrap();
        path
    };
    let first = write("first", "web.cerebro.test");
    let second = write("second", "a.web.cerebro.test");
    let cluster = Cluster::new(cerebro_tests::ClusterOptions {
        toml_extra: format!(
            "jobs = [\"{}\", \"{}\"]\n",
            first.display(),
            second.display()
        ),
        dns: Some(dns_section("none", "")),
        ..Default::default()
    });
    let (code, stderr) = cluster.boot_refused();
    assert_eq!(code, Some(2), "exit 2: {stderr}");
    assert!(
        stderr.contains(&format!("{}:3:21:", first.display()))
            && stderr.contains("would share names with job 'second'"),
        "{stderr}"
    );
    let state = cluster.path().join("state");
    assert!(
        !state.join("cluster.json").exists(),
        "the refused start wrote the state"
    );
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap_or_default();
    assert!(
        events.is_empty(),
        "the refused start recorded events: {events}"
    );
}
