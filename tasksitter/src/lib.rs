//! tasksitter: wraps one process and enforces the CPU, memory and lifetime
//! limits planned for it. See `supervisor` for the loop that owns the
//! workload and `cgroup`/`proctree` for the two enforcement backends.

pub mod cli;
pub mod http;
pub mod logs;
pub mod supervisor;

use cerebro_web::daemon::Shutdown;
use cli::SitterConfig;
use std::sync::Arc;
use supervisor::{Supervisor, SupervisorError};

/// Hidden first argument that turns the binary into the cgroup guard.
pub const GUARD_SUBCOMMAND: &str = "__cgroup-guard";

/// Why the tasksitter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SitterError {
    /// The supervisor could not be set up or its loop failed.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// The listener handed in has no local address.
    #[error("cannot read the listening address: {0}")]
    Listener(std::io::Error),
    /// `--http-address-file` could not be written.
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
}

/// The tasksitter as `main` runs it through `cerebro_web::daemon::Daemon`:
/// on the main thread only (PR_SET_PDEATHSIG follows the forking thread),
/// listening only with `--http-monitoring`. `serve` itself writes
/// `--http-address-file` once the supervisor is set up, so a tasksitter
/// that fails to start leaves no address file behind.
pub const DAEMON: cerebro_web::daemon::Daemon<SitterConfig> = cerebro_web::daemon::Daemon {
    program: "tasksitter",
    runtime: cerebro_web::daemon::Runtime::CurrentThread,
    listen: |config| config.http.as_ref().map(|http| http.addr),
};

/// Runs the tasksitter until the workload has ended for good or a shutdown
/// request has stopped it (a second request kills it at once); returns the
/// status to exit with (the workload's, as a shell reports it). Serves HTTP
/// on `listener` when given one, announced in the config's address file
/// once the supervisor is set up, until the workload is done: the server
/// then finishes its in-flight requests and stops before `serve` returns,
/// so a caller that runs it in-process is left with nothing listening.
/// Must run on a current-thread runtime on the main thread:
/// PR_SET_PDEATHSIG follows the forking thread.
pub async fn serve(
    config: SitterConfig,
    listener: Option<tokio::net::TcpListener>,
    shutdown: Shutdown,
) -> Result<i32, SitterError> {
    let config = Arc::new(config);
    let mut supervisor = Supervisor::new(config.clone())?;
    let bound = listener
        .as_ref()
        .map(|l| l.local_addr().map_err(SitterError::Listener))
        .transpose()?;
    // Before the address file: whoever reads that may look for this at once.
    supervisor.keep_runtime_record(bound)?;
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
    // The server stops once the supervisor is done, not at the shutdown
    // request itself: while the workload stops, a machinesitter may still
    // ask for its status.
    let (server_stop, server_stopped) = tokio::sync::watch::channel(false);
    let server = listener.map(|listener| {
        let state = http::AppState {
            status: supervisor.status(),
            requests: requests_tx.clone(),
            logs: Arc::new(supervisor.log_locations()),
        };
        let app = http::router(state, config.token.clone());
        let address_file = config.http.as_ref().and_then(|h| h.address_file.as_deref());
        if let Some(bound) = bound {
            cerebro_web::daemon::announce_address(address_file, bound)?;
        }
        Ok::<_, SitterError>(cerebro_web::daemon::spawn_server(
            listener,
            app,
            server_stopped,
        ))
    });
    let server = server.transpose()?;
    let outcome = supervisor.run(requests_rx, shutdown).await;
    let _ = server_stop.send(true);
    if let Some(mut server) = server {
        // Bounded: a client that keeps its connection open must not keep
        // the tasksitter from exiting with its workload's status.
        if tokio::time::timeout(SERVER_DRAIN, &mut server)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after {SERVER_DRAIN:?}; closing them");
            server.abort();
        }
    }
    Ok(outcome?)
}

/// How long in-flight HTTP requests may take once the workload is done.
const SERVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);
