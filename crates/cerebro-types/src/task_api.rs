//! The request and reply bodies of a tasksitter's HTTP API (`/api/v1/...`),
//! as the tasksitter writes them and the machinesitter's `TaskClient` reads
//! them. Results are enums that serialize to the words the API has always
//! answered with ("started", "not running", "sent SIGHUP").

use crate::task::{LogFileInfo, TaskStatus};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A control action on a task's workload: the last path segment of
/// `POST /api/v1/{action}` on a tasksitter and of
/// `POST /api/v1/tasks/{name}/{action}` on a machinesitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    Start,
    Stop,
    Restart,
}

impl TaskAction {
    /// Every action, in the order error messages list them.
    pub const ALL: [TaskAction; 3] = [TaskAction::Start, TaskAction::Stop, TaskAction::Restart];

    /// The path segment: `start`, `stop` or `restart`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskAction::Start => "start",
            TaskAction::Stop => "stop",
            TaskAction::Restart => "restart",
        }
    }
}

impl fmt::Display for TaskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskAction {
    type Err = String;
    /// Errors name the unknown word and the three known ones.
    fn from_str(s: &str) -> Result<Self, String> {
        TaskAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action '{s}' (start, stop, restart)"))
    }
}

/// What a tasksitter did with a control or signal request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ControlResult {
    AlreadyRunning,
    Started,
    Stopping,
    Stopped,
    NotRunning,
    Restarting,
    /// The signal (its name without `SIG`, e.g. `HUP`) was sent to the workload's group.
    Signalled(String),
}

impl fmt::Display for ControlResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlResult::AlreadyRunning => f.write_str("already running"),
            ControlResult::Started => f.write_str("started"),
            ControlResult::Stopping => f.write_str("stopping"),
            ControlResult::Stopped => f.write_str("stopped"),
            ControlResult::NotRunning => f.write_str("not running"),
            ControlResult::Restarting => f.write_str("restarting"),
            ControlResult::Signalled(name) => write!(f, "sent SIG{name}"),
        }
    }
}

impl FromStr for ControlResult {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "already running" => ControlResult::AlreadyRunning,
            "started" => ControlResult::Started,
            "stopping" => ControlResult::Stopping,
            "stopped" => ControlResult::Stopped,
            "not running" => ControlResult::NotRunning,
            "restarting" => ControlResult::Restarting,
            other => match other.strip_prefix("sent SIG") {
                Some(name) if !name.is_empty() => ControlResult::Signalled(name.to_string()),
                _ => return Err(format!("unknown control result '{other}'")),
            },
        })
    }
}

impl From<ControlResult> for String {
    fn from(result: ControlResult) -> String {
        result.to_string()
    }
}

impl TryFrom<String> for ControlResult {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The reply to a tasksitter's start, stop, restart and signal requests:
/// what was done and the status right after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    pub result: ControlResult,
    pub status: TaskStatus,
}

/// `POST /api/v1/signal` body on a tasksitter: `{"signal": "HUP"}`, with or
/// without `SIG`, any case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    pub signal: String,
}

/// `GET /api/v1/logs` of a tasksitter: every log file it captures, live
/// files and rotated backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogList {
    pub files: Vec<LogFileInfo>,
}

/// Which piece of a log file to read (`GET .../logs/{stream}?tail=&offset=&limit=`);
/// all unset reads the default tail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The last this many lines.
    pub tail: Option<usize>,
    /// From this byte position in the stream (a chunk's `next_offset`).
    pub offset: Option<u64>,
    /// At most this many bytes.
    pub limit: Option<u64>,
}

impl LogQuery {
    /// The query string without `?`, only the fields that are set
    /// (`tail=2&limit=100`); empty when none is.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(tail) = self.tail {
            parts.push(format!("tail={tail}"));
        }
        if let Some(offset) = self.offset {
            parts.push(format!("offset={offset}"));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        parts.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_results_are_the_words_the_api_always_answered() {
        for (result, word) in [
            (ControlResult::AlreadyRunning, "already running"),
            (ControlResult::Started, "started"),
            (ControlResult::Stopping, "stopping"),
            (ControlResult::Stopped, "stopped"),
            (ControlResult::NotRunning, "not running"),
            (ControlResult::Restarting, "restarting"),
            (ControlResult::Signalled("HUP".into()), "sent SIGHUP"),
        ] {
            let json = serde_json::to_string(&result).unwrap();
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<ControlResult>(&json).unwrap(),
                result
            );
        }
        assert!("exploded".parse::<ControlResult>().is_err());
    }

    #[test]
    fn actions_parse_from_their_path_segment() {
        for action in TaskAction::ALL {
            assert_eq!(action.as_str().parse::<TaskAction>().unwrap(), action);
        }
        assert_eq!(
            "explode".parse::<TaskAction>().unwrap_err(),
            "unknown action 'explode' (start, stop, restart)"
        );
    }

    #[test]
    fn a_log_query_names_only_what_is_set() {
        assert_eq!(LogQuery::default().to_query_string(), "");
        let query = LogQuery {
            tail: Some(2),
            offset: None,
            limit: Some(10),
        };
        assert_eq!(query.to_query_string(), "tail=2&limit=10");
    }
}
