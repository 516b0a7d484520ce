//! Harness for the end-to-end tests: finds the real binaries (built before
//! the tests), boots a clustersitter with the local provider in a temp dir,
//! and talks to it over HTTP and through the `cerebro` CLI. Dropping a
//! cluster kills every process started under its temp dir (local machines
//! live in their own sessions by design, so nothing else would).

use cerebro_client::{ClientError, ClusterClient, HttpClient};
use cerebro_types::cluster::{InstanceState, JobView, MachineView};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod artifacts;
pub mod bind;
pub mod dns;
pub mod dns_scenario;
pub mod dynect;
pub mod moto;
pub mod watchdog;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// [`wait_for`] for async probes: polls `probe` every 20 ms until it
/// answers, failing the test after `TIMEOUT` with `what`.
pub async fn wait_for_async<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `probe` every 20 ms until it answers; fails the test after
/// `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll_for(timeout, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`wait_for`] that answers `None` after `timeout` instead of failing:
/// for a drop that must go on, or a test that checks something never happens.
pub fn poll_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The binaries the tests start, which `cargo test` does not build for a
/// test of another package.
const WORKSPACE_BINARIES: [&str; 4] = ["tasksitter", "machinesitter", "clustersitter", "cerebro"];

/// The directory holding the workspace's binaries: target/<profile>/, beside
/// the test executable (target/<profile>/deps/<name>). They are built before
/// the tests (`cargo build --workspace --bins`, as scripts/test.sh does), not
/// from inside a test; one missing fails the test, naming that command.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let missing: Vec<&str> = WORKSPACE_BINARIES
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "{} missing from {}: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        missing.join(", "),
        dir.display()
    );
    dir
}

/// The workspace binary `name` (see [`bin_dir`]); only that one must have
/// been built, so a test that runs no clustersitter binary (the
/// machinesitter's, an in-process cluster's) does not need the AWS-linked
/// build of `cerebrod`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.is_file(),
        "{name} missing from {}: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
        path.parent().unwrap().display()
    );
    path
}

pub use cerebro_host::process::cmdline;

/// `NAME=VALUE` of process `pid`'s environment: the value, if it has `NAME`.
pub fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// True once `pid` has exited (a zombie counts as gone).
pub fn process_gone(pid: i32) -> bool {
    cerebro_host::process::start_ticks(pid)
        .is_none_or(|ticks| !cerebro_host::process::is_alive(pid, ticks))
}

/// Live processes whose command line satisfies `matches`.
pub use cerebro_host::process::find_pids as processes;

/// The signals tests send, so a test crate needs no libc of its own.
pub use libc::{SIGKILL, SIGTERM};

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process the test started.
    unsafe { libc::kill(pid, signal) };
}

/// Live processes with an argument naming `dir` or a path below it (also
/// as `--flag=DIR/...`; test dirs are unique temp dirs).
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let dir = dir.display().to_string();
    processes(|argv| argv.iter().any(|a| a.contains(&dir)))
}

/// SIGKILLs every process under `dir`, a few rounds, since a dying
/// supervisor may still start one.
pub fn kill_processes_under(dir: &Path) {
    for _ in 0..3 {
        for pid in processes_under(dir) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// SIGKILLs every process under `dir` and every descendant of one (a
/// workload names no such path), until none is left under it: what a
/// powered-off machine whose programs all live under `dir` would leave.
pub fn kill_tree_under(dir: &Path) {
    for _ in 0..5 {
        let roots = processes_under(dir);
        if roots.is_empty() {
            return;
        }
        // Collected before any dies, while the workloads are still children
        // of their tasksitters rather than orphans of init.
        let mut all = roots.clone();
        for &root in &roots {
            all.extend(cerebro_host::proctree::descendants(root, &[]));
        }
        for pid in all {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// A daemon process a test starts, kills and starts again; killed on drop.
#[derive(Default)]
pub struct Daemon(Option<Child>);

impl Daemon {
    /// Starts `command` (see [`spawn_listening`]); returns the address it listens on.
    pub fn start(&mut self, command: &mut Command, address_file: &Path, what: &str) -> String {
        let (child, address) = spawn_listening(command, address_file, what);
        self.0 = Some(child);
        address
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// Forgets a child that has exited.
    pub fn exited(&mut self) {
        self.0 = None;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Workload processes `sleep MARKER` (the marker makes each test's workloads unique).
pub fn workloads(marker: &str) -> Vec<i32> {
    processes(|argv| {
        argv.first().is_some_and(|a| a.ends_with("sleep"))
            && argv.get(1).is_some_and(|a| a == marker)
    })
}

/// Spawns a daemon started with `--address-file ADDRESS_FILE` and waits
/// until it has written the address it listens on; fails the test if it
/// exits first.
pub fn spawn_listening(command: &mut Command, address_file: &Path, what: &str) -> (Child, String) {
    let _ = std::fs::remove_file(address_file);
    let mut child = command
        .arg("--address-file")
        .arg(address_file)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let address = wait_for(TIMEOUT, &format!("{what} to listen"), || {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("{what} exited at start: {exit}");
        }
        std::fs::read_to_string(address_file)
            .ok()
            .filter(|a| !a.is_empty())
    });
    (child, address)
}

pub struct Cluster {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
    pub base_url: String,
    pub http: reqwest::blocking::Client,
    pub token: Option<String>,
    config_path: PathBuf,
    /// Extra environment of the clustersitter ([`ClusterOptions::env`]).
    env: Vec<(String, String)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.daemon.kill9();
        kill_processes_under(self.dir.path());
    }
}

/// Options for a test cluster; `toml_extra` is appended to the config file.
pub struct ClusterOptions {
    /// `cluster_name` ("test"); cloud providers tag their machines with it.
    pub cluster_name: &'static str,
    /// The port it listens on; 0 (the default): one the OS picks, anew at
    /// every boot.
    pub port: u16,
    /// The local provider's zones (unused with `provider`).
    pub zones: Vec<&'static str>,
    pub machine_cpu: f64,
    pub machine_mem: f64,
    pub idle_limit: u32,
    /// Missed polls before a machine is unreachable (3).
    pub failure_threshold: u32,
    /// The cluster's token; `None`: the one it generates at first start
    /// (read from its state dir), or none at all with `insecure`.
    pub token: Option<&'static str>,
    /// Runs the cluster open (`insecure = true`): no token anywhere.
    pub insecure: bool,
    pub toml_extra: String,
    /// The whole `[provider]` section (its header and its sub-tables, e.g.
    /// `[provider.ec2.zones.aws-us-west-2a]`), in place of the local
    /// provider the harness writes from `zones`, `machine_cpu` and
    /// `machine_mem`. It ends the config file.
    pub provider: Option<String>,
    /// Extra environment variables of the clustersitter at every boot
    /// (e.g. `AWS_ENDPOINT_URL` and test credentials for moto).
    pub env: Vec<(String, String)>,
    /// The config's `recipe_dirs`: where dotted `deployment_recipe` names
    /// are looked up (absolute, or relative to the config file, which
    /// lives in the cluster's temp dir). Empty: the key is left out, so
    /// only the recipes shipped with Cerebro are found.
    pub recipe_dirs: Vec<PathBuf>,
    /// The whole `[dns]` section (with its header). `None`: with the
    /// local provider, the embedded server on a free port
    /// (`listen = "127.0.0.1:0"`, so clusters in parallel never share
    /// one; see [`Cluster::dns_status`] for where it listens); with a
    /// custom `provider`, no section.
    pub dns: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            cluster_name: "test",
            port: 0,
            zones: vec!["zone-a", "zone-b"],
            machine_cpu: 2.0,
            machine_mem: 512.0,
            idle_limit: 1,
            failure_threshold: 3,
            token: None,
            insecure: false,
            toml_extra: String::new(),
            provider: None,
            env: Vec::new(),
            recipe_dirs: Vec::new(),
            dns: None,
        }
    }
}

impl Cluster {
    /// Writes the config of `options` and boots the clustersitter on it.
    pub fn start(options: ClusterOptions) -> Self {
        let mut cluster = Self::new(options);
        cluster.boot();
        cluster
    }

    /// Writes the config of `options` in a fresh temp dir without starting
    /// anything: for a test that boots it itself (e.g. to see it refused).
    pub fn new(options: ClusterOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("cluster.toml");
        let zones: Vec<String> = options.zones.iter().map(|z| format!("\"{z}\"")).collect();
        let mut config = format!(
            "cluster_name = \"{}\"\nport = {}\nstate_dir = \"state\"\npoll_interval = \"200ms\"\nfailure_threshold = {}\n\
             idle_limit = {}\nmin_healthy = \"1s\"\n{}\n",
            options.cluster_name,
            options.port,
            options.failure_threshold,
            options.idle_limit,
            options.toml_extra
        );
        if let Some(token) = options.token {
            std::fs::write(dir.path().join("token"), token).unwrap();
            config.push_str("token_file = \"token\"\n");
        }
        if options.insecure {
            config.push_str("insecure = true\n");
        }
        if !options.recipe_dirs.is_empty() {
            // As TOML strings: JSON's escaping is a subset of TOML's basic strings.
            let dirs: Vec<String> = options
                .recipe_dirs
                .iter()
                .map(|d| serde_json::Value::from(d.display().to_string()).to_string())
                .collect();
            config.push_str(&format!("recipe_dirs = [{}]\n", dirs.join(", ")));
        }
        match (&options.dns, &options.provider) {
            (Some(section), _) => {
                config.push_str(section);
                config.push('\n');
            }
            (None, None) => {
                config.push_str("[dns]\nkind = \"embedded\"\nlisten = \"127.0.0.1:0\"\n")
            }
            (None, Some(_)) => {}
        }
        match &options.provider {
            Some(section) => config.push_str(section),
            None => config.push_str(&format!(
                "[provider]\nkind = \"local\"\nzones = [{}]\nmachine_cpu = {}\nmachine_mem = {}\nmax_machines = 12\nmachinesitter_bin = \"{}\"\n",
                zones.join(", "),
                options.machine_cpu,
                options.machine_mem,
                bin("machinesitter").display()
            )),
        }
        std::fs::write(&config_path, config).unwrap();
        Cluster {
            daemon: Daemon::default(),
            dir,
            base_url: String::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token: options.token.map(str::to_string),
            config_path,
            env: options.env,
        }
    }

    /// The files of a one-zone local cluster (`zone-a`, machines of 2
    /// cores and 512 MB, the token `token`, machines stopped with the
    /// cluster) for a test that serves the clustersitter in its own
    /// process (`clustersitter::serve` on `clustersitter::config::Cli`
    /// `--config` [`Cluster::config_path`]); dropping it kills what its
    /// machines started.
    pub fn in_process(name: &'static str, token: &'static str, options: ClusterOptions) -> Self {
        let options = ClusterOptions {
            cluster_name: name,
            zones: vec!["zone-a"],
            token: Some(token),
            toml_extra: format!("on_exit = \"stop\"\n{}", options.toml_extra),
            ..options
        };
        // On a thread of its own: an async test may call this, and the
        // blocking HTTP client cannot be built inside a runtime.
        std::thread::spawn(move || Self::new(options))
            .join()
            .expect("the cluster's files are written")
    }

    /// The config file the clustersitter reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The clustersitter's command on this cluster's config, with its environment.
    fn clustersitter_command(&self) -> Command {
        let mut command = Command::new(bin("clustersitter"));
        command
            .arg("--config")
            .arg(&self.config_path)
            // Where it records a generated token for the CLI: the test's dir,
            // as `cli` runs the CLI with the same config home.
            .env("XDG_CONFIG_HOME", self.config_home())
            .env_remove("CEREBRO_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Boots the clustersitter expecting it to refuse to start: waits (at
    /// most [`TIMEOUT`]) for it to exit and answers its exit code and
    /// what it wrote on stderr. Fails the test if it starts serving.
    pub fn boot_refused(&self) -> (Option<i32>, String) {
        let stderr_path = self.dir.path().join("refused.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let address_file = self.dir.path().join("address");
        let _ = std::fs::remove_file(&address_file);
        let mut child = self
            .clustersitter_command()
            .arg("--address-file")
            .arg(&address_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the clustersitter");
        let exit = poll_for(TIMEOUT, || {
            if address_file.exists() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the clustersitter started serving: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            child.try_wait().unwrap()
        });
        let Some(exit) = exit else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the clustersitter neither served nor exited within {TIMEOUT:?}");
        };
        (exit.code(), std::fs::read_to_string(&stderr_path).unwrap())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the clustersitter on this cluster's config and state. A
    /// cluster started without a token (and not insecure) generated one in
    /// its state dir; from then on the harness presents that one.
    pub fn boot(&mut self) {
        let mut command = self.clustersitter_command();
        let address = self.daemon.start(
            &mut command,
            &self.dir.path().join("address"),
            "the clustersitter",
        );
        self.base_url = format!("http://{address}");
        if self.token.is_none() {
            self.token = std::fs::read_to_string(self.generated_token_file())
                .ok()
                .map(|t| t.trim().to_string());
        }
    }

    /// The token a cluster started without one generated at first start.
    pub fn generated_token_file(&self) -> PathBuf {
        self.dir.path().join("state").join("cluster-token")
    }

    /// Starts a machinesitter by hand (not by the provider), with state in
    /// `dir` under the cluster's temp dir and the cluster's token; with
    /// `register` it registers itself with this cluster. Returns the child
    /// and the address it listens on.
    pub fn start_machine(
        &self,
        id: &str,
        zone: &str,
        dir: &str,
        register: bool,
    ) -> (Child, String) {
        let mut command = Command::new(bin("machinesitter"));
        command
            .args([
                "--port",
                "0",
                "--machine-id",
                id,
                "--zone",
                zone,
                "--state-dir",
            ])
            .arg(self.path().join(dir))
            .arg("--token-file")
            .arg(self.generated_token_file());
        if register {
            command.args(["--cluster-url", &self.base_url]);
        }
        spawn_listening(
            &mut command,
            &self.path().join(format!("{dir}.address")),
            id,
        )
    }

    /// The config home (`XDG_CONFIG_HOME`) of this cluster's processes
    /// and of the CLI the tests run.
    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> Value {
        let (code, body) = self.request("GET", path, None);
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// `GET /api/v1/dns`: what the DNS reconciler wants, last did, and
    /// where an embedded server listens.
    pub fn dns_status(&self) -> cerebro_types::dns::DnsStatus {
        serde_json::from_value(self.get("/api/v1/dns")).expect("a DNS status")
    }

    pub fn put_job(&self, job: &Value) -> (u16, Value) {
        let name = job["task_configuration"]["name"].as_str().unwrap();
        self.request(
            "PUT",
            &format!("/api/v1/jobs/{}", encode(name)),
            Some(&job.to_string()),
        )
    }

    /// Runs one call of the typed client against this cluster, to its answer.
    ///
    /// Each call gets its own thread and runtime (and so its own client
    /// pool): the harness is blocking, and some tests call it from inside
    /// their own async runtime.
    pub fn api<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        T: Send,
        F: FnOnce(ClusterClient) -> Fut + Send,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the client");
                    runtime.block_on(async {
                        let http = HttpClient::new(Duration::from_secs(30), 1);
                        call(ClusterClient::new(http, &self.base_url, self.token.clone())).await
                    })
                })
                .join()
                .expect("the client's thread")
        })
    }

    /// `GET /api/v1/jobs/{name}`, typed; fails the test on any error.
    pub fn job_view(&self, name: &str) -> JobView {
        self.api(|c| async move { c.job(name).await })
            .unwrap_or_else(|e| panic!("job '{name}': {e}"))
    }

    /// Every job, typed.
    pub fn jobs(&self) -> Vec<JobView> {
        self.api(|c| async move { c.jobs().await })
            .unwrap_or_else(|e| panic!("jobs: {e}"))
    }

    /// Every machine, typed.
    pub fn machine_views(&self) -> Vec<MachineView> {
        self.api(|c| async move { c.machines().await })
            .unwrap_or_else(|e| panic!("machines: {e}"))
    }

    /// The job as JSON, for tests that check its fields by name; read
    /// through the typed client, so it must also decode as a `JobView`.
    pub fn job(&self, name: &str) -> Value {
        serde_json::to_value(self.job_view(name)).expect("a job view as JSON")
    }

    /// The instances of `name`, if there are `count` and every one runs: a
    /// probe for `wait_for`, so a caller waiting for more than that keeps
    /// one timeout.
    pub fn job_running(&self, name: &str, count: usize) -> Option<Vec<Value>> {
        let job = self.job_view(name);
        (job.instances.len() == count
            && job
                .instances
                .iter()
                .all(|i| i.state == InstanceState::Running && i.pid.is_some()))
        .then(|| {
            job.instances
                .iter()
                .map(|i| serde_json::to_value(i).expect("an instance as JSON"))
                .collect()
        })
    }

    /// Waits until every desired instance of `name` runs; returns the instances.
    pub fn wait_job_running(&self, name: &str, count: usize) -> Vec<Value> {
        wait_for(
            TIMEOUT,
            &format!("{count} instances of '{name}' to run"),
            || self.job_running(name, count),
        )
    }

    /// Every machine as JSON, for tests that check fields by name.
    pub fn machines(&self) -> Vec<Value> {
        self.machine_views()
            .iter()
            .map(|m| serde_json::to_value(m).expect("a machine view as JSON"))
            .collect()
    }

    /// Runs the CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(bin("cerebro"));
        command
            .arg("--cluster")
            .arg(&self.base_url)
            .args(args)
            // The CLI remembers its cluster; keep that inside the test's dir.
            .env("XDG_CONFIG_HOME", self.config_home())
            .env_remove("CEREBRO_CLUSTER");
        if let Some(token) = &self.token {
            command.env("CEREBRO_TOKEN", token);
        }
        command.output().expect("run cerebro")
    }

    /// Kills a local machine the hard way: its machinesitter and every process under its dir.
    pub fn kill_machine(&self, machine: &str) {
        for pid in processes_under(&self.dir.path().join("state").join("machines").join(machine)) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// The `Content-Type` of an answer, `""` when it has none.
pub fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Percent-encodes a name for a URL path.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A job running `sleep MARKER` with the given layout.
pub fn job(name: &str, marker: &str, cpu: f64, layout: Value) -> Value {
    serde_json::json!({
        "persistent": true,
        "deployment_layout": layout,
        "task_configuration": {"name": name, "command": format!("sleep {marker}"), "cpu": cpu, "mem": 20, "ensure_alive": true, "stop_timeout": 2},
    })
}

/// `recipe_dirs` holding the example recipes (`examples/recipes`), where
/// the seed job example's `mystartup.recipes.deploy` lives: for a cluster
/// that loads the seed.
pub fn example_recipe_dirs() -> Vec<PathBuf> {
    vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/recipes")]
}

/// A copy of the checked-in state files under `testdata/NAME` (written by
/// an older version of the daemons), in a fresh temp dir a test may change.
pub fn fixture_dir(name: &str) -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in
        std::fs::read_dir(&source).unwrap_or_else(|e| panic!("fixture {}: {e}", source.display()))
    {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Fails unless everything `old` holds is still in `new` with the same
/// value: every object key (recursively), every array element in order, so
/// a newer type may add fields but never drop or change what an old file said.
pub fn assert_nothing_lost(old: &Value, new: &Value, at: &str) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, value) in old {
                let inner = format!("{at}.{key}");
                let kept = new
                    .get(key)
                    .unwrap_or_else(|| panic!("{inner} was lost: it held {value}"));
                assert_nothing_lost(value, kept, &inner);
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            assert_eq!(old.len(), new.len(), "{at}: element count changed");
            for (i, (old, new)) in old.iter().zip(new).enumerate() {
                assert_nothing_lost(old, new, &format!("{at}[{i}]"));
            }
        }
        // Numbers compare by value: 32 and 32.0 are the same megabytes.
        (Value::Number(old), Value::Number(new)) => {
            assert_eq!(old.as_f64(), new.as_f64(), "{at} changed");
        }
        _ => assert_eq!(old, new, "{at} changed"),
    }
}

/// Fails unless every line of the events journal at `path` (written by an
/// older version) loads as a `T` with nothing lost.
pub fn assert_journal_loads<T>(path: &Path)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let lines: Vec<Value> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let log = cerebro_web::event_log::EventLog::<T>::journaled(path.to_path_buf(), 10_000);
    assert_eq!(log.iter().len(), lines.len(), "every journaled event loads");
    for (old, event) in lines.iter().zip(log.iter()) {
        assert_nothing_lost(old, &serde_json::to_value(event).unwrap(), "event");
    }
}
