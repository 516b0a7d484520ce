//! The DNS scenario (`cerebro_tests::dns_scenario`, issue 14 "Tests")
//! with `[dns] kind = "route53"` against moto: a whole local cluster whose
//! clustersitter (the `clustersitter` binary, Route 53 built in) writes
//! the names into a hosted zone, read back here with the SDK's
//! ListResourceRecordSets. Run `scripts/install-moto.sh` first
//! (scripts/test.sh does).

use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use cerebro_tests::dns_scenario::{self, dns_section, under, DnsBackend, ZONE};
use cerebro_tests::moto::MotoServer;
use cerebro_tests::Cluster;
use cerebro_types::dns::{normalize_name, RecordSet, RecordType};
use std::collections::{BTreeMap, BTreeSet};

/// moto's Route 53 through the SDK, from the synchronous scenario.
struct Route53 {
    moto: MotoServer,
    runtime: tokio::runtime::Runtime,
    client: Client,
    zone_id: String,
}

/// A name as Route 53 answers it (`\052`-style octal escapes, a trailing
/// dot) in `RecordSet::name` form.
fn decode_name(name: &str) -> String {
    let mut out = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = (0..3).filter_map(|_| chars.next()).collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(byte) => out.push(byte as char),
                Err(_) => out.push_str(&digits),
            }
        } else {
            out.push(c);
        }
    }
    normalize_name(&out)
}

impl Route53 {
    fn start() -> Self {
        let moto = MotoServer::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto.url())
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .build();
        let client = Client::from_conf(config);
        let created = runtime
            .block_on(
                client
                    .create_hosted_zone()
                    .name(ZONE)
                    .caller_reference("cerebro-e2e")
                    .send(),
            )
            .expect("CreateHostedZone");
        let zone_id = created
            .hosted_zone()
            .expect("a hosted zone")
            .id()
            .to_string();
        Route53 {
            moto,
            runtime,
            client,
            zone_id,
        }
    }

    /// Every RRset of the hosted zone, all pages.
    fn rrsets(&self) -> Vec<ResourceRecordSet> {
        let mut sets = Vec::new();
        let mut next: Option<(String, RrType)> = None;
        loop {
            let mut call = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(&self.zone_id);
            if let Some((name, rtype)) = next.take() {
                call = call.start_record_name(name).start_record_type(rtype);
            }
            let page = self
                .runtime
                .block_on(call.send())
                .expect("ListResourceRecordSets");
            sets.extend(page.resource_record_sets().iter().cloned());
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(rtype)) => next = Some((name.to_string(), rtype.clone())),
                _ => return sets,
            }
        }
    }
}

impl DnsBackend for Route53 {
    fn name(&self) -> &'static str {
        "route53"
    }

    fn dns_section(&self) -> String {
        dns_section(
            "route53",
            &format!("endpoint_url = \"{}\"", self.moto.url()),
        )
    }

    /// The credentials the SDK's default chain finds (as the EC2 tests
    /// give them), and nothing of the host's own AWS config.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn list(&mut self, _cluster: &Cluster, basename: &str) -> BTreeSet<RecordSet> {
        let mut sets: BTreeMap<(String, RecordType), RecordSet> = BTreeMap::new();
        for rrset in self.rrsets() {
            let rtype = match rrset.r#type() {
                RrType::A => RecordType::A,
                RrType::Aaaa => RecordType::Aaaa,
                RrType::Txt => RecordType::Txt,
                _ => continue,
            };
            let name = decode_name(rrset.name());
            let values: BTreeSet<String> = rrset
                .resource_records()
                .iter()
                .map(|r| match rtype {
                    RecordType::Txt => cerebro_tests::dns::unquote_txt(r.value()),
                    _ => r.value().to_string(),
                })
                .collect();
            let ttl = rrset.ttl().unwrap_or_default() as u32;
            let key = (name.clone(), rtype);
            // moto keeps a duplicate RRset on a CREATE of an existing
            // name: that is a defect the listing must show, not merge.
            assert!(
                !sets.contains_key(&key),
                "two {rtype} RRsets at {name} in the hosted zone: {:?}",
                self.rrsets()
            );
            sets.insert(
                key,
                RecordSet {
                    name,
                    rtype,
                    ttl,
                    values,
                },
            );
        }
        sets.into_values().filter(|s| under(s, basename)).collect()
    }

    fn seed(&mut self, _cluster: &mut Cluster, set: &RecordSet) {
        self.upsert(set);
    }

    fn changes(&mut self, _cluster: &Cluster) -> Option<u64> {
        Some(self.changes_served())
    }
}

impl Route53 {
    /// UPSERTs `set` as another tool would.
    fn upsert(&self, set: &RecordSet) {
        let rtype = match set.rtype {
            RecordType::A => RrType::A,
            RecordType::Aaaa => RrType::Aaaa,
            RecordType::Txt => RrType::Txt,
        };
        let mut rrset = ResourceRecordSet::builder()
            .name(format!("{}.", set.name))
            .r#type(rtype)
            .ttl(i64::from(set.ttl));
        for value in &set.values {
            let value = match set.rtype {
                RecordType::Txt => format!("\"{value}\""),
                _ => value.clone(),
            };
            rrset = rrset.resource_records(ResourceRecord::builder().value(value).build().unwrap());
        }
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(rrset.build().unwrap())
            .build()
            .unwrap();
        self.runtime
            .block_on(
                self.client
                    .change_resource_record_sets()
                    .hosted_zone_id(&self.zone_id)
                    .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("seed {set:?}: {e:?}"));
    }

    /// ChangeResourceRecordSets calls moto served, counted in its request
    /// log (Route 53 has no zone serial).
    fn changes_served(&self) -> u64 {
        self.moto
            .log_text()
            .lines()
            .filter(|l| l.contains("\"POST /2013-04-01/hostedzone/") && l.contains("/rrset"))
            .count() as u64
    }
}

#[test]
fn route53_names_follow_the_cluster_through_the_whole_scenario() {
    let mut backend = Route53::start();
    // The change counter reads moto's request log: it must show a change.
    backend.upsert(&dns_scenario::record_set(
        &format!("probe.{ZONE}"),
        RecordType::A,
        60,
        &["192.0.2.1"],
    ));
    assert_eq!(
        backend.changes_served(),
        1,
        "moto's log shows the ChangeResourceRecordSets it served:\n{}",
        backend.moto.log_text()
    );
    let problems = dns_scenario::run(&mut backend);
    dns_scenario::assert_no_problems(&problems);
}
