//! machinesitter: supervises every tasksitter of one machine, persists the
//! task set, re-adopts tasksitters after its own restart, and serves one
//! HTTP API for the machine.

pub mod api;
pub mod config;
pub mod deploy;
pub mod machine;
pub mod poller;
pub mod reconcile;
pub mod sitter;
pub mod state;

use cerebro_web::daemon::Shutdown;
use config::{MachineConfig, OnExit};
use reconcile::Reconciler;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Why the machinesitter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The state dir cannot be created or its state file read.
    #[error("cannot use the state dir {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    /// The listener handed in has no local address.
    #[error("cannot read the listening address: {0}")]
    Listener(std::io::Error),
    /// `--address-file` could not be written.
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
}

/// The machinesitter as `main` and the tests run it: `main` through
/// `cerebro_web::daemon::Daemon` (binds `--bind`/`--port`, turns
/// SIGTERM/SIGINT into shutdown requests). `serve` itself announces
/// `--address-file`, once its state is loaded: an address file is never
/// left behind by a machinesitter that failed to start.
pub const DAEMON: cerebro_web::daemon::Daemon<MachineConfig> = cerebro_web::daemon::Daemon {
    program: "machinesitter",
    runtime: cerebro_web::daemon::Runtime::MultiThread,
    listen: |config| Some(config.addr),
};

/// Runs the machinesitter on `listener` (already bound, by `main` or a
/// test) until `shutdown` is requested; then stops its loops (and, with
/// `--on-exit stop`, every task), finishes in-flight requests and persists
/// the task set. Writes `config.address_file` (when set) once it is ready:
/// its task set loaded and its tasksitters re-adopted.
/// Errors: the state dir cannot be used; the address file cannot be written.
pub async fn serve(
    config: MachineConfig,
    listener: tokio::net::TcpListener,
    mut shutdown: Shutdown,
) -> Result<(), MachineError> {
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
    let bound = listener.local_addr().map_err(MachineError::Listener)?;
    // Ready: the task set is loaded and its tasksitters re-adopted. A
    // request that arrives before the server below accepts it waits in the
    // listener's backlog.
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
    shutdown.requested().await;
    tracing::info!(on_exit = ?config.on_exit, "shutting down");
    let _ = shutdown_tx.send(true);
    let _ = poller.await;
    if let Ok(mut reconciler) = reconciler.await {
        if config.on_exit == OnExit::Stop {
            reconciler.stop_all().await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Err(error) = cerebro_host::lock(&machine).persist() {
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
    let token = config.token.as_ref().map(|t| t.expose().to_string());
    let cluster = cerebro_client::ClusterClient::new(
        cerebro_client::HttpClient::new(Duration::from_secs(5), 1),
        &cluster_url,
        token,
    );
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
    let mut retry = Duration::from_millis(200);
    loop {
        let wait = match cluster.register(&request).await {
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
