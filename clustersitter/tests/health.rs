//! Health as the on-call person sees it, end to end in process: a
//! clustersitter served by `clustersitter::serve` with the local provider
//! (real machinesitter and tasksitter processes, built before the tests:
//! `cargo build -p machinesitter -p tasksitter --bins`). A stop or start
//! shows at once; a crash-looping job is crash-looping, not running, with
//! its exits and violations told as events of the job.

use cerebro_client::{ClusterClient, HttpClient};
use cerebro_tests::{wait_for_async, Cluster, ClusterOptions, TIMEOUT};
use cerebro_types::cluster::{ClusterEvent, JobView};
use cerebro_types::health::{InstanceHealth, JobHealth};
use cerebro_types::task::ViolationKind;
use cerebro_web::daemon::{shutdown_channel, ShutdownHandle};
use clustersitter::ClusterError;
use std::time::Duration;
use tokio::task::JoinHandle;

const TOKEN: &str = "health-token";

/// A cluster of one local zone (`zone-a`, machines of 2 cores and 512 MB)
/// polled every 200 ms, served in this process; its machines stop with it.
struct InProcess {
    client: ClusterClient,
    stop: ShutdownHandle,
    task: JoinHandle<Result<(), ClusterError>>,
}

impl InProcess {
    /// Serves the clustersitter on `files` (see [`Cluster::in_process`]).
    async fn start(files: &Cluster) -> InProcess {
        let config = <clustersitter::config::Cli as clap::Parser>::try_parse_from([
            "clustersitter",
            "--config",
            files.config_path().to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, shutdown) = shutdown_channel();
        let task = tokio::spawn(clustersitter::serve(config, listener, shutdown));
        let client = ClusterClient::new(
            HttpClient::new(Duration::from_secs(10), 3),
            &address,
            Some(TOKEN.to_string()),
        );
        InProcess { client, stop, task }
    }

    async fn put(&self, job: serde_json::Value) {
        let spec = cerebro_types::job_file::parse_jobs(&job.to_string(), "test.json")
            .unwrap()
            .remove(0);
        self.client.put_job(&spec).await.expect("the job is taken");
    }

    /// Job `name` once `done` holds for it.
    async fn job_when(&self, what: &str, name: &str, done: impl Fn(&JobView) -> bool) -> JobView {
        wait_for_async(what, || async {
            let view = self.client.job(name).await.ok()?;
            done(&view).then_some(view)
        })
        .await
    }

    /// The events of `kind` about job `job`, oldest first.
    async fn events(&self, job: &str, kind: &str) -> Vec<ClusterEvent> {
        let mut events: Vec<ClusterEvent> = self
            .client
            .events(Some(1000))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.kind.name() == kind
                    && e.concerns(&cerebro_types::cluster::EventSubject::Job(job.into()))
            })
            .collect();
        events.sort_by_key(|e| e.at_ms);
        events
    }

    async fn shut_down(self) {
        self.stop.request();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the clustersitter stops in time")
            .expect("the clustersitter's task")
            .expect("the clustersitter stops without an error");
    }
}

fn healths(view: &JobView) -> Vec<InstanceHealth> {
    view.instances.iter().map(|i| i.health).collect()
}

/// A stop shows at once: right after the API answers, no instance counts
/// as running (each is stopping, or already stopped), and the status
/// agrees; then they are stopped. A start shows as starting at once, and
/// only a process seen up is told as running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_and_a_start_show_at_once() {
    let files = Cluster::in_process("health", TOKEN, ClusterOptions::default());
    let cluster = InProcess::start(&files).await;
    cluster
        .put(serde_json::json!({
            "persistent": true, "deployment_layout": {"zone-a": {"cpu": 2}},
            "task_configuration": {"name": "ticker", "command": "sleep 904", "cpu": 0.5,
                "mem": 20, "ensure_alive": true, "stop_timeout": 2},
        }))
        .await;
    cluster
        .job_when("both instances to run", "ticker", |v| {
            v.running_instances == 2 && v.health == JobHealth::Healthy
        })
        .await;
    let started = cluster.events("ticker", "instance_started").await;
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(
        started[0].message.starts_with("ticker #")
            && started[0].message.contains("(zone-a) running on zone-a-")
            && started[0].message.contains(", pid "),
        "{started:?}"
    );

    cluster.client.stop_job("ticker").await.unwrap();
    let view = cluster.client.job("ticker").await.unwrap();
    let status = cluster.client.status().await.unwrap();
    assert_eq!(view.running_instances, 0, "{:?}", healths(&view));
    assert!(
        view.instances.iter().all(|i| !i.wanted_running
            && matches!(i.health, InstanceHealth::Stopping | InstanceHealth::Stopped)),
        "{:?}",
        healths(&view)
    );
    assert_eq!(status.running_instances, 0);
    assert_eq!(status.instances.running, 0);
    assert_eq!(status.instances.stopping + status.instances.stopped, 2);
    cluster
        .job_when("both instances to be stopped", "ticker", |v| {
            v.health_counts.stopped == 2 && v.health == JobHealth::Healthy
        })
        .await;
    let put = cluster.client.events(Some(1000)).await.unwrap();
    assert!(
        put.iter().any(|e| e.kind.name() == "task_put"
            && e.message.contains("stays stopped (stopped by request)")),
        "the stop is sent, and said so: {put:?}"
    );
    assert!(
        put.iter()
            .all(|e| !(e.kind.name() == "task_put" && e.message.starts_with("runs "))),
        "no put says a task runs"
    );
    // A stopped instance is not restarted behind the job's back: the
    // cluster would count as stopping a process that runs.
    let refused = cluster
        .client
        .restart_instance("ticker", 0)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert!(
        refused.to_string().contains("start the job first"),
        "{refused}"
    );
    let view = cluster.client.job("ticker").await.unwrap();
    assert!(
        view.instances.iter().all(|i| i.pid.is_none()),
        "{:?}",
        healths(&view)
    );

    cluster.client.start_job("ticker").await.unwrap();
    let view = cluster.client.job("ticker").await.unwrap();
    assert!(
        view.instances.iter().all(|i| i.wanted_running
            && matches!(i.health, InstanceHealth::Starting | InstanceHealth::Running)),
        "{:?}",
        healths(&view)
    );
    assert!(view.health_counts.starting > 0, "{:?}", healths(&view));
    cluster
        .job_when("both instances to run again", "ticker", |v| {
            v.running_instances == 2
        })
        .await;
    let started = cluster.events("ticker", "instance_started").await;
    assert_eq!(started.len(), 4, "{started:?}");
    cluster.shut_down().await;
}

/// A job whose process goes past its memory limit and one that exits 3
/// every 0.2 s: both are crash-looping (not running, not counted as
/// running), their jobs failing, their last exit known, and the events of
/// each job tell the violation with its values, each end with its reason
/// and restart count, and the crash loop once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_job_is_crash_looping_with_its_reasons() {
    let files = Cluster::in_process("health", TOKEN, ClusterOptions::default());
    let cluster = InProcess::start(&files).await;
    let backoff =
        serde_json::json!({"initial_secs": 0.1, "max_secs": 0.5, "healthy_after_secs": 10});
    cluster
        .put(serde_json::json!({
            "persistent": true, "deployment_layout": {"zone-a": {"cpu": 1}},
            "task_configuration": {"name": "hog", "command": "head -c 300M /dev/zero | tail",
                "cpu": 0.5, "mem": 50, "restart": true, "ensure_alive": true,
                "stop_timeout": 1, "backoff": backoff},
        }))
        .await;
    cluster
        .put(serde_json::json!({
            "persistent": true, "deployment_layout": {"zone-a": {"cpu": 1}},
            "task_configuration": {"name": "looper", "command": "sleep 0.2; exit 3",
                "cpu": 0.5, "mem": 20, "ensure_alive": true, "stop_timeout": 1,
                "backoff": backoff},
        }))
        .await;
    for job in ["hog", "looper"] {
        let view = cluster
            .job_when(&format!("{job} to be crash-looping"), job, |v| {
                v.instances
                    .iter()
                    .all(|i| i.health == InstanceHealth::CrashLooping)
            })
            .await;
        assert_eq!(view.health, JobHealth::Failing, "{job}");
        assert_eq!(view.running_instances, 0, "{job}");
        assert_eq!(view.health_counts.crash_looping, 1, "{job}");
        let instance = &view.instances[0];
        assert!(instance.recent_restarts >= 3, "{instance:?}");
        let last = instance.last_exit.as_ref().expect("its last exit is known");
        if job == "looper" {
            assert_eq!(
                last.status,
                Some(cerebro_types::task::ExitStatus::Code(3)),
                "{last:?}"
            );
        } else {
            let Some(violation) = last.violation.as_ref() else {
                panic!("the violation that ended it: {instance:?}")
            };
            assert_eq!(violation.kind, ViolationKind::Memory);
            assert!(violation.measured >= violation.limit, "{violation:?}");
        }
    }
    let status = cluster.client.status().await.unwrap();
    assert_eq!(status.running_instances, 0);
    assert_eq!(status.instances.crash_looping, 2);
    assert_eq!(status.jobs_by_health.get(&JobHealth::Failing), Some(&2));

    let looping = wait_for_async("the crash loops told", || async {
        let hog = cluster.events("hog", "instance_crash_looping").await;
        let looper = cluster.events("looper", "instance_crash_looping").await;
        (!hog.is_empty() && !looper.is_empty()).then_some((hog, looper))
    })
    .await;
    for (job, told) in [("hog", &looping.0), ("looper", &looping.1)] {
        assert_eq!(told.len(), 1, "once: {told:?}");
        let message = &told[0].message;
        assert!(
            message.starts_with(&format!("{job} #0 (zone-a) on zone-a-"))
                && message.contains("is crash-looping: ")
                && message.contains(" restarts in 5 min; last: "),
            "{message}"
        );
        assert!(told[0].machine.is_some(), "{told:?}");
    }
    let exited = cluster.events("looper", "instance_exited").await;
    assert!(
        exited
            .iter()
            .any(|e| e.message.contains("exit code 3") && e.message.contains("; restart")),
        "{exited:?}"
    );
    let violations = cluster.events("hog", "instance_violation").await;
    assert!(
        violations
            .iter()
            .any(|e| e.message.starts_with("hog #0 (zone-a) on zone-a-")
                && e.message.contains("memory")
                && e.message.contains(" MB used, limit 50.0 MB")),
        "{violations:?}"
    );
    let all = cluster.client.events(Some(1000)).await.unwrap();
    assert!(
        all.iter()
            .all(|e| !matches!(e.kind.name(), "task_violation" | "task_restarted")),
        "the old machine events are gone"
    );
    cluster.shut_down().await;
}

/// A machine that stops answering: its instance stops counting as running
/// at the first missed poll, pending with its machine named, long before
/// the machine is called unreachable (here never: the threshold is high).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_machines_instances_stop_counting_at_once() {
    let files = Cluster::in_process(
        "health",
        TOKEN,
        ClusterOptions {
            failure_threshold: 1000,
            ..ClusterOptions::default()
        },
    );
    let cluster = InProcess::start(&files).await;
    cluster
        .put(serde_json::json!({
            "persistent": true, "deployment_layout": {"zone-a": {"cpu": 1}},
            "task_configuration": {"name": "ticker", "command": "sleep 905", "cpu": 0.5,
                "mem": 20, "ensure_alive": true, "stop_timeout": 1},
        }))
        .await;
    let view = cluster
        .job_when("the instance to run", "ticker", |v| {
            v.running_instances == 1
        })
        .await;
    let machine = view.instances[0].machine.clone().unwrap();
    let provider_id = cluster
        .client
        .machine(&machine)
        .await
        .unwrap()
        .provider_id
        .unwrap();
    let pid: i32 = provider_id.split('/').next().unwrap().parse().unwrap();
    cerebro_tests::kill(pid, libc::SIGKILL);
    let view = cluster
        .job_when("the instance to stop counting", "ticker", |v| {
            v.running_instances == 0
        })
        .await;
    let instance = &view.instances[0];
    assert_eq!(instance.health, InstanceHealth::Pending, "{instance:?}");
    let pending = instance.pending.as_ref().unwrap();
    assert_eq!(pending.code, "machine_unreachable", "{pending:?}");
    assert!(
        pending
            .message
            .starts_with(&format!("its machine {machine} missed ")),
        "{pending:?}"
    );
    let status = cluster.client.status().await.unwrap();
    assert_eq!(status.running_instances, 0);
    assert_eq!(status.instances.pending, 1);
    let seen = cluster.client.machine(&machine).await.unwrap();
    assert_eq!(
        seen.state,
        cerebro_types::cluster::MachineState::Ready,
        "not yet called unreachable"
    );
    assert!(seen.missed_polls >= 1);
    cluster.stop.request();
    let _ = tokio::time::timeout(TIMEOUT, cluster.task).await;
}
