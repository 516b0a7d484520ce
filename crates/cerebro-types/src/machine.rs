//! What a machinesitter reports (its tasks and the machine itself) and the
//! reply bodies of its API, as the machinesitter writes them and the
//! `MachineClient` reads them.

use crate::task::{StateKind, TaskSpec, TaskStatus};
use crate::task_api::{ControlResult, TaskAction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// The deployment the task was PUT with (its recipe and what fills
    /// it); absent for tasks without a recipe and from older machinesitters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::deploy::Deployment>,
    /// Where that deployment stands on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<crate::deploy::DeployStatus>,
    /// The TCP port allocated for each of the spec's named `ports`
    /// (name -> port on this machine); empty for a task without ports and
    /// in answers of older machinesitters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitterView {
    pub pid: i32,
    pub address: Option<String>,
    /// True while being replaced or removed.
    pub retiring: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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

/// One task's line in the machine's status: what its tasksitter last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    pub name: String,
    /// The workload's state (`"running"`, `"stopped"`, ...); `None` until
    /// its tasksitter has answered a status poll.
    pub state: Option<StateKind>,
    /// Cores used, averaged over the last second.
    pub cpu_cores: f64,
    /// Resident memory of the workload's tree.
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

/// One line of a machinesitter's history (`GET /api/v1/events`, newest
/// first), also what its events journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub task: String,
    pub message: String,
}

/// What a `PUT /api/v1/tasks/{name}` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutResult {
    /// A new task (answered with 201).
    Created,
    /// The spec differs from the one held; it replaces it.
    Updated,
    /// The same spec again: nothing changed.
    Unchanged,
}

impl PutResult {
    /// `created`, `updated` or `unchanged`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PutResult::Created => "created",
            PutResult::Updated => "updated",
            PutResult::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for PutResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `PUT /api/v1/tasks/{name}`: the task spec's fields, plus
/// `deployment` for an instance of a job with a recipe (the machinesitter
/// installs it before the task starts; see [`crate::deploy`]).
#[derive(Debug, Clone, Serialize)]
pub struct TaskPut<'a> {
    #[serde(flatten)]
    pub spec: &'a TaskSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<&'a crate::deploy::Deployment>,
}

/// The reply to `PUT /api/v1/tasks/{name}`: what changed and the task now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutReply {
    pub result: PutResult,
    pub task: TaskView,
}

/// What a machinesitter did with a delete or a control action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ActionResult {
    /// `DELETE`: the task and its tasksitter are gone (200).
    Deleted,
    /// `DELETE`: still stopping after the wait; it goes on (202).
    Deleting,
    /// A control action recorded while the task has no tasksitter listening
    /// yet; it applies once one does (202).
    Recorded(TaskAction),
    /// A control action as the task's tasksitter answered it (200).
    Done(ControlResult),
}

impl std::fmt::Display for ActionResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionResult::Deleted => f.write_str("deleted"),
            ActionResult::Deleting => f.write_str("deleting"),
            ActionResult::Recorded(action) => {
                write!(f, "{action}{RECORDED_SUFFIX}")
            }
            ActionResult::Done(result) => result.fmt(f),
        }
    }
}

/// What follows the action's name in `ActionResult::Recorded`'s text.
const RECORDED_SUFFIX: &str = " recorded; the tasksitter is starting";

impl std::str::FromStr for ActionResult {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deleted" => Ok(ActionResult::Deleted),
            "deleting" => Ok(ActionResult::Deleting),
            other => match other.strip_suffix(RECORDED_SUFFIX) {
                Some(action) => action.parse().map(ActionResult::Recorded),
                None => other.parse().map(ActionResult::Done),
            },
        }
    }
}

impl From<ActionResult> for String {
    fn from(result: ActionResult) -> String {
        result.to_string()
    }
}

impl TryFrom<String> for ActionResult {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The reply to `DELETE /api/v1/tasks/{name}` and `POST /api/v1/tasks/{name}/{action}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReply {
    pub result: ActionResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialize_to_the_words_the_api_always_answered() {
        for (result, word) in [
            (PutResult::Created, "created"),
            (PutResult::Updated, "updated"),
            (PutResult::Unchanged, "unchanged"),
        ] {
            assert_eq!(
                serde_json::to_string(&result).unwrap(),
                format!("\"{word}\"")
            );
        }
        for (result, word) in [
            (ActionResult::Deleted, "deleted"),
            (ActionResult::Deleting, "deleting"),
            (
                ActionResult::Recorded(TaskAction::Stop),
                "stop recorded; the tasksitter is starting",
            ),
            (ActionResult::Done(ControlResult::Restarting), "restarting"),
            (
                ActionResult::Done(ControlResult::AlreadyRunning),
                "already running",
            ),
        ] {
            let json = serde_json::to_string(&result).unwrap();
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<ActionResult>(&json).unwrap(), result);
        }
    }

    /// A task's state in the machine status is typed, and on the wire the
    /// same string it always was (`"state": "running"`, or null before the
    /// first poll).
    #[test]
    fn task_usage_states_keep_their_words() {
        let usage = TaskUsage {
            name: "web".into(),
            state: Some(StateKind::Running),
            cpu_cores: 0.5,
            rss_bytes: 1024,
        };
        let json = serde_json::to_value(&usage).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(serde_json::from_value::<TaskUsage>(json).unwrap(), usage);
        let unpolled = r#"{"name": "web", "state": null, "cpu_cores": 0.0, "rss_bytes": 0}"#;
        assert_eq!(
            serde_json::from_str::<TaskUsage>(unpolled).unwrap().state,
            None
        );
    }
}
