//! The machine's task set as persisted in `<state-dir>/state.json`: written
//! with the atomic-write helper after every change, moved aside (never
//! overwritten) when it cannot be read.

use cerebro_host::fs::StateFile;
use cerebro_types::deploy::{DeployStatus, Deployment};
use cerebro_types::TaskSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    pub version: u32,
    pub tasks: BTreeMap<String, TaskRecord>,
}

/// One task: what was asked for and the tasksitter that runs it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    /// Directory name under `tasks/` and `logs/`, unique per task name.
    pub dir_name: String,
    /// Whether the workload should run (auto_start, then start/stop requests).
    pub run_requested: bool,
    pub deleting: bool,
    pub runtime: Option<Runtime>,
    /// Tasksitters started for this task, adoption not counted.
    #[serde(default)]
    pub sitter_starts: u64,
    /// The deployment the task was PUT with: its release is installed
    /// before the task runs on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// The release switched to (what `current` points at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Deployed>,
    /// Where the desired release stands (attempts, failures, retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployStatus>,
    /// The TCP port allocated for each of the spec's named `ports`: kept
    /// for the task's life here, so its restarts (and the machinesitter's)
    /// find it on the same ports. Absent from older state files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

/// The release a task's `current` link points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    /// Its id ([`Deployment::release_id`]).
    pub release: String,
    /// Every check passed while the task ran on it (or it has none).
    pub ready: bool,
    /// The spec (as PUT) the task ran on this release when a newer
    /// release was asked for: it keeps running on it, unchanged, until the
    /// newer one is switched to. `None` while this is the release wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<TaskSpec>,
}

/// The tasksitter process serving a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub pid: i32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22): with the
    /// pid it identifies the process even after the pid is reused.
    pub start_ticks: u64,
    /// The spec it was started with; a different desired spec means replace it.
    pub spec: TaskSpec,
    pub address: Option<String>,
    pub workload_pid: Option<u32>,
    #[serde(default)]
    pub cgroup_paths: Vec<String>,
    /// When SIGTERM was sent to retire it, in ms since the epoch.
    #[serde(default)]
    pub stop_sent_ms: Option<u64>,
}

impl Runtime {
    /// The tasksitter a runtime record describes, running `spec`.
    pub fn from_record(record: cerebro_host::layout::RuntimeRecord, spec: TaskSpec) -> Self {
        Self {
            pid: record.pid,
            start_ticks: record.start_ticks,
            spec,
            address: record.address,
            workload_pid: record.workload_pid,
            cgroup_paths: record.cgroup_paths,
            stop_sent_ms: None,
        }
    }
}

pub enum Loaded {
    Fresh,
    Read(PersistedState),
    /// Unreadable: moved to `moved_to`.
    Corrupt {
        moved_to: PathBuf,
        error: String,
    },
}

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

pub fn load(state_dir: &Path) -> Loaded {
    let check = |state: &PersistedState| {
        if state.version == STATE_VERSION {
            Ok(())
        } else {
            Err(format!("unknown state version {}", state.version))
        }
    };
    match cerebro_host::fs::read_state_file(&state_path(state_dir), check) {
        StateFile::Fresh => Loaded::Fresh,
        StateFile::Read(state) => Loaded::Read(state),
        StateFile::Corrupt { moved_to, error } => Loaded::Corrupt { moved_to, error },
    }
}

pub fn save(state_dir: &Path, state: &PersistedState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    cerebro_host::fs::atomic_write(&state_path(state_dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Loaded::Fresh));
        let mut state = PersistedState {
            version: STATE_VERSION,
            ..Default::default()
        };
        state.tasks.insert(
            "Portal Server".into(),
            TaskRecord {
                spec: TaskSpec::new("Portal Server", "sleep 1"),
                dir_name: "Portal_Server-1".into(),
                run_requested: true,
                deleting: false,
                runtime: None,
                sitter_starts: 0,
                deployment: None,
                deployed: None,
                deploy: None,
                ports: BTreeMap::from([("http".to_string(), 20000)]),
            },
        );
        save(dir.path(), &state).unwrap();
        match load(dir.path()) {
            Loaded::Read(read) => assert_eq!(read, state),
            _ => panic!("expected the saved state"),
        }
        std::fs::write(state_path(dir.path()), b"{ not json").unwrap();
        let Loaded::Corrupt { moved_to, .. } = load(dir.path()) else {
            panic!("expected corrupt")
        };
        assert_eq!(
            std::fs::read(&moved_to).unwrap(),
            b"{ not json",
            "kept, not overwritten"
        );
        assert!(matches!(load(dir.path()), Loaded::Fresh));
    }

    /// A version-1 file as the machinesitter wrote it before tasksitters were
    /// started on spec files (and one older still, without the later
    /// defaulted fields), kept in testdata/v1-older beside the current v1
    /// files of testdata/v1: it must keep loading.
    #[test]
    fn a_version_1_fixture_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/v1-older/machinesitter/state.json"
        );
        std::fs::copy(fixture, state_path(dir.path())).unwrap();
        let Loaded::Read(state) = load(dir.path()) else {
            panic!("the version 1 fixture must load")
        };
        assert_eq!(state.tasks.len(), 3);
        let dash = &state.tasks["-dash-first"];
        let runtime = dash.runtime.as_ref().unwrap();
        assert_eq!((runtime.pid, runtime.start_ticks), (4242, 123456));
        assert_eq!(runtime.spec, dash.spec);
        assert_eq!(dash.spec.mem, Some(300.0));
        assert_eq!(dash.sitter_starts, 3);
        let old = state.tasks["old"].runtime.as_ref().unwrap();
        assert!(old.cgroup_paths.is_empty() && old.stop_sent_ms.is_none());
        assert_eq!(state.tasks["old"].sitter_starts, 0);
    }
}
