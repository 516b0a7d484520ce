//! The pure half of the DNS reconciler: machine numbers, the RRsets the
//! cluster wants, and the changes that turn what a provider holds into
//! them (see `cerebro_types::dns` for the names).

use super::{Change, RecordSet, RecordType};
use cerebro_types::dns::ownership_text;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Per `ZONE.basename`, machine id → N (as persisted in the state).
pub type Numbers = BTreeMap<String, BTreeMap<String, u32>>;

/// Gives every machine of `hosting` (per `ZONE.basename`, the machines
/// hosting the job there, in the order they should get numbers) its N:
/// a machine keeps the one it has, a new one gets the lowest free, and a
/// machine no longer hosting loses its own (a replacement reuses it).
/// Names nobody hosts any more are dropped. Answers whether anything
/// changed.
pub fn update_numbers(numbers: &mut Numbers, hosting: &BTreeMap<String, Vec<String>>) -> bool {
    let before = numbers.clone();
    numbers.retain(|name, _| hosting.contains_key(name));
    for (name, machines) in hosting {
        let assigned = numbers.entry(name.clone()).or_default();
        assigned.retain(|machine, _| machines.contains(machine));
        for machine in machines {
            if assigned.contains_key(machine) {
                continue;
            }
            let used: BTreeSet<u32> = assigned.values().copied().collect();
            let free = (0..).find(|n| !used.contains(n)).unwrap_or(0);
            assigned.insert(machine.clone(), free);
        }
    }
    numbers.retain(|_, assigned| !assigned.is_empty());
    *numbers != before
}

/// One machine hosting a job with a `dns_basename`, as the desired
/// records need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The machine's id.
    pub machine: String,
    pub job: String,
    /// The job's basename, normalized.
    pub basename: String,
    /// `ZONE.basename` of the machine's zone.
    pub zone_name: String,
    /// N in `N.ZONE.basename`.
    pub number: u32,
    /// The machine's address; `None` until it has one (no record yet).
    pub ip: Option<IpAddr>,
    /// Whether its instance of the job runs (and deployed, for a job with
    /// a recipe) on a ready machine: it is then in `ZONE.basename`.
    pub serving: bool,
}

/// What the cluster wants in DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every RRset, ownership TXT records included, by (name, type).
    pub sets: BTreeMap<(String, RecordType), RecordSet>,
    /// The job each wanted name is for.
    pub owners: BTreeMap<String, String>,
}

impl Desired {
    /// The RRsets, sorted.
    pub fn record_sets(&self) -> Vec<RecordSet> {
        self.sets.values().cloned().collect()
    }
}

/// The RRsets for `hosts`: `N.ZONE.basename` (A or AAAA) for every host
/// with an address, `ZONE.basename` with the addresses of the serving
/// ones (absent when none serves), and beside each name the ownership TXT
/// of `cluster`. Every record has `ttl` seconds.
pub fn desired_records(cluster: &str, ttl: u32, hosts: &[Host]) -> Desired {
    let mut desired = Desired::default();
    let add = |desired: &mut Desired, name: String, job: &str, ip: IpAddr| {
        let rtype = RecordType::for_address(ip);
        desired
            .sets
            .entry((name.clone(), rtype))
            .or_insert_with(|| RecordSet {
                name: name.clone(),
                rtype,
                ttl,
                values: BTreeSet::new(),
            })
            .values
            .insert(ip.to_string());
        desired
            .sets
            .entry((name.clone(), RecordType::Txt))
            .or_insert_with(|| RecordSet {
                name: name.clone(),
                rtype: RecordType::Txt,
                ttl,
                values: [ownership_text(cluster)].into(),
            });
        desired.owners.insert(name, job.to_string());
    };
    for host in hosts {
        let Some(ip) = host.ip else { continue };
        add(
            &mut desired,
            format!("{}.{}", host.number, host.zone_name),
            &host.job,
            ip,
        );
        if host.serving {
            add(&mut desired, host.zone_name.clone(), &host.job, ip);
        }
    }
    desired
}

/// How every cluster's ownership text starts
/// ([`cerebro_types::dns::ownership_text`]).
const OWNERSHIP_PREFIX: &str = "heritage=cerebro,";

/// What [`diff`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the order to apply them: ownership TXT records first, address
    /// records next, the TXT records of names going last.
    pub changes: Vec<Change>,
    /// Names wanted but held by another owner (no ownership TXT of this
    /// cluster): left alone.
    pub conflicts: BTreeSet<String>,
}

/// The changes that make the provider's `listed` RRsets hold `desired`,
/// touching only names whose TXT RRset holds `cluster`'s ownership text.
/// A name listed without it is foreign: never changed, and a conflict
/// when wanted. An owned name not wanted goes, address records first;
/// an owned TXT left alone (a crash between the TXT and its address) is
/// completed when wanted and removed otherwise. An RRset already as
/// wanted (values and TTL) is not sent again; a delete carries the RRset
/// exactly as listed.
pub fn diff(listed: &[RecordSet], desired: &Desired, cluster: &str) -> Diff {
    let owner = ownership_text(cluster);
    let mut held: BTreeMap<&str, BTreeMap<RecordType, &RecordSet>> = BTreeMap::new();
    for set in listed {
        held.entry(set.name.as_str())
            .or_default()
            .insert(set.rtype, set);
    }
    let mut wanted: BTreeMap<&str, BTreeMap<RecordType, &RecordSet>> = BTreeMap::new();
    for ((name, rtype), set) in &desired.sets {
        wanted.entry(name.as_str()).or_default().insert(*rtype, set);
    }
    let names: BTreeSet<&str> = held.keys().chain(wanted.keys()).copied().collect();
    let (mut first, mut middle, mut last) = (Vec::new(), Vec::new(), Vec::new());
    let mut conflicts = BTreeSet::new();
    let empty = BTreeMap::new();
    for name in names {
        let has = held.get(name).unwrap_or(&empty);
        let wants = wanted.get(name).unwrap_or(&empty);
        // Another cluster's ownership beside this one's (two clusters
        // racing for a name) makes the name shared, not this one's: it
        // is left alone, as any foreign name.
        let owned = has.get(&RecordType::Txt).is_some_and(|txt| {
            txt.values.contains(&owner)
                && !txt
                    .values
                    .iter()
                    .any(|text| text != &owner && text.starts_with(OWNERSHIP_PREFIX))
        });
        if !has.is_empty() && !owned {
            if !wants.is_empty() {
                conflicts.insert(name.to_string());
            }
            continue;
        }
        for (rtype, set) in wants {
            if has.get(rtype) != Some(set) {
                let change = Change::Upsert((*set).clone());
                if *rtype == RecordType::Txt {
                    first.push(change);
                } else {
                    middle.push(change);
                }
            }
        }
        for (rtype, set) in has {
            if wants.contains_key(rtype) {
                continue;
            }
            let change = Change::Delete((*set).clone());
            if *rtype == RecordType::Txt {
                last.push(change);
            } else {
                middle.push(change);
            }
        }
    }
    // Within the middle, deletes before upserts would leave a name empty
    // for a moment; upserts first keep it answering.
    middle.sort_by_key(|change| matches!(change, Change::Delete(_)));
    first.extend(middle);
    first.extend(last);
    Diff {
        changes: first,
        conflicts,
    }
}

/// The IP a machine's names point at: the provider's private address
/// when it told one, else the host of the address the machine registered
/// (`host:port`, `[v6]:port` or a bare IP). `None` for none or a host
/// name.
pub fn machine_ip(private_address: Option<&str>, address: Option<&str>) -> Option<IpAddr> {
    let parse = |text: &str| -> Option<IpAddr> {
        let text = text.trim();
        if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
            return Some(socket.ip());
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Some(ip);
        }
        let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
        host.trim_matches(['[', ']']).parse().ok()
    };
    private_address
        .filter(|a| !a.is_empty())
        .and_then(parse)
        .or_else(|| address.and_then(parse))
}

/// Whether two basenames would share names: equal, or one under the
/// other (both normalized).
pub fn basenames_overlap(a: &str, b: &str) -> bool {
    cerebro_types::dns::is_in_zone(a, b) || cerebro_types::dns::is_in_zone(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(machine_n: u32, zone: &str, ip: &str, serving: bool) -> Host {
        Host {
            machine: format!("{zone}-{machine_n}"),
            job: "ticker".into(),
            basename: "ticker.cerebro.test".into(),
            zone_name: format!("{zone}.ticker.cerebro.test"),
            number: machine_n,
            ip: Some(ip.parse().unwrap()),
            serving,
        }
    }

    fn set(name: &str, rtype: RecordType, ttl: u32, values: &[&str]) -> RecordSet {
        RecordSet {
            name: name.into(),
            rtype,
            ttl,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    const OWN: &str = "heritage=cerebro,cerebro/owner=c1";

    #[test]
    fn numbers_are_lowest_free_and_kept_and_reused() {
        let mut numbers = Numbers::new();
        let hosting = |list: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            list.iter()
                .map(|(name, ms)| (name.to_string(), ms.iter().map(|m| m.to_string()).collect()))
                .collect()
        };
        assert!(update_numbers(
            &mut numbers,
            &hosting(&[("a.x", &["m1", "m2", "m3"]), ("b.x", &["m9"])])
        ));
        assert_eq!(numbers["a.x"]["m1"], 0);
        assert_eq!(numbers["a.x"]["m2"], 1);
        assert_eq!(numbers["a.x"]["m3"], 2);
        assert_eq!(numbers["b.x"]["m9"], 0);
        assert!(!update_numbers(
            &mut numbers,
            &hosting(&[("a.x", &["m1", "m2", "m3"]), ("b.x", &["m9"])])
        ));
        // m2 goes: m1 and m3 keep theirs; its replacement reuses 1.
        update_numbers(&mut numbers, &hosting(&[("a.x", &["m1", "m3"])]));
        assert_eq!(numbers.get("b.x"), None);
        update_numbers(
            &mut numbers,
            &hosting(&[("a.x", &["m1", "m3", "m4", "m5"])]),
        );
        assert_eq!(numbers["a.x"]["m4"], 1);
        assert_eq!(numbers["a.x"]["m5"], 3);
        assert_eq!(numbers["a.x"]["m3"], 2);
    }

    #[test]
    fn desired_has_machine_names_zone_names_of_serving_ones_and_owners() {
        let mut hosts = vec![
            host(0, "local-a", "127.0.0.1", true),
            host(1, "local-a", "127.0.0.2", false),
            host(0, "local-b", "::1", true),
        ];
        hosts.push(Host {
            ip: None,
            number: 2,
            ..host(2, "local-a", "127.0.0.3", true)
        });
        let desired = desired_records("c1", 60, &hosts);
        let sets = desired.record_sets();
        let expect = vec![
            set(
                "0.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["127.0.0.1"],
            ),
            set("0.local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
            set(
                "0.local-b.ticker.cerebro.test",
                RecordType::Aaaa,
                60,
                &["::1"],
            ),
            set("0.local-b.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
            set(
                "1.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["127.0.0.2"],
            ),
            set("1.local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
            set(
                "local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["127.0.0.1"],
            ),
            set("local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
            set(
                "local-b.ticker.cerebro.test",
                RecordType::Aaaa,
                60,
                &["::1"],
            ),
            set("local-b.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
        ];
        assert_eq!(sets, expect);
        assert_eq!(desired.owners["local-a.ticker.cerebro.test"], "ticker");
        // Nobody serving: no zone name at all.
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        assert!(!desired.owners.contains_key("local-a.ticker.cerebro.test"));
    }

    #[test]
    fn new_names_get_their_owner_first_and_gone_ones_lose_it_last() {
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        let listed = vec![
            set(
                "1.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["127.0.0.9"],
            ),
            set("1.local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
        ];
        let diff = diff(&listed, &desired, "c1");
        assert_eq!(
            diff.changes,
            vec![
                Change::Upsert(set(
                    "0.local-a.ticker.cerebro.test",
                    RecordType::Txt,
                    60,
                    &[OWN]
                )),
                Change::Upsert(set(
                    "0.local-a.ticker.cerebro.test",
                    RecordType::A,
                    60,
                    &["127.0.0.1"]
                )),
                Change::Delete(listed[0].clone()),
                Change::Delete(listed[1].clone()),
            ]
        );
        assert!(diff.conflicts.is_empty());
    }

    #[test]
    fn nothing_is_sent_when_all_is_as_wanted_and_a_ttl_change_is() {
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        let listed = desired.record_sets();
        assert!(diff(&listed, &desired, "c1").changes.is_empty());
        let mut stale = listed.clone();
        stale[0].ttl = 300;
        assert_eq!(
            diff(&stale, &desired, "c1").changes,
            vec![Change::Upsert(listed[0].clone())]
        );
    }

    #[test]
    fn foreign_names_survive_and_a_wanted_one_is_a_conflict() {
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        let listed = vec![
            // Another cluster's name where this one wants its own.
            set(
                "0.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["10.0.0.1"],
            ),
            set(
                "0.local-a.ticker.cerebro.test",
                RecordType::Txt,
                60,
                &["heritage=cerebro,cerebro/owner=c2"],
            ),
            // The admin's own record, no TXT at all.
            set("www.ticker.cerebro.test", RecordType::A, 300, &["10.0.0.2"]),
        ];
        let diff = diff(&listed, &desired, "c1");
        assert!(diff.changes.is_empty(), "{:?}", diff.changes);
        assert_eq!(
            diff.conflicts,
            ["0.local-a.ticker.cerebro.test".to_string()].into()
        );
    }

    #[test]
    fn a_name_another_cluster_also_claims_is_left_alone() {
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        let shared = vec![
            set(
                "0.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["10.0.0.1"],
            ),
            set(
                "0.local-a.ticker.cerebro.test",
                RecordType::Txt,
                60,
                &[OWN, "heritage=cerebro,cerebro/owner=c2"],
            ),
        ];
        let wanted = diff(&shared, &desired, "c1");
        assert!(wanted.changes.is_empty(), "{:?}", wanted.changes);
        assert_eq!(wanted.conflicts.len(), 1);
        let unwanted = diff(&shared, &Desired::default(), "c1");
        assert!(unwanted.changes.is_empty(), "{:?}", unwanted.changes);
    }

    #[test]
    fn an_owner_record_left_alone_is_completed_or_removed() {
        let lone = set("0.local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]);
        let desired = desired_records("c1", 60, &[host(0, "local-a", "127.0.0.1", false)]);
        assert_eq!(
            diff(std::slice::from_ref(&lone), &desired, "c1").changes,
            vec![Change::Upsert(set(
                "0.local-a.ticker.cerebro.test",
                RecordType::A,
                60,
                &["127.0.0.1"]
            ))]
        );
        assert_eq!(
            diff(std::slice::from_ref(&lone), &Desired::default(), "c1").changes,
            vec![Change::Delete(lone)]
        );
    }

    #[test]
    fn an_address_family_change_replaces_the_rrset() {
        let desired = desired_records("c1", 60, &[host(0, "local-a", "::2", false)]);
        let old = set(
            "0.local-a.ticker.cerebro.test",
            RecordType::A,
            60,
            &["127.0.0.1"],
        );
        let listed = vec![
            old.clone(),
            set("0.local-a.ticker.cerebro.test", RecordType::Txt, 60, &[OWN]),
        ];
        assert_eq!(
            diff(&listed, &desired, "c1").changes,
            vec![
                Change::Upsert(set(
                    "0.local-a.ticker.cerebro.test",
                    RecordType::Aaaa,
                    60,
                    &["::2"]
                )),
                Change::Delete(old),
            ]
        );
    }

    #[test]
    fn machine_ips_come_from_the_private_address_else_the_registered_one() {
        let ip = |p: Option<&str>, a: Option<&str>| machine_ip(p, a).map(|ip| ip.to_string());
        assert_eq!(
            ip(Some("10.0.0.5"), Some("1.2.3.4:9")),
            Some("10.0.0.5".into())
        );
        assert_eq!(ip(None, Some("127.0.0.1:4000")), Some("127.0.0.1".into()));
        assert_eq!(ip(None, Some("[::1]:4000")), Some("::1".into()));
        assert_eq!(ip(Some(""), Some("::1")), Some("::1".into()));
        assert_eq!(ip(None, Some("host.example:4000")), None);
        assert_eq!(ip(None, None), None);
        assert!(basenames_overlap("a.b.c", "b.c"));
        assert!(basenames_overlap("b.c", "B.C."));
        assert!(!basenames_overlap("ab.c", "b.c"));
    }
}
