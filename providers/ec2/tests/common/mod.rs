//! The boot harness of the EC2 tests: it stands in for the VMs behind
//! moto's instances (issue 12, "Tests").
//!
//! [`Ec2`] reads and changes moto through aws-sdk-ec2 (the real wire
//! protocol, one client per region) from plain synchronous tests.
//! [`BootHarness`] watches moto for the instances of one cluster and
//! "boots" each running one by running its real user data (fetched back
//! with DescribeInstanceAttribute) with `sh` in a sandbox directory that
//! stands for its root file system: the script's download, digest check and
//! detached start run as on a VM, and its machinesitter registers on
//! loopback. An instance that becomes stopped or terminated in moto loses
//! every process of its sandbox; [`BootHarness::make_unreachable`] kills
//! only the machinesitter while moto still says `running`. [`Proxy`] sits
//! between the clustersitter and moto to lose or hold RunInstances answers
//! and to time the launches.

#![allow(dead_code)] // each test binary uses a part

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::Filter;
use base64::Engine;
use cerebro_tests::moto::SharedMoto;
use cerebro_tests::{kill, kill_tree_under, Cluster, ClusterOptions};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The instance types the tests allow, as `(name, vCPUs, MiB)` (EC2's
/// published sizes), smallest memory first: the order in which the rule
/// "the smallest allowed type holding it" picks.
pub const TYPES: [(&str, f64, f64); 6] = [
    ("t3.micro", 2.0, 1024.0),
    ("t3.small", 2.0, 2048.0),
    ("t3.medium", 2.0, 4096.0),
    ("t3.large", 2.0, 8192.0),
    ("m5.xlarge", 4.0, 16384.0),
    ("m5.2xlarge", 8.0, 32768.0),
];

/// The smallest of `allowed` (names from [`TYPES`]) with at least `cpu`
/// vCPUs and `mem_mb` MiB.
pub fn smallest_type(allowed: &[&str], cpu: f64, mem_mb: f64) -> Option<&'static str> {
    TYPES
        .iter()
        .filter(|(name, ..)| allowed.contains(name))
        .find(|(_, vcpus, mib)| *vcpus >= cpu - 1e-9 && *mib >= mem_mb - 1e-9)
        .map(|(name, ..)| *name)
}

/// The region of an availability zone (`us-west-2a` -> `us-west-2`).
pub fn region_of(availability_zone: &str) -> &str {
    availability_zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

/// One instance as moto's DescribeInstances tells it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub region: String,
    pub availability_zone: String,
    /// EC2's state name: `pending`, `running`, `shutting-down`,
    /// `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub instance_type: String,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The Cerebro machine id it was launched for (`cerebro:machine-id`).
    pub fn machine_id(&self) -> &str {
        self.tag("cerebro:machine-id").unwrap_or("")
    }

    /// Neither terminated nor on its way there, nor stopped: it costs and
    /// may run a machine.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "running")
    }
}

/// moto's EC2 through aws-sdk-ec2, for synchronous tests: it owns a
/// runtime and answers every call blocking. Panics on an API error (the
/// harness's own calls to moto must work).
pub struct Ec2 {
    runtime: tokio::runtime::Runtime,
    endpoint: String,
}

impl Ec2 {
    pub fn new(endpoint: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the EC2 client");
        Ec2 {
            runtime,
            endpoint: endpoint.to_string(),
        }
    }

    /// A client of `region` at moto, with test credentials.
    fn client(&self, region: &str) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    /// Every instance tagged `cerebro:cluster` = `cluster` in `regions`,
    /// in any state (moto keeps terminated ones listed).
    pub fn try_instances(&self, regions: &[&str], cluster: &str) -> Result<Vec<Instance>, String> {
        self.runtime.block_on(async {
            let mut found = Vec::new();
            for region in regions {
                let pages = self
                    .client(region)
                    .describe_instances()
                    .filters(
                        Filter::builder()
                            .name("tag:cerebro:cluster")
                            .values(cluster)
                            .build(),
                    )
                    .into_paginator()
                    .send()
                    .collect::<Vec<_>>()
                    .await;
                for page in pages {
                    let page = page.map_err(|e| format!("DescribeInstances in {region}: {e:?}"))?;
                    for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                        found.push(Instance {
                            id: instance.instance_id().unwrap_or_default().to_string(),
                            region: region.to_string(),
                            availability_zone: instance
                                .placement()
                                .and_then(|p| p.availability_zone())
                                .unwrap_or_default()
                                .to_string(),
                            state: instance
                                .state()
                                .and_then(|s| s.name())
                                .map(|n| n.as_str().to_string())
                                .unwrap_or_default(),
                            instance_type: instance
                                .instance_type()
                                .map(|t| t.as_str().to_string())
                                .unwrap_or_default(),
                            tags: instance
                                .tags()
                                .iter()
                                .map(|t| {
                                    (
                                        t.key().unwrap_or_default().to_string(),
                                        t.value().unwrap_or_default().to_string(),
                                    )
                                })
                                .collect(),
                        });
                    }
                }
            }
            Ok(found)
        })
    }

    /// [`Ec2::try_instances`], failing the test on an error.
    pub fn instances(&self, regions: &[&str], cluster: &str) -> Vec<Instance> {
        self.try_instances(regions, cluster)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The live (pending or running) instances of `cluster`.
    pub fn live(&self, regions: &[&str], cluster: &str) -> Vec<Instance> {
        let mut live = self.instances(regions, cluster);
        live.retain(Instance::is_live);
        live
    }

    /// The raw user data of instance `id` (DescribeInstanceAttribute,
    /// attribute `userData`, base64-decoded); `None` when it has none.
    pub fn user_data(&self, region: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        self.runtime.block_on(async {
            let answer = self
                .client(region)
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                .send()
                .await
                .map_err(|e| format!("DescribeInstanceAttribute {id}: {e:?}"))?;
            match answer.user_data().and_then(|v| v.value()) {
                None | Some("") => Ok(None),
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map(Some)
                    .map_err(|e| format!("user data of {id} is not base64: {e}")),
            }
        })
    }

    /// RunInstances of one t3.micro of `AMI` in `availability_zone` with
    /// `tags` and a user data that does nothing, as another tool (or an
    /// older config of the cluster) would; answers its instance id.
    pub fn launch(&self, availability_zone: &str, tags: &[(&str, &str)]) -> String {
        use aws_sdk_ec2::types::{Placement, ResourceType, Tag, TagSpecification};
        let region = region_of(availability_zone);
        self.runtime.block_on(async {
            let tags = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect();
            let output = self
                .client(region)
                .run_instances()
                .image_id(AMI)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .placement(
                    Placement::builder()
                        .availability_zone(availability_zone)
                        .build(),
                )
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .set_tags(Some(tags))
                        .build(),
                )
                .user_data(base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\nexit 0\n"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("RunInstances in {availability_zone}: {e:?}"));
            output.instances()[0]
                .instance_id()
                .expect("an instance id")
                .to_string()
        })
    }

    /// TerminateInstances, as a person at the console would.
    pub fn terminate(&self, region: &str, id: &str) {
        self.runtime.block_on(async {
            self.client(region)
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("TerminateInstances {id}: {e:?}"));
        });
    }
}

/// One instance the harness booted: its sandbox ("root file system") and
/// the run of its user data.
struct Vm {
    sandbox: PathBuf,
    /// The user-data script while it runs, and when it started.
    boot: Option<(Child, Instant)>,
    /// How the script ended (`Some(true)`: exit 0).
    booted: Option<bool>,
    /// Its instance is stopped or terminated: every process of it is killed.
    down: bool,
}

#[derive(Default)]
struct Vms {
    by_id: BTreeMap<String, Vm>,
    /// What went wrong in a boot: a user-data script that failed, user data
    /// that could not be read. A test fails on any ([`BootHarness::assert_no_failures`]).
    failures: Vec<String>,
}

/// VMs for moto's instances: see the module doc. Everything it started is
/// killed on drop.
pub struct BootHarness {
    vms: Arc<Mutex<Vms>>,
    dir: tempfile::TempDir,
    stop: Option<mpsc::Sender<()>>,
    watcher: Option<JoinHandle<()>>,
}

/// How often the harness looks at moto: a VM "boots" within about this.
const WATCH_EVERY: Duration = Duration::from_millis(150);

/// How long one user-data script may run (it downloads two binaries from
/// the clustersitter and starts one).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

impl BootHarness {
    /// Starts watching the instances tagged `cerebro:cluster` = `cluster`
    /// in `regions` at moto's `endpoint`.
    pub fn start(endpoint: &str, cluster: &str, regions: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cerebro-vms-")
            .tempdir()
            .expect("a temp dir for the VMs");
        let vms = Arc::new(Mutex::new(Vms::default()));
        let (stop, stopped) = mpsc::channel();
        let watcher = {
            let vms = vms.clone();
            let root = dir.path().to_path_buf();
            let endpoint = endpoint.to_string();
            let cluster = cluster.to_string();
            let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
            std::thread::spawn(move || {
                let ec2 = Ec2::new(&endpoint);
                let regions: Vec<&str> = regions.iter().map(String::as_str).collect();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
                    watch_once(&ec2, &regions, &cluster, &root, &vms);
                }
            })
        };
        BootHarness {
            vms,
            dir,
            stop: Some(stop),
            watcher: Some(watcher),
        }
    }

    /// The sandbox of instance `id`: `CEREBRO_ROOT` of its user data.
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// The pid of instance `id`'s machinesitter, from the pid file its
    /// user data wrote (`$CEREBRO_ROOT/run/cerebro/machinesitter.pid`).
    pub fn machinesitter_pid(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.sandbox(id).join("run/cerebro/machinesitter.pid"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// The ids of the instances whose user data ran to exit 0.
    pub fn booted(&self) -> Vec<String> {
        let vms = self.vms.lock().unwrap();
        vms.by_id
            .iter()
            .filter(|(_, vm)| vm.booted == Some(true))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether instance `id` was seen stopped or terminated and its
    /// processes were killed.
    pub fn is_down(&self, id: &str) -> bool {
        self.vms
            .lock()
            .unwrap()
            .by_id
            .get(id)
            .is_some_and(|vm| vm.down)
    }

    /// The VM of a running instance stops answering: SIGKILL to its
    /// machinesitter only (its tasksitters and workloads go on, and moto
    /// still says `running`). Fails the test if it has none.
    pub fn make_unreachable(&self, id: &str) {
        let pid = self
            .machinesitter_pid(id)
            .unwrap_or_else(|| panic!("instance {id} has no machinesitter pid file"));
        kill(pid, cerebro_tests::SIGKILL);
    }

    /// Fails the test if any boot went wrong, showing what.
    pub fn assert_no_failures(&self) {
        let vms = self.vms.lock().unwrap();
        assert!(
            vms.failures.is_empty(),
            "boots failed:\n{}",
            vms.failures.join("\n")
        );
    }
}

impl Drop for BootHarness {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        for vm in vms.by_id.values_mut() {
            if let Some((mut boot, _)) = vm.boot.take() {
                let _ = boot.kill();
                let _ = boot.wait();
            }
        }
        kill_tree_under(self.dir.path());
    }
}

/// One look at moto: boots the running instances not seen before, notes
/// the user-data scripts that ended, and powers off the VMs of instances
/// that are stopped, terminated or gone.
fn watch_once(ec2: &Ec2, regions: &[&str], cluster: &str, root: &Path, vms: &Mutex<Vms>) {
    let instances = match ec2.try_instances(regions, cluster) {
        Ok(instances) => instances,
        // moto may be between tests (reset) or busy: look again next time.
        Err(_) => return,
    };
    let mut vms = vms.lock().unwrap();
    for instance in &instances {
        if instance.state == "running" && !vms.by_id.contains_key(&instance.id) {
            let sandbox = root.join(&instance.id);
            let boot = boot(ec2, instance, &sandbox);
            let vm = match boot {
                Ok(child) => Vm {
                    sandbox,
                    boot: Some((child, Instant::now())),
                    booted: None,
                    down: false,
                },
                Err(error) => {
                    vms.failures.push(format!("{}: {error}", instance.id));
                    Vm {
                        sandbox,
                        boot: None,
                        booted: Some(false),
                        down: false,
                    }
                }
            };
            vms.by_id.insert(instance.id.clone(), vm);
        }
    }
    let Vms { by_id, failures } = &mut *vms;
    for (id, vm) in by_id.iter_mut() {
        if let Some((child, started)) = &mut vm.boot {
            // A script that hangs (a download that never ends) fails its boot.
            if started.elapsed() > BOOT_TIMEOUT {
                let _ = child.kill();
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    vm.boot = None;
                    vm.booted = Some(status.success());
                    if !status.success() {
                        failures.push(format!(
                            "{id}: its user data exited {status}; its output:\n{}",
                            std::fs::read_to_string(
                                vm.sandbox.join("var/log/cloud-init-output.log")
                            )
                            .unwrap_or_default()
                        ));
                    }
                }
                Ok(None) => {}
                Err(error) => failures.push(format!("{id}: waiting for its user data: {error}")),
            }
        }
        let gone = instances
            .iter()
            .find(|i| &i.id == id)
            .is_none_or(|i| !i.is_live());
        if gone && !vm.down {
            if let Some((mut child, _)) = vm.boot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            kill_tree_under(&vm.sandbox);
            vm.down = true;
        }
    }
}

/// Writes the user data of `instance` into its sandbox and starts it with
/// `sh` as cloud-init would, with the harness's overrides: the sandbox as
/// root, the machinesitter on 127.0.0.1 and a port of its choosing,
/// advertising the address it binds.
fn boot(ec2: &Ec2, instance: &Instance, sandbox: &Path) -> Result<Child, String> {
    let script = ec2
        .user_data(&instance.region, &instance.id)?
        .ok_or("it has no user data")?;
    let cloud = sandbox.join("var/lib/cloud");
    let log_dir = sandbox.join("var/log");
    for dir in [&cloud, &log_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let path = cloud.join("user-data.sh");
    std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
    let log = std::fs::File::create(log_dir.join("cloud-init-output.log"))
        .map_err(|e| format!("the boot log: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("the boot log: {e}"))?;
    Command::new("sh")
        .arg(&path)
        .current_dir(sandbox)
        .env("CEREBRO_ROOT", sandbox)
        .env("CEREBRO_BIND", "127.0.0.1")
        .env("CEREBRO_PORT", "0")
        .env("CEREBRO_ADVERTISE_ADDRESS", "")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("sh {}: {e}", path.display()))
}

/// What [`Proxy`] does with a RunInstances call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Forwards every request and its answer.
    Pass = 0,
    /// Forwards the next RunInstances to moto and closes the client's
    /// connection without its answer (the instance exists; the caller
    /// never learns it); then passes everything.
    LoseNextRunInstancesAnswer = 1,
    /// Forwards each RunInstances to moto and holds its answer until the
    /// mode changes; then closes the connection without it.
    HoldRunInstancesAnswers = 2,
    /// As [`ProxyMode::LoseNextRunInstancesAnswer`], then refuses every
    /// request (closes its connection unanswered) for the outage given to
    /// [`Proxy::set_outage`]; then passes everything.
    LoseNextRunInstancesAnswerThenOutage = 3,
}

struct ProxyState {
    mode: AtomicU8,
    /// When each RunInstances reached the proxy, in order.
    launches: Mutex<Vec<Instant>>,
    /// Answers withheld or lost so far.
    lost: Mutex<usize>,
    changed: Condvar,
    stop: AtomicBool,
    /// How long the outage after a lost answer lasts.
    outage: Mutex<Duration>,
    /// Until when requests are refused.
    refuse_until: Mutex<Option<Instant>>,
    /// Requests refused so far.
    refused: Mutex<usize>,
}

/// An HTTP proxy on 127.0.0.1 in front of moto, for the clustersitter's
/// `AWS_ENDPOINT_URL`: it counts and times RunInstances calls (Action in
/// the form body) and loses or holds their answers on demand. Every
/// answer it passes closes its connection. Stops on drop.
pub struct Proxy {
    state: Arc<ProxyState>,
    port: u16,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(moto_port: u16, mode: ProxyMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            mode: AtomicU8::new(mode as u8),
            launches: Mutex::new(Vec::new()),
            lost: Mutex::new(0),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            outage: Mutex::new(Duration::ZERO),
            refuse_until: Mutex::new(None),
            refused: Mutex::new(0),
        });
        let acceptor = {
            let state = state.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if state.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(client, moto_port, &state);
                    });
                }
            })
        };
        Proxy {
            state,
            port,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
        let _lost = self.state.lost.lock().unwrap();
        self.state.changed.notify_all();
    }

    /// When each RunInstances call arrived, in order.
    pub fn launches(&self) -> Vec<Instant> {
        self.state.launches.lock().unwrap().clone()
    }

    /// How long [`ProxyMode::LoseNextRunInstancesAnswerThenOutage`]'s
    /// outage lasts.
    pub fn set_outage(&self, outage: Duration) {
        *self.state.outage.lock().unwrap() = outage;
    }

    /// How many requests the outage refused.
    pub fn refused(&self) -> usize {
        *self.state.refused.lock().unwrap()
    }

    /// How many RunInstances answers were lost or are held.
    pub fn lost(&self) -> usize {
        *self.state.lost.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.set_mode(ProxyMode::Pass);
        // Wakes the acceptor so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one HTTP/1.1 request (head and a Content-Length body); `None` at
/// the end of the connection.
fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    client.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// Serves one client connection: each request goes to moto on a
/// connection of its own (`Connection: close`), and its answer back with
/// `Connection: close`.
fn serve(mut client: TcpStream, moto_port: u16, state: &ProxyState) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let Some((head, body)) = read_request(&mut client)? else {
        return Ok(());
    };
    let refusing = state
        .refuse_until
        .lock()
        .unwrap()
        .is_some_and(|until| Instant::now() < until);
    if refusing {
        *state.refused.lock().unwrap() += 1;
        return client.shutdown(Shutdown::Both);
    }
    let launch = String::from_utf8_lossy(&body).contains("Action=RunInstances");
    if launch {
        state.launches.lock().unwrap().push(Instant::now());
    }
    let mut lines = head.trim_end().lines();
    let mut forwarded = String::new();
    forwarded.push_str(lines.next().unwrap_or_default());
    forwarded.push_str("\r\n");
    for line in lines.filter(|l| {
        !l.to_ascii_lowercase().starts_with("connection:")
            && !l.to_ascii_lowercase().starts_with("keep-alive:")
    }) {
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut moto = TcpStream::connect(("127.0.0.1", moto_port))?;
    moto.set_read_timeout(Some(Duration::from_secs(60)))?;
    moto.write_all(forwarded.as_bytes())?;
    moto.write_all(&body)?;
    let mut answer = Vec::new();
    moto.read_to_end(&mut answer)?;
    if launch {
        let mode = state.mode.load(Ordering::SeqCst);
        if mode == ProxyMode::LoseNextRunInstancesAnswer as u8 {
            state.mode.store(ProxyMode::Pass as u8, Ordering::SeqCst);
            *state.lost.lock().unwrap() += 1;
            return client.shutdown(Shutdown::Both);
        }
        if mode == ProxyMode::LoseNextRunInstancesAnswerThenOutage as u8 {
            state.mode.store(ProxyMode::Pass as u8, Ordering::SeqCst);
            *state.lost.lock().unwrap() += 1;
            let outage = *state.outage.lock().unwrap();
            *state.refuse_until.lock().unwrap() = Some(Instant::now() + outage);
            return client.shutdown(Shutdown::Both);
        }
        if mode == ProxyMode::HoldRunInstancesAnswers as u8 {
            let mut lost = state.lost.lock().unwrap();
            *lost += 1;
            while state.mode.load(Ordering::SeqCst) == ProxyMode::HoldRunInstancesAnswers as u8 {
                lost = state.changed.wait(lost).unwrap();
            }
            drop(lost);
            return client.shutdown(Shutdown::Both);
        }
    }
    // The answer's own Connection header (if any) is replaced: this
    // connection ends with the answer.
    let text = String::from_utf8_lossy(&answer);
    let (answer_head, answer_body) = match text.find("\r\n\r\n") {
        Some(end) => (&answer[..end], &answer[end + 4..]),
        None => (&answer[..], &[][..]),
    };
    let answer_head = String::from_utf8_lossy(answer_head);
    let mut out = String::new();
    for line in answer_head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
    {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(answer_body)?;
    client.shutdown(Shutdown::Both)
}

/// The environment of a clustersitter that talks to EC2 at `endpoint`
/// (moto or a [`Proxy`]) with test credentials, never reading this host's
/// AWS files or instance metadata.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ENDPOINT_URL_EC2", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A `[provider]` section of kind `ec2` serving `zones` (`(zone, AMI)`,
/// the AMI set per zone), with at most `max_machines` and the allowed
/// `types`.
pub fn provider_section(max_machines: usize, types: &[&str], zones: &[(&str, &str)]) -> String {
    let types: Vec<String> = types.iter().map(|t| format!("\"{t}\"")).collect();
    let mut section = format!(
        "[provider]\nkind = \"ec2\"\nmax_machines = {max_machines}\n\n[provider.ec2]\ninstance_types = [{}]\ntags = {{ suite = \"cerebro-tests\" }}\n",
        types.join(", ")
    );
    for (zone, ami) in zones {
        section.push_str(&format!("\n[provider.ec2.zones.{zone}]\nami = \"{ami}\"\n"));
    }
    section
}

/// An Amazon Linux 2 AMI moto knows in every region (its default images).
pub const AMI: &str = "ami-04681a1dbd79675a5";

/// One EC2 test's world: moto (the shared server, reset, held for the
/// test), the VMs and a clustersitter. Fields drop in order: the cluster
/// first, then the VMs, then the turn at moto.
pub struct World {
    pub cluster: Cluster,
    pub vms: BootHarness,
    pub ec2: Ec2,
    pub regions: Vec<&'static str>,
    pub name: &'static str,
    pub moto: SharedMoto,
}

impl World {
    /// A cluster named `name` over `moto` (or over the proxy at `endpoint`
    /// when given), with `options`' other settings and `provider` as its
    /// `[provider]` section, booted, and the VMs watching `regions`.
    pub fn start(
        moto: SharedMoto,
        name: &'static str,
        regions: &[&'static str],
        provider: String,
        endpoint: Option<String>,
        options: ClusterOptions,
    ) -> Self {
        let endpoint = endpoint.unwrap_or_else(|| moto.url());
        let cluster = Cluster::start(ClusterOptions {
            cluster_name: name,
            provider: Some(provider),
            env: aws_env(&endpoint),
            ..options
        });
        World {
            cluster,
            vms: BootHarness::start(&moto.url(), name, regions),
            ec2: Ec2::new(&moto.url()),
            regions: regions.to_vec(),
            name,
            moto,
        }
    }

    /// Every instance of this cluster in moto, any state.
    pub fn instances(&self) -> Vec<Instance> {
        self.ec2.instances(&self.regions, self.name)
    }

    /// The live instances of this cluster in moto.
    pub fn live(&self) -> Vec<Instance> {
        self.ec2.live(&self.regions, self.name)
    }
}
