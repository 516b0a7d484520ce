//! A clustersitter booted in-process through `clustersitter::serve`: the
//! test binds 127.0.0.1:0 itself, drives the cluster through
//! `ClusterClient` and stops it through its shutdown handle, not a signal.
//! Its machines are either machinesitters served in this process too (a
//! test `MachineProvider` over `machinesitter::serve`), or real
//! machinesitter processes (the local provider). Either way the tasks run
//! under real tasksitter binaries.

use async_trait::async_trait;
use cerebro_client::{ClusterClient, HttpClient};
use cerebro_tests::{bin, kill_processes_under, wait_for_async, workloads, TIMEOUT};
use cerebro_types::cluster::{InstanceState, JobResult};
use cerebro_web::daemon::{shutdown_channel, ShutdownHandle};
use clap::Parser;
use clustersitter::provider::{
    FoundMachine, MachineProvider, NewMachine, ProviderError, ProviderStatus, Provisioned,
};
use clustersitter::ClusterError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Kills what the test's machines started under its dir, even when the
/// test fails half-way.
struct Cleanup(tempfile::TempDir);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_processes_under(self.0.path());
    }
}

type MachineTask = JoinHandle<Result<(), machinesitter::MachineError>>;

/// "Provisions" a machine by serving a machinesitter in this process on a
/// fresh 127.0.0.1 port; terminating it requests its shutdown (it runs
/// with `--on-exit stop`, so its tasks stop with it).
struct InProcessMachines {
    dir: PathBuf,
    /// The cluster's token file, which its machines present.
    token_file: PathBuf,
    running: Mutex<HashMap<String, (ShutdownHandle, MachineTask)>>,
}

#[async_trait]
impl MachineProvider for InProcessMachines {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn provision(&self, machine: &NewMachine) -> Result<Provisioned, ProviderError> {
        let state_dir = self.dir.join(&machine.id);
        let (cpu, mem) = (
            machine.size.cpu.to_string(),
            (machine.size.mem_mb.ceil() as u64).to_string(),
        );
        let tasksitter = bin("tasksitter");
        let config = machinesitter::config::Cli::try_parse_from([
            "machinesitter",
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--machine-id",
            &machine.id,
            "--zone",
            &machine.zone,
            "--capacity-cpu",
            &cpu,
            "--capacity-mem",
            &mem,
            "--cluster-url",
            &machine.cluster_url,
            "--on-exit",
            "stop",
            "--tasksitter-bin",
            tasksitter.to_str().unwrap(),
            // The cluster's token: registering is a change the cluster guards.
            "--token-file",
            self.token_file.to_str().unwrap(),
        ])
        .expect("machinesitter flags")
        .into_config()
        .expect("a machinesitter config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (stop, shutdown) = shutdown_channel();
        let task = tokio::spawn(machinesitter::serve(config, listener, shutdown));
        let mut running = self.running.lock().unwrap();
        running.insert(machine.id.clone(), (stop, task));
        Ok(Provisioned {
            provider_id: machine.id.clone(),
            size: machine.size,
            details: Default::default(),
        })
    }

    async fn status(&self, provider_id: &str) -> Result<ProviderStatus, ProviderError> {
        let running = self.running.lock().unwrap();
        let alive = running
            .get(provider_id)
            .is_some_and(|(_, task)| !task.is_finished());
        Ok(if alive {
            ProviderStatus::Exists {
                state: "serving".into(),
            }
        } else {
            ProviderStatus::Gone {
                state: "stopped".into(),
            }
        })
    }

    async fn terminate(&self, machine_id: &str, _provider_id: &str) -> Result<(), ProviderError> {
        let Some((stop, task)) = self.running.lock().unwrap().remove(machine_id) else {
            return Ok(());
        };
        stop.request();
        match tokio::time::timeout(TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            _ => Err(ProviderError::Survivors(machine_id.to_string())),
        }
    }

    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError> {
        Ok(Vec::new())
    }
}

/// The token of the clusters here, in `token` under their dir.
const TOKEN: &str = "in-process-token";

/// A one-zone cluster config with its state under `dir` and the token
/// [`TOKEN`] in `dir/token`; machines stop with the cluster.
fn cluster_config(dir: &Path) -> clustersitter::config::ClusterConfig {
    let config_path = dir.join("cluster.toml");
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(
        &config_path,
        format!(
            "cluster_name = \"in-process\"\nstate_dir = \"{}\"\npoll_interval = \"200ms\"\ntoken_file = \"token\"\n\
             on_exit = \"stop\"\n[provider]\nkind = \"local\"\nzones = [\"zone-a\"]\n\
             machine_cpu = 2.0\nmachine_mem = 512.0\nmachinesitter_bin = \"{}\"\n",
            dir.join("state").display(),
            bin("machinesitter").display()
        ),
    )
    .unwrap();
    clustersitter::config::Cli::try_parse_from([
        "clustersitter",
        "--config",
        config_path.to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap()
}

/// Submits a two-instance `sleep MARKER` job, sees both instances run,
/// stops the cluster through `stop` and sees its machines' workloads go.
async fn run_a_job_then_stop(
    address: &str,
    marker: &str,
    stop: ShutdownHandle,
    cluster: JoinHandle<Result<(), ClusterError>>,
) {
    let client = ClusterClient::new(
        HttpClient::new(Duration::from_secs(10), 3),
        address,
        Some(TOKEN.to_string()),
    );
    let text = format!(
        r#"{{"persistent": true, "deployment_layout": {{"zone-a": {{"cpu": 2}}}},
        "task_configuration": {{"name": "inproc", "command": "sleep {marker}", "cpu": 0.5,
        "mem": 20, "ensure_alive": true, "stop_timeout": 2}}}}"#
    );
    let job = cerebro_types::job_file::parse_jobs(&text, "inproc.json")
        .unwrap()
        .remove(0);
    let reply = client.put_job(&job).await.unwrap();
    assert_eq!(reply.result, JobResult::Created);

    let running = wait_for_async("both instances to run", || async {
        let view = client.job("inproc").await.ok()?;
        (view.instances.len() == 2
            && view
                .instances
                .iter()
                .all(|i| i.state == InstanceState::Running && i.pid.is_some()))
        .then_some(view)
    })
    .await;
    assert_eq!(running.running_instances, 2);
    assert_eq!(workloads(marker).len(), 2);
    assert_eq!(client.machines().await.unwrap().len(), 1);

    // The shutdown request ends the daemon; `on_exit = "stop"` ends its machines.
    stop.request();
    tokio::time::timeout(TIMEOUT, cluster)
        .await
        .expect("the clustersitter stops in time")
        .expect("the clustersitter's task")
        .expect("the clustersitter stops without an error");
    wait_for_async("the workloads to stop with their machines", || async {
        workloads(marker).is_empty().then_some(())
    })
    .await;
    assert!(
        client.status().await.is_err(),
        "nothing listens after the shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_and_its_machines_in_process_run_a_job_and_stop_on_request() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let config = cluster_config(dir.0.path());
    let machines = Arc::new(InProcessMachines {
        dir: dir.0.path().join("machines"),
        token_file: dir.0.path().join("token"),
        running: Mutex::new(HashMap::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, shutdown) = shutdown_channel();
    let cluster = tokio::spawn(clustersitter::serve_with(
        config,
        machines.clone(),
        listener,
        shutdown,
    ));
    run_a_job_then_stop(&address, "902", stop, cluster).await;
    assert!(
        machines.running.lock().unwrap().is_empty(),
        "every in-process machine was terminated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_cluster_with_local_machines_runs_a_job_and_stops_on_request() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let config = cluster_config(dir.0.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, shutdown) = shutdown_channel();
    let cluster = tokio::spawn(clustersitter::serve(config, listener, shutdown));
    run_a_job_then_stop(&address, "901", stop, cluster).await;
}

/// What `PUT /api/v1/jobs/{name}` answers for the JSON job `body`.
async fn put_raw_job(address: &str, name: &str, body: &serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .put(format!("http://{address}/api/v1/jobs/{name}"))
        .bearer_auth(TOKEN)
        .body(body.to_string())
        .send()
        .await
        .expect("the PUT is answered");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// `GET http://127.0.0.1:{port}/` once something there answers it.
async fn get_root(port: u16) -> String {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_for_async(&format!("an answer on port {port}"), || {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .ok()?;
            response.text().await.ok()
        }
    })
    .await
}

/// Named ports end to end: two instances of a job on one local machine
/// each get a port of their own, bind it, find it in `PORT` and
/// `CEREBRO_PORT_HTTP`, serve their own working directory (not the
/// daemons'), and `cerebro status` shows `address:port` for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_machine_get_ports_of_their_own_shown_by_cerebro_status() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let config = cluster_config(dir.0.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, shutdown) = shutdown_channel();
    let cluster = tokio::spawn(clustersitter::serve(config, listener, shutdown));
    let job = |ports: serde_json::Value| {
        serde_json::json!({
            "persistent": true,
            "deployment_layout": {"zone-a": {"cpu": 2}},
            "task_configuration": {"name": "web",
                "command": "touch served-here; exec python3 -m http.server $PORT --bind 127.0.0.1",
                "ports": ports, "cpu": 0.5, "mem": 100, "ensure_alive": true, "stop_timeout": 2},
        })
    };
    let (code, body) = put_raw_job(&address, "web", &job(serde_json::json!(["Web"]))).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("task_configuration.ports"), "{body}");
    let (code, body) = put_raw_job(&address, "web", &job(serde_json::json!(["http"]))).await;
    assert_eq!(code, 201, "{body}");

    let client = ClusterClient::new(
        HttpClient::new(Duration::from_secs(10), 3),
        &address,
        Some(TOKEN.to_string()),
    );
    let view = wait_for_async("both instances to run with their ports", || async {
        let view = client.job("web").await.ok()?;
        (view.instances.len() == 2
            && view.instances.iter().all(|i| {
                i.state == InstanceState::Running && i.pid.is_some() && i.ports.contains_key("http")
            }))
        .then_some(view)
    })
    .await;
    let ports: Vec<u16> = view.instances.iter().map(|i| i.ports["http"]).collect();
    assert_ne!(
        ports[0], ports[1],
        "one port is never given to two instances"
    );
    for instance in &view.instances {
        assert_eq!(instance.host.as_deref(), Some("127.0.0.1"), "{instance:?}");
        let (pid, port) = (instance.pid.unwrap(), instance.ports["http"].to_string());
        assert_eq!(cerebro_tests::env_of(pid, "PORT"), Some(port.clone()));
        assert_eq!(cerebro_tests::env_of(pid, "CEREBRO_PORT_HTTP"), Some(port));
    }
    for port in &ports {
        let listing = get_root(*port).await;
        assert!(listing.contains("served-here"), "{listing}");
        // The tests' own directory, where the daemons run, has one.
        assert!(!listing.contains("Cargo.toml"), "{listing}");
    }

    let mut cli = std::process::Command::new(bin("cerebro"));
    cli.args(["--cluster", &format!("http://{address}"), "status", "web"])
        .env("CEREBRO_TOKEN", TOKEN)
        .env("XDG_CONFIG_HOME", dir.0.path().join("config"))
        .env_remove("CEREBRO_CLUSTER");
    let output = tokio::task::spawn_blocking(move || cli.output().expect("run cerebro"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{output:?}");
    assert!(text.contains("PORTS"), "{text}");
    for port in &ports {
        assert!(text.contains(&format!("http=127.0.0.1:{port}")), "{text}");
    }

    stop.request();
    tokio::time::timeout(TIMEOUT, cluster)
        .await
        .expect("the clustersitter stops in time")
        .expect("the clustersitter's task")
        .expect("the clustersitter stops without an error");
}
