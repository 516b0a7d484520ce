//! The clustersitter's configuration: a TOML file (unknown keys are errors,
//! reported with line and column) plus flags and environment variables for
//! the usual overrides.

use cerebro_types::human::parse_duration;
use cerebro_types::job::validate_zone_name;
use cerebro_types::machine::Resources;
use cerebro_types::ValidationErrors;
use cerebro_web::Token;
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Leave every machine and its tasks running; the next start adopts them.
    Leave,
    /// Terminate every machine (local provider: stop its machinesitter and tasks).
    Stop,
}

#[derive(Debug, Parser)]
#[command(
    name = "clustersitter",
    version,
    about = "Run jobs on a cluster: placement, machines, failure handling, the API and web UI"
)]
pub struct Cli {
    /// TOML config file (see examples/clusters/local.toml).
    #[arg(long, short = 'c', env = "CEREBRO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Name shown in the UI and on metrics.
    #[arg(long, env = "CEREBRO_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    #[arg(long, env = "CEREBRO_BIND")]
    pub bind: Option<IpAddr>,
    /// HTTP port (30000).
    #[arg(long, env = "CEREBRO_PORT")]
    pub port: Option<u16>,
    /// Where jobs, machines and assignments are kept, and local machines live.
    #[arg(long, env = "CEREBRO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// File holding the bearer token for mutating requests (else env CEREBRO_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How often every machine is polled (e.g. 2s).
    #[arg(long, value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Missed polls after which a machine is unreachable.
    #[arg(long)]
    pub failure_threshold: Option<u32>,
    /// Idle machines kept in every zone.
    #[arg(long)]
    pub idle_limit: Option<u32>,
    /// What happens to machines when the clustersitter exits.
    #[arg(long, value_enum)]
    pub on_exit: Option<OnExit>,
    /// Run without a token: anyone who reaches the port may change the
    /// cluster (said on every page and in the log). Without it and without
    /// a token, a token is generated at first start.
    #[arg(long)]
    pub insecure: bool,
    /// Web pages need a login too (by default they are readable without one; actions always need it).
    #[arg(long)]
    pub ui_login_required: bool,
    /// Write the bound address (ip:port) here once listening.
    #[arg(long)]
    pub address_file: Option<PathBuf>,
    /// Job files loaded at start (as `cerebro updatejobcfg` would).
    #[arg(long = "job", value_name = "FILE")]
    pub jobs: Vec<PathBuf>,
}

/// The file's shape. Everything is optional; flags win over the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub cluster_name: Option<String>,
    pub bind: Option<IpAddr>,
    pub port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub poll_interval: Option<String>,
    pub failure_threshold: Option<u32>,
    /// Idle machines kept per zone: `idle_limit = 1`.
    pub idle_limit: Option<u32>,
    /// Per-zone overrides: `[idle_limit_per_zone] local-b = 0`.
    #[serde(default)]
    pub idle_limit_per_zone: BTreeMap<String, u32>,
    /// Default time each machine's instances must run during a rolling update.
    pub min_healthy: Option<String>,
    pub on_exit: Option<OnExit>,
    /// Web pages need a login too.
    #[serde(default)]
    pub ui_login_required: bool,
    /// Run without a token, open to anyone (as `--insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// Where a generated token is recorded for the `cerebro` CLI on this
    /// host (default `~/.config/cerebro/tokens`, see
    /// `cerebro_client::token_store`).
    pub client_token_dir: Option<PathBuf>,
    /// The URL machines reach this clustersitter at (they register and
    /// download their binaries there), e.g. `http://10.0.0.5:30000`.
    /// Default: `http://` and the bound address (127.0.0.1 for 0.0.0.0).
    pub advertise_url: Option<String>,
    #[serde(default)]
    pub jobs: Vec<PathBuf>,
    pub provider: Option<ProviderConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Machines are machinesitter processes on this host.
    #[default]
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(default)]
    pub kind: ProviderKind,
    /// Zones this cluster serves.
    #[serde(default = "default_local_zones")]
    pub zones: Vec<String>,
    /// Size declared by each new local machine.
    #[serde(default = "default_machine_cpu")]
    pub machine_cpu: f64,
    #[serde(default = "default_machine_mem")]
    pub machine_mem: f64,
    /// Never run more local machines than this (a laptop is not a cloud).
    #[serde(default = "default_max_machines")]
    pub max_machines: usize,
    /// The machinesitter binary (default: beside the clustersitter, else on PATH).
    pub machinesitter_bin: Option<PathBuf>,
    /// The tasksitter binary cloud machines download (default: beside the
    /// clustersitter, else on PATH).
    pub tasksitter_bin: Option<PathBuf>,
    /// Passed to each machinesitter: auto, cgroup or poll.
    pub limits_backend: Option<String>,
}

fn default_local_zones() -> Vec<String> {
    vec!["local-a".into(), "local-b".into()]
}
fn default_machine_cpu() -> f64 {
    2.0
}
fn default_machine_mem() -> f64 {
    1024.0
}
fn default_max_machines() -> usize {
    16
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            kind: ProviderKind::Local,
            zones: default_local_zones(),
            machine_cpu: default_machine_cpu(),
            machine_mem: default_machine_mem(),
            max_machines: default_max_machines(),
            machinesitter_bin: None,
            tasksitter_bin: None,
            limits_backend: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub cluster_name: String,
    pub addr: SocketAddr,
    pub state_dir: PathBuf,
    pub token: Option<Token>,
    pub poll_interval: Duration,
    pub failure_threshold: u32,
    /// Set in the file or by a flag: applied at every start, over what the
    /// API set before the restart. `None`: the saved limit (1 at first).
    pub idle_limit: Option<u32>,
    pub idle_limit_per_zone: BTreeMap<String, u32>,
    pub min_healthy: Duration,
    pub on_exit: OnExit,
    pub address_file: Option<PathBuf>,
    pub jobs: Vec<PathBuf>,
    pub provider: ProviderConfig,
    pub ui_login_required: bool,
    /// No token on purpose: everything is open. Without a token and
    /// without this, [`crate::resolve_token`] generates one.
    pub insecure: bool,
    /// Where a generated token is recorded for the CLI on this host;
    /// `None`: nowhere.
    pub client_token_dir: Option<PathBuf>,
    /// See [`FileConfig::advertise_url`]; `None`: the bound address.
    pub advertise_url: Option<String>,
    /// The file of the token generated at first start (in the state dir),
    /// once [`crate::resolve_token`] has loaded or made it.
    pub generated_token_file: Option<PathBuf>,
}

impl ClusterConfig {
    /// The zones served, with the size of a new machine in each.
    pub fn zones(&self) -> BTreeMap<String, Resources> {
        let size = Resources {
            cpu: self.provider.machine_cpu,
            mem_mb: self.provider.machine_mem,
        };
        self.provider
            .zones
            .iter()
            .map(|zone| (zone.clone(), size))
            .collect()
    }
}

/// A config problem, located in the file when it came from one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(ValidationErrors),
}

fn read_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| {
        let (line, column) = error
            .span()
            .map(|span| line_column(&text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.display().to_string(),
            line,
            column,
            message: error.message().to_string(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Cli {
    pub fn into_config(self) -> Result<ClusterConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // Paths in the config file are relative to that file.
        let config_dir = self
            .config
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let mut errors = ValidationErrors::default();
        let poll_interval = match (self.poll_interval, &file.poll_interval) {
            (Some(d), _) => d,
            (None, Some(text)) => parse_duration(text).unwrap_or_else(|e| {
                errors.push("poll_interval", e);
                Duration::from_secs(2)
            }),
            (None, None) => Duration::from_secs(2),
        };
        if poll_interval < Duration::from_millis(50) {
            errors.push("poll_interval", "must be at least 50ms");
        }
        let min_healthy = match &file.min_healthy {
            Some(text) => parse_duration(text).unwrap_or_else(|e| {
                errors.push("min_healthy", e);
                Duration::from_secs(5)
            }),
            None => Duration::from_secs(5),
        };
        let failure_threshold = self
            .failure_threshold
            .or(file.failure_threshold)
            .unwrap_or(3);
        if failure_threshold == 0 {
            errors.push("failure_threshold", "must be at least 1");
        }
        let provider = file.provider.clone().unwrap_or_default();
        {
            let local = &provider;
            {
                if local.zones.is_empty() {
                    errors.push("provider.zones", "must name at least one zone");
                }
                for zone in &local.zones {
                    if let Err(message) = validate_zone_name(zone) {
                        errors.push("provider.zones", message);
                    }
                }
                if !(local.machine_cpu.is_finite() && local.machine_cpu > 0.0) {
                    errors.push("provider.machine_cpu", "must be a positive number of cores");
                }
                if !(local.machine_mem.is_finite() && local.machine_mem > 0.0) {
                    errors.push("provider.machine_mem", "must be a positive number of MB");
                }
                if let Some(backend) = &local.limits_backend {
                    if !["auto", "cgroup", "poll"].contains(&backend.as_str()) {
                        errors.push("provider.limits_backend", "must be auto, cgroup or poll");
                    }
                }
            }
        }
        for zone in file.idle_limit_per_zone.keys() {
            if !provider.zones.contains(zone) {
                errors.push(
                    format!("idle_limit_per_zone.{zone}"),
                    "is not a zone of this cluster's provider",
                );
            }
        }
        let token_file = self
            .token_file
            .or(file.token_file.map(|f| config_dir.join(f)));
        let token = match cerebro_web::load_token(token_file.as_deref(), "CEREBRO_TOKEN") {
            Ok(token) => token,
            Err(error) => {
                errors.push("token_file", error.to_string());
                None
            }
        };
        let bind = self
            .bind
            .or(file.bind)
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let insecure = self.insecure || file.insecure;
        let cluster_name = self
            .cluster_name
            .or(file.cluster_name)
            .unwrap_or_else(|| "local".into());
        if let Some(url) = &file.advertise_url {
            let usable = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .is_some_and(|rest| {
                    let rest = rest.trim_end_matches('/');
                    !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
                });
            if !usable {
                errors.push(
                    "advertise_url",
                    "must be http:// or https:// and a host[:port], with no path (e.g. http://10.0.0.5:30000)",
                );
            }
        }
        let advertise_url = file
            .advertise_url
            .as_ref()
            .map(|url| url.trim_end_matches('/').to_string());
        let mut jobs: Vec<PathBuf> = file.jobs.iter().map(|j| config_dir.join(j)).collect();
        jobs.extend(self.jobs);
        let config = ClusterConfig {
            cluster_name,
            addr: SocketAddr::new(bind, self.port.or(file.port).unwrap_or(30000)),
            state_dir: self
                .state_dir
                .or(file.state_dir.map(|dir| config_dir.join(dir)))
                .unwrap_or_else(|| PathBuf::from("/var/lib/cerebro/clustersitter")),
            token,
            poll_interval,
            failure_threshold,
            idle_limit: self.idle_limit.or(file.idle_limit),
            idle_limit_per_zone: file.idle_limit_per_zone,
            min_healthy,
            on_exit: self.on_exit.or(file.on_exit).unwrap_or(OnExit::Leave),
            address_file: self.address_file,
            ui_login_required: self.ui_login_required || file.ui_login_required,
            insecure,
            client_token_dir: match file.client_token_dir {
                Some(dir) => Some(config_dir.join(dir)),
                None => cerebro_client::token_store::default_dir(),
            },
            generated_token_file: None,
            advertise_url,
            jobs,
            provider,
        };
        errors.into_result(config).map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_file(text: &str) -> Result<ClusterConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        Cli::try_parse_from(["clustersitter", "--config", path.to_str().unwrap()])
            .unwrap()
            .into_config()
    }

    #[test]
    fn the_example_config_loads() {
        let text = include_str!("../../examples/clusters/local.toml");
        let config = parse_file(text).unwrap();
        assert_eq!(config.zones().len(), 2);
        assert_eq!(config.addr.port(), 30000);
    }

    #[test]
    fn unknown_keys_are_located() {
        let error =
            parse_file("cluster_name = \"x\"\n\n[provider]\nkind = \"local\"\nzonez = [\"a\"]\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains(":5:1: unknown field `zonez`"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = parse_file("poll_interval = \"soon\"\nfailure_threshold = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("poll_interval") && error.contains("failure_threshold"),
            "{error}"
        );
    }
}
