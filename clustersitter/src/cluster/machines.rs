//! A machine's life as the cluster records it: polls answered or missed,
//! provisioning, loss, idleness, termination, and recovery at start. Every
//! state change goes through [`MachineRecord::move_to`] and its table.

use super::*;
use crate::provider::{FoundMachine, ProviderError, Provisioned};
use cerebro_types::cluster::{ProviderDetails, ProvisionRequest, ProvisioningError};
use std::collections::BTreeSet;
use std::time::Duration;

/// One machine's answer to a poll.
pub struct PollAnswer {
    /// The machine's id.
    pub machine: String,
    /// The address asked; an answer from an address the machine has left is ignored.
    pub address: String,
    /// Its tasks, or why they could not be had.
    pub tasks: Result<Vec<TaskView>, cerebro_client::ClientError>,
    /// Its status, asked only when the tasks came.
    pub status: Option<MachineStatus>,
}

impl Cluster {
    /// Records what the machines answered to one round of polls at `now`
    /// (ms): answering machines are ready and their reports kept; silent
    /// ones count missed polls up to unreachable; a machine still not seen
    /// `provision_timeout` after being provisioned is unreachable too.
    /// Answers whether anything persisted changed.
    pub fn record_polls(
        &mut self,
        answers: Vec<PollAnswer>,
        now: u64,
        provision_timeout: Duration,
    ) -> bool {
        let threshold = self.config.failure_threshold;
        let mut events = Vec::new();
        let mut changed = false;
        let mut answered = Vec::new();
        for PollAnswer {
            machine: id,
            address,
            tasks,
            status,
        } in answers
        {
            let Some(machine) = self.state.machines.get_mut(&id) else {
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
                    let mut sane = ValidationErrors::default();
                    if let Some(status) = &status {
                        cerebro_types::cluster::validate_capacity(
                            "capacity",
                            status.capacity,
                            &mut sane,
                        );
                    }
                    if !sane.is_empty() {
                        // What registration would refuse, a poll must not slip in.
                        tracing::warn!(machine = %id, "ignoring the capacity it reports: {sane}");
                    } else if let Some(status) = &status {
                        if status.capacity != machine.capacity {
                            machine.capacity = status.capacity;
                            changed = true;
                        }
                    }
                    let report = MachineReport {
                        tasks: tasks.into_iter().map(|t| (t.name.clone(), t)).collect(),
                        status,
                    };
                    if let Some(previous) = self.reports.get(&id) {
                        events.extend(task_changes(&id, previous, &report));
                    }
                    self.history.record(&id, &report, now);
                    self.reports.insert(id.clone(), report);
                    answered.push(id);
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
        for id in answered {
            events.extend(self.note_orphans(&id));
            self.forget_refusals_if_freed(&id);
        }
        // A machine that never came up is as good as unreachable.
        for machine in self.state.machines.values_mut() {
            let waited = Duration::from_millis(now.saturating_sub(machine.created_ms));
            if machine.state() == MachineState::Provisioning
                && machine.last_seen_ms.is_none()
                && waited > provision_timeout
                && machine.move_to(MachineState::Unreachable)
            {
                changed = true;
                events.push((
                    machine.id.clone(),
                    ClusterEventKind::MachineNeverCameUp,
                    format!("did not come up within {provision_timeout:?} of being provisioned"),
                ));
            }
        }
        for (machine, kind, message) in events {
            self.event(kind, &machine, message);
        }
        changed
    }

    /// Notes the tasks machine `id` reported for jobs the cluster does
    /// not know; answers an event for each newly seen one.
    fn note_orphans(&mut self, id: &str) -> Vec<(String, ClusterEventKind, String)> {
        let Some(report) = self.reports.get(id) else {
            return Vec::new();
        };
        let now: BTreeSet<String> = report
            .tasks
            .keys()
            .filter(|task| !self.state.may_remove_task(task))
            .cloned()
            .collect();
        let before = self.orphans.remove(id).unwrap_or_default();
        let events = now
            .difference(&before)
            .map(|task| {
                (
                    id.to_string(),
                    ClusterEventKind::TaskOrphaned,
                    format!(
                        "runs {task}, of a job this cluster does not know (its state was lost?): left running"
                    ),
                )
            })
            .collect();
        if !now.is_empty() {
            self.orphans.insert(id.to_string(), now);
        }
        events
    }

    /// Machine `id` refused task `task` as not fitting (`reason`, its
    /// 409): its own count of its free room is what placement uses from
    /// now until a task leaves it, so the instance is placed elsewhere (or
    /// a machine is asked for) rather than waiting on it for good.
    pub fn task_refused(&mut self, id: &str, task: &str, reason: &str) {
        if !self.state.machines.contains_key(id) || self.was_refused(id, task) {
            return;
        }
        let ran = self
            .reports
            .get(id)
            .map(|r| r.tasks.keys().cloned().collect())
            .unwrap_or_default();
        let refusal = self.refused.entry(id.to_string()).or_default();
        if refusal.tasks.is_empty() {
            refusal.ran = ran;
        }
        refusal.tasks.insert(task.to_string());
        self.event(
            ClusterEventKind::TaskCallFailed,
            id,
            format!(
                "refused {task} as not fitting ({reason}): placing it by the room the machine reports, elsewhere if need be"
            ),
        );
    }

    /// Forgets the refusals of machine `id` once a task it ran when it
    /// refused is gone from its report: room was freed.
    fn forget_refusals_if_freed(&mut self, id: &str) {
        let (Some(refusal), Some(report)) = (self.refused.get(id), self.reports.get(id)) else {
            return;
        };
        if refusal
            .ran
            .iter()
            .any(|task| !report.tasks.contains_key(task))
        {
            self.refused.remove(id);
        }
    }

    /// Decommissions machine `id`, which stopped answering (`verdict`
    /// says what the provider thinks); placement moves its instances.
    /// Answers whether the machine is still there.
    pub fn decommission_lost(&mut self, id: &str, verdict: &str) -> bool {
        let Some(machine) = self.state.machines.get_mut(id) else {
            return false;
        };
        machine.move_to(MachineState::Decommissioning);
        self.event(
            ClusterEventKind::MachineLost,
            id,
            format!(
                "{verdict}: decommissioning it; its instances run elsewhere once the provider confirms it gone (at once for jobs with reschedule: immediately)"
            ),
        );
        true
    }

    /// Records a machine about to be asked of the provider for `request`,
    /// before it is asked: a crash in between finds the record and never
    /// provisions the slot twice. Answers the new machine's id. A retry in
    /// a zone whose attempts keep failing is only logged: its failure is
    /// already an event.
    pub fn add_provisioning_machine(&mut self, request: &ProvisionRequest) -> String {
        let seq = self.state.next_machine_seq;
        self.state.next_machine_seq += 1;
        let id = format!("{}-{seq}", request.zone);
        let number = self.state.free_number(&request.zone);
        self.state.machines.insert(
            id.clone(),
            MachineRecord::new(&id, &request.zone, number, request.size),
        );
        let for_whom: Vec<String> = request
            .for_instances
            .iter()
            .map(|k| self.task_name_of(k))
            .collect();
        // The machines its instances were on and that are gone or going:
        // this machine replaces them.
        let replacing: BTreeSet<&str> = self
            .state
            .assignments
            .iter()
            .filter(|a| request.for_instances.contains(&a.key))
            .map(|a| a.machine.as_str())
            .filter(|m| {
                self.state
                    .machines
                    .get(*m)
                    .is_none_or(|record| !record.state().accepts_instances())
            })
            .collect();
        // What the machine is for: the provider picks its size from that
        // (the zone's largest is only an upper bound), and says it once
        // the machine is started.
        let mut message = match request.reserved {
            Some(reserved) => format!(
                "provisioning in {} for {} cores and {} MB: {}",
                request.zone,
                reserved.cpu,
                reserved.mem_mb,
                for_whom.join(", ")
            ),
            None => format!(
                "provisioning in {} (up to {} cores, {} MB) for {}",
                request.zone,
                request.size.cpu,
                request.size.mem_mb,
                for_whom.join(", ")
            ),
        };
        if !replacing.is_empty() {
            let replacing: Vec<&str> = replacing.into_iter().collect();
            message.push_str(&format!(", replacing {}", replacing.join(", ")));
        }
        match self.provision_streaks.get(&request.zone) {
            Some(streak) => tracing::info!(
                machine = %id,
                failures = streak.failures,
                "{message} (retrying after failures)"
            ),
            None => self.event(ClusterEventKind::MachineProvisioning, &id, message),
        }
        id
    }

    /// Sets how long a zone waits after failed provisioning attempts.
    pub fn set_provision_backoff(&mut self, backoff: ProvisionBackoff) {
        self.provision_backoff = backoff;
    }

    /// The streak of failed provisioning attempts in `zone`, if its last
    /// attempt failed.
    pub fn provisioning_error(&self, zone: &str) -> Option<&ProvisioningError> {
        self.provision_streaks.get(zone).map(|streak| &streak.last)
    }

    /// The provider started machine `id`: its provider id, details and
    /// the size it really has are recorded.
    pub fn machine_provisioned(&mut self, id: &str, provisioned: &Provisioned) {
        let mut zone = None;
        if let Some(machine) = self.state.machines.get_mut(id) {
            machine.provider_id = Some(provisioned.provider_id.clone());
            machine.details = provisioned.details.clone();
            machine.capacity = provisioned.size;
            zone = Some(machine.zone.clone());
        }
        if let Some((zone, streak)) =
            zone.and_then(|zone| Some((zone.clone(), self.provision_streaks.remove(&zone)?)))
        {
            self.event(
                ClusterEventKind::ProvisionRecovered,
                &zone,
                format!(
                    "provisioning in {zone} works again ({id} started) after {} failed attempts (last: {})",
                    streak.failures, streak.last.code
                ),
            );
        }
        let what = match &provisioned.details.instance_type {
            Some(kind) => format!("{}, {kind}", provisioned.provider_id),
            None => provisioned.provider_id.clone(),
        };
        self.event(
            ClusterEventKind::MachineStarted,
            id,
            format!(
                "started ({what}: {} cores, {} MB)",
                provisioned.size.cpu, provisioned.size.mem_mb
            ),
        );
    }

    /// The provider could not start machine `id` in `zone`: its record
    /// goes, and the zone's streak of failures grows. The first failure
    /// with each error code in a streak is an event naming the zone, the
    /// code and the next attempt; the others are logged and shown in the
    /// zone's status only, so a failure that lasts is no storm of events.
    /// Answers how long the zone waits before its next attempt (growing
    /// with the streak, see [`ProvisionBackoff`]).
    ///
    /// A launch whose outcome is unknown ([`ProviderError::OutcomeUnknown`])
    /// keeps its record instead (provisioning, no provider id) and is
    /// always an event: the machine may exist, so it is waited for until
    /// it registers or `boot_timeout` passes; then polls call it never
    /// come up, and it is decommissioned and terminated by its machine id
    /// (which finds the instance if the launch made one) and replaced. It
    /// still counts as a failure of the zone.
    pub fn provision_failed(
        &mut self,
        id: &str,
        zone: &str,
        error: &ProviderError,
        boot_timeout: Duration,
    ) -> Duration {
        let unknown = matches!(error, ProviderError::OutcomeUnknown { .. });
        if !unknown {
            self.state.machines.remove(id);
        }
        let streak = self.provision_streaks.entry(zone.to_string()).or_default();
        let failures = streak.failures + 1;
        let delay = self.provision_backoff.after(failures);
        let code = error.code_or_kind().to_string();
        let message = error.to_string();
        streak.failures = failures;
        streak.last = ProvisioningError {
            code: code.clone(),
            message: message.clone(),
            failures,
            next_attempt_ms: now_ms().saturating_add(delay.as_millis() as u64),
        };
        let first_of_its_kind = streak.reported.insert(code.clone());
        let next = describe_delay(delay);
        if unknown {
            self.event(
                ClusterEventKind::ProvisionFailed,
                id,
                format!(
                    "the launch in {zone} may have happened, nothing could tell ({message}): {id} is kept and waited for until it registers, or else after {} terminated by its machine id and replaced; the next attempt in {zone} in {next}",
                    describe_delay(boot_timeout)
                ),
            );
        } else if first_of_its_kind {
            self.event(
                ClusterEventKind::ProvisionFailed,
                id,
                format!(
                    "cannot provision in {zone} ({code}): {message}; next attempt in {next}, then less and less often until one works (later failures show in the zone's status)"
                ),
            );
        } else {
            tracing::warn!(
                machine = id,
                zone,
                code,
                failures,
                "cannot provision again: {message}; next attempt in {next}"
            );
        }
        delay
    }

    /// Machine `id` was recorded to be provisioned but is not asked for
    /// (its zone just failed and waits): its record goes, quietly.
    pub fn provision_skipped(&mut self, id: &str) {
        self.state.machines.remove(id);
        tracing::debug!(
            machine = id,
            "not provisioned: its zone waits after a failure"
        );
    }

    /// Machine `id` is terminated: it goes, and is remembered as retired
    /// so a late registration is refused.
    pub fn machine_terminated(&mut self, id: &str) {
        let provider_id = self
            .state
            .machines
            .remove(id)
            .and_then(|record| record.provider_id);
        self.reports.remove(id);
        self.orphans.remove(id);
        self.refused.remove(id);
        self.state.retire_machine(id);
        let message = match provider_id {
            Some(provider_id) => format!("terminated ({provider_id})"),
            None => "terminated".to_string(),
        };
        self.event(ClusterEventKind::MachineTerminated, id, message);
    }

    /// Machine `id` was terminated as the clustersitter exits
    /// (`--on-exit stop`); nothing registers after that, so it is not
    /// remembered as retired.
    pub fn machine_terminated_at_exit(&mut self, id: &str) {
        self.state.machines.remove(id);
        self.event(
            ClusterEventKind::MachineTerminated,
            id,
            "terminated at exit",
        );
    }

    /// Decommissions the newest idle machines beyond each zone's idle
    /// limit; answers whether any was.
    pub fn retire_idle(&mut self) -> bool {
        let cluster = self;
        // A machine running orphans is not idle: retiring it would kill them.
        let busy: BTreeSet<&str> = cluster
            .state
            .assignments
            .iter()
            .map(|a| a.machine.as_str())
            .chain(cluster.orphans.keys().map(String::as_str))
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
        changed
    }

    /// At start: the provider runs `found`. A known machine gets its
    /// provider id and address; an unknown one of a served zone is adopted;
    /// an unknown one of a zone no longer served is reported and left
    /// running, unmanaged: the zone may have gone from the config by
    /// mistake, and terminating would end its workloads with it (nor do
    /// Nomad or an ASG end what they no longer manage).
    pub fn machine_found(&mut self, found: &FoundMachine) {
        match self.state.machines.get_mut(&found.machine_id) {
            Some(record) => {
                record.provider_id = Some(found.provider_id.clone());
                if found.address.is_some() {
                    record.address = found.address.clone();
                }
                if found.details != ProviderDetails::default() {
                    record.details = found.details.clone();
                }
                if let Some(size) = found.size {
                    record.capacity = size;
                }
                record.missed_polls = 0;
            }
            None => {
                let zones = self.config.zones();
                let Some(size) = zones.get(&found.zone) else {
                    self.event(
                        ClusterEventKind::MachineUnmanaged,
                        &found.machine_id,
                        format!(
                            "found running ({}) in {}, a zone this cluster no longer serves: left running and not managed (terminate it at the provider, or serve the zone again to adopt it)",
                            found.provider_id, found.zone
                        ),
                    );
                    return;
                };
                let number = self.state.free_number(&found.zone);
                let size = found.size.unwrap_or(*size);
                let mut record = MachineRecord::new(&found.machine_id, &found.zone, number, size);
                record.provider_id = Some(found.provider_id.clone());
                record.details = found.details.clone();
                record.address = found.address.clone();
                self.state.adopt_machine(record);
                self.event(
                    ClusterEventKind::MachineAdopted,
                    &found.machine_id,
                    "found running; adopted",
                );
            }
        }
    }

    /// At start: machine `id` is no longer at the provider.
    pub fn machine_vanished(&mut self, id: &str) {
        if let Some(machine) = self.state.machines.get_mut(id) {
            machine.move_to(MachineState::Decommissioning);
        }
        self.event(
            ClusterEventKind::MachineVanished,
            id,
            "gone while the clustersitter was down: decommissioning",
        );
    }

    /// At exit with every machine terminated: nothing is placed anywhere.
    pub fn clear_assignments(&mut self) {
        self.state.assignments.clear();
    }
}

/// How long a zone waits after failed provisioning attempts: `first`
/// after the first failure of a streak, twice as long after each further
/// one, never more than `max`; a success ends the streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionBackoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for ProvisionBackoff {
    /// 5 s doubling to 10 minutes: a bad AMI or a cloud limit needs a
    /// person, and asking every few seconds for hours helps nobody.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            max: Duration::from_secs(600),
        }
    }
}

impl ProvisionBackoff {
    /// The wait after the `failures`-th failure in a row (1 for the first).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// A zone's failed provisioning attempts in a row.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProvisionStreak {
    pub(crate) failures: u32,
    /// The error codes already told as events in this streak.
    reported: BTreeSet<String>,
    pub(crate) last: ProvisioningError,
}

/// A wait as people read it: `5 s`, `2 min 40 s`.
fn describe_delay(delay: Duration) -> String {
    let secs = delay.as_secs();
    match (secs / 60, secs % 60) {
        (0, 0) => format!("{} ms", delay.as_millis()),
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
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
        if let Some(change) = deploy_change(machine, name, before.tasks.get(name), task) {
            changes.push(change);
        }
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

/// The event a task's deployment moving between two polls deserves: the
/// first failed attempt at a release (later retries only fill the deploy
/// log), and a release becoming ready.
pub(super) fn deploy_change(
    machine: &str,
    name: &str,
    before: Option<&cerebro_types::machine::TaskView>,
    after: &cerebro_types::machine::TaskView,
) -> Option<(String, ClusterEventKind, String)> {
    use cerebro_types::deploy::DeployState;
    let now = after.deploy.as_ref()?;
    let then = before
        .and_then(|t| t.deploy.as_ref())
        .filter(|t| t.release == now.release);
    let was = then.map(|t| t.state);
    match now.state {
        DeployState::Failed if was != Some(DeployState::Failed) && now.attempts <= 1 => Some((
            machine.to_string(),
            ClusterEventKind::DeployFailed,
            format!(
                "{name}: deploy of release {} failed{}: {}; retrying with backoff",
                now.release,
                now.step
                    .as_deref()
                    .map(|s| format!(" at {s}"))
                    .unwrap_or_default(),
                now.error.as_deref().unwrap_or("no reason given")
            ),
        )),
        DeployState::Ready if then.is_some() && was != Some(DeployState::Ready) => Some((
            machine.to_string(),
            ClusterEventKind::DeployReady,
            format!(
                "{name}: release {} ready{}",
                now.release,
                if now.attempts > 1 {
                    format!(" after {} attempts", now.attempts)
                } else {
                    String::new()
                }
            ),
        )),
        _ => None,
    }
}
