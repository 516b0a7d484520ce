//! machinesitter: supervises every tasksitter of one machine, persists the
//! task set, re-adopts tasksitters after its own restart, and serves one
//! HTTP API for the machine.

pub mod api;
pub mod config;
pub mod machine;
pub mod poller;
pub mod reconcile;
pub mod sitter;
pub mod state;

use config::{MachineConfig, OnExit};
use reconcile::Reconciler;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot use the state dir {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Runs the machinesitter until SIGTERM or SIGINT.
pub async fn run(config: MachineConfig) -> Result<(), MachineError> {
    if let Err(error) = sitter::raise_open_file_limit() {
        tracing::warn!(%error, "cannot raise the open-file limit; many tasks may exhaust it");
    }
    let config = Arc::new(config);
    let machine = machine::load(config.clone()).map_err(|source| MachineError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    })?;
    let machine = Arc::new(Mutex::new(machine));
    let notify = Arc::new(Notify::new());
    let bind_error = |source| MachineError::Bind {
        addr: config.addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    // Before the address is announced: whoever reads it may signal at once.
    let mut signals =
        cerebro_web::daemon::ShutdownSignals::install().map_err(MachineError::Signal)?;
    cerebro_web::daemon::announce_address(config.address_file.as_deref(), bound)?;
    tracing::info!(%bound, machine = %config.machine_id, "machinesitter serving");
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let reconciler =
        tokio::spawn(Reconciler::new(machine.clone(), notify.clone()).run(shutdown_rx.clone()));
    let poller = tokio::spawn(poller::Poller::new(machine.clone()).run(shutdown_rx.clone()));
    if let Some(cluster_url) = config.cluster_url.clone() {
        let advertised = config
            .advertise_address
            .clone()
            .unwrap_or_else(|| bound.to_string());
        tokio::spawn(register_with_cluster(
            config.clone(),
            cluster_url,
            advertised,
            shutdown_rx.clone(),
        ));
    }
    let app = api::router(
        api::AppState {
            machine: machine.clone(),
            notify,
            client: cerebro_client::HttpClient::new(Duration::from_secs(10), 1),
        },
        config.token.clone(),
    );
    let server = cerebro_web::daemon::spawn_server(listener, app, shutdown_rx);
    signals.wait().await;
    tracing::info!(on_exit = ?config.on_exit, "shutting down");
    let _ = shutdown_tx.send(true);
    let _ = poller.await;
    if let Ok(mut reconciler) = reconciler.await {
        if config.on_exit == OnExit::Stop {
            reconciler.stop_all().await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Err(error) = machine::lock(&machine).persist() {
        tracing::error!(%error, "cannot persist the task set");
    }
    Ok(())
}

/// How often a registered machinesitter registers again, so a restarted
/// clustersitter, or one that lost the machine's address, learns it soon.
const REGISTER_EVERY: Duration = Duration::from_secs(30);

/// Registers this machine with its clustersitter: at start (retrying with
/// backoff until it answers) and then every `REGISTER_EVERY`.
async fn register_with_cluster(
    config: Arc<MachineConfig>,
    cluster_url: String,
    advertised: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let client = cerebro_client::HttpClient::new(Duration::from_secs(5), 1);
    let url = format!("{cluster_url}/api/v1/machines/register");
    let request = cerebro_types::cluster::RegisterRequest {
        machine_id: config.machine_id.clone(),
        address: advertised,
        capacity: cerebro_types::machine::Resources {
            cpu: config.capacity_cpu,
            mem_mb: config.capacity_mem_mb as f64,
        },
        hostname: Some(config.hostname.clone()),
        zone: config.zone.clone(),
    };
    let token = config.token.as_ref().map(|t| t.expose().to_string());
    let mut retry = Duration::from_millis(200);
    loop {
        let wait = match client
            .post_json::<_, serde_json::Value>(&url, token.as_deref(), Some(&request))
            .await
        {
            Ok(_) => {
                retry = Duration::from_millis(200);
                REGISTER_EVERY
            }
            Err(error) if error.status() == Some(410) => {
                // The cluster decommissioned this machine and has removed
                // its tasks; asking again would only repeat that.
                tracing::warn!(%error, "the cluster decommissioned this machine; no longer registering");
                return;
            }
            Err(error) if error.status().is_some_and(|s| (400..500).contains(&s)) => {
                // Refused (a decommissioned machine, a bad token): asking
                // again soon would not change the answer.
                tracing::warn!(%error, "the cluster refused the registration");
                REGISTER_EVERY
            }
            Err(error) => {
                tracing::warn!(%error, "cannot register with the cluster; retrying");
                retry = (retry * 2).min(Duration::from_secs(10));
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
