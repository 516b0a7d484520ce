//! The planner: placement's working state (jobs and machines by index) and
//! the steps that keep previous assignments, add followers and place new
//! master instances.

use super::*;

pub(super) struct PlannedJob<'a> {
    pub(super) spec: &'a JobSpec,
    pub(super) role: Role,
    /// Every job that (transitively) follows this one, in processing order.
    pub(super) followers_transitive: Vec<usize>,
    /// Instances of this job per machine index.
    pub(super) count_on_machine: BTreeMap<usize, u32>,
}

impl PlannedJob<'_> {
    pub(super) fn name(&self) -> &str {
        self.spec.name()
    }
}

pub(super) struct PlannedMachine<'a> {
    pub(super) spec: &'a PlacementMachine,
    /// Index into the served zones.
    pub(super) zone: usize,
    pub(super) reserved: Need,
    pub(super) instances: u32,
}

/// A served zone: its name and the size of a new machine there.
pub(super) struct ServedZone<'a> {
    pub(super) name: &'a str,
    pub(super) new_machine_size: Resources,
    /// No machine of the zone is larger than this.
    pub(super) largest: Resources,
}

/// A master instance that fits on no existing machine.
pub(super) struct Waiting {
    pub(super) job: usize,
    pub(super) zone: usize,
    pub(super) slot: u32,
}

pub(super) struct Planner<'a> {
    pub(super) input: &'a PlacementInput<'a>,
    /// Sorted by name; the index is the job's identity from here on.
    pub(super) jobs: Vec<PlannedJob<'a>>,
    pub(super) job_by_name: HashMap<&'a str, usize>,
    /// Followers sorted by (depth, name): every master before its followers.
    pub(super) follower_order: Vec<usize>,
    /// Usable machines in served zones, sorted by id, so comparing indexes
    /// compares ids.
    pub(super) machines: Vec<PlannedMachine<'a>>,
    pub(super) machine_by_id: HashMap<&'a str, usize>,
    pub(super) zones: Vec<ServedZone<'a>>,
    pub(super) zone_by_name: HashMap<&'a str, usize>,
    /// (job, machine, slot); the key's zone is the machine's zone.
    pub(super) assignments: Vec<(usize, usize, u32)>,
    /// Master instances already on a machine, as (job, zone, slot).
    pub(super) placed_masters: HashSet<(usize, usize, u32)>,
    /// Follower instances on a machine, as (job, zone, slot), so two
    /// machines sharing a number cannot produce the same key twice.
    pub(super) placed_followers: HashSet<(usize, usize, u32)>,
    pub(super) waiting: Vec<Waiting>,
    pub(super) provision: Vec<ProvisionRequest>,
    pub(super) unplaced: Vec<Unplaced>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(input: &'a PlacementInput<'a>) -> Self {
        let zones: Vec<ServedZone> = input
            .zone_machine_size
            .iter()
            .map(|(name, size)| ServedZone {
                name: name.as_str(),
                new_machine_size: *size,
                largest: input.largest_machine.get(name).copied().unwrap_or(*size),
            })
            .collect();
        let zone_by_name = zones
            .iter()
            .enumerate()
            .map(|(index, zone)| (zone.name, index))
            .collect();

        let mut planner = Planner {
            input,
            jobs: Vec::new(),
            job_by_name: HashMap::new(),
            follower_order: Vec::new(),
            machines: Vec::new(),
            machine_by_id: HashMap::new(),
            zones,
            zone_by_name,
            assignments: Vec::new(),
            placed_masters: HashSet::new(),
            placed_followers: HashSet::new(),
            waiting: Vec::new(),
            provision: Vec::new(),
            unplaced: Vec::new(),
        };
        planner.load_machines();
        planner.load_jobs();
        planner
    }

    pub(super) fn load_machines(&mut self) {
        let mut usable: Vec<&PlacementMachine> = self
            .input
            .machines
            .iter()
            .filter(|m| m.state.accepts_instances())
            .collect();
        // Ties on the id only matter for malformed input; break them by
        // every field so the choice does not depend on input order.
        usable.sort_by(|a, b| {
            a.id.cmp(&b.id)
                .then_with(|| a.zone.cmp(&b.zone))
                .then_with(|| a.number.cmp(&b.number))
                .then_with(|| a.state.cmp(&b.state))
                .then_with(|| a.capacity.cpu.total_cmp(&b.capacity.cpu))
                .then_with(|| a.capacity.mem_mb.total_cmp(&b.capacity.mem_mb))
        });
        usable.dedup_by(|later, earlier| later.id == earlier.id);
        for machine in usable {
            // A machine in a zone the cluster no longer serves can hold nothing.
            let Some(&zone) = self.zone_by_name.get(machine.zone.as_str()) else {
                continue;
            };
            self.machine_by_id
                .insert(machine.id.as_str(), self.machines.len());
            self.machines.push(PlannedMachine {
                spec: machine,
                zone,
                reserved: NO_NEED,
                instances: 0,
            });
        }
    }

    pub(super) fn load_jobs(&mut self) {
        let mut specs: Vec<&JobSpec> = self.input.jobs.iter().collect();
        // Duplicate names are malformed input; the tie-break only keeps the
        // result independent of input order.
        specs.sort_by(|a, b| {
            a.name()
                .cmp(b.name())
                .then_with(|| format!("{a:?}").cmp(&format!("{b:?}")))
        });
        specs.dedup_by(|later, earlier| later.name() == earlier.name());
        self.job_by_name = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| (spec.name(), index))
            .collect();
        let roles = resolve_roles(&specs, &self.job_by_name);
        self.jobs = specs
            .into_iter()
            .zip(roles)
            .map(|(spec, role)| PlannedJob {
                spec,
                role,
                followers_transitive: Vec::new(),
                count_on_machine: BTreeMap::new(),
            })
            .collect();

        let mut followers: Vec<(u32, usize)> = Vec::new();
        for (index, job) in self.jobs.iter().enumerate() {
            match &job.role {
                Role::Follower { depth, .. } => followers.push((*depth, index)),
                Role::Broken { reason } => self.unplaced.push(Unplaced {
                    key: InstanceKey {
                        job: job.name().to_string(),
                        zone: String::new(),
                        slot: 0,
                    },
                    need: job.spec.need_in(""),
                    reason: reason.clone(),
                }),
                Role::Master => {}
            }
        }
        followers.sort_unstable();
        self.follower_order = followers.into_iter().map(|(_, index)| index).collect();

        // Walking the followers in processing order and appending each to
        // all of its ancestors keeps every ancestor's list in that order too.
        for position in 0..self.follower_order.len() {
            let follower = self.follower_order[position];
            let mut ancestor = follower;
            while let Role::Follower { master, .. } = self.jobs[ancestor].role {
                self.jobs[master].followers_transitive.push(follower);
                ancestor = master;
            }
        }
    }

    pub(super) fn need(&self, job: usize, zone: usize) -> Need {
        self.jobs[job].spec.need_in(self.zones[zone].name)
    }

    /// What a master instance needs on a machine that does not run the job
    /// yet: itself plus one instance of each job that follows it.
    pub(super) fn need_with_followers(&self, job: usize, zone: usize) -> Need {
        self.jobs[job]
            .followers_transitive
            .iter()
            .fold(self.need(job, zone), |total, &follower| {
                add_needs(total, self.need(follower, zone))
            })
    }

    pub(super) fn fits(&self, machine: usize, need: Need) -> bool {
        let machine = &self.machines[machine];
        fits_within(machine.reserved, need, machine.spec.capacity)
    }

    pub(super) fn assign(&mut self, job: usize, machine: usize, slot: u32) {
        let need = self.need(job, self.machines[machine].zone);
        let planned = &mut self.machines[machine];
        planned.reserved = add_needs(planned.reserved, need);
        planned.instances += 1;
        *self.jobs[job].count_on_machine.entry(machine).or_insert(0) += 1;
        self.assignments.push((job, machine, slot));
    }

    pub(super) fn master_instance_is_wanted(&self, job: usize, zone: &str, slot: u32) -> bool {
        matches!(self.jobs[job].role, Role::Master)
            && self.zone_by_name.contains_key(zone)
            && slot < self.jobs[job].spec.instances_in(zone)
    }

    pub(super) fn keep_previous_masters(&mut self) {
        let mut previous: Vec<&Assignment> = self.input.previous.iter().collect();
        previous.sort();
        for assignment in previous {
            let key = &assignment.key;
            let (Some(&job), Some(&machine)) = (
                self.job_by_name.get(key.job.as_str()),
                self.machine_by_id.get(assignment.machine.as_str()),
            ) else {
                continue;
            };
            let zone = self.machines[machine].zone;
            if self.machines[machine].spec.zone != key.zone
                || !self.master_instance_is_wanted(job, &key.zone, key.slot)
                || self.placed_masters.contains(&(job, zone, key.slot))
                || !self.fits(machine, self.need(job, zone))
            {
                continue;
            }
            self.placed_masters.insert((job, zone, key.slot));
            self.assign(job, machine, key.slot);
        }
    }

    /// Followers on machines whose master instances were kept: first the
    /// follower instances that were there before, so a new follower cannot
    /// take their room, then the ones still missing.
    pub(super) fn keep_and_add_followers(&mut self) {
        let mut previous_followers: HashSet<(usize, usize)> = HashSet::new();
        for assignment in self.input.previous {
            let (Some(&job), Some(&machine)) = (
                self.job_by_name.get(assignment.key.job.as_str()),
                self.machine_by_id.get(assignment.machine.as_str()),
            ) else {
                continue;
            };
            let spec = self.machines[machine].spec;
            if matches!(self.jobs[job].role, Role::Follower { .. })
                && assignment.key.zone == spec.zone
                && assignment.key.slot == spec.number
            {
                previous_followers.insert((job, machine));
            }
        }

        for keep_only_previous in [true, false] {
            for position in 0..self.follower_order.len() {
                let follower = self.follower_order[position];
                let Role::Follower { master, .. } = self.jobs[follower].role else {
                    continue;
                };
                let master_machines: Vec<usize> =
                    self.jobs[master].count_on_machine.keys().copied().collect();
                for machine in master_machines {
                    if self.jobs[follower].count_on_machine.contains_key(&machine) {
                        continue;
                    }
                    let was_there = previous_followers.contains(&(follower, machine));
                    if keep_only_previous {
                        let need = self.need(follower, self.machines[machine].zone);
                        if was_there && self.fits(machine, need) {
                            self.add_follower(follower, machine);
                        }
                    } else {
                        self.add_follower(follower, machine);
                    }
                }
            }
        }
    }

    /// Puts `follower` on `machine` or explains in `unplaced` why not.
    pub(super) fn add_follower(&mut self, follower: usize, machine: usize) {
        let zone = self.machines[machine].zone;
        let number = self.machines[machine].spec.number;
        if let Role::Follower { master, .. } = self.jobs[follower].role {
            // Only when an earlier link of a chain could not be placed here;
            // that link's own entry in `unplaced` explains the gap.
            if !self.jobs[master].count_on_machine.contains_key(&machine) {
                return;
            }
        }
        let key = InstanceKey {
            job: self.jobs[follower].name().to_string(),
            zone: self.zones[zone].name.to_string(),
            slot: number,
        };
        let need = self.need(follower, zone);
        let master_name = match self.jobs[follower].role {
            Role::Follower { master, .. } => self.jobs[master].name(),
            _ => "",
        };
        let machine_id = self.machines[machine].spec.id.as_str();
        if self.placed_followers.contains(&(follower, zone, number)) {
            let reason = format!(
                "machine '{machine_id}' runs '{master_name}' but another machine in zone '{}' has the same number {number}",
                self.zones[zone].name
            );
            self.unplaced.push(Unplaced { key, need, reason });
            return;
        }
        if !self.fits(machine, need) {
            let planned = &self.machines[machine];
            let reason = format!(
                "machine '{machine_id}' runs '{master_name}' but has no room for this linked instance (needs {} cpu, {} MB; free {} cpu, {} MB)",
                need.cpu,
                need.mem_mb,
                planned.spec.capacity.cpu - planned.reserved.cpu,
                planned.spec.capacity.mem_mb - planned.reserved.mem_mb,
            );
            self.unplaced.push(Unplaced { key, need, reason });
            return;
        }
        self.placed_followers.insert((follower, zone, number));
        self.assign(follower, machine, number);
    }

    /// Places the master instances not kept, job by job and zone by zone.
    ///
    /// Each served zone keeps its machines in a [`ZonePool`], which finds
    /// the machine with the fewest instances (then the lowest id) that has
    /// room for a need. For one job-zone, the machines already running the
    /// job leave the pool for a set ordered by (instances of the job,
    /// instances, id); a machine from the pool always wins over one from
    /// that set, which is the (same job, total, id) order without rebuilding
    /// anything per job. A machine of that set too full for the job is set
    /// aside until the job-zone is done: reservations only grow meanwhile,
    /// so it stays too full.
    pub(super) fn place_new_masters(&mut self) {
        let mut pools: Vec<ZonePool> = (0..self.zones.len())
            .map(|zone| {
                let members: Vec<usize> = (0..self.machines.len())
                    .filter(|&machine| self.machines[machine].zone == zone)
                    .collect();
                ZonePool::new(members)
            })
            .collect();
        for machine in 0..self.machines.len() {
            let zone = self.machines[machine].zone;
            self.return_to_pool(&mut pools[zone], machine);
        }

        for job in 0..self.jobs.len() {
            if !matches!(self.jobs[job].role, Role::Master) {
                continue;
            }
            let layout_zones: Vec<&'a str> = self.jobs[job]
                .spec
                .deployment_layout
                .keys()
                .map(String::as_str)
                .collect();
            for zone_name in layout_zones {
                let count = self.jobs[job].spec.instances_in(zone_name);
                let Some(&zone) = self.zone_by_name.get(zone_name) else {
                    self.report_unserved_zone(job, zone_name, count);
                    continue;
                };
                let missing: Vec<u32> = (0..count)
                    .filter(|slot| !self.placed_masters.contains(&(job, zone, *slot)))
                    .collect();
                if !missing.is_empty() {
                    self.place_job_in_zone(job, zone, &missing, &mut pools[zone]);
                }
            }
        }
    }

    pub(super) fn return_to_pool(&self, pool: &mut ZonePool, machine: usize) {
        let planned = &self.machines[machine];
        let free = Need {
            cpu: planned.spec.capacity.cpu - planned.reserved.cpu,
            mem_mb: planned.spec.capacity.mem_mb - planned.reserved.mem_mb,
        };
        pool.insert(machine, planned.instances, free);
    }

    pub(super) fn report_unserved_zone(&mut self, job: usize, zone: &str, count: u32) {
        let served: Vec<&str> = self.zones.iter().map(|z| z.name).collect();
        let serves = if served.is_empty() {
            "it serves no zones".to_string()
        } else {
            format!("it serves: {}", served.join(", "))
        };
        let reason = format!("zone '{zone}' is not served by this cluster ({serves})");
        let need = self.jobs[job].spec.need_in(zone);
        for slot in 0..count {
            self.unplaced.push(Unplaced {
                key: InstanceKey {
                    job: self.jobs[job].name().to_string(),
                    zone: zone.to_string(),
                    slot,
                },
                need,
                reason: reason.clone(),
            });
        }
    }

    pub(super) fn place_job_in_zone(
        &mut self,
        job: usize,
        zone: usize,
        missing: &[u32],
        pool: &mut ZonePool,
    ) {
        let need = self.need(job, zone);
        let first_need = self.need_with_followers(job, zone);

        let mut running_job: BTreeSet<(u32, u32, usize)> = BTreeSet::new();
        for (&machine, &count) in &self.jobs[job].count_on_machine {
            let planned = &self.machines[machine];
            if planned.zone == zone {
                pool.remove(machine);
                running_job.insert((count, planned.instances, machine));
            }
        }
        let mut set_aside: Vec<usize> = Vec::new();

        for &slot in missing {
            let mut chosen =
                pool.take_first_with_room(first_need, |machine| self.fits(machine, first_need));
            if chosen.is_none() {
                while let Some((_, _, machine)) = running_job.pop_first() {
                    if self.fits(machine, need) {
                        chosen = Some(machine);
                        break;
                    }
                    set_aside.push(machine);
                }
            }
            let Some(machine) = chosen else {
                self.waiting.push(Waiting { job, zone, slot });
                continue;
            };
            let new_to_machine = !self.jobs[job].count_on_machine.contains_key(&machine);
            self.placed_masters.insert((job, zone, slot));
            self.assign(job, machine, slot);
            if new_to_machine {
                for position in 0..self.jobs[job].followers_transitive.len() {
                    let follower = self.jobs[job].followers_transitive[position];
                    self.add_follower(follower, machine);
                }
            }
            let count = self.jobs[job]
                .count_on_machine
                .get(&machine)
                .copied()
                .unwrap_or(0);
            running_job.insert((count, self.machines[machine].instances, machine));
        }

        for machine in running_job
            .into_iter()
            .map(|(_, _, machine)| machine)
            .chain(set_aside)
        {
            self.return_to_pool(pool, machine);
        }
    }

    pub(super) fn into_plan(self) -> Plan {
        let mut assignments: Vec<Assignment> = self
            .assignments
            .iter()
            .map(|&(job, machine, slot)| {
                let machine = &self.machines[machine];
                Assignment {
                    key: InstanceKey {
                        job: self.jobs[job].name().to_string(),
                        zone: self.zones[machine.zone].name.to_string(),
                        slot,
                    },
                    machine: machine.spec.id.clone(),
                }
            })
            .collect();
        assignments.sort();
        let mut unplaced = self.unplaced;
        unplaced.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.reason.cmp(&b.reason)));
        let mut provision = self.provision;
        provision.sort_by(|a, b| {
            a.zone
                .cmp(&b.zone)
                .then_with(|| a.for_instances.cmp(&b.for_instances))
        });
        Plan {
            assignments,
            provision,
            unplaced,
        }
    }
}
