//! Bearer-token authentication for mutating endpoints.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// The shared secret, and the record of failed attempts to present it.
/// Compared in constant time; never printed. Clones share the record, so
/// every way in to one daemon (bearer header, UI login) counts against
/// the same limit.
#[derive(Clone)]
pub struct Token(Arc<TokenInner>);

struct TokenInner {
    secret: Box<str>,
    failures: Mutex<FailureRecord>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Wrong attempts from one address that are answered at once; after
/// these, each wrong attempt locks the address out for a while.
pub const FREE_FAILURES: u32 = 10;
/// The first lockout; each further wrong attempt doubles it.
const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// The longest lockout: long enough that guessing is useless (one guess a
/// minute), short enough that a local process cannot keep the operator's
/// CLI, which shares its address, out for long.
const MAX_LOCKOUT: Duration = Duration::from_secs(60);
/// An address with no wrong attempt for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at most; beyond, the quiet ones are forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Wrong attempts by client address.
#[derive(Default)]
struct FailureRecord {
    by_address: HashMap<IpAddr, Failures>,
}

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Why a presented secret was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Not the secret.
    Wrong,
    /// Too many wrong attempts from this address: nothing is checked
    /// until `retry_after` has passed.
    TooMany { retry_after: Duration },
}

impl AuthRefusal {
    /// The API's answer: 401 for a wrong secret, 429 with `Retry-After`
    /// (whole seconds, rounded up) while locked out; both JSON.
    pub fn into_api_error(self, wrong: &str) -> Response {
        match self {
            AuthRefusal::Wrong => ApiError::unauthorized(wrong).into_response(),
            AuthRefusal::TooMany { retry_after } => {
                let secs = retry_after_secs(retry_after);
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many failed authentications from this address; try again in {secs} s"
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
        }
    }
}

/// `Retry-After` in whole seconds, never 0 while something is left.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    retry_after.as_millis().div_ceil(1000).max(1) as u64
}

impl Token {
    pub fn new(secret: &str) -> Result<Self, TokenError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Self(Arc::new(TokenInner {
            secret: secret.into(),
            failures: Mutex::default(),
        })))
    }

    /// Constant-time comparison, so response timing does not leak the
    /// secret. Counts nothing: for comparing with a presented secret, use
    /// [`Token::check`].
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.secret.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The one check of a secret presented by `client` (bearer header, UI
    /// login): while `client` is locked out nothing is compared; a wrong
    /// secret counts against it and, past [`FREE_FAILURES`], locks it out
    /// for a time that doubles with each further wrong attempt. The right
    /// secret is accepted at once and clears the address's record.
    pub fn check(&self, client: IpAddr, candidate: &str) -> Result<(), AuthRefusal> {
        self.check_at(client, candidate, Instant::now())
    }

    fn check_at(&self, client: IpAddr, candidate: &str, now: Instant) -> Result<(), AuthRefusal> {
        let mut record = self.0.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failures) = record.by_address.get(&client) {
            if let Some(until) = failures.locked_until.filter(|until| *until > now) {
                return Err(AuthRefusal::TooMany {
                    retry_after: until - now,
                });
            }
        }
        if self.matches(candidate) {
            record.by_address.remove(&client);
            return Ok(());
        }
        if record.by_address.len() >= MAX_ADDRESSES {
            record
                .by_address
                .retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if record.by_address.len() >= MAX_ADDRESSES {
                // Every entry is recent: a flood from many addresses. Keep
                // the locked ones, which are what slows an attacker.
                record
                    .by_address
                    .retain(|_, f| f.locked_until.is_some_and(|until| until > now));
            }
        }
        let failures = record.by_address.entry(client).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        if failures.count > FREE_FAILURES {
            let doublings = (failures.count - FREE_FAILURES - 1).min(16);
            let lockout = (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT);
            failures.locked_until = Some(now + lockout);
        }
        Err(AuthRefusal::Wrong)
    }

    pub fn expose(&self) -> &str {
        &self.0.secret
    }
}

/// The address of the client that sent `request`, as the server recorded
/// it (`ConnectInfo`); unspecified when it did not (a router called
/// without the server, as in a unit test).
pub fn client_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
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
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    require_token_always(State(token), request, next).await
}

/// Middleware: with a `token`, every request, reads included, must carry
/// `Authorization: Bearer <token>`, checked and rate limited as
/// [`require_token`] checks changes. For what only token holders may
/// read (the clustersitter's binaries).
pub async fn require_token_always(
    State(token): State<Option<Token>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(candidate) = presented else {
        return ApiError::unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
            .into_response();
    };
    match token.check(client_ip(request.extensions()), candidate.trim()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_api_error("the bearer token is wrong"),
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
    fn wrong_attempts_lock_an_address_out_for_a_growing_time() {
        let token = Token::new("right").unwrap();
        let (attacker, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                token.check_at(attacker, "wrong", start),
                Err(AuthRefusal::Wrong)
            );
        }
        assert_eq!(
            token.check_at(attacker, "wrong", start),
            Err(AuthRefusal::Wrong)
        );
        let locked = token.check_at(attacker, "right", start);
        assert_eq!(
            locked,
            Err(AuthRefusal::TooMany {
                retry_after: FIRST_LOCKOUT
            }),
            "even the right token waits"
        );
        assert_eq!(
            token.check_at(other, "right", start),
            Ok(()),
            "others are not slowed"
        );
        let later = start + FIRST_LOCKOUT;
        assert_eq!(
            token.check_at(attacker, "wrong", later),
            Err(AuthRefusal::Wrong)
        );
        assert_eq!(
            token.check_at(attacker, "right", later),
            Err(AuthRefusal::TooMany {
                retry_after: FIRST_LOCKOUT * 2
            }),
            "each further wrong attempt doubles the wait"
        );
        let after = later + FIRST_LOCKOUT * 2;
        assert_eq!(token.check_at(attacker, "right", after), Ok(()));
        assert_eq!(
            token.check_at(attacker, "wrong", after),
            Err(AuthRefusal::Wrong),
            "the right token clears the record"
        );
        assert_eq!(token.check_at(attacker, "right", after), Ok(()));
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
