//! The cgroup guard: a small process (this binary, `__cgroup-guard DIR...`)
//! that outlives a killed tasksitter just long enough to empty and remove
//! its cgroups, so a SIGKILLed tasksitter leaves nothing running.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// Keeps the guard's stdin open; when the tasksitter dies, for any reason,
/// the guard reads EOF and removes whatever is left in the cgroup.
pub(super) struct Guard {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
}

/// Starts `tasksitter __cgroup-guard DIR...` in a process group of its own,
/// so a signal to the tasksitter's group does not reach it.
pub(super) fn spawn_guard(dirs: &[std::path::PathBuf]) -> std::io::Result<Guard> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .arg(crate::GUARD_SUBCOMMAND)
        .args(dirs)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0);
    // SAFETY: cloexec_above_stderr makes only async-signal-safe calls.
    unsafe {
        command.pre_exec(cerebro_host::process::cloexec_above_stderr);
    }
    let mut child = command.spawn()?;
    let stdin = child.stdin.take();
    Ok(Guard { child, stdin })
}

/// Body of the guard process: wait for the tasksitter to go away (EOF on
/// stdin), then kill everything left in the cgroup and remove it.
pub fn guard_main(dirs: &[std::path::PathBuf]) -> i32 {
    // SAFETY: setting dispositions to SIG_IGN before any thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while !matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(0) | Err(_)) {}
    let mut code = 0;
    for dir in dirs {
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            let _ = std::fs::write(&kill, "1");
        }
        if cerebro_host::cgroup::kill_members(&dir.join("cgroup.procs")).is_err() {
            code = 1;
        }
    }
    for dir in dirs {
        if Path::new(dir).exists() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    code
}
