//! Deployments: installing a task's release (its recipe's steps) in a
//! release directory, switching the task's `current` link to it, and
//! running its checks once the task runs on it.
//!
//! The reconciler decides when an attempt is due ([`next_job`]) and spawns
//! [`drive`] for it; the attempt runs outside the machine lock and takes it
//! only to publish what it did. A task with a deployment runs on the
//! effective spec ([`effective_spec`]): its working directory is the
//! `current` link and `CEREBRO_RELEASE`/`CEREBRO_RELEASE_DIR` name the
//! release, so switching releases restarts its tasksitter. Until a release
//! is switched to, the tasksitter that ran before keeps running; a task
//! with no release yet is not started.

pub mod fetch;
pub mod release;
pub mod steps;
pub mod unpack;

use crate::machine::{Machine, SharedMachine, TaskEntry};
use crate::state::Deployed;
use cerebro_host::{lock, RunAs};
use cerebro_types::deploy::{
    AttemptOutcome, DeployAttempt, DeployState, DeployStatus, Deployment, Step, StepAction,
    StepOutcome, StepRecord, Unpack,
};
use cerebro_types::time::now_ms;
use cerebro_types::{StateKind, TaskSpec};
pub use release::DeployDir;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The longest wait between two attempts at a failing release.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// What a skipped step of a cancelled attempt says.
const NOT_RUN_CANCELLED: &str = "not run: the attempt was cancelled";
/// The least a first check waits for its task to run on the release
/// before it fails as timed out.
const START_GRACE: Duration = Duration::from_secs(30);
/// Bytes of a failed step's output kept in [`DeployStatus::output_tail`].
pub const STATUS_TAIL_BYTES: usize = 4096;

/// The spec a task with a deployment runs on once `release` is switched
/// to: its working directory is the `current` link (a relative `cwd` joined
/// under it, an absolute one kept), with `CEREBRO_RELEASE` and
/// `CEREBRO_RELEASE_DIR` added to its environment.
pub fn effective_spec(spec: &TaskSpec, deploy_dir: &DeployDir, release: &str) -> TaskSpec {
    // The tasksitter wants absolute paths; a relative --state-dir is not.
    let current = std::path::absolute(deploy_dir.current()).unwrap_or(deploy_dir.current());
    let release_dir =
        std::path::absolute(deploy_dir.release(release)).unwrap_or(deploy_dir.release(release));
    let mut effective = spec.clone();
    effective.cwd = Some(match spec.cwd.as_deref() {
        Some(cwd) if cwd.starts_with('/') => cwd.to_string(),
        Some(relative) => current.join(relative).display().to_string(),
        None => current.display().to_string(),
    });
    effective
        .env
        .insert("CEREBRO_RELEASE".into(), release.to_string());
    effective.env.insert(
        "CEREBRO_RELEASE_DIR".into(),
        release_dir.display().to_string(),
    );
    effective
}

/// A fresh status for a release nobody tried yet on this machine.
pub fn pending_status(deployment: &Deployment, deployed: Option<&Deployed>) -> DeployStatus {
    let release = deployment.release_id();
    let ready = deployed.is_some_and(|d| d.release == release && d.ready);
    DeployStatus {
        release,
        version: deployment.version.clone(),
        state: if ready {
            DeployState::Ready
        } else {
            DeployState::Pending
        },
        running_release: deployed.map(|d| d.release.clone()),
        step: None,
        error: None,
        output_tail: None,
        attempts: 0,
        next_attempt_ms: None,
        updated_ms: now_ms(),
    }
}

/// One attempt the reconciler starts.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: String,
    pub dir_name: String,
    pub deployment: Deployment,
    /// The task's spec as PUT (for its uid and gid).
    pub spec: TaskSpec,
    /// 1 for the first attempt at this release.
    pub attempt: u32,
    /// False when the release is switched to already and only its checks
    /// are left to pass.
    pub install: bool,
    pub state_dir: PathBuf,
    pub retry_base: Duration,
}

/// Whether an attempt at `entry`'s deployment is due: `Ok(Some(job))` to
/// start now, `Err(at_ms)` when the next one is due later, `Ok(None)` when
/// nothing is to be done. Marks the entry as deploying when it returns a
/// job.
pub fn next_job(
    name: &str,
    entry: &mut TaskEntry,
    state_dir: &Path,
    retry_base: Duration,
) -> Result<Option<Job>, u64> {
    if entry.record.deleting || entry.deploying {
        return Ok(None);
    }
    let Some(deployment) = entry.record.deployment.clone() else {
        return Ok(None);
    };
    let release = deployment.release_id();
    let deployed = entry.record.deployed.clone();
    let switched = deployed.as_ref().is_some_and(|d| d.release == release);
    if switched && deployed.as_ref().is_some_and(|d| d.ready) {
        return Ok(None);
    }
    let status = entry
        .record
        .deploy
        .get_or_insert_with(|| pending_status(&deployment, deployed.as_ref()));
    if status.release != release {
        *status = pending_status(&deployment, deployed.as_ref());
    }
    if let Some(at) = status.next_attempt_ms.filter(|at| *at > now_ms()) {
        return Err(at);
    }
    entry.deploying = true;
    Ok(Some(Job {
        task: name.to_string(),
        dir_name: entry.record.dir_name.clone(),
        deployment,
        spec: entry.record.spec.clone(),
        attempt: status.attempts + 1,
        install: !switched,
        state_dir: state_dir.to_path_buf(),
        retry_base,
    }))
}

/// Runs one attempt to its end, then lets the reconciler look again.
pub async fn drive(job: Job, machine: SharedMachine, notify: Arc<Notify>) {
    let mut attempt = Attempt::new(&job, machine.clone(), notify.clone());
    attempt.run().await;
    {
        let mut guard = lock(&machine);
        if let Some(entry) = guard.tasks.get_mut(&job.task) {
            entry.deploying = false;
        }
    }
    notify.notify_one();
}

/// Why an attempt stopped short.
#[derive(Default)]
struct Failure {
    step: Option<String>,
    error: String,
    output: String,
    /// The task stopped wanting the release (a newer one, a delete).
    cancelled: bool,
}

/// One attempt in progress: what it did so far, and where it publishes it.
struct Attempt {
    job: Job,
    release: String,
    dirs: DeployDir,
    release_dir: PathBuf,
    record: DeployAttempt,
    machine: SharedMachine,
    notify: Arc<Notify>,
    client: reqwest::Client,
    /// Digests of the artifacts fetched, for the marker.
    artifacts: Vec<String>,
}

impl Attempt {
    fn new(job: &Job, machine: SharedMachine, notify: Arc<Notify>) -> Self {
        let release = job.deployment.release_id();
        let dirs = DeployDir::new(&job.state_dir, &job.dir_name);
        let release_dir = dirs.release(&release);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            record: DeployAttempt {
                release: release.clone(),
                version: job.deployment.version.clone(),
                attempt: job.attempt,
                outcome: AttemptOutcome::Running,
                started_ms: now_ms(),
                finished_ms: None,
                steps: Vec::new(),
            },
            job: job.clone(),
            release,
            dirs,
            release_dir,
            machine,
            notify,
            client,
            artifacts: Vec::new(),
        }
    }

    /// Applies `change` to the task's entry and publishes the attempt in
    /// its log, if the task still exists. `change` runs only while the task
    /// still wants this attempt's release; it returns an event to journal.
    /// Returns false when the task is gone, being deleted, or wants another
    /// release (the attempt then stops).
    fn publish(&self, change: impl FnOnce(&mut TaskEntry) -> Option<String>) -> bool {
        let mut guard = lock(&self.machine);
        let machine: &mut Machine = &mut guard;
        let Some(entry) = machine.tasks.get_mut(&self.job.task) else {
            return false;
        };
        let log = &mut entry.deploy_log;
        match log.iter_mut().find(|a| {
            (a.release.as_str(), a.attempt, a.started_ms)
                == (
                    self.release.as_str(),
                    self.record.attempt,
                    self.record.started_ms,
                )
        }) {
            Some(existing) => *existing = self.record.clone(),
            None => log.insert(0, self.record.clone()),
        }
        log.truncate(release::KEPT_ATTEMPTS);
        if let Err(error) = self.dirs.save_log(log) {
            tracing::warn!(task = %self.job.task, %error, "cannot save the deploy log");
        }
        let wanted = !entry.record.deleting
            && entry
                .record
                .deployment
                .as_ref()
                .is_some_and(|d| d.release_id() == self.release);
        if !wanted {
            return false;
        }
        let event = change(entry);
        if let Some(status) = entry.record.deploy.as_mut() {
            status.running_release = entry.record.deployed.as_ref().map(|d| d.release.clone());
            status.updated_ms = now_ms();
        }
        if let Some(event) = event {
            machine.event(&self.job.task, event);
        }
        if let Err(error) = machine.persist() {
            tracing::error!(%error, "cannot persist the task set");
        }
        true
    }

    /// Sets the status's state and step.
    fn progress(&self, state: DeployState, step: Option<String>, event: Option<String>) -> bool {
        let attempts = self.job.attempt;
        self.publish(|entry| {
            let deployment = entry.record.deployment.clone()?;
            let status = entry
                .record
                .deploy
                .get_or_insert_with(|| pending_status(&deployment, None));
            status.state = state;
            status.step = step;
            status.attempts = attempts;
            if state != DeployState::Failed {
                status.error = None;
                status.output_tail = None;
                status.next_attempt_ms = None;
            }
            event
        })
    }

    async fn run(&mut self) {
        let outcome = self.steps().await;
        self.record.finished_ms = self.record.finished_ms.or(Some(now_ms()));
        match outcome {
            Ok(outcome) => {
                self.record.outcome = outcome;
                self.publish(|_| None);
            }
            Err(failure) if failure.cancelled => {
                self.record.outcome = AttemptOutcome::Failed;
                self.record_cancel(&failure);
                self.publish(|_| None);
                let at = failure
                    .step
                    .as_ref()
                    .map(|s| format!(" at {s}"))
                    .unwrap_or_default();
                let message = format!(
                    "deploy of release {} (attempt {}) stopped{at}: {}",
                    self.release, self.job.attempt, failure.error
                );
                lock(&self.machine).event(&self.job.task, message);
            }
            Err(failure) => {
                self.record.outcome = AttemptOutcome::Failed;
                let base = self.job.retry_base;
                let factor = 1u32 << (self.job.attempt.saturating_sub(1)).min(16);
                let delay = base.saturating_mul(factor).min(MAX_RETRY);
                let release = self.release.clone();
                let attempt = self.job.attempt;
                self.publish(|entry| {
                    let deployment = entry.record.deployment.clone()?;
                    let status = entry
                        .record
                        .deploy
                        .get_or_insert_with(|| pending_status(&deployment, None));
                    status.state = DeployState::Failed;
                    status.step = failure.step.clone();
                    status.error = Some(failure.error.clone());
                    status.output_tail = (!failure.output.is_empty()).then(|| {
                        steps::tail_str(&failure.output, STATUS_TAIL_BYTES).to_string()
                    });
                    status.attempts = attempt;
                    status.next_attempt_ms = Some(now_ms() + delay.as_millis() as u64);
                    Some(format!(
                        "deploy of release {release} failed{} (attempt {attempt}): {}; retrying in {}",
                        failure
                            .step
                            .as_ref()
                            .map(|s| format!(" at {s}"))
                            .unwrap_or_default(),
                        failure.error,
                        steps::human_secs(delay)
                    ))
                });
            }
        }
    }

    /// Makes the steps of a cancelled attempt say so: the step it stopped
    /// at (recorded when it stopped between two steps) and those not run.
    fn record_cancel(&mut self, failure: &Failure) {
        if !self
            .record
            .steps
            .iter()
            .any(|s| s.detail.starts_with("cancelled"))
        {
            let recipe = &self.job.deployment.recipe.steps;
            // The step it stopped at, else the one after the last run.
            let next = recipe
                .iter()
                .enumerate()
                .position(|(index, step)| failure.step.as_ref() == Some(&step.label(index)))
                .or_else(|| {
                    let next = self.record.steps.last().map_or(0, |s| s.index + 1);
                    (self.job.install || recipe.get(next).is_some_and(Step::is_check))
                        .then_some(next)
                });
            if let Some((next, step)) = next.and_then(|n| Some((n, recipe.get(n)?))) {
                let mut record = skipped(next, step);
                record.detail.clone_from(&failure.error);
                self.record.steps.push(record);
            }
        }
        for step in &mut self.record.steps {
            if step.outcome == StepOutcome::Skipped && !step.detail.starts_with("cancelled") {
                step.detail = NOT_RUN_CANCELLED.into();
            }
        }
    }

    /// The attempt's work; `Err` names what failed.
    async fn steps(&mut self) -> Result<AttemptOutcome, Failure> {
        let failure = |error: String| Failure {
            error,
            ..Failure::default()
        };
        // A step an earlier machinesitter left running (it was killed
        // mid-step) goes before anything of this attempt runs.
        let group_file = self.dirs.step_group();
        if group_file.exists() {
            let killed =
                tokio::task::spawn_blocking(move || steps::kill_recorded_group(&group_file))
                    .await
                    .ok()
                    .flatten();
            if let Some(pgid) = killed {
                lock(&self.machine).event(
                    &self.job.task,
                    format!(
                        "killed process group {pgid}: a step an earlier machinesitter left running"
                    ),
                );
            }
        }
        let release_dir_text = self.release_dir.display().to_string();
        let steps = self
            .job
            .deployment
            .render_steps(&release_dir_text)
            .map_err(|errors| failure(errors.join("; ")))?;
        let run_as = if nix::unistd::geteuid().is_root() {
            cerebro_host::resolve_run_as(self.job.spec.uid.as_ref(), self.job.spec.gid.as_ref())
                .map_err(|e| failure(e.to_string()))?
        } else {
            None
        };
        let mut env = self.job.deployment.environment(&release_dir_text);
        env.insert("CEREBRO_RELEASE".into(), self.release.clone());
        let mut outcome = AttemptOutcome::Reused;
        if self.job.install {
            let event = format!(
                "deploying release {} (attempt {})",
                self.release, self.job.attempt
            );
            if !self.progress(DeployState::Installing, None, Some(event)) {
                return Err(self.cancelled(None));
            }
            if self.dirs.installed(&self.release) {
                self.publish(|_| {
                    Some(
                        "release already installed; switching to it without running its steps"
                            .into(),
                    )
                });
            } else {
                self.install(&steps, &env, run_as.as_ref()).await?;
                outcome = AttemptOutcome::Succeeded;
            }
            self.switch(&steps, outcome)?;
        } else {
            let event = format!(
                "checking release {} (attempt {})",
                self.release, self.job.attempt
            );
            if !self.progress(DeployState::Checking, None, Some(event)) {
                return Err(self.cancelled(None));
            }
        }
        let has_checks = steps.iter().any(Step::is_check);
        if has_checks {
            self.checks(&steps, &env, run_as.as_ref()).await?;
        }
        if has_checks || !self.job.install {
            // Ready: after its checks, or at once for a release switched to
            // already whose recipe has none (recovered from its task dir).
            self.record.outcome = outcome;
            self.record.finished_ms = Some(now_ms());
            let release = self.release.clone();
            self.publish(|entry| {
                if let Some(deployed) = entry.record.deployed.as_mut() {
                    deployed.ready = deployed.release == release;
                }
                if let Some(status) = entry.record.deploy.as_mut() {
                    status.state = DeployState::Ready;
                    status.step = None;
                }
                Some(if has_checks {
                    format!("release {release} ready: every check passed")
                } else {
                    format!("release {release} ready")
                })
            });
        }
        Ok(outcome)
    }

    /// Runs the install steps in a fresh release directory and writes the
    /// marker; on failure the release directory is removed.
    async fn install(
        &mut self,
        steps: &[Step],
        env: &BTreeMap<String, String>,
        run_as: Option<&RunAs>,
    ) -> Result<(), Failure> {
        let io_failure = |error: std::io::Error| Failure {
            step: None,
            error: format!("cannot prepare the release directory: {error}"),
            output: String::new(),
            cancelled: false,
        };
        self.dirs.discard(&self.release);
        std::fs::create_dir_all(&self.release_dir).map_err(io_failure)?;
        chown_tree(&self.release_dir, run_as).map_err(io_failure)?;
        let installs: Vec<(usize, Step)> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_check())
            .map(|(i, s)| (i, s.clone()))
            .collect();
        for (position, (index, step)) in installs.iter().enumerate() {
            let label = step.label(*index);
            if !self.progress(DeployState::Installing, Some(label.clone()), None) {
                self.dirs.discard(&self.release);
                return Err(self.cancelled(Some(label)));
            }
            let mut record = self.run_install_step(*index, step, env, run_as).await;
            if record.outcome == StepOutcome::Succeeded && !is_directory(&self.release_dir) {
                // Nothing is left to switch to: `current` would point at
                // nothing.
                record.outcome = StepOutcome::Failed;
                record.detail = format!(
                    "the release directory is gone after this step ({} was removed or replaced)",
                    self.release_dir.display()
                );
            }
            let cancelled = record.detail.starts_with("cancelled");
            let rest = installs[position + 1..].iter().map(|(i, s)| (*i, s));
            if let Err(failure) = self.end_step(record, label, cancelled, rest) {
                self.dirs.discard(&self.release);
                return Err(failure);
            }
        }
        if !is_directory(&self.release_dir) {
            return Err(Failure {
                step: installs.last().map(|(index, step)| step.label(*index)),
                error: "the release directory is gone".into(),
                ..Failure::default()
            });
        }
        let marker = release::Marker {
            deployment: self.job.deployment.clone(),
            attempt: self.job.attempt,
            installed_ms: now_ms(),
            artifacts: self.artifacts.clone(),
        };
        self.dirs
            .write_marker(&self.release, &marker)
            .map_err(|error| Failure {
                step: None,
                error: format!("cannot write the release's marker: {error}"),
                output: String::new(),
                cancelled: false,
            })
    }

    /// Points `current` at the release and records it as deployed, so the
    /// reconciler restarts the task on it; prunes old releases.
    fn switch(&mut self, steps: &[Step], outcome: AttemptOutcome) -> Result<(), Failure> {
        let checks = steps.iter().any(Step::is_check);
        if !checks {
            // Ready with the switch: the log says the attempt ended as the
            // status does.
            self.record.outcome = outcome;
            self.record.finished_ms = Some(now_ms());
        }
        let release = self.release.clone();
        let dirs = self.dirs.clone();
        let mut switched = Ok(());
        // Under the machine lock, and only while the task still wants this
        // release: `current` and the recorded release never disagree.
        let release_dir = self.release_dir.clone();
        let wanted = self.publish(|entry| {
            if !is_directory(&release_dir) {
                switched = Err(std::io::Error::other(format!(
                    "the release directory {} is gone",
                    release_dir.display()
                )));
                return None;
            }
            if let Err(error) = dirs.switch(&release) {
                switched = Err(error);
                return None;
            }
            entry.record.deployed = Some(Deployed {
                release: release.clone(),
                ready: !checks,
                spec: None,
            });
            if let Some(status) = entry.record.deploy.as_mut() {
                status.state = if checks {
                    DeployState::Checking
                } else {
                    DeployState::Ready
                };
                status.step = None;
            }
            Some(format!(
                "switched to release {release}{}",
                if checks {
                    "; checking it once the task runs"
                } else {
                    "; ready"
                }
            ))
        });
        self.notify.notify_one();
        switched.map_err(|error| Failure {
            step: None,
            error: format!("cannot switch the current link: {error}"),
            output: String::new(),
            cancelled: false,
        })?;
        if !wanted {
            return Err(self.cancelled(None));
        }
        let removed = self.dirs.prune_releases(None);
        let artifacts = release::prune_artifacts(&self.job.state_dir);
        if !removed.is_empty() || !artifacts.is_empty() {
            tracing::info!(task = %self.job.task, ?removed, ?artifacts, "pruned releases and artifacts");
        }
        Ok(())
    }

    async fn run_install_step(
        &mut self,
        index: usize,
        step: &Step,
        env: &BTreeMap<String, String>,
        run_as: Option<&RunAs>,
    ) -> StepRecord {
        let started_ms = now_ms();
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(step.timeout_secs.max(0.001));
        let mut record = StepRecord {
            index,
            label: step.label(index),
            outcome: StepOutcome::Succeeded,
            started_ms,
            duration_ms: 0,
            exit_code: None,
            detail: String::new(),
            output: String::new(),
        };
        let result: Result<String, String> = match &step.action {
            StepAction::Fetch {
                url,
                sha256,
                dest,
                unpack,
            } => {
                let work = self.fetch_step(url, sha256, dest.as_deref(), *unpack, run_as);
                let result = tokio::select! {
                    result = tokio::time::timeout(timeout, work) => match result {
                        Ok(result) => result,
                        Err(_) => {
                            record.outcome = StepOutcome::TimedOut;
                            Err(format!("timed out after {}", steps::human_secs(timeout)))
                        }
                    },
                    () = self.unwanted() => Err(format!("cancelled: {}", self.why_unwanted())),
                };
                if result.is_ok() {
                    self.artifacts.push(sha256.clone());
                }
                result
            }
            StepAction::Write {
                path,
                content,
                mode,
                ..
            } => write_file(&self.release_dir, path, content, *mode, run_as),
            StepAction::Run { command, env: own } => {
                let mut env = env.clone();
                env.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                let group_file = self.dirs.step_group();
                match steps::run_command(
                    command,
                    &self.release_dir,
                    &env,
                    run_as,
                    timeout,
                    Some(&group_file),
                    self.unwanted(),
                )
                .await
                {
                    Ok(mut result) => {
                        if result.detail.starts_with("cancelled") {
                            result.detail = format!("cancelled: {}", self.why_unwanted());
                        }
                        record.exit_code = result.exit_code;
                        record.output = result.output.clone();
                        if result.timed_out {
                            record.outcome = StepOutcome::TimedOut;
                        }
                        if result.succeeded() {
                            Ok(result.detail)
                        } else {
                            Err(result.detail)
                        }
                    }
                    Err(error) => Err(format!("cannot run it: {error}")),
                }
            }
            StepAction::Check { .. } => Err("a check is not an install step".into()),
        };
        match result {
            Ok(detail) => record.detail = detail,
            Err(detail) => {
                if record.outcome == StepOutcome::Succeeded {
                    record.outcome = StepOutcome::Failed;
                }
                record.detail = detail;
            }
        }
        record.duration_ms = started.elapsed().as_millis() as u64;
        record
    }

    /// Why the task no longer wants this release, in words.
    fn why_unwanted(&self) -> String {
        let guard = lock(&self.machine);
        match guard.tasks.get(&self.job.task) {
            None => "the task was deleted".into(),
            Some(entry) if entry.record.deleting => "the task is being deleted".into(),
            Some(entry) => match entry.record.deployment.as_ref().map(Deployment::release_id) {
                Some(wanted) if wanted != self.release => {
                    format!("release {wanted} was asked for instead")
                }
                Some(_) => "the task no longer wants this release".into(),
                None => "the task no longer has a deployment".into(),
            },
        }
    }

    /// The failure of an attempt whose release is no longer wanted.
    fn cancelled(&self, step: Option<String>) -> Failure {
        Failure {
            step,
            error: format!("cancelled: {}", self.why_unwanted()),
            output: String::new(),
            cancelled: true,
        }
    }

    /// Completes once the task no longer wants this release (another
    /// release was PUT, or the task is being deleted or is gone), so a
    /// long step stops early.
    async fn unwanted(&self) {
        loop {
            let wanted = {
                let guard = lock(&self.machine);
                guard.tasks.get(&self.job.task).is_some_and(|entry| {
                    !entry.record.deleting
                        && entry
                            .record
                            .deployment
                            .as_ref()
                            .is_some_and(|d| d.release_id() == self.release)
                })
            };
            if !wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn fetch_step(
        &self,
        url: &str,
        sha256: &str,
        dest: Option<&str>,
        unpack: Unpack,
        run_as: Option<&RunAs>,
    ) -> Result<String, String> {
        let fetched = fetch::fetch(&self.client, url, sha256, &self.dirs.artifacts, run_as)
            .await
            .map_err(|e| e.to_string())?;
        let how = format!(
            "{} {} bytes, sha256 ok",
            if fetched.downloaded {
                "fetched"
            } else {
                "cached"
            },
            fetched.bytes
        );
        let release_dir = self.release_dir.clone();
        let artifact = fetched.path.clone();
        let run_as = run_as.cloned();
        let url = url.to_string();
        let dest = dest.map(str::to_string);
        tokio::task::spawn_blocking(move || -> Result<String, String> {
            let detail = if unpack == Unpack::None {
                let name = dest.unwrap_or_else(|| {
                    url.split(['?', '#'])
                        .next()
                        .unwrap_or(&url)
                        .rsplit('/')
                        .next()
                        .filter(|n| !n.is_empty() && *n != "..")
                        .unwrap_or("artifact")
                        .to_string()
                });
                let target = release_dir.join(&name);
                let parent = target.parent().unwrap_or(&release_dir).to_path_buf();
                std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
                check_inside(&release_dir, &parent)?;
                std::fs::copy(&artifact, &target).map_err(|e| e.to_string())?;
                format!("{how}, saved as {name}")
            } else {
                let target = release_dir.join(dest.unwrap_or_default());
                let entries = unpack::unpack(&artifact, unpack, &target, &release_dir)
                    .map_err(|e| e.to_string())?;
                format!("{how}, unpacked {entries} entries")
            };
            chown_tree(&release_dir, run_as.as_ref()).map_err(|e| e.to_string())?;
            Ok(detail)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits for the task to run on the release, then runs every check in
    /// order, each until its timeout.
    async fn checks(
        &mut self,
        steps: &[Step],
        env: &BTreeMap<String, String>,
        run_as: Option<&RunAs>,
    ) -> Result<(), Failure> {
        let checks: Vec<(usize, &Step)> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_check())
            .collect();
        for (position, (index, step)) in checks.iter().enumerate() {
            let label = step.label(*index);
            if !self.progress(DeployState::Checking, Some(label.clone()), None) {
                return Err(self.cancelled(Some(label)));
            }
            let timeout = Duration::from_secs_f64(step.timeout_secs.max(0.001));
            // The first check waits for the task to run on the release; the
            // wait has a bound of its own (the check's timeout, at least
            // START_GRACE: a start is seen only once the tasksitter answers
            // a poll), so a slow start does not eat the probing time.
            let mut cancelled = false;
            let running = position > 0
                || tokio::select! {
                    running = self.wait_running(timeout.max(START_GRACE)) => running,
                    () = self.unwanted() => {
                        cancelled = true;
                        false
                    }
                };
            let started_ms = now_ms();
            let started = Instant::now();
            let deadline = started + timeout;
            let StepAction::Check {
                probe,
                interval_secs,
            } = &step.action
            else {
                continue;
            };
            let mut record = StepRecord {
                index: *index,
                label: label.clone(),
                outcome: StepOutcome::Succeeded,
                started_ms,
                duration_ms: 0,
                exit_code: None,
                detail: String::new(),
                output: String::new(),
            };
            if cancelled {
                record.outcome = StepOutcome::Failed;
                record.detail = format!("cancelled: {}", self.why_unwanted());
            } else if !running {
                record.outcome = StepOutcome::TimedOut;
                record.detail = format!(
                    "timed out after {} waiting for the task to run on the release",
                    steps::human_secs(timeout.max(START_GRACE))
                );
            } else {
                let interval = Duration::from_secs_f64(interval_secs.max(0.05));
                let group_file = self.dirs.step_group();
                let checked = steps::check(
                    probe,
                    interval,
                    deadline,
                    &self.client,
                    &self.release_dir,
                    env,
                    run_as,
                    &group_file,
                );
                let (result, tries) = tokio::select! {
                    checked = checked => checked,
                    () = self.unwanted() => {
                        cancelled = true;
                        (
                        steps::ProbeResult {
                            ok: false,
                            exit_code: None,
                            detail: format!("cancelled: {}", self.why_unwanted()),
                            output: String::new(),
                        },
                        0,
                    )
                    }
                };
                record.exit_code = result.exit_code;
                record.output = result.output;
                if cancelled {
                    record.outcome = StepOutcome::Failed;
                    record.detail = result.detail;
                } else if result.ok {
                    record.detail = format!("{} (probe {tries})", result.detail);
                } else {
                    record.outcome = StepOutcome::TimedOut;
                    record.detail = format!(
                        "timed out after {} and {tries} probes; last: {}",
                        steps::human_secs(timeout),
                        result.detail
                    );
                }
            }
            record.duration_ms = started.elapsed().as_millis() as u64;
            let rest = checks[position + 1..].iter().map(|(i, s)| (*i, *s));
            self.end_step(record, label, cancelled, rest)?;
        }
        Ok(())
    }

    /// Records a step that ended. A failed one (`cancelled` when it was
    /// stopped because the release is no longer wanted) marks the steps
    /// after it, `rest`, as skipped and answers the attempt's failure; a
    /// succeeded one is published.
    fn end_step<'s>(
        &mut self,
        record: StepRecord,
        label: String,
        cancelled: bool,
        rest: impl Iterator<Item = (usize, &'s Step)>,
    ) -> Result<(), Failure> {
        let failed = record.outcome != StepOutcome::Succeeded;
        let (error, output) = (record.detail.clone(), record.output.clone());
        self.record.steps.push(record);
        if !failed {
            self.publish(|_| None);
            return Ok(());
        }
        for (index, step) in rest {
            self.record.steps.push(skipped(index, step));
        }
        Err(Failure {
            step: Some(label),
            error,
            output,
            cancelled,
        })
    }

    /// Waits until the task's workload runs under a tasksitter started on
    /// this release, at most `timeout` while the task is asked to run: a
    /// task stopped on purpose (auto_start false, a stop request) is not
    /// late, so its checks wait for a start instead of failing.
    async fn wait_running(&self, timeout: Duration) -> bool {
        let mut deadline = Instant::now() + timeout;
        loop {
            let (running, stopped) = {
                let guard = lock(&self.machine);
                let entry = guard.tasks.get(&self.job.task);
                let running = entry.is_some_and(|entry| {
                    entry.record.runtime.as_ref().is_some_and(|rt| {
                        rt.stop_sent_ms.is_none()
                            && rt.spec.env.get("CEREBRO_RELEASE") == Some(&self.release)
                    }) && entry
                        .status
                        .as_ref()
                        .is_some_and(|s| s.state.kind() == StateKind::Running)
                });
                (running, entry.is_some_and(|e| !e.record.run_requested))
            };
            if running {
                return true;
            }
            if stopped {
                deadline = Instant::now() + timeout;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether `path` is a directory itself (not a link to one).
fn is_directory(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn skipped(index: usize, step: &Step) -> StepRecord {
    StepRecord {
        index,
        label: step.label(index),
        outcome: StepOutcome::Skipped,
        started_ms: now_ms(),
        duration_ms: 0,
        exit_code: None,
        detail: "not run: an earlier step failed".into(),
        output: String::new(),
    }
}

/// Checks that `dir`, symlinks resolved, is inside `root`.
fn check_inside(root: &Path, dir: &Path) -> Result<(), String> {
    let real_root = root.canonicalize().map_err(|e| e.to_string())?;
    let real = dir.canonicalize().map_err(|e| e.to_string())?;
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err(format!(
            "{} leads outside the release, to {}",
            dir.display(),
            real.display()
        ))
    }
}

/// A write step: `content` at `path` in the release, with `mode`.
fn write_file(
    release_dir: &Path,
    path: &str,
    content: &str,
    mode: u32,
    run_as: Option<&RunAs>,
) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let target = release_dir.join(path);
    let parent = target.parent().unwrap_or(release_dir).to_path_buf();
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    check_inside(release_dir, &parent)?;
    if target.is_symlink() {
        std::fs::remove_file(&target).map_err(|e| e.to_string())?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&target)
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    file.write_all(content.as_bytes())
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {path}: {e}"))?;
    if let Some(run_as) = run_as {
        std::os::unix::fs::lchown(&target, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| format!("cannot chown {path}: {e}"))?;
        let _ = chown_tree(&parent, Some(run_as));
    }
    Ok(format!(
        "wrote {} bytes to {path}, mode {mode:o}",
        content.len()
    ))
}

/// Gives `dir` and everything under it to the task's user (symlinks
/// themselves, not what they point at).
fn chown_tree(dir: &Path, run_as: Option<&RunAs>) -> std::io::Result<()> {
    let Some(run_as) = run_as else {
        return Ok(());
    };
    std::os::unix::fs::lchown(dir, Some(run_as.uid), Some(run_as.gid))?;
    if dir.is_symlink() || !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        chown_tree(&path, Some(run_as))?;
    }
    Ok(())
}

/// A deployment of the recipe `text` for unit tests.
#[cfg(test)]
pub(crate) fn test_deployment(text: &str) -> Deployment {
    Deployment {
        recipe_name: "r".into(),
        recipe_source: "r.toml".into(),
        recipe_sha256: "0".repeat(64),
        recipe: cerebro_types::deploy::Recipe::parse(text, "r.toml").unwrap(),
        options: Default::default(),
        job: "j".into(),
        version: None,
        instance: 0,
        zone: "z".into(),
        machine: "m".into(),
        cluster: "c".into(),
    }
}
