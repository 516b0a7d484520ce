//! The reconciler against a scripted provider, in process: provisioning
//! that fails, the cluster's machine cap, healing a lost machine.

use super::*;
use crate::cluster::{Cluster, ProvisionBackoff};
use crate::config::Cli;
use crate::provider::{FoundMachine, ProviderError, Provisioned};
use cerebro_types::cluster::{ClusterEvent, ProviderDetails};
use clap::Parser;

/// A provider that answers as the test says: provisions fail with an
/// EC2-like code while `fail_with` is set; `status` answers `status`.
#[derive(Default)]
struct Scripted {
    /// What `discover` lists.
    found: Mutex<Vec<FoundMachine>>,
    fail_with: Mutex<Option<&'static str>>,
    provisions: Mutex<Vec<NewMachine>>,
    /// When each provision call came.
    calls: Mutex<Vec<Instant>>,
    status: Mutex<Option<ProviderStatus>>,
    terminated: Mutex<Vec<String>>,
    /// Provisions answer [`ProviderError::OutcomeUnknown`] while set.
    unknown: Mutex<bool>,
    /// What `boot_timeout` answers (`None`: the trait's default).
    boot_timeout: Mutex<Option<Duration>>,
    /// When set, each provision waits for a permit of it first (a silent
    /// cloud API).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// The provider's own limit of machines: a provision past this many
    /// started ones answers [`ProviderError::Limit`].
    limit: Mutex<Option<usize>>,
    /// Machines started so far.
    started: Mutex<usize>,
}

#[async_trait::async_trait]
impl MachineProvider for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn boot_timeout(&self) -> Duration {
        lock(&self.boot_timeout).unwrap_or(Duration::from_secs(60))
    }

    async fn provision(&self, machine: &NewMachine) -> Result<Provisioned, ProviderError> {
        lock(&self.provisions).push(machine.clone());
        lock(&self.calls).push(Instant::now());
        let gate = lock(&self.gate).clone();
        if let Some(gate) = gate {
            gate.acquire().await.expect("the gate stays open").forget();
        }
        if *lock(&self.unknown) {
            return Err(ProviderError::OutcomeUnknown {
                operation: "RunInstances",
                region: "us-west-2".into(),
                message: "the answer was lost and no lookup answered".into(),
            });
        }
        if let Some(limit) = *lock(&self.limit) {
            let mut started = lock(&self.started);
            if *started >= limit {
                return Err(ProviderError::Limit(limit));
            }
            *started += 1;
        }
        if let Some(code) = *lock(&self.fail_with) {
            return Err(ProviderError::Api {
                operation: "RunInstances",
                region: "us-west-2".into(),
                code: code.into(),
                message: format!("the test says {code}"),
                transient: false,
            });
        }
        Ok(Provisioned {
            provider_id: format!("i-{}", machine.id),
            size: machine.size,
            details: ProviderDetails {
                instance_type: Some("t3.small".into()),
                ..ProviderDetails::default()
            },
        })
    }

    async fn status(&self, _provider_id: &str) -> Result<ProviderStatus, ProviderError> {
        Ok(lock(&self.status)
            .clone()
            .unwrap_or(ProviderStatus::Exists {
                state: "running".into(),
            }))
    }

    async fn terminate(&self, machine_id: &str, _provider_id: &str) -> Result<(), ProviderError> {
        lock(&self.terminated).push(machine_id.to_string());
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError> {
        Ok(lock(&self.found).clone())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    cluster: SharedCluster,
    provider: Arc<Scripted>,
    reconciler: Reconciler,
}

/// A cluster of zones local-a and local-b (machines of 2 cores, 1024
/// MB) with `jobs` (a job file's text), reconciled against [`Scripted`].
fn setup(jobs: &str, max_machines: usize) -> Setup {
    let (dir, cluster) = new_cluster(jobs, max_machines);
    let cluster = Arc::new(Mutex::new(cluster));
    let provider = Arc::new(Scripted::default());
    let reconciler = Reconciler::new(
        cluster.clone(),
        provider.clone(),
        Arc::new(Notify::new()),
        "http://127.0.0.1:1".into(),
    );
    Setup {
        _dir: dir,
        cluster,
        provider,
        reconciler,
    }
}

/// The cluster of [`setup`], alone.
fn new_cluster(jobs: &str, max_machines: usize) -> (tempfile::TempDir, Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Cli::try_parse_from([
        "clustersitter",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--failure-threshold",
        "1",
        "--insecure",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    config.provider.max_machines = max_machines;
    let state = crate::store::ClusterState::new(1, Default::default());
    let mut cluster = Cluster::new(Arc::new(config), state, "scripted");
    for job in cerebro_types::job_file::parse_jobs(jobs, "test").unwrap() {
        let recipe = cluster.check_job(&job).unwrap();
        cluster.upsert_job(job, recipe);
    }
    (dir, cluster)
}

fn job(name: &str, cpu: f64, layout: &str) -> String {
    format!(
        r#"{{"deployment_layout": {layout}, "task_configuration": {{"name": "{name}", "command": "sleep 1", "cpu": {cpu}, "mem": 20}}}}"#
    )
}

fn events_of(cluster: &SharedCluster, name: &str) -> Vec<ClusterEvent> {
    lock(cluster)
        .events()
        .iter()
        .filter(|e| e.kind.name() == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn failing_provisioning_is_one_event_per_code_and_waits_longer_each_time() {
    let mut s = setup(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    lock(&s.cluster).set_provision_backoff(ProvisionBackoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(400),
    });
    *lock(&s.provider.fail_with) = Some("InvalidAMIID.NotFound");
    wait_for_provisions(&mut s, 5).await;
    let calls = lock(&s.provider.calls).clone();
    let waits: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    // Each retry waits at least its delay, which doubles up to its most.
    for (wait, least) in waits.iter().zip([50, 100, 200, 400]) {
        assert!(
            *wait >= Duration::from_millis(least),
            "waits grow: {waits:?}"
        );
    }
    let failed = events_of(&s.cluster, "provision_failed");
    assert_eq!(failed.len(), 1, "one event for five failures: {failed:?}");
    let message = &failed[0].message;
    assert!(message.contains("local-a"), "{message}");
    assert!(message.contains("InvalidAMIID.NotFound"), "{message}");
    assert!(message.contains("next attempt in 50 ms"), "{message}");
    assert_eq!(
        events_of(&s.cluster, "machine_provisioning").len(),
        1,
        "retries in a streak are only logged"
    );
    let status = lock(&s.cluster).status();
    let zone = status.zones.iter().find(|z| z.zone == "local-a").unwrap();
    let error = zone.provisioning_error.as_ref().expect("the zone shows it");
    assert_eq!(error.code, "InvalidAMIID.NotFound");
    assert_eq!(error.failures, 5);
    assert!(error.message.contains("the test says"));
    assert!(error.next_attempt_ms > cerebro_types::time::now_ms());
    let unplaced = &status.unplaced[0].reason;
    // As of the last placement, before the last attempt.
    assert!(
        unplaced
            .contains("provisioning there failed 4 times (InvalidAMIID.NotFound), next attempt at"),
        "{unplaced}"
    );
    assert_eq!(lock(&s.cluster).machines().count(), 0, "no record is left");

    // Another code in the same streak is told once too.
    *lock(&s.provider.fail_with) = Some("InsufficientInstanceCapacity");
    wait_for_provisions(&mut s, 7).await;
    assert_eq!(events_of(&s.cluster, "provision_failed").len(), 2);

    // Recovery: one event, the zone's error gone, the next failure told again.
    *lock(&s.provider.fail_with) = None;
    wait_for_provisions(&mut s, 8).await;
    let recovered = events_of(&s.cluster, "provision_recovered");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(
        recovered[0].message.contains("after 7 failed attempts"),
        "{recovered:?}"
    );
    let status = lock(&s.cluster).status();
    assert!(status.zones.iter().all(|z| z.provisioning_error.is_none()));
    assert_eq!(lock(&s.cluster).machines().count(), 1);
}

async fn wait_for_provisions(s: &mut Setup, count: usize) {
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    while lock(&s.provider.provisions).len() < count {
        assert!(Instant::now() < deadline, "{count} provisioning attempts");
        round(&mut s.reconciler).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A launch whose outcome is unknown keeps its machine (no second launch
/// under a new id, which would be a second instance); after the boot
/// timeout that machine is terminated by its machine id and replaced.
#[tokio::test]
async fn a_launch_of_unknown_outcome_is_waited_for_then_terminated_by_machine_id() {
    let mut s = setup(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    lock(&s.cluster).set_provision_backoff(ProvisionBackoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(50),
    });
    let boot_timeout = Duration::from_millis(600);
    *lock(&s.provider.boot_timeout) = Some(boot_timeout);
    *lock(&s.provider.unknown) = true;
    round(&mut s.reconciler).await;
    *lock(&s.provider.unknown) = false;
    let first = {
        let cluster = lock(&s.cluster);
        let machines: Vec<_> = cluster.machines().collect();
        assert_eq!(machines.len(), 1, "the record is kept");
        assert_eq!(machines[0].state(), MachineState::Provisioning);
        assert_eq!(machines[0].provider_id, None);
        machines[0].id.clone()
    };
    let failed = events_of(&s.cluster, "provision_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].message.contains("may have happened") && failed[0].message.contains(&first),
        "{failed:?}"
    );
    let status = lock(&s.cluster).status();
    let zone = status.zones.iter().find(|z| z.zone == "local-a").unwrap();
    assert_eq!(
        zone.provisioning_error.as_ref().map(|e| e.code.as_str()),
        Some("outcome_unknown"),
        "the zone counts it as a failure"
    );
    // While it may still come up, nothing else is launched for it.
    let waiting_until = Instant::now() + boot_timeout / 2;
    while Instant::now() < waiting_until {
        round(&mut s.reconciler).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lock(&s.provider.provisions).len(), 1);
    assert!(lock(&s.provider.terminated).is_empty());
    // Then it is terminated by its machine id and replaced.
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    while lock(&s.provider.provisions).len() < 2 || lock(&s.cluster).machine(&first).is_some() {
        assert!(Instant::now() < deadline, "terminated and replaced");
        round(&mut s.reconciler).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*lock(&s.provider.terminated), vec![first.clone()]);
    let provisions = lock(&s.provider.provisions).clone();
    assert_ne!(provisions[1].id, first);
    while lock(&s.cluster).instances_of("web")[0].machine.as_deref()
        != Some(provisions[1].id.as_str())
    {
        assert!(Instant::now() < deadline, "placed on the replacement");
        round(&mut s.reconciler).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A provider that does not answer stops nothing else: rounds end, and
/// placement goes on, while the call waits in the background.
#[tokio::test]
async fn a_silent_provider_does_not_stall_the_rounds() {
    let mut s = setup(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *lock(&s.provider.gate) = Some(gate.clone());
    let bounded = Duration::from_secs(5);
    tokio::time::timeout(bounded, s.reconciler.tick())
        .await
        .expect("a round ends while the provider is silent");
    let machine = lock(&s.cluster).machines().next().unwrap().id.clone();
    // A new job is placed meanwhile (on the machine being provisioned,
    // which it fits beside the first).
    {
        let mut cluster = lock(&s.cluster);
        let spec = cerebro_types::job_file::parse_jobs(
            &job("api", 0.5, r#"{"local-a": {"cpu": 1}}"#),
            "test",
        )
        .unwrap()
        .remove(0);
        cluster.upsert_job(spec, None);
    }
    tokio::time::timeout(bounded, s.reconciler.tick())
        .await
        .expect("another round ends");
    assert_eq!(
        lock(&s.cluster).instances_of("api")[0].machine.as_deref(),
        Some(machine.as_str())
    );
    let deadline = Instant::now() + bounded;
    while lock(&s.provider.provisions).is_empty() {
        assert!(Instant::now() < deadline, "the provider is asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(bounded, s.reconciler.tick())
        .await
        .expect("a round ends while the call waits");
    assert_eq!(lock(&s.provider.provisions).len(), 1, "asked once");
    assert_eq!(
        lock(&s.cluster).machine(&machine).unwrap().provider_id,
        None
    );
    // The answer comes: the next round records it.
    gate.add_permits(1);
    s.reconciler.settle_provisions().await;
    assert_eq!(
        lock(&s.cluster).machine(&machine).unwrap().provider_id,
        Some(format!("i-{machine}"))
    );
}

/// A machine whose record went while its provisioning call was in flight
/// is terminated once the call answers: nothing is left unknown.
#[tokio::test]
async fn a_machine_started_after_its_record_went_is_terminated() {
    let mut s = setup(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *lock(&s.provider.gate) = Some(gate.clone());
    s.reconciler.tick().await;
    let machine = lock(&s.cluster).machines().next().unwrap().id.clone();
    lock(&s.cluster).machine_terminated(&machine);
    gate.add_permits(1);
    s.reconciler.settle_provisions().await;
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    while lock(&s.provider.terminated).is_empty() {
        assert!(Instant::now() < deadline, "terminated");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*lock(&s.provider.terminated), vec![machine]);
}

#[test]
fn the_backoff_doubles_up_to_its_most() {
    let backoff = ProvisionBackoff::default();
    let secs: Vec<u64> = (1..=10).map(|n| backoff.after(n).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    assert_eq!(backoff.after(u32::MAX).as_secs(), 600);
}

#[tokio::test]
async fn no_machine_is_asked_for_beyond_max_machines() {
    // Four instances of 2 cores: four machines wanted, two allowed.
    let mut s = setup(&job("big", 2.0, r#"{"local-a": {"cpu": 4}}"#), 2);
    for _ in 0..5 {
        round(&mut s.reconciler).await;
    }
    assert_eq!(lock(&s.provider.provisions).len(), 2);
    assert_eq!(lock(&s.cluster).machines().count(), 2);
    let status = lock(&s.cluster).status();
    let capped: Vec<&str> = status
        .unplaced
        .iter()
        .map(|u| u.reason.as_str())
        .filter(|r| r.contains("limit of 2 machines (max_machines)"))
        .collect();
    assert_eq!(capped.len(), 2, "{:?}", status.unplaced);
    let provisioning = events_of(&s.cluster, "machine_provisioning");
    assert_eq!(provisioning.len(), 2);
    assert!(events_of(&s.cluster, "provision_failed").is_empty());
    // It says what the machine is for, not the zone's largest size.
    assert!(
        provisioning[0]
            .message
            .starts_with("provisioning in local-a for 2 cores and 20 MB: big#0"),
        "{provisioning:?}"
    );
}

/// The pending reasons of `job`'s instances that have one, as (code, message).
fn pending_of(cluster: &SharedCluster, job: &str) -> Vec<(String, String)> {
    lock(cluster)
        .instances_of(job)
        .into_iter()
        .filter_map(|i| i.pending)
        .map(|p| (p.code, p.message))
        .collect()
}

/// The issue's scenario with the cluster's own cap: eleven instances that
/// each need a machine, `max_machines` 8. Eight machines are asked for,
/// once each; the other three instances say the limit holds them, every
/// round the same, with no event per round; the dry run says so first.
#[tokio::test]
async fn more_instances_than_max_machines_wait_on_the_limit_quietly() {
    let mut s = setup(&job("ticker", 2.0, r#"{"local-a": {"cpu": 11}}"#), 8);
    assert_eq!(
        lock(&s.cluster).plan_warnings(&[]),
        vec![
            "the plan needs 11 new machines in zone local-a but max_machines (8, with 0 machines already) lets only 8 be added"
                .to_string(),
            "3 instances would wait for a machine that max_machines does not allow".to_string(),
        ]
    );
    let mut counts = Vec::new();
    for _ in 0..6 {
        round(&mut s.reconciler).await;
        counts.push(lock(&s.cluster).events().iter().count());
    }
    assert_eq!(lock(&s.provider.provisions).len(), 8);
    assert_eq!(events_of(&s.cluster, "machine_provisioning").len(), 8);
    assert!(events_of(&s.cluster, "provision_failed").is_empty());
    assert!(
        counts.windows(2).skip(1).all(|w| w[0] == w[1]),
        "rounds at the limit add no events: {counts:?}"
    );
    let limited: Vec<(String, String)> = pending_of(&s.cluster, "ticker")
        .into_iter()
        .filter(|(code, _)| code == "provider_limit")
        .collect();
    assert_eq!(limited.len(), 3, "{limited:?}");
    assert!(
        limited[0]
            .1
            .starts_with("the cluster's limit of 8 machines (max_machines) is reached"),
        "{limited:?}"
    );
    let warnings = lock(&s.cluster).plan_warnings(&[]);
    assert_eq!(
        warnings[0],
        "the plan needs 3 new machines in zone local-a but max_machines (8, with 8 machines already) lets only 0 be added"
    );
    let job = lock(&s.cluster).view_of_job("ticker").unwrap();
    assert_eq!(job.health, cerebro_types::health::JobHealth::Failing);
    assert_eq!(job.health_counts.pending, 11);
}

/// The issue's scenario as the provider saw it: the provider's own limit
/// (8) is below the cluster's. The failure is one provision_failed event
/// however many attempts follow, each attempt waits longer, the zone's
/// status counts the attempts, and the waiting instances name the limit.
#[tokio::test]
async fn the_providers_limit_is_one_event_with_a_count_and_a_slowing_retry() {
    let mut s = setup(&job("ticker", 2.0, r#"{"local-a": {"cpu": 11}}"#), 20);
    lock(&s.cluster).set_provision_backoff(ProvisionBackoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(400),
    });
    *lock(&s.provider.limit) = Some(8);
    // Eight start, then attempts 9.. fail: five failed attempts.
    wait_for_provisions(&mut s, 8 + 5).await;
    let provisioning_then = events_of(&s.cluster, "machine_provisioning").len();
    wait_for_provisions(&mut s, 8 + 7).await;
    let failed = events_of(&s.cluster, "provision_failed");
    assert_eq!(failed.len(), 1, "one event for seven failures: {failed:?}");
    assert!(
        failed[0]
            .message
            .contains("the provider's limit of 8 machines is reached"),
        "{failed:?}"
    );
    assert_eq!(
        events_of(&s.cluster, "machine_provisioning").len(),
        provisioning_then,
        "retries make no machine_provisioning events"
    );
    let calls = lock(&s.provider.calls).clone();
    let waits: Vec<Duration> = calls[8..].windows(2).map(|w| w[1] - w[0]).collect();
    for (wait, least) in waits.iter().zip([50, 100, 200, 400, 400]) {
        assert!(
            *wait >= Duration::from_millis(least),
            "waits grow: {waits:?}"
        );
    }
    let status = lock(&s.cluster).status();
    let zone = status.zones.iter().find(|z| z.zone == "local-a").unwrap();
    let error = zone.provisioning_error.as_ref().expect("the zone shows it");
    assert_eq!((error.code.as_str(), error.failures), ("limit", 7));
    let limited: Vec<(String, String)> = pending_of(&s.cluster, "ticker")
        .into_iter()
        .filter(|(code, _)| code == "provider_limit")
        .collect();
    assert_eq!(limited.len(), 3, "{limited:?}");
    assert!(
        limited[0]
            .1
            .starts_with("the provider's limit of 8 machines is reached (in local-a; 7 attempts failed, next at "),
        "{limited:?}"
    );
}

/// The replacement of a lost machine, step by step, with what the
/// provider said in each event; a machine the provider calls gone never
/// holds a new instance.
async fn heal(status: ProviderStatus, said: &str) {
    let mut s = setup(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    // Asked for, then given its instance.
    round(&mut s.reconciler).await;
    round(&mut s.reconciler).await;
    let first = lock(&s.cluster).machines().next().unwrap().id.clone();
    assert_eq!(
        lock(&s.cluster).instances_of("web")[0].machine.as_deref(),
        Some(first.as_str())
    );
    // It comes up at an address that then stops answering.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    {
        let mut cluster = lock(&s.cluster);
        let capacity = cluster.machine(&first).unwrap().capacity;
        cluster.machine_registered(&first, &address, capacity);
        let answer = crate::cluster::PollAnswer {
            machine: first.clone(),
            address: address.clone(),
            tasks: Ok(Vec::new()),
            status: None,
        };
        cluster.record_polls(vec![answer], now_ms(), Duration::from_secs(60));
        assert_eq!(
            cluster.machine(&first).unwrap().state(),
            MachineState::Ready
        );
    }
    *lock(&s.provider.status) = Some(status);
    // A second job arrives while it is lost: it must not land there.
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    loop {
        round(&mut s.reconciler).await;
        let cluster = lock(&s.cluster);
        let lost = cluster
            .machine(&first)
            .is_none_or(|m| m.state() == MachineState::Decommissioning);
        if lost {
            break;
        }
        assert!(Instant::now() < deadline, "the machine to be lost");
    }
    {
        // Too big to share a machine with `web`: its own machine, and
        // `web` a replacement of its own once the lost one is gone.
        let extra = cerebro_types::job_file::parse_jobs(
            &job("late", 1.5, r#"{"local-a": {"cpu": 1}}"#),
            "test",
        )
        .unwrap()
        .remove(0);
        lock(&s.cluster).upsert_job(extra, None);
    }
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    loop {
        round(&mut s.reconciler).await;
        {
            let cluster = lock(&s.cluster);
            assert!(
                cluster.assignments_on(&first).all(|a| a.key.job == "web"),
                "nothing new goes to a lost machine"
            );
            let zone = cluster.status();
            let zone = zone.zones.iter().find(|z| z.zone == "local-a").unwrap();
            let others = cluster
                .machines()
                .filter(|m| m.zone == "local-a" && m.id != first)
                .count();
            assert_eq!(zone.machines, others, "a lost machine is no capacity");
            let web = cluster.instances_of("web");
            let moved = web[0].machine.as_deref().is_some_and(|m| m != first);
            if moved && cluster.machine(&first).is_none() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the instance to move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*lock(&s.provider.terminated), std::slice::from_ref(&first));
    let lost = events_of(&s.cluster, "machine_lost");
    assert!(lost[0].message.contains(said), "{}", lost[0].message);
    let terminated = events_of(&s.cluster, "machine_terminated");
    assert!(
        terminated[0].message.contains(&format!("i-{first}")),
        "the termination names the provider's id: {}",
        terminated[0].message
    );
    let fenced = events_of(&s.cluster, "machine_fenced");
    assert!(fenced[0].message.contains("1 instances"), "{fenced:?}");
    let provisioning = events_of(&s.cluster, "machine_provisioning");
    assert!(
        provisioning
            .iter()
            .any(|e| e.message.contains(&format!("replacing {first}"))),
        "{provisioning:?}"
    );
    let web_on = lock(&s.cluster).instances_of("web")[0]
        .machine
        .clone()
        .unwrap();
    let placed = events_of(&s.cluster, "instance_placed");
    assert!(
        placed
            .iter()
            .any(|e| e.subject.name() == "web" && e.message.contains(&web_on)),
        "{placed:?}"
    );
}

#[tokio::test]
async fn a_terminated_machine_is_replaced_and_its_instances_redeployed() {
    heal(
        ProviderStatus::Gone {
            state: "terminated".into(),
        },
        "the provider says it is terminated",
    )
    .await;
}

#[tokio::test]
async fn a_running_machine_that_does_not_answer_is_terminated_and_replaced() {
    heal(
        ProviderStatus::Exists {
            state: "running".into(),
        },
        "the provider says it is still running but it does not answer",
    )
    .await;
}

/// A cloud may still list an instance it terminated: found so at start,
/// it is not adopted, and a known one is decommissioned, never capacity.
#[tokio::test]
async fn a_machine_listed_but_gone_at_start_is_never_capacity() {
    let (_dir, mut cluster) = new_cluster(&job("web", 1.0, r#"{"local-a": {"cpu": 1}}"#), 10);
    let provider = Scripted::default();
    let found = |id: &str| FoundMachine {
        machine_id: id.into(),
        zone: "local-a".into(),
        provider_id: format!("i-{id}"),
        address: None,
        size: None,
        details: ProviderDetails::default(),
    };
    *lock(&provider.found) = vec![found("local-a-1"), found("local-a-2")];
    *lock(&provider.status) = Some(ProviderStatus::Gone {
        state: "terminated".into(),
    });
    crate::recovery::recover_machines(&mut cluster, &provider).await;
    assert_eq!(cluster.machines().count(), 0, "nothing adopted");
    assert!(events_of_locked(&cluster, "machine_adopted").is_empty());
    *lock(&provider.status) = None;
    crate::recovery::recover_machines(&mut cluster, &provider).await;
    assert_eq!(cluster.machines().count(), 2, "running ones are adopted");
}

fn events_of_locked(cluster: &Cluster, name: &str) -> Vec<ClusterEvent> {
    cluster
        .events()
        .iter()
        .filter(|e| e.kind.name() == name)
        .cloned()
        .collect()
}

/// One reconcile round, and the provisioning it asked for answered.
async fn round(reconciler: &mut Reconciler) {
    reconciler.tick().await;
    reconciler.settle_provisions().await;
}

/// A machinesitter that keeps what it is PUT (spec and deployment) and
/// reports it back, and records every PUT body.
#[derive(Default)]
struct FakeMachine {
    tasks: Mutex<BTreeMap<String, cerebro_types::machine::TaskView>>,
    puts: Mutex<Vec<serde_json::Value>>,
}

/// Serves `fake` on 127.0.0.1; answers its address.
async fn serve_fake(fake: Arc<FakeMachine>) -> String {
    use axum::extract::{Path, State};
    use axum::routing::get;
    use axum::Json;
    async fn tasks(
        State(fake): State<Arc<FakeMachine>>,
    ) -> Json<Vec<cerebro_types::machine::TaskView>> {
        Json(lock(&fake.tasks).values().cloned().collect())
    }
    async fn put(
        State(fake): State<Arc<FakeMachine>>,
        Path(name): Path<String>,
        Json(mut body): Json<serde_json::Value>,
    ) -> Json<cerebro_types::machine::PutReply> {
        lock(&fake.puts).push(body.clone());
        let deployment = body
            .as_object_mut()
            .and_then(|b| b.remove("deployment"))
            .map(|d| serde_json::from_value(d).unwrap());
        let task: cerebro_types::machine::TaskView = serde_json::from_value(serde_json::json!({
            "name": name, "spec": body, "run_requested": true, "deleting": false,
            "status": null, "tasksitter": null, "sitter_starts": 0, "last_error": null,
        }))
        .unwrap();
        let task = cerebro_types::machine::TaskView { deployment, ..task };
        lock(&fake.tasks).insert(name, task.clone());
        Json(cerebro_types::machine::PutReply {
            result: cerebro_types::machine::PutResult::Created,
            task,
        })
    }
    let app = axum::Router::new()
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/tasks/{name}", axum::routing::put(put))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A task of a job with a recipe is PUT with its deployment, so the
/// machine (a new one too, such as one replacing a lost machine) installs
/// the release before the task first starts; a report with the same
/// deployment needs no PUT, one with another does.
#[tokio::test]
async fn a_task_is_put_with_its_deployment_and_put_again_when_it_differs() {
    let jobs = r#"[{
        "deployment_recipe": "release-tarball",
        "recipe_options": {"url": "http://127.0.0.1:1/app.tar.gz", "sha256": "00000000000000000000000000000000000000000000000000000000000000aa"},
        "deployment_layout": {"local-a": {"cpu": 1}},
        "task_configuration": {"name": "web", "command": "./serve", "cpu": 0.5, "mem": 10}
    }]"#;
    let mut s = setup(jobs, 4);
    let fake = Arc::new(FakeMachine::default());
    let address = serve_fake(fake.clone()).await;
    {
        let mut cluster = lock(&s.cluster);
        let mut record = crate::store::MachineRecord::new(
            "local-a-9",
            "local-a",
            1,
            cerebro_types::machine::Resources {
                cpu: 2.0,
                mem_mb: 1024.0,
            },
        );
        record.address = Some(address);
        cluster.machine_joined(record);
    }
    let deadline = Instant::now() + cerebro_tests::TIMEOUT;
    while lock(&fake.puts).is_empty() {
        assert!(Instant::now() < deadline, "a PUT of web#0");
        round(&mut s.reconciler).await;
    }
    let body = lock(&fake.puts)[0].clone();
    assert_eq!(body["name"], "web#0");
    let deployment = &body["deployment"];
    assert_eq!(deployment["recipe_name"], "release-tarball");
    assert_eq!(deployment["recipe_source"], "builtin:release-tarball");
    assert_eq!(
        deployment["options"]["url"],
        "http://127.0.0.1:1/app.tar.gz"
    );
    assert_eq!(
        (
            &deployment["instance"],
            &deployment["zone"],
            &deployment["machine"],
            &deployment["version"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!("local-a"),
            &serde_json::json!("local-a-9"),
            &serde_json::Value::Null
        )
    );
    // Reported back as PUT: nothing more to do.
    round(&mut s.reconciler).await;
    round(&mut s.reconciler).await;
    assert_eq!(lock(&fake.puts).len(), 1);
    // The machine reports another deployment (say, an older one): PUT again.
    if let Some(task) = lock(&fake.tasks).get_mut("web#0") {
        if let Some(d) = task.deployment.as_mut() {
            d.version = Some("v0".into());
        }
    }
    round(&mut s.reconciler).await;
    round(&mut s.reconciler).await;
    let puts = lock(&fake.puts);
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[1]["deployment"]["version"], serde_json::Value::Null);
}
