//! Deployments end to end on one machinesitter booted in this process:
//! real tasksitters, real `sh` steps, artifacts from `file://` URLs and
//! from a small artifact server on 127.0.0.1 that counts its downloads.

mod common;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use cerebro_client::MachineClient;
use cerebro_types::deploy::{
    AttemptOutcome, DeployState, DeployStatus, Deployment, Recipe, StepOutcome,
};
use cerebro_types::machine::PutResult;
use cerebro_types::TaskSpec;
use cerebro_web::daemon::{shutdown_channel, ShutdownHandle};
use clap::Parser;
use common::*;
use machinesitter::config::Cli;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Kills what the test's tasksitters left, also when an assertion fails.
struct Cleanup(tempfile::TempDir);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_processes_under(self.0.path());
    }
}

impl Cleanup {
    fn new() -> Self {
        Cleanup(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }
}

/// The tasksitter binary beside this test's target dir. Only it is needed
/// here, so unlike `common::tasksitter_bin` this does not insist on every
/// workspace binary (the clustersitter's is built by `cerebrod`).
fn tasksitter() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("tasksitter");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p tasksitter` first",
        bin.display()
    );
    bin
}

/// A machinesitter serving in this process on a fresh 127.0.0.1 port.
struct InProcess {
    client: MachineClient,
    stop: ShutdownHandle,
    daemon: tokio::task::JoinHandle<Result<(), machinesitter::MachineError>>,
}

impl InProcess {
    async fn boot(dir: &Path, extra: &[&str]) -> Self {
        let state_dir = dir.join("state");
        let tasksitter = tasksitter();
        let mut args = vec![
            "machinesitter",
            "--machine-id",
            "deploy-test",
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--tasksitter-bin",
            tasksitter.to_str().unwrap(),
            "--overcommit",
        ];
        args.extend_from_slice(extra);
        let config = Cli::try_parse_from(args).unwrap().into_config().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, shutdown) = shutdown_channel();
        let daemon = tokio::spawn(machinesitter::serve(config, listener, shutdown));
        Self {
            client: MachineClient::new(test_http_client(), &address, None),
            stop,
            daemon,
        }
    }

    async fn stop(self) {
        self.stop.request();
        let stopped = tokio::time::timeout(TIMEOUT, self.daemon).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "serve ends: {stopped:?}");
    }
}

/// An artifact server on 127.0.0.1: `GET /NAME` answers the bytes put
/// under NAME and counts the request.
#[derive(Clone, Default)]
struct Artifacts {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    base: String,
}

impl Artifacts {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut artifacts = Artifacts {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve_artifact))
            .with_state(artifacts.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        artifacts.base.push('/');
        artifacts
    }

    /// Serves `bytes` at `name`; returns its URL.
    fn put(&self, name: &str, bytes: Vec<u8>) -> String {
        self.files.lock().unwrap().insert(name.to_string(), bytes);
        format!("{}{name}", self.base)
    }

    fn requests(&self, name: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve_artifact(
    State(artifacts): State<Artifacts>,
    UrlPath(name): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    *artifacts
        .requests
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default() += 1;
    artifacts
        .files
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

/// A tar.gz holding `payload.txt` with `text` and an executable `bin/hello`.
fn tarball(text: &str) -> (Vec<u8>, String) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, body, mode) in [
        ("payload.txt", text.to_string(), 0o644),
        ("bin/hello", "#!/bin/sh\necho hello\n".to_string(), 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder
            .append_data(&mut header, path, body.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let bytes = gz.finish().unwrap();
    let digest = hex(&Sha256::digest(&bytes));
    (bytes, digest)
}

/// A tar.gz whose one entry is `../escaped.txt` (written with a raw
/// header: the `tar` crate's builder refuses such a path).
fn tar_slip() -> (Vec<u8>, String) {
    let body = b"evil\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    let name = b"../escaped.txt";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &body[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let bytes = gz.finish().unwrap();
    let digest = hex(&Sha256::digest(&bytes));
    (bytes, digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetch and unpack the tarball, then a run step (`options.run`, by
/// default a check that the payload is there), then `extra` steps.
fn recipe(extra: &str) -> String {
    format!(
        r#"
description = "test release"

[[steps]]
kind = "fetch"
name = "release tarball"
url = "{{{{ options.url }}}}"
sha256 = "{{{{ options.sha256 }}}}"
unpack = "tar.gz"
timeout = "20s"

[[steps]]
kind = "write"
path = "VERSION"
template = "{{{{ version }}}}\n"

[[steps]]
kind = "run"
command = "eval \"$CEREBRO_OPT_RUN\""
timeout = "{{{{ options.run_timeout }}}}"
{extra}
"#
    )
}

fn deployment(recipe_text: &str, version: &str, options: Value) -> Deployment {
    let recipe_text = recipe_text.replace(
        "timeout = \"{{ options.run_timeout }}\"",
        &format!(
            "timeout = {}",
            options
                .get("run_timeout")
                .and_then(Value::as_f64)
                .unwrap_or(20.0)
        ),
    );
    let mut options: std::collections::BTreeMap<String, Value> =
        serde_json::from_value(options).unwrap();
    options.remove("run_timeout");
    options
        .entry("run".into())
        .or_insert_with(|| json!("test -f payload.txt && ./bin/hello"));
    Deployment {
        recipe_name: "test.release".into(),
        recipe_source: "/recipes/test/release.toml".into(),
        recipe_sha256: hex(&Sha256::digest(recipe_text.as_bytes())),
        recipe: Recipe::parse(&recipe_text, "release.toml").unwrap(),
        options,
        job: "web".into(),
        version: Some(version.into()),
        instance: 0,
        zone: "local-a".into(),
        machine: "deploy-test".into(),
        cluster: "test".into(),
    }
}

fn sleeper(name: &str, command: &str) -> TaskSpec {
    let mut spec = spec(command);
    spec["name"] = name.into();
    serde_json::from_value(spec).unwrap()
}

async fn deploy_status(client: &MachineClient, task: &str) -> DeployStatus {
    client
        .task(task)
        .await
        .unwrap()
        .deploy
        .expect("a deploy status")
}

/// Waits until the task's deploy state is `state` for `release`.
async fn wait_deploy(
    client: &MachineClient,
    task: &str,
    release: &str,
    state: DeployState,
) -> DeployStatus {
    wait_for_async(&format!("{task} to be {state} on {release}"), || async {
        let status = client.task(task).await.ok()?.deploy?;
        (status.release == release && status.state == state).then_some(status)
    })
    .await
}

/// Waits until the task's workload runs under a tasksitter on `release`;
/// returns the workload's pid.
async fn wait_running_on(client: &MachineClient, task: &str, release: &str) -> u32 {
    wait_for_async(&format!("{task} to run on {release}"), || async {
        let view = client.task(task).await.ok()?;
        let status = view.status?;
        let pid = status.pid?;
        let sitter = view.tasksitter?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let on_release = String::from_utf8_lossy(&environ)
            .split('\0')
            .any(|v| v == format!("CEREBRO_RELEASE={release}"));
        (status.state.kind() == StateKind::Running && !sitter.retiring && on_release).then_some(pid)
    })
    .await
}

fn release_dir(dir: &Cleanup, task: &str, release: &str) -> PathBuf {
    dir.state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name(task))
        .join("releases")
        .join(release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_in_its_release_fetched_over_http_or_from_a_file() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha256) = tarball("v1 over http\n");
    let url = artifacts.put("app-v1.tar.gz", bytes.clone());
    let file = dir.path().join("app-v1.tar.gz");
    std::fs::write(&file, &bytes).unwrap();
    let text = recipe("");
    let cases = [
        ("web", url.clone()),
        ("from-file", format!("file://{}", file.display())),
    ];
    for (task, url) in &cases {
        let deployment = deployment(&text, "v1", json!({"url": url, "sha256": sha256}));
        let release = deployment.release_id();
        let reply = client
            .put_task(&sleeper(task, "sleep 621"), Some(&deployment))
            .await
            .unwrap();
        assert_eq!(reply.result, PutResult::Created);
        assert_eq!(reply.task.deployment.as_ref(), Some(&deployment));
        let status = wait_deploy(&client, task, &release, DeployState::Ready).await;
        assert_eq!(status.running_release.as_deref(), Some(release.as_str()));
        assert_eq!(status.attempts, 1);
        let pid = wait_running_on(&client, task, &release).await;
        // The workload runs in the release: its cwd is the unpacked tarball.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        assert_eq!(
            cwd,
            release_dir(&dir, task, &release).canonicalize().unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(cwd.join("payload.txt")).unwrap(),
            "v1 over http\n"
        );
        assert_eq!(
            std::fs::read_to_string(cwd.join("VERSION")).unwrap(),
            "v1\n"
        );
        let log = client.deploy_log(task).await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].outcome, AttemptOutcome::Succeeded);
        let labels: Vec<&str> = log[0].steps.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "step 1 (fetch \"release tarball\")",
                "step 2 (write)",
                "step 3 (run)"
            ]
        );
        assert!(log[0]
            .steps
            .iter()
            .all(|s| s.outcome == StepOutcome::Succeeded));
        assert_eq!(log[0].steps[2].exit_code, Some(0));
        assert_eq!(log[0].steps[2].output, "hello\n");
        assert!(
            log[0].steps[0].detail.contains("sha256 ok"),
            "{:?}",
            log[0].steps[0]
        );

        // The same spec and deployment again: nothing changes.
        let again = client
            .put_task(&sleeper(task, "sleep 621"), Some(&deployment))
            .await
            .unwrap();
        assert_eq!(again.result, PutResult::Unchanged);
        assert_eq!(client.deploy_log(task).await.unwrap().len(), 1);
        assert_eq!(wait_running_on(&client, task, &release).await, pid);
    }
    // The file:// task found the artifact in the cache: one download only.
    assert_eq!(artifacts.requests("app-v1.tar.gz"), 1);
    let view = client.task("from-file").await.unwrap();
    assert_eq!(view.sitter_starts, 1);

    // The task page shows the deployment, escaped.
    let page = reqwest::get(format!("{}/tasks/web", client.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Deployment") && page.contains("step 1 (fetch &quot;release tarball&quot;)"),
        "{page}"
    );

    // Deleting the task removes its deploy directory.
    client.delete_task("web").await.unwrap();
    let web_dir = dir
        .state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name("web"));
    wait_for_async("the deploy dir to go", || async {
        (!web_dir.exists()).then_some(())
    })
    .await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_leaves_the_previous_release_running_and_names_the_step() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    // Retries far off, so each failure stays as it is while it is looked at.
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "600000"]).await;
    let client = sitter.client.clone();
    let text = recipe("");
    let (v1, v1_sha) = tarball("v1\n");
    let v1_url = artifacts.put("app-v1.tar.gz", v1);
    let (v2, _) = tarball("v2\n");
    let v2_url = artifacts.put("app-v2.tar.gz", v2);
    let task = "web";
    let (slip, slip_sha) = tar_slip();
    let slip_url = artifacts.put("slip.tar.gz", slip);

    // No release yet, and the digest does not match: the task never starts.
    let first = deployment(&text, "v0", json!({"url": v2_url, "sha256": v1_sha}));
    client
        .put_task(&sleeper(task, "sleep 622"), Some(&first))
        .await
        .unwrap();
    let status = wait_deploy(&client, task, &first.release_id(), DeployState::Failed).await;
    assert_eq!(
        status.step.as_deref(),
        Some("step 1 (fetch \"release tarball\")")
    );
    assert!(
        status.error.as_deref().unwrap().contains("sha256 mismatch"),
        "{status:?}"
    );
    assert!(status.next_attempt_ms.is_some());
    assert_eq!(status.running_release, None);
    let view = client.task(task).await.unwrap();
    assert!(
        view.tasksitter.is_none() && view.status.is_none(),
        "{view:?}"
    );

    let good = deployment(&text, "v1", json!({"url": v1_url, "sha256": v1_sha}));
    let reply = client
        .put_task(&sleeper(task, "sleep 622"), Some(&good))
        .await
        .unwrap();
    assert_eq!(reply.result, PutResult::Updated);
    wait_deploy(&client, task, &good.release_id(), DeployState::Ready).await;
    let pid = wait_running_on(&client, task, &good.release_id()).await;
    let sitter_pid = client.task(task).await.unwrap().tasksitter.unwrap().pid;

    let cases = [
        (
            "a bad digest",
            // Not v1's digest: the cache holds v1 by its digest, and would
            // rightly answer with it.
            deployment(
                &text,
                "v2",
                json!({"url": v2_url, "sha256": "b".repeat(64)}),
            ),
            "step 1 (fetch \"release tarball\")",
            "sha256 mismatch",
            StepOutcome::Failed,
            "",
        ),
        (
            "a tar-slip archive",
            deployment(&text, "v5", json!({"url": slip_url, "sha256": slip_sha})),
            "step 1 (fetch \"release tarball\")",
            "refused archive entry '../escaped.txt'",
            StepOutcome::Failed,
            "",
        ),
        (
            "a failing run step",
            deployment(
                &text,
                "v3",
                json!({"url": v1_url, "sha256": v1_sha, "run": "echo boom >&2; exit 3"}),
            ),
            "step 3 (run)",
            "exit 3",
            StepOutcome::Failed,
            "boom",
        ),
        (
            "a run step timing out",
            deployment(
                &text,
                "v4",
                json!({"url": v1_url, "sha256": v1_sha, "run": "echo started; sleep 6062", "run_timeout": 1}),
            ),
            "step 3 (run)",
            "timed out after 1 s",
            StepOutcome::TimedOut,
            "started",
        ),
    ];
    for (what, deployment, step, error, outcome, output) in cases {
        let release = deployment.release_id();
        // As the clustersitter sends an update: the spec changes with the
        // version too, and none of that may reach the running release.
        let mut spec = sleeper(task, "sleep 622");
        spec.env.insert(
            "CEREBRO_JOB_VERSION".into(),
            deployment.version.clone().unwrap_or_default(),
        );
        client.put_task(&spec, Some(&deployment)).await.unwrap();
        let status = wait_deploy(&client, task, &release, DeployState::Failed).await;
        assert_eq!(status.step.as_deref(), Some(step), "{what}: {status:?}");
        assert!(
            status.error.as_deref().unwrap_or_default().contains(error),
            "{what}: {status:?}"
        );
        assert!(
            status
                .output_tail
                .as_deref()
                .unwrap_or_default()
                .contains(output),
            "{what}: {status:?}"
        );
        assert_eq!(
            status.running_release.as_deref(),
            Some(good.release_id().as_str()),
            "{what}"
        );
        // The previous release's task runs on, untouched.
        assert_eq!(
            wait_running_on(&client, task, &good.release_id()).await,
            pid,
            "{what}"
        );
        let view = client.task(task).await.unwrap();
        assert_eq!(view.tasksitter.unwrap().pid, sitter_pid, "{what}");
        assert_eq!(view.sitter_starts, 1, "{what}");
        // Nothing half-installed is left, and `current` did not move.
        assert!(!release_dir(&dir, task, &release).exists(), "{what}");
        let log = client.deploy_log(task).await.unwrap();
        assert_eq!(log[0].release, release, "{what}");
        assert_eq!(log[0].outcome, AttemptOutcome::Failed, "{what}");
        let failed = log[0].steps.iter().find(|s| s.label == step).unwrap();
        assert_eq!(failed.outcome, outcome, "{what}");
        assert!(
            log[0].steps.last().unwrap().outcome == StepOutcome::Skipped || step == "step 3 (run)",
            "{what}: later steps are skipped: {:?}",
            log[0].steps
        );
        let events = client.events().await.unwrap();
        assert!(
            events.iter().any(|e| e.task == task
                && e.message.contains("failed at")
                && e.message.contains(&release)),
            "{what}: {events:?}"
        );
    }
    let releases = release_dir(&dir, task, "x");
    assert!(!releases.parent().unwrap().join("escaped.txt").exists());
    // The timed-out step's process group was killed with it.
    wait_for_async("the timed-out step's sleep to be killed", || async {
        processes(|argv| argv.iter().any(|a| a == "6062"))
            .is_empty()
            .then_some(())
    })
    .await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_retried_with_backoff_until_it_succeeds() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "100"]).await;
    let client = sitter.client.clone();
    let (v1, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", v1);
    let counter = dir.path().join("tries");
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({
            "url": url, "sha256": sha, "counter": counter.display().to_string(),
            "run": "n=$(cat \"$CEREBRO_OPT_COUNTER\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$CEREBRO_OPT_COUNTER\"; echo try $n; test $n -ge 3",
        }),
    );
    client
        .put_task(&sleeper("web", "sleep 623"), Some(&deployment))
        .await
        .unwrap();
    let status = wait_deploy(&client, "web", &deployment.release_id(), DeployState::Ready).await;
    assert_eq!(status.attempts, 3);
    let log = client.deploy_log("web").await.unwrap();
    let outcomes: Vec<(u32, AttemptOutcome)> = log.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (3, AttemptOutcome::Succeeded),
            (2, AttemptOutcome::Failed),
            (1, AttemptOutcome::Failed)
        ]
    );
    // Backoff: the second wait is about twice the first.
    let gap = |later: &cerebro_types::deploy::DeployAttempt,
               earlier: &cerebro_types::deploy::DeployAttempt| {
        later.started_ms - earlier.finished_ms.unwrap()
    };
    assert!(gap(&log[1], &log[2]) >= 100, "{log:?}");
    assert!(gap(&log[0], &log[1]) >= 200, "{log:?}");
    // Fetched once: the retries found the artifact in the cache.
    assert_eq!(artifacts.requests("app.tar.gz"), 1);
    wait_running_on(&client, "web", &deployment.release_id()).await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_switches_to_the_kept_release_without_fetching_or_running_it_again() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let text = recipe("");
    let counter = dir.path().join("runs");
    let run = "echo run >> \"$CEREBRO_OPT_COUNTER\"; test -f payload.txt";
    let mut releases = Vec::new();
    for version in ["v1", "v2"] {
        let (bytes, sha) = tarball(&format!("{version}\n"));
        let url = artifacts.put(&format!("app-{version}.tar.gz"), bytes);
        releases.push(deployment(
            &text,
            version,
            json!({"url": url, "sha256": sha, "run": run, "counter": counter.display().to_string()}),
        ));
    }
    let mut pids = Vec::new();
    for deployment in releases.iter().chain([&releases[0]]) {
        let release = deployment.release_id();
        client
            .put_task(&sleeper("web", "sleep 624"), Some(deployment))
            .await
            .unwrap();
        wait_deploy(&client, "web", &release, DeployState::Ready).await;
        let pid = wait_running_on(&client, "web", &release).await;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        assert_eq!(
            std::fs::read_to_string(cwd.join("payload.txt")).unwrap(),
            format!("{}\n", deployment.version.as_deref().unwrap())
        );
        pids.push(pid);
    }
    assert!(pids[0] != pids[1] && pids[1] != pids[2], "{pids:?}");
    let log = client.deploy_log("web").await.unwrap();
    let outcomes: Vec<AttemptOutcome> = log.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Reused,
            AttemptOutcome::Succeeded,
            AttemptOutcome::Succeeded
        ]
    );
    assert!(log[0].steps.is_empty(), "no step ran: {:?}", log[0]);
    assert_eq!(artifacts.requests("app-v1.tar.gz"), 1, "no second download");
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\nrun\n");
    let current = dir
        .state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name("web"))
        .join("current");
    assert_eq!(
        std::fs::read_link(&current).unwrap(),
        Path::new("releases").join(releases[0].release_id())
    );
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machinesitter_restart_does_not_run_the_recipe_again() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let counter = dir.path().join("runs");
    let deployment = deployment(
        &recipe(
            "\n[[steps]]\nkind = \"check\"\ncommand = \"echo checked >> \\\"$CEREBRO_OPT_COUNTER\\\"\"\n",
        ),
        "v1",
        json!({"url": url, "sha256": sha, "counter": counter.display().to_string(),
               "run": "echo ran >> \"$CEREBRO_OPT_COUNTER\""}),
    );
    let release = deployment.release_id();
    let spec = sleeper("web", "sleep 625");
    let mut pid = None;
    for round in 0..2 {
        let sitter = InProcess::boot(dir.path(), &[]).await;
        let client = sitter.client.clone();
        if round == 0 {
            client.put_task(&spec, Some(&deployment)).await.unwrap();
        }
        wait_deploy(&client, "web", &release, DeployState::Ready).await;
        let running = wait_running_on(&client, "web", &release).await;
        assert_eq!(*pid.get_or_insert(running), running, "round {round}");
        let again = client.put_task(&spec, Some(&deployment)).await.unwrap();
        assert_eq!(again.result, PutResult::Unchanged, "round {round}");
        let view = client.task("web").await.unwrap();
        assert_eq!(
            view.sitter_starts, 1,
            "round {round}: re-adopted, not restarted"
        );
        let log = client.deploy_log("web").await.unwrap();
        assert_eq!(log.len(), 1, "round {round}: {log:?}");
        assert_eq!(log[0].outcome, AttemptOutcome::Succeeded);
        assert_eq!(deploy_status(&client, "web").await.attempts, 1);
        sitter.stop().await;
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\nchecked\n");
    assert_eq!(artifacts.requests("app.tar.gz"), 1);

    // The state file lost: the task is recovered from its task dir with
    // the deployment of its current release, which is checked again, not
    // installed again.
    std::fs::remove_file(dir.state_dir().join("state.json")).unwrap();
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let view = client.task("web").await.unwrap();
    assert_eq!(view.deployment.as_ref(), Some(&deployment));
    wait_deploy(&client, "web", &release, DeployState::Ready).await;
    assert_eq!(
        wait_running_on(&client, "web", &release).await,
        pid.unwrap()
    );
    let log = client.deploy_log("web").await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].outcome, AttemptOutcome::Reused);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "ran\nchecked\nchecked\n"
    );
    assert_eq!(artifacts.requests("app.tar.gz"), 1);
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_gates_readiness_and_a_failing_one_reports_its_step() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "600000"]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let flag = dir.path().join("healthy");
    let gated = deployment(
        &recipe(
            "\n[[steps]]\nkind = \"check\"\nname = \"healthy\"\ncommand = \"test -f \\\"$CEREBRO_OPT_FLAG\\\"\"\ninterval = 0.1\ntimeout = 25\n",
        ),
        "v1",
        json!({"url": url, "sha256": sha, "flag": flag.display().to_string()}),
    );
    let release = gated.release_id();
    client
        .put_task(&sleeper("gated", "sleep 626"), Some(&gated))
        .await
        .unwrap();
    // Switched, running on the release, checking, not ready.
    let pid = wait_running_on(&client, "gated", &release).await;
    let status = wait_deploy(&client, "gated", &release, DeployState::Checking).await;
    assert_eq!(status.step.as_deref(), Some("step 4 (check \"healthy\")"));
    assert_eq!(status.running_release.as_deref(), Some(release.as_str()));
    std::fs::write(&flag, "").unwrap();
    wait_deploy(&client, "gated", &release, DeployState::Ready).await;
    let log = client.deploy_log("gated").await.unwrap();
    let check = &log[0].steps[3];
    assert_eq!(
        (check.label.as_str(), check.outcome),
        ("step 4 (check \"healthy\")", StepOutcome::Succeeded)
    );
    assert_eq!(log[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(wait_running_on(&client, "gated", &release).await, pid);

    // A check that never passes: failed, naming it; the release runs on.
    let failing = deployment(
        &recipe(
            "\n[[steps]]\nkind = \"check\"\ntcp = \"127.0.0.1:1\"\ninterval = 0.2\ntimeout = 1\n",
        ),
        "v1",
        json!({"url": url, "sha256": sha}),
    );
    let release = failing.release_id();
    client
        .put_task(&sleeper("failing", "sleep 627"), Some(&failing))
        .await
        .unwrap();
    let status = wait_deploy(&client, "failing", &release, DeployState::Failed).await;
    assert_eq!(status.step.as_deref(), Some("step 4 (check)"));
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("timed out after 1 s"),
        "{status:?}"
    );
    assert_eq!(status.running_release.as_deref(), Some(release.as_str()));
    wait_running_on(&client, "failing", &release).await;

    // An HTTP check: ready once the URL answers 2xx.
    let health = artifacts.put("health", b"ok".to_vec());
    let http_checked = deployment(
        &recipe("\n[[steps]]\nkind = \"check\"\nhttp = \"{{ options.health }}\"\ninterval = 0.1\ntimeout = 25\n"),
        "v1",
        json!({"url": url, "sha256": sha, "health": health}),
    );
    client
        .put_task(&sleeper("http-checked", "sleep 628"), Some(&http_checked))
        .await
        .unwrap();
    wait_deploy(
        &client,
        "http-checked",
        &http_checked.release_id(),
        DeployState::Ready,
    )
    .await;
    let log = client.deploy_log("http-checked").await.unwrap();
    assert!(
        log[0].steps[3].detail.contains("200"),
        "{:?}",
        log[0].steps[3]
    );
    assert_eq!(artifacts.requests("health"), 1);

    // A task asked not to run (auto_start false) is not late: its checks
    // wait for a start instead of failing, and pass once it runs.
    let mut parked = sleeper("parked", "sleep 629");
    parked.auto_start = false;
    let waiting = deployment(
        &recipe("\n[[steps]]\nkind = \"check\"\ncommand = \"true\"\ninterval = 0.1\ntimeout = 1\n"),
        "v1",
        json!({"url": url, "sha256": sha}),
    );
    let release = waiting.release_id();
    client.put_task(&parked, Some(&waiting)).await.unwrap();
    let status = wait_deploy(&client, "parked", &release, DeployState::Checking).await;
    assert_eq!(status.running_release.as_deref(), Some(release.as_str()));
    // Well past the check's 1 s timeout, it still waits rather than fails.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let status = deploy_status(&client, "parked").await;
        assert_eq!(status.state, DeployState::Checking, "{status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let started = client
        .control("parked", cerebro_types::task_api::TaskAction::Start)
        .await
        .unwrap();
    assert!(
        matches!(
            started.result,
            cerebro_types::machine::ActionResult::Done(_)
        ),
        "{started:?}"
    );
    wait_deploy(&client, "parked", &release, DeployState::Ready).await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_deployment_is_refused_naming_its_field() {
    let dir = Cleanup::new();
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let address = sitter.client.base().to_string();
    let http = reqwest::Client::new();
    let good = deployment(
        &recipe(""),
        "v1",
        json!({"url": "http://127.0.0.1:1/a.tar.gz", "sha256": "a".repeat(64)}),
    );
    let mut missing_option = serde_json::to_value(&good).unwrap();
    missing_option["options"]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    let mut bad_type = serde_json::to_value(&good).unwrap();
    bad_type["instance"] = json!("zero");
    for (what, deployment, field) in [
        (
            "an option the recipe reads is missing",
            missing_option,
            "deployment",
        ),
        ("a field of the wrong type", bad_type, "deployment.instance"),
    ] {
        let mut body = spec("sleep 1");
        body["deployment"] = deployment;
        let response = http
            .put(format!("{address}/api/v1/tasks/bad"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{what}");
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["field"], field, "{what}: {reply}");
    }
    assert!(
        sitter.client.task("bad").await.is_err(),
        "nothing was created"
    );
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_as_the_tasks_user_and_own_the_release() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({"url": url, "sha256": sha, "run": "id -u > uid.txt; echo \"$USER\" >> uid.txt"}),
    );
    let mut spec = sleeper("web", "sleep 629");
    spec.uid = Some(cerebro_types::Principal::Name("nobody".into()));
    client.put_task(&spec, Some(&deployment)).await.unwrap();
    let release = deployment.release_id();
    wait_deploy(&client, "web", &release, DeployState::Ready).await;
    let release_dir = release_dir(&dir, "web", &release);
    assert_eq!(
        std::fs::read_to_string(release_dir.join("uid.txt")).unwrap(),
        "65534\nnobody\n"
    );
    use std::os::unix::fs::MetadataExt;
    for path in ["", "payload.txt", "bin/hello", "VERSION"] {
        let meta = std::fs::metadata(release_dir.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{path}");
    }
    wait_running_on(&client, "web", &release).await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cached_artifact_is_fetched_again() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes.clone());
    for (n, task) in ["first", "second"].iter().enumerate() {
        let deployment = deployment(&recipe(""), "v1", json!({"url": url, "sha256": sha}));
        client
            .put_task(&sleeper(task, "sleep 630"), Some(&deployment))
            .await
            .unwrap();
        wait_deploy(&client, task, &deployment.release_id(), DeployState::Ready).await;
        let cached = dir.state_dir().join("deploy/artifacts").join(&sha);
        assert_eq!(std::fs::read(&cached).unwrap(), bytes);
        assert_eq!(artifacts.requests("app.tar.gz"), n + 1);
        // Corrupted behind the machinesitter's back: the next use notices.
        std::fs::write(&cached, b"corrupt").unwrap();
    }
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_release_or_a_delete_cancels_an_install_in_progress() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let text = recipe("");
    let slow = |version: &str, marker: &str| {
        deployment(
            &text,
            version,
            json!({"url": url, "sha256": sha, "run": format!("echo {marker}; sleep 6071"), "run_timeout": 600}),
        )
    };
    let stuck = slow("v1", "stuck");
    client
        .put_task(&sleeper("web", "sleep 631"), Some(&stuck))
        .await
        .unwrap();
    let status = wait_deploy(&client, "web", &stuck.release_id(), DeployState::Installing).await;
    wait_for_async("the slow step to run", || async {
        (!processes(|argv| argv.iter().any(|a| a == "6071")).is_empty()).then_some(())
    })
    .await;
    assert_eq!(status.running_release, None);

    let good = deployment(&text, "v2", json!({"url": url, "sha256": sha}));
    client
        .put_task(&sleeper("web", "sleep 631"), Some(&good))
        .await
        .unwrap();
    wait_deploy(&client, "web", &good.release_id(), DeployState::Ready).await;
    wait_running_on(&client, "web", &good.release_id()).await;
    let log = client.deploy_log("web").await.unwrap();
    let cancelled = log
        .iter()
        .find(|a| a.release == stuck.release_id())
        .unwrap();
    assert_eq!(cancelled.outcome, AttemptOutcome::Failed);
    assert!(
        cancelled.steps[2].detail
            == format!(
                "cancelled: release {} was asked for instead",
                good.release_id()
            ),
        "{cancelled:?}"
    );
    let events = client.events().await.unwrap();
    assert!(
        events.iter().any(|e| e.task == "web"
            && e.message.contains(&format!(
                "deploy of release {} (attempt 1) stopped at step 3 (run): cancelled: release {} was asked for instead",
                stuck.release_id(),
                good.release_id()
            ))),
        "{events:?}"
    );
    assert!(!release_dir(&dir, "web", &stuck.release_id()).exists());

    // Deleting a task mid-install stops the install, and the task goes.
    let again = slow("v3", "again");
    client
        .put_task(&sleeper("web", "sleep 631"), Some(&again))
        .await
        .unwrap();
    wait_deploy(&client, "web", &again.release_id(), DeployState::Installing).await;
    wait_for_async("the slow step to run again", || async {
        (!processes(|argv| argv.iter().any(|a| a == "6071")).is_empty()).then_some(())
    })
    .await;
    let deleted = client.delete_task("web").await.unwrap();
    assert_eq!(
        deleted.result,
        cerebro_types::machine::ActionResult::Deleted
    );
    assert!(processes(|argv| argv.iter().any(|a| a == "6071")).is_empty());
    assert!(!dir
        .state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name("web"))
        .exists());
    sitter.stop().await;
}

/// Every file under `dir` bigger than `max` bytes.
fn files_bigger_than(dir: &Path, max: u64) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_bigger_than(&path, max));
        } else if meta.len() > max {
            found.push((path, meta.len()));
        }
    }
    found
}

/// The `.partial-*` downloads in the artifact cache of `dir`.
fn partials(dir: &Cleanup) -> Vec<PathBuf> {
    std::fs::read_dir(dir.state_dir().join("deploy/artifacts"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".partial-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_url_is_read_as_the_tasks_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Cleanup::new();
    // The task's user may look into the test's directory, not at the file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "600000"]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("root only\n");
    let file = dir.path().join("secret.tar.gz");
    std::fs::write(&file, bytes).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("file://{}", file.display());
    let mut spec = sleeper("web", "sleep 641");
    spec.uid = Some(cerebro_types::Principal::Name("nobody".into()));

    let refused = deployment(&recipe(""), "v1", json!({"url": url, "sha256": sha}));
    client.put_task(&spec, Some(&refused)).await.unwrap();
    let status = wait_deploy(&client, "web", &refused.release_id(), DeployState::Failed).await;
    assert_eq!(
        status.step.as_deref(),
        Some("step 1 (fetch \"release tarball\")")
    );
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("Permission denied") && error.contains("as nobody"),
        "{error}"
    );
    assert!(!dir.state_dir().join("deploy/artifacts").join(&sha).exists());

    // Readable by everyone: the same file deploys.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = deployment(&recipe(""), "v2", json!({"url": url, "sha256": sha}));
    client.put_task(&spec, Some(&readable)).await.unwrap();
    wait_deploy(&client, "web", &readable.release_id(), DeployState::Ready).await;
    let release_dir = release_dir(&dir, "web", &readable.release_id());
    assert_eq!(
        std::fs::read_to_string(release_dir.join("payload.txt")).unwrap(),
        "root only\n"
    );

    // Unreadable again: the copy cached meanwhile is not handed out.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let again = deployment(&recipe(""), "v3", json!({"url": url, "sha256": sha}));
    client.put_task(&spec, Some(&again)).await.unwrap();
    let status = wait_deploy(&client, "web", &again.release_id(), DeployState::Failed).await;
    let error = status.error.unwrap_or_default();
    assert!(error.contains("Permission denied"), "{error}");
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_steps_background_children_are_killed_when_it_ends() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({"url": url, "sha256": sha, "run": "sleep 1234 & echo started"}),
    );
    client
        .put_task(&sleeper("web", "sleep 642"), Some(&deployment))
        .await
        .unwrap();
    wait_deploy(&client, "web", &deployment.release_id(), DeployState::Ready).await;
    let log = client.deploy_log("web").await.unwrap();
    assert!(log[0].steps[2].output.contains("started"), "{log:?}");
    wait_for_async("the step's background sleep to be killed", || async {
        processes(|argv| argv == ["sleep", "1234"])
            .is_empty()
            .then_some(())
    })
    .await;
    sitter.stop().await;
}

/// A process group of its own running `sleep MARKER` (reaped by a thread
/// as soon as it ends), and its `PGID START_TICKS` record.
fn orphan_group(marker: &str) -> (Orphan, String) {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sleep")
        .arg(marker)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    std::thread::spawn(move || child.wait());
    let ticks = cerebro_host::process::start_ticks(pid).unwrap();
    (Orphan(pid), format!("{pid} {ticks}\n"))
}

/// Killed when dropped, also when an assertion fails.
struct Orphan(i32);

impl Drop for Orphan {
    fn drop(&mut self) {
        if !process_gone(self.0) {
            cerebro_tests::kill(self.0, cerebro_tests::SIGKILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_left_running_by_a_killed_machinesitter_is_killed_before_the_next_attempt() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "600000"]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let deploy_dir = dir
        .state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name("web"));
    std::fs::create_dir_all(&deploy_dir).unwrap();
    // As a machinesitter killed with -9 mid-step leaves it.
    let (orphan, record) = orphan_group("7643");
    let pid = orphan.0;
    std::fs::write(deploy_dir.join("step-group"), record).unwrap();
    // The run step fails while the old group's leader still runs.
    let run = format!(
        "s=$(cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null); if [ -n \"$s\" ] && [ \"$s\" != Z ]; then echo still running; exit 9; fi"
    );
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({"url": url, "sha256": sha, "run": run}),
    );
    client
        .put_task(&sleeper("web", "sleep 643"), Some(&deployment))
        .await
        .unwrap();
    let status = wait_deploy(&client, "web", &deployment.release_id(), DeployState::Ready).await;
    assert_eq!(status.attempts, 1);
    assert!(process_gone(pid));
    assert!(!deploy_dir.join("step-group").exists());
    let events = client.events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.task == "web" && e.message.contains(&format!("killed process group {pid}"))),
        "{events:?}"
    );

    // A machinesitter starting kills such a group too.
    let (orphan, record) = orphan_group("7644");
    let pid = orphan.0;
    std::fs::write(deploy_dir.join("step-group"), record).unwrap();
    sitter.stop().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    // The group is killed, then its record removed: wait for both.
    wait_for_async("the left group to be killed at start", || async {
        (process_gone(pid) && !deploy_dir.join("step-group").exists()).then_some(())
    })
    .await;
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_stops_when_its_task_is_deleted_and_leftover_partials_go_at_start() {
    let dir = Cleanup::new();
    let cache = dir.state_dir().join("deploy/artifacts");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(".partial-leftover-1-0"), b"half").unwrap();
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    // Endless, and never the digest asked for.
    let endless = deployment(
        &recipe(""),
        "v1",
        json!({"url": "file:///dev/zero", "sha256": "0".repeat(64)}),
    );
    client
        .put_task(&sleeper("web", "sleep 644"), Some(&endless))
        .await
        .unwrap();
    wait_for_async("the fetch to be under way", || async {
        partials(&dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
            .then_some(())
    })
    .await;
    client.delete_task("web").await.unwrap();
    let release = endless.release_id();
    wait_for_async("the fetch to stop", || async {
        let events = client.events().await.ok()?;
        events
            .iter()
            .any(|e| {
                e.task == "web"
                    && e.message.contains(&release)
                    && e.message
                        .contains("stopped at step 1 (fetch \"release tarball\")")
                    && e.message.contains("cancelled: the task")
            })
            .then_some(())
    })
    .await;
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_output_is_kept_as_a_bounded_tail_in_memory() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &[]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({"url": url, "sha256": sha, "run": "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the-end"}),
    );
    client
        .put_task(&sleeper("web", "sleep 645"), Some(&deployment))
        .await
        .unwrap();
    wait_deploy(&client, "web", &deployment.release_id(), DeployState::Ready).await;
    let big = files_bigger_than(&dir.state_dir(), 1 << 20);
    assert!(big.is_empty(), "{big:?}");
    let log = client.deploy_log("web").await.unwrap();
    let output = &log[0].steps[2].output;
    assert!(
        output.ends_with("xxx\nthe-end\n"),
        "{}",
        &output[output.len().saturating_sub(100)..]
    );
    assert!(output.len() <= cerebro_types::deploy::STEP_OUTPUT_TAIL_BYTES);
    sitter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_removing_the_release_directory_fails_the_deploy() {
    let dir = Cleanup::new();
    let artifacts = Artifacts::start().await;
    let sitter = InProcess::boot(dir.path(), &["--deploy-retry-base-ms", "600000"]).await;
    let client = sitter.client.clone();
    let (bytes, sha) = tarball("v1\n");
    let url = artifacts.put("app.tar.gz", bytes);
    let deployment = deployment(
        &recipe(""),
        "v1",
        json!({"url": url, "sha256": sha, "run": "rm -rf \"$CEREBRO_RELEASE_DIR\""}),
    );
    client
        .put_task(&sleeper("web", "sleep 646"), Some(&deployment))
        .await
        .unwrap();
    let status = wait_deploy(
        &client,
        "web",
        &deployment.release_id(),
        DeployState::Failed,
    )
    .await;
    assert_eq!(status.step.as_deref(), Some("step 3 (run)"));
    assert!(
        status
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("the release directory is gone"),
        "{status:?}"
    );
    assert_eq!(status.running_release, None);
    let current = dir
        .state_dir()
        .join("deploy")
        .join(cerebro_host::layout::dir_name("web"))
        .join("current");
    assert!(std::fs::symlink_metadata(&current).is_err());
    let view = client.task("web").await.unwrap();
    assert!(view.tasksitter.is_none(), "{view:?}");
    sitter.stop().await;
}
