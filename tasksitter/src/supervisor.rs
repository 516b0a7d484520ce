//! The supervisor: one task around one workload. A single `select!` loop owns
//! the state and reacts to the workload's exit (SIGCHLD), the sample tick,
//! the next deadline (time limit, stop grace, backoff), API requests and
//! signals to the tasksitter. Nothing else touches the workload.

mod guard;
mod restart;
mod spawn;
mod stop;
mod usage;

pub use guard::guard_main;
pub use restart::{Decision, RestartTracker};

use crate::cli::SitterConfig;
use crate::logs::{RotatingFile, SharedLog};
use cerebro_host::cgroup::{Cgroup, Hierarchies};
use cerebro_host::layout::RuntimeRecord;
use cerebro_host::logs::LogLocation;
use cerebro_host::BackendChoice;
use cerebro_types::task_api::ControlResult;
use cerebro_types::time::now_ms;
use cerebro_types::{
    normalize_signal_name, CpuAction, EventKind, ExitStatus, Limits, LimitsBackendKind, LogStream,
    StopReason, TaskEvent, TaskState, TaskStatus, Violation, ViolationCounts, ViolationKind,
};
use cerebro_web::daemon::Shutdown;
use guard::{spawn_guard, Guard};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use usage::Sample;

const MAX_EVENTS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cgroup backend requested but unusable: {0}")]
    CgroupUnavailable(String),
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot start the cgroup guard: {0}")]
    Guard(std::io::Error),
    #[error("cannot write the runtime file {path}: {source}")]
    RuntimeFile {
        path: String,
        source: std::io::Error,
    },
}

/// What the API asks of the supervisor.
#[derive(Debug, Clone)]
pub enum Request {
    Start,
    Stop,
    Restart,
    /// Send this signal (a `SIGNAL_NAMES` entry) to the workload's process group.
    Signal(&'static str),
}

/// A request the task's state refuses (the API answers 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the task is stopping; try again")]
    Stopping,
    #[error("the task is not running")]
    NotRunning,
    #[error("unknown signal {0}")]
    UnknownSignal(&'static str),
    #[error("{0}")]
    Signal(nix::errno::Errno),
}

/// Where the supervisor sends its answer to one request: what it did (the
/// reply's `result` on the wire) or why the task's state refuses it.
pub type ReplyTo = oneshot::Sender<Result<ControlResult, RequestError>>;

/// The status the HTTP side reads; written only by the supervisor.
pub type SharedStatus = Arc<Mutex<TaskStatus>>;

/// One running instance of the workload.
struct Run {
    pid: i32,
    started: Instant,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

enum Backend {
    Cgroup {
        group: Box<dyn Cgroup>,
        guard: Guard,
    },
    Poll,
}

pub struct Supervisor {
    config: Arc<SitterConfig>,
    limits: Limits,
    backend: Backend,
    status: SharedStatus,
    stdout_log: Option<SharedLog>,
    stderr_log: Option<SharedLog>,
    state: TaskState,
    run: Option<Run>,
    starts: u64,
    restarts: u64,
    restart_policy: RestartTracker,
    violations: ViolationCounts,
    last_exit: Option<ExitStatus>,
    /// The main process exited during a stop while the rest of its tree is still shutting down.
    main_exit: Option<ExitStatus>,
    samples: VecDeque<Sample>,
    oom_kills_seen: u64,
    /// Set by SIGTERM/SIGINT: stop, then exit.
    shutting_down: bool,
    my_pid: i32,
    /// `--runtime-file` and the record last written to it.
    runtime_file: Option<(PathBuf, RuntimeRecord)>,
}

fn signal_named(name: &str) -> Option<Signal> {
    Signal::from_str(&format!("SIG{}", normalize_signal_name(name)?)).ok()
}

impl Supervisor {
    pub fn new(config: Arc<SitterConfig>) -> Result<Self, SupervisorError> {
        let spec = &config.spec;
        let my_pid = std::process::id() as i32;
        let backend = Self::choose_backend(&config, my_pid)?;
        let backend_kind = match &backend {
            Backend::Cgroup { group, .. } => group.kind(),
            Backend::Poll => LimitsBackendKind::Poll,
        };
        let cpu_action = spec.cpu_action.unwrap_or(match backend_kind {
            LimitsBackendKind::Poll => CpuAction::Restart,
            _ => CpuAction::Throttle,
        });
        let limits = Limits {
            cpu_cores: spec.cpu,
            mem_bytes: spec.mem.map(|mb| (mb * 1024.0 * 1024.0) as u64),
            time_limit_secs: spec.time_limit,
            cpu_action,
        };
        if let Backend::Cgroup { group, .. } = &backend {
            let applied = limits
                .mem_bytes
                .map(|bytes| group.set_memory_limit(bytes))
                .transpose()
                .and_then(|_| match (limits.cpu_cores, cpu_action) {
                    (Some(cores), CpuAction::Throttle) => group.set_cpu_quota(cores).map(Some),
                    _ => Ok(None),
                });
            if let Err(error) = applied {
                return Err(SupervisorError::CgroupUnavailable(error.to_string()));
            }
        }
        let open_log = |dir: &Option<std::path::PathBuf>,
                        stream|
         -> Result<Option<SharedLog>, SupervisorError> {
            let Some(dir) = dir else { return Ok(None) };
            let location = LogLocation::new(dir, &spec.name, stream, spec.log_rotation.backups);
            RotatingFile::open(
                location.path.clone(),
                spec.log_rotation.max_bytes,
                spec.log_rotation.backups,
            )
            .map(|file| Some(Arc::new(Mutex::new(file))))
            .map_err(|source| SupervisorError::Log {
                path: location.path.display().to_string(),
                source,
            })
        };
        let stdout_log = open_log(&config.stdout_dir, LogStream::Stdout)?;
        let stderr_log = open_log(&config.stderr_dir, LogStream::Stderr)?;
        let status = Arc::new(Mutex::new(TaskStatus {
            cgroup_paths: match &backend {
                Backend::Cgroup { group, .. } => group
                    .paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                Backend::Poll => Vec::new(),
            },
            ..TaskStatus::not_started(
                &spec.name,
                &spec.command,
                limits.clone(),
                backend_kind,
                my_pid as u32,
            )
        }));
        Ok(Self {
            config,
            limits,
            backend,
            status,
            stdout_log,
            stderr_log,
            state: TaskState::Stopped,
            run: None,
            starts: 0,
            restarts: 0,
            restart_policy: RestartTracker::default(),
            violations: ViolationCounts::default(),
            last_exit: None,
            main_exit: None,
            samples: VecDeque::new(),
            oom_kills_seen: 0,
            shutting_down: false,
            my_pid,
            runtime_file: None,
        })
    }

    /// Writes `--runtime-file` (if given) for the first time: our pid and
    /// start time, `address`, our cgroups. From now on the record is
    /// rewritten whenever the workload's pid changes.
    pub fn keep_runtime_record(
        &mut self,
        address: Option<std::net::SocketAddr>,
    ) -> Result<(), SupervisorError> {
        let Some(path) = self.config.runtime_file.clone() else {
            return Ok(());
        };
        let failed = |source| SupervisorError::RuntimeFile {
            path: path.display().to_string(),
            source,
        };
        let start_ticks = cerebro_host::process::start_ticks(self.my_pid)
            .ok_or_else(|| failed(std::io::Error::other("cannot read /proc/self/stat")))?;
        let record = RuntimeRecord {
            pid: self.my_pid,
            start_ticks,
            address: address.map(|a| a.to_string()),
            workload_pid: None,
            cgroup_paths: cerebro_host::lock(&self.status).cgroup_paths.clone(),
        };
        record.write(&path).map_err(failed)?;
        self.runtime_file = Some((path, record));
        Ok(())
    }

    /// Rewrites the runtime record when the workload's pid changed (only
    /// then: one atomic write per start). The last pid is kept after the
    /// workload exits: its process group may hold leftovers.
    fn record_runtime(&mut self) {
        let Some((path, written)) = &mut self.runtime_file else {
            return;
        };
        let workload_pid = self.state.pid().or(written.workload_pid);
        if workload_pid == written.workload_pid {
            return;
        }
        let record = RuntimeRecord {
            workload_pid,
            ..written.clone()
        };
        match record.write(path) {
            Ok(()) => *written = record,
            // Tried again at the next change; a supervisor still learns the pid from the status.
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot write the runtime file")
            }
        }
    }

    fn choose_backend(config: &SitterConfig, my_pid: i32) -> Result<Backend, SupervisorError> {
        if config.backend == BackendChoice::Poll {
            return Ok(Backend::Poll);
        }
        let relative = config.cgroup_parent.join(format!(
            "{}.{my_pid}",
            cerebro_host::logs::file_stem(&config.spec.name)
        ));
        let created = Hierarchies::discover().create(&relative);
        match (created, config.backend) {
            (Ok(group), _) => {
                let guard = spawn_guard(&group.paths()).map_err(SupervisorError::Guard)?;
                Ok(Backend::Cgroup { group, guard })
            }
            (Err(error), BackendChoice::Cgroup) => {
                Err(SupervisorError::CgroupUnavailable(error.to_string()))
            }
            (Err(error), _) => {
                tracing::warn!(%error, "cgroups unavailable, enforcing limits by polling /proc");
                Ok(Backend::Poll)
            }
        }
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    pub fn log_locations(&self) -> Vec<LogLocation> {
        let spec = &self.config.spec;
        [
            (&self.config.stdout_dir, LogStream::Stdout),
            (&self.config.stderr_dir, LogStream::Stderr),
        ]
        .into_iter()
        .filter_map(|(dir, stream)| {
            dir.as_ref()
                .map(|dir| LogLocation::new(dir, &spec.name, stream, spec.log_rotation.backups))
        })
        .collect()
    }

    /// Runs until the workload has ended for good (or the tasksitter was told
    /// to stop); returns the exit status the tasksitter should exit with.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<(Request, ReplyTo)>,
        mut shutdown: Shutdown,
    ) -> Result<i32, SupervisorError> {
        // Orphans of the workload are re-parented to us, so the tree stays whole and they get reaped.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut sigchld = signal(SignalKind::child()).map_err(SupervisorError::Signal)?;
        let mut sighup = signal(SignalKind::hangup()).map_err(SupervisorError::Signal)?;
        let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(SupervisorError::Signal)?;
        let mut sigusr2 = signal(SignalKind::user_defined2()).map_err(SupervisorError::Signal)?;
        let mut ticker = tokio::time::interval(self.sample_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        if self.config.spec.auto_start {
            self.start();
        }
        self.publish();
        self.record_runtime();
        loop {
            if let Some(code) = self.finished() {
                self.shutdown();
                return Ok(code);
            }
            let deadline = self.next_deadline();
            tokio::select! {
                _ = sigchld.recv() => self.reap(),
                _ = ticker.tick() => self.sample_and_enforce(),
                _ = sleep_until_opt(deadline) => self.on_deadline(),
                Some((request, reply)) = requests.recv() => {
                    let _ = reply.send(self.on_request(request));
                }
                _ = shutdown.requested() => self.on_shutdown_request(),
                _ = sighup.recv() => self.forward("HUP"),
                _ = sigusr1.recv() => self.forward("USR1"),
                _ = sigusr2.recv() => self.forward("USR2"),
            }
            self.publish();
            self.record_runtime();
        }
    }

    fn finished(&self) -> Option<i32> {
        let ended = matches!(
            self.state,
            TaskState::Stopped | TaskState::Exited { .. } | TaskState::Fatal { .. }
        );
        let code = self.last_exit.map_or(0, ExitStatus::shell_code);
        if self.shutting_down && ended {
            return Some(code);
        }
        let for_good = matches!(
            self.state,
            TaskState::Exited { .. } | TaskState::Fatal { .. }
        );
        (for_good && !self.config.linger).then_some(code)
    }

    fn event(&mut self, kind: EventKind) {
        tracing::info!(task = %self.config.spec.name, event = ?kind);
        let mut status = cerebro_host::lock(&self.status);
        if status.events.len() >= MAX_EVENTS {
            status.events.remove(0);
        }
        status.events.push(TaskEvent {
            at_ms: now_ms(),
            kind,
        });
    }

    fn set_state(&mut self, next: TaskState) {
        if let Err(error) = self.state.transition(next) {
            // The table says this cannot happen; refusing keeps the state coherent.
            tracing::error!(%error, "refused state transition");
        }
    }

    fn publish(&self) {
        let mut status = cerebro_host::lock(&self.status);
        status.state = self.state.clone();
        status.pid = self.state.pid();
        status.started_at_ms = self.state.started_at_ms();
        status.starts = self.starts;
        status.restarts = self.restarts;
        status.violations = self.violations.clone();
        status.last_exit = self.last_exit;
        match self.samples.back() {
            Some(latest) if self.run.is_some() => {
                status.rss_bytes = latest.rss_bytes;
                status.processes = latest.processes;
                status.cpu_cores = self.cpu_cores_over(Duration::from_secs(1));
            }
            _ => {
                status.rss_bytes = 0;
                status.processes = 0;
                status.cpu_cores = 0.0;
            }
        }
    }

    // ---- starting -------------------------------------------------------

    fn start(&mut self) {
        self.starts += 1;
        let start_number = self.starts;
        let marker = format!(
            "--- cerebro tasksitter: start #{start_number} at {} ---",
            cerebro_types::time::format_rfc3339_ms(now_ms())
        );
        for log in [&self.stdout_log, &self.stderr_log].into_iter().flatten() {
            if let Err(error) = cerebro_host::lock(log).annotate(&marker) {
                tracing::warn!(%error, "cannot write the start marker");
            }
        }
        match self.spawn() {
            Ok((child, pumps)) => {
                let pid = child.id() as i32;
                let started_at_ms = now_ms();
                self.run = Some(Run {
                    pid,
                    started: Instant::now(),
                    pumps,
                });
                self.samples.clear();
                self.set_state(TaskState::Running {
                    pid: pid as u32,
                    started_at_ms,
                });
                self.event(EventKind::Started {
                    pid: pid as u32,
                    start_number,
                });
            }
            Err(error) => {
                // Spawn failures (cgroup join, setuid, exec) are configuration problems; retrying will not fix them.
                self.event(EventKind::SpawnFailed {
                    error: error.to_string(),
                });
                let status = ExitStatus::Code(127);
                self.last_exit = Some(status);
                let restarts = self.restart_policy.consecutive();
                self.set_state(TaskState::Fatal { status, restarts });
            }
        }
    }

    // ---- observing --------------------------------------------------------

    /// The only place that waits for children: the workload, orphans
    /// re-parented to us, and the guard.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitStatus::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => {
                    self.finish_draining_run();
                    return;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    tracing::warn!(%error, "waitpid failed");
                    return;
                }
            };
            if self.run.as_ref().is_some_and(|run| run.pid == pid.as_raw()) {
                self.on_main_exit(status);
            } else if self.guard_pid() == Some(pid.as_raw()) {
                tracing::error!(?status, "the cgroup guard exited; leftovers will not be cleaned if the tasksitter is killed");
            }
        }
    }

    fn guard_pid(&self) -> Option<i32> {
        match &self.backend {
            Backend::Cgroup { guard, .. } => Some(guard.child.id() as i32),
            Backend::Poll => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let from_ms =
            |at_ms: u64| Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()));
        match &self.state {
            TaskState::Running { .. } => {
                let run = self.run.as_ref()?;
                Some(run.started + Duration::from_secs_f64(self.limits.time_limit_secs?))
            }
            TaskState::Stopping { kill_at_ms, .. } => Some(from_ms(*kill_at_ms)),
            TaskState::Backoff { restart_at_ms, .. } => Some(from_ms(*restart_at_ms)),
            _ => None,
        }
    }

    fn on_deadline(&mut self) {
        match self.state.clone() {
            TaskState::Running { .. } => {
                let (Some(run), Some(limit)) = (&self.run, self.limits.time_limit_secs) else {
                    return;
                };
                let lived = run.started.elapsed().as_secs_f64();
                if lived >= limit {
                    self.begin_stop(StopReason::Violation(Violation {
                        kind: ViolationKind::Time,
                        measured: lived,
                        limit,
                        by_kernel: false,
                    }));
                }
            }
            TaskState::Stopping {
                pid, kill_at_ms, ..
            } if now_ms() >= kill_at_ms => {
                self.kill_tree(Signal::SIGKILL);
                self.event(EventKind::Killed {
                    pid,
                    reason: "stop timeout expired".into(),
                });
                // Checked again shortly in case the tree ignores even SIGKILL for a moment (uninterruptible sleep).
                if let TaskState::Stopping { kill_at_ms, .. } = &mut self.state {
                    *kill_at_ms = now_ms() + 1000;
                }
            }
            TaskState::Backoff {
                restart_at_ms,
                attempt,
            } if now_ms() >= restart_at_ms => {
                self.event(EventKind::Restarting { attempt });
                self.restarts += 1;
                self.start();
            }
            _ => {}
        }
    }

    // ---- requests -------------------------------------------------------

    fn on_request(&mut self, request: Request) -> Result<ControlResult, RequestError> {
        use cerebro_types::StateKind;
        match (request, self.state.kind()) {
            (Request::Start, StateKind::Running) => Ok(ControlResult::AlreadyRunning),
            (Request::Start, StateKind::Stopping) => Err(RequestError::Stopping),
            (Request::Start, _) => {
                if matches!(self.state, TaskState::Backoff { .. }) {
                    self.restarts += 1;
                }
                self.restart_policy.reset();
                self.start();
                Ok(ControlResult::Started)
            }
            (Request::Stop, StateKind::Running) => {
                self.begin_stop(StopReason::Requested);
                Ok(ControlResult::Stopping)
            }
            (Request::Stop, StateKind::Backoff) => {
                self.set_state(TaskState::Stopped);
                Ok(ControlResult::Stopped)
            }
            (Request::Stop, _) => Ok(ControlResult::NotRunning),
            (Request::Restart, StateKind::Running) => {
                self.begin_stop(StopReason::Restart);
                Ok(ControlResult::Restarting)
            }
            (Request::Restart, StateKind::Stopping) => Err(RequestError::Stopping),
            (Request::Restart, _) => {
                self.restart_policy.reset();
                self.start();
                Ok(ControlResult::Started)
            }
            (Request::Signal(name), _) => {
                let Some(run) = &self.run else {
                    return Err(RequestError::NotRunning);
                };
                let signal = signal_named(name).ok_or(RequestError::UnknownSignal(name))?;
                nix::sys::signal::killpg(Pid::from_raw(run.pid), signal)
                    .map_err(RequestError::Signal)?;
                self.event(EventKind::Signalled {
                    signal: name.into(),
                });
                Ok(ControlResult::Signalled(name.to_string()))
            }
        }
    }

    fn forward(&mut self, name: &'static str) {
        let _ = self.on_request(Request::Signal(name));
    }

    /// The first request (SIGTERM or SIGINT to the tasksitter) stops the
    /// workload gracefully; a second one kills it at once.
    fn on_shutdown_request(&mut self) {
        if self.shutting_down {
            tracing::warn!("second shutdown request: killing the workload now");
            self.kill_tree(Signal::SIGKILL);
            return;
        }
        tracing::info!("stopping the workload, then exiting");
        self.shutting_down = true;
        match self.state.kind() {
            cerebro_types::StateKind::Running => self.begin_stop(StopReason::Requested),
            cerebro_types::StateKind::Backoff => self.set_state(TaskState::Stopped),
            _ => {}
        }
    }

    /// Leaves nothing behind: no process of the tree, no cgroup, no guard.
    fn shutdown(&mut self) {
        if !self.tree_pids().is_empty() {
            self.kill_tree(Signal::SIGKILL);
        }
        if let Backend::Cgroup { group, guard } = &mut self.backend {
            if let Err(error) = group.destroy() {
                tracing::warn!(%error, "cannot remove the cgroup");
            }
            drop(guard.stdin.take());
            let _ = guard.child.wait();
        }
        self.publish();
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
