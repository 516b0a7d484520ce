//! The tasksitter's HTTP side: JSON status, logs and control under /api/v1,
//! HTML pages for people, Prometheus metrics. It only reads the status the
//! supervisor publishes and sends it requests; it never touches the workload.

use crate::supervisor::{ReplyTo, Request, SharedStatus};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use cerebro_host::logs::read_chunk;
use cerebro_host::logs::LogLocation;
use cerebro_types::task_api::{ControlReply, LogList, LogQuery, SignalRequest};
use cerebro_types::time::{format_rfc3339_ms, now_ms};
use cerebro_types::url::encode_path_segment;
use cerebro_types::{normalize_signal_name, EventKind, LogChunk, LogStream, TaskStatus};
use cerebro_web::html::{escape, format_bytes, key_values, page, state_pill};
use cerebro_web::metrics::{Exposition, MetricKind};
use cerebro_web::{require_token, ApiError, Token};
use std::fmt::Write;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
pub struct AppState {
    pub status: SharedStatus,
    pub requests: mpsc::Sender<(Request, ReplyTo)>,
    pub logs: Arc<Vec<LogLocation>>,
}

pub fn router(state: AppState, token: Option<Token>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/stats") }))
        .route("/stats", get(stats_page))
        .route("/logs", get(logs_page))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/logs", get(list_logs))
        .route("/api/v1/logs/{stream}", get(read_log))
        .route("/api/v1/start", post(|s| control(s, Request::Start)))
        .route("/api/v1/stop", post(|s| control(s, Request::Stop)))
        .route("/api/v1/restart", post(|s| control(s, Request::Restart)))
        .route("/api/v1/signal", post(send_signal))
        // An authenticated no-op: a supervisor proves a tasksitter holds its secret.
        .route(
            "/api/v1/ping",
            post(|State(state): State<AppState>| async move { Json(snapshot(&state)) }),
        )
        .layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state)
}

/// The published status with the derived uptime filled in.
fn snapshot(state: &AppState) -> TaskStatus {
    let mut status = cerebro_host::lock(&state.status).clone();
    status.uptime_secs = status
        .started_at_ms
        .map(|started| now_ms().saturating_sub(started) as f64 / 1000.0);
    status
}

async fn status_json(State(state): State<AppState>) -> Json<TaskStatus> {
    Json(snapshot(&state))
}

async fn list_logs(State(state): State<AppState>) -> Json<LogList> {
    Json(LogList {
        files: state.logs.iter().flat_map(LogLocation::files).collect(),
    })
}

fn find_log<'a>(state: &'a AppState, stream: &str) -> Result<&'a LogLocation, ApiError> {
    let stream: LogStream = stream
        .parse()
        .map_err(|e: String| ApiError::bad_field("stream", e))?;
    state
        .logs
        .iter()
        .find(|l| l.stream == stream)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{} is not captured (started with --{}-location -)",
                stream.as_str(),
                stream.as_str()
            ))
        })
}

async fn read_log(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<LogChunk>, ApiError> {
    let query = LogQuery::from_pairs(&pairs)?;
    let location = find_log(&state, &stream)?;
    read_chunk(location, &query)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn ask(state: &AppState, request: Request) -> Result<Json<ControlReply>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .requests
        .send((request, reply))
        .await
        .map_err(|_| ApiError::conflict("the tasksitter is shutting down"))?;
    let result = answer
        .await
        .map_err(|_| ApiError::conflict("the tasksitter is shutting down"))?
        .map_err(|refused| ApiError::conflict(refused.to_string()))?;
    Ok(Json(ControlReply {
        result,
        status: snapshot(state),
    }))
}

async fn control(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<ControlReply>, ApiError> {
    ask(&state, request).await
}

/// Body `{"signal": "HUP"}`; the signal goes to the workload's process group.
async fn send_signal(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ControlReply>, ApiError> {
    let request: SignalRequest = cerebro_web::parse_json_body(&body)?;
    let name = normalize_signal_name(&request.signal).ok_or_else(|| {
        ApiError::bad_field(
            "signal",
            format!(
                "unknown signal '{}' (one of {})",
                request.signal,
                cerebro_types::SIGNAL_NAMES.join(", ")
            ),
        )
    })?;
    ask(&state, Request::Signal(name)).await
}

/// The task's metrics, each sample labelled with the task's name.
pub fn metrics_text(status: &TaskStatus) -> Exposition {
    use MetricKind::{Counter, Gauge};
    let task = [("task", status.name.as_str())];
    let mut out = Exposition::default();
    let up = f64::from(u8::from(status.pid.is_some()));
    out.single(
        "cerebro_task_up",
        Gauge,
        "1 while the workload runs",
        &task,
        up,
    );
    for (name, kind, help, value) in [
        (
            "cerebro_task_cpu_cores",
            Gauge,
            "cores used by the tree",
            status.cpu_cores,
        ),
        (
            "cerebro_task_rss_bytes",
            Gauge,
            "resident memory of the tree",
            status.rss_bytes as f64,
        ),
        (
            "cerebro_task_processes",
            Gauge,
            "processes in the tree",
            f64::from(status.processes),
        ),
        (
            "cerebro_task_starts_total",
            Counter,
            "starts of the workload",
            status.starts as f64,
        ),
        (
            "cerebro_task_restarts_total",
            Counter,
            "restarts of the workload",
            status.restarts as f64,
        ),
    ] {
        out.single(name, kind, help, &task, value);
    }
    if let Some(bytes) = status.limits.mem_bytes {
        let name = "cerebro_task_memory_limit_bytes";
        out.single(name, Gauge, "memory limit", &task, bytes as f64);
    }
    if let Some(cores) = status.limits.cpu_cores {
        out.single(
            "cerebro_task_cpu_limit_cores",
            Gauge,
            "cpu limit",
            &task,
            cores,
        );
    }
    let violations = "cerebro_task_violations_total";
    out.family(violations, Counter, "limit violations");
    for (kind, count) in [
        ("memory", status.violations.memory),
        ("cpu", status.violations.cpu),
        ("time", status.violations.time),
    ] {
        let labels = [("task", status.name.as_str()), ("kind", kind)];
        out.sample(violations, &labels, count as f64);
    }
    out
}

async fn metrics(State(state): State<AppState>) -> Exposition {
    metrics_text(&snapshot(&state))
}

const NAV: &[(&str, &str)] = &[
    ("/stats", "Stats"),
    ("/logs?stream=stdout", "stdout"),
    ("/logs?stream=stderr", "stderr"),
    ("/metrics", "Metrics"),
];

fn describe_event(kind: &EventKind) -> String {
    match kind {
        EventKind::Started { pid, start_number } => format!("start #{start_number}, pid {pid}"),
        EventKind::Exited { pid, status } => format!("pid {pid} ended: {status}"),
        EventKind::Violation(v) => format!(
            "{} limit violated: measured {:.2}, limit {:.2}{}",
            v.kind,
            v.measured,
            v.limit,
            if v.by_kernel {
                " (kernel OOM kill)"
            } else {
                ""
            }
        ),
        EventKind::StopRequested { signal } => format!("stop: sent SIG{signal}"),
        EventKind::Killed { pid, reason } => format!("SIGKILL to the tree of pid {pid}: {reason}"),
        EventKind::Backoff { delay_ms, attempt } => format!("restart #{attempt} in {delay_ms} ms"),
        EventKind::Restarting { attempt } => format!("restarting (attempt {attempt})"),
        EventKind::GaveUp { restarts } => format!("gave up after {restarts} restarts"),
        EventKind::Signalled { signal } => format!("sent SIG{signal}"),
        EventKind::SpawnFailed { error } => format!("could not start: {error}"),
    }
}

async fn stats_page(State(state): State<AppState>) -> Html<String> {
    let s = snapshot(&state);
    let optional = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let rows = [
        ("State", state_pill(&s.state.kind().to_string())),
        ("Command", format!("<code>{}</code>", escape(&s.command))),
        ("PID", optional(s.pid.map(|p| p.to_string()))),
        ("Started", optional(s.started_at_ms.map(format_rfc3339_ms))),
        (
            "Uptime",
            optional(s.uptime_secs.map(|u| format!("{u:.1} s"))),
        ),
        (
            "Starts / restarts",
            format!("{} / {}", s.starts, s.restarts),
        ),
        (
            "CPU",
            format!(
                "{:.2} cores (limit {})",
                s.cpu_cores,
                optional(s.limits.cpu_cores.map(|c| c.to_string()))
            ),
        ),
        (
            "Memory",
            format!(
                "{} (limit {})",
                format_bytes(s.rss_bytes),
                optional(s.limits.mem_bytes.map(format_bytes))
            ),
        ),
        (
            "Time limit",
            optional(s.limits.time_limit_secs.map(|t| format!("{t} s"))),
        ),
        ("Processes", s.processes.to_string()),
        ("Enforcement", escape(&s.backend.to_string())),
        (
            "Violations",
            format!(
                "memory {}, cpu {}, time {}",
                s.violations.memory, s.violations.cpu, s.violations.time
            ),
        ),
        (
            "Last exit",
            optional(s.last_exit.map(|e| escape(&e.to_string()))),
        ),
    ];
    let mut events = String::from("<table><tr><th>When</th><th>What</th></tr>");
    for event in s.events.iter().rev().take(50) {
        let _ = write!(
            events,
            "<tr><td>{}</td><td>{}</td></tr>",
            format_rfc3339_ms(event.at_ms),
            escape(&describe_event(&event.kind))
        );
    }
    events.push_str("</table>");
    let body = format!(
        "<h1>{}</h1><div class=\"card\">{}</div><h2>Events</h2>{events}",
        escape(&s.name),
        key_values(&rows)
    );
    Html(page(&s.name, NAV, &body))
}

async fn logs_page(
    State(state): State<AppState>,
    Query(mut pairs): Query<Vec<(String, String)>>,
) -> Result<Html<String>, ApiError> {
    // `stream` picks the file; the rest is the log query.
    let stream = match pairs.iter().position(|(key, _)| key == "stream") {
        Some(at) => pairs.remove(at).1,
        None => "stdout".into(),
    };
    let query = LogQuery::from_pairs(&pairs)?;
    let location = find_log(&state, &stream)?;
    let chunk = read_chunk(location, &query).map_err(|e| ApiError::internal(e.to_string()))?;
    let name = snapshot(&state).name;
    let mut files = String::from("<table><tr><th>File</th><th>Size</th></tr>");
    for file in location.files() {
        let _ = write!(
            files,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&file.file),
            format_bytes(file.size_bytes)
        );
    }
    files.push_str("</table>");
    let body = format!(
        "<h1>{} — {}</h1><p class=\"muted\">last lines; JSON at <a href=\"/api/v1/logs/{}\">/api/v1/logs/{}</a></p>\
         <pre class=\"log\">{}</pre><h2>Files</h2>{files}",
        escape(&name),
        escape(&stream),
        encode_path_segment(&stream),
        escape(&stream),
        escape(&chunk.data)
    );
    Ok(Html(page(&format!("{name} {stream}"), NAV, &body)))
}
