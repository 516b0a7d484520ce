//! Flags of the machinesitter, validated into a `MachineConfig`.

use cerebro_host::BackendChoice;
use cerebro_types::ValidationErrors;
use cerebro_web::Token;
use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnExit {
    /// Leave every task running: an upgrade or a crash of the machinesitter must not take the machine's work down.
    Leave,
    /// Stop every task gracefully before exiting.
    Stop,
}

#[derive(Debug, Parser)]
#[command(
    name = "machinesitter",
    version,
    about = "Supervise every tasksitter of this machine and serve one API for them",
    after_help = "On SIGTERM/SIGINT the machinesitter exits and leaves its tasks running (--on-exit leave, \
                  the default); the next machinesitter re-adopts them. --on-exit stop stops every task first."
)]
pub struct Cli {
    /// HTTP port.
    #[arg(long, default_value_t = 40000)]
    pub port: u16,
    /// HTTP bind address.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Where the task set, the tasksitters' secrets and the logs live.
    #[arg(long, default_value = "/var/lib/cerebro/machinesitter")]
    pub state_dir: PathBuf,
    /// This machine's id (default: the hostname).
    #[arg(long)]
    pub machine_id: Option<String>,
    /// Register with this clustersitter (e.g. http://10.0.0.1:30000), and again every 30 s.
    #[arg(long, env = "CEREBRO_CLUSTER_URL")]
    pub cluster_url: Option<String>,
    /// The zone this machine is in, told to the cluster when registering.
    #[arg(long)]
    pub zone: Option<String>,
    /// The address the cluster should use to reach this machinesitter (default: the bound address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_address: Option<String>,
    /// CPU cores tasks may reserve (default: the machine's cores).
    #[arg(long, value_name = "CORES")]
    pub capacity_cpu: Option<f64>,
    /// Memory in MB tasks may reserve (default: the machine's memory).
    #[arg(long, value_name = "MB")]
    pub capacity_mem: Option<u64>,
    /// Accept tasks beyond the capacity.
    #[arg(long)]
    pub overcommit: bool,
    /// What happens to the tasks when the machinesitter is told to exit.
    #[arg(long, value_enum, default_value = "leave")]
    pub on_exit: OnExit,
    /// The tasksitter binary (default: `tasksitter` beside this binary, else on PATH).
    #[arg(long)]
    pub tasksitter_bin: Option<PathBuf>,
    /// Limits backend the tasksitters use.
    #[arg(long, value_enum, default_value = "auto")]
    pub limits_backend: BackendChoice,
    /// File holding the bearer token for mutating requests (else env CEREBRO_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback bind without a token.
    #[arg(long)]
    pub insecure: bool,
    /// Write the bound address (ip:port) here once listening.
    #[arg(long)]
    pub address_file: Option<PathBuf>,
    /// TCP ports handed to the tasks' named `ports`, as FIRST-LAST. The
    /// default lies below Linux's ephemeral range (32768-60999), so no
    /// outgoing connection or OS-picked port takes one while its task
    /// restarts.
    #[arg(long, value_name = "FIRST-LAST", default_value = "20000-20999")]
    pub port_range: String,
    /// The first wait, in ms, before a failed deploy is tried again; it
    /// doubles per failure up to 5 minutes. For tests.
    #[arg(long, default_value_t = 5000, hide = true)]
    pub deploy_retry_base_ms: u64,
}

#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub addr: SocketAddr,
    pub state_dir: PathBuf,
    pub machine_id: String,
    pub hostname: String,
    pub capacity_cpu: f64,
    pub capacity_mem_mb: u64,
    pub overcommit: bool,
    pub on_exit: OnExit,
    pub tasksitter_bin: PathBuf,
    pub limits_backend: BackendChoice,
    pub token: Option<Token>,
    pub address_file: Option<PathBuf>,
    pub cluster_url: Option<String>,
    pub zone: Option<String>,
    pub advertise_address: Option<String>,
    /// The first wait before a failed deploy is tried again (doubling).
    pub deploy_retry_base: std::time::Duration,
    /// The TCP ports the tasks' named `ports` are allocated from.
    pub port_range: std::ops::RangeInclusive<u16>,
}

/// Parses `FIRST-LAST` (both 1..=65535, FIRST <= LAST) into a port range.
/// Errors: anything else, with an example of the form.
pub fn parse_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("'{text}' is not FIRST-LAST with ports 1 to 65535 (e.g. 20000-20999)");
    let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
    let (first, last) = (
        first.trim().parse::<u16>().map_err(|_| bad())?,
        last.trim().parse::<u16>().map_err(|_| bad())?,
    );
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(first..=last)
}

fn default_tasksitter() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.with_file_name("tasksitter");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("tasksitter"))
        .find(|p| p.is_file())
}

impl Cli {
    pub fn into_config(self) -> Result<MachineConfig, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let capacity_cpu = self.capacity_cpu.unwrap_or(cores);
        if !(capacity_cpu.is_finite() && capacity_cpu > 0.0) {
            errors.push("--capacity-cpu", "must be a positive number of cores");
        }
        let capacity_mem_mb = self
            .capacity_mem
            .unwrap_or(system.total_memory() / (1024 * 1024));
        if capacity_mem_mb == 0 {
            errors.push("--capacity-mem", "must be a positive number of MB");
        }
        let tasksitter_bin = self.tasksitter_bin.clone().or_else(default_tasksitter);
        match &tasksitter_bin {
            Some(path) if path.is_file() => {}
            Some(path) => errors.push(
                "--tasksitter-bin",
                format!("{} does not exist", path.display()),
            ),
            None => errors.push(
                "--tasksitter-bin",
                "no tasksitter beside this binary or on PATH",
            ),
        }
        let token = match cerebro_web::load_token(self.token_file.as_deref(), "CEREBRO_TOKEN") {
            Ok(token) => token,
            Err(error) => {
                errors.push("--token-file", error.to_string());
                None
            }
        };
        if !self.bind.is_loopback() && token.is_none() && !self.insecure {
            errors.push(
                "--bind",
                format!("{} is not a loopback address: give --token-file (or CEREBRO_TOKEN), or --insecure", self.bind),
            );
        }
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let machine_id = self.machine_id.clone().unwrap_or_else(|| hostname.clone());
        if let Err(message) = cerebro_types::job::validate_machine_id(&machine_id) {
            errors.push("--machine-id", message);
        }
        if let Some(url) = &self.cluster_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(
                    "--cluster-url",
                    format!("'{url}' is not an http:// or https:// URL"),
                );
            }
        }
        if let Some(address) = &self.advertise_address {
            if address.parse::<SocketAddr>().is_err() && !address.contains(':') {
                errors.push(
                    "--advertise-address",
                    format!("'{address}' is not HOST:PORT"),
                );
            }
        }
        let port_range = parse_port_range(&self.port_range).unwrap_or_else(|message| {
            errors.push("--port-range", message);
            1..=1
        });
        errors.into_result(MachineConfig {
            port_range,
            cluster_url: self
                .cluster_url
                .map(|u| u.trim_end_matches('/').to_string()),
            zone: self.zone,
            advertise_address: self.advertise_address,
            addr: SocketAddr::new(self.bind, self.port),
            state_dir: self.state_dir,
            machine_id,
            hostname,
            capacity_cpu,
            capacity_mem_mb,
            overcommit: self.overcommit,
            on_exit: self.on_exit,
            tasksitter_bin: tasksitter_bin.unwrap_or_default(),
            limits_backend: self.limits_backend,
            token,
            address_file: self.address_file,
            deploy_retry_base: std::time::Duration::from_millis(self.deploy_retry_base_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!(parse_port_range("20000-20999"), Ok(20000..=20999));
        assert_eq!(parse_port_range("8080-8080"), Ok(8080..=8080));
        for bad in ["", "20000", "0-10", "10-9", "1-65536", "a-b", "-5"] {
            let error = parse_port_range(bad).unwrap_err();
            assert!(error.contains("FIRST-LAST"), "{bad}: {error}");
        }
    }
}
