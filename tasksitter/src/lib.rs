//! tasksitter: wraps one process and enforces the CPU, memory and lifetime
//! limits planned for it. See `supervisor` for the loop that owns the
//! workload and `cgroup`/`proctree` for the two enforcement backends.

pub mod cli;
pub mod http;
pub mod logs;
pub mod supervisor;

pub use cerebro_host::{cgroup, proctree};

use cli::SitterConfig;
use std::sync::Arc;
use supervisor::{Supervisor, SupervisorError};

/// Hidden first argument that turns the binary into the cgroup guard.
pub const GUARD_SUBCOMMAND: &str = "__cgroup-guard";

#[derive(Debug, thiserror::Error)]
pub enum SitterError {
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
}

/// Runs the tasksitter until the workload has ended for good (or it was told
/// to stop); returns the status to exit with. Must run on a current-thread
/// runtime on the main thread: PR_SET_PDEATHSIG follows the forking thread.
pub async fn run(config: SitterConfig) -> Result<i32, SitterError> {
    let config = Arc::new(config);
    let supervisor = Supervisor::new(config.clone())?;
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
    if let Some(http) = &config.http {
        let listener = tokio::net::TcpListener::bind(http.addr)
            .await
            .map_err(|source| SitterError::Bind {
                addr: http.addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| SitterError::Bind {
            addr: http.addr.to_string(),
            source,
        })?;
        cerebro_web::daemon::announce_address(http.address_file.as_deref(), bound)?;
        tracing::info!(%bound, "serving HTTP");
        let state = http::AppState {
            status: supervisor.status(),
            requests: requests_tx.clone(),
            logs: Arc::new(supervisor.log_locations()),
        };
        let app = http::router(state, config.token.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "HTTP server stopped");
            }
        });
    }
    Ok(supervisor.run(requests_rx).await?)
}
