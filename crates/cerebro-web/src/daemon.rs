//! What every Cerebro daemon's `main` and `serve` share, written once:
//!
//! - `main`: flags → config → bind → signals → the
//!   daemon's `serve`, with one exit-code policy (`USAGE_ERROR`, 2, for bad
//!   flags and configs; `RUNTIME_ERROR`, 1, for everything that fails later);
//! - `Shutdown`, how a daemon's caller asks it to stop: `main` turns SIGTERM
//!   and SIGINT into requests, a test calls `ShutdownHandle::request`, so a
//!   daemon booted in-process stops without anyone signalling the test;
//! - `spawn_server`, the HTTP server with graceful shutdown.
//!
//! A daemon's library exports `serve(config, listener, shutdown)`: it takes
//! an already-bound listener, so a test binds 127.0.0.1:0 itself and knows
//! the address before the daemon starts.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Exit status for bad flags and configs, as clap uses for usage errors.
pub const USAGE_ERROR: u8 = 2;

/// Exit status for a daemon that was configured right but failed while
/// starting or running (cannot bind, cannot read its state, ...).
pub const RUNTIME_ERROR: u8 = 1;

/// Parses the command line; help and version print and exit 0, anything
/// else wrong prints one line naming the program and returns exit code 2.
pub fn parse_flags<C: clap::Parser>(program: &str) -> Result<C, ExitCode> {
    match C::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            // clap's message may continue on indented lines before a blank line; keep it to one line.
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            eprintln!("{program}: {} (see --help)", message.join(" "));
            Err(ExitCode::from(USAGE_ERROR))
        }
    }
}

/// How the one server treats its connections.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// A request's head must arrive within this, from when the server
    /// starts waiting for it: a client that sends half a head (or, on a
    /// kept-alive connection, nothing) is disconnected.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request's body: a body sent
    /// slowly, or not at all, ends the request. (Answers are not bounded:
    /// stopping a task may rightly take as long as its stop timeout.)
    pub body_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// In-flight requests get this long to finish after the shutdown request.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` until `shutdown` changes, then finishes in-flight requests.
pub fn spawn_server(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_server_until(listener, app, async move {
        let _ = shutdown.changed().await;
    })
}

/// Serves `app` until `stopped` completes (never, for
/// `std::future::pending()`), then finishes in-flight requests, with the
/// default [`ServerLimits`].
pub fn spawn_server_until(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    spawn_server_with(listener, app, stopped, ServerLimits::default())
}

/// The one HTTP server of every daemon: adds the shared assets
/// ([`crate::html::assets`]) and passes every answer through
/// [`crate::edge`] (JSON errors, security headers);
/// records each client's address (`ConnectInfo`, which failed
/// authentications are counted by); and holds connections to `limits`.
pub fn spawn_server_with(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopped: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> tokio::task::JoinHandle<()> {
    let app = app
        .merge(crate::html::assets())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(axum::middleware::from_fn(crate::edge::json_errors))
        .layer(axum::middleware::from_fn(crate::edge::security_headers));
    tokio::spawn(serve_connections(listener, app, stopped, limits))
}

async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stopped: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Heads this large are refused (431) rather than buffered.
        .max_buf_size(64 * 1024);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(stopped);
    loop {
        let slot = tokio::select! {
            () = &mut stopped => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut router = router.clone();
                tower_service::Service::call(&mut router, request)
            },
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace; leaving them");
    }
}

/// The caller's side of a daemon's shutdown. Dropping it counts as one
/// request, so a test that forgets its handle does not leave a daemon running.
#[derive(Debug)]
pub struct ShutdownHandle(watch::Sender<u32>);

/// The daemon's side of its shutdown: the first request begins an orderly
/// stop; a daemon may treat a second as "now" (the tasksitter kills its
/// workload at once, as it does for a second SIGTERM).
#[derive(Debug, Clone)]
pub struct Shutdown {
    requests: watch::Receiver<u32>,
    /// The handle was dropped and that was reported once.
    closed_seen: bool,
}

/// A connected pair: the handle for whoever may stop the daemon, the
/// `Shutdown` for the daemon.
pub fn shutdown_channel() -> (ShutdownHandle, Shutdown) {
    let (tx, rx) = watch::channel(0);
    (
        ShutdownHandle(tx),
        Shutdown {
            requests: rx,
            closed_seen: false,
        },
    )
}

impl ShutdownHandle {
    /// Asks the daemon (once more) to stop; returns at once.
    pub fn request(&self) {
        self.0.send_modify(|count| *count += 1);
    }
}

impl Shutdown {
    /// Waits for the next request not yet seen by this `Shutdown`.
    /// Cancel-safe, so it can be one arm of a `select!` loop. Once the
    /// handle is gone, that counts as one request and later calls never return.
    pub async fn requested(&mut self) {
        if self.requests.changed().await.is_ok() {
            return;
        }
        if self.closed_seen {
            std::future::pending::<()>().await;
        }
        self.closed_seen = true;
    }
}

/// Handlers for SIGTERM and SIGINT, installed before the daemon starts work
/// so that no signal in between is lost.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; from now on SIGTERM and SIGINT no longer end
    /// the process but wait here to be received.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Turns every SIGTERM and SIGINT from now on into a shutdown request.
    pub fn forward_to(mut self, handle: ShutdownHandle) {
        tokio::spawn(async move {
            loop {
                self.wait().await;
                tracing::info!("shutdown signal received");
                handle.request();
            }
        });
    }
}

/// Which tokio runtime a daemon runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// On the main thread only: the tasksitter's PR_SET_PDEATHSIG follows
    /// the thread that forks, which must live as long as the process.
    CurrentThread,
    /// Tokio's default: one worker thread per core.
    MultiThread,
}

/// Why a daemon could not start, before its own `serve` ran (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The tokio runtime could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The address is taken, not ours, or needs privileges.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
}

/// A daemon as `main` runs it.
pub struct Daemon<C> {
    /// The program name that starts every error line.
    pub program: &'static str,
    pub runtime: Runtime,
    /// Where the config says to listen (port 0 picks a free port); `None`
    /// for no HTTP at all. The daemon's `serve` announces the bound address
    /// itself (see [`announce_address`]) once it is ready, so that an
    /// address file never names a daemon that failed to start.
    pub listen: fn(&C) -> Option<SocketAddr>,
}

impl<C> Daemon<C> {
    /// The whole life of a daemon process: parses `F` from the command line
    /// and turns it into a config with `configure` (either failing is exit
    /// 2, one line on stderr), binds, forwards SIGTERM/SIGINT as shutdown
    /// requests, then runs `serve` (which announces its address once ready). `serve`'s
    /// `Ok(code)` is the exit status; any error after the config is exit 1.
    pub fn main<F, E, S, Fut, R>(
        &self,
        configure: impl FnOnce(F) -> Result<C, E>,
        serve: S,
    ) -> ExitCode
    where
        F: clap::Parser,
        E: std::fmt::Display,
        S: FnOnce(C, Option<tokio::net::TcpListener>, Shutdown) -> Fut,
        Fut: Future<Output = Result<u8, R>>,
        R: std::fmt::Display,
    {
        crate::logging::init_tracing();
        let program = self.program;
        let Ok(flags) = parse_flags::<F>(program) else {
            return ExitCode::from(USAGE_ERROR);
        };
        let config = match configure(flags) {
            Ok(config) => config,
            Err(errors) => {
                eprintln!("{program}: error: {errors}");
                return ExitCode::from(USAGE_ERROR);
            }
        };
        let runtime = match self.runtime {
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Runtime::MultiThread => tokio::runtime::Runtime::new(),
        };
        let listen = (self.listen)(&config);
        let outcome = runtime.map_err(BootError::Runtime).and_then(|runtime| {
            runtime.block_on(async move {
                let (listener, shutdown) = boot(listen.as_ref()).await?;
                Ok(serve(config, listener, shutdown).await)
            })
        });
        let failure = match outcome {
            Ok(Ok(code)) => return ExitCode::from(code),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        eprintln!("{program}: error: {failure}");
        ExitCode::from(RUNTIME_ERROR)
    }
}

/// Binds and turns the signals into shutdown requests, before `serve`
/// runs: a signal that arrives while it starts is not lost.
async fn boot(
    listen: Option<&SocketAddr>,
) -> Result<(Option<tokio::net::TcpListener>, Shutdown), BootError> {
    let (handle, shutdown) = shutdown_channel();
    let Some(listen) = listen else {
        ShutdownSignals::install()
            .map_err(BootError::Signal)?
            .forward_to(handle);
        return Ok((None, shutdown));
    };
    let bind_error = |source| BootError::Bind {
        addr: *listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    ShutdownSignals::install()
        .map_err(BootError::Signal)?
        .forward_to(handle);
    tracing::info!(%bound, "listening");
    Ok((Some(listener), shutdown))
}

/// The address file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the address file {path}: {source}")]
pub struct AddressFileError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Tells whoever started the daemon where it listens (a port-0 bind), by
/// writing `bound` to `path` atomically; nothing without a path. Call it
/// once the daemon is ready and handles its shutdown signals: a reader may
/// use the address, or signal, at once.
pub fn announce_address(
    path: Option<&std::path::Path>,
    bound: std::net::SocketAddr,
) -> Result<(), AddressFileError> {
    let Some(path) = path else {
        return Ok(());
    };
    cerebro_host::fs::atomic_write(path, bound.to_string().as_bytes()).map_err(|source| {
        AddressFileError {
            path: path.display().to_string(),
            source,
        }
    })
}
