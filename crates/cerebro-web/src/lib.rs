//! HTTP glue shared by the Cerebro daemons, so each daemon stays thin and
//! every one of them authenticates, reports errors, exports metrics, boots
//! and renders HTML the same way. Host plumbing (files, processes) lives in
//! `cerebro-host`, HTTP clients in `cerebro-client`.

pub mod auth;
pub mod daemon;
pub mod edge;
pub mod error;
pub mod event_log;
pub mod html;
pub mod logging;
pub mod metrics;

pub use auth::{load_token, require_token, require_token_always, Token, TokenError};
pub use error::{
    field_error, from_json_object, parse_json_body, parse_json_object, ApiError, StrictJson,
};
