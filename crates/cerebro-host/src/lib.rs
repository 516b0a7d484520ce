//! What a Cerebro task is on this host's OS, shared by the tasksitter (which
//! lives in it) and the machinesitter (which sets it up and cleans after it):
//!
//! - `layout`: the task directory (spec file, token, address file, the
//!   tasksitter's own log) and the directory-name rule;
//! - `logs`: the workload's log file names and how a chunk of one is read;
//! - `cgroup` and `proctree`: the two enforcement backends, and killing what
//!   a cgroup still holds;
//! - `run_as`: resolving the user and group a task runs as, and `check_host`,
//!   the one check of a spec against this host (users, groups, working
//!   directory, what the limits backend can enforce) that both sitters
//!   make, its errors naming spec fields.
//!
//! - `fs`: atomic writes (temp file, fsync, rename, fsync dir) and state
//!   files that are moved aside, never overwritten, when unreadable;
//! - `process`: a process's identity (pid + start time, so a reused pid is
//!   never mistaken for it), finding processes by command line, and
//!   awaiting any process's exit through a pidfd;
//! - `lock`: the daemons' one rule for a poisoned mutex.
//!
//! Nothing here speaks HTTP or knows the supervisor's loop.

pub mod cgroup;
pub mod fs;
pub mod layout;
pub mod logs;
pub mod process;
pub mod proctree;
pub mod run_as;

pub use layout::TaskDir;
pub use run_as::{check_host, resolve_run_as, BackendChoice, RunAs, RunAsError};

/// A mutex's guard even if a panicking holder poisoned it: the daemons keep
/// plain data behind their locks, and going on beats stopping supervision.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
