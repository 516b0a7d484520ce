//! What a logged-in browser can do: log in and out, and the form posts
//! (update, remove, start, stop, restart, idle limit), each checked against
//! the session's CSRF token and done through the cluster's operations.

use super::{UiState, Viewer};
use crate::ops::OpError;
use crate::session::{
    served_over_tls, session_cookie, session_set_cookie, Session, SESSION_LIFETIME,
};
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cerebro_types::cluster::UpdateRequest;
use cerebro_types::time::now_ms;
use cerebro_types::url::encode_path_segment;
use cerebro_web::html::escape;
use serde::Deserialize;

pub(super) async fn login_page(State(app): State<UiState>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&app, &headers);
    let body = r#"<h1>Log in</h1><div class="card"><form method="post" action="/login"><p>The cluster token (the contents of the clustersitter's token file) lets this browser act: update, remove, restart, set the idle limit.</p><input type="password" name="token" autocomplete="current-password" autofocus class="wide"> <button type="submit">Log in</button></form></div>"#;
    super::shell(viewer.open, "log in", &viewer.header(), body).into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
    State(app): State<UiState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = app.ops.read().config().token.clone();
    let checked = match token {
        // The same check, and the same limit on wrong attempts, as the API's bearer token.
        Some(token) => token.check(cerebro_web::auth::client_ip(&extensions), form.token.trim()),
        // A cluster run --insecure lets anyone act through the API too.
        None => Ok(()),
    };
    if let Err(cerebro_web::auth::AuthRefusal::TooMany { retry_after }) = checked {
        let secs = cerebro_web::auth::retry_after_secs(retry_after);
        let body = format!(
            r#"<h1>Log in</h1><div class="notice">Too many wrong tokens from this address; try again in {secs} s.</div>"#
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            super::shell(super::is_open(&app), "log in", "", &body),
        )
            .into_response();
    }
    if checked.is_err() {
        let body = r#"<h1>Log in</h1><div class="notice">That is not the cluster's token.</div><p><a href="/login">Try again</a></p>"#;
        return (
            StatusCode::UNAUTHORIZED,
            super::shell(super::is_open(&app), "log in", "", body),
        )
            .into_response();
    }
    let (Ok(id), Ok(csrf)) = (
        cerebro_web::auth::random_secret(),
        cerebro_web::auth::random_secret(),
    ) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    app.sessions.insert(
        id.clone(),
        Session {
            csrf,
            created_ms: now_ms(),
        },
    );
    let cookie = session_set_cookie(&id, SESSION_LIFETIME.as_secs(), served_over_tls(&headers));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/overview")).into_response()
}

#[derive(Deserialize)]
pub(super) struct ActionForm {
    /// Missing is refused by [`authorize`] as a 403, like a wrong one,
    /// rather than by the form parser.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    limit: Option<u32>,
}

/// Actions need a live session and its CSRF token; anything else is refused with 403.
fn authorize(app: &UiState, headers: &HeaderMap, form: &ActionForm) -> Result<(), &'static str> {
    match app.sessions.csrf_for(headers) {
        Some(csrf) if cerebro_web::auth::Token::new(&csrf).is_ok_and(|t| t.matches(&form.csrf)) => {
            Ok(())
        }
        Some(_) => Err("the form is stale (CSRF token mismatch); reload the page and try again"),
        None => Err("log in with the cluster token to act"),
    }
}

fn refused(app: &UiState, message: &str) -> Response {
    let body = format!(
        r#"<h1>Not allowed</h1><div class="notice">{}</div><p><a href="/login">Log in</a></p>"#,
        escape(message)
    );
    (
        StatusCode::FORBIDDEN,
        super::shell(super::is_open(app), "not allowed", "", &body),
    )
        .into_response()
}

fn done(app: &UiState, result: Result<(), OpError>, back: &str) -> Response {
    match result {
        Ok(()) => Redirect::to(back).into_response(),
        Err(error) => {
            let error = cerebro_web::ApiError::from(error);
            let body = format!(
                r#"<h1>That did not work</h1><div class="notice">{}</div><p><a href="{}">Back</a></p>"#,
                escape(&error.body.error),
                escape(back)
            );
            (
                error.status,
                super::shell(super::is_open(app), "error", "", &body),
            )
                .into_response()
        }
    }
}

pub(super) async fn logout(
    State(app): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if authorize(&app, &headers, &form).is_ok() {
        if let Some(id) = session_cookie(&headers) {
            app.sessions.remove(&id);
        }
    }
    let cookie = session_set_cookie("", 0, served_over_tls(&headers));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/overview")).into_response()
}

pub(super) async fn update_action(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(why) = authorize(&app, &headers, &form) {
        return refused(&app, why);
    }
    let result = app
        .ops
        .start_rollout(&name, &UpdateRequest::default())
        .map(|_| ());
    done(&app, result, &job_page(&name))
}

pub(super) async fn remove_action(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(why) = authorize(&app, &headers, &form) {
        return refused(&app, why);
    }
    done(&app, app.ops.remove_job(&name), "/overview")
}

/// "Start all" (`run`) and "Stop all".
pub(super) async fn start_or_stop_action(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
    run: bool,
) -> Response {
    if let Err(why) = authorize(&app, &headers, &form) {
        return refused(&app, why);
    }
    let result = app.ops.request_run(&name, run).map(|_| ());
    done(&app, result, &job_page(&name))
}

pub(super) async fn restart_action(
    State(app): State<UiState>,
    headers: HeaderMap,
    Path((name, index)): Path<(String, usize)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(why) = authorize(&app, &headers, &form) {
        return refused(&app, why);
    }
    let result = app.ops.restart_instance(&name, index).await;
    done(&app, result, &job_page(&name))
}

pub(super) async fn idle_limit_action(
    State(app): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(why) = authorize(&app, &headers, &form) {
        return refused(&app, why);
    }
    let Some(limit) = form.limit else {
        return done(
            &app,
            Err(OpError::field("limit", "a number is needed")),
            "/overview",
        );
    };
    let request = cerebro_types::cluster::IdleLimitRequest { limit, zone: None };
    done(
        &app,
        app.ops.apply_idle_limit(&request).map(|_| ()),
        "/overview",
    )
}

/// Where an action on job `name` sends the browser back to: its page.
fn job_page(name: &str) -> String {
    format!("/jobs/{}", encode_path_segment(name))
}
