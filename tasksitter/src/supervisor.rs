//! The supervisor: one task around one workload. A single `select!` loop owns
//! the state and reacts to the workload's exit (SIGCHLD), the sample tick,
//! the next deadline (time limit, stop grace, backoff), API commands and
//! signals to the tasksitter. Nothing else touches the workload.

use crate::cgroup::{Cgroup, Hierarchies};
use crate::cli::{BackendChoice, RunAs, SitterConfig};
use crate::logs::{join_pumps, spawn_pump, LogLocation, RotatingFile, SharedLog};
use crate::proctree;
use cerebro_types::time::now_ms;
use cerebro_types::{
    normalize_signal_name, CpuAction, EventKind, ExitStatus, Limits, LimitsBackendKind, LogStream,
    StopReason, TaskEvent, TaskState, TaskStatus, Violation, ViolationCounts, ViolationKind,
};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command as OsCommand, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

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
}

/// What the API asks of the supervisor.
#[derive(Debug, Clone)]
pub enum Command {
    Start,
    Stop,
    Restart,
    Signal(&'static str),
}

pub type CommandReply = oneshot::Sender<Result<String, String>>;

/// The status the HTTP side reads; written only by the supervisor.
pub type SharedStatus = Arc<Mutex<TaskStatus>>;

/// One running instance of the workload.
struct Run {
    pid: i32,
    started: Instant,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

/// Keeps the guard's stdin open; when the tasksitter dies, for any reason,
/// the guard reads EOF and removes whatever is left in the cgroup.
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

enum Backend {
    Cgroup {
        group: Box<dyn Cgroup>,
        guard: Guard,
    },
    Poll,
}

/// Usage of the whole tree at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    rss_bytes: u64,
    processes: u32,
    oom_kills: u64,
    peak_bytes: Option<u64>,
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
    /// Restarts since the last healthy run; bounded by max_restarts.
    consecutive: u32,
    violations: ViolationCounts,
    last_exit: Option<ExitStatus>,
    /// The main process exited during a stop while the rest of its tree is still shutting down.
    main_exit: Option<ExitStatus>,
    samples: VecDeque<Sample>,
    oom_kills_seen: u64,
    /// Set by SIGTERM/SIGINT: stop, then exit.
    shutting_down: bool,
    my_pid: i32,
}

fn signal_named(name: &str) -> Option<Signal> {
    Signal::from_str(&format!("SIG{}", normalize_signal_name(name)?)).ok()
}

impl Supervisor {
    /// Sampling only enforces when this process polls a limit; when the
    /// kernel enforces them all (cgroup memory limit, CPU quota) it only
    /// feeds the status (every 2 s, as often as the machinesitter asks for
    /// it), 20 times less often than when it enforces, so an idle task
    /// costs next to nothing.
    fn sample_interval(&self) -> Duration {
        if let Some(interval) = self.config.poll_interval {
            return interval;
        }
        let kernel_enforces =
            !matches!(self.backend, Backend::Poll) && self.limits.cpu_action != CpuAction::Restart;
        if kernel_enforces {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(100)
        }
    }

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
            name: spec.name.clone(),
            command: spec.command.clone(),
            state: TaskState::Stopped,
            pid: None,
            started_at_ms: None,
            uptime_secs: None,
            starts: 0,
            restarts: 0,
            cpu_cores: 0.0,
            rss_bytes: 0,
            processes: 0,
            limits: limits.clone(),
            backend: backend_kind,
            violations: ViolationCounts::default(),
            last_exit: None,
            events: Vec::new(),
            tasksitter_pid: my_pid as u32,
            cgroup_paths: match &backend {
                Backend::Cgroup { group, .. } => group
                    .paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                Backend::Poll => Vec::new(),
            },
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
            consecutive: 0,
            violations: ViolationCounts::default(),
            last_exit: None,
            main_exit: None,
            samples: VecDeque::new(),
            oom_kills_seen: 0,
            shutting_down: false,
            my_pid,
        })
    }

    fn choose_backend(config: &SitterConfig, my_pid: i32) -> Result<Backend, SupervisorError> {
        if config.backend == BackendChoice::Poll {
            return Ok(Backend::Poll);
        }
        let relative = config.cgroup_parent.join(format!(
            "{}.{my_pid}",
            crate::logs::file_stem(&config.spec.name)
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
        mut commands: mpsc::Receiver<(Command, CommandReply)>,
    ) -> Result<i32, SupervisorError> {
        // Orphans of the workload are re-parented to us, so the tree stays whole and they get reaped.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut sigchld = signal(SignalKind::child()).map_err(SupervisorError::Signal)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(SupervisorError::Signal)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(SupervisorError::Signal)?;
        let mut sighup = signal(SignalKind::hangup()).map_err(SupervisorError::Signal)?;
        let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(SupervisorError::Signal)?;
        let mut sigusr2 = signal(SignalKind::user_defined2()).map_err(SupervisorError::Signal)?;
        let mut ticker = tokio::time::interval(self.sample_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        if self.config.spec.auto_start {
            self.start();
        }
        self.publish();
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
                Some((command, reply)) = commands.recv() => {
                    let _ = reply.send(self.on_command(command));
                }
                _ = sigterm.recv() => self.on_shutdown_signal("TERM"),
                _ = sigint.recv() => self.on_shutdown_signal("INT"),
                _ = sighup.recv() => self.forward("HUP"),
                _ = sigusr1.recv() => self.forward("USR1"),
                _ = sigusr2.recv() => self.forward("USR2"),
            }
            self.publish();
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
        let mut status = cerebro_web::lock(&self.status);
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
        let mut status = cerebro_web::lock(&self.status);
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
            "--- cerebro tasksitter: start #{start_number} at {} ---\n",
            cerebro_types::time::format_rfc3339_ms(now_ms())
        );
        for log in [&self.stdout_log, &self.stderr_log].into_iter().flatten() {
            if let Err(error) = cerebro_web::lock(log).write_all(marker.as_bytes()) {
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
                let restarts = self.consecutive;
                self.set_state(TaskState::Fatal { status, restarts });
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<(Child, Vec<std::thread::JoinHandle<()>>)> {
        let spec = &self.config.spec;
        let path = spec
            .env
            .get("PATH")
            .map(Into::into)
            .or_else(|| std::env::var_os("PATH"));
        let mut command = match direct_argv(&spec.command, path.as_deref()) {
            // No shell in between: one exec less per start, and the pid is the program's.
            Some(argv) => {
                let mut command = OsCommand::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
            None => {
                let mut command = OsCommand::new("/bin/sh");
                command.arg("-c").arg(&spec.command);
                command
            }
        };
        command.envs(&spec.env).stdin(Stdio::null());
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        command.stdout(if self.stdout_log.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        command.stderr(if self.stderr_log.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        if let Some(RunAs {
            name: Some(name),
            home,
            ..
        }) = &self.config.run_as
        {
            command.env("USER", name).env("LOGNAME", name);
            if let Some(home) = home {
                command.env("HOME", home);
            }
        }
        // Opened here, written in the child: pre_exec may only make async-signal-safe calls.
        let cgroup_procs: Vec<OwnedFd> = match &self.backend {
            Backend::Cgroup { group, .. } => group
                .procs_files()
                .iter()
                .map(|path| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map(OwnedFd::from)
                })
                .collect::<Result<_, _>>()?,
            Backend::Poll => Vec::new(),
        };
        let procs_fds: Vec<i32> = cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
        let ids = self
            .config
            .run_as
            .as_ref()
            .map(|r| (r.uid, r.gid, r.groups.clone()));
        let parent = self.my_pid;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls on data prepared above.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for &fd in &procs_fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The tasksitter died before PDEATHSIG was armed.
                    libc::_exit(1);
                }
                if let Some((uid, gid, groups)) = &ids {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(cgroup_procs);
        let mut pumps = Vec::new();
        let pid = child.id();
        let label = |stream: &str| format!("log-{stream}-{pid}");
        if let (Some(out), Some(log)) = (child.stdout.take(), &self.stdout_log) {
            pumps.extend(spawn_pump(out, log.clone(), label("stdout")));
        }
        if let (Some(err), Some(log)) = (child.stderr.take(), &self.stderr_log) {
            pumps.extend(spawn_pump(err, log.clone(), label("stderr")));
        }
        Ok((child, pumps))
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

    fn take_sample(&self) -> Option<Sample> {
        let at = Instant::now();
        match &self.backend {
            Backend::Cgroup { group, .. } => {
                let sample = group.sample().ok()?;
                Some(Sample {
                    at,
                    cpu_ns: sample.cpu_usage_ns,
                    rss_bytes: sample.rss_bytes,
                    processes: group.pids().map(|p| p.len() as u32).unwrap_or(0),
                    oom_kills: sample.oom_kills,
                    peak_bytes: sample.peak_bytes,
                })
            }
            Backend::Poll => {
                let pids = self.tree_pids();
                let usage = proctree::tree_usage(&pids);
                Some(Sample {
                    at,
                    cpu_ns: usage.cpu_ns,
                    rss_bytes: usage.rss_bytes,
                    processes: usage.live_processes,
                    oom_kills: 0,
                    peak_bytes: None,
                })
            }
        }
    }

    /// Average cores used over (about) the last `window`.
    /// Cores used from the newest sample at least `window` old (or the
    /// oldest kept) to the latest: samples are taken a little over an
    /// interval apart, so asking for "no older than the window" would find
    /// only the latest one whenever the interval is the window.
    fn cpu_cores_over(&self, window: Duration) -> f64 {
        let Some(latest) = self.samples.back() else {
            return 0.0;
        };
        let oldest = self
            .samples
            .iter()
            .rev()
            .find(|s| latest.at.duration_since(s.at) >= window)
            .or(self.samples.front())
            .unwrap_or(latest);
        let elapsed = latest.at.duration_since(oldest.at).as_secs_f64();
        if elapsed <= 0.0 {
            return 0.0;
        }
        latest.cpu_ns.saturating_sub(oldest.cpu_ns) as f64 / 1e9 / elapsed
    }

    fn sample_and_enforce(&mut self) {
        if self.run.is_none() {
            return;
        }
        if self.main_exit.is_some() {
            self.finish_draining_run();
            return;
        }
        let Some(sample) = self.take_sample() else {
            return;
        };
        let window = Duration::from_secs_f64(self.config.spec.cpu_window);
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.duration_since(s.at) > window + self.sample_interval())
        {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        if !matches!(self.state, TaskState::Running { .. }) {
            return;
        }
        if let Some(violation) = self.kernel_oom(&sample) {
            self.begin_stop(StopReason::Violation(violation));
            return;
        }
        if let Some(limit) = self.limits.mem_bytes {
            if sample.rss_bytes > limit {
                self.begin_stop(StopReason::Violation(Violation {
                    kind: ViolationKind::Memory,
                    measured: sample.rss_bytes as f64,
                    limit: limit as f64,
                    by_kernel: false,
                }));
                return;
            }
        }
        if let (Some(limit), CpuAction::Restart) = (self.limits.cpu_cores, self.limits.cpu_action) {
            let covered = self
                .samples
                .front()
                .map_or(Duration::ZERO, |first| sample.at.duration_since(first.at));
            let used = self.cpu_cores_over(window);
            if covered >= window && used > limit {
                self.begin_stop(StopReason::Violation(Violation {
                    kind: ViolationKind::Cpu,
                    measured: used,
                    limit,
                    by_kernel: false,
                }));
            }
        }
    }

    /// A kernel OOM kill in our cgroup since we last looked, as a memory violation.
    fn kernel_oom(&mut self, sample: &Sample) -> Option<Violation> {
        if sample.oom_kills <= self.oom_kills_seen {
            return None;
        }
        self.oom_kills_seen = sample.oom_kills;
        let limit = self.limits.mem_bytes.unwrap_or(0) as f64;
        Some(Violation {
            kind: ViolationKind::Memory,
            measured: sample.peak_bytes.map_or(limit, |p| p as f64),
            limit,
            by_kernel: true,
        })
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

    // ---- stopping -------------------------------------------------------

    /// Every process of the workload's tree, however it got there.
    fn tree_pids(&self) -> Vec<i32> {
        match &self.backend {
            Backend::Cgroup { group, .. } => group.pids().unwrap_or_default(),
            Backend::Poll => {
                let guard: Vec<i32> = self.guard_pid().into_iter().collect();
                proctree::descendants(self.my_pid, &guard)
            }
        }
    }

    fn kill_tree(&self, signal: Signal) {
        if signal == Signal::SIGKILL {
            if let Backend::Cgroup { group, .. } = &self.backend {
                if let Err(error) = group.kill_all() {
                    tracing::error!(%error, "cannot empty the cgroup");
                }
                return;
            }
        }
        if let Some(run) = &self.run {
            let _ = nix::sys::signal::killpg(Pid::from_raw(run.pid), signal);
        }
        for pid in self.tree_pids() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }

    /// Stops the running workload. Memory violations are killed at once
    /// (waiting lets it grow); everything else gets the stop signal and a grace period.
    fn begin_stop(&mut self, reason: StopReason) {
        let TaskState::Running { pid, started_at_ms } = self.state else {
            return;
        };
        let immediate =
            matches!(&reason, StopReason::Violation(v) if v.kind == ViolationKind::Memory);
        if let StopReason::Violation(violation) = &reason {
            self.violations.record(violation.kind);
            self.event(EventKind::Violation(violation.clone()));
        }
        let spec_signal = self.config.spec.stop_signal.clone();
        let kill_at_ms = if immediate {
            self.kill_tree(Signal::SIGKILL);
            self.event(EventKind::Killed {
                pid,
                reason: "memory limit".into(),
            });
            now_ms() + 1000
        } else {
            let signal = signal_named(&spec_signal).unwrap_or(Signal::SIGTERM);
            self.kill_tree(signal);
            self.event(EventKind::StopRequested {
                signal: spec_signal,
            });
            now_ms() + (self.config.spec.stop_timeout * 1000.0) as u64
        };
        self.set_state(TaskState::Stopping {
            pid,
            started_at_ms,
            kill_at_ms,
            reason,
        });
    }

    fn on_main_exit(&mut self, status: ExitStatus) {
        let Some(run) = &self.run else { return };
        let pid = run.pid as u32;
        self.last_exit = Some(status);
        self.event(EventKind::Exited { pid, status });
        // During a stop the rest of the tree keeps its grace period: a shell
        // dies of the stop signal at once while the server under it shuts down.
        let in_grace =
            matches!(self.state, TaskState::Stopping { kill_at_ms, .. } if now_ms() < kill_at_ms);
        if in_grace && !self.tree_pids().is_empty() {
            self.main_exit = Some(status);
            return;
        }
        self.finish_run(status);
    }

    /// Ends a run whose main process has exited, once its tree drained during a stop.
    fn finish_draining_run(&mut self) {
        if let Some(status) = self.main_exit {
            if self.tree_pids().is_empty() {
                self.finish_run(status);
            }
        }
    }

    fn finish_run(&mut self, status: ExitStatus) {
        let Some(run) = self.run.take() else { return };
        self.main_exit = None;
        // Whatever the main process left behind in its tree goes with it.
        if !self.tree_pids().is_empty() {
            self.kill_tree(Signal::SIGKILL);
        }
        // Wait for the pumps so the last words of the workload are in the log before anyone reads it.
        join_pumps(run.pumps, Duration::from_secs(1));
        let stop_reason = match &self.state {
            TaskState::Stopping { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        let mut violation = match &stop_reason {
            Some(StopReason::Violation(v)) => Some(v.clone()),
            _ => None,
        };
        if let Some(oom) = self.take_sample().and_then(|s| self.kernel_oom(&s)) {
            if violation.is_none() {
                self.violations.record(oom.kind);
                self.event(EventKind::Violation(oom.clone()));
                violation = Some(oom);
            }
        }
        match stop_reason {
            Some(StopReason::Requested) => self.set_state(TaskState::Stopped),
            Some(StopReason::Restart) if !self.shutting_down => {
                self.restarts += 1;
                self.start();
            }
            _ => self.apply_restart_policy(status, violation.is_some(), run.started.elapsed()),
        }
    }

    fn apply_restart_policy(&mut self, status: ExitStatus, violated: bool, lived: Duration) {
        let spec = &self.config.spec;
        if lived.as_secs_f64() >= spec.backoff.healthy_after_secs {
            self.consecutive = 0;
        }
        let wanted = (spec.ensure_alive && !(spec.allow_exit && status.success()))
            || (spec.restart && violated);
        if !wanted || self.shutting_down {
            self.set_state(TaskState::Exited { status });
            return;
        }
        if spec.max_restarts >= 0 && i64::from(self.consecutive) >= spec.max_restarts {
            let restarts = self.consecutive;
            self.event(EventKind::GaveUp { restarts });
            self.set_state(TaskState::Fatal { status, restarts });
            return;
        }
        self.consecutive += 1;
        let attempt = self.consecutive;
        let delay = Duration::from_secs_f64(spec.backoff.delay_secs(attempt));
        self.set_state(TaskState::Backoff {
            restart_at_ms: now_ms() + delay.as_millis() as u64,
            attempt,
        });
        if delay.is_zero() {
            // Restart latency matters: do not wait for another loop turn.
            self.event(EventKind::Restarting { attempt });
            self.restarts += 1;
            self.start();
        } else {
            self.event(EventKind::Backoff {
                delay_ms: delay.as_millis() as u64,
                attempt,
            });
        }
    }

    // ---- commands -------------------------------------------------------

    fn on_command(&mut self, command: Command) -> Result<String, String> {
        match (command, self.state.kind()) {
            (Command::Start, cerebro_types::StateKind::Running) => Ok("already running".into()),
            (Command::Start, cerebro_types::StateKind::Stopping) => {
                Err("the task is stopping; try again".into())
            }
            (Command::Start, _) => {
                if matches!(self.state, TaskState::Backoff { .. }) {
                    self.restarts += 1;
                }
                self.consecutive = 0;
                self.start();
                Ok("started".into())
            }
            (Command::Stop, cerebro_types::StateKind::Running) => {
                self.begin_stop(StopReason::Requested);
                Ok("stopping".into())
            }
            (Command::Stop, cerebro_types::StateKind::Backoff) => {
                self.set_state(TaskState::Stopped);
                Ok("stopped".into())
            }
            (Command::Stop, _) => Ok("not running".into()),
            (Command::Restart, cerebro_types::StateKind::Running) => {
                self.begin_stop(StopReason::Restart);
                Ok("restarting".into())
            }
            (Command::Restart, cerebro_types::StateKind::Stopping) => {
                Err("the task is stopping; try again".into())
            }
            (Command::Restart, _) => {
                self.consecutive = 0;
                self.start();
                Ok("started".into())
            }
            (Command::Signal(name), _) => {
                let Some(run) = &self.run else {
                    return Err("the task is not running".into());
                };
                let signal = signal_named(name).ok_or_else(|| format!("unknown signal {name}"))?;
                nix::sys::signal::killpg(Pid::from_raw(run.pid), signal)
                    .map_err(|e| e.to_string())?;
                self.event(EventKind::Signalled {
                    signal: name.into(),
                });
                Ok(format!("sent SIG{name}"))
            }
        }
    }

    fn forward(&mut self, name: &'static str) {
        let _ = self.on_command(Command::Signal(name));
    }

    fn on_shutdown_signal(&mut self, name: &str) {
        if self.shutting_down {
            tracing::warn!(signal = name, "second signal: killing the workload now");
            self.kill_tree(Signal::SIGKILL);
            return;
        }
        tracing::info!(signal = name, "stopping the workload, then exiting");
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

/// A command without shell syntax whose first word is a program (a path, or
/// found on `path`) runs as that program directly, split on whitespace: the
/// workload's pid is the program itself, signals reach it directly, and no
/// shell is exec'd first (dash would not even exec the last command of
/// `sh -c`). Anything else (builtins such as `exit` or `cd`, keywords,
/// quoting, variables, pipes) runs through `/bin/sh -c` as written.
fn direct_argv(command: &str, path: Option<&std::ffi::OsStr>) -> Option<Vec<String>> {
    const SHELL_SYNTAX: &[char] = &[
        ';', '&', '|', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
        '=', '%', '{', '}', '!', '\n',
    ];
    let first = command.split_whitespace().next().unwrap_or("");
    let is_program = |name: &str| {
        if name.contains('/') {
            return true;
        }
        path.into_iter().flat_map(std::env::split_paths).any(|dir| {
            let candidate = dir.join(name);
            std::fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    if first.is_empty() || command.contains(SHELL_SYNTAX) || !is_program(first) {
        None
    } else {
        Some(command.split_whitespace().map(str::to_string).collect())
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts `tasksitter __cgroup-guard DIR...` in a process group of its own,
/// so a signal to the tasksitter's group does not reach it.
fn spawn_guard(dirs: &[std::path::PathBuf]) -> std::io::Result<Guard> {
    let exe = std::env::current_exe()?;
    let mut child = OsCommand::new(exe)
        .arg(crate::GUARD_SUBCOMMAND)
        .args(dirs)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take();
    Ok(Guard { child, stdin })
}

/// Body of the guard process: wait for the tasksitter to go away (EOF on
/// stdin), then kill everything left in the cgroup and remove it.
pub fn guard_main(dirs: &[std::path::PathBuf]) -> i32 {
    // SAFETY: setting dispositions to SIG_IGN before any thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while !matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(0) | Err(_)) {}
    let mut code = 0;
    for dir in dirs {
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            let _ = std::fs::write(&kill, "1");
        }
        if crate::cgroup::kill_members(&dir.join("cgroup.procs")).is_err() {
            code = 1;
        }
    }
    for dir in dirs {
        if Path::new(dir).exists() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::direct_argv;

    #[test]
    fn simple_commands_run_without_a_shell() {
        let path = Some(std::ffi::OsStr::new("/usr/bin:/bin"));
        let argv = |c| direct_argv(c, path);
        assert_eq!(
            argv("/opt/code/run_portal_server --port 80").unwrap(),
            ["/opt/code/run_portal_server", "--port", "80"]
        );
        assert_eq!(argv("sleep  60").unwrap(), ["sleep", "60"]);
        for through_the_shell in [
            "echo a; echo b",
            "a && b",
            "x | y",
            "echo $HOME",
            "FOO=1 prog",
            "exit 3",
            "cd /tmp",
            "if true",
            "no-such-program-anywhere",
            "echo 'quoted words'",
        ] {
            assert_eq!(argv(through_the_shell), None, "{through_the_shell}");
        }
    }
}
