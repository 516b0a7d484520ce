//! The machinesitter's HTTP API (JSON under /api/v1) and its HTML pages.
//! Handlers validate at the edge, change the desired state under the lock,
//! persist it, and wake the reconciler; only start/stop/restart also call
//! the task's tasksitter directly so the answer reflects the action.

use crate::deploy;
use crate::machine::{set_deployment, SharedMachine, TaskEntry};
use crate::sitter;
use crate::state::TaskRecord;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use cerebro_client::{HttpClient, TaskClient};
use cerebro_host::logs::{read_chunk, LogLocation};
use cerebro_host::{lock, TaskDir};
use cerebro_types::deploy::{DeployAttempt, Deployment};
use cerebro_types::machine::{
    ActionReply, ActionResult, MachineEvent, MachineStatus, PutReply, PutResult, TaskView,
};
use cerebro_types::task_api::{LogQuery, TaskAction};
use cerebro_types::time::format_rfc3339_ms;
use cerebro_types::url::encode_path_segment;
use cerebro_types::{validate_task_name, LogChunk, LogStream, TaskSpec};
use cerebro_web::html::{escape, format_bytes, key_values, page, state_pill};
use cerebro_web::metrics::{Exposition, MetricKind};
use cerebro_web::{require_token, ApiError, Token};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub machine: SharedMachine,
    pub notify: Arc<Notify>,
    pub client: HttpClient,
}

pub fn router(state: AppState, token: Option<Token>) -> Router {
    Router::new()
        .route("/", get(machine_page))
        .route("/tasks/{name}", get(task_page))
        .route("/tasks/{name}/logs/{stream}", get(log_page))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/tasks", get(list_tasks))
        .route(
            "/api/v1/tasks/{name}",
            get(get_task).put(put_task).delete(delete_task),
        )
        .route("/api/v1/tasks/{name}/deploylog", get(deploy_log))
        .route("/api/v1/tasks/{name}/{action}", post(control))
        .route("/api/v1/tasks/{name}/logs/{stream}", get(read_log))
        .layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state)
}

fn no_such_task(name: &str) -> ApiError {
    ApiError::not_found(format!("no task named '{name}'"))
}

async fn status(State(app): State<AppState>) -> Json<MachineStatus> {
    Json(lock(&app.machine).status())
}

async fn events(State(app): State<AppState>) -> Json<Vec<MachineEvent>> {
    Json(lock(&app.machine).events.iter().rev().cloned().collect())
}

async fn list_tasks(State(app): State<AppState>) -> Json<Vec<TaskView>> {
    Json(
        lock(&app.machine)
            .tasks
            .iter()
            .map(|(name, entry)| entry.view(name))
            .collect(),
    )
}

async fn get_task(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let machine = lock(&app.machine);
    machine
        .tasks
        .get(&name)
        .map(|e| Json(e.view(&name)))
        .ok_or_else(|| no_such_task(&name))
}

/// Parses a PUT body: the task spec, naming the field (and line and
/// column) of any error, and the optional `"deployment"` beside it (its
/// errors name `deployment.<path>`; one whose steps do not render is
/// refused naming `deployment`).
fn parse_spec(name: &str, body: &[u8]) -> Result<(TaskSpec, Option<Deployment>), ApiError> {
    let mut object = cerebro_web::parse_json_object(body)?;
    let deployment = match object.remove("deployment") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(parse_deployment(value)?),
    };
    match object.get("name").and_then(|n| n.as_str()) {
        None => {
            object.insert("name".into(), name.into());
        }
        Some(given) if given != name => {
            return Err(ApiError::bad_field(
                "name",
                format!("'{given}' does not match the task name in the URL, '{name}'"),
            ))
        }
        Some(_) => {}
    }
    let spec = cerebro_web::from_json_object(object)?;
    Ok((spec, deployment))
}

fn parse_deployment(value: serde_json::Value) -> Result<Deployment, ApiError> {
    let deployment: Deployment = serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." || path.is_empty() {
            "deployment".to_string()
        } else {
            format!("deployment.{path}")
        };
        ApiError::bad_field(field, error.inner().to_string())
    })?;
    deployment
        .render_steps("/release")
        .map_err(|problems| ApiError::bad_field("deployment", problems.join("; ")))?;
    Ok(deployment)
}

async fn put_task(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<PutReply>), ApiError> {
    validate_task_name(&name).map_err(|m| ApiError::bad_field("name", m))?;
    let (spec, deployment) = parse_spec(&name, &body)?;
    let backend = lock(&app.machine).config.limits_backend;
    if deployment.is_some() && spec.cwd.as_deref().is_some_and(|c| !c.starts_with('/')) {
        // A relative cwd is joined under the release's directory, which
        // need not exist yet: checked without it.
        let mut checked = spec.clone();
        checked.cwd = None;
        sitter::check_spec(&checked, backend)?;
    } else {
        sitter::check_spec(&spec, backend)?;
    }
    let (code, result, view) = {
        let mut machine = lock(&app.machine);
        if machine.tasks.get(&name).is_some_and(|e| e.record.deleting) {
            return Err(ApiError::conflict(format!(
                "task '{name}' is being deleted; try again shortly"
            )));
        }
        machine
            .check_fits(&spec)
            .map_err(|e| ApiError::conflict(e.to_string()))?;
        // Allocated (or kept) before anything changes, so a range with no
        // room refuses the PUT rather than leaving a task without its ports.
        let ports = machine
            .allocate_ports(&name, &spec.ports)
            .map_err(|e| ApiError::conflict(e.to_string()))?;
        let (code, result) = match machine.tasks.get_mut(&name) {
            Some(entry)
                if entry.record.spec == spec
                    && entry.record.deployment == deployment
                    && entry.record.ports == ports =>
            {
                (StatusCode::OK, PutResult::Unchanged)
            }
            Some(entry) => {
                entry.replace_spec(spec, deployment);
                entry.record.ports = ports;
                (StatusCode::OK, PutResult::Updated)
            }
            None => {
                let mut record = TaskRecord {
                    run_requested: spec.auto_start,
                    spec,
                    dir_name: cerebro_host::layout::dir_name(&name),
                    deleting: false,
                    runtime: None,
                    sitter_starts: 0,
                    deployment: None,
                    deployed: None,
                    deploy: None,
                    ports,
                };
                set_deployment(&mut record, deployment);
                machine.tasks.insert(name.clone(), TaskEntry::new(record));
                (StatusCode::CREATED, PutResult::Created)
            }
        };
        if result != PutResult::Unchanged {
            machine.event(&name, format!("spec {result}"));
            machine
                .persist()
                .map_err(|e| ApiError::internal(format!("cannot persist the task set: {e}")))?;
        }
        (code, result, machine.tasks[&name].view(&name))
    };
    app.notify.notify_one();
    Ok((code, Json(PutReply { result, task: view })))
}

/// `GET /api/v1/tasks/{name}/deploylog`: the task's deploy attempts, newest first.
async fn deploy_log(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<DeployAttempt>>, ApiError> {
    let machine = lock(&app.machine);
    machine
        .tasks
        .get(&name)
        .map(|e| Json(e.deploy_log.clone()))
        .ok_or_else(|| no_such_task(&name))
}

/// Marks the task for removal; waits (bounded by its stop timeout) until it is gone.
async fn delete_task(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ActionReply>), ApiError> {
    let stop_timeout = {
        let mut machine = lock(&app.machine);
        let entry = machine
            .tasks
            .get_mut(&name)
            .ok_or_else(|| no_such_task(&name))?;
        entry.record.deleting = true;
        let stop_timeout = entry.record.spec.stop_timeout;
        machine.event(&name, "delete requested");
        machine
            .persist()
            .map_err(|e| ApiError::internal(format!("cannot persist the task set: {e}")))?;
        stop_timeout
    };
    app.notify.notify_one();
    let deadline = Instant::now() + Duration::from_secs_f64(stop_timeout + 10.0);
    while Instant::now() < deadline {
        if !lock(&app.machine).tasks.contains_key(&name) {
            return Ok((
                StatusCode::OK,
                Json(ActionReply {
                    result: ActionResult::Deleted,
                }),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ActionReply {
            result: ActionResult::Deleting,
        }),
    ))
}

/// start, stop, restart: recorded as the desired run state, then passed to the tasksitter.
async fn control(
    State(app): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ActionReply>), ApiError> {
    let action: TaskAction = action.parse().map_err(ApiError::not_found)?;
    let (address, secret) = {
        let mut machine = lock(&app.machine);
        let state_dir = machine.config.state_dir.clone();
        let entry = machine
            .tasks
            .get_mut(&name)
            .ok_or_else(|| no_such_task(&name))?;
        if entry.record.deleting {
            return Err(ApiError::conflict(format!(
                "task '{name}' is being deleted"
            )));
        }
        entry.record.run_requested = action != TaskAction::Stop;
        let address = entry
            .record
            .runtime
            .as_ref()
            .and_then(|rt| rt.address.clone());
        let secret = entry.secret(&state_dir);
        machine.event(&name, format!("{action} requested"));
        machine
            .persist()
            .map_err(|e| ApiError::internal(format!("cannot persist the task set: {e}")))?;
        (address, secret)
    };
    app.notify.notify_one();
    let Some(address) = address else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(ActionReply {
                result: ActionResult::Recorded(action),
            }),
        ));
    };
    let reply = TaskClient::new(app.client.clone(), &address, secret)
        .control(action)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the tasksitter did not answer: {e}"),
            )
        })?;
    let result = ActionResult::Done(reply.result);
    Ok((StatusCode::OK, Json(ActionReply { result })))
}

/// The task's own log file for `stream`; nothing from the request but the stream name chooses it.
fn log_location(app: &AppState, name: &str, stream: &str) -> Result<LogLocation, ApiError> {
    let stream: LogStream = stream
        .parse()
        .map_err(|e: String| ApiError::bad_field("stream", e))?;
    let machine = lock(&app.machine);
    let entry = machine.tasks.get(name).ok_or_else(|| no_such_task(name))?;
    let paths = TaskDir::new(&machine.config.state_dir, &entry.record.dir_name);
    Ok(LogLocation::new(
        &paths.logs,
        name,
        stream,
        entry.record.spec.log_rotation.backups,
    ))
}

async fn read_log(
    State(app): State<AppState>,
    Path((name, stream)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<LogChunk>, ApiError> {
    let query = LogQuery::from_pairs(&pairs)?;
    let location = log_location(&app, &name, &stream)?;
    read_chunk(&location, &query)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The machine's gauges, then one family per task metric with a sample per
/// task, every sample labelled with the machine's id.
async fn metrics(State(app): State<AppState>) -> Exposition {
    use MetricKind::{Counter, Gauge};
    let machine = lock(&app.machine);
    let status = machine.status();
    let id = status.machine_id.as_str();
    let mut out = Exposition::default();
    for (name, help, value) in [
        (
            "cerebro_machine_capacity_cpu_cores",
            "cores tasks may reserve",
            status.capacity.cpu,
        ),
        (
            "cerebro_machine_capacity_mem_mb",
            "MB tasks may reserve",
            status.capacity.mem_mb,
        ),
        (
            "cerebro_machine_reserved_cpu_cores",
            "cores reserved by tasks",
            status.reserved.cpu,
        ),
        (
            "cerebro_machine_reserved_mem_mb",
            "MB reserved by tasks",
            status.reserved.mem_mb,
        ),
        (
            "cerebro_machine_cpu_cores_used",
            "cores busy",
            status.vitals.cpu_cores_used,
        ),
        (
            "cerebro_machine_mem_used_mb",
            "memory in use",
            status.vitals.mem_used_mb as f64,
        ),
        (
            "cerebro_machine_load1",
            "1-minute load average",
            status.vitals.load_average[0],
        ),
        (
            "cerebro_machine_tasks",
            "tasks on this machine",
            status.tasks.len() as f64,
        ),
    ] {
        out.single(name, Gauge, help, &[("machine", id)], value);
    }
    type TaskMetric = fn(&TaskEntry) -> f64;
    let per_task: [(&str, MetricKind, &str, TaskMetric); 5] = [
        ("cerebro_task_up", Gauge, "1 while the workload runs", |e| {
            f64::from(u8::from(e.status.as_ref().and_then(|s| s.pid).is_some()))
        }),
        (
            "cerebro_task_cpu_cores",
            Gauge,
            "cores used by the task's tree",
            |e| e.status.as_ref().map_or(0.0, |s| s.cpu_cores),
        ),
        (
            "cerebro_task_rss_bytes",
            Gauge,
            "resident memory of the task's tree",
            |e| e.status.as_ref().map_or(0.0, |s| s.rss_bytes as f64),
        ),
        (
            "cerebro_task_restarts_total",
            Counter,
            "restarts of the workload",
            |e| e.status.as_ref().map_or(0.0, |s| s.restarts as f64),
        ),
        (
            "cerebro_task_sitter_starts_total",
            Counter,
            "tasksitters started for the task",
            |e| e.record.sitter_starts as f64,
        ),
    ];
    for (metric, kind, help, value) in per_task {
        out.family(metric, kind, help);
        for (name, entry) in &machine.tasks {
            out.sample(metric, &[("machine", id), ("task", name)], value(entry));
        }
    }
    out
}

const NAV: &[(&str, &str)] = &[("/", "Machine"), ("/metrics", "Metrics")];

fn task_link(name: &str) -> String {
    format!(
        "<a href=\"/tasks/{}\">{}</a>",
        encode_path_segment(name),
        escape(name)
    )
}

fn log_links(name: &str) -> String {
    let encoded = encode_path_segment(name);
    format!(
        "<a href=\"/tasks/{encoded}/logs/stdout\">stdout</a> · <a href=\"/tasks/{encoded}/logs/stderr\">stderr</a>"
    )
}

async fn machine_page(State(app): State<AppState>) -> Html<String> {
    let machine = lock(&app.machine);
    let s = machine.status();
    let v = &s.vitals;
    let rows = [
        ("Machine", escape(&s.machine_id)),
        ("Host", escape(&s.hostname)),
        (
            "CPU",
            format!(
                "{:.2} of {} cores busy; reserved {:.2} of {} cores",
                v.cpu_cores_used, v.cpu_cores, s.reserved.cpu, s.capacity.cpu
            ),
        ),
        (
            "Memory",
            format!(
                "{} of {} MB used; reserved {:.0} of {:.0} MB",
                v.mem_used_mb, v.mem_total_mb, s.reserved.mem_mb, s.capacity.mem_mb
            ),
        ),
        (
            "Load",
            format!(
                "{:.2} {:.2} {:.2}",
                v.load_average[0], v.load_average[1], v.load_average[2]
            ),
        ),
        ("Disk free", format_bytes(v.disk_free_bytes)),
        ("Uptime", format!("{} s", v.uptime_secs)),
    ];
    let mut tasks = String::from(
        "<table><tr><th>Task</th><th>State</th><th>PID</th><th>CPU</th><th>Memory</th><th>Restarts</th><th>Violations</th><th>Logs</th></tr>",
    );
    for (name, entry) in &machine.tasks {
        let st = entry.status.as_ref();
        let state = if entry.record.deleting {
            "deleting".to_string()
        } else {
            match (st, &entry.record.deploy) {
                (Some(s), _) => s.state.kind().to_string(),
                // Not started yet: waiting for its first release.
                (None, Some(deploy)) => deploy.state.as_str().to_string(),
                (None, None) => "starting".into(),
            }
        };
        let _ = write!(
            tasks,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            task_link(name),
            state_pill(&state),
            st.and_then(|s| s.pid).map_or("—".into(), |p| p.to_string()),
            st.map_or(0.0, |s| s.cpu_cores),
            format_bytes(st.map_or(0, |s| s.rss_bytes)),
            st.map_or(0, |s| s.restarts),
            st.map_or(0, |s| s.violations.memory + s.violations.cpu + s.violations.time),
            log_links(name)
        );
    }
    tasks.push_str("</table>");
    let mut events = String::from("<table><tr><th>When</th><th>Task</th><th>What</th></tr>");
    for event in machine.events.iter().rev().take(30) {
        let _ = write!(
            events,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_rfc3339_ms(event.at_ms),
            escape(&event.task),
            escape(&event.message)
        );
    }
    events.push_str("</table>");
    let body = format!(
        "<h1>Machine {}</h1><div class=\"card\">{}</div><h2>Tasks</h2>{tasks}<h2>Events</h2>{events}",
        escape(&s.machine_id),
        key_values(&rows)
    );
    Html(page(&format!("machine {}", s.machine_id), NAV, &body))
}

async fn task_page(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let (view, latest) = {
        let machine = lock(&app.machine);
        let entry = machine
            .tasks
            .get(&name)
            .ok_or_else(|| no_such_task(&name))?;
        (entry.view(&name), entry.deploy_log.first().cloned())
    };
    let st = view.status.as_ref();
    let rows = [
        (
            "State",
            state_pill(&st.map_or("starting".into(), |s| s.state.kind().to_string())),
        ),
        (
            "Command",
            format!("<code>{}</code>", escape(&view.spec.command)),
        ),
        (
            "PID",
            st.and_then(|s| s.pid).map_or("—".into(), |p| p.to_string()),
        ),
        (
            "Started",
            st.and_then(|s| s.started_at_ms)
                .map_or("—".into(), format_rfc3339_ms),
        ),
        (
            "CPU",
            format!("{:.2} cores", st.map_or(0.0, |s| s.cpu_cores)),
        ),
        ("Memory", format_bytes(st.map_or(0, |s| s.rss_bytes))),
        ("Restarts", st.map_or(0, |s| s.restarts).to_string()),
        (
            "Tasksitter",
            view.tasksitter
                .as_ref()
                .map_or("—".into(), |t| format!("pid {}", t.pid)),
        ),
        (
            "Ports",
            if view.ports.is_empty() {
                "—".into()
            } else {
                view.ports
                    .iter()
                    .map(|(name, port)| format!("{}={port}", escape(name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("Logs", log_links(&name)),
    ];
    let spec = serde_json::to_string_pretty(&view.spec).unwrap_or_default();
    let body = format!(
        "<h1>{}</h1><div class=\"card\">{}</div>{}<h2>Spec</h2><pre class=\"log\">{}</pre>",
        escape(&name),
        key_values(&rows),
        deploy_section(&view, latest.as_ref()),
        escape(&spec)
    );
    Ok(Html(page(&name, NAV, &body)))
}

/// The task page's deployment: its state and the latest attempt's steps.
fn deploy_section(view: &TaskView, latest: Option<&DeployAttempt>) -> String {
    let (Some(deployment), Some(status)) = (&view.deployment, &view.deploy) else {
        return String::new();
    };
    let or_dash = |v: Option<&String>| v.map_or("—".to_string(), |s| escape(s));
    let rows = [
        ("State", state_pill(status.state.as_str())),
        ("Recipe", escape(&deployment.recipe_name)),
        ("Release", escape(&status.release)),
        ("Version", or_dash(status.version.as_ref())),
        ("Running release", or_dash(status.running_release.as_ref())),
        ("Step", or_dash(status.step.as_ref())),
        ("Error", or_dash(status.error.as_ref())),
        ("Attempts", status.attempts.to_string()),
        (
            "Next attempt",
            status.next_attempt_ms.map_or("—".into(), format_rfc3339_ms),
        ),
    ];
    let mut out = format!(
        "<h2>Deployment</h2><div class=\"card\">{}</div>",
        key_values(&rows)
    );
    if let Some(tail) = &status.output_tail {
        let _ = write!(
            out,
            "<h3>Output of the failed step</h3><pre class=\"log\">{}</pre>",
            escape(tail)
        );
    }
    if let Some(attempt) = latest {
        let _ = write!(
            out,
            "<h3>Latest attempt: {} #{} ({:?})</h3><table><tr><th>Step</th><th>Outcome</th><th>Duration</th><th>Exit</th><th>Detail</th></tr>",
            escape(&attempt.release),
            attempt.attempt,
            attempt.outcome
        );
        for step in &attempt.steps {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{:?}</td><td>{} ms</td><td>{}</td><td>{}{}</td></tr>",
                escape(&step.label),
                step.outcome,
                step.duration_ms,
                step.exit_code.map_or("—".into(), |c| c.to_string()),
                escape(&step.detail),
                if step.output.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<pre class=\"log\">{}</pre>",
                        escape(deploy::steps::tail_str(&step.output, 4096))
                    )
                }
            );
        }
        out.push_str("</table>");
    }
    out
}

async fn log_page(
    State(app): State<AppState>,
    Path((name, stream)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Html<String>, ApiError> {
    let query = LogQuery::from_pairs(&pairs)?;
    let location = log_location(&app, &name, &stream)?;
    let chunk = read_chunk(&location, &query).map_err(|e| ApiError::internal(e.to_string()))?;
    let body = format!(
        "<h1>{} — {}</h1><p>{}</p><pre class=\"log\">{}</pre>",
        task_link(&name),
        escape(&stream),
        log_links(&name),
        escape(&chunk.data)
    );
    Ok(Html(page(&format!("{name} {stream}"), NAV, &body)))
}
