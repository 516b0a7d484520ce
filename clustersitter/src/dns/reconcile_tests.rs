//! The reconciler against an in-memory provider: what a pass sends, when
//! passes run, and the events of failures, conflicts and updates.

use super::*;
use crate::cluster::Cluster;
use crate::config::Cli;
use async_trait::async_trait;
use cerebro_types::dns::ownership_text;
use clap::Parser;

/// A zone in memory, whole-RRset semantics as the trait says.
#[derive(Default)]
struct MemoryDns {
    sets: Mutex<BTreeMap<(String, RecordType), RecordSet>>,
    /// When set, every call fails with this code.
    fail: Mutex<Option<String>>,
    applies: Mutex<Vec<Vec<Change>>>,
    lists: Mutex<u32>,
}

impl MemoryDns {
    fn put(&self, set: RecordSet) {
        self.sets
            .lock()
            .unwrap()
            .insert((set.name.clone(), set.rtype), set);
    }
    fn names(&self) -> Vec<(String, RecordType)> {
        self.sets.lock().unwrap().keys().cloned().collect()
    }
    fn fail_with(&self, code: Option<&str>) {
        *self.fail.lock().unwrap() = code.map(str::to_string);
    }
    fn check(&self) -> Result<(), DnsError> {
        match &*self.fail.lock().unwrap() {
            Some(code) => Err(DnsError::Server {
                operation: "test",
                code: code.clone(),
                message: "refused by the test".into(),
            }),
            None => Ok(()),
        }
    }
    fn applies(&self) -> Vec<Vec<Change>> {
        self.applies.lock().unwrap().clone()
    }
}

#[async_trait]
impl DnsProvider for MemoryDns {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        self.check()?;
        *self.lists.lock().unwrap() += 1;
        Ok(self
            .sets
            .lock()
            .unwrap()
            .values()
            .filter(|s| is_in_zone(&s.name, basename))
            .cloned()
            .collect())
    }
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError> {
        self.check()?;
        let mut sets = self.sets.lock().unwrap();
        for change in changes {
            match change {
                Change::Upsert(set) => {
                    sets.insert((set.name.clone(), set.rtype), set.clone());
                }
                Change::Delete(set) => {
                    sets.remove(&(set.name.clone(), set.rtype));
                }
            }
        }
        self.applies.lock().unwrap().push(changes.to_vec());
        Ok(())
    }
}

/// The v1 fixture's cluster (`master` on local-a-1 and local-b-3) with
/// `master` named under `master.cerebro.test`, in the DNS zone
/// `cerebro.test`.
fn cluster(dir: &std::path::Path) -> SharedCluster {
    let cluster = restarted_cluster(dir);
    machines_answer(&cluster);
    cluster
}

/// [`cluster`] as just restarted: its machines have not answered a poll.
fn restarted_cluster(dir: &std::path::Path) -> SharedCluster {
    let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
    let mut config = Cli::try_parse_from(["clustersitter", "--state-dir", dir.to_str().unwrap()])
        .unwrap()
        .into_config()
        .unwrap();
    config.cluster_name = "c1".into();
    config.dns.zone = Some("cerebro.test".into());
    config.dns.period = Duration::from_secs(30);
    let cerebro_host::fs::StateFile::Read(state) = crate::store::load(fixture.path()) else {
        panic!("the v1 fixture loads");
    };
    let mut cluster = Cluster::new(Arc::new(config), state, "local");
    let mut spec = cluster.job("master").unwrap().spec.clone();
    spec.dns_basename = Some("master.cerebro.test".into());
    cluster.upsert_job(spec, None);
    Arc::new(Mutex::new(cluster))
}

/// Every ready machine answers a poll (running nothing).
fn machines_answer(cluster: &SharedCluster) {
    let mut cluster = lock(cluster);
    let answers = cluster
        .machine_views()
        .into_iter()
        .filter(|m| m.state == cerebro_types::cluster::MachineState::Ready)
        .filter_map(|m| {
            Some(crate::cluster::PollAnswer {
                machine: m.id,
                address: m.address?,
                tasks: Ok(Vec::new()),
                status: None,
            })
        })
        .collect();
    cluster.record_polls(
        answers,
        cerebro_types::time::now_ms(),
        Duration::from_secs(60),
    );
}

#[tokio::test]
async fn a_restarted_cluster_waits_for_its_machines_before_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = restarted_cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    // Whether the instances run is unknown until the machines answer: a
    // pass now would take every zone name away.
    assert!(!reconciler.tick(t0).await);
    assert!(dns.applies.lock().unwrap().is_empty());
    machines_answer(&cluster);
    assert!(reconciler.tick(t0).await);
    assert!(
        dns.names().contains(&(A0.to_string(), RecordType::A)),
        "{:?}",
        dns.names()
    );
}

fn reconciler(cluster: &SharedCluster, provider: Option<Arc<MemoryDns>>) -> DnsReconciler {
    DnsReconciler::new(
        cluster.clone(),
        provider.map(|p| p as Arc<dyn DnsProvider>),
        Arc::default(),
    )
}

fn events(cluster: &SharedCluster, kind: &str) -> Vec<(String, String)> {
    lock(cluster)
        .events()
        .iter()
        .filter(|e| e.kind.name() == kind)
        .map(|e| (e.subject.name().to_string(), e.message.clone()))
        .collect()
}

const A0: &str = "0.local-a.master.cerebro.test";
const B0: &str = "0.local-b.master.cerebro.test";

#[tokio::test]
async fn a_pass_writes_each_owner_record_first_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    assert!(reconciler.tick(t0).await);
    assert_eq!(
        dns.names(),
        [
            (A0.to_string(), RecordType::A),
            (A0.to_string(), RecordType::Txt),
            (B0.to_string(), RecordType::A),
            (B0.to_string(), RecordType::Txt),
        ]
    );
    let applies = dns.applies();
    assert_eq!(applies.len(), 1, "one request for the whole pass");
    let order: Vec<RecordType> = applies[0].iter().map(|c| c.record_set().rtype).collect();
    assert_eq!(
        order,
        [
            RecordType::Txt,
            RecordType::Txt,
            RecordType::A,
            RecordType::A
        ]
    );
    let txt = dns.sets.lock().unwrap()[&(A0.to_string(), RecordType::Txt)].clone();
    assert_eq!(txt.values, [ownership_text("c1")].into());
    assert_eq!(txt.ttl, 60);
    let updated = events(&cluster, "dns_updated");
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert!(
        updated[0].1.contains(&format!("added {A0}, {B0}")),
        "{updated:?}"
    );
    // Persisted: the numbers and the basename held.
    let saved = crate::store::load(dir.path());
    let cerebro_host::fs::StateFile::Read(saved) = saved else {
        panic!("saved");
    };
    assert_eq!(
        saved.dns_numbers["local-a.master.cerebro.test"]["local-a-1"],
        0
    );
    assert_eq!(saved.dns_basenames["master.cerebro.test"], "master");

    // Nothing changed: no pass until the period, then one that sends nothing.
    assert!(!reconciler.tick(t0 + Duration::from_secs(1)).await);
    assert!(reconciler.tick(t0 + Duration::from_secs(31)).await);
    assert_eq!(dns.applies().len(), 1);

    // A record lost behind its back comes back at the next period.
    dns.sets
        .lock()
        .unwrap()
        .remove(&(B0.to_string(), RecordType::A));
    assert!(reconciler.tick(t0 + Duration::from_secs(62)).await);
    assert_eq!(dns.names().len(), 4);

    // Views show the names.
    let cluster = lock(&cluster);
    let machine = cluster.view_of_machine("local-a-1").unwrap();
    assert_eq!(machine.dns_names, [A0.to_string()]);
    let job = cluster.view_of_job("master").unwrap();
    assert_eq!(
        job.dns_names,
        ["local-a.master.cerebro.test", "local-b.master.cerebro.test"]
    );
    assert!(job
        .instances
        .iter()
        .all(|i| i.dns_name.as_deref() == Some(if i.zone == "local-a" { A0 } else { B0 })));
}

#[tokio::test]
async fn foreign_records_survive_and_a_wanted_foreign_name_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    let foreign = |name: &str, rtype, value: &str| RecordSet {
        name: name.into(),
        rtype,
        ttl: 300,
        values: [value.to_string()].into(),
    };
    dns.put(foreign(
        "www.master.cerebro.test",
        RecordType::A,
        "10.0.0.1",
    ));
    dns.put(foreign(B0, RecordType::A, "10.0.0.2"));
    dns.put(foreign(B0, RecordType::Txt, &ownership_text("c2")));
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    reconciler.tick(t0).await;
    reconciler.tick(t0 + Duration::from_secs(31)).await;
    let sets = dns.sets.lock().unwrap().clone();
    assert_eq!(
        sets[&("www.master.cerebro.test".to_string(), RecordType::A)].values,
        ["10.0.0.1".to_string()].into()
    );
    assert_eq!(
        sets[&(B0.to_string(), RecordType::A)].values,
        ["10.0.0.2".to_string()].into()
    );
    assert!(sets.contains_key(&(A0.to_string(), RecordType::A)));
    let conflicts = events(&cluster, "dns_conflict");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(conflicts[0].1.contains(B0), "{conflicts:?}");
    assert_eq!(
        reconciler.status.lock().unwrap().conflicts,
        [B0.to_string()]
    );
}

#[tokio::test]
async fn failures_back_off_and_are_told_once_per_code_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    dns.fail_with(Some("REFUSED"));
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert!(reconciler.tick(at(0)).await);
    assert!(!reconciler.tick(at(900)).await, "1 s backoff");
    assert!(reconciler.tick(at(1000)).await);
    assert!(!reconciler.tick(at(2900)).await, "2 s backoff");
    dns.fail_with(Some("timeout"));
    assert!(reconciler.tick(at(3000)).await);
    let failed = events(&cluster, "dns_failed");
    assert_eq!(failed.len(), 2, "one per code: {failed:?}");
    assert!(failed[0].1.contains("REFUSED"), "{failed:?}");
    assert!(failed[1].1.contains("timeout"), "{failed:?}");
    let status = reconciler.status.lock().unwrap().clone();
    assert_eq!(status.error.as_ref().unwrap().failures, 3);
    assert!(status.last_sync_ms.is_none());
    assert!(!reconciler.tick(at(6900)).await, "4 s backoff");
    dns.fail_with(None);
    assert!(reconciler.tick(at(7000)).await);
    assert_eq!(events(&cluster, "dns_recovered").len(), 1);
    let status = reconciler.status.lock().unwrap().clone();
    assert!(status.error.is_none() && status.last_sync_ms.is_some());
    assert_eq!(dns.names().len(), 4);
    assert_eq!(
        DnsBackoff::default().after(30),
        Duration::from_secs(300),
        "at most 5 minutes"
    );
}

#[tokio::test]
async fn a_removed_job_loses_its_names_address_first_and_its_basename_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    reconciler.tick(t0).await;
    lock(&cluster).remove_job("follower");
    lock(&cluster).remove_job("master");
    assert!(reconciler.tick(t0 + Duration::from_secs(1)).await);
    assert!(dns.names().is_empty());
    let last = dns.applies().pop().unwrap();
    let kinds: Vec<(bool, RecordType)> = last
        .iter()
        .map(|c| (matches!(c, Change::Delete(_)), c.record_set().rtype))
        .collect();
    assert_eq!(
        kinds,
        [
            (true, RecordType::A),
            (true, RecordType::A),
            (true, RecordType::Txt),
            (true, RecordType::Txt)
        ]
    );
    let updated = events(&cluster, "dns_updated");
    assert!(updated.last().unwrap().1.contains("removed"), "{updated:?}");
    let cerebro_host::fs::StateFile::Read(saved) = crate::store::load(dir.path()) else {
        panic!("saved");
    };
    assert!(saved.dns_basenames.is_empty());
    assert!(saved.dns_numbers.is_empty());
}

#[tokio::test]
async fn a_decommissioned_machine_frees_its_number_for_the_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let dns = Arc::new(MemoryDns::default());
    let mut reconciler = reconciler(&cluster, Some(dns.clone()));
    let t0 = Instant::now();
    reconciler.tick(t0).await;
    lock(&cluster).decommission_lost("local-b-3", "gone");
    reconciler.tick(t0 + Duration::from_secs(1)).await;
    assert!(!dns.names().iter().any(|(name, _)| name == B0));
    assert!(lock(&cluster)
        .view_of_machine("local-b-3")
        .unwrap()
        .dns_names
        .is_empty());
}

#[tokio::test]
async fn kind_none_computes_and_shows_but_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let mut reconciler = reconciler(&cluster, None);
    assert!(!reconciler.tick(Instant::now()).await);
    let status = reconciler.status.lock().unwrap().clone();
    assert_eq!(status.desired.len(), 4);
    assert!(events(&cluster, "dns_updated").is_empty());
}

#[test]
fn a_basename_outside_the_zone_or_over_another_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path());
    let cluster = lock(&cluster);
    let mut spec = cluster.job("follower").unwrap().spec.clone();
    spec.dns_basename = Some("follower.example.com".into());
    // The fixture's jobs name a recipe this test has not: only the
    // basename's problem matters here.
    let basename_problem = |spec: &cerebro_types::job::JobSpec| {
        let errors = cluster.check_job(spec).err()?;
        errors
            .errors
            .into_iter()
            .find(|e| e.field == "dns_basename")
            .map(|e| e.message)
    };
    let message = basename_problem(&spec).unwrap();
    assert!(
        message.contains("not in the DNS zone 'cerebro.test'"),
        "{message}"
    );
    for overlapping in [
        "master.cerebro.test",
        "x.master.cerebro.test",
        "cerebro.test",
    ] {
        spec.dns_basename = Some(overlapping.into());
        let message = basename_problem(&spec).unwrap();
        assert!(
            message.contains("share names with job 'master'"),
            "{overlapping}: {message}"
        );
    }
    spec.dns_basename = Some("follower.cerebro.test".into());
    assert_eq!(basename_problem(&spec), None);
}
