//! Machine providers: where machines come from. The local provider (the
//! embedded default) runs each "machine" as a machinesitter process on
//! 127.0.0.1 with its own state dir, port and declared size; cloud providers
//! implement the same trait.

use crate::config::ProviderConfig;
use async_trait::async_trait;
use cerebro_host::process::{find_processes, is_alive, start_ticks};
use cerebro_host::proctree::descendants;
use cerebro_types::cluster::ProviderDetails;
use cerebro_types::machine::Resources;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("zone '{0}' is not served by this provider")]
    UnknownZone(String),
    #[error("the provider's limit of {0} machines is reached")]
    Limit(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The local provider needs a machinesitter binary and found none.
    #[error(
        "no machinesitter beside the clustersitter or on PATH (set provider.machinesitter_bin)"
    )]
    NoMachinesitter,
    /// `provider.machinesitter_bin` names no executable file: refused at
    /// start, rather than failing every machine it would start.
    #[error("provider.machinesitter_bin {} is not an executable file", .0.display())]
    MachinesitterNotExecutable(PathBuf),
    /// A machine id that would not be one directory under the machines dir.
    #[error("machine id '{0}' is not a plain name")]
    BadMachineId(String),
    #[error("machine {0} is already running")]
    AlreadyRunning(String),
    /// Termination left processes of the machine alive.
    #[error("processes of machine {0} survive SIGKILL")]
    Survivors(String),
    /// The cloud's API refused or failed, after the SDK's own retries.
    /// `code` is the API's error code (e.g. EC2's `InvalidAMIID.NotFound`,
    /// `InsufficientInstanceCapacity`), or a short word for a failure
    /// that never reached it (`dispatch`, `timeout`). `transient` errors
    /// (throttling, 5xx, a lost connection) may pass by themselves;
    /// permanent ones (a bad AMI, a limit reached) need a person.
    #[error("{operation} in {region}: {code}: {message}")]
    Api {
        operation: &'static str,
        region: String,
        code: String,
        message: String,
        transient: bool,
    },
    /// The provider's configuration cannot work (found when it is used).
    #[error("{0}")]
    Config(String),
    /// A launch was sent and may have happened, and nothing could tell
    /// (EC2: a RunInstances whose answer was lost, then no
    /// DescribeInstances by the machine's tag answered). Not a failure to
    /// forget: the cluster keeps the machine's record (provisioning, no
    /// provider id) and waits for it to register until
    /// [`MachineProvider::boot_timeout`] passes; then it terminates it by
    /// its machine id (which finds an instance the launch made) and
    /// replaces it. A new machine id instead would launch a second
    /// instance: a new id is a new idempotency token.
    #[error("{operation} in {region}: outcome unknown: {message}")]
    OutcomeUnknown {
        operation: &'static str,
        region: String,
        message: String,
    },
}

impl ProviderError {
    /// The API's error code, for events and backoff (`None` for errors
    /// that are not the cloud's).
    pub fn code(&self) -> Option<&str> {
        match self {
            ProviderError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// [`ProviderError::code`], or for an error that is not the cloud's a
    /// word naming its kind (`limit`, `io`, ...): what tells one failure
    /// from another in a zone's streak of failures.
    pub fn code_or_kind(&self) -> &str {
        match self {
            ProviderError::Api { code, .. } => code,
            ProviderError::UnknownZone(_) => "unknown_zone",
            ProviderError::Limit(_) => "limit",
            ProviderError::Io(_) => "io",
            ProviderError::NoMachinesitter | ProviderError::MachinesitterNotExecutable(_) => {
                "no_machinesitter"
            }
            ProviderError::BadMachineId(_) => "bad_machine_id",
            ProviderError::AlreadyRunning(_) => "already_running",
            ProviderError::Survivors(_) => "survivors",
            ProviderError::Config(_) => "config",
            ProviderError::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }
}

/// A machine the provider has started.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    pub provider_id: String,
    /// What the provider actually started: it may be smaller than
    /// [`NewMachine::size`] (EC2 starts the smallest instance type holding
    /// [`NewMachine::reserved`]), never smaller than `reserved`.
    pub size: Resources,
    pub details: ProviderDetails,
}

/// Whether a machine still exists at its provider, as
/// [`MachineProvider::status`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// It exists (running, pending, stopping...): its processes may still
    /// run, so it must be terminated before its instances move.
    Exists { state: String },
    /// Stopped, terminated or unknown to the provider: nothing of it runs.
    Gone { state: String },
}

/// What the clustersitter asks for: a machine with this id in this zone.
#[derive(Debug, Clone)]
pub struct NewMachine {
    pub id: String,
    pub zone: String,
    /// The most it may be asked to hold (the zone's machine size).
    pub size: Resources,
    /// What the instances it is for reserve together (at most `size`).
    pub reserved: Resources,
    /// The machinesitter registers here.
    pub cluster_url: String,
}

/// A machine the provider still knows about (found on start).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundMachine {
    pub machine_id: String,
    pub zone: String,
    pub provider_id: String,
    /// Where its machinesitter listens, if the provider can tell.
    pub address: Option<String>,
    /// Its size, if the provider can tell (EC2: from its instance type).
    pub size: Option<Resources>,
    pub details: ProviderDetails,
}

#[async_trait]
pub trait MachineProvider: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Starts a machine, exactly once per `machine.id` (a retry after a
    /// lost answer finds the first one); answers what it started. The
    /// machine registers with the cluster by itself once it is up.
    async fn provision(&self, machine: &NewMachine) -> Result<Provisioned, ProviderError>;
    /// Whether the machine still exists (it may exist and be unreachable).
    async fn status(&self, provider_id: &str) -> Result<ProviderStatus, ProviderError>;
    /// Ends the machine and everything on it, and answers Ok only once the
    /// provider confirms it gone. Idempotent.
    async fn terminate(&self, machine_id: &str, provider_id: &str) -> Result<(), ProviderError>;
    /// Every machine of this cluster the provider can see.
    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError>;
    /// The largest machine (cores, MB) the provider can ever start in
    /// `zone`; `None` when it does not serve the zone or cannot tell, and
    /// the cluster then takes the config's machine size as the largest.
    /// Jobs whose instances exceed it are refused at submission, and
    /// placement never asks for a machine bigger than this.
    /// How long a new machine may take from provisioned to answering
    /// before it counts as failed (and is terminated and replaced): a
    /// local process starts in a second, a cloud VM boots, runs its user
    /// data and downloads its binaries first.
    fn boot_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }
    fn largest_machine(&self, zone: &str) -> Option<Resources> {
        let _ = zone;
        None
    }
}

/// Local machines: `machinesitter` processes in their own sessions, so they
/// outlive a clustersitter restart, each under `STATE/machines/ID`.
pub struct LocalProvider {
    config: ProviderConfig,
    machines_dir: PathBuf,
    machinesitter_bin: PathBuf,
    token_file: Option<PathBuf>,
}

/// `pid/start-ticks`: a pid alone could be reused by an unrelated process.
/// In a local machine's dir: the index of its slice of the task ports.
const PORT_SLICE_FILE: &str = "port-slice";

/// The task ports local machines share (the machinesitter's default
/// `--port-range`), cut in `max_machines` slices.
const LOCAL_TASK_PORTS: (u16, u16) = (20000, 20999);

/// Slice `index` of [`LOCAL_TASK_PORTS`] when cut for `max_machines`
/// machines: (first, last) port, inclusive. Slices never overlap for
/// indexes below `max_machines` (the provider's limit).
fn local_port_slice(index: usize, max_machines: usize) -> (u16, u16) {
    let (low, high) = LOCAL_TASK_PORTS;
    let total = usize::from(high - low) + 1;
    let size = (total / max_machines.max(1)).max(1);
    let first = low as usize + (index * size) % total;
    let last = (first + size - 1).min(high as usize);
    (first as u16, last as u16)
}

fn local_provider_id(pid: i32, ticks: u64) -> String {
    format!("{pid}/{ticks}")
}

fn parse_local_provider_id(id: &str) -> Option<(i32, u64)> {
    let (pid, ticks) = id.split_once('/')?;
    Some((pid.parse().ok()?, ticks.parse().ok()?))
}

impl LocalProvider {
    pub fn new(
        config: ProviderConfig,
        state_dir: &Path,
        token_file: Option<PathBuf>,
    ) -> Result<Self, ProviderError> {
        let machinesitter_bin = match &config.machinesitter_bin {
            Some(bin) if is_executable_file(bin) => bin.clone(),
            Some(bin) => return Err(ProviderError::MachinesitterNotExecutable(bin.clone())),
            None => crate::binaries::find_program("machinesitter")
                .ok_or(ProviderError::NoMachinesitter)?,
        };
        let machines_dir = std::path::absolute(state_dir.join("machines"))?;
        std::fs::create_dir_all(&machines_dir)?;
        Ok(Self {
            config,
            machines_dir,
            machinesitter_bin,
            token_file,
        })
    }

    /// Only ever a directory directly under `machines_dir`: an id that is
    /// not one plain path component names no machine of ours.
    fn machine_dir(&self, machine_id: &str) -> Result<PathBuf, ProviderError> {
        let mut components = std::path::Path::new(machine_id).components();
        match (components.next(), components.next()) {
            (Some(std::path::Component::Normal(_)), None) => Ok(self.machines_dir.join(machine_id)),
            _ => Err(ProviderError::BadMachineId(machine_id.to_string())),
        }
    }

    /// The machinesitters running for this cluster, as (pid, machine id).
    fn running(&self) -> Vec<(i32, String)> {
        let prefix = format!("{}/", self.machines_dir.display());
        find_processes(|argv| {
            argv.first().is_some_and(|a| a.ends_with("machinesitter"))
                && argv.iter().any(|a| a.starts_with(&prefix))
        })
        .into_iter()
        .filter_map(|(pid, argv)| {
            let dir = argv.iter().find_map(|a| a.strip_prefix(&prefix))?;
            Some((pid, dir.trim_end_matches('/').to_string()))
        })
        .collect()
    }
}

#[async_trait]
impl MachineProvider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    /// Every local machine has the configured size.
    fn largest_machine(&self, zone: &str) -> Option<Resources> {
        self.config
            .zones
            .iter()
            .any(|z| z == zone)
            .then_some(Resources {
                cpu: self.config.machine_cpu,
                mem_mb: self.config.machine_mem,
            })
    }

    async fn provision(&self, machine: &NewMachine) -> Result<Provisioned, ProviderError> {
        if !self.config.zones.contains(&machine.zone) {
            return Err(ProviderError::UnknownZone(machine.zone.clone()));
        }
        let running = self.running();
        if running.iter().any(|(_, id)| *id == machine.id) {
            return Err(ProviderError::AlreadyRunning(machine.id.clone()));
        }
        if running.len() >= self.config.max_machines {
            return Err(ProviderError::Limit(self.config.max_machines));
        }
        let dir = self.machine_dir(&machine.id)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("zone"), &machine.zone)?;
        // Local machines share one host: each gets a slice of the task
        // port range of its own, so two of them never hand one port to
        // two tasks (each machinesitter only knows its own tasks).
        let taken: Vec<usize> = running
            .iter()
            .filter_map(|(_, id)| {
                let dir = self.machine_dir(id).ok()?;
                std::fs::read_to_string(dir.join(PORT_SLICE_FILE))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect();
        let slice = (0..).find(|i| !taken.contains(i)).unwrap_or(0);
        std::fs::write(dir.join(PORT_SLICE_FILE), slice.to_string())?;
        let (first, last) = local_port_slice(slice, self.config.max_machines);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("machinesitter.log"))?;
        let mut command = tokio::process::Command::new(&self.machinesitter_bin);
        command
            .arg("--state-dir")
            .arg(&dir)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .arg("--address-file")
            .arg(dir.join("address"))
            .args(["--machine-id", &machine.id, "--zone", &machine.zone])
            .args(["--capacity-cpu", &machine.size.cpu.to_string()])
            .args([
                "--capacity-mem",
                &(machine.size.mem_mb.ceil() as u64).to_string(),
            ])
            .args(["--cluster-url", &machine.cluster_url])
            .args(["--port-range", &format!("{first}-{last}")])
            // Terminating a local machine means stopping its tasks too.
            .args(["--on-exit", "stop"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(false);
        if let Some(backend) = &self.config.limits_backend {
            command.args(["--limits-backend", backend]);
        }
        if let Some(token_file) = &self.token_file {
            command.arg("--token-file").arg(token_file);
        }
        // SAFETY: setsid(2) only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let ticks = start_ticks(pid).unwrap_or(0);
        // Reap it when it exits, so no zombie looks alive.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(Provisioned {
            provider_id: local_provider_id(pid, ticks),
            size: machine.size,
            details: ProviderDetails::default(),
        })
    }

    async fn status(&self, provider_id: &str) -> Result<ProviderStatus, ProviderError> {
        let alive =
            parse_local_provider_id(provider_id).is_some_and(|(pid, ticks)| is_alive(pid, ticks));
        Ok(if alive {
            ProviderStatus::Exists {
                state: "running".into(),
            }
        } else {
            ProviderStatus::Gone {
                state: "exited".into(),
            }
        })
    }

    /// The fence of a local machine: its machinesitter, every process
    /// with an argument under its dir (its tasksitters) and every
    /// descendant of those (the workloads) are stopped, and Ok only once
    /// each of them, by pid and start time, is confirmed gone.
    async fn terminate(&self, machine_id: &str, provider_id: &str) -> Result<(), ProviderError> {
        // An id that names no directory of ours was never a local machine.
        let Ok(dir) = self.machine_dir(machine_id) else {
            return Ok(());
        };
        let mut sitters: Vec<i32> = self
            .running()
            .into_iter()
            .filter(|(_, id)| id == machine_id)
            .map(|(pid, _)| pid)
            .collect();
        if let Some((pid, ticks)) = parse_local_provider_id(provider_id) {
            if is_alive(pid, ticks) && !sitters.contains(&pid) {
                sitters.push(pid);
            }
        }
        let dir_arg = format!("{}/", dir.display());
        let dir_text = dir.display().to_string();
        let members = || -> Vec<i32> {
            find_processes(|argv| {
                argv.iter()
                    .any(|a| a.starts_with(&dir_arg) || *a == dir_text)
            })
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
        };
        // Workloads carry no argument under the dir: they are known as
        // descendants, by identity, so a reused pid is never mistaken.
        let mut doomed = Doomed::default();
        doomed.take_in(&members());
        doomed.take_in(&sitters);
        let grace = if sitters.is_empty() {
            // A machinesitter that died cannot stop its tasks: each
            // tasksitter is asked to stop its workload itself.
            for pid in members() {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
            Duration::from_secs(10)
        } else {
            // SIGTERM: it stops its tasks (--on-exit stop), then exits.
            for pid in &sitters {
                signal(*pid, nix::sys::signal::Signal::SIGTERM);
            }
            Duration::from_secs(20)
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !(members().is_empty() && doomed.all_gone()) {
            doomed.take_in(&members());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Whatever is left (a stuck machinesitter, a tasksitter that did
        // not stop, a workload that outlived it) is killed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            doomed.take_in(&members());
            doomed.kill_survivors();
            if (members().is_empty() && doomed.all_gone()) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !(members().is_empty() && doomed.all_gone()) {
            return Err(ProviderError::Survivors(machine_id.to_string()));
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError> {
        Ok(self
            .running()
            .into_iter()
            .filter_map(|(pid, machine_id)| {
                let zone =
                    std::fs::read_to_string(self.machine_dir(&machine_id).ok()?.join("zone"))
                        .ok()?;
                let ticks = start_ticks(pid)?;
                let address =
                    std::fs::read_to_string(self.machine_dir(&machine_id).ok()?.join("address"))
                        .ok()
                        .filter(|a| !a.is_empty());
                Some(FoundMachine {
                    machine_id,
                    zone: zone.trim().to_string(),
                    provider_id: local_provider_id(pid, ticks),
                    address,
                    size: None,
                    details: ProviderDetails::default(),
                })
            })
            .collect())
    }
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Every process of a machine being terminated, by pid and start time.
#[derive(Default)]
struct Doomed(std::collections::BTreeMap<i32, u64>);

impl Doomed {
    /// Adds `roots` and all their descendants, as they are now.
    fn take_in(&mut self, roots: &[i32]) {
        for &root in roots {
            let tree = std::iter::once(root).chain(descendants(root, &[]));
            for pid in tree {
                if let Some(ticks) = start_ticks(pid) {
                    self.0.entry(pid).or_insert(ticks);
                }
            }
        }
    }

    /// SIGKILLs each one still alive.
    fn kill_survivors(&self) {
        for (&pid, &ticks) in &self.0 {
            if is_alive(pid, ticks) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    fn all_gone(&self) -> bool {
        self.0.iter().all(|(&pid, &ticks)| !is_alive(pid, ticks))
    }
}

/// Whether `path` is a regular file someone may execute.
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machinesitter_bin_that_is_no_executable_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        for bin in [dir.path().join("missing"), plain] {
            let config = crate::config::ProviderConfig {
                machinesitter_bin: Some(bin.clone()),
                ..Default::default()
            };
            let error = LocalProvider::new(config, dir.path(), None)
                .err()
                .expect("refused");
            assert_eq!(
                error.to_string(),
                format!(
                    "provider.machinesitter_bin {} is not an executable file",
                    bin.display()
                )
            );
        }
    }

    #[test]
    fn local_machines_get_port_slices_that_never_overlap() {
        for max in [1, 3, 16, 1000] {
            let slices: Vec<(u16, u16)> = (0..max).map(|i| local_port_slice(i, max)).collect();
            for (i, &(first, last)) in slices.iter().enumerate() {
                assert!((20000..=20999).contains(&first) && first <= last && last <= 20999);
                for &(other_first, other_last) in &slices[i + 1..] {
                    assert!(last < other_first || other_last < first, "{max}: overlap");
                }
            }
        }
        assert_eq!(local_port_slice(0, 16), (20000, 20061));
        assert_eq!(local_port_slice(15, 16), (20930, 20991));
    }
}
