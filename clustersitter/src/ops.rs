//! The cluster's operations, one room for both edges: the JSON API
//! (`api.rs`) and the web UI (`ui/`) call these and map [`OpError`] to
//! their own answers. An operation validates, changes the desired state
//! under the lock, persists it and wakes the reconciler; only the instance
//! operations (restart, logs) talk to a machine.

use crate::cluster::{lock, SharedCluster, UpsertOutcome};
use crate::store::MachineRecord;
use cerebro_client::{ClientError, HttpClient, MachineClient};
use cerebro_types::cluster::{
    BinaryInfo, ClusterEvent, ClusterStatus, IdleLimitRequest, JobView, MachineView, PlanReply,
    RegisterRequest, RegisterResult, UpdateRequest,
};
use cerebro_types::deploy::InstanceDeployLog;
use cerebro_types::history::HistoryView;
use cerebro_types::job::JobSpec;
use cerebro_types::task_api::{LogQuery, TaskAction};
use cerebro_types::{LogChunk, LogStream, ValidationErrors};
use std::sync::Arc;
use tokio::sync::Notify;

/// Why an operation was refused or failed. Each edge decides what a kind
/// of failure looks like to its users (HTTP status, page).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The input is wrong; every problem is listed.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// No job by this name.
    #[error("no job named '{0}'")]
    NoSuchJob(String),
    /// No machine by this id.
    #[error("no machine '{0}'")]
    NoSuchMachine(String),
    /// No instance has number `index`; `numbers` are the job's, sorted.
    #[error(
        "job '{job}' has no instance {index}; its instances are {}",
        describe_numbers(numbers)
    )]
    NoSuchInstance {
        job: String,
        index: usize,
        numbers: Vec<usize>,
    },
    /// The instance has no machine yet.
    #[error("instance {index} of '{job}' is not placed yet")]
    NotPlaced { job: String, index: usize },
    /// The job does not want its instances running (stopped by request,
    /// or `auto_start: false` and never started): a restart would start
    /// one the cluster then counts as stopping.
    #[error("instance {index} of '{job}' is stopped (the job is stopped, or auto_start is false and it was never started): start the job first")]
    NotRunning { job: String, index: usize },
    /// The instance's machine (by id) has not registered an address yet.
    #[error("machine {0} has no address yet")]
    NoAddress(String),
    /// Placed, but its machine has not created the task yet.
    #[error("instance {index} of '{job}' is not on its machine yet; try again shortly")]
    NotOnMachineYet { job: String, index: usize },
    /// The machine does not run the task (by task name) yet.
    #[error("the machine does not run {0} yet")]
    TaskNotOnMachine(String),
    /// Other jobs (`followers`) link to the job, so it cannot go first.
    #[error("jobs linked to '{job}' must be removed first: {}", followers.join(", "))]
    HasFollowers { job: String, followers: Vec<String> },
    /// The machine (by id) registering was decommissioned by this cluster.
    #[error("machine '{0}' was decommissioned")]
    Decommissioned(String),
    /// The machine refused the request as the caller put it (a 4xx):
    /// `body` is the machine's own error, passed on to the caller.
    #[error("{}", .body.error)]
    MachineRefused {
        status: u16,
        body: cerebro_types::ErrorBody,
    },
    /// The machine (by id) did not answer, or failed; `reason` names no address.
    #[error("machine '{machine}' did not answer: {reason}")]
    MachineUnreachable { machine: String, reason: String },
    /// The change was made in memory but could not be saved.
    #[error("cannot persist the cluster state: {0}")]
    Persist(std::io::Error),
    /// No binary by this name is served (`served` lists those that are).
    #[error("no binary named '{name}' (served: {})", served.join(", "))]
    NoSuchBinary { name: String, served: Vec<String> },
    /// The binaries machines download were not found at start.
    #[error("the binaries for machines are unavailable: {0}")]
    BinariesUnavailable(Arc<crate::binaries::BinariesError>),
    /// The binary (by name) cannot be served now: unreadable, or changed
    /// on disk since start (`reason` says which).
    #[error("cannot serve {name}: {reason}")]
    BinaryUnreadable { name: String, reason: String },
}

impl OpError {
    /// A refusal naming one field of the input.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = ValidationErrors::default();
        errors.push(field, message);
        OpError::Invalid(errors)
    }
}

impl OpError {
    /// A failed call to `machine`: its 4xx is the caller's, anything else
    /// is the machine's failure.
    fn from_machine(machine: &str, error: ClientError) -> Self {
        match (error.status(), error.error_body()) {
            (Some(status @ 400..=499), Some(body)) => OpError::MachineRefused { status, body },
            _ => OpError::MachineUnreachable {
                machine: machine.to_string(),
                reason: error.reason(),
            },
        }
    }
}

impl From<ValidationErrors> for OpError {
    fn from(errors: ValidationErrors) -> Self {
        OpError::Invalid(errors)
    }
}

/// A job's instance numbers as people read them: `0 to 5` when they run
/// without a gap, else listed (`0, 1, 3`); `none` for none.
fn describe_numbers(numbers: &[usize]) -> String {
    match numbers {
        [] => "none".to_string(),
        [first, .., last] if last - first + 1 == numbers.len() => format!("{first} to {last}"),
        _ => numbers
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// How long a registering machine's new address has to answer.
const REGISTER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The service both edges share: the cluster, the reconciler's wake-up and
/// a client for the few calls that reach a machine. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    /// The cluster, behind its one lock; changed only by the operations
    /// here, read by the edges through [`Ops::read`].
    cluster: SharedCluster,
    /// Wakes the reconciler after a change.
    notify: Arc<Notify>,
    /// For the calls that reach a machine (restart, logs, stale tasks).
    client: HttpClient,
    /// The programs machines download, or why there are none.
    binaries: Binaries,
    /// What the DNS reconciler does and last did.
    dns: crate::dns::reconcile::SharedDnsStatus,
}

/// The binaries catalog as located at start, or why it could not be.
pub type Binaries = Result<Arc<crate::binaries::Catalog>, Arc<crate::binaries::BinariesError>>;

/// The cluster as the edges may see it: under its lock, read-only, for
/// rendering one page or one scrape (held no longer than that, and never
/// across an `.await`).
pub struct ClusterRead<'a>(std::sync::MutexGuard<'a, crate::cluster::Cluster>);

impl std::ops::Deref for ClusterRead<'_> {
    type Target = crate::cluster::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What `put_job` did, and the job afterwards.
pub struct PutJob {
    /// Created, updated or unchanged.
    pub outcome: UpsertOutcome,
    /// The job as it is now.
    pub view: Option<JobView>,
}

fn persist(cluster: &crate::cluster::Cluster) -> Result<(), OpError> {
    cluster.persist().map_err(OpError::Persist)
}

impl Ops {
    /// The service over `cluster`; `notify` wakes its reconciler, `client`
    /// reaches machines.
    pub fn new(cluster: SharedCluster, notify: Arc<Notify>, client: HttpClient) -> Self {
        Self {
            cluster,
            notify,
            client,
            binaries: Err(Arc::new(crate::binaries::BinariesError::NotLocated)),
            dns: Arc::default(),
        }
    }

    /// The same service, showing the DNS reconciler's `status`.
    pub fn with_dns(mut self, status: crate::dns::reconcile::SharedDnsStatus) -> Self {
        self.dns = status;
        self
    }

    /// What the DNS reconciler does and last did (`GET /api/v1/dns`).
    pub fn dns_status(&self) -> cerebro_types::dns::DnsStatus {
        self.dns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The same service, serving `binaries` to machines.
    pub fn with_binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = binaries;
        self
    }

    fn catalog(&self) -> Result<&crate::binaries::Catalog, OpError> {
        self.binaries
            .as_deref()
            .map_err(|error| OpError::BinariesUnavailable(error.clone()))
    }

    /// The programs machines download (`GET /api/v1/binaries`), by name.
    pub fn binaries(&self) -> Result<Vec<BinaryInfo>, OpError> {
        Ok(self
            .catalog()?
            .all()
            .map(|binary| BinaryInfo {
                name: binary.name.to_string(),
                sha256: binary.sha256.clone(),
                size: binary.size,
            })
            .collect())
    }

    /// Binary `name` and its bytes, checked against the digest taken at
    /// start (read off the async threads: a binary is megabytes).
    pub async fn binary(&self, name: &str) -> Result<(BinaryInfo, Vec<u8>), OpError> {
        let catalog = self
            .binaries
            .clone()
            .map_err(OpError::BinariesUnavailable)?;
        let wanted = name.to_string();
        let opened = tokio::task::spawn_blocking(move || catalog.open(&wanted))
            .await
            .map_err(|error| OpError::BinaryUnreadable {
                name: name.to_string(),
                reason: error.to_string(),
            })?;
        match opened {
            Ok(Some((binary, bytes))) => Ok((
                BinaryInfo {
                    name: binary.name.to_string(),
                    sha256: binary.sha256,
                    size: binary.size,
                },
                bytes,
            )),
            Ok(None) => Err(OpError::NoSuchBinary {
                name: name.to_string(),
                served: self.catalog()?.all().map(|b| b.name.to_string()).collect(),
            }),
            Err(error) => Err(OpError::BinaryUnreadable {
                name: name.to_string(),
                reason: error.to_string(),
            }),
        }
    }

    /// The cluster to read, for a page or a scrape; changes go through the
    /// operations.
    pub fn read(&self) -> ClusterRead<'_> {
        ClusterRead(lock(&self.cluster))
    }

    /// The cluster's status now.
    pub fn status(&self) -> ClusterStatus {
        lock(&self.cluster).status()
    }

    /// The newest `limit` events, newest first.
    pub fn events(&self, limit: usize) -> Vec<ClusterEvent> {
        lock(&self.cluster)
            .events()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every job, sorted by name.
    pub fn jobs(&self) -> Vec<JobView> {
        lock(&self.cluster).job_views()
    }

    /// One job.
    pub fn job(&self, name: &str) -> Result<JobView, OpError> {
        lock(&self.cluster)
            .view_of_job(name)
            .ok_or_else(|| OpError::NoSuchJob(name.to_string()))
    }

    /// Every machine, sorted by id.
    pub fn machines(&self) -> Vec<MachineView> {
        lock(&self.cluster).machine_views()
    }

    /// One machine.
    pub fn machine(&self, id: &str) -> Result<MachineView, OpError> {
        lock(&self.cluster)
            .view_of_machine(id)
            .ok_or_else(|| OpError::NoSuchMachine(id.to_string()))
    }

    /// The last hour of job `name`'s instances (`GET /api/v1/jobs/{name}/history`).
    pub fn job_history(&self, name: &str) -> Result<HistoryView, OpError> {
        lock(&self.cluster)
            .job_history(name)
            .ok_or_else(|| OpError::NoSuchJob(name.to_string()))
    }

    /// The last hour of machine `id` and its tasks.
    pub fn machine_history(&self, id: &str) -> Result<HistoryView, OpError> {
        lock(&self.cluster)
            .machine_history(id)
            .ok_or_else(|| OpError::NoSuchMachine(id.to_string()))
    }

    /// Creates or replaces a job after the checks that need the cluster.
    pub fn put_job(&self, job: JobSpec) -> Result<PutJob, OpError> {
        let name = job.name().to_string();
        let put = {
            let mut cluster = lock(&self.cluster);
            let recipe = cluster.check_job(&job)?;
            let outcome = cluster.upsert_job(job, recipe);
            if outcome != UpsertOutcome::Unchanged {
                persist(&cluster)?;
            }
            PutJob {
                outcome,
                view: cluster.view_of_job(&name),
            }
        };
        self.notify.notify_one();
        Ok(put)
    }

    /// Starts (`run`) or stops every instance of `name`, now and wherever
    /// instances are placed later, whatever `auto_start` says; the machines
    /// apply it as a spec change.
    pub fn request_run(&self, name: &str, run: bool) -> Result<Option<JobView>, OpError> {
        let view = {
            let mut cluster = lock(&self.cluster);
            let changed = cluster
                .request_run(name, run)
                .ok_or_else(|| OpError::NoSuchJob(name.to_string()))?;
            if changed {
                persist(&cluster)?;
            }
            cluster.view_of_job(name)
        };
        self.notify.notify_one();
        Ok(view)
    }

    /// Removes a job unless others are linked to it; its instances stop.
    pub fn remove_job(&self, name: &str) -> Result<(), OpError> {
        {
            let mut cluster = lock(&self.cluster);
            if cluster.job(name).is_none() {
                return Err(OpError::NoSuchJob(name.to_string()));
            }
            let followers = cluster.followers_of(name);
            if !followers.is_empty() {
                return Err(OpError::HasFollowers {
                    job: name.to_string(),
                    followers,
                });
            }
            cluster.remove_job(name);
            persist(&cluster)?;
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Starts (or retargets) a rolling update of `name`: instances restart
    /// one machine at a time (`max_parallel`), each machine's instances
    /// running healthy for `min_healthy_secs` (and, for a job with a
    /// recipe, deployed and ready) before the next machine goes. The job's
    /// recipe is read again. A request [`UpdateRequest::validate`]
    /// refuses, or a recipe that no longer resolves (field
    /// `deployment_recipe`), changes nothing.
    pub fn start_rollout(
        &self,
        name: &str,
        request: &UpdateRequest,
    ) -> Result<Option<JobView>, OpError> {
        request.validate()?;
        let view = {
            let mut cluster = lock(&self.cluster);
            let spec = cluster
                .job(name)
                .map(|job| job.spec.clone())
                .ok_or_else(|| OpError::NoSuchJob(name.to_string()))?;
            // The recipe is read again: an update deploys what the file
            // says now, and one that no longer resolves changes nothing.
            let version = match &request.version {
                Some(version) => Some(version.clone()),
                None => cluster.job(name).and_then(|job| job.version.clone()),
            };
            let recipe = cluster.resolve_recipe_at(&spec, version)?;
            cluster
                .start_rollout(name, request, recipe)
                .ok_or_else(|| OpError::NoSuchJob(name.to_string()))?;
            persist(&cluster)?;
            cluster.view_of_job(name)
        };
        self.notify.notify_one();
        Ok(view)
    }

    /// The machine id, machine address and task name of instance `index` of `name`.
    pub fn locate_instance(
        &self,
        name: &str,
        index: usize,
    ) -> Result<(String, String, String), OpError> {
        let cluster = lock(&self.cluster);
        if cluster.job(name).is_none() {
            return Err(OpError::NoSuchJob(name.to_string()));
        }
        let instances = cluster.instances_of(name);
        let instance =
            instances
                .iter()
                .find(|i| i.index == index)
                .ok_or_else(|| OpError::NoSuchInstance {
                    job: name.to_string(),
                    index,
                    numbers: instances.iter().map(|i| i.index).collect(),
                })?;
        let machine = instance.machine.clone().ok_or_else(|| OpError::NotPlaced {
            job: name.to_string(),
            index,
        })?;
        let address = cluster
            .machine(&machine)
            .and_then(|m| m.address.clone())
            .ok_or_else(|| OpError::NoAddress(machine.clone()))?;
        let task = instance.task_name.clone();
        Ok((machine, address, task))
    }

    /// The API of the machinesitter at `address`, with the cluster's token.
    fn machine_client(&self, address: &str) -> MachineClient {
        let token = lock(&self.cluster)
            .config()
            .token
            .as_ref()
            .map(|t| t.expose().to_string());
        MachineClient::new(self.client.clone(), address, token)
    }

    /// Restarts one instance through its machine (its spec is unchanged).
    pub async fn restart_instance(&self, name: &str, index: usize) -> Result<(), OpError> {
        let (machine, address, task) = self.locate_instance(name, index)?;
        let wanted = lock(&self.cluster)
            .instances_of(name)
            .iter()
            .any(|i| i.index == index && i.wanted_running);
        if !wanted {
            return Err(OpError::NotRunning {
                job: name.to_string(),
                index,
            });
        }
        self.machine_client(&address)
            .control(&task, TaskAction::Restart)
            .await
            .map_err(|e| match e.status() {
                // Placed but not created on its machine yet.
                Some(404) => OpError::NotOnMachineYet {
                    job: name.to_string(),
                    index,
                },
                _ => OpError::from_machine(&machine, e),
            })?;
        lock(&self.cluster).instance_restarted(name, index);
        Ok(())
    }

    /// Reads an instance's log (`stream`: stdout or stderr) through its
    /// machine; `query` says which piece.
    pub async fn read_instance_log(
        &self,
        name: &str,
        index: usize,
        stream: &str,
        query: &LogQuery,
    ) -> Result<LogChunk, OpError> {
        let stream: LogStream = stream
            .parse()
            .map_err(|_| OpError::field("stream", "must be stdout or stderr"))?;
        let (machine, address, task) = self.locate_instance(name, index)?;
        self.machine_client(&address)
            .log_chunk(&task, stream, query)
            .await
            .map_err(|e| match e.status() {
                Some(404) => OpError::TaskNotOnMachine(task),
                _ => OpError::from_machine(&machine, e),
            })
    }

    /// The deployment log of every instance of `name` (or of instance
    /// `instance` alone), each asked of its machine concurrently with the
    /// cluster's token. Each entry's `instance` is the instance's index in
    /// the job's list (what `?instance=` and `cerebro logs -i` take). An
    /// instance not placed, or whose machine does not answer, gets an entry
    /// with `error` and no attempts.
    ///
    /// # Errors
    /// [`OpError::NoSuchJob`]; a refusal naming `instance` when there is
    /// no instance with that index.
    pub async fn deploy_log(
        &self,
        name: &str,
        instance: Option<usize>,
    ) -> Result<Vec<InstanceDeployLog>, OpError> {
        // (entry without attempts, machine address) per instance asked for.
        let asked: Vec<(InstanceDeployLog, Option<String>)> = {
            let cluster = lock(&self.cluster);
            if cluster.job(name).is_none() {
                return Err(OpError::NoSuchJob(name.to_string()));
            }
            let instances = cluster.instances_of(name);
            if let Some(index) = instance {
                if !instances.iter().any(|i| i.index == index) {
                    let numbers: Vec<usize> = instances.iter().map(|i| i.index).collect();
                    return Err(OpError::field(
                        "instance",
                        format!(
                            "job '{name}' has no instance {index}; its instances are {}",
                            describe_numbers(&numbers)
                        ),
                    ));
                }
            }
            instances
                .iter()
                .filter(|i| instance.is_none_or(|index| i.index == index))
                .map(|i| {
                    let address = i
                        .machine
                        .as_ref()
                        .and_then(|m| cluster.machine(m))
                        .and_then(|m| m.address.clone());
                    let error = match (&i.machine, &address) {
                        (None, _) => Some("not placed yet".to_string()),
                        (Some(machine), None) => {
                            Some(format!("machine {machine} has no address yet"))
                        }
                        _ => None,
                    };
                    let entry = InstanceDeployLog {
                        instance: u32::try_from(i.index).unwrap_or(u32::MAX),
                        zone: i.zone.clone(),
                        task: i.task_name.clone(),
                        machine: i.machine.clone(),
                        attempts: Vec::new(),
                        error,
                    };
                    (entry, address)
                })
                .collect()
        };
        let mut calls = tokio::task::JoinSet::new();
        for (position, (entry, address)) in asked.iter().enumerate() {
            let Some(address) = address else { continue };
            let client = self.machine_client(address);
            let task = entry.task.clone();
            calls.spawn(async move { (position, client.deploy_log(&task).await) });
        }
        let mut entries: Vec<InstanceDeployLog> = asked.into_iter().map(|(e, _)| e).collect();
        while let Some(joined) = calls.join_next().await {
            let Ok((position, answer)) = joined else {
                continue;
            };
            let entry = &mut entries[position];
            match answer {
                Ok(attempts) => entry.attempts = attempts,
                Err(error) if error.status() == Some(404) => {
                    entry.error = Some(format!("the machine does not run {} yet", entry.task));
                }
                Err(error) => {
                    entry.error = Some(format!(
                        "machine '{}' did not answer: {}",
                        entry.machine.as_deref().unwrap_or_default(),
                        error.reason()
                    ));
                }
            }
        }
        Ok(entries)
    }

    /// Dry run: the placement these jobs would get with the current ones,
    /// applying nothing. A linked master may be in the same batch.
    pub fn plan(&self, jobs: &[JobSpec]) -> Result<PlanReply, OpError> {
        let cluster = lock(&self.cluster);
        for job in jobs {
            cluster.check_job_among(job, jobs)?;
        }
        Ok(cluster.dry_run(jobs))
    }

    /// Fails unless `request.address` answers `GET /api/v1/status` as
    /// machine `request.machine_id`. Asked without the cluster's token,
    /// which must never go to an address nobody has vouched for yet.
    async fn check_answers_as(&self, request: &RegisterRequest) -> Result<(), OpError> {
        let probe = MachineClient::new(
            cerebro_client::HttpClient::new(REGISTER_PROBE_TIMEOUT, 1),
            &request.address,
            None,
        );
        match probe.status().await {
            Ok(status) if status.machine_id == request.machine_id => Ok(()),
            Ok(status) => Err(OpError::field(
                "address",
                format!(
                    "{} answers as machine '{}', not '{}'",
                    request.address, status.machine_id, request.machine_id
                ),
            )),
            Err(error) => Err(OpError::field(
                "address",
                format!(
                    "{} does not answer as a machinesitter: {}",
                    request.address,
                    error.reason()
                ),
            )),
        }
    }

    /// A machinesitter announces itself, after [`RegisterRequest::validate`]
    /// and with its zone (if it names one) served here: known machines get their address
    /// updated; a machine this cluster decommissioned is told so and its
    /// stale tasks are removed; an unknown machine in a served zone joins.
    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterResult, OpError> {
        request.validate()?;
        // A registration may point a machine id at a new address: anyone
        // holding the machines' token could otherwise move a healthy
        // machine to a dead address and have it decommissioned, or have a
        // retired one's tasks removed somewhere else. So a new address must
        // first answer as the machine it claims to be.
        let moves = {
            let cluster = lock(&self.cluster);
            if let Some(zone) = &request.zone {
                let zones = cluster.config().zones();
                if !zones.contains_key(zone) {
                    return Err(OpError::field(
                        "zone",
                        format!(
                            "'{zone}' is not one of this cluster's zones ({})",
                            zones.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            match cluster.machine(&request.machine_id) {
                Some(record) => {
                    if let Some(zone) = request.zone.as_ref().filter(|z| **z != record.zone) {
                        return Err(OpError::field(
                            "zone",
                            format!(
                                "machine '{}' is in zone '{}', not '{zone}'",
                                request.machine_id, record.zone
                            ),
                        ));
                    }
                    record.address.as_deref() != Some(request.address.as_str())
                }
                None => true,
            }
        };
        if moves {
            self.check_answers_as(request).await?;
        }
        let result = {
            let mut cluster = lock(&self.cluster);
            if cluster.was_retired(&request.machine_id) {
                let token = cluster
                    .config()
                    .token
                    .as_ref()
                    .map(|t| t.expose().to_string());
                cluster.stale_machine_registered(&request.machine_id);
                tokio::spawn(remove_all_tasks(MachineClient::new(
                    self.client.clone(),
                    &request.address,
                    token,
                )));
                return Err(OpError::Decommissioned(request.machine_id.clone()));
            }
            let zones = cluster.config().zones();
            if cluster.machine(&request.machine_id).is_some() {
                let changed = cluster.machine_registered(
                    &request.machine_id,
                    &request.address,
                    request.capacity,
                );
                if !changed {
                    // The periodic re-registration: nothing for the reconciler to do.
                    return Ok(RegisterResult::Registered);
                }
                persist(&cluster)?;
                RegisterResult::Registered
            } else {
                let Some(zone) = request.zone.clone().filter(|z| zones.contains_key(z)) else {
                    return Err(OpError::field(
                        "zone",
                        format!(
                            "an unknown machine must name one of this cluster's zones ({})",
                            zones.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                let number = cluster.free_number(&zone);
                let mut record =
                    MachineRecord::new(&request.machine_id, &zone, number, request.capacity);
                record.address = Some(request.address.clone());
                cluster.machine_joined(record);
                persist(&cluster)?;
                RegisterResult::Joined
            }
        };
        self.notify.notify_one();
        Ok(result)
    }

    /// Sets the idle limit of one zone, or of every zone.
    pub fn apply_idle_limit(&self, request: &IdleLimitRequest) -> Result<ClusterStatus, OpError> {
        let status = {
            let mut cluster = lock(&self.cluster);
            if let Some(zone) = &request.zone {
                if !cluster.config().zones().contains_key(zone) {
                    return Err(OpError::field(
                        "zone",
                        format!("'{zone}' is not a zone of this cluster"),
                    ));
                }
            }
            cluster.set_idle_limit(request.limit, request.zone.as_deref());
            persist(&cluster)?;
            cluster.status()
        };
        self.notify.notify_one();
        Ok(status)
    }
}

/// Empties a machine that registered after being decommissioned; best effort.
async fn remove_all_tasks(machine: MachineClient) {
    let Ok(tasks) = machine.tasks().await else {
        return;
    };
    for task in tasks {
        let _ = machine.delete_task(&task.name).await;
    }
}
