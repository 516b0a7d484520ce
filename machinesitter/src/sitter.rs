//! Tasksitter processes as the machinesitter sees them: checking a spec,
//! starting one on its spec file in a session of its own, finding running
//! ones again from their task directories' runtime records, and cleaning
//! what a dead one left.

use crate::state::Runtime;
use cerebro_host::process::start_ticks;
use cerebro_host::{BackendChoice, TaskDir};
use cerebro_types::TaskSpec;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The open-file limit the machinesitter was started with. It raises its
/// own soft limit to the hard one (it holds a pidfd and a connection per
/// task), and gives every tasksitter, and so every workload, this one back.
static INHERITED_OPEN_FILES: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises this process's soft open-file limit to its hard limit, once.
pub fn raise_open_file_limit() -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let inherited = *INHERITED_OPEN_FILES.get_or_init(|| limit);
    let raised = libc::rlimit {
        rlim_cur: inherited.rlim_max,
        rlim_max: inherited.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks a spec exactly as the tasksitter will when it starts under
/// `backend`: `TaskSpec::validate`, then the host check (users, groups,
/// working directory, what the backend can enforce). Every problem is
/// reported, each naming its spec field.
pub fn check_spec(
    spec: &TaskSpec,
    backend: BackendChoice,
) -> Result<(), cerebro_types::ValidationErrors> {
    let mut errors = spec.validate().err().unwrap_or_default();
    if let Err(host) = cerebro_host::check_host(spec, backend) {
        errors.errors.extend(host.errors);
    }
    errors.into_result(())
}

/// Writes `spec` as the task's spec file, atomically: a tasksitter starting,
/// or a machinesitter rediscovering, reads a whole spec or none.
pub fn write_spec(paths: &TaskDir, spec: &TaskSpec) -> std::io::Result<()> {
    let contents = cerebro_host::layout::spec_file_contents(spec).map_err(std::io::Error::other)?;
    cerebro_host::fs::atomic_write_private(&paths.spec(), &contents)
}

/// Creates the task's own working directory ([`TaskDir::work`]) for a
/// spec that runs in it, owned by the spec's user (and group) when it runs
/// as another, so the workload may write there. Errors: the user or group
/// does not resolve, or the directory cannot be created or given away.
pub fn prepare_work_dir(paths: &TaskDir, spec: &TaskSpec) -> std::io::Result<()> {
    let owner = cerebro_host::resolve_run_as(spec.uid.as_ref(), spec.gid.as_ref())
        .map_err(std::io::Error::other)?
        .map(|run_as| (run_as.uid, run_as.gid));
    paths.create_work(owner)
}

/// The secret in the task's token file, if it has one.
pub fn read_secret(paths: &TaskDir) -> Option<String> {
    std::fs::read_to_string(paths.token())
        .ok()
        .map(|s| s.trim().to_string())
}

/// Starts a tasksitter for `spec` in a session of its own, so it outlives the machinesitter.
pub fn spawn(
    bin: &Path,
    spec: &TaskSpec,
    paths: &TaskDir,
    backend: BackendChoice,
    run: bool,
) -> std::io::Result<(Child, Runtime)> {
    paths.create()?;
    if read_secret(paths).is_none_or(|s| s.is_empty()) {
        let secret = cerebro_web::auth::random_secret()?;
        cerebro_host::fs::atomic_write_private(&paths.token(), secret.as_bytes())?;
    }
    // A previous tasksitter's files must not describe the new one.
    let _ = std::fs::remove_file(paths.address());
    let _ = std::fs::remove_file(paths.runtime());
    let mut spec = spec.clone();
    // The spec file carries whether the workload starts, so a rediscovered
    // tasksitter tells whether its task was meant to run.
    spec.auto_start = run;
    write_spec(paths, &spec)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.sitter_log())?;
    let mut command = Command::new(bin);
    command
        .arg("--spec-file")
        .arg(paths.spec())
        .args([
            "--limits-backend",
            backend.as_flag(),
            "--linger",
            "--http-monitoring",
        ])
        .args(["--http-monitoring-port", "0", "--http-address-file"])
        .arg(paths.address())
        .arg("--token-file")
        .arg(paths.token())
        .arg("--runtime-file")
        .arg(paths.runtime())
        .arg("--stdout-location")
        .arg(&paths.logs)
        .arg("--stderr-location")
        .arg(&paths.logs)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let open_files = INHERITED_OPEN_FILES.get().copied();
    // SAFETY: setsid, setrlimit, close_range and fcntl are async-signal-safe;
    // the closure touches only its own copy of the limit.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The tasksitter outlives us: a descriptor we inherited by
            // accident would stay open in it, and in its workloads, for good.
            cerebro_host::process::cloexec_above_stderr()?;
            if let Some(limit) = &open_files {
                if libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    let pid = child.id() as i32;
    let start_ticks = start_ticks(pid).unwrap_or(0);
    Ok((
        child,
        Runtime {
            pid,
            start_ticks,
            spec,
            address: None,
            workload_pid: None,
            cgroup_paths: Vec::new(),
            stop_sent_ms: None,
        },
    ))
}

/// Cleans after the dead tasksitter `runtime` of the task in `paths`:
/// kills what its workload left ([`clean_leftovers`]) and removes its
/// runtime record, which describes nothing any more (and whose pids may be
/// reused by processes that are not ours).
pub fn clean_after(paths: &TaskDir, runtime: &Runtime) {
    clean_leftovers(runtime);
    if paths
        .read_runtime()
        .is_some_and(|r| (r.pid, r.start_ticks) == (runtime.pid, runtime.start_ticks))
    {
        let _ = std::fs::remove_file(paths.runtime());
    }
}

/// Kills what a dead tasksitter's workload left behind: its cgroup (the
/// guard normally does this first) and its process group.
pub fn clean_leftovers(runtime: &Runtime) {
    for dir in &runtime.cgroup_paths {
        let dir = Path::new(dir);
        if dir.exists() {
            let _ = cerebro_host::cgroup::kill_members(&dir.join("cgroup.procs"));
            let _ = std::fs::remove_dir(dir);
        }
    }
    if let Some(pid) = runtime.workload_pid {
        // The workload leads its own session and process group (its pid).
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// What a task directory's runtime record says about its tasksitter.
pub enum Found {
    /// The tasksitter that wrote it still runs (same pid, same start time).
    Running(Runtime),
    /// It is gone; what its workload may have left is described here.
    Gone(Runtime),
}

/// The tasksitters of `state_dir`'s task directories, by directory name:
/// every directory with a runtime record and a spec file, the tasksitter
/// alive or not. Identity is the record's pid and start time (the poller's
/// ping with the task's secret proves the rest); the spec file says what
/// the task is. No process's command line is read.
pub fn discover(state_dir: &Path) -> HashMap<String, Found> {
    let mut found = HashMap::new();
    for dir_name in cerebro_host::layout::task_dir_names(state_dir) {
        let paths = TaskDir::new(state_dir, &dir_name);
        let Some(record) = paths.read_runtime() else {
            continue;
        };
        let Ok(spec) = cerebro_host::layout::read_spec(&paths.spec()) else {
            continue;
        };
        let alive = record.is_alive();
        let runtime = Runtime::from_record(record, spec);
        found.insert(
            dir_name,
            if alive {
                Found::Running(runtime)
            } else {
                Found::Gone(runtime)
            },
        );
    }
    found
}

/// Brings `runtime` up to date from the task's runtime record, if that was
/// written by the same tasksitter: the record changes with every workload
/// start, the state file only when a poll noticed. Call it before cleaning
/// up after a dead tasksitter, so the last workload is the one killed.
pub fn refresh_from_record(paths: &TaskDir, runtime: &mut Runtime) {
    let Some(record) = paths.read_runtime() else {
        return;
    };
    if (record.pid, record.start_ticks) != (runtime.pid, runtime.start_ticks) {
        return;
    }
    if record.address.is_some() {
        runtime.address = record.address;
    }
    if record.workload_pid.is_some() {
        runtime.workload_pid = record.workload_pid;
    }
    if !record.cgroup_paths.is_empty() {
        runtime.cgroup_paths = record.cgroup_paths;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_host::layout::dir_name;
    use cerebro_types::{CpuAction, Principal};

    #[test]
    fn specs_round_trip_through_the_spec_file() {
        let mut spec = TaskSpec::new("Portal Server", "/opt/code/run_portal_server --port 80");
        spec.cpu = Some(0.5);
        spec.mem = Some(1200.0);
        spec.time_limit = Some(3600.0);
        spec.ensure_alive = true;
        spec.restart = true;
        spec.max_restarts = 7;
        spec.uid = Some(Principal::Name("nobody".into()));
        spec.env.insert("MODE".into(), "a=b c".into());
        spec.cwd = Some("/tmp".into());
        spec.stop_timeout = 2.5;
        spec.cpu_action = Some(CpuAction::Restart);
        spec.auto_start = false;
        let state = tempfile::tempdir().unwrap();
        let paths = TaskDir::new(state.path(), &dir_name(&spec.name));
        std::fs::create_dir_all(&paths.dir).unwrap();
        write_spec(&paths, &spec).unwrap();
        let parsed = cerebro_host::layout::read_spec(&paths.spec()).unwrap();
        assert_eq!(parsed, spec);
    }

    #[test]
    fn spec_checks_name_spec_fields() {
        let mut spec = TaskSpec::new("t", "true");
        spec.uid = Some(Principal::Name("no-such-user-x".into()));
        spec.backoff.initial_secs = -1.0;
        let errors = check_spec(&spec, BackendChoice::Auto).unwrap_err();
        let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(
            fields.contains(&"uid") && fields.contains(&"backoff.initial_secs"),
            "{errors}"
        );
    }

    #[test]
    fn dir_names_are_distinct_and_safe() {
        assert_ne!(dir_name("a b"), dir_name("a_b"));
        assert!(dir_name("../../etc").starts_with("_.._etc-"));
        assert!(!dir_name("x/y").contains('/'));
    }
}
