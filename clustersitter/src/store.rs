//! The clustersitter's persisted state: jobs, machines, assignments and idle
//! limits, in one JSON file under the state dir written atomically (temp
//! file, fsync, rename, fsync dir). A file rather than an embedded database:
//! the state is small (kilobytes per hundred machines), every change rewrites
//! it whole in well under a millisecond, a human can read it when something
//! goes wrong, and the atomic rename makes every write all-or-nothing
//! without another dependency.

use crate::recipes::ResolvedRecipe;
use cerebro_host::fs::{atomic_write, read_state_file, StateFile};
use cerebro_types::cluster::{Assignment, InstanceKey, MachineState, ProviderDetails, RolloutStop};
use cerebro_types::job::JobSpec;
use cerebro_types::machine::Resources;
use cerebro_types::task::TaskSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    pub version: Option<String>,
    /// Bumped by every `update` and every change of the task
    /// configuration; instances carry it in `CEREBRO_JOB_GENERATION`.
    pub generation: u64,
    /// The generation each machine's instances of this job run; a rolling
    /// update moves one machine at a time.
    #[serde(default)]
    pub machine_generation: BTreeMap<String, u64>,
    /// The task configuration of older generations that machines still
    /// run while a rolling update has not reached them; any generation not
    /// here runs `spec.task_configuration`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub superseded: BTreeMap<u64, TaskSpec>,
    /// The version of older generations that machines still run while a
    /// rolling update has not reached them (`None`: that generation had
    /// no version); any generation not here runs `version`. Absent from
    /// files written before it existed, which load with it empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub superseded_versions: BTreeMap<u64, Option<String>>,
    /// The recipe `spec.deployment_recipe` named when the job was last
    /// submitted or updated, as read then: what instances of the current
    /// generation deploy. `None` for a job without a recipe, and in files
    /// written before recipes ran (resolved at start, see
    /// [`crate::cluster::Cluster::resolve_missing_recipes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<ResolvedRecipe>,
    /// The recipe and `recipe_options` of older generations that machines
    /// still run while a rolling update has not reached them, as
    /// `superseded` keeps their task configuration; any generation not
    /// here deploys `recipe` with `spec.recipe_options`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub superseded_deploys: BTreeMap<u64, DeploySnapshot>,
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// `Some(true)` after a start request, `Some(false)` after a stop: it
    /// overrides `task_configuration.auto_start` for every instance,
    /// including ones placed later. `None`: `auto_start` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_requested: Option<bool>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Each instance's job-wide number, per zone and zone-local slot
    /// (zone → slot → number): what names its task (`JOB#N`) and its
    /// `CEREBRO_INSTANCE`. Given once, lowest free first, kept for the
    /// instance's life, freed when the instance goes (see
    /// [`JobRecord::number_instances`]). Absent from files written before
    /// job-wide numbers: numbered at load, zone by zone in name order, so a
    /// job in one zone keeps the names it had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_numbers: BTreeMap<String, BTreeMap<u32, u32>>,
}

impl JobRecord {
    pub fn new(spec: JobSpec, now: u64) -> Self {
        Self {
            spec,
            version: None,
            generation: 1,
            machine_generation: BTreeMap::new(),
            superseded: BTreeMap::new(),
            superseded_versions: BTreeMap::new(),
            recipe: None,
            superseded_deploys: BTreeMap::new(),
            rollout: None,
            run_requested: None,
            created_ms: now,
            updated_ms: now,
            instance_numbers: BTreeMap::new(),
        }
    }

    /// The number of the instance in `zone` at `slot`, once given.
    pub fn instance_number(&self, zone: &str, slot: u32) -> Option<u32> {
        self.instance_numbers.get(zone)?.get(&slot).copied()
    }

    /// Numbers the instances `keys` (the job's, sorted): an instance
    /// that has a number keeps it, one that is not in `keys` any more
    /// frees its number, and each new one, in the order of `keys`, takes
    /// its slot's number when no other instance has it, else the lowest
    /// free one. Taking the slot first keeps every task name state written
    /// before numbers had (`JOB#SLOT`) wherever it was unique: a job in
    /// one zone, and the first zone of any job, keep theirs across the
    /// upgrade. Answers whether any number changed.
    pub fn number_instances(&mut self, keys: &[InstanceKey]) -> bool {
        let before = self.instance_numbers.clone();
        let wanted: BTreeSet<(&str, u32)> =
            keys.iter().map(|k| (k.zone.as_str(), k.slot)).collect();
        for (zone, slots) in self.instance_numbers.iter_mut() {
            slots.retain(|slot, _| wanted.contains(&(zone.as_str(), *slot)));
        }
        self.instance_numbers.retain(|_, slots| !slots.is_empty());
        let mut used: BTreeSet<u32> = self
            .instance_numbers
            .values()
            .flat_map(|slots| slots.values().copied())
            .collect();
        for key in keys {
            if self.instance_number(&key.zone, key.slot).is_some() {
                continue;
            }
            let number = if used.contains(&key.slot) {
                (0..).find(|n| !used.contains(n)).unwrap_or(u32::MAX)
            } else {
                key.slot
            };
            used.insert(number);
            self.instance_numbers
                .entry(key.zone.clone())
                .or_default()
                .insert(key.slot, number);
        }
        self.instance_numbers != before
    }

    /// What instances on `machine` run; a machine new to the job starts at the current generation.
    pub fn generation_on(&self, machine: &str) -> u64 {
        self.machine_generation
            .get(machine)
            .copied()
            .unwrap_or(self.generation)
    }

    /// The task configuration instances on `machine` run.
    pub fn task_configuration_on(&self, machine: &str) -> &TaskSpec {
        self.superseded
            .get(&self.generation_on(machine))
            .unwrap_or(&self.spec.task_configuration)
    }

    /// The version instances on `machine` run (`CEREBRO_JOB_VERSION`).
    pub fn version_on(&self, machine: &str) -> Option<&str> {
        match self.superseded_versions.get(&self.generation_on(machine)) {
            Some(old) => old.as_deref(),
            None => self.version.as_deref(),
        }
    }

    /// The recipe and options instances on `machine` deploy with (the
    /// recipe `None`: they deploy nothing).
    pub fn deploy_on(
        &self,
        machine: &str,
    ) -> (
        Option<&ResolvedRecipe>,
        &BTreeMap<String, serde_json::Value>,
    ) {
        match self.superseded_deploys.get(&self.generation_on(machine)) {
            Some(old) => (old.recipe.as_ref(), &old.options),
            None => (self.recipe.as_ref(), &self.spec.recipe_options),
        }
    }

    /// What the current generation deploys, as a snapshot.
    fn deploy_snapshot(&self) -> DeploySnapshot {
        DeploySnapshot {
            recipe: self.recipe.clone(),
            options: self.spec.recipe_options.clone(),
        }
    }

    /// Keeps what the machines in `hosting` deploy now, for the rollout
    /// about to start (each keeps it until the rollout reaches it).
    fn keep_deploys_of(&mut self, hosting: &[String]) {
        for machine in hosting {
            let running = self.generation_on(machine);
            if !self.superseded_deploys.contains_key(&running) {
                let snapshot = self.deploy_snapshot();
                self.superseded_deploys.insert(running, snapshot);
            }
        }
    }

    /// Whether deploying with `recipe` and `options` differs from what the
    /// current generation deploys: another recipe content (by digest), a
    /// recipe added or removed, or other options for a recipe.
    pub fn deploy_differs(
        &self,
        recipe: Option<&ResolvedRecipe>,
        options: &BTreeMap<String, serde_json::Value>,
    ) -> bool {
        let digest = |r: Option<&ResolvedRecipe>| r.map(|r| r.sha256.clone());
        digest(recipe) != digest(self.recipe.as_ref())
            || (recipe.is_some() && *options != self.spec.recipe_options)
    }

    /// Sets the recipe for the generation a rollout is about to start
    /// (`updatejob` re-reads it); machines in `hosting` keep deploying
    /// what they do until the rollout reaches them.
    pub fn set_recipe(&mut self, recipe: Option<ResolvedRecipe>, hosting: &[String]) {
        if recipe == self.recipe {
            return;
        }
        self.keep_deploys_of(hosting);
        self.recipe = recipe;
    }

    /// Sets the job's version for the generation a rollout is about to
    /// start; machines in `hosting` keep the version of what they run until
    /// the rollout reaches them.
    pub fn set_version(&mut self, version: Option<String>, hosting: &[String]) {
        if version == self.version {
            return;
        }
        for machine in hosting {
            let running = self.generation_on(machine);
            if !self.superseded_versions.contains_key(&running) {
                self.superseded_versions
                    .insert(running, self.version.clone());
            }
        }
        self.version = version;
    }

    /// Starts a rolling update to a new generation over the machines in
    /// `hosting`: each keeps what it runs until the rollout reaches it.
    pub fn begin_rollout(
        &mut self,
        hosting: &[String],
        min_healthy_ms: u64,
        max_parallel: usize,
        now: u64,
    ) {
        for machine in hosting {
            let current = self.generation_on(machine);
            self.machine_generation.insert(machine.clone(), current);
        }
        self.generation += 1;
        self.updated_ms = now;
        self.rollout = Some(Rollout {
            target_generation: self.generation,
            min_healthy_ms,
            max_parallel,
            switched: BTreeMap::new(),
            started_ms: now,
            stopped: None,
        });
    }

    /// Replaces the job's config and its resolved `recipe`. A changed task
    /// configuration, recipe content (by digest) or recipe options reach
    /// the machines in `hosting` by a rolling update, one machine at a
    /// time, as `update` does; anything else (layout, links) is
    /// placement's business and takes effect at once. Returns whether a
    /// rollout began.
    pub fn replace_spec(
        &mut self,
        spec: JobSpec,
        recipe: Option<ResolvedRecipe>,
        hosting: &[String],
        min_healthy_ms: u64,
        now: u64,
    ) -> bool {
        let redeploys = self.deploy_differs(recipe.as_ref(), &spec.recipe_options);
        let rolls = (spec.task_configuration != self.spec.task_configuration || redeploys)
            && !hosting.is_empty();
        if rolls {
            for machine in hosting {
                let running = self.generation_on(machine);
                if !self.superseded.contains_key(&running) {
                    self.superseded
                        .insert(running, self.spec.task_configuration.clone());
                }
            }
            self.keep_deploys_of(hosting);
        }
        self.recipe = recipe;
        self.spec = spec;
        self.updated_ms = now;
        if rolls {
            self.begin_rollout(hosting, min_healthy_ms, 1, now);
        }
        rolls
    }

    /// Forgets the old task configurations no machine runs any more.
    pub fn forget_unused_configurations(&mut self) {
        let machine_generation = &self.machine_generation;
        self.superseded
            .retain(|generation, _| machine_generation.values().any(|g| g == generation));
        self.superseded_versions
            .retain(|generation, _| machine_generation.values().any(|g| g == generation));
        self.superseded_deploys
            .retain(|generation, _| machine_generation.values().any(|g| g == generation));
    }

    pub fn end_rollout(&mut self) {
        self.rollout = None;
        self.machine_generation.clear();
        self.superseded.clear();
        self.superseded_versions.clear();
        self.superseded_deploys.clear();
    }
}

/// What one older generation deploys (see [`JobRecord::superseded_deploys`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySnapshot {
    /// `None`: that generation deployed nothing.
    pub recipe: Option<ResolvedRecipe>,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub target_generation: u64,
    pub min_healthy_ms: u64,
    pub max_parallel: usize,
    /// Machines switched to the target, and when (their instances must be
    /// healthy for `min_healthy_ms` after this before the next ones go).
    pub switched: BTreeMap<String, u64>,
    pub started_ms: u64,
    /// Set when a switched machine's deployment failed: no further machine
    /// is switched until that machine is healthy. Absent from older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<RolloutStop>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub id: String,
    pub zone: String,
    /// Stable ordinal within the zone (`N` in `N.ZONE.basename`).
    pub number: u32,
    pub provider_id: Option<String>,
    /// What the provider told of it; absent from older state files.
    #[serde(default)]
    pub details: ProviderDetails,
    pub address: Option<String>,
    pub capacity: Resources,
    /// Changed only by [`MachineRecord::move_to`], through the transition table.
    state: MachineState,
    pub created_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub missed_polls: u32,
}

impl MachineRecord {
    /// A machine not yet seen answering (it becomes ready at its first successful poll).
    pub fn new(id: &str, zone: &str, number: u32, capacity: Resources) -> Self {
        Self {
            id: id.to_string(),
            zone: zone.to_string(),
            number,
            provider_id: None,
            details: ProviderDetails::default(),
            address: None,
            capacity,
            state: MachineState::Provisioning,
            created_ms: cerebro_types::time::now_ms(),
            last_seen_ms: None,
            missed_polls: 0,
        }
    }

    /// Where the machine is in its life.
    pub fn state(&self) -> MachineState {
        self.state
    }

    /// Moves the machine to `to` if [`cerebro_types::cluster::MACHINE_TRANSITIONS`]
    /// allows it, and answers whether it did; a refused move changes
    /// nothing and is logged (it would be a bug in the caller).
    pub fn move_to(&mut self, to: MachineState) -> bool {
        match self.state.transition(to) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(machine = %self.id, "{error}");
                false
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub version: u32,
    pub jobs: BTreeMap<String, JobRecord>,
    pub machines: BTreeMap<String, MachineRecord>,
    pub assignments: Vec<Assignment>,
    /// Idle machines kept per zone (`default` for zones not listed).
    pub idle_limit_default: u32,
    #[serde(default)]
    pub idle_limit_per_zone: BTreeMap<String, u32>,
    /// Machine ids are never reused, so a late answer from a decommissioned machine is recognised.
    pub next_machine_seq: u64,
    /// Machines this cluster decommissioned, newest last (bounded): one that
    /// registers again, even after a restart of the clustersitter, has its
    /// stale tasks removed instead of being adopted.
    #[serde(default)]
    pub retired_machines: VecDeque<String>,
    /// Jobs removed by request or dropped at a restart, newest last
    /// (bounded): only their tasks, and those of jobs the cluster has, are
    /// ever removed from a machine. A task of a job the cluster never knew
    /// (its state was lost) is an orphan: kept running and reported.
    #[serde(default)]
    pub removed_jobs: VecDeque<String>,
    /// DNS machine numbers: per `ZONE.basename`, machine id → N in
    /// `N.ZONE.basename` (see [`crate::dns::names::update_numbers`]).
    /// Absent from files written before DNS names, which load with none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns_numbers: BTreeMap<String, BTreeMap<String, u32>>,
    /// Basenames Cerebro may hold records under, each with the job that
    /// last had it: listed by every DNS pass, so the names of a removed
    /// job or of a changed basename are removed even after a restart.
    /// One leaves once nothing owned is left under it and no job has it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns_basenames: BTreeMap<String, String>,
}

/// How many decommissioned machine ids are remembered.
const RETIRED_KEPT: usize = 10_000;

impl ClusterState {
    pub fn new(idle_limit_default: u32, idle_limit_per_zone: BTreeMap<String, u32>) -> Self {
        Self {
            version: STATE_VERSION,
            jobs: BTreeMap::new(),
            machines: BTreeMap::new(),
            assignments: Vec::new(),
            idle_limit_default,
            idle_limit_per_zone,
            next_machine_seq: 1,
            retired_machines: VecDeque::new(),
            removed_jobs: VecDeque::new(),
            dns_numbers: BTreeMap::new(),
            dns_basenames: BTreeMap::new(),
        }
    }

    pub fn retire_machine(&mut self, id: &str) {
        if self.was_retired(id) {
            return;
        }
        if self.retired_machines.len() >= RETIRED_KEPT {
            self.retired_machines.pop_front();
        }
        self.retired_machines.push_back(id.to_string());
    }

    /// Remembers that job `name` was removed, so its tasks may go.
    pub fn job_removed(&mut self, name: &str) {
        if self.removed_jobs.iter().any(|n| n == name) {
            return;
        }
        if self.removed_jobs.len() >= RETIRED_KEPT {
            self.removed_jobs.pop_front();
        }
        self.removed_jobs.push_back(name.to_string());
    }

    /// Whether a machine's task named `task` may be removed: it belongs
    /// to a job this cluster has or removed. Anything else is an orphan.
    pub fn may_remove_task(&self, task: &str) -> bool {
        let job = cerebro_types::job::job_of_task_name(task);
        self.jobs.contains_key(job) || self.removed_jobs.iter().any(|n| n == job)
    }

    pub fn was_retired(&self, id: &str) -> bool {
        self.retired_machines.iter().any(|retired| retired == id)
    }

    pub fn idle_limit(&self, zone: &str) -> u32 {
        self.idle_limit_per_zone
            .get(zone)
            .copied()
            .unwrap_or(self.idle_limit_default)
    }

    /// Takes in a machine this cluster did not provision (or lost track of),
    /// keeping ids unique: the sequence moves past a `ZONE-N` id, so
    /// placement never provisions a second machine under the same id.
    pub fn adopt_machine(&mut self, record: MachineRecord) {
        if let Some(seq) = record
            .id
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
        {
            self.next_machine_seq = self.next_machine_seq.max(seq + 1);
        }
        self.machines.insert(record.id.clone(), record);
    }

    /// The lowest ordinal not used by a live machine of `zone`.
    pub fn free_number(&self, zone: &str) -> u32 {
        let used: std::collections::BTreeSet<u32> = self
            .machines
            .values()
            .filter(|m| m.zone == zone)
            .map(|m| m.number)
            .collect();
        (1..).find(|n| !used.contains(n)).unwrap_or(1)
    }
}

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.json")
}

/// The second copy of the state, written before each replace of
/// [`state_path`], so that one unreadable file loses nothing.
pub fn previous_path(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.json.prev")
}

/// What [`load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// Neither file exists: a first start.
    Fresh,
    /// `cluster.json` was good.
    Read(ClusterState),
    /// `cluster.json` was unusable (`problem` says why and where it was
    /// moved); the previous copy was good and is this state.
    Recovered {
        state: ClusterState,
        problem: String,
    },
    /// No copy was usable (`problem` says why, for each).
    Lost { problem: String },
}

/// Reads `cluster.json` alone (an unusable one is moved aside); see
/// [`load_or_previous`] for what a start reads.
pub fn load(state_dir: &Path) -> StateFile<ClusterState> {
    read_one(&state_path(state_dir))
}

fn read_one(path: &Path) -> StateFile<ClusterState> {
    let check = |state: &ClusterState| {
        if state.version == STATE_VERSION {
            Ok(())
        } else {
            Err(format!("unknown state version {}", state.version))
        }
    };
    read_state_file(path, check)
}

/// Reads the state: `cluster.json`, or its previous copy when that is
/// unusable or missing. An unusable file is moved aside
/// (`*.corrupt-MS`), never overwritten.
pub fn load_or_previous(state_dir: &Path) -> Loaded {
    let problem = match read_one(&state_path(state_dir)) {
        StateFile::Read(state) => return Loaded::Read(state),
        StateFile::Fresh => None,
        StateFile::Corrupt { moved_to, error } => Some(format!(
            "cluster.json unreadable ({error}); kept as {}",
            moved_to.display()
        )),
    };
    match (read_one(&previous_path(state_dir)), problem) {
        (StateFile::Fresh, None) => Loaded::Fresh,
        (StateFile::Fresh, Some(problem)) => Loaded::Lost {
            problem: format!("{problem}; no previous copy"),
        },
        (StateFile::Read(state), problem) => Loaded::Recovered {
            state,
            problem: problem.unwrap_or_else(|| "cluster.json is missing".into()),
        },
        (StateFile::Corrupt { moved_to, error }, problem) => Loaded::Lost {
            problem: format!(
                "{}; its previous copy unreadable too ({error}); kept as {}",
                problem.unwrap_or_else(|| "cluster.json is missing".into()),
                moved_to.display()
            ),
        },
    }
}

/// Writes the state atomically twice, the previous copy first: whatever
/// happens to one file, the other holds the state (a crash between the
/// two leaves the copy one change ahead, which is as good).
pub fn save(state_dir: &Path, state: &ClusterState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    atomic_write(&previous_path(state_dir), &bytes)?;
    atomic_write(&state_path(state_dir), &bytes)
}
