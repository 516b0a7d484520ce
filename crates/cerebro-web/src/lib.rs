//! HTTP glue shared by the Cerebro daemons, so each daemon stays thin and
//! every one of them authenticates, reports errors and renders HTML the same way.

pub mod auth;
pub mod daemon;
pub mod error;
pub mod event_log;
pub mod fs;
pub mod html;
pub mod logging;
pub mod metrics;
pub mod process;

pub use auth::{load_token, require_token, Token, TokenError};
// Shims for code not yet switched to `cerebro-client` (the clustersitter
// and the CLI); the lead removes them after the merge.
pub use cerebro_client::{ClientError, HttpClient};
/// Shim: the client moved to `cerebro_client::http`.
pub mod client {
    pub use cerebro_client::http::*;
}
pub use error::{field_error, parse_json_body, ApiError};

/// A mutex's guard even if a panicking holder poisoned it: the daemons keep
/// plain data behind their locks, and going on beats stopping supervision.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
