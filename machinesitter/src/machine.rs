//! The machine's shared state (behind one lock, never held across `.await`)
//! and the reconciler: a loop that compares what was asked for with what
//! runs and makes idempotent moves until they match.

use crate::config::MachineConfig;
use crate::sitter::{self, TaskDir};
use crate::state::{self, Loaded, PersistedState, Runtime, TaskRecord, STATE_VERSION};
use cerebro_types::machine::{MachineStatus, Resources, SitterView, TaskUsage, TaskView, Vitals};
use cerebro_types::time::now_ms;
use cerebro_types::{TaskSpec, TaskStatus};
use cerebro_web::event_log::EventLog;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashMap};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the reconciler looks at every tasksitter when the kernel
/// cannot tell it of their exits (no pidfds, before Linux 5.3).
const POLL_TICK: Duration = Duration::from_millis(200);
/// With pidfds every exit wakes the reconciler; this only bounds how long
/// anything it missed could go unseen.
const SAFETY_TICK: Duration = Duration::from_secs(5);
/// A tasksitter that dies this soon after its start, before answering, counts as a crash loop.
const QUICK_DEATH: Duration = Duration::from_secs(5);
const MAX_EVENTS: usize = 200;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MachineEvent {
    pub at_ms: u64,
    pub task: String,
    pub message: String,
}

/// One task and what the machinesitter knows about it right now.
pub struct TaskEntry {
    pub record: TaskRecord,
    pub status: Option<TaskStatus>,
    pub last_error: Option<String>,
    spawned_at: Option<Instant>,
    quick_deaths: u32,
    next_spawn_at: Option<Instant>,
    /// The tasksitter's secret, read from its token file once: it never
    /// changes while the task exists.
    secret: Option<String>,
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
        }
    }
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

pub use cerebro_web::lock;

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

    pub fn persist(&self) -> std::io::Result<()> {
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

    pub fn capacity(&self) -> Resources {
        Resources {
            cpu: self.config.capacity_cpu,
            mem_mb: self.config.capacity_mem_mb as f64,
        }
    }

    /// `Err(message)` saying what is free when `spec` does not fit beside the other tasks.
    pub fn check_fits(&self, spec: &TaskSpec) -> Result<(), String> {
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
            return Err(format!(
                "task '{}' needs {cpu} cores and {mem} MB; this machine has {:.2} cores and {:.0} MB free \
                 (capacity {} cores, {} MB)",
                spec.name, free.cpu, free.mem_mb, capacity.cpu, capacity.mem_mb
            ));
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
                    state: entry.status.as_ref().map(|s| s.state.kind().to_string()),
                    cpu_cores: entry.status.as_ref().map_or(0.0, |s| s.cpu_cores),
                    rss_bytes: entry.status.as_ref().map_or(0, |s| s.rss_bytes),
                })
                .collect(),
        }
    }
}

/// Loads the persisted task set and re-adopts every tasksitter still alive
/// and provably ours (pid, start time, token file on its command line).
pub fn load(config: Arc<MachineConfig>) -> std::io::Result<Machine> {
    std::fs::create_dir_all(&config.state_dir)?;
    let mut machine = Machine {
        config: config.clone(),
        tasks: BTreeMap::new(),
        vitals: Vitals::default(),
        sitter_started: Arc::new(Notify::new()),
        events: EventLog::journaled(config.state_dir.join("events.jsonl"), MAX_EVENTS),
    };
    match state::load(&config.state_dir) {
        Loaded::Fresh => {}
        Loaded::Read(persisted) => {
            for (name, mut record) in persisted.tasks {
                if let Some(runtime) = record.runtime.take() {
                    let paths = TaskDir::new(&config.state_dir, &record.dir_name);
                    let token = paths.token().display().to_string();
                    if sitter::is_alive(runtime.pid, runtime.start_ticks)
                        && sitter::cmdline(runtime.pid).contains(&token)
                    {
                        machine.event(&name, format!("re-adopted tasksitter pid {}", runtime.pid));
                        record.runtime = Some(runtime);
                    } else {
                        sitter::clean_leftovers(&runtime);
                        machine.event(&name, "its tasksitter is gone; starting a new one");
                    }
                }
                machine.tasks.insert(name, TaskEntry::new(record));
            }
        }
        Loaded::Corrupt { moved_to, error } => {
            tracing::error!(%error, moved_to = %moved_to.display(), "state file unreadable; moved aside");
            for (dir_name, runtime, run) in sitter::discover(&config.state_dir) {
                let name = runtime.spec.name.clone();
                machine.event(
                    &name,
                    format!(
                        "recovered running tasksitter pid {} from /proc",
                        runtime.pid
                    ),
                );
                let record = TaskRecord {
                    spec: runtime.spec.clone(),
                    dir_name,
                    run_requested: run,
                    deleting: false,
                    runtime: Some(runtime),
                    sitter_starts: 0,
                };
                machine.tasks.insert(name, TaskEntry::new(record));
            }
            machine.event(
                "",
                format!(
                    "state file was unreadable ({error}); kept as {}",
                    moved_to.display()
                ),
            );
        }
    }
    machine.persist()?;
    Ok(machine)
}

pub struct Reconciler {
    machine: SharedMachine,
    notify: Arc<Notify>,
    children: HashMap<i32, Child>,
    /// Per live tasksitter (pid, start time), a task that wakes the
    /// reconciler when it exits.
    exit_watchers: HashMap<(i32, u64), tokio::task::JoinHandle<()>>,
    /// Whether the kernel gives out pidfds, so exits wake the reconciler.
    pidfds: bool,
}

impl Reconciler {
    pub fn new(machine: SharedMachine, notify: Arc<Notify>) -> Self {
        Self {
            machine,
            notify,
            children: HashMap::new(),
            exit_watchers: HashMap::new(),
            pidfds: cerebro_web::process::pidfds_supported(),
        }
    }

    /// Runs until `shutdown` changes; hands itself back for the exit path.
    /// Wakes on API changes, on SIGCHLD, on the exit of any tasksitter
    /// (through a pidfd, so adopted ones count too) and when something is
    /// due (a delayed restart, a stop's deadline); it does not poll.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut child_exited =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            self.reap();
            let next_due = self.converge();
            self.watch_exits();
            // The longest it sleeps with nothing due.
            let tick = if self.pidfds { SAFETY_TICK } else { POLL_TICK };
            let sleep = next_due.map_or(tick, |due| {
                due.saturating_duration_since(Instant::now()).min(tick)
            });
            let sigchld = async {
                match child_exited.as_mut() {
                    Some(stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.notify.notified() => {}
                _ = sigchld => {}
                _ = shutdown.changed() => return self,
            }
        }
    }

    /// Keeps one exit watcher per live tasksitter, and none for the gone.
    fn watch_exits(&mut self) {
        if !self.pidfds {
            return;
        }
        let live: std::collections::HashSet<(i32, u64)> = lock(&self.machine)
            .tasks
            .values()
            .filter_map(|e| e.record.runtime.as_ref().map(|r| (r.pid, r.start_ticks)))
            .collect();
        self.exit_watchers.retain(|sitter, watcher| {
            let keep = live.contains(sitter);
            if !keep {
                watcher.abort();
            }
            keep
        });
        for (pid, ticks) in live {
            self.exit_watchers.entry((pid, ticks)).or_insert_with(|| {
                let notify = self.notify.clone();
                tokio::spawn(async move {
                    if let Err(error) = cerebro_web::process::exited(pid, ticks).await {
                        tracing::warn!(pid, %error, "cannot watch the tasksitter's exit; the reconciler's safety tick will notice it");
                        return;
                    }
                    notify.notify_one();
                })
            });
        }
    }

    /// Collects the exit status of tasksitters we started, so none stays a zombie.
    fn reap(&mut self) {
        self.children
            .retain(|_, child| matches!(child.try_wait(), Ok(None)));
    }

    /// The synchronous part of a tick: notice dead tasksitters, retire
    /// replaced or deleted ones, start missing ones. All under the lock, no
    /// I/O but local syscalls. Returns when it next has something to do
    /// that no event will announce.
    fn converge(&mut self) -> Option<Instant> {
        let mut next_due: Option<Instant> = None;
        let mut due_at = |at: Instant| {
            next_due = Some(next_due.map_or(at, |due| due.min(at)));
        };
        let mut guard = lock(&self.machine);
        let machine = &mut *guard;
        let config = machine.config.clone();
        let machine_started = machine.sitter_started.clone();
        let mut changed = false;
        let mut removed = Vec::new();
        let mut events = Vec::new();
        let now = Instant::now();
        for (name, entry) in machine.tasks.iter_mut() {
            let paths = TaskDir::new(&config.state_dir, &entry.record.dir_name);
            if let Some(runtime) = &entry.record.runtime {
                if !sitter::is_alive(runtime.pid, runtime.start_ticks) {
                    sitter::clean_leftovers(runtime);
                    if runtime.stop_sent_ms.is_none() {
                        // A tasksitter that served its status was healthy; killing it is
                        // not a crash loop. One that never answered is.
                        let quick = entry.status.is_none()
                            && entry
                                .spawned_at
                                .is_some_and(|at| at.elapsed() < QUICK_DEATH);
                        entry.quick_deaths = if quick { entry.quick_deaths + 1 } else { 0 };
                        let delay = match entry.quick_deaths {
                            0 | 1 => Duration::ZERO,
                            n => Duration::from_millis(500 << (n - 2).min(6))
                                .min(Duration::from_secs(30)),
                        };
                        entry.next_spawn_at = Some(now + delay);
                        let why = last_line(&paths.sitter_log());
                        entry.last_error = why.clone().filter(|_| quick);
                        events.push((
                            name.clone(),
                            format!(
                                "tasksitter pid {} died{}; cleaned up, restarting{}",
                                runtime.pid,
                                why.map(|w| format!(" ({w})")).unwrap_or_default(),
                                if delay.is_zero() {
                                    String::new()
                                } else {
                                    format!(" in {delay:?}")
                                }
                            ),
                        ));
                    }
                    entry.record.runtime = None;
                    entry.status = None;
                    changed = true;
                }
            }
            let retire = entry.record.deleting
                || entry
                    .record
                    .runtime
                    .as_ref()
                    .is_some_and(|rt| !rt.spec.same_task(&entry.record.spec));
            if let (true, Some(runtime)) = (retire, entry.record.runtime.as_mut()) {
                match runtime.stop_sent_ms {
                    None => {
                        // SIGTERM: the tasksitter stops its workload gracefully, then exits.
                        let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGTERM);
                        runtime.stop_sent_ms = Some(now_ms());
                        changed = true;
                    }
                    Some(sent) => {
                        let grace_ms = ((runtime.spec.stop_timeout + 5.0) * 1000.0) as u64;
                        let waited_ms = now_ms().saturating_sub(sent);
                        if waited_ms > grace_ms {
                            let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGKILL);
                        } else {
                            due_at(now + Duration::from_millis(grace_ms - waited_ms + 1));
                        }
                    }
                }
                continue;
            }
            if entry.record.deleting {
                removed.push(name.clone());
                continue;
            }
            if entry.record.runtime.is_some() {
                continue;
            }
            if let Some(at) = entry.next_spawn_at.filter(|at| *at > now) {
                due_at(at);
                continue;
            }
            match sitter::spawn(
                &config.tasksitter_bin,
                &entry.record.spec,
                &paths,
                config.limits_backend,
                entry.record.run_requested,
            ) {
                Ok((child, runtime)) => {
                    events.push((
                        name.clone(),
                        format!("started tasksitter pid {}", runtime.pid),
                    ));
                    self.children.insert(runtime.pid, child);
                    entry.record.runtime = Some(runtime);
                    entry.record.sitter_starts += 1;
                    entry.spawned_at = Some(now);
                    machine_started.notify_one();
                    entry.next_spawn_at = None;
                    changed = true;
                }
                Err(error) => {
                    entry.last_error = Some(format!("cannot start the tasksitter: {error}"));
                    entry.next_spawn_at = Some(now + Duration::from_secs(1));
                    due_at(now + Duration::from_secs(1));
                }
            }
        }
        for name in removed {
            if let Some(entry) = machine.tasks.remove(&name) {
                let _ = std::fs::remove_dir_all(
                    TaskDir::new(&config.state_dir, &entry.record.dir_name).dir,
                );
                events.push((name, "removed".into()));
                changed = true;
            }
        }
        for (task, message) in events {
            machine.event(&task, message);
        }
        if changed {
            if let Err(error) = machine.persist() {
                tracing::error!(%error, "cannot persist the task set");
            }
        }
        next_due
    }

    /// `--on-exit stop`: every tasksitter stops its workload gracefully; SIGKILL after the longest grace.
    pub async fn stop_all(&mut self) {
        let runtimes: Vec<Runtime> = lock(&self.machine)
            .tasks
            .values()
            .filter_map(|e| e.record.runtime.clone())
            .collect();
        for runtime in &runtimes {
            let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGTERM);
        }
        let longest = runtimes
            .iter()
            .map(|r| r.spec.stop_timeout)
            .fold(0.0, f64::max);
        let deadline = Instant::now() + Duration::from_secs_f64(longest + 5.0);
        while Instant::now() < deadline
            && runtimes
                .iter()
                .any(|r| sitter::is_alive(r.pid, r.start_ticks))
        {
            self.reap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for runtime in &runtimes {
            if sitter::is_alive(runtime.pid, runtime.start_ticks) {
                let _ = kill(Pid::from_raw(runtime.pid), Signal::SIGKILL);
            }
            sitter::clean_leftovers(runtime);
        }
        self.reap();
        let mut guard = lock(&self.machine);
        for entry in guard.tasks.values_mut() {
            entry.record.runtime = None;
        }
        if let Err(error) = guard.persist() {
            tracing::error!(%error, "cannot persist the task set");
        }
    }
}

/// The last non-empty line of a tasksitter's own log: usually why it exited.
fn last_line(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}
