//! The request and reply bodies of a tasksitter's HTTP API (`/api/v1/...`),
//! as the tasksitter writes them and the machinesitter's `TaskClient` reads
//! them. Results are enums that serialize to the words the API has always
//! answered with ("started", "not running", "sent SIGHUP").

use crate::error::ValidationErrors;
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
/// all unset reads the default tail. Every API that reads logs (both
/// sitters, the clustersitter) takes its query string apart with
/// [`LogQuery::from_pairs`]; any other key is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// The last this many lines.
    pub tail: Option<usize>,
    /// From this byte position in the stream (a chunk's `next_offset`).
    pub offset: Option<u64>,
    /// At most this many bytes.
    pub limit: Option<u64>,
}

impl LogQuery {
    /// The keys a log query may have.
    pub const KEYS: [&'static str; 3] = ["tail", "offset", "limit"];

    /// The query from a request's decoded `key=value` pairs, validated:
    /// a key that is not one of [`LogQuery::KEYS`], a value that is not a
    /// non-negative whole number, or `tail` and `offset` together are
    /// errors naming that key (`offset` for the pair).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ValidationErrors> {
        let mut query = LogQuery::default();
        let mut errors = ValidationErrors::default();
        for (key, value) in pairs {
            let Some(key) = Self::KEYS.into_iter().find(|k| k == key) else {
                errors.push(key.clone(), "unknown parameter (tail, offset, limit)");
                continue;
            };
            let Ok(number) = value.parse::<u64>() else {
                errors.push(key, format!("'{value}' is not a non-negative number"));
                continue;
            };
            match key {
                "tail" => query.tail = Some(usize::try_from(number).unwrap_or(usize::MAX)),
                "offset" => query.offset = Some(number),
                _ => query.limit = Some(number),
            }
        }
        if let Err(invalid) = query.validate() {
            errors.errors.extend(invalid.errors);
        }
        errors.into_result(query)
    }

    /// `tail` reads back from the end, `offset` forward from a position:
    /// a query may ask for one of them, not both (the error names `offset`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.tail.is_some() && self.offset.is_some() {
            errors.push("offset", "give either tail or offset, not both");
        }
        errors.into_result(())
    }

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

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_log_query_is_parsed_and_checked_in_one_place() {
        let query = LogQuery::from_pairs(&pairs(&[("offset", "7"), ("limit", "100")])).unwrap();
        assert_eq!(
            query,
            LogQuery {
                tail: None,
                offset: Some(7),
                limit: Some(100)
            }
        );
        assert_eq!(LogQuery::from_pairs(&[]).unwrap(), LogQuery::default());
        for (items, field) in [
            (&[("path", "/etc/passwd")][..], "path"),
            (&[("tail", "-1")][..], "tail"),
            (&[("limit", "lots")][..], "limit"),
            (&[("tail", "1"), ("offset", "0")][..], "offset"),
        ] {
            let errors = LogQuery::from_pairs(&pairs(items)).unwrap_err();
            assert_eq!(errors.errors[0].field, field, "{items:?}: {errors}");
        }
        let both = LogQuery {
            tail: Some(1),
            offset: Some(0),
            limit: None,
        };
        assert_eq!(both.validate().unwrap_err().errors[0].field, "offset");
        let unknown = serde_json::from_str::<LogQuery>(r#"{"tail": 1, "path": "x"}"#);
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
