//! HTML pages for people. `/overview`: the cluster at a glance.

use crate::api::AppState;
use crate::cluster::lock;
use axum::extract::State;
use axum::response::Html;
use cerebro_types::time::format_rfc3339_ms;
use cerebro_web::html::{escape, format_bytes, page, state_pill};
use std::fmt::Write;

const NAV: &[(&str, &str)] = &[("/overview", "Overview"), ("/metrics", "Metrics")];

pub async fn overview(State(app): State<AppState>) -> Html<String> {
    let cluster = lock(&app.cluster);
    let status = cluster.status();
    let mut body = format!(
        "<h1>Cluster {}</h1><p>{} jobs, {} machines, {} of {} instances running</p>",
        escape(&status.cluster),
        status.jobs,
        status.machines,
        status.running_instances,
        status.desired_instances
    );
    body.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>Instance</th><th>Zone</th><th>Machine</th><th>State</th><th>CPU</th><th>Memory</th><th>Logs</th></tr>");
    for (name, record) in &cluster.state.jobs {
        for instance in cluster.job_view(name, record).instances {
            let logs = format!(
                "/api/v1/jobs/{}/instances/{}/logs",
                cerebro_web::html::encode_path_segment(name),
                instance.index
            );
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td><a href=\"{logs}/stdout?tail=200\">stdout</a> · <a href=\"{logs}/stderr?tail=200\">stderr</a></td></tr>",
                escape(name),
                instance.index,
                escape(&instance.zone),
                escape(instance.machine.as_deref().unwrap_or("—")),
                state_pill(&instance.state),
                instance.cpu_cores,
                format_bytes(instance.rss_bytes),
            );
        }
    }
    body.push_str("</table><h2>Machines</h2><table><tr><th>Machine</th><th>Zone</th><th>State</th><th>Address</th><th>Reserved</th><th>Instances</th></tr>");
    for machine in cluster.state.machines.values() {
        let view = cluster.machine_view(machine);
        let state = format!("{:?}", view.state).to_lowercase();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} of {} cores, {:.0} of {:.0} MB</td><td>{}</td></tr>",
            escape(&view.id),
            escape(&view.zone),
            state_pill(&state),
            escape(view.address.as_deref().unwrap_or("—")),
            view.reserved.cpu,
            view.capacity.cpu,
            view.reserved.mem_mb,
            view.capacity.mem_mb,
            view.instances.len()
        );
    }
    body.push_str(
        "</table><h2>Events</h2><table><tr><th>When</th><th>Subject</th><th>What</th></tr>",
    );
    for event in cluster.events.iter().rev().take(50) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            format_rfc3339_ms(event.at_ms),
            escape(&event.subject),
            escape(&event.message)
        );
    }
    body.push_str("</table>");
    Html(page(&format!("{} overview", status.cluster), NAV, &body))
}
