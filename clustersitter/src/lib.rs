//! The clustersitter: jobs in, machines and processes out. It places job
//! instances on machines (a pure function), provisions machines from its
//! provider, makes every machinesitter run exactly its assigned tasks, and
//! replaces machines that fail, all persisted so a restart loses nothing.

pub mod api;
pub mod cluster;
pub mod config;
mod http_error;
pub mod ops;
pub mod placement;
pub mod provider;
pub mod reconcile;
pub mod session;
pub mod store;
pub mod ui;

use cerebro_types::cluster::{ClusterEventKind, MachineState};
use cluster::{lock, Cluster};
use config::{ClusterConfig, OnExit, ProviderKind};
use provider::{LocalProvider, MachineProvider};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{ClusterState, MachineRecord};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
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
    #[error("provider: {0}")]
    Provider(#[from] provider::ProviderError),
    /// The `--job` files could not be loaded.
    #[error(transparent)]
    JobFiles(#[from] cerebro_types::job_file::LoadJobsError),
    /// A `--job` file's job does not fit this cluster.
    #[error("job '{name}': {errors}")]
    Job {
        name: String,
        errors: cerebro_types::ValidationErrors,
    },
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
}

/// Runs the clustersitter until SIGTERM or SIGINT.
pub async fn run(config: ClusterConfig) -> Result<(), ClusterError> {
    let config = Arc::new(config);
    let state_error = |source| ClusterError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(state_error)?;
    let jobs_at_start = cerebro_types::job_file::load_job_files(&config.jobs)?;
    let provider: Arc<dyn MachineProvider> = match config.provider.kind {
        ProviderKind::Local => Arc::new(LocalProvider::new(
            config.provider.clone(),
            &config.state_dir,
            token_file_for_machines(&config).map_err(state_error)?,
        )?),
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: config.addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ClusterError::Bind {
        addr: config.addr.to_string(),
        source,
    })?;
    let reachable = if bound.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    };
    let cluster_url = format!("http://{reachable}");

    let mut cluster = restore(config.clone(), provider.kind());
    recover_machines(&mut cluster, provider.as_ref()).await;
    for job in jobs_at_start {
        let name = job.name().to_string();
        if let Err(errors) = cluster.check_job(&job) {
            return Err(ClusterError::Job { name, errors });
        }
        cluster.upsert_job(job);
    }
    cluster.persist().map_err(state_error)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let notify = Arc::new(Notify::new());

    // Before the address is announced: whoever reads it may signal at once.
    let mut signals =
        cerebro_web::daemon::ShutdownSignals::install().map_err(ClusterError::Signal)?;
    cerebro_web::daemon::announce_address(config.address_file.as_deref(), bound)?;
    tracing::info!(%bound, cluster = %config.cluster_name, "clustersitter serving; overview at {cluster_url}/overview");
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(
        reconcile::Reconciler::new(
            cluster.clone(),
            provider.clone(),
            notify.clone(),
            cluster_url,
        )
        .run(shutdown_rx.clone()),
    );
    let ops = ops::Ops {
        cluster: cluster.clone(),
        notify,
        client: cerebro_web::HttpClient::new(Duration::from_secs(10), 2),
    };
    let sessions = session::Sessions::load(
        &config.state_dir,
        config.token.as_ref(),
        config.ui_login_required,
    );
    let app = router(ops, sessions, config.token.clone());
    let server = cerebro_web::daemon::spawn_server(listener, app, shutdown_rx);
    signals.wait().await;
    tracing::info!(on_exit = ?config.on_exit, "shutting down");
    let _ = shutdown_tx.send(true);
    let reconciler = reconciler.await.ok();
    if config.on_exit == OnExit::Stop {
        terminate_all(&cluster, provider.as_ref()).await;
    }
    // Let in-flight terminations finish their bookkeeping.
    if let Some(reconciler) = reconciler {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reconciler.terminations_in_flight() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Err(error) = lock(&cluster).persist() {
        tracing::error!(%error, "cannot persist the cluster state");
    }
    let _ = server.await;
    Ok(())
}

/// The whole HTTP surface: the JSON API (bearer token) and the pages
/// (session cookie and CSRF token), two edges over the same operations.
pub fn router(
    ops: ops::Ops,
    sessions: session::Sessions,
    token: Option<cerebro_web::Token>,
) -> axum::Router {
    api::router(ops.clone(), token).merge(ui::router(ui::UiState { ops, sessions }))
}

/// Machinesitters of the local provider share the cluster's token file.
fn token_file_for_machines(config: &ClusterConfig) -> std::io::Result<Option<std::path::PathBuf>> {
    let Some(token) = &config.token else {
        return Ok(None);
    };
    let path = std::path::absolute(config.state_dir.join("machine-token"))?;
    cerebro_web::fs::atomic_write_private(&path, token.expose().as_bytes())?;
    Ok(Some(path))
}

/// The persisted state, without the jobs that asked not to survive a restart.
fn restore(config: Arc<ClusterConfig>, provider_kind: &'static str) -> Cluster {
    let fresh = || ClusterState::new(1, std::collections::BTreeMap::new());
    let (state, problem) = match store::load(&config.state_dir) {
        cerebro_web::fs::StateFile::Fresh => (fresh(), None),
        cerebro_web::fs::StateFile::Read(state) => (state, None),
        cerebro_web::fs::StateFile::Corrupt { moved_to, error } => (
            fresh(),
            Some(format!(
                "state file unreadable ({error}); kept as {}; machines are recovered from the provider",
                moved_to.display()
            )),
        ),
    };
    let mut cluster = Cluster::new(config.clone(), state, provider_kind);
    if let Some(problem) = problem {
        tracing::error!("{problem}");
        cluster.event(ClusterEventKind::StateFileUnreadable, "", problem);
    }
    // The config's idle limits hold at every start; the API changes them
    // until the next one.
    if config.idle_limit.is_some() || !config.idle_limit_per_zone.is_empty() {
        let limit = config
            .idle_limit
            .unwrap_or(cluster.state.idle_limit_default);
        let state = &mut cluster.state;
        if state.idle_limit_default != limit
            || state.idle_limit_per_zone != config.idle_limit_per_zone
        {
            state.idle_limit_default = limit;
            state.idle_limit_per_zone = config.idle_limit_per_zone.clone();
            cluster.event(
                ClusterEventKind::IdleLimitSet,
                "",
                format!("idle limits from the config: {limit} per zone"),
            );
        }
    }
    let dropped: Vec<String> = cluster
        .state
        .jobs
        .iter()
        .filter(|(_, job)| !job.spec.persistent)
        .map(|(name, _)| name.clone())
        .collect();
    for name in dropped {
        cluster.state.jobs.remove(&name);
        cluster.event(
            ClusterEventKind::JobDropped,
            &name,
            "not persistent: dropped at restart",
        );
    }
    cluster
}

/// Matches persisted machines with what the provider still runs: running
/// ones are adopted (never provisioned again), vanished ones are
/// decommissioned so their instances move, unknown ones of this cluster join.
async fn recover_machines(cluster: &mut Cluster, provider: &dyn MachineProvider) {
    let found = match provider.discover().await {
        Ok(found) => found,
        Err(error) => {
            cluster.event(
                ClusterEventKind::ProviderListFailed,
                "",
                format!("cannot list machines: {error}"),
            );
            return;
        }
    };
    let zones = cluster.config.zones();
    for machine in &found {
        match cluster.state.machines.get_mut(&machine.machine_id) {
            Some(record) => {
                record.provider_id = Some(machine.provider_id.clone());
                if machine.address.is_some() {
                    record.address = machine.address.clone();
                }
                record.missed_polls = 0;
            }
            None => {
                let Some(size) = zones.get(&machine.zone) else {
                    continue;
                };
                let number = cluster.state.free_number(&machine.zone);
                let mut record =
                    MachineRecord::new(&machine.machine_id, &machine.zone, number, *size);
                record.provider_id = Some(machine.provider_id.clone());
                record.address = machine.address.clone();
                cluster.state.adopt_machine(record);
                cluster.event(
                    ClusterEventKind::MachineAdopted,
                    &machine.machine_id,
                    "found running; adopted",
                );
            }
        }
    }
    let vanished: Vec<String> = cluster
        .state
        .machines
        .values()
        .filter(|m| m.provider_id.is_some() || m.state() == MachineState::Provisioning)
        .filter(|m| !found.iter().any(|f| f.machine_id == m.id))
        .map(|m| m.id.clone())
        .collect();
    for id in vanished {
        if let Some(machine) = cluster.state.machines.get_mut(&id) {
            machine.move_to(MachineState::Decommissioning);
        }
        cluster.event(
            ClusterEventKind::MachineVanished,
            &id,
            "gone while the clustersitter was down: decommissioning",
        );
    }
}

/// `--on-exit stop`: terminate every machine before exiting.
async fn terminate_all(cluster: &Arc<Mutex<Cluster>>, provider: &dyn MachineProvider) {
    let machines: Vec<(String, Option<String>)> = lock(cluster)
        .state
        .machines
        .values()
        .map(|m| (m.id.clone(), m.provider_id.clone()))
        .collect();
    for (id, provider_id) in machines {
        match provider
            .terminate(&id, provider_id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => {
                let mut cluster = lock(cluster);
                cluster.state.machines.remove(&id);
                cluster.event(
                    ClusterEventKind::MachineTerminated,
                    &id,
                    "terminated at exit",
                );
            }
            Err(error) => tracing::error!(machine = %id, %error, "cannot terminate"),
        }
    }
    lock(cluster).state.assignments.clear();
}

/// The whole `main` of `clustersitter` and `cerebrod`: parse, validate, run.
/// Bad flags or config exit 2; a failure while running exits 1.
pub fn main_entry() -> std::process::ExitCode {
    cerebro_web::logging::init_tracing();
    let cli: config::Cli = match cerebro_web::daemon::parse_flags("clustersitter") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("clustersitter: error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clustersitter: error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error @ (ClusterError::JobFiles(_) | ClusterError::Job { .. })) => {
            eprintln!("clustersitter: error: {error}");
            std::process::ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("clustersitter: error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
