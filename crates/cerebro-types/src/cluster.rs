//! What the clustersitter serves and accepts: machines, job views with
//! their instances, placement plans, events and the cluster's status.

use crate::job::{JobSpec, Need};
use crate::machine::{Resources, Vitals};
use serde::{Deserialize, Serialize};

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
    pub size: Resources,
    /// The instances it is for, so the plan explains itself.
    pub for_instances: Vec<InstanceKey>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: String,
    pub zone: String,
    pub provider: String,
    pub provider_id: Option<String>,
    pub address: Option<String>,
    pub state: MachineState,
    pub capacity: Resources,
    pub reserved: Resources,
    pub created_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub missed_polls: u32,
    pub instances: Vec<InstanceView>,
    pub vitals: Option<Vitals>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Position in the job's instance list (sorted by zone, then slot).
    pub index: usize,
    pub job: String,
    pub zone: String,
    pub slot: u32,
    pub task_name: String,
    pub machine: Option<String>,
    /// The task's state as its machine last reported it; `pending` until placed and started.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    /// Limit violations (memory, cpu, time) since the task was created.
    pub violations: u64,
    pub cpu_cores: f64,
    pub rss_bytes: u64,
    pub started_at_ms: Option<u64>,
    /// The job generation this instance runs.
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub target_generation: u64,
    pub machines_done: Vec<String>,
    pub machines_left: Vec<String>,
    pub current: Option<String>,
    pub started_ms: u64,
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
    pub desired_instances: usize,
    pub running_instances: usize,
    pub instances: Vec<InstanceView>,
    pub rollout: Option<RolloutView>,
    /// Set by a start (true) or stop (false) request; overrides `auto_start`.
    #[serde(default)]
    pub run_requested: Option<bool>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    pub at_ms: u64,
    /// job, machine, provider, cluster
    pub kind: String,
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub machines: usize,
    pub idle_machines: usize,
    pub idle_limit: u32,
    pub capacity: Resources,
    pub reserved: Resources,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub provider: String,
    pub zones: Vec<ZoneStatus>,
    pub jobs: usize,
    pub machines: usize,
    pub desired_instances: usize,
    pub running_instances: usize,
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

/// The answer to `POST /api/v1/machines/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub result: RegisterResult,
}
