//! The machine's shared state, behind one lock that is never held across
//! `.await`, and its loading at start (re-adoption of running tasksitters).
//! The loop that acts on it is in `reconcile`.

use crate::config::MachineConfig;
use crate::sitter;
use crate::state::{self, Loaded, PersistedState, TaskRecord, STATE_VERSION};
use cerebro_host::layout::{self, DesiredState};
use cerebro_host::process::is_alive;
use cerebro_host::TaskDir;
use cerebro_types::deploy::{DeployAttempt, DeployState, Deployment};
use cerebro_types::machine::{
    MachineEvent, MachineStatus, Resources, SitterView, TaskUsage, TaskView, Vitals,
};
use cerebro_types::time::now_ms;
use cerebro_types::{TaskSpec, TaskStatus};
use cerebro_web::event_log::EventLog;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

const MAX_EVENTS: usize = 200;

/// One task and what the machinesitter knows about it right now.
pub struct TaskEntry {
    pub record: TaskRecord,
    pub status: Option<TaskStatus>,
    pub last_error: Option<String>,
    pub(crate) spawned_at: Option<Instant>,
    pub(crate) quick_deaths: u32,
    pub(crate) next_spawn_at: Option<Instant>,
    /// The tasksitter's secret, read from its token file once: it never
    /// changes while the task exists.
    secret: Option<String>,
    /// The desired state last written to the task directory, so that
    /// `persist` writes the file only when it changes.
    desired_written: Option<DesiredState>,
    /// An attempt at its deployment is running.
    pub deploying: bool,
    /// Its deploy attempts, newest first (kept in its deploy directory).
    pub deploy_log: Vec<DeployAttempt>,
}

impl TaskEntry {
    pub fn secret(&mut self, state_dir: &std::path::Path) -> Option<String> {
        if self.secret.is_none() {
            self.secret = sitter::read_secret(&TaskDir::new(state_dir, &self.record.dir_name))
                .filter(|s| !s.is_empty());
        }
        self.secret.clone()
    }

    /// Its tasksitter runs, is not being retired, and has not answered yet.
    pub fn awaits_first_status(&self) -> bool {
        self.status.is_none()
            && self
                .record
                .runtime
                .as_ref()
                .is_some_and(|r| r.stop_sent_ms.is_none())
    }

    pub fn new(record: TaskRecord) -> Self {
        Self {
            record,
            status: None,
            last_error: None,
            spawned_at: None,
            quick_deaths: 0,
            secret: None,
            next_spawn_at: None,
            desired_written: None,
            deploying: false,
            deploy_log: Vec::new(),
        }
    }

    /// The spec its tasksitter should run: the spec as PUT, or for a task
    /// with a deployment the effective spec of the release switched to;
    /// `None` while no release is. While a newer release installs (or
    /// after it failed) the old release runs on the spec it ran with, so
    /// nothing of the new spec (its version, its environment) reaches it.
    ///
    /// Either way the workload gets its allocated ports in its environment
    /// ([`cerebro_types::port_env`]), and a task without a deployment or a
    /// `cwd` runs in its own working directory ([`work_dir`]), never in the
    /// machinesitter's.
    pub fn wanted_spec(&self, state_dir: &std::path::Path) -> Option<TaskSpec> {
        let mut wanted = match &self.record.deployment {
            None => {
                let mut spec = self.record.spec.clone();
                if spec.cwd.is_none() {
                    spec.cwd = Some(work_dir(state_dir, &self.record.dir_name));
                }
                spec
            }
            Some(deployment) => {
                let deployed = self.record.deployed.as_ref()?;
                let spec = if deployment.release_id() == deployed.release {
                    &self.record.spec
                } else {
                    deployed.spec.as_ref().unwrap_or(&self.record.spec)
                };
                let dirs = crate::deploy::DeployDir::new(state_dir, &self.record.dir_name);
                crate::deploy::effective_spec(spec, &dirs, &deployed.release)
            }
        };
        // Only the ports the spec it runs declares: an older release's
        // spec may declare fewer than the one asked for.
        let ports: BTreeMap<String, u16> = self
            .record
            .ports
            .iter()
            .filter(|(name, _)| wanted.ports.contains(name))
            .map(|(name, port)| (name.clone(), *port))
            .collect();
        wanted.env.extend(cerebro_types::port_env(&ports));
        // The tasksitter gets them as environment: it allocates nothing,
        // and its check refuses a spec whose env sets what `ports` fills.
        wanted.ports.clear();
        Some(wanted)
    }

    /// Takes a new spec and deployment (a PUT that changed something).
    /// When the task ran the release it wanted, the spec it ran with is
    /// kept beside that release, for as long as a newer one is not
    /// switched to.
    pub fn replace_spec(&mut self, spec: TaskSpec, deployment: Option<Deployment>) {
        let wanted = self.record.deployment.as_ref().map(Deployment::release_id);
        if let Some(deployed) = self.record.deployed.as_mut() {
            if wanted.as_deref() == Some(deployed.release.as_str()) {
                deployed.spec = Some(self.record.spec.clone());
            }
        }
        self.record.run_requested = spec.auto_start;
        self.record.spec = spec;
        set_deployment(&mut self.record, deployment);
    }

    /// What the machinesitter wants for this task, as kept in its directory.
    fn desired(&self) -> DesiredState {
        DesiredState {
            spec: self.record.spec.clone(),
            run_requested: self.record.run_requested,
            deleting: self.record.deleting,
            ports: self.record.ports.clone(),
        }
    }

    pub fn view(&self, name: &str) -> TaskView {
        TaskView {
            name: name.to_string(),
            spec: self.record.spec.clone(),
            run_requested: self.record.run_requested,
            deleting: self.record.deleting,
            status: self.status.clone(),
            tasksitter: self.record.runtime.as_ref().map(|rt| SitterView {
                pid: rt.pid,
                address: rt.address.clone(),
                retiring: rt.stop_sent_ms.is_some(),
            }),
            sitter_starts: self.record.sitter_starts,
            last_error: self.last_error.clone(),
            deployment: self.record.deployment.clone(),
            deploy: self.record.deploy.clone().map(|mut status| {
                status.running_release = self.record.deployed.as_ref().map(|d| d.release.clone());
                status
            }),
            ports: self.record.ports.clone(),
        }
    }
}

/// The working directory of a task whose spec sets no `cwd`:
/// `<state-dir>/work/<task dir name>/`, absolute (the tasksitter wants an
/// absolute `cwd`; a relative `--state-dir` is not).
pub fn work_dir(state_dir: &std::path::Path, dir_name: &str) -> String {
    let work = TaskDir::new(state_dir, dir_name).work;
    std::path::absolute(&work)
        .unwrap_or(work)
        .display()
        .to_string()
}

/// No port of the machinesitter's range is free for one of a task's named ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free TCP port for ports '{name}' of task '{task}': every port of {first}-{last} is \
     held by this machine's tasks ({held}) or bound by another process (see --port-range)"
)]
pub struct NoFreePort {
    /// The task asking.
    pub task: String,
    /// The port name that found none.
    pub name: String,
    /// The first port of the machinesitter's `--port-range`.
    pub first: u16,
    /// Its last port (inclusive).
    pub last: u16,
    /// How many ports of the range this machine's tasks hold.
    pub held: usize,
}

/// Whether nothing listens on TCP `port` of any local address: binding the
/// wildcard addresses fails when any socket holds the port (IPv6's
/// wildcard, dual-stack, also sees IPv4 sockets; a host without IPv6 is
/// judged by the IPv4 one alone).
pub fn port_is_free(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let v6 = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(error) => error.kind() != std::io::ErrorKind::AddrInUse,
    };
    v4 && v6
}

/// A task that does not fit beside the others on this machine. Cores and MB.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "task '{task}' needs {} cores and {} MB; this machine has {:.2} cores and {:.0} MB free \
     (capacity {} cores, {} MB)",
    need.cpu, need.mem_mb, free.cpu, free.mem_mb, capacity.cpu, capacity.mem_mb
)]
pub struct DoesNotFit {
    pub task: String,
    /// What the task reserves.
    pub need: Resources,
    /// What the other tasks leave free.
    pub free: Resources,
    pub capacity: Resources,
}

pub struct Machine {
    pub config: Arc<MachineConfig>,
    pub tasks: BTreeMap<String, TaskEntry>,
    pub vitals: Vitals,
    /// Signalled when a tasksitter is started, so the poller asks it for
    /// its first status at once rather than at its next round.
    pub sitter_started: Arc<Notify>,
    /// Journaled under the state dir, so the history outlives a restart.
    pub events: EventLog<MachineEvent>,
}

pub type SharedMachine = Arc<Mutex<Machine>>;

impl Machine {
    pub fn event(&mut self, task: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(task, "{message}");
        self.events.push(MachineEvent {
            at_ms: now_ms(),
            task: task.to_string(),
            message,
        });
    }

    /// Writes every task's desired state that changed to its task
    /// directory, then the task set to `state.json`, each atomically. The
    /// task directories alone are enough to restore the task set if the
    /// state file is lost.
    pub fn persist(&mut self) -> std::io::Result<()> {
        for entry in self.tasks.values_mut() {
            let desired = entry.desired();
            if entry.desired_written.as_ref() != Some(&desired) {
                TaskDir::new(&self.config.state_dir, &entry.record.dir_name)
                    .write_desired(&desired)?;
                entry.desired_written = Some(desired);
            }
        }
        let state = PersistedState {
            version: STATE_VERSION,
            tasks: self
                .tasks
                .iter()
                .map(|(name, entry)| (name.clone(), entry.record.clone()))
                .collect(),
        };
        state::save(&self.config.state_dir, &state)
    }

    /// Resources reserved by every task except `except`.
    pub fn reserved(&self, except: Option<&str>) -> Resources {
        self.tasks
            .iter()
            .filter(|(name, entry)| Some(name.as_str()) != except && !entry.record.deleting)
            .fold(
                Resources {
                    cpu: 0.0,
                    mem_mb: 0.0,
                },
                |sum, (_, entry)| Resources {
                    cpu: sum.cpu + entry.record.spec.reserved_cpu(),
                    mem_mb: sum.mem_mb + entry.record.spec.reserved_mem_mb(),
                },
            )
    }

    /// The ports task `task` gets for its named `names`: the port it holds
    /// already for a name it keeps, else a free one of `--port-range`
    /// that no other task of this machine holds, found by binding it.
    /// The search starts at a place that depends on the machine and the
    /// task, so machinesitters sharing a host (the local provider) rarely
    /// try the same port at once. Names it no longer declares lose theirs.
    /// Errors: the range has no free port left for a name.
    pub fn allocate_ports(
        &self,
        task: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, u16>, NoFreePort> {
        let range = self.config.port_range.clone();
        let held_by_others: HashSet<u16> = self
            .tasks
            .iter()
            .filter(|(name, _)| name.as_str() != task)
            .flat_map(|(_, entry)| entry.record.ports.values().copied())
            .collect();
        let current = self.tasks.get(task).map(|e| &e.record.ports);
        let mut ports = BTreeMap::new();
        for name in names {
            if let Some(port) = current.and_then(|c| c.get(name)) {
                ports.insert(name.clone(), *port);
            }
        }
        let (first, last) = (*range.start(), *range.end());
        let size = u32::from(last) - u32::from(first) + 1;
        let mut hash: u32 = 0x811c_9dc5;
        for byte in self.config.machine_id.bytes().chain(task.bytes()) {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        let mut next = hash % size;
        for name in names {
            if ports.contains_key(name) {
                continue;
            }
            let mut found = None;
            for _ in 0..size {
                let port = (u32::from(first) + next) as u16;
                next = (next + 1) % size;
                let taken = held_by_others.contains(&port) || ports.values().any(|p| *p == port);
                if !taken && port_is_free(port) {
                    found = Some(port);
                    break;
                }
            }
            let Some(port) = found else {
                return Err(NoFreePort {
                    task: task.to_string(),
                    name: name.clone(),
                    first,
                    last,
                    held: held_by_others.iter().filter(|p| range.contains(p)).count(),
                });
            };
            ports.insert(name.clone(), port);
        }
        Ok(ports)
    }

    pub fn capacity(&self) -> Resources {
        Resources {
            cpu: self.config.capacity_cpu,
            mem_mb: self.config.capacity_mem_mb as f64,
        }
    }

    /// Whether `spec` fits beside the other tasks (always, with overcommit);
    /// the error says what is free.
    pub fn check_fits(&self, spec: &TaskSpec) -> Result<(), DoesNotFit> {
        if self.config.overcommit {
            return Ok(());
        }
        let (capacity, reserved) = (self.capacity(), self.reserved(Some(&spec.name)));
        let free = Resources {
            cpu: capacity.cpu - reserved.cpu,
            mem_mb: capacity.mem_mb - reserved.mem_mb,
        };
        let (cpu, mem) = (spec.reserved_cpu(), spec.reserved_mem_mb());
        if cpu > free.cpu + 1e-9 || mem > free.mem_mb + 1e-9 {
            return Err(DoesNotFit {
                task: spec.name.clone(),
                need: Resources { cpu, mem_mb: mem },
                free,
                capacity,
            });
        }
        Ok(())
    }

    pub fn status(&self) -> MachineStatus {
        MachineStatus {
            machine_id: self.config.machine_id.clone(),
            hostname: self.config.hostname.clone(),
            capacity: self.capacity(),
            reserved: self.reserved(None),
            overcommit: self.config.overcommit,
            vitals: self.vitals.clone(),
            tasks: self
                .tasks
                .iter()
                .map(|(name, entry)| TaskUsage {
                    name: name.clone(),
                    state: entry.status.as_ref().map(|s| s.state.kind()),
                    cpu_cores: entry.status.as_ref().map_or(0.0, |s| s.cpu_cores),
                    rss_bytes: entry.status.as_ref().map_or(0, |s| s.rss_bytes),
                })
                .collect(),
        }
    }
}

/// Loads the persisted task set and re-adopts every tasksitter still alive
/// and provably ours: the pid and kernel start time of the task's runtime
/// record, or, for a tasksitter of an older release that writes none, of
/// the state file's runtime record (the poller's ping with the task's
/// secret proves the rest). What a dead one left is cleaned up.
pub fn load(config: Arc<MachineConfig>) -> std::io::Result<Machine> {
    std::fs::create_dir_all(&config.state_dir)?;
    let mut machine = Machine {
        config: config.clone(),
        tasks: BTreeMap::new(),
        vitals: Vitals::default(),
        sitter_started: Arc::new(Notify::new()),
        events: EventLog::journaled(config.state_dir.join("events.jsonl"), MAX_EVENTS),
    };
    let mut found = sitter::discover(&config.state_dir);
    match state::load(&config.state_dir) {
        Loaded::Fresh => {}
        Loaded::Read(persisted) => {
            for (name, mut record) in persisted.tasks {
                let paths = TaskDir::new(&config.state_dir, &record.dir_name);
                let known = record.runtime.take();
                let found = found.remove(&record.dir_name);
                record.runtime = readopt(&mut machine, &name, &paths, known, found);
                if let Some(status) = record.deploy.as_mut() {
                    // An attempt the last machinesitter did not finish starts again.
                    if matches!(
                        status.state,
                        DeployState::Installing | DeployState::Checking
                    ) {
                        status.state = DeployState::Pending;
                        status.step = None;
                    }
                }
                let mut entry = TaskEntry::new(record);
                entry.deploy_log =
                    crate::deploy::DeployDir::new(&config.state_dir, &entry.record.dir_name)
                        .load_log();
                let mut interrupted = Vec::new();
                for attempt in &mut entry.deploy_log {
                    if attempt.outcome == cerebro_types::deploy::AttemptOutcome::Running {
                        interrupted_attempt(attempt, entry.record.deployment.as_ref());
                        interrupted.push(format!(
                            "deploy of release {} (attempt {}) stopped: {INTERRUPTED}",
                            attempt.release, attempt.attempt
                        ));
                    }
                }
                if !interrupted.is_empty() {
                    let _ =
                        crate::deploy::DeployDir::new(&config.state_dir, &entry.record.dir_name)
                            .save_log(&entry.deploy_log);
                }
                for message in interrupted {
                    machine.event(&name, message);
                }
                machine.tasks.insert(name, entry);
            }
        }
        Loaded::Corrupt { moved_to, error } => {
            tracing::error!(%error, moved_to = %moved_to.display(), "state file unreadable; moved aside");
            machine.event(
                "",
                format!(
                    "state file was unreadable ({error}); kept as {}",
                    moved_to.display()
                ),
            );
        }
    }
    recover_task_dirs(&mut machine, found);
    allocate_missing_ports(&mut machine);
    clean_up_deploys(&mut machine, &config.state_dir);
    machine.persist()?;
    Ok(machine)
}

/// Gives every loaded task the ports its spec declares and it does not
/// hold yet (a task recovered from a directory written before it held
/// any); one the range has no room for says so in its `last_error`.
fn allocate_missing_ports(machine: &mut Machine) {
    let wanting: Vec<(String, Vec<String>)> = machine
        .tasks
        .iter()
        .filter(|(_, e)| {
            !e.record.deleting
                && e.record
                    .spec
                    .ports
                    .iter()
                    .any(|p| !e.record.ports.contains_key(p))
        })
        .map(|(name, e)| (name.clone(), e.record.spec.ports.clone()))
        .collect();
    for (name, names) in wanting {
        match machine.allocate_ports(&name, &names) {
            Ok(ports) => {
                if let Some(entry) = machine.tasks.get_mut(&name) {
                    entry.record.ports = ports;
                }
            }
            Err(error) => {
                machine.event(&name, error.to_string());
                if let Some(entry) = machine.tasks.get_mut(&name) {
                    entry.last_error = Some(error.to_string());
                }
            }
        }
    }
}

/// Why an attempt a machinesitter did not finish failed.
const INTERRUPTED: &str = "interrupted: the machinesitter stopped during this attempt";

/// Marks an attempt the last machinesitter did not finish as failed, its
/// step in progress (the one after the last recorded) saying why.
fn interrupted_attempt(
    attempt: &mut cerebro_types::deploy::DeployAttempt,
    deployment: Option<&cerebro_types::deploy::Deployment>,
) {
    use cerebro_types::deploy::{AttemptOutcome, StepOutcome, StepRecord};
    attempt.outcome = AttemptOutcome::Failed;
    let now = cerebro_types::time::now_ms();
    attempt.finished_ms.get_or_insert(now);
    let next = attempt.steps.last().map_or(0, |s| s.index + 1);
    let step = deployment
        .filter(|d| d.release_id() == attempt.release)
        .and_then(|d| d.recipe.steps.get(next));
    let label = step.map_or_else(|| format!("step {}", next + 1), |s| s.label(next));
    if step.is_some() || attempt.steps.is_empty() {
        attempt.steps.push(StepRecord {
            index: next,
            label,
            outcome: StepOutcome::Failed,
            started_ms: now,
            duration_ms: 0,
            exit_code: None,
            detail: INTERRUPTED.into(),
            output: String::new(),
        });
    }
}

/// What a machinesitter killed mid-deploy left: the process group of a
/// step it was running (killed, so the step is not run twice at once in
/// the same release) and half-fetched artifacts.
fn clean_up_deploys(machine: &mut Machine, state_dir: &std::path::Path) {
    let root = state_dir.join("deploy");
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let group_file = entry.path().join("step-group");
        if !group_file.exists() {
            continue;
        }
        if let Some(pgid) = crate::deploy::steps::kill_recorded_group(&group_file) {
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            let task = machine
                .tasks
                .iter()
                .find(|(_, e)| e.record.dir_name == dir_name)
                .map(|(name, _)| name.clone())
                .unwrap_or_default();
            machine.event(
                &task,
                format!(
                    "killed process group {pgid}: a step an earlier machinesitter left running"
                ),
            );
        }
    }
    let removed = crate::deploy::fetch::remove_partials(&root.join("artifacts"));
    if !removed.is_empty() {
        tracing::info!(?removed, "removed half-fetched artifacts");
    }
}

/// The tasksitter to keep for a task the state file knows: the one the
/// state file names if it still runs (brought up to date from its runtime
/// record), else the one the task's runtime record names if that runs (it
/// was started after the state file was last written). Whatever a dead one
/// left is cleaned up, and an event says what happened.
fn readopt(
    machine: &mut Machine,
    name: &str,
    paths: &TaskDir,
    known: Option<state::Runtime>,
    found: Option<sitter::Found>,
) -> Option<state::Runtime> {
    let (mut running, mut gone) = (None, Vec::new());
    if let Some(mut runtime) = known {
        sitter::refresh_from_record(paths, &mut runtime);
        if is_alive(runtime.pid, runtime.start_ticks) {
            running = Some(runtime);
        } else {
            gone.push(runtime);
        }
    }
    match found {
        Some(sitter::Found::Running(runtime)) if running.is_none() => running = Some(runtime),
        Some(sitter::Found::Gone(runtime)) if !gone.iter().any(|g| g.pid == runtime.pid) => {
            gone.push(runtime)
        }
        _ => {}
    }
    for runtime in &gone {
        sitter::clean_after(paths, runtime);
    }
    match &running {
        Some(runtime) => machine.event(name, format!("re-adopted tasksitter pid {}", runtime.pid)),
        None if !gone.is_empty() => {
            machine.event(name, "its tasksitter is gone; starting a new one")
        }
        None => {}
    }
    running
}

/// Restores the tasks whose directories the task set does not know (the
/// state file was lost, emptied, corrupt, or older than they are) from
/// what each directory keeps: the desired state (spec, run state,
/// deletion) and, if it still runs, the tasksitter serving it, which is
/// re-adopted. A task whose tasksitter is gone gets a new one, whose
/// workload runs only if it was meant to. A directory nothing can be
/// recovered from is left as it is and reported (event and log line).
fn recover_task_dirs(machine: &mut Machine, mut running: HashMap<String, sitter::Found>) {
    let state_dir = machine.config.state_dir.clone();
    let known: HashSet<String> = machine
        .tasks
        .values()
        .map(|e| e.record.dir_name.clone())
        .collect();
    for dir_name in layout::task_dir_names(&state_dir) {
        if known.contains(&dir_name) {
            continue;
        }
        let paths = TaskDir::new(&state_dir, &dir_name);
        let runtime = match running.remove(&dir_name) {
            Some(sitter::Found::Running(runtime)) => Some(runtime),
            Some(sitter::Found::Gone(runtime)) => {
                // Nothing supervises what it left, whatever becomes of the task.
                sitter::clean_after(&paths, &runtime);
                machine.event(
                    &dir_name,
                    format!(
                        "tasksitter pid {} of the task dir is gone; cleaned what it left",
                        runtime.pid
                    ),
                );
                None
            }
            None => None,
        };
        let desired = paths
            .read_desired()
            .map_err(|e| e.to_string())
            .and_then(|desired| {
                let name = &desired.spec.name;
                if layout::dir_name(name) != dir_name {
                    Err(format!("it holds task '{name}', which belongs elsewhere"))
                } else if machine.tasks.contains_key(name) {
                    Err(format!("task '{name}' is already known"))
                } else {
                    desired
                        .spec
                        .validate()
                        .map(|()| desired)
                        .map_err(|e| e.to_string())
                }
            });
        let desired = match desired {
            Ok(desired) => desired,
            Err(why) => {
                tracing::warn!(task_dir = %paths.dir.display(), "cannot recover: {why}");
                machine.event(
                    &dir_name,
                    format!(
                        "cannot recover the task in {} ({why}); left as it is{}",
                        paths.dir.display(),
                        runtime
                            .map(|rt| format!(", its tasksitter pid {} still runs", rt.pid))
                            .unwrap_or_default()
                    ),
                );
                continue;
            }
        };
        let name = desired.spec.name.clone();
        let message = match &runtime {
            Some(rt) => format!(
                "recovered from its task dir; re-adopted tasksitter pid {}",
                rt.pid
            ),
            None => format!(
                "recovered from its task dir; its tasksitter is gone, starting a new one{}",
                if desired.run_requested {
                    ""
                } else {
                    " (the workload stays stopped)"
                }
            ),
        };
        machine.event(&name, message);
        // The deployment of the release its `current` link points at, from
        // that release's marker: the task runs on it again, its checks
        // re-run. A newer release asked for but not installed is for the
        // cluster to ask again.
        let deploy_dir = crate::deploy::DeployDir::new(&state_dir, &dir_name);
        let (deployment, deployed) = match deploy_dir
            .current_release()
            .and_then(|release| deploy_dir.read_marker(&release).map(|m| (release, m)))
        {
            Some((release, marker)) => (
                Some(marker.deployment),
                Some(state::Deployed {
                    release,
                    ready: false,
                    spec: None,
                }),
            ),
            None => (None, None),
        };
        let record = TaskRecord {
            spec: desired.spec,
            dir_name,
            run_requested: desired.run_requested,
            deleting: desired.deleting,
            runtime,
            sitter_starts: 0,
            deployment,
            deployed,
            deploy: None,
            ports: desired.ports,
        };
        let mut entry = TaskEntry::new(record);
        entry.deploy_log = deploy_dir.load_log();
        machine.tasks.insert(name, entry);
    }
}

/// Records the deployment a PUT asked for: a new release starts pending
/// (ready at once when it is the one already switched to and ready); no
/// deployment forgets the deploy state (the task runs on its plain spec).
pub(crate) fn set_deployment(record: &mut TaskRecord, deployment: Option<Deployment>) {
    match &deployment {
        None => {
            record.deployed = None;
            record.deploy = None;
        }
        Some(new) => {
            let release = new.release_id();
            if record.deploy.as_ref().is_none_or(|s| s.release != release) {
                record.deploy = Some(crate::deploy::pending_status(new, record.deployed.as_ref()));
            }
        }
    }
    record.deployment = deployment;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::deploy::{AttemptOutcome, DeployAttempt, StepOutcome};

    #[test]
    fn an_interrupted_deploy_attempt_says_why_at_its_step() {
        let deployment = crate::deploy::test_deployment(
            "[[steps]]\nkind = \"run\"\ncommand = \"true\"\n[[steps]]\nkind = \"run\"\nname = \"slow\"\ncommand = \"sleep 9\"\n",
        );
        let mut attempt = DeployAttempt {
            release: deployment.release_id(),
            version: None,
            attempt: 1,
            outcome: AttemptOutcome::Running,
            started_ms: 1,
            finished_ms: None,
            steps: Vec::new(),
        };
        attempt.steps.push(cerebro_types::deploy::StepRecord {
            index: 0,
            label: "step 1 (run)".into(),
            outcome: StepOutcome::Succeeded,
            started_ms: 1,
            duration_ms: 1,
            exit_code: Some(0),
            detail: "exit 0".into(),
            output: String::new(),
        });
        interrupted_attempt(&mut attempt, Some(&deployment));
        assert_eq!(attempt.outcome, AttemptOutcome::Failed);
        assert!(attempt.finished_ms.is_some());
        let last = attempt.steps.last().unwrap();
        assert_eq!(last.label, "step 2 (run \"slow\")");
        assert_eq!(last.outcome, StepOutcome::Failed);
        assert_eq!(last.detail, INTERRUPTED);
    }
}
