//! The reconciliation loop: poll every machine, notice failures, place
//! instances (a pure function), provision what placement asks for, move
//! rolling updates forward, make every machine run exactly its assigned
//! tasks, and retire idle machines. Every call to a machine is idempotent
//! (PUT a task, DELETE a task), so a lost or repeated call converges.

use crate::cluster::{lock, PollAnswer, SharedCluster};
use crate::provider::{MachineProvider, NewMachine, ProviderError, ProviderStatus, Provisioned};
use cerebro_client::{HttpClient, MachineClient};
use cerebro_types::cluster::{ClusterEventKind, MachineState};
use cerebro_types::deploy::Deployment;
use cerebro_types::time::now_ms;
use cerebro_types::TaskSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
    /// Provisioning calls in flight, one task per zone and round: a slow
    /// or silent provider API must not stop polls, healing and syncs.
    /// Their outcomes are applied at the start of the next round.
    provisions: tokio::task::JoinSet<Vec<(NewMachine, ProvisionOutcome)>>,
    /// The last failed call per (machine, task), so a call that keeps
    /// failing the same way is one event, not one per tick.
    sync_failures: BTreeMap<(String, String), String>,
}

/// What became of one machine asked of the provider.
enum ProvisionOutcome {
    Done(Result<Provisioned, ProviderError>),
    /// Not asked: an earlier machine of its zone failed in the same round.
    Skipped,
}

/// One machine's reconcile work, computed under the lock and done without it.
struct SyncWork {
    machine: String,
    address: String,
    /// Each task to PUT, with its deployment for a job with a recipe and
    /// why it will not start (`None` when it starts).
    put: Vec<(TaskSpec, Option<Deployment>, Option<&'static str>)>,
    delete: Vec<String>,
}

impl Reconciler {
    pub fn new(
        cluster: SharedCluster,
        provider: Arc<dyn MachineProvider>,
        notify: Arc<Notify>,
        cluster_url: String,
    ) -> Self {
        let poll_interval = lock(&cluster).config().poll_interval;
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
            provisions: tokio::task::JoinSet::new(),
            sync_failures: BTreeMap::new(),
        }
    }

    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let poll_interval = lock(&self.cluster).config().poll_interval;
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
            .machines()
            .filter(|m| m.state() != MachineState::Decommissioning)
            .filter_map(|m| Some((m.id.clone(), m.address.clone()?)))
            .collect();
        let mut polls = tokio::task::JoinSet::new();
        for (id, address) in targets {
            // Polls read, and reads need no token.
            let machine = MachineClient::new(self.poll_client.clone(), &address, None);
            polls.spawn(async move {
                let tasks = machine.tasks().await;
                let status = match &tasks {
                    Ok(_) => machine.status().await.ok(),
                    Err(_) => None,
                };
                PollAnswer {
                    machine: id,
                    address,
                    tasks,
                    status,
                }
            });
        }
        let answers = polls.join_all().await;
        let mut cluster = lock(&self.cluster);
        if cluster.record_polls(answers, now_ms(), self.provider.boot_timeout()) {
            persist(&cluster);
        }
    }

    /// Unreachable machines: ask the provider whether they still exist, then
    /// decommission them either way; placement moves their instances.
    async fn handle_failures(&mut self) {
        let unreachable: Vec<(String, Option<String>)> = lock(&self.cluster)
            .machines()
            .filter(|m| m.state() == MachineState::Unreachable)
            .map(|m| (m.id.clone(), m.provider_id.clone()))
            .collect();
        for (id, provider_id) in unreachable {
            let verdict = match &provider_id {
                None => "the provider does not know it".to_string(),
                Some(pid) => match self.provider.status(pid).await {
                    Ok(ProviderStatus::Exists { state }) => {
                        format!("the provider says it is still {state} but it does not answer")
                    }
                    Ok(ProviderStatus::Gone { state }) => {
                        format!("the provider says it is {state}")
                    }
                    Err(error) => format!("the provider cannot tell ({error})"),
                },
            };
            let mut cluster = lock(&self.cluster);
            if cluster.decommission_lost(&id, &verdict) {
                persist(&cluster);
            }
        }
    }

    async fn place_and_provision(&mut self) {
        self.apply_provisions();
        let requests = {
            let mut guard = lock(&self.cluster);
            let cluster = &mut *guard;
            let plan = cluster.plan_for(&cluster.job_specs());
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
                let id = cluster.add_provisioning_machine(request);
                requests.push(NewMachine {
                    id,
                    zone: request.zone.clone(),
                    size: request.size,
                    reserved: request.reserved.unwrap_or(request.size),
                    cluster_url: self.cluster_url.clone(),
                });
            }
            // After the records: a new machine's event names the machines
            // its instances were on, which the new assignments forget.
            let changed = cluster.apply_assignments(&plan.assignments);
            cluster.set_plan(plan);
            // Recorded before the provider is asked: a crash in between
            // finds the record and never provisions the slot twice.
            if changed || !requests.is_empty() {
                persist(cluster);
            }
            requests
        };
        // Each zone's machines are asked in order, in the background: a
        // failure skips the rest of its zone, which then waits.
        let mut by_zone: BTreeMap<String, Vec<NewMachine>> = BTreeMap::new();
        for request in requests {
            by_zone
                .entry(request.zone.clone())
                .or_default()
                .push(request);
        }
        for (_, requests) in by_zone {
            let provider = self.provider.clone();
            let notify = self.notify.clone();
            self.provisions.spawn(async move {
                let mut outcomes = Vec::new();
                let mut failed = false;
                for request in requests {
                    if failed {
                        outcomes.push((request, ProvisionOutcome::Skipped));
                        continue;
                    }
                    let result = provider.provision(&request).await;
                    failed = result.is_err();
                    outcomes.push((request, ProvisionOutcome::Done(result)));
                }
                notify.notify_one();
                outcomes
            });
        }
    }

    /// Applies the outcomes of the provisioning calls that have ended.
    fn apply_provisions(&mut self) {
        while let Some(joined) = self.provisions.try_join_next() {
            self.apply_outcomes(joined);
        }
    }

    /// Waits until every provisioning call in flight has ended and applies
    /// their outcomes (for tests that need a round's machines provisioned).
    pub async fn settle_provisions(&mut self) {
        while let Some(joined) = self.provisions.join_next().await {
            self.apply_outcomes(joined);
        }
    }

    fn apply_outcomes(
        &mut self,
        joined: Result<Vec<(NewMachine, ProvisionOutcome)>, tokio::task::JoinError>,
    ) {
        // A call that panicked leaves its records, as a crash would: the
        // boot timeout ends them.
        let Ok(outcomes) = joined else {
            return;
        };
        let mut cluster = lock(&self.cluster);
        for (request, outcome) in outcomes {
            match outcome {
                ProvisionOutcome::Done(Ok(provisioned))
                    if cluster.machine(&request.id).is_none() =>
                {
                    // Its record went while the call was in flight (it came
                    // up, idled and was retired): what the call started is
                    // nobody's, so it goes too.
                    cluster.event(
                        ClusterEventKind::MachineTerminated,
                        &request.id,
                        format!(
                            "started ({}) after its record went: terminating it",
                            provisioned.provider_id
                        ),
                    );
                    let provider = self.provider.clone();
                    tokio::spawn(async move {
                        if let Err(error) = provider
                            .terminate(&request.id, &provisioned.provider_id)
                            .await
                        {
                            tracing::error!(machine = %request.id, %error, "cannot terminate a machine started after its record went");
                        }
                    });
                }
                ProvisionOutcome::Done(Ok(provisioned)) => {
                    cluster.machine_provisioned(&request.id, &provisioned);
                    self.provision_not_before.remove(&request.zone);
                }
                ProvisionOutcome::Done(Err(error)) => {
                    let wait = cluster.provision_failed(
                        &request.id,
                        &request.zone,
                        &error,
                        self.provider.boot_timeout(),
                    );
                    self.provision_not_before
                        .insert(request.zone.clone(), Instant::now() + wait);
                }
                ProvisionOutcome::Skipped => cluster.provision_skipped(&request.id),
            }
        }
        persist(&cluster);
    }

    /// Rolling updates: switch the next machine's instances to the target
    /// generation once the previous machines' instances have run healthy
    /// for the job's minimum time.
    fn advance_rollouts(&mut self) {
        let mut cluster = lock(&self.cluster);
        if cluster.advance_rollouts(now_ms()) {
            persist(&cluster);
        }
    }

    /// Makes every reachable machine run exactly its assigned tasks.
    async fn sync_tasks(&mut self) {
        let work: Vec<SyncWork> = {
            let cluster = lock(&self.cluster);
            // Grouped once: scanning every assignment per machine would be quadratic each tick.
            let mut by_machine: BTreeMap<&str, Vec<&cerebro_types::cluster::Assignment>> =
                BTreeMap::new();
            for assignment in cluster.assignments() {
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
                .machines()
                .filter(|m| m.state() == MachineState::Ready && m.missed_polls == 0)
            {
                let Some(address) = machine.address.clone() else {
                    continue;
                };
                let Some(report) = cluster.report(&machine.id) else {
                    continue;
                };
                // The deployment goes with the spec: a new machine (one
                // replacing a lost one too) installs the release before
                // the instance's task first starts.
                let desired: BTreeMap<String, (TaskSpec, Option<Deployment>)> = by_machine
                    .get(machine.id.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        let spec = cluster.instance_spec(&a.key, &machine.id)?;
                        Some((spec, cluster.instance_deployment(&a.key, &machine.id)))
                    })
                    .map(|(spec, deployment)| (spec.name.clone(), (spec, deployment)))
                    .collect();
                let put: Vec<(TaskSpec, Option<Deployment>, Option<&'static str>)> = desired
                    .iter()
                    .filter(|(_, (spec, deployment))| {
                        report
                            .tasks
                            .get(&spec.name)
                            .is_none_or(|t| t.spec != *spec || t.deployment != *deployment)
                    })
                    .map(|(_, (spec, deployment))| {
                        let held = (!spec.auto_start).then(|| {
                            let job = spec.env.get("CEREBRO_JOB").and_then(|j| cluster.job(j));
                            if job.is_some_and(|j| j.run_requested == Some(false)) {
                                "stopped by request"
                            } else {
                                "auto_start false"
                            }
                        });
                        (spec.clone(), deployment.clone(), held)
                    })
                    .collect();
                let delete: Vec<String> = report
                    .tasks
                    .iter()
                    .filter(|(name, task)| {
                        !desired.contains_key(*name)
                            && !task.deleting
                            // An orphan is never removed: only a person knows what it is.
                            && cluster.may_remove_task(name)
                    })
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
            .config()
            .token
            .as_ref()
            .map(|t| t.expose().to_string());
        let mut calls = tokio::task::JoinSet::new();
        for item in work {
            let machine = MachineClient::new(self.client.clone(), &item.address, token.clone());
            calls.spawn(async move {
                // Per call: (task, what happened, whether it failed).
                let mut outcomes: Vec<(String, ClusterEventKind, String, bool)> = Vec::new();
                // PUTs the machine refused as not fitting: (task, its reason).
                let mut refused: Vec<(String, String)> = Vec::new();
                for (spec, deployment, held) in &item.put {
                    let (kind, message, failed) =
                        match machine.put_task(spec, deployment.as_ref()).await {
                            // Sent, not running: the instance_started event
                            // says when it runs.
                            Ok(_) => (
                                ClusterEventKind::TaskPut,
                                match held {
                                    Some(why) => format!(
                                        "sent {} to its machine, stays stopped ({why})",
                                        spec.name
                                    ),
                                    None => format!("sent {} to its machine", spec.name),
                                },
                                false,
                            ),
                            // A 409 that is not a task being deleted: it does not fit.
                            Err(error)
                                if error.status() == Some(409)
                                    && !error.reason().contains("being deleted") =>
                            {
                                refused.push((spec.name.clone(), error.reason()));
                                continue;
                            }
                            Err(error) => (
                                ClusterEventKind::TaskCallFailed,
                                format!("PUT {}: {}", spec.name, error.reason()),
                                true,
                            ),
                        };
                    outcomes.push((spec.name.clone(), kind, message, failed));
                }
                for name in &item.delete {
                    let (kind, message, failed) = match machine.delete_task(name).await {
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
                            format!("DELETE {name}: {}", error.reason()),
                            true,
                        ),
                    };
                    outcomes.push((name.clone(), kind, message, failed));
                }
                (item.machine, outcomes, refused)
            });
        }
        let results = calls.join_all().await;
        let mut cluster = lock(&self.cluster);
        let mut replan = false;
        for (machine, outcomes, refused) in results {
            for (task, reason) in refused {
                self.sync_failures.remove(&(machine.clone(), task.clone()));
                cluster.task_refused(&machine, &task, &reason);
                replan = true;
            }
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
        self.sync_failures
            .retain(|(machine, _), _| cluster.machine(machine).is_some());
        if replan {
            // The next round places the refused instances anew.
            self.notify.notify_one();
        }
    }

    /// Keeps at most the zone's idle limit of machines without instances.
    fn retire_idle(&mut self) {
        let mut cluster = lock(&self.cluster);
        if cluster.retire_idle() {
            persist(&cluster);
        }
    }

    /// Terminates decommissioning machines in the background, one attempt
    /// in flight per machine; a failure is retried on a later tick. For a
    /// lost machine this is its fence: the instances held on it (see
    /// [`crate::cluster::Cluster::hold_unfenced`]) move only once the
    /// provider confirms it gone.
    fn terminate_decommissioning(&mut self) {
        let targets: Vec<(String, Option<String>)> = lock(&self.cluster)
            .machines()
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
                    let held = cluster.assignments_on(&id).count();
                    match result {
                        Ok(()) => {
                            if held > 0 {
                                cluster.event(
                                    ClusterEventKind::MachineFenced,
                                    &id,
                                    format!(
                                        "confirmed gone: its {held} instances run elsewhere now"
                                    ),
                                );
                            }
                            cluster.machine_terminated(&id);
                            persist(&cluster);
                        }
                        Err(error) if held > 0 => {
                            cluster.event(
                                ClusterEventKind::FenceUnconfirmed,
                                &id,
                                format!(
                                    "cannot confirm it is gone ({error}): its {held} instances wait rather than run twice; retrying"
                                ),
                            );
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

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

fn persist(cluster: &crate::cluster::Cluster) {
    if let Err(error) = cluster.persist() {
        tracing::error!(%error, "cannot persist the cluster state");
    }
}
