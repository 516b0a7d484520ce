//! Placement's results and rolling updates as the cluster records them.

use super::*;
use cerebro_types::cluster::RolloutStop;
use cerebro_types::deploy::DeployState;
use cerebro_types::job::Reschedule;

/// Where one machine switched by a rolling update stands.
#[derive(Debug, Clone, PartialEq)]
enum MachineHealth {
    /// Every instance of the job on it is healthy (and deployed).
    Healthy,
    /// Not yet: starting, installing, checking, or not reported.
    Waiting,
    /// An instance's deployment of the release it was sent failed.
    Failed(RolloutStop),
}

impl Cluster {
    /// Every job's spec, as placement takes them.
    pub fn job_specs(&self) -> Vec<JobSpec> {
        self.state.jobs.values().map(|j| j.spec.clone()).collect()
    }

    /// Takes placement's `assignments` as the cluster's, with an event for
    /// each instance placed or moved. Answers whether any changed.
    pub fn apply_assignments(&mut self, assignments: &[Assignment]) -> bool {
        let before: BTreeMap<_, _> = self
            .state
            .assignments
            .iter()
            .map(|a| (a.key.clone(), a.machine.clone()))
            .collect();
        let changed = assignments != self.state.assignments.as_slice();
        self.state.assignments = assignments.to_vec();
        // Numbered before the events, which name instances by number.
        let renumbered = self.number_instances();
        let mut events: Vec<(String, ClusterEventKind, String)> = Vec::new();
        for assignment in assignments {
            let label = self.instance_label(&assignment.key);
            match before.get(&assignment.key) {
                Some(machine) if *machine == assignment.machine => {}
                Some(machine) => events.push((
                    assignment.key.job.clone(),
                    ClusterEventKind::InstanceMoved,
                    format!("{label} moves from {machine} to {}", assignment.machine),
                )),
                None => events.push((
                    assignment.key.job.clone(),
                    ClusterEventKind::InstancePlaced,
                    format!("{label} placed on {}", assignment.machine),
                )),
            }
        }
        for (job, kind, message) in events {
            self.event(kind, &job, message);
        }
        changed || renumbered
    }

    /// Placement of `jobs` over the cluster's machines and current
    /// assignments, lost machines' instances held until fenced
    /// ([`Cluster::hold_unfenced`]). Applies nothing.
    pub fn plan_for(&self, jobs: &[JobSpec]) -> Plan {
        let mut plan = self.uncapped_plan(jobs);
        self.cap_new_machines(&mut plan);
        self.explain_waiting_zones(&mut plan);
        plan
    }

    /// [`Cluster::plan_for`] before `max_machines` drops requests: what
    /// the jobs would need (the dry run's warnings compare it with the cap).
    pub(super) fn uncapped_plan(&self, jobs: &[JobSpec]) -> Plan {
        // An instance its machine refused is placed anew.
        let previous: Vec<Assignment> = self
            .assignments()
            .iter()
            .filter(|a| !self.was_refused(&a.machine, &self.task_name_of(&a.key)))
            .cloned()
            .collect();
        let mut plan = crate::placement::place(&crate::placement::PlacementInput {
            jobs,
            machines: &self.placement_machines(),
            previous: &previous,
            zone_machine_size: &self.config.zones(),
            largest_machine: self.largest_machines(),
        });
        self.hold_unfenced(&mut plan);
        plan
    }

    /// Keeps the cluster within `max_machines` (every provider's): no
    /// machine is asked for once the machines recorded, in any state
    /// (a decommissioning one still exists until terminated), reach it.
    /// The instances the dropped requests were for stay unplaced with a
    /// reason naming the cap, and the same plan comes every round, so a
    /// cluster at its cap makes no events. Requests are kept in the
    /// plan's order (by zone).
    fn cap_new_machines(&self, plan: &mut Plan) {
        let max = self.config.provider.max_machines;
        let recorded = self.state.machines.len();
        let room = max.saturating_sub(recorded);
        if plan.provision.len() <= room {
            return;
        }
        let over = plan.provision.split_off(room);
        let keys: std::collections::HashSet<&InstanceKey> =
            over.iter().flat_map(|r| &r.for_instances).collect();
        let reason = format!(
            "the cluster's limit of {max} machines (max_machines) is reached: {recorded} machines, none may be added"
        );
        for unplaced in &mut plan.unplaced {
            if keys.contains(&unplaced.key) {
                unplaced.reason = reason.clone();
            }
        }
    }

    /// The instances waiting for a machine in a zone whose provisioning
    /// keeps failing say so, and when the next attempt is.
    fn explain_waiting_zones(&self, plan: &mut Plan) {
        for request in &plan.provision {
            let Some(error) = self.provisioning_error(&request.zone) else {
                continue;
            };
            let reason = format!(
                "waiting for a new machine in {}: provisioning there failed {} times ({}), next attempt at {}",
                request.zone,
                error.failures,
                error.code,
                cerebro_types::time::format_rfc3339_ms(error.next_attempt_ms)
            );
            for unplaced in &mut plan.unplaced {
                if request.for_instances.contains(&unplaced.key) {
                    unplaced.reason = reason.clone();
                }
            }
        }
    }

    /// Holds on their machine the instances of a machine that was lost
    /// (unreachable or decommissioning, not yet confirmed gone by the
    /// provider): `plan` keeps their old assignments, and asks for no
    /// machine for them, unless their job says `reschedule: immediately`.
    /// They are placed anew once the machine is terminated and removed, so
    /// an instance never runs on two machines at once. Answers how many
    /// are held.
    pub fn hold_unfenced(&self, plan: &mut Plan) -> usize {
        let held: Vec<Assignment> = self
            .state
            .assignments
            .iter()
            .filter(|a| {
                let lost = self
                    .state
                    .machines
                    .get(&a.machine)
                    .is_some_and(|m| !m.state().accepts_instances());
                let waits = self
                    .state
                    .jobs
                    .get(&a.key.job)
                    .is_some_and(|j| j.spec.reschedule == Reschedule::AfterFence);
                lost && waits
            })
            .cloned()
            .collect();
        if held.is_empty() {
            return 0;
        }
        let keys: std::collections::HashSet<&InstanceKey> = held.iter().map(|a| &a.key).collect();
        plan.assignments.retain(|a| !keys.contains(&a.key));
        plan.assignments.extend(held.iter().cloned());
        plan.assignments.sort_by(|a, b| a.key.cmp(&b.key));
        for request in &mut plan.provision {
            request.for_instances.retain(|k| !keys.contains(k));
        }
        plan.provision.retain(|r| !r.for_instances.is_empty());
        plan.unplaced.retain(|u| !keys.contains(&u.key));
        held.len()
    }

    /// Keeps the last placement, for what it could not place.
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan;
        // Unplaced instances are numbered too: they are shown by number.
        self.number_instances();
    }

    /// How machine `machine`'s instances of `job` stand in a rollout that
    /// switched it at `switched_at` (ms): healthy once every one runs,
    /// started after the switch and for at least `min_healthy_ms`, and (for
    /// a job with a recipe) reports its deployment `Ready` for the release
    /// it was sent; failed when one reports that deployment `Failed`.
    fn switched_machine_health(
        &self,
        job: &str,
        machine: &str,
        switched_at: u64,
        min_healthy_ms: u64,
        now: u64,
    ) -> MachineHealth {
        let Some(report) = self.reports.get(machine) else {
            return MachineHealth::Waiting;
        };
        let mut health = MachineHealth::Healthy;
        for assignment in self.assignments_on(machine).filter(|a| a.key.job == job) {
            let task_name = self.task_name_of(&assignment.key);
            let task = report.tasks.get(&task_name);
            let runs = task.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.state.kind() == cerebro_types::StateKind::Running
                    && s.started_at_ms.is_some_and(|started| {
                        started >= switched_at && now.saturating_sub(started) >= min_healthy_ms
                    })
            });
            let deployed = match self.instance_deployment(&assignment.key, machine) {
                None => true,
                Some(deployment) => {
                    let release = deployment.release_id();
                    let status = task
                        .and_then(|t| t.deploy.as_ref())
                        .filter(|d| d.release == release);
                    match status.map(|d| d.state) {
                        Some(DeployState::Ready) => true,
                        Some(DeployState::Failed) => {
                            let status = status.cloned();
                            return MachineHealth::Failed(RolloutStop {
                                machine: machine.to_string(),
                                instance: self.instance_number(&assignment.key) as usize,
                                zone: assignment.key.zone.clone(),
                                task: task_name,
                                release,
                                step: status.as_ref().and_then(|d| d.step.clone()),
                                error: status.and_then(|d| d.error),
                                at_ms: now,
                            });
                        }
                        _ => false,
                    }
                }
            };
            if !(runs && deployed) {
                health = MachineHealth::Waiting;
            }
        }
        health
    }

    /// Rolling updates at `now` (ms): switches the next machines'
    /// instances to the target generation once those switched before have
    /// run healthy for the job's minimum time (and deployed their release,
    /// for a job with a recipe), and ends finished updates. A machine whose
    /// deployment failed stops the update there, with one event, until it
    /// deploys (the machine retries) or another update is requested.
    /// Answers whether anything changed.
    pub fn advance_rollouts(&mut self, now: u64) -> bool {
        let cluster = self;
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
            let health: BTreeMap<&String, MachineHealth> = hosting
                .iter()
                .filter_map(|m| {
                    let switched_at = rollout.switched.get(m)?;
                    Some((
                        m,
                        cluster.switched_machine_health(
                            &name,
                            m,
                            *switched_at,
                            rollout.min_healthy_ms,
                            now,
                        ),
                    ))
                })
                .collect();
            let in_flight = health
                .values()
                .filter(|h| !matches!(h, MachineHealth::Healthy))
                .count();
            let failure = health.values().find_map(|h| match h {
                MachineHealth::Failed(stop) => Some(stop.clone()),
                _ => None,
            });
            let left: Vec<String> = hosting
                .iter()
                .filter(|m| job.generation_on(m) < rollout.target_generation)
                .cloned()
                .collect();
            // A stop lasts until its machine is healthy (or gone): a retry
            // that is installing again is still the same stop, not news.
            let stop_over =
                rollout
                    .stopped
                    .as_ref()
                    .and_then(|stop| match health.get(&stop.machine) {
                        None => Some(format!("{} no longer runs the job", stop.machine)),
                        Some(MachineHealth::Healthy) => {
                            Some(format!("{} is deployed and healthy now", stop.machine))
                        }
                        Some(_) => None,
                    });
            let Some(job) = cluster.state.jobs.get_mut(&name) else {
                continue;
            };
            let Some(record) = job.rollout.as_mut() else {
                continue;
            };
            if let Some(why) = stop_over {
                if record.stopped.take().is_some() {
                    events.push((
                        name.clone(),
                        ClusterEventKind::RolloutStep,
                        format!("rolling update resumes: {why}"),
                    ));
                    changed = true;
                }
            }
            if record.stopped.is_none() {
                if let Some(stop) = failure {
                    events.push((
                        name.clone(),
                        ClusterEventKind::RolloutStopped,
                        format!(
                            "rolling update to generation {} stopped: {stop}; no further machine is updated until it deploys (its machine retries) or another update is requested",
                            rollout.target_generation
                        ),
                    ));
                    record.stopped = Some(stop);
                    changed = true;
                }
            }
            let stopped = record.stopped.is_some();
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
            let slots = if stopped {
                0
            } else {
                rollout.max_parallel.saturating_sub(in_flight)
            };
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
        changed
    }
}
