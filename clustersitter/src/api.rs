//! The clustersitter's HTTP API (JSON under /api/v1). Handlers validate at
//! the edge, change the desired state under the lock, persist it and wake
//! the reconciler; nothing here talks to a machine except the log proxy.

use crate::cluster::{lock, SharedCluster};
use crate::placement::{place, PlacementInput};
use crate::store::MachineRecord;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use cerebro_types::cluster::{
    ClusterEvent, ClusterStatus, IdleLimitRequest, JobView, MachineState, MachineView, Plan,
    RegisterRequest, UpdateRequest,
};
use cerebro_types::job::{instance_task_name, JobSpec};
use cerebro_types::job_file::parse_jobs;
use cerebro_types::time::now_ms;
use cerebro_types::LogChunk;
use cerebro_web::html::encode_path_segment;
use cerebro_web::{parse_json_body, require_token, ApiError, HttpClient, Token};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub cluster: SharedCluster,
    pub notify: Arc<Notify>,
    pub client: HttpClient,
    pub sessions: crate::ui::Sessions,
}

pub fn router(state: AppState, token: Option<Token>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/jobs", get(list_jobs))
        .route(
            "/api/v1/jobs/{name}",
            get(get_job).put(put_job).delete(delete_job),
        )
        .route("/api/v1/jobs/{name}/update", post(update_job))
        .route(
            "/api/v1/jobs/{name}/start",
            post(|app, name| start_or_stop_job(app, name, true)),
        )
        .route(
            "/api/v1/jobs/{name}/stop",
            post(|app, name| start_or_stop_job(app, name, false)),
        )
        .route(
            "/api/v1/jobs/{name}/instances/{index}/restart",
            post(restart_instance_handler),
        )
        .route(
            "/api/v1/jobs/{name}/instances/{index}/logs/{stream}",
            get(instance_logs),
        )
        .route("/api/v1/plan", post(plan))
        .route("/api/v1/machines", get(list_machines))
        .route("/api/v1/machines/register", post(register))
        .route("/api/v1/machines/{id}", get(get_machine))
        .route("/api/v1/idle-limit", put(set_idle_limit))
        .layer(middleware::from_fn_with_state(token, require_token))
        // The pages authenticate with a session cookie and a CSRF token instead.
        .merge(crate::ui::routes())
        .with_state(state)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JobReply {
    /// created, updated, unchanged, deleted or updating.
    pub result: String,
    pub job: Option<JobView>,
}

fn no_such_job(name: &str) -> ApiError {
    ApiError::not_found(format!("no job named '{name}'"))
}

fn persist_or_500(cluster: &crate::cluster::Cluster) -> Result<(), ApiError> {
    cluster
        .persist()
        .map_err(|e| ApiError::internal(format!("cannot persist the cluster state: {e}")))
}

async fn status(State(app): State<AppState>) -> Json<ClusterStatus> {
    Json(lock(&app.cluster).status())
}

async fn events(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ClusterEvent>>, ApiError> {
    let limit = match query.get("limit") {
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_field("limit", "must be a whole number"))?,
        None => 200,
    };
    let cluster = lock(&app.cluster);
    Ok(Json(
        cluster.events.iter().rev().take(limit).cloned().collect(),
    ))
}

async fn list_jobs(State(app): State<AppState>) -> Json<Vec<JobView>> {
    Json(lock(&app.cluster).job_views())
}

async fn get_job(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    lock(&app.cluster)
        .view_of_job(&name)
        .map(Json)
        .ok_or_else(|| no_such_job(&name))
}

/// One job from a request body in the job file format (JSON, or the
/// lenient form with comments and trailing commas).
fn parse_one_job(body: &[u8], url_name: &str) -> Result<JobSpec, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_field("body", "must be UTF-8 text"))?;
    let mut jobs =
        parse_jobs(text, "request body").map_err(|e| ApiError::from(e.to_validation_errors()))?;
    if jobs.len() != 1 {
        return Err(ApiError::bad_field(
            "body",
            format!("expected one job, found {}", jobs.len()),
        ));
    }
    let job = jobs.remove(0);
    if job.name() != url_name {
        return Err(ApiError::bad_field(
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
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobReply>), ApiError> {
    let job = parse_one_job(&body, &name)?;
    let (result, view) = {
        let mut cluster = lock(&app.cluster);
        cluster.check_job(&job)?;
        let result = cluster.upsert_job(job);
        if result != "unchanged" {
            persist_or_500(&cluster)?;
        }
        (result, cluster.view_of_job(&name))
    };
    app.notify.notify_one();
    let code = if result == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(JobReply {
            result: result.into(),
            job: view,
        }),
    ))
}

async fn delete_job(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobReply>, ApiError> {
    remove_job(&app, &name)?;
    Ok(Json(JobReply {
        result: "deleted".into(),
        job: None,
    }))
}

/// `POST /jobs/{name}/start` (`run`) and `/stop`.
async fn start_or_stop_job(
    State(app): State<AppState>,
    Path(name): Path<String>,
    run: bool,
) -> Result<Json<JobReply>, ApiError> {
    let job = request_run(&app, &name, run)?;
    Ok(Json(JobReply {
        result: if run { "starting" } else { "stopping" }.into(),
        job,
    }))
}

/// Starts (`run`) or stops every instance of `name`, now and wherever
/// instances are placed later, whatever `auto_start` says; the machines
/// apply it as a spec change.
pub fn request_run(app: &AppState, name: &str, run: bool) -> Result<Option<JobView>, ApiError> {
    let view = {
        let mut guard = lock(&app.cluster);
        let cluster = &mut *guard;
        let job = cluster
            .state
            .jobs
            .get_mut(name)
            .ok_or_else(|| no_such_job(name))?;
        if job.run_requested != Some(run) {
            job.run_requested = Some(run);
            job.updated_ms = now_ms();
            let message = if run {
                "start requested: every instance runs"
            } else {
                "stop requested: every instance stops"
            };
            cluster.event("job", name, message);
            persist_or_500(cluster)?;
        }
        cluster.view_of_job(name)
    };
    app.notify.notify_one();
    Ok(view)
}

/// Removes a job unless others are linked to it; its instances stop.
pub fn remove_job(app: &AppState, name: &str) -> Result<(), ApiError> {
    {
        let mut cluster = lock(&app.cluster);
        if !cluster.state.jobs.contains_key(name) {
            return Err(no_such_job(name));
        }
        let followers: Vec<String> = cluster
            .state
            .jobs
            .iter()
            .filter(|(_, j)| j.spec.linked_job.as_deref() == Some(name))
            .map(|(n, _)| n.clone())
            .collect();
        if !followers.is_empty() {
            return Err(ApiError::conflict(format!(
                "jobs linked to '{name}' must be removed first: {}",
                followers.join(", ")
            )));
        }
        cluster.state.jobs.remove(name);
        cluster.event("job", name, "removed; its instances stop");
        persist_or_500(&cluster)?;
    }
    app.notify.notify_one();
    Ok(())
}

/// Starts a rolling update: instances restart one machine at a time
/// (`max_parallel`), each machine's instances running healthy for
/// `min_healthy_secs` before the next machine goes.
async fn update_job(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<JobReply>, ApiError> {
    let request: UpdateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UpdateRequest::default()
    } else {
        parse_json_body(&body)?
    };
    let view = start_rollout(&app, &name, &request)?;
    Ok(Json(JobReply {
        result: "updating".into(),
        job: view,
    }))
}

/// Starts (or retargets) a rolling update of `name`.
pub fn start_rollout(
    app: &AppState,
    name: &str,
    request: &UpdateRequest,
) -> Result<Option<JobView>, ApiError> {
    if let Some(secs) = request.min_healthy_secs {
        if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
            return Err(ApiError::bad_field(
                "min_healthy_secs",
                "must be 0 to 86400 seconds",
            ));
        }
    }
    if request.max_parallel == Some(0) {
        return Err(ApiError::bad_field("max_parallel", "must be at least 1"));
    }
    let view = {
        let mut guard = lock(&app.cluster);
        let cluster = &mut *guard;
        let hosting = cluster.machines_hosting(name);
        let default_healthy = cluster.config.min_healthy;
        let job = cluster
            .state
            .jobs
            .get_mut(name)
            .ok_or_else(|| no_such_job(name))?;
        if request.version.is_some() {
            job.version = request.version.clone();
        }
        job.begin_rollout(
            &hosting,
            request
                .min_healthy_secs
                .map_or(default_healthy.as_millis() as u64, |s| (s * 1000.0) as u64),
            request.max_parallel.unwrap_or(1),
            now_ms(),
        );
        let message = format!(
            "rolling update to generation {}{} over {} machines",
            job.generation,
            request
                .version
                .as_ref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default(),
            hosting.len()
        );
        cluster.event("job", name, message);
        persist_or_500(cluster)?;
        cluster.view_of_job(name)
    };
    app.notify.notify_one();
    Ok(view)
}

/// The machine address and task name of instance `index` of `name`.
fn locate_instance(app: &AppState, name: &str, index: usize) -> Result<(String, String), ApiError> {
    let cluster = lock(&app.cluster);
    if !cluster.state.jobs.contains_key(name) {
        return Err(no_such_job(name));
    }
    let instances = cluster.instances_of(name);
    let instance = instances.get(index).ok_or_else(|| {
        ApiError::not_found(format!(
            "job '{name}' has {} instances (0 to {})",
            instances.len(),
            instances.len().saturating_sub(1)
        ))
    })?;
    let machine = instance.machine.clone().ok_or_else(|| {
        ApiError::conflict(format!("instance {index} of '{name}' is not placed yet"))
    })?;
    let address = cluster
        .state
        .machines
        .get(&machine)
        .and_then(|m| m.address.clone())
        .ok_or_else(|| ApiError::conflict(format!("machine {machine} has no address yet")))?;
    Ok((address, instance_task_name(&instance.job, instance.slot)))
}

async fn restart_instance_handler(
    State(app): State<AppState>,
    Path((name, index)): Path<(String, String)>,
) -> Result<Json<JobReply>, ApiError> {
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::bad_field("index", "must be an instance number"))?;
    restart_instance(&app, &name, index).await?;
    Ok(Json(JobReply {
        result: "restarting".into(),
        job: None,
    }))
}

/// Restarts one instance through its machine (its spec is unchanged).
pub async fn restart_instance(app: &AppState, name: &str, index: usize) -> Result<(), ApiError> {
    let (address, task) = locate_instance(app, name, index)?;
    let token = lock(&app.cluster)
        .config
        .token
        .as_ref()
        .map(|t| t.expose().to_string());
    let url = format!(
        "http://{address}/api/v1/tasks/{}/restart",
        encode_path_segment(&task)
    );
    app.client
        .post_json::<(), serde_json::Value>(&url, token.as_deref(), None)
        .await
        .map_err(|e| match e.status() {
            // Placed but not created on its machine yet.
            Some(404) => ApiError::not_found(format!(
                "instance {index} of '{name}' is not on its machine yet; try again shortly"
            )),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the machine did not answer: {e}"),
            ),
        })?;
    lock(&app.cluster).event(
        "job",
        name,
        format!("instance {index} restarted by request"),
    );
    Ok(())
}

/// Only these query keys reach the machine, re-encoded from parsed numbers.
const LOG_QUERY_KEYS: &[&str] = &["tail", "offset", "limit"];

async fn instance_logs(
    State(app): State<AppState>,
    Path((name, index, stream)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<LogChunk>, ApiError> {
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::bad_field("index", "must be an instance number"))?;
    let mut params = Vec::new();
    for (key, value) in &query {
        let Some(key) = LOG_QUERY_KEYS.iter().find(|k| **k == key.as_str()) else {
            return Err(ApiError::bad_field(
                key.clone(),
                "unknown parameter (tail, offset, limit)",
            ));
        };
        let number: u64 = value
            .parse()
            .map_err(|_| ApiError::bad_field(*key, "must be a whole number"))?;
        params.push((*key, number));
    }
    read_instance_log(&app, &name, index, &stream, &params)
        .await
        .map(Json)
}

/// Reads an instance's log through its machine; `params` are validated numbers.
pub async fn read_instance_log(
    app: &AppState,
    name: &str,
    index: usize,
    stream: &str,
    params: &[(&str, u64)],
) -> Result<LogChunk, ApiError> {
    if stream != "stdout" && stream != "stderr" {
        return Err(ApiError::bad_field("stream", "must be stdout or stderr"));
    }
    let (address, task) = locate_instance(app, name, index)?;
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!(
        "http://{address}/api/v1/tasks/{}/logs/{stream}?{}",
        encode_path_segment(&task),
        query.join("&")
    );
    app.client
        .get_json::<LogChunk>(&url, None)
        .await
        .map_err(|e| match e.status() {
            Some(404) => ApiError::not_found(format!("the machine does not run {task} yet")),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the machine did not answer: {e}"),
            ),
        })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlanReply {
    pub jobs: Vec<String>,
    pub plan: Plan,
}

/// Dry run: the placement these jobs would get, applying nothing.
async fn plan(State(app): State<AppState>, body: Bytes) -> Result<Json<PlanReply>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_field("body", "must be UTF-8 text"))?;
    let jobs =
        parse_jobs(text, "request body").map_err(|e| ApiError::from(e.to_validation_errors()))?;
    let cluster = lock(&app.cluster);
    let mut all = cluster.state.jobs.clone();
    for job in &jobs {
        cluster.check_job(job).or_else(|errors| {
            // A linked master may be in the same batch.
            let only_missing_master = errors.errors.iter().all(|e| e.field == "linked_job")
                && job
                    .linked_job
                    .as_ref()
                    .is_some_and(|m| jobs.iter().any(|j| j.name() == m));
            if only_missing_master {
                Ok(())
            } else {
                Err(ApiError::from(errors))
            }
        })?;
        all.insert(
            job.name().to_string(),
            crate::store::JobRecord::new(job.clone(), now_ms()),
        );
    }
    let specs: Vec<JobSpec> = all.values().map(|j| j.spec.clone()).collect();
    let machines = cluster.placement_machines();
    let zones = cluster.config.zones();
    let plan = place(&PlacementInput {
        jobs: &specs,
        machines: &machines,
        previous: &cluster.state.assignments,
        zone_machine_size: &zones,
    });
    Ok(Json(PlanReply {
        jobs: jobs.iter().map(|j| j.name().to_string()).collect(),
        plan,
    }))
}

async fn list_machines(State(app): State<AppState>) -> Json<Vec<MachineView>> {
    Json(lock(&app.cluster).machine_views())
}

async fn get_machine(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MachineView>, ApiError> {
    let cluster = lock(&app.cluster);
    let machine = cluster
        .state
        .machines
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no machine '{id}'")))?;
    Ok(Json(cluster.machine_view(machine)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterReply {
    pub result: String,
}

/// A machinesitter announces itself: known machines get their address
/// updated; a machine this cluster decommissioned is told so and its stale
/// tasks are removed; an unknown machine in a served zone joins.
async fn register(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RegisterReply>), ApiError> {
    let request: RegisterRequest = parse_json_body(&body)?;
    cerebro_types::job::validate_machine_id(&request.machine_id)
        .map_err(|message| ApiError::bad_field("machine_id", message))?;
    if request.address.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::bad_field("address", "must be IP:PORT"));
    }
    let result = {
        let mut cluster = lock(&app.cluster);
        if cluster.state.was_retired(&request.machine_id) {
            let address = request.address.clone();
            let client = app.client.clone();
            let token = cluster
                .config
                .token
                .as_ref()
                .map(|t| t.expose().to_string());
            cluster.event(
                "machine",
                &request.machine_id,
                "registered after being decommissioned: removing its stale tasks",
            );
            tokio::spawn(remove_all_tasks(client, address, token));
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("machine '{}' was decommissioned", request.machine_id),
            ));
        }
        let zones = cluster.config.zones();
        match cluster.state.machines.get_mut(&request.machine_id) {
            Some(machine) => {
                let moved = machine.address.as_deref() != Some(request.address.as_str());
                let resized = machine.capacity != request.capacity;
                machine.address = Some(request.address.clone());
                machine.capacity = request.capacity;
                if moved {
                    let message = format!("registered at {}", request.address);
                    cluster.event("machine", &request.machine_id, message);
                }
                if !(moved || resized) {
                    // The periodic re-registration: nothing for the reconciler to do.
                    return Ok((
                        StatusCode::OK,
                        Json(RegisterReply {
                            result: "registered".into(),
                        }),
                    ));
                }
                persist_or_500(&cluster)?;
                "registered"
            }
            None => {
                let Some(zone) = request.zone.clone().filter(|z| zones.contains_key(z)) else {
                    return Err(ApiError::bad_field(
                        "zone",
                        format!(
                            "an unknown machine must name one of this cluster's zones ({})",
                            zones.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                let number = cluster.state.free_number(&zone);
                cluster.state.adopt_machine(MachineRecord {
                    address: Some(request.address.clone()),
                    ..MachineRecord::new(&request.machine_id, &zone, number, request.capacity)
                });
                let message = format!("joined at {}", request.address);
                cluster.event("machine", &request.machine_id, message);
                persist_or_500(&cluster)?;
                "joined"
            }
        }
    };
    app.notify.notify_one();
    Ok((
        StatusCode::OK,
        Json(RegisterReply {
            result: result.into(),
        }),
    ))
}

async fn remove_all_tasks(client: HttpClient, address: String, token: Option<String>) {
    let url = format!("http://{address}/api/v1/tasks");
    let Ok(tasks) = client
        .get_json::<Vec<cerebro_types::machine::TaskView>>(&url, None)
        .await
    else {
        return;
    };
    for task in tasks {
        let url = format!("{url}/{}", encode_path_segment(&task.name));
        let _ = client
            .delete_json::<serde_json::Value>(&url, token.as_deref())
            .await;
    }
}

async fn set_idle_limit(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ClusterStatus>, ApiError> {
    let request: IdleLimitRequest = parse_json_body(&body)?;
    apply_idle_limit(&app, &request).map(Json)
}

/// Sets the idle limit of one zone, or of every zone.
pub fn apply_idle_limit(
    app: &AppState,
    request: &IdleLimitRequest,
) -> Result<ClusterStatus, ApiError> {
    let status = {
        let mut cluster = lock(&app.cluster);
        match &request.zone {
            Some(zone) if !cluster.config.zones().contains_key(zone) => {
                return Err(ApiError::bad_field(
                    "zone",
                    format!("'{zone}' is not a zone of this cluster"),
                ));
            }
            Some(zone) => {
                cluster
                    .state
                    .idle_limit_per_zone
                    .insert(zone.clone(), request.limit);
                cluster.event(
                    "cluster",
                    zone,
                    format!("idle limit set to {}", request.limit),
                );
            }
            None => {
                cluster.state.idle_limit_default = request.limit;
                cluster.state.idle_limit_per_zone.clear();
                cluster.event(
                    "cluster",
                    "",
                    format!("idle limit set to {} in every zone", request.limit),
                );
            }
        }
        persist_or_500(&cluster)?;
        cluster.status()
    };
    app.notify.notify_one();
    Ok(status)
}

async fn metrics(State(app): State<AppState>) -> Response {
    let cluster = lock(&app.cluster);
    let views = cluster.job_views();
    let status = cluster.status_with(&views);
    let label = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let name = label(&status.cluster);
    let mut out = String::new();
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
        let _ = writeln!(
            out,
            "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric}{{cluster=\"{name}\"}} {value}"
        );
    }
    let _ = writeln!(out, "# HELP cerebro_job_instances_running instances of the job running\n# TYPE cerebro_job_instances_running gauge");
    for view in &views {
        let _ = writeln!(
            out,
            "cerebro_job_instances_running{{cluster=\"{name}\",job=\"{}\"}} {}",
            label(&view.name),
            view.running_instances
        );
    }
    let _ = writeln!(
        out,
        "# HELP cerebro_machine_up 1 while the machine is ready\n# TYPE cerebro_machine_up gauge"
    );
    for machine in cluster.state.machines.values() {
        let _ = writeln!(
            out,
            "cerebro_machine_up{{cluster=\"{name}\",machine=\"{}\",zone=\"{}\"}} {}",
            label(&machine.id),
            label(&machine.zone),
            u8::from(machine.state == MachineState::Ready)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
