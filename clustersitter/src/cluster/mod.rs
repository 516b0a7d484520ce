//! The cluster's shared state (behind one lock, never held across
//! `.await`): the persisted part, what machines last reported, and events;
//! plus the views the API serves and the task spec of each instance.

use crate::config::ClusterConfig;
use crate::placement::PlacementMachine;
use crate::recipes::ResolvedRecipe;
use crate::store::{self, ClusterState, JobRecord, MachineRecord};
use cerebro_types::cluster::{
    Assignment, ClusterEvent, ClusterEventKind, ClusterStatus, InstanceKey, InstanceState,
    InstanceView, JobView, MachineState, MachineView, Plan, RolloutView, ZoneStatus,
};
use cerebro_types::deploy::Deployment;
use cerebro_types::job::{instance_task_name, link_of, walk_links, ChainEnd, JobSpec, Link};
use cerebro_types::machine::{MachineStatus, Resources, TaskView};
use cerebro_types::time::now_ms;
use cerebro_types::{TaskSpec, ValidationErrors};
use cerebro_web::event_log::EventLog;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod dns;
mod jobs;
mod machines;

pub use dns::{DnsSnapshot, NamelessReason};

/// The chain of links from `spec` back to itself, if following its
/// `linked_job` through the jobs `known` answers for leads there.
fn link_cycle<'a>(
    spec: &'a JobSpec,
    known: &dyn Fn(&str) -> Option<&'a JobSpec>,
) -> Option<Vec<String>> {
    let chain = walk_links(spec.name(), |name| {
        if name == spec.name() {
            return link_of(spec.linked_job.as_deref());
        }
        match known(name) {
            Some(job) => link_of(job.linked_job.as_deref()),
            None => Link::Missing,
        }
    });
    match chain.end {
        // Only a circle through `spec` is this update's doing.
        ChainEnd::Cycle { at: 0 } => {
            let mut names: Vec<String> = chain.path.iter().map(|n| n.to_string()).collect();
            names.push(spec.name().to_string());
            Some(names)
        }
        _ => None,
    }
}

#[cfg(test)]
mod numbering_tests;
#[cfg(test)]
mod tests;
mod views;

pub use machines::{PollAnswer, ProvisionBackoff};

const MAX_EVENTS: usize = 1000;

/// What one machine answered at the last successful poll.
#[derive(Debug, Clone, Default)]
pub struct MachineReport {
    pub tasks: BTreeMap<String, TaskView>,
    pub status: Option<MachineStatus>,
}

/// The one owner of the cluster's state: jobs, machines and assignments
/// change only through its methods (here and in `jobs.rs`,
/// `machines.rs`), which also record the events.
pub struct Cluster {
    config: Arc<ClusterConfig>,
    state: ClusterState,
    reports: BTreeMap<String, MachineReport>,
    /// Journaled under the state dir, so the history outlives a restart.
    events: EventLog<ClusterEvent>,
    /// The last placement, for what could not be placed.
    plan: Plan,
    started: Instant,
    provider_kind: &'static str,
    /// The largest machine each served zone can have, as the provider
    /// says (the config's machine size until it has said).
    largest_machine: BTreeMap<String, Resources>,
    /// Per machine, the tasks it runs for jobs this cluster does not
    /// know, as of its last answer (see [`ClusterState::may_remove_task`]).
    orphans: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Per machine, the tasks it refused as not fitting (409), each with
    /// the tasks it ran then: until one of those goes (room freed), the
    /// machine's own count of its free room is what placement uses, and
    /// the refused instances are placed anew.
    refused: BTreeMap<String, Refusal>,
    /// Per zone, its streak of failed provisioning attempts (not
    /// persisted: a restarted cluster tries at once).
    provision_streaks: BTreeMap<String, machines::ProvisionStreak>,
    /// How long a zone waits after failed attempts.
    provision_backoff: ProvisionBackoff,
    /// The last hour of CPU and RSS per task and machine (not persisted).
    history: crate::history::History,
}

/// What a machine refused, and what it ran when it did.
#[derive(Debug, Clone, Default)]
struct Refusal {
    tasks: std::collections::BTreeSet<String>,
    ran: std::collections::BTreeSet<String>,
}

pub type SharedCluster = Arc<Mutex<Cluster>>;

pub use cerebro_host::lock;

/// What [`Cluster::upsert_job`] did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
    /// The job was already exactly so: nothing to persist.
    Unchanged,
}

impl UpsertOutcome {
    /// The word the events and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            UpsertOutcome::Created => "created",
            UpsertOutcome::Updated => "updated",
            UpsertOutcome::Unchanged => "unchanged",
        }
    }
}

impl From<UpsertOutcome> for cerebro_types::cluster::JobResult {
    fn from(outcome: UpsertOutcome) -> Self {
        match outcome {
            UpsertOutcome::Created => Self::Created,
            UpsertOutcome::Updated => Self::Updated,
            UpsertOutcome::Unchanged => Self::Unchanged,
        }
    }
}

impl Cluster {
    /// The cluster over `state` (as loaded), its events journaled in the
    /// config's state dir.
    pub fn new(
        config: Arc<ClusterConfig>,
        state: ClusterState,
        provider_kind: &'static str,
    ) -> Self {
        let events = EventLog::journaled(config.state_dir.join("events.jsonl"), MAX_EVENTS);
        let mut cluster = Self {
            state,
            reports: BTreeMap::new(),
            events,
            plan: Plan::default(),
            started: Instant::now(),
            provider_kind,
            largest_machine: config.zones(),
            orphans: BTreeMap::new(),
            refused: BTreeMap::new(),
            provision_streaks: BTreeMap::new(),
            provision_backoff: ProvisionBackoff::default(),
            history: crate::history::History::default(),
            config,
        };
        // State written before job-wide numbers has none.
        cluster.number_instances();
        cluster
    }

    /// The last hour of CPU and RSS per task and machine.
    pub fn history(&self) -> &crate::history::History {
        &self.history
    }

    /// The number of instance `key`: job-wide, unique among the job's
    /// instances and stable for the instance's life (see
    /// [`InstanceView::index`](cerebro_types::cluster::InstanceView)).
    pub fn instance_number(&self, key: &InstanceKey) -> u32 {
        let Some(record) = self.state.jobs.get(&key.job) else {
            return key.slot;
        };
        if let Some(number) = record.instance_number(&key.zone, key.slot) {
            return number;
        }
        // Not numbered yet (every change that brings an instance numbers
        // it, so only between two of those): the number it will get, as
        // [`JobRecord::number_instances`] would give it.
        let mut record = record.clone();
        let mut keys = self.instance_keys(&key.job);
        if !keys.contains(key) {
            keys.push(key.clone());
            keys.sort();
        }
        record.number_instances(&keys);
        record
            .instance_number(&key.zone, key.slot)
            .unwrap_or(key.slot)
    }

    /// Numbers the instances of every job ([`JobRecord::number_instances`]):
    /// run by every change that brings or drops instances (a job put, a
    /// placement taken, a plan kept) and at start, for state written before
    /// numbers. Answers whether any number changed.
    pub(crate) fn number_instances(&mut self) -> bool {
        let names: Vec<String> = self.state.jobs.keys().cloned().collect();
        let mut changed = false;
        for name in names {
            let keys = self.instance_keys(&name);
            if let Some(record) = self.state.jobs.get_mut(&name) {
                changed |= record.number_instances(&keys);
            }
        }
        changed
    }

    /// `JOB #N (ZONE)`: how people read an instance (task names stay `JOB#N`).
    pub fn instance_label(&self, key: &InstanceKey) -> String {
        format!("{} #{} ({})", key.job, self.instance_number(key), key.zone)
    }

    /// The task name instance `key` runs under on its machine: `JOB#N`
    /// with N its [`Cluster::instance_number`].
    pub fn task_name_of(&self, key: &InstanceKey) -> String {
        instance_task_name(&key.job, self.instance_number(key))
    }

    /// Learns from `provider` the largest machine of each served zone; a
    /// zone it cannot answer for keeps the config's machine size.
    pub fn learn_machine_sizes(&mut self, provider: &dyn crate::provider::MachineProvider) {
        for (zone, largest) in self.largest_machine.iter_mut() {
            if let Some(size) = provider.largest_machine(zone) {
                *largest = size;
            }
        }
    }

    /// The largest machine each served zone can have (zone → cores, MB).
    pub fn largest_machines(&self) -> &BTreeMap<String, Resources> {
        &self.largest_machine
    }

    /// Records (and journals) an event about `subject`, a job name,
    /// machine id or zone as `kind` says ([`ClusterEventKind::subject_kind`]).
    pub fn event(&mut self, kind: ClusterEventKind, subject: &str, message: impl Into<String>) {
        self.record_event(kind, subject, None, message.into());
    }

    /// Records (and journals) an event about job `job` that happened on
    /// `machine` (an instance's start, exit or violation): shown on the
    /// job's page and on the machine's.
    pub fn event_on(
        &mut self,
        kind: ClusterEventKind,
        job: &str,
        machine: &str,
        message: impl Into<String>,
    ) {
        self.record_event(kind, job, Some(machine), message.into());
    }

    fn record_event(
        &mut self,
        kind: ClusterEventKind,
        subject: &str,
        machine: Option<&str>,
        message: String,
    ) {
        tracing::info!(kind = kind.name(), subject, machine, "{message}");
        let subject = kind.subject_kind().with(subject.to_string());
        self.events.push(ClusterEvent {
            at_ms: now_ms(),
            kind,
            subject,
            message,
            machine: machine.map(str::to_string),
        });
    }

    /// Saves the persisted part (`state.json`) atomically.
    ///
    /// # Errors
    /// The write's I/O error; the state in memory stays as it is.
    pub fn persist(&self) -> std::io::Result<()> {
        store::save(&self.config.state_dir, &self.state)
    }

    /// Assignments on `machine`.
    pub fn assignments_on<'a>(&'a self, machine: &'a str) -> impl Iterator<Item = &'a Assignment> {
        self.state
            .assignments
            .iter()
            .filter(move |a| a.machine == machine)
    }

    /// The task spec instance `key` runs on `machine`: the job's
    /// task_configuration under the instance's task name, plus the
    /// environment that tells it who it is. Generations live in the
    /// environment so that an update is a spec change the machine applies.
    pub fn instance_spec(&self, key: &InstanceKey, machine: &str) -> Option<TaskSpec> {
        let job = self.state.jobs.get(&key.job)?;
        let mut spec = job.task_configuration_on(machine).clone();
        spec.name = self.task_name_of(key);
        if let Some(run) = job.run_requested {
            spec.auto_start = run;
        }
        let env = &mut spec.env;
        env.insert("CEREBRO_JOB".into(), key.job.clone());
        env.insert(
            "CEREBRO_INSTANCE".into(),
            self.instance_number(key).to_string(),
        );
        env.insert("CEREBRO_ZONE".into(), key.zone.clone());
        env.insert("CEREBRO_MACHINE".into(), machine.to_string());
        env.insert("CEREBRO_CLUSTER".into(), self.config.cluster_name.clone());
        env.insert(
            "CEREBRO_JOB_GENERATION".into(),
            job.generation_on(machine).to_string(),
        );
        // The version of the generation this machine runs: a rollout that
        // has not reached it must not change its environment.
        if let Some(version) = job.version_on(machine) {
            env.insert("CEREBRO_JOB_VERSION".into(), version.to_string());
        }
        if let Some(master) = job
            .spec
            .linked_job
            .as_ref()
            .and_then(|m| self.state.jobs.get(m))
        {
            // A linked job restarts whenever its master is updated on this machine.
            env.insert(
                "CEREBRO_LINKED_GENERATION".into(),
                master.generation_on(machine).to_string(),
            );
        }
        Some(spec)
    }
    /// The deployment instance `key` gets with its task on `machine`, for a
    /// job with a recipe: the recipe and options of the generation that
    /// machine runs, its version there ([`JobRecord::version_on`]), and who
    /// the instance is. `None` for a job without a (resolved) recipe.
    pub fn instance_deployment(&self, key: &InstanceKey, machine: &str) -> Option<Deployment> {
        let job = self.state.jobs.get(&key.job)?;
        let (recipe, options) = job.deploy_on(machine);
        let recipe = recipe?;
        Some(Deployment {
            recipe_name: recipe.name.clone(),
            recipe_source: recipe.source.clone(),
            recipe_sha256: recipe.sha256.clone(),
            recipe: recipe.recipe.clone(),
            options: options.clone(),
            job: key.job.clone(),
            version: job.version_on(machine).map(str::to_string),
            instance: self.instance_number(key),
            zone: key.zone.clone(),
            machine: machine.to_string(),
            cluster: self.config.cluster_name.clone(),
        })
    }

    /// Resolves `spec.deployment_recipe` in the cluster's `recipe_dirs`
    /// and the shipped recipes ([`crate::recipes::resolve`]) and checks
    /// that the job's `recipe_options` fill it ([`Deployment::check`], for
    /// a sample instance: slot 0 of its first zone, at the job's current
    /// version). `Ok(None)` for a job without a recipe.
    ///
    /// # Errors
    /// Field `deployment_recipe` when it cannot be found (naming every
    /// directory searched), read or parsed (located in its file);
    /// `recipe_options.KEY` for an option a step reads and the job lacks.
    pub fn resolve_recipe(
        &self,
        spec: &JobSpec,
    ) -> Result<Option<ResolvedRecipe>, ValidationErrors> {
        let version = self
            .state
            .jobs
            .get(spec.name())
            .and_then(|job| job.version.clone());
        self.resolve_recipe_at(spec, version)
    }

    /// [`Cluster::resolve_recipe`] for the deployment of `version` (an
    /// update's new version: templates that read `version` are checked
    /// with the one they will get).
    ///
    /// # Errors
    /// As [`Cluster::resolve_recipe`].
    pub fn resolve_recipe_at(
        &self,
        spec: &JobSpec,
        version: Option<String>,
    ) -> Result<Option<ResolvedRecipe>, ValidationErrors> {
        let Some(name) = &spec.deployment_recipe else {
            return Ok(None);
        };
        let recipe = crate::recipes::resolve(name, &self.config.recipe_dirs).map_err(|error| {
            let mut errors = ValidationErrors::default();
            errors.push("deployment_recipe", error.to_string());
            errors
        })?;
        let sample = Deployment {
            recipe_name: recipe.name.clone(),
            recipe_source: recipe.source.clone(),
            recipe_sha256: recipe.sha256.clone(),
            recipe: recipe.recipe.clone(),
            options: spec.recipe_options.clone(),
            job: spec.name().to_string(),
            version,
            instance: 0,
            zone: spec
                .deployment_layout
                .keys()
                .next()
                .cloned()
                .unwrap_or_default(),
            machine: String::new(),
            cluster: self.config.cluster_name.clone(),
        };
        sample.check()?;
        Ok(Some(recipe))
    }

    /// At start: a job loaded from a state file written before recipes
    /// ran names a recipe but has no snapshot of it; resolve it now. One
    /// that does not resolve keeps running as before (deploying nothing),
    /// with an event saying why. Answers whether any job changed.
    pub fn resolve_missing_recipes(&mut self) -> bool {
        let missing: Vec<String> = self
            .state
            .jobs
            .iter()
            .filter(|(_, job)| job.spec.deployment_recipe.is_some() && job.recipe.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = false;
        for name in missing {
            let Some(spec) = self.state.jobs.get(&name).map(|job| job.spec.clone()) else {
                continue;
            };
            match self.resolve_recipe(&spec) {
                Ok(recipe) => {
                    if let Some(job) = self.state.jobs.get_mut(&name) {
                        // Every generation, old ones too, deploys it: none
                        // deployed anything before.
                        job.recipe = recipe;
                        changed = true;
                    }
                }
                Err(errors) => self.event(
                    ClusterEventKind::RecipeUnresolved,
                    &name,
                    format!("its deployment recipe cannot be used ({errors}); it runs as before, deploying nothing, until it is submitted again"),
                ),
            }
        }
        changed
    }

    /// Machines with at least one instance of `job`, sorted.
    pub fn machines_hosting(&self, job: &str) -> Vec<String> {
        let mut machines: Vec<String> = self
            .state
            .assignments
            .iter()
            .filter(|a| a.key.job == job)
            .map(|a| a.machine.clone())
            .collect();
        machines.sort();
        machines.dedup();
        machines
    }
    /// Checks that need the cluster: zones served, the linked master exists
    /// and no circle of links, an instance fits the zone's largest machine,
    /// the deployment recipe resolves and the options fill it
    /// ([`Cluster::resolve_recipe`]). Answers the resolved recipe.
    pub fn check_job(&self, spec: &JobSpec) -> Result<Option<ResolvedRecipe>, ValidationErrors> {
        self.check_job_among(spec, &[])
    }

    /// [`Cluster::check_job`] for one job of `batch`, a set submitted
    /// together (the dry run's): a job of the batch counts as submitted,
    /// and replaces the current job of its name, so a master may come in
    /// the same batch and a circle through the batch is refused as it
    /// would be job by job.
    pub fn check_job_among(
        &self,
        spec: &JobSpec,
        batch: &[JobSpec],
    ) -> Result<Option<ResolvedRecipe>, ValidationErrors> {
        let known = |name: &str| -> Option<&JobSpec> {
            batch
                .iter()
                .find(|job| job.name() == name)
                .or_else(|| self.state.jobs.get(name).map(|job| &job.spec))
        };
        let mut errors = ValidationErrors::default();
        let zones = self.config.zones();
        let served: Vec<&str> = zones.keys().map(String::as_str).collect();
        for zone in spec.deployment_layout.keys() {
            if !zones.contains_key(zone) {
                errors.push(
                    format!("deployment_layout.{zone}"),
                    format!(
                        "zone '{zone}' is not served by cluster '{}' (it serves: {})",
                        self.config.cluster_name,
                        served.join(", ")
                    ),
                );
            }
        }
        self.check_fits_a_machine(spec, &known, &mut errors);
        self.check_dns_basename(spec, batch, &mut errors);
        if let Some(master) = &spec.linked_job {
            if known(master).is_none() {
                errors.push(
                    "linked_job",
                    format!("no job named '{master}' (submit it first)"),
                );
            } else if let Some(chain) = link_cycle(spec, &known) {
                // Placement could place neither, and neither could be removed.
                errors.push(
                    "linked_job",
                    format!("links would go round in a circle: {}", chain.join(" -> ")),
                );
            }
        }
        let recipe = match self.resolve_recipe(spec) {
            Ok(recipe) => recipe,
            Err(found) => {
                errors.errors.extend(found.errors);
                None
            }
        };
        errors.into_result(recipe)
    }

    /// Refuses an instance that no machine its zone can ever have would
    /// hold, alone or (for a linked job, in its master's zones) beside its
    /// master and the master's other followers: it would wait forever. The
    /// field named is the one that makes it too big.
    fn check_fits_a_machine<'a>(
        &'a self,
        spec: &JobSpec,
        known: &dyn Fn(&str) -> Option<&'a JobSpec>,
        errors: &mut ValidationErrors,
    ) {
        let zones: Vec<&String> = match spec.linked_job.as_deref().and_then(known) {
            Some(master) => master.deployment_layout.keys().collect(),
            None => spec.deployment_layout.keys().collect(),
        };
        for zone in zones {
            let Some(largest) = self.largest_machine.get(zone) else {
                continue;
            };
            let need = spec.need_in(zone);
            let holds = format!(
                "the largest machine zone '{zone}' can have holds {} cores and {} MB",
                largest.cpu, largest.mem_mb
            );
            if need.cpu > largest.cpu {
                errors.push(
                    "task_configuration.cpu",
                    format!(
                        "an instance needs {} cores but {holds}",
                        rounded(need.cpu, largest.cpu)
                    ),
                );
            }
            let alone_fits = need.cpu <= largest.cpu && need.mem_mb <= largest.mem_mb;
            if let (true, Some(master)) = (alone_fits, &spec.linked_job) {
                // A follower runs beside its master and the master's other followers.
                let followers = self.state.jobs.iter().filter(|(name, job)| {
                    job.spec.linked_job.as_ref() == Some(master) && name.as_str() != spec.name()
                });
                let beside = known(master)
                    .into_iter()
                    .chain(followers.map(|(_, job)| &job.spec))
                    .map(|job| job.need_in(zone));
                let (cpu, mem_mb) = beside.fold((need.cpu, need.mem_mb), |(c, m), n| {
                    (c + n.cpu, m + n.mem_mb)
                });
                if cpu > largest.cpu || mem_mb > largest.mem_mb {
                    errors.push(
                        "linked_job",
                        format!(
                            "beside '{master}' and the jobs linked to it an instance needs {} cores and {} MB but {holds}",
                            rounded(cpu, largest.cpu),
                            rounded(mem_mb, largest.mem_mb)
                        ),
                    );
                }
            }
            if need.mem_mb > largest.mem_mb {
                let zone_mem = spec.deployment_layout.get(zone).and_then(|z| z.mem);
                let field = if zone_mem.is_some_and(|m| m >= need.mem_mb) {
                    format!("deployment_layout.{zone}.mem")
                } else {
                    "task_configuration.mem".to_string()
                };
                errors.push(
                    field,
                    format!(
                        "an instance needs {} MB but {holds}",
                        rounded(need.mem_mb, largest.mem_mb)
                    ),
                );
            }
        }
    }

    /// Creates or replaces a job, with the recipe [`Cluster::check_job`]
    /// resolved for it. A changed task configuration, recipe content or
    /// recipe options roll out one machine at a time.
    pub fn upsert_job(&mut self, spec: JobSpec, recipe: Option<ResolvedRecipe>) -> UpsertOutcome {
        let name = spec.name().to_string();
        let now = now_ms();
        let hosting = self.machines_hosting(&name);
        let min_healthy_ms = self.config.min_healthy.as_millis() as u64;
        let (result, rollout) = match self.state.jobs.get_mut(&name) {
            Some(record) if record.spec == spec && record.recipe == recipe => {
                (UpsertOutcome::Unchanged, None)
            }
            Some(record) => {
                let rolls = record.replace_spec(spec, recipe, &hosting, min_healthy_ms, now);
                (UpsertOutcome::Updated, rolls.then_some(record.generation))
            }
            None => {
                let mut record = JobRecord::new(spec, now);
                record.recipe = recipe;
                self.state.jobs.insert(name.clone(), record);
                (UpsertOutcome::Created, None)
            }
        };
        match rollout {
            Some(generation) => self.event(
                ClusterEventKind::JobUpdated,
                &name,
                format!(
                    "config updated: rolling update to generation {generation} over {}",
                    cerebro_types::wording::count_of(hosting.len(), "machine")
                ),
            ),
            None if result != UpsertOutcome::Unchanged => {
                let kind = if result == UpsertOutcome::Created {
                    ClusterEventKind::JobCreated
                } else {
                    ClusterEventKind::JobUpdated
                };
                self.event(kind, &name, format!("config {}", result.as_str()))
            }
            None => {}
        }
        self.number_instances();
        result
    }

    /// The cluster's configuration (fixed while it runs).
    pub fn config(&self) -> &Arc<ClusterConfig> {
        &self.config
    }

    /// What machine `id` answered at its last successful poll.
    pub fn report(&self, id: &str) -> Option<&MachineReport> {
        self.reports.get(id)
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> &EventLog<ClusterEvent> {
        &self.events
    }

    /// Job `name`, if it exists.
    pub fn job(&self, name: &str) -> Option<&JobRecord> {
        self.state.jobs.get(name)
    }

    /// Every job, sorted by name.
    pub fn jobs(&self) -> impl Iterator<Item = (&String, &JobRecord)> {
        self.state.jobs.iter()
    }

    /// Machine `id`, if the cluster has it.
    pub fn machine(&self, id: &str) -> Option<&MachineRecord> {
        self.state.machines.get(id)
    }

    /// Every machine, sorted by id.
    pub fn machines(&self) -> impl Iterator<Item = &MachineRecord> {
        self.state.machines.values()
    }

    /// Where every placed instance is, as the last placement left it.
    pub fn assignments(&self) -> &[Assignment] {
        &self.state.assignments
    }

    /// The idle machines kept per zone when no zone has its own limit.
    pub fn idle_limit_default(&self) -> u32 {
        self.state.idle_limit_default
    }

    /// The view of machine `id`, if the cluster has it.
    pub fn view_of_machine(&self, id: &str) -> Option<MachineView> {
        self.state.machines.get(id).map(|m| self.machine_view(m))
    }

    /// Records a start (`run`) or stop request for every instance of
    /// `name`. `None`: no such job; `Some(changed)` otherwise.
    pub fn request_run(&mut self, name: &str, run: bool) -> Option<bool> {
        let job = self.state.jobs.get_mut(name)?;
        if job.run_requested == Some(run) {
            return Some(false);
        }
        job.run_requested = Some(run);
        job.updated_ms = now_ms();
        let message = if run {
            "start requested: every instance runs"
        } else {
            "stop requested: every instance stops"
        };
        self.event(ClusterEventKind::JobRunRequested, name, message);
        Some(true)
    }

    /// The jobs linked to `name` (its followers), sorted.
    pub fn followers_of(&self, name: &str) -> Vec<String> {
        self.state
            .jobs
            .iter()
            .filter(|(_, j)| j.spec.linked_job.as_deref() == Some(name))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Removes job `name`; its instances stop at the next reconcile. The
    /// caller checks that no job follows it.
    pub fn remove_job(&mut self, name: &str) {
        if self.state.jobs.remove(name).is_some() {
            self.state.job_removed(name);
            self.event(
                ClusterEventKind::JobRemoved,
                name,
                "removed; its instances stop",
            );
        }
    }

    /// Starts (or retargets) a rolling update of `name`; `None`: no such
    /// job. `recipe`: the job's recipe as re-read for this update
    /// ([`Cluster::resolve_recipe`]); a changed one is what the new
    /// generation deploys.
    pub fn start_rollout(
        &mut self,
        name: &str,
        request: &cerebro_types::cluster::UpdateRequest,
        recipe: Option<ResolvedRecipe>,
    ) -> Option<()> {
        let hosting = self.machines_hosting(name);
        let default_healthy = self.config.min_healthy;
        let job = self.state.jobs.get_mut(name)?;
        if request.version.is_some() {
            job.set_version(request.version.clone(), &hosting);
        }
        job.set_recipe(recipe, &hosting);
        job.begin_rollout(
            &hosting,
            request
                .min_healthy_secs
                .map_or(default_healthy.as_millis() as u64, |s| (s * 1000.0) as u64),
            request.max_parallel.unwrap_or(1),
            now_ms(),
        );
        let message = format!(
            "rolling update to generation {}{} over {}",
            job.generation,
            request
                .version
                .as_ref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default(),
            cerebro_types::wording::count_of(hosting.len(), "machine")
        );
        self.event(ClusterEventKind::RolloutStarted, name, message);
        Some(())
    }

    /// Notes that instance number `index` of `name` was restarted by request.
    pub fn instance_restarted(&mut self, name: &str, index: usize) {
        let label = self
            .instances_of(name)
            .into_iter()
            .find(|i| i.index == index)
            .map_or(format!("{name} #{index}"), |i| {
                format!("{name} #{index} ({})", i.zone)
            });
        self.event(
            ClusterEventKind::InstanceRestarted,
            name,
            format!("{label} restarted by request"),
        );
    }

    /// Whether machine `id` was decommissioned by this cluster.
    pub fn was_retired(&self, id: &str) -> bool {
        self.state.was_retired(id)
    }

    /// Notes that a decommissioned machine registered again.
    pub fn stale_machine_registered(&mut self, id: &str) {
        self.event(
            ClusterEventKind::MachineStaleRegistered,
            id,
            "registered after being decommissioned: removing its stale tasks",
        );
    }

    /// A known machine registered at `address` with `capacity`; answers
    /// whether anything changed that the reconciler must act on.
    pub fn machine_registered(&mut self, id: &str, address: &str, capacity: Resources) -> bool {
        let Some(machine) = self.state.machines.get_mut(id) else {
            return false;
        };
        let moved = machine.address.as_deref() != Some(address);
        let resized = machine.capacity != capacity;
        machine.address = Some(address.to_string());
        machine.capacity = capacity;
        if moved {
            self.event(
                ClusterEventKind::MachineRegistered,
                id,
                format!("registered at {address}"),
            );
        }
        moved || resized
    }

    /// The lowest machine number free in `zone`.
    pub fn free_number(&self, zone: &str) -> u32 {
        self.state.free_number(zone)
    }

    /// An unknown machine joined by registering.
    pub fn machine_joined(&mut self, record: MachineRecord) {
        let id = record.id.clone();
        let message = format!("joined at {}", record.address.as_deref().unwrap_or(""));
        self.state.adopt_machine(record);
        self.event(ClusterEventKind::MachineJoined, &id, message);
    }

    /// Sets the idle limit of `zone`, or of every zone (clearing the
    /// per-zone ones) when `None`.
    pub fn set_idle_limit(&mut self, limit: u32, zone: Option<&str>) {
        match zone {
            Some(zone) => {
                self.state
                    .idle_limit_per_zone
                    .insert(zone.to_string(), limit);
                self.event(
                    ClusterEventKind::IdleLimitSet,
                    zone,
                    format!("idle limit set to {limit}"),
                );
            }
            None => {
                self.state.idle_limit_default = limit;
                self.state.idle_limit_per_zone.clear();
                self.event(
                    ClusterEventKind::IdleLimitSet,
                    "",
                    format!("idle limit set to {limit} in every zone"),
                );
            }
        }
    }

    /// Sets the idle limits the config names at start (`limit` in every
    /// zone without its own in `per_zone`), with an event when they change.
    pub fn set_idle_limits_from_config(&mut self, limit: u32, per_zone: &BTreeMap<String, u32>) {
        let state = &mut self.state;
        if state.idle_limit_default != limit || state.idle_limit_per_zone != *per_zone {
            state.idle_limit_default = limit;
            state.idle_limit_per_zone = per_zone.clone();
            self.event(
                ClusterEventKind::IdleLimitSet,
                "",
                format!("idle limits from the config: {limit} per zone"),
            );
        }
    }

    /// Drops the jobs that are not persistent (at a restart).
    pub fn drop_non_persistent_jobs(&mut self) {
        let dropped: Vec<String> = self
            .state
            .jobs
            .iter()
            .filter(|(_, job)| !job.spec.persistent)
            .map(|(name, _)| name.clone())
            .collect();
        for name in dropped {
            self.state.jobs.remove(&name);
            self.state.job_removed(&name);
            self.event(
                ClusterEventKind::JobDropped,
                &name,
                "not persistent: dropped at restart",
            );
        }
    }

    /// Whether task `task` of a machine may be removed (its job is
    /// known or was removed); anything else is an orphan, kept running.
    pub fn may_remove_task(&self, task: &str) -> bool {
        self.state.may_remove_task(task)
    }

    /// The orphan tasks machine `id` ran at its last answer, sorted.
    pub fn orphans_on(&self, id: &str) -> Vec<String> {
        self.orphans
            .get(id)
            .map(|tasks| tasks.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What machine `id` runs beside the instances the cluster places
    /// (its orphans), as the specs it reports say.
    pub fn orphan_reservation(&self, id: &str) -> Resources {
        let mut sum = Resources {
            cpu: 0.0,
            mem_mb: 0.0,
        };
        let (Some(orphans), Some(report)) = (self.orphans.get(id), self.reports.get(id)) else {
            return sum;
        };
        for task in orphans.iter().filter_map(|name| report.tasks.get(name)) {
            sum.cpu += task.spec.cpu.unwrap_or(0.0);
            sum.mem_mb += task.spec.mem.unwrap_or(0.0);
        }
        sum
    }

    /// Whether machine `id` refused `task` as not fitting, and nothing
    /// has left it since.
    pub fn was_refused(&self, id: &str, task: &str) -> bool {
        self.refused.get(id).is_some_and(|r| r.tasks.contains(task))
    }

    /// The room placement may use on `machine`: its capacity less its
    /// orphans; after a refusal, no more than what its accepted instances
    /// reserve plus the free room it reports (none when it did not say).
    fn placement_capacity(&self, machine: &MachineRecord) -> Resources {
        let orphans = self.orphan_reservation(&machine.id);
        let mut room = Resources {
            cpu: (machine.capacity.cpu - orphans.cpu).max(0.0),
            mem_mb: (machine.capacity.mem_mb - orphans.mem_mb).max(0.0),
        };
        let Some(refusal) = self.refused.get(&machine.id) else {
            return room;
        };
        let report = self.reports.get(&machine.id);
        let mut accepted = match report.and_then(|r| r.status.as_ref()) {
            Some(status) => Resources {
                cpu: (status.capacity.cpu - status.reserved.cpu).max(0.0),
                mem_mb: (status.capacity.mem_mb - status.reserved.mem_mb).max(0.0),
            },
            None => Resources {
                cpu: 0.0,
                mem_mb: 0.0,
            },
        };
        for assignment in self.assignments_on(&machine.id) {
            let task = self.task_name_of(&assignment.key);
            let runs = report.is_some_and(|r| r.tasks.contains_key(&task));
            if !runs || refusal.tasks.contains(&task) {
                continue;
            }
            if let Some(job) = self.state.jobs.get(&assignment.key.job) {
                let need = job.spec.need_in(&assignment.key.zone);
                accepted.cpu += need.cpu;
                accepted.mem_mb += need.mem_mb;
            }
        }
        room.cpu = room.cpu.min(accepted.cpu);
        room.mem_mb = room.mem_mb.min(accepted.mem_mb);
        room
    }

    /// The machines as placement sees them.
    pub fn placement_machines(&self) -> Vec<PlacementMachine> {
        self.state
            .machines
            .values()
            .map(|m| PlacementMachine {
                id: m.id.clone(),
                zone: m.zone.clone(),
                capacity: self.placement_capacity(m),
                state: m.state(),
                number: m.number,
            })
            .collect()
    }
}

/// Cores or MB for a message: sums of floats drift (0.35 + 1.8 is not 2.15).
fn rounded(amount: f64, limit: f64) -> f64 {
    // Three decimals read well, but must not round onto the limit the
    // amount was refused against (2.0001 cores is not "needs 2 cores").
    let short = (amount * 1000.0).round() / 1000.0;
    if short <= limit && amount > limit {
        amount
    } else {
        short
    }
}
