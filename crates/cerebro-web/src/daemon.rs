//! What every Cerebro daemon's `main` and `run` share: flags parsed into one
//! clear line on error, the HTTP server with graceful shutdown, and the
//! wait for SIGTERM or SIGINT.

use std::process::ExitCode;

/// Exit status for bad flags and configs, as clap uses for usage errors.
pub const USAGE_ERROR: u8 = 2;

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

/// Serves `app` until `shutdown` changes, then finishes in-flight requests.
pub fn spawn_server(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "HTTP server stopped");
        }
    })
}

/// Handlers for SIGTERM and SIGINT, installed before the daemon starts work
/// so that no signal in between is lost.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

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
    crate::fs::atomic_write(path, bound.to_string().as_bytes()).map_err(|source| AddressFileError {
        path: path.display().to_string(),
        source,
    })
}
