//! Boots the real machinesitter (and through it real tasksitters) for tests.
//! Tasksitters live in their own sessions and survive the machinesitter by
//! design, so dropping the harness kills every process started under its
//! state dir.
#![allow(dead_code)]

use cerebro_client::{HttpClient, MachineClient};
#[allow(unused_imports)]
pub use cerebro_tests::{
    cmdline, encode, kill_processes_under, process_gone, processes, processes_under,
    spawn_listening, wait_for, wait_for_async, Daemon,
};
use cerebro_types::machine::TaskView;
pub use cerebro_types::StateKind;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The tasksitter binary beside the machinesitter's; `cargo test -p
/// machinesitter` does not build it, so it must have been built before (the
/// harness says how when it is missing).
pub fn tasksitter_bin() -> PathBuf {
    cerebro_tests::bin("tasksitter")
}

pub struct MachineSitter {
    pub daemon: Daemon,
    pub state: tempfile::TempDir,
    pub args: Vec<String>,
    pub base_url: String,
    /// For requests a test makes by hand (bad input, status codes).
    pub http: reqwest::blocking::Client,
    /// For ordinary calls: the typed client the clustersitter would use.
    pub client: MachineClient,
    runtime: tokio::runtime::Runtime,
}

impl Drop for MachineSitter {
    fn drop(&mut self) {
        self.daemon.kill9();
        kill_processes_under(self.state.path());
    }
}

impl MachineSitter {
    pub fn start(args: &[&str]) -> Self {
        let mut sitter = MachineSitter {
            daemon: Daemon::default(),
            state: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| a.to_string()).collect(),
            base_url: String::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            client: MachineClient::new(test_http_client(), "127.0.0.1:0", None),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        sitter.boot();
        sitter
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// Starts the machinesitter process on the same state dir.
    pub fn boot(&mut self) {
        self.boot_prepared(|_| {});
    }

    /// As `boot`, with `prepare` given the command before it spawns (to
    /// hand the machinesitter extra descriptors, say).
    pub fn boot_prepared(&mut self, prepare: impl FnOnce(&mut Command)) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_machinesitter"));
        if !self.args.iter().any(|a| a == "--tasksitter-bin") {
            command.arg("--tasksitter-bin").arg(tasksitter_bin());
        }
        command
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--port", "0"])
            .args(&self.args);
        prepare(&mut command);
        let address = self.daemon.start(
            &mut command,
            &self.state.path().join("address"),
            "the machinesitter",
        );
        self.base_url = format!("http://{address}");
        self.client = MachineClient::new(test_http_client(), &address, None);
    }

    /// Runs a typed client call to completion.
    pub fn call<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(call)
    }

    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.daemon.pid().unwrap() as i32, signal) };
    }

    pub fn wait_exit(&mut self) {
        let child = self.daemon.child_mut().unwrap();
        wait_for(TIMEOUT, "the machinesitter to exit", || {
            child.try_wait().unwrap()
        });
        self.daemon.exited();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    pub fn put_task(&self, name: &str, spec: Value) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/api/v1/tasks/{}", encode(name)),
            None,
            Some(&spec.to_string()),
        )
    }

    /// The task as the typed client reads it.
    pub fn task_view(&self, name: &str) -> TaskView {
        self.call(self.client.task(name))
            .unwrap_or_else(|e| panic!("GET task {name}: {e}"))
    }

    /// The state its tasksitter last reported (`None` before it answered).
    pub fn task_state(&self, name: &str) -> Option<StateKind> {
        self.task_view(name).status.map(|s| s.state.kind())
    }

    /// The task as JSON (read through the typed client, so it also checks
    /// that the answer decodes as a `TaskView`).
    pub fn task(&self, name: &str) -> Value {
        serde_json::to_value(self.task_view(name)).unwrap()
    }

    /// Waits until the task's workload runs, returning (tasksitter pid, workload pid).
    pub fn wait_running(&self, name: &str) -> (i32, i32) {
        wait_for(TIMEOUT, &format!("task '{name}' to run"), || {
            let task = self.task_view(name);
            let status = task.status?;
            let sitter = task.tasksitter?;
            let workload = status.pid?;
            (status.state.kind() == StateKind::Running && !sitter.retiring)
                .then_some((sitter.pid, workload as i32))
        })
    }

    /// Tasksitter processes serving tasks of this machinesitter's state dir.
    pub fn tasksitters(&self) -> Vec<i32> {
        let tasks = self.state_dir().join("tasks").display().to_string();
        processes(|argv| {
            argv.first().is_some_and(|a| a.ends_with("tasksitter"))
                && argv.iter().any(|a| a.starts_with(&tasks))
        })
    }
}

/// A spec that runs `command`, reserving little.
pub fn spec(command: &str) -> Value {
    json!({"command": command, "cpu": 0.1, "mem": 50, "stop_timeout": 5})
}

/// The client the harnesses' typed calls go through: as patient as the raw one.
pub fn test_http_client() -> HttpClient {
    HttpClient::new(Duration::from_secs(30), 1)
}
