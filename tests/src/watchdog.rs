//! A server the tests start (moto, BIND's `named`) that never outlives
//! them: it runs in the background under a `sh` watchdog reading a pipe
//! from the test process; when the pipe closes (the handle is dropped, or
//! the test process dies any way at all) the watchdog stops the server
//! (SIGTERM, then SIGKILL after 5 s) and removes its temp dir.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The watchdog of one server; dropping it stops the server and waits
/// (at most 10 s) for the watchdog to finish.
pub struct Watchdog {
    child: Child,
    /// Closing it tells the watchdog to stop the server.
    stdin: Mutex<Option<ChildStdin>>,
}

const SCRIPT: &str = r#"dir=$1 log=$2
shift 2
"$@" >"$log" 2>&1 </dev/null &
pid=$!
while read -r _line; do :; done
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;

impl Watchdog {
    /// Starts `command` (program and arguments) with stdout and stderr to
    /// `log`, watched; `dir` is removed once it has stopped. `envs` are
    /// added to the server's environment. Panics (naming the program)
    /// when `sh` cannot be started.
    pub fn spawn(
        name: &str,
        command: &[&std::ffi::OsStr],
        dir: &Path,
        log: &Path,
        envs: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg(format!("{name}-watchdog"))
            .arg(dir)
            .arg(log)
            .args(command)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdin = child.stdin.take();
        Self {
            child,
            stdin: Mutex::new(stdin),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(
            self.stdin
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let stopped = crate::poll_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
