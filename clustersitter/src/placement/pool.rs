//! The index of one zone's machines with room, so placing 100k instances
//! does not scan every machine for each.

use super::*;

/// The machines of one zone that can take new instances, as a segment tree
/// over the zone's machines in id order. Each node keeps, for every class
/// of free cpu and of free memory, the fewest instances of a machine below
/// it with at least that much free, and the most free cpu and memory below
/// it. A search for the machine with the fewest instances that has room for
/// a need reads its lower bound from the need's classes, so the full
/// machines (which in a filling cluster are the ones with few instances)
/// neither lower the bound nor draw the search into their subtrees.
pub(super) struct ZonePool {
    /// Machine index per leaf, in increasing order.
    pub(super) members: Vec<usize>,
    pub(super) leaf_of: HashMap<usize, usize>,
    /// Leaves start at `leaves`; node `n` has children `2n` and `2n + 1`.
    pub(super) leaves: usize,
    /// `CPU_CLASSES.len()` entries per node.
    pub(super) fewest_by_cpu: Vec<u32>,
    /// `MEM_CLASSES.len()` entries per node.
    pub(super) fewest_by_mem: Vec<u32>,
    pub(super) most_free_cpu: Vec<f64>,
    pub(super) most_free_mem: Vec<f64>,
}

/// An instance count for "no machine".
pub(super) const ABSENT: u32 = u32::MAX;

/// Free room is a difference and `fits` compares a sum, which round
/// differently; pruning with more slack than `EPSILON` never skips a machine
/// that `fits` would take.
pub(super) const PRUNE_SLACK: f64 = 1e-6;

/// Lower edges of the free-room classes: none, then `smallest` doubling. A
/// need is judged by the largest edge at or below it, so a bound counts
/// machines with as little as half the need's room (finer classes measured
/// no faster: they cost as much in updates as they save in searches).
pub(super) const fn class_edges<const N: usize>(smallest: f64) -> [f64; N] {
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
pub(super) const CPU_CLASSES: [f64; 12] = class_edges(0.0625);
/// 32 MB to 128 GB.
pub(super) const MEM_CLASSES: [f64; 14] = class_edges(32.0);

/// The largest class every machine with room for `need` belongs to.
pub(super) fn class_of(need: f64, classes: &[f64]) -> usize {
    classes
        .iter()
        .rposition(|&edge| edge <= need - PRUNE_SLACK)
        .unwrap_or(0)
}

impl ZonePool {
    pub(super) fn new(members: Vec<usize>) -> Self {
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

    pub(super) fn insert(&mut self, machine: usize, instances: u32, free: Need) {
        self.set(machine, Some((instances, free)));
    }

    pub(super) fn remove(&mut self, machine: usize) {
        self.set(machine, None);
    }

    pub(super) fn set(&mut self, machine: usize, entry: Option<(u32, Need)>) {
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
    pub(super) fn take_first_with_room(
        &mut self,
        need: Need,
        fits: impl Fn(usize) -> bool,
    ) -> Option<usize> {
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
    pub(super) fn lower_bound(&self, node: usize, query: &Query) -> u32 {
        self.fewest_by_cpu[node * CPU_CLASSES.len() + query.cpu_class]
            .max(self.fewest_by_mem[node * MEM_CLASSES.len() + query.mem_class])
    }

    /// Depth first, the child with the lower bound first; a subtree whose
    /// bound (instances, first leaf) cannot beat the best so far, or whose
    /// free room is too small, is skipped.
    pub(super) fn search(
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

pub(super) struct Query {
    pub(super) need: Need,
    pub(super) cpu_class: usize,
    pub(super) mem_class: usize,
}

/// Sets `node`'s per-class minimums from its two children.
pub(super) fn merge_fewest(fewest: &mut [u32], classes: usize, node: usize) {
    for class in 0..classes {
        fewest[node * classes + class] =
            fewest[2 * node * classes + class].min(fewest[(2 * node + 1) * classes + class]);
    }
}
