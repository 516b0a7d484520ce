//! What the clustersitter serves and accepts: machines, job views with
//! their instances, placement plans, events and the cluster's status.

use crate::job::{JobSpec, Need};
use crate::machine::{Resources, Vitals};
use crate::task::StateKind;
use crate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where one instance of a job lives: the key is (job, zone, slot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceKey {
    pub job: String,
    pub zone: String,
    pub slot: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    pub key: InstanceKey,
    pub machine: String,
}

/// A machine the placement asks the provider for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    pub zone: String,
    /// The most the new machine may be asked to hold (the zone's machine
    /// size, or one just big enough for an oversized instance).
    pub size: Resources,
    /// What the instances it is for reserve together: a provider that
    /// sizes machines (EC2) starts the smallest one holding this.
    /// Absent from plans of older clustersitters: then `size`.
    #[serde(default)]
    pub reserved: Option<Resources>,
    /// The instances it is for, so the plan explains itself.
    pub for_instances: Vec<InstanceKey>,
}

/// What a provider tells about one of its machines, shown in the CLI and
/// the UI. Every field is optional: the local provider knows none of
/// them, EC2 all (from RunInstances and DescribeInstances).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDetails {
    /// The provider's machine type, e.g. `t3.small`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// e.g. `us-west-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// e.g. `us-west-2a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// The address other machines of the network reach it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// The address the internet reaches it at, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// The provider's own word for its state, e.g. `running`, `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_state: Option<String>,
}

impl ProviderDetails {
    /// Whether the provider told nothing (the local provider never does).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Region and availability zone as one, as people read them:
    /// `us-west-2 / us-west-2a`, or whichever of the two is known.
    pub fn region_and_zone(&self) -> Option<String> {
        match (&self.region, &self.availability_zone) {
            (Some(region), Some(az)) => Some(format!("{region} / {az}")),
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (None, None) => None,
        }
    }

    /// What the CLI and the UI show of a machine, as (label, value) in
    /// this order, leaving out what the provider did not tell: instance
    /// type, region / AZ, private address, public address, the
    /// provider's state.
    pub fn labelled(&self) -> Vec<(&'static str, String)> {
        [
            ("Instance type", self.instance_type.clone()),
            ("Region / AZ", self.region_and_zone()),
            ("Private address", self.private_address.clone()),
            ("Public address", self.public_address.clone()),
            ("Provider state", self.provider_state.clone()),
        ]
        .into_iter()
        .filter_map(|(label, value)| Some((label, value.filter(|v| !v.is_empty())?)))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    pub key: InstanceKey,
    pub need: Need,
    pub reason: String,
}

/// The output of placement: every instance on a machine, machines to
/// provision (instances waiting for them are in `unplaced` until they exist),
/// and what cannot be placed at all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub provision: Vec<ProvisionRequest>,
    pub unplaced: Vec<Unplaced>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    /// Asked of the provider; not registered yet.
    Provisioning,
    Ready,
    /// Missed at least the failure threshold of polls.
    Unreachable,
    /// Being terminated; its instances are placed elsewhere.
    Decommissioning,
}

impl MachineState {
    pub const ALL: [MachineState; 4] = [
        MachineState::Ready,
        MachineState::Provisioning,
        MachineState::Unreachable,
        MachineState::Decommissioning,
    ];

    /// The name people and the JSON see.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Provisioning => "provisioning",
            MachineState::Ready => "ready",
            MachineState::Unreachable => "unreachable",
            MachineState::Decommissioning => "decommissioning",
        }
    }

    /// Placement may put instances here (provisioning ones hold their slots).
    pub fn accepts_instances(self) -> bool {
        matches!(self, MachineState::Provisioning | MachineState::Ready)
    }

    /// Moves to `to` if [`MACHINE_TRANSITIONS`] allows it; staying in the
    /// same state is always allowed (and changes nothing).
    ///
    /// # Errors
    /// [`IllegalMachineTransition`] when the table does not have the move;
    /// the state is left as it was.
    pub fn transition(&mut self, to: MachineState) -> Result<(), IllegalMachineTransition> {
        if *self == to || MACHINE_TRANSITIONS.contains(&(*self, to)) {
            *self = to;
            Ok(())
        } else {
            Err(IllegalMachineTransition { from: *self, to })
        }
    }
}

/// Every move a machine's state may make. Decommissioning is the end: a
/// machine being terminated never becomes ready again.
pub const MACHINE_TRANSITIONS: &[(MachineState, MachineState)] = {
    use MachineState::*;
    &[
        (Provisioning, Ready),
        (Provisioning, Unreachable),
        (Provisioning, Decommissioning),
        (Ready, Unreachable),
        (Ready, Decommissioning),
        (Unreachable, Ready),
        (Unreachable, Decommissioning),
    ]
};

/// A machine state change [`MACHINE_TRANSITIONS`] does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a machine cannot go from {} to {}", from.as_str(), to.as_str())]
pub struct IllegalMachineTransition {
    pub from: MachineState,
    pub to: MachineState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: String,
    pub zone: String,
    pub provider: String,
    pub provider_id: Option<String>,
    /// Instance type, region and AZ, addresses: what the provider told.
    /// Absent from answers of older clustersitters.
    #[serde(default)]
    pub details: ProviderDetails,
    pub address: Option<String>,
    pub state: MachineState,
    pub capacity: Resources,
    pub reserved: Resources,
    pub created_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub missed_polls: u32,
    pub instances: Vec<InstanceView>,
    /// What its instances use, measured (the sum of their CPU cores and
    /// RSS in MB at the last poll), beside `reserved` (what placement
    /// set aside for them) and `capacity`. Absent from older answers.
    #[serde(default)]
    pub used: Resources,
    /// The figures of the host its machinesitter runs on (a shared host
    /// for the local provider: every local machine reports the same
    /// one). Not the machine's capacity.
    pub vitals: Option<Vitals>,
    /// Task names the machine runs for jobs this cluster does not know
    /// (its state was lost): kept running, never removed by the cluster.
    /// Absent from answers of older clustersitters.
    #[serde(default)]
    pub orphans: Vec<String>,
    /// Its DNS names (`N.ZONE.basename`, one per job with a
    /// `dns_basename` it runs), sorted. Absent from older answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance's number: job-wide and stable for its life (a zone
    /// growing or shrinking renumbers no other instance). It names the
    /// task (`JOB#N`), is its `CEREBRO_INSTANCE`, and is what `--instance`,
    /// `?instance=` and `/instances/N/` take. The zone is shown beside it.
    pub index: usize,
    pub job: String,
    pub zone: String,
    pub slot: u32,
    pub task_name: String,
    pub machine: Option<String>,
    /// The task's state as its machine last reported it; `pending` until placed and started.
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub restarts: u64,
    /// Limit violations (memory, cpu, time) since the task was created.
    pub violations: u64,
    pub cpu_cores: f64,
    pub rss_bytes: u64,
    pub started_at_ms: Option<u64>,
    /// The job generation this instance runs.
    pub generation: u64,
    /// Its deployment on its machine, for a job with a recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<crate::deploy::DeployStatus>,
    /// `N.ZONE.basename` of its machine, for a job with a
    /// `dns_basename`. Absent from older answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// The TCP port its machine allocated for each of the job's named
    /// `task_configuration.ports` (name -> port). Empty until its machine
    /// reported them, and in answers of older clustersitters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The address of its machine those ports are reached at (an IP or
    /// host name, without a port); absent while unplaced or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its health ([`crate::health::InstanceHealth::judge`]): what every
    /// count of running instances counts. Answers of older
    /// clustersitters lack it: then `unknown`.
    #[serde(default = "unknown_health")]
    pub health: crate::health::InstanceHealth,
    /// Whether the job wants it running now (its run request, else
    /// `auto_start`). Absent from older answers: then true.
    #[serde(default = "yes")]
    pub wanted_running: bool,
    /// Why it is pending, for a pending instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<crate::health::Pending>,
    /// How its process last ended and why (exit code or signal, the
    /// violation that ended it), while its machine's history holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<crate::health::ExitReason>,
    /// Restarts by its own policy within
    /// [`crate::health::CRASH_LOOP_WINDOW_MS`].
    #[serde(default)]
    pub recent_restarts: u32,
}

fn unknown_health() -> crate::health::InstanceHealth {
    crate::health::InstanceHealth::Unknown
}

fn yes() -> bool {
    true
}

impl InstanceView {
    /// Why it is not simply running, in words: its pending reason, or how
    /// its process last ended while it is not `running` (crash-looping,
    /// failed, starting again, stopped). Nothing for a running instance:
    /// an old end is history there, not a reason.
    pub fn why(&self) -> Option<String> {
        match (&self.pending, &self.last_exit) {
            (Some(pending), _) => Some(pending.message.clone()),
            _ if self.health == crate::health::InstanceHealth::Running => None,
            (None, Some(exit)) => Some(exit.to_string()),
            (None, None) => None,
        }
    }

    /// Each allocated port as `(name, "host:port")`, by name; an IPv6 host
    /// is bracketed (`[::1]:8080`), and without a known host the address
    /// is `:port`.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        let host = match self.host.as_deref() {
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            Some(h) => h.to_string(),
            None => String::new(),
        };
        self.ports
            .iter()
            .map(|(name, port)| (name.clone(), format!("{host}:{port}")))
            .collect()
    }
}

/// An instance's state as the API shows it: its task's state, or
/// `pending` while it has no task to report. Serialized as the lowercase
/// word (`running`, `pending`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Not placed, or placed and not reported by its machine yet.
    Pending,
    Stopped,
    Running,
    Stopping,
    Backoff,
    Exited,
    Fatal,
    /// A word this version does not know (from a newer clustersitter).
    #[serde(other)]
    Unknown,
}

impl InstanceState {
    /// The word the API and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Stopped => "stopped",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Backoff => "backoff",
            InstanceState::Exited => "exited",
            InstanceState::Fatal => "fatal",
            InstanceState::Unknown => "unknown",
        }
    }
}

impl From<StateKind> for InstanceState {
    fn from(kind: StateKind) -> Self {
        match kind {
            StateKind::Stopped => InstanceState::Stopped,
            StateKind::Running => InstanceState::Running,
            StateKind::Stopping => InstanceState::Stopping,
            StateKind::Backoff => InstanceState::Backoff,
            StateKind::Exited => InstanceState::Exited,
            StateKind::Fatal => InstanceState::Fatal,
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub target_generation: u64,
    pub machines_done: Vec<String>,
    pub machines_left: Vec<String>,
    pub current: Option<String>,
    pub started_ms: u64,
    /// Set while the update waits on a machine whose deployment failed:
    /// no further machine is switched until it succeeds (on a retry) or
    /// another update is requested. Absent from older answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<RolloutStop>,
}

/// Why a rolling update stopped: the first instance found whose
/// deployment of the release it was sent failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStop {
    pub machine: String,
    /// The instance's number ([`InstanceView::index`]).
    pub instance: usize,
    pub zone: String,
    /// The task name on the machine (`JOB#SLOT`).
    pub task: String,
    /// The release that failed ([`crate::deploy::Deployment::release_id`]).
    pub release: String,
    /// The step that failed, as [`crate::deploy::Step::label`] gives it.
    pub step: Option<String>,
    pub error: Option<String>,
    /// When the cluster saw it, in ms since the epoch.
    pub at_ms: u64,
}

impl std::fmt::Display for RolloutStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deploy of {} failed on {} (instance {}, {})",
            self.release, self.machine, self.instance, self.task
        )?;
        if let Some(step) = &self.step {
            write!(f, " at {step}")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

/// The recipe a job deploys with, as resolved when it was last submitted
/// or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeView {
    /// `deployment_recipe` as written.
    pub name: String,
    /// The file it was read from, or `builtin:NAME`.
    pub source: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub description: Option<String>,
    /// The steps' labels, in order.
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub name: String,
    pub spec: JobSpec,
    pub version: Option<String>,
    /// Bumped by every update; instances run `CEREBRO_JOB_GENERATION`.
    pub generation: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The instances the job asks for (its layout's count; a linked
    /// job's, those placement gave it). `instances` may list one more for
    /// a moment: one of a shrunk zone on its way out.
    pub desired_instances: usize,
    /// Instances whose health is `running`.
    pub running_instances: usize,
    pub instances: Vec<InstanceView>,
    /// Its instances rolled up ([`crate::health::JobHealth::of`]).
    /// Absent from older answers: then `unknown`.
    #[serde(default = "unknown_job_health")]
    pub health: crate::health::JobHealth,
    /// Its instances counted by health.
    #[serde(default)]
    pub health_counts: crate::health::HealthCounts,
    pub rollout: Option<RolloutView>,
    /// Set by a start (true) or stop (false) request; overrides `auto_start`.
    #[serde(default)]
    pub run_requested: Option<bool>,
    /// The recipe its instances deploy with, for a job with a
    /// `deployment_recipe` that resolved. Absent from older answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeView>,
    /// `ZONE.basename` of each zone the job is placed in, for a job with
    /// a `dns_basename`, sorted. Absent from older answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

fn unknown_job_health() -> crate::health::JobHealth {
    crate::health::JobHealth::Unknown
}

/// Whether a job's instances run, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A start request: every instance runs, whatever `auto_start` says.
    Started,
    /// A stop request: no instance runs.
    Stopped,
    /// No request; `auto_start: true`.
    Auto,
    /// No request; `auto_start: false`, so nothing runs until a start.
    OnStart,
}

impl JobView {
    pub fn run_mode(&self) -> RunMode {
        match (self.run_requested, self.spec.task_configuration.auto_start) {
            (Some(true), _) => RunMode::Started,
            (Some(false), _) => RunMode::Stopped,
            (None, true) => RunMode::Auto,
            (None, false) => RunMode::OnStart,
        }
    }
}

/// `POST /api/v1/jobs/{name}/update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    pub version: Option<String>,
    /// Seconds each machine's instances must run before the next machine restarts.
    #[serde(default)]
    pub min_healthy_secs: Option<f64>,
    /// Machines restarted at a time (default 1).
    #[serde(default)]
    pub max_parallel: Option<usize>,
}

/// The longest `version` an update may carry (it becomes `CEREBRO_JOB_VERSION`).
pub const MAX_VERSION_CHARS: usize = 128;
/// The longest `min_healthy_secs` of an update: one day.
pub const MAX_MIN_HEALTHY_SECS: f64 = 86_400.0;
/// The most machines an update may restart at a time.
pub const MAX_PARALLEL: usize = 1000;

impl UpdateRequest {
    /// `version` 1 to [`MAX_VERSION_CHARS`] characters without control
    /// characters (it goes into every instance's environment),
    /// `min_healthy_secs` 0 to [`MAX_MIN_HEALTHY_SECS`], `max_parallel` 1
    /// to [`MAX_PARALLEL`]. Errors name the request's keys.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(version) = &self.version {
            if version.is_empty() {
                errors.push(
                    "version",
                    "must not be empty (leave it out to keep the version)",
                );
            } else if let Err(message) = crate::job::validate_env_text(version, MAX_VERSION_CHARS) {
                errors.push("version", message);
            }
        }
        if let Some(secs) = self.min_healthy_secs {
            if !secs.is_finite() || !(0.0..=MAX_MIN_HEALTHY_SECS).contains(&secs) {
                errors.push("min_healthy_secs", "must be 0 to 86400 seconds");
            }
        }
        match self.max_parallel {
            Some(0) => errors.push("max_parallel", "must be at least 1"),
            Some(n) if n > MAX_PARALLEL => {
                errors.push("max_parallel", format!("must be at most {MAX_PARALLEL}"))
            }
            _ => {}
        }
        errors.into_result(())
    }
}

/// `PUT /api/v1/idle-limit`: idle machines kept per zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleLimitRequest {
    pub limit: u32,
    /// One zone only; every zone when absent.
    #[serde(default)]
    pub zone: Option<String>,
}

/// `POST /api/v1/machines/register`, sent by a machinesitter started with `--cluster-url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub machine_id: String,
    pub address: String,
    pub capacity: Resources,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The zone the machine is in, when it knows (`--zone`); needed to join a
    /// cluster that did not provision it.
    #[serde(default)]
    pub zone: Option<String>,
}

/// The most cores a machine may declare: more than any machine sold, so
/// only a mistake or a lie exceeds it.
pub const MAX_MACHINE_CPU: f64 = 4096.0;
/// The most memory a machine may declare, in MB (64 TiB).
pub const MAX_MACHINE_MEM_MB: f64 = 64.0 * 1024.0 * 1024.0;

/// Checks a machine's declared capacity: each of `cpu` (cores) and
/// `mem_mb` finite, above 0 and at most [`MAX_MACHINE_CPU`] /
/// [`MAX_MACHINE_MEM_MB`]. Errors name `PREFIX.cpu` and `PREFIX.mem_mb`.
pub fn validate_capacity(prefix: &str, capacity: Resources, errors: &mut ValidationErrors) {
    for (name, value, max, unit) in [
        ("cpu", capacity.cpu, MAX_MACHINE_CPU, "cores"),
        ("mem_mb", capacity.mem_mb, MAX_MACHINE_MEM_MB, "MB"),
    ] {
        if !(value.is_finite() && value > 0.0 && value <= max) {
            errors.push(
                format!("{prefix}.{name}"),
                format!("must be more than 0 and at most {max} {unit}"),
            );
        }
    }
}

/// Checks that `address` is a concrete `IP:PORT` a cluster can call: not
/// an unspecified (`0.0.0.0`, `::`), multicast or broadcast address, and
/// not port 0. The error says what is wrong.
pub fn validate_machine_address(address: &str) -> Result<std::net::SocketAddr, String> {
    let parsed: std::net::SocketAddr = address
        .parse()
        .map_err(|_| format!("'{address}' is not IP:PORT"))?;
    let ip = parsed.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(format!(
            "'{address}' is not an address a machine can be reached at"
        ));
    }
    if parsed.port() == 0 {
        return Err("port 0 is not a port a machine listens on".into());
    }
    Ok(parsed)
}

impl RegisterRequest {
    /// Every check that needs no cluster: `machine_id` a plain name,
    /// `address` concrete ([`validate_machine_address`]), `capacity`
    /// sane ([`validate_capacity`]), `zone` (when given) a zone name and
    /// `hostname` short and printable. Whether the zone is served is the
    /// cluster's check.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Err(message) = crate::job::validate_machine_id(&self.machine_id) {
            errors.push("machine_id", message);
        }
        if let Err(message) = validate_machine_address(&self.address) {
            errors.push("address", message);
        }
        validate_capacity("capacity", self.capacity, &mut errors);
        if let Some(zone) = &self.zone {
            if let Err(message) = crate::job::validate_zone_name(zone) {
                errors.push("zone", message);
            }
        }
        if let Some(hostname) = &self.hostname {
            if let Err(message) = crate::job::validate_env_text(hostname, 255) {
                errors.push("hostname", message);
            }
        }
        errors.into_result(())
    }
}

/// Something that happened in the cluster, for people: the API's
/// `/events`, the pages and the journal (`events.jsonl`) all hold these.
///
/// On the wire (one JSON object, also one journal line): `at_ms`, `kind`
/// (the category: `job`, `machine`, `provider`, `cluster`, as always),
/// `event` (the typed kind, e.g. `machine_unreachable`), `severity`,
/// `subject` (a job name, machine id or zone; `""` for none) and
/// `message`. Lines written before `event` existed still load: their kind
/// is [`ClusterEventKind::Unknown`] and the subject's type follows from the
/// category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireEvent", into = "WireEvent")]
pub struct ClusterEvent {
    pub at_ms: u64,
    pub kind: ClusterEventKind,
    pub subject: EventSubject,
    pub message: String,
    /// The machine a job event happened on (an instance's exit,
    /// violation or start), so the machine's page lists it too. Absent
    /// from older lines.
    pub machine: Option<String>,
}

impl ClusterEvent {
    /// Whether the event belongs on the page of `subject`: it is the
    /// subject, or (for a machine) the event happened on it.
    pub fn concerns(&self, subject: &EventSubject) -> bool {
        self.subject == *subject
            || matches!(subject, EventSubject::Machine(id) if self.machine.as_deref() == Some(id))
    }
}

/// How much an event matters to whoever watches the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine: placements, updates, machines coming and going on purpose.
    Info,
    /// Worth a look, not a failure by itself.
    Warning,
    /// Something went wrong: a machine lost, a limit violated, a call refused.
    Failure,
}

impl Severity {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Failure => "failure",
        }
    }

    /// The severity named `word`, if this version knows it.
    pub fn from_word(word: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Failure]
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventSubject {
    /// The cluster as a whole.
    None,
    Job(String),
    Machine(String),
    Zone(String),
}

impl EventSubject {
    /// The name as the wire and the pages show it (`""` for none).
    pub fn name(&self) -> &str {
        match self {
            EventSubject::None => "",
            EventSubject::Job(name) | EventSubject::Machine(name) | EventSubject::Zone(name) => {
                name
            }
        }
    }

    /// Whether this is job `name`.
    pub fn is_job(&self, name: &str) -> bool {
        matches!(self, EventSubject::Job(n) if n == name)
    }

    /// Whether this is machine `id`.
    pub fn is_machine(&self, id: &str) -> bool {
        matches!(self, EventSubject::Machine(m) if m == id)
    }
}

/// Which kind of thing an event kind is about; with the wire's subject
/// name it makes the [`EventSubject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    None,
    Job,
    Machine,
    Zone,
}

impl SubjectKind {
    /// The subject named `name` (none when `name` is empty).
    pub fn with(self, name: String) -> EventSubject {
        if name.is_empty() {
            return EventSubject::None;
        }
        match self {
            SubjectKind::None => EventSubject::None,
            SubjectKind::Job => EventSubject::Job(name),
            SubjectKind::Machine => EventSubject::Machine(name),
            SubjectKind::Zone => EventSubject::Zone(name),
        }
    }
}

/// Every kind of event the clustersitter records. The wire name
/// (`event`) is [`ClusterEventKind::name`]; the category (`kind`),
/// severity and subject follow from the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClusterEventKind {
    /// A job was submitted for the first time.
    JobCreated,
    /// A job's config changed (a task change rolls out).
    JobUpdated,
    /// A job that is not persistent was dropped at a restart.
    JobDropped,
    JobRemoved,
    /// A start or stop of every instance was requested.
    JobRunRequested,
    /// A rolling update began (by request).
    RolloutStarted,
    /// A rolling update moved on to another machine.
    RolloutStep,
    RolloutComplete,
    InstancePlaced,
    InstanceMoved,
    /// An instance was restarted by request.
    InstanceRestarted,
    /// An instance's process is up on its machine (first seen running
    /// after not running): the only event that says an instance runs.
    InstanceStarted,
    /// An instance's process ended and its policy restarts it: names the
    /// instance, its zone and machine, the exit code or signal, the
    /// violation that ended it, and its restart count.
    InstanceExited,
    /// An instance went past a limit: kind, measured value, limit, and
    /// whether the kernel killed it.
    InstanceViolation,
    /// An instance began crash-looping
    /// ([`crate::health::CRASH_LOOP_RESTARTS`] restarts within the window).
    InstanceCrashLooping,
    /// An instance failed: its tasksitter gave up, or it exited for good.
    InstanceFailed,
    /// The clustersitter asked the provider for a machine.
    MachineProvisioning,
    /// The provider started the machine.
    MachineStarted,
    /// The machine answered a poll and is ready.
    MachineReady,
    /// The machine missed the failure threshold of polls.
    MachineUnreachable,
    /// A provisioned machine never answered.
    MachineNeverCameUp,
    /// An unreachable machine is decommissioned; its instances move.
    MachineLost,
    /// A machine vanished while the clustersitter was down.
    MachineVanished,
    /// A machine found running at start was adopted.
    MachineAdopted,
    /// A known machine registered at a new address.
    MachineRegistered,
    /// An unknown machine joined by registering.
    MachineJoined,
    /// A decommissioned machine registered again; its tasks are removed.
    MachineStaleRegistered,
    /// An idle machine beyond the zone's limit is decommissioned.
    MachineIdleRetired,
    MachineTerminated,
    /// A machine now runs a task (its spec was put).
    TaskPut,
    TaskRemoved,
    /// A call to put or remove a task failed.
    TaskCallFailed,
    /// A task violated one of its limits.
    TaskViolation,
    /// A task restarted (by its own policy).
    TaskRestarted,
    /// The provider could not list its machines.
    ProviderListFailed,
    /// Provisioning failed: one event per zone and error code while the
    /// failures go on (later ones show in the zone's status).
    ProvisionFailed,
    /// A zone whose provisioning kept failing started a machine again.
    ProvisionRecovered,
    TerminateFailed,
    /// The idle limit changed (by request or the config).
    IdleLimitSet,
    /// The state file could not be read; machines come from the provider.
    StateFileUnreadable,
    /// The state file could not be read; its previous copy was taken.
    StateRecovered,
    /// A machine runs a task of a job this cluster does not know (its
    /// state was lost): kept running and reported, never removed.
    TaskOrphaned,
    /// A lost machine was terminated and confirmed gone: its instances
    /// may run elsewhere without running twice.
    MachineFenced,
    /// A lost machine could not be confirmed gone: its instances wait
    /// rather than run twice.
    FenceUnconfirmed,
    /// At start: the provider runs a machine of this cluster in a zone the
    /// cluster no longer serves. It is left running and not managed (nor
    /// counted against `max_machines`): only a person knows whether the
    /// zone went on purpose.
    MachineUnmanaged,
    /// A rolling update stopped at a machine whose deployment failed
    /// (once per stop; the message names machine, instance, step, error).
    RolloutStopped,
    /// An instance's deployment failed on its machine: the first failed
    /// attempt at a release (retries that fail again are in the deploy
    /// log, not here); names task, release, step and error.
    DeployFailed,
    /// An instance's release became ready on its machine (installed,
    /// switched to, every check passed).
    DeployReady,
    /// A job's `deployment_recipe` could not be resolved at start (an
    /// older state file without a snapshot): it runs as before, without
    /// deploying.
    RecipeUnresolved,
    /// The DNS provider failed a pass: one event per kind of failure
    /// (its code) while the failures go on; names the error.
    DnsFailed,
    /// The DNS provider answered again after failing.
    DnsRecovered,
    /// A job's names changed at the DNS provider (names added, changed
    /// and removed, in the message).
    DnsUpdated,
    /// A name Cerebro would write is held by another owner (records
    /// without Cerebro's ownership TXT, or another cluster's): left alone.
    DnsConflict,
    /// A kind this version does not know: a journal line written before
    /// kinds were typed (`name` empty) or by a newer clustersitter.
    Unknown {
        /// The wire category (`kind`).
        category: String,
        /// The wire kind (`event`); empty for an old line.
        name: String,
        /// As the line said; `info` when it did not say.
        severity: Severity,
    },
}

/// The known kinds and their wire names, written once: the macro makes
/// both [`ClusterEventKind::KNOWN`] and the name lookup from this table,
/// and the lookup's `match` has no catch-all, so a kind added to the enum
/// but not here does not compile (a kind missing from `KNOWN` would reload
/// from the journal as `Unknown`).
macro_rules! known_event_kinds {
    ($($kind:ident => $name:literal,)*) => {
        impl ClusterEventKind {
            /// Every known kind, for lookups by wire name.
            pub const KNOWN: &'static [ClusterEventKind] = &[$(ClusterEventKind::$kind),*];

            /// The wire name (`event`).
            pub fn name(&self) -> &str {
                match self {
                    $(ClusterEventKind::$kind => $name,)*
                    ClusterEventKind::Unknown { name, .. } => name,
                }
            }
        }
    };
}

known_event_kinds! {
    JobCreated => "job_created",
    JobUpdated => "job_updated",
    JobDropped => "job_dropped",
    JobRemoved => "job_removed",
    JobRunRequested => "job_run_requested",
    RolloutStarted => "rollout_started",
    RolloutStep => "rollout_step",
    RolloutComplete => "rollout_complete",
    InstancePlaced => "instance_placed",
    InstanceMoved => "instance_moved",
    InstanceRestarted => "instance_restarted",
    InstanceStarted => "instance_started",
    InstanceExited => "instance_exited",
    InstanceViolation => "instance_violation",
    InstanceCrashLooping => "instance_crash_looping",
    InstanceFailed => "instance_failed",
    MachineProvisioning => "machine_provisioning",
    MachineStarted => "machine_started",
    MachineReady => "machine_ready",
    MachineUnreachable => "machine_unreachable",
    MachineNeverCameUp => "machine_never_came_up",
    MachineLost => "machine_lost",
    MachineVanished => "machine_vanished",
    MachineAdopted => "machine_adopted",
    MachineRegistered => "machine_registered",
    MachineJoined => "machine_joined",
    MachineStaleRegistered => "machine_stale_registered",
    MachineIdleRetired => "machine_idle_retired",
    MachineTerminated => "machine_terminated",
    TaskPut => "task_put",
    TaskRemoved => "task_removed",
    TaskCallFailed => "task_call_failed",
    TaskViolation => "task_violation",
    TaskRestarted => "task_restarted",
    ProviderListFailed => "provider_list_failed",
    ProvisionFailed => "provision_failed",
    ProvisionRecovered => "provision_recovered",
    TerminateFailed => "terminate_failed",
    IdleLimitSet => "idle_limit_set",
    StateFileUnreadable => "state_file_unreadable",
    StateRecovered => "state_recovered",
    TaskOrphaned => "task_orphaned",
    MachineFenced => "machine_fenced",
    FenceUnconfirmed => "fence_unconfirmed",
    MachineUnmanaged => "machine_unmanaged",
    RolloutStopped => "rollout_stopped",
    RecipeUnresolved => "recipe_unresolved",
    DeployFailed => "deploy_failed",
    DeployReady => "deploy_ready",
    DnsFailed => "dns_failed",
    DnsRecovered => "dns_recovered",
    DnsUpdated => "dns_updated",
    DnsConflict => "dns_conflict",
}

impl ClusterEventKind {
    /// The category the wire has always called `kind`: `job`, `machine`,
    /// `provider` or `cluster`.
    pub fn category(&self) -> &str {
        use ClusterEventKind::*;
        match self {
            JobCreated | JobUpdated | JobDropped | JobRemoved | JobRunRequested
            | RolloutStarted | RolloutStep | RolloutComplete | InstancePlaced | InstanceMoved
            | InstanceRestarted | RolloutStopped | RecipeUnresolved | InstanceStarted
            | InstanceExited | InstanceViolation | InstanceCrashLooping | InstanceFailed => "job",
            MachineProvisioning
            | MachineStarted
            | MachineReady
            | MachineUnreachable
            | MachineNeverCameUp
            | MachineLost
            | MachineVanished
            | MachineAdopted
            | MachineRegistered
            | MachineJoined
            | MachineStaleRegistered
            | MachineIdleRetired
            | MachineTerminated
            | TaskPut
            | TaskRemoved
            | TaskCallFailed
            | TaskViolation
            | TaskRestarted
            | TaskOrphaned
            | MachineFenced
            | DeployFailed
            | DeployReady => "machine",
            ProviderListFailed | ProvisionFailed | ProvisionRecovered | TerminateFailed
            | FenceUnconfirmed | MachineUnmanaged => "provider",
            IdleLimitSet | StateFileUnreadable | StateRecovered => "cluster",
            DnsFailed | DnsRecovered | DnsUpdated | DnsConflict => "dns",
            Unknown { category, .. } => category,
        }
    }

    /// How much it matters; the UI counts and marks failures.
    pub fn severity(&self) -> Severity {
        use ClusterEventKind::*;
        match self {
            MachineUnreachable | MachineLost | MachineVanished | TaskCallFailed | TaskViolation
            | ProviderListFailed | ProvisionFailed | TerminateFailed | StateFileUnreadable
            | FenceUnconfirmed | RolloutStopped | DeployFailed | DnsFailed | InstanceViolation
            | InstanceCrashLooping | InstanceFailed => Severity::Failure,
            MachineNeverCameUp
            | MachineStaleRegistered
            | TaskRestarted
            | StateRecovered
            | TaskOrphaned
            | MachineUnmanaged
            | RecipeUnresolved
            | DnsConflict
            | InstanceExited => Severity::Warning,
            Unknown { severity, .. } => *severity,
            _ => Severity::Info,
        }
    }

    /// What the subject names.
    pub fn subject_kind(&self) -> SubjectKind {
        use ClusterEventKind::*;
        match self {
            ProviderListFailed | StateFileUnreadable | StateRecovered | DnsFailed
            | DnsRecovered => SubjectKind::None,
            DnsUpdated | DnsConflict => SubjectKind::Job,
            IdleLimitSet | ProvisionRecovered => SubjectKind::Zone,
            Unknown { category, .. } => match category.as_str() {
                "job" => SubjectKind::Job,
                // Provider events name the machine they were about.
                "machine" | "provider" => SubjectKind::Machine,
                // The only named cluster subject ever written: a zone's idle limit.
                "cluster" => SubjectKind::Zone,
                _ => SubjectKind::None,
            },
            kind if kind.category() == "job" => SubjectKind::Job,
            _ => SubjectKind::Machine,
        }
    }

    /// The kind with wire name `name` in `category`; an unknown one is kept as it was.
    pub fn from_wire(category: &str, name: &str, severity: Option<Severity>) -> Self {
        Self::KNOWN
            .iter()
            .find(|k| k.name() == name)
            .cloned()
            .unwrap_or_else(|| ClusterEventKind::Unknown {
                category: category.to_string(),
                name: name.to_string(),
                severity: severity.unwrap_or(Severity::Info),
            })
    }
}

/// [`ClusterEvent`] as JSON. `event` and `severity` are newer than the
/// rest, so lines without them load too.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    at_ms: u64,
    kind: String,
    #[serde(default)]
    event: String,
    /// A word, not a [`Severity`]: one this version does not know must not
    /// cost the line.
    #[serde(default)]
    severity: Option<String>,
    subject: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
}

/// The severity of a line journaled before kinds were typed: such a line
/// has only its message, and the UI of that time counted it a failure by
/// these words, so it keeps the weight it was shown with (read once, here,
/// and never for a typed event).
fn legacy_severity(message: &str) -> Severity {
    const FAILURE_WORDS: [&str; 6] = [
        "unreachable",
        "died",
        "violat",
        "cannot",
        "rescheduling",
        "gone",
    ];
    if FAILURE_WORDS.iter().any(|word| message.contains(word)) {
        Severity::Failure
    } else {
        Severity::Info
    }
}

impl From<WireEvent> for ClusterEvent {
    fn from(wire: WireEvent) -> Self {
        let severity = wire
            .severity
            .as_deref()
            .and_then(Severity::from_word)
            .or_else(|| {
                wire.event
                    .is_empty()
                    .then(|| legacy_severity(&wire.message))
            });
        let kind = ClusterEventKind::from_wire(&wire.kind, &wire.event, severity);
        let subject = kind.subject_kind().with(wire.subject);
        ClusterEvent {
            at_ms: wire.at_ms,
            kind,
            subject,
            message: wire.message,
            machine: wire.machine,
        }
    }
}

impl From<ClusterEvent> for WireEvent {
    fn from(event: ClusterEvent) -> Self {
        WireEvent {
            at_ms: event.at_ms,
            kind: event.kind.category().to_string(),
            event: event.kind.name().to_string(),
            severity: Some(event.kind.severity().as_str().to_string()),
            subject: event.subject.name().to_string(),
            message: event.message,
            machine: event.machine,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub machines: usize,
    pub idle_machines: usize,
    pub idle_limit: u32,
    pub capacity: Resources,
    pub reserved: Resources,
    /// While the provider keeps failing to start machines in this zone:
    /// the last failure and when the next attempt is. Absent when the
    /// last attempt worked, and from answers of older clustersitters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_error: Option<ProvisioningError>,
}

/// A zone's streak of failed provisioning attempts, as
/// [`ZoneStatus::provisioning_error`] shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningError {
    /// The provider's error code (EC2's `InvalidAMIID.NotFound`,
    /// `InsufficientInstanceCapacity`...), or a word naming a failure of
    /// the provider itself (`limit`, `io`...).
    pub code: String,
    /// The last failure, in the provider's words.
    pub message: String,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub next_attempt_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub provider: String,
    pub zones: Vec<ZoneStatus>,
    pub jobs: usize,
    pub machines: usize,
    pub desired_instances: usize,
    /// Instances whose health is `running` (`instances.running`).
    pub running_instances: usize,
    /// Every instance counted by health. Absent from older answers.
    #[serde(default)]
    pub instances: crate::health::HealthCounts,
    /// Jobs by health: `healthy`, `degraded`, `failing` → count.
    /// Absent from older answers.
    #[serde(default)]
    pub jobs_by_health: BTreeMap<crate::health::JobHealth, usize>,
    pub unplaced: Vec<Unplaced>,
    pub uptime_secs: u64,
}

/// What a job request did; serialized as the strings the API has always
/// answered with (`created`, `updated`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    /// `PUT /jobs/{name}` for a new job (HTTP 201).
    Created,
    /// `PUT /jobs/{name}` that changed the job.
    Updated,
    /// `PUT /jobs/{name}` with the job as it already was.
    Unchanged,
    /// `DELETE /jobs/{name}`.
    Deleted,
    /// `POST /jobs/{name}/update`: a rolling update began.
    Updating,
    /// `POST /jobs/{name}/start`.
    Starting,
    /// `POST /jobs/{name}/stop`.
    Stopping,
    /// `POST /jobs/{name}/instances/{index}/restart`.
    Restarting,
}

impl JobResult {
    /// The wire string, for people.
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Created => "created",
            JobResult::Updated => "updated",
            JobResult::Unchanged => "unchanged",
            JobResult::Deleted => "deleted",
            JobResult::Updating => "updating",
            JobResult::Starting => "starting",
            JobResult::Stopping => "stopping",
            JobResult::Restarting => "restarting",
        }
    }
}

/// The body of every answer to a job request (`PUT`/`DELETE /jobs/{name}`,
/// `/update`, `/start`, `/stop`, instance restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub result: JobResult,
    /// The job after the request; absent when it is gone or not asked for.
    pub job: Option<JobView>,
}

/// `POST /api/v1/plan`: the placement a batch of jobs would get, applying nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReply {
    /// The names of the jobs in the request body, in its order.
    pub jobs: Vec<String>,
    pub plan: Plan,
    /// What the plan cannot do as asked, in sentences for people: e.g.
    /// `the plan needs 11 new machines in zone local-a but max_machines
    /// allows 8 (3 in use)`. Absent when empty (and from older clusters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The number each planned instance has or would get
    /// ([`InstanceView::index`]). Absent from older clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<PlannedInstance>,
}

/// A planned instance's job-wide number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInstance {
    pub key: InstanceKey,
    pub number: u32,
}

impl PlanReply {
    /// The number of the planned instance `key`, if the cluster told it.
    pub fn number_of(&self, key: &InstanceKey) -> Option<u32> {
        self.numbers
            .iter()
            .find(|p| p.key == *key)
            .map(|p| p.number)
    }
}

/// What a machine's registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterResult {
    /// A machine the cluster knew: its address and capacity are updated.
    Registered,
    /// A machine the cluster did not know joined a served zone.
    Joined,
}

/// One program the clustersitter serves to its machines, as
/// `GET /api/v1/binaries` lists it (token holders only); its bytes are at
/// `GET /api/v1/binaries/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryInfo {
    /// `machinesitter` or `tasksitter`.
    pub name: String,
    /// Lowercase hex SHA-256 (FIPS 180-4) of the bytes served.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// The answer to `POST /api/v1/machines/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub result: RegisterResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_request_is_bounded() {
        assert_eq!(UpdateRequest::default().validate(), Ok(()));
        let ok = UpdateRequest {
            version: Some("v".repeat(MAX_VERSION_CHARS)),
            min_healthy_secs: Some(86_400.0),
            max_parallel: Some(MAX_PARALLEL),
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = UpdateRequest {
            version: Some("v".repeat(MAX_VERSION_CHARS + 1)),
            min_healthy_secs: Some(f64::NAN),
            max_parallel: Some(MAX_PARALLEL + 1),
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["version", "min_healthy_secs", "max_parallel"]);
        for version in ["", "a\0b", "v2\nX=1", "\u{7f}"] {
            let bad = UpdateRequest {
                version: Some(version.into()),
                ..UpdateRequest::default()
            };
            assert!(bad.validate().is_err(), "{version:?}");
        }
    }

    #[test]
    fn a_registration_is_checked_field_by_field() {
        let good = RegisterRequest {
            machine_id: "m-1".into(),
            address: "127.0.0.1:40000".into(),
            capacity: Resources {
                cpu: 2.0,
                mem_mb: 1024.0,
            },
            hostname: Some("box".into()),
            zone: Some("zone-a".into()),
        };
        assert_eq!(good.validate(), Ok(()));
        let fields = |request: RegisterRequest| -> Vec<String> {
            request
                .validate()
                .unwrap_err()
                .errors
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        for (cpu, mem_mb) in [(-5.0, 1.0), (f64::NAN, 1.0), (1e308, 1.0), (0.0, 1.0)] {
            let mut bad = good.clone();
            bad.capacity = Resources { cpu, mem_mb };
            assert_eq!(fields(bad), ["capacity.cpu"], "{cpu}");
        }
        let mut bad = good.clone();
        bad.capacity.mem_mb = f64::INFINITY;
        assert_eq!(fields(bad), ["capacity.mem_mb"]);
        for address in [
            "0.0.0.0:0",
            "[::]:1",
            "127.0.0.1:0",
            "255.255.255.255:1",
            "x:1",
            "",
        ] {
            let mut bad = good.clone();
            bad.address = address.into();
            assert_eq!(fields(bad), ["address"], "{address}");
        }
        let mut bad = good.clone();
        bad.hostname = Some("a\0b".into());
        bad.zone = Some("../z".into());
        assert_eq!(fields(bad), ["zone", "hostname"]);
    }

    #[test]
    fn a_decommissioning_machine_never_becomes_ready_again() {
        for to in MachineState::ALL {
            let mut state = MachineState::Decommissioning;
            let result = state.transition(to);
            if to == MachineState::Decommissioning {
                assert_eq!(result, Ok(()));
            } else {
                assert_eq!(
                    result,
                    Err(IllegalMachineTransition {
                        from: MachineState::Decommissioning,
                        to
                    })
                );
                assert_eq!(state, MachineState::Decommissioning);
            }
        }
    }

    #[test]
    fn the_machine_table_allows_the_moves_the_cluster_makes() {
        use MachineState::*;
        for (from, to) in [
            (Provisioning, Ready),
            (Provisioning, Unreachable),
            (Ready, Unreachable),
            (Unreachable, Ready),
            (Unreachable, Decommissioning),
            (Ready, Decommissioning),
            (Provisioning, Decommissioning),
        ] {
            let mut state = from;
            assert_eq!(state.transition(to), Ok(()), "{from:?} -> {to:?}");
            assert_eq!(state, to);
        }
        let mut state = Ready;
        assert!(state.transition(Provisioning).is_err());
        assert_eq!(state, Ready);
    }

    #[test]
    fn every_known_event_kind_round_trips_by_name() {
        for kind in ClusterEventKind::KNOWN {
            let event = ClusterEvent {
                at_ms: 5,
                kind: kind.clone(),
                subject: kind.subject_kind().with("x".into()),
                message: "m".into(),
                machine: Some("m-1".into()),
            };
            let line = serde_json::to_string(&event).unwrap();
            let back: ClusterEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(back, event, "{line}");
        }
    }

    #[test]
    fn old_journal_lines_load_with_a_typed_subject() {
        let old = [
            (
                r#"{"at_ms":1,"kind":"job","subject":"local-a-1","message":"config created"}"#,
                EventSubject::Job("local-a-1".into()),
            ),
            (
                r#"{"at_ms":2,"kind":"machine","subject":"local-a-1","message":"unreachable: missed 3 polls"}"#,
                EventSubject::Machine("local-a-1".into()),
            ),
            (
                r#"{"at_ms":3,"kind":"provider","subject":"local-a-2","message":"cannot provision: no"}"#,
                EventSubject::Machine("local-a-2".into()),
            ),
            (
                r#"{"at_ms":4,"kind":"cluster","subject":"","message":"idle limit set to 1 in every zone"}"#,
                EventSubject::None,
            ),
            (
                r#"{"at_ms":5,"kind":"cluster","subject":"zone-a","message":"idle limit set to 2"}"#,
                EventSubject::Zone("zone-a".into()),
            ),
        ];
        for (line, subject) in old {
            let event: ClusterEvent = serde_json::from_str(line).unwrap();
            assert_eq!(event.subject, subject, "{line}");
            assert!(matches!(event.kind, ClusterEventKind::Unknown { .. }));
            let failed = line.contains("unreachable") || line.contains("cannot");
            assert_eq!(
                event.kind.severity() == Severity::Failure,
                failed,
                "an old line keeps the weight the UI gave it: {line}"
            );
            // Written back, the category and subject are what they were.
            let again = serde_json::to_value(&event).unwrap();
            let was: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in ["at_ms", "kind", "subject", "message"] {
                assert_eq!(again[field], was[field], "{line}");
            }
        }
    }

    #[test]
    fn an_unknown_kind_from_a_newer_file_is_kept() {
        let line = r#"{"at_ms":1,"kind":"dns","event":"dns_zone_frozen","severity":"failure","subject":"a","message":"m","extra":1}"#;
        let stranger = r#"{"at_ms":1,"kind":"job","event":"job_paused","severity":"dire","subject":"a","message":"m"}"#;
        let event: ClusterEvent = serde_json::from_str(stranger).unwrap();
        assert_eq!(event.kind.severity(), Severity::Info);
        assert!(event.subject.is_job("a"));
        let event: ClusterEvent = serde_json::from_str(line).unwrap();
        assert_eq!(event.kind.name(), "dns_zone_frozen");
        assert_eq!(event.kind.category(), "dns");
        assert_eq!(event.kind.severity(), Severity::Failure);
    }

    #[test]
    fn the_subject_of_a_job_is_not_a_machine_of_the_same_name() {
        let job: ClusterEvent = serde_json::from_str(
            r#"{"at_ms":1,"kind":"job","event":"job_created","subject":"local-a-1","message":""}"#,
        )
        .unwrap();
        assert!(job.subject.is_job("local-a-1"));
        assert!(!job.subject.is_machine("local-a-1"));
    }

    #[test]
    fn instance_states_keep_their_words() {
        for (state, word) in [
            (InstanceState::Pending, "\"pending\""),
            (InstanceState::Running, "\"running\""),
            (InstanceState::Backoff, "\"backoff\""),
        ] {
            assert_eq!(serde_json::to_string(&state).unwrap(), word);
            assert_eq!(serde_json::from_str::<InstanceState>(word).unwrap(), state);
        }
        assert_eq!(
            serde_json::from_str::<InstanceState>("\"hibernating\"").unwrap(),
            InstanceState::Unknown
        );
        for kind in [StateKind::Running, StateKind::Fatal, StateKind::Stopped] {
            assert_eq!(InstanceState::from(kind).as_str(), kind.to_string());
        }
    }

    #[test]
    fn job_results_keep_their_words() {
        assert_eq!(
            serde_json::to_string(&JobResult::Created).unwrap(),
            "\"created\""
        );
        assert_eq!(
            serde_json::to_string(&JobResult::Unchanged).unwrap(),
            "\"unchanged\""
        );
        assert_eq!(
            serde_json::to_string(&RegisterResult::Joined).unwrap(),
            "\"joined\""
        );
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn endpoints_join_the_host_and_each_port_and_older_answers_decode() {
        let json = serde_json::json!({
            "index": 0, "job": "web", "zone": "a", "slot": 0, "task_name": "web#0",
            "machine": "m", "state": "running", "pid": 7, "restarts": 0, "violations": 0,
            "cpu_cores": 0.0, "rss_bytes": 0, "started_at_ms": null, "generation": 1
        });
        let mut view: InstanceView = serde_json::from_value(json).expect("an older answer");
        assert!(view.ports.is_empty() && view.endpoints().is_empty());
        view.ports = [("http".to_string(), 8080u16), ("admin".to_string(), 8081)].into();
        view.host = Some("fd00::5".into());
        assert_eq!(
            view.endpoints(),
            vec![
                ("admin".to_string(), "[fd00::5]:8081".to_string()),
                ("http".to_string(), "[fd00::5]:8080".to_string()),
            ]
        );
        view.host = Some("10.0.0.5".into());
        assert_eq!(view.endpoints()[1].1, "10.0.0.5:8080");
    }
}
