//! What the API and pages show of the cluster: job, instance and machine
//! views and the status, computed from the state under the lock.

use super::*;
use cerebro_types::cluster::{PlanReply, PlannedInstance, RecipeView};
use cerebro_types::deploy::DeployState;
use cerebro_types::health::{
    recent_restarts, ExitReason, HealthCounts, HealthInput, InstanceHealth, JobHealth, Pending,
};

/// Nothing reserved, nothing free: the start of a sum.
/// (`Resources` has no `Default`, and it is not this crate's type.)
const NO_RESOURCES: Resources = Resources {
    cpu: 0.0,
    mem_mb: 0.0,
};

#[derive(Default)]
struct AssignmentIndex<'a> {
    machine_of: HashMap<&'a InstanceKey, &'a str>,
    /// Machines with at least one assignment, and what they reserve.
    reserved: HashMap<&'a str, Resources>,
}

impl AssignmentIndex<'_> {
    fn reserved_on(&self, machine: &str) -> Resources {
        self.reserved.get(machine).copied().unwrap_or(NO_RESOURCES)
    }
}

impl Cluster {
    /// What machine `id` reserves: its instances and its orphans.
    fn reserved_on(&self, assigned: &AssignmentIndex, id: &str) -> Resources {
        let instances = assigned.reserved_on(id);
        let orphans = self.orphan_reservation(id);
        Resources {
            cpu: instances.cpu + orphans.cpu,
            mem_mb: instances.mem_mb + orphans.mem_mb,
        }
    }

    /// Every instance the jobs want, placed or not, in a stable order: a
    /// job's own layout says what it wants even before placement has run;
    /// a linked job wants what placement gave it.
    pub(super) fn instance_keys(&self, job: &str) -> Vec<InstanceKey> {
        let from_layout: Vec<InstanceKey> = self
            .state
            .jobs
            .get(job)
            .filter(|record| record.spec.linked_job.is_none())
            .map(|record| {
                record
                    .spec
                    .deployment_layout
                    .iter()
                    .flat_map(|(zone, layout)| {
                        (0..layout.cpu).map(|slot| InstanceKey {
                            job: job.to_string(),
                            zone: zone.clone(),
                            slot,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut keys: Vec<InstanceKey> = self
            .state
            .assignments
            .iter()
            .filter(|a| a.key.job == job)
            .map(|a| a.key.clone())
            .chain(
                self.plan
                    .unplaced
                    .iter()
                    .filter(|u| u.key.job == job && !u.key.zone.is_empty())
                    .map(|u| u.key.clone()),
            )
            .chain(from_layout)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Which machine holds each instance and what each machine reserves,
    /// computed once per view rather than by a scan per instance.
    fn assignment_index(&self) -> AssignmentIndex<'_> {
        let mut index = AssignmentIndex::default();
        for assignment in &self.state.assignments {
            index
                .machine_of
                .insert(&assignment.key, assignment.machine.as_str());
            if let Some(job) = self.state.jobs.get(&assignment.key.job) {
                let need = job.spec.need_in(&assignment.key.zone);
                let reserved = index
                    .reserved
                    .entry(assignment.machine.as_str())
                    .or_insert(NO_RESOURCES);
                reserved.cpu += need.cpu;
                reserved.mem_mb += need.mem_mb;
            }
        }
        index
    }

    fn instance_view(&self, assigned: &AssignmentIndex, key: &InstanceKey) -> InstanceView {
        let index = self.instance_number(key) as usize;
        let machine = assigned.machine_of.get(key).map(|m| m.to_string());
        let task_name = self.task_name_of(key);
        let task = machine
            .as_ref()
            .and_then(|m| self.reports.get(m))
            .and_then(|r| r.tasks.get(&task_name));
        let report = task.and_then(|t| t.status.as_ref());
        let ports = task.map(|t| t.ports.clone()).unwrap_or_default();
        let host = machine
            .as_deref()
            .filter(|_| !ports.is_empty())
            .and_then(|m| self.machine_host(m));
        let record = self.state.jobs.get(&key.job);
        let generation = record.map_or(0, |j| {
            machine
                .as_ref()
                .map_or(j.generation, |m| j.generation_on(m))
        });
        let wanted_running = record.is_none_or(|j| {
            j.run_requested
                .unwrap_or(j.spec.task_configuration.auto_start)
        });
        let deploy = task.and_then(|t| t.deploy.as_ref());
        // Nothing installed yet: its process cannot run the release.
        let deploying = deploy.is_some_and(|d| {
            d.running_release.is_none()
                && !matches!(d.state, DeployState::Ready | DeployState::Checking)
        });
        let now = now_ms();
        // A machine that missed its last poll may be gone: what it said
        // before is no proof its instances still run.
        let unreachable = machine
            .as_deref()
            .and_then(|m| self.state.machines.get(m))
            .is_some_and(|m| {
                m.missed_polls >= 1
                    || matches!(
                        m.state(),
                        MachineState::Unreachable | MachineState::Decommissioning
                    )
            });
        let health = InstanceHealth::judge(
            &HealthInput {
                wanted_running,
                status: report.filter(|_| !unreachable),
                deploying,
                healthy_after_secs: record.map_or(10.0, |j| {
                    j.spec.task_configuration.backoff.healthy_after_secs
                }),
            },
            now,
        );
        let pending = (health == InstanceHealth::Pending)
            .then(|| self.pending_reason(key, machine.as_deref(), deploy));
        InstanceView {
            index,
            job: key.job.clone(),
            zone: key.zone.clone(),
            slot: key.slot,
            task_name,
            machine,
            state: report.map_or(InstanceState::Pending, |s| s.state.kind().into()),
            pid: report.and_then(|s| s.pid),
            restarts: report.map_or(0, |s| s.restarts),
            violations: report.map_or(0, |s| {
                s.violations.memory + s.violations.cpu + s.violations.time
            }),
            cpu_cores: report.map_or(0.0, |s| s.cpu_cores),
            rss_bytes: report.map_or(0, |s| s.rss_bytes),
            started_at_ms: report.and_then(|s| s.started_at_ms),
            generation,
            deploy: task.and_then(|t| t.deploy.clone()),
            dns_name: assigned
                .machine_of
                .get(key)
                .and_then(|m| self.dns_machine_name(&key.job, m)),
            host,
            ports,
            health,
            wanted_running,
            pending,
            last_exit: report.and_then(ExitReason::last_of),
            recent_restarts: report.map_or(0, |s| recent_restarts(s, now)),
        }
    }

    /// Why instance `key` (on `machine`, if placed) has no process yet.
    fn pending_reason(
        &self,
        key: &InstanceKey,
        machine: Option<&str>,
        deploy: Option<&cerebro_types::deploy::DeployStatus>,
    ) -> Pending {
        if let Some(record) = machine.and_then(|m| self.state.machines.get(m)) {
            let id = &record.id;
            let missed = cerebro_types::wording::count_of(record.missed_polls as usize, "poll");
            match record.state() {
                MachineState::Decommissioning => {
                    return Pending::new(
                        "machine_unreachable",
                        format!("its machine {id} was lost (missed {missed}): it moves once the provider confirms the machine gone"),
                    )
                }
                MachineState::Unreachable => {
                    return Pending::new(
                        "machine_unreachable",
                        format!("its machine {id} missed {missed} and is unreachable"),
                    )
                }
                _ if record.missed_polls >= 1 => {
                    return Pending::new(
                        "machine_unreachable",
                        format!("its machine {id} missed {missed}"),
                    )
                }
                _ => {}
            }
        }
        if let Some(deploy) = deploy {
            return match deploy.state {
                DeployState::Failed => Pending::new(
                    "deploy_failed",
                    format!(
                        "deploy of release {} failed{}: {}",
                        deploy.release,
                        deploy
                            .step
                            .as_deref()
                            .map(|s| format!(" at {s}"))
                            .unwrap_or_default(),
                        deploy.error.as_deref().unwrap_or("no reason given")
                    ),
                ),
                _ => Pending::new(
                    "deploying",
                    format!(
                        "deploying release {} ({})",
                        deploy.release,
                        deploy.state.as_str()
                    ),
                ),
            };
        }
        let Some(machine) = machine else {
            return self.unplaced_reason(key);
        };
        match self.state.machines.get(machine).map(|m| m.state()) {
            Some(MachineState::Provisioning) => Pending::new(
                "waiting_for_machine",
                format!("waiting for machine {machine} to come up"),
            ),
            _ => Pending::new(
                "not_reported",
                format!("sent to machine {machine}; not reported yet"),
            ),
        }
    }

    /// Why instance `key`, on no machine, waits: a machine asked for it
    /// (and how asking goes in its zone), the machine cap, or no machine
    /// of its zone being big enough.
    fn unplaced_reason(&self, key: &InstanceKey) -> Pending {
        let requested = self
            .plan
            .provision
            .iter()
            .any(|r| r.for_instances.contains(key));
        let unplaced = self.plan.unplaced.iter().find(|u| u.key == *key);
        if requested {
            return match self.provisioning_error(&key.zone) {
                Some(error) => provisioning_pending(&key.zone, error),
                None => Pending::new(
                    "waiting_for_machine",
                    format!("waiting for a new machine in {}", key.zone),
                ),
            };
        }
        let Some(unplaced) = unplaced else {
            return Pending::new("waiting_for_machine", "not placed yet");
        };
        // Placement asked for no machine for it: either none could hold
        // it, or the cap dropped the request (placement's requests and the
        // machines recorded reach max_machines, and a machine would hold it).
        let max = self.config.provider.max_machines;
        let recorded = self.state.machines.len();
        let fits = self.largest_machine.get(&key.zone).is_some_and(|largest| {
            unplaced.need.cpu <= largest.cpu + 1e-9 && unplaced.need.mem_mb <= largest.mem_mb + 1e-9
        });
        if fits && recorded + self.plan.provision.len() >= max {
            // In placement's words (`Cluster::cap_new_machines`), as the
            // cluster's status says it.
            return Pending::new("provider_limit", unplaced.reason.clone());
        }
        if fits {
            if let Some(error) = self.provisioning_error(&key.zone) {
                return provisioning_pending(&key.zone, error);
            }
        }
        Pending::new("unplaceable", unplaced.reason.clone())
    }

    /// The host a machine's tasks are reached at: its IP as its names
    /// point at it ([`crate::dns::names::machine_ip`]), else the host part
    /// of the address it registered (a host name).
    fn machine_host(&self, machine: &str) -> Option<String> {
        let record = self.state.machines.get(machine)?;
        let address = record.address.as_deref();
        crate::dns::names::machine_ip(record.details.private_address.as_deref(), address)
            .map(|ip| ip.to_string())
            .or_else(|| {
                let address = address?;
                Some(
                    address
                        .rsplit_once(':')
                        .map_or(address, |(host, _)| host)
                        .to_string(),
                )
            })
    }

    /// Every instance of `job`, placed or not, numbered in a stable order.
    pub fn instances_of(&self, job: &str) -> Vec<InstanceView> {
        self.instances_with(&self.assignment_index(), job)
    }

    /// A job's instances, by number.
    fn instances_with(&self, assigned: &AssignmentIndex, job: &str) -> Vec<InstanceView> {
        let mut instances: Vec<InstanceView> = self
            .instance_keys(job)
            .iter()
            .map(|key| self.instance_view(assigned, key))
            .collect();
        instances.sort_by_key(|i| i.index);
        instances
    }

    /// The view of job `name`, if it exists.
    pub fn view_of_job(&self, name: &str) -> Option<JobView> {
        self.state
            .jobs
            .get(name)
            .map(|record| self.job_view(name, record))
    }

    /// Every job's view, sorted by name.
    pub fn job_views(&self) -> Vec<JobView> {
        let assigned = self.assignment_index();
        self.state
            .jobs
            .iter()
            .map(|(name, record)| self.job_view_with(&assigned, name, record))
            .collect()
    }

    /// The view of job `name`, whose record is `record`.
    pub fn job_view(&self, name: &str, record: &JobRecord) -> JobView {
        self.job_view_with(&self.assignment_index(), name, record)
    }

    fn job_view_with(&self, assigned: &AssignmentIndex, name: &str, record: &JobRecord) -> JobView {
        let instances = self.instances_with(assigned, name);
        let rollout = record.rollout.as_ref().map(|r| {
            let hosting = self.machines_hosting(name);
            RolloutView {
                target_generation: r.target_generation,
                machines_done: hosting
                    .iter()
                    .filter(|m| record.generation_on(m) >= r.target_generation)
                    .cloned()
                    .collect(),
                machines_left: hosting
                    .iter()
                    .filter(|m| record.generation_on(m) < r.target_generation)
                    .cloned()
                    .collect(),
                // The machine switched most recently.
                current: r
                    .switched
                    .iter()
                    .max_by_key(|(_, at)| **at)
                    .map(|(machine, _)| machine.clone()),
                started_ms: r.started_ms,
                stopped: r.stopped.clone(),
            }
        });
        let zones: std::collections::BTreeSet<String> =
            instances.iter().map(|i| i.zone.clone()).collect();
        let mut health_counts = HealthCounts::default();
        for instance in &instances {
            health_counts.add(instance.health);
        }
        let health = JobHealth::of(instances.iter().map(|i| {
            (
                i.health,
                i.wanted_running,
                i.pending.as_ref().is_some_and(Pending::blocked),
            )
        }));
        let dns_names = self.dns_names_of_job(name, &zones);
        JobView {
            name: name.to_string(),
            spec: record.spec.clone(),
            version: record.version.clone(),
            generation: record.generation,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            // What the job asks for: a zone that shrank may still list an
            // instance on its way out until the next placement.
            desired_instances: if record.spec.linked_job.is_some() {
                instances.len()
            } else {
                record
                    .spec
                    .deployment_layout
                    .values()
                    .map(|layout| layout.cpu as usize)
                    .sum()
            },
            running_instances: health_counts.running,
            instances,
            health,
            health_counts,
            rollout,
            run_requested: record.run_requested,
            recipe: record.recipe.as_ref().map(|r| RecipeView {
                name: r.name.clone(),
                source: r.source.clone(),
                sha256: r.sha256.clone(),
                description: r.recipe.description.clone(),
                steps: r
                    .recipe
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, step)| step.label(i))
                    .collect(),
            }),
            dns_names,
        }
    }
    /// The view of one machine record.
    pub fn machine_view(&self, record: &MachineRecord) -> MachineView {
        self.machine_view_with(&self.assignment_index(), record)
    }

    /// Every machine's view, sorted by id.
    pub fn machine_views(&self) -> Vec<MachineView> {
        let assigned = self.assignment_index();
        self.state
            .machines
            .values()
            .map(|record| self.machine_view_with(&assigned, record))
            .collect()
    }

    fn machine_view_with(&self, assigned: &AssignmentIndex, record: &MachineRecord) -> MachineView {
        let instances: Vec<InstanceView> = self
            .assignments_on(&record.id)
            .map(|assignment| self.instance_view(assigned, &assignment.key))
            .collect();
        MachineView {
            id: record.id.clone(),
            zone: record.zone.clone(),
            provider: self.provider_kind.to_string(),
            provider_id: record.provider_id.clone(),
            details: record.details.clone(),
            address: record.address.clone(),
            state: record.state(),
            capacity: record.capacity,
            reserved: self.reserved_on(assigned, &record.id),
            created_ms: record.created_ms,
            last_seen_ms: record.last_seen_ms,
            missed_polls: record.missed_polls,
            used: Resources {
                cpu: instances.iter().map(|i| i.cpu_cores).sum(),
                mem_mb: instances
                    .iter()
                    .map(|i| i.rss_bytes as f64 / (1024.0 * 1024.0))
                    .sum(),
            },
            instances,
            orphans: self.orphans_on(&record.id),
            dns_names: self.dns_names_of_machine(&record.id),
            vitals: self
                .reports
                .get(&record.id)
                .and_then(|r| r.status.as_ref())
                .map(|s| s.vitals.clone()),
        }
    }

    /// What a dry run of `batch` (jobs added to or replacing the
    /// current ones) should warn of: each zone whose new machines the
    /// cluster's `max_machines` would not allow, e.g. `the plan needs 11
    /// new machines in zone local-a but max_machines (8, with 3 machines
    /// already) lets only 5 be added`.
    /// Empty when the plan fits.
    pub fn plan_warnings(&self, batch: &[JobSpec]) -> Vec<String> {
        let plan = self.uncapped_plan(&self.with_batch(batch));
        crate::placement::machine_cap_warnings(
            &plan,
            self.config.provider.max_machines,
            self.state.machines.len(),
        )
    }

    /// Every job's spec, those of `batch` added or in place of the
    /// current ones: what a dry run plans.
    fn with_batch(&self, batch: &[JobSpec]) -> Vec<JobSpec> {
        let mut all: BTreeMap<&str, &JobSpec> = self
            .state
            .jobs
            .iter()
            .map(|(name, record)| (name.as_str(), &record.spec))
            .collect();
        for job in batch {
            all.insert(job.name(), job);
        }
        all.into_values().cloned().collect()
    }

    /// The dry run of `batch` (checked by the caller): the placement the
    /// jobs would get, the number each planned instance would have
    /// (numbers it has are kept, a new one gets what
    /// [`JobRecord::number_instances`] would give), and the warnings.
    pub fn dry_run(&self, batch: &[JobSpec]) -> PlanReply {
        let specs = self.with_batch(batch);
        let plan = self.plan_for(&specs);
        let mut numbers = Vec::new();
        for spec in &specs {
            let mut keys: Vec<InstanceKey> = plan
                .assignments
                .iter()
                .map(|a| &a.key)
                .chain(plan.unplaced.iter().map(|u| &u.key))
                .filter(|k| k.job == spec.name())
                .cloned()
                .collect();
            keys.sort();
            keys.dedup();
            let mut record = self
                .state
                .jobs
                .get(spec.name())
                .cloned()
                .unwrap_or_else(|| JobRecord::new(spec.clone(), 0));
            record.number_instances(&keys);
            numbers.extend(keys.into_iter().filter_map(|key| {
                let number = record.instance_number(&key.zone, key.slot)?;
                Some(PlannedInstance { key, number })
            }));
        }
        PlanReply {
            jobs: batch.iter().map(|j| j.name().to_string()).collect(),
            warnings: self.plan_warnings(batch),
            plan,
            numbers,
        }
    }

    /// The cluster's status now.
    pub fn status(&self) -> ClusterStatus {
        self.status_with(&self.job_views())
    }

    /// The status from job views the caller already has.
    pub fn status_with(&self, jobs: &[JobView]) -> ClusterStatus {
        let assigned = self.assignment_index();
        let zones = self.config.zones();
        let mut zone_status = Vec::new();
        for zone in zones.keys() {
            let machines: Vec<&MachineRecord> = self
                .state
                .machines
                .values()
                .filter(|m| m.zone == *zone && m.state() != MachineState::Decommissioning)
                .collect();
            let mut capacity = NO_RESOURCES;
            let mut reserved = NO_RESOURCES;
            let mut idle = 0;
            for machine in &machines {
                capacity.cpu += machine.capacity.cpu;
                capacity.mem_mb += machine.capacity.mem_mb;
                let r = self.reserved_on(&assigned, &machine.id);
                reserved.cpu += r.cpu;
                reserved.mem_mb += r.mem_mb;
                if !assigned.reserved.contains_key(machine.id.as_str())
                    && !self.orphans.contains_key(&machine.id)
                {
                    idle += 1;
                }
            }
            zone_status.push(ZoneStatus {
                zone: zone.clone(),
                machines: machines.len(),
                idle_machines: idle,
                idle_limit: self.state.idle_limit(zone),
                capacity,
                reserved,
                provisioning_error: self.provisioning_error(zone).cloned(),
            });
        }
        ClusterStatus {
            cluster: self.config.cluster_name.clone(),
            provider: self.provider_kind.to_string(),
            zones: zone_status,
            jobs: jobs.len(),
            machines: self.state.machines.len(),
            desired_instances: jobs.iter().map(|j| j.desired_instances).sum(),
            running_instances: jobs.iter().map(|j| j.running_instances).sum(),
            instances: {
                let mut counts = HealthCounts::default();
                for instance in jobs.iter().flat_map(|j| &j.instances) {
                    counts.add(instance.health);
                }
                counts
            },
            jobs_by_health: {
                let mut by = BTreeMap::new();
                for job in jobs {
                    *by.entry(job.health).or_insert(0) += 1;
                }
                by
            },
            unplaced: self.plan.unplaced.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }
}

/// The reason of an instance waiting for a machine in `zone`, whose
/// provisioning keeps failing with `error`: `provider_limit` when the
/// provider says its limit is reached, else `provisioning_failed`; both
/// with the number of failed attempts and the next one.
fn provisioning_pending(zone: &str, error: &cerebro_types::cluster::ProvisioningError) -> Pending {
    let next = cerebro_types::time::format_rfc3339_ms(error.next_attempt_ms);
    let attempts = match error.failures {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    if error.code == "limit" {
        Pending::new(
            "provider_limit",
            format!(
                "{} (in {zone}; {attempts} failed, next at {next})",
                error.message
            ),
        )
    } else {
        Pending::new(
            "provisioning_failed",
            format!(
                "provisioning in {zone} failed: {} ({}); {attempts} failed, next at {next}",
                error.message, error.code
            ),
        )
    }
}
