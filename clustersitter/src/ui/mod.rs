//! The web UI: server-rendered pages (every asset embedded), refreshed in
//! place by a small script, with actions behind a login that exchanges the
//! cluster token for an HttpOnly session cookie; every form carries the
//! session's CSRF token. Every value from jobs, tasks and logs is escaped.

mod actions;
mod graphs;
mod pages;

use crate::ops::Ops;
use crate::session::Sessions;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cerebro_web::html::{escape, page_with_header};

const NAV: &[(&str, &str)] = &[
    ("/overview", "Overview"),
    ("/dns", "DNS"),
    ("/metrics", "Metrics"),
];
/// How often pages refresh their data in place, in milliseconds.
const REFRESH_MS: u32 = 3000;

/// What the pages and actions work with: the cluster's operations and the logins.
#[derive(Clone)]
pub struct UiState {
    /// The cluster's operations, shared with the JSON API.
    pub ops: Ops,
    /// Who is logged in.
    pub sessions: Sessions,
}

/// The pages and the form actions, over `state`. They authenticate with
/// a session cookie and a CSRF token, not the API's bearer token.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/overview", get(pages::overview))
        .route("/jobs/{name}", get(pages::job_page))
        .route("/machines/{id}", get(pages::machine_page))
        .route("/dns", get(pages::dns_page))
        .route("/logs/{name}/{index}/{stream}", get(pages::log_page))
        .route("/deploylog/{name}/{index}", get(pages::deploy_log_page))
        .route("/login", get(actions::login_page).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/ui/jobs/{name}/update", post(actions::update_action))
        .route("/ui/jobs/{name}/remove", post(actions::remove_action))
        .route(
            "/ui/jobs/{name}/start",
            post(|app, headers, name, form| {
                actions::start_or_stop_action(app, headers, name, form, true)
            }),
        )
        .route(
            "/ui/jobs/{name}/stop",
            post(|app, headers, name, form| {
                actions::start_or_stop_action(app, headers, name, form, false)
            }),
        )
        .route(
            "/ui/jobs/{name}/instances/{index}/restart",
            post(actions::restart_action),
        )
        .route("/ui/idle-limit", post(actions::idle_limit_action))
        .with_state(state)
}

/// What the DNS page and the overview show of DNS: the body of
/// `GET /api/v1/dns`, as the DNS reconciler last reported it.
fn dns_status(app: &UiState) -> cerebro_types::dns::DnsStatus {
    app.ops.dns_status()
}

/// Who is looking: the CSRF token when logged in.
struct Viewer {
    csrf: Option<String>,
    /// The cluster runs without a token (`--insecure`).
    open: bool,
}

/// Said at the top of every page of a cluster that runs without a token.
const OPEN_BANNER: &str = r#"<div class="notice insecure"><b>Insecure:</b> this cluster runs with <code>--insecure</code> and no token: anyone who can reach it can change or remove its jobs.</div>"#;

/// Whether the cluster runs without a token.
fn is_open(app: &UiState) -> bool {
    app.ops.read().config().token.is_none()
}

/// A page in the shared shell, with [`OPEN_BANNER`] first when `open`.
fn shell(open: bool, title: &str, header_extra: &str, body: &str) -> Html<String> {
    let banner = if open { OPEN_BANNER } else { "" };
    Html(page_with_header(
        title,
        NAV,
        header_extra,
        &format!("{banner}{body}"),
    ))
}

impl Viewer {
    fn of(app: &UiState, headers: &HeaderMap) -> Self {
        Self {
            csrf: app.sessions.csrf_for(headers),
            open: is_open(app),
        }
    }

    /// The viewer of a page, checked before the page does any work: pages
    /// are readable without a session unless `--ui-login-required`, and
    /// then a visitor learns nothing, not even which jobs exist. `None`:
    /// send them to the login page.
    fn of_page(app: &UiState, headers: &HeaderMap) -> Option<Self> {
        let viewer = Self::of(app, headers);
        (viewer.csrf.is_some() || !app.sessions.login_required).then_some(viewer)
    }

    fn header(&self) -> String {
        match &self.csrf {
            Some(csrf) => format!(
                r#"<form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form>"#,
                escape(csrf)
            ),
            None => r#"<a href="/login">Log in</a>"#.to_string(),
        }
    }

    /// A one-button form posting to `action`, shown only to logged-in viewers.
    fn button(&self, action: &str, label: &str, class: &str) -> String {
        match &self.csrf {
            Some(csrf) => format!(
                r#"<form class="inline" method="post" action="{}"><input type="hidden" name="csrf" value="{}"><button type="submit" class="{class}">{}</button></form>"#,
                escape(action),
                escape(csrf),
                escape(label)
            ),
            None => String::new(),
        }
    }
}

fn render(viewer: &Viewer, title: &str, body: String) -> Response {
    shell(viewer.open, title, &viewer.header(), &body).into_response()
}
