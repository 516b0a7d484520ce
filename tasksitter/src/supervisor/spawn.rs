//! Starting the workload: the program or shell it runs (`direct_argv`),
//! and the fork that joins its cgroup, leads its own session and drops to
//! its user before any user code runs.

use super::{Backend, Supervisor};
use crate::logs::spawn_pump;
use cerebro_host::RunAs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

impl Supervisor {
    pub(super) fn spawn(&mut self) -> std::io::Result<(Child, Vec<std::thread::JoinHandle<()>>)> {
        let spec = &self.config.spec;
        let path = spec
            .env
            .get("PATH")
            .map(Into::into)
            .or_else(|| std::env::var_os("PATH"));
        let mut command = match direct_argv(&spec.command, path.as_deref()) {
            // No shell in between: one exec less per start, and the pid is the program's.
            Some(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
            None => {
                let mut command = Command::new("/bin/sh");
                command.arg("-c").arg(&spec.command);
                command
            }
        };
        command.envs(&spec.env).stdin(Stdio::null());
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        command.stdout(if self.stdout_log.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        command.stderr(if self.stderr_log.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        if let Some(RunAs {
            name: Some(name),
            home,
            ..
        }) = &self.config.run_as
        {
            command.env("USER", name).env("LOGNAME", name);
            if let Some(home) = home {
                command.env("HOME", home);
            }
        }
        // Opened here, written in the child: pre_exec may only make async-signal-safe calls.
        let cgroup_procs: Vec<OwnedFd> = match &self.backend {
            Backend::Cgroup { group, .. } => group
                .procs_files()
                .iter()
                .map(|path| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map(OwnedFd::from)
                })
                .collect::<Result<_, _>>()?,
            Backend::Poll => Vec::new(),
        };
        let procs_fds: Vec<i32> = cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
        let ids = self.config.run_as.as_ref().map(cerebro_host::RunAs::ids);
        let parent = self.my_pid;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls on data prepared above.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for &fd in &procs_fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The tasksitter died before PDEATHSIG was armed.
                    libc::_exit(1);
                }
                // After the cgroup join: its descriptors are among those marked.
                cerebro_host::process::cloexec_above_stderr()?;
                if let Some(ids) = &ids {
                    ids.become_user()?;
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(cgroup_procs);
        let mut pumps = Vec::new();
        let pid = child.id();
        let label = |stream: &str| format!("log-{stream}-{pid}");
        if let (Some(out), Some(log)) = (child.stdout.take(), &self.stdout_log) {
            pumps.extend(spawn_pump(out, log.clone(), label("stdout")));
        }
        if let (Some(err), Some(log)) = (child.stderr.take(), &self.stderr_log) {
            pumps.extend(spawn_pump(err, log.clone(), label("stderr")));
        }
        Ok((child, pumps))
    }
}

/// A command without shell syntax whose first word is a program (a path, or
/// found on `path`) runs as that program directly, split on whitespace: the
/// workload's pid is the program itself, signals reach it directly, and no
/// shell is exec'd first (dash would not even exec the last command of
/// `sh -c`). Anything else (builtins such as `exit` or `cd`, keywords,
/// quoting, variables, pipes) runs through `/bin/sh -c` as written.
fn direct_argv(command: &str, path: Option<&std::ffi::OsStr>) -> Option<Vec<String>> {
    const SHELL_SYNTAX: &[char] = &[
        ';', '&', '|', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
        '=', '%', '{', '}', '!', '\n',
    ];
    let first = command.split_whitespace().next().unwrap_or("");
    let is_program = |name: &str| {
        if name.contains('/') {
            return true;
        }
        path.into_iter().flat_map(std::env::split_paths).any(|dir| {
            let candidate = dir.join(name);
            std::fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    if first.is_empty() || command.contains(SHELL_SYNTAX) || !is_program(first) {
        None
    } else {
        Some(command.split_whitespace().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::direct_argv;

    #[test]
    fn simple_commands_run_without_a_shell() {
        let path = Some(std::ffi::OsStr::new("/usr/bin:/bin"));
        let argv = |c| direct_argv(c, path);
        assert_eq!(
            argv("/opt/code/run_portal_server --port 80").unwrap(),
            ["/opt/code/run_portal_server", "--port", "80"]
        );
        assert_eq!(argv("sleep  60").unwrap(), ["sleep", "60"]);
        for through_the_shell in [
            "echo a; echo b",
            "a && b",
            "x | y",
            "echo $HOME",
            "FOO=1 prog",
            "exit 3",
            "cd /tmp",
            "if true",
            "no-such-program-anywhere",
            "echo 'quoted words'",
        ] {
            assert_eq!(argv(through_the_shell), None, "{through_the_shell}");
        }
    }
}
