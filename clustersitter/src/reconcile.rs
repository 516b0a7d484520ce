//! The reconciliation loop: poll every machine, notice failures, place
//! instances (a pure function), provision what placement asks for, move
//! rolling updates forward, make every machine run exactly its assigned
//! tasks, and retire idle machines. Every call to a machine is idempotent
//! (PUT a task, DELETE a task), so a lost or repeated call converges.

use crate::cluster::{lock, MachineReport, SharedCluster};
use crate::placement::{place, PlacementInput};
use crate::provider::{MachineProvider, NewMachine};
use crate::store::MachineRecord;
use cerebro_types::cluster::{ClusterEventKind, MachineState};
use cerebro_types::job::instance_task_name;
use cerebro_types::machine::{MachineStatus, TaskView};
use cerebro_types::time::now_ms;
use cerebro_types::TaskSpec;
use cerebro_web::html::encode_path_segment;
use cerebro_web::HttpClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A machine that has not answered this long after being provisioned counts as failed.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(60);
/// After a failed provision, the zone waits this long before the next try.
const PROVISION_RETRY: Duration = Duration::from_secs(10);

pub struct Reconciler {
    cluster: SharedCluster,
    provider: Arc<dyn MachineProvider>,
    notify: Arc<Notify>,
    /// Calls that change a machine: idempotent, so retried.
    client: HttpClient,
    /// Polls: one attempt each, bounded by the poll interval.
    poll_client: HttpClient,
    cluster_url: String,
    terminating: Arc<Mutex<BTreeSet<String>>>,
    provision_not_before: BTreeMap<String, Instant>,
    /// The last failed call per (machine, task), so a call that keeps
    /// failing the same way is one event, not one per tick.
    sync_failures: BTreeMap<(String, String), String>,
}

/// One machine's reconcile work, computed under the lock and done without it.
struct SyncWork {
    machine: String,
    address: String,
    put: Vec<TaskSpec>,
    delete: Vec<String>,
}

impl Reconciler {
    pub fn new(
        cluster: SharedCluster,
        provider: Arc<dyn MachineProvider>,
        notify: Arc<Notify>,
        cluster_url: String,
    ) -> Self {
        let poll_interval = lock(&cluster).config.poll_interval;
        let poll_timeout = poll_interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
        Self {
            cluster,
            provider,
            notify,
            client: HttpClient::new(Duration::from_secs(10), 3),
            poll_client: HttpClient::new(poll_timeout, 1),
            cluster_url,
            terminating: Arc::new(Mutex::new(BTreeSet::new())),
            provision_not_before: BTreeMap::new(),
            sync_failures: BTreeMap::new(),
        }
    }

    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let poll_interval = lock(&self.cluster).config.poll_interval;
        loop {
            self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(poll_interval) => {}
                _ = self.notify.notified() => {}
                _ = shutdown.changed() => return self,
            }
        }
    }

    pub async fn tick(&mut self) {
        self.poll().await;
        self.handle_failures().await;
        self.place_and_provision().await;
        self.advance_rollouts();
        self.sync_tasks().await;
        self.retire_idle();
        self.terminate_decommissioning();
    }

    /// Asks every machine for its tasks and status, concurrently.
    async fn poll(&mut self) {
        let targets: Vec<(String, String)> = lock(&self.cluster)
            .state
            .machines
            .values()
            .filter(|m| m.state() != MachineState::Decommissioning)
            .filter_map(|m| Some((m.id.clone(), m.address.clone()?)))
            .collect();
        let mut polls = tokio::task::JoinSet::new();
        for (id, address) in targets {
            let client = self.poll_client.clone();
            polls.spawn(async move {
                let tasks = client
                    .get_json::<Vec<TaskView>>(&format!("http://{address}/api/v1/tasks"), None)
                    .await;
                let status = match &tasks {
                    Ok(_) => client
                        .get_json::<MachineStatus>(&format!("http://{address}/api/v1/status"), None)
                        .await
                        .ok(),
                    Err(_) => None,
                };
                (id, address, tasks, status)
            });
        }
        let answers = polls.join_all().await;
        let mut guard = lock(&self.cluster);
        let cluster = &mut *guard;
        let threshold = cluster.config.failure_threshold;
        let now = now_ms();
        let mut events = Vec::new();
        let mut changed = false;
        for (id, address, tasks, status) in answers {
            let Some(machine) = cluster.state.machines.get_mut(&id) else {
                continue;
            };
            if machine.address.as_deref() != Some(address.as_str()) {
                continue;
            }
            match tasks {
                Ok(tasks) => {
                    if machine.state() != MachineState::Ready
                        && machine.move_to(MachineState::Ready)
                    {
                        events.push((
                            id.clone(),
                            ClusterEventKind::MachineReady,
                            format!("reachable at {address}; ready"),
                        ));
                        changed = true;
                    }
                    machine.missed_polls = 0;
                    machine.last_seen_ms = Some(now);
                    if let Some(status) = &status {
                        if status.capacity != machine.capacity {
                            machine.capacity = status.capacity;
                            changed = true;
                        }
                    }
                    let report = MachineReport {
                        tasks: tasks.into_iter().map(|t| (t.name.clone(), t)).collect(),
                        status,
                    };
                    if let Some(previous) = cluster.reports.get(&id) {
                        events.extend(task_changes(&id, previous, &report));
                    }
                    cluster.reports.insert(id, report);
                }
                Err(error) => {
                    machine.missed_polls += 1;
                    if machine.state() == MachineState::Ready
                        && machine.missed_polls >= threshold
                        && machine.move_to(MachineState::Unreachable)
                    {
                        changed = true;
                        events.push((
                            id.clone(),
                            ClusterEventKind::MachineUnreachable,
                            format!(
                                "unreachable: missed {} polls ({error})",
                                machine.missed_polls
                            ),
                        ));
                    }
                }
            }
        }
        // A machine that never came up is as good as unreachable.
        for machine in cluster.state.machines.values_mut() {
            let waited = Duration::from_millis(now.saturating_sub(machine.created_ms));
            if machine.state() == MachineState::Provisioning
                && machine.last_seen_ms.is_none()
                && waited > PROVISION_TIMEOUT
                && machine.move_to(MachineState::Unreachable)
            {
                changed = true;
                events.push((
                    machine.id.clone(),
                    ClusterEventKind::MachineNeverCameUp,
                    format!("did not come up within {PROVISION_TIMEOUT:?} of being provisioned"),
                ));
            }
        }
        for (machine, kind, message) in events {
            cluster.event(kind, &machine, message);
        }
        if changed {
            persist(cluster);
        }
    }

    /// Unreachable machines: ask the provider whether they still exist, then
    /// decommission them either way; placement moves their instances.
    async fn handle_failures(&mut self) {
        let unreachable: Vec<(String, Option<String>)> = lock(&self.cluster)
            .state
            .machines
            .values()
            .filter(|m| m.state() == MachineState::Unreachable)
            .map(|m| (m.id.clone(), m.provider_id.clone()))
            .collect();
        for (id, provider_id) in unreachable {
            let verdict = match &provider_id {
                None => "the provider does not know it".to_string(),
                Some(pid) => match self.provider.exists(pid).await {
                    Ok(true) => "the provider says it still exists but it does not answer".into(),
                    Ok(false) => "the provider says it is gone".into(),
                    Err(error) => format!("the provider cannot tell ({error})"),
                },
            };
            let mut cluster = lock(&self.cluster);
            if let Some(machine) = cluster.state.machines.get_mut(&id) {
                machine.move_to(MachineState::Decommissioning);
                cluster.event(
                    ClusterEventKind::MachineLost,
                    &id,
                    format!("{verdict}: decommissioning it and rescheduling its instances"),
                );
                persist(&cluster);
            }
        }
    }

    async fn place_and_provision(&mut self) {
        let requests = {
            let mut guard = lock(&self.cluster);
            let cluster = &mut *guard;
            let jobs: Vec<_> = cluster
                .state
                .jobs
                .values()
                .map(|j| j.spec.clone())
                .collect();
            let machines = cluster.placement_machines();
            let zones = cluster.config.zones();
            let plan = place(&PlacementInput {
                jobs: &jobs,
                machines: &machines,
                previous: &cluster.state.assignments,
                zone_machine_size: &zones,
            });
            let before: BTreeMap<_, _> = cluster
                .state
                .assignments
                .iter()
                .map(|a| (a.key.clone(), a.machine.clone()))
                .collect();
            let mut events: Vec<(String, ClusterEventKind, String)> = Vec::new();
            for assignment in &plan.assignments {
                match before.get(&assignment.key) {
                    Some(machine) if *machine == assignment.machine => {}
                    Some(machine) => events.push((
                        assignment.key.job.clone(),
                        ClusterEventKind::InstanceMoved,
                        format!(
                            "instance {} moves from {machine} to {}",
                            assignment.key.slot, assignment.machine
                        ),
                    )),
                    None => events.push((
                        assignment.key.job.clone(),
                        ClusterEventKind::InstancePlaced,
                        format!(
                            "instance {} in {} placed on {}",
                            assignment.key.slot, assignment.key.zone, assignment.machine
                        ),
                    )),
                }
            }
            let changed = plan.assignments != cluster.state.assignments;
            cluster.state.assignments = plan.assignments.clone();
            for (job, kind, message) in events {
                cluster.event(kind, &job, message);
            }
            let now = Instant::now();
            let mut requests = Vec::new();
            for request in &plan.provision {
                if self
                    .provision_not_before
                    .get(&request.zone)
                    .is_some_and(|at| *at > now)
                {
                    continue;
                }
                let seq = cluster.state.next_machine_seq;
                cluster.state.next_machine_seq += 1;
                let id = format!("{}-{seq}", request.zone);
                let number = cluster.state.free_number(&request.zone);
                cluster.state.machines.insert(
                    id.clone(),
                    MachineRecord::new(&id, &request.zone, number, request.size),
                );
                let for_whom: Vec<String> = request
                    .for_instances
                    .iter()
                    .map(|k| instance_task_name(&k.job, k.slot))
                    .collect();
                cluster.event(
                    ClusterEventKind::MachineProvisioning,
                    &id,
                    format!(
                        "provisioning in {} ({} cores, {} MB) for {}",
                        request.zone,
                        request.size.cpu,
                        request.size.mem_mb,
                        for_whom.join(", ")
                    ),
                );
                requests.push(NewMachine {
                    id,
                    zone: request.zone.clone(),
                    size: request.size,
                    cluster_url: self.cluster_url.clone(),
                });
            }
            cluster.plan = plan;
            // Recorded before the provider is asked: a crash in between
            // finds the record and never provisions the slot twice.
            if changed || !requests.is_empty() {
                persist(cluster);
            }
            requests
        };
        for request in requests {
            let result = self.provider.provision(&request).await;
            let mut cluster = lock(&self.cluster);
            match result {
                Ok(provider_id) => {
                    if let Some(machine) = cluster.state.machines.get_mut(&request.id) {
                        machine.provider_id = Some(provider_id.clone());
                    }
                    cluster.event(
                        ClusterEventKind::MachineStarted,
                        &request.id,
                        format!("started ({provider_id})"),
                    );
                }
                Err(error) => {
                    cluster.state.machines.remove(&request.id);
                    cluster.event(
                        ClusterEventKind::ProvisionFailed,
                        &request.id,
                        format!("cannot provision: {error}"),
                    );
                    self.provision_not_before
                        .insert(request.zone.clone(), Instant::now() + PROVISION_RETRY);
                }
            }
            persist(&cluster);
        }
    }

    /// Rolling updates: switch the next machine's instances to the target
    /// generation once the previous machines' instances have run healthy
    /// for the job's minimum time.
    fn advance_rollouts(&mut self) {
        let mut guard = lock(&self.cluster);
        let cluster = &mut *guard;
        let now = now_ms();
        let mut events = Vec::new();
        let mut changed = false;
        let names: Vec<String> = cluster.state.jobs.keys().cloned().collect();
        for name in names {
            let hosting = cluster.machines_hosting(&name);
            let Some(job) = cluster.state.jobs.get(&name) else {
                continue;
            };
            let Some(rollout) = job.rollout.clone() else {
                continue;
            };
            let healthy = |machine: &str| -> bool {
                let Some(switched_at) = rollout.switched.get(machine) else {
                    return true;
                };
                let Some(report) = cluster.reports.get(machine) else {
                    return false;
                };
                cluster
                    .assignments_on(machine)
                    .filter(|a| a.key.job == name)
                    .all(|a| {
                        let task = report
                            .tasks
                            .get(&instance_task_name(&a.key.job, a.key.slot));
                        let status = task.and_then(|t| t.status.as_ref());
                        status.is_some_and(|s| {
                            s.state.kind() == cerebro_types::StateKind::Running
                                && s.started_at_ms.is_some_and(|started| {
                                    started >= *switched_at
                                        && now.saturating_sub(started) >= rollout.min_healthy_ms
                                })
                        })
                    })
            };
            let in_flight = hosting
                .iter()
                .filter(|m| rollout.switched.contains_key(*m) && !healthy(m))
                .count();
            let left: Vec<String> = hosting
                .iter()
                .filter(|m| job.generation_on(m) < rollout.target_generation)
                .cloned()
                .collect();
            let Some(job) = cluster.state.jobs.get_mut(&name) else {
                continue;
            };
            if left.is_empty() && in_flight == 0 {
                job.end_rollout();
                events.push((
                    name.clone(),
                    ClusterEventKind::RolloutComplete,
                    format!(
                        "update to generation {} complete",
                        rollout.target_generation
                    ),
                ));
                changed = true;
                continue;
            }
            let slots = rollout.max_parallel.saturating_sub(in_flight);
            for machine in left.into_iter().take(slots) {
                job.machine_generation
                    .insert(machine.clone(), rollout.target_generation);
                if let Some(r) = job.rollout.as_mut() {
                    r.switched.insert(machine.clone(), now);
                }
                events.push((
                    name.clone(),
                    ClusterEventKind::RolloutStep,
                    format!("rolling update: restarting the instances on {machine}"),
                ));
                changed = true;
            }
            job.forget_unused_configurations();
        }
        for (job, kind, message) in events {
            cluster.event(kind, &job, message);
        }
        if changed {
            persist(cluster);
        }
    }

    /// Makes every reachable machine run exactly its assigned tasks.
    async fn sync_tasks(&mut self) {
        let work: Vec<SyncWork> = {
            let cluster = lock(&self.cluster);
            // Grouped once: scanning every assignment per machine would be quadratic each tick.
            let mut by_machine: BTreeMap<&str, Vec<&cerebro_types::cluster::Assignment>> =
                BTreeMap::new();
            for assignment in &cluster.state.assignments {
                by_machine
                    .entry(assignment.machine.as_str())
                    .or_default()
                    .push(assignment);
            }
            let mut work = Vec::new();
            // Only machines that answered this tick: a report of one that did
            // not is stale, and calls to it would only wait for timeouts. A
            // decommissioning machine's tasks go with it when it is terminated.
            for machine in cluster
                .state
                .machines
                .values()
                .filter(|m| m.state() == MachineState::Ready && m.missed_polls == 0)
            {
                let Some(address) = machine.address.clone() else {
                    continue;
                };
                let Some(report) = cluster.reports.get(&machine.id) else {
                    continue;
                };
                let desired: BTreeMap<String, TaskSpec> = by_machine
                    .get(machine.id.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|a| cluster.instance_spec(&a.key, &machine.id))
                    .map(|spec| (spec.name.clone(), spec))
                    .collect();
                let put: Vec<TaskSpec> = desired
                    .values()
                    .filter(|spec| {
                        report
                            .tasks
                            .get(&spec.name)
                            .is_none_or(|t| t.spec != **spec)
                    })
                    .cloned()
                    .collect();
                let delete: Vec<String> = report
                    .tasks
                    .iter()
                    .filter(|(name, task)| !desired.contains_key(*name) && !task.deleting)
                    .map(|(name, _)| name.clone())
                    .collect();
                if !put.is_empty() || !delete.is_empty() {
                    work.push(SyncWork {
                        machine: machine.id.clone(),
                        address,
                        put,
                        delete,
                    });
                }
            }
            work
        };
        let token = lock(&self.cluster)
            .config
            .token
            .as_ref()
            .map(|t| t.expose().to_string());
        let mut calls = tokio::task::JoinSet::new();
        for item in work {
            let client = self.client.clone();
            let token = token.clone();
            calls.spawn(async move {
                // Per call: (task, what happened, whether it failed).
                let mut outcomes: Vec<(String, ClusterEventKind, String, bool)> = Vec::new();
                for spec in &item.put {
                    let url = format!(
                        "http://{}/api/v1/tasks/{}",
                        item.address,
                        encode_path_segment(&spec.name)
                    );
                    let (kind, message, failed) = match client
                        .put_json::<_, serde_json::Value>(&url, token.as_deref(), spec)
                        .await
                    {
                        Ok(_) => (
                            ClusterEventKind::TaskPut,
                            format!("runs {}", spec.name),
                            false,
                        ),
                        Err(error) => (
                            ClusterEventKind::TaskCallFailed,
                            format!("PUT {}: {error}", spec.name),
                            true,
                        ),
                    };
                    outcomes.push((spec.name.clone(), kind, message, failed));
                }
                for name in &item.delete {
                    let url = format!(
                        "http://{}/api/v1/tasks/{}",
                        item.address,
                        encode_path_segment(name)
                    );
                    let (kind, message, failed) = match client
                        .delete_json::<serde_json::Value>(&url, token.as_deref())
                        .await
                    {
                        Ok(_) => (
                            ClusterEventKind::TaskRemoved,
                            format!("removed {name}"),
                            false,
                        ),
                        Err(error) if error.status() == Some(404) => (
                            ClusterEventKind::TaskRemoved,
                            format!("removed {name}"),
                            false,
                        ),
                        Err(error) => (
                            ClusterEventKind::TaskCallFailed,
                            format!("DELETE {name}: {error}"),
                            true,
                        ),
                    };
                    outcomes.push((name.clone(), kind, message, failed));
                }
                (item.machine, outcomes)
            });
        }
        let results = calls.join_all().await;
        let mut cluster = lock(&self.cluster);
        for (machine, outcomes) in results {
            for (task, kind, message, failed) in outcomes {
                let key = (machine.clone(), task);
                if failed {
                    if self.sync_failures.get(&key) == Some(&message) {
                        continue;
                    }
                    self.sync_failures.insert(key, message.clone());
                } else {
                    self.sync_failures.remove(&key);
                }
                cluster.event(kind, &machine, message);
            }
        }
        let machines = &cluster.state.machines;
        self.sync_failures
            .retain(|(machine, _), _| machines.contains_key(machine));
    }

    /// Keeps at most the zone's idle limit of machines without instances.
    fn retire_idle(&mut self) {
        let mut guard = lock(&self.cluster);
        let cluster = &mut *guard;
        let busy: BTreeSet<&str> = cluster
            .state
            .assignments
            .iter()
            .map(|a| a.machine.as_str())
            .collect();
        let mut idle_by_zone: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
        let mut changed = false;
        for machine in cluster.state.machines.values() {
            if machine.state() == MachineState::Ready && !busy.contains(machine.id.as_str()) {
                idle_by_zone
                    .entry(machine.zone.clone())
                    .or_default()
                    .push((machine.number, machine.id.clone()));
            }
        }
        let mut events = Vec::new();
        for (zone, mut idle) in idle_by_zone {
            let limit = cluster.state.idle_limit(&zone) as usize;
            // Keep the lowest-numbered machines; retire the newest.
            idle.sort();
            for (_, id) in idle.into_iter().skip(limit) {
                if let Some(machine) = cluster.state.machines.get_mut(&id) {
                    machine.move_to(MachineState::Decommissioning);
                    changed = true;
                    events.push((
                        id,
                        ClusterEventKind::MachineIdleRetired,
                        format!("idle beyond the limit of {limit} in {zone}: decommissioning"),
                    ));
                }
            }
        }
        for (machine, kind, message) in events {
            cluster.event(kind, &machine, message);
        }
        if changed {
            persist(cluster);
        }
    }

    /// Terminates decommissioning machines in the background, one attempt
    /// in flight per machine; a failure is retried on a later tick.
    fn terminate_decommissioning(&mut self) {
        let targets: Vec<(String, Option<String>)> = lock(&self.cluster)
            .state
            .machines
            .values()
            .filter(|m| m.state() == MachineState::Decommissioning)
            .map(|m| (m.id.clone(), m.provider_id.clone()))
            .collect();
        for (id, provider_id) in targets {
            if !lock(&self.terminating).insert(id.clone()) {
                continue;
            }
            let provider = self.provider.clone();
            let cluster = self.cluster.clone();
            let terminating = self.terminating.clone();
            let notify = self.notify.clone();
            tokio::spawn(async move {
                let result = provider
                    .terminate(&id, provider_id.as_deref().unwrap_or_default())
                    .await;
                {
                    let mut cluster = lock(&cluster);
                    match result {
                        Ok(()) => {
                            cluster.state.machines.remove(&id);
                            cluster.reports.remove(&id);
                            cluster.state.retire_machine(&id);
                            cluster.event(ClusterEventKind::MachineTerminated, &id, "terminated");
                            persist(&cluster);
                        }
                        Err(error) => {
                            cluster.event(
                                ClusterEventKind::TerminateFailed,
                                &id,
                                format!("cannot terminate yet: {error}"),
                            );
                        }
                    }
                }
                lock(&terminating).remove(&id);
                notify.notify_one();
            });
        }
    }

    /// Whether any termination is still running (the exit path waits for them).
    pub fn terminations_in_flight(&self) -> bool {
        !lock(&self.terminating).is_empty()
    }
}

/// What happened to a machine's tasks between two polls that a person
/// should see: restarts and limit violations.
fn task_changes(
    machine: &str,
    before: &MachineReport,
    after: &MachineReport,
) -> Vec<(String, ClusterEventKind, String)> {
    let mut changes = Vec::new();
    for (name, task) in &after.tasks {
        let (Some(now), Some(then)) = (
            task.status.as_ref(),
            before.tasks.get(name).and_then(|t| t.status.as_ref()),
        ) else {
            continue;
        };
        for (kind, was, is) in [
            ("memory", then.violations.memory, now.violations.memory),
            ("CPU", then.violations.cpu, now.violations.cpu),
            ("time", then.violations.time, now.violations.time),
        ] {
            if is > was {
                changes.push((
                    machine.to_string(),
                    ClusterEventKind::TaskViolation,
                    format!("{name} violated its {kind} limit"),
                ));
            }
        }
        if now.restarts > then.restarts {
            changes.push((
                machine.to_string(),
                ClusterEventKind::TaskRestarted,
                format!("{name} restarted (restart {})", now.restarts),
            ));
        }
    }
    changes
}

fn persist(cluster: &crate::cluster::Cluster) {
    if let Err(error) = cluster.persist() {
        tracing::error!(%error, "cannot persist the cluster state");
    }
}
