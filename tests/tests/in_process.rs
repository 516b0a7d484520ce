//! A clustersitter booted in-process through `clustersitter::serve`: the
//! test binds 127.0.0.1:0 itself, drives the cluster through
//! `ClusterClient` and stops it through its shutdown future, not a signal.
//! Its machines are real machinesitter processes (the local provider).

use cerebro_client::{ClusterClient, HttpClient};
use cerebro_tests::{bin, kill_processes_under, workloads, TIMEOUT};
use cerebro_types::cluster::{InstanceState, JobResult};
use clap::Parser;
use std::future::Future;
use std::time::Duration;

/// Polls `probe` until it answers, failing the test after `TIMEOUT`.
async fn eventually<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}

/// Kills what the local provider started under the test's dir, even when
/// the test fails half-way.
struct Cleanup(tempfile::TempDir);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_processes_under(self.0.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_clustersitter_runs_a_job_and_stops_on_request() {
    let dir = Cleanup(tempfile::tempdir().unwrap());
    let config_path = dir.0.path().join("cluster.toml");
    std::fs::write(
        &config_path,
        format!(
            "cluster_name = \"in-process\"\nstate_dir = \"{}\"\npoll_interval = \"200ms\"\n\
             on_exit = \"stop\"\n[provider]\nkind = \"local\"\nzones = [\"zone-a\"]\n\
             machine_cpu = 2.0\nmachine_mem = 512.0\nmachinesitter_bin = \"{}\"\n",
            dir.0.path().join("state").display(),
            bin("machinesitter").display()
        ),
    )
    .unwrap();
    let config = clustersitter::config::Cli::try_parse_from([
        "clustersitter",
        "--config",
        config_path.to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cluster = tokio::spawn(clustersitter::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let client = ClusterClient::new(HttpClient::new(Duration::from_secs(10), 3), &address, None);

    let text = r#"{"persistent": true, "deployment_layout": {"zone-a": {"cpu": 2}},
        "task_configuration": {"name": "inproc", "command": "sleep 901", "cpu": 0.5,
        "mem": 20, "ensure_alive": true, "stop_timeout": 2}}"#;
    let job = cerebro_types::job_file::parse_jobs(text, "inproc.json")
        .unwrap()
        .remove(0);
    let reply = client.put_job(&job).await.unwrap();
    assert_eq!(reply.result, JobResult::Created);

    let running = eventually("both instances to run", || async {
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
    assert_eq!(workloads("901").len(), 2);
    assert_eq!(client.machines().await.unwrap().len(), 1);

    // The shutdown future ends the daemon; `on_exit = "stop"` ends its machines.
    stop.send(()).unwrap();
    tokio::time::timeout(TIMEOUT, cluster)
        .await
        .expect("the clustersitter stops in time")
        .expect("the clustersitter's task")
        .expect("the clustersitter stops without an error");
    eventually("the workloads to stop with their machines", || async {
        workloads("901").is_empty().then_some(())
    })
    .await;
    assert!(
        client.status().await.is_err(),
        "nothing listens after the shutdown"
    );
}
