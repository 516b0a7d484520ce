//! The clustersitter's configuration: a TOML file (unknown keys and bad
//! values are errors, reported with line and column) plus flags and
//! environment variables for the usual overrides.

pub mod dns;
pub mod ec2;

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
use toml::Spanned;

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
    pub idle_limit_per_zone: BTreeMap<Spanned<String>, u32>,
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
    /// Directories searched, in order, for the recipe a job's
    /// `deployment_recipe` names (`recipe_dirs = ["recipes", "/srv/recipes"]`;
    /// relative entries are relative to this file's directory): a dotted
    /// name `a.b.c` is `a/b/c.toml` in the first directory that has it,
    /// then among the recipes shipped with Cerebro (`release-tarball`,
    /// `install-script`). See [`crate::recipes`].
    pub recipe_dirs: Option<Spanned<Vec<Spanned<String>>>>,
    pub provider: Option<ProviderSection>,
    /// `[dns]`: where the names of jobs with a `dns_basename` go (see
    /// [`dns::DnsSection`]); without it, [`dns::DnsConfig::default_for`].
    pub dns: Option<Spanned<dns::DnsSection>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Machines are machinesitter processes on this host.
    #[default]
    Local,
    /// Machines are EC2 instances (the `cerebro-ec2` crate).
    Ec2,
}

/// `[provider]` as written. Each kind has its own keys; a key of another
/// kind is an error (see [`ProviderConfig`] for their meaning).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub kind: Option<Spanned<ProviderKind>>,
    pub zones: Option<Spanned<Vec<String>>>,
    pub machine_cpu: Option<Spanned<f64>>,
    pub machine_mem: Option<Spanned<f64>>,
    pub max_machines: Option<usize>,
    pub machinesitter_bin: Option<PathBuf>,
    pub tasksitter_bin: Option<PathBuf>,
    pub limits_backend: Option<Spanned<String>>,
    pub endpoint_url: Option<Spanned<String>>,
    pub ec2: Option<Spanned<ec2::Ec2Section>>,
}

/// The provider's settings, checked.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Zones this cluster serves (EC2: the keys of `[provider.ec2.zones]`).
    pub zones: Vec<String>,
    /// Size declared by each new local machine (local provider only).
    pub machine_cpu: f64,
    pub machine_mem: f64,
    /// Never run more machines than this, all zones together (a laptop is
    /// not a cloud; a cloud bills by the hour).
    pub max_machines: usize,
    /// The machinesitter binary (default: beside the clustersitter, else on PATH).
    pub machinesitter_bin: Option<PathBuf>,
    /// The tasksitter binary cloud machines download (default: beside the
    /// clustersitter, else on PATH).
    pub tasksitter_bin: Option<PathBuf>,
    /// Passed to each machinesitter: auto, cgroup or poll (local provider only).
    pub limits_backend: Option<String>,
    /// EC2: the API endpoint (e.g. `http://127.0.0.1:5000` for moto); else
    /// `AWS_ENDPOINT_URL_EC2`, else `AWS_ENDPOINT_URL`, else real AWS.
    pub endpoint_url: Option<String>,
    /// EC2: every served zone's settings (`Some` exactly when `kind` is Ec2).
    pub ec2: Option<ec2::Ec2Config>,
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
            endpoint_url: None,
            ec2: None,
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
    /// Where `deployment_recipe` names are looked up, in order, before the
    /// shipped recipes (see [`FileConfig::recipe_dirs`]); absolute.
    pub recipe_dirs: Vec<PathBuf>,
    pub provider: ProviderConfig,
    /// `[dns]`: where the names of jobs with a `dns_basename` go.
    pub dns: dns::DnsConfig,
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
    /// The zones served, with the size of a new machine in each (EC2: the
    /// component-wise largest of the zone's allowed instance types).
    pub fn zones(&self) -> BTreeMap<String, Resources> {
        if let Some(ec2) = &self.provider.ec2 {
            return ec2
                .zones
                .iter()
                .map(|(name, zone)| (name.clone(), zone.largest()))
                .collect();
        }
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
    /// Values the file's syntax allows but that cannot work, each at its
    /// place in the file (one per line).
    #[error("{}", located_lines(.0))]
    Located(Vec<LocatedProblem>),
}

/// One problem of [`ConfigError::Located`].
pub use cerebro_types::error::LocatedProblem;
use cerebro_types::error::{line_column, located_lines};

/// The file's config and its text (for locating problems found later).
fn read_file(path: &std::path::Path) -> Result<(FileConfig, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file = toml::from_str(&text).map_err(|error| {
        let (line, column) = error
            .span()
            .map(|span| line_column(&text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.display().to_string(),
            line,
            column,
            message: cerebro_types::wording::plain_serde_message(error.message()),
        }
    })?;
    Ok((file, text))
}

impl Cli {
    pub fn into_config(self) -> Result<ClusterConfig, ConfigError> {
        let (file, text) = match &self.config {
            Some(path) => read_file(path)?,
            None => (FileConfig::default(), String::new()),
        };
        // Problems at a place in the file, as (byte range, message).
        let mut located: Vec<ec2::Problem> = Vec::new();
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
        let provider = provider_config(
            file.provider.clone().unwrap_or_default(),
            &mut errors,
            &mut located,
        );
        check_zone_labels(&provider.zones, &mut errors);
        for zone in file.idle_limit_per_zone.keys() {
            if !provider.zones.iter().any(|z| z == zone.get_ref()) {
                located.push((
                    zone.span(),
                    format!(
                        "idle_limit_per_zone.{}: is not a zone of this cluster's provider",
                        zone.get_ref()
                    ),
                ));
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
        if provider.max_machines == 0 {
            errors.push("provider.max_machines", "must be at least 1");
        }
        if provider.kind == ProviderKind::Ec2 && cluster_name.chars().count() > 256 {
            errors.push(
                "cluster_name",
                "must be at most 256 characters with kind = \"ec2\": it is every instance's cerebro:cluster tag",
            );
        }
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
        let recipe_dirs = recipe_dirs(file.recipe_dirs.as_ref(), &config_dir, &mut located);
        let dns = match &file.dns {
            Some(section) => {
                let env = |name: &str| std::env::var(name).ok();
                let (dns, problems) = dns::resolve(
                    section.get_ref(),
                    &dns::ResolveContext {
                        config_dir: &config_dir,
                        provider: provider.kind,
                        provider_endpoint_url: provider.endpoint_url.as_deref(),
                        at: section.span(),
                        env: &env,
                    },
                );
                located.extend(problems);
                dns
            }
            None => dns::DnsConfig::default_for(provider.kind),
        };
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
            idle_limit_per_zone: file
                .idle_limit_per_zone
                .into_iter()
                .map(|(zone, limit)| (zone.into_inner(), limit))
                .collect(),
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
            recipe_dirs,
            dns,
            provider,
        };
        if !located.is_empty() {
            let path = self
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            located.sort_by_key(|(span, _)| span.start);
            let mut problems: Vec<LocatedProblem> = located
                .into_iter()
                .map(|(span, message)| LocatedProblem {
                    path: path.clone(),
                    line_column: Some(line_column(&text, span.start)),
                    message,
                })
                .collect();
            problems.extend(errors.errors.iter().map(|e| LocatedProblem {
                path: path.clone(),
                line_column: None,
                message: e.to_string(),
            }));
            return Err(ConfigError::Located(problems));
        }
        errors.into_result(config).map_err(ConfigError::Invalid)
    }
}

/// The longest zone name: machine ids are `ZONE-N`, one DNS label and
/// one directory name, which must stay within 63 characters.
const MAX_ZONE_NAME: usize = 48;

/// Every served zone must make a DNS label of its own
/// ([`cerebro_types::dns::zone_label`]: `_` and `.` become `-`), since
/// zones name machines (`N.ZONE.basename`), and leave room in machine ids.
fn check_zone_labels(zones: &[String], errors: &mut ValidationErrors) {
    let mut labels: BTreeMap<String, &str> = BTreeMap::new();
    for zone in zones {
        if zone.chars().count() > MAX_ZONE_NAME {
            errors.push(
                "provider.zones",
                format!("zone '{zone}' is longer than {MAX_ZONE_NAME} characters: machine ids (ZONE-N) must stay one DNS label"),
            );
            continue;
        }
        let label = cerebro_types::dns::zone_label(zone);
        if let Err(message) = cerebro_types::dns::check_host_name(&label) {
            errors.push(
                "provider.zones",
                format!("zone '{zone}' is '{label}' in DNS names, which cannot be: {message}"),
            );
        } else if let Some(other) = labels.insert(label.clone(), zone) {
            errors.push(
                "provider.zones",
                format!("zones '{other}' and '{zone}' are both '{label}' in DNS names; rename one"),
            );
        }
    }
}

/// `recipe_dirs`, each entry joined to the config file's directory when
/// relative and made absolute (the clustersitter may change directory,
/// and recipe sources are shown to people). An empty entry, or one that
/// is not an existing directory, is a problem at its place in the file: a
/// typo would otherwise fall through to the shipped recipes unnoticed.
fn recipe_dirs(
    entries: Option<&Spanned<Vec<Spanned<String>>>>,
    config_dir: &std::path::Path,
    located: &mut Vec<ec2::Problem>,
) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for entry in entries.map(|e| e.get_ref().as_slice()).unwrap_or_default() {
        let text = entry.get_ref();
        if text.trim().is_empty() {
            located.push((
                entry.span(),
                "recipe_dirs: an entry must not be empty".into(),
            ));
            continue;
        }
        let joined = config_dir.join(text);
        let dir = std::path::absolute(&joined).unwrap_or(joined);
        if !dir.is_dir() {
            located.push((
                entry.span(),
                format!("recipe_dirs: '{}' is not a directory", dir.display()),
            ));
            continue;
        }
        dirs.push(dir);
    }
    dirs
}

/// Checks `[provider]` for its kind: the keys of another kind are
/// refused (located), the local provider's values are checked as they
/// always were (into `errors`), and EC2's settings are resolved zone by
/// zone (see [`ec2::resolve`]).
fn provider_config(
    section: ProviderSection,
    errors: &mut ValidationErrors,
    located: &mut Vec<ec2::Problem>,
) -> ProviderConfig {
    let kind = section
        .kind
        .as_ref()
        .map(|k| *k.get_ref())
        .unwrap_or_default();
    let defaults = ProviderConfig::default();
    let mut config = ProviderConfig {
        kind,
        zones: defaults.zones,
        machine_cpu: section
            .machine_cpu
            .as_ref()
            .map_or(defaults.machine_cpu, |v| *v.get_ref()),
        machine_mem: section
            .machine_mem
            .as_ref()
            .map_or(defaults.machine_mem, |v| *v.get_ref()),
        max_machines: section.max_machines.unwrap_or(defaults.max_machines),
        machinesitter_bin: section.machinesitter_bin.clone(),
        tasksitter_bin: section.tasksitter_bin.clone(),
        limits_backend: section.limits_backend.as_ref().map(|v| v.get_ref().clone()),
        endpoint_url: section
            .endpoint_url
            .as_ref()
            .map(|v| v.get_ref().trim_end_matches('/').to_string()),
        ec2: None,
    };
    match kind {
        ProviderKind::Local => {
            let foreign = [
                section
                    .endpoint_url
                    .as_ref()
                    .map(|v| ("endpoint_url", v.span())),
                section.ec2.as_ref().map(|v| ("ec2", v.span())),
            ];
            for (key, span) in foreign.into_iter().flatten() {
                located.push((
                    span,
                    format!("provider.{key} is a key of kind = \"ec2\", not of the local provider"),
                ));
            }
            if let Some(zones) = section.zones {
                config.zones = zones.into_inner();
            }
            let local = &config;
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
        ProviderKind::Ec2 => {
            let foreign = [
                section.zones.as_ref().map(|v| ("zones", "EC2 zones are [provider.ec2.zones.aws-<availability zone>] tables", v.span())),
                section.machine_cpu.as_ref().map(|v| ("machine_cpu", "an EC2 machine's size is its instance type's (provider.ec2.instance_types)", v.span())),
                section.machine_mem.as_ref().map(|v| ("machine_mem", "an EC2 machine's size is its instance type's (provider.ec2.instance_types)", v.span())),
                section.limits_backend.as_ref().map(|v| ("limits_backend", "EC2 machines pick their limits backend themselves", v.span())),
            ];
            for (key, why, span) in foreign.into_iter().flatten() {
                located.push((
                    span,
                    format!("provider.{key} is a key of the local provider, not of kind = \"ec2\": {why}"),
                ));
            }
            if let Some(url) = &section.endpoint_url {
                if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
                {
                    located.push((
                        url.span(),
                        "endpoint_url must be an http:// or https:// URL".into(),
                    ));
                }
            }
            match &section.ec2 {
                Some(ec2) => {
                    let (resolved, problems) = ec2::resolve(ec2.get_ref(), ec2.span());
                    located.extend(problems);
                    config.zones = resolved.zones.keys().cloned().collect();
                    config.ec2 = Some(resolved);
                }
                None => {
                    let at = section.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
                    located.push((
                        at,
                        "kind = \"ec2\" needs a [provider.ec2] section with at least one [provider.ec2.zones.aws-<availability zone>] table".into(),
                    ));
                    config.zones = Vec::new();
                    config.ec2 = Some(ec2::Ec2Config::default());
                }
            }
        }
    }
    config
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

    /// An example config read where it is, so its relative paths resolve.
    fn parse_example(name: &str) -> ClusterConfig {
        let path = format!("{}/../examples/clusters/{name}", env!("CARGO_MANIFEST_DIR"));
        Cli::try_parse_from(["clustersitter", "--config", &path])
            .unwrap()
            .into_config()
            .unwrap()
    }

    #[test]
    fn zones_that_would_share_or_break_dns_names_are_refused() {
        let mut errors = ValidationErrors::default();
        let zones: Vec<String> = ["a_b", "a-b", "_x", "ok", &"z".repeat(49)]
            .iter()
            .map(|z| z.to_string())
            .collect();
        check_zone_labels(&zones, &mut errors);
        let text = errors.to_string();
        assert!(
            text.contains("zones 'a_b' and 'a-b' are both 'a-b' in DNS names"),
            "{text}"
        );
        assert!(text.contains("zone '_x' is '-x' in DNS names"), "{text}");
        assert!(text.contains("longer than 48 characters"), "{text}");
        assert!(!text.contains("'ok'"), "{text}");
    }

    #[test]
    fn the_example_config_loads() {
        let config = parse_example("local.toml");
        assert!(config.recipe_dirs[0]
            .canonicalize()
            .unwrap()
            .ends_with("examples/recipes"));
        assert_eq!(config.zones().len(), 2);
        assert_eq!(config.addr.port(), 30000);
    }

    #[test]
    fn unknown_keys_are_located() {
        let error =
            parse_file("cluster_name = \"x\"\n\n[provider]\nkind = \"local\"\nzonez = [\"a\"]\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains(":5:1: unknown field `zonez`, did you mean `zones`?"),
            "{error}"
        );
    }

    #[test]
    fn the_ec2_example_config_loads() {
        let config = parse_example("ec2.toml");
        assert!(config.recipe_dirs[0]
            .canonicalize()
            .unwrap()
            .ends_with("examples/recipes"));
        assert_eq!(config.provider.kind, ProviderKind::Ec2);
        let ec2 = config.provider.ec2.as_ref().unwrap();
        assert_eq!(
            ec2.zones.keys().map(String::as_str).collect::<Vec<_>>(),
            ["aws-us-east-1b", "aws-us-west-2a"]
        );
        let west = &ec2.zones["aws-us-west-2a"];
        assert_eq!(west.region, "us-west-2");
        assert_eq!(west.availability_zone, "us-west-2a");
        assert!(west.ami.starts_with("ami-"));
        let zones = config.zones();
        assert_eq!(zones["aws-us-west-2a"], west.largest());
        assert_eq!(config.provider.zones.len(), 2);
    }

    const EC2_HEAD: &str = "cluster_name = \"x\"\n[provider]\nkind = \"ec2\"\n[provider.ec2]\n";

    /// The error of an EC2 config that is `EC2_HEAD` then `rest`.
    fn ec2_error(rest: &str) -> String {
        parse_file(&format!("{EC2_HEAD}{rest}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn ec2_zones_resolve_zone_over_region_over_default() {
        let config = parse_file(&format!(
            "{EC2_HEAD}ami = \"ami-default\"\ntags = {{ team = \"web\", tier = \"a\" }}\ninstance_types = [\"t3.large\", \"t3.micro\"]\n\
             [provider.ec2.regions.us-east-1]\nami = \"ami-east\"\ntags = {{ tier = \"b\" }}\n\
             [provider.ec2.zones.aws-us-east-1b]\nsubnet = \"subnet-1\"\n\
             [provider.ec2.zones.aws-us-west-2a]\nami = \"ami-west\"\nroot_volume_gb = 20\n"
        ))
        .unwrap();
        let ec2 = config.provider.ec2.unwrap();
        let east = &ec2.zones["aws-us-east-1b"];
        assert_eq!(east.ami, "ami-east");
        assert_eq!(east.subnet.as_deref(), Some("subnet-1"));
        assert_eq!(east.tags["tier"], "b");
        assert_eq!(east.tags["team"], "web");
        let names: Vec<_> = east.instance_types.iter().map(|t| t.name).collect();
        assert_eq!(names, ["t3.micro", "t3.large"]);
        let west = &ec2.zones["aws-us-west-2a"];
        assert_eq!(west.ami, "ami-west");
        assert_eq!(west.root_volume_gb, Some(20));
        assert_eq!(west.tags["tier"], "a");
    }

    #[test]
    fn an_unknown_ec2_zone_is_located() {
        let error = ec2_error("ami = \"ami-1\"\n[provider.ec2.zones.aws-mars-1a]\n");
        assert!(
            error.contains(":6:21: zone 'aws-mars-1a' is not aws-<region>"),
            "{error}"
        );
        let error = ec2_error("ami = \"ami-1\"\n[provider.ec2.zones.us-west-2a]\n");
        assert!(error.contains(":6:21: zone 'us-west-2a'"), "{error}");
    }

    #[test]
    fn an_unknown_region_is_located() {
        let error = ec2_error("[provider.ec2.regions.us-moon-1]\nami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\nami = \"ami-2\"\n");
        assert!(
            error.contains(":5:23: 'us-moon-1' is not a known AWS region"),
            "{error}"
        );
    }

    #[test]
    fn a_zone_without_an_ami_is_located() {
        let error = ec2_error(
            "[provider.ec2.regions.us-east-1]\nami = \"ami-1\"\n[provider.ec2.zones.aws-us-east-1b]\n[provider.ec2.zones.aws-us-west-2a]\n",
        );
        assert!(
            error.contains(":8:21: zone aws-us-west-2a has no AMI")
                && !error.contains("aws-us-east-1b has"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_instance_type_is_located() {
        let error = ec2_error(
            "ami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\ninstance_types = [\"t3.micro\", \"t9.huge\"]\n",
        );
        assert!(
            error.contains(":7:31: unknown instance type 't9.huge'"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_instance_type_list_is_located() {
        let error = ec2_error(
            "ami = \"ami-1\"\ninstance_types = []\n[provider.ec2.zones.aws-us-west-2a]\n",
        );
        assert!(
            error.contains(":6:18: instance_types must name at least one"),
            "{error}"
        );
    }

    #[test]
    fn a_zone_whose_largest_machine_is_no_real_type_is_located() {
        // c5.2xlarge has the most vCPUs, r5.xlarge the most memory: a need
        // of 6 cores and 20000 MB would pass admission and fit neither.
        let error = parse_file(&format!(
            "{EC2_HEAD}ami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\ninstance_types = [\"c5.2xlarge\", \"r5.xlarge\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":7:18: zone aws-us-west-2a: no allowed instance type has both"),
            "{error}"
        );
        // With a type that has both, the same list is fine.
        parse_file(&format!(
            "{EC2_HEAD}ami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\ninstance_types = [\"c5.2xlarge\", \"r5.xlarge\", \"m5.2xlarge\"]\n"
        ))
        .unwrap();
    }

    #[test]
    fn tags_ec2_would_refuse_are_located_and_limits_checked() {
        let long = "v".repeat(257);
        let error = parse_file(&format!(
            "{EC2_HEAD}ami = \"ami-1\"\ntags = {{ \"\" = \"x\", team = \"{long}\" }}\n[provider.ec2.zones.aws-us-west-2a]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":6:10: a tag key must be 1 to 128"),
            "{error}"
        );
        assert!(
            error.contains("tag 'team': its value is over 256"),
            "{error}"
        );
        let error = parse_file(&format!(
            "cluster_name = \"{}\"\n[provider]\nkind = \"ec2\"\nmax_machines = 0\n[provider.ec2]\nami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\n",
            "c".repeat(257)
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("cluster_name") && error.contains("provider.max_machines"),
            "{error}"
        );
    }

    #[test]
    fn an_idle_limit_for_an_unserved_zone_is_located() {
        let error = parse_file(&format!(
            "[idle_limit_per_zone]\naws-us-east-1c = 0\n{}ami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\n",
            EC2_HEAD.replace("cluster_name = \"x\"\n", "")
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":2:1: idle_limit_per_zone.aws-us-east-1c"),
            "{error}"
        );
    }

    #[test]
    fn keys_of_the_other_kind_are_refused() {
        let error = parse_file(
            "[provider]\nkind = \"ec2\"\nzones = [\"aws-us-west-2a\"]\nmachine_cpu = 2\n[provider.ec2]\nami = \"ami-1\"\n[provider.ec2.zones.aws-us-west-2a]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":3:9: provider.zones is a key of the local provider")
                && error.contains(":4:15: provider.machine_cpu is a key of the local provider"),
            "{error}"
        );
        let error = parse_file(
            "[provider]\nkind = \"local\"\nendpoint_url = \"http://x\"\n[provider.ec2]\nami = \"ami-1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":3:16: provider.endpoint_url is a key of kind = \"ec2\"")
                && error.contains("provider.ec2 is a key of kind = \"ec2\""),
            "{error}"
        );
    }

    #[test]
    fn an_ec2_provider_without_zones_is_refused() {
        let error = parse_file("[provider]\nkind = \"ec2\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(":2:8: kind = \"ec2\" needs a [provider.ec2]"),
            "{error}"
        );
    }

    #[test]
    fn recipe_dirs_are_relative_to_the_config_file_and_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("recipes/site")).unwrap();
        let path = dir.path().join("cluster.toml");
        let parse = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Cli::try_parse_from(["clustersitter", "--config", path.to_str().unwrap()])
                .unwrap()
                .into_config()
        };
        let absolute = dir.path().join("recipes");
        let config = parse(&format!(
            "recipe_dirs = [\"recipes/site\", \"{}\"]\n",
            absolute.display()
        ))
        .unwrap();
        assert_eq!(
            config.recipe_dirs,
            [dir.path().join("recipes/site"), absolute]
        );
        assert!(parse("").unwrap().recipe_dirs.is_empty());
        let error = parse("cluster_name = \"x\"\nrecipe_dirs = [\"recipes\", \"nope\", \"\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(":2:27: recipe_dirs: '") && error.contains("nope' is not a directory"),
            "{error}"
        );
        assert!(
            error.contains(":2:35: recipe_dirs: an entry must not be empty"),
            "{error}"
        );
        let error = parse("recipe_dirs = \"recipes\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains(":1:15:"), "{error}");
    }

    /// `text` as a config file beside `files` (name, content).
    fn parse_with_files(text: &str, files: &[(&str, &str)]) -> Result<ClusterConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        Cli::try_parse_from(["clustersitter", "--config", path.to_str().unwrap()])
            .unwrap()
            .into_config()
    }

    const KEY: &str =
        "key \"cerebro-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWJ5dGVz\";\n};\n";

    fn dns_error(text: &str) -> String {
        parse_with_files(text, &[("key.conf", KEY)])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn without_dns_a_local_cluster_runs_the_embedded_server() {
        let config = parse_file("").unwrap();
        assert_eq!(config.dns.kind, dns::DnsKind::Embedded);
        assert!(!config.dns.embedded.unwrap().configured);
    }

    #[test]
    fn an_rfc2136_section_reads_its_key_file() {
        let config = parse_with_files(
            "[dns]\nkind = \"rfc2136\"\nzone = \"Cerebro.Test.\"\nttl = 30\nperiod = \"10s\"\nserver = \"127.0.0.1:5353\"\nkey_file = \"key.conf\"\ntimeout = \"2s\"\n",
            &[("key.conf", KEY)],
        )
        .unwrap();
        let dns = config.dns;
        assert_eq!(dns.kind, dns::DnsKind::Rfc2136);
        assert_eq!(dns.zone.as_deref(), Some("cerebro.test"));
        assert_eq!(dns.ttl, 30);
        assert_eq!(dns.period, Duration::from_secs(10));
        let rfc = dns.rfc2136.unwrap();
        assert_eq!(rfc.server, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(rfc.key_name, "cerebro-key");
        assert_eq!(rfc.key_algorithm, "hmac-sha256");
        assert_eq!(rfc.key_secret.0, b"secret-bytes");
        assert_eq!(rfc.timeout, Duration::from_secs(2));
    }

    #[test]
    fn an_inline_key_works_too() {
        let config = parse_file(
            "[dns]\nkind = \"rfc2136\"\nzone = \"cerebro.test\"\nserver = \"127.0.0.1\"\nkey_name = \"k\"\nkey_secret = \"c2VjcmV0\"\nkey_algorithm = \"hmac-sha512\"\n",
        )
        .unwrap();
        let rfc = config.dns.rfc2136.unwrap();
        assert_eq!(rfc.server.port(), 53);
        assert_eq!(rfc.key_algorithm, "hmac-sha512");
    }

    #[test]
    fn rfc2136_needs_a_zone_a_server_and_a_key() {
        let error = dns_error("[dns]\nkind = \"rfc2136\"\n");
        assert!(
            error.contains(":2:8: kind = \"rfc2136\" needs dns.zone"),
            "{error}"
        );
        assert!(
            error.contains(":2:8: kind = \"rfc2136\" needs dns.server"),
            "{error}"
        );
        assert!(
            error.contains(":2:8: kind = \"rfc2136\" needs a TSIG key"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_key_file_or_algorithm_is_located() {
        let head =
            "[dns]\nkind = \"rfc2136\"\nzone = \"cerebro.test\"\nserver = \"127.0.0.1:53\"\n";
        let error = dns_error(&format!("{head}key_file = \"nope.conf\"\n"));
        assert!(
            error.contains(":5:12: dns.key_file: cannot read"),
            "{error}"
        );
        let error = parse_with_files(
            &format!("{head}key_file = \"key.conf\"\n"),
            &[("key.conf", "key \"k\" { algorithm hmac-sha256; };")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(":5:12: dns.key_file:") && error.contains("no secret"),
            "{error}"
        );
        let error = dns_error(&format!(
            "{head}key_file = \"key.conf\"\nkey_algorithm = \"hmac-md5\"\n"
        ));
        assert!(
            error.contains(":6:17: dns.key_algorithm: 'hmac-md5' is not one of"),
            "{error}"
        );
        let error = dns_error(&format!("{head}key_name = \"k\"\nkey_secret = \"!!\"\n"));
        assert!(
            error.contains(":6:14: dns.key_secret must be the key in base64"),
            "{error}"
        );
    }

    #[test]
    fn route53_and_dynect_need_a_zone_and_credentials() {
        let error = dns_error("[dns]\nkind = \"route53\"\n");
        assert!(
            error.contains(":2:8: kind = \"route53\" needs dns.zone"),
            "{error}"
        );
        let config = parse_file("[provider]\nkind = \"local\"\n[dns]\nkind = \"route53\"\nzone = \"z.test\"\nregion = \"eu-west-1\"\n").unwrap();
        let r53 = config.dns.route53.unwrap();
        assert_eq!(r53.region, "eu-west-1");
        assert_eq!(r53.endpoint_url, None);
        let error = dns_error(
            "[dns]\nkind = \"dynect\"\nzone = \"z.test\"\nuser = \"u\"\npassword_file = \"pw\"\n",
        );
        assert!(
            error.contains(":2:8: kind = \"dynect\" needs dns.customer"),
            "{error}"
        );
        assert!(
            error.contains(":5:17: dns.password_file: cannot read"),
            "{error}"
        );
        let config = parse_with_files(
            "[dns]\nkind = \"dynect\"\nzone = \"z.test\"\ncustomer = \"c\"\nuser = \"u\"\npassword_file = \"pw\"\napi_url = \"http://127.0.0.1:1/\"\n",
            &[("pw", "hunter2\n")],
        )
        .unwrap();
        let dyn_settings = config.dns.dynect.unwrap();
        assert_eq!(dyn_settings.password.0, b"hunter2");
        assert_eq!(dyn_settings.api_url, "http://127.0.0.1:1");
    }

    #[test]
    fn dynect_without_a_password_file_reads_the_environment() {
        let section: dns::DnsSection = toml::from_str(
            "kind = \"dynect\"\nzone = \"z.test\"\ncustomer = \"c\"\nuser = \"u\"\n",
        )
        .unwrap();
        let context = |env: &'static dyn Fn(&str) -> Option<String>| dns::ResolveContext {
            config_dir: std::path::Path::new("."),
            provider: ProviderKind::Local,
            provider_endpoint_url: None,
            at: 0..0,
            env,
        };
        let (config, problems) = dns::resolve(
            &section,
            &context(&|name| (name == dns::DYNECT_PASSWORD_ENV).then(|| "pw".to_string())),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.dynect.unwrap().password.0, b"pw");
        let (_, problems) = dns::resolve(&section, &context(&|_| None));
        assert!(problems[0].1.contains("needs a password"), "{problems:?}");
    }

    #[test]
    fn keys_of_another_dns_kind_and_bad_values_are_located() {
        let error = dns_error("[dns]\nkind = \"embedded\"\nserver = \"127.0.0.1:53\"\nlisten = \"localhost\"\nttl = 0\nzone = \"no zone\"\n");
        assert!(
            error.contains(
                ":3:10: dns.server is a key of kind = \"rfc2136\", not of kind = \"embedded\""
            ),
            "{error}"
        );
        assert!(
            error.contains(":4:10: dns.listen: 'localhost' is not an address"),
            "{error}"
        );
        assert!(
            error.contains(":5:7: dns.ttl must be 1 to 2147483647"),
            "{error}"
        );
        assert!(
            error.contains(":6:8: dns.zone: 'no zone' has the label 'no zone'"),
            "{error}"
        );
        let error = dns_error("[dns]\nkind = \"none\"\nbogus = 1\n");
        assert!(error.contains(":3:1: unknown field `bogus`"), "{error}");
        let config = parse_file("[dns]\nkind = \"embedded\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let embedded = config.dns.embedded.unwrap();
        assert!(embedded.configured);
        assert_eq!(embedded.listen.port(), 0);
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
