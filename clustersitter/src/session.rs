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
        now_ms().saturating_sub(self.created_ms) < SESSION_LIFETIME.as_millis() as u64
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
        let file = state_dir.join("ui-sessions.json");
        let token_digest = token_digest(token);
        let saved: HashMap<String, Session> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SavedSessions>(&bytes).ok())
            .filter(|saved| saved.token_digest == token_digest)
            .map(|saved| saved.sessions)
            .unwrap_or_default();
        let live = saved.into_iter().filter(|(_, s)| s.is_live()).collect();
        Self {
            live: Arc::new(Mutex::new(live)),
            file,
            token_digest,
            login_required,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        cerebro_web::lock(&self.live)
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
            .and_then(|bytes| cerebro_web::fs::atomic_write_private(&self.file, &bytes));
        if let Err(error) = written {
            tracing::warn!(path = %self.file.display(), %error, "cannot save the UI sessions");
        }
    }
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
