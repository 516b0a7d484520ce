//! Ending a run: stopping the workload's tree (stop signal, grace period,
//! SIGKILL), noticing that its main process exited, waiting for the rest of
//! the tree during a stop, and then what the restart policy decides.

use super::{signal_named, Backend, Decision, Supervisor};
use crate::logs::join_pumps;
use cerebro_host::proctree;
use cerebro_types::time::now_ms;
use cerebro_types::{EventKind, ExitStatus, StopReason, TaskState, ViolationKind};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::Duration;

impl Supervisor {
    /// Every process of the workload's tree, however it got there.
    pub(super) fn tree_pids(&self) -> Vec<i32> {
        match &self.backend {
            Backend::Cgroup { group, .. } => group.pids().unwrap_or_default(),
            Backend::Poll => {
                let guard: Vec<i32> = self.guard_pid().into_iter().collect();
                proctree::descendants(self.my_pid, &guard)
            }
        }
    }

    pub(super) fn kill_tree(&self, signal: Signal) {
        if signal == Signal::SIGKILL {
            if let Backend::Cgroup { group, .. } = &self.backend {
                if let Err(error) = group.kill_all() {
                    tracing::error!(%error, "cannot empty the cgroup");
                }
                return;
            }
        }
        if let Some(run) = &self.run {
            let _ = nix::sys::signal::killpg(Pid::from_raw(run.pid), signal);
        }
        for pid in self.tree_pids() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }

    /// Stops the running workload. Memory violations are killed at once
    /// (waiting lets it grow); everything else gets the stop signal and a grace period.
    pub(super) fn begin_stop(&mut self, reason: StopReason) {
        let TaskState::Running { pid, started_at_ms } = self.state else {
            return;
        };
        let immediate =
            matches!(&reason, StopReason::Violation(v) if v.kind == ViolationKind::Memory);
        if let StopReason::Violation(violation) = &reason {
            self.violations.record(violation.kind);
            self.event(EventKind::Violation(violation.clone()));
        }
        let spec_signal = self.config.spec.stop_signal.clone();
        let kill_at_ms = if immediate {
            self.kill_tree(Signal::SIGKILL);
            self.event(EventKind::Killed {
                pid,
                reason: "memory limit".into(),
            });
            now_ms() + 1000
        } else {
            let signal = signal_named(&spec_signal).unwrap_or(Signal::SIGTERM);
            self.kill_tree(signal);
            self.event(EventKind::StopRequested {
                signal: spec_signal,
            });
            now_ms() + (self.config.spec.stop_timeout * 1000.0) as u64
        };
        self.set_state(TaskState::Stopping {
            pid,
            started_at_ms,
            kill_at_ms,
            reason,
        });
    }

    pub(super) fn on_main_exit(&mut self, status: ExitStatus) {
        let Some(run) = &self.run else { return };
        let pid = run.pid as u32;
        self.last_exit = Some(status);
        self.event(EventKind::Exited { pid, status });
        // During a stop the rest of the tree keeps its grace period: a shell
        // dies of the stop signal at once while the server under it shuts down.
        let in_grace =
            matches!(self.state, TaskState::Stopping { kill_at_ms, .. } if now_ms() < kill_at_ms);
        if in_grace && !self.tree_pids().is_empty() {
            self.main_exit = Some(status);
            return;
        }
        self.finish_run(status);
    }

    /// Ends a run whose main process has exited, once its tree drained during a stop.
    pub(super) fn finish_draining_run(&mut self) {
        if let Some(status) = self.main_exit {
            if self.tree_pids().is_empty() {
                self.finish_run(status);
            }
        }
    }

    pub(super) fn finish_run(&mut self, status: ExitStatus) {
        let Some(run) = self.run.take() else { return };
        self.main_exit = None;
        // Whatever the main process left behind in its tree goes with it.
        if !self.tree_pids().is_empty() {
            self.kill_tree(Signal::SIGKILL);
        }
        // Wait for the pumps so the last words of the workload are in the log before anyone reads it.
        join_pumps(run.pumps, Duration::from_secs(1));
        let stop_reason = match &self.state {
            TaskState::Stopping { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        let mut violation = match &stop_reason {
            Some(StopReason::Violation(v)) => Some(v.clone()),
            _ => None,
        };
        if let Some(oom) = self.take_sample().and_then(|s| self.kernel_oom(&s)) {
            if violation.is_none() {
                self.violations.record(oom.kind);
                self.event(EventKind::Violation(oom.clone()));
                violation = Some(oom);
            }
        }
        match stop_reason {
            Some(StopReason::Requested) => self.set_state(TaskState::Stopped),
            Some(StopReason::Restart) if !self.shutting_down => {
                self.restarts += 1;
                self.start();
            }
            _ => self.apply_restart_policy(status, violation.is_some(), run.started.elapsed()),
        }
    }

    pub(super) fn apply_restart_policy(
        &mut self,
        status: ExitStatus,
        violated: bool,
        lived: Duration,
    ) {
        if self.shutting_down {
            self.set_state(TaskState::Exited { status });
            return;
        }
        let decision = self
            .restart_policy
            .after_run(&self.config.spec, status, violated, lived);
        match decision {
            Decision::Exit => self.set_state(TaskState::Exited { status }),
            Decision::GiveUp { restarts } => {
                self.event(EventKind::GaveUp { restarts });
                self.set_state(TaskState::Fatal { status, restarts });
            }
            Decision::Restart { attempt, delay } => {
                self.set_state(TaskState::Backoff {
                    restart_at_ms: now_ms() + delay.as_millis() as u64,
                    attempt,
                });
                if delay.is_zero() {
                    // Restart latency matters: do not wait for another loop turn.
                    self.event(EventKind::Restarting { attempt });
                    self.restarts += 1;
                    self.start();
                } else {
                    self.event(EventKind::Backoff {
                        delay_ms: delay.as_millis() as u64,
                        attempt,
                    });
                }
            }
        }
    }
}
