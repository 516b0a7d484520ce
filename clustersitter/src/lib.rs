//! The clustersitter: jobs in, machines and processes out. It places job
//! instances on machines (a pure function), provisions machines from its
//! provider, makes every machinesitter run exactly its assigned tasks, and
//! replaces machines that fail, all persisted so a restart loses nothing.

pub mod api;
pub mod binaries;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod history;
mod http_error;
pub mod ops;
pub mod placement;
pub mod provider;
pub mod recipes;
pub mod reconcile;
mod recovery;
pub mod session;
pub mod store;
pub mod ui;

use cerebro_web::daemon::{Shutdown, USAGE_ERROR};
use cluster::lock;
use config::{ClusterConfig, OnExit, ProviderKind};
use provider::{LocalProvider, MachineProvider};
use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot use the state dir {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    /// The listener handed in has no local address.
    #[error("cannot read the listening address: {0}")]
    Listener(std::io::Error),
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
    /// A `--job` file's job does not fit this cluster, at a place in its
    /// file (`FILE:LINE:COLUMN`).
    #[error("{at}: job '{name}': {errors}")]
    JobAt {
        at: String,
        name: String,
        errors: cerebro_types::ValidationErrors,
    },
    #[error(transparent)]
    AddressFile(#[from] cerebro_web::daemon::AddressFileError),
    /// The DNS provider `[dns]` names cannot start.
    #[error("dns: {0}")]
    Dns(#[from] dns::DnsError),
}

/// The clustersitter as `main` runs it, through the one daemon bootstrap:
/// binds `--bind`/`--port` and turns SIGTERM/SIGINT into shutdown
/// requests. The address file is written by [`serve_with`] itself, once
/// the saved state is restored and machines recovered, so that whoever
/// reads it finds the cluster as it was.
pub const DAEMON: cerebro_web::daemon::Daemon<ClusterConfig> = cerebro_web::daemon::Daemon {
    program: "clustersitter",
    runtime: cerebro_web::daemon::Runtime::MultiThread,
    listen: |config| Some(config.addr),
};

/// What a [`ProviderFactory`] builds a provider from.
pub struct ProviderContext<'a> {
    /// With its token resolved: the machines of a cloud get it in their
    /// user data, to download their binaries and register.
    pub config: &'a ClusterConfig,
    /// The binaries new machines download, located and hashed at start
    /// (see [`binaries::Catalog::locate`]), or why they could not be.
    pub binaries: Result<Arc<binaries::Catalog>, Arc<binaries::BinariesError>>,
}

/// Builds the providers this library does not link itself. The cloud
/// providers live in their own crates (EC2 in `cerebro-ec2`), so that
/// only the `clustersitter` binary and those crates link a cloud SDK,
/// never this library's other users (the tests, the CLI).
#[async_trait::async_trait]
pub trait ProviderFactory: Send + Sync {
    /// The provider for `context.config.provider.kind`, or `None` when
    /// this factory does not build that kind.
    async fn make(
        &self,
        context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn MachineProvider>, provider::ProviderError>>;

    /// The DNS provider for `context.config.dns.kind`, or `None` when this
    /// factory does not build that kind (Route 53 comes from
    /// `cerebro-route53`; embedded, rfc2136 and dynect from this library).
    async fn make_dns(
        &self,
        _context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn dns::DnsProvider>, dns::DnsError>> {
        None
    }
}

/// The factory of a build without cloud providers: it builds none.
pub struct LocalOnly;

#[async_trait::async_trait]
impl ProviderFactory for LocalOnly {
    async fn make(
        &self,
        _context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn MachineProvider>, provider::ProviderError>> {
        None
    }
}

/// The provider `config` names: for the local provider, machinesitter
/// processes sharing the cluster's token file; any other kind from
/// `factory`.
///
/// # Errors
/// [`ClusterError::StateDir`] when the token file cannot be written,
/// [`ClusterError::Provider`] when the provider cannot start (no
/// machinesitter binary, a kind this build has no provider for, a cloud
/// provider's own checks).
pub async fn provider_for(
    config: &ClusterConfig,
    binaries: &Result<Arc<binaries::Catalog>, Arc<binaries::BinariesError>>,
    factory: &dyn ProviderFactory,
) -> Result<Arc<dyn MachineProvider>, ClusterError> {
    let state_error = |source| ClusterError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(state_error)?;
    if config.provider.kind == ProviderKind::Local {
        return Ok(Arc::new(LocalProvider::new(
            config.provider.clone(),
            &config.state_dir,
            token_file_for_machines(config).map_err(state_error)?,
        )?));
    }
    let context = ProviderContext {
        config,
        binaries: binaries.clone(),
    };
    match factory.make(&context).await {
        Some(provider) => Ok(provider?),
        None => Err(ClusterError::Provider(provider::ProviderError::Config(
            format!(
                "this clustersitter is built without the {:?} provider",
                config.provider.kind
            ),
        ))),
    }
}

/// The binaries machines download, from `provider.machinesitter_bin` and
/// `provider.tasksitter_bin` or found beside this program or on PATH.
pub fn locate_binaries(config: &ClusterConfig) -> ops::Binaries {
    let mut configured = std::collections::BTreeMap::new();
    if let Some(path) = &config.provider.machinesitter_bin {
        configured.insert("machinesitter", path.clone());
    }
    if let Some(path) = &config.provider.tasksitter_bin {
        configured.insert("tasksitter", path.clone());
    }
    binaries::Catalog::locate(&configured)
        .map(Arc::new)
        .map_err(Arc::new)
}

/// Serves on `listener` (already bound: a test binds 127.0.0.1:0 itself)
/// with the provider `config` names, until `shutdown` is requested. See
/// [`serve_with`]. Cloud providers come from [`serve_with_factory`].
///
/// # Errors
/// As [`serve_with`], and [`provider_for`]'s.
pub async fn serve(
    config: ClusterConfig,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ClusterError> {
    serve_with_factory(config, listener, shutdown, &LocalOnly).await
}

/// As [`serve`], with the providers `factory` builds besides the local one.
///
/// # Errors
/// As [`serve_with`], and [`provider_for`]'s.
pub async fn serve_with_factory(
    mut config: ClusterConfig,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
    factory: &dyn ProviderFactory,
) -> Result<(), ClusterError> {
    // Before the provider: its machines get the token too.
    resolve_token(&mut config)?;
    let binaries = locate_binaries(&config);
    let provider = provider_for(&config, &binaries, factory).await?;
    let dns = if config.dns.kind == config::dns::DnsKind::Route53 {
        let context = ProviderContext {
            config: &config,
            binaries: binaries.clone(),
        };
        match factory.make_dns(&context).await {
            Some(made) => Some(made?),
            None => {
                return Err(ClusterError::Dns(dns::DnsError::Config(
                    "this clustersitter is built without the route53 DNS provider".into(),
                )))
            }
        }
    } else {
        None
    };
    serve_with_providers(config, provider, dns, binaries, listener, shutdown).await
}

/// The clustersitter's whole life on an already-bound `listener`, with
/// machines from `provider`: loads the `--job` files, restores the saved
/// state, matches machines with what the provider still runs, writes
/// `config.address_file` (when set) once ready, serves the API and pages
/// and reconciles until `shutdown` is requested; then stops serving,
/// terminates every machine if `config.on_exit` says so, and saves the state.
///
/// # Errors
/// [`ClusterError::JobFiles`] and [`ClusterError::Job`] for `--job` files
/// that do not load or do not fit (config errors: nothing was started);
/// [`ClusterError::StateDir`], [`ClusterError::Listener`] and
/// [`ClusterError::AddressFile`] when starting fails.
///
/// The binaries machines download are located here ([`locate_binaries`]);
/// when they cannot be, the cluster still starts and
/// `GET /api/v1/binaries` answers 503 naming what is missing.
pub async fn serve_with(
    config: ClusterConfig,
    provider: Arc<dyn MachineProvider>,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ClusterError> {
    let binaries = locate_binaries(&config);
    serve_with_binaries(config, provider, binaries, listener, shutdown).await
}

/// As [`serve_with`], serving the `binaries` the caller located.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve_with_binaries(
    config: ClusterConfig,
    provider: Arc<dyn MachineProvider>,
    binaries: ops::Binaries,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ClusterError> {
    serve_with_providers(config, provider, None, binaries, listener, shutdown).await
}

/// As [`serve_with_binaries`], with the DNS provider `dns` when the
/// caller built it (Route 53, from [`ProviderFactory::make_dns`]); `None`:
/// the kind `[dns]` names is built here (embedded, rfc2136, dynect, none;
/// see [`dns::reconcile::build_provider`]).
///
/// # Errors
/// As [`serve_with`], and [`ClusterError::Dns`] when the DNS provider
/// cannot start.
pub async fn serve_with_providers(
    mut config: ClusterConfig,
    provider: Arc<dyn MachineProvider>,
    dns_provider: Option<Arc<dyn dns::DnsProvider>>,
    binaries: ops::Binaries,
    listener: tokio::net::TcpListener,
    mut shutdown: Shutdown,
) -> Result<(), ClusterError> {
    if let Err(error) = &binaries {
        tracing::warn!(%error, "no binaries to serve to new machines");
    }
    resolve_token(&mut config)?;
    let config = Arc::new(config);
    let state_error = |source| ClusterError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(state_error)?;
    let jobs_at_start = cerebro_types::job_file::load_job_files(&config.jobs)?;
    let bound = listener.local_addr().map_err(ClusterError::Listener)?;
    let reachable = if bound.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    };
    // Machines reach the cluster at the advertised URL (a cloud machine
    // cannot use 127.0.0.1), else at the bound address.
    let cluster_url = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{reachable}"));

    // Before anything is restored or written: a configured DNS server
    // that cannot start refuses the start with nothing changed, and an
    // embedded one answers from its saved records as early as it can.
    let dns::reconcile::BuiltProvider {
        provider: dns_provider,
        fallback,
    } = match dns_provider {
        Some(given) => dns::reconcile::BuiltProvider {
            provider: Some(given),
            fallback: None,
        },
        None => dns::reconcile::build_provider(&config, None).await?,
    };
    let mut cluster = recovery::restore(config.clone(), provider.kind());
    // The `--job` files are checked together, as one batch, before any is
    // applied: a refused start leaves no job, event or state behind.
    for job in &jobs_at_start {
        if let Err(errors) = cluster.check_job_among(job, &jobs_at_start) {
            let name = job.name().to_string();
            let at = errors.errors.iter().find_map(|e| {
                cerebro_types::job_file::locate_job_field(&config.jobs, &name, &e.field)
            });
            return Err(match at {
                Some(at) => ClusterError::JobAt { at, name, errors },
                None => ClusterError::Job { name, errors },
            });
        }
    }
    recovery::recover_machines(&mut cluster, provider.as_ref()).await;
    // Jobs saved before recipes ran have no snapshot of theirs yet.
    cluster.resolve_missing_recipes();
    // Stored jobs are never refused: one whose names cannot be written is
    // told once, and runs without them.
    cluster.note_nameless_jobs();
    for job in jobs_at_start {
        let name = job.name().to_string();
        match cluster.check_job(&job) {
            Ok(recipe) => cluster.upsert_job(job, recipe),
            Err(errors) => return Err(ClusterError::Job { name, errors }),
        };
    }
    cluster.persist().map_err(state_error)?;
    if let Some(reason) = fallback {
        cluster.event(
            cerebro_types::cluster::ClusterEventKind::DnsFailed,
            "",
            reason,
        );
    }
    let dns_status = Arc::new(Mutex::new(dns::reconcile::initial_status(
        &config,
        dns_provider.as_deref(),
    )));
    let cluster = Arc::new(Mutex::new(cluster));
    let notify = Arc::new(Notify::new());

    if config.insecure && config.token.is_none() {
        tracing::warn!("--insecure: no token, anyone who reaches {bound} can change this cluster");
    }
    record_token_for_cli(&config, reachable);
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
    // Its own task: a slow or failing DNS server never holds up placement
    // or healing.
    let dns_reconciler = tokio::spawn(
        dns::reconcile::DnsReconciler::new(
            cluster.clone(),
            dns_provider.clone(),
            dns_status.clone(),
        )
        .run(shutdown_rx.clone()),
    );
    let ops = ops::Ops::new(
        cluster.clone(),
        notify,
        cerebro_client::HttpClient::new(Duration::from_secs(10), 2),
    )
    .with_binaries(binaries)
    .with_dns(dns_status);
    let sessions = session::Sessions::load(
        &config.state_dir,
        config.token.as_ref(),
        config.ui_login_required,
    );
    let app = router(ops, sessions, config.token.clone());
    let server = cerebro_web::daemon::spawn_server(listener, app, shutdown_rx);
    shutdown.requested().await;
    tracing::info!(on_exit = ?config.on_exit, "shutting down");
    let _ = shutdown_tx.send(true);
    let reconciler = reconciler.await.ok();
    let _ = dns_reconciler.await;
    if let Some(dns_provider) = &dns_provider {
        dns_provider.close().await;
    }
    if config.on_exit == OnExit::Stop {
        recovery::terminate_all(&cluster, provider.as_ref()).await;
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

/// The name of the generated token's file in the state dir.
pub const GENERATED_TOKEN_FILE: &str = "cluster-token";

/// Gives a cluster started without a token one, unless it runs
/// `insecure`: the token generated at its first start (random, from the
/// kernel), kept (mode 0600) in `cluster-token` in the state dir so that
/// restarts, machines and logged-in browsers keep it. Does nothing when
/// the config already has a token.
///
/// # Errors
/// [`ClusterError::StateDir`] when the token cannot be read or written.
pub fn resolve_token(config: &mut ClusterConfig) -> Result<(), ClusterError> {
    if config.token.is_some() || config.insecure {
        return Ok(());
    }
    let state_error = |source| ClusterError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(state_error)?;
    let path =
        std::path::absolute(config.state_dir.join(GENERATED_TOKEN_FILE)).map_err(state_error)?;
    let token = match cerebro_web::load_token(Some(&path), "") {
        Ok(Some(token)) => token,
        _ => {
            let secret = cerebro_web::auth::random_secret().map_err(state_error)?;
            cerebro_host::fs::atomic_write_private(&path, secret.as_bytes())
                .map_err(state_error)?;
            tracing::info!(path = %path.display(), "generated the cluster token");
            cerebro_web::Token::new(&secret).map_err(|e| state_error(std::io::Error::other(e)))?
        }
    };
    tracing::info!(path = %path.display(), "the cluster token (for --token-file, CEREBRO_TOKEN and the UI's login)");
    config.token = Some(token);
    config.generated_token_file = Some(path);
    Ok(())
}

/// Leaves a generated token where the `cerebro` CLI on this host finds
/// it for `reachable` (see `cerebro_client::token_store`); best effort, as
/// the CLI can always be given the token file.
fn record_token_for_cli(config: &ClusterConfig, reachable: std::net::SocketAddr) {
    let (Some(token), Some(_), Some(dir)) = (
        &config.token,
        &config.generated_token_file,
        &config.client_token_dir,
    ) else {
        return;
    };
    let path = dir.join(cerebro_client::token_store::file_name(
        &reachable.ip().to_string(),
        reachable.port(),
    ));
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| cerebro_host::fs::atomic_write_private(&path, token.expose().as_bytes()));
    match written {
        Ok(()) => tracing::info!(path = %path.display(), "the cluster token for the cerebro CLI"),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot record the token for the CLI")
        }
    }
}

/// Machinesitters of the local provider share the cluster's token file.
fn token_file_for_machines(config: &ClusterConfig) -> std::io::Result<Option<std::path::PathBuf>> {
    let Some(token) = &config.token else {
        return Ok(None);
    };
    let path = std::path::absolute(config.state_dir.join("machine-token"))?;
    cerebro_host::fs::atomic_write_private(&path, token.expose().as_bytes())?;
    Ok(Some(path))
}

/// The whole `main` of `clustersitter` and `cerebrod`: parse, validate,
/// bind, serve. Bad flags or config exit 2, and so do `--job` files that
/// do not load or do not fit the cluster (a config error found once the
/// cluster is known); a failure while running exits 1.
pub fn main_entry() -> std::process::ExitCode {
    main_entry_with(&LocalOnly)
}

/// [`main_entry`] with the providers `factory` builds (the `clustersitter`
/// binary passes the EC2 provider's).
pub fn main_entry_with(factory: &'static dyn ProviderFactory) -> std::process::ExitCode {
    DAEMON.main(
        config::Cli::into_config,
        move |config, listener, shutdown| async move {
            let listener = listener.expect("the clustersitter always listens");
            match serve_with_factory(config, listener, shutdown, factory).await {
                Ok(()) => Ok(0),
                Err(
                    error @ (ClusterError::JobFiles(_)
                    | ClusterError::Job { .. }
                    | ClusterError::JobAt { .. }),
                ) => {
                    eprintln!("clustersitter: error: {error}");
                    Ok(USAGE_ERROR)
                }
                Err(error) => Err(error),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// A local cluster that never provisions (idle limit 0, no jobs), with
    /// `dns` as its `[dns]` section.
    fn config(dir: &std::path::Path, dns: &str) -> super::ClusterConfig {
        let path = dir.join("cluster.toml");
        std::fs::write(
            &path,
            format!(
                "cluster_name = \"c1\"\nstate_dir = \"state\"\ninsecure = true\nidle_limit = 0\npoll_interval = \"100ms\"\n{dns}\n[provider]\nkind = \"local\"\nmachinesitter_bin = \"/bin/true\"\n"
            ),
        )
        .unwrap();
        super::config::Cli::try_parse_from(["clustersitter", "--config", path.to_str().unwrap()])
            .unwrap()
            .into_config()
            .unwrap()
    }

    /// Serves `config` in this process until the answer of `GET
    /// /api/v1/dns` is had; answers it and the cluster's events.
    async fn dns_status_of(
        config: super::ClusterConfig,
    ) -> Result<(serde_json::Value, serde_json::Value), super::ClusterError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (handle, shutdown) = cerebro_web::daemon::shutdown_channel();
        let served = tokio::spawn(super::serve(config, listener, shutdown));
        let client = reqwest::Client::new();
        let get = |path: &str| {
            let request = client.get(format!("http://{address}{path}"));
            async move {
                let response = request.send().await.ok()?;
                response.json::<serde_json::Value>().await.ok()
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if served.is_finished() {
                return Err(served.await.unwrap().unwrap_err());
            }
            if let Some(status) = get("/api/v1/dns").await {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "no answer");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let events = get("/api/v1/events").await.unwrap();
        handle.request();
        served.await.unwrap()?;
        Ok((status, events))
    }

    #[tokio::test]
    async fn the_dns_status_is_served_and_kind_none_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (status, _) = dns_status_of(config(
            dir.path(),
            "[dns]\nkind = \"none\"\nzone = \"cerebro.test\"\nttl = 30",
        ))
        .await
        .unwrap();
        assert_eq!(
            status,
            serde_json::json!({"kind": "none", "zone": "cerebro.test", "ttl": 30, "desired": []})
        );
    }

    #[tokio::test]
    async fn a_provider_that_cannot_start_stops_the_start_unless_it_was_a_default() {
        let dir = tempfile::tempdir().unwrap();
        // A configured embedded server that cannot answer: refused at start.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = taken.local_addr().unwrap();
        let error = dns_status_of(config(
            dir.path(),
            &format!("[dns]\nkind = \"embedded\"\nlisten = \"{listen}\""),
        ))
        .await
        .unwrap_err();
        assert!(matches!(error, super::ClusterError::Dns(_)), "{error}");
        assert!(error.to_string().contains(&listen.to_string()), "{error}");
    }
}
