//! Step 4 of placement: pack the instances that fit on no machine into new
//! machines of their zone's size, first fit decreasing.

use super::*;

impl Planner<'_> {
    /// Packs the waiting instances of each zone into new machines, first fit
    /// decreasing. Instances of one job in one zone are alike, so they are
    /// packed as a group: a bin that could not take one cannot take the
    /// next either, which keeps this linear in bins per group rather than
    /// per instance.
    pub(super) fn plan_provisioning(&mut self) {
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

    pub(super) fn pack_group(
        &mut self,
        job: usize,
        zone: usize,
        slots: &[u32],
        bins: &mut Vec<NewMachine>,
    ) {
        let size = self.zones[zone].new_machine_size;
        let largest = self.zones[zone].largest;
        let need = self.need(job, zone);
        let first_need = self.need_with_followers(job, zone);
        if !fits_within(NO_NEED, first_need, size) {
            if !fits_within(NO_NEED, first_need, largest) {
                // Asking for a machine anyway would be asked again every
                // tick, each new machine as useless as the last.
                self.too_big_for_any_machine(job, zone, slots, first_need, largest);
                return;
            }
            // Too big for the default size: a machine of its own, just big enough.
            let own_size = Resources {
                cpu: size.cpu.min(largest.cpu).max(first_need.cpu),
                mem_mb: size.mem_mb.min(largest.mem_mb).max(first_need.mem_mb),
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

    /// Leaves `slots` of `job` unplaced: with its followers it needs
    /// `need`, more than `largest`, the biggest machine of the zone.
    fn too_big_for_any_machine(
        &mut self,
        job: usize,
        zone: usize,
        slots: &[u32],
        need: Need,
        largest: Resources,
    ) {
        let zone_name = self.zones[zone].name;
        let reason = format!(
            "needs {} cores and {} MB (with its linked jobs); no machine of {zone_name} is that big (largest: {} cores, {} MB)",
            need.cpu, need.mem_mb, largest.cpu, largest.mem_mb
        );
        for &slot in slots {
            self.unplaced.push(Unplaced {
                key: InstanceKey {
                    job: self.jobs[job].name().to_string(),
                    zone: zone_name.to_string(),
                    slot,
                },
                need: self.need(job, zone),
                reason: reason.clone(),
            });
        }
    }

    /// Asks for `bin` as a new machine, unless it could not hold what it
    /// is for or the zone cannot have it: then its instances stay unplaced
    /// rather than a useless machine be asked for on every tick.
    pub(super) fn request_machine(&mut self, zone: usize, bin: NewMachine) {
        let zone_name = self.zones[zone].name;
        let largest = self.zones[zone].largest;
        let holds = fits_within(NO_NEED, bin.reserved, bin.size)
            && fits_within(
                NO_NEED,
                Need {
                    cpu: bin.size.cpu,
                    mem_mb: bin.size.mem_mb,
                },
                largest,
            );
        if !holds {
            for (job, slot) in bin.instances {
                self.too_big_for_any_machine(job, zone, &[slot], bin.reserved, largest);
            }
            return;
        }
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
            reserved: Some(Resources {
                cpu: bin.reserved.cpu,
                mem_mb: bin.reserved.mem_mb,
            }),
            for_instances,
        });
    }
}

/// A machine to ask the provider for, while it is being filled.
pub(super) struct NewMachine {
    pub(super) size: Resources,
    pub(super) reserved: Need,
    /// False for a machine sized for one oversized instance; nothing joins it.
    pub(super) shared: bool,
    pub(super) jobs: BTreeSet<usize>,
    pub(super) instances: Vec<(usize, u32)>,
}

impl NewMachine {
    pub(super) fn take(&mut self, job: usize, slot: u32, need: Need) {
        self.reserved = add_needs(self.reserved, need);
        self.jobs.insert(job);
        self.instances.push((job, slot));
    }
}

/// The share of a machine of `size` that `need` takes in its tighter dimension.
pub(super) fn size_score(need: Need, size: Resources) -> f64 {
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
