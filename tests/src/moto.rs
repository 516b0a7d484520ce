//! moto's server, the EC2 and Route 53 stand-in the EC2 tests talk to over
//! the real wire protocol. `scripts/install-moto.sh` installs it into
//! `<target dir>/moto-venv`; [`MotoServer::start`] runs it on 127.0.0.1 and
//! a free port with AMI validation on (`MOTO_ENABLE_AMI_VALIDATION`), so an
//! unknown AMI is refused with `InvalidAMIID.NotFound` as real EC2 does.
//!
//! This module speaks plain HTTP/1.1 over a `TcpStream` (moto's own
//! `/moto-api/` endpoints need no signing): the harness links no AWS SDK
//! and works from sync and async tests alike.

use crate::watchdog::Watchdog;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long moto may take to answer its first request (Python imports).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`; killed (and its log dir removed) on drop, and
/// also when the test process dies any way at all: it runs under a `sh`
/// watchdog that ends it once the pipe from this process closes.
pub struct MotoServer {
    /// Stops moto when dropped.
    _watchdog: Watchdog,
    port: u16,
    log: PathBuf,
}

/// The target dir the test executable was built into
/// (`<target>/<profile>/deps/<test>`), where the installer puts the venv.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The `moto_server` of the venv `scripts/install-moto.sh` makes.
pub fn moto_server_bin() -> PathBuf {
    target_dir().join("moto-venv/bin/moto_server")
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` on a free port, with AMI
    /// validation on, logging to `moto.log` in a fresh temp dir, and waits
    /// until it answers. Panics when the venv is missing ("run
    /// scripts/install-moto.sh") or when it does not answer within a minute.
    pub fn start() -> Self {
        let bin = moto_server_bin();
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/install-moto.sh (scripts/test.sh does) before the EC2 tests",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("cerebro-moto-")
            .tempdir()
            .expect("a temp dir for moto's log")
            .keep();
        let log = dir.join("moto.log");
        let port = free_port();
        let port_text = port.to_string();
        let watchdog = Watchdog::spawn(
            "moto",
            &[
                bin.as_os_str(),
                "-H".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port_text.as_ref(),
            ],
            &dir,
            &log,
            &[("MOTO_ENABLE_AMI_VALIDATION", "true")],
        );
        let server = MotoServer {
            _watchdog: watchdog,
            port,
            log,
        };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while server.try_reset().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not answer on {} within {START_TIMEOUT:?}; its log:\n{}",
                server.url(),
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// One server for the whole test binary, started at first use, and a
    /// turn at it: tests holding the returned guard run one at a time, and
    /// each starts from a reset server. A test that failed while holding
    /// it does not block the others.
    pub fn shared() -> SharedMoto {
        static TURN: Mutex<()> = Mutex::new(());
        static SERVER: OnceLock<MotoServer> = OnceLock::new();
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let server = SERVER.get_or_init(MotoServer::start);
        server.reset();
        SharedMoto {
            _turn: turn,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`: the endpoint for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource of every region (`POST /moto-api/reset`);
    /// panics if moto does not answer `200`.
    pub fn reset(&self) {
        if let Err(error) = self.try_reset() {
            panic!(
                "reset moto at {}: {error}; its log:\n{}",
                self.url(),
                self.log_text()
            );
        }
    }

    fn try_reset(&self) -> Result<(), String> {
        let (status, body) =
            http_request(self.port, "POST", "/moto-api/reset", "").map_err(|e| e.to_string())?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("answered {status}: {body}"))
        }
    }

    /// Where moto logs (one line per request it served).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// What moto logged so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A turn at the shared server ([`MotoServer::shared`]): derefs to it.
pub struct SharedMoto {
    _turn: MutexGuard<'static, ()>,
    server: &'static MotoServer,
}

impl std::ops::Deref for SharedMoto {
    type Target = MotoServer;
    fn deref(&self) -> &MotoServer {
        self.server
    }
}

/// A port free on 127.0.0.1 right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close`;
/// answers the status code and the body.
fn http_request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_server_answers_resets_and_takes_turns() {
        let port = {
            let moto = MotoServer::shared();
            let (status, body) = http_request(moto.port(), "POST", "/moto-api/reset", "").unwrap();
            assert_eq!((status, body.contains("ok")), (200, true), "{body}");
            moto.port()
        };
        // The next turn gets the same server, reset.
        assert_eq!(MotoServer::shared().port(), port);
    }

    #[test]
    fn a_dropped_server_stops_and_leaves_no_log_dir() {
        let moto = MotoServer::start();
        let (port, dir) = (moto.port(), moto.log_path().parent().unwrap().to_path_buf());
        assert!(dir.is_dir());
        drop(moto);
        assert!(http_request(port, "POST", "/moto-api/reset", "").is_err());
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
