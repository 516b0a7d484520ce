//! Command-line flags, turned into a validated `SitterConfig` at the edge.
//! Flag names follow the original tasksitter; the rest is what supervisord
//! and systemd users expect.

use cerebro_types::human::{parse_duration, parse_size};
use cerebro_types::{Backoff, CpuAction, LogRotation, Principal, TaskSpec, ValidationErrors};
use cerebro_web::Token;
use clap::{Parser, ValueEnum};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// cgroups when this host offers them and they can be created, /proc polling otherwise.
    Auto,
    /// cgroups or refuse to start.
    Cgroup,
    /// /proc polling only.
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CpuActionArg {
    Throttle,
    Restart,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn size_arg(text: &str) -> Result<u64, String> {
    parse_size(text)
}

fn env_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not K=V"))
}

#[derive(Debug, Parser)]
#[command(
    name = "tasksitter",
    version,
    about = "Run one process and enforce the CPU, memory and lifetime limits planned for it",
    allow_negative_numbers = true,
    after_help = "Restart policy: --restart restarts after a limit violation, --ensure-alive after any exit.\n\
                  CPU: the default action is 'throttle' with the cgroup backend and 'restart' with the poll backend.\n\
                  Logs: appended across starts with a '--- start #N ---' marker line, rotated by size.\n\
                  Exit status: the workload's last status (its code, or 128+signal)."
)]
pub struct Cli {
    /// Shell command to run (through /bin/sh -c).
    #[arg(long)]
    pub command: String,
    /// Task name, for logs, status and metrics (default: the command's first word).
    #[arg(long)]
    pub name: Option<String>,
    /// CPU limit in cores: 0.5 = half a core, 2 = two cores.
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<f64>,
    /// Memory limit for the whole process tree, in MB.
    #[arg(long, value_name = "MB")]
    pub mem: Option<f64>,
    /// Lifetime of each start (seconds, or 500ms, 5m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub time_limit: Option<Duration>,
    /// Restart after any exit.
    #[arg(long)]
    pub ensure_alive: bool,
    /// Restart after a limit violation.
    #[arg(long)]
    pub restart: bool,
    /// With --ensure-alive, a clean exit (status 0) is final.
    #[arg(long)]
    pub allow_exit: bool,
    /// Consecutive restarts before giving up (-1 = unlimited; 2 = 3 runs in all).
    #[arg(long, default_value_t = -1, value_name = "N")]
    pub max_restarts: i64,
    /// Run as this user (name or number): setgid, initgroups, setuid; HOME and USER are set.
    #[arg(long, value_name = "USER")]
    pub uid: Option<Principal>,
    /// Run with this primary group (default: the user's).
    #[arg(long, value_name = "GROUP")]
    pub gid: Option<Principal>,
    /// Directory for the stdout log, or '-' to inherit the tasksitter's stdout.
    #[arg(long, default_value = "-", value_name = "DIR")]
    pub stdout_location: String,
    /// Directory for the stderr log, or '-' to inherit the tasksitter's stderr.
    #[arg(long, default_value = "-", value_name = "DIR")]
    pub stderr_location: String,
    /// Extra environment variable (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = env_arg)]
    pub env: Vec<(String, String)>,
    /// Working directory of the workload.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Signal sent to the process group to stop it.
    #[arg(long, default_value = "TERM")]
    pub stop_signal: String,
    /// Grace period between the stop signal and SIGKILL.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub stop_timeout: Duration,
    /// Delay of the second consecutive restart; each further one doubles it (the first is immediate).
    #[arg(long, default_value = "100ms", value_parser = duration_arg)]
    pub backoff_initial: Duration,
    /// Cap on the restart delay.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub backoff_max: Duration,
    /// A run this long is healthy: backoff and the --max-restarts count start over.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub healthy_after: Duration,
    /// Rotate a log file when it reaches this size (bytes, or 512K, 10M, 1G).
    #[arg(long, default_value = "10M", value_parser = size_arg)]
    pub log_max_bytes: u64,
    /// Rotated log files to keep per stream.
    #[arg(long, default_value_t = 5)]
    pub log_backups: u32,
    /// Over the CPU limit: throttle (cgroup quota) or restart (kill after a window of over-use).
    #[arg(long, value_enum)]
    pub cpu_action: Option<CpuActionArg>,
    /// Window over which CPU use is averaged for --cpu-action restart.
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub cpu_window: Duration,
    /// How limits are enforced.
    #[arg(long, value_enum, default_value = "auto")]
    pub limits_backend: BackendChoice,
    /// How often usage is sampled and checked (default: 100ms when this
    /// process enforces a limit by polling, 2s when the kernel enforces them all).
    #[arg(long, value_parser = duration_arg)]
    pub poll_interval: Option<Duration>,
    /// cgroup directory (relative to each hierarchy's root) that holds task cgroups.
    #[arg(long, default_value = "cerebro")]
    pub cgroup_parent: PathBuf,
    /// Start in state 'stopped' and wait for POST /api/v1/start.
    #[arg(long)]
    pub no_auto_start: bool,
    /// Keep running (and serving HTTP) after the workload ends for good, instead of exiting with its status.
    #[arg(long)]
    pub linger: bool,
    /// Serve status, logs and control over HTTP.
    #[arg(long)]
    pub http_monitoring: bool,
    /// HTTP port (0 = any free port; see --http-address-file).
    #[arg(long, default_value_t = 8080)]
    pub http_monitoring_port: u16,
    /// HTTP bind address.
    #[arg(long, default_value = "127.0.0.1")]
    pub http_monitoring_bind: IpAddr,
    /// Write the bound HTTP address (ip:port) to this file once listening.
    #[arg(long)]
    pub http_address_file: Option<PathBuf>,
    /// File holding the bearer token required by POST endpoints (else env CEREBRO_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback HTTP bind without a token.
    #[arg(long)]
    pub insecure: bool,
}

/// The user the workload runs as, resolved once at start.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub address_file: Option<PathBuf>,
}

/// Everything the tasksitter needs, validated.
#[derive(Debug, Clone)]
pub struct SitterConfig {
    pub spec: TaskSpec,
    pub stdout_dir: Option<PathBuf>,
    pub stderr_dir: Option<PathBuf>,
    pub run_as: Option<RunAs>,
    pub backend: BackendChoice,
    /// `None`: chosen by who enforces (see `Supervisor::sample_interval`).
    pub poll_interval: Option<Duration>,
    pub cgroup_parent: PathBuf,
    pub http: Option<HttpConfig>,
    pub token: Option<Token>,
    pub linger: bool,
}

/// Maps a spec field to the flag that sets it, so errors name what the user typed.
fn flag_for(field: &str) -> String {
    let flag = match field {
        "backoff.initial_secs" => "backoff-initial",
        "backoff.max_secs" => "backoff-max",
        "backoff.healthy_after_secs" => "healthy-after",
        "log_rotation.max_bytes" => "log-max-bytes",
        other => return format!("--{}", other.replace('_', "-")),
    };
    format!("--{flag}")
}

fn location(text: &str) -> Option<PathBuf> {
    (text != "-").then(|| PathBuf::from(text))
}

fn default_name(command: &str) -> String {
    let first = command.split_whitespace().next().unwrap_or("task");
    first
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("task")
        .to_string()
}

impl Cli {
    /// Validates every flag and resolves users and groups; all problems are reported together.
    pub fn into_config(self) -> Result<SitterConfig, ValidationErrors> {
        let mut spec = TaskSpec::new(
            self.name
                .clone()
                .unwrap_or_else(|| default_name(&self.command)),
            self.command.clone(),
        );
        spec.allow_exit = self.allow_exit;
        spec.auto_start = !self.no_auto_start;
        spec.ensure_alive = self.ensure_alive;
        spec.restart = self.restart;
        spec.max_restarts = self.max_restarts;
        spec.uid = self.uid.clone();
        spec.gid = self.gid.clone();
        spec.cpu = self.cpu;
        spec.mem = self.mem;
        spec.time_limit = self.time_limit.map(|d| d.as_secs_f64());
        spec.env = self.env.iter().cloned().collect::<BTreeMap<_, _>>();
        spec.cwd = self.cwd.as_ref().map(|p| p.display().to_string());
        spec.stop_signal = self.stop_signal.clone();
        spec.stop_timeout = self.stop_timeout.as_secs_f64();
        spec.cpu_action = self.cpu_action.map(|a| match a {
            CpuActionArg::Throttle => CpuAction::Throttle,
            CpuActionArg::Restart => CpuAction::Restart,
        });
        spec.cpu_window = self.cpu_window.as_secs_f64();
        spec.backoff = Backoff {
            initial_secs: self.backoff_initial.as_secs_f64(),
            max_secs: self.backoff_max.as_secs_f64(),
            healthy_after_secs: self.healthy_after.as_secs_f64(),
        };
        spec.log_rotation = LogRotation {
            max_bytes: self.log_max_bytes,
            backups: self.log_backups,
        };

        let mut errors = spec.validate_with(&flag_for).err().unwrap_or_default();
        if let Some(cwd) = &self.cwd {
            if cwd.is_absolute() && !cwd.is_dir() {
                errors.push("--cwd", format!("{} is not a directory", cwd.display()));
            }
        }
        if self
            .poll_interval
            .is_some_and(|i| i < Duration::from_millis(10))
        {
            errors.push("--poll-interval", "must be at least 10ms");
        }
        if self.cpu_action == Some(CpuActionArg::Throttle)
            && self.limits_backend == BackendChoice::Poll
        {
            errors.push(
                "--cpu-action",
                "throttle needs the cgroup backend; use restart with --limits-backend poll",
            );
        }
        if self.cgroup_parent.is_absolute()
            || self
                .cgroup_parent
                .components()
                .any(|c| c.as_os_str() == "..")
        {
            errors.push("--cgroup-parent", "must be a relative path without '..'");
        }
        let run_as = match resolve_run_as(self.uid.as_ref(), self.gid.as_ref()) {
            Ok(run_as) => run_as,
            Err((field, message)) => {
                errors.push(field, message);
                None
            }
        };
        let token = match cerebro_web::load_token(self.token_file.as_deref(), "CEREBRO_TOKEN") {
            Ok(token) => token,
            Err(error) => {
                errors.push("--token-file", error.to_string());
                None
            }
        };
        let http = self.http_monitoring.then(|| HttpConfig {
            addr: SocketAddr::new(self.http_monitoring_bind, self.http_monitoring_port),
            address_file: self.http_address_file.clone(),
        });
        if self.http_monitoring
            && !self.http_monitoring_bind.is_loopback()
            && token.is_none()
            && !self.insecure
        {
            errors.push(
                "--http-monitoring-bind",
                format!(
                    "{} is not a loopback address: give --token-file (or CEREBRO_TOKEN), or --insecure",
                    self.http_monitoring_bind
                ),
            );
        }
        errors.into_result(SitterConfig {
            spec,
            stdout_dir: location(&self.stdout_location),
            stderr_dir: location(&self.stderr_location),
            run_as,
            backend: self.limits_backend,
            poll_interval: self.poll_interval,
            cgroup_parent: self.cgroup_parent,
            http,
            token,
            linger: self.linger,
        })
    }
}

fn resolve_group(group: &Principal) -> Result<u32, (String, String)> {
    match group {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(("--gid".into(), format!("unknown group '{name}'"))),
            Err(e) => Err((
                "--gid".into(),
                format!("cannot look up group '{name}': {e}"),
            )),
        },
    }
}

/// Resolves --uid/--gid to numbers and the user's supplementary groups.
pub fn resolve_run_as(
    uid: Option<&Principal>,
    gid: Option<&Principal>,
) -> Result<Option<RunAs>, (String, String)> {
    let explicit_gid = gid.map(resolve_group).transpose()?;
    let Some(uid) = uid else {
        return Ok(explicit_gid.map(|gid| RunAs {
            uid: nix::unistd::getuid().as_raw(),
            gid,
            groups: vec![gid],
            name: None,
            home: None,
        }));
    };
    let lookup = match uid {
        Principal::Id(id) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*id)),
        Principal::Name(name) => nix::unistd::User::from_name(name),
    }
    .map_err(|e| {
        (
            "--uid".to_string(),
            format!("cannot look up user '{uid}': {e}"),
        )
    })?;
    let user = match (lookup, uid) {
        (Some(user), _) => user,
        // A bare number without a passwd entry is still a valid uid.
        (None, Principal::Id(id)) => {
            let gid = explicit_gid.unwrap_or(*id);
            return Ok(Some(RunAs {
                uid: *id,
                gid,
                groups: vec![gid],
                name: None,
                home: None,
            }));
        }
        (None, Principal::Name(name)) => {
            return Err(("--uid".into(), format!("unknown user '{name}'")))
        }
    };
    let gid = explicit_gid.unwrap_or(user.gid.as_raw());
    let groups = CString::new(user.name.clone())
        .ok()
        .and_then(|cname| nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|list| list.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![gid]);
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid,
        groups,
        name: Some(user.name),
        home: Some(user.dir),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SitterConfig, ValidationErrors> {
        let mut full = vec!["tasksitter"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap().into_config()
    }

    #[test]
    fn negative_memory_names_the_flag() {
        let errors = parse(&["--command", "true", "--mem", "-5"]).unwrap_err();
        assert_eq!(errors.errors[0].field, "--mem");
        assert!(errors.to_string().contains("-5"), "{errors}");
    }

    #[test]
    fn unknown_user_is_an_error() {
        let errors = parse(&["--command", "true", "--uid", "no-such-user-cerebro"]).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "--uid: unknown user 'no-such-user-cerebro'"
        );
    }

    #[test]
    fn nobody_resolves_with_home() {
        let config = parse(&["--command", "true", "--uid", "nobody"]).unwrap();
        let run_as = config.run_as.unwrap();
        assert_eq!(run_as.uid, 65534);
        assert_eq!(run_as.name.as_deref(), Some("nobody"));
    }

    #[test]
    fn defaults_and_names() {
        let config = parse(&["--command", "/usr/bin/redis-server --port 1"]).unwrap();
        assert_eq!(config.spec.name, "redis-server");
        assert_eq!(config.spec.max_restarts, -1);
        assert_eq!(config.stdout_dir, None);
        assert!(config.http.is_none());
    }

    #[test]
    fn public_bind_needs_a_token() {
        let errors = parse(&[
            "--command",
            "true",
            "--http-monitoring",
            "--http-monitoring-bind",
            "0.0.0.0",
        ])
        .unwrap_err();
        assert_eq!(errors.errors[0].field, "--http-monitoring-bind");
        assert!(parse(&[
            "--command",
            "true",
            "--http-monitoring",
            "--http-monitoring-bind",
            "0.0.0.0",
            "--insecure"
        ])
        .is_ok());
    }

    #[test]
    fn throttle_needs_cgroups() {
        let errors = parse(&[
            "--command",
            "true",
            "--cpu-action",
            "throttle",
            "--limits-backend",
            "poll",
        ])
        .unwrap_err();
        assert_eq!(errors.errors[0].field, "--cpu-action");
    }
}
