//! Boots the real tasksitter binary for tests: a temp dir per instance,
//! `wait_for` with timeouts instead of sleeps, and the child killed on drop.
#![allow(dead_code)]

use cerebro_client::{HttpClient, TaskClient};
#[allow(unused_imports)]
pub use cerebro_tests::{process_gone, wait_for};
#[allow(unused_imports)]
pub use cerebro_types::StateKind;
use cerebro_types::TaskStatus;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

#[path = "fds.rs"]
mod fds;
#[allow(unused_imports)]
pub use fds::*;

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn tasksitter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasksitter")
}

pub struct Sitter {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub base_url: Option<String>,
    /// For requests a test makes by hand (bad input, status codes, pages).
    pub http: reqwest::blocking::Client,
    /// For ordinary calls: the typed client the machinesitter uses (no
    /// token; tests that need one pass it by hand).
    pub client: Option<TaskClient>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Sitter {
    fn drop(&mut self) {
        // SIGKILL: the workload dies by PDEATHSIG and the cgroup guard removes the rest.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory that any user can write into (for --uid tests).
pub fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

impl Sitter {
    /// Starts `tasksitter ARGS` with stdout and stderr logs in the temp dir.
    pub fn start(args: &[&str]) -> Sitter {
        Self::start_with(args, false)
    }

    /// As `start`, also serving HTTP on a free loopback port.
    pub fn start_http(args: &[&str]) -> Sitter {
        Self::start_with(args, true)
    }

    fn start_with(args: &[&str], http: bool) -> Sitter {
        Self::start_prepared(args, http, |_| {})
    }

    /// As `start_http`, with `prepare` given the command before it spawns
    /// (to hand the tasksitter extra descriptors, say).
    pub fn start_http_prepared(args: &[&str], prepare: impl FnOnce(&mut Command)) -> Sitter {
        Self::start_prepared(args, true, prepare)
    }

    fn start_prepared(args: &[&str], http: bool, prepare: impl FnOnce(&mut Command)) -> Sitter {
        let dir = scratch_dir();
        let logs = dir.path().join("logs");
        let address_file = dir.path().join("address");
        let mut command = Command::new(tasksitter_bin());
        command
            .args([
                "--stdout-location",
                logs.to_str().unwrap(),
                "--stderr-location",
                logs.to_str().unwrap(),
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if http {
            command.args([
                "--http-monitoring",
                "--http-monitoring-port",
                "0",
                "--http-address-file",
                address_file.to_str().unwrap(),
            ]);
        }
        prepare(&mut command);
        let child = command.spawn().expect("spawn tasksitter");
        let mut sitter = Sitter {
            child,
            dir,
            base_url: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            client: None,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        if http {
            let address = wait_for(TIMEOUT, "the HTTP address file", || {
                if let Some(exit) = sitter.child.try_wait().unwrap() {
                    panic!("the tasksitter exited before listening: {exit}");
                }
                std::fs::read_to_string(&address_file)
                    .ok()
                    .filter(|s| !s.is_empty())
            });
            sitter.base_url = Some(format!("http://{address}"));
            let http = HttpClient::new(Duration::from_secs(10), 1);
            sitter.client = Some(TaskClient::new(http, &address, None));
        }
        sitter
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log_path(&self, stem: &str, stream: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("{stem}.{stream}.log"))
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.base_url.as_ref().expect("started with HTTP")
        )
    }

    pub fn get_json(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().expect("JSON body")
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().expect("GET");
        (response.status().as_u16(), response.text().unwrap())
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("POST");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Runs a typed client call to completion.
    pub fn call<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(call)
    }

    /// The typed client; the tasksitter must have been started with HTTP.
    pub fn client(&self) -> &TaskClient {
        self.client.as_ref().expect("started with HTTP")
    }

    /// The status as the typed client reads it.
    pub fn task_status(&self) -> TaskStatus {
        self.call(self.client().status())
            .unwrap_or_else(|e| panic!("GET status: {e}"))
    }

    /// The status as JSON (read through the typed client, so it also checks
    /// that the answer decodes as a `TaskStatus`).
    pub fn status(&self) -> Value {
        serde_json::to_value(self.task_status()).unwrap()
    }

    /// Waits until the status satisfies `predicate`, returning it.
    pub fn wait_status(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        wait_for(TIMEOUT, what, || {
            Some(self.status()).filter(|s| predicate(s))
        })
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for(timeout, "the tasksitter to exit", || {
            self.child.try_wait().unwrap()
        })
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

/// The state of a status the harness read through the typed client
/// (`status()`, `wait_status`), as the typed `StateKind`.
pub fn state_of(status: &Value) -> StateKind {
    serde_json::from_value::<TaskStatus>(status.clone())
        .expect("a status read through TaskClient")
        .state
        .kind()
}

pub fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

pub fn read_pid(path: &Path) -> i32 {
    wait_for(TIMEOUT, &format!("pid file {}", path.display()), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

/// CPU seconds used by `pid` so far, from /proc/PID/stat (utime + stime).
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process alive");
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Waits until the file at `path` has a line containing `needle`.
pub fn wait_for_log_line(path: &Path, needle: &str) {
    wait_for(
        TIMEOUT,
        &format!("'{needle}' in {}", path.display()),
        || (count_lines(path, needle) > 0).then_some(()),
    );
}
