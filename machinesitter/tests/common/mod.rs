//! Boots the real machinesitter (and through it real tasksitters) for tests.
//! Tasksitters live in their own sessions and survive the machinesitter by
//! design, so dropping the harness kills every process started under its
//! state dir.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use cerebro_tests::{
    cmdline, encode, kill_processes_under, process_gone, processes, spawn_listening, wait_for,
    Daemon,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The tasksitter binary beside the machinesitter, built if this test run did not build it.
pub fn tasksitter_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let bin = Path::new(env!("CARGO_BIN_EXE_machinesitter")).with_file_name("tasksitter");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tasksitter", "--bin", "tasksitter"])
            .status()
            .expect("run cargo build for the tasksitter");
        assert!(status.success(), "cannot build the tasksitter");
    });
    bin
}

pub struct MachineSitter {
    pub daemon: Daemon,
    pub state: tempfile::TempDir,
    pub args: Vec<String>,
    pub base_url: String,
    pub http: reqwest::blocking::Client,
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
        };
        sitter.boot();
        sitter
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// Starts the machinesitter process on the same state dir.
    pub fn boot(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_machinesitter"));
        if !self.args.iter().any(|a| a == "--tasksitter-bin") {
            command.arg("--tasksitter-bin").arg(tasksitter_bin());
        }
        command
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--port", "0"])
            .args(&self.args);
        let address = self.daemon.start(
            &mut command,
            &self.state.path().join("address"),
            "the machinesitter",
        );
        self.base_url = format!("http://{address}");
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

    pub fn task(&self, name: &str) -> Value {
        let (code, body) = self.request(
            "GET",
            &format!("/api/v1/tasks/{}", encode(name)),
            None,
            None,
        );
        assert_eq!(code, 200, "GET task {name}: {body}");
        body
    }

    /// Waits until the task's workload runs, returning (tasksitter pid, workload pid).
    pub fn wait_running(&self, name: &str) -> (i32, i32) {
        wait_for(TIMEOUT, &format!("task '{name}' to run"), || {
            let task = self.task(name);
            let running = task["status"]["state"]["state"] == "running";
            let sitter = task["tasksitter"]["pid"].as_i64()?;
            let workload = task["status"]["pid"].as_i64()?;
            (running && !task["tasksitter"]["retiring"].as_bool().unwrap_or(false))
                .then_some((sitter as i32, workload as i32))
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
