//! Command-line flags, turned into a validated `SitterConfig` at the edge.
//! The task itself is a `TaskSpec`: read from `--spec-file` (as the
//! machinesitter starts us) or built from the human flags, whose names
//! follow the original tasksitter. The other flags say how this process
//! runs (backend, HTTP, token, log directories), not what the task is.

use cerebro_host::{BackendChoice, RunAs};
use cerebro_types::human::{parse_duration, parse_mem_mb, parse_size};
use cerebro_types::{Backoff, CpuAction, LogRotation, Principal, TaskSpec, ValidationErrors};
use cerebro_web::Token;
use clap::{ArgGroup, CommandFactory, Parser, ValueEnum};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `--cpu-action`, as `TaskSpec::cpu_action`.
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

fn mem_arg(text: &str) -> Result<f64, String> {
    parse_mem_mb(text)
}

fn env_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not K=V"))
}

/// The flags. Each flag that sets a spec field has that field's path as its
/// clap id (`backoff.initial_secs`), so an error about a field can name the
/// flag without a second table; all of them belong to the group `spec`,
/// which `--spec-file` excludes.
#[derive(Debug, Parser)]
#[command(
    name = "tasksitter",
    version,
    about = "Run one process and enforce the CPU, memory and lifetime limits planned for it",
    allow_negative_numbers = true,
    group(ArgGroup::new("spec").multiple(true).conflicts_with("spec_file")),
    after_help = "Restart policy: --restart restarts after a limit violation, --ensure-alive after any exit.\n\
                  CPU: the default action is 'throttle' with the cgroup backend and 'restart' with the poll backend.\n\
                  Logs: appended across starts with a '--- start #N ---' marker line, rotated by size.\n\
                  Exit status: the workload's last status (its code, or 128+signal)."
)]
pub struct Cli {
    /// Read the task (a JSON TaskSpec, as the machinesitter writes it) from
    /// this file instead of the task flags below.
    #[arg(long, value_name = "FILE")]
    pub spec_file: Option<PathBuf>,
    /// Shell command to run (through /bin/sh -c).
    #[arg(
        long,
        group = "spec",
        required_unless_present = "spec_file",
        allow_hyphen_values = true
    )]
    pub command: Option<String>,
    /// Task name, for logs, status and metrics (default: the command's first word).
    #[arg(long, group = "spec", allow_hyphen_values = true)]
    pub name: Option<String>,
    /// CPU limit in cores: 0.5 = half a core, 2 = two cores.
    #[arg(long, group = "spec", value_name = "CORES")]
    pub cpu: Option<f64>,
    /// Memory limit for the whole process tree: MB, or a size (512M, 2G).
    #[arg(long, group = "spec", value_name = "MB", value_parser = mem_arg)]
    pub mem: Option<f64>,
    /// Lifetime of each start (seconds, or 500ms, 5m, 2h).
    #[arg(long, group = "spec", value_name = "DURATION", value_parser = duration_arg)]
    pub time_limit: Option<Duration>,
    /// Restart after any exit.
    #[arg(long, group = "spec")]
    pub ensure_alive: bool,
    /// Restart after a limit violation.
    #[arg(long, group = "spec")]
    pub restart: bool,
    /// With --ensure-alive, a clean exit (status 0) is final.
    #[arg(long, group = "spec")]
    pub allow_exit: bool,
    /// Consecutive restarts before giving up (-1 = unlimited; 2 = 3 runs in all).
    #[arg(long, group = "spec", default_value_t = -1, value_name = "N")]
    pub max_restarts: i64,
    /// Run as this user (name or number): setgid, initgroups, setuid; HOME and USER are set.
    #[arg(long, group = "spec", value_name = "USER")]
    pub uid: Option<Principal>,
    /// Run with this primary group (default: the user's).
    #[arg(long, group = "spec", value_name = "GROUP")]
    pub gid: Option<Principal>,
    /// Directory for the stdout log, or '-' to inherit the tasksitter's stdout.
    #[arg(long, default_value = "-", value_name = "DIR")]
    pub stdout_location: String,
    /// Directory for the stderr log, or '-' to inherit the tasksitter's stderr.
    #[arg(long, default_value = "-", value_name = "DIR")]
    pub stderr_location: String,
    /// Extra environment variable (repeatable).
    #[arg(long = "env", group = "spec", value_name = "K=V", value_parser = env_arg)]
    pub env: Vec<(String, String)>,
    /// Working directory of the workload.
    #[arg(long, group = "spec")]
    pub cwd: Option<PathBuf>,
    /// Signal sent to the process group to stop it.
    #[arg(long, group = "spec", default_value = "TERM")]
    pub stop_signal: String,
    /// Grace period between the stop signal and SIGKILL.
    #[arg(long, group = "spec", default_value = "10s", value_parser = duration_arg)]
    pub stop_timeout: Duration,
    /// Delay of the second consecutive restart; each further one doubles it (the first is immediate).
    #[arg(long, id = "backoff.initial_secs", group = "spec", default_value = "100ms", value_parser = duration_arg)]
    pub backoff_initial: Duration,
    /// Cap on the restart delay.
    #[arg(long, id = "backoff.max_secs", group = "spec", default_value = "30s", value_parser = duration_arg)]
    pub backoff_max: Duration,
    /// A run this long is healthy: backoff and the --max-restarts count start over.
    #[arg(long, id = "backoff.healthy_after_secs", group = "spec", default_value = "10s", value_parser = duration_arg)]
    pub healthy_after: Duration,
    /// Rotate a log file when it reaches this size (bytes, or 512K, 10M, 1G).
    #[arg(long, id = "log_rotation.max_bytes", group = "spec", default_value = "10M", value_parser = size_arg)]
    pub log_max_bytes: u64,
    /// Rotated log files to keep per stream.
    #[arg(long, id = "log_rotation.backups", group = "spec", default_value_t = 5)]
    pub log_backups: u32,
    /// Over the CPU limit: throttle (cgroup quota) or restart (kill after a window of over-use).
    #[arg(long, group = "spec", value_enum)]
    pub cpu_action: Option<CpuActionArg>,
    /// Window over which CPU use is averaged for --cpu-action restart.
    #[arg(long, group = "spec", default_value = "5s", value_parser = duration_arg)]
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
    #[arg(long, group = "spec")]
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
    /// Keep this file (JSON: our pid and start time, HTTP address, the
    /// workload's pid and cgroups) current, so a supervisor finds us again
    /// and can clean up after us (the machinesitter passes <task dir>/runtime.json).
    #[arg(long, value_name = "FILE")]
    pub runtime_file: Option<PathBuf>,
    /// File holding the bearer token required by POST endpoints (else env CEREBRO_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback HTTP bind without a token.
    #[arg(long)]
    pub insecure: bool,
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
    /// Where to keep our `RuntimeRecord` (`--runtime-file`).
    pub runtime_file: Option<PathBuf>,
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

/// The flag that sets spec field `field`, read from the flag definitions
/// (see [`Cli`]), so errors name what the user typed.
fn flag_of(field: &str) -> String {
    Cli::command()
        .get_arguments()
        .find(|arg| arg.get_id() == field)
        .and_then(|arg| arg.get_long())
        .map_or_else(|| field.to_string(), |long| format!("--{long}"))
}

impl Cli {
    /// The spec the task flags describe.
    fn flag_spec(&self) -> TaskSpec {
        let command = self.command.clone().unwrap_or_default();
        let mut spec = TaskSpec::new(
            self.name.clone().unwrap_or_else(|| default_name(&command)),
            command,
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
        spec
    }

    /// Validates the spec (`TaskSpec::validate`, then `cerebro_host::check_host`)
    /// and every runtime flag; all problems are reported together. Errors
    /// about the spec name its flag, or its field when it came from `--spec-file`.
    pub fn into_config(self) -> Result<SitterConfig, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let (spec, name_of): (Option<TaskSpec>, fn(&str) -> String) = match &self.spec_file {
            Some(path) => match cerebro_host::layout::read_spec(path) {
                Ok(spec) => (Some(spec), str::to_string),
                Err(error) => {
                    errors.push("--spec-file", error.to_string());
                    (None, str::to_string)
                }
            },
            None => (Some(self.flag_spec()), flag_of),
        };
        let mut run_as = None;
        if let Some(spec) = &spec {
            let found = spec.validate().err().into_iter();
            let host = match cerebro_host::check_host(spec, self.limits_backend) {
                Ok(resolved) => {
                    run_as = resolved;
                    None
                }
                Err(host) => Some(host),
            };
            for error in found.chain(host).flat_map(|e| e.errors) {
                errors.push(name_of(&error.field), error.message);
            }
        }
        if self
            .poll_interval
            .is_some_and(|i| i < Duration::from_millis(10))
        {
            errors.push("--poll-interval", "must be at least 10ms");
        }
        if self.cgroup_parent.is_absolute()
            || self
                .cgroup_parent
                .components()
                .any(|c| c.as_os_str() == "..")
        {
            errors.push("--cgroup-parent", "must be a relative path without '..'");
        }
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
        let Some(spec) = spec else {
            return Err(errors);
        };
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
            runtime_file: self.runtime_file,
        })
    }
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

    #[test]
    fn names_and_commands_may_start_with_a_dash() {
        let config = parse(&["--name", "-x", "--command", "-c true"]).unwrap();
        assert_eq!(config.spec.name, "-x");
        assert_eq!(config.spec.command, "-c true");
        let config = parse(&["--name", "--x", "--command", "true"]).unwrap();
        assert_eq!(config.spec.name, "--x");
        assert_eq!(
            parse(&["--name=-x", "--command", "true"])
                .unwrap()
                .spec
                .name,
            "-x"
        );
    }

    #[test]
    fn memory_takes_the_job_file_sizes() {
        let mem = |text| {
            parse(&["--command", "true", "--mem", text])
                .unwrap()
                .spec
                .mem
        };
        assert_eq!(mem("300"), Some(300.0));
        assert_eq!(mem("512M"), Some(512.0));
        assert_eq!(mem("2G"), Some(2048.0));
        assert!(Cli::try_parse_from(["tasksitter", "--command", "true", "--mem", "lots"]).is_err());
    }

    #[test]
    fn errors_name_the_flag_of_a_renamed_field() {
        let errors = parse(&["--command", "true", "--log-max-bytes", "10"]).unwrap_err();
        assert_eq!(errors.errors[0].field, "--log-max-bytes");
        assert_eq!(flag_of("backoff.initial_secs"), "--backoff-initial");
        assert_eq!(flag_of("time_limit"), "--time-limit");
    }

    #[test]
    fn a_spec_file_is_the_whole_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        let mut spec = TaskSpec::new("--odd name", "sleep 1");
        spec.mem = Some(64.0);
        spec.auto_start = false;
        std::fs::write(&path, serde_json::to_string(&spec).unwrap()).unwrap();
        let file = path.to_str().unwrap();
        assert_eq!(parse(&["--spec-file", file]).unwrap().spec, spec);
        assert!(
            Cli::try_parse_from(["tasksitter", "--spec-file", file, "--mem", "5"]).is_err(),
            "task flags and a spec file exclude each other"
        );
        spec.mem = Some(-1.0);
        std::fs::write(&path, serde_json::to_string(&spec).unwrap()).unwrap();
        let errors = parse(&["--spec-file", file]).unwrap_err();
        assert_eq!(errors.errors[0].field, "mem", "{errors}");
        let errors = parse(&["--spec-file", "/no/such/spec.json"]).unwrap_err();
        assert_eq!(errors.errors[0].field, "--spec-file", "{errors}");
    }
}
