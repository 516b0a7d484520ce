//! One task: what an admin plans for it (`TaskSpec`), the states it goes
//! through (`TaskState` and its transition table), what happened to it
//! (`TaskEvent`), and what a tasksitter reports about it (`TaskStatus`).

use crate::error::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest task name, in characters.
pub const MAX_TASK_NAME_CHARS: usize = 128;

/// Longest `command`, in bytes. The kernel refuses any one argument or
/// environment string of 128 KiB or more (`MAX_ARG_STRLEN`), and the command
/// reaches `exec` as one (`sh -c COMMAND`); half of that leaves room for
/// what the shell and the tasksitter add.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest `env` entry, counted as the kernel sees it (`KEY=VALUE`), in bytes;
/// the same margin below `MAX_ARG_STRLEN` as [`MAX_COMMAND_BYTES`].
pub const MAX_ENV_ENTRY_BYTES: usize = 64 * 1024;
/// Most bytes `command` and `env` may take together (each string with its
/// terminating NUL). `exec` fails with "argument list too long" once
/// arguments and environment pass `ARG_MAX` (a quarter of the stack limit,
/// 2 MiB by default); the workload also inherits the tasksitter's own
/// environment, so a spec gets an eighth of that.
pub const MAX_COMMAND_AND_ENV_BYTES: usize = 256 * 1024;
/// Longest `cwd`, in bytes: `PATH_MAX` (4096) less the terminating NUL.
pub const MAX_CWD_BYTES: usize = 4095;
/// Longest user or group name in `uid`/`gid`, in bytes.
pub const MAX_PRINCIPAL_NAME_BYTES: usize = 256;
/// Most cores a `cpu` limit may ask for: more than any machine has.
pub const MAX_CPU_CORES: f64 = 4096.0;
/// Most megabytes a `mem` limit may ask for: 2^30 MB (1 PiB), more memory
/// than any machine has, and small enough that the limit in bytes fits a u64.
pub const MAX_MEM_MB: f64 = (1u64 << 30) as f64;
/// Longest `time_limit`, in seconds: ten years.
pub const MAX_TIME_LIMIT_SECS: f64 = 10.0 * 366.0 * 86_400.0;
/// Longest wait a spec may set, in seconds (one day): `stop_timeout`,
/// `cpu_window` and the `backoff` durations. Longer waits are typos, and a
/// stop that waits longer than this for its grace period never ends in practice.
pub const MAX_WAIT_SECS: f64 = 86_400.0;
/// Smallest `log_rotation.max_bytes`.
pub const MIN_LOG_FILE_BYTES: u64 = 1024;
/// Largest `log_rotation.max_bytes`: 1 TiB.
pub const MAX_LOG_FILE_BYTES: u64 = 1 << 40;
/// Most `log_rotation.backups` kept per stream.
pub const MAX_LOG_BACKUPS: u32 = 1000;
/// Most named ports one task may declare in `ports`.
pub const MAX_PORTS: usize = 16;
/// Longest port name in `ports`, in bytes.
pub const MAX_PORT_NAME_BYTES: usize = 32;

/// Checks a port name: 1..=32 lowercase ASCII letters, digits and `_`, so
/// that `CEREBRO_PORT_<NAME>` (upper-cased) is a portable variable name.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a port name must not be empty".into());
    }
    if name.len() > MAX_PORT_NAME_BYTES {
        return Err(format!(
            "port name '{name}' is longer than {MAX_PORT_NAME_BYTES} bytes"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "port name '{name}' may hold only lowercase letters, digits and _"
        ));
    }
    Ok(())
}

/// The variable that carries the port allocated for port `name`:
/// `CEREBRO_PORT_<NAME>`, upper-cased (`http` -> `CEREBRO_PORT_HTTP`).
pub fn port_env_name(name: &str) -> String {
    format!("CEREBRO_PORT_{}", name.to_ascii_uppercase())
}

/// The environment a task gets for its allocated `ports` (name -> TCP
/// port): `CEREBRO_PORT_<NAME>` for each, and `PORT` as well when it has
/// exactly one, the convention most servers read.
pub fn port_env(ports: &BTreeMap<String, u16>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = ports
        .iter()
        .map(|(name, port)| (port_env_name(name), port.to_string()))
        .collect();
    if let (1, Some(port)) = (ports.len(), ports.values().next()) {
        env.insert("PORT".into(), port.to_string());
    }
    env
}

/// Checks a task name: free text of 1..=128 characters without `/` or
/// control characters (the seed's example task is called "Portal Server").
pub fn validate_task_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_TASK_NAME_CHARS {
        return Err(format!("must be at most {MAX_TASK_NAME_CHARS} characters"));
    }
    if name.contains('/') {
        return Err("must not contain '/'".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Reports, through `report`, why `text` cannot reach the kernel as one C
/// string: a NUL byte inside it, or more than `max_bytes` bytes.
fn check_exec_string(text: &str, max_bytes: usize, report: &mut dyn FnMut(String)) {
    if text.contains('\0') {
        report("must not contain a NUL byte".into());
    }
    if text.len() > max_bytes {
        report(format!(
            "is {} bytes, at most {max_bytes} are allowed",
            text.len()
        ));
    }
}

/// A user or group given by name or by number, as the seed's configs do (`"uid": 0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    Id(u32),
    Name(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Id(id) => write!(f, "{id}"),
            Principal::Name(name) => f.write_str(name),
        }
    }
}

impl std::str::FromStr for Principal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(match s.parse::<u32>() {
            Ok(id) => Principal::Id(id),
            Err(_) => Principal::Name(s.to_string()),
        })
    }
}

/// What happens when the tree uses more CPU than `cpu` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuAction {
    /// The kernel holds the tree to its quota (cgroup backend only).
    Throttle,
    /// Sustained use above the limit over the CPU window is a violation: the tree is killed.
    Restart,
}

/// Exponential restart backoff: the first restart after a healthy run is
/// immediate, each further one waits `initial * 2^(n-1)`, capped at `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub initial_secs: f64,
    pub max_secs: f64,
    /// A run that stays up this long is healthy: the backoff and the
    /// consecutive-restart budget start over.
    pub healthy_after_secs: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_secs: 0.1,
            max_secs: 30.0,
            healthy_after_secs: 10.0,
        }
    }
}

impl Backoff {
    /// Delay before restart number `consecutive` (1-based) since the last healthy run.
    pub fn delay_secs(&self, consecutive: u32) -> f64 {
        if consecutive <= 1 {
            return 0.0;
        }
        let exponent = (consecutive - 2).min(62) as i32;
        (self.initial_secs * 2f64.powi(exponent)).min(self.max_secs)
    }
}

/// Log capture: size-rotated files per stream, appended across starts with a marker line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogRotation {
    pub max_bytes: u64,
    pub backups: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            backups: 5,
        }
    }
}

/// Everything an admin plans for one task. Field names follow the seed's
/// `task_configuration`; the rest is what supervisord and systemd users expect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub command: String,
    /// A clean exit (status 0) is final even under `ensure_alive`.
    #[serde(default)]
    pub allow_exit: bool,
    #[serde(default = "default_true")]
    pub auto_start: bool,
    /// Restart after any exit.
    #[serde(default)]
    pub ensure_alive: bool,
    /// Restart after a limit violation.
    #[serde(default)]
    pub restart: bool,
    /// Consecutive restarts allowed before giving up (-1 = unlimited; 2 = 3 runs in all).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: i64,
    #[serde(default)]
    pub uid: Option<Principal>,
    #[serde(default)]
    pub gid: Option<Principal>,
    /// Cores: 0.5 = half a core, 2 = two cores.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Megabytes of resident memory for the whole tree.
    #[serde(default, deserialize_with = "crate::human::serde_human::mem_mb")]
    pub mem: Option<f64>,
    /// Seconds of lifetime per start.
    #[serde(default, deserialize_with = "crate::human::serde_human::opt_seconds")]
    pub time_limit: Option<f64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    #[serde(
        default = "default_stop_timeout",
        deserialize_with = "crate::human::serde_human::seconds_value"
    )]
    pub stop_timeout: f64,
    #[serde(default)]
    pub cpu_action: Option<CpuAction>,
    /// Window over which CPU use is averaged when `cpu_action` is `restart`.
    #[serde(
        default = "default_cpu_window",
        deserialize_with = "crate::human::serde_human::seconds_value"
    )]
    pub cpu_window: f64,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub log_rotation: LogRotation,
    /// Named TCP ports the task needs (`["http", "admin"]`): the
    /// machinesitter allocates a free port for each from its port range,
    /// keeps it for the task's life on that machine, and passes it as
    /// `CEREBRO_PORT_<NAME>` (and `PORT` for a single port). A tasksitter
    /// run on its own allocates nothing. Absent from older specs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_max_restarts() -> i64 {
    -1
}
fn default_stop_signal() -> String {
    "TERM".into()
}
fn default_stop_timeout() -> f64 {
    10.0
}
fn default_cpu_window() -> f64 {
    5.0
}

/// Signal names accepted for stop signals and `POST /signal`, without the `SIG` prefix.
pub const SIGNAL_NAMES: &[&str] = &[
    "HUP", "INT", "QUIT", "ABRT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP", "TSTP", "WINCH",
    "ALRM",
];

/// Normalises `SIGTERM`, `term` or `TERM` to `TERM`; `None` for anything else.
pub fn normalize_signal_name(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNAL_NAMES.iter().copied().find(|s| *s == bare)
}

impl TaskSpec {
    /// A spec with every default, for `command` under `name`.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            allow_exit: false,
            auto_start: true,
            ensure_alive: false,
            restart: false,
            max_restarts: default_max_restarts(),
            uid: None,
            gid: None,
            cpu: None,
            mem: None,
            time_limit: None,
            env: BTreeMap::new(),
            cwd: None,
            stop_signal: default_stop_signal(),
            stop_timeout: default_stop_timeout(),
            cpu_action: None,
            cpu_window: default_cpu_window(),
            backoff: Backoff::default(),
            log_rotation: LogRotation::default(),
            ports: Vec::new(),
        }
    }

    /// Checks every field and reports all problems at once. `field` maps a
    /// spec field to the name the user typed (a flag, a JSON path).
    pub fn validate_with(&self, field: &dyn Fn(&str) -> String) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Err(message) = validate_task_name(&self.name) {
            errors.push(field("name"), message);
        }
        if self.command.trim().is_empty() {
            errors.push(field("command"), "must not be empty");
        }
        check_exec_string(&self.command, MAX_COMMAND_BYTES, &mut |m| {
            errors.push(field("command"), m)
        });
        if self.max_restarts < -1 {
            errors.push(
                field("max_restarts"),
                "must be -1 (unlimited) or a count >= 0",
            );
        }
        let mut bounded = |value: Option<f64>, name: &str, unit: &str, max: f64| {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0 && v <= max) {
                    errors.push(
                        field(name),
                        format!("must be a positive number of {unit}, got {v} (at most {max})"),
                    );
                }
            }
        };
        bounded(self.cpu, "cpu", "cores", MAX_CPU_CORES);
        bounded(self.mem, "mem", "MB", MAX_MEM_MB);
        bounded(
            self.time_limit,
            "time_limit",
            "seconds",
            MAX_TIME_LIMIT_SECS,
        );
        if normalize_signal_name(&self.stop_signal).is_none() {
            errors.push(
                field("stop_signal"),
                format!(
                    "unknown signal '{}' (one of {})",
                    self.stop_signal,
                    SIGNAL_NAMES.join(", ")
                ),
            );
        }
        let mut wait = |value: f64, name: &str| {
            if !(value.is_finite() && (0.0..=MAX_WAIT_SECS).contains(&value)) {
                errors.push(
                    field(name),
                    format!("must be a number of seconds from 0 to {MAX_WAIT_SECS}, got {value}"),
                );
            }
        };
        wait(self.stop_timeout, "stop_timeout");
        wait(self.backoff.initial_secs, "backoff.initial_secs");
        wait(self.backoff.max_secs, "backoff.max_secs");
        wait(
            self.backoff.healthy_after_secs,
            "backoff.healthy_after_secs",
        );
        if !(self.cpu_window.is_finite()
            && self.cpu_window > 0.0
            && self.cpu_window <= MAX_WAIT_SECS)
        {
            errors.push(
                field("cpu_window"),
                format!("must be a positive number of seconds up to {MAX_WAIT_SECS}"),
            );
        }
        if !(MIN_LOG_FILE_BYTES..=MAX_LOG_FILE_BYTES).contains(&self.log_rotation.max_bytes) {
            errors.push(
                field("log_rotation.max_bytes"),
                format!("must be from {MIN_LOG_FILE_BYTES} to {MAX_LOG_FILE_BYTES} bytes"),
            );
        }
        if self.log_rotation.backups > MAX_LOG_BACKUPS {
            errors.push(
                field("log_rotation.backups"),
                format!("must be at most {MAX_LOG_BACKUPS}"),
            );
        }
        // What exec copies onto the new process's stack: argv's strings and
        // the environment's, each NUL-terminated.
        let mut exec_bytes = self.command.len() + 1;
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                errors.push(
                    field("env"),
                    format!("{key:?} is not a valid variable name"),
                );
            }
            if value.contains('\0') {
                errors.push(
                    field("env"),
                    format!("the value of {key:?} contains a NUL byte"),
                );
            }
            let entry = key.len() + 1 + value.len();
            if entry > MAX_ENV_ENTRY_BYTES {
                errors.push(
                    field("env"),
                    format!("{key:?}: KEY=VALUE is {entry} bytes, at most {MAX_ENV_ENTRY_BYTES}"),
                );
            }
            exec_bytes += entry + 1;
        }
        if exec_bytes > MAX_COMMAND_AND_ENV_BYTES {
            errors.push(
                field("env"),
                format!(
                    "command and env take {exec_bytes} bytes, at most {MAX_COMMAND_AND_ENV_BYTES}"
                ),
            );
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') {
                errors.push(field("cwd"), "must be an absolute path");
            }
            check_exec_string(cwd, MAX_CWD_BYTES, &mut |m| errors.push(field("cwd"), m));
        }
        let (mut port_problems, mut env_problems) = (Vec::new(), Vec::new());
        self.validate_ports(&mut |m| port_problems.push(m), &mut |m| {
            env_problems.push(m)
        });
        for message in port_problems {
            errors.push(field("ports"), message);
        }
        for message in env_problems {
            errors.push(field("env"), message);
        }
        for (name, principal) in [("uid", &self.uid), ("gid", &self.gid)] {
            if let Some(Principal::Name(text)) = principal {
                if text.is_empty() {
                    errors.push(field(name), "must not be empty");
                }
                check_exec_string(text, MAX_PRINCIPAL_NAME_BYTES, &mut |m| {
                    errors.push(field(name), m)
                });
            }
        }
        errors.into_result(())
    }

    /// Checks `ports` (at most [`MAX_PORTS`] names, each valid, none twice),
    /// reporting through `ports`, and that `env` sets none of the variables
    /// the allocated ports fill, reporting through `env`.
    fn validate_ports(&self, ports: &mut dyn FnMut(String), env: &mut dyn FnMut(String)) {
        if self.ports.len() > MAX_PORTS {
            ports(format!(
                "declares {} ports, at most {MAX_PORTS} are allowed",
                self.ports.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.ports {
            if let Err(message) = validate_port_name(name) {
                ports(message);
            } else if !seen.insert(name.as_str()) {
                ports(format!("port '{name}' is declared twice"));
            }
        }
        let mut filled: Vec<String> = self.ports.iter().map(|n| port_env_name(n)).collect();
        if self.ports.len() == 1 {
            filled.push("PORT".into());
        }
        for key in filled {
            if self.env.contains_key(&key) {
                env(format!(
                    "{key:?} is set from the allocated port of `ports`; remove it from env"
                ));
            }
        }
    }

    /// Cores this task reserves on a machine: its CPU limit, or one core.
    pub fn reserved_cpu(&self) -> f64 {
        self.cpu.unwrap_or(1.0)
    }

    /// Megabytes this task reserves on a machine: its memory limit, or nothing.
    pub fn reserved_mem_mb(&self) -> f64 {
        self.mem.unwrap_or(0.0)
    }

    /// True when both specs run the same workload the same way: only
    /// `auto_start` may differ, which never needs a restart.
    pub fn same_task(&self, other: &TaskSpec) -> bool {
        let mut a = self.clone();
        a.auto_start = other.auto_start;
        a == *other
    }

    /// Validation with the spec's own field names.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.validate_with(&|name| name.to_string())
    }
}

/// How a process ended, as the kernel said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code itself, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    Memory,
    Cpu,
    Time,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationKind::Memory => "memory",
            ViolationKind::Cpu => "cpu",
            ViolationKind::Time => "time",
        })
    }
}

/// A limit the tree went past, with what was measured and what was allowed,
/// in the limit's own unit (bytes, cores, seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub measured: f64,
    pub limit: f64,
    /// True when the kernel enforced it (cgroup OOM kill) rather than the tasksitter.
    #[serde(default)]
    pub by_kernel: bool,
}

/// Why a stop was initiated: `{"kind": "requested"}`, `{"kind": "restart"}`
/// or `{"kind": "violation", "violation": {...}}`. Adjacently tagged because
/// a `Violation` has a `kind` of its own: flattened beside the tag, the two
/// `kind`s made a status that no reader could decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "violation")]
pub enum StopReason {
    /// Someone asked (API call or a signal to the tasksitter).
    Requested,
    /// Stopped to start again (API restart).
    Restart,
    Violation(Violation),
}

/// The life of a task. Data lives only in the states where it exists: a pid
/// only while a process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskState {
    /// Not running and not going to run until asked.
    Stopped,
    Running {
        pid: u32,
        started_at_ms: u64,
    },
    /// The stop signal was sent; SIGKILL follows at `kill_at_ms`.
    Stopping {
        pid: u32,
        started_at_ms: u64,
        kill_at_ms: u64,
        reason: StopReason,
    },
    /// Waiting before the next start.
    Backoff {
        restart_at_ms: u64,
        attempt: u32,
    },
    /// Ended and, by policy, not restarted.
    Exited {
        status: ExitStatus,
    },
    /// Gave up after the restart budget ran out.
    Fatal {
        status: ExitStatus,
        restarts: u32,
    },
}

/// The kind of a state without its data; the transition table is written in these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Stopped,
    Running,
    Stopping,
    Backoff,
    Exited,
    Fatal,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Stopped => "stopped",
            StateKind::Running => "running",
            StateKind::Stopping => "stopping",
            StateKind::Backoff => "backoff",
            StateKind::Exited => "exited",
            StateKind::Fatal => "fatal",
        })
    }
}

/// Every transition a task may make. Anything else is a bug and is refused.
pub const ALLOWED_TRANSITIONS: &[(StateKind, StateKind)] = {
    use StateKind::*;
    &[
        (Stopped, Running),
        (Running, Stopping),
        (Running, Backoff),
        (Running, Exited),
        (Running, Fatal),
        (Running, Stopped),
        (Stopping, Stopped),
        (Stopping, Running),
        (Stopping, Backoff),
        (Stopping, Exited),
        (Stopping, Fatal),
        (Backoff, Running),
        (Backoff, Stopped),
        (Exited, Running),
        (Fatal, Running),
        // A start that cannot even spawn (setuid, cgroup join, exec) gives up at once.
        (Stopped, Fatal),
        (Backoff, Fatal),
        (Exited, Fatal),
        (Fatal, Fatal),
    ]
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal task state transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: StateKind,
    pub to: StateKind,
}

impl TaskState {
    pub fn kind(&self) -> StateKind {
        match self {
            TaskState::Stopped => StateKind::Stopped,
            TaskState::Running { .. } => StateKind::Running,
            TaskState::Stopping { .. } => StateKind::Stopping,
            TaskState::Backoff { .. } => StateKind::Backoff,
            TaskState::Exited { .. } => StateKind::Exited,
            TaskState::Fatal { .. } => StateKind::Fatal,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            TaskState::Running { pid, .. } | TaskState::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    pub fn started_at_ms(&self) -> Option<u64> {
        match self {
            TaskState::Running { started_at_ms, .. }
            | TaskState::Stopping { started_at_ms, .. } => Some(*started_at_ms),
            _ => None,
        }
    }

    /// Moves to `next` if the table allows it.
    pub fn transition(&mut self, next: TaskState) -> Result<(), IllegalTransition> {
        let (from, to) = (self.kind(), next.kind());
        if ALLOWED_TRANSITIONS.contains(&(from, to)) {
            *self = next;
            Ok(())
        } else {
            Err(IllegalTransition { from, to })
        }
    }
}

/// Something that happened to a task, kept in a bounded history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    Started { pid: u32, start_number: u64 },
    Exited { pid: u32, status: ExitStatus },
    Violation(Violation),
    StopRequested { signal: String },
    Killed { pid: u32, reason: String },
    Backoff { delay_ms: u64, attempt: u32 },
    Restarting { attempt: u32 },
    GaveUp { restarts: u32 },
    Signalled { signal: String },
    SpawnFailed { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which mechanism enforces the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsBackendKind {
    CgroupV1,
    CgroupV2,
    Poll,
}

impl fmt::Display for LimitsBackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitsBackendKind::CgroupV1 => "cgroup v1",
            LimitsBackendKind::CgroupV2 => "cgroup v2",
            LimitsBackendKind::Poll => "poll (/proc)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_cores: Option<f64>,
    pub mem_bytes: Option<u64>,
    pub time_limit_secs: Option<f64>,
    pub cpu_action: CpuAction,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationCounts {
    pub memory: u64,
    pub cpu: u64,
    pub time: u64,
}

impl ViolationCounts {
    pub fn record(&mut self, kind: ViolationKind) {
        match kind {
            ViolationKind::Memory => self.memory += 1,
            ViolationKind::Cpu => self.cpu += 1,
            ViolationKind::Time => self.time += 1,
        }
    }
}

/// `GET /api/v1/status` of a tasksitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub command: String,
    pub state: TaskState,
    pub pid: Option<u32>,
    pub started_at_ms: Option<u64>,
    pub uptime_secs: Option<f64>,
    pub starts: u64,
    pub restarts: u64,
    /// Cores in use, averaged over the last sample interval.
    pub cpu_cores: f64,
    pub rss_bytes: u64,
    pub processes: u32,
    pub limits: Limits,
    pub backend: LimitsBackendKind,
    pub violations: ViolationCounts,
    pub last_exit: Option<ExitStatus>,
    pub events: Vec<TaskEvent>,
    pub tasksitter_pid: u32,
    /// The workload's cgroup directories (empty under the poll backend).
    #[serde(default)]
    pub cgroup_paths: Vec<String>,
}

impl TaskStatus {
    /// What a tasksitter publishes before its task first starts: stopped,
    /// nothing measured, no events, no cgroup.
    pub fn not_started(
        name: &str,
        command: &str,
        limits: Limits,
        backend: LimitsBackendKind,
        tasksitter_pid: u32,
    ) -> Self {
        TaskStatus {
            name: name.to_string(),
            command: command.to_string(),
            state: TaskState::Stopped,
            pid: None,
            started_at_ms: None,
            uptime_secs: None,
            starts: 0,
            restarts: 0,
            cpu_cores: 0.0,
            rss_bytes: 0,
            processes: 0,
            limits,
            backend,
            violations: ViolationCounts::default(),
            last_exit: None,
            events: Vec::new(),
            tasksitter_pid,
            cgroup_paths: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl std::str::FromStr for LogStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            other => Err(format!("unknown log stream '{other}' (stdout or stderr)")),
        }
    }
}

/// One log file of a task (the live file or a rotated backup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFileInfo {
    pub stream: LogStream,
    pub file: String,
    pub size_bytes: u64,
    /// 0 for the live file, n for backup `.n`.
    pub generation: u32,
}

/// `GET /api/v1/logs/{stream}`: a piece of a log stream. Offsets are byte
/// positions in the whole stream (backups and live file), so following
/// `next_offset` survives rotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub stream: LogStream,
    /// Stream position of `data`'s first byte.
    pub offset: u64,
    /// Pass as `offset` to get what comes next; `next_offset - offset` is
    /// the length of `data` in bytes.
    pub next_offset: u64,
    /// Size of the live file in bytes.
    pub size_bytes: u64,
    /// True when the bytes from the requested offset on are gone (rotated
    /// out past the last backup, or the log was started over); reading
    /// went on from the oldest byte kept.
    pub rotated: bool,
    /// The bytes read; a chunk ends on a UTF-8 character boundary, so
    /// concatenated chunks reproduce the stream (bytes that are not UTF-8
    /// read as U+FFFD).
    pub data: String,
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stop_for_a_violation_reads_back() {
        let stopping = TaskState::Stopping {
            pid: 7,
            started_at_ms: 1,
            kill_at_ms: 2,
            reason: StopReason::Violation(Violation {
                kind: ViolationKind::Memory,
                measured: 3.0,
                limit: 2.0,
                by_kernel: false,
            }),
        };
        let json = serde_json::to_value(&stopping).unwrap();
        assert_eq!(json["reason"]["kind"], "violation");
        assert_eq!(json["reason"]["violation"]["kind"], "memory");
        assert_eq!(serde_json::from_value::<TaskState>(json).unwrap(), stopping);
        for reason in [StopReason::Requested, StopReason::Restart] {
            let json = serde_json::to_string(&reason).unwrap();
            assert!(!json.contains("violation"), "{json}");
            assert_eq!(serde_json::from_str::<StopReason>(&json).unwrap(), reason);
        }
    }

    use super::*;

    #[test]
    fn sizes_and_durations_read_as_numbers_or_text() {
        let spec: TaskSpec = serde_json::from_str(
            r#"{"name": "a", "command": "true", "mem": "1G", "time_limit": "5m", "stop_timeout": "500ms"}"#,
        )
        .unwrap();
        assert_eq!(
            (spec.mem, spec.time_limit, spec.stop_timeout),
            (Some(1024.0), Some(300.0), 0.5)
        );
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name": "a", "command": "true", "mem": 64, "time_limit": 2}"#)
                .unwrap();
        assert_eq!(
            (spec.mem, spec.time_limit, spec.stop_timeout),
            (Some(64.0), Some(2.0), 10.0)
        );
        let error =
            serde_json::from_str::<TaskSpec>(r#"{"name": "a", "command": "true", "mem": "lots"}"#)
                .unwrap_err()
                .to_string();
        assert!(error.contains("lots"), "{error}");
    }

    #[test]
    fn names() {
        assert!(validate_task_name("Portal Server").is_ok());
        assert!(validate_task_name("redis-cache-01").is_ok());
        assert!(validate_task_name("").is_err());
        assert!(validate_task_name("a/b").is_err());
        assert!(validate_task_name("bad\nname").is_err());
        assert!(validate_task_name(&"x".repeat(129)).is_err());
        assert!(validate_task_name(&"é".repeat(128)).is_ok());
    }

    #[test]
    fn transitions_follow_the_table() {
        let mut state = TaskState::Stopped;
        state
            .transition(TaskState::Running {
                pid: 7,
                started_at_ms: 1,
            })
            .unwrap();
        assert_eq!(state.pid(), Some(7));
        let err = state
            .transition(TaskState::Running {
                pid: 8,
                started_at_ms: 2,
            })
            .unwrap_err();
        assert_eq!(err.from, StateKind::Running);
        assert_eq!(state.pid(), Some(7), "a refused transition changes nothing");
        state
            .transition(TaskState::Exited {
                status: ExitStatus::Code(3),
            })
            .unwrap();
        assert_eq!(state.pid(), None);
        assert!(state.transition(TaskState::Stopped).is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial_secs: 0.5,
            max_secs: 3.0,
            healthy_after_secs: 10.0,
        };
        let delays: Vec<f64> = (1..=6).map(|n| b.delay_secs(n)).collect();
        assert_eq!(delays, vec![0.0, 0.5, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(b.delay_secs(10_000), 3.0);
    }

    #[test]
    fn shell_codes() {
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
    }

    #[test]
    fn validation_reports_everything_at_once() {
        let mut spec = TaskSpec::new("", " ");
        spec.mem = Some(-5.0);
        spec.cpu = Some(0.0);
        spec.stop_signal = "NOPE".into();
        let errors = spec.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "command", "cpu", "mem", "stop_signal"]);
    }

    #[test]
    fn seed_task_configuration_deserializes() {
        let json = r#"{"allow_exit": false, "name": "Portal Server", "command": "/opt/code/run_portal_server",
            "auto_start": false, "ensure_alive": true, "max_restarts": -1, "restart": true, "uid": 0,
            "cpu": 0.5, "mem": 1200}"#;
        let spec: TaskSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.uid, Some(Principal::Id(0)));
        assert_eq!(spec.cpu, Some(0.5));
        spec.validate().unwrap();
    }

    #[test]
    fn signal_names_normalise() {
        assert_eq!(normalize_signal_name("sigterm"), Some("TERM"));
        assert_eq!(normalize_signal_name("HUP"), Some("HUP"));
        assert_eq!(normalize_signal_name("SIGNOPE"), None);
    }
}

#[cfg(test)]
mod cannot_start_tests {
    use super::*;
    use crate::job::JobSpec;

    /// Specs that no host could ever start, each with the field its error must name.
    fn impossible_specs() -> Vec<(&'static str, TaskSpec)> {
        let base = || TaskSpec::new("t", "sleep 1");
        let with = |change: &dyn Fn(&mut TaskSpec)| {
            let mut spec = base();
            change(&mut spec);
            spec
        };
        let big = "x".repeat(200 * 1024);
        vec![
            ("command", with(&|s| s.command = "echo a\0b".into())),
            ("command", with(&|s| s.command = format!("echo {big}"))),
            (
                "env",
                with(&|s| {
                    s.env.insert("A\0B".into(), "v".into());
                }),
            ),
            (
                "env",
                with(&|s| {
                    s.env.insert("A".into(), "v\0w".into());
                }),
            ),
            (
                "env",
                with(&|s| {
                    s.env.insert("A=B".into(), "v".into());
                }),
            ),
            (
                "env",
                with(&|s| {
                    s.env.insert(String::new(), "v".into());
                }),
            ),
            (
                "env",
                with(&|s| {
                    s.env.insert("BIG".into(), big.clone());
                }),
            ),
            (
                "env",
                with(&|s| {
                    // Each value fits; together with the command they do not.
                    for i in 0..8 {
                        s.env.insert(format!("V{i}"), "y".repeat(60 * 1024));
                    }
                }),
            ),
            ("cwd", with(&|s| s.cwd = Some("/tmp/a\0b".into()))),
            (
                "uid",
                with(&|s| s.uid = Some(Principal::Name("ro\0ot".into()))),
            ),
            (
                "uid",
                with(&|s| s.uid = Some(Principal::Name(String::new()))),
            ),
            (
                "gid",
                with(&|s| s.gid = Some(Principal::Name("wh\0eel".into()))),
            ),
            ("cpu", with(&|s| s.cpu = Some(1e12))),
            ("cpu", with(&|s| s.cpu = Some(f64::NAN))),
            ("mem", with(&|s| s.mem = Some(1e18))),
            ("mem", with(&|s| s.mem = Some(f64::INFINITY))),
            ("time_limit", with(&|s| s.time_limit = Some(f64::NAN))),
            ("time_limit", with(&|s| s.time_limit = Some(f64::INFINITY))),
            ("time_limit", with(&|s| s.time_limit = Some(-1.0))),
            ("time_limit", with(&|s| s.time_limit = Some(1e300))),
            ("stop_timeout", with(&|s| s.stop_timeout = f64::NAN)),
            ("stop_timeout", with(&|s| s.stop_timeout = -1.0)),
            ("stop_timeout", with(&|s| s.stop_timeout = 1e300)),
            ("cpu_window", with(&|s| s.cpu_window = 1e300)),
            (
                "backoff.initial_secs",
                with(&|s| s.backoff.initial_secs = f64::INFINITY),
            ),
            ("backoff.max_secs", with(&|s| s.backoff.max_secs = 1e300)),
            (
                "backoff.healthy_after_secs",
                with(&|s| s.backoff.healthy_after_secs = f64::NAN),
            ),
            (
                "log_rotation.max_bytes",
                with(&|s| s.log_rotation.max_bytes = 0),
            ),
            (
                "log_rotation.max_bytes",
                with(&|s| s.log_rotation.max_bytes = u64::MAX),
            ),
            (
                "log_rotation.backups",
                with(&|s| s.log_rotation.backups = u32::MAX),
            ),
            ("ports", with(&|s| s.ports = vec!["HTTP".into()])),
            ("ports", with(&|s| s.ports = vec!["web-ui".into()])),
            ("ports", with(&|s| s.ports = vec![String::new()])),
            ("ports", with(&|s| s.ports = vec!["p".repeat(33)])),
            (
                "ports",
                with(&|s| s.ports = vec!["http".into(), "http".into()]),
            ),
            (
                "ports",
                with(&|s| s.ports = (0..17).map(|i| format!("p{i}")).collect()),
            ),
            (
                "env",
                with(&|s| {
                    s.ports = vec!["http".into()];
                    s.env.insert("PORT".into(), "80".into());
                }),
            ),
            (
                "env",
                with(&|s| {
                    s.ports = vec!["http".into(), "admin".into()];
                    s.env.insert("CEREBRO_PORT_ADMIN".into(), "81".into());
                }),
            ),
        ]
    }

    #[test]
    fn specs_that_can_never_start_are_refused_naming_the_field() {
        for (index, (field, spec)) in impossible_specs().into_iter().enumerate() {
            let errors = spec
                .validate()
                .expect_err(&format!("case {index} ({field}) was accepted"));
            assert!(
                errors.errors.iter().any(|e| e.field == field),
                "{field}: {errors}"
            );
        }
    }

    #[test]
    fn ports_fill_their_variables_and_port_for_a_single_one() {
        let mut spec = TaskSpec::new("t", "true");
        spec.ports = (0..MAX_PORTS).map(|i| format!("p_{i}")).collect();
        spec.env.insert("PORT".into(), "8080".into());
        spec.validate()
            .expect("16 ports, and PORT is free with more than one");
        let one = BTreeMap::from([("http".to_string(), 40100u16)]);
        assert_eq!(
            port_env(&one),
            BTreeMap::from([
                ("CEREBRO_PORT_HTTP".to_string(), "40100".to_string()),
                ("PORT".to_string(), "40100".to_string()),
            ])
        );
        let two = BTreeMap::from([("http".to_string(), 1u16), ("admin_2".to_string(), 2)]);
        let env = port_env(&two);
        assert_eq!(
            env.get("CEREBRO_PORT_ADMIN_2").map(String::as_str),
            Some("2")
        );
        assert!(!env.contains_key("PORT"), "{env:?}");
        // A spec without ports serializes as before, so older readers take it.
        let json = serde_json::to_value(TaskSpec::new("t", "true")).unwrap();
        assert!(json.get("ports").is_none(), "{json}");
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let mut spec = TaskSpec::new("t", "x".repeat(MAX_COMMAND_BYTES));
        spec.cpu = Some(MAX_CPU_CORES);
        spec.mem = Some(MAX_MEM_MB);
        spec.time_limit = Some(MAX_TIME_LIMIT_SECS);
        spec.stop_timeout = MAX_WAIT_SECS;
        spec.backoff.max_secs = MAX_WAIT_SECS;
        spec.log_rotation.max_bytes = MAX_LOG_FILE_BYTES;
        spec.log_rotation.backups = MAX_LOG_BACKUPS;
        spec.validate().unwrap();
    }

    #[test]
    fn a_job_refuses_them_naming_the_task_configuration_field() {
        for (field, spec) in impossible_specs() {
            let job = JobSpec {
                task_configuration: spec,
                ..serde_json::from_value(serde_json::json!({
                    "deployment_layout": {"zone1": {"cpu": 1}},
                    "task_configuration": {"name": "t", "command": "true"}
                }))
                .unwrap()
            };
            let errors = job.validate().expect_err(field);
            let expected = format!("task_configuration.{field}");
            assert!(
                errors.errors.iter().any(|e| e.field == expected),
                "{expected}: {errors}"
            );
        }
    }
}
