//! Tasksitter processes as the machinesitter sees them: the flags a spec
//! becomes, starting one in a session of its own, telling whether a pid is
//! still the tasksitter we started, and cleaning what a dead one left.

use crate::config::LimitsBackend;
use crate::state::Runtime;
use cerebro_types::{CpuAction, TaskSpec};
use cerebro_web::process::find_processes;
pub use cerebro_web::process::{cmdline, is_alive, start_ticks};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// Where a task's files live.
#[derive(Debug, Clone)]
pub struct TaskPaths {
    pub dir: PathBuf,
    pub logs: PathBuf,
}

impl TaskPaths {
    pub fn new(state_dir: &Path, dir_name: &str) -> Self {
        Self {
            dir: state_dir.join("tasks").join(dir_name),
            logs: state_dir.join("logs").join(dir_name),
        }
    }
    pub fn token(&self) -> PathBuf {
        self.dir.join("token")
    }
    pub fn address(&self) -> PathBuf {
        self.dir.join("address")
    }
    pub fn sitter_log(&self) -> PathBuf {
        self.dir.join("tasksitter.log")
    }
}

/// A directory name for a task: a readable stem plus a hash of the full name,
/// so different names never share files.
pub fn dir_name(task_name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in task_name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let stem: String = tasksitter::logs::file_stem(task_name)
        .chars()
        .take(48)
        .collect();
    format!("{stem}-{:08x}", hash as u32)
}

fn seconds(value: f64) -> String {
    format!("{value}")
}

/// The tasksitter flags for `spec` (the inverse of the tasksitter's own flag parsing).
pub fn spec_flags(spec: &TaskSpec) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--name".into(),
        spec.name.clone(),
        "--command".into(),
        spec.command.clone(),
        "--max-restarts".into(),
        spec.max_restarts.to_string(),
        "--stop-signal".into(),
        spec.stop_signal.clone(),
        "--stop-timeout".into(),
        seconds(spec.stop_timeout),
        "--cpu-window".into(),
        seconds(spec.cpu_window),
        "--backoff-initial".into(),
        seconds(spec.backoff.initial_secs),
        "--backoff-max".into(),
        seconds(spec.backoff.max_secs),
        "--healthy-after".into(),
        seconds(spec.backoff.healthy_after_secs),
        "--log-max-bytes".into(),
        spec.log_rotation.max_bytes.to_string(),
        "--log-backups".into(),
        spec.log_rotation.backups.to_string(),
    ];
    for (flag, on) in [
        ("--ensure-alive", spec.ensure_alive),
        ("--restart", spec.restart),
        ("--allow-exit", spec.allow_exit),
        ("--no-auto-start", !spec.auto_start),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    let mut option = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            args.push(flag.into());
            args.push(value);
        }
    };
    option("--cpu", spec.cpu.map(seconds));
    option("--mem", spec.mem.map(seconds));
    option("--time-limit", spec.time_limit.map(seconds));
    option("--uid", spec.uid.as_ref().map(ToString::to_string));
    option("--gid", spec.gid.as_ref().map(ToString::to_string));
    option("--cwd", spec.cwd.clone());
    option(
        "--cpu-action",
        spec.cpu_action.map(|a| match a {
            CpuAction::Throttle => "throttle".to_string(),
            CpuAction::Restart => "restart".to_string(),
        }),
    );
    for (key, value) in &spec.env {
        args.push("--env".into());
        args.push(format!("{key}={value}"));
    }
    args
}

/// Maps a tasksitter flag back to the spec field it came from, for API errors.
pub fn field_for_flag(flag: &str) -> String {
    match flag {
        "--backoff-initial" => "backoff.initial_secs".into(),
        "--backoff-max" => "backoff.max_secs".into(),
        "--healthy-after" => "backoff.healthy_after_secs".into(),
        "--log-max-bytes" => "log_rotation.max_bytes".into(),
        "--log-backups" => "log_rotation.backups".into(),
        "--no-auto-start" => "auto_start".into(),
        other => other.trim_start_matches("--").replace('-', "_"),
    }
}

/// Checks a spec exactly as the tasksitter will when it starts (users,
/// groups, working directory included); errors name spec fields.
pub fn check_spec(spec: &TaskSpec) -> Result<(), cerebro_types::ValidationErrors> {
    use clap::error::{ContextKind, ContextValue};
    use clap::Parser;
    if let Err(mut errors) = spec.validate() {
        // The spec cannot become flags yet, but the machine-dependent checks still report.
        if let Err((flag, message)) =
            tasksitter::cli::resolve_run_as(spec.uid.as_ref(), spec.gid.as_ref())
        {
            errors.push(field_for_flag(&flag), message);
        }
        return Err(errors);
    }
    let mut argv = vec!["tasksitter".to_string()];
    argv.extend(spec_flags(spec));
    let mut errors = cerebro_types::ValidationErrors::default();
    match tasksitter::cli::Cli::try_parse_from(&argv) {
        Ok(cli) => {
            if let Err(found) = cli.into_config() {
                for error in found.errors {
                    errors.push(field_for_flag(&error.field), error.message);
                }
            }
        }
        Err(error) => {
            let flag = match error.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => {
                    arg.split_whitespace().next().unwrap_or("spec").to_string()
                }
                _ => "spec".to_string(),
            };
            let rendered = error.render().to_string();
            let message = rendered
                .lines()
                .next()
                .unwrap_or("invalid")
                .trim_start_matches("error: ")
                .to_string();
            errors.push(field_for_flag(&flag), message);
        }
    }
    errors.into_result(())
}

pub fn read_secret(paths: &TaskPaths) -> Option<String> {
    std::fs::read_to_string(paths.token())
        .ok()
        .map(|s| s.trim().to_string())
}

/// Starts a tasksitter for `spec` in a session of its own, so it outlives the machinesitter.
pub fn spawn(
    bin: &Path,
    spec: &TaskSpec,
    paths: &TaskPaths,
    backend: LimitsBackend,
    run: bool,
) -> std::io::Result<(Child, Runtime)> {
    std::fs::create_dir_all(&paths.dir)?;
    std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::create_dir_all(&paths.logs)?;
    if read_secret(paths).is_none_or(|s| s.is_empty()) {
        let secret = cerebro_web::auth::random_secret()?;
        cerebro_web::fs::atomic_write_private(&paths.token(), secret.as_bytes())?;
    }
    let _ = std::fs::remove_file(paths.address());
    let mut spec = spec.clone();
    spec.auto_start = run;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.sitter_log())?;
    let mut command = Command::new(bin);
    command
        .args(spec_flags(&spec))
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
        .arg("--stdout-location")
        .arg(&paths.logs)
        .arg("--stderr-location")
        .arg(&paths.logs)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let open_files = INHERITED_OPEN_FILES.get().copied();
    // SAFETY: setsid and setrlimit are async-signal-safe; the closure
    // touches only its own copy of the limit.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
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

/// Kills what a dead tasksitter's workload left behind: its cgroup (the
/// guard normally does this first) and its process group.
pub fn clean_leftovers(runtime: &Runtime) {
    for dir in &runtime.cgroup_paths {
        let dir = Path::new(dir);
        if dir.exists() {
            let _ = tasksitter::cgroup::kill_members(&dir.join("cgroup.procs"));
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

/// Tasksitters still running from `state_dir`, recognised by the token file
/// on their command line, with the spec their flags describe. Used when the
/// state file was lost: the machine starts with what it can prove is running.
pub fn discover(state_dir: &Path) -> Vec<(String, Runtime, bool)> {
    use clap::Parser;
    let tasks_dir = state_dir.join("tasks");
    let mut found = Vec::new();
    for (pid, argv) in find_processes(|argv| argv.iter().any(|a| a == "--token-file")) {
        let Some(token_index) = argv.iter().position(|a| a == "--token-file") else {
            continue;
        };
        let Some(token) = argv.get(token_index + 1).map(PathBuf::from) else {
            continue;
        };
        let Some(dir) = token
            .parent()
            .filter(|d| d.parent() == Some(tasks_dir.as_path()))
        else {
            continue;
        };
        let Some(dir_name) = dir.file_name().and_then(|d| d.to_str()).map(String::from) else {
            continue;
        };
        let Ok(cli) = tasksitter::cli::Cli::try_parse_from(&argv) else {
            continue;
        };
        let run = !cli.no_auto_start;
        let Ok(config) = cli.into_config() else {
            continue;
        };
        let Some(start_ticks) = start_ticks(pid) else {
            continue;
        };
        let address = std::fs::read_to_string(dir.join("address")).ok();
        found.push((
            dir_name,
            Runtime {
                pid,
                start_ticks,
                spec: config.spec,
                address,
                workload_pid: None,
                cgroup_paths: Vec::new(),
                stop_sent_ms: None,
            },
            run,
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::Principal;
    use clap::Parser;

    #[test]
    fn flags_round_trip_through_the_tasksitter_parser() {
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
        let mut argv = vec!["tasksitter".to_string()];
        argv.extend(spec_flags(&spec));
        let parsed = tasksitter::cli::Cli::try_parse_from(&argv)
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(parsed.spec, spec);
    }

    #[test]
    fn spec_checks_name_spec_fields() {
        let mut spec = TaskSpec::new("t", "true");
        spec.uid = Some(Principal::Name("no-such-user-x".into()));
        spec.backoff.initial_secs = -1.0;
        let errors = check_spec(&spec).unwrap_err();
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
