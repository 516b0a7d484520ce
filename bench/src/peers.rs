//! The peers Cerebro is measured against, each started in the foreground
//! from a config written into a temp dir, and killed with its children on drop.

use crate::common::{kill_marked, spawn_guarded, which, Guard};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A supervisord with its own config, socket and logs under `dir`.
pub struct Supervisord {
    _guard: Guard,
    dir: PathBuf,
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        kill_marked(&self.dir.display().to_string());
    }
}

impl Supervisord {
    /// `sections` are full config sections (`[program:x]` ... or `[eventlistener:y]` ...).
    pub fn start(dir: &Path, sections: &str) -> Result<Self> {
        let bin = which("supervisord").context(
            "supervisord is missing: run scripts/bench.sh, which installs Debian's supervisor",
        )?;
        let config = dir.join("supervisord.conf");
        let text = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [unix_http_server]\nfile={d}/supervisor.sock\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n{sections}\n",
            d = dir.display()
        );
        std::fs::write(&config, text)?;
        let guard = spawn_guarded(Command::new(bin).arg("-c").arg(&config).arg("-n"))?;
        Ok(Self {
            _guard: guard,
            dir: dir.to_path_buf(),
        })
    }

    /// The supervisord process itself.
    pub fn pid(&self) -> i32 {
        self._guard.child.id() as i32
    }
}

/// A monit in the foreground with the smallest cycle it allows (1 s).
pub struct Monit {
    _guard: Guard,
    dir: PathBuf,
}

impl Drop for Monit {
    fn drop(&mut self) {
        kill_marked(&self.dir.display().to_string());
    }
}

impl Monit {
    /// `checks` are monit check statements.
    pub fn start(dir: &Path, checks: &str) -> Result<Self> {
        let bin = which("monit")
            .context("monit is missing: run scripts/bench.sh, which installs Debian's monit")?;
        let config = dir.join("monitrc");
        let text = format!(
            "set daemon 1\nset logfile {d}/monit.log\nset idfile {d}/monit.id\nset statefile {d}/monit.state\n\
             set pidfile {d}/monit.pid\n{checks}\n",
            d = dir.display()
        );
        std::fs::write(&config, text)?;
        // monit refuses a control file others can read.
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let guard = spawn_guarded(Command::new(bin).arg("-I").arg("-c").arg(&config))?;
        Ok(Self {
            _guard: guard,
            dir: dir.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self._guard.child.id() as i32
    }
}
