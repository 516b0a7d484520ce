//! Usage of the workload's tree: sampling it (from the cgroup, or /proc
//! with the poll backend), the CPU rate over a window, and the limit checks
//! that turn a sample into a violation.

use super::{Backend, Supervisor};
use cerebro_host::proctree;
use cerebro_types::{CpuAction, StopReason, TaskState, Violation, ViolationKind};
use std::time::{Duration, Instant};

/// Usage of the whole tree at one instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) cpu_ns: u64,
    pub(super) rss_bytes: u64,
    pub(super) processes: u32,
    pub(super) oom_kills: u64,
    pub(super) peak_bytes: Option<u64>,
}

impl Supervisor {
    /// Sampling only enforces when this process polls a limit; when the
    /// kernel enforces them all (cgroup memory limit, CPU quota) it only
    /// feeds the status (every 2 s, as often as the machinesitter asks for
    /// it), 20 times less often than when it enforces, so an idle task
    /// costs next to nothing.
    pub(super) fn sample_interval(&self) -> Duration {
        if let Some(interval) = self.config.poll_interval {
            return interval;
        }
        let kernel_enforces =
            !matches!(self.backend, Backend::Poll) && self.limits.cpu_action != CpuAction::Restart;
        if kernel_enforces {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(100)
        }
    }

    pub(super) fn take_sample(&self) -> Option<Sample> {
        let at = Instant::now();
        match &self.backend {
            Backend::Cgroup { group, .. } => {
                let sample = group.sample().ok()?;
                Some(Sample {
                    at,
                    cpu_ns: sample.cpu_usage_ns,
                    rss_bytes: sample.rss_bytes,
                    processes: group.pids().map(|p| p.len() as u32).unwrap_or(0),
                    oom_kills: sample.oom_kills,
                    peak_bytes: sample.peak_bytes,
                })
            }
            Backend::Poll => {
                let pids = self.tree_pids();
                let usage = proctree::tree_usage(&pids);
                Some(Sample {
                    at,
                    cpu_ns: usage.cpu_ns,
                    rss_bytes: usage.rss_bytes,
                    processes: usage.live_processes,
                    oom_kills: 0,
                    peak_bytes: None,
                })
            }
        }
    }

    /// Average cores used over (about) the last `window`.
    /// Cores used from the newest sample at least `window` old (or the
    /// oldest kept) to the latest: samples are taken a little over an
    /// interval apart, so asking for "no older than the window" would find
    /// only the latest one whenever the interval is the window.
    pub(super) fn cpu_cores_over(&self, window: Duration) -> f64 {
        let Some(latest) = self.samples.back() else {
            return 0.0;
        };
        let oldest = self
            .samples
            .iter()
            .rev()
            .find(|s| latest.at.duration_since(s.at) >= window)
            .or(self.samples.front())
            .unwrap_or(latest);
        let elapsed = latest.at.duration_since(oldest.at).as_secs_f64();
        if elapsed <= 0.0 {
            return 0.0;
        }
        latest.cpu_ns.saturating_sub(oldest.cpu_ns) as f64 / 1e9 / elapsed
    }

    pub(super) fn sample_and_enforce(&mut self) {
        if self.run.is_none() {
            return;
        }
        if self.main_exit.is_some() {
            self.finish_draining_run();
            return;
        }
        let Some(sample) = self.take_sample() else {
            return;
        };
        let window = Duration::from_secs_f64(self.config.spec.cpu_window);
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.duration_since(s.at) > window + self.sample_interval())
        {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        if !matches!(self.state, TaskState::Running { .. }) {
            return;
        }
        if let Some(violation) = self.kernel_oom(&sample) {
            self.begin_stop(StopReason::Violation(violation));
            return;
        }
        if let Some(limit) = self.limits.mem_bytes {
            if sample.rss_bytes > limit {
                self.begin_stop(StopReason::Violation(Violation {
                    kind: ViolationKind::Memory,
                    measured: sample.rss_bytes as f64,
                    limit: limit as f64,
                    by_kernel: false,
                }));
                return;
            }
        }
        if let (Some(limit), CpuAction::Restart) = (self.limits.cpu_cores, self.limits.cpu_action) {
            let covered = self
                .samples
                .front()
                .map_or(Duration::ZERO, |first| sample.at.duration_since(first.at));
            let used = self.cpu_cores_over(window);
            if covered >= window && used > limit {
                self.begin_stop(StopReason::Violation(Violation {
                    kind: ViolationKind::Cpu,
                    measured: used,
                    limit,
                    by_kernel: false,
                }));
            }
        }
    }

    /// A kernel OOM kill in our cgroup since we last looked, as a memory violation.
    pub(super) fn kernel_oom(&mut self, sample: &Sample) -> Option<Violation> {
        if sample.oom_kills <= self.oom_kills_seen {
            return None;
        }
        self.oom_kills_seen = sample.oom_kills;
        let limit = self.limits.mem_bytes.unwrap_or(0) as f64;
        Some(Violation {
            kind: ViolationKind::Memory,
            measured: sample.peak_bytes.map_or(limit, |p| p as f64),
            limit,
            by_kernel: true,
        })
    }
}
