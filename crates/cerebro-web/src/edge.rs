//! What every answer of every Cerebro daemon passes through on its way
//! out, applied once by [`crate::daemon::spawn_server`] so that no daemon
//! can forget it: the JSON error shape for every error that is not already
//! JSON or a page, a bound on the URI's length, and the security headers.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Longest request target (path and query) answered; longer ones get a
/// JSON 414. hyper itself refuses targets over 64 KiB before any of this
/// runs, with an empty 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Longest error body kept as the message of a rewritten error; axum's
/// rejections are one line.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Middleware: an error answer (4xx, 5xx) that is neither JSON nor an HTML
/// page becomes the JSON error shape ([`cerebro_types::ErrorBody`]), its
/// status and headers (`Allow`, `Retry-After`...) kept: axum's own
/// rejections (path, query, form, body limit), its 404 fallback and its
/// 405 are text or empty.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::NOT_FOUND {
        format!("nothing at {path}")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        // axum adds `Allow` outside this layer, so it is not always here yet.
        match parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .filter(|allowed| !allowed.is_empty())
        {
            Some(allowed) => format!("{path} does not take {method} (allowed: {allowed})"),
            None => format!("{path} does not take {method}; see the Allow header"),
        }
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    };
    let json = ApiError::new(status, message).into_response();
    let (json_parts, json_body) = json.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &json_parts.headers {
        if name != header::CONTENT_LENGTH {
            parts.headers.insert(name.clone(), value.clone());
        }
    }
    Response::from_parts(parts, Body::new(json_body))
}

/// No inline script or style, nothing from elsewhere, never in a frame:
/// the pages load their one stylesheet and script from the daemon
/// ([`crate::html::assets`]) and fetch only from it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Middleware: the security headers on every answer (pages and API
/// alike; they cost a JSON answer nothing).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
