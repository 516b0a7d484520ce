//! Health: one definition of whether an instance and a job are well,
//! which the CLI, the overview, the jobs table and `/metrics` all count
//! from, and the reasons behind an exit or a limit violation.
//!
//! An instance is exactly one of [`InstanceHealth`]; a job rolls its
//! instances up to a [`JobHealth`]. The rules, in
//! [`InstanceHealth::judge`]:
//! - not wanted running (stopped by request, or `auto_start: false`):
//!   `stopping` while its process still runs, else `stopped`;
//! - wanted running: `pending` until its machine reports the task (or
//!   while its release deploys), `failed` once the tasksitter gave up
//!   (`fatal`) or it exited and may not be restarted, `crash_looping` with
//!   [`CRASH_LOOP_RESTARTS`] restarts or more within
//!   [`CRASH_LOOP_WINDOW_MS`], `running` once its process is up and has
//!   either never been restarted or stayed up its `healthy_after` time,
//!   and `starting` in between (being placed, started, restarted, in
//!   backoff, or not up long enough yet after a restart).

use crate::task::{EventKind, ExitStatus, StateKind, TaskStatus, Violation, ViolationKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Restarts within [`CRASH_LOOP_WINDOW_MS`] that make an instance
/// crash-looping.
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// The window restarts are counted in for [`CRASH_LOOP_RESTARTS`]: five
/// minutes, so an instance that stays up that long is no longer
/// crash-looping.
pub const CRASH_LOOP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// What an instance is doing, as everything that counts instances sees it.
/// Serialized as the snake_case word (`crash_looping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceHealth {
    /// Wanted running, with no process yet: not placed, waiting for a
    /// machine, placed and not reported by it yet, or deploying. The
    /// instance's `reason` says which.
    Pending,
    /// Being started or restarted, or up for less than its healthy-after
    /// time since a restart.
    Starting,
    /// Up, and either never restarted or up longer than its
    /// healthy-after time.
    Running,
    /// Restarted [`CRASH_LOOP_RESTARTS`] times or more within
    /// [`CRASH_LOOP_WINDOW_MS`].
    CrashLooping,
    /// Not wanted running, and its process has not ended yet.
    Stopping,
    /// Not wanted running, and not running.
    Stopped,
    /// The tasksitter gave up on it (its restart budget ran out), or it
    /// exited with a failure and its policy does not restart it.
    Failed,
    /// A word this version does not know (from a newer clustersitter).
    #[serde(other)]
    Unknown,
}

impl InstanceHealth {
    /// Every health, in the order tables and `/metrics` list them.
    pub const ALL: [InstanceHealth; 7] = [
        InstanceHealth::Running,
        InstanceHealth::Starting,
        InstanceHealth::Pending,
        InstanceHealth::CrashLooping,
        InstanceHealth::Failed,
        InstanceHealth::Stopping,
        InstanceHealth::Stopped,
    ];

    /// The word the API, the CLI and the pages use (`crash-looping` is
    /// written with a dash for people; the JSON has `crash_looping`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceHealth::Pending => "pending",
            InstanceHealth::Starting => "starting",
            InstanceHealth::Running => "running",
            InstanceHealth::CrashLooping => "crash-looping",
            InstanceHealth::Stopping => "stopping",
            InstanceHealth::Stopped => "stopped",
            InstanceHealth::Failed => "failed",
            InstanceHealth::Unknown => "unknown",
        }
    }

    /// The JSON word, also the `health` label of `/metrics`.
    pub fn wire(self) -> &'static str {
        match self {
            InstanceHealth::CrashLooping => "crash_looping",
            other => other.as_str(),
        }
    }

    /// Whether this is where an instance should be: running when wanted
    /// (or stopped after a clean exit its policy allows: `judge` gives a
    /// wanted instance `stopped` for nothing else), stopped when not.
    pub fn is_settled(self, wanted_running: bool) -> bool {
        match self {
            InstanceHealth::Stopped => true,
            InstanceHealth::Running => wanted_running,
            _ => false,
        }
    }

    /// Whether this needs a person rather than time: crash-looping or
    /// failed.
    pub fn is_trouble(self) -> bool {
        matches!(self, InstanceHealth::CrashLooping | InstanceHealth::Failed)
    }

    /// The one judgement of an instance's health from what the cluster
    /// knows of it (see the module's rules). `now_ms` is the clustersitter's
    /// clock, compared with the event times its machine reported.
    pub fn judge(input: &HealthInput<'_>, now_ms: u64) -> InstanceHealth {
        let Some(status) = input.status else {
            // No task reported: pending when wanted, else stopped.
            return if input.wanted_running {
                InstanceHealth::Pending
            } else {
                InstanceHealth::Stopped
            };
        };
        let kind = status.state.kind();
        if !input.wanted_running {
            return match kind {
                StateKind::Running | StateKind::Stopping => InstanceHealth::Stopping,
                _ => InstanceHealth::Stopped,
            };
        }
        if input.deploying {
            return InstanceHealth::Pending;
        }
        let recent = recent_restarts(status, now_ms);
        match kind {
            StateKind::Fatal => InstanceHealth::Failed,
            StateKind::Exited => match status.last_exit {
                Some(exit) if exit.success() => InstanceHealth::Stopped,
                _ => InstanceHealth::Failed,
            },
            _ if recent >= CRASH_LOOP_RESTARTS => InstanceHealth::CrashLooping,
            StateKind::Running => {
                let up_ms = status
                    .started_at_ms
                    .map_or(0, |started| now_ms.saturating_sub(started));
                let healthy_after_ms = (input.healthy_after_secs.max(0.0) * 1000.0) as u64;
                if status.restarts == 0 || up_ms >= healthy_after_ms {
                    InstanceHealth::Running
                } else {
                    InstanceHealth::Starting
                }
            }
            // Stopped while wanted: the start is on its way to the machine.
            StateKind::Stopped | StateKind::Stopping | StateKind::Backoff => {
                InstanceHealth::Starting
            }
        }
    }
}

impl fmt::Display for InstanceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`InstanceHealth::judge`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    /// Whether the job wants it running now (its run request, else
    /// `auto_start`): what a stop or start changes at once, before the
    /// machine confirms.
    pub wanted_running: bool,
    /// The task's status as its machine last reported it; `None` while
    /// it is not placed or not reported.
    pub status: Option<&'a TaskStatus>,
    /// Whether its release is still being fetched, installed or checked
    /// (or failed to) on its machine, so its process cannot be up to date.
    pub deploying: bool,
    /// The task's `backoff.healthy_after_secs`.
    pub healthy_after_secs: f64,
}

/// Restarts by the task's own policy (not by request) whose time is
/// within [`CRASH_LOOP_WINDOW_MS`] of `now_ms`, from the task's bounded
/// event history.
pub fn recent_restarts(status: &TaskStatus, now_ms: u64) -> u32 {
    let since = now_ms.saturating_sub(CRASH_LOOP_WINDOW_MS);
    let count = status
        .events
        .iter()
        .filter(|e| e.at_ms >= since && matches!(e.kind, EventKind::Restarting { .. }))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// How a job is doing, rolled up from its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobHealth {
    /// Every instance is where it is wanted: running, stopped for a
    /// stopped job, or stopped after a clean exit its policy allows (a
    /// one-shot job that did its work). A job without instances is healthy.
    Healthy,
    /// Some instances are not where they are wanted (pending, starting,
    /// stopping, or in trouble while others run).
    Degraded,
    /// It should run and no instance runs, and at least one is
    /// crash-looping, failed, or pending for a reason that needs a person
    /// ([`Pending::blocked`]).
    Failing,
    /// A word this version does not know.
    #[serde(other)]
    Unknown,
}

impl JobHealth {
    pub const ALL: [JobHealth; 3] = [JobHealth::Healthy, JobHealth::Degraded, JobHealth::Failing];

    /// The word the API, the CLI and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            JobHealth::Healthy => "healthy",
            JobHealth::Degraded => "degraded",
            JobHealth::Failing => "failing",
            JobHealth::Unknown => "unknown",
        }
    }

    /// The roll-up of a job's instances, given as (health, whether the
    /// instance is wanted running, whether a pending one is blocked).
    pub fn of(instances: impl IntoIterator<Item = (InstanceHealth, bool, bool)>) -> JobHealth {
        let mut all_settled = true;
        let mut wanted = false;
        let mut running = false;
        let mut trouble = false;
        for (health, wanted_running, blocked) in instances {
            all_settled &= health.is_settled(wanted_running);
            wanted |= wanted_running;
            running |= health == InstanceHealth::Running;
            trouble |= health.is_trouble() || (health == InstanceHealth::Pending && blocked);
        }
        if all_settled {
            JobHealth::Healthy
        } else if wanted && !running && trouble {
            JobHealth::Failing
        } else {
            JobHealth::Degraded
        }
    }
}

impl fmt::Display for JobHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Instances counted by health (`/api/v1/status`, the overview, `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounts {
    #[serde(default)]
    pub pending: usize,
    #[serde(default)]
    pub starting: usize,
    #[serde(default)]
    pub running: usize,
    #[serde(default)]
    pub crash_looping: usize,
    #[serde(default)]
    pub stopping: usize,
    #[serde(default)]
    pub stopped: usize,
    #[serde(default)]
    pub failed: usize,
}

impl HealthCounts {
    /// Counts one more instance of `health` (an unknown word is not counted).
    pub fn add(&mut self, health: InstanceHealth) {
        if let Some(slot) = self.slot(health) {
            *slot += 1;
        }
    }

    fn slot(&mut self, health: InstanceHealth) -> Option<&mut usize> {
        Some(match health {
            InstanceHealth::Pending => &mut self.pending,
            InstanceHealth::Starting => &mut self.starting,
            InstanceHealth::Running => &mut self.running,
            InstanceHealth::CrashLooping => &mut self.crash_looping,
            InstanceHealth::Stopping => &mut self.stopping,
            InstanceHealth::Stopped => &mut self.stopped,
            InstanceHealth::Failed => &mut self.failed,
            InstanceHealth::Unknown => return None,
        })
    }

    /// How many are `health`.
    pub fn get(&self, health: InstanceHealth) -> usize {
        self.clone().slot(health).map_or(0, |n| *n)
    }

    /// Every instance counted.
    pub fn total(&self) -> usize {
        InstanceHealth::ALL.iter().map(|h| self.get(*h)).sum()
    }
}

/// Instances counted by health as people read them, in the CLI's
/// `cerebro status` and the overview's headline alike: running,
/// crash-looping and pending always, the others when there are any, then
/// the total: `5 running · 1 crash-looping · 0 pending of 6 instances`.
pub fn instances_text(counts: &HealthCounts) -> String {
    let shown = [
        (InstanceHealth::Running, true),
        (InstanceHealth::Starting, false),
        (InstanceHealth::CrashLooping, true),
        (InstanceHealth::Failed, false),
        (InstanceHealth::Pending, true),
        (InstanceHealth::Stopping, false),
        (InstanceHealth::Stopped, false),
    ];
    let parts: Vec<String> = shown
        .iter()
        .filter(|(health, always)| *always || counts.get(*health) > 0)
        .map(|(health, _)| format!("{} {}", counts.get(*health), health.as_str()))
        .collect();
    format!("{} of {} instances", parts.join(" · "), counts.total())
}

/// Jobs counted by health, those with any: `3 healthy · 1 degraded`;
/// `no jobs` for none.
pub fn jobs_text(by_health: &std::collections::BTreeMap<JobHealth, usize>) -> String {
    let parts: Vec<String> = by_health
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(health, n)| format!("{n} {}", health.as_str()))
        .collect();
    if parts.is_empty() {
        "no jobs".into()
    } else {
        parts.join(" · ")
    }
}

/// Why a pending instance has no process yet, in a word a script can
/// match (`code`) and a sentence a person reads (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `waiting_for_machine` (a machine is being provisioned or coming
    /// up), `provider_limit` (the zone's `max_machines` is reached),
    /// `provisioning_failed` (the provider keeps failing to start one),
    /// `unplaceable` (no machine of the zone can ever hold it),
    /// `machine_unreachable`, `not_reported` (placed; its machine has not
    /// reported the task yet), `deploying`, `deploy_failed`.
    pub code: String,
    pub message: String,
}

impl Pending {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Whether waiting will not fix it: a person must act (raise the
    /// limit, fix the provider, the job's size or its release).
    pub fn blocked(&self) -> bool {
        matches!(
            self.code.as_str(),
            "provider_limit" | "provisioning_failed" | "unplaceable" | "deploy_failed"
        )
    }
}

/// How an instance's process last ended, and why: the exit code or
/// signal, and the limit violation that ended it, if one did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitReason {
    /// When it ended (ms since the Unix epoch, the machine's clock).
    pub at_ms: u64,
    /// The exit code or signal, as the kernel said; absent when the
    /// history no longer holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExitStatus>,
    /// The limit it went past just before it ended (kind, measured value,
    /// limit, whether the kernel killed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<Violation>,
    /// It ended because it was asked to stop (a stop, a restart or an
    /// update by request), not by itself nor for a limit. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_request: bool,
}

impl ExitReason {
    /// The newest end of a process in `status`'s event history, with the
    /// violation of that process's run: recorded before the exit (the
    /// tasksitter killed it) or after it and before the next start (the
    /// kernel's OOM kill is learnt only once the process is gone).
    pub fn last_of(status: &TaskStatus) -> Option<ExitReason> {
        // The violation of the run going on, whether it was asked to stop,
        // and whether the last event of a run was its exit (no start since).
        let mut violation = None;
        let mut asked = false;
        let mut ended = false;
        let mut reason: Option<ExitReason> = None;
        for event in &status.events {
            match &event.kind {
                EventKind::Started { .. } => {
                    violation = None;
                    asked = false;
                    ended = false;
                }
                // Also sent for a CPU or time violation, which comes first.
                EventKind::StopRequested { .. } => asked = true,
                EventKind::Violation(v) => match reason.as_mut() {
                    Some(last) if ended => {
                        last.violation.get_or_insert_with(|| v.clone());
                    }
                    _ => violation = Some(v.clone()),
                },
                EventKind::Exited { status, .. } => {
                    reason = Some(ExitReason {
                        at_ms: event.at_ms,
                        status: Some(*status),
                        by_request: asked && violation.is_none(),
                        violation: violation.take(),
                    });
                    ended = true;
                }
                _ => {}
            }
        }
        reason
    }
}

impl fmt::Display for ExitReason {
    /// e.g. `killed by the kernel for memory: 210.4 MB used, limit 128 MB
    /// (killed by signal 9)`, or `exit code 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_request {
            f.write_str("stopped by request")?;
            return match &self.status {
                Some(status) => write!(f, " ({status})"),
                None => Ok(()),
            };
        }
        match (&self.violation, &self.status) {
            (Some(v), Some(status)) => write!(f, "{} ({status})", describe_violation(v)),
            (Some(v), None) => f.write_str(&describe_violation(v)),
            (None, Some(status)) => write!(f, "{status}"),
            (None, None) => f.write_str("ended"),
        }
    }
}

/// A violation as people read it: who enforced it, the kind, what was
/// measured and the limit, in the limit's unit (MB, cores, seconds):
/// `killed by the kernel for memory: 210.4 MB used, limit 128 MB`,
/// `over its CPU limit: 1.93 cores used, limit 0.5 cores`.
pub fn describe_violation(v: &Violation) -> String {
    let (measured, limit) = match v.kind {
        ViolationKind::Memory => (
            format!("{} used", mb(v.measured)),
            format!("limit {}", mb(v.limit)),
        ),
        ViolationKind::Cpu => (
            format!("{} cores used", cores(v.measured)),
            format!("limit {} cores", cores(v.limit)),
        ),
        ViolationKind::Time => (
            format!("ran {:.0} s", v.measured),
            format!("limit {:.0} s", v.limit),
        ),
    };
    let kind = match v.kind {
        ViolationKind::Memory => "memory",
        ViolationKind::Cpu => "CPU",
        ViolationKind::Time => "time",
    };
    if v.by_kernel {
        format!("killed by the kernel for {kind}: {measured}, {limit}")
    } else {
        format!("over its {kind} limit: {measured}, {limit}")
    }
}

/// Bytes as MB the way job files mean it (2^20 bytes), one decimal.
fn mb(bytes: f64) -> String {
    format!("{} MB", trim(bytes / (1024.0 * 1024.0), 1))
}

/// Cores, two decimals, no `-0.00`.
pub fn cores(value: f64) -> String {
    trim(value, 2)
}

/// A machine's capacity in cores as written in the config: whole cores as
/// `2`, else two decimals (`1.50`).
pub fn capacity_cores(value: f64) -> String {
    if value.fract() == 0.0 {
        trim(value, 0)
    } else {
        cores(value)
    }
}

/// `value` with `decimals` decimals, never `-0`: a negative value that
/// rounds to zero (a sum of floats a hair below it) prints as `0`.
pub fn trim(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{CpuAction, Limits, LimitsBackendKind, TaskEvent, TaskState};

    const NOW: u64 = 10_000_000;

    fn status(state: TaskState, restarts: u64, events: Vec<TaskEvent>) -> TaskStatus {
        TaskStatus {
            pid: state.pid(),
            started_at_ms: state.started_at_ms(),
            state,
            starts: restarts + 1,
            restarts,
            events,
            ..TaskStatus::not_started(
                "web#0",
                "true",
                Limits {
                    cpu_cores: None,
                    mem_bytes: None,
                    time_limit_secs: None,
                    cpu_action: CpuAction::Restart,
                },
                LimitsBackendKind::Poll,
                1,
            )
        }
    }

    fn running_since(ago_ms: u64) -> TaskState {
        TaskState::Running {
            pid: 42,
            started_at_ms: NOW - ago_ms,
        }
    }

    fn restarting(ago_ms: &[u64]) -> Vec<TaskEvent> {
        ago_ms
            .iter()
            .map(|ago| TaskEvent {
                at_ms: NOW - ago,
                kind: EventKind::Restarting { attempt: 1 },
            })
            .collect()
    }

    fn judge(wanted: bool, status: Option<&TaskStatus>) -> InstanceHealth {
        InstanceHealth::judge(
            &HealthInput {
                wanted_running: wanted,
                status,
                deploying: false,
                healthy_after_secs: 10.0,
            },
            NOW,
        )
    }

    #[test]
    fn a_first_start_runs_at_once_and_a_restart_only_after_healthy_after() {
        let first = status(running_since(1_000), 0, vec![]);
        assert_eq!(judge(true, Some(&first)), InstanceHealth::Running);
        let restarted = status(running_since(1_000), 1, restarting(&[1_000]));
        assert_eq!(judge(true, Some(&restarted)), InstanceHealth::Starting);
        let settled = status(running_since(11_000), 1, restarting(&[11_000]));
        assert_eq!(judge(true, Some(&settled)), InstanceHealth::Running);
    }

    #[test]
    fn three_restarts_in_the_window_crash_loop_even_while_up() {
        let looping = status(
            running_since(20_000),
            12,
            restarting(&[20_000, 60_000, 90_000]),
        );
        assert_eq!(judge(true, Some(&looping)), InstanceHealth::CrashLooping);
        let old = status(
            running_since(20_000),
            12,
            restarting(&[CRASH_LOOP_WINDOW_MS + 1, CRASH_LOOP_WINDOW_MS + 2, 20_000]),
        );
        assert_eq!(judge(true, Some(&old)), InstanceHealth::Running);
        let backoff = TaskState::Backoff {
            restart_at_ms: NOW + 5_000,
            attempt: 4,
        };
        let waiting = status(backoff, 12, restarting(&[1_000, 2_000, 3_000]));
        assert_eq!(judge(true, Some(&waiting)), InstanceHealth::CrashLooping);
    }

    #[test]
    fn what_is_not_wanted_is_stopping_until_it_stopped() {
        let up = status(running_since(60_000), 0, vec![]);
        assert_eq!(judge(false, Some(&up)), InstanceHealth::Stopping);
        assert_eq!(
            judge(false, Some(&status(TaskState::Stopped, 0, vec![]))),
            InstanceHealth::Stopped
        );
        assert_eq!(judge(false, None), InstanceHealth::Stopped);
        assert_eq!(judge(true, None), InstanceHealth::Pending);
        // Wanted again and still stopped on its machine: starting.
        assert_eq!(
            judge(true, Some(&status(TaskState::Stopped, 0, vec![]))),
            InstanceHealth::Starting
        );
    }

    #[test]
    fn fatal_and_failed_exits_are_failed_a_clean_exit_is_stopped() {
        let fatal = TaskState::Fatal {
            status: ExitStatus::Code(1),
            restarts: 3,
        };
        assert_eq!(
            judge(true, Some(&status(fatal, 3, vec![]))),
            InstanceHealth::Failed
        );
        let mut clean = status(
            TaskState::Exited {
                status: ExitStatus::Code(0),
            },
            0,
            vec![],
        );
        clean.last_exit = Some(ExitStatus::Code(0));
        assert_eq!(judge(true, Some(&clean)), InstanceHealth::Stopped);
        let mut bad = status(
            TaskState::Exited {
                status: ExitStatus::Code(2),
            },
            0,
            vec![],
        );
        bad.last_exit = Some(ExitStatus::Code(2));
        assert_eq!(judge(true, Some(&bad)), InstanceHealth::Failed);
    }

    #[test]
    fn jobs_roll_up() {
        use InstanceHealth::*;
        assert_eq!(
            JobHealth::of([(Running, true, false), (Running, true, false)]),
            JobHealth::Healthy
        );
        assert_eq!(JobHealth::of([(Stopped, false, false)]), JobHealth::Healthy);
        // A one-shot job whose run ended well (allow_exit, exit 0).
        assert_eq!(JobHealth::of([(Stopped, true, false)]), JobHealth::Healthy);
        assert_eq!(JobHealth::of([]), JobHealth::Healthy);
        assert_eq!(
            JobHealth::of([(Running, true, false), (CrashLooping, true, false)]),
            JobHealth::Degraded
        );
        assert_eq!(
            JobHealth::of([(Starting, true, false)]),
            JobHealth::Degraded
        );
        assert_eq!(
            JobHealth::of([(CrashLooping, true, false)]),
            JobHealth::Failing
        );
        assert_eq!(
            JobHealth::of([(Pending, true, true), (Pending, true, false)]),
            JobHealth::Failing
        );
        assert_eq!(JobHealth::of([(Pending, true, false)]), JobHealth::Degraded);
        assert_eq!(
            JobHealth::of([(Stopping, false, false)]),
            JobHealth::Degraded
        );
    }

    #[test]
    fn counts_add_up() {
        let mut counts = HealthCounts::default();
        for h in [
            InstanceHealth::Running,
            InstanceHealth::Running,
            InstanceHealth::CrashLooping,
        ] {
            counts.add(h);
        }
        assert_eq!(
            (counts.running, counts.crash_looping, counts.total()),
            (2, 1, 3)
        );
        // Older answers without the field load as zeros.
        let old: HealthCounts = serde_json::from_str("{}").unwrap();
        assert_eq!(old.total(), 0);
    }

    #[test]
    fn an_exit_carries_the_violation_of_its_own_run() {
        let oom = Violation {
            kind: ViolationKind::Memory,
            measured: 210.0 * 1024.0 * 1024.0,
            limit: 128.0 * 1024.0 * 1024.0,
            by_kernel: true,
        };
        let events = vec![
            TaskEvent {
                at_ms: 1,
                kind: EventKind::Started {
                    pid: 1,
                    start_number: 1,
                },
            },
            TaskEvent {
                at_ms: 2,
                kind: EventKind::Exited {
                    pid: 1,
                    status: ExitStatus::Code(3),
                },
            },
            TaskEvent {
                at_ms: 3,
                kind: EventKind::Started {
                    pid: 2,
                    start_number: 2,
                },
            },
            TaskEvent {
                at_ms: 4,
                kind: EventKind::Violation(oom.clone()),
            },
            TaskEvent {
                at_ms: 5,
                kind: EventKind::Exited {
                    pid: 2,
                    status: ExitStatus::Signal(9),
                },
            },
        ];
        let reason = ExitReason::last_of(&status(TaskState::Stopped, 1, events.clone())).unwrap();
        assert_eq!(reason.violation, Some(oom));
        assert_eq!(
            reason.to_string(),
            "killed by the kernel for memory: 210.0 MB used, limit 128.0 MB (killed by signal 9)"
        );
        // The kernel's kill is told after the exit it caused.
        let mut told_late = events.clone();
        told_late.swap(3, 4);
        let late = ExitReason::last_of(&status(TaskState::Stopped, 1, told_late)).unwrap();
        assert_eq!(late.violation.as_ref().map(|v| v.by_kernel), Some(true));
        assert_eq!(late.status, Some(ExitStatus::Signal(9)));
        let first =
            ExitReason::last_of(&status(TaskState::Stopped, 0, events[..2].to_vec())).unwrap();
        assert_eq!(first.to_string(), "exit code 3");
        // A stop by request is told as one, whatever signal ended it.
        let stopped = vec![
            TaskEvent {
                at_ms: 1,
                kind: EventKind::Started {
                    pid: 1,
                    start_number: 1,
                },
            },
            TaskEvent {
                at_ms: 2,
                kind: EventKind::StopRequested {
                    signal: "TERM".into(),
                },
            },
            TaskEvent {
                at_ms: 3,
                kind: EventKind::Exited {
                    pid: 1,
                    status: ExitStatus::Signal(15),
                },
            },
        ];
        let asked = ExitReason::last_of(&status(TaskState::Stopped, 0, stopped)).unwrap();
        assert!(asked.by_request);
        assert_eq!(
            asked.to_string(),
            "stopped by request (killed by signal 15)"
        );
    }

    #[test]
    fn counts_read_as_sentences() {
        use std::collections::BTreeMap;
        let mut counts = HealthCounts::default();
        for health in [
            InstanceHealth::Running,
            InstanceHealth::Running,
            InstanceHealth::CrashLooping,
            InstanceHealth::Stopped,
        ] {
            counts.add(health);
        }
        assert_eq!(
            instances_text(&counts),
            "2 running · 1 crash-looping · 0 pending · 1 stopped of 4 instances"
        );
        let jobs: BTreeMap<JobHealth, usize> = [
            (JobHealth::Healthy, 3),
            (JobHealth::Degraded, 1),
            (JobHealth::Failing, 0),
        ]
        .into();
        assert_eq!(jobs_text(&jobs), "3 healthy · 1 degraded");
        assert_eq!(jobs_text(&BTreeMap::new()), "no jobs");
    }

    #[test]
    fn no_negative_zero() {
        assert_eq!(cores(-0.0001), "0.00");
        assert_eq!(cores(-0.5), "-0.50");
        assert_eq!(cores(1.314), "1.31");
    }
}
