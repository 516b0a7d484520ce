//! HTTP glue shared by the Cerebro daemons, so each daemon stays thin and
//! every one of them authenticates, reports errors, exports metrics, boots
//! and renders HTML the same way. Host plumbing (files, processes) lives in
//! `cerebro-host`, HTTP clients in `cerebro-client`.

pub mod auth;
pub mod daemon;
pub mod error;
pub mod event_log;
pub mod html;
pub mod logging;
pub mod metrics;

pub use auth::{load_token, require_token, Token, TokenError};
// Shims for code not yet switched to `cerebro-client` (the clustersitter
// and the CLI); the lead removes them after the merge.
pub use cerebro_client::{ClientError, HttpClient};
/// Shim: the client moved to `cerebro_client::http`.
pub mod client {
    pub use cerebro_client::http::*;
}
pub use error::{field_error, parse_json_body, ApiError};

/// Shims: host plumbing moved to `cerebro-host`; the lead removes these
/// re-exports once the clustersitter, the CLI, the benches and the
/// end-to-end harness import from there.
pub use cerebro_host::{fs, lock, process};
