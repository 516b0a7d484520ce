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
//! 4. pack what fits nowhere into new machines of the zone's default size
//!    (an instance bigger than that gets a machine of its own, up to the
//!    zone's largest machine; one bigger still stays unplaced).
//!
//! Where each part lives: `planner.rs` holds the [`Planner`] and steps 1-3;
//! `roles.rs` decides from the link graph which jobs are masters and which
//! follow; `pool.rs` is the index that finds a machine with room fast;
//! `provision.rs` is step 4.

use cerebro_types::cluster::{
    Assignment, InstanceKey, MachineState, Plan, ProvisionRequest, Unplaced,
};
use cerebro_types::job::{JobSpec, Need};
use cerebro_types::machine::Resources;
use cerebro_types::wording::count_of;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod planner;
mod pool;
mod provision;
mod roles;
#[cfg(test)]
mod tests;

use planner::Planner;
use pool::ZonePool;
use roles::{resolve_roles, Role};

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
    /// The largest machine the provider can start in each zone (cores,
    /// MB); a zone not listed has none larger than its new machine size.
    /// An instance bigger than this stays unplaced: no machine is ever
    /// asked for that could not hold what it is asked for.
    pub largest_machine: &'a BTreeMap<String, Resources>,
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

/// Whether `extra` still fits on top of `reserved` within `capacity`: the
/// one capacity rule of placement, with [`EPSILON`] of slack.
fn fits_within(reserved: Need, extra: Need, capacity: Resources) -> bool {
    reserved.cpu + extra.cpu <= capacity.cpu + EPSILON
        && reserved.mem_mb + extra.mem_mb <= capacity.mem_mb + EPSILON
}

/// The warnings a dry run gives when `plan` (before the cluster's cap)
/// asks for more machines than `max_machines` leaves room for beside the
/// `in_use` machines recorded: one per zone asking for new machines,
/// `the plan needs 11 new machines in zone local-a but max_machines
/// allows 8 (3 in use)`. Empty when every request fits.
pub fn machine_cap_warnings(plan: &Plan, max_machines: usize, in_use: usize) -> Vec<String> {
    let room = max_machines.saturating_sub(in_use);
    if plan.provision.len() <= room {
        return Vec::new();
    }
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for request in &plan.provision {
        *per_zone.entry(request.zone.as_str()).or_default() += 1;
    }
    let mut warnings: Vec<String> = per_zone
        .iter()
        .map(|(zone, needed)| {
            format!(
                "the plan needs {} in zone {zone} but max_machines ({max_machines}, with {} already) lets only {room} be added",
                count_of(*needed, "new machine"),
                count_of(in_use, "machine")
            )
        })
        .collect();
    if per_zone.len() > 1 {
        warnings.push(format!(
            "in all the plan needs {} and only {room} may be added",
            count_of(plan.provision.len(), "new machine")
        ));
    }
    warnings.push(format!(
        "{} would wait for a machine that max_machines does not allow",
        count_of(
            plan.provision
                .iter()
                .skip(room)
                .map(|r| r.for_instances.len())
                .sum::<usize>(),
            "instance"
        )
    ));
    warnings
}
