//! Bearer-token authentication for mutating endpoints.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;

use crate::error::ApiError;

/// The shared secret. Compared in constant time; never printed.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Result<Self, TokenError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Self(secret.into()))
    }

    /// Constant-time comparison, so response timing does not leak the secret.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The token from `file` if given, else from the environment variable `env_var`; `None` if neither.
pub fn load_token(file: Option<&Path>, env_var: &str) -> Result<Option<Token>, TokenError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        return Token::new(&text).map(Some);
    }
    match std::env::var(env_var) {
        Ok(value) if !value.trim().is_empty() => Token::new(&value).map(Some),
        _ => Ok(None),
    }
}

/// Middleware: every request other than GET/HEAD/OPTIONS must carry
/// `Authorization: Bearer <token>` when a token is configured.
pub async fn require_token(
    State(token): State<Option<Token>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(candidate) if token.matches(candidate.trim()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the bearer token is wrong").into_response(),
        None => ApiError::unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
            .into_response(),
    }
}

/// A random secret from the kernel (24 bytes), hex encoded: per-task secrets, session ids, CSRF tokens.
pub fn random_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let token = load_token(Some(&path), "CEREBRO_TEST_TOKEN_UNSET")
            .unwrap()
            .unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret2"));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn empty_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            load_token(Some(&path), "X"),
            Err(TokenError::Empty)
        ));
        assert!(matches!(
            load_token(Some(&dir.path().join("missing")), "X"),
            Err(TokenError::Read { .. })
        ));
    }
}
