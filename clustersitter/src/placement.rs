//! Placement: which machine runs each job instance, which machines to ask
//! the provider for, and what cannot be placed. A pure function of its input
//! (no I/O, no clock, no randomness), so the same cluster state always gives
//! the same plan and the reconciler can call it as often as it likes.
//!
//! The order of work:
//! 1. keep every previous assignment that is still wanted, still on a usable
//!    machine and still fits, so nothing moves without need;
//! 2. give every job linked to a master an instance on each machine already
//!    running that master;
//! 3. place the remaining master instances, spreading each job across the
//!    machines of its zone before doubling up, and bringing the linked jobs
//!    along whenever a master lands on a machine new to it;
//! 4. pack what fits nowhere into new machines of the zone's default size.

use cerebro_types::cluster::{
    Assignment, InstanceKey, MachineState, Plan, ProvisionRequest, Unplaced,
};
use cerebro_types::job::{JobSpec, Need};
use cerebro_types::machine::Resources;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Sums of floats drift; an instance that fits exactly must still fit.
const EPSILON: f64 = 1e-9;

/// A machine as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementMachine {
    pub id: String,
    pub zone: String,
    pub capacity: Resources,
    pub state: MachineState,
    /// Stable per-zone ordinal of the machine (1, 2, ...); linked-job instances use it as their slot.
    pub number: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct PlacementInput<'a> {
    /// Already validated individually.
    pub jobs: &'a [JobSpec],
    pub machines: &'a [PlacementMachine],
    /// The current assignments; kept where still valid so nothing moves without need.
    pub previous: &'a [Assignment],
    /// Zones this cluster serves, with the size of a new machine there.
    pub zone_machine_size: &'a BTreeMap<String, Resources>,
}

/// Places every instance of every job; see the module documentation.
/// The result is sorted (assignments and unplaced by key, provision requests
/// by zone, then by the instances they are for) and does not depend on the
/// order of the input slices.
pub fn place(input: &PlacementInput) -> Plan {
    let mut planner = Planner::new(input);
    planner.keep_previous_masters();
    planner.keep_and_add_followers();
    planner.place_new_masters();
    planner.plan_provisioning();
    planner.into_plan()
}

const NO_NEED: Need = Need {
    cpu: 0.0,
    mem_mb: 0.0,
};

fn add_needs(a: Need, b: Need) -> Need {
    Need {
        cpu: a.cpu + b.cpu,
        mem_mb: a.mem_mb + b.mem_mb,
    }
}

fn fits_within(reserved: Need, extra: Need, capacity: Resources) -> bool {
    reserved.cpu + extra.cpu <= capacity.cpu + EPSILON
        && reserved.mem_mb + extra.mem_mb <= capacity.mem_mb + EPSILON
}

/// How a job takes part in placement, decided once from the link graph.
#[derive(Debug, Clone)]
enum Role {
    /// Placed by its own `deployment_layout`.
    Master,
    /// One instance on every machine running `master`; `depth` counts the
    /// links up to a master, so processing by depth runs masters first.
    Follower { master: usize, depth: u32 },
    /// Has no instances; the reason goes into one `unplaced` entry.
    Broken { reason: String },
}

struct PlannedJob<'a> {
    spec: &'a JobSpec,
    role: Role,
    /// Every job that (transitively) follows this one, in processing order.
    followers_transitive: Vec<usize>,
    /// Instances of this job per machine index.
    count_on_machine: BTreeMap<usize, u32>,
}

impl PlannedJob<'_> {
    fn name(&self) -> &str {
        self.spec.name()
    }
}

struct PlannedMachine<'a> {
    spec: &'a PlacementMachine,
    /// Index into the served zones.
    zone: usize,
    reserved: Need,
    instances: u32,
}

/// A served zone: its name and the size of a new machine there.
struct ServedZone<'a> {
    name: &'a str,
    new_machine_size: Resources,
}

/// A master instance that fits on no existing machine.
struct Waiting {
    job: usize,
    zone: usize,
    slot: u32,
}

struct Planner<'a> {
    input: &'a PlacementInput<'a>,
    /// Sorted by name; the index is the job's identity from here on.
    jobs: Vec<PlannedJob<'a>>,
    job_by_name: HashMap<&'a str, usize>,
    /// Followers sorted by (depth, name): every master before its followers.
    follower_order: Vec<usize>,
    /// Usable machines in served zones, sorted by id, so comparing indexes
    /// compares ids.
    machines: Vec<PlannedMachine<'a>>,
    machine_by_id: HashMap<&'a str, usize>,
    zones: Vec<ServedZone<'a>>,
    zone_by_name: HashMap<&'a str, usize>,
    /// (job, machine, slot); the key's zone is the machine's zone.
    assignments: Vec<(usize, usize, u32)>,
    /// Master instances already on a machine, as (job, zone, slot).
    placed_masters: HashSet<(usize, usize, u32)>,
    /// Follower instances on a machine, as (job, zone, slot), so two
    /// machines sharing a number cannot produce the same key twice.
    placed_followers: HashSet<(usize, usize, u32)>,
    waiting: Vec<Waiting>,
    provision: Vec<ProvisionRequest>,
    unplaced: Vec<Unplaced>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a PlacementInput<'a>) -> Self {
        let zones: Vec<ServedZone> = input
            .zone_machine_size
            .iter()
            .map(|(name, size)| ServedZone {
                name: name.as_str(),
                new_machine_size: *size,
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

    fn load_machines(&mut self) {
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

    fn load_jobs(&mut self) {
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

    fn need(&self, job: usize, zone: usize) -> Need {
        self.jobs[job].spec.need_in(self.zones[zone].name)
    }

    /// What a master instance needs on a machine that does not run the job
    /// yet: itself plus one instance of each job that follows it.
    fn need_with_followers(&self, job: usize, zone: usize) -> Need {
        self.jobs[job]
            .followers_transitive
            .iter()
            .fold(self.need(job, zone), |total, &follower| {
                add_needs(total, self.need(follower, zone))
            })
    }

    fn fits(&self, machine: usize, need: Need) -> bool {
        let machine = &self.machines[machine];
        fits_within(machine.reserved, need, machine.spec.capacity)
    }

    fn assign(&mut self, job: usize, machine: usize, slot: u32) {
        let need = self.need(job, self.machines[machine].zone);
        let planned = &mut self.machines[machine];
        planned.reserved = add_needs(planned.reserved, need);
        planned.instances += 1;
        *self.jobs[job].count_on_machine.entry(machine).or_insert(0) += 1;
        self.assignments.push((job, machine, slot));
    }

    fn master_instance_is_wanted(&self, job: usize, zone: &str, slot: u32) -> bool {
        matches!(self.jobs[job].role, Role::Master)
            && self.zone_by_name.contains_key(zone)
            && slot < self.jobs[job].spec.instances_in(zone)
    }

    fn keep_previous_masters(&mut self) {
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
    fn keep_and_add_followers(&mut self) {
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
    fn add_follower(&mut self, follower: usize, machine: usize) {
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
    fn place_new_masters(&mut self) {
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

    fn return_to_pool(&self, pool: &mut ZonePool, machine: usize) {
        let planned = &self.machines[machine];
        let free = Need {
            cpu: planned.spec.capacity.cpu - planned.reserved.cpu,
            mem_mb: planned.spec.capacity.mem_mb - planned.reserved.mem_mb,
        };
        pool.insert(machine, planned.instances, free);
    }

    fn report_unserved_zone(&mut self, job: usize, zone: &str, count: u32) {
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

    fn place_job_in_zone(&mut self, job: usize, zone: usize, missing: &[u32], pool: &mut ZonePool) {
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

    /// Packs the waiting instances of each zone into new machines, first fit
    /// decreasing. Instances of one job in one zone are alike, so they are
    /// packed as a group: a bin that could not take one cannot take the
    /// next either, which keeps this linear in bins per group rather than
    /// per instance.
    fn plan_provisioning(&mut self) {
        let mut groups: BTreeMap<(usize, usize), Vec<u32>> = BTreeMap::new();
        for waiting in std::mem::take(&mut self.waiting) {
            groups
                .entry((waiting.zone, waiting.job))
                .or_default()
                .push(waiting.slot);
        }
        let mut by_zone: BTreeMap<usize, Vec<(usize, Vec<u32>)>> = BTreeMap::new();
        for ((zone, job), slots) in groups {
            by_zone.entry(zone).or_default().push((job, slots));
        }

        for (zone, mut zone_groups) in by_zone {
            let size = self.zones[zone].new_machine_size;
            let scores: HashMap<usize, f64> = zone_groups
                .iter()
                .map(|(job, _)| (*job, size_score(self.need_with_followers(*job, zone), size)))
                .collect();
            let score = |job: &usize| scores.get(job).copied().unwrap_or(0.0);
            // Largest first; the job index (name order) breaks ties.
            zone_groups
                .sort_by(|(a, _), (b, _)| score(b).total_cmp(&score(a)).then_with(|| a.cmp(b)));

            let mut bins: Vec<NewMachine> = Vec::new();
            for (job, slots) in zone_groups {
                self.pack_group(job, zone, &slots, &mut bins);
            }
            for bin in bins {
                self.request_machine(zone, bin);
            }
        }
    }

    fn pack_group(&self, job: usize, zone: usize, slots: &[u32], bins: &mut Vec<NewMachine>) {
        let size = self.zones[zone].new_machine_size;
        let need = self.need(job, zone);
        let first_need = self.need_with_followers(job, zone);
        if !fits_within(NO_NEED, first_need, size) {
            // Too big for the default size: a machine of its own, just big enough.
            let own_size = Resources {
                cpu: size.cpu.max(first_need.cpu),
                mem_mb: size.mem_mb.max(first_need.mem_mb),
            };
            for &slot in slots {
                bins.push(NewMachine {
                    size: own_size,
                    reserved: first_need,
                    shared: false,
                    jobs: BTreeSet::from([job]),
                    instances: vec![(job, slot)],
                });
            }
            return;
        }
        let mut remaining = slots.iter().copied().peekable();
        for bin in bins.iter_mut().filter(|bin| bin.shared) {
            while let Some(&slot) = remaining.peek() {
                let extra = if bin.jobs.contains(&job) {
                    need
                } else {
                    first_need
                };
                if !fits_within(bin.reserved, extra, bin.size) {
                    break;
                }
                bin.take(job, slot, extra);
                remaining.next();
            }
            if remaining.peek().is_none() {
                return;
            }
        }
        for slot in remaining {
            let room_in_last = bins
                .last()
                .filter(|bin| bin.shared && bin.jobs.contains(&job))
                .is_some_and(|bin| fits_within(bin.reserved, need, bin.size));
            if room_in_last {
                if let Some(bin) = bins.last_mut() {
                    bin.take(job, slot, need);
                }
            } else {
                let mut bin = NewMachine {
                    size,
                    reserved: NO_NEED,
                    shared: true,
                    jobs: BTreeSet::new(),
                    instances: Vec::new(),
                };
                bin.take(job, slot, first_need);
                bins.push(bin);
            }
        }
    }

    fn request_machine(&mut self, zone: usize, bin: NewMachine) {
        let zone_name = self.zones[zone].name;
        let reason = format!("waiting for a new machine in {zone_name}");
        let mut for_instances = Vec::with_capacity(bin.instances.len());
        for (job, slot) in bin.instances {
            let key = InstanceKey {
                job: self.jobs[job].name().to_string(),
                zone: zone_name.to_string(),
                slot,
            };
            self.unplaced.push(Unplaced {
                key: key.clone(),
                need: self.need(job, zone),
                reason: reason.clone(),
            });
            for_instances.push(key);
        }
        for_instances.sort();
        self.provision.push(ProvisionRequest {
            zone: zone_name.to_string(),
            size: bin.size,
            for_instances,
        });
    }

    fn into_plan(self) -> Plan {
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

/// The machines of one zone that can take new instances, as a segment tree
/// over the zone's machines in id order. Each node keeps, for every class
/// of free cpu and of free memory, the fewest instances of a machine below
/// it with at least that much free, and the most free cpu and memory below
/// it. A search for the machine with the fewest instances that has room for
/// a need reads its lower bound from the need's classes, so the full
/// machines (which in a filling cluster are the ones with few instances)
/// neither lower the bound nor draw the search into their subtrees.
struct ZonePool {
    /// Machine index per leaf, in increasing order.
    members: Vec<usize>,
    leaf_of: HashMap<usize, usize>,
    /// Leaves start at `leaves`; node `n` has children `2n` and `2n + 1`.
    leaves: usize,
    /// `CPU_CLASSES.len()` entries per node.
    fewest_by_cpu: Vec<u32>,
    /// `MEM_CLASSES.len()` entries per node.
    fewest_by_mem: Vec<u32>,
    most_free_cpu: Vec<f64>,
    most_free_mem: Vec<f64>,
}

/// An instance count for "no machine".
const ABSENT: u32 = u32::MAX;

/// Free room is a difference and `fits` compares a sum, which round
/// differently; pruning with more slack than `EPSILON` never skips a machine
/// that `fits` would take.
const PRUNE_SLACK: f64 = 1e-6;

/// Lower edges of the free-room classes: none, then `smallest` doubling. A
/// need is judged by the largest edge at or below it, so a bound counts
/// machines with as little as half the need's room (finer classes measured
/// no faster: they cost as much in updates as they save in searches).
const fn class_edges<const N: usize>(smallest: f64) -> [f64; N] {
    let mut edges = [f64::NEG_INFINITY; N];
    let mut edge = smallest;
    let mut class = 1;
    while class < N {
        edges[class] = edge;
        edge *= 2.0;
        class += 1;
    }
    edges
}

/// 1/16 to 64 cores.
const CPU_CLASSES: [f64; 12] = class_edges(0.0625);
/// 32 MB to 128 GB.
const MEM_CLASSES: [f64; 14] = class_edges(32.0);

/// The largest class every machine with room for `need` belongs to.
fn class_of(need: f64, classes: &[f64]) -> usize {
    classes
        .iter()
        .rposition(|&edge| edge <= need - PRUNE_SLACK)
        .unwrap_or(0)
}

impl ZonePool {
    fn new(members: Vec<usize>) -> Self {
        let leaves = members.len().next_power_of_two();
        let leaf_of = members
            .iter()
            .enumerate()
            .map(|(leaf, &machine)| (machine, leaf))
            .collect();
        ZonePool {
            members,
            leaf_of,
            leaves,
            fewest_by_cpu: vec![ABSENT; 2 * leaves * CPU_CLASSES.len()],
            fewest_by_mem: vec![ABSENT; 2 * leaves * MEM_CLASSES.len()],
            most_free_cpu: vec![f64::NEG_INFINITY; 2 * leaves],
            most_free_mem: vec![f64::NEG_INFINITY; 2 * leaves],
        }
    }

    fn insert(&mut self, machine: usize, instances: u32, free: Need) {
        self.set(machine, Some((instances, free)));
    }

    fn remove(&mut self, machine: usize) {
        self.set(machine, None);
    }

    fn set(&mut self, machine: usize, entry: Option<(u32, Need)>) {
        let mut node = self.leaves + self.leaf_of[&machine];
        let (free_cpu, free_mem) = entry
            .map_or((f64::NEG_INFINITY, f64::NEG_INFINITY), |(_, free)| {
                (free.cpu, free.mem_mb)
            });
        let instances_if = |free: f64, edge: f64| match entry {
            Some((instances, _)) if free >= edge => instances,
            _ => ABSENT,
        };
        for (class, &edge) in CPU_CLASSES.iter().enumerate() {
            self.fewest_by_cpu[node * CPU_CLASSES.len() + class] = instances_if(free_cpu, edge);
        }
        for (class, &edge) in MEM_CLASSES.iter().enumerate() {
            self.fewest_by_mem[node * MEM_CLASSES.len() + class] = instances_if(free_mem, edge);
        }
        self.most_free_cpu[node] = free_cpu;
        self.most_free_mem[node] = free_mem;
        while node > 1 {
            node /= 2;
            let (left, right) = (2 * node, 2 * node + 1);
            merge_fewest(&mut self.fewest_by_cpu, CPU_CLASSES.len(), node);
            merge_fewest(&mut self.fewest_by_mem, MEM_CLASSES.len(), node);
            self.most_free_cpu[node] = self.most_free_cpu[left].max(self.most_free_cpu[right]);
            self.most_free_mem[node] = self.most_free_mem[left].max(self.most_free_mem[right]);
        }
    }

    /// Removes and returns the machine with the fewest instances, then the
    /// lowest id, for which `fits` holds. The tree only prunes (cpu and
    /// memory may peak on different machines below a node); `fits` decides.
    fn take_first_with_room(&mut self, need: Need, fits: impl Fn(usize) -> bool) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        let query = Query {
            need,
            cpu_class: class_of(need.cpu, &CPU_CLASSES),
            mem_class: class_of(need.mem_mb, &MEM_CLASSES),
        };
        let mut best: Option<(u32, usize)> = None;
        self.search(1, 0, &query, &fits, &mut best);
        let (_, leaf) = best?;
        let machine = self.members[leaf];
        self.remove(machine);
        Some(machine)
    }

    /// No machine below `node` with room for the query has fewer instances.
    fn lower_bound(&self, node: usize, query: &Query) -> u32 {
        self.fewest_by_cpu[node * CPU_CLASSES.len() + query.cpu_class]
            .max(self.fewest_by_mem[node * MEM_CLASSES.len() + query.mem_class])
    }

    /// Depth first, the child with the lower bound first; a subtree whose
    /// bound (instances, first leaf) cannot beat the best so far, or whose
    /// free room is too small, is skipped.
    fn search(
        &self,
        node: usize,
        first_leaf: usize,
        query: &Query,
        fits: &impl Fn(usize) -> bool,
        best: &mut Option<(u32, usize)>,
    ) {
        let bound = self.lower_bound(node, query);
        if bound == ABSENT
            || self.most_free_cpu[node] + PRUNE_SLACK < query.need.cpu
            || self.most_free_mem[node] + PRUNE_SLACK < query.need.mem_mb
            || best.is_some_and(|found| (bound, first_leaf) >= found)
        {
            return;
        }
        if node >= self.leaves {
            if fits(self.members[first_leaf]) {
                *best = Some((bound, first_leaf));
            }
            return;
        }
        let half = (self.leaves >> (usize::BITS - 1 - node.leading_zeros())) / 2;
        let (left, right) = (2 * node, 2 * node + 1);
        let children = [(left, first_leaf), (right, first_leaf + half)];
        let order = if self.lower_bound(right, query) < self.lower_bound(left, query) {
            [children[1], children[0]]
        } else {
            children
        };
        for (child, child_first_leaf) in order {
            self.search(child, child_first_leaf, query, fits, best);
        }
    }
}

struct Query {
    need: Need,
    cpu_class: usize,
    mem_class: usize,
}

/// Sets `node`'s per-class minimums from its two children.
fn merge_fewest(fewest: &mut [u32], classes: usize, node: usize) {
    for class in 0..classes {
        fewest[node * classes + class] =
            fewest[2 * node * classes + class].min(fewest[(2 * node + 1) * classes + class]);
    }
}

/// A machine to ask the provider for, while it is being filled.
struct NewMachine {
    size: Resources,
    reserved: Need,
    /// False for a machine sized for one oversized instance; nothing joins it.
    shared: bool,
    jobs: BTreeSet<usize>,
    instances: Vec<(usize, u32)>,
}

impl NewMachine {
    fn take(&mut self, job: usize, slot: u32, need: Need) {
        self.reserved = add_needs(self.reserved, need);
        self.jobs.insert(job);
        self.instances.push((job, slot));
    }
}

/// The share of a machine of `size` that `need` takes in its tighter dimension.
fn size_score(need: Need, size: Resources) -> f64 {
    let share = |need: f64, size: f64| {
        if need <= 0.0 {
            0.0
        } else if size <= 0.0 {
            f64::INFINITY
        } else {
            need / size
        }
    };
    share(need.cpu, size.cpu).max(share(need.mem_mb, size.mem_mb))
}

/// Follows each job's `linked_job` chain to a master, a missing job or a
/// cycle. Each job has at most one link, so every walk ends; positions on
/// the current walk detect cycles without revisiting.
fn resolve_roles(jobs: &[&JobSpec], job_by_name: &HashMap<&str, usize>) -> Vec<Role> {
    #[derive(Clone, Copy)]
    enum WalkEnd<'n> {
        Known(usize),
        Master,
        MissingMaster(&'n str),
        Cycle(usize),
    }

    let mut roles: Vec<Option<Role>> = vec![None; jobs.len()];
    let mut position_on_walk: Vec<Option<usize>> = vec![None; jobs.len()];
    for start in 0..jobs.len() {
        if roles[start].is_some() {
            continue;
        }
        let mut path: Vec<usize> = Vec::new();
        let mut current = start;
        let end = loop {
            if roles[current].is_some() {
                break WalkEnd::Known(current);
            }
            if let Some(position) = position_on_walk[current] {
                break WalkEnd::Cycle(position);
            }
            position_on_walk[current] = Some(path.len());
            path.push(current);
            match jobs[current].linked_job.as_deref() {
                None => break WalkEnd::Master,
                Some(master) => match job_by_name.get(master) {
                    Some(&index) => current = index,
                    None => break WalkEnd::MissingMaster(master),
                },
            }
        };
        for &job in &path {
            position_on_walk[job] = None;
        }

        // `path` runs from `start` towards the master; resolve it backwards.
        let mut resolved_below = path.len();
        match end {
            WalkEnd::Known(_) => {}
            WalkEnd::Master => {
                resolved_below -= 1;
                roles[path[resolved_below]] = Some(Role::Master);
            }
            WalkEnd::MissingMaster(master) => {
                resolved_below -= 1;
                roles[path[resolved_below]] = Some(Role::Broken {
                    reason: format!("linked job '{master}' does not exist"),
                });
            }
            WalkEnd::Cycle(first) => {
                let mut members: Vec<usize> = path[first..].to_vec();
                let smallest = members
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &job)| job)
                    .map_or(0, |(position, _)| position);
                members.rotate_left(smallest);
                let mut names: Vec<&str> = members.iter().map(|&job| jobs[job].name()).collect();
                names.push(jobs[members[0]].name());
                let reason = format!("linked jobs form a cycle: {}", names.join(" -> "));
                for &job in &path[first..] {
                    roles[job] = Some(Role::Broken {
                        reason: reason.clone(),
                    });
                }
                resolved_below = first;
            }
        }
        for position in (0..resolved_below).rev() {
            let job = path[position];
            let master = match end {
                WalkEnd::Known(known) if position + 1 == path.len() => known,
                _ => path[position + 1],
            };
            let role = match &roles[master] {
                Some(Role::Master) => Role::Follower { master, depth: 1 },
                Some(Role::Follower { depth, .. }) => Role::Follower {
                    master,
                    depth: depth + 1,
                },
                Some(Role::Broken { .. }) | None => Role::Broken {
                    reason: format!(
                        "linked job '{}' cannot be placed, so neither can this one",
                        jobs[master].name()
                    ),
                },
            };
            roles[job] = Some(role);
        }
    }
    roles
        .into_iter()
        .map(|role| {
            role.unwrap_or(Role::Broken {
                reason: "the links of this job could not be resolved".to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::job::ZoneLayout;
    use cerebro_types::TaskSpec;

    fn job(name: &str, zones: &[(&str, u32)], cpu: f64, mem_mb: f64) -> JobSpec {
        let mut task = TaskSpec::new(name, "sleep 1000");
        task.cpu = Some(cpu);
        task.mem = Some(mem_mb);
        JobSpec {
            dns_basename: None,
            deployment_recipe: None,
            deployment_layout: zones
                .iter()
                .map(|(zone, count)| {
                    let layout = ZoneLayout {
                        cpu: *count,
                        mem: None,
                    };
                    (zone.to_string(), layout)
                })
                .collect(),
            recipe_options: BTreeMap::new(),
            persistent: false,
            linked_job: None,
            task_configuration: task,
        }
    }

    fn linked(name: &str, master: &str, cpu: f64, mem_mb: f64) -> JobSpec {
        let mut spec = job(name, &[], cpu, mem_mb);
        spec.linked_job = Some(master.to_string());
        spec
    }

    fn machine_in(
        id: &str,
        zone: &str,
        number: u32,
        cpu: f64,
        mem_mb: f64,
        state: MachineState,
    ) -> PlacementMachine {
        PlacementMachine {
            id: id.to_string(),
            zone: zone.to_string(),
            capacity: Resources { cpu, mem_mb },
            state,
            number,
        }
    }

    fn machine(id: &str, zone: &str, number: u32, cpu: f64, mem_mb: f64) -> PlacementMachine {
        machine_in(id, zone, number, cpu, mem_mb, MachineState::Ready)
    }

    /// `count` ready machines `PREFIX-01`... in `zone`, numbered from 1.
    fn machines(
        prefix: &str,
        zone: &str,
        count: u32,
        cpu: f64,
        mem_mb: f64,
    ) -> Vec<PlacementMachine> {
        (1..=count)
            .map(|n| machine(&format!("{prefix}-{n:02}"), zone, n, cpu, mem_mb))
            .collect()
    }

    fn sizes(zones: &[(&str, f64, f64)]) -> BTreeMap<String, Resources> {
        zones
            .iter()
            .map(|(zone, cpu, mem_mb)| {
                let size = Resources {
                    cpu: *cpu,
                    mem_mb: *mem_mb,
                };
                (zone.to_string(), size)
            })
            .collect()
    }

    fn two_zones() -> BTreeMap<String, Resources> {
        sizes(&[("local-a", 4.0, 8192.0), ("local-b", 4.0, 8192.0)])
    }

    fn run(
        jobs: &[JobSpec],
        machines: &[PlacementMachine],
        previous: &[Assignment],
        zone_machine_size: &BTreeMap<String, Resources>,
    ) -> Plan {
        let plan = place(&PlacementInput {
            jobs,
            machines,
            previous,
            zone_machine_size,
        });
        assert_capacity_respected(&plan, jobs, machines);
        assert_plan_consistent(&plan, machines);
        plan
    }

    fn assert_capacity_respected(plan: &Plan, jobs: &[JobSpec], machines: &[PlacementMachine]) {
        let mut reserved: BTreeMap<&str, Need> = BTreeMap::new();
        for assignment in &plan.assignments {
            let spec = jobs
                .iter()
                .find(|j| j.name() == assignment.key.job)
                .expect("assigned job exists");
            let need = spec.need_in(&assignment.key.zone);
            let total = reserved
                .entry(assignment.machine.as_str())
                .or_insert(NO_NEED);
            *total = add_needs(*total, need);
        }
        for (id, total) in reserved {
            let m = machines
                .iter()
                .find(|m| m.id == id)
                .expect("machine exists");
            assert!(
                total.cpu <= m.capacity.cpu + EPSILON
                    && total.mem_mb <= m.capacity.mem_mb + EPSILON,
                "machine {id} over capacity: {total:?} > {:?}",
                m.capacity
            );
        }
    }

    /// Sorted output, unique keys, instances only on usable machines of their zone.
    fn assert_plan_consistent(plan: &Plan, machines: &[PlacementMachine]) {
        assert!(
            plan.assignments.windows(2).all(|w| w[0].key < w[1].key),
            "assignments sorted, keys unique"
        );
        assert!(
            plan.unplaced.windows(2).all(|w| w[0].key <= w[1].key),
            "unplaced sorted"
        );
        let assigned: BTreeSet<&InstanceKey> = plan.assignments.iter().map(|a| &a.key).collect();
        for unplaced in &plan.unplaced {
            assert!(
                !assigned.contains(&unplaced.key),
                "{:?} both placed and unplaced",
                unplaced.key
            );
        }
        for assignment in &plan.assignments {
            let m = machines
                .iter()
                .find(|m| m.id == assignment.machine)
                .expect("machine exists");
            assert!(
                m.state.accepts_instances(),
                "{} got an instance in state {:?}",
                m.id,
                m.state
            );
            assert_eq!(
                m.zone, assignment.key.zone,
                "{:?} outside its zone",
                assignment.key
            );
        }
    }

    fn machine_of<'p>(plan: &'p Plan, job: &str, zone: &str, slot: u32) -> Option<&'p str> {
        plan.assignments
            .iter()
            .find(|a| a.key.job == job && a.key.zone == zone && a.key.slot == slot)
            .map(|a| a.machine.as_str())
    }

    /// Machine id → instances of `job` on it.
    fn spread_of(plan: &Plan, job: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in plan.assignments.iter().filter(|a| a.key.job == job) {
            *counts.entry(a.machine.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn machines_running(plan: &Plan, job: &str) -> BTreeSet<String> {
        spread_of(plan, job).into_keys().collect()
    }

    fn unplaced_of<'p>(plan: &'p Plan, job: &str) -> Vec<&'p Unplaced> {
        plan.unplaced.iter().filter(|u| u.key.job == job).collect()
    }

    #[test]
    fn capacity_is_never_exceeded_and_every_instance_is_accounted_for() {
        let jobs = vec![
            job("big", &[("local-a", 5)], 3.0, 1000.0),
            job("memory", &[("local-a", 6)], 0.5, 6000.0),
            job("small", &[("local-a", 20), ("local-b", 3)], 0.25, 100.0),
            job("web", &[("local-a", 7), ("local-b", 2)], 1.0, 512.0),
        ];
        let mut all = machines("a", "local-a", 4, 4.0, 8192.0);
        all.extend(machines("b", "local-b", 1, 2.0, 1024.0));
        let plan = run(&jobs, &all, &[], &two_zones());

        let wanted: usize = jobs
            .iter()
            .flat_map(|j| j.deployment_layout.values())
            .map(|z| z.cpu as usize)
            .sum();
        assert_eq!(plan.assignments.len() + plan.unplaced.len(), wanted);
        assert!(!plan.provision.is_empty(), "not everything fits: {plan:?}");
        let for_instances: usize = plan.provision.iter().map(|p| p.for_instances.len()).sum();
        assert_eq!(for_instances, plan.unplaced.len());
    }

    #[test]
    fn exactly_full_machine_still_fits() {
        // 0.1 + 0.2 + ... do not add up exactly in binary floating point.
        let jobs = vec![job("tenth", &[("local-a", 10)], 0.1, 0.0)];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 1, 1.0, 0.0),
            &[],
            &two_zones(),
        );
        assert_eq!(plan.assignments.len(), 10);
        assert!(plan.unplaced.is_empty());
    }

    #[test]
    fn instances_spread_evenly_over_four_machines_before_doubling_up() {
        for (instances, each) in [(4, 1), (8, 2)] {
            let jobs = vec![job("web", &[("local-a", instances)], 1.0, 100.0)];
            let plan = run(
                &jobs,
                &machines("a", "local-a", 4, 8.0, 8192.0),
                &[],
                &two_zones(),
            );
            let spread = spread_of(&plan, "web");
            assert_eq!(spread.len(), 4);
            assert!(spread.values().all(|&n| n == each), "{spread:?}");
        }
    }

    #[test]
    fn new_instances_prefer_machines_with_fewer_instances_in_total() {
        let jobs = vec![
            job("busy", &[("local-a", 2)], 1.0, 100.0),
            job("web", &[("local-a", 1)], 1.0, 100.0),
        ];
        let all = machines("a", "local-a", 3, 8.0, 8192.0);
        let plan = run(&jobs, &all, &[], &two_zones());
        assert_eq!(
            machines_running(&plan, "busy"),
            BTreeSet::from(["a-01".into(), "a-02".into()])
        );
        assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-03"));
    }

    #[test]
    fn instances_stay_in_their_zone() {
        let jobs = vec![job("web", &[("local-a", 3), ("local-b", 2)], 1.0, 100.0)];
        let mut all = machines("a", "local-a", 1, 8.0, 8192.0);
        all.extend(machines("b", "local-b", 2, 8.0, 8192.0));
        let plan = run(&jobs, &all, &[], &two_zones());
        assert_eq!(plan.assignments.len(), 5);
        for a in &plan.assignments {
            let expected_prefix = if a.key.zone == "local-a" { "a-" } else { "b-" };
            assert!(a.machine.starts_with(expected_prefix), "{a:?}");
        }
        // Room in local-b does not help local-a.
        let full_a = vec![
            machine("a-01", "local-a", 1, 1.0, 8192.0),
            machine("b-01", "local-b", 1, 8.0, 8192.0),
        ];
        let plan = run(&jobs, &full_a, &[], &two_zones());
        assert_eq!(unplaced_of(&plan, "web").len(), 2);
        assert!(unplaced_of(&plan, "web")
            .iter()
            .all(|u| u.key.zone == "local-a"));
    }

    #[test]
    fn linked_job_follows_its_master_to_exactly_its_machines() {
        let jobs = vec![
            job("db", &[("local-a", 3), ("local-b", 1)], 1.0, 100.0),
            linked("logs", "db", 0.5, 50.0),
        ];
        let mut all = machines("a", "local-a", 5, 4.0, 8192.0);
        all.extend(machines("b", "local-b", 2, 4.0, 8192.0));
        let plan = run(&jobs, &all, &[], &two_zones());
        let db_machines = machines_running(&plan, "db");
        assert_eq!(db_machines.len(), 4);
        assert_eq!(machines_running(&plan, "logs"), db_machines);
        assert!(spread_of(&plan, "logs").values().all(|&n| n == 1));
        for a in plan.assignments.iter().filter(|a| a.key.job == "logs") {
            let m = all
                .iter()
                .find(|m| m.id == a.machine)
                .expect("machine exists");
            assert_eq!(
                (a.key.zone.as_str(), a.key.slot),
                (m.zone.as_str(), m.number)
            );
        }
        assert!(plan.unplaced.is_empty());
    }

    #[test]
    fn linked_job_gets_one_instance_per_machine_even_when_the_master_doubles_up() {
        let jobs = vec![
            job("db", &[("local-a", 4)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
        ];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 2, 8.0, 8192.0),
            &[],
            &two_zones(),
        );
        assert_eq!(
            spread_of(&plan, "db").values().copied().collect::<Vec<_>>(),
            vec![2, 2]
        );
        assert_eq!(
            spread_of(&plan, "logs")
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![1, 1]
        );
    }

    #[test]
    fn a_new_master_instance_needs_room_for_its_linked_jobs() {
        // a-01 has room for the master alone, a-02 for master and follower.
        let jobs = vec![
            job("db", &[("local-a", 1)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
        ];
        let all = vec![
            machine("a-01", "local-a", 1, 1.0, 8192.0),
            machine("a-02", "local-a", 2, 2.0, 8192.0),
        ];
        let plan = run(&jobs, &all, &[], &two_zones());
        assert_eq!(machine_of(&plan, "db", "local-a", 0), Some("a-02"));
        assert_eq!(machine_of(&plan, "logs", "local-a", 2), Some("a-02"));
        assert!(plan.unplaced.is_empty());

        // The follower's room is reserved once per machine, not per master instance.
        let jobs = vec![
            job("db", &[("local-a", 2)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
        ];
        let plan = run(
            &jobs,
            &[machine("a-01", "local-a", 1, 3.0, 8192.0)],
            &[],
            &two_zones(),
        );
        assert_eq!(plan.assignments.len(), 3);
        assert!(plan.unplaced.is_empty());
    }

    #[test]
    fn the_room_for_a_follower_is_not_taken_by_a_later_job() {
        // "aaa" sorts before "db", "zzz" after it: neither may take logs' room.
        let jobs = vec![
            job("aaa", &[("local-a", 1)], 1.0, 100.0),
            job("db", &[("local-a", 1)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
            job("zzz", &[("local-a", 1)], 1.0, 100.0),
        ];
        let plan = run(
            &jobs,
            &[machine("a-01", "local-a", 1, 3.0, 8192.0)],
            &[],
            &two_zones(),
        );
        assert_eq!(machine_of(&plan, "logs", "local-a", 1), Some("a-01"));
        assert_eq!(machine_of(&plan, "db", "local-a", 0), Some("a-01"));
        assert_eq!(unplaced_of(&plan, "zzz").len(), 1);
    }

    #[test]
    fn linked_chains_follow_the_root_and_reserve_room_for_the_whole_chain() {
        let jobs = vec![
            linked("c-agent", "b-sidecar", 1.0, 100.0),
            linked("b-sidecar", "a-root", 1.0, 100.0),
            job("a-root", &[("local-a", 2)], 1.0, 100.0),
        ];
        // a-01 can hold root and sidecar but not the agent as well.
        let all = vec![
            machine("a-01", "local-a", 1, 2.0, 8192.0),
            machine("a-02", "local-a", 2, 3.0, 8192.0),
            machine("a-03", "local-a", 3, 3.0, 8192.0),
        ];
        let plan = run(&jobs, &all, &[], &two_zones());
        let root = machines_running(&plan, "a-root");
        assert_eq!(root, BTreeSet::from(["a-02".into(), "a-03".into()]));
        assert_eq!(machines_running(&plan, "b-sidecar"), root);
        assert_eq!(machines_running(&plan, "c-agent"), root);
        assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced);
    }

    #[test]
    fn a_missing_master_gives_one_unplaced_entry() {
        let jobs = vec![
            linked("logs", "db", 1.0, 100.0),
            job("web", &[("local-a", 1)], 1.0, 100.0),
        ];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 2, 4.0, 8192.0),
            &[],
            &two_zones(),
        );
        assert!(machines_running(&plan, "logs").is_empty());
        let entries = unplaced_of(&plan, "logs");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].key,
            InstanceKey {
                job: "logs".into(),
                zone: String::new(),
                slot: 0
            }
        );
        assert_eq!(entries[0].reason, "linked job 'db' does not exist");
    }

    #[test]
    fn a_link_cycle_gives_each_member_an_entry_and_terminates() {
        let jobs = vec![
            linked("x", "y", 1.0, 100.0),
            linked("y", "z", 1.0, 100.0),
            linked("z", "x", 1.0, 100.0),
            linked("self", "self", 1.0, 100.0),
            linked("hanger-on", "x", 1.0, 100.0),
            job("web", &[("local-a", 1)], 1.0, 100.0),
        ];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 2, 4.0, 8192.0),
            &[],
            &two_zones(),
        );
        assert_eq!(
            plan.assignments.len(),
            1,
            "only web runs: {:?}",
            plan.assignments
        );
        for name in ["x", "y", "z"] {
            let entries = unplaced_of(&plan, name);
            assert_eq!(entries.len(), 1, "{name}");
            assert_eq!(
                entries[0].reason,
                "linked jobs form a cycle: x -> y -> z -> x"
            );
        }
        assert_eq!(
            unplaced_of(&plan, "self")[0].reason,
            "linked jobs form a cycle: self -> self"
        );
        let hanger_on = unplaced_of(&plan, "hanger-on");
        assert_eq!(hanger_on.len(), 1);
        assert!(
            hanger_on[0].reason.contains("'x' cannot be placed"),
            "{}",
            hanger_on[0].reason
        );
    }

    #[test]
    fn a_follower_added_later_without_room_is_unplaced_with_a_reason() {
        let master = job("db", &[("local-a", 1)], 2.0, 100.0);
        let all = vec![machine("a-01", "local-a", 1, 2.0, 8192.0)];
        let first = run(std::slice::from_ref(&master), &all, &[], &two_zones());
        assert_eq!(machine_of(&first, "db", "local-a", 0), Some("a-01"));

        let jobs = vec![master, linked("logs", "db", 1.0, 100.0)];
        let plan = run(&jobs, &all, &first.assignments, &two_zones());
        assert_eq!(
            machine_of(&plan, "db", "local-a", 0),
            Some("a-01"),
            "the master stays"
        );
        let entries = unplaced_of(&plan, "logs");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].key,
            InstanceKey {
                job: "logs".into(),
                zone: "local-a".into(),
                slot: 1
            }
        );
        assert!(
            entries[0].reason.contains("a-01") && entries[0].reason.contains("no room"),
            "{}",
            entries[0].reason
        );
        assert!(plan.provision.is_empty());
    }

    fn mixed_workload() -> (Vec<JobSpec>, Vec<PlacementMachine>) {
        let jobs = vec![
            job("api", &[("local-a", 5), ("local-b", 3)], 1.0, 512.0),
            job("batch", &[("local-a", 9)], 0.5, 2048.0),
            job("db", &[("local-a", 2), ("local-b", 2)], 2.0, 4096.0),
            linked("logs", "db", 0.25, 64.0),
            linked("metrics", "logs", 0.25, 64.0),
            job("huge", &[("local-b", 1)], 16.0, 100.0),
            job("elsewhere", &[("aws-us-east-1b", 2)], 1.0, 1.0),
            linked("orphan", "gone", 1.0, 1.0),
        ];
        let mut all = machines("a", "local-a", 4, 4.0, 8192.0);
        all.extend(machines("b", "local-b", 2, 4.0, 8192.0));
        all.push(machine_in(
            "a-05",
            "local-a",
            5,
            4.0,
            8192.0,
            MachineState::Provisioning,
        ));
        all.push(machine_in(
            "a-06",
            "local-a",
            6,
            4.0,
            8192.0,
            MachineState::Unreachable,
        ));
        (jobs, all)
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order() {
        let (jobs, all) = mixed_workload();
        let zones = two_zones();
        let first = run(&jobs, &all, &[], &zones);
        // Some previous assignments kept, some stale, to shuffle as well.
        let mut previous: Vec<Assignment> = first.assignments.iter().step_by(2).cloned().collect();
        previous.push(Assignment {
            key: InstanceKey {
                job: "api".into(),
                zone: "local-a".into(),
                slot: 99,
            },
            machine: "a-01".into(),
        });
        let expected = run(&jobs, &all, &previous, &zones);

        for rotation in 1..5 {
            let mut jobs2 = jobs.clone();
            let mut all2 = all.clone();
            let mut previous2 = previous.clone();
            jobs2.reverse();
            let len = jobs2.len();
            jobs2.rotate_left(rotation % len);
            let len = all2.len();
            all2.rotate_left(rotation % len);
            all2.reverse();
            previous2.reverse();
            let len = previous2.len();
            previous2.rotate_left(rotation % len);
            assert_eq!(
                run(&jobs2, &all2, &previous2, &zones),
                expected,
                "rotation {rotation}"
            );
        }
    }

    #[test]
    fn adding_a_machine_moves_nothing() {
        let (jobs, mut all) = mixed_workload();
        let zones = two_zones();
        let before = run(&jobs, &all, &[], &zones);
        all.push(machine("a-00", "local-a", 7, 64.0, 65536.0));
        all.push(machine("b-00", "local-b", 3, 64.0, 65536.0));
        let after = run(&jobs, &all, &before.assignments, &zones);
        for a in &before.assignments {
            assert_eq!(
                after.assignments.iter().find(|b| b.key == a.key),
                Some(a),
                "{a:?} moved"
            );
        }
        // The new machines take what was waiting, so nothing waits anymore.
        assert!(after.provision.is_empty(), "{:?}", after.provision);
        assert!(after.assignments.len() > before.assignments.len());
    }

    #[test]
    fn removing_a_machine_moves_only_its_instances() {
        let jobs = vec![
            job("api", &[("local-a", 6)], 1.0, 512.0),
            job("db", &[("local-a", 3)], 1.0, 512.0),
            linked("logs", "db", 0.5, 64.0),
        ];
        let zones = two_zones();
        let all = machines("a", "local-a", 4, 8.0, 8192.0);
        let before = run(&jobs, &all, &[], &zones);
        assert!(before.unplaced.is_empty());
        let gone = machine_of(&before, "db", "local-a", 0)
            .expect("db placed")
            .to_string();
        let remaining: Vec<PlacementMachine> =
            all.iter().filter(|m| m.id != gone).cloned().collect();
        let after = run(&jobs, &remaining, &before.assignments, &zones);

        for a in &before.assignments {
            if a.machine != gone {
                assert_eq!(
                    after.assignments.iter().find(|b| b.key == a.key),
                    Some(a),
                    "{a:?} moved"
                );
            }
        }
        assert!(after.assignments.iter().all(|a| a.machine != gone));
        let masters_after = after
            .assignments
            .iter()
            .filter(|a| a.key.job != "logs")
            .count();
        assert_eq!(masters_after, 9, "every master instance re-placed");
        assert_eq!(
            machines_running(&after, "logs"),
            machines_running(&after, "db")
        );
        assert!(after.unplaced.is_empty(), "{:?}", after.unplaced);
    }

    #[test]
    fn lower_counts_drop_the_highest_slots_and_keep_the_rest() {
        let zones = two_zones();
        let all = machines("a", "local-a", 3, 8.0, 8192.0);
        let before = run(
            &[job("web", &[("local-a", 5)], 1.0, 1.0)],
            &all,
            &[],
            &zones,
        );
        let after = run(
            &[job("web", &[("local-a", 2)], 1.0, 1.0)],
            &all,
            &before.assignments,
            &zones,
        );
        assert_eq!(after.assignments, before.assignments[..2].to_vec());
    }

    #[test]
    fn a_previous_assignment_to_a_machine_of_another_zone_is_not_kept() {
        let zones = two_zones();
        let all = vec![
            machine("a-01", "local-a", 1, 8.0, 8192.0),
            machine("b-01", "local-b", 1, 8.0, 8192.0),
        ];
        let previous = vec![Assignment {
            key: InstanceKey {
                job: "web".into(),
                zone: "local-a".into(),
                slot: 0,
            },
            machine: "b-01".into(),
        }];
        let plan = run(
            &[job("web", &[("local-a", 1)], 1.0, 1.0)],
            &all,
            &previous,
            &zones,
        );
        assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-01"));
    }

    #[test]
    fn a_previous_assignment_that_no_longer_fits_is_moved() {
        let zones = two_zones();
        let all = machines("a", "local-a", 2, 2.0, 8192.0);
        let before = run(
            &[job("web", &[("local-a", 2)], 1.0, 1.0)],
            &all,
            &[],
            &zones,
        );
        // Both now need 2 cores; a-01 keeps slot 0, slot 1 goes elsewhere.
        let after = run(
            &[job("web", &[("local-a", 2)], 2.0, 1.0)],
            &all,
            &before.assignments,
            &zones,
        );
        let slot0 = machine_of(&before, "web", "local-a", 0);
        assert_eq!(machine_of(&after, "web", "local-a", 0), slot0);
        assert!(machine_of(&after, "web", "local-a", 1).is_some());
        assert_ne!(machine_of(&after, "web", "local-a", 1), slot0);
    }

    #[test]
    fn instances_that_fit_nowhere_are_packed_into_new_machines_of_the_default_size() {
        let jobs = vec![job("web", &[("local-a", 5)], 1.0, 1024.0)];
        let plan = run(&jobs, &[], &[], &two_zones());
        assert!(plan.assignments.is_empty());
        assert_eq!(plan.provision.len(), 2);
        let default = Resources {
            cpu: 4.0,
            mem_mb: 8192.0,
        };
        assert!(plan
            .provision
            .iter()
            .all(|p| p.zone == "local-a" && p.size == default));
        let mut group_sizes: Vec<usize> = plan
            .provision
            .iter()
            .map(|p| p.for_instances.len())
            .collect();
        group_sizes.sort();
        assert_eq!(group_sizes, vec![1, 4]);
        assert_eq!(plan.unplaced.len(), 5);
        assert!(plan
            .unplaced
            .iter()
            .all(|u| u.reason == "waiting for a new machine in local-a"));
    }

    #[test]
    fn provisioning_packs_largest_first() {
        // First fit decreasing: [3, 1] and [3, 1], not [3], [3], [1, 1].
        let jobs = vec![
            job("large", &[("local-a", 2)], 3.0, 100.0),
            job("small", &[("local-a", 2)], 1.0, 100.0),
        ];
        let plan = run(&jobs, &[], &[], &two_zones());
        assert_eq!(plan.provision.len(), 2, "{:?}", plan.provision);
        for request in &plan.provision {
            let jobs: Vec<&str> = request
                .for_instances
                .iter()
                .map(|k| k.job.as_str())
                .collect();
            assert_eq!(jobs, vec!["large", "small"]);
        }
    }

    #[test]
    fn provisioning_leaves_room_for_linked_jobs() {
        let jobs = vec![
            job("db", &[("local-a", 4)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
        ];
        let plan = run(&jobs, &[], &[], &two_zones());
        // One machine of 4 cores: db with logs (2), then two more db (4); the fourth db needs another.
        let mut group_sizes: Vec<usize> = plan
            .provision
            .iter()
            .map(|p| p.for_instances.len())
            .collect();
        group_sizes.sort();
        assert_eq!(group_sizes, vec![1, 3]);
        assert!(plan
            .provision
            .iter()
            .flat_map(|p| &p.for_instances)
            .all(|k| k.job == "db"));
    }

    #[test]
    fn an_oversized_instance_gets_a_machine_of_its_own_size() {
        let jobs = vec![
            job("huge", &[("local-a", 2)], 8.0, 1024.0),
            job("wide", &[("local-a", 1)], 1.0, 20000.0),
            job("small", &[("local-a", 1)], 1.0, 100.0),
        ];
        let plan = run(&jobs, &[], &[], &two_zones());
        let request_for = |job: &str| {
            plan.provision
                .iter()
                .filter(|p| p.for_instances.iter().any(|k| k.job == job))
                .collect::<Vec<_>>()
        };
        let huge = request_for("huge");
        assert_eq!(huge.len(), 2);
        for request in huge {
            assert_eq!(request.for_instances.len(), 1);
            assert_eq!(
                request.size,
                Resources {
                    cpu: 8.0,
                    mem_mb: 8192.0
                }
            );
        }
        let wide = request_for("wide");
        assert_eq!(wide.len(), 1);
        assert_eq!(wide[0].for_instances.len(), 1);
        assert_eq!(
            wide[0].size,
            Resources {
                cpu: 4.0,
                mem_mb: 20000.0
            }
        );
        let small = request_for("small");
        assert_eq!(small.len(), 1);
        assert_eq!(
            small[0].size,
            Resources {
                cpu: 4.0,
                mem_mb: 8192.0
            }
        );
        assert_eq!(plan.provision.len(), 4);
    }

    #[test]
    fn an_unserved_zone_is_named_with_the_zones_that_are_served() {
        let jobs = vec![job(
            "web",
            &[("aws-us-east-1b", 2), ("local-a", 1)],
            1.0,
            100.0,
        )];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 1, 4.0, 8192.0),
            &[],
            &two_zones(),
        );
        assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-01"));
        let entries = unplaced_of(&plan, "web");
        assert_eq!(entries.len(), 2);
        for (slot, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.key,
                InstanceKey {
                    job: "web".into(),
                    zone: "aws-us-east-1b".into(),
                    slot: slot as u32
                }
            );
            assert_eq!(
                entry.reason,
                "zone 'aws-us-east-1b' is not served by this cluster (it serves: local-a, local-b)"
            );
        }
        assert!(plan.provision.is_empty());
    }

    #[test]
    fn a_provisioning_machine_prevents_asking_twice() {
        let jobs = vec![job("web", &[("local-a", 3)], 1.0, 1024.0)];
        let zones = two_zones();
        let first = run(&jobs, &[], &[], &zones);
        assert_eq!(first.provision.len(), 1);
        let request = &first.provision[0];

        let provisioning = vec![machine_in(
            "new-1",
            &request.zone,
            1,
            request.size.cpu,
            request.size.mem_mb,
            MachineState::Provisioning,
        )];
        let second = run(&jobs, &provisioning, &first.assignments, &zones);
        assert!(second.provision.is_empty(), "{:?}", second.provision);
        assert!(second.unplaced.is_empty());
        assert_eq!(
            machines_running(&second, "web"),
            BTreeSet::from(["new-1".to_string()])
        );
        assert_eq!(second.assignments.len(), 3);
    }

    #[test]
    fn unreachable_and_decommissioning_machines_get_nothing_and_lose_their_instances() {
        let jobs = vec![
            job("web", &[("local-a", 4)], 1.0, 100.0),
            linked("logs", "web", 0.5, 10.0),
        ];
        let zones = two_zones();
        let healthy = machines("a", "local-a", 2, 8.0, 8192.0);
        let before = run(&jobs, &healthy, &[], &zones);
        assert_eq!(machines_running(&before, "web").len(), 2);

        let mut after_failure = vec![
            machine_in("a-01", "local-a", 1, 8.0, 8192.0, MachineState::Unreachable),
            machine_in(
                "a-02",
                "local-a",
                2,
                8.0,
                8192.0,
                MachineState::Decommissioning,
            ),
        ];
        after_failure.push(machine("a-03", "local-a", 3, 8.0, 8192.0));
        let after = run(&jobs, &after_failure, &before.assignments, &zones);
        assert_eq!(
            machines_running(&after, "web"),
            BTreeSet::from(["a-03".to_string()])
        );
        assert_eq!(
            machines_running(&after, "logs"),
            BTreeSet::from(["a-03".to_string()])
        );
        assert_eq!(after.assignments.len(), 5);
        assert!(after.unplaced.is_empty());
    }

    #[test]
    fn machines_sharing_a_number_do_not_duplicate_follower_keys() {
        let jobs = vec![
            job("db", &[("local-a", 2)], 1.0, 100.0),
            linked("logs", "db", 1.0, 100.0),
        ];
        let all = vec![
            machine("a-01", "local-a", 7, 4.0, 8192.0),
            machine("a-02", "local-a", 7, 4.0, 8192.0),
        ];
        let zones = two_zones();
        // Not through `run`: the unplaced entry necessarily shares its key
        // with the placed one, which is the point of the message.
        let plan = place(&PlacementInput {
            jobs: &jobs,
            machines: &all,
            previous: &[],
            zone_machine_size: &zones,
        });
        assert_capacity_respected(&plan, &jobs, &all);
        assert!(plan.assignments.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(machines_running(&plan, "db").len(), 2);
        assert_eq!(machines_running(&plan, "logs").len(), 1);
        let entries = unplaced_of(&plan, "logs");
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0].reason.contains("same number 7"),
            "{}",
            entries[0].reason
        );
    }

    /// Builds `machine_count` machines over two zones and `job_count` jobs
    /// of `instances_per_zone` instances in each zone, some with followers.
    fn large_cluster(
        machine_count: u32,
        job_count: u32,
        instances_per_zone: u32,
    ) -> (
        Vec<JobSpec>,
        Vec<PlacementMachine>,
        BTreeMap<String, Resources>,
    ) {
        let zones = sizes(&[("zone-a", 16.0, 32768.0), ("zone-b", 16.0, 32768.0)]);
        let mut all = machines("a", "zone-a", machine_count / 2, 16.0, 32768.0);
        all.extend(machines("b", "zone-b", machine_count / 2, 16.0, 32768.0));
        let mut jobs = Vec::new();
        for n in 0..job_count {
            let cpu = [0.5, 1.0, 0.25, 2.0][n as usize % 4];
            let mem = [256.0, 1024.0, 128.0, 2048.0][n as usize % 4];
            let name = format!("job-{n:05}");
            jobs.push(job(
                &name,
                &[
                    ("zone-a", instances_per_zone),
                    ("zone-b", instances_per_zone),
                ],
                cpu,
                mem,
            ));
            if n % 20 == 0 {
                jobs.push(linked(&format!("{name}-agent"), &name, 0.1, 32.0));
            }
        }
        (jobs, all, zones)
    }

    #[test]
    fn two_thousand_machines_and_twenty_thousand_instances_are_placed_and_then_kept() {
        let (jobs, all, zones) = large_cluster(2_000, 100, 100);
        let plan = place(&PlacementInput {
            jobs: &jobs,
            machines: &all,
            previous: &[],
            zone_machine_size: &zones,
        });
        assert_capacity_respected(&plan, &jobs, &all);
        let masters = plan
            .assignments
            .iter()
            .filter(|a| !a.key.job.ends_with("-agent"))
            .count();
        assert_eq!(masters, 20_000);
        assert!(plan.unplaced.is_empty() && plan.provision.is_empty());

        let again = place(&PlacementInput {
            jobs: &jobs,
            machines: &all,
            previous: &plan.assignments,
            zone_machine_size: &zones,
        });
        assert_eq!(again, plan);
    }

    /// The pool must choose exactly what a scan of every machine in
    /// (instances, id) order would choose.
    #[test]
    fn zone_pool_takes_what_a_linear_scan_would_take() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |bound: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        // Uneven steps, so needs and free room fall between the classes' edges.
        let room = |next: &mut dyn FnMut(u64) -> u64| Need {
            cpu: next(40) as f64 / 7.0,
            mem_mb: next(40) as f64 * 97.0,
        };
        for members in [0usize, 1, 2, 3, 7, 64, 100] {
            let machines: Vec<usize> = (0..members).map(|m| m * 3 + 1).collect();
            let mut pool = ZonePool::new(machines.clone());
            let mut state: BTreeMap<usize, (u32, Need)> = BTreeMap::new();
            let put = |pool: &mut ZonePool, machine: usize, next: &mut dyn FnMut(u64) -> u64| {
                let entry = (next(5) as u32, room(next));
                pool.insert(machine, entry.0, entry.1);
                entry
            };
            for &machine in &machines {
                let entry = put(&mut pool, machine, &mut next);
                state.insert(machine, entry);
            }
            for _ in 0..500 {
                let need = room(&mut next);
                // Some machines are refused by `fits` regardless of their room.
                let refused = next(4) as usize;
                let fits = |machine: usize| {
                    let (_, free) = state[&machine];
                    machine % 4 != refused
                        && free.cpu + EPSILON >= need.cpu
                        && free.mem_mb + EPSILON >= need.mem_mb
                };
                let expected = state
                    .iter()
                    .filter(|(&machine, _)| fits(machine))
                    .min_by_key(|(&machine, &(instances, _))| (instances, machine))
                    .map(|(&machine, _)| machine);
                assert_eq!(pool.take_first_with_room(need, fits), expected);
                if let Some(machine) = expected {
                    state.remove(&machine);
                }
                // Put a machine back with changed numbers, or take one out.
                if !machines.is_empty() {
                    let machine = machines[next(machines.len() as u64) as usize];
                    if next(3) == 0 {
                        pool.remove(machine);
                        state.remove(&machine);
                    } else {
                        let entry = put(&mut pool, machine, &mut next);
                        state.insert(machine, entry);
                    }
                }
            }
        }
    }
}
