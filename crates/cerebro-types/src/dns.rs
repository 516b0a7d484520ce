//! DNS names as the clustersitter gives them (issue "DNS"): for a job
//! with `dns_basename`, `N.ZONE.basename` (machine N of the job in ZONE)
//! and `ZONE.basename` (every machine of ZONE whose instance runs), each
//! with an ownership TXT record beside it, the way external-dns marks
//! what it owns. These are the wire shapes the API, the CLI and the UI
//! share; the reconciler and the providers live in `clustersitter::dns`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The record types Cerebro writes (and the only ones it ever deletes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecordType {
    /// IPv4 address (RFC 1035 §3.4.1).
    A,
    /// IPv6 address (RFC 3596).
    #[serde(rename = "AAAA")]
    Aaaa,
    /// Text (RFC 1035 §3.3.14): the ownership record.
    #[serde(rename = "TXT")]
    Txt,
}

impl RecordType {
    /// The type's mnemonic as DNS tools print it (`A`, `AAAA`, `TXT`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Txt => "TXT",
        }
    }

    /// `A` or `AAAA` for an address.
    pub fn for_address(ip: std::net::IpAddr) -> Self {
        if ip.is_ipv4() {
            RecordType::A
        } else {
            RecordType::Aaaa
        }
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One RRset (RFC 2181 §5): every record of one type at one name.
///
/// `name` is absolute, lowercase, without the trailing dot
/// (`0.local-a.ticker.cerebro.test`). `values` are in presentation form:
/// an address as `std::net::IpAddr` prints it, a TXT record's text
/// unquoted (one character-string; Cerebro's texts are short).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Seconds.
    pub ttl: u32,
    pub values: BTreeSet<String>,
}

/// Records gathered into RRsets, as listings (a zone transfer, a REST
/// API, Route 53's pages) give them one at a time.
#[derive(Debug, Clone, Default)]
pub struct RecordSets(std::collections::BTreeMap<(String, RecordType), RecordSet>);

impl RecordSets {
    /// Adds one record; `name` is normalized. An RRset keeps the lowest
    /// TTL among its records (RFC 2181 §5.2 wants them all equal).
    pub fn add(&mut self, name: &str, rtype: RecordType, ttl: u32, value: String) {
        let name = normalize_name(name);
        let set = self
            .0
            .entry((name.clone(), rtype))
            .or_insert_with(|| RecordSet {
                name,
                rtype,
                ttl,
                values: BTreeSet::new(),
            });
        set.ttl = set.ttl.min(ttl);
        set.values.insert(value);
    }

    /// The RRsets, sorted by name and type.
    pub fn into_sets(self) -> Vec<RecordSet> {
        self.0.into_values().collect()
    }
}

/// The text of the ownership TXT record Cerebro puts beside every name it
/// owns, as external-dns writes its registry records:
/// `heritage=cerebro,cerebro/owner=<cluster name>`.
pub fn ownership_text(cluster: &str) -> String {
    format!("heritage=cerebro,cerebro/owner={cluster}")
}

/// The DNS label a cluster zone is written as in names: lowercase, with
/// `_` and `.` (allowed in zone names, not in host names) as `-`.
pub fn zone_label(zone: &str) -> String {
    zone.chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Checks that `name` (normalized) is a host name DNS can carry: at
/// most 253 characters, labels of 1 to 63 letters, digits and '-', none
/// starting or ending with '-' (RFC 1035 §2.3.1 and §2.3.4, RFC 1123
/// §2.1).
///
/// # Errors
/// Why not, in words for people.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let name = normalize_name(name);
    if name.is_empty() {
        return Err("a DNS name must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "'{name}' is {} characters long; DNS allows 253",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("'{name}' has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "'{name}' has a label of {} characters ('{label}'); DNS allows 63",
                label.len()
            ));
        }
        if label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "'{name}' has the label '{label}': host names have letters, digits and '-', not at either end"
            ));
        }
    }
    Ok(())
}

/// A basename as names are built from it: lowercase, no trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `ZONE.basename`: every machine of the zone whose instance runs.
pub fn zone_name(zone: &str, basename: &str) -> String {
    format!("{}.{}", zone_label(zone), normalize_name(basename))
}

/// `N.ZONE.basename`: machine `number` of the job in the zone.
pub fn machine_name(number: u32, zone: &str, basename: &str) -> String {
    format!("{number}.{}", zone_name(zone, basename))
}

/// Whether `name` is `zone` or under it (both normalized first).
pub fn is_in_zone(name: &str, zone: &str) -> bool {
    let (name, zone) = (normalize_name(name), normalize_name(zone));
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// `GET /api/v1/dns`: what the DNS reconciler does and last did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// `none`, `embedded`, `rfc2136`, `route53` or `dynect`.
    pub kind: String,
    /// The DNS zone served (absent for `none` and an embedded server
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Seconds, of every record Cerebro writes.
    pub ttl: u32,
    /// The embedded server's bound UDP and TCP address (`127.0.0.1:8600`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Every RRset Cerebro wants, ownership records included, sorted.
    pub desired: Vec<RecordSet>,
    /// When the provider last held exactly `desired` (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_ms: Option<u64>,
    /// While the provider keeps failing: the last error and when the next
    /// try is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DnsErrorView>,
    /// Names Cerebro wants but another owner holds: left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

/// A streak of failed DNS passes, as [`DnsStatus::error`] shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsErrorView {
    pub message: String,
    /// Failed passes in a row.
    pub failures: u32,
    /// ms since the epoch.
    pub next_attempt_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_from_normalized_parts() {
        assert_eq!(
            machine_name(0, "local-a", "Ticker.Cerebro.Test."),
            "0.local-a.ticker.cerebro.test"
        );
        assert_eq!(zone_name("us_east.1a", "x.y"), "us-east-1a.x.y");
        assert!(is_in_zone("a.cerebro.test", "cerebro.test."));
        assert!(is_in_zone("cerebro.test", "cerebro.test"));
        assert!(!is_in_zone("xcerebro.test", "cerebro.test"));
    }

    #[test]
    fn records_gather_into_sets_with_the_lowest_ttl() {
        let mut sets = RecordSets::default();
        sets.add("A.b.", RecordType::A, 60, "10.0.0.1".into());
        sets.add("a.b", RecordType::A, 30, "10.0.0.2".into());
        sets.add("a.b", RecordType::Txt, 60, "x".into());
        let sets = sets.into_sets();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].name, "a.b");
        assert_eq!(sets[0].ttl, 30);
        assert_eq!(sets[0].values.len(), 2);
    }

    #[test]
    fn host_names_are_checked_for_length_and_letters() {
        assert!(check_host_name("0.local-a.ticker.cerebro.test.").is_ok());
        assert!(check_host_name("0.-x.a")
            .unwrap_err()
            .contains("the label '-x'"));
        assert!(check_host_name(&"a".repeat(64))
            .unwrap_err()
            .contains("label of 64 characters"));
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(check_host_name(&long)
            .unwrap_err()
            .contains("304 characters long; DNS allows 253"));
        assert!(check_host_name("a..b").is_err());
        assert!(check_host_name("a_b.c").is_err());
    }

    #[test]
    fn record_sets_have_a_stable_wire_shape() {
        let set = RecordSet {
            name: "0.a.b".into(),
            rtype: RecordType::Aaaa,
            ttl: 60,
            values: ["::1".to_string()].into(),
        };
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name":"0.a.b","type":"AAAA","ttl":60,"values":["::1"]})
        );
    }
}
