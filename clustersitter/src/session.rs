//! The web UI's logins: sessions by id, each with its CSRF token, saved
//! in `ui-sessions.json` under the state dir so a restart logs nobody out,
//! and the cookie that carries the id.

use axum::http::{header, HeaderMap};
use cerebro_types::time::now_ms;
use cerebro_web::Token;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "cerebro_session";
/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 1000;

/// One logged-in browser.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// The token every form of this session carries.
    pub csrf: String,
    pub created_ms: u64,
}

impl Session {
    fn is_live(&self) -> bool {
        self.is_live_at(now_ms())
    }

    /// Younger than [`SESSION_LIFETIME`] at `now` (ms since the epoch).
    fn is_live_at(&self, now: u64) -> bool {
        now.saturating_sub(self.created_ms) < SESSION_LIFETIME.as_millis() as u64
    }
}

/// What `ui-sessions.json` holds: the sessions, and a digest of the token
/// they were granted with, so that changing the token logs everyone out.
#[derive(Serialize, Deserialize)]
struct SavedSessions {
    token_digest: u64,
    sessions: HashMap<String, Session>,
}

/// Logged-in browsers, by session id, saved (mode 0600) in the state dir
/// so that a clustersitter restart logs nobody out.
#[derive(Clone)]
pub struct Sessions {
    live: Arc<Mutex<HashMap<String, Session>>>,
    file: PathBuf,
    token_digest: u64,
    /// `ui_login_required`: pages need a session too.
    pub login_required: bool,
}

/// Tells one token from another; a change of token must not be missed, and
/// the token itself is random and long, so the digest gives nothing away.
/// (A new Rust release may hash differently: that logs everyone out once.)
fn token_digest(token: Option<&Token>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.map(|t| t.expose()).hash(&mut hasher);
    hasher.finish()
}

impl Sessions {
    /// The live sessions saved in `state_dir` for this same token.
    pub fn load(state_dir: &std::path::Path, token: Option<&Token>, login_required: bool) -> Self {
        Self::load_at(state_dir, token, login_required, now_ms())
    }

    /// [`Sessions::load`] as if the time were `now` (ms since the epoch),
    /// so that a test of a saved file does not depend on the wall clock.
    fn load_at(
        state_dir: &std::path::Path,
        token: Option<&Token>,
        login_required: bool,
        now: u64,
    ) -> Self {
        let file = state_dir.join("ui-sessions.json");
        let token_digest = token_digest(token);
        let saved: HashMap<String, Session> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SavedSessions>(&bytes).ok())
            .filter(|saved| saved.token_digest == token_digest)
            .map(|saved| saved.sessions)
            .unwrap_or_default();
        let live = saved
            .into_iter()
            .filter(|(_, s)| s.is_live_at(now))
            .collect();
        Self {
            live: Arc::new(Mutex::new(live)),
            file,
            token_digest,
            login_required,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        cerebro_host::lock(&self.live)
    }

    /// The CSRF token of the request's live session, if it has one.
    pub fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.is_live());
        sessions.get(&id).map(|s| s.csrf.clone())
    }

    /// Keeps a new session, saved at once.
    pub fn insert(&self, id: String, session: Session) {
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.is_live());
        // Logins are cheap for whoever has the token (or anyone, with no
        // token): the oldest session goes rather than the file growing.
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created_ms)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id, session);
        self.save(&sessions);
    }

    /// Ends a session (logout).
    pub fn remove(&self, id: &str) {
        let mut sessions = self.lock();
        if sessions.remove(id).is_some() {
            self.save(&sessions);
        }
    }

    /// Best effort: a session that is not saved only lasts until a restart.
    fn save(&self, sessions: &HashMap<String, Session>) {
        let saved = SavedSessions {
            token_digest: self.token_digest,
            sessions: sessions.clone(),
        };
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| cerebro_host::fs::atomic_write_private(&self.file, &bytes));
        if let Err(error) = written {
            tracing::warn!(path = %self.file.display(), %error, "cannot save the UI sessions");
        }
    }
}

/// The `Set-Cookie` value carrying session `id` for `max_age_secs` (0
/// ends it): HttpOnly, SameSite=Strict, and `Secure` when `secure`.
pub fn session_set_cookie(id: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    )
}

/// Whether the browser reached us over TLS. The clustersitter serves
/// plain HTTP itself (it has no TLS yet), so that is only so behind a
/// TLS-terminating proxy that says `X-Forwarded-Proto: https`; a forged
/// header only makes the cookie stricter. Native TLS would answer `true`
/// here.
pub fn served_over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The session id the request's cookie carries, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FIXTURE_TOKEN: &str = "fixture-token-0123456789";
    const FIXTURE_SESSION: &str = "4dcc21922670fe8de35a22120debd3d94739e916abcb6a73";

    fn fixture_created_ms(dir: &std::path::Path) -> u64 {
        let saved: SavedSessions =
            serde_json::from_slice(&std::fs::read(dir.join("ui-sessions.json")).unwrap()).unwrap();
        saved.sessions[FIXTURE_SESSION].created_ms
    }

    /// `ui-sessions.json` as the first version wrote it loads into today's
    /// type with every field kept.
    #[test]
    fn the_cookie_is_secure_over_tls() {
        let mut headers = HeaderMap::new();
        assert!(!served_over_tls(&headers));
        let plain = session_set_cookie("abc", 60, served_over_tls(&headers));
        assert_eq!(
            plain,
            "cerebro_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(session_set_cookie("abc", 60, served_over_tls(&headers)).ends_with("; Secure"));
    }

    #[test]
    fn sessions_v1_load_with_nothing_lost() {
        let dir = cerebro_tests::fixture_dir("v1/clustersitter");
        let text = std::fs::read_to_string(dir.path().join("ui-sessions.json")).unwrap();
        let old: Value = serde_json::from_str(&text).unwrap();
        let saved: SavedSessions = serde_json::from_str(&text).unwrap();
        cerebro_tests::assert_nothing_lost(
            &old,
            &serde_json::to_value(&saved).unwrap(),
            "ui-sessions.json",
        );
    }

    /// A restart within the lifetime, with the same token, keeps the login;
    /// past the lifetime or with another token, it is gone.
    #[test]
    fn a_saved_session_is_accepted_within_its_lifetime() {
        let dir = cerebro_tests::fixture_dir("v1/clustersitter");
        let created = fixture_created_ms(dir.path());
        let token = Token::new(FIXTURE_TOKEN).unwrap();
        let lifetime = SESSION_LIFETIME.as_millis() as u64;

        let sessions = Sessions::load_at(dir.path(), Some(&token), true, created + lifetime - 1);
        let live = sessions.lock();
        assert_eq!(live.len(), 1);
        assert_eq!(
            live[FIXTURE_SESSION].csrf,
            "0ab6ab01ff57e20bb3209d883b0f49a3e7f93b9f9fd6bcc6"
        );
        drop(live);

        let expired = Sessions::load_at(dir.path(), Some(&token), true, created + lifetime);
        assert!(expired.lock().is_empty(), "a session lives 12 hours");
        let other = Token::new("another-token-0123456789").unwrap();
        let changed = Sessions::load_at(dir.path(), Some(&other), true, created + 1);
        assert!(changed.lock().is_empty(), "a new token logs everyone out");
    }
}
