//! Types shared by every Cerebro daemon and the CLI: what goes over the wire,
//! what config files hold, and the validation that turns raw input into them.

pub mod cluster;
pub mod deploy;
pub mod dns;
pub mod error;
pub mod health;
pub mod history;
pub mod human;
pub mod job;
pub mod job_file;
pub mod lenient;
pub mod machine;
pub mod task;
pub mod task_api;
pub mod time;
pub mod url;
pub mod wording;

pub use error::{ErrorBody, FieldError, ValidationErrors};
pub use task::*;
