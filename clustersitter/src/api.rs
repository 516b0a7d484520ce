//! The clustersitter's JSON API under /api/v1 (and /metrics): a thin edge
//! over [`crate::ops`]. Handlers parse and validate the request, call one
//! operation and turn its answer or [`OpError`] into a response.

use crate::ops::{OpError, Ops};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use cerebro_types::cluster::{
    BinaryInfo, ClusterEvent, ClusterStatus, IdleLimitRequest, JobReply, JobResult, JobView,
    MachineState, MachineView, PlanReply, RegisterReply, RegisterRequest, UpdateRequest,
};
use cerebro_types::health::{InstanceHealth, JobHealth};
use cerebro_types::history::HistoryView;
use cerebro_types::job::JobSpec;
use cerebro_types::job_file::parse_jobs;
use cerebro_types::task_api::LogQuery;
use cerebro_types::LogChunk;
use cerebro_web::metrics::{Exposition, MetricKind};
use cerebro_web::{parse_json_body, require_token, require_token_always, ApiError, Token};
use std::collections::HashMap;

/// The API's routes over `ops`. When the cluster has a `token`, every
/// request that changes something (not GET/HEAD/OPTIONS) must carry it as
/// a bearer token, and so must every request for the binaries.
pub fn router(ops: Ops, token: Option<Token>) -> Router {
    // Our programs go only to the machines, which hold the token; the
    // other reads stay public.
    let binaries = Router::new()
        .route("/api/v1/binaries", get(list_binaries))
        .route("/api/v1/binaries/{name}", get(get_binary))
        .route_layer(middleware::from_fn_with_state(
            token.clone(),
            require_token_always,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/dns", get(dns_status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/jobs", get(list_jobs))
        .route(
            "/api/v1/jobs/{name}",
            get(get_job).put(put_job).delete(delete_job),
        )
        .route("/api/v1/jobs/{name}/update", post(update_job))
        .route(
            "/api/v1/jobs/{name}/start",
            post(|ops, name| start_or_stop_job(ops, name, true)),
        )
        .route(
            "/api/v1/jobs/{name}/stop",
            post(|ops, name| start_or_stop_job(ops, name, false)),
        )
        .route(
            "/api/v1/jobs/{name}/instances/{index}/restart",
            post(restart_instance),
        )
        .route(
            "/api/v1/jobs/{name}/instances/{index}/logs/{stream}",
            get(instance_logs),
        )
        .route("/api/v1/jobs/{name}/deploylog", get(deploy_log))
        .route("/api/v1/plan", post(plan))
        .route("/api/v1/machines", get(list_machines))
        .route("/api/v1/machines/register", post(register))
        .route("/api/v1/machines/{id}", get(get_machine))
        .route("/api/v1/machines/{id}/history", get(machine_history))
        .route("/api/v1/jobs/{name}/history", get(job_history))
        .route("/api/v1/idle-limit", put(set_idle_limit))
        .merge(binaries)
        .layer(middleware::from_fn_with_state(token, require_token))
        .with_state(ops)
}

/// `GET /api/v1/binaries`: `[{"name", "sha256", "size"}]`.
async fn list_binaries(State(ops): State<Ops>) -> Result<Json<Vec<BinaryInfo>>, ApiError> {
    Ok(Json(ops.binaries()?))
}

/// `GET /api/v1/binaries/{name}`: the bytes, as
/// `application/octet-stream`, with their digest in `x-cerebro-sha256`.
async fn get_binary(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let (binary, bytes) = ops.binary(&name).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::header::HeaderName::from_static("x-cerebro-sha256"),
                binary.sha256,
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn status(State(ops): State<Ops>) -> Json<ClusterStatus> {
    Json(ops.status())
}

/// `GET /api/v1/dns`: the DNS reconciler's [`cerebro_types::dns::DnsStatus`].
async fn dns_status(State(ops): State<Ops>) -> Json<cerebro_types::dns::DnsStatus> {
    Json(ops.dns_status())
}

async fn events(
    State(ops): State<Ops>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ClusterEvent>>, ApiError> {
    let limit = match query.get("limit") {
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_field("limit", "must be a whole number"))?,
        None => 200,
    };
    Ok(Json(ops.events(limit)))
}

async fn list_jobs(State(ops): State<Ops>) -> Json<Vec<JobView>> {
    Json(ops.jobs())
}

async fn get_job(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(ops.job(&name)?))
}

/// One job from a request body in the job file format (JSON, or the
/// lenient form with comments and trailing commas).
fn parse_one_job(body: &[u8], url_name: &str) -> Result<JobSpec, OpError> {
    let text =
        std::str::from_utf8(body).map_err(|_| OpError::field("body", "must be UTF-8 text"))?;
    let mut jobs =
        parse_jobs(text, "request body").map_err(|e| OpError::Invalid(e.to_validation_errors()))?;
    if jobs.len() != 1 {
        return Err(OpError::field(
            "body",
            format!("expected one job, found {}", jobs.len()),
        ));
    }
    let job = jobs.remove(0);
    if job.name() != url_name {
        return Err(OpError::field(
            "task_configuration.name",
            format!(
                "'{}' does not match the job name in the URL, '{url_name}'",
                job.name()
            ),
        ));
    }
    Ok(job)
}

async fn put_job(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobReply>), ApiError> {
    let job = parse_one_job(&body, &name)?;
    let put = ops.put_job(job)?;
    let result = JobResult::from(put.outcome);
    let code = if result == JobResult::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(JobReply {
            result,
            job: put.view,
        }),
    ))
}

async fn delete_job(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<JobReply>, ApiError> {
    ops.remove_job(&name)?;
    Ok(Json(JobReply {
        result: JobResult::Deleted,
        job: None,
    }))
}

/// `POST /jobs/{name}/start` (`run`) and `/stop`.
async fn start_or_stop_job(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    run: bool,
) -> Result<Json<JobReply>, ApiError> {
    let job = ops.request_run(&name, run)?;
    Ok(Json(JobReply {
        result: if run {
            JobResult::Starting
        } else {
            JobResult::Stopping
        },
        job,
    }))
}

/// Starts a rolling update; an empty body takes every default.
async fn update_job(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<JobReply>, ApiError> {
    let request: UpdateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UpdateRequest::default()
    } else {
        parse_json_body(&body)?
    };
    let view = ops.start_rollout(&name, &request)?;
    Ok(Json(JobReply {
        result: JobResult::Updating,
        job: view,
    }))
}

fn instance_index(text: &str) -> Result<usize, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_field("index", "must be an instance number"))
}

async fn restart_instance(
    State(ops): State<Ops>,
    Path((name, index)): Path<(String, String)>,
) -> Result<Json<JobReply>, ApiError> {
    let index = instance_index(&index)?;
    ops.restart_instance(&name, index).await?;
    Ok(Json(JobReply {
        result: JobResult::Restarting,
        job: None,
    }))
}

async fn instance_logs(
    State(ops): State<Ops>,
    Path((name, index, stream)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<LogChunk>, ApiError> {
    let index = instance_index(&index)?;
    // The same parameters and checks as the machinesitter's own log read.
    let piece = LogQuery::from_pairs(&pairs)?;
    Ok(Json(
        ops.read_instance_log(&name, index, &stream, &piece).await?,
    ))
}

/// `GET /api/v1/jobs/{name}/deploylog[?instance=N]`: each instance's
/// deployment attempts as its machine keeps them (see [`Ops::deploy_log`]).
async fn deploy_log(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<cerebro_types::deploy::InstanceDeployLog>>, ApiError> {
    let instance = match query.get("instance") {
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| ApiError::bad_field("instance", "must be an instance number"))?,
        ),
        None => None,
    };
    Ok(Json(ops.deploy_log(&name, instance).await?))
}

/// Dry run: the placement these jobs would get, applying nothing.
async fn plan(State(ops): State<Ops>, body: Bytes) -> Result<Json<PlanReply>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_field("body", "must be UTF-8 text"))?;
    let jobs =
        parse_jobs(text, "request body").map_err(|e| ApiError::from(e.to_validation_errors()))?;
    Ok(Json(ops.plan(&jobs)?))
}

async fn list_machines(State(ops): State<Ops>) -> Json<Vec<MachineView>> {
    Json(ops.machines())
}

async fn get_machine(
    State(ops): State<Ops>,
    Path(id): Path<String>,
) -> Result<Json<MachineView>, ApiError> {
    Ok(Json(ops.machine(&id)?))
}

/// The last hour of CPU and RSS of machine `id` and its tasks.
async fn machine_history(
    State(ops): State<Ops>,
    Path(id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    Ok(Json(ops.machine_history(&id)?))
}

/// The last hour of CPU and RSS of job `name`'s instances.
async fn job_history(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    Ok(Json(ops.job_history(&name)?))
}

/// A machinesitter announces itself (see [`Ops::register`]).
async fn register(
    State(ops): State<Ops>,
    body: Bytes,
) -> Result<(StatusCode, Json<RegisterReply>), ApiError> {
    let request: RegisterRequest = parse_json_body(&body)?;
    let result = ops.register(&request).await?;
    Ok((StatusCode::OK, Json(RegisterReply { result })))
}

async fn set_idle_limit(
    State(ops): State<Ops>,
    body: Bytes,
) -> Result<Json<ClusterStatus>, ApiError> {
    let request: IdleLimitRequest = parse_json_body(&body)?;
    Ok(Json(ops.apply_idle_limit(&request)?))
}

/// `/metrics`: the cluster's totals, each job's running instances and
/// whether each machine is ready, read from the state at scrape time.
async fn metrics(State(ops): State<Ops>) -> Exposition {
    let cluster = ops.read();
    let views = cluster.job_views();
    let status = cluster.status_with(&views);
    let name = status.cluster.as_str();
    let mut out = Exposition::default();
    for (metric, help, value) in [
        ("cerebro_cluster_jobs", "jobs", status.jobs as f64),
        (
            "cerebro_cluster_machines",
            "machines in any state",
            status.machines as f64,
        ),
        (
            "cerebro_cluster_instances_desired",
            "instances the jobs want",
            status.desired_instances as f64,
        ),
        (
            "cerebro_cluster_instances_running",
            "instances running",
            status.running_instances as f64,
        ),
        (
            "cerebro_cluster_instances_unplaced",
            "instances without a machine",
            status.unplaced.len() as f64,
        ),
    ] {
        out.single(metric, MetricKind::Gauge, help, &[("cluster", name)], value);
    }
    let running = "cerebro_job_instances_running";
    out.family(running, MetricKind::Gauge, "instances of the job running");
    for view in &views {
        out.sample(
            running,
            &[("cluster", name), ("job", &view.name)],
            view.running_instances as f64,
        );
    }
    // Counted by the one health definition (the running gauges above too).
    let instances = "cerebro_instances";
    out.family(instances, MetricKind::Gauge, "instances by health");
    for health in InstanceHealth::ALL {
        out.sample(
            instances,
            &[("cluster", name), ("health", health.wire())],
            status.instances.get(health) as f64,
        );
    }
    let jobs = "cerebro_jobs";
    out.family(jobs, MetricKind::Gauge, "jobs by health");
    for health in JobHealth::ALL {
        out.sample(
            jobs,
            &[("cluster", name), ("health", health.as_str())],
            status.jobs_by_health.get(&health).copied().unwrap_or(0) as f64,
        );
    }
    let by_job = "cerebro_job_instances";
    out.family(by_job, MetricKind::Gauge, "instances of the job by health");
    for view in &views {
        for health in InstanceHealth::ALL {
            out.sample(
                by_job,
                &[
                    ("cluster", name),
                    ("job", &view.name),
                    ("health", health.wire()),
                ],
                view.health_counts.get(health) as f64,
            );
        }
    }
    let up = "cerebro_machine_up";
    out.family(up, MetricKind::Gauge, "1 while the machine is ready");
    for machine in cluster.machines() {
        out.sample(
            up,
            &[
                ("cluster", name),
                ("machine", &machine.id),
                ("zone", &machine.zone),
            ],
            f64::from(u8::from(machine.state() == MachineState::Ready)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::config::Cli;
    use axum::response::IntoResponse;
    use cerebro_types::cluster::InstanceKey;
    use clap::Parser;
    use std::sync::{Arc, Mutex};

    /// A binary replaced on disk after start is refused with a 500 that
    /// says so, never served under the old digest; an unknown name is a 404.
    #[tokio::test]
    async fn a_binary_changed_since_start_is_a_server_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut configured = std::collections::BTreeMap::new();
        for name in crate::binaries::MACHINE_BINARIES {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            configured.insert(name, path);
        }
        let catalog = crate::binaries::Catalog::locate(&configured).unwrap();
        let config = Cli::try_parse_from([
            "clustersitter",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap();
        let cluster = Cluster::new(
            Arc::new(config),
            crate::store::ClusterState::new(1, Default::default()),
            "local",
        );
        let ops = Ops::new(
            Arc::new(Mutex::new(cluster)),
            Default::default(),
            cerebro_client::HttpClient::new(std::time::Duration::from_secs(1), 1),
        )
        .with_binaries(Ok(Arc::new(catalog)));
        let served = get_binary(State(ops.clone()), Path("tasksitter".into()))
            .await
            .unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        let missing = get_binary(State(ops.clone()), Path("sh".into()))
            .await
            .unwrap_err();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        std::fs::write(dir.path().join("tasksitter"), "replaced").unwrap();
        let changed = get_binary(State(ops), Path("tasksitter".into()))
            .await
            .unwrap_err();
        assert_eq!(changed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            changed
                .body
                .error
                .contains("changed since the clustersitter started"),
            "{}",
            changed.body.error
        );
    }

    /// The v1 fixture's cluster (three jobs, two machines), read by `/metrics`.
    #[tokio::test]
    async fn metrics_keep_their_lines() {
        let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
        let dir = tempfile::tempdir().unwrap();
        let config = Cli::try_parse_from([
            "clustersitter",
            "--cluster-name",
            "test \"quoted\"",
            "--state-dir",
            dir.path().to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap();
        let cerebro_host::fs::StateFile::Read(state) = crate::store::load(fixture.path()) else {
            panic!("the v1 fixture loads");
        };
        let cluster = Cluster::new(Arc::new(config), state, "local");
        let ops = Ops::new(
            Arc::new(Mutex::new(cluster)),
            Default::default(),
            cerebro_client::HttpClient::new(std::time::Duration::from_secs(1), 1),
        );
        let response = metrics(State(ops)).await.into_response();
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let expected = concat!(
            "# HELP cerebro_cluster_jobs jobs\n# TYPE cerebro_cluster_jobs gauge\n",
            "cerebro_cluster_jobs{cluster=\"test \\\"quoted\\\"\"} 3\n",
            "# HELP cerebro_cluster_machines machines in any state\n",
            "# TYPE cerebro_cluster_machines gauge\n",
            "cerebro_cluster_machines{cluster=\"test \\\"quoted\\\"\"} 2\n",
            "# HELP cerebro_cluster_instances_desired instances the jobs want\n",
            "# TYPE cerebro_cluster_instances_desired gauge\n",
            "cerebro_cluster_instances_desired{cluster=\"test \\\"quoted\\\"\"} 6\n",
            "# HELP cerebro_cluster_instances_running instances running\n",
            "# TYPE cerebro_cluster_instances_running gauge\n",
            "cerebro_cluster_instances_running{cluster=\"test \\\"quoted\\\"\"} 0\n",
            "# HELP cerebro_cluster_instances_unplaced instances without a machine\n",
            "# TYPE cerebro_cluster_instances_unplaced gauge\n",
            "cerebro_cluster_instances_unplaced{cluster=\"test \\\"quoted\\\"\"} 0\n",
            "# HELP cerebro_job_instances_running instances of the job running\n",
            "# TYPE cerebro_job_instances_running gauge\n",
            "cerebro_job_instances_running{cluster=\"test \\\"quoted\\\"\",job=\"follower\"} 0\n",
            "cerebro_job_instances_running{cluster=\"test \\\"quoted\\\"\",job=\"master\"} 0\n",
            "cerebro_job_instances_running{cluster=\"test \\\"quoted\\\"\",job=\"transient job\"} 0\n",
            "# HELP cerebro_instances instances by health\n# TYPE cerebro_instances gauge\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"running\"} 0\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"starting\"} 0\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"pending\"} 5\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"crash_looping\"} 0\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"failed\"} 0\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"stopping\"} 0\n",
            "cerebro_instances{cluster=\"test \\\"quoted\\\"\",health=\"stopped\"} 1\n",
            "# HELP cerebro_jobs jobs by health\n# TYPE cerebro_jobs gauge\n",
            "cerebro_jobs{cluster=\"test \\\"quoted\\\"\",health=\"healthy\"} 1\n",
            "cerebro_jobs{cluster=\"test \\\"quoted\\\"\",health=\"degraded\"} 2\n",
            "cerebro_jobs{cluster=\"test \\\"quoted\\\"\",health=\"failing\"} 0\n",
            "# HELP cerebro_job_instances instances of the job by health\n",
            "# TYPE cerebro_job_instances gauge\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"running\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"starting\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"pending\"} 2\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"crash_looping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"failed\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"stopping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"follower\",health=\"stopped\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"running\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"starting\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"pending\"} 3\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"crash_looping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"failed\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"stopping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"master\",health=\"stopped\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"running\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"starting\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"pending\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"crash_looping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"failed\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"stopping\"} 0\n",
            "cerebro_job_instances{cluster=\"test \\\"quoted\\\"\",job=\"transient job\",health=\"stopped\"} 1\n",
            "# HELP cerebro_machine_up 1 while the machine is ready\n",
            "# TYPE cerebro_machine_up gauge\n",
            "cerebro_machine_up{cluster=\"test \\\"quoted\\\"\",machine=\"local-a-1\",zone=\"local-a\"} 1\n",
            "cerebro_machine_up{cluster=\"test \\\"quoted\\\"\",machine=\"local-b-3\",zone=\"local-b\"} 1\n",
        );
        assert_eq!(text, expected);
    }

    /// Ops over a cluster with the v1 fixture's jobs and machines, looking
    /// for recipes in `recipe_dirs`.
    fn fixture_ops(dir: &std::path::Path, recipe_dirs: Vec<std::path::PathBuf>) -> Ops {
        let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let mut config = Cli::try_parse_from([
            "clustersitter",
            "--state-dir",
            dir.join("state").to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap();
        config.recipe_dirs = recipe_dirs;
        let cerebro_host::fs::StateFile::Read(state) = crate::store::load(fixture.path()) else {
            panic!("the v1 fixture loads");
        };
        let cluster = Cluster::new(Arc::new(config), state, "local");
        Ops::new(
            Arc::new(Mutex::new(cluster)),
            Default::default(),
            cerebro_client::HttpClient::new(std::time::Duration::from_secs(1), 1),
        )
    }

    fn web_job(recipe: &str, options: serde_json::Value) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "deployment_recipe": recipe,
                "recipe_options": options,
                "deployment_layout": {"local-a": {"cpu": 1}},
                "task_configuration": {"name": "web", "command": "./serve"},
            })
            .to_string(),
        )
    }

    /// A dry run that needs more machines than `max_machines` (16 by
    /// default; the fixture has 2) says so in `warnings`; one that fits
    /// has none, and none in its JSON.
    #[tokio::test]
    async fn a_dry_run_beyond_max_machines_warns() {
        let dir = tempfile::tempdir().unwrap();
        let ops = fixture_ops(dir.path(), Vec::new());
        let batch = |instances: u32| {
            Bytes::from(
                serde_json::json!({
                    "deployment_layout": {"local-a": {"cpu": instances}},
                    "task_configuration": {"name": "big", "command": "sleep 1", "cpu": 2, "mem": 10},
                })
                .to_string(),
            )
        };
        let Json(reply) = plan(State(ops.clone()), batch(17)).await.unwrap();
        assert_eq!(
            reply.warnings[0],
            "the plan needs 17 new machines in zone local-a but max_machines (16, with 2 machines already) lets only 14 be added"
        );
        assert_eq!(
            reply.plan.provision.len(),
            14,
            "the plan itself keeps to the limit"
        );
        let Json(reply) = plan(State(ops.clone()), batch(3)).await.unwrap();
        assert!(reply.warnings.is_empty(), "{:?}", reply.warnings);
        assert!(!serde_json::to_string(&reply).unwrap().contains("warnings"));
    }

    /// A dry run tells each planned instance's job-wide number: those of
    /// a job the cluster runs as they are (`master`'s instance in local-b
    /// is #2), a new job's as they would be given.
    #[tokio::test]
    async fn a_dry_run_numbers_instances_as_the_cluster_would() {
        let dir = tempfile::tempdir().unwrap();
        let ops = fixture_ops(dir.path(), Vec::new());
        let body = serde_json::json!({
            "deployment_layout": {"local-a": {"cpu": 1}, "local-b": {"cpu": 2}},
            "task_configuration": {"name": "fresh", "command": "sleep 1", "mem": 10},
        });
        let Json(reply) = plan(State(ops), Bytes::from(body.to_string()))
            .await
            .unwrap();
        let number = |job: &str, zone: &str, slot: u32| {
            reply.number_of(&InstanceKey {
                job: job.into(),
                zone: zone.into(),
                slot,
            })
        };
        assert_eq!(number("master", "local-b", 0), Some(2));
        assert_eq!(number("master", "local-a", 1), Some(1));
        assert_eq!(
            [
                number("fresh", "local-a", 0),
                number("fresh", "local-b", 0),
                number("fresh", "local-b", 1)
            ],
            [Some(0), Some(1), Some(2)]
        );
    }

    fn fields(error: &ApiError) -> Vec<String> {
        error.body.errors.iter().map(|e| e.field.clone()).collect()
    }

    /// An unknown recipe and a recipe whose options are missing are
    /// refused at submission (and in a dry run) with a 400 naming the
    /// field; a good one is created with its snapshot.
    #[tokio::test]
    async fn a_job_submission_is_refused_for_an_unknown_recipe_or_a_missing_option() {
        let dir = tempfile::tempdir().unwrap();
        let recipes = dir.path().join("recipes");
        std::fs::create_dir_all(&recipes).unwrap();
        let ops = fixture_ops(dir.path(), vec![recipes.clone()]);
        let put = |body: Bytes| put_job(State(ops.clone()), Path("web".into()), body);

        let unknown = put(web_job("mystartup.recipes.nope", serde_json::json!({})))
            .await
            .unwrap_err();
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&unknown), ["deployment_recipe"]);
        let message = &unknown.body.errors[0].message;
        assert!(
            message.contains(
                &recipes
                    .join("mystartup/recipes/nope.toml")
                    .display()
                    .to_string()
            ) && message.contains("release-tarball, install-script"),
            "{message}"
        );
        let dry = plan(State(ops.clone()), web_job("nope", serde_json::json!({})))
            .await
            .unwrap_err();
        assert_eq!(fields(&dry), ["deployment_recipe"]);

        let missing = put(web_job(
            "release-tarball",
            serde_json::json!({"url": "http://127.0.0.1:1/a.tar.gz"}),
        ))
        .await
        .unwrap_err();
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&missing), ["recipe_options.sha256"]);
        assert!(ops.read().job("web").is_none(), "nothing was created");

        let (status, Json(reply)) = put(web_job(
            "release-tarball",
            serde_json::json!({"url": "http://127.0.0.1:1/a.tar.gz", "sha256": "0".repeat(64)}),
        ))
        .await
        .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        let recipe = reply.job.unwrap().recipe.unwrap();
        assert_eq!(recipe.source, "builtin:release-tarball");
        assert_eq!(recipe.steps[0], "step 1 (fetch \"release archive\")");
    }

    /// `updatejob` reads the recipe again: one that no longer resolves
    /// refuses the update with a 400 naming `deployment_recipe`, changing
    /// nothing.
    #[tokio::test]
    async fn an_update_whose_recipe_no_longer_resolves_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let recipes = dir.path().join("recipes");
        std::fs::create_dir_all(&recipes).unwrap();
        let file = recipes.join("site.toml");
        std::fs::write(&file, "[[steps]]\nkind = \"run\"\ncommand = \"true\"\n").unwrap();
        let ops = fixture_ops(dir.path(), vec![recipes]);
        let (created, _) = put_job(
            State(ops.clone()),
            Path("web".into()),
            web_job("site", serde_json::json!({})),
        )
        .await
        .unwrap();
        assert_eq!(created, StatusCode::CREATED);
        let before = ops.job("web").unwrap();
        // A changed file is what the update deploys.
        std::fs::write(&file, "[[steps]]\nkind = \"run\"\ncommand = \"make\"\n").unwrap();
        let Json(updated) = update_job(
            State(ops.clone()),
            Path("web".into()),
            Bytes::from(r#"{"version": "v1"}"#),
        )
        .await
        .unwrap();
        let updated = updated.job.unwrap();
        assert_eq!(updated.version.as_deref(), Some("v1"));
        assert_ne!(
            updated.recipe.as_ref().unwrap().sha256,
            before.recipe.as_ref().unwrap().sha256
        );
        let generation = updated.generation;
        std::fs::remove_file(&file).unwrap();
        let refused = update_job(
            State(ops.clone()),
            Path("web".into()),
            Bytes::from(r#"{"version": "v2"}"#),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&refused), ["deployment_recipe"]);
        let job = ops.job("web").unwrap();
        assert_eq!(
            (job.generation, job.version.as_deref()),
            (generation, Some("v1"))
        );
    }

    /// An update is checked with the version it brings: a recipe whose
    /// templates have nothing for it refuses the update and changes nothing.
    #[tokio::test]
    async fn an_update_is_checked_with_its_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let recipes = dir.path().join("recipes");
        std::fs::create_dir_all(&recipes).unwrap();
        std::fs::write(
            recipes.join("site.toml"),
            "[[steps]]\nkind = \"write\"\npath = \"digest\"\ntemplate = \"{{ options.sha256[version] }}\"\n",
        )
        .unwrap();
        let ops = fixture_ops(dir.path(), vec![recipes]);
        let options = serde_json::json!({"sha256": {"": "none", "v1": "aa"}});
        let (created, _) = put_job(
            State(ops.clone()),
            Path("web".into()),
            web_job("site", options),
        )
        .await
        .unwrap();
        assert_eq!(created, StatusCode::CREATED);
        let update = |version: &'static str| {
            update_job(
                State(ops.clone()),
                Path("web".into()),
                Bytes::from(format!(r#"{{"version": "{version}"}}"#)),
            )
        };
        let Json(accepted) = update("v1").await.unwrap();
        assert_eq!(accepted.job.unwrap().version.as_deref(), Some("v1"));
        let refused = update("v2").await.unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&refused), ["deployment_recipe"]);
        assert_eq!(ops.job("web").unwrap().version.as_deref(), Some("v1"));
    }

    /// The deploy log: 404 for an unknown job, 400 naming `instance` for
    /// a bad one, and an entry with `error` for an instance whose machine
    /// does not answer or that is not placed.
    #[tokio::test]
    async fn the_deploy_log_names_what_it_could_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let ops = fixture_ops(dir.path(), Vec::new());
        let query = |pairs: &[(&str, &str)]| {
            Query(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            )
        };
        let missing = deploy_log(State(ops.clone()), Path("nope".into()), query(&[]))
            .await
            .unwrap_err();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        for bad in ["x", "9"] {
            let error = deploy_log(
                State(ops.clone()),
                Path("master".into()),
                query(&[("instance", bad)]),
            )
            .await
            .unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(
                error
                    .body
                    .field
                    .as_deref()
                    .or(fields(&error).first().map(String::as_str)),
                Some("instance")
            );
        }
        let Json(all) = deploy_log(State(ops.clone()), Path("master".into()), query(&[]))
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        assert!(
            all.iter()
                .all(|e| e.attempts.is_empty() && e.error.is_some()),
            "{all:?}"
        );
        let Json(one) = deploy_log(
            State(ops),
            Path("master".into()),
            query(&[("instance", "2")]),
        )
        .await
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            (one[0].instance, one[0].zone.as_str(), one[0].task.as_str()),
            (2, "local-b", "master#2")
        );
        assert_eq!(one[0].machine.as_deref(), Some("local-b-3"));
    }
}
