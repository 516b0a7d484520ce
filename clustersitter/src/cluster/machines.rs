//! A machine's life as the cluster records it: polls answered or missed,
//! provisioning, loss, idleness, termination, and recovery at start. Every
//! state change goes through [`MachineRecord::move_to`] and its table.

use super::*;
use crate::provider::{FoundMachine, Provisioned};
use cerebro_types::cluster::{ProviderDetails, ProvisionRequest};
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
    /// provisions the slot twice. Answers the new machine's id.
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
            .map(|k| instance_task_name(&k.job, k.slot))
            .collect();
        self.event(
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
        id
    }

    /// The provider started machine `id`: its provider id, details and
    /// the size it really has are recorded.
    pub fn machine_provisioned(&mut self, id: &str, provisioned: &Provisioned) {
        if let Some(machine) = self.state.machines.get_mut(id) {
            machine.provider_id = Some(provisioned.provider_id.clone());
            machine.details = provisioned.details.clone();
            machine.capacity = provisioned.size;
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

    /// The provider could not start machine `id`: its record goes.
    pub fn provision_failed(&mut self, id: &str, error: &str) {
        self.state.machines.remove(id);
        self.event(
            ClusterEventKind::ProvisionFailed,
            id,
            format!("cannot provision: {error}"),
        );
    }

    /// Machine `id` is terminated: it goes, and is remembered as retired
    /// so a late registration is refused.
    pub fn machine_terminated(&mut self, id: &str) {
        self.state.machines.remove(id);
        self.reports.remove(id);
        self.orphans.remove(id);
        self.refused.remove(id);
        self.state.retire_machine(id);
        self.event(ClusterEventKind::MachineTerminated, id, "terminated");
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
    /// provider id and address; an unknown one of a served zone is adopted.
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
