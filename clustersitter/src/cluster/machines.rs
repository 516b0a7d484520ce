//! A machine's life as the cluster records it: polls answered or missed,
//! provisioning, loss, idleness, termination, and recovery at start. Every
//! state change goes through [`MachineRecord::move_to`] and its table.

use super::*;
use crate::provider::{FoundMachine, ProviderError, Provisioned};
use cerebro_types::cluster::{ProviderDetails, ProvisionRequest, ProvisioningError};
use cerebro_types::health::{
    cores, describe_violation, recent_restarts, trim, ExitReason, CRASH_LOOP_RESTARTS,
    CRASH_LOOP_WINDOW_MS,
};
use cerebro_types::task::{
    EventKind, StateKind, TaskEvent, TaskState, TaskStatus, Violation, ViolationKind,
};
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
    /// (ms): answering machines are ready and their reports kept (what
    /// their instances did since the previous report becomes job events,
    /// see `instance_changes`); silent
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
        // Per machine that answered before: its previous report and when
        // that was (ms), to tell what its instances did since.
        let mut compared: Vec<(String, MachineReport, u64)> = Vec::new();
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
                    let before_ms = machine.last_seen_ms.replace(now);
                    let report = MachineReport {
                        tasks: tasks.into_iter().map(|t| (t.name.clone(), t)).collect(),
                        status,
                    };
                    if let Some(previous) = self.reports.get(&id) {
                        events.extend(deploy_changes(&id, previous, &report));
                    }
                    self.history.record(&id, &report, now);
                    if let Some(previous) = self.reports.insert(id.clone(), report) {
                        compared.push((id.clone(), previous, before_ms.unwrap_or(now)));
                    }
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
        let mut instance_events = Vec::new();
        for (id, previous, before_ms) in &compared {
            instance_events.extend(self.instance_events(id, previous, *before_ms, now));
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
        for (job, machine, kind, message) in instance_events {
            self.event_on(kind, &job, &machine, message);
        }
        changed
    }

    /// What the instances on machine `id` did between its `previous`
    /// report (polled at `before_ms`) and its current one (at `now`), as
    /// job events: (job, machine, kind, message). A task that is no
    /// instance placed on the machine (an orphan, one being removed) says
    /// nothing here.
    fn instance_events(
        &self,
        id: &str,
        previous: &MachineReport,
        before_ms: u64,
        now: u64,
    ) -> Vec<(String, String, ClusterEventKind, String)> {
        let Some(report) = self.reports.get(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for assignment in self.assignments_on(id) {
            let key = &assignment.key;
            let task_name = self.task_name_of(key);
            let label = self.instance_label(key);
            // A tasksitter that died is started again by its machine, and
            // starts the process anew with counts of its own from zero: its
            // restarts say nothing of it, the machine's count does. A new
            // spec or deployment (an update rolling out) also starts a new
            // tasksitter, on purpose: not told as an end.
            if let (Some(was), Some(is)) =
                (previous.tasks.get(&task_name), report.tasks.get(&task_name))
            {
                if is.sitter_starts > was.sitter_starts
                    && is.spec == was.spec
                    && is.deployment == was.deployment
                {
                    let is = is.sitter_starts;
                    out.push((
                        key.job.clone(),
                        id.to_string(),
                        ClusterEventKind::InstanceExited,
                        format!(
                            "{label} on {id}: its tasksitter ended and was started again by the machine (start {is}); the process started anew"
                        ),
                    ));
                }
            }
            let Some(after) = report.tasks.get(&task_name).and_then(|t| t.status.as_ref()) else {
                continue;
            };
            let before = previous
                .tasks
                .get(&task_name)
                .and_then(|t| t.status.as_ref());
            for change in instance_changes(before, before_ms, after, now) {
                let (kind, message) = change.describe(&label, id);
                out.push((key.job.clone(), id.to_string(), kind, message));
            }
        }
        out
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

/// The deployments of a machine's tasks that moved between two polls
/// and deserve an event (see [`deploy_change`]).
fn deploy_changes(
    machine: &str,
    before: &MachineReport,
    after: &MachineReport,
) -> Vec<(String, ClusterEventKind, String)> {
    after
        .tasks
        .iter()
        .filter_map(|(name, task)| deploy_change(machine, name, before.tasks.get(name), task))
        .collect()
}

/// At most this many violations of one kind are told one by one per poll;
/// more are one event with their count (a limit hit many times a second
/// must not flood the log).
const MAX_VIOLATIONS_TOLD: usize = 3;

/// What one instance's process did between two polls that a person should
/// see, as [`instance_changes`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum InstanceChange {
    /// Its process is up, after not running (or a new process replaced it
    /// other than by a restart of its own policy).
    Started { pid: Option<u32> },
    /// It went past a limit, with the values its machine recorded.
    Violation(Violation),
    /// `count` violations of `kind` its history no longer details (or
    /// beyond [`MAX_VIOLATIONS_TOLD`]); `limit` in the limit's unit
    /// (bytes, cores, seconds) when the task has one.
    ViolationsUntold {
        kind: ViolationKind,
        count: u64,
        limit: Option<f64>,
    },
    /// Its process ended and its policy restarted it; `restarts` is its
    /// restart count now.
    Exited {
        reason: ExitReason,
        /// Its restart count now.
        restarts: u64,
        /// Restarts since the previous poll: more than one when it ended
        /// twice between two polls (the reason is the last one's).
        since: u64,
    },
    /// It began crash-looping: `restarts` within the window.
    CrashLooping {
        restarts: u32,
        reason: Option<ExitReason>,
    },
    /// It failed for good (its tasksitter gave up, or it exited with a
    /// failure and is not restarted).
    Failed { reason: Option<ExitReason> },
}

impl InstanceChange {
    /// The event kind and message for the instance labelled `label`
    /// (`JOB #N (ZONE)`) on `machine`, in the agreed formats.
    pub(super) fn describe(&self, label: &str, machine: &str) -> (ClusterEventKind, String) {
        match self {
            InstanceChange::Started { pid } => (
                ClusterEventKind::InstanceStarted,
                match pid {
                    Some(pid) => format!("{label} running on {machine}, pid {pid}"),
                    None => format!("{label} running on {machine}"),
                },
            ),
            InstanceChange::Violation(v) => (
                ClusterEventKind::InstanceViolation,
                format!("{label} on {machine}: {}", describe_violation(v)),
            ),
            InstanceChange::ViolationsUntold { kind, count, limit } => {
                let (word, limit) = match kind {
                    ViolationKind::Memory => (
                        "memory",
                        limit.map(|l| format!(" of {} MB", trim(l / (1024.0 * 1024.0), 1))),
                    ),
                    ViolationKind::Cpu => ("CPU", limit.map(|l| format!(" of {} cores", cores(l)))),
                    ViolationKind::Time => ("time", limit.map(|l| format!(" of {l:.0} s"))),
                };
                let violations = if *count == 1 {
                    "violation"
                } else {
                    "violations"
                };
                (
                    ClusterEventKind::InstanceViolation,
                    format!(
                        "{label} on {machine}: {count} more {violations} of its {word} limit{} since the last poll",
                        limit.unwrap_or_default()
                    ),
                )
            }
            InstanceChange::Exited {
                reason,
                restarts,
                since,
            } => (
                ClusterEventKind::InstanceExited,
                if *since > 1 {
                    format!(
                        "{label} on {machine} ended {since} times since the last poll, the last: {reason}; restarts {} to {restarts}",
                        restarts + 1 - since
                    )
                } else {
                    format!("{label} on {machine} ended: {reason}; restart {restarts}")
                },
            ),
            InstanceChange::CrashLooping { restarts, reason } => (
                ClusterEventKind::InstanceCrashLooping,
                format!(
                    "{label} on {machine} is crash-looping: {restarts} restarts in {} min; last: {}",
                    CRASH_LOOP_WINDOW_MS / 60_000,
                    reason
                        .as_ref()
                        .map_or_else(|| "not known".to_string(), ToString::to_string)
                ),
            ),
            InstanceChange::Failed { reason } => (
                ClusterEventKind::InstanceFailed,
                format!(
                    "{label} on {machine} failed: {}",
                    reason
                        .as_ref()
                        .map_or_else(|| "not known".to_string(), ToString::to_string)
                ),
            ),
        }
    }
}

/// What an instance's process did between its status `before` (as of
/// `before_ms`; `None` for a task new in this report) and `after` (as of
/// `now_ms`), in the order it happened: violations, the end of a process,
/// crash-looping or failure, a start. Only what changed: the same two
/// reports give nothing twice, and a crash loop is told once as it begins
/// (once more only after it stopped looping for the window).
pub(super) fn instance_changes(
    before: Option<&TaskStatus>,
    before_ms: u64,
    after: &TaskStatus,
    now_ms: u64,
) -> Vec<InstanceChange> {
    let mut changes = Vec::new();
    let fresh = new_events(before, after);
    let before_counts = before.map(|b| b.violations.clone()).unwrap_or_default();
    for (kind, was, is, limit) in [
        (
            ViolationKind::Memory,
            before_counts.memory,
            after.violations.memory,
            after.limits.mem_bytes.map(|b| b as f64),
        ),
        (
            ViolationKind::Cpu,
            before_counts.cpu,
            after.violations.cpu,
            after.limits.cpu_cores,
        ),
        (
            ViolationKind::Time,
            before_counts.time,
            after.violations.time,
            after.limits.time_limit_secs,
        ),
    ] {
        let seen: Vec<&Violation> = fresh
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Violation(v) if v.kind == kind => Some(v),
                _ => None,
            })
            .collect();
        // The counters say how many there were when the history lost some.
        let total = is.saturating_sub(was).max(seen.len() as u64);
        let told = seen.len().min(MAX_VIOLATIONS_TOLD);
        changes.extend(
            seen[seen.len() - told..]
                .iter()
                .map(|v| InstanceChange::Violation((*v).clone())),
        );
        let untold = total - told as u64;
        if untold > 0 {
            changes.push(InstanceChange::ViolationsUntold {
                kind,
                count: untold,
                limit,
            });
        }
    }
    let reason = ExitReason::last_of(after).or_else(|| {
        after.last_exit.map(|status| ExitReason {
            at_ms: now_ms,
            status: Some(status),
            violation: None,
            by_request: false,
        })
    });
    let restarts_before = before.map_or(0, |b| b.restarts);
    if after.restarts > restarts_before {
        if let Some(reason) = &reason {
            changes.push(InstanceChange::Exited {
                reason: reason.clone(),
                restarts: after.restarts,
                since: after.restarts - restarts_before,
            });
        }
    }
    let failed = |s: &TaskStatus| match s.state {
        TaskState::Fatal { .. } => true,
        TaskState::Exited { status } => !status.success(),
        _ => false,
    };
    let looping_before = before.map_or(0, |b| recent_restarts(b, before_ms));
    let looping = recent_restarts(after, now_ms);
    if failed(after) {
        if !before.is_some_and(failed) {
            changes.push(InstanceChange::Failed { reason });
        }
    } else if looping >= CRASH_LOOP_RESTARTS {
        if looping_before < CRASH_LOOP_RESTARTS {
            changes.push(InstanceChange::CrashLooping {
                restarts: looping,
                reason,
            });
        }
    } else if after.state.kind() == StateKind::Running {
        // Up after not running, or a new process that is no restart of
        // its own (a replaced task): it runs now. A process of a crash
        // loop is not told: its exits are.
        let started = match before {
            None => true,
            Some(b) => {
                b.state.kind() != StateKind::Running
                    || (b.pid != after.pid && after.restarts <= b.restarts)
            }
        };
        if started {
            changes.push(InstanceChange::Started { pid: after.pid });
        }
    }
    changes
}

/// The events of `after`'s bounded history that `before`'s did not have:
/// those after `before`'s newest (or, once the history has moved past it,
/// those newer than it); all of them for a task new in this report.
fn new_events<'a>(before: Option<&TaskStatus>, after: &'a TaskStatus) -> &'a [TaskEvent] {
    let Some(last) = before.and_then(|b| b.events.last()) else {
        return &after.events;
    };
    match after.events.iter().rposition(|e| e == last) {
        Some(at) => &after.events[at + 1..],
        None => {
            let first_newer = after
                .events
                .iter()
                .position(|e| e.at_ms > last.at_ms)
                .unwrap_or(after.events.len());
            &after.events[first_newer..]
        }
    }
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
