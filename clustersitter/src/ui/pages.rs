//! The pages: overview, job, machine, DNS and log, each rendered whole on
//! the server and refreshed in place.

use super::{render, UiState, Viewer, REFRESH_MS};
use crate::cluster::Cluster;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cerebro_types::cluster::{
    EventSubject, InstanceState, InstanceView, MachineState, RunMode, Severity,
};
use cerebro_types::deploy::DeployState;
use cerebro_types::dns::{DnsStatus, RecordType};
use cerebro_types::time::{format_rfc3339_ms, now_ms};
use cerebro_types::url::encode_path_segment;
use cerebro_web::html::{bar, escape, format_bytes, key_values, state_pill};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;

fn not_found(viewer: &Viewer, message: &str) -> Response {
    let body = format!(
        r#"<h1>Not found</h1><div class="notice">{}</div><p><a href="/overview">Overview</a></p>"#,
        escape(message)
    );
    (
        StatusCode::NOT_FOUND,
        super::shell(viewer.open, "not found", &viewer.header(), &body),
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
    out.push_str("<th>State</th><th>PID</th><th>Uptime</th><th>Restarts</th><th>Violations</th><th>CPU</th><th>RSS</th><th>Logs</th><th></th></tr>");
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
            "<td>{}</td><td>{}</td><td>{}</td>{dns}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.index,
            escape(&i.zone),
            i.machine.as_deref().map_or("—".into(), machine_link),
            state_pill(i.state.as_str()),
            i.pid.map_or("—".into(), |p| p.to_string()),
            uptime(i.started_at_ms),
            i.restarts,
            i.violations,
            i.cpu_cores,
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
        let mut body = format!(
            r#"<h1>Cluster {}</h1><div class="stats">
<div class="stat"><b>{}</b>jobs</div>
<div class="stat"><b>{} / {}</b>instances running</div>
<div class="stat"><b>{}</b>machines{}</div>
<div class="stat{}"><b>{}</b>failures in the last hour</div></div>"#,
            escape(&status.cluster),
            status.jobs,
            status.running_instances,
            status.desired_instances,
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
                    "{} #{} in {}: {}<br>",
                    escape(&unplaced.key.job),
                    unplaced.key.slot,
                    escape(&unplaced.key.zone),
                    escape(&unplaced.reason)
                );
            }
            body.push_str("</div>");
        }
        body.push_str(&dns_trouble(&dns));
        body.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>Zones (desired / running / pending)</th><th>Version</th><th>Linked to</th><th>Last update</th><th></th></tr>");
        for view in &views {
            let name = &view.name;
            let mut zones: Vec<String> = Vec::new();
            let mut zone_names: Vec<&String> = view.instances.iter().map(|i| &i.zone).collect();
            zone_names.dedup();
            for zone in zone_names {
                let in_zone: Vec<&InstanceView> =
                    view.instances.iter().filter(|i| &i.zone == zone).collect();
                let running = in_zone
                    .iter()
                    .filter(|i| i.state == InstanceState::Running)
                    .count();
                let pending = in_zone
                    .iter()
                    .filter(|i| i.state == InstanceState::Pending)
                    .count();
                zones.push(format!(
                    "{} {} / {running} / {pending}",
                    escape(zone),
                    in_zone.len()
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
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{update}</td></tr>",
                job_link(name),
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
            "</table><h2>Machines</h2><table><tr><th>Machine</th><th>Zone</th><th>Address</th>{}<th>DNS names</th><th>State</th><th>CPU used</th><th>Memory used</th><th>Load</th><th>Tasks</th></tr>",
            if with_details { "<th>Instance</th>" } else { "" }
        );
        for view in machine_views {
            let cpu_used: f64 = view.instances.iter().map(|i| i.cpu_cores).sum();
            let mem_used: u64 = view.instances.iter().map(|i| i.rss_bytes).sum();
            let mem_used_mb = mem_used as f64 / (1024.0 * 1024.0);
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
                bar(cpu_used, view.capacity.cpu, &format!("{cpu_used:.2} of {} cores", view.capacity.cpu)),
                bar(mem_used_mb, view.capacity.mem_mb, &format!("{mem_used_mb:.0} of {:.0} MB", view.capacity.mem_mb)),
                view.vitals.as_ref().map_or("—".into(), |v| format!("{:.2}", v.load_average[0])),
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
            r#"<div id="live" data-refresh="{REFRESH_MS}"><h1>{}</h1><p>{actions}</p><div class="card">{}</div><h2>Instances</h2>{}{graphs}{deployments}<h2>Layout</h2>{layout}<h2>Task configuration</h2><pre class="log">{}</pre><h2>Recipe options</h2><pre class="log">{}</pre><h2>Events</h2>{}</div>"#,
            escape(&name),
            key_values(&rows),
            instance_rows(&viewer, &view.instances, false, with_dns),
            escape(&task),
            escape(&options),
            events_table(&cluster, Some(&EventSubject::Job(name.clone())), 20)
        )
    };
    render(&viewer, &name, body)
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
                "Reserved",
                format!(
                    "{} {}",
                    bar(
                        view.reserved.cpu,
                        view.capacity.cpu,
                        &format!("{:.2} of {} cores", view.reserved.cpu, view.capacity.cpu)
                    ),
                    bar(
                        view.reserved.mem_mb,
                        view.capacity.mem_mb,
                        &format!(
                            "{:.0} of {:.0} MB",
                            view.reserved.mem_mb, view.capacity.mem_mb
                        )
                    )
                ),
            ),
            (
                "Last seen",
                view.last_seen_ms.map_or("never".into(), format_rfc3339_ms),
            ),
        ]);
        if let Some(v) = &view.vitals {
            rows.push((
                "CPU",
                bar(
                    v.cpu_cores_used,
                    v.cpu_cores as f64,
                    &format!("{:.2} of {} cores busy", v.cpu_cores_used, v.cpu_cores),
                ),
            ));
            rows.push((
                "Memory",
                bar(
                    v.mem_used_mb as f64,
                    v.mem_total_mb as f64,
                    &format!("{} of {} MB used", v.mem_used_mb, v.mem_total_mb),
                ),
            ));
            rows.push((
                "Load",
                format!(
                    "{:.2} {:.2} {:.2}",
                    v.load_average[0], v.load_average[1], v.load_average[2]
                ),
            ));
            rows.push(("Disk free", format_bytes(v.disk_free_bytes)));
            rows.push(("Uptime", format!("{} s", v.uptime_secs)));
        }
        format!(
            r#"<div id="live" data-refresh="{REFRESH_MS}"><h1>Machine {}</h1><div class="card">{}</div><h2>Tasks</h2>{}{}<h2>Events</h2>{}</div>"#,
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

#[derive(Deserialize)]
pub(super) struct LogQuery {
    lines: Option<u64>,
}

pub(super) async fn log_page(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path((name, index, stream)): Path<(String, usize, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let Some(viewer) = Viewer::of_page(&app, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if stream != "stdout" && stream != "stderr" {
        return (StatusCode::BAD_REQUEST, "stream must be stdout or stderr").into_response();
    }
    let lines = query.lines.unwrap_or(200).clamp(1, 10_000);
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
            r#"<h1>{} #{index} — {stream}</h1><form method="get">Show the last <select name="lines" data-autosubmit>{choices}</select> · <a href="/logs/{}/{index}/{other}">{other}</a> · following new output</form><pre class="log" id="log" data-url="{}" data-offset="{}">{}</pre>"#,
            job_link(&name),
            encode_path_segment(&name),
            escape(&api_url),
            chunk.next_offset,
            escape(&chunk.data)
        ),
        Err(error) => format!(
            r#"<h1>{} #{index} — {stream}</h1><div class="notice">{}</div>"#,
            job_link(&name),
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
    use cerebro_types::deploy::DeployStatus;

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
