//! The machinesitter booted inside the test (`machinesitter::serve` on a
//! listener the test bound), stopped through its shutdown handle: nothing
//! signals the test process. It still starts real tasksitter binaries; that
//! is its job.

mod common;

use cerebro_client::MachineClient;
use cerebro_types::machine::{ActionResult, PutResult};
use cerebro_types::task_api::{ControlResult, TaskAction};
use cerebro_types::{StateKind, TaskSpec};
use cerebro_web::daemon::{shutdown_channel, ShutdownHandle};
use clap::Parser;
use common::*;
use machinesitter::config::Cli;

/// Kills what the test's tasksitters left, also when an assertion fails.
struct Cleanup(tempfile::TempDir);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_processes_under(self.0.path());
    }
}

fn config(dir: &std::path::Path, extra: &[&str]) -> machinesitter::config::MachineConfig {
    let state_dir = dir.join("state");
    let tasksitter = tasksitter_bin();
    let mut args = vec![
        "machinesitter",
        "--machine-id",
        "in-process",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--tasksitter-bin",
        tasksitter.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).unwrap().into_config().unwrap()
}

fn sleeper(name: &str, command: &str) -> TaskSpec {
    let mut spec = spec(command);
    spec["name"] = name.into();
    serde_json::from_value(spec).unwrap()
}

/// A machinesitter serving in this process on a fresh 127.0.0.1 port.
struct InProcess {
    client: MachineClient,
    stop: ShutdownHandle,
    daemon: tokio::task::JoinHandle<Result<(), machinesitter::MachineError>>,
}

impl InProcess {
    /// Boots `machinesitter::serve` on `dir`'s state dir with `extra` flags.
    async fn boot(dir: &std::path::Path, extra: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, shutdown) = shutdown_channel();
        let daemon = tokio::spawn(machinesitter::serve(config(dir, extra), listener, shutdown));
        let client = MachineClient::new(test_http_client(), &address, None);
        Self {
            client,
            stop,
            daemon,
        }
    }

    /// Asks it to stop (by request, or by dropping the handle) and waits
    /// until `serve` has returned, which must be Ok.
    async fn stop(self, by_drop: bool) {
        if by_drop {
            drop(self.stop);
        } else {
            self.stop.request();
        }
        let stopped = tokio::time::timeout(TIMEOUT, self.daemon).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "serve ends cleanly: {stopped:?}"
        );
    }
}

async fn wait_running(client: &MachineClient, name: &str) -> u32 {
    wait_for_async(&format!("task '{name}' to run"), || async {
        let status = client.task(name).await.ok()?.status?;
        (status.state.kind() == StateKind::Running)
            .then_some(status.pid)
            .flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machinesitter_in_process_runs_a_task_and_stops_when_asked() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let sitter = InProcess::boot(dir.0.path(), &["--on-exit", "stop"]).await;
    let client = sitter.client.clone();

    let reply = client
        .put_task(&sleeper("napper", "sleep 611"), None)
        .await
        .unwrap();
    assert_eq!(reply.result, PutResult::Created);
    let first = wait_running(&client, "napper").await;
    let again = client
        .put_task(&sleeper("napper", "sleep 611"), None)
        .await
        .unwrap();
    assert_eq!(again.result, PutResult::Unchanged);

    let restarted = client.control("napper", TaskAction::Restart).await.unwrap();
    assert_eq!(
        restarted.result,
        ActionResult::Done(ControlResult::Restarting)
    );
    wait_for_async("the restarted workload", || async {
        let pid = wait_running(&client, "napper").await;
        (pid != first).then_some(())
    })
    .await;
    let status = client.status().await.unwrap();
    assert_eq!(status.machine_id, "in-process");
    assert_eq!(status.tasks.len(), 1);
    assert!(client
        .events()
        .await
        .unwrap()
        .iter()
        .any(|e| e.task == "napper" && e.message == "restart requested"));

    sitter.stop(false).await;
    // --on-exit stop: the task's tasksitter and workload went with it.
    let state_dir = dir.0.path().join("state");
    assert!(
        processes_under(&state_dir).is_empty(),
        "nothing left running under {}",
        state_dir.display()
    );
    assert!(client.status().await.is_err(), "no longer listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_left_running_is_re_adopted_by_the_next_machinesitter_in_process() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let mut workload = None;
    for round in 0..2 {
        let sitter = InProcess::boot(dir.0.path(), &[]).await;
        if round == 0 {
            let spec = sleeper("keeper", "sleep 612");
            sitter.client.put_task(&spec, None).await.unwrap();
        }
        let pid = wait_running(&sitter.client, "keeper").await;
        // The default --on-exit leave: the same workload runs on.
        assert_eq!(*workload.get_or_insert(pid), pid, "round {round}");
        let view = sitter.client.task("keeper").await.unwrap();
        assert_eq!(view.sitter_starts, 1, "re-adopted, not started again");
        sitter.stop(false).await;
    }
    let sitter = InProcess::boot(dir.0.path(), &[]).await;
    let reply = sitter.client.delete_task("keeper").await.unwrap();
    assert_eq!(reply.result, ActionResult::Deleted);
    // Dropping the handle asks for a stop, as a request would.
    sitter.stop(true).await;
    assert!(process_gone(workload.unwrap() as i32));
}
