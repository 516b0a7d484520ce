//! The task directory: the contract between a machinesitter and the
//! tasksitters it starts. The machinesitter writes the spec file and the
//! token before starting `tasksitter --spec-file <dir>/spec.json`; the
//! tasksitter writes its address file once it listens, and its runtime
//! record (`runtime.json`: its pid and start time, its address, its
//! workload's pid and cgroups) whenever that changes. The machinesitter
//! also keeps there what it wants for the task (`desired.json`: spec, run
//! state, deletion), so that a machinesitter that lost its state file
//! restores every task from these files alone, whether its tasksitter still
//! runs or not, and finds a running tasksitter again, or cleans what a dead
//! one left, without looking at any process's command line.

use crate::logs::file_stem;
use cerebro_types::TaskSpec;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The spec file's name inside a task directory.
pub const SPEC_FILE: &str = "spec.json";
/// The bearer token file's name inside a task directory.
pub const TOKEN_FILE: &str = "token";
/// The name of the file the tasksitter writes its bound `ip:port` to.
pub const ADDRESS_FILE: &str = "address";
/// The tasksitter's own stdout and stderr (not the workload's).
pub const SITTER_LOG_FILE: &str = "tasksitter.log";
/// The machinesitter's desired state for the task ([`DesiredState`]).
pub const DESIRED_FILE: &str = "desired.json";
/// The tasksitter's runtime record ([`RuntimeRecord`]).
pub const RUNTIME_FILE: &str = "runtime.json";

/// What a running tasksitter says about itself, written atomically by the
/// tasksitter (`--runtime-file`) at start and whenever a field changes.
/// `pid` and `start_ticks` prove which process wrote it (a pid alone may
/// have been reused); the workload's pid and cgroups are what must be
/// killed should the tasksitter die without cleaning up.
///
/// Unknown fields are ignored, not refused: a tasksitter binary upgraded
/// before its machinesitter may write more than the machinesitter knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// The tasksitter's pid.
    pub pid: i32,
    /// The tasksitter's start time in clock ticks since boot
    /// (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// Where its HTTP API listens (`ip:port`), when it serves one.
    #[serde(default)]
    pub address: Option<String>,
    /// The workload's pid (the leader of its process group) once it was
    /// started; kept after it exits, for the leftovers of its group.
    #[serde(default)]
    pub workload_pid: Option<u32>,
    /// The workload's cgroup directories (empty with the poll backend).
    #[serde(default)]
    pub cgroup_paths: Vec<String>,
}

impl RuntimeRecord {
    /// Writes the record to `path` atomically: a reader sees the previous
    /// record or this one, never a mix.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::fs::atomic_write_private(path, &bytes)
    }

    /// Reads the record at `path`.
    pub fn read(path: &Path) -> Result<Self, SpecFileError> {
        read_json(path)
    }

    /// Whether the process that wrote it still runs: the same pid, started
    /// at the same tick.
    pub fn is_alive(&self) -> bool {
        crate::process::is_alive(self.pid, self.start_ticks)
    }
}

/// What the machinesitter wants for one task, written atomically to the
/// task directory whenever it changes. It outlives the machinesitter's
/// state file: recovery reads it back for a task the state file does not
/// know, so a stopped task stays stopped and a deleted one stays deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// The spec asked for (the spec file holds the one the tasksitter runs).
    pub spec: TaskSpec,
    /// Whether the workload should run.
    pub run_requested: bool,
    /// A delete was asked for: stop it and remove it.
    pub deleting: bool,
    /// The TCP port allocated for each of the spec's named `ports`, kept
    /// here too so a task recovered from its directory keeps its ports.
    /// Absent from older files.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ports: std::collections::BTreeMap<String, u16>,
}

/// Where one task's files live under a machinesitter's state directory:
/// `<state>/tasks/<dir_name>/` (private: spec, token, address, the
/// tasksitter's log) and `<state>/logs/<dir_name>/` (the workload's logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDir {
    /// The private directory: spec file, token, address file.
    pub dir: PathBuf,
    /// The directory of the workload's stdout and stderr logs.
    pub logs: PathBuf,
    /// The workload's working directory when its spec sets no `cwd`
    /// (`<state>/work/<dir_name>/`): its own, kept across its restarts,
    /// removed with the task.
    pub work: PathBuf,
}

impl TaskDir {
    /// The directories of the task whose directory name is `dir_name` (see [`dir_name`]).
    pub fn new(state_dir: &Path, dir_name: &str) -> Self {
        Self {
            dir: tasks_root(state_dir).join(dir_name),
            logs: state_dir.join("logs").join(dir_name),
            work: state_dir.join("work").join(dir_name),
        }
    }

    /// The JSON `TaskSpec` the tasksitter runs.
    pub fn spec(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    /// The secret the tasksitter requires on its mutating endpoints.
    pub fn token(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }

    /// Where the tasksitter announces its HTTP address.
    pub fn address(&self) -> PathBuf {
        self.dir.join(ADDRESS_FILE)
    }

    /// The tasksitter's own output: usually why it exited, when it did.
    pub fn sitter_log(&self) -> PathBuf {
        self.dir.join(SITTER_LOG_FILE)
    }

    /// The machinesitter's [`DesiredState`] for the task.
    pub fn desired(&self) -> PathBuf {
        self.dir.join(DESIRED_FILE)
    }

    /// The tasksitter's [`RuntimeRecord`].
    pub fn runtime(&self) -> PathBuf {
        self.dir.join(RUNTIME_FILE)
    }

    /// The tasksitter's runtime record, if it wrote one that can be read.
    pub fn read_runtime(&self) -> Option<RuntimeRecord> {
        RuntimeRecord::read(&self.runtime()).ok()
    }

    /// Creates the private directory (mode 0700: it holds the token) and the
    /// log directory.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir_all(&self.logs)
    }

    /// Writes `desired` atomically (a reader sees the old file or the new
    /// one), creating the directories first.
    pub fn write_desired(&self, desired: &DesiredState) -> std::io::Result<()> {
        self.create()?;
        let mut bytes = serde_json::to_vec_pretty(desired).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::fs::atomic_write_private(&self.desired(), &bytes)
    }

    /// What the machinesitter last wanted for the task: the desired-state
    /// file, or, for a directory written before that file existed, the
    /// spec file (whose `auto_start` says whether the workload was to run).
    pub fn read_desired(&self) -> Result<DesiredState, SpecFileError> {
        let path = self.desired();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|source| SpecFileError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let spec = read_spec(&self.spec())?;
                Ok(DesiredState {
                    run_requested: spec.auto_start,
                    spec,
                    deleting: false,
                    ports: Default::default(),
                })
            }
            Err(source) => Err(SpecFileError::Read { path, source }),
        }
    }

    /// Creates the workload's working directory ([`TaskDir::work`]) if it
    /// is missing, owned by `owner` (uid, gid) when given, so a workload
    /// run as another user can write in it. What is in it is kept.
    /// Errors: the directory cannot be created, or given to `owner`.
    pub fn create_work(&self, owner: Option<(u32, u32)>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.work)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&self.work, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Removes the task's private directory, its workload's logs and its
    /// working directory, for a deleted task whose tasksitter is gone:
    /// nothing of a deleted task is kept. Missing directories are fine; the
    /// first other error is returned after every removal was tried.
    pub fn remove(&self) -> std::io::Result<()> {
        let mut result = Ok(());
        for dir in [&self.dir, &self.logs, &self.work] {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound && result.is_ok() => {
                    result = Err(e)
                }
                _ => {}
            }
        }
        result
    }

    /// The task directory whose spec file is `spec_file`, if `spec_file` is
    /// one directly under `<state_dir>/tasks/<dir_name>/`.
    pub fn of_spec_file(state_dir: &Path, spec_file: &Path) -> Option<(String, TaskDir)> {
        if spec_file.file_name()? != SPEC_FILE {
            return None;
        }
        let dir = spec_file.parent()?;
        if dir.parent()? != tasks_root(state_dir) {
            return None;
        }
        let dir_name = dir.file_name()?.to_str()?.to_string();
        let task_dir = TaskDir::new(state_dir, &dir_name);
        Some((dir_name, task_dir))
    }
}

/// A spec, desired-state or runtime file that cannot be read or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    /// The file could not be read (missing, unreadable).
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not what it should hold (a `TaskSpec`, a `DesiredState`,
    /// a `RuntimeRecord`).
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Reads a spec file (JSON `TaskSpec`, as the machinesitter writes it).
pub fn read_spec(path: &Path) -> Result<TaskSpec, SpecFileError> {
    read_json(path)
}

/// Reads one of the task directory's JSON files.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SpecFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SpecFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a spec file for `spec`; written atomically by the machinesitter.
pub fn spec_file_contents(spec: &TaskSpec) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(spec)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn tasks_root(state_dir: &Path) -> PathBuf {
    state_dir.join("tasks")
}

/// The names of the task directories under `<state_dir>/tasks`, sorted.
pub fn task_dir_names(state_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(tasks_root(state_dir))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A directory name for a task: a readable stem plus a hash of the full name,
/// so different names never share files.
pub fn dir_name(task_name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in task_name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let stem: String = file_stem(task_name).chars().take(48).collect();
    format!("{stem}-{:08x}", hash as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_are_distinct_and_safe() {
        assert_ne!(dir_name("a b"), dir_name("a_b"));
        assert!(dir_name("../../etc").starts_with("_.._etc-"));
        assert!(!dir_name("x/y").contains('/'));
        assert!(dir_name("-dash-first").starts_with("-dash-first-"));
    }

    #[test]
    fn a_spec_file_names_its_task_dir() {
        let state = Path::new("/var/lib/cerebro");
        let task = TaskDir::new(state, "web-0123abcd");
        let (name, found) = TaskDir::of_spec_file(state, &task.spec()).unwrap();
        assert_eq!((name.as_str(), &found), ("web-0123abcd", &task));
        assert!(TaskDir::of_spec_file(state, &task.token()).is_none());
        assert!(TaskDir::of_spec_file(Path::new("/elsewhere"), &task.spec()).is_none());
    }

    #[test]
    fn a_runtime_record_round_trips_and_tells_its_writer_is_alive() {
        let state = tempfile::tempdir().unwrap();
        let task = TaskDir::new(state.path(), "web-0123abcd");
        task.create().unwrap();
        assert!(task.read_runtime().is_none());
        let me = std::process::id() as i32;
        let record = RuntimeRecord {
            pid: me,
            start_ticks: crate::process::start_ticks(me).unwrap(),
            address: Some("127.0.0.1:4000".into()),
            workload_pid: Some(77),
            cgroup_paths: vec!["/sys/fs/cgroup/cerebro/web.1".into()],
        };
        record.write(&task.runtime()).unwrap();
        let read = task.read_runtime().unwrap();
        assert_eq!(read, record);
        assert!(read.is_alive());
        let reused = RuntimeRecord {
            start_ticks: record.start_ticks + 1,
            ..record
        };
        assert!(
            !reused.is_alive(),
            "same pid, another start: not the writer"
        );
        // A newer tasksitter's extra fields do not hide what we know.
        std::fs::write(
            task.runtime(),
            r#"{"pid": 1, "start_ticks": 2, "later_field": true}"#,
        )
        .unwrap();
        let read = task.read_runtime().unwrap();
        assert_eq!(
            (read.pid, read.start_ticks, read.workload_pid),
            (1, 2, None)
        );
    }
}
