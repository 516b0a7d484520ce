//! The one JSON error shape every Cerebro API answers with:
//! `{"error": "...", "field": "...", "errors": [{"field", "message"}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cerebro_types::{ErrorBody, FieldError, ValidationErrors};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                field: None,
                errors: Vec::new(),
            },
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 naming the offending field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        let mut error = Self::bad_request(format!("{field}: {message}"));
        error.body.field = Some(field.clone());
        error.body.errors.push(FieldError { field, message });
        error
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// 400 listing every invalid field; `field` names the first.
impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        let mut error = Self::bad_request(errors.to_string());
        error.body.field = errors.errors.first().map(|e| e.field.clone());
        error.body.errors = errors.errors;
        error
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body.error)
    }
}

/// Parses a JSON request body into `T`, strictly: the body must be one JSON
/// object (every Cerebro request body is one) with nothing after it, and a
/// type that denies unknown fields refuses them. Any error names its field
/// (`body` when the whole body is wrong).
///
/// serde's derived structs also accept an array of field values; a
/// top-level `[]` would then read as "every default", so the object is
/// checked first.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(ApiError::bad_field(
                "body",
                "is empty; expected a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::bad_field(
                "body",
                "expected a JSON object ({...})",
            ))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        // Broken JSON is the body's fault, wherever the parser was when it broke.
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() {
            let (line, column) = (inner.line(), inner.column());
            ApiError::bad_field(
                "body",
                format!("not JSON (line {line}, column {column}): {inner}"),
            )
        } else {
            field_error(error)
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::bad_field(
            "body",
            format!(
                "unexpected data after the JSON object (line {}, column {})",
                error.line(),
                error.column()
            ),
        )
    })?;
    Ok(value)
}

/// A request body parsed with [`parse_json_body`]'s rules into a JSON
/// object, for a handler that adjusts it (fills a field from the URL)
/// before [`from_json_object`] types it.
pub fn parse_json_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    parse_json_body(body)
}

/// Types an object from [`parse_json_object`], naming the field of any error.
pub fn from_json_object<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(field_error)
}

/// An axum extractor for a JSON request body under [`parse_json_body`]'s
/// rules; its rejection is the JSON error shape. Unlike `axum::Json` it
/// does not insist on a `Content-Type` (`curl -d` sends a form type).
#[derive(Debug, Clone)]
pub struct StrictJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for StrictJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_json_body(&body)
            .map(StrictJson)
            .map_err(IntoResponse::into_response)
    }
}

/// A 400 naming the field a deserialization error happened at.
pub fn field_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ApiError {
    let path = error.path().to_string();
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    ApiError::bad_field(field, error.into_inner().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limit {
        limit: u32,
        #[serde(default)]
        zone: Option<String>,
    }

    fn refusal(body: &str) -> ErrorBody {
        let error = parse_json_body::<Limit>(body.as_bytes()).expect_err(body);
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
        error.body
    }

    #[test]
    fn a_strict_body_is_one_object_and_nothing_else() {
        assert_eq!(
            parse_json_body::<Limit>(b" {\"limit\": 1}\n").unwrap(),
            Limit {
                limit: 1,
                zone: None
            }
        );
        for body in [
            r#"{"limit":1}garbage"#,
            r#"{"limit":1}{"limit":2}"#,
            r#"{"limit":"#,
            r#"{"limit":1,"zone":"x"#,
            "[]",
            "[1]",
            "1",
            "\"x\"",
            "",
            "  ",
        ] {
            let error = refusal(body);
            assert_eq!(error.field.as_deref(), Some("body"), "{body}: {error:?}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        assert_eq!(refusal(r#"{"limit":"x"}"#).field.as_deref(), Some("limit"));
        assert_eq!(refusal(r#"{"limit":1e99}"#).field.as_deref(), Some("limit"));
        assert_eq!(
            refusal(r#"{"limit":1,"zone":3}"#).field.as_deref(),
            Some("zone")
        );
        let unknown = refusal(r#"{"limit":1,"extra":true}"#);
        assert!(unknown.error.contains("extra"), "{unknown:?}");
    }

    #[test]
    fn an_object_can_be_adjusted_then_typed() {
        let mut object = parse_json_object(br#"{"zone":"a"}"#).unwrap();
        object.insert("limit".into(), 2.into());
        assert_eq!(
            from_json_object::<Limit>(object).unwrap(),
            Limit {
                limit: 2,
                zone: Some("a".into())
            }
        );
        assert!(parse_json_object(b"[]").is_err());
    }
}
