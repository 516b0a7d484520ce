//! What a machinesitter reports: its tasks and the machine itself.

use crate::task::{TaskSpec, TaskStatus};
use serde::{Deserialize, Serialize};

/// One task as the machinesitter sees it: the spec, whether it should run,
/// the live status from its tasksitter, and the tasksitter itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub spec: TaskSpec,
    pub run_requested: bool,
    pub deleting: bool,
    pub status: Option<TaskStatus>,
    pub tasksitter: Option<SitterView>,
    /// Tasksitters started for this task (re-adoption not counted).
    pub sitter_starts: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitterView {
    pub pid: i32,
    pub address: Option<String>,
    /// True while being replaced or removed.
    pub retiring: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: f64,
    pub mem_mb: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Vitals {
    /// Cores busy, summed over all cores.
    pub cpu_cores_used: f64,
    pub cpu_cores: usize,
    pub mem_used_mb: u64,
    pub mem_total_mb: u64,
    pub load_average: [f64; 3],
    pub disk_free_bytes: u64,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    pub name: String,
    pub state: Option<String>,
    pub cpu_cores: f64,
    pub rss_bytes: u64,
}

/// `GET /api/v1/status` of a machinesitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineStatus {
    pub machine_id: String,
    pub hostname: String,
    pub capacity: Resources,
    pub reserved: Resources,
    pub overcommit: bool,
    pub vitals: Vitals,
    pub tasks: Vec<TaskUsage>,
}
