//! The pages: overview, job, machine, DNS and log, each rendered whole on
//! the server and refreshed in place.

use super::{render, UiState, Viewer, REFRESH_MS};
use crate::cluster::Cluster;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cerebro_types::cluster::{
    ClusterEventKind, EventSubject, InstanceView, JobView, MachineState, MachineView, RunMode,
    Severity, Unplaced,
};
use cerebro_types::deploy::DeployState;
use cerebro_types::dns::{DnsStatus, RecordType};
use cerebro_types::health::{capacity_cores, cores, trim, HealthCounts, InstanceHealth, JobHealth};
use cerebro_types::machine::Resources;
use cerebro_types::time::{format_rfc3339_ms, now_ms};
use cerebro_types::url::encode_path_segment;
use cerebro_web::html::{bar, escape, format_bytes, health_badge, key_values, state_pill};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;

fn not_found(viewer: &Viewer, message: &str) -> Response {
    error_page(viewer, StatusCode::NOT_FOUND, "Not found", message)
}

/// A page that says what is wrong with the request, with its status.
fn error_page(viewer: &Viewer, status: StatusCode, heading: &str, message: &str) -> Response {
    let body = format!(
        r#"<h1>{}</h1><div class="notice">{}</div><p><a href="/overview">Overview</a></p>"#,
        escape(heading),
        escape(message)
    );
    (
        status,
        super::shell(
            viewer.open,
            &heading.to_lowercase(),
            &viewer.header(),
            &body,
        ),
    )
        .into_response()
}

fn job_link(name: &str) -> String {
    format!(
        r#"<a href="/jobs/{}">{}</a>"#,
        encode_path_segment(name),
        escape(name)
    )
}

/// The provider's id of a machine and what it told of it (instance
/// type, region / AZ, addresses, state), escaped, one line.
fn provider_summary(view: &cerebro_types::cluster::MachineView) -> String {
    let told = view.details.labelled().into_iter().map(|(_, value)| value);
    let parts: Vec<String> = view
        .provider_id
        .clone()
        .into_iter()
        .chain(told)
        .map(|part| escape(&part))
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(" · ")
    }
}

fn machine_link(id: &str) -> String {
    format!(
        r#"<a href="/machines/{}">{}</a>"#,
        encode_path_segment(id),
        escape(id)
    )
}

fn log_links(job: &str, index: usize) -> String {
    let base = format!("/logs/{}/{index}", encode_path_segment(job));
    format!(r#"<a href="{base}/stdout">stdout</a> · <a href="{base}/stderr">stderr</a>"#)
}

fn uptime(started_at_ms: Option<u64>) -> String {
    let Some(started) = started_at_ms else {
        return "—".into();
    };
    let secs = now_ms().saturating_sub(started) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Names one per line, escaped; a dash for none.
fn names_html(names: &[String]) -> String {
    if names.is_empty() {
        "—".into()
    } else {
        names
            .iter()
            .map(|name| escape(name))
            .collect::<Vec<_>>()
            .join("<br>")
    }
}

/// An instance's allocated ports as `name address:port`, one per line
/// (escaped); a dash for none.
fn ports_cell(instance: &InstanceView) -> String {
    let endpoints = instance.endpoints();
    if endpoints.is_empty() {
        return "—".into();
    }
    endpoints
        .iter()
        .map(|(name, address)| format!("{} <code>{}</code>", escape(name), escape(address)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// An instance's health as a badge (`health-crash_looping`, text
/// `crash-looping`).
fn instance_badge(health: InstanceHealth) -> String {
    health_badge(health.wire(), health.as_str())
}

/// A job's health as a badge (`health-failing`).
fn job_badge(health: JobHealth) -> String {
    health_badge(health.as_str(), health.as_str())
}

/// How people name an instance: `ticker #2 (local-b)`.
fn instance_label(job: &str, index: usize, zone: &str) -> String {
    format!("{job} #{index} ({zone})")
}

/// An unplaced instance named by its job-wide number, found in its job's
/// view by zone and slot (the plan only knows the slot, which is not the
/// number people use).
fn unplaced_label(views: &[JobView], unplaced: &Unplaced) -> String {
    let key = &unplaced.key;
    views
        .iter()
        .find(|view| view.name == key.job)
        .and_then(|view| {
            view.instances
                .iter()
                .find(|i| i.zone == key.zone && i.slot == key.slot)
        })
        .map_or_else(
            || format!("{} (an instance in {})", key.job, key.zone),
            |i| instance_label(&key.job, i.index, &key.zone),
        )
}

/// `figure` of `capacity` as two bars, cores then MB (`0.40 of 2 cores`,
/// `128 of 1200 MB`): the machine's reserved or used figures, the same
/// numbers `cerebro listmachines` prints.
fn resource_bars(figure: Resources, capacity: Resources) -> String {
    format!(
        "{} {}",
        bar(
            figure.cpu,
            capacity.cpu,
            &format!(
                "{} of {} cores",
                cores(figure.cpu),
                capacity_cores(capacity.cpu)
            )
        ),
        bar(
            figure.mem_mb,
            capacity.mem_mb,
            &format!(
                "{} of {} MB",
                trim(figure.mem_mb, 0),
                trim(capacity.mem_mb, 0)
            )
        )
    )
}

/// The job's own restarts and violations, newest first (at most
/// `limit`): its instances' exits, violations, crash loops and failures.
fn restarts_and_violations(cluster: &Cluster, job: &str, limit: usize) -> String {
    let subject = EventSubject::Job(job.to_string());
    let events: Vec<_> = cluster
        .events()
        .iter()
        .rev()
        .filter(|e| {
            e.subject == subject
                && matches!(
                    e.kind,
                    ClusterEventKind::InstanceExited
                        | ClusterEventKind::InstanceViolation
                        | ClusterEventKind::InstanceCrashLooping
                        | ClusterEventKind::InstanceFailed
                )
        })
        .take(limit)
        .collect();
    if events.is_empty() {
        return r#"<p class="muted" id="restarts">No restarts or violations recorded.</p>"#.into();
    }
    let mut out = String::from(
        r#"<table id="restarts"><tr><th>When</th><th>Event</th><th>Machine</th><th>What</th></tr>"#,
    );
    for event in events {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_rfc3339_ms(event.at_ms),
            escape(&event.kind.name().replace('_', " ")),
            event.machine.as_deref().map_or("—".into(), machine_link),
            escape(&event.message)
        );
    }
    out.push_str("</table>");
    out
}

/// The instance columns shared by the job and machine pages; with
/// `with_dns`, each instance's `N.ZONE.basename` too; a Ports column when
/// any instance has allocated ports.
fn instance_rows(
    viewer: &Viewer,
    instances: &[InstanceView],
    with_job: bool,
    with_dns: bool,
) -> String {
    let mut out = String::from("<table><tr>");
    if with_job {
        out.push_str("<th>Job</th>");
    }
    out.push_str("<th>#</th><th>Zone</th><th>Machine</th>");
    if with_dns {
        out.push_str("<th>DNS name</th>");
    }
    let with_ports = instances.iter().any(|i| !i.ports.is_empty());
    if with_ports {
        out.push_str("<th>Ports</th>");
    }
    out.push_str("<th>Health</th><th>Why</th><th>PID</th><th>Uptime</th><th>Restarts</th><th>Restarts in 5 min</th><th>Violations</th><th>CPU</th><th>RSS</th><th>Logs</th><th></th></tr>");
    for i in instances {
        out.push_str("<tr>");
        if with_job {
            let _ = write!(out, "<td>{}</td>", job_link(&i.job));
        }
        let dns = if with_dns {
            format!("<td>{}</td>", escape(i.dns_name.as_deref().unwrap_or("—")))
        } else {
            String::new()
        };
        let dns = if with_ports {
            format!("{dns}<td>{}</td>", ports_cell(i))
        } else {
            dns
        };
        let restart = viewer.button(
            &format!(
                "/ui/jobs/{}/instances/{}/restart",
                encode_path_segment(&i.job),
                i.index
            ),
            "Restart",
            "",
        );
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td>{dns}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.index,
            escape(&i.zone),
            i.machine.as_deref().map_or("—".into(), machine_link),
            instance_badge(i.health),
            i.why().map_or("—".into(), |reason| escape(&reason)),
            i.pid.map_or("—".into(), |p| p.to_string()),
            uptime(i.started_at_ms),
            i.restarts,
            i.recent_restarts,
            i.violations,
            cores(i.cpu_cores),
            format_bytes(i.rss_bytes),
            log_links(&i.job, i.index),
            restart
        );
    }
    out.push_str("</table>");
    out
}

/// Where each instance's deployment stands, for a job with a recipe: its
/// state, release, the step running or failed, and for a failure the
/// error and the tail of the step's output (all escaped), with a link to
/// the instance's whole deploy log.
fn deploy_rows(instances: &[InstanceView]) -> String {
    let mut out = String::from(
        "<table><tr><th>#</th><th>Zone</th><th>Machine</th><th>Deploy</th><th>Release</th><th>Running</th><th>Attempts</th><th>Step</th><th>Log</th></tr>",
    );
    let mut failures = String::new();
    for i in instances {
        let link = format!(
            r#"<a href="/deploylog/{}/{}">deploy log</a>"#,
            encode_path_segment(&i.job),
            i.index
        );
        let Some(deploy) = &i.deploy else {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>—</td><td>—</td><td>—</td><td>—</td><td>{link}</td></tr>",
                i.index,
                escape(&i.zone),
                i.machine.as_deref().map_or("—".into(), machine_link),
                state_pill("pending"),
            );
            continue;
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{link}</td></tr>",
            i.index,
            escape(&i.zone),
            i.machine.as_deref().map_or("—".into(), machine_link),
            state_pill(deploy.state.as_str()),
            escape(&deploy.release),
            escape(deploy.running_release.as_deref().unwrap_or("—")),
            deploy.attempts,
            escape(deploy.step.as_deref().unwrap_or("—")),
        );
        if deploy.state == DeployState::Failed {
            let retry = deploy
                .next_attempt_ms
                .map(|at| format!("; next attempt at {}", format_rfc3339_ms(at)))
                .unwrap_or_default();
            let _ = write!(
                failures,
                r#"<div class="notice">Instance {} deploy failed at {}: {}{}</div><pre class="log">{}</pre>"#,
                i.index,
                escape(deploy.step.as_deref().unwrap_or("an unknown step")),
                escape(deploy.error.as_deref().unwrap_or("no error given")),
                escape(&retry),
                escape(deploy.output_tail.as_deref().unwrap_or("")),
            );
        }
    }
    out.push_str("</table>");
    out.push_str(&failures);
    out
}

/// The newest `limit` events, of `subject` only when given.
fn events_table(cluster: &Cluster, subject: Option<&EventSubject>, limit: usize) -> String {
    let mut out =
        String::from("<table><tr><th>When</th><th>Kind</th><th>Subject</th><th>What</th></tr>");
    for event in cluster
        .events()
        .iter()
        .rev()
        .filter(|e| subject.is_none_or(|s| e.concerns(s)))
        .take(limit)
    {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_rfc3339_ms(event.at_ms),
            escape(event.kind.category()),
            escape(event.subject.name()),
            escape(&event.message)
        );
    }
    out.push_str("</table>");
    out
}

pub(super) async fn overview(State(app): State<UiState>, headers: HeaderMap) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    // Read before the cluster's lock is taken: it takes that lock itself.
    let dns = super::dns_status(&app);
    let body = {
        let cluster = app.ops.read();
        let views = cluster.job_views();
        let status = cluster.status_with(&views);
        let mut by_state: HashMap<MachineState, usize> = HashMap::new();
        for machine in cluster.machines() {
            *by_state.entry(machine.state()).or_default() += 1;
        }
        let hour_ago = now_ms().saturating_sub(3_600_000);
        let failures = cluster
            .events()
            .iter()
            .filter(|e| e.at_ms >= hour_ago && e.kind.severity() == Severity::Failure)
            .count();
        let machines_line = MachineState::ALL
            .iter()
            .filter_map(|s| by_state.get(s).map(|n| format!("{n} {}", s.as_str())))
            .collect::<Vec<_>>()
            .join(", ");
        let trouble = status.instances.crash_looping + status.instances.failed;
        let failing_jobs = status
            .jobs_by_health
            .get(&JobHealth::Failing)
            .copied()
            .unwrap_or(0);
        let mut body = format!(
            r#"<h1>Cluster {}</h1><div class="stats">
<div class="stat{}" id="jobs-health"><b>{}</b>jobs<br><span class="muted">{}</span></div>
<div class="stat{}" id="instances-health"><b>{} / {}</b>instances running<br><span class="muted">{}</span></div>
<div class="stat"><b>{}</b>machines{}</div>
<div class="stat{}"><b>{}</b>failures in the last hour</div></div>"#,
            escape(&status.cluster),
            if failing_jobs > 0 { " bad" } else { "" },
            status.jobs,
            escape(&cerebro_types::health::jobs_text(&status.jobs_by_health)),
            if trouble > 0 { " bad" } else { "" },
            status.instances.running,
            status.instances.total(),
            escape(&cerebro_types::health::instances_text(&status.instances)),
            status.machines,
            if machines_line.is_empty() {
                String::new()
            } else {
                format!(" ({})", escape(&machines_line))
            },
            if failures > 0 { " bad" } else { "" },
            failures
        );
        if !status.unplaced.is_empty() {
            body.push_str(r#"<div class="notice">"#);
            for unplaced in &status.unplaced {
                let _ = write!(
                    body,
                    "unplaced: {}: {}<br>",
                    escape(&unplaced_label(&views, unplaced)),
                    escape(&unplaced.reason)
                );
            }
            body.push_str("</div>");
        }
        body.push_str(&dns_trouble(&dns));
        body.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>Health</th><th>Zones (instances / running / pending)</th><th>Version</th><th>Linked to</th><th>Last update</th><th></th></tr>");
        for view in &views {
            let name = &view.name;
            let mut zones: Vec<String> = Vec::new();
            let mut zone_names: Vec<&String> = view.instances.iter().map(|i| &i.zone).collect();
            zone_names.sort();
            zone_names.dedup();
            for zone in zone_names {
                let mut counts = HealthCounts::default();
                for i in view.instances.iter().filter(|i| &i.zone == zone) {
                    counts.add(i.health);
                }
                // What is neither running nor pending is named beside the
                // three numbers, never hidden in "not running".
                let trouble: Vec<String> = [
                    InstanceHealth::CrashLooping,
                    InstanceHealth::Failed,
                    InstanceHealth::Starting,
                    InstanceHealth::Stopping,
                    InstanceHealth::Stopped,
                ]
                .into_iter()
                .filter(|h| counts.get(*h) > 0)
                .map(|h| format!("{} {}", counts.get(h), h.as_str()))
                .collect();
                zones.push(format!(
                    "{} {} / {} / {}{}",
                    escape(zone),
                    counts.total(),
                    counts.running,
                    counts.pending,
                    if trouble.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", trouble.join(", "))
                    }
                ));
            }
            let update = viewer.button(
                &format!("/ui/jobs/{}/update", encode_path_segment(name)),
                "Update in place",
                "",
            );
            let _ =
                write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{update}</td></tr>",
                job_link(name),
                job_badge(view.health),
                if zones.is_empty() { "—".into() } else { zones.join("<br>") },
                escape(view.version.as_deref().unwrap_or("—")),
                view.spec.linked_job.as_deref().map_or("—".into(), job_link),
                format_rfc3339_ms(view.updated_ms),
            );
        }
        let machine_views = cluster.machine_views();
        // The provider's column only when it told something (the local
        // provider never does).
        let with_details = machine_views.iter().any(|m| !m.details.is_empty());
        let _ = write!(
            body,
            "</table><h2>Machines</h2><table><tr><th>Machine</th><th>Zone</th><th>Address</th>{}<th>DNS names</th><th>State</th><th>Reserved (by placement)</th><th>Used (measured)</th><th>Host load</th><th>Tasks</th></tr>",
            if with_details { "<th>Instance</th>" } else { "" }
        );
        for view in machine_views {
            let tasks: Vec<String> = view
                .instances
                .iter()
                .map(|i| {
                    format!(
                        r#"<a href="/jobs/{}">{}</a>"#,
                        encode_path_segment(&i.job),
                        escape(&i.task_name)
                    )
                })
                .collect();
            let instance = if with_details {
                format!("<td>{}</td>", provider_summary(&view))
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td>{instance}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                machine_link(&view.id),
                escape(&view.zone),
                escape(view.address.as_deref().unwrap_or("—")),
                names_html(&view.dns_names),
                state_pill(view.state.as_str()),
                resource_bars(view.reserved, view.capacity),
                resource_bars(view.used, view.capacity),
                view.vitals.as_ref().map_or("—".into(), |v| trim(v.load_average[0], 2)),
                if tasks.is_empty() { "—".into() } else { tasks.join(" ") },
            );
        }
        body.push_str("</table>");
        body.push_str("<h2>Events</h2>");
        body.push_str(&events_table(&cluster, None, 30));
        // The form stays outside the refreshed part, or what is typed
        // into it would be replaced every few seconds.
        let idle_form = viewer.csrf.as_ref().map_or(String::new(), |csrf| {
            format!(
                r#"<h2>Idle machines</h2><form method="post" action="/ui/idle-limit"><input type="hidden" name="csrf" value="{}">Keep <input name="limit" type="number" min="0" value="{}" class="narrow"> idle machines per zone <button type="submit">Set</button></form>"#,
                escape(csrf),
                cluster.idle_limit_default()
            )
        });
        format!(r#"<div id="live" data-refresh="{REFRESH_MS}">{body}</div>{idle_form}"#)
    };
    render(&viewer, "overview", body)
}

pub(super) async fn job_page(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let body = {
        let cluster = app.ops.read();
        let Some(record) = cluster.job(&name) else {
            return not_found(&viewer, &format!("no job named '{name}'"));
        };
        let view = cluster.job_view(&name, record);
        let mut layout = String::from(
            "<table><tr><th>Zone</th><th>Instances</th><th>Memory reserved per instance</th></tr>",
        );
        for (zone, zone_layout) in &view.spec.deployment_layout {
            let _ = write!(
                layout,
                "<tr><td>{}</td><td>{}</td><td>{} MB</td></tr>",
                escape(zone),
                zone_layout.cpu,
                view.spec.need_in(zone).mem_mb
            );
        }
        layout.push_str("</table>");
        let rows = [
            (
                "Health",
                format!(
                    "{} {}",
                    job_badge(view.health),
                    escape(&cerebro_types::health::instances_text(&view.health_counts))
                ),
            ),
            (
                "Instances",
                format!(
                    "{} of {} running",
                    view.running_instances, view.desired_instances
                ),
            ),
            ("Version", escape(view.version.as_deref().unwrap_or("—"))),
            ("Generation", view.generation.to_string()),
            (
                "Linked to",
                view.spec.linked_job.as_deref().map_or("—".into(), job_link),
            ),
            ("Persistent", view.spec.persistent.to_string()),
            (
                "DNS basename",
                escape(view.spec.dns_basename.as_deref().unwrap_or("—")),
            ),
            ("DNS names", names_html(&view.dns_names)),
            (
                "Deployment recipe",
                match (&view.recipe, &view.spec.deployment_recipe) {
                    (Some(recipe), _) => format!(
                        "{} ({}, sha256 {})",
                        escape(&recipe.name),
                        escape(&recipe.source),
                        escape(&recipe.sha256[..recipe.sha256.len().min(12)])
                    ),
                    (None, Some(name)) => format!("{} (not resolved)", escape(name)),
                    (None, None) => "—".into(),
                },
            ),
            (
                "Runs",
                match view.run_mode() {
                    RunMode::Started => "every instance: started by request",
                    RunMode::Stopped => "no instance: stopped by request",
                    RunMode::Auto => "every instance (auto_start)",
                    RunMode::OnStart => "not until started (auto_start: false)",
                }
                .to_string(),
            ),
            (
                "Rolling update",
                view.rollout
                    .as_ref()
                    .map_or("—".into(), |r| match &r.stopped {
                        Some(stop) => format!(
                            r#"to generation {}: <b>stopped</b>: {} ({} machines left)"#,
                            r.target_generation,
                            escape(&stop.to_string()),
                            r.machines_left.len()
                        ),
                        None => format!(
                            "to generation {}: {} machines left",
                            r.target_generation,
                            r.machines_left.len()
                        ),
                    }),
            ),
        ];
        let actions = format!(
            "{} {} {} {}",
            viewer.button(
                &format!("/ui/jobs/{}/update", encode_path_segment(&name)),
                "Update in place",
                ""
            ),
            viewer.button(
                &format!("/ui/jobs/{}/start", encode_path_segment(&name)),
                "Start all",
                ""
            ),
            viewer.button(
                &format!("/ui/jobs/{}/stop", encode_path_segment(&name)),
                "Stop all",
                ""
            ),
            viewer.button(
                &format!("/ui/jobs/{}/remove", encode_path_segment(&name)),
                "Remove job",
                "danger"
            )
        );
        let with_dns =
            view.spec.dns_basename.is_some() || view.instances.iter().any(|i| i.dns_name.is_some());
        let graphs = super::graphs::job_graphs(&cluster, &name);
        let task = serde_json::to_string_pretty(&view.spec.task_configuration).unwrap_or_default();
        let options = serde_json::to_string_pretty(&view.spec.recipe_options).unwrap_or_default();
        let deployments =
            if view.recipe.is_some() || view.instances.iter().any(|i| i.deploy.is_some()) {
                format!("<h2>Deployments</h2>{}", deploy_rows(&view.instances))
            } else {
                String::new()
            };
        format!(
            r#"<div id="live" data-refresh="{REFRESH_MS}"><h1>{} {}</h1><p>{actions}</p><div class="card">{}</div><h2>Instances</h2>{}{graphs}<h2>Restarts and violations</h2>{}{deployments}<h2>Layout</h2>{layout}<h2>Task configuration</h2><pre class="log">{}</pre><h2>Recipe options</h2><pre class="log">{}</pre><h2>Events</h2>{}</div>"#,
            escape(&name),
            job_badge(view.health),
            key_values(&rows),
            instance_rows(&viewer, &view.instances, false, with_dns),
            restarts_and_violations(&cluster, &name, 50),
            escape(&task),
            escape(&options),
            events_table(&cluster, Some(&EventSubject::Job(name.clone())), 20)
        )
    };
    render(&viewer, &name, body)
}

/// The figures of the host a machine's machinesitter runs on, apart from
/// the machine's own capacity: for the local provider every machine
/// shares one host, and says so. Nothing before the first report.
fn host_block(view: &MachineView) -> String {
    let Some(v) = &view.vitals else {
        return String::new();
    };
    let rows = [
        (
            "CPU busy",
            bar(
                v.cpu_cores_used,
                v.cpu_cores as f64,
                &format!("{} of {} cores", cores(v.cpu_cores_used), v.cpu_cores),
            ),
        ),
        (
            "Memory in use",
            bar(
                v.mem_used_mb as f64,
                v.mem_total_mb as f64,
                &format!("{} of {} MB", v.mem_used_mb, v.mem_total_mb),
            ),
        ),
        (
            "Load",
            format!(
                "{} {} {}",
                trim(v.load_average[0], 2),
                trim(v.load_average[1], 2),
                trim(v.load_average[2], 2)
            ),
        ),
        ("Disk free", format_bytes(v.disk_free_bytes)),
        ("Uptime", format!("{} s", v.uptime_secs)),
    ];
    let whose = if view.provider == "local" {
        "shared by every machine of the local provider, not this machine's capacity"
    } else {
        "the host this machine's machinesitter runs on"
    };
    format!(
        r#"<h2>Host</h2><p class="muted">{}</p><div class="card host">{}</div>"#,
        escape(whose),
        key_values(&rows)
    )
}

pub(super) async fn machine_page(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let body = {
        let cluster = app.ops.read();
        let Some(machine) = cluster.machine(&id) else {
            return not_found(&viewer, &format!("no machine '{id}'"));
        };
        let view = cluster.machine_view(machine);
        let mut rows = vec![
            ("State", state_pill(view.state.as_str())),
            ("Zone", escape(&view.zone)),
            ("Address", escape(view.address.as_deref().unwrap_or("—"))),
            ("DNS names", names_html(&view.dns_names)),
            (
                "Provider",
                format!(
                    "{} {}",
                    escape(&view.provider),
                    escape(view.provider_id.as_deref().unwrap_or(""))
                ),
            ),
        ];
        rows.extend(
            view.details
                .labelled()
                .into_iter()
                .map(|(label, value)| (label, escape(&value))),
        );
        rows.extend([
            (
                "Reserved (by placement)",
                resource_bars(view.reserved, view.capacity),
            ),
            ("Used (measured)", resource_bars(view.used, view.capacity)),
            (
                "Last seen",
                view.last_seen_ms.map_or("never".into(), format_rfc3339_ms),
            ),
        ]);
        let host = host_block(&view);
        format!(
            r#"<div id="live" data-refresh="{REFRESH_MS}"><h1>Machine {}</h1><div class="card">{}</div>{host}<h2>Tasks</h2>{}{}<h2>Events</h2>{}</div>"#,
            escape(&id),
            key_values(&rows),
            instance_rows(
                &viewer,
                &view.instances,
                true,
                view.instances.iter().any(|i| i.dns_name.is_some())
            ),
            super::graphs::machine_graphs(&cluster, &id),
            events_table(&cluster, Some(&EventSubject::Machine(id.clone())), 20)
        )
    };
    render(&viewer, &format!("machine {id}"), body)
}

/// The DNS reconciler's failure streak and conflicts, in the overview's
/// failure style, linking to the DNS page; nothing while all is well.
fn dns_trouble(status: &DnsStatus) -> String {
    let mut out = String::new();
    if let Some(error) = &status.error {
        let _ = write!(
            out,
            r#"<div class="notice">DNS ({}) fails: {} ({} failures in a row; next attempt at {}). <a href="/dns">DNS</a></div>"#,
            escape(&status.kind),
            escape(&error.message),
            error.failures,
            format_rfc3339_ms(error.next_attempt_ms)
        );
    }
    if !status.conflicts.is_empty() {
        let _ = write!(
            out,
            r#"<div class="notice">DNS names held by another owner, left alone: {}. <a href="/dns">DNS</a></div>"#,
            status
                .conflicts
                .iter()
                .map(|name| escape(name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// The DNS page's body: the provider, when it last held exactly what is
/// wanted, its trouble, and every RRset Cerebro wants (ownership TXT
/// records included), all escaped.
fn render_dns(status: &DnsStatus) -> String {
    let rows = [
        ("Provider", escape(&status.kind)),
        ("Zone", escape(status.zone.as_deref().unwrap_or("—"))),
        ("TTL", format!("{} s", status.ttl)),
        (
            "Answers on",
            status.listen.as_deref().map_or("—".into(), |listen| {
                format!("{} (UDP and TCP)", escape(listen))
            }),
        ),
        (
            "Last in sync",
            status
                .last_sync_ms
                .map_or("never".into(), format_rfc3339_ms),
        ),
    ];
    let mut out = format!(
        r#"<h1>DNS</h1>{}<div class="card">{}</div><h2>Records</h2>"#,
        dns_trouble(status),
        key_values(&rows)
    );
    if status.desired.is_empty() {
        out.push_str(
            r#"<p class="muted">No records wanted: no job with a <code>dns_basename</code> has instances.</p>"#,
        );
        return out;
    }
    out.push_str("<table><tr><th>Name</th><th>Type</th><th>TTL</th><th>Values</th></tr>");
    for set in &status.desired {
        let values: Vec<String> = set
            .values
            .iter()
            .map(|value| match set.rtype {
                RecordType::Txt => escape(&format!("\"{value}\"")),
                RecordType::A | RecordType::Aaaa => escape(value),
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&set.name),
            set.rtype,
            set.ttl,
            values.join("<br>")
        );
    }
    out.push_str("</table>");
    out
}

/// `/dns`: what `GET /api/v1/dns` answers, as a page.
pub(super) async fn dns_page(State(app): State<UiState>, headers: HeaderMap) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let status = super::dns_status(&app);
    let body = format!(
        r#"<div id="live" data-refresh="{REFRESH_MS}">{}</div>"#,
        render_dns(&status)
    );
    render(&viewer, "DNS", body)
}

/// The log page's heading: the instance as people name it, the machine
/// it runs on and the stream: `ticker #2 (local-b) on local-b-1 — stdout`
/// (job and machine linked). An instance the job does not have (any
/// more) is named by its number alone.
fn log_heading(job: &str, index: usize, instance: Option<&InstanceView>, stream: &str) -> String {
    let Some(instance) = instance else {
        return format!("<h1>{} #{index} — {}</h1>", job_link(job), escape(stream));
    };
    let place = instance
        .machine
        .as_deref()
        .map_or("not placed".into(), |m| format!("on {}", machine_link(m)));
    format!(
        "<h1>{} #{index} ({}) {place} — {}</h1>",
        job_link(job),
        escape(&instance.zone),
        escape(stream)
    )
}

#[derive(Deserialize)]
pub(super) struct LogQuery {
    lines: Option<u64>,
}

pub(super) async fn log_page(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path((name, index, stream)): Path<(String, String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    // Parsed here rather than by the extractors, whose refusals are not pages.
    let Ok(index) = index.parse::<usize>() else {
        return not_found(&viewer, &format!("'{index}' is not an instance number"));
    };
    let Ok(Query(query)) = query else {
        return error_page(
            &viewer,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "lines must be a whole number of lines, such as 200",
        );
    };
    if stream != "stdout" && stream != "stderr" {
        return not_found(&viewer, "the log is stdout or stderr");
    }
    let lines = query.lines.unwrap_or(200).clamp(1, 10_000);
    // Read before the log is: the lock is not held across the await.
    let heading = {
        let cluster = app.ops.read();
        let instance = cluster.job(&name).and_then(|record| {
            cluster
                .job_view(&name, record)
                .instances
                .into_iter()
                .find(|i| i.index == index)
        });
        log_heading(&name, index, instance.as_ref(), &stream)
    };
    let chunk = app
        .ops
        .read_instance_log(
            &name,
            index,
            &stream,
            &cerebro_types::task_api::LogQuery {
                tail: Some(lines as usize),
                ..Default::default()
            },
        )
        .await;
    let api_url = format!(
        "/api/v1/jobs/{}/instances/{index}/logs/{stream}",
        encode_path_segment(&name)
    );
    let mut choices = String::new();
    for n in [50u64, 200, 1000, 5000] {
        let _ = write!(
            choices,
            r#"<option value="{n}"{}>{n} lines</option>"#,
            if n == lines { " selected" } else { "" }
        );
    }
    let other = if stream == "stdout" {
        "stderr"
    } else {
        "stdout"
    };
    let body = match chunk {
        Ok(chunk) => format!(
            r#"{heading}<form method="get">Show the last <select name="lines" data-autosubmit>{choices}</select> · <a href="/logs/{}/{index}/{other}">{other}</a> · following new output</form><pre class="log" id="log" data-url="{}" data-offset="{}">{}</pre>"#,
            encode_path_segment(&name),
            escape(&api_url),
            chunk.next_offset,
            escape(&chunk.data)
        ),
        // No such job or instance: the page does not exist.
        Err(
            error
            @ (crate::ops::OpError::NoSuchJob(_) | crate::ops::OpError::NoSuchInstance { .. }),
        ) => return not_found(&viewer, &error.to_string()),
        Err(error) => format!(
            r#"{heading}<div class="notice">{}</div>"#,
            escape(&error.to_string())
        ),
    };
    render(&viewer, &format!("{name} #{index} {stream}"), body)
}

/// One instance's deploy log: every attempt the machine keeps, newest
/// first, each step with its outcome, duration, exit code and output.
pub(super) async fn deploy_log_page(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path((name, index)): Path<(String, String)>,
) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    // Parsed here rather than by the extractor, whose refusal is not a page.
    let Ok(index) = index.parse::<usize>() else {
        return not_found(&viewer, &format!("'{index}' is not an instance number"));
    };
    let title = format!("{name} #{index} deploy log");
    let body = match app.ops.deploy_log(&name, Some(index)).await {
        Err(crate::ops::OpError::NoSuchJob(_)) => {
            return not_found(&viewer, &format!("no job named '{name}'"))
        }
        Err(crate::ops::OpError::Invalid(errors))
            if errors.errors.iter().any(|e| e.field == "instance") =>
        {
            return not_found(&viewer, &errors.to_string())
        }
        Err(error @ crate::ops::OpError::NoSuchInstance { .. }) => {
            return not_found(&viewer, &error.to_string())
        }
        Err(error) => format!(
            r#"<h1>{} #{index} — deploy log</h1><div class="notice">{}</div>"#,
            job_link(&name),
            escape(&error.to_string())
        ),
        Ok(logs) => render_deploy_log(&name, index, &logs),
    };
    render(&viewer, &title, body)
}

fn render_deploy_log(
    name: &str,
    index: usize,
    logs: &[cerebro_types::deploy::InstanceDeployLog],
) -> String {
    let word = |value: serde_json::Value| {
        value
            .as_str()
            .map(|s| s.replace('_', " "))
            .unwrap_or_default()
    };
    let mut out = format!(r#"<h1>{} #{index} — deploy log</h1>"#, job_link(name));
    for log in logs {
        let _ = write!(
            out,
            "<p>{} in {} on {}</p>",
            escape(&log.task),
            escape(&log.zone),
            log.machine.as_deref().map_or("—".into(), machine_link)
        );
        if let Some(error) = &log.error {
            let _ = write!(out, r#"<div class="notice">{}</div>"#, escape(error));
        }
        if log.attempts.is_empty() && log.error.is_none() {
            out.push_str("<p>No deployment attempts yet.</p>");
        }
        for attempt in &log.attempts {
            let outcome = word(serde_json::to_value(attempt.outcome).unwrap_or_default());
            let _ = write!(
                out,
                "<h2>Release {} (version {}), attempt {}: {}</h2><p>started {}{}</p><table><tr><th>Step</th><th>Outcome</th><th>Duration</th><th>Exit code</th><th>Detail</th></tr>",
                escape(&attempt.release),
                escape(attempt.version.as_deref().unwrap_or("—")),
                attempt.attempt,
                state_pill(&outcome),
                format_rfc3339_ms(attempt.started_ms),
                attempt
                    .finished_ms
                    .map(|end| format!(", ended {}", format_rfc3339_ms(end)))
                    .unwrap_or_default()
            );
            let mut outputs = String::new();
            for step in &attempt.steps {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
                    escape(&step.label),
                    state_pill(&word(
                        serde_json::to_value(step.outcome).unwrap_or_default()
                    )),
                    step.duration_ms,
                    step.exit_code.map_or("—".into(), |c| c.to_string()),
                    escape(&step.detail)
                );
                if !step.output.is_empty() {
                    let _ = write!(
                        outputs,
                        r#"<h3>{}</h3><pre class="log">{}</pre>"#,
                        escape(&step.label),
                        escape(&step.output)
                    );
                }
            }
            out.push_str("</table>");
            out.push_str(&outputs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::cluster::InstanceState;
    use cerebro_types::deploy::DeployStatus;
    use cerebro_types::health::{ExitReason, Pending};
    use cerebro_types::task::ExitStatus;

    fn instance(deploy: Option<DeployStatus>) -> InstanceView {
        InstanceView {
            index: 0,
            job: "web".into(),
            zone: "local-a".into(),
            slot: 0,
            task_name: "web#0".into(),
            machine: Some("local-a-1".into()),
            state: InstanceState::Running,
            pid: Some(1),
            restarts: 0,
            violations: 0,
            cpu_cores: 0.0,
            rss_bytes: 0,
            started_at_ms: None,
            generation: 1,
            deploy,
            dns_name: None,
            ports: Default::default(),
            host: None,
            health: cerebro_types::health::InstanceHealth::Running,
            wanted_running: true,
            pending: None,
            last_exit: None,
            recent_restarts: 0,
        }
    }

    #[test]
    fn instances_show_their_health_why_and_recent_restarts() {
        let mut looping = instance(None);
        looping.health = InstanceHealth::CrashLooping;
        looping.restarts = 12;
        looping.recent_restarts = 4;
        looping.last_exit = Some(ExitReason {
            at_ms: 1,
            status: Some(ExitStatus::Code(3)),
            violation: None,
            by_request: false,
        });
        let mut waiting = InstanceView {
            index: 1,
            machine: None,
            ..instance(None)
        };
        waiting.health = InstanceHealth::Pending;
        waiting.pending = Some(Pending::new(
            "provider_limit",
            "the provider's limit of <8> machines is reached",
        ));
        let html = instance_rows(&viewer(), &[looping, waiting], false, false);
        assert!(
            html.contains("<th>Health</th><th>Why</th>")
                && html.contains("<th>Restarts in 5 min</th>"),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<td><span class="health health-crash_looping">crash-looping</span></td><td>exit code 3</td>"#
            ),
            "{html}"
        );
        assert!(html.contains("<td>12</td><td>4</td>"), "{html}");
        assert!(
            html.contains(
                r#"<span class="health health-pending">pending</span></td><td>the provider&#39;s limit of &lt;8&gt; machines is reached</td>"#
            ),
            "{html}"
        );
    }

    fn job_view(instances: Vec<InstanceView>) -> JobView {
        let spec = cerebro_types::job_file::parse_jobs(
            r#"{"deployment_layout": {"local-a": {"cpu": 1}, "local-b": {"cpu": 2}},
                "task_configuration": {"name": "web", "command": "sleep 1000"}}"#,
            "test.conf",
        )
        .unwrap()
        .remove(0);
        JobView {
            name: "web".into(),
            spec,
            version: None,
            generation: 1,
            created_ms: 0,
            updated_ms: 0,
            desired_instances: instances.len(),
            running_instances: 0,
            instances,
            health: JobHealth::Degraded,
            health_counts: HealthCounts::default(),
            rollout: None,
            run_requested: None,
            recipe: None,
            dns_names: Vec::new(),
        }
    }

    #[test]
    fn an_unplaced_instance_is_named_by_its_job_wide_number() {
        // local-b's slot 1 is the job's instance 2.
        let instances = vec![
            instance(None),
            InstanceView {
                index: 1,
                zone: "local-b".into(),
                slot: 0,
                ..instance(None)
            },
            InstanceView {
                index: 2,
                zone: "local-b".into(),
                slot: 1,
                machine: None,
                ..instance(None)
            },
        ];
        let unplaced = |zone: &str, slot: u32| Unplaced {
            key: cerebro_types::cluster::InstanceKey {
                job: "web".into(),
                zone: zone.into(),
                slot,
            },
            need: cerebro_types::job::Need {
                cpu: 0.5,
                mem_mb: 64.0,
            },
            reason: "no room".into(),
        };
        let views = [job_view(instances)];
        assert_eq!(
            unplaced_label(&views, &unplaced("local-b", 1)),
            "web #2 (local-b)"
        );
        // Not in the view (yet): no number rather than the slot.
        assert_eq!(
            unplaced_label(&views, &unplaced("local-c", 0)),
            "web (an instance in local-c)"
        );
    }

    #[test]
    fn reserved_and_used_are_labelled_and_never_negative_zero() {
        let capacity = Resources {
            cpu: 2.0,
            mem_mb: 1200.0,
        };
        // What a sum of floats leaves after instances came and went.
        let reserved = Resources {
            cpu: 0.3 - 0.1 - 0.2,
            mem_mb: -0.0001,
        };
        let html = resource_bars(reserved, capacity);
        assert!(html.contains("0.00 of 2 cores"), "{html}");
        assert!(html.contains("0 of 1200 MB"), "{html}");
        assert!(!html.contains("-0"), "{html}");
        let html = resource_bars(
            Resources {
                cpu: 0.4,
                mem_mb: 128.0,
            },
            Resources {
                cpu: 1.5,
                mem_mb: 1200.0,
            },
        );
        assert!(
            html.contains("0.40 of 1.50 cores") && html.contains("128 of 1200 MB"),
            "{html}"
        );
    }

    #[test]
    fn the_host_block_says_whose_figures_they_are() {
        let mut machine = MachineView {
            id: "local-a-1".into(),
            zone: "local-a".into(),
            provider: "local".into(),
            provider_id: None,
            details: Default::default(),
            address: None,
            state: MachineState::Ready,
            capacity: Resources {
                cpu: 2.0,
                mem_mb: 1200.0,
            },
            reserved: Resources {
                cpu: 0.0,
                mem_mb: 0.0,
            },
            created_ms: 0,
            last_seen_ms: None,
            missed_polls: 0,
            instances: Vec::new(),
            used: Resources {
                cpu: 0.0,
                mem_mb: 0.0,
            },
            vitals: None,
            orphans: Vec::new(),
            dns_names: Vec::new(),
        };
        assert_eq!(host_block(&machine), "");
        machine.vitals = Some(cerebro_types::machine::Vitals {
            cpu_cores_used: 1.314,
            cpu_cores: 8,
            mem_used_mb: 744,
            mem_total_mb: 24105,
            load_average: [0.5, 0.25, 0.125],
            disk_free_bytes: 1 << 30,
            uptime_secs: 60,
        });
        let html = host_block(&machine);
        for part in [
            "<h2>Host</h2>",
            "shared by every machine of the local provider",
            "1.31 of 8 cores",
            "744 of 24105 MB",
        ] {
            assert!(html.contains(part), "{part} in {html}");
        }
        machine.provider = "ec2".into();
        assert!(!host_block(&machine).contains("shared"));
    }

    #[test]
    fn the_log_heading_names_the_instance_its_zone_and_machine() {
        let on_b = InstanceView {
            index: 2,
            zone: "local-b".into(),
            machine: Some("local-b-1".into()),
            ..instance(None)
        };
        assert_eq!(
            log_heading("web", 2, Some(&on_b), "stdout"),
            r#"<h1><a href="/jobs/web">web</a> #2 (local-b) on <a href="/machines/local-b-1">local-b-1</a> — stdout</h1>"#
        );
        let unplaced = InstanceView {
            machine: None,
            ..on_b
        };
        assert!(log_heading("web", 2, Some(&unplaced), "stderr")
            .contains("(local-b) not placed — stderr"));
        assert_eq!(
            log_heading("web", 9, None, "stdout"),
            r#"<h1><a href="/jobs/web">web</a> #9 — stdout</h1>"#
        );
    }

    #[test]
    fn instances_show_their_ports_at_their_machines_address() {
        let mut web = instance(None);
        web.ports = [("http".to_string(), 20017u16), ("admin".to_string(), 20018)].into();
        web.host = Some("10.0.0.5".into());
        let other = InstanceView {
            index: 1,
            ..instance(None)
        };
        let html = instance_rows(&viewer(), &[web, other], false, false);
        assert!(html.contains("<th>Ports</th>"), "{html}");
        assert!(
            html.contains(
                "<td>admin <code>10.0.0.5:20018</code><br>http <code>10.0.0.5:20017</code></td>"
            ),
            "{html}"
        );
        let plain = instance_rows(&viewer(), &[instance(None)], false, false);
        assert!(!plain.contains("Ports"), "no column without ports: {plain}");
    }

    fn viewer() -> Viewer {
        Viewer {
            csrf: None,
            open: false,
        }
    }

    #[test]
    fn instances_show_their_dns_name_escaped_only_when_asked() {
        let mut named = instance(None);
        named.dns_name = Some("0.local-a.<b>web</b>.cerebro.test".into());
        let unnamed = InstanceView {
            index: 1,
            ..instance(None)
        };
        let html = instance_rows(&viewer(), &[named.clone(), unnamed], false, true);
        assert!(html.contains("<th>DNS name</th>"), "{html}");
        assert!(
            html.contains("<td>0.local-a.&lt;b&gt;web&lt;/b&gt;.cerebro.test</td>"),
            "{html}"
        );
        assert!(!html.contains("<b>web</b>"), "{html}");
        // The instance without a name yet gets a dash in its column.
        assert!(
            html.contains(r#"<a href="/machines/local-a-1">local-a-1</a></td><td>—</td>"#),
            "{html}"
        );
        let plain = instance_rows(&viewer(), &[named], true, false);
        assert!(!plain.contains("DNS name"), "{plain}");
        assert!(!plain.contains("cerebro.test"), "{plain}");
    }

    #[test]
    fn names_are_listed_one_per_line_escaped() {
        assert_eq!(names_html(&[]), "—");
        assert_eq!(
            names_html(&[
                "local-a.web.cerebro.test".into(),
                "local-b.<i>.cerebro.test".into()
            ]),
            "local-a.web.cerebro.test<br>local-b.&lt;i&gt;.cerebro.test"
        );
    }

    #[test]
    fn the_dns_page_shows_the_provider_its_trouble_and_the_records_escaped() {
        use cerebro_types::dns::{DnsErrorView, RecordSet};
        let status = DnsStatus {
            kind: "rfc2136".into(),
            zone: Some("cerebro.test".into()),
            ttl: 60,
            listen: None,
            desired: vec![
                RecordSet {
                    name: "0.local-a.web.cerebro.test".into(),
                    rtype: RecordType::A,
                    ttl: 60,
                    values: ["127.0.0.1".to_string()].into(),
                },
                RecordSet {
                    name: "0.local-a.web.cerebro.test".into(),
                    rtype: RecordType::Txt,
                    ttl: 60,
                    values: ["heritage=cerebro,cerebro/owner=<x>".to_string()].into(),
                },
                RecordSet {
                    name: "local-a.web.cerebro.test".into(),
                    rtype: RecordType::A,
                    ttl: 60,
                    values: ["127.0.0.1".to_string(), "127.0.0.2".to_string()].into(),
                },
            ],
            last_sync_ms: Some(1_000),
            error: Some(DnsErrorView {
                message: "update: REFUSED: <key> not authorized".into(),
                failures: 4,
                next_attempt_ms: 61_000,
            }),
            conflicts: vec!["1.local-b.<web>.cerebro.test".into()],
        };
        let html = render_dns(&status);
        for part in [
            r#"<div class="notice">DNS (rfc2136) fails: update: REFUSED: &lt;key&gt; not authorized (4 failures in a row; next attempt at 1970-01-01T00:01:01.000Z)."#,
            r#"<div class="notice">DNS names held by another owner, left alone: 1.local-b.&lt;web&gt;.cerebro.test."#,
            "cerebro.test",
            "60 s",
            "1970-01-01T00:00:01.000Z",
            "<tr><td>0.local-a.web.cerebro.test</td><td>A</td><td>60</td><td>127.0.0.1</td></tr>",
            "<td>TXT</td><td>60</td><td>&quot;heritage=cerebro,cerebro/owner=&lt;x&gt;&quot;</td>",
            "<td>local-a.web.cerebro.test</td><td>A</td><td>60</td><td>127.0.0.1<br>127.0.0.2</td>",
        ] {
            assert!(html.contains(part), "{part} in {html}");
        }
        assert!(!html.contains("<key>") && !html.contains("<x>"), "{html}");

        // All well: no notice; nothing wanted says so.
        let quiet = DnsStatus {
            kind: "embedded".into(),
            ttl: 60,
            listen: Some("127.0.0.1:8600".into()),
            ..DnsStatus::default()
        };
        assert_eq!(dns_trouble(&quiet), "");
        let html = render_dns(&quiet);
        assert!(!html.contains("notice"), "{html}");
        assert!(html.contains("127.0.0.1:8600 (UDP and TCP)"), "{html}");
        assert!(html.contains("No records wanted"), "{html}");
        assert!(html.contains("never"), "{html}");
    }

    #[test]
    fn a_failed_deploy_names_its_step_and_shows_the_output_escaped() {
        let failed = DeployStatus {
            release: "v2-0123456789ab".into(),
            version: Some("v2".into()),
            state: DeployState::Failed,
            running_release: Some("v1-ba9876543210".into()),
            step: Some("step 2 (run \"install\")".into()),
            error: Some("exit 3".into()),
            output_tail: Some("<script>alert(1)</script>\n".into()),
            attempts: 2,
            next_attempt_ms: None,
            updated_ms: 0,
        };
        let html = deploy_rows(&[instance(Some(failed))]);
        assert!(html.contains("deploy failed"), "{html}");
        assert!(
            html.contains("deploy failed at step 2 (run &quot;install&quot;): exit 3"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(r#"href="/deploylog/web/0""#), "{html}");
        assert!(html.contains("v1-ba9876543210"), "{html}");
        let pending = deploy_rows(&[instance(None)]);
        assert!(pending.contains("pending"), "{pending}");
    }
}
